#include "qemu_lio/qemu_cmdline.h"

#include <fcntl.h>
#include <unistd.h>

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
  QemuCommandLine r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.images.empty());
  EXPECT_EQ(r.argv, argv);
  EXPECT_EQ(r.smp_cpus, 2);
}

TEST(DropinScan, VhostDrivesAreTakenOutAndDevicesPutInTheirPlace) {
  Args argv = {"qemu-system-x86_64", "-m", "512", "-drive", "file=/i/a.img,if=vhost-scsi,id=d0",
               "-drive", "file=b.img,if=virtio", "-lio-image", "/i/c.img,bootindex=1", "-daemonize",
               "-pidfile", "/run/q.pid"};
  QemuCommandLine r = scan_qemu_argv(argv);
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
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-readconfig", cfg, "-m", "1"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.smp_cpus, 3);
  ASSERT_EQ(r.readconfigs.size(), 1u);
  EXPECT_EQ(r.readconfigs[0].arg_index, 2u);
  Plan plan = build_plan("vm", {checked_image("/i/v.img")});
  Args out = finalize_argv(r, plan, {"/run/qemu-lio/copy.cfg"});
  EXPECT_EQ(out, (Args{"qemu-system-x86_64", "-readconfig", "/run/qemu-lio/copy.cfg", "-m", "1"}));
}

// A pipe holding `text`, read through /dev/fd/N as QEMU would be given it.
class Pipe {
 public:
  explicit Pipe(const std::string& text) {
    EXPECT_EQ(::pipe(fds_), 0);
    EXPECT_EQ(::write(fds_[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fds_[1]);
  }
  ~Pipe() { ::close(fds_[0]); }
  std::string path() const { return "/dev/fd/" + std::to_string(fds_[0]); }

 private:
  int fds_[2] = {-1, -1};
};

// Odd whitespace, CR, a tab, a malformed line, a header QEMU would not read, a comment with
// quotes, and no newline at the end.
const std::string kOddConfig =
    "# vm \"x\"\r\n\n  [machine]\n\ttype = \"q35\"   \n  accel=\"tcg\"\n[bogus\n x y z \n\n\n"
    "[drive \"d0\"]\n  file = \"/v/a.img\"\n  if = \"virtio\"\n[smp-opts]\n cpus = \"2\"\t";

TEST(DropinScan, StreamReadconfigWithoutVhostDrivesIsRecordedWithItsBytes) {
  Pipe pipe(kOddConfig);
  Args argv = {"qemu-system-x86_64", "-m", "1", "-readconfig", pipe.path()};
  QemuCommandLine r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.images.empty());
  EXPECT_EQ(r.argv, argv);
  EXPECT_EQ(r.smp_cpus, 2);
  ASSERT_EQ(r.readconfigs.size(), 1u);
  const ReadConfigUse& use = r.readconfigs[0];
  EXPECT_TRUE(use.stream);
  EXPECT_EQ(use.count, 0u);
  EXPECT_EQ(use.arg_index, 4u);
  // The stream is gone for QEMU: the copy must be every byte of it, unchanged.
  EXPECT_EQ(render_readconfig(use.parsed, {}), kOddConfig);
  Args out = finalize_argv(r, build_plan("vm", {}), {"/proc/self/fd/9"});
  EXPECT_EQ(out, (Args{"qemu-system-x86_64", "-m", "1", "-readconfig", "/proc/self/fd/9"}));
}

TEST(DropinScan, StreamReadconfigWithVhostDrivesIsMarkedAStream) {
  Pipe pipe("[drive \"d1\"]\n  file = \"/i/v.img\"\n  if = \"vhost-scsi\"\n");
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-readconfig", pipe.path()});
  ASSERT_EQ(r.readconfigs.size(), 1u);
  EXPECT_TRUE(r.readconfigs[0].stream);
  EXPECT_EQ(r.readconfigs[0].count, 1u);
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].path, "/i/v.img");
}

TEST(DropinScan, RegularReadconfigWithoutVhostDrivesStaysQemusToRead) {
  TempDir dir;
  std::ofstream(dir / "vm.cfg") << kOddConfig;
  Args argv = {"qemu-system-x86_64", "-readconfig", dir / "vm.cfg"};
  QemuCommandLine r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.readconfigs.empty());
  EXPECT_EQ(r.argv, argv);
  // Through /dev/fd/N too: a regular file is opened again by QEMU from its start.
  int fd = ::open((dir / "vm.cfg").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  r = scan_qemu_argv({"qemu-system-x86_64", "-readconfig", "/dev/fd/" + std::to_string(fd)});
  ::close(fd);
  EXPECT_TRUE(r.readconfigs.empty());
}

