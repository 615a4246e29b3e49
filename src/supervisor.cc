#include "qemu_lio/supervisor.h"

#include <fcntl.h>
#include <sys/prctl.h>
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
#include "qemu_lio/unique_fd.h"

namespace bp = boost::process;

namespace qemu_lio {

namespace {
constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

void set_action(int sig, void (*handler)(int), struct sigaction* old) {
  struct sigaction sa = {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, old);
}

// The exit status of a failed exec, as sh and tini give it.
int exec_failure_code(int err) { return err == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable; }

std::string checked_executable(const std::string& name) {
  std::string exe = find_executable(name);
  if (exe.empty() || ::access(exe.c_str(), F_OK) != 0)
    throw Error(name, "QEMU not found", exit_code::kNotFound);
  if (::access(exe.c_str(), X_OK) != 0)
    throw Error(exe, "QEMU is not executable: " + errno_string(errno), exit_code::kNotExecutable);
  return exe;
}
}  // namespace

ChildStatus decode_wait_status(int status) {
  ChildStatus cs;
  if (WIFSIGNALED(status)) {
    cs.signaled = true;
    cs.value = WTERMSIG(status);
  } else {
    cs.value = WEXITSTATUS(status);
  }
  return cs;
}

SignalBlock::SignalBlock() {
  set_action(SIGCHLD, SIG_DFL, &original_chld_);
  set_action(SIGPIPE, SIG_IGN, &original_pipe_);
  sigemptyset(&blocked_);
  for (int s : kForwarded) sigaddset(&blocked_, s);
  sigaddset(&blocked_, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blocked_, &original_);
}

SignalBlock::~SignalBlock() { restore(); }

void SignalBlock::restore() const {
  sigaction(SIGCHLD, &original_chld_, nullptr);
  sigaction(SIGPIPE, &original_pipe_, nullptr);
  sigprocmask(SIG_SETMASK, &original_, nullptr);
}

std::string find_executable(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return name;
  return bp::search_path(name).string();
}

ChildStatus supervise(const std::vector<std::string>& argv, const SignalBlock& block,
                      const std::function<void()>& before_exec,
                      const std::function<void(pid_t)>& on_started) {
  const std::string exe = checked_executable(argv.at(0));
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  const pid_t parent = ::getpid();
  // The hook's message travels on a pipe of ours: Boost's error pipe reliably carries the
  // code, but may read its message field short.
  int why[2];
  if (::pipe2(why, O_CLOEXEC) != 0) throw Error("pipe", errno_string(errno));
  UniqueFd why_read(why[0]), why_write(why[1]);

  pid_t pid = -1;
  try {
    bp::child child(bp::exe = exe, bp::args = args,
                    bp::extend::on_exec_setup = [&](auto& exec) {
                      // Between fork and exec. We are single-threaded, so the hook may
                      // allocate; it must not return into the parent's code paths.
                      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                      // The parent died before the line above: never run QEMU unowned.
                      if (::getppid() != parent) ::_exit(exit_code::kNotExecutable);
                      try {
                        if (before_exec) before_exec();
                      } catch (const std::exception& e) {
                        const std::string msg = e.what();
                        if (::write(why_write.get(), msg.data(), msg.size()) < 0) ::_exit(exit_code::kNotExecutable);
                        // ECANCELED: no execve failure gives it, so the parent can tell.
                        exec.set_error(std::error_code(ECANCELED, std::system_category()), "before exec");
                        ::_exit(exit_code::kNotExecutable);
                      }
                      // The caller's mask and dispositions: QEMU must see SIGTERM & co.
                      block.restore();
                    });
    pid = child.id();
    // From here we reap it ourselves; a joinable bp::child would terminate it on destruction.
    child.detach();
  } catch (const bp::process_error& e) {
    int err = e.code().value();
    if (err == ECANCELED) {
      // The hook's own "<object>: <cause>", written before the child exited.
      why_write = UniqueFd();
      std::string msg;
      read_all(why_read.get(), msg);  // a short message still names the failure
      auto colon = msg.find(": ");
      if (colon == std::string::npos) throw Error("QEMU", msg + " (QEMU was not started)");
      throw Error(msg.substr(0, colon), msg.substr(colon + 2) + " (QEMU was not started)");
    }
    throw Error(exe, "cannot execute QEMU: " + errno_string(err), exec_failure_code(err));
  }
  log_verbose("started " + exe + " as pid " + std::to_string(pid));
  if (on_started) on_started(pid);

  const pid_t our_group = ::getpgrp();
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
      if (::waitpid(pid, &status, WNOHANG) == pid) return decode_wait_status(status);
      continue;
    }
    // The terminal sends Ctrl-C (and hangup) to the whole foreground process group: QEMU,
    // in our group, has it already.
    if (info.si_code == SI_KERNEL && ::getpgid(pid) == our_group) continue;
    // The child is not reaped yet (we would have returned), so its pid is still its own.
    if (::kill(pid, sig) != 0) log_warning("cannot forward signal to QEMU: " + errno_string(errno));
  }
}

void exec_in_place(const std::string& exe, const std::vector<std::string>& argv,
                   const SignalBlock& block) {
  const std::string path = exe.empty() ? checked_executable(argv.at(0)) : exe;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  block.restore();
  ::execv(path.c_str(), args.data());
  int err = errno;
  // Still us: the run's signal state again, so that the caller's cleanup is not interrupted.
  set_action(SIGCHLD, SIG_DFL, nullptr);
  set_action(SIGPIPE, SIG_IGN, nullptr);
  sigprocmask(SIG_BLOCK, &block.blocked(), nullptr);
  throw Error(path, "cannot execute QEMU: " + errno_string(err), exec_failure_code(err));
}

}  // namespace qemu_lio
