// prepare() decides everything a launch does without touching configfs or QEMU; a dry run
// prints it and touches nothing either.

#include "qemu_lio/launch.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/image_spec.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/vhost_caps.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Args = std::vector<std::string>;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const Args& args, const std::string& s) {
  return std::find(args.begin(), args.end(), s) != args.end();
}

class LaunchTest : public ::testing::Test {
 protected:
  // prepare() asks the QEMU it would run (qemu-system-x86_64 on PATH) what it can do: a
  // stand-in first on PATH keeps these tests off the host's QEMU. `qemu_worker_` decides
  // whether its vhost-scsi-pci lists worker_per_virtqueue.
  void SetUp() override {
    ::mkdir((dir_ / "bin").c_str(), 0755);
    write_qemu(false);
    const char* path = ::getenv("PATH");
    saved_path_ = path ? path : "";
    ::setenv("PATH", (dir_ / "bin:" + saved_path_).c_str(), 1);
  }
  void TearDown() override { ::setenv("PATH", saved_path_.c_str(), 1); }
  // The stand-in's vhost-scsi-pci has worker_per_virtqueue from now on. A new binary (its
  // size changes), as an upgraded QEMU would be: the answer is cached per binary.
  void qemu_has_workers() { write_qemu(true); }

  void write_qemu(bool workers) {
    const std::string exe = dir_ / "bin/qemu-system-x86_64";
    std::ofstream f(exe);
    f << "#!/bin/sh\ncase \"$*\" in\n"
      << "  *vhost-scsi-pci,help*) echo '  wwpn=<str>';"
      << (workers ? " echo '  worker_per_virtqueue=<bool>';" : "") << ";\n"
      << "  *help*) echo 'name \"vhost-scsi-pci\", bus PCI';;\n  *) exit 1;;\nesac\nexit 0\n";
    f.close();
    ::chmod(exe.c_str(), 0755);
  }

  // An image of 1 MiB in the temporary directory.
  std::string image(const std::string& name) {
    write_file(dir_ / name, 1 << 20);
    return dir_ / name;
  }

  // The request `qemu-lio run --image SPEC... -- QEMU...` builds (run_vm, without reading
  // the host's config file).
  LaunchRequest request(const Args& specs, const Args& qemu) {
    LaunchRequest req;
    req.state_dir = dir_ / "state";
    std::vector<ImageSpec> images;
    for (const std::string& s : specs) images.push_back(parse_image_spec(s));
    req.qemu = scan_qemu_argv(qemu);
    prepend_images(req.qemu, images);
    return req;
  }

  // The -device value of the first vhost-scsi disk in `argv`.
  static std::string device(const Args& argv) {
    for (const std::string& a : argv)
      if (a.rfind("vhost-scsi-pci,", 0) == 0) return a;
    ADD_FAILURE() << "no vhost-scsi-pci device";
    return "";
  }

  TempDir dir_;
  std::string saved_path_;
};

TEST_F(LaunchTest, NameFromTheNameOption) {
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64", "-name", "guest=other"});
  req.name = "web1";
  Prepared p = prepare(req);
  EXPECT_EQ(p.vm_name, "web1");
  EXPECT_EQ(p.plan.vm_name, "web1");
  ASSERT_EQ(p.plan.disks.size(), 1u);
  EXPECT_EQ(p.plan.disks[0].so_name.rfind("web1-", 0), 0u) << p.plan.disks[0].so_name;
}

TEST_F(LaunchTest, BadNameOptionIsAUsageError) {
  LaunchRequest req = request({}, {"qemu-system-x86_64"});
  req.name = "a/b";
  usage_error_of([&] { prepare(req); }, "--name a/b");
  req.name = std::string(65, 'x');
  EXPECT_NE(usage_error_of([&] { prepare(req); }).find("64"), std::string::npos);
}

