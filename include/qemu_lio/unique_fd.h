#pragma once
// A move-only owner of a file descriptor whose destructor closes it and never throws.

#include <unistd.h>

#include <cerrno>
#include <string>

namespace qemu_lio {

/// Appends everything readable from `fd` to `out` until EOF (EINTR retried). Returns false
/// with errno set if a read fails.
inline bool read_all(int fd, std::string& out) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

/// Owns one fd (or none, when negative).
class UniqueFd {
 public:
  /// Takes ownership of `fd`.
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  /// Gives up ownership: returns the fd, which the caller must close.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
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
