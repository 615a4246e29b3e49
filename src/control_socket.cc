#include "qemu_lio/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstring>

#include "qemu_lio/error.h"

namespace qemu_lio {

std::optional<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return std::nullopt;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

ControlSocket::ControlSocket(const std::string& path) : path_(path) {
  if (!unix_address(path)) {
    why_not_ = fmt::format("its control socket path {} is longer than a unix socket allows ({} bytes); "
                           "use a shorter --state-dir or VM name",
                           path, sizeof(sockaddr_un{}.sun_path) - 1);
    return;
  }
  // CLOEXEC until QEMU starts (the capability probe and modprobe need no copy); then
  // inherited by number. Above 2: a wrapper started with stdio closed must not give QEMU a
  // socket that -daemonize then replaces with /dev/null.
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) throw Error(path, "cannot create the control socket: " + errno_string(errno));
  fd_ = UniqueFd(::fcntl(s.get(), F_DUPFD_CLOEXEC, 3));
  if (fd_.get() < 0) throw Error(path, "cannot create the control socket: " + errno_string(errno));
}

std::vector<std::string> ControlSocket::qemu_options() const {
  if (!enabled()) return {};
  return {"-chardev", fmt::format("socket,id={},fd={},server=on,wait=off", kControlChardevId, fd_.get()),
          "-mon", fmt::format("chardev={},mode=control", kControlChardevId)};
}

void ControlSocket::inherit_in_exec() const {
  if (enabled()) ::fcntl(fd_.get(), F_SETFD, 0);
}

void ControlSocket::bind_and_listen() {
  if (!enabled()) return;
  const sockaddr_un addr = *unix_address(path_);  // the constructor checked that it fits
  // Named after the wrapper's pid: a socket left by a killed run of a recycled pid is dead.
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path_.c_str());
  if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw Error(path_, "cannot bind the control socket: " + errno_string(errno));
  // The state directory is 0700 already; the socket itself says the same.
  if (::chmod(path_.c_str(), 0600) != 0 || ::listen(fd_.get(), 4) != 0)
    throw Error(path_, "cannot set up the control socket: " + errno_string(errno));
}

}  // namespace qemu_lio