TEST_F(LaunchTest, NameFromQemusNameOption) {
  Prepared p = prepare(request({image("a.raw")},
                               {"qemu-system-x86_64", "-name", "guest=x,debug-threads=on"}));
  EXPECT_EQ(p.vm_name, "x");
  EXPECT_EQ(prepare(request({}, {"qemu-system-x86_64", "-name", "plain,debug-threads=on"})).vm_name,
            "plain");
}

TEST_F(LaunchTest, DefaultNameHasOurPid) {
  Prepared p = prepare(request({image("a.raw")}, {"qemu-system-x86_64", "-m", "1G"}));
  EXPECT_EQ(p.vm_name, "qemu-lio-" + std::to_string(::getpid()));
}

TEST_F(LaunchTest, QueuesFollowSmp) {
  Prepared p = prepare(request({image("a.raw")}, {"qemu-system-x86_64", "-smp", "4"}));
  ASSERT_EQ(p.plan.disks.size(), 1u);
  EXPECT_EQ(p.plan.disks[0].spec.num_queues, 4);
  EXPECT_NE(device(p.qemu_argv).find(",num_queues=4"), std::string::npos) << device(p.qemu_argv);

  p = prepare(request({image("b.raw")}, {"qemu-system-x86_64", "-smp", "cpus=300,maxcpus=300"}));
  EXPECT_EQ(p.plan.disks[0].spec.num_queues, 128);

  p = prepare(request({image("c.raw") + ",num-queues=2"}, {"qemu-system-x86_64", "-smp", "8"}));
  EXPECT_EQ(p.plan.disks[0].spec.num_queues, 2);

  p = prepare(request({image("d.raw")}, {"qemu-system-x86_64"}));
  EXPECT_FALSE(p.plan.disks[0].spec.num_queues.has_value());
  EXPECT_EQ(device(p.qemu_argv).find("num_queues"), std::string::npos);
}

TEST_F(LaunchTest, ImagesAreInspected) {
  write_file(dir_ / "odd.raw", 1000);
  std::string msg = error_of([&] { prepare(request({dir_ / "odd.raw"}, {"qemu-system-x86_64"})); });
  EXPECT_NE(msg.find(dir_ / "odd.raw"), std::string::npos) << msg;
  msg = error_of([&] { prepare(request({dir_ / "none.raw"}, {"qemu-system-x86_64"})); });
  EXPECT_NE(msg.find(dir_ / "none.raw"), std::string::npos) << msg;
}

TEST_F(LaunchTest, AllowListRefusesAnImageOutside) {
  TempDir allowed;
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64"});
  req.config.allow = {allowed.path()};
  req.config.source = "test.conf";
  std::string msg = error_of([&] { prepare(req); });
  EXPECT_NE(msg.find("outside the directories allowed"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir_ / "a.raw"), std::string::npos) << msg;

  // The same image under an allowed directory passes (we are root, the image is ours and
  // every directory up to it is root's or sticky).
  req.config.allow = {dir_.path()};
  if (::geteuid() == 0) {
    EXPECT_EQ(prepare(req).plan.disks.size(), 1u);
  }
}

