#include "qemu_lio/plan_builder.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/qemu_cmdline.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Kind = Op::Kind;
using Props = std::vector<std::pair<std::string, std::string>>;

constexpr long kNone = -1;

// Finds the ops of one disk of a plan by the paths the kernel sees.
class DiskOps {
 public:
  DiskOps(const Plan& plan, size_t disk) : plan_(plan), d_(plan.disks.at(disk)) {}

  std::string so() const { return "target/core/$" + d_.hba_var + "/" + d_.so_name; }
  std::string wwn() const { return "target/vhost/" + d_.identity.wwn; }
  std::string tpg() const { return wwn() + "/tpgt_1"; }
  std::string lun() const { return tpg() + "/lun/lun_0"; }
  std::string acl() const { return tpg() + "/acls/" + d_.identity.nexus; }

  /// Index of the first op of `kind` on `path`, kNone if there is none.
  long find(Kind kind, const std::string& path) const {
    for (size_t i = 0; i < plan_.ops.size(); ++i)
      if (plan_.ops[i].kind == kind && plan_.ops[i].path == path) return static_cast<long>(i);
    return kNone;
  }
  long write(const std::string& rel) const { return find(Kind::kWrite, so() + "/" + rel); }
  /// The value written to so()/rel ("" if none).
  std::string written(const std::string& rel) const {
    long i = write(rel);
    return i == kNone ? "" : plan_.ops[static_cast<size_t>(i)].value;
  }
  /// The values of every kExpect on so()/rel.
  std::vector<std::string> expected(const std::string& rel) const {
    std::vector<std::string> v;
    for (const Op& op : plan_.ops)
      if (op.kind == Kind::kExpect && op.path == so() + "/" + rel) v.push_back(op.value);
    return v;
  }
  long claim() const {
    for (size_t i = 0; i < plan_.ops.size(); ++i)
      if (plan_.ops[i].kind == Kind::kClaimHba && plan_.ops[i].var == d_.hba_var)
        return static_cast<long>(i);
    return kNone;
  }
  long link() const { return find(Kind::kSymlink, lun() + "/" + d_.so_name); }
  /// Every op index whose path lies inside `prefix`.
  std::vector<long> under(const std::string& prefix) const {
    std::vector<long> v;
    for (size_t i = 0; i < plan_.ops.size(); ++i)
      if (plan_.ops[i].path.rfind(prefix, 0) == 0) v.push_back(static_cast<long>(i));
    return v;
  }

 private:
  const Plan& plan_;
  const DiskPlan& d_;
};

// The kernel's ordering rules (lio-kernel-facts.md), checked for every disk of `plan`.
void expect_kernel_order(const Plan& plan) {
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    SCOPED_TRACE("disk " + std::to_string(i));
    DiskOps d(plan, i);
    const long enable = d.write("enable");
    ASSERT_NE(enable, kNone);
    EXPECT_LT(d.claim(), d.find(Kind::kMkdir, d.so()));
    EXPECT_LT(d.find(Kind::kMkdir, d.so()), d.write("control"));
    EXPECT_LT(d.write("control"), enable);
    // block_size must follow enable: enable resets it to hw_block_size.
    EXPECT_GT(d.write("attrib/block_size"), enable);
    EXPECT_GT(d.find(Kind::kExpect, d.so() + "/attrib/block_size"), d.write("attrib/block_size"));
    // Discard before enable oopses the kernel.
    for (const char* a : {"attrib/emulate_tpu", "attrib/emulate_tpws"}) {
      if (d.write(a) != kNone) {
        EXPECT_GT(d.write(a), enable) << a;
      }
    }
    // Info only tells the truth once enable has parsed the control string.
    for (size_t k = 0; k < plan.ops.size(); ++k) {
      if (plan.ops[k].kind == Kind::kExpect && plan.ops[k].path == d.so() + "/info") {
        EXPECT_GT(static_cast<long>(k), enable);
      }
    }
    // Nothing under the WWN before the fabric dir exists.
    EXPECT_LT(d.find(Kind::kEnsureDir, "target/vhost"), d.find(Kind::kMkdir, d.wwn()));
    EXPECT_LT(d.find(Kind::kMkdir, d.wwn()), d.find(Kind::kMkdir, d.tpg()));
    EXPECT_LT(d.find(Kind::kMkdir, d.tpg()), d.find(Kind::kWrite, d.tpg() + "/nexus"));
    EXPECT_LT(d.find(Kind::kWrite, d.tpg() + "/nexus"), d.find(Kind::kMkdir, d.lun()));
    EXPECT_LT(d.find(Kind::kMkdir, d.lun()), d.link());
    // Once a LUN links the device, block_size, wwn/* and most attributes are frozen:
    // every backstore step comes before the link.
    for (long k : d.under(d.so())) EXPECT_LT(k, d.link()) << plan.ops[static_cast<size_t>(k)].path;
  }
}