TEST(DropinDevice, ScsiHdOnAVhostDriveIsDroppedAndItsBootindexCarriedOver) {
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-drive",
                                    "file=/i/a.img,if=vhost-scsi,id=d0", "-device",
                                    "scsi-hd,drive=d0,bootindex=1,bus=scsi0.0", "-m", "1"});
  EXPECT_EQ(r.argv, (Args{"qemu-system-x86_64", "-m", "1"}));
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].bootindex, 1);
  EXPECT_FALSE(r.images[0].bus);  // a SCSI bus is no PCI slot
  EXPECT_FALSE(r.images[0].addr);
  Plan plan = build_plan("vm", {checked_image("/i/a.img,id=d0,bootindex=1")});
  Args out = finalize_argv(r, plan, {});
  EXPECT_EQ(out, (Args{"qemu-system-x86_64", "-device", device_option(plan.disks[0]), "-m", "1"}));
  EXPECT_NE(out[2].find(",bootindex=1,boot_tpgt=1"), std::string::npos) << out[2];
}

TEST(DropinDevice, PciDeviceBeforeItsDriveGivesItsSlot) {
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-device",
                                    "virtio-blk-pci,drive=d0,bus=pci.0,addr=0x5", "-m", "1",
                                    "--drive", "file=/i/a.img,if=vhost-scsi,id=d0,format=raw"});
  EXPECT_EQ(r.argv, (Args{"qemu-system-x86_64", "-m", "1"}));
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].bus, "pci.0");
  EXPECT_EQ(r.images[0].addr, "0x5");
  EXPECT_FALSE(r.images[0].bootindex);
  EXPECT_EQ(r.images[0].id, "d0");
  EXPECT_EQ("raw", r.images[0].format);
  Plan plan = build_plan("vm", {checked_image("/i/a.img,id=d0,bus=pci.0,addr=0x5")});
  Args out = finalize_argv(r, plan, {});
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[3], "-device");
  EXPECT_NE(out[4].find(",bus=pci.0,addr=0x5"), std::string::npos) << out[4];
}

TEST(DropinDevice, JsonCallersGetJsonDevicesAfterTheirOwn) {
  // libvirt: every -device is JSON with an explicit address; QEMU creates key=value devices
  // first, so a key=value vhost-scsi-pci would take the slot of libvirt's first device.
  QemuCommandLine r = scan_qemu_argv(
      {"qemu-system-x86_64", "-drive", "file=/i/a.img,if=vhost-scsi,bootindex=2", "-device",
       R"({"driver":"virtio-blk-pci","bus":"pci.0","addr":"0x2","drive":"libvirt-1"})", "-m", "1"});
  EXPECT_TRUE(r.json_devices);
  Plan plan = build_plan("vm", {checked_image("/i/a.img,bootindex=2,num-queues=2")});
  Args out = finalize_argv(r, plan, {});
  ASSERT_EQ(out.size(), 7u);
  EXPECT_EQ(out[1], "-device");
  EXPECT_EQ(out[3], "-m");
  EXPECT_EQ(out[5], "-device");
  const std::string want = R"({"driver":"vhost-scsi-pci","wwpn":")" + plan.disks[0].identity.wwn +
                           R"(","max_sectors":)" + std::to_string(plan.disks[0].spec.max_sectors) +
                           R"(,"num_queues":2,"bootindex":2,"boot_tpgt":1})";
  EXPECT_EQ(out[6], want);
}

TEST(ImageDevices, WorkerPerVirtqueueInBothSpellings) {
  Plan plan = build_plan("vm", {checked_image("/i/a.img,num-queues=4")});
  plan.disks[0].worker_per_virtqueue = true;
  const std::string kv = device_option(plan.disks[0]);
  EXPECT_NE(kv.find(",num_queues=4,worker_per_virtqueue=on"), std::string::npos) << kv;
  // QEMU's JSON visitor wants a boolean for a bool property, not "on".
  EXPECT_NE(device_json(plan.disks[0]).find(R"("worker_per_virtqueue":true)"), std::string::npos);
  plan.disks[0].worker_per_virtqueue = false;
  EXPECT_EQ(device_option(plan.disks[0]).find("worker_per_virtqueue"), std::string::npos);
}

TEST(DropinDevice, KeyValueCallersKeepTheDrivesPlace) {
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=/i/a.img,if=vhost-scsi",
                                      "-device", "virtio-rng-pci", "-m", "1"});
  EXPECT_FALSE(r.json_devices);
  Args out = finalize_argv(r, build_plan("vm", {checked_image("/i/a.img")}), {});
  ASSERT_EQ(out.size(), 7u);
  EXPECT_EQ(out[1], "-device");
  EXPECT_EQ(out[2].rfind("vhost-scsi-pci,wwpn=", 0), 0u) << out[2];
}

TEST(DropinDevice, DriverKeyAndDriveBootindexWin) {
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-drive",
                                    "file=/i/a.img,if=vhost-scsi,id=d0,bootindex=3", "-device",
                                    "driver=virtio-blk-pci,drive=d0,bootindex=1,addr=0x7"});
  EXPECT_EQ(r.argv, (Args{"qemu-system-x86_64"}));
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].bootindex, 3);  // the drive's own key wins, as in a readconfig
  EXPECT_EQ(r.images[0].addr, "0x7");
}

