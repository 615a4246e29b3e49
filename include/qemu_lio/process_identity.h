#pragma once
// A process named so that a recycled pid is never mistaken for it: pid plus the start
// time the kernel records in /proc/PID/stat.

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace qemu_lio {

/// A process as the journal records it.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;  ///< field 22 of /proc/PID/stat (clock ticks after boot)
  bool operator==(const ProcessId& o) const { return pid == o.pid && start_time == o.start_time; }
};

/// The identity of a running process, or nullopt if there is none with that pid.
std::optional<ProcessId> identify_process(pid_t pid);

/// True if `p` still runs: same pid, same start time, and not a zombie (a zombie holds no
/// vhost endpoint any more, so its objects may go).
bool process_alive(const ProcessId& p);

}  // namespace qemu_lio