// A plan for `specs` of 1 MiB images (the paths need not exist: build_plan reads nothing).
Plan plan_for(const std::vector<std::string>& specs, const std::string& vm = "vm") {
  std::vector<CheckedImage> images;
  for (const std::string& s : specs) images.push_back(checked_image(s));
  return build_plan(vm, images);
}

TEST(BuildPlan, NamesEachDiskAfterTheVm) {
  Plan plan = plan_for({"/img/a.raw", "/img/b.raw", "/img/c.raw"}, "web1");
  EXPECT_EQ(plan.vm_name, "web1");
  ASSERT_EQ(plan.disks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(plan.disks[i].so_name, "web1-disk" + std::to_string(i));
    EXPECT_EQ(plan.disks[i].hba_var, "HBA" + std::to_string(i));
    EXPECT_EQ(plan.disks[i].plugin, "fileio");
    EXPECT_EQ(plan.disks[i].identity.wwn, derive_identity(plan.disks[i].info.canonical_path).wwn);
  }
  expect_kernel_order(plan);
}

TEST(BuildPlan, ClaimTakesAnHbaOfThePlugin) {
  Plan plan = plan_for({"/img/a.raw"});
  const Op& claim = plan.ops.at(0);
  EXPECT_EQ(claim.kind, Kind::kClaimHba);
  EXPECT_EQ(claim.path, "target/core");
  EXPECT_EQ(claim.value, "fileio");
  EXPECT_EQ(claim.var, "HBA0");
}

TEST(BuildPlan, OrderIsEnableThenBlockSizeThenDiscard) {
  Plan plan = plan_for({"/img/a.raw,block-size=4096"});
  DiskOps d(plan, 0);
  EXPECT_LT(d.write("enable"), d.write("attrib/block_size"));
  EXPECT_LT(d.write("attrib/block_size"), d.write("attrib/emulate_tpu"));
  EXPECT_EQ(d.written("attrib/block_size"), "4096");
  EXPECT_EQ(d.expected("attrib/block_size"), std::vector<std::string>{"4096"});
  EXPECT_EQ(d.written("attrib/emulate_tpu"), "1");
  EXPECT_EQ(d.written("enable"), "1");
  // The symlink exports the disk: it is the last step.
  EXPECT_EQ(d.link(), static_cast<long>(plan.ops.size()) - 1);
  expect_kernel_order(plan);
}

TEST(BuildPlan, DiscardOffWritesNoDiscardAttribute) {
  Plan plan = plan_for({"/img/a.raw,discard=off"});
  DiskOps d(plan, 0);
  EXPECT_EQ(d.write("attrib/emulate_tpu"), kNone);
  EXPECT_EQ(d.write("attrib/emulate_tpws"), kNone);
  expect_kernel_order(plan);
}

