// The LIO tree's shape: the paths qemu-lio builds, what they parse back to, and which undo
// steps a journal may hold (gc runs them as root).

#include "qemu_lio/configfs_layout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "qemu_lio/plan_builder.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using K = layout::Parsed::Kind;
const std::string kWwn = "naa.5001405000000001";
const std::string kNexus = "naa.5001405000000002";

TEST(ConfigfsLayout, BuildsEveryObjectPath) {
  EXPECT_EQ(layout::hba_name("fileio", 3), "fileio_3");
  EXPECT_EQ(layout::hba("fileio_3"), "target/core/fileio_3");
  EXPECT_EQ(layout::storage_object("fileio_3", "vm-disk0"), "target/core/fileio_3/vm-disk0");
  EXPECT_EQ(layout::storage_object("$HBA0", "vm-disk0"), "target/core/$HBA0/vm-disk0");
  EXPECT_EQ(layout::vhost_target(kWwn), "target/vhost/" + kWwn);
  EXPECT_EQ(layout::tpg(kWwn, 1), "target/vhost/" + kWwn + "/tpgt_1");
  EXPECT_EQ(layout::nexus(kWwn, 1), "target/vhost/" + kWwn + "/tpgt_1/nexus");
  EXPECT_EQ(layout::lun(kWwn, 1, 0), "target/vhost/" + kWwn + "/tpgt_1/lun/lun_0");
  EXPECT_EQ(layout::lun_link(kWwn, 1, 0, "vm-disk0"), "target/vhost/" + kWwn + "/tpgt_1/lun/lun_0/vm-disk0");
  EXPECT_EQ(layout::acl(kWwn, 1, kNexus), "target/vhost/" + kWwn + "/tpgt_1/acls/" + kNexus);
  EXPECT_EQ(layout::acl_lun(kWwn, 1, kNexus, 0), layout::acl(kWwn, 1, kNexus) + "/lun_0");
  EXPECT_EQ(layout::acl_lun_link(kWwn, 1, kNexus, 0, "lun_0"), layout::acl(kWwn, 1, kNexus) + "/lun_0/lun_0");
}

TEST(ConfigfsLayout, ParsesWhatItBuilds) {
  layout::Parsed p = layout::parse(layout::storage_object("iblock_12", "vm-disk1-ro"));
  EXPECT_EQ(p.kind, K::kStorageObject);
  EXPECT_EQ(p.plugin, "iblock");
  EXPECT_EQ(p.hba, "iblock_12");
  EXPECT_EQ(p.hba_index, 12);
  EXPECT_EQ(p.object, "vm-disk1-ro");
  EXPECT_EQ(layout::parse("target/core/rd_mcp_0").plugin, "rd_mcp");  // targetcli's ramdisk
  EXPECT_EQ(layout::parse(layout::hba("fileio_0")).kind, K::kHba);
  EXPECT_EQ(layout::parse(layout::vhost_target(kWwn)).kind, K::kVhostTarget);
  p = layout::parse(layout::tpg(kWwn, 7));
  EXPECT_EQ(p.kind, K::kTpg);
  EXPECT_EQ(p.wwn, kWwn);
  EXPECT_EQ(p.tpgt, 7);
  EXPECT_EQ(layout::parse(layout::nexus(kWwn, 1)).kind, K::kNexus);
  p = layout::parse(layout::lun_link(kWwn, 1, 2, "x"));
  EXPECT_EQ(p.kind, K::kLunLink);
  EXPECT_EQ(p.lun, 2);
  EXPECT_EQ(p.link, "x");
  EXPECT_EQ(layout::parse(layout::lun(kWwn, 1, 0)).kind, K::kLun);
  EXPECT_EQ(layout::parse(layout::acl(kWwn, 1, kNexus)).initiator, kNexus);
  p = layout::parse(layout::acl_lun_link(kWwn, 1, kNexus, 4, "lun_0"));
  EXPECT_EQ(p.kind, K::kAclLunLink);
  EXPECT_EQ(p.mapped_lun, 4);
  EXPECT_EQ(layout::parse(layout::acl_lun(kWwn, 1, kNexus, 0)).kind, K::kAclLun);
}

