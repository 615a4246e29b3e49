#pragma once
// A small tini-like supervisor: QEMU runs as our child, the signals an operator or an
// orchestrator sends us are forwarded to it, and we learn exactly how it ended.

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

/// Blocks the forwarded signals (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) and
/// SIGCHLD for the lifetime of the object, so nothing that arrives while disks are being
/// provisioned kills us half-way; they are delivered to QEMU once it runs. Restores the
/// previous mask on destruction.
class SignalBlock {
 public:
  SignalBlock();
  ~SignalBlock();
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;
  /// The set that is blocked (and waited for).
  const sigset_t& blocked() const { return blocked_; }
  /// The mask to restore in the child before exec.
  const sigset_t& original() const { return original_; }

 private:
  sigset_t blocked_;
  sigset_t original_;
};

/// Finds `name` like execvp would: as is if it holds a '/', else on PATH. "" if not found.
std::string find_executable(const std::string& name);

/// Starts argv (argv[0] looked up with find_executable) as a child that inherits our stdio
/// and terminal, with the original signal mask restored before exec. Forwards the blocked
/// signals to it until it exits, never signalling it after it was reaped. Calls
/// `on_started(pid)` once the child exists. Throws Error with exit code 127 (not found) or
/// 126 (cannot execute) if it cannot start.
ChildStatus supervise(const std::vector<std::string>& argv, const SignalBlock& block,
                      const std::function<void(pid_t)>& on_started = {});

}  // namespace qemu_lio
