#include "qemu_lio/supervisor.h"

#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/search_path.hpp>
#include <cerrno>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"

namespace bp = boost::process;

namespace qemu_lio {

namespace {
constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
}

SignalBlock::SignalBlock() {
  sigemptyset(&blocked_);
  for (int s : kForwarded) sigaddset(&blocked_, s);
  sigaddset(&blocked_, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blocked_, &original_);
}

SignalBlock::~SignalBlock() { sigprocmask(SIG_SETMASK, &original_, nullptr); }

std::string find_executable(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return name;
  return bp::search_path(name).string();
}

ChildStatus supervise(const std::vector<std::string>& argv, const SignalBlock& block,
                      const std::function<void(pid_t)>& on_started) {
  const std::string& name = argv.at(0);
  std::string exe = find_executable(name);
  if (exe.empty() || ::access(exe.c_str(), F_OK) != 0)
    throw Error(name, "QEMU not found", exit_code::kNotFound);
  if (::access(exe.c_str(), X_OK) != 0)
    throw Error(exe, "QEMU is not executable: " + errno_string(errno), exit_code::kNotExecutable);

  std::vector<std::string> args(argv.begin() + 1, argv.end());
  const sigset_t original = block.original();
  pid_t pid = -1;
  try {
    bp::child child(bp::exe = exe, bp::args = args,
                    // Restore the caller's mask in the child, or QEMU would start with
                    // SIGTERM and friends blocked and never see them.
                    bp::extend::on_exec_setup = [&original](auto&) {
                      sigprocmask(SIG_SETMASK, &original, nullptr);
                    });
    pid = child.id();
    // From here we reap it ourselves; a joinable bp::child would terminate it on destruction.
    child.detach();
  } catch (const bp::process_error& e) {
    int err = e.code().value();
    throw Error(exe, "cannot execute QEMU: " + errno_string(err),
                err == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable);
  }
  log_verbose("started " + exe + " as pid " + std::to_string(pid));
  if (on_started) on_started(pid);

  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&block.blocked(), &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      throw Error("sigwaitinfo", errno_string(errno));
    }
    if (sig == SIGCHLD) {
      // Several SIGCHLD can arrive as one: ask the kernel, not the signal.
      int status = 0;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        ChildStatus cs;
        if (WIFSIGNALED(status)) {
          cs.signaled = true;
          cs.value = WTERMSIG(status);
        } else {
          cs.value = WEXITSTATUS(status);
        }
        return cs;
      }
      continue;
    }
    // The child is not reaped yet (we would have returned), so its pid is still its own.
    if (::kill(pid, sig) != 0) log_warning("cannot forward signal to QEMU: " + errno_string(errno));
  }
}

}  // namespace qemu_lio
