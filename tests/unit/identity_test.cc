#include "qemu_lio/identity.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {
namespace {

bool matches(const std::string& s, const char* re) { return std::regex_match(s, std::regex(re)); }

TEST(Fnv1a64, KnownVectors) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
  EXPECT_NE(fnv1a64("a", 1), fnv1a64("a"));
}

TEST(DeriveIdentity, IsDeterministic) {
  Identity a = derive_identity("/var/lib/images/vm1.raw");
  Identity b = derive_identity("/var/lib/images/vm1.raw");
  EXPECT_EQ(a.wwn, b.wwn);
  EXPECT_EQ(a.nexus, b.nexus);
  EXPECT_EQ(a.serial, b.serial);
}

TEST(DeriveIdentity, UsesLioOuiAndRtslibFormat) {
  for (const char* path : {"/a", "/var/lib/images/vm1.raw", "/dev/vdb", ""}) {
    Identity id = derive_identity(path);
    EXPECT_TRUE(matches(id.wwn, "naa\\.5001405[0-9a-f]{9}")) << id.wwn;
    EXPECT_TRUE(is_valid_naa(id.wwn)) << id.wwn;
    EXPECT_TRUE(matches(id.nexus, "naa\\.[0-9a-f]{16}")) << id.nexus;
    EXPECT_TRUE(is_valid_naa(id.nexus)) << id.nexus;
    EXPECT_NE(id.nexus, id.wwn);
    // QEMU keeps the wwpn in a 224-byte buffer and the kernel limits names to 256.
    EXPECT_LT(id.wwn.size(), 224u);
    EXPECT_TRUE(matches(id.serial, "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"))
        << id.serial;
    EXPECT_LT(id.serial.size(), 254u);  // vpd_unit_serial limit
  }
}

TEST(DeriveIdentity, DifferentPathsGetDifferentNames) {
  std::set<std::string> wwns, nexuses, serials;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    Identity id = derive_identity("/images/vm" + std::to_string(i) + ".raw");
    wwns.insert(id.wwn);
    nexuses.insert(id.nexus);
    serials.insert(id.serial);
    EXPECT_EQ(wwns.count(id.nexus), 0u);  // a nexus never looks like any wwn
  }
  EXPECT_EQ(wwns.size(), static_cast<size_t>(n));  // 36 bits: a collision here is a bug
  EXPECT_EQ(nexuses.size(), static_cast<size_t>(n));
  EXPECT_EQ(serials.size(), static_cast<size_t>(n));
  EXPECT_NE(derive_identity("/a/b").wwn, derive_identity("/a/b/").wwn);
  EXPECT_NE(derive_identity("/a/b").wwn, derive_identity("/a/c").wwn);
}

}  // namespace
}  // namespace qemu_lio
