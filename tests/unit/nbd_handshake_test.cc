// The NBD handshake against a scripted server on a socketpair: what it sends byte for byte,
// what it accepts, and one clear error for each way a server can refuse or misbehave.

#include "qemu_lio/nbd_handshake.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>

#include "qemu_lio/error.h"
#include "qemu_lio/unique_fd.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

std::string be(uint64_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

const std::string kGreeting = "NBDMAGIC" + be(0x49484156454f5054ULL, 8) + be(3, 2);  // FIXED_NEWSTYLE | NO_ZEROES

std::string reply(uint32_t type, const std::string& data, uint32_t option = 7) {
  return be(0x0003e889045565a9ULL, 8) + be(option, 4) + be(type, 4) + be(data.size(), 4) + data;
}
std::string info_export(uint64_t size, uint16_t flags) { return reply(3, be(0, 2) + be(size, 8) + be(flags, 2)); }
std::string info_block_size(uint32_t min, uint32_t pref, uint32_t max) {
  return reply(3, be(3, 2) + be(min, 4) + be(pref, 4) + be(max, 4));
}
const std::string kAck = reply(1, "");

// A server that sends `greeting`, reads what the client sends (up to `expect` bytes), then
// sends `answer`. `got` receives the client's bytes.
class FakeServer {
 public:
  FakeServer(std::string greeting, size_t expect, std::string answer) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_ = UniqueFd(sv[0]);
    server_ = UniqueFd(sv[1]);
    thread_ = std::thread([this, greeting, expect, answer] {
      (void)!::send(server_.get(), greeting.data(), greeting.size(), MSG_NOSIGNAL);
      char buf[8192];
      while (got_.size() < expect) {
        ssize_t n = ::read(server_.get(), buf, sizeof buf);
        if (n <= 0) break;
        got_.append(buf, static_cast<size_t>(n));
      }
      (void)!::send(server_.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
      if (close_after_) server_ = UniqueFd();
    });
  }
  // The client's end goes first: a server still reading what a failed client never sent
  // then sees EOF.
  ~FakeServer() {
    client_ = UniqueFd();
    join();
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  int fd() const { return client_.get(); }
  const std::string& got() {
    join();
    return got_;
  }

 private:
  bool close_after_ = true;
  UniqueFd client_, server_;
  std::thread thread_;
  std::string got_;
};

// What the client must send for export `name`: its flags, then GO asking for block sizes.
std::string expected_request(const std::string& name, uint32_t client_flags = 3) {
  return be(client_flags, 4) + be(0x49484156454f5054ULL, 8) + be(7, 4) + be(4 + name.size() + 4, 4) +
         be(name.size(), 4) + name + be(1, 2) + be(3, 2);
}

TEST(NbdHandshake, GoWithBlockSizesInAnyOrderGivesSizeFlagsAndAlignment) {
  const std::string request = expected_request("e0");
  for (bool export_first : {true, false}) {
    const std::string infos = export_first ? info_export(1 << 30, 0x1ed) + info_block_size(512, 4096, 33554432)
                                           : info_block_size(512, 4096, 33554432) + info_export(1 << 30, 0x1ed);
    FakeServer s(kGreeting, request.size(), infos + reply(3, be(1, 2) + be(2, 4) + "e0") + kAck);
    const NbdExport e = nbd_negotiate(s.fd(), "e0", "/img/a.qcow2", milliseconds(5000));
    EXPECT_EQ(s.got(), request);
    EXPECT_EQ(e.size, 1u << 30);
    EXPECT_EQ(e.flags, 0x1ed);
    EXPECT_EQ(e.min_block, 512u);
    EXPECT_EQ(e.preferred_block, 4096u);
    EXPECT_EQ(e.max_block, 33554432u);
  }
}

TEST(NbdHandshake, WithoutNoZeroesTheClientDoesNotAskForIt) {
  const std::string greeting = "NBDMAGIC" + be(0x49484156454f5054ULL, 8) + be(1, 2);
  const std::string request = expected_request("e0", 1);
  FakeServer s(greeting, request.size(), info_export(4096, 1) + kAck);
  EXPECT_EQ(nbd_negotiate(s.fd(), "e0", "img", milliseconds(5000)).size, 4096u);
  EXPECT_EQ(s.got(), request);
}

TEST(NbdHandshake, EachRefusalIsOneLineNamingTheImage) {
  struct Case {
    std::string greeting, answer, says;
  };
  const std::string old_style = "NBDMAGIC" + be(0x00420281861253ULL, 8) + be(1 << 20, 8);
  const Case cases[] = {
      {kGreeting, reply(0x80000006u, "export 'e0' not present"),
       "NBD handshake: the server refused export 'e0': export 'e0' not present"},
      {kGreeting, reply(0x80000001u, ""), "refused export 'e0': error 1"},
      {kGreeting, kAck, "without the export's size"},
      {kGreeting, info_export(4096, 1), "closed the connection"},
      {kGreeting, reply(1, "", 8), "a reply to option 8"},
      {kGreeting, reply(3, be(0, 2) + be(1, 8)), "wrong length"},
      {kGreeting, reply(3, "", 7).substr(0, 16) + be(1 << 20, 4), "a reply of 1048576 bytes"},
      {"NBDMAGIC" + be(0x49484156454f5054ULL, 8) + be(0, 2), "", "does not offer the fixed newstyle"},
      {old_style, "", "old style"},
      {"HTTP/1.1 400 Bad Request\r\n\r\n", "", "not an NBD server"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    FakeServer s(c.greeting, expected_request("e0").size(), c.answer);
    const std::string err = error_of([&] { nbd_negotiate(s.fd(), "e0", "/img/a.qcow2", milliseconds(5000)); });
    EXPECT_EQ(err.rfind("/img/a.qcow2: NBD handshake: ", 0), 0u) << err;
    EXPECT_NE(err.find(c.says), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
}

TEST(NbdHandshake, ASilentServerIsBoundedByTheTimeout) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd client(sv[0]), server(sv[1]);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err = error_of([&] { nbd_negotiate(client.get(), "e0", "img", milliseconds(200)); });
  EXPECT_NE(err.find("did not answer within 200 ms"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

}  // namespace
}  // namespace qemu_lio
