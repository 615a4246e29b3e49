#include "qemu_lio/storage_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/core.h>

#include <csignal>
#include <cerrno>
#include <fstream>
#include <thread>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"
#include "qemu_lio/supervisor.h"

namespace qemu_lio {
namespace {

// QEMU's option syntax: a comma inside a value is written twice.
std::string qemu_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

const char* on_off(bool b) { return b ? "on" : "off"; }

// The daemon's reason from the first line of its stderr, without its name and the option
// it echoes: "qemu-storage-daemon: --blockdev driver=file,...: Could not open 'x': No such
// file or directory" says "Could not open 'x': No such file or directory".
std::string daemon_reason(const std::string& file) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line) && line.find_first_not_of(" \t\r") == std::string::npos) {
  }
  const size_t opt = line.find(": --");
  if (opt != std::string::npos) {
    const size_t value = line.find(' ', opt + 4);
    const size_t cause = value == std::string::npos ? value : line.find(": ", value);
    if (cause != std::string::npos) return line.substr(cause + 2);
  }
  const std::string prog = "qemu-storage-daemon: ";
  return line.rfind(prog, 0) == 0 ? line.substr(prog.size()) : line;
}

enum class Reaped { kNo, kYes, kLost };

// Waits for `pid` until `deadline`. kYes (and `status`) once it has exited and is reaped;
// kLost if it is no child of ours any more (someone else reaped it: its pid may be reused).
Reaped reaped_by(pid_t pid, std::chrono::steady_clock::time_point deadline, int& status) {
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return Reaped::kYes;
    if (r < 0 && errno == ECHILD) return Reaped::kLost;
    if (std::chrono::steady_clock::now() >= deadline) return Reaped::kNo;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

std::string daemon_export_name(size_t i) { return fmt::format("e{}", i); }

std::vector<std::string> storage_daemon_args(const std::vector<DaemonImage>& images, const DaemonFiles& files) {
  std::vector<std::string> a = {"--chardev", fmt::format("socket,id=qmp,path={},server=on,wait=off", qemu_value(files.qmp_socket)),
                                "--monitor", "chardev=qmp"};
  for (size_t i = 0; i < images.size(); ++i) {
    const DaemonImage& m = images[i];
    // Both nodes spell out every option: children given by name inherit nothing (QS5), and
    // a failed read-write open must fail rather than fall back to read-only.
    const std::string common =
        fmt::format("cache.direct={},cache.no-flush=off,discard={},read-only={},auto-read-only=off",
                    on_off(m.cache == CacheMode::kNone), m.discard ? "unmap" : "ignore", on_off(m.readonly));
    a.push_back("--blockdev");
    a.push_back(fmt::format("driver=file,node-name=f{},filename={},locking=on,{}", i, qemu_value(m.path), common));
    a.push_back("--blockdev");
    a.push_back(fmt::format("driver={},node-name=d{},file=f{},{}", m.format, i, i, common));
  }
  // One connection per export: the kernel opens one socket per device.
  a.push_back("--nbd-server");
  a.push_back(fmt::format("addr.type=unix,addr.path={},max-connections={}", qemu_value(files.nbd_socket),
                          images.size()));
  for (size_t i = 0; i < images.size(); ++i) {
    a.push_back("--export");
    a.push_back(fmt::format("type=nbd,id={0},node-name=d{1},name={0},writable={2}{3}", daemon_export_name(i), i,
                            on_off(!images[i].readonly),
                            images[i].cache == CacheMode::kWritethrough ? ",writethrough=on" : ""));
  }
  a.push_back("--pidfile");
  a.push_back(files.pidfile);
  return a;
}

StorageDaemon::StorageDaemon(const std::string& exe, const std::vector<DaemonImage>& images, const DaemonFiles& files,
                             const std::string& object, std::chrono::milliseconds timeout,
                             const std::function<void(pid_t)>& started) {
  const std::string path = find_executable(exe);
  if (path.empty())
    throw Error(object, exe + " not found: image formats other than raw need it (Debian: qemu-system-common)");
  std::vector<std::string> argv = {path};
  for (std::string& s : storage_daemon_args(images, files)) argv.push_back(std::move(s));
  std::vector<char*> args;
  for (std::string& s : argv) args.push_back(s.data());
  args.push_back(nullptr);
  // A pidfile left by a daemon that was killed would read as ready at once.
  ::unlink(files.pidfile.c_str());
  const int log = ::open(files.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log < 0) throw Error(files.log, "cannot create the storage daemon's log: " + errno_string(errno));
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) {
    ::close(log);
    throw Error("/dev/null", "cannot open: " + errno_string(errno));
  }
  // Made before the fork: the child of a threaded process may only make async-signal-safe
  // calls until exec.
  const std::string exec_failed = "cannot execute " + exe + "\n";
  pid_ = ::fork();
  if (pid_ == 0) {
    // Its own session: a terminal's Ctrl-C reaches QEMU, never the disks under it. Its
    // sockets and pidfile are private (the state directory is 0700 too).
    ::setsid();
    ::umask(077);
    // A run blocks SIGTERM & co. for its own signal loop (SignalBlock): the daemon must
    // see them (stop() asks it to flush and go with SIGTERM).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD}) ::sigaction(s, &dfl, nullptr);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(log, 2);
    // Nothing else of ours (a caller's tap fds, pipes) goes with it.
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::execv(path.c_str(), args.data());
    (void)!::write(2, exec_failed.data(), exec_failed.size());
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(log);
  ::close(null);
  if (pid_ < 0) throw Error(object, "cannot start the storage daemon: " + errno_string(fork_errno));
  log_verbose(fmt::format("started {} as pid {}", exe, pid_));
  if (started) {
    try {
      started(pid_);
    } catch (...) {
      stop(std::chrono::milliseconds(0));
      throw;
    }
  }

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Ready: the pidfile names it (written after every export and the server exist, QS2).
    std::ifstream pf(files.pidfile);
    long named = 0;
    if (pf >> named && named == pid_) return;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      const bool known = r == pid_;
      pid_ = -1;
      const std::string why = daemon_reason(files.log);
      throw Error(object, "the storage daemon did not start: " +
                              (!why.empty() ? why
                               : known      ? fmt::format("it exited with status {}", WEXITSTATUS(status))
                                            : std::string("it exited")));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stop(std::chrono::milliseconds(0));
      throw Error(object, fmt::format("the storage daemon did not get ready within {} ms", timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

StorageDaemon::~StorageDaemon() { stop(std::chrono::seconds(10)); }

bool StorageDaemon::stop(std::chrono::milliseconds grace) noexcept {
  if (pid_ < 0) return true;
  const pid_t pid = pid_;
  pid_ = -1;
  int status = 0;
  if (grace.count() > 0 && ::kill(pid, SIGTERM) == 0) {
    switch (reaped_by(pid, std::chrono::steady_clock::now() + grace, status)) {
      case Reaped::kYes: return WIFEXITED(status) && WEXITSTATUS(status) == 0;
      case Reaped::kLost: return false;  // not ours to signal again
      case Reaped::kNo: break;
    }
  }
  ::kill(pid, SIGKILL);
  // A daemon in uninterruptible sleep (an image on a hung NFS mount) dies only when the I/O
  // returns: waiting for ever would hang the caller's teardown.
  constexpr std::chrono::seconds kKillWait{30};
  if (reaped_by(pid, std::chrono::steady_clock::now() + kKillWait, status) == Reaped::kNo)
    log_warning(fmt::format("storage daemon pid {} did not die within {} s of SIGKILL; left to init", pid,
                            kKillWait.count()));
  return false;
}

}  // namespace qemu_lio
