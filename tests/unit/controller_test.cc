// controller=NAME: several disks of one VM behind one vhost target (LUNs 0..N) and one
// vhost-scsi-pci device. The plan, the command line, the journal and detach's choice of
// steps, and the whole cycle against the fake kernel.

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/hotplug.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/qemu_drive.h"
#include "qemu_lio/readconfig.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Kind = Op::Kind;

Plan plan_for(const std::vector<std::string>& specs, const std::string& vm = "vm") {
  std::vector<CheckedImage> images;
  for (const std::string& s : specs) images.push_back(checked_image(s));
  return build_plan(vm, images);
}

long index_of(const Plan& plan, Kind kind, const std::string& path) {
  for (size_t i = 0; i < plan.ops.size(); ++i)
    if (plan.ops[i].kind == kind && plan.ops[i].path == path) return static_cast<long>(i);
  return -1;
}

size_t count_of(const Plan& plan, Kind kind, const std::string& path) {
  return static_cast<size_t>(std::count_if(plan.ops.begin(), plan.ops.end(),
                                           [&](const Op& op) { return op.kind == kind && op.path == path; }));
}

size_t count_devices(const std::vector<std::string>& argv) {
  size_t n = 0;
  for (const std::string& a : argv) n += a.rfind("vhost-scsi-pci", 0) == 0;
  return n;
}

TEST(Controller, DisksShareOneTargetWithLunsInTheirOrder) {
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0", "/img/c.raw,controller=c0"});
  ASSERT_EQ(plan.disks.size(), 3u);
  const std::string wwn = plan.disks[0].identity.wwn;
  for (int i = 0; i < 3; ++i) {
    const DiskPlan& d = plan.disks[static_cast<size_t>(i)];
    EXPECT_EQ(d.lun, i);
    EXPECT_EQ(d.controller, "c0");
    EXPECT_EQ(d.identity.wwn, wwn);
    EXPECT_EQ(d.identity.nexus, plan.disks[0].identity.nexus);
    // Each LUN is its own image to the guest: its own serial and storage object.
    EXPECT_EQ(d.identity.serial, derive_identity(d.info.canonical_path).serial);
    EXPECT_EQ(d.so_name, "vm-disk" + std::to_string(i));
    const std::string lun = layout::lun(wwn, 1, i);
    const long link = index_of(plan, Kind::kSymlink, layout::lun_link(wwn, 1, i, d.so_name));
    ASSERT_GE(link, 0) << lun;
    EXPECT_LT(index_of(plan, Kind::kMkdir, lun), link);
    // Its object is complete (block size, serial) before the link freezes it.
    const std::string so = layout::storage_object("$" + d.hba_var, d.so_name);
    EXPECT_LT(index_of(plan, Kind::kWrite, so + "/wwn/vpd_unit_serial"), link);
    EXPECT_LT(index_of(plan, Kind::kWrite, layout::nexus(wwn, 1)), link);
  }
  EXPECT_NE(plan.disks[0].identity.serial, plan.disks[1].identity.serial);
  // One target, one TPG, one nexus.
  EXPECT_EQ(count_of(plan, Kind::kMkdir, layout::vhost_target(wwn)), 1u);
  EXPECT_EQ(count_of(plan, Kind::kMkdir, layout::tpg(wwn, 1)), 1u);
  EXPECT_EQ(count_of(plan, Kind::kWrite, layout::nexus(wwn, 1)), 1u);
  // One job: the LUN links need the objects its own disks make.
  for (const Op& op : plan.ops) EXPECT_EQ(op.disk, 0u) << op.path;
}

TEST(Controller, WwnIsTheVmsAndTheControllersNotAnImages) {
  Plan a = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c1"}, "vm1");
  Plan b = plan_for({"/img/a.raw,controller=c0"}, "vm2");
  EXPECT_NE(a.disks[0].identity.wwn, a.disks[1].identity.wwn);
  EXPECT_NE(a.disks[0].identity.wwn, b.disks[0].identity.wwn);
  EXPECT_NE(a.disks[0].identity.wwn, derive_identity("/img/a.raw").wwn);
  EXPECT_EQ(a.disks[0].identity.wwn, plan_for({"/img/x.raw,controller=c0"}, "vm1").disks[0].identity.wwn);
  EXPECT_TRUE(is_valid_naa(a.disks[0].identity.wwn));
}

