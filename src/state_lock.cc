#include "qemu_lio/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>

#include "qemu_lio/error.h"

namespace qemu_lio {

void ensure_state_dir(const std::string& dir) {
  // 0700: journals name every VM's images and kernel objects.
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw Error(dir, "cannot create state directory: " + errno_string(errno));
  // gc runs the journals found here as root, and the lock decides who may export an image:
  // whoever can write this directory could plant a journal or swap the lock. So it must be
  // a real directory (lstat: a symlink could point anywhere), owned by root or by us, and
  // writable by nobody else.
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0)
    throw Error(dir, "cannot use state directory: " + errno_string(errno));
  if (S_ISLNK(st.st_mode))
    throw Error(dir, "state directory is a symlink; use a real directory");
  if (!S_ISDIR(st.st_mode)) throw Error(dir, "state directory is not a directory");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    throw Error(dir, fmt::format("state directory is owned by uid {}, not by root or uid {}",
                                 st.st_uid, ::geteuid()));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw Error(dir, fmt::format("state directory is writable by {} (mode {:04o}); "
                                 "chmod go-w it",
                                 (st.st_mode & S_IWOTH) ? "others" : "its group",
                                 st.st_mode & 07777));
}

StateLock::StateLock(const std::string& state_dir) {
  ensure_state_dir(state_dir);
  std::string path = state_dir + "/lock";
  // O_NOFOLLOW: a lock that is a symlink was planted; following it would create a file
  // anywhere, as root, and lock that instead.
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) throw Error(path, "cannot open lock: " + errno_string(errno));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    ::close(fd_);
    throw Error(path, "cannot lock: " + errno_string(e));
  }
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

}  // namespace qemu_lio
