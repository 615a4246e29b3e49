#include "qemu_lio/backstop.h"

#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>

#include "qemu_lio/configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/teardown.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

// How often to look at /proc when the kernel offers no pidfd (before 5.3, or a seccomp
// profile that refuses pidfd_open).
constexpr auto kPollInterval = std::chrono::milliseconds(100);

// Every fd above `keep`: a caller's tap fd, its log pipe or a vhost fd must not stay open
// because a backstop holds it.
void close_fds_above(int keep) {
  if (::syscall(SYS_close_range, keep + 1, ~0U, 0) == 0) return;
  // No close_range (before 5.9): close what /proc says is open.
  std::vector<int> open_fds;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (struct dirent* e = ::readdir(d)) {
      int fd = std::atoi(e->d_name);
      if (fd > keep && fd != ::dirfd(d)) open_fds.push_back(fd);
    }
    ::closedir(d);
  }
  for (int fd : open_fds) ::close(fd);
}

void log_line(int prio, const std::string& msg) { syslog(prio, "%s", msg.c_str()); }

[[noreturn]] void backstop_main(const std::string& journal_file, const std::string& configfs_root,
                                const ProcessId& wrapper, int ready_fd) {
  // Nothing the caller's terminal, session or process group does may stop us early.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  ::setsid();
  if (::chdir("/") != 0) _exit(1);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
  if (null > 2) ::close(null);
  // The ready pipe moves to fd 3 so that everything above it can go at once.
  if (ready_fd != 3) {
    ::dup2(ready_fd, 3);
    ::close(ready_fd);
  }
  close_fds_above(3);
  openlog("qemu-lio", LOG_PID, LOG_DAEMON);

  int status = 0;
  try {
    append_journal_record(journal_file, backstop_record(*identify_process(::getpid())));
    if (::write(3, "r", 1) != 1) _exit(1);
    ::close(3);

    ProcessId watched = wrapper;
    std::optional<std::chrono::steady_clock::time_point> await_deadline;
    for (;;) {
      wait_until_gone(watched);
      if (::access(journal_file.c_str(), F_OK) != 0) break;  // the run tore down itself
      JournalContents j = read_journal(journal_file);
      // Who holds the disks now: QEMU as our wrapper's child (it dies with the wrapper, but
      // may take a moment), or the daemon it became.
      if (j.owner && !(*j.owner == watched) && process_alive(*j.owner)) {
        watched = *j.owner;
        continue;
      }
      if (!j.pidfile.empty()) {
        if (auto d = find_daemon(j.pidfile, j.wrapper.start_time); d && !(*d == watched)) {
          append_journal_record(journal_file, owner_record(*d));
          log_line(LOG_INFO, journal_file + ": following QEMU's daemon, pid " + std::to_string(d->pid));
          watched = *d;
          continue;
        }
        // libvirt's hook provisions before libvirt starts QEMU: until a QEMU has owned the
        // set, wait (bounded) for one to name itself; the hook's "release" tears down a
        // start that failed, this deadline one that libvirtd never finished.
        if (!j.owner && j.await_seconds > 0) {
          const auto now = std::chrono::steady_clock::now();
          if (!await_deadline) await_deadline = now + std::chrono::seconds(j.await_seconds);
          if (now < *await_deadline) {
            std::this_thread::sleep_for(kPollInterval);
            continue;  // `watched` is gone: the loop looks again at once
          }
        }
      }
      auto fs = make_real_configfs(configfs_root);
      TeardownResult r = teardown_journal_file(*fs, journal_file, RetryPolicy{});
      if (r.failed > 0) {
        log_line(LOG_ERR, journal_file + ": " + std::to_string(r.failed) +
                              " LIO object(s) left; 'qemu-lio gc' retries");
        status = 1;
      }
      break;
    }
  } catch (const std::exception& e) {
    log_line(LOG_ERR, e.what());
    status = 1;
  }
  _exit(status);
}

}  // namespace

void wait_until_gone(const ProcessId& p) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  // The pidfd is checked against the identity after it is opened: if the pid was already
  // recycled, the process we wait for is gone.
  if (pidfd.get() >= 0) {
    if (!process_alive(p)) return;
    struct pollfd pf = {pidfd.get(), POLLIN, 0};
    while (::poll(&pf, 1, -1) < 0 && errno == EINTR) {
    }
    return;
  }
  while (process_alive(p)) std::this_thread::sleep_for(kPollInterval);
}

std::optional<ProcessId> find_daemon(const std::string& pidfile, uint64_t not_before) {
  std::ifstream in(pidfile);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  auto p = identify_process(static_cast<pid_t>(pid));
  if (!p || p->start_time < not_before || !process_alive(*p)) return std::nullopt;
  return p;
}

BackstopStart start_backstop(const std::string& journal_file, const std::string& configfs_root,
                             const ProcessId& wrapper) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) throw Error("backstop", "cannot create a pipe: " + errno_string(errno));
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  pid_t child = ::fork();
  if (child < 0) throw Error("backstop", "cannot fork: " + errno_string(errno));
  if (child == 0) {
    // Double fork: the backstop is re-parented to init (or a subreaper) and is never a
    // zombie of ours, nor of QEMU's in exec mode.
    pid_t grandchild = ::fork();
    if (grandchild != 0) _exit(grandchild < 0 ? 1 : 0);
    ::close(ready_read.get());
    backstop_main(journal_file, configfs_root, wrapper, ready_write.get());
  }
  ready_write = UniqueFd();
  return BackstopStart(child, ready_read.release());
}

void spawn_backstop(const std::string& journal_file, const std::string& configfs_root,
                    const ProcessId& wrapper) {
  start_backstop(journal_file, configfs_root, wrapper).await();
}

void BackstopStart::await() {
  if (child_ <= 0) return;
  const pid_t child = child_;
  UniqueFd ready(ready_fd_);
  child_ = -1;
  ready_fd_ = -1;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  char byte = 0;
  ssize_t n;
  while ((n = ::read(ready.get(), &byte, 1)) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n != 1)
    throw Error("backstop", "could not be started (see syslog)");
}

void BackstopStart::settle() noexcept {
  try {
    await();
  } catch (...) {
  }
}

BackstopStart::~BackstopStart() { settle(); }

BackstopStart::BackstopStart(BackstopStart&& o) noexcept
    : child_(std::exchange(o.child_, -1)), ready_fd_(std::exchange(o.ready_fd_, -1)) {}

BackstopStart& BackstopStart::operator=(BackstopStart&& o) noexcept {
  if (this != &o) {
    settle();
    child_ = std::exchange(o.child_, -1);
    ready_fd_ = std::exchange(o.ready_fd_, -1);
  }
  return *this;
}

}  // namespace qemu_lio