TEST(Controller, PlainDisksKeepTheirOwnTargetsBetweenControllerDisks) {
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/p.raw", "/img/b.raw,controller=c0"});
  EXPECT_EQ(plan.disks[1].lun, 0);
  EXPECT_EQ(plan.disks[1].identity.wwn, derive_identity("/img/p.raw").wwn);
  EXPECT_EQ(plan.disks[2].lun, 1);
  EXPECT_EQ(plan.disks[2].identity.wwn, plan.disks[0].identity.wwn);
  for (const Op& op : plan.ops) {
    if (op.path == layout::kVhost) continue;  // each target's job makes sure it exists
    const bool plain = op.path.find(plan.disks[1].identity.wwn) != std::string::npos ||
                       op.var == "HBA1" || op.path.find("$HBA1") != std::string::npos;
    EXPECT_EQ(op.disk, plain ? 1u : 0u) << op.path;
  }
}

TEST(Controller, UserWwnOnAnyDiskNamesTheWholeController) {
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,wwn=naa.5001405123456789"});
  EXPECT_EQ(plan.disks[0].identity.wwn, "naa.5001405123456789");
  EXPECT_EQ(plan.disks[1].identity.wwn, "naa.5001405123456789");
  EXPECT_NE(usage_error_of([] {
              plan_for({"/img/a.raw,controller=c0,wwn=naa.5001405123456789",
                        "/img/b.raw,controller=c0,wwn=naa.500140512345678a"});
            }).find("a controller has one wwn"),
            std::string::npos);
}

TEST(Controller, OneDeviceInTheFirstDisksPlaceWithMergedKeys) {
  Plan plan = plan_for({"/img/a.raw,controller=c0,bootindex=1", "/img/p.raw",
                        "/img/b.raw,controller=c0,num-queues=4,id=data1"});
  std::vector<std::string> argv = qemu_argv_for(plan, {"qemu-system-x86_64", "-m", "64"});
  EXPECT_EQ(count_devices(argv), 2u);
  const std::string ctl = device_option(plan.disks[0]);
  EXPECT_EQ(ctl, "vhost-scsi-pci,wwpn=" + plan.disks[0].identity.wwn +
                     ",max_sectors=16384,num_queues=4,bootindex=1,boot_tpgt=1");
  // The device comes first, where the controller's first disk is.
  auto first = std::find_if(argv.begin(), argv.end(), [](const std::string& a) { return a.rfind("vhost-scsi-pci", 0) == 0; });
  ASSERT_NE(first, argv.end());
  EXPECT_EQ(*first, ctl);
}

