#pragma once
// The backstop: a detached process, started before a run creates anything, that makes sure
// the run's LIO objects go once nothing holds them, however the wrapper ends. It waits on a
// pidfd (a recycled pid can never fool it) for the wrapper; then, while the journal names a
// live QEMU (a supervised child dying with us, a daemon from -pidfile, or QEMU exec'd in our
// place), for that; then tears down from the journal. A wrapper that finished its own
// teardown leaves no journal, and the backstop simply ends.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "qemu_lio/process_identity.h"

namespace qemu_lio {

/// A backstop that was forked and may not have recorded itself yet. The caller may go on
/// with work that creates nothing (the state lock, the inventory scan) while the backstop
/// starts, then must call await() before the first LIO object or journal record of its own.
class BackstopStart {
 public:
  BackstopStart() = default;
  BackstopStart(pid_t child, int ready_fd) : child_(child), ready_fd_(ready_fd) {}
  /// Reaps the intermediate child if await() was never called (errors then go unreported).
  ~BackstopStart();
  BackstopStart(BackstopStart&& o) noexcept;
  BackstopStart& operator=(BackstopStart&& o) noexcept;
  BackstopStart(const BackstopStart&) = delete;
  BackstopStart& operator=(const BackstopStart&) = delete;

  /// Returns once the backstop has recorded itself in the journal; at once if already
  /// awaited. Throws Error if it could not be started.
  void await();
  /// await() for a path that carries on alone whatever happened: a backstop that could
  /// not start is forgotten (the caller's own teardown then covers the set).
  void settle() noexcept;

 private:
  pid_t child_ = -1;
  int ready_fd_ = -1;
};

/// Forks the backstop for `journal_file` (which must exist), watching `wrapper` (this
/// process). It runs in its own session, in "/", with stdio on /dev/null and no other
/// inherited fd, logs to syslog, and records itself in the journal before the returned
/// start's await() returns. Throws Error if it cannot be forked; nothing has been created then.
BackstopStart start_backstop(const std::string& journal_file, const std::string& configfs_root,
                             const ProcessId& wrapper);

/// start_backstop(...).await(): the backstop has recorded itself when this returns.
void spawn_backstop(const std::string& journal_file, const std::string& configfs_root,
                    const ProcessId& wrapper);

/// Waits until `p` has exited (a pidfd where the kernel has them, else polling /proc).
void wait_until_gone(const ProcessId& p);

/// The daemon a QEMU started with -daemonize names in `pidfile`: alive, and started no
/// earlier than `not_before` (the wrapper's start), so a stale pidfile is never believed.
std::optional<ProcessId> find_daemon(const std::string& pidfile, uint64_t not_before);

}  // namespace qemu_lio
