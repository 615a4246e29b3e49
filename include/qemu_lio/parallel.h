#pragma once
// A bounded pool for the per-disk work of one run: most of a disk's provisioning and
// teardown time is spent waiting in the kernel (an unlink of a LUN link, an rmdir of a TPG),
// and those waits overlap when disks are handled from several threads (docs/benchmarks.md).

#include <cstddef>
#include <functional>

namespace qemu_lio {

/// How many disks of one run are worked on at once, at most.
constexpr std::size_t kMaxParallelDisks = 16;

/// Calls job(0) ... job(jobs - 1), each exactly once, from up to `max_threads` threads (the
/// caller's own included); returns once every call has returned. Jobs are started in index
/// order. If a thread cannot be started, the ones that could (at least the caller) do all
/// the jobs. A job must not throw: what it throws ends the process (std::terminate).
void run_parallel(std::size_t jobs, std::size_t max_threads,
                  const std::function<void(std::size_t)>& job) noexcept;

}  // namespace qemu_lio