TEST(Controller, DisagreeingDeviceKeysAreRefusedNamingTheKey) {
  EXPECT_NE(usage_error_of([] { plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,bootindex=2"}); })
                .find("bootindex: only the first disk of controller c0 (its LUN 0) can boot"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] {
              plan_for({"/img/a.raw,controller=c0,num-queues=2", "/img/b.raw,controller=c0,num-queues=4"});
            }).find("num-queues '4' differs from '2'"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { plan_for({"/img/a.raw,controller=c0,bus=pci.1", "/img/b.raw,controller=c0,bus=pci.2"}); })
                .find("image /img/b.raw: bus 'pci.2' differs"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,max-sectors=2048"}); })
                .find("max-sectors 2048 differs from 16384"),
            std::string::npos);
  // detach finds a disk by its id: two disks with one id would leave it guessing.
  EXPECT_NE(usage_error_of([] { plan_for({"/img/a.raw,controller=c0,id=x", "/img/b.raw,controller=c0,id=x"}); })
                .find("id x: is given to two disks (disk 0 and disk 1)"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { plan_for({"/img/a.raw,id=x", "/img/b.raw,id=x"}); }).find("two disks"),
            std::string::npos);
  usage_error_of([] { parse_image_spec("/img/a.raw,controller=a,b"); }, "',' splits the spec: 'b' is no key");
  EXPECT_NE(usage_error_of([] { parse_image_spec("/img/a.raw,controller=a/b"); }).find("image key controller"),
            std::string::npos);
}

TEST(Controller, ReadOnlyLunMapsEveryLunIntoTheAclAndProtectsOnlyItself) {
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,readonly=on"});
  const DiskPlan& d = plan.disks[1];
  const std::string& w = d.identity.wwn;
  const std::string acl = layout::acl(w, 1, d.identity.nexus);
  ASSERT_GE(index_of(plan, Kind::kMkdir, acl), 0);
  EXPECT_LT(index_of(plan, Kind::kMkdir, acl), index_of(plan, Kind::kWrite, layout::nexus(w, 1)));
  for (int l = 0; l < 2; ++l) {
    const std::string mapped = layout::acl_lun(w, 1, d.identity.nexus, l);
    EXPECT_GT(index_of(plan, Kind::kMkdir, mapped), index_of(plan, Kind::kWrite, layout::nexus(w, 1)));
    long expect = index_of(plan, Kind::kExpect, mapped + "/write_protect");
    ASSERT_GE(expect, 0);
    EXPECT_EQ(plan.ops[static_cast<size_t>(expect)].value, l == 1 ? "1" : "0");
  }
  EXPECT_EQ(count_of(plan, Kind::kWrite, layout::acl_lun(w, 1, d.identity.nexus, 0) + "/write_protect"), 0u);
}

TEST(Controller, ConflictCheckCountsTheControllerOnce) {
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0"});
  FakeConfigFs fs;
  check_conflicts(plan, scan_inventory(fs));  // no "wwn used by two disks"
  Plan twice = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c1,wwn=naa.5001405123456789",
                         "/img/c.raw,controller=c2,wwn=naa.5001405123456789"});
  EXPECT_NE(error_of([&] { check_conflicts(twice, scan_inventory(fs)); }).find("used by two disks"), std::string::npos);
}

TEST(Controller, AppliesToTheFakeKernelAndTearsDownToNothing) {
  FakeConfigFs fs, before;
  fs.mkdir("target/vhost");
  before.mkdir("target/vhost");
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,readonly=on", "/img/p.raw",
                        "/img/c.raw,controller=c0"});
  for (bool parallel : {false, true}) {
    SCOPED_TRACE(parallel ? "parallel" : "serial");
    fs.set_concurrent(parallel);
    Provisioner prov(fs);
    prov.apply(plan);
    const std::string& w = plan.disks[0].identity.wwn;
    EXPECT_EQ(fs.list("target/vhost").size(), before.list("target/vhost").size() + 2);
    for (int l = 0; l < 3; ++l) EXPECT_TRUE(fs.exists(layout::lun(w, 1, l))) << l;
    EXPECT_EQ(fs.read(layout::nexus(w, 1)).find(plan.disks[0].identity.nexus), 0u);
    EXPECT_EQ(prov.teardown(), 0);
    EXPECT_FALSE(fs.kernel_crashed());
    EXPECT_EQ(fs.list("target/vhost"), before.list("target/vhost"));
    EXPECT_EQ(fs.list("target/core"), before.list("target/core"));
  }
}

