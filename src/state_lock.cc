#include "qemu_lio/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "qemu_lio/error.h"

namespace qemu_lio {

void ensure_state_dir(const std::string& dir) {
  // 0700: journals name every VM's images and kernel objects.
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw Error(dir, "cannot create state directory: " + errno_string(errno));
}

StateLock::StateLock(const std::string& state_dir) {
  ensure_state_dir(state_dir);
  std::string path = state_dir + "/lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
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