TEST_F(LaunchTest, ReadconfigWithAVhostDriveBecomesAMemfdCopy) {
  const std::string img = image("data.img");
  const std::string cfg = dir_ / "vm.cfg";
  std::ofstream(cfg) << "[drive \"disk1\"]\n"
                        "  file = \"" << img << "\"\n"
                        "  format = \"raw\"\n"
                        "  if = \"vhost-scsi\"\n"
                        "\n"
                        "[device \"d1\"]\n"
                        "  driver = \"virtio-blk-pci\"\n"
                        "  drive = \"disk1\"\n"
                        "  bus = \"pci.5\"\n";
  Prepared p = prepare(request({}, {"qemu-system-x86_64", "-readconfig", cfg, "-m", "1G"}));
  ASSERT_EQ(p.plan.disks.size(), 1u);
  EXPECT_EQ(p.plan.disks[0].info.canonical_path, img);
  ASSERT_EQ(p.readconfig_fds.size(), 1u);
  ASSERT_EQ(p.readconfig_texts.size(), 1u);
  const std::string name = "/dev/fd/" + std::to_string(p.readconfig_fds[0].get());
  EXPECT_FALSE(contains(p.qemu_argv, cfg));
  auto at = std::find(p.qemu_argv.begin(), p.qemu_argv.end(), "-readconfig");
  ASSERT_NE(at, p.qemu_argv.end());
  ASSERT_NE(at + 1, p.qemu_argv.end());
  EXPECT_EQ(*(at + 1), name);

  const std::string copy = slurp("/proc/self/fd/" + std::to_string(p.readconfig_fds[0].get()));
  EXPECT_EQ(copy, p.readconfig_texts[0]);
  EXPECT_NE(copy.find("vhost-scsi-pci"), std::string::npos) << copy;
  EXPECT_NE(copy.find(p.plan.disks[0].identity.wwn), std::string::npos) << copy;
  EXPECT_EQ(copy.find("vhost-scsi\""), std::string::npos) << copy;  // the drive is gone
  EXPECT_EQ(slurp(cfg).find("vhost-scsi-pci"), std::string::npos);  // the original untouched
}

TEST_F(LaunchTest, DaemonizeWithoutPidfileGetsOneInTheStateDir) {
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64", "-daemonize"});
  req.name = "vm";
  Prepared p = prepare(req);
  const std::string want = req.state_dir + "/vm." + std::to_string(::getpid()) + ".pid";
  EXPECT_EQ(p.daemon_pidfile, want);
  ASSERT_GE(p.qemu_argv.size(), 2u);
  EXPECT_EQ(p.qemu_argv[p.qemu_argv.size() - 2], "-pidfile");
  EXPECT_EQ(p.qemu_argv.back(), want);
  EXPECT_EQ(std::count(p.qemu_argv.begin(), p.qemu_argv.end(), "-pidfile"), 1);
}

TEST_F(LaunchTest, DaemonizeWithPidfileUsesTheCallers) {
  const std::string pidfile = dir_ / "qemu.pid";
  Prepared p = prepare(request({image("a.raw")},
                               {"qemu-system-x86_64", "-daemonize", "-pidfile", pidfile}));
  EXPECT_EQ(p.daemon_pidfile, pidfile);
  EXPECT_EQ(std::count(p.qemu_argv.begin(), p.qemu_argv.end(), "-pidfile"), 1);
  EXPECT_TRUE(contains(p.qemu_argv, pidfile));
}

TEST_F(LaunchTest, NoDaemonizeNoPidfile) {
  Prepared p = prepare(request({image("a.raw")}, {"qemu-system-x86_64"}));
  EXPECT_EQ(p.daemon_pidfile, "");
  EXPECT_FALSE(contains(p.qemu_argv, "-pidfile"));
}

TEST_F(LaunchTest, QemuExeReplacesArgvZero) {
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64", "-m", "1G"});
  req.qemu_exe = "/opt/qemu/bin/qemu-system-x86_64";
  Prepared p = prepare(req);
  EXPECT_EQ(p.exe, req.qemu_exe);
  EXPECT_EQ(p.qemu_argv.at(0), req.qemu_exe);
  EXPECT_EQ(prepare(request({}, {"qemu-system-x86_64"})).qemu_argv.at(0), "qemu-system-x86_64");
}