TEST(BuildPlan, ControlNamesTheCanonicalPathAndSize) {
  std::vector<CheckedImage> images = {checked_image("/img/a.raw,cache=writethrough", 12345 * 512)};
  Plan plan = build_plan("vm", images);
  DiskOps d(plan, 0);
  EXPECT_EQ(d.written("control"), "fd_dev_name=/img/a.raw,fd_dev_size=6320640");
  EXPECT_EQ(d.written("udev_path"), "/img/a.raw");
  EXPECT_LT(d.write("udev_path"), d.write("enable"));
}

TEST(BuildPlan, WritebackIsBufferedIoAndChecked) {
  Plan plan = plan_for({"/img/a.raw,cache=writeback"});
  DiskOps d(plan, 0);
  EXPECT_EQ(d.written("control"), "fd_dev_name=/img/a.raw,fd_dev_size=1048576,fd_buffered_io=1");
  EXPECT_EQ(d.write("attrib/emulate_write_cache"), kNone);  // enable forces it
  EXPECT_EQ(d.expected("info"), (std::vector<std::string>{"Mode: Buffered-WCE", "Async: 0"}));
}

TEST(BuildPlan, WritethroughIsLiosDefault) {
  Plan plan = plan_for({"/img/a.raw,cache=writethrough"});
  DiskOps d(plan, 0);
  EXPECT_EQ(d.written("control"), "fd_dev_name=/img/a.raw,fd_dev_size=1048576");
  EXPECT_EQ(d.write("attrib/emulate_write_cache"), kNone);
  EXPECT_EQ(d.expected("info"), (std::vector<std::string>{"Mode: O_DSYNC", "Async: 0"}));
}

TEST(BuildPlan, CacheNoneIsAsyncWithAWriteCacheSoTheGuestFlushes) {
  Plan plan = plan_for({"/img/a.raw,cache=none"});
  DiskOps d(plan, 0);
  EXPECT_EQ(d.written("control"), "fd_dev_name=/img/a.raw,fd_dev_size=1048576,fd_async_io=1");
  EXPECT_EQ(d.written("attrib/emulate_write_cache"), "1");
  EXPECT_GT(d.write("attrib/emulate_write_cache"), d.write("enable"));
  // An old kernel ignores fd_async_io silently: the plan reads back what it got.
  EXPECT_EQ(d.expected("info"), (std::vector<std::string>{"Mode: O_DSYNC", "Async: 1"}));
  expect_kernel_order(plan);
}

TEST(BuildPlan, SerialIsDerivedOrGiven) {
  Plan plan = plan_for({"/img/a.raw", "/img/b.raw,serial=my-serial"});
  EXPECT_EQ(DiskOps(plan, 0).written("wwn/vpd_unit_serial"), derive_identity("/img/a.raw").serial);
  EXPECT_EQ(DiskOps(plan, 1).written("wwn/vpd_unit_serial"), "my-serial");
  EXPECT_EQ(plan.disks[1].identity.serial, "my-serial");
}

TEST(BuildPlan, NexusIsTheDerivedInitiatorAndIsClearedAtUndo) {
  Plan plan = plan_for({"/img/a.raw"});
  DiskOps d(plan, 0);
  long i = d.find(Kind::kWrite, d.tpg() + "/nexus");
  ASSERT_NE(i, kNone);
  const Op& nexus = plan.ops[static_cast<size_t>(i)];
  EXPECT_EQ(nexus.value, derive_identity("/img/a.raw").nexus);
  EXPECT_EQ(nexus.undo_value, "NULL");
  std::optional<Undo> u = undo_of(nexus);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, Undo::Kind::kWrite);
  EXPECT_EQ(u->value, "NULL");
}

TEST(BuildPlan, LunLinkPointsAtTheStorageObject) {
  Plan plan = plan_for({"/img/a.raw"});
  DiskOps d(plan, 0);
  ASSERT_NE(d.link(), kNone);
  EXPECT_EQ(plan.ops[static_cast<size_t>(d.link())].value, d.so());
}

