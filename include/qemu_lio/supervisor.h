#pragma once
// A small tini-like supervisor: QEMU runs as our child, the signals an operator or an
// orchestrator sends us are forwarded to it, and we learn exactly how it ended. QEMU never
// outlives us: it gets SIGKILL when we die, however we die.

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace qemu_lio {

/// How the child ended.
struct ChildStatus {
  bool signaled = false;  ///< killed by a signal
  int value = 0;          ///< exit code, or signal number when signaled
  /// The status a shell would report: the exit code, or 128+signal.
  int exit_code() const { return signaled ? 128 + value : value; }
};

/// Decodes a waitpid(2) status: the one place where exit codes are mapped.
ChildStatus decode_wait_status(int status);

/// The process state a run needs from its first instruction, undone on destruction:
/// - the forwarded signals (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) and SIGCHLD
///   are blocked, so nothing that arrives while disks are provisioned kills us half-way;
///   they are delivered to QEMU once it runs;
/// - SIGCHLD is set to its default action: a caller that ignores it (SIG_IGN is inherited
///   across exec, e.g. from Python) would make the kernel reap QEMU behind our back;
/// - SIGPIPE is ignored: a closed stderr pipe (`qemu-lio -v ... | head`) must not kill us
///   in the middle of provisioning or teardown.
/// The child gets the caller's original mask and dispositions back before exec.
class SignalBlock {
 public:
  SignalBlock();
  ~SignalBlock();
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;
  /// The set that is blocked (and waited for).
  const sigset_t& blocked() const { return blocked_; }
  /// Restores the caller's mask and the SIGCHLD/SIGPIPE dispositions: for a child before
  /// exec, or before exec'ing QEMU in place. Async-signal-safe.
  void restore() const;

 private:
  sigset_t blocked_;
  sigset_t original_;
  struct sigaction original_chld_;
  struct sigaction original_pipe_;
};

/// Finds `name` like execvp would: as is if it holds a '/', else on PATH. "" if not found.
std::string find_executable(const std::string& name);

/// Starts argv (argv[0] looked up with find_executable) as a child that inherits our stdio
/// and terminal. The child dies with us (PR_SET_PDEATHSIG), and runs `before_exec` just
/// before exec: there it records itself in the journal, so QEMU never runs unrecorded even
/// if we are killed right after the fork. If `before_exec` throws, QEMU is not started and
/// Error (exit 1) is thrown here. `on_started(pid)` runs in the parent once the child
/// exists. Forwards the blocked signals until the child exits, never
/// signalling it after it was reaped, and never twice: a signal the terminal sent to our
/// whole process group (Ctrl-C) has reached the child already. Throws Error with exit code
/// 127 (not found) or 126 (cannot execute) if it cannot start.
ChildStatus supervise(const std::vector<std::string>& argv, const SignalBlock& block,
                      const std::function<void()>& before_exec = {},
                      const std::function<void(pid_t)>& on_started = {});

/// Replaces this process with argv[0] (looked up on PATH unless `exe` is given), with the
/// caller's signal state restored. Throws Error (126/127) if exec fails.
[[noreturn]] void exec_in_place(const std::string& exe, const std::vector<std::string>& argv,
                                const SignalBlock& block);

}  // namespace qemu_lio