TEST_F(LaunchTest, DryRunPrintsTheScriptAndTouchesNothing) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  const std::string before = fs.snapshot();
  const size_t changes = fs.log().size();
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64", "-m", "1G"});
  req.name = "dry";
  req.dry_run = true;
  req.configfs = FakeConfigFs::kRoot;
  const Prepared p = prepare(req);

  testing::internal::CaptureStdout();
  int rc = launch(req, fs);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(fs.snapshot(), before);
  EXPECT_EQ(fs.log().size(), changes);
  EXPECT_FALSE(fs.kernel_crashed());
  EXPECT_EQ(out.rfind("#!/bin/sh\n", 0), 0u) << out;
  EXPECT_NE(out.find("CFS='/sys/kernel/config'"), std::string::npos) << out;
  EXPECT_NE(out.find("mkdir \"$CFS/target/core/$HBA0/dry-disk0\""), std::string::npos) << out;
  EXPECT_NE(out.find(p.plan.disks.at(0).identity.wwn), std::string::npos) << out;
  EXPECT_NE(out.find("qemu-system-x86_64"), std::string::npos) << out;
  EXPECT_NE(out.find(dir_ / "a.raw"), std::string::npos) << out;
  // No journal either.
  EXPECT_NE(::access(req.state_dir.c_str(), F_OK), 0);
}

TEST_F(LaunchTest, DryRunJoinsASharedDiskAnotherVmServes) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  const std::string img = image("s.raw");
  Provisioner other(fs);
  other.apply(build_plan("other", {checked_image(img + ",share=on")}));
  other.release();
  const std::string before = fs.snapshot();
  LaunchRequest req = request({img + ",share=on"}, {"qemu-system-x86_64"});
  req.name = "dry";
  req.dry_run = true;
  testing::internal::CaptureStdout();
  EXPECT_EQ(launch(req, fs), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(fs.snapshot(), before);
  // What a start would do: check the object is there, not make it again.
  EXPECT_NE(out.find("the shared disk is gone"), std::string::npos) << out;
  EXPECT_EQ(out.find("mkdir \"$CFS/target/core/$HBA0/qlshared-"), std::string::npos) << out;
  EXPECT_NE(out.find("/qlshared-"), std::string::npos) << out;
  // The joiner's exact comparisons are shell too.
  EXPECT_NE(out.find("QL_E="), std::string::npos) << out;
  {
    std::ofstream(dir_ / "join.sh") << out;
  }
  EXPECT_EQ(std::system(("sh -n " + std::string(dir_ / "join.sh")).c_str()), 0) << out;
}

TEST_F(LaunchTest, DryRunRefusesAConflict) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  const std::string img = image("a.raw");
  fs.mkdir("target/core/fileio_0");
  fs.mkdir("target/core/fileio_0/other");
  fs.write("target/core/fileio_0/other/control", "fd_dev_name=" + img + ",fd_dev_size=1048576");
  fs.write("target/core/fileio_0/other/udev_path", img);
  fs.write("target/core/fileio_0/other/enable", "1");
  LaunchRequest req = request({img}, {"qemu-system-x86_64"});
  req.dry_run = true;
  testing::internal::CaptureStdout();
  std::string msg = error_of([&] { launch(req, fs); });
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(msg.find("already exported"), std::string::npos) << msg;
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

TEST_F(LaunchTest, AVmWithDisksGetsItsControlSocketAsAnInheritedDescriptor) {
  LaunchRequest req = request({image("a.raw")}, {"qemu-system-x86_64"});
  req.name = "vm";
  Prepared p = prepare(req);
  ASSERT_TRUE(p.control.enabled());
  EXPECT_EQ(p.control.path(), req.state_dir + "/vm." + std::to_string(::getpid()) + ".qmp");
  auto at = std::find(p.qemu_argv.begin(), p.qemu_argv.end(), "-chardev");
  ASSERT_NE(at, p.qemu_argv.end());
  EXPECT_EQ(at[1].rfind("socket,id=qemu-lio-qmp,fd=", 0), 0u) << at[1];
  EXPECT_TRUE(contains(p.qemu_argv, "chardev=qemu-lio-qmp,mode=control"));
  // Made, not bound: a dry run prepares the same and must leave no socket behind.
  EXPECT_NE(::access(p.control.path().c_str(), F_OK), 0);
}