TEST(BuildPlan, UserWwnIsUsedForTheTarget) {
  Plan plan = plan_for({"/img/a.raw,wwn=naa.5001405aaaaaaaaa"});
  EXPECT_EQ(plan.disks[0].identity.wwn, "naa.5001405aaaaaaaaa");
  EXPECT_NE(DiskOps(plan, 0).find(Kind::kMkdir, "target/vhost/naa.5001405aaaaaaaaa"), kNone);
  EXPECT_NE(device_option(plan.disks[0]).find("wwpn=naa.5001405aaaaaaaaa"), std::string::npos);
}

TEST(BuildPlan, UserWwnEqualToTheNexusGetsAnotherNexus) {
  const std::string nexus = derive_identity("/img/a.raw").nexus;
  Plan plan = plan_for({"/img/a.raw,wwn=" + nexus});
  EXPECT_EQ(plan.disks[0].identity.wwn, nexus);
  EXPECT_NE(plan.disks[0].identity.nexus, nexus);
  EXPECT_TRUE(is_valid_naa(plan.disks[0].identity.nexus));
}

TEST(BuildPlan, ReadOnlyDiskGetsAnExplicitWriteProtectedAcl) {
  Plan plan = plan_for({"/img/a.raw,readonly=on"});
  DiskOps d(plan, 0);
  const DiskPlan& disk = plan.disks[0];
  EXPECT_EQ(disk.so_name, "vm-disk0-ro");
  // The ACL is named like the nexus and exists before the nexus is written.
  const long acl = d.find(Kind::kMkdir, d.acl());
  const long nexus = d.find(Kind::kWrite, d.tpg() + "/nexus");
  ASSERT_NE(acl, kNone);
  EXPECT_LT(acl, nexus);
  // Its LUN mapping comes after the TPG LUN, so teardown (reversed) removes it first and
  // clears the nexus before the ACL goes.
  const long mapped = d.find(Kind::kMkdir, d.acl() + "/lun_0");
  const long mapped_link = d.find(Kind::kSymlink, d.acl() + "/lun_0/lun_0");
  const long wp = d.find(Kind::kWrite, d.acl() + "/lun_0/write_protect");
  EXPECT_GT(mapped, d.link());
  EXPECT_GT(mapped_link, mapped);
  EXPECT_GT(wp, mapped_link);  // write_protect has no effect before the mapping exists
  EXPECT_EQ(plan.ops[static_cast<size_t>(mapped_link)].value, d.lun());
  EXPECT_EQ(plan.ops[static_cast<size_t>(wp)].value, "1");
  EXPECT_NE(d.find(Kind::kExpect, d.acl() + "/lun_0/write_protect"), kNone);
  expect_kernel_order(plan);
}

TEST(BuildPlan, ReadOnlyTargetNamesDependOnTheVm) {
  // Several VMs may share a read-only image, and one wwn serves one QEMU.
  Plan a = plan_for({"/img/base.raw,readonly=on"}, "vm-a");
  Plan b = plan_for({"/img/base.raw,readonly=on"}, "vm-b");
  Plan rw = plan_for({"/img/base.raw"}, "vm-a");
  EXPECT_NE(a.disks[0].identity.wwn, b.disks[0].identity.wwn);
  EXPECT_NE(a.disks[0].identity.nexus, b.disks[0].identity.nexus);
  EXPECT_NE(a.disks[0].identity.wwn, rw.disks[0].identity.wwn);
  EXPECT_EQ(a.disks[0].identity.serial, rw.disks[0].identity.serial);  // same image, same serial
  EXPECT_TRUE(is_valid_naa(a.disks[0].identity.wwn));
}

// A block device exported through a stable name, as inspect_image() reports it after the
// kernel renamed the device underneath.
CheckedImage renamed_device(const std::string& spec, const std::string& canonical,
                            const std::string& identity_name) {
  CheckedImage c = checked_image(spec, 1 << 30, ImageKind::kBlockDevice);
  c.info.canonical_path = canonical;
  c.info.identity_name = identity_name;
  return c;
}