TEST(DropinDevice, DevicesOfOtherDrivesStay) {
  Args argv = {"qemu-system-x86_64", "-drive", "file=b.img,if=none,id=d1", "-device",
               "virtio-blk-pci,drive=d1,addr=0x5", "-drive", "file=/i/a.img,if=vhost-scsi,id=d0",
               "-device", "virtio-net-pci,netdev=n0"};
  QemuCommandLine r = scan_qemu_argv(argv);
  EXPECT_EQ(r.argv, (Args{"qemu-system-x86_64", "-drive", "file=b.img,if=none,id=d1", "-device",
                          "virtio-blk-pci,drive=d1,addr=0x5", "-device", "virtio-net-pci,netdev=n0"}));
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_FALSE(r.images[0].addr);
}

TEST(DropinDevice, BadSlotValueIsAUsageErrorNamingTheDevice) {
  std::string e = error_of<UsageError>([] {
    scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=/i/a.img,if=vhost-scsi,id=d0", "-device",
                    "virtio-blk-pci,drive=d0,addr=0x5 x"});
  });
  EXPECT_NE(e.find("-device virtio-blk-pci,drive=d0,addr=0x5 x key addr"), std::string::npos) << e;
}

TEST(DropinScan, UnreadableReadconfigIsLeftForQemu) {
  Args argv = {"qemu-system-x86_64", "-readconfig", "/nonexistent/vm.cfg"};
  QemuCommandLine r = scan_qemu_argv(argv);
  EXPECT_TRUE(r.images.empty());
  EXPECT_EQ(r.argv, argv);
}

TEST(DropinScan, BadVhostDriveIsAUsageError) {
  std::string e = error_of<UsageError>([] {
    scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.qcow2,if=vhost-scsi,format=file"});
  });
  EXPECT_NE(e.find("format 'file' is not raw or one of"), std::string::npos) << e;
  QemuCommandLine r =
      scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.qcow2,if=vhost-scsi,format=qcow2"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ("qcow2", r.images[0].format);
}

TEST(DropinScan, DriveFormatRawReachesTheImage) {
  QemuCommandLine r = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.img,if=vhost-scsi,format=raw"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ("raw", r.images[0].format);
  r = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=a.img,if=vhost-scsi"});
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ("", r.images[0].format);
}

// -name as the scan keeps it (the VM name derives from it).
using Argv = std::vector<std::string>;


TEST(DropinScanName, FindsTheValueAfterTheOption) {
  EXPECT_EQ(scan_qemu_argv(Argv{"qemu", "-m", "1G", "-name", "vm1", "-nographic"}).name, "vm1");
  EXPECT_EQ(scan_qemu_argv(Argv{"qemu", "-name", "guest=vm1,debug-threads=on"}).name,
            "guest=vm1,debug-threads=on");
}

TEST(DropinScanName, AcceptsQemusDoubleDashSpelling) {
  EXPECT_EQ(scan_qemu_argv(Argv{"qemu", "--name", "vm2"}).name, "vm2");
}

TEST(DropinScanName, LastOccurrenceWinsAsInQemu) {
  EXPECT_EQ(scan_qemu_argv(Argv{"qemu", "-name", "a", "--name", "b", "-name", "c"}).name, "c");
}

TEST(DropinScanName, AbsentOrWithoutValue) {
  EXPECT_FALSE(scan_qemu_argv(Argv{"qemu", "-m", "1G"}).name);
  EXPECT_FALSE(scan_qemu_argv(Argv{"qemu", "-name"}).name);  // nothing follows it
  EXPECT_FALSE(scan_qemu_argv(Argv{"-name", "x"}).name);     // argv[0] is QEMU itself
  EXPECT_FALSE(scan_qemu_argv(Argv{}).name);
  EXPECT_FALSE(scan_qemu_argv(Argv{"qemu", "-namex", "vm"}).name);
  EXPECT_FALSE(scan_qemu_argv(Argv{"qemu", "---name", "vm"}).name);
}

TEST(DropinScanName, AValueIsNotTakenForAnOption) {
  // "-name" as the value of -name is consumed as a value, not as the option again.
  EXPECT_EQ(scan_qemu_argv(Argv{"qemu", "-name", "-name", "x"}).name, "-name");
}

// --image disks: their -device options go after the user's own, in disk order.
TEST(ImageDevices, AppendInOrderAndLeaveTheUsersArgvAlone) {
  const Argv user = {"qemu", "-m", "1G", "-device", "virtio-net"};
  Plan plan = build_plan("vm", {checked_image("/img/a.raw,wwn=naa.0000000000000001"),
                                checked_image("/img/b.raw,wwn=naa.0000000000000002")});
  Argv out = qemu_argv_for(plan, user);
  EXPECT_EQ(out, (Argv{"qemu", "-m", "1G", "-device", "virtio-net", "-device",
                       "vhost-scsi-pci,wwpn=naa.0000000000000001,max_sectors=16384", "-device",
                       "vhost-scsi-pci,wwpn=naa.0000000000000002,max_sectors=16384"}));
  EXPECT_EQ(user, (Argv{"qemu", "-m", "1G", "-device", "virtio-net"}));
  EXPECT_EQ(qemu_argv_for(build_plan("vm", {}), user), user);
}

}  // namespace
}  // namespace qemu_lio
