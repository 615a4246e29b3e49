#pragma once
// A short exclusive flock on <state_dir>/lock. It makes "is this image already exported?"
// and the creation of its backstore one step for every qemu-lio process on the host.

#include <string>

namespace qemu_lio {

/// Holds the lock for its lifetime. Creates the state dir (0700) if needed.
class StateLock {
 public:
  /// Blocks until the lock is held. Throws Error if the state dir cannot be used.
  explicit StateLock(const std::string& state_dir);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

/// Creates `dir` with mode 0700 if missing; throws Error if it cannot.
void ensure_state_dir(const std::string& dir);

}  // namespace qemu_lio
