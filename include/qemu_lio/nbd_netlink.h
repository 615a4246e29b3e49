#pragma once
// The kernel's NBD client, driven over its generic netlink family "nbd" (docs/nbd-facts.md
// NL1-NL12). Messages are built and parsed here by hand: the few attributes nbd takes do not
// justify libnl in a static binary. The encoding is kept apart from the socket so the bytes
// can be checked without a kernel.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

/// What CONNECT tells the kernel. The kernel negotiates nothing itself (NL3): `sock_fd` is a
/// socket past nbd_negotiate, and size and flags are what the server said.
struct NbdConnectRequest {
  int sock_fd = -1;
  uint64_t size_bytes = 0;
  uint64_t block_size = 512;    ///< always sent: the kernel's default is 1024 (NH7)
  uint64_t server_flags = 0;    ///< nbd_flag bits the kernel acts on
  std::string backend;          ///< /sys/block/nbdN/backend: how qemu-lio knows its device (NL9)
};

/// Netlink messages for the "nbd" family `family` (its id, resolved at run time).
namespace nbd_genl {
/// CTRL_CMD_GETFAMILY for "nbd".
std::string get_family(uint32_t seq);
/// NBD_CMD_CONNECT without an index (the kernel picks a free device, NL5) and with no
/// timeout, dead-connection timeout or client flags (NT1, NL11).
std::string connect(uint16_t family, uint32_t seq, const NbdConnectRequest& r);
/// NBD_CMD_DISCONNECT of device `index`.
std::string disconnect(uint16_t family, uint32_t seq, uint32_t index);

/// What one reply datagram says: a family id (GETFAMILY), a device index (CONNECT), an
/// error (negative errno) or an acknowledgement (0), for the request `seq`.
struct Reply {
  std::optional<uint16_t> family;
  std::optional<uint32_t> index;
  std::optional<int> error;  ///< NLMSG_ERROR: 0 is the ack
};
/// Parses every message of one datagram that answers `seq`; others are ignored.
Reply parse(const std::string& datagram, uint32_t seq);
}  // namespace nbd_genl

/// A NETLINK_GENERIC socket bound to the nbd family. Needs CAP_SYS_ADMIN for connect and
/// disconnect. Resolving the family loads the nbd module with its defaults if it is not
/// loaded (NL2): load it first if the parameters matter.
class NbdNetlink {
 public:
  /// Opens the socket and resolves the family; throws Error naming `object` if the kernel
  /// has no nbd.
  explicit NbdNetlink(const std::string& object = "nbd");

  /// Connects a device; returns its index (nbdN). Throws Error with the kernel's errno.
  uint32_t connect(const NbdConnectRequest& r);
  /// Disconnects device `index` (in-flight requests fail with EIO, NL7). Throws Error.
  void disconnect(uint32_t index);

 private:
  // Sends `message` and reads up to the kernel's ack; throws Error on an errno other than
  // `tolerated` (which ends the exchange like an ack).
  nbd_genl::Reply transact(const std::string& message, uint32_t seq, const std::string& what, int tolerated = 0);

  std::string object_;
  UniqueFd fd_;
  uint16_t family_ = 0;
  uint32_t seq_ = 1;
};

}  // namespace qemu_lio
