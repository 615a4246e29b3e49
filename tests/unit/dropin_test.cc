#include "qemu_lio/dropin.h"

#include <fstream>

#include "qemu_lio/plan_builder.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Args = std::vector<std::string>;

TEST(DropinName, OnlyQemuSystemNames) {
  EXPECT_TRUE(is_dropin_name("qemu-system-x86_64"));
  EXPECT_TRUE(is_dropin_name("/usr/lib/xen/bin/qemu-system-x86_64"));
  EXPECT_FALSE(is_dropin_name("qemu-lio"));
  EXPECT_FALSE(is_dropin_name("/usr/bin/qemu-img"));
}

TEST(DropinSmp, CpusFromEverySpelling) {
  EXPECT_EQ(parse_smp("4"), 4);
  EXPECT_EQ(parse_smp("4,sockets=1"), 4);
  EXPECT_EQ(parse_smp("cpus=6,cores=3"), 6);
  EXPECT_EQ(parse_smp("sockets=2,cores=2,threads=2"), 8);
  EXPECT_FALSE(parse_smp("maxcpus=8"));
}

TEST(DropinScan, OrdinaryVmPassesThroughUntouched) {
  Args argv = {"qemu-system-x86_64", "-m", "512", "-drive", "file=a.img,if=virtio", "-smp", "2"};
  DropinRequest r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.images.empty());
  EXPECT_EQ(r.argv, argv);
  EXPECT_EQ(r.smp_cpus, 2);
}

TEST(DropinScan, VhostDrivesAreTakenOutAndDevicesPutInTheirPlace) {
  Args argv = {"qemu-system-x86_64", "-m", "512", "-drive", "file=/i/a.img,if=vhost-scsi,id=d0",
               "-drive", "file=b.img,if=virtio", "-lio-image", "/i/c.img,bootindex=1", "-daemonize",
               "-pidfile", "/run/q.pid"};
  DropinRequest r = scan_qemu_argv(argv);
  ASSERT_EQ(r.images.size(), 2u);
  EXPECT_EQ(r.images[0].path, "/i/a.img");
  EXPECT_EQ(r.images[1].path, "/i/c.img");
  EXPECT_TRUE(r.daemonize);
  EXPECT_EQ(r.pidfile, "/run/q.pid");
  EXPECT_EQ(r.argv, (Args{"qemu-system-x86_64", "-m", "512", "-drive", "file=b.img,if=virtio",
                          "-daemonize", "-pidfile", "/run/q.pid"}));

  std::vector<CheckedImage> imgs = {checked_image("/i/a.img,id=d0"), checked_image("/i/c.img,bootindex=1")};
  Plan plan = build_plan("vm", imgs);
  Args out = finalize_argv(r, plan, {});
  ASSERT_EQ(out.size(), r.argv.size() + 4);
  EXPECT_EQ(out[3], "-device");
  EXPECT_EQ(out[4], device_option(plan.disks[0]));  // where the first drive stood
  EXPECT_EQ(out[5], "-drive");
  EXPECT_EQ(out[7], "-device");
  EXPECT_EQ(out[8], device_option(plan.disks[1]));
  EXPECT_NE(out[8].find("bootindex=1,boot_tpgt=1"), std::string::npos);
}

TEST(DropinScan, ReadconfigWithVhostDrivesIsReplacedByTheCopy) {
  TempDir dir;
  std::string cfg = dir / "vm.cfg";
  std::ofstream(cfg) << "[smp-opts]\n  cpus = \"3\"\n\n[drive \"d1\"]\n  file = \"/i/v.img\"\n  if = \"vhost-scsi\"\n";
  DropinRequest r = scan_qemu_argv({"qemu-system-x86_64", "-readconfig", cfg, "-m", "1"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.smp_cpus, 3);
  ASSERT_EQ(r.readconfigs.size(), 1u);
  EXPECT_EQ(r.readconfigs[0].arg_index, 2u);
  Plan plan = build_plan("vm", {checked_image("/i/v.img")});
  Args out = finalize_argv(r, plan, {"/run/qemu-lio/copy.cfg"});
  EXPECT_EQ(out, (Args{"qemu-system-x86_64", "-readconfig", "/run/qemu-lio/copy.cfg", "-m", "1"}));
}

TEST(DropinScan, UnreadableReadconfigIsLeftForQemu) {
  Args argv = {"qemu-system-x86_64", "-readconfig", "/nonexistent/vm.cfg"};
  DropinRequest r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.images.empty());
  EXPECT_EQ(r.argv, argv);
}

TEST(DropinScan, BadVhostDriveIsAUsageError) {
  std::string e = error_of<UsageError>([] {
    scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.qcow2,if=vhost-scsi,format=qcow2"});
  });
  EXPECT_NE(e.find("format 'qcow2' cannot be served"), std::string::npos) << e;
  EXPECT_EQ(e.find("qemu-img"), std::string::npos) << e;
}

TEST(DropinScan, DriveFormatRawReachesTheImage) {
  DropinRequest r = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.img,if=vhost-scsi,format=raw"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_TRUE(r.images[0].format_raw);
  r = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.img,if=vhost-scsi"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_FALSE(r.images[0].format_raw);
}

}  // namespace
}  // namespace qemu_lio