TEST(BuildPlan, IdentityFollowsTheStableNameNotTheKernelName) {
  const std::string by_id = "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4";
  Plan before = build_plan("vm", {renamed_device(by_id, "/dev/sdb", by_id)});
  Plan after = build_plan("vm", {renamed_device(by_id, "/dev/sdc", by_id)});
  EXPECT_EQ(before.disks[0].identity.wwn, after.disks[0].identity.wwn);
  EXPECT_EQ(before.disks[0].identity.serial, after.disks[0].identity.serial);
  EXPECT_EQ(before.disks[0].identity.nexus, after.disks[0].identity.nexus);
  EXPECT_EQ(before.disks[0].identity.wwn, derive_identity(by_id).wwn);
  // The kernel still gets the device itself.
  EXPECT_EQ(after.disks[0].info.canonical_path, "/dev/sdc");
  bool control = false;
  for (const Op& op : after.ops)
    if (op.path.size() > 8 && op.path.compare(op.path.size() - 8, 8, "/control") == 0)
      control = op.value.find("udev_path=/dev/sdc") != std::string::npos;
  EXPECT_TRUE(control);
  // Known by the kernel name, the identity moves with it.
  Plan sdb = build_plan("vm", {renamed_device("/dev/sdb", "/dev/sdb", "/dev/sdb")});
  Plan sdc = build_plan("vm", {renamed_device("/dev/sdc", "/dev/sdc", "/dev/sdc")});
  EXPECT_NE(sdb.disks[0].identity.wwn, sdc.disks[0].identity.wwn);
}

TEST(BuildPlan, ReadOnlyStableNameStillMixesInTheVmForTheTargetOnly) {
  const std::string by_id = "/dev/disk/by-id/dm-name-base";
  Plan a = build_plan("a", {renamed_device(by_id + ",readonly=on", "/dev/dm-1", by_id)});
  Plan b = build_plan("b", {renamed_device(by_id + ",readonly=on", "/dev/dm-4", by_id)});
  Plan a2 = build_plan("a", {renamed_device(by_id + ",readonly=on", "/dev/dm-4", by_id)});
  EXPECT_NE(a.disks[0].identity.wwn, b.disks[0].identity.wwn);
  EXPECT_EQ(a.disks[0].identity.wwn, a2.disks[0].identity.wwn);
  EXPECT_EQ(a.disks[0].identity.serial, b.disks[0].identity.serial);
  EXPECT_EQ(a.disks[0].identity.serial, derive_identity(by_id).serial);
}

TEST(BuildPlan, BlockDeviceUsesIblock) {
  std::vector<CheckedImage> images = {checked_image("/dev/vdb,readonly=on", 1 << 30,
                                                    ImageKind::kBlockDevice)};
  Plan plan = build_plan("vm", images);
  DiskOps d(plan, 0);
  EXPECT_EQ(plan.disks[0].plugin, "iblock");
  EXPECT_EQ(plan.ops.at(0).value, "iblock");
  EXPECT_EQ(d.written("control"), "udev_path=/dev/vdb,readonly=1");
  EXPECT_TRUE(d.expected("info").empty());  // no fileio modes to check
  expect_kernel_order(plan);
}

