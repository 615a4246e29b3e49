#include "qemu_lio/identity.h"

#include <fmt/core.h>

namespace qemu_lio {

uint64_t fnv1a64(const std::string& s, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {
// FNV's low bits mix poorly for short inputs; a splitmix finaliser spreads them.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t hash(const std::string& domain, const std::string& path) {
  return mix(fnv1a64(path, fnv1a64(domain)));
}
}  // namespace

Identity derive_identity(const std::string& name) {
  Identity id;
  // The domain strings keep the three names independent of one another.
  id.wwn = fmt::format("naa.5001405{:09x}", hash("qemu-lio/wwn", name) & 0xfffffffffULL);
  // 0x6 in the top nibble keeps the nexus out of the 5001405 space the wwn lives in.
  id.nexus = fmt::format("naa.6{:015x}", hash("qemu-lio/nexus", name) &
                                             0xfffffffffffffffULL);
  uint64_t a = hash("qemu-lio/serial-a", name);
  uint64_t b = hash("qemu-lio/serial-b", name);
  id.serial = fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff,
                          a & 0xffff, b >> 48, b & 0xffffffffffffULL);
  return id;
}

}  // namespace qemu_lio
