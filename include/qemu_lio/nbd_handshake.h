#pragma once
// The client's half of NBD's fixed-newstyle handshake, up to the transmission phase. The
// kernel's NBD client negotiates nothing: it starts sending requests on the socket it is
// given, with the size and flags it is told (docs/nbd-facts.md NL3). So qemu-lio talks to
// qemu-storage-daemon first, on the unix socket, and hands the kernel a socket that is past
// NBD_OPT_GO.

#include <chrono>
#include <cstdint>
#include <string>

namespace qemu_lio {

/// Transmission flags of an export (NBD protocol; docs/nbd-facts.md NH6, NH7).
namespace nbd_flag {
constexpr uint16_t kHasFlags = 1 << 0;
constexpr uint16_t kReadOnly = 1 << 1;
constexpr uint16_t kSendFlush = 1 << 2;
constexpr uint16_t kSendFua = 1 << 3;
constexpr uint16_t kSendTrim = 1 << 5;
constexpr uint16_t kCanMultiConn = 1 << 8;
}  // namespace nbd_flag

/// What the server said about the export.
struct NbdExport {
  uint64_t size = 0;        ///< bytes
  uint16_t flags = 0;       ///< nbd_flag bits
  uint32_t min_block = 1;   ///< the server's minimum request alignment (NH3)
  uint32_t preferred_block = 4096;
  uint32_t max_block = 32 * 1024 * 1024;
};

/// Negotiates the export `name` on the connected stream socket `fd` with NBD_OPT_GO (asking
/// for block sizes) and leaves the socket in the transmission phase. Only simple replies
/// are ever agreed: the kernel parses no structured ones (NH4). Throws Error naming
/// `object` (the image, for the user) with the server's own refusal, a protocol violation,
/// EOF, or `timeout` passing.
NbdExport nbd_negotiate(int fd, const std::string& name, const std::string& object,
                        std::chrono::milliseconds timeout);

}  // namespace qemu_lio
