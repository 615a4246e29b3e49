#pragma once
// A move-only owner of a file descriptor whose destructor closes it and never throws.

#include <unistd.h>

namespace qemu_lio {

/// Owns one fd (or none, when negative).
class UniqueFd {
 public:
  /// Takes ownership of `fd`.
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  /// The fd, still owned.
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace qemu_lio
