#include "qemu_lio/nbd_handshake.h"

#include <poll.h>
#include <sys/socket.h>

#include <fmt/core.h>

#include <cerrno>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;  // "NBDMAGIC"
constexpr uint64_t kOptMagic = 0x49484156454f5054ULL;  // "IHAVEOPT"
constexpr uint64_t kReplyMagic = 0x0003e889045565a9ULL;
constexpr uint16_t kFixedNewstyle = 1 << 0;
constexpr uint16_t kNoZeroes = 1 << 1;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepInfo = 3;
constexpr uint32_t kRepErrorBit = 1u << 31;
constexpr uint16_t kInfoExport = 0;
constexpr uint16_t kInfoBlockSize = 3;
// No reply of GO is longer than an error text; QEMU's are short. A bound keeps a confused
// peer from making us allocate what it claims.
constexpr uint32_t kMaxReply = 64 * 1024;

class Wire {
 public:
  Wire(int fd, std::string object, std::chrono::milliseconds timeout)
      : fd_(fd), object_(std::move(object)), deadline_(std::chrono::steady_clock::now() + timeout),
        timeout_(timeout) {}

  void put_u16(uint16_t v) { out_ += {char(v >> 8), char(v)}; }
  void put_u32(uint32_t v) {
    put_u16(static_cast<uint16_t>(v >> 16));
    put_u16(static_cast<uint16_t>(v));
  }
  void put_u64(uint64_t v) {
    put_u32(static_cast<uint32_t>(v >> 32));
    put_u32(static_cast<uint32_t>(v));
  }
  void put(const std::string& s) { out_ += s; }

  void flush() {
    size_t done = 0;
    while (done < out_.size()) {
      wait(POLLOUT);
      ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) throw Error(object_, "NBD handshake: cannot send: " + errno_string(errno));
      done += static_cast<size_t>(n);
    }
    out_.clear();
  }

  std::string take(size_t n) {
    std::string s(n, '\0');
    size_t done = 0;
    while (done < n) {
      wait(POLLIN);
      ssize_t r = ::recv(fd_, s.data() + done, n - done, 0);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r < 0) throw Error(object_, "NBD handshake: cannot receive: " + errno_string(errno));
      if (r == 0) throw Error(object_, "NBD handshake: the server closed the connection");
      done += static_cast<size_t>(r);
    }
    return s;
  }
  uint64_t take_be(size_t bytes) {
    const std::string s = take(bytes);
    uint64_t v = 0;
    for (unsigned char c : s) v = (v << 8) | c;
    return v;
  }
  uint16_t u16() { return static_cast<uint16_t>(take_be(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take_be(4)); }
  uint64_t u64() { return take_be(8); }

  [[noreturn]] void fail(const std::string& why) const { throw Error(object_, "NBD handshake: " + why); }

 private:
  void wait(short events) {
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline_) fail(fmt::format("the server did not answer within {} ms", timeout_.count()));
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now) + std::chrono::milliseconds(1);
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("cannot wait: " + errno_string(errno));
      if (r > 0) return;
    }
  }

  int fd_;
  std::string object_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::milliseconds timeout_;
  std::string out_;
};

// A reply's payload as fields, big-endian.
struct Payload {
  const std::string& s;
  size_t at = 0;
  uint64_t be(size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
    at += bytes;
    return v;
  }
};

}  // namespace

NbdExport nbd_negotiate(int fd, const std::string& name, const std::string& object,
                        std::chrono::milliseconds timeout) {
  Wire w(fd, object, timeout);
  if (w.u64() != kNbdMagic) w.fail("the peer is not an NBD server");
  if (w.u64() != kOptMagic) w.fail("the server speaks only the old style protocol");
  const uint16_t server = w.u16();
  // Without FIXED_NEWSTYLE a server takes no NBD_OPT_GO, and errors would just drop the line.
  if (!(server & kFixedNewstyle)) w.fail("the server does not offer the fixed newstyle handshake");
  w.put_u32(kFixedNewstyle | (server & kNoZeroes));
  if (name.size() > 4096) w.fail("export name longer than 4096 bytes");
  // NBD_OPT_GO: name, then one information request (block sizes: QEMU then enforces and
  // reports its real minimum alignment, NH3).
  w.put_u64(kOptMagic);
  w.put_u32(kOptGo);
  w.put_u32(static_cast<uint32_t>(4 + name.size() + 2 + 2));
  w.put_u32(static_cast<uint32_t>(name.size()));
  w.put(name);
  w.put_u16(1);
  w.put_u16(kInfoBlockSize);
  w.flush();

  NbdExport e;
  bool have_export = false;
  for (;;) {
    if (w.u64() != kReplyMagic) w.fail("a reply without the option reply magic");
    const uint32_t option = w.u32(), type = w.u32(), length = w.u32();
    if (option != kOptGo) w.fail(fmt::format("a reply to option {} instead of NBD_OPT_GO", option));
    if (length > kMaxReply) w.fail(fmt::format("a reply of {} bytes", length));
    const std::string data = w.take(length);
    if (type & kRepErrorBit) {
      // An error reply's payload is a message for humans (QEMU: "export 'x' not present").
      std::string text = data.empty() ? fmt::format("error {}", type & ~kRepErrorBit) : data;
      for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
      w.fail(fmt::format("the server refused export '{}': {}", name, text));
    }
    if (type == kRepAck) {
      if (!have_export) w.fail("the server ended NBD_OPT_GO without the export's size");
      return e;
    }
    if (type != kRepInfo) w.fail(fmt::format("an unexpected reply type {}", type));
    if (data.size() < 2) w.fail("an information reply without its type");
    Payload p{data};
    const uint16_t info = static_cast<uint16_t>(p.be(2));
    if (info == kInfoExport) {
      if (data.size() != 12) w.fail("an export information reply of the wrong length");
      e.size = p.be(8);
      e.flags = static_cast<uint16_t>(p.be(2));
      have_export = true;
    } else if (info == kInfoBlockSize) {
      if (data.size() != 14) w.fail("a block size reply of the wrong length");
      e.min_block = static_cast<uint32_t>(p.be(4));
      e.preferred_block = static_cast<uint32_t>(p.be(4));
      e.max_block = static_cast<uint32_t>(p.be(4));
    }
    // Name and description replies carry nothing the kernel needs.
  }
}

}  // namespace qemu_lio