TEST(Controller, JournalKeepsEachLunAndDetachTakesOnlyItsOwn) {
  TempDir dir;
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  Plan plan = plan_for({"/img/a.raw,controller=c0", "/img/b.raw,controller=c0,id=data1", "/img/c.raw,controller=c0"});
  const std::string w = plan.disks[0].identity.wwn;
  std::string file;
  {
    JournalWriter journal(dir / "state", "vm", ProcessId{1, 1});
    file = journal.path();
    for (const DiskPlan& d : plan.disks) {
      journal.image(d.info.canonical_path, d.identity.wwn, d.lun);
      if (d.spec.id) journal.device(d.identity.wwn, *d.spec.id, d.lun);
    }
    Provisioner prov(fs);
    prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
    prov.apply(plan);
    prov.release();
    journal.ready();
  }
  JournalContents j = read_journal(file);
  ASSERT_EQ(j.images.size(), 3u);
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(j.images[static_cast<size_t>(l)].lun, l);
    EXPECT_EQ(j.images[static_cast<size_t>(l)].backstore.substr(j.images[static_cast<size_t>(l)].backstore.rfind('/') + 1),
              "vm-disk" + std::to_string(l));
  }
  EXPECT_EQ(j.images[1].device_id, "data1");
  EXPECT_TRUE(j.images[0].device_id.empty());

  // LUN 1 leaves: its LUN, its link and its backstore; the target and the other LUNs stay.
  std::vector<Undo> one = disk_undo_steps(j, w, 1);
  for (const Undo& u : one) {
    const layout::Parsed p = layout::parse(u.path);
    EXPECT_TRUE(p.wwn.empty() ? p.hba == layout::parse("target/" + j.images[1].backstore).hba : p.lun == 1) << u.path;
  }
  EXPECT_EQ(run_undo(fs, one, RetryPolicy{}), 0);
  EXPECT_FALSE(fs.exists(layout::lun(w, 1, 1)));
  EXPECT_TRUE(fs.exists(layout::lun(w, 1, 0)));
  EXPECT_TRUE(fs.exists(layout::lun(w, 1, 2)));
  EXPECT_FALSE(fs.exists("target/core/" + layout::parse("target/" + j.images[1].backstore).hba));
  {
    JournalWriter detach(file);
    for (const Undo& u : one) detach.object(u, true);
    detach.detach(w, 1);
  }
  j = read_journal(file);
  ASSERT_EQ(j.images.size(), 2u);
  EXPECT_EQ(j.images[0].lun, 0);
  EXPECT_EQ(j.images[1].lun, 2);

  // LUN 0 leaves the same way while LUN 2 remains; then LUN 2, the last, takes the target.
  std::vector<Undo> zero = disk_undo_steps(j, w, 0);
  EXPECT_TRUE(std::none_of(zero.begin(), zero.end(), [](const Undo& u) {
    return layout::parse(u.path).kind == layout::Parsed::Kind::kNexus;
  }));
  EXPECT_EQ(run_undo(fs, zero, RetryPolicy{}), 0);
  {
    JournalWriter detach(file);
    for (const Undo& u : zero) detach.object(u, true);
    detach.detach(w, 0);
  }
  j = read_journal(file);
  ASSERT_EQ(j.images.size(), 1u);
  std::vector<Undo> last = disk_undo_steps(j, w, 2);
  EXPECT_TRUE(std::any_of(last.begin(), last.end(), [&](const Undo& u) { return u.path == layout::vhost_target(w); }));
  EXPECT_EQ(run_undo(fs, last, RetryPolicy{}), 0);
  FakeConfigFs fresh;
  fresh.mkdir("target/vhost");
  EXPECT_EQ(fs.list("target/vhost"), fresh.list("target/vhost"));
  EXPECT_EQ(fs.list("target/core"), fresh.list("target/core"));
  EXPECT_FALSE(fs.kernel_crashed());
}

TEST(Controller, DropInDriveAndReadconfigTakeTheKey) {
  auto img = drive_to_image("file=/img/a.raw,if=vhost-scsi,format=raw,controller=c0");
  ASSERT_TRUE(img);
  EXPECT_EQ(img->controller, "c0");
  ReadConfig rc = parse_readconfig(
      "[drive \"d0\"]\n  file = \"/img/a.raw\"\n  if = \"vhost-scsi\"\n  controller = \"c0\"\n"
      "[drive \"d1\"]\n  file = \"/img/b.raw\"\n  if = \"vhost-scsi\"\n  controller = \"c0\"\n");
  ASSERT_EQ(rc.images().size(), 2u);
  EXPECT_EQ(rc.images()[1].controller, "c0");
  // The further LUN's drive leaves no [device]: the first drive's device serves both.
  std::string out = render_readconfig(rc, {{{"driver", "vhost-scsi-pci"}, {"wwpn", "naa.5001405123456789"}}, {}});
  EXPECT_EQ(out, "[device \"d0\"]\n  driver = \"vhost-scsi-pci\"\n  wwpn = \"naa.5001405123456789\"\n");
}

}  // namespace
}  // namespace qemu_lio