TEST_F(LaunchTest, NoDiskNoControlSocket) {
  Prepared p = prepare(request({}, {"qemu-system-x86_64"}));
  EXPECT_FALSE(p.control.enabled());
  EXPECT_FALSE(contains(p.qemu_argv, "-chardev"));
}

TEST_F(LaunchTest, HotplugPortsOnlyOnQ35) {
  LaunchRequest q35 = request({image("a.raw")}, {"qemu-system-x86_64", "-machine", "q35,accel=kvm"});
  q35.hotplug_ports = 2;
  Prepared p = prepare(q35);
  EXPECT_TRUE(contains(p.qemu_argv, "pcie-root-port,id=qemu-lio-port1,chassis=254"));
  LaunchRequest pc = request({image("a.raw")}, {"qemu-system-x86_64", "-machine", "pc"});
  pc.hotplug_ports = 2;
  EXPECT_FALSE(contains(prepare(pc).qemu_argv, "pcie-root-port,id=qemu-lio-port0,chassis=255"));
  LaunchRequest from_config = request({image("a.raw")}, {"qemu-system-x86_64", "-M", "pc-q35-7.2"});
  from_config.config.hotplug_ports = 1;
  EXPECT_TRUE(contains(prepare(from_config).qemu_argv, "pcie-root-port,id=qemu-lio-port0,chassis=255"));
}

TEST_F(LaunchTest, AQemuWithoutVhostScsiIsRefusedBeforeAnythingIsDecided) {
  std::ofstream f(dir_ / "bin/qemu-system-x86_64");
  f << "#!/bin/sh\necho 'name \"virtio-blk-pci\", bus PCI'\n";
  f.close();
  const std::string msg = error_of([&] { prepare(request({image("a.raw")}, {"qemu-system-x86_64"})); });
  EXPECT_NE(msg.find(dir_ / "bin/qemu-system-x86_64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no vhost-scsi-pci"), std::string::npos) << msg;
}

TEST_F(LaunchTest, WorkerPerVirtqueueNeedsQemuKernelAndSetting) {
  // What this machine's kernel says (no LIO here: usually "unknown", no /dev/vhost-scsi).
  const auto kernel = probe_vhost_workers().answer;
  using A = VhostWorkerSupport::Answer;
  auto device_of = [&](WorkerSetting s, const std::string& spec) {
    LaunchRequest req = request({image("a.raw") + spec}, {"qemu-system-x86_64", "-smp", "4"});
    req.config.worker_per_virtqueue = s;
    return device(prepare(req).qemu_argv);
  };
  const std::string on = ",worker_per_virtqueue=on";
  // A QEMU without the property: never, whatever the setting; `on` is refused by name.
  EXPECT_EQ(device_of(WorkerSetting::kAuto, "").find(on), std::string::npos);
  EXPECT_NE(error_of([&] { device_of(WorkerSetting::kOn, ""); }).find("QEMU 9.0"), std::string::npos);
  qemu_has_workers();
  EXPECT_EQ(device_of(WorkerSetting::kOff, "").find(on), std::string::npos);
  EXPECT_EQ(device_of(WorkerSetting::kAuto, "").find(on) != std::string::npos, kernel == A::kYes);
  if (kernel == A::kNo) {
    EXPECT_NE(error_of([&] { device_of(WorkerSetting::kOn, ""); }).find("VHOST_NEW_WORKER"), std::string::npos);
  } else {
    EXPECT_NE(device_of(WorkerSetting::kOn, "").find(on), std::string::npos);
  }
  // One I/O queue: nothing to spread.
  if (kernel != A::kNo) {
    EXPECT_EQ(device_of(WorkerSetting::kOn, ",num-queues=1").find(on), std::string::npos);
  }
}

}  // namespace
}  // namespace qemu_lio