TEST(BuildPlan, EveryCreatingOpHasAnUndo) {
  Plan plan = plan_for({"/img/a.raw", "/img/b.raw,readonly=on"});
  for (const Op& op : plan.ops) {
    std::optional<Undo> u = undo_of(op);
    switch (op.kind) {
      case Kind::kClaimHba:
        ASSERT_TRUE(u);
        EXPECT_EQ(u->kind, Undo::Kind::kRmdir);
        EXPECT_EQ(u->path, "target/core/$" + op.var);
        break;
      case Kind::kMkdir:
        ASSERT_TRUE(u);
        EXPECT_EQ(u->kind, Undo::Kind::kRmdir);
        EXPECT_EQ(u->path, op.path);
        break;
      case Kind::kSymlink:
        ASSERT_TRUE(u);
        EXPECT_EQ(u->kind, Undo::Kind::kUnlink);
        EXPECT_EQ(u->path, op.path);
        break;
      case Kind::kJoin:  // only join_shared makes these
        ADD_FAILURE() << "a built plan joins nothing: " << op.path;
        break;
      case Kind::kEnsureDir:  // target/vhost is shared: never removed
      case Kind::kExpect:
      case Kind::kExpectSameFile: EXPECT_FALSE(u) << op.path; break;
      case Kind::kWrite: EXPECT_EQ(u.has_value(), !op.undo_value.empty()) << op.path; break;
    }
    EXPECT_FALSE(op.why.empty()) << op.path;  // the dry-run script prints it
  }
}

TEST(DeviceOption, MinimalIsWwpnAndMaxSectors) {
  Plan plan = plan_for({"/img/a.raw"});
  const std::string wwn = plan.disks[0].identity.wwn;
  EXPECT_EQ(device_option(plan.disks[0]), "vhost-scsi-pci,wwpn=" + wwn + ",max_sectors=16384");
  EXPECT_EQ(qemu_argv_for(plan, {"qemu"}),
            (std::vector<std::string>{"qemu", "-device", "vhost-scsi-pci,wwpn=" + wwn + ",max_sectors=16384"}));
}

TEST(DeviceOption, EveryPropertyInOrder) {
  Plan plan = plan_for({"/img/a.raw,max-sectors=2048,num-queues=4,bootindex=1,id=d0,bus=pci.2,"
                        "addr=0x3"});
  const DiskPlan& d = plan.disks[0];
  EXPECT_EQ(device_properties(d),
            (Props{{"driver", "vhost-scsi-pci"}, {"wwpn", d.identity.wwn}, {"max_sectors", "2048"},
                   {"num_queues", "4"}, {"bootindex", "1"}, {"boot_tpgt", "1"}, {"id", "d0"},
                   {"bus", "pci.2"}, {"addr", "0x3"}}));
  EXPECT_EQ(device_option(d), "vhost-scsi-pci,wwpn=" + d.identity.wwn +
                                  ",max_sectors=2048,num_queues=4,bootindex=1,boot_tpgt=1,id=d0,"
                                  "bus=pci.2,addr=0x3");
}

TEST(DeviceOption, BootTpgtNamesTheTpgThePlanCreates) {
  Plan plan = plan_for({"/img/a.raw,bootindex=0"});
  std::string tpgt;
  for (const auto& [k, v] : device_properties(plan.disks[0]))
    if (k == "boot_tpgt") tpgt = v;
  ASSERT_FALSE(tpgt.empty());
  DiskOps d(plan, 0);
  EXPECT_NE(d.find(Kind::kMkdir, d.wwn() + "/tpgt_" + tpgt), kNone);
}

TEST(DeviceOption, OnePairPerDiskInOrder) {
  Plan plan = plan_for({"/img/a.raw,id=a", "/img/b.raw,id=b", "/img/c.raw,id=c"});
  const std::vector<std::string> extra = qemu_argv_for(plan, {});
  ASSERT_EQ(extra.size(), 6u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(extra[2 * i], "-device");
    EXPECT_EQ(extra[2 * i + 1], device_option(plan.disks[i]));
  }
  EXPECT_NE(extra[5].find(",id=c"), std::string::npos);
}

