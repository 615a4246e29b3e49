#include "qemu_lio/monitor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "qemu_lio/configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/provisioner.h"

namespace qemu_lio {

int open_pidfd(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) throw Error("pid " + std::to_string(pid), "cannot watch process: " + errno_string(errno));
  return fd;
}

pid_t read_pidfile(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) throw Error(path, "QEMU wrote no pid to its -pidfile");
  return static_cast<pid_t>(pid);
}

namespace {

[[noreturn]] void monitor_main(int pidfd, const std::string& journal_file,
                               const std::string& configfs_root,
                               const std::vector<std::string>& extra_files) {
  // Nothing the caller's terminal or process group does may stop the monitor early.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
  // Our caller may wait for EOF on pipes we inherited (containerd, libvirt's log pipe).
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != pidfd) ::close(fd);
  openlog("qemu-lio", LOG_PID, LOG_DAEMON);

  struct pollfd p = {pidfd, POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  int status = 0;
  try {
    JournalContents j = read_journal(journal_file);
    auto fs = make_real_configfs(configfs_root);
    int failed = run_undo(*fs, j.undo, RetryPolicy{});
    if (failed == 0) {
      ::unlink(journal_file.c_str());
    } else {
      syslog(LOG_ERR, "%s: %d LIO object(s) left; run 'qemu-lio gc'", journal_file.c_str(), failed);
      status = 1;
    }
  } catch (const std::exception& e) {
    // A missing journal means the owner's own teardown already finished.
    if (::access(journal_file.c_str(), F_OK) == 0) {
      syslog(LOG_ERR, "%s", e.what());
      status = 1;
    }
  }
  for (const std::string& f : extra_files) ::unlink(f.c_str());
  _exit(status);
}

}  // namespace

void spawn_teardown_monitor(int pidfd, const std::string& journal_file,
                            const std::string& configfs_root,
                            const std::vector<std::string>& extra_files) {
  pid_t child = ::fork();
  if (child < 0) throw Error("teardown monitor", "cannot fork: " + errno_string(errno));
  if (child == 0) {
    // Double fork: the monitor is re-parented to init (or a subreaper) and never becomes
    // a zombie of QEMU's process in exec mode.
    ::setsid();
    pid_t grandchild = ::fork();
    if (grandchild != 0) _exit(grandchild < 0 ? 1 : 0);
    monitor_main(pidfd, journal_file, configfs_root, extra_files);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("teardown monitor", "could not be started");
}

}  // namespace qemu_lio
