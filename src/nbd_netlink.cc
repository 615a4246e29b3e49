#include "qemu_lio/nbd_netlink.h"

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstring>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace nbd_genl {
namespace {

// Netlink is host-endian and 4-byte aligned throughout.
template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void pad(std::string& s) { s.append((4 - s.size() % 4) % 4, '\0'); }

// One attribute; `nested` marks a container (the kernel's legacy parser ignores the bit).
void attr(std::string& s, uint16_t type, const std::string& payload, bool nested = false) {
  put<uint16_t>(s, static_cast<uint16_t>(NLA_HDRLEN + payload.size()));
  put<uint16_t>(s, static_cast<uint16_t>(type | (nested ? NLA_F_NESTED : 0)));
  s += payload;
  pad(s);
}
template <class T>
std::string bytes(T v) {
  std::string s;
  put(s, v);
  return s;
}

std::string message(uint16_t type, uint32_t seq, uint8_t cmd, uint8_t version, const std::string& attrs) {
  std::string m;
  put<uint32_t>(m, static_cast<uint32_t>(NLMSG_HDRLEN + GENL_HDRLEN + attrs.size()));
  put<uint16_t>(m, type);
  put<uint16_t>(m, NLM_F_REQUEST | NLM_F_ACK);
  put<uint32_t>(m, seq);
  put<uint32_t>(m, 0);  // the kernel fills in our port id
  put<uint8_t>(m, cmd);
  put<uint8_t>(m, version);
  put<uint16_t>(m, 0);
  return m + attrs;
}

template <class T>
T get(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof v);
  return v;
}

}  // namespace

std::string get_family(uint32_t seq) {
  std::string a;
  attr(a, CTRL_ATTR_FAMILY_NAME, std::string(NBD_GENL_FAMILY_NAME) + '\0');
  return message(GENL_ID_CTRL, seq, CTRL_CMD_GETFAMILY, 1, a);
}

std::string connect(uint16_t family, uint32_t seq, const NbdConnectRequest& r) {
  std::string a, item, items;
  attr(a, NBD_ATTR_SIZE_BYTES, bytes<uint64_t>(r.size_bytes));
  attr(a, NBD_ATTR_BLOCK_SIZE_BYTES, bytes<uint64_t>(r.block_size));
  attr(a, NBD_ATTR_SERVER_FLAGS, bytes<uint64_t>(r.server_flags));
  attr(item, NBD_SOCK_FD, bytes<uint32_t>(static_cast<uint32_t>(r.sock_fd)));
  attr(items, NBD_SOCK_ITEM, item, true);
  attr(a, NBD_ATTR_SOCKETS, items, true);
  if (!r.backend.empty()) attr(a, NBD_ATTR_BACKEND_IDENTIFIER, r.backend + '\0');
  return message(family, seq, NBD_CMD_CONNECT, NBD_GENL_VERSION, a);
}

std::string disconnect(uint16_t family, uint32_t seq, uint32_t index) {
  std::string a;
  attr(a, NBD_ATTR_INDEX, bytes<uint32_t>(index));
  return message(family, seq, NBD_CMD_DISCONNECT, NBD_GENL_VERSION, a);
}

Reply parse(const std::string& d, uint32_t seq) {
  Reply r;
  for (size_t at = 0; at + NLMSG_HDRLEN <= d.size();) {
    const uint32_t len = get<uint32_t>(d, at);
    const uint16_t type = get<uint16_t>(d, at + 4);
    if (len < NLMSG_HDRLEN || at + len > d.size()) break;  // truncated: nothing more to trust
    if (get<uint32_t>(d, at + 8) == seq) {
      if (type == NLMSG_ERROR && len >= NLMSG_HDRLEN + sizeof(int32_t)) {
        r.error = get<int32_t>(d, at + NLMSG_HDRLEN);
      } else if (type != NLMSG_DONE && type != NLMSG_NOOP && len >= NLMSG_HDRLEN + GENL_HDRLEN) {
        // Attributes of a generic netlink reply: a family id (GETFAMILY) or an index (CONNECT).
        const uint8_t cmd = get<uint8_t>(d, at + NLMSG_HDRLEN);
        for (size_t a = at + NLMSG_HDRLEN + GENL_HDRLEN; a + NLA_HDRLEN <= at + len;) {
          const uint16_t alen = get<uint16_t>(d, a);
          const uint16_t atype = get<uint16_t>(d, a + 2) & NLA_TYPE_MASK;
          if (alen < NLA_HDRLEN || a + alen > at + len) break;
          if (type == GENL_ID_CTRL && cmd == CTRL_CMD_NEWFAMILY && atype == CTRL_ATTR_FAMILY_ID &&
              alen >= NLA_HDRLEN + 2)
            r.family = get<uint16_t>(d, a + NLA_HDRLEN);
          else if (type != GENL_ID_CTRL && atype == NBD_ATTR_INDEX && alen >= NLA_HDRLEN + 4)
            r.index = get<uint32_t>(d, a + NLA_HDRLEN);
          a += NLA_ALIGN(alen);
        }
      }
    }
    at += NLMSG_ALIGN(len);
  }
  return r;
}

}  // namespace nbd_genl

NbdNetlink::NbdNetlink(const std::string& object) : object_(object) {
  fd_ = UniqueFd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
  if (fd_.get() < 0) throw Error(object_, "cannot open a generic netlink socket: " + errno_string(errno));
  const uint32_t seq = seq_++;
  const nbd_genl::Reply r = transact(nbd_genl::get_family(seq), seq, "looking up the nbd netlink family", ENOENT);
  if (!r.family)
    throw Error(object_, "the kernel has no nbd netlink family: load the nbd module (Linux 4.12 or later)");
  family_ = *r.family;
}

uint32_t NbdNetlink::connect(const NbdConnectRequest& req) {
  const uint32_t seq = seq_++;
  const nbd_genl::Reply r = transact(nbd_genl::connect(family_, seq, req), seq, "connecting an nbd device");
  if (!r.index) throw Error(object_, "the kernel connected an nbd device but did not say which");
  return *r.index;
}

void NbdNetlink::disconnect(uint32_t index) {
  const uint32_t seq = seq_++;
  transact(nbd_genl::disconnect(family_, seq, index), seq, fmt::format("disconnecting nbd{}", index));
}

nbd_genl::Reply NbdNetlink::transact(const std::string& message, uint32_t seq, const std::string& what,
                                     int tolerated) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_.get(), message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(message.size()))
    throw Error(object_, what + ": cannot send to the kernel: " + errno_string(errno));
  // The answer (a reply, then the ack) comes before sendto's caller could do anything else;
  // the bound only guards against a kernel that never acks.
  nbd_genl::Reply out;
  std::string buf(65536, '\0');
  for (;;) {
    pollfd p{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 10000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) throw Error(object_, what + ": the kernel did not answer");
    const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(object_, what + ": " + errno_string(errno));
    const nbd_genl::Reply r = nbd_genl::parse(buf.substr(0, static_cast<size_t>(n)), seq);
    if (r.family) out.family = r.family;
    if (r.index) out.index = r.index;
    if (r.error) {
      if (*r.error != 0 && -*r.error != tolerated) throw Error(object_, what + ": " + errno_string(-*r.error));
      return out;  // the ack ends the exchange
    }
  }
}

}  // namespace qemu_lio