TEST(SanitizeVmName, KeepsASafeToken) {
  EXPECT_EQ(sanitize_vm_name("vm1"), "vm1");
  EXPECT_EQ(sanitize_vm_name("guest=vm1,debug-threads=on"), "vm1");
  EXPECT_EQ(sanitize_vm_name("vm1,process=qemu:vm1"), "vm1");
  EXPECT_EQ(sanitize_vm_name("my vm/1$"), "my_vm_1_");
  EXPECT_EQ(sanitize_vm_name("a.b-c_d"), "a.b-c_d");
  EXPECT_EQ(sanitize_vm_name(std::string(100, 'x')), std::string(64, 'x'));
  EXPECT_NO_THROW(check_token("name", sanitize_vm_name("x y\"z'w`$")));
}

TEST(SanitizeVmName, EscapedCommaStaysPartOfTheName) {
  // QEMU reads ",," as a literal comma: the name is "a,b", never "a".
  EXPECT_EQ(sanitize_vm_name("guest=a,,b"), "a_b");
  EXPECT_EQ(sanitize_vm_name("guest=a,,b,debug-threads=on"), "a_b");
  EXPECT_EQ(sanitize_vm_name("a,,b,process=x"), "a_b");
  EXPECT_EQ(sanitize_vm_name("process=x,guest=vm2"), "vm2");
  EXPECT_EQ(sanitize_vm_name("debug-threads=on"), "");  // no name: the caller picks a default
}

// check_conflicts() compares files by inode, so these use real files and read the live
// tree from the fake kernel.
class ConflictTest : public ::testing::Test {
 protected:
  std::string image(const std::string& name) {
    write_file(dir_ / name, 1 << 20);
    return dir_ / name;
  }
  Plan plan(const std::vector<std::string>& specs) {
    std::vector<CheckedImage> images;
    for (const std::string& s : specs) images.push_back(checked_image(s));
    return build_plan("vm", images);
  }
  // Another tool's backstore serving `file`, made as targetcli would.
  void foreign_backstore(const std::string& hba, const std::string& name, const std::string& file,
                         bool with_udev_path = true) {
    fs_.mkdir("target/core/" + hba);
    const std::string so = "target/core/" + hba + "/" + name;
    fs_.mkdir(so);
    fs_.write(so + "/control", "fd_dev_name=" + file + ",fd_dev_size=1048576");
    if (with_udev_path) fs_.write(so + "/udev_path", file);
    fs_.write(so + "/enable", "1");
  }
  std::string conflict(const Plan& p) {
    try {
      check_conflicts(p, scan_inventory(fs_));
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), exit_code::kProvisionFailed);
      return e.what();
    }
    ADD_FAILURE() << "no conflict found";
    return "";
  }

  TempDir dir_;
  FakeConfigFs fs_;
};

TEST_F(ConflictTest, NoConflictWithUnrelatedObjects) {
  foreign_backstore("fileio_0", "other", image("other.raw"));
  fs_.mkdir("target/vhost");
  fs_.mkdir("target/vhost/naa.5001405000000001");
  EXPECT_NO_THROW(check_conflicts(plan({image("a.raw"), image("b.raw")}), scan_inventory(fs_)));
}

TEST_F(ConflictTest, SameImageTwice) {
  std::string a = image("a.raw");
  EXPECT_NE(conflict(plan({a, a + ",readonly=on"})).find("given twice (disk 0 and disk 1)"),
            std::string::npos);
}

TEST_F(ConflictTest, SameImageThroughAHardLink) {
  std::string a = image("a.raw");
  ASSERT_EQ(::link(a.c_str(), (dir_ / "hard.raw").c_str()), 0);
  EXPECT_NE(conflict(plan({a, dir_ / "hard.raw"})).find("given twice"), std::string::npos);
}

TEST_F(ConflictTest, SameWwnTwice) {
  std::string msg = conflict(plan({image("a.raw") + ",wwn=naa.5001405000000009",
                                   image("b.raw") + ",wwn=naa.5001405000000009"}));
  EXPECT_NE(msg.find("wwn naa.5001405000000009 is used by two disks"), std::string::npos) << msg;
}