TEST(ConfigfsLayout, ParsesNothingElse) {
  for (const std::string& bad : std::vector<std::string>
       {"", "target", "target/core", "target/core/", "target/core/alua", "target/core/fileio",
        "target/core/fileio_x", "target/core/fileio_-1", "target/core/fileio_0/hba_info",
        "target/core/fileio_0/a/b", "/target/core/fileio_0", "target//core/fileio_0",
        "target/core/../../../tmp/victim", "target/core/fileio_0/..", "target/core/./fileio_0",
        "target/vhost/" + kWwn + "/tpgt_x", "target/vhost/" + kWwn + "/tpgt_0x1",
        "target/vhost/" + kWwn + "/tpgt_1/attrib", "target/vhost/" + kWwn + "/tpgt_1/lun/lun_0/a/b",
        "target/vhost/" + kWwn + "/tpgt_1/acls/" + kNexus + "/lun_0/lun_0/x",
        "target/vhost/a b", "target/vhost/a\nb", "target/iscsi/iqn.x", "etc/passwd"})
    EXPECT_EQ(layout::parse(bad).kind, K::kNone) << bad;
}

TEST(ConfigfsLayout, SafeNames) {
  EXPECT_TRUE(layout::is_safe_name("vm-disk0"));
  EXPECT_TRUE(layout::is_safe_name("naa.5001405000000001"));
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "a/b", "a b", "tab\t", std::string("nul\0x", 5), "del\x7f"})
    EXPECT_FALSE(layout::is_safe_name(bad)) << bad;
}

// Every undo step a real plan produces, with its HBAs bound, passes; so the check can
// never make gc skip a journal qemu-lio wrote itself.
TEST(ConfigfsLayout, EveryUndoOfAPlanIsOneQemuLioMakes) {
  Plan plan = build_plan("vm", {checked_image("/img/a.raw"), checked_image("/img/b.raw,readonly=on"),
                                checked_image("/dev/vdb", 1 << 30, ImageKind::kBlockDevice)});
  const std::vector<std::pair<std::string, std::string>> bound = {
      {"HBA0", "fileio_0"}, {"HBA1", "fileio_1"}, {"HBA2", "iblock_0"}};
  int undos = 0;
  for (const Op& op : plan.ops) {
    std::optional<Undo> u = undo_of(op);
    if (!u) continue;
    ++undos;
    u->path = bind_vars(u->path, bound);
    EXPECT_TRUE(layout::is_qemu_lio_undo(*u)) << u->path;
  }
  EXPECT_GT(undos, 15);
}

TEST(ConfigfsLayout, RefusesUndoStepsQemuLioNeverMakes) {
  using U = Undo::Kind;
  const std::string tpg = layout::tpg(kWwn, 1);
  const std::vector<Undo> bad = {
      {U::kRmdir, "target/core/../../../../tmp/victim", ""},
      {U::kRmdir, "target/core/fileio_0/../../../../tmp/victim", ""},
      {U::kWrite, tpg + "/../../../../../tmp/f", "NULL"},
      {U::kWrite, "target/vhost/" + kWwn + "/tpgt_1/../../../../../tmp/f", "NULL"},
      {U::kWrite, layout::nexus(kWwn, 1), "naa.5001405000000003"},  // only NULL clears
      {U::kWrite, layout::nexus(kWwn, 1), ""},
      {U::kWrite, layout::storage_object("fileio_0", "x") + "/enable", "0"},
      {U::kRmdir, layout::nexus(kWwn, 1), ""},
      {U::kUnlink, layout::storage_object("fileio_0", "x"), ""},
      {U::kUnlink, layout::lun(kWwn, 1, 0), ""},
      {U::kRmdir, layout::lun_link(kWwn, 1, 0, "x"), ""},
      {U::kRmdir, "target/core/pscsi_0", ""},  // qemu-lio makes fileio and iblock only
      {U::kRmdir, "target/vhost/discovery_auth", ""},
      {U::kRmdir, "target/vhost", ""},
      {U::kRmdir, "target/core", ""},
      {U::kRmdir, layout::acl(kWwn, 1, "iqn.evil"), ""},
      {U::kRmdir, "/tmp/victim", ""},
  };
  for (const Undo& u : bad) EXPECT_FALSE(layout::is_qemu_lio_undo(u)) << u.path << " " << u.value;
}

}  // namespace
}  // namespace qemu_lio
