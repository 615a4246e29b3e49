// qemu-lio-nbd-probe: drives the library's NBD handshake and netlink client by hand, so the
// VM suite can show them against the real kernel and qemu-storage-daemon before qemu-lio
// itself serves image formats through them (issue 12). Test-only; not installed.
//   qemu-lio-nbd-probe connect SOCKET EXPORT BACKEND   prints the nbd index
//   qemu-lio-nbd-probe disconnect INDEX

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "qemu_lio/nbd_netlink.h"
#include "qemu_lio/served_disks.h"

using namespace qemu_lio;

namespace {

// The connect qemu-lio does for a served image, with the kernel's default block size.
uint32_t connect_export(const std::string& path, const std::string& name, const std::string& backend) {
  NbdNetlink nl(path);
  return connect_nbd_export(nl, path, name, backend, 512, path, std::chrono::milliseconds(30000));
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
