#pragma once
// The detached teardown monitor for the modes where QEMU is not our child: exec mode (QEMU
// keeps our pid) and -daemonize (QEMU's daemon is re-parented away from us). It waits on a
// pidfd, so a recycled pid can never fool it, then tears down from the journal.

#include <sys/types.h>

#include <string>
#include <vector>

namespace qemu_lio {

/// pidfd_open(2); throws Error if the process is gone or the kernel lacks pidfds.
int open_pidfd(pid_t pid);

/// Forks a detached process (own session, stdio on /dev/null, errors to syslog) that waits
/// until the process behind `pidfd` exits, then removes every object of `journal_file`
/// under `configfs_root`, deletes `extra_files`, and deletes the journal if the kernel is
/// clean. Returns once the monitor runs; the caller keeps its own copy of `pidfd`.
void spawn_teardown_monitor(int pidfd, const std::string& journal_file,
                            const std::string& configfs_root,
                            const std::vector<std::string>& extra_files);

/// Reads the pid QEMU wrote to a -pidfile; throws Error if it is missing or malformed.
pid_t read_pidfile(const std::string& path);

}  // namespace qemu_lio
