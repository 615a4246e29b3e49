// The nbd generic netlink messages byte for byte, and the parsing of the kernel's answers,
// without a kernel (the VM's configfs suite connects a real device with them).

#include "qemu_lio/nbd_netlink.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace qemu_lio {
namespace {

// Little-endian helpers (the test machines are x86-64; netlink is host-endian).
std::string u16(uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }
std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string u64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string attr(uint16_t type, const std::string& payload) {
  std::string s = u16(static_cast<uint16_t>(4 + payload.size())) + u16(type) + payload;
  s.append((4 - s.size() % 4) % 4, '\0');
  return s;
}
std::string header(uint32_t len, uint16_t type, uint16_t flags, uint32_t seq) {
  return u32(len) + u16(type) + u16(flags) + u32(seq) + u32(0);
}

TEST(NbdNetlink, GetFamilyAsksForNbdByName) {
  const std::string attrs = attr(2, std::string("nbd") + '\0');  // CTRL_ATTR_FAMILY_NAME
  EXPECT_EQ(nbd_genl::get_family(7), header(16 + 4 + attrs.size(), 0x10, 0x5, 7) + "\x03\x01" + u16(0) + attrs);
}

TEST(NbdNetlink, ConnectCarriesSizeBlockSizeFlagsOneSocketAndTheBackendButNoIndexOrTimeout) {
  NbdConnectRequest r;
  r.sock_fd = 9;
  r.size_bytes = 1 << 30;
  r.block_size = 4096;
  r.server_flags = 0x10d;
  r.backend = "qemu-lio:vm.1.journal:0";
  const std::string sockets = attr(0x8000 | 7, attr(0x8000 | 1, attr(1, u32(9))));
  const std::string attrs = attr(2, u64(1 << 30)) + attr(3, u64(4096)) + attr(5, u64(0x10d)) + sockets +
                            attr(10, r.backend + '\0');
  const std::string m = nbd_genl::connect(0x22, 3, r);
  EXPECT_EQ(m, header(20 + attrs.size(), 0x22, 0x5, 3) + "\x01\x01" + u16(0) + attrs);
  EXPECT_EQ(m.size() % 4, 0u);
}

TEST(NbdNetlink, DisconnectNamesTheIndex) {
  const std::string attrs = attr(1, u32(5));
  EXPECT_EQ(nbd_genl::disconnect(0x22, 4, 5), header(20 + attrs.size(), 0x22, 0x5, 4) + "\x02\x01" + u16(0) + attrs);
}

TEST(NbdNetlink, RepliesGiveTheFamilyTheIndexAndTheKernelsErrno) {
  // GETFAMILY's answer: CTRL_CMD_NEWFAMILY with the name and the id.
  const std::string fam_attrs = attr(2, std::string("nbd") + '\0') + attr(1, u16(0x22));
  const std::string fam = header(20 + fam_attrs.size(), 0x10, 0, 7) + "\x01\x02" + u16(0) + fam_attrs;
  const std::string ack = header(16 + 4 + 16, 2, 0, 7) + u32(0) + header(20, 0x10, 5, 7);
  nbd_genl::Reply r = nbd_genl::parse(fam + ack, 7);
  EXPECT_EQ(r.family, 0x22);
  EXPECT_EQ(r.error, 0);
  // CONNECT's answer carries the index the kernel chose.
  const std::string idx = header(20 + 8, 0x22, 0, 3) + "\x01\x01" + u16(0) + attr(1, u32(12));
  r = nbd_genl::parse(idx, 3);
  EXPECT_EQ(r.index, 12u);
  EXPECT_FALSE(r.error.has_value());
  // An error, and a message for another request, which is not ours.
  const std::string busy = header(16 + 4 + 16, 2, 0, 4) + u32(static_cast<uint32_t>(-16)) + header(20, 0x22, 5, 4);
  EXPECT_EQ(nbd_genl::parse(busy, 4).error, -16);
  EXPECT_FALSE(nbd_genl::parse(busy, 5).error.has_value());
  // A truncated datagram yields nothing rather than reading past its end.
  EXPECT_FALSE(nbd_genl::parse(idx.substr(0, idx.size() - 3), 3).index.has_value());
}

}  // namespace
}  // namespace qemu_lio