TEST_F(ConflictTest, ImageAlreadyServedByABackstore) {
  std::string a = image("a.raw");
  foreign_backstore("fileio_3", "targetcli-disk", a);
  std::string msg = conflict(plan({image("b.raw"), a}));
  EXPECT_NE(msg.find("already exported by LIO backstore target/core/fileio_3/targetcli-disk"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.rfind(a + ": ", 0), 0u) << msg;  // the image is named first
}

TEST_F(ConflictTest, BackstoreWithoutUdevPathIsFoundThroughInfo) {
  std::string a = image("a.raw");
  foreign_backstore("fileio_0", "bare", a, /*with_udev_path=*/false);
  EXPECT_NE(conflict(plan({a})).find("fileio_0/bare"), std::string::npos);
}

TEST_F(ConflictTest, BackstoreNamingTheImageThroughASymlink) {
  std::string a = image("a.raw");
  ASSERT_EQ(::symlink(a.c_str(), (dir_ / "alias.raw").c_str()), 0);
  foreign_backstore("fileio_0", "other", dir_ / "alias.raw");
  EXPECT_NE(conflict(plan({a})).find("already exported"), std::string::npos);
}

TEST_F(ConflictTest, WwnAlreadyInTheTree) {
  std::string a = image("a.raw");
  const std::string wwn = derive_identity(a).wwn;
  fs_.mkdir("target/vhost");
  fs_.mkdir("target/vhost/" + wwn);
  EXPECT_NE(conflict(plan({a})).find("wwn " + wwn + " already exists in target/vhost"),
            std::string::npos);
}

TEST_F(ConflictTest, ReadOnlyExportsMayShareAnImage) {
  std::string a = image("base.raw");
  foreign_backstore("fileio_0", "other-vm-disk0-ro", a);
  EXPECT_NO_THROW(check_conflicts(plan({a + ",readonly=on"}), scan_inventory(fs_)));
  EXPECT_NE(conflict(plan({a})).find("already exported"), std::string::npos);  // a writer
}

TEST_F(ConflictTest, ReadOnlyDiskMayNotShareAWritableExport) {
  std::string a = image("base.raw");
  foreign_backstore("fileio_0", "other-vm-disk0", a);
  EXPECT_NE(conflict(plan({a + ",readonly=on"})).find("already exported"), std::string::npos);
}

TEST(IsReadOnlyExport, NameEndsInRo) {
  EXPECT_TRUE(is_read_only_export(Backstore{"fileio_0", "vm-disk0-ro", "/a"}));
  EXPECT_FALSE(is_read_only_export(Backstore{"fileio_0", "vm-disk0", "/a"}));
  EXPECT_FALSE(is_read_only_export(Backstore{"fileio_0", "-ro", "/a"}));
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

// enable makes the kernel open the image by name; the very next step proves it opened the
// file that was checked.
TEST(BuildPlan, ChecksTheImageIsTheSameFileRightAfterEnable) {
  CheckedImage img = checked_image("/img/a.raw");
  img.info.file_id = "2049:12";
  CheckedImage dev = checked_image("/dev/vdb", 1 << 30, ImageKind::kBlockDevice);
  dev.info.file_id = "b:fd:10";
  Plan plan = build_plan("vm", {img, dev});
  for (size_t i = 0; i < 2; ++i) {
    DiskOps d(plan, i);
    long enable = d.write("enable");
    ASSERT_NE(enable, kNone);
    const Op& op = plan.ops.at(static_cast<size_t>(enable) + 1);
    EXPECT_EQ(op.kind, Kind::kExpectSameFile);
    EXPECT_EQ(op.path, i == 0 ? "/img/a.raw" : "/dev/vdb");
    EXPECT_EQ(op.value, i == 0 ? "2049:12" : "b:fd:10");
    EXPECT_FALSE(undo_of(op));
  }
}

}  // namespace
}  // namespace qemu_lio
