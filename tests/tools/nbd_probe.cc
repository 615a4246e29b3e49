// qemu-lio-nbd-probe: drives the library's NBD handshake and netlink client by hand, so the
// VM suite can show them against the real kernel and qemu-storage-daemon before qemu-lio
// itself serves image formats through them (issue 12). Test-only; not installed.
//   qemu-lio-nbd-probe connect SOCKET EXPORT BACKEND   prints the nbd index
//   qemu-lio-nbd-probe disconnect INDEX

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "qemu_lio/error.h"
#include "qemu_lio/nbd_handshake.h"
#include "qemu_lio/nbd_netlink.h"
#include "qemu_lio/unique_fd.h"

using namespace qemu_lio;

namespace {

uint32_t connect_export(const std::string& path, const std::string& name, const std::string& backend) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw Error(path, "socket path too long");
  std::strcpy(a.sun_path, path.c_str());
  if (fd.get() < 0 || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw Error(path, "cannot connect: " + errno_string(errno));
  const NbdExport e = nbd_negotiate(fd.get(), name, path, std::chrono::milliseconds(30000));
  NbdConnectRequest r;
  r.sock_fd = fd.get();
  r.size_bytes = e.size;
  r.block_size = 512;
  // The flags the kernel acts on (docs/nbd-facts.md NH7); the kernel keeps its own reference
  // to the socket (NL4), so ours closes on return.
  r.server_flags = e.flags & (nbd_flag::kHasFlags | nbd_flag::kReadOnly | nbd_flag::kSendFlush |
                              nbd_flag::kSendFua | nbd_flag::kSendTrim);
  r.backend = backend;
  return NbdNetlink(path).connect(r);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "connect" && argc == 5) {
      std::printf("%u\n", connect_export(argv[2], argv[3], argv[4]));
      return 0;
    }
    if (cmd == "disconnect" && argc == 3) {
      NbdNetlink().disconnect(static_cast<uint32_t>(std::stoul(argv[2])));
      return 0;
    }
    std::fprintf(stderr, "usage: %s connect SOCKET EXPORT BACKEND | disconnect INDEX\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qemu-lio-nbd-probe: error: %s\n", e.what());
    return 1;
  }
}
