// Served images (non-raw formats) without a kernel: the plan's iblock over "$NBD<i>", the
// journal's daemon and device records, and the teardown's order (LIO, then devices, then
// the daemon). The daemon and the NBD devices themselves are tested in the real kernel
// (tests/vm/scenarios/formats.sh).

#include "qemu_lio/served_disks.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/shell_script.h"
#include "qemu_lio/teardown.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;
const RetryPolicy kFastRetry{milliseconds(1), milliseconds(4), milliseconds(20)};

CheckedImage served_image(const std::string& spec, const std::string& format = "qcow2") {
  CheckedImage img = checked_image(spec);
  img.info.format = format;
  return img;
}

const Op* find_op(const Plan& plan, Op::Kind kind, const std::string& path) {
  for (const Op& op : plan.ops)
    if (op.kind == kind && op.path == path) return &op;
  return nullptr;
}

TEST(ServedPlan, IblockOverTheNbdVariableKnownByTheImagePath) {
  Plan plan = build_plan("vm", {checked_image("/img/a.raw"), served_image("/img/b.qcow2,readonly=on")});
  const DiskPlan& raw = plan.disks[0];
  const DiskPlan& d = plan.disks[1];
  EXPECT_EQ(raw.nbd_var, "");
  EXPECT_EQ(raw.plugin, "fileio");
  EXPECT_EQ(d.nbd_var, "NBD1");
  EXPECT_EQ(d.plugin, "iblock");
  const std::string so = "target/core/$" + d.hba_var + "/" + d.so_name;
  const Op* control = find_op(plan, Op::Kind::kWrite, so + "/control");
  ASSERT_NE(control, nullptr);
  EXPECT_EQ(control->value, "udev_path=$NBD1,readonly=1");
  const Op* udev = find_op(plan, Op::Kind::kWrite, so + "/udev_path");
  ASSERT_NE(udev, nullptr);
  EXPECT_EQ(udev->value, "/img/b.qcow2");  // conflicts, list and gc see the image
  // The kernel opens the NBD device, not the image: there is no file of its to compare.
  EXPECT_EQ(find_op(plan, Op::Kind::kExpectSameFile, "/img/b.qcow2"), nullptr);
}

TEST(ServedPlan, ShareOnIsRefused) {
  const std::string e = usage_error_of([] { build_plan("vm", {served_image("/img/b.qcow2,share=on")}); });
  EXPECT_EQ(e, "image /img/b.qcow2: share=on serves raw images only, not qcow2");
}

TEST(ServedPlan, DryRunScriptAsksForTheDevice) {
  Plan plan = build_plan("vm", {served_image("/img/b.qcow2")});
  const std::string s = render_shell_script(plan, "/sys/kernel/config", {"qemu-system-x86_64"});
  EXPECT_NE(s.find(": \"${NBD0:?set NBD0 to the NBD device named above}\""), std::string::npos) << s;
  EXPECT_LT(s.find("${NBD0:?"), s.find("udev_path=$NBD0")) << s;
}

TEST(ServedProvisioner, BoundDevicesReachTheSteps) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  Plan plan = build_plan("vm", {served_image("/img/b.qcow2")});
  Provisioner prov(fs, kFastRetry);
  prov.bind({{"NBD0", "/dev/nbd7"}});
  prov.apply(plan);
  const std::string so = "target/core/" + prov.bindings().at(0).second + "/" + plan.disks[0].so_name;
  EXPECT_EQ(fs.read(so + "/udev_path"), "/img/b.qcow2\n");
  const auto& log = fs.log();
  EXPECT_NE(std::find(log.begin(), log.end(), "write " + so + "/control=udev_path=/dev/nbd7"), log.end());
  EXPECT_EQ(prov.teardown(), 0);
}

TEST(ExtensionNamesFormat, OnlyTheFormatsOwnExtensions) {
  EXPECT_TRUE(extension_names_format("/a/b.qcow2", "qcow2"));
  EXPECT_TRUE(extension_names_format("/a/b.vdi", "vdi"));
  EXPECT_FALSE(extension_names_format("/a/b.vhd", "vpc"));     // a fixed VHD is raw
  EXPECT_FALSE(extension_names_format("/a/b-flat.vmdk", "vmdk"));  // a raw extent
  EXPECT_FALSE(extension_names_format("/a/b.qcow", "qcow2"));
  EXPECT_FALSE(extension_names_format("/a/b.img", "qcow2"));
  EXPECT_FALSE(extension_names_format("/a/b.qcow2", "vmdk"));
  EXPECT_FALSE(extension_names_format("/a.qcow2/b", "qcow2"));  // the directory does not count
  EXPECT_FALSE(extension_names_format("/a/.qcow2", "qcow2"));
}

class ServedJournalTest : public ::testing::Test {
 protected:
  std::string make_journal(bool started = true, int devices = 2) {
    JournalWriter j(dir_ / "state", "vm" + std::to_string(++made_), ProcessId{::getpid(), 1});
    files_ = served_files(j.path());
    j.storage_daemon(files_);
    if (started) j.storage_daemon_started(ProcessId{4242, 99});
    for (int i = 0; i < devices; ++i) j.nbd(nbd_backend_prefix(j.path()) + std::to_string(i), false);
    return j.path();
  }
  TempDir dir_;
  int made_ = 0;
  JournalContents::Served files_;
};

TEST_F(ServedJournalTest, RecordsReadBack) {
  const std::string file = make_journal();
  JournalContents j = read_journal(file);
  EXPECT_EQ(j.version, kJournalVersion);
  ASSERT_TRUE(j.served);
  EXPECT_EQ(j.served->pidfile, file + ".daemon.pid");
  EXPECT_EQ(j.served->nbd_socket, file + ".nbd.sock");
  ASSERT_TRUE(j.served->daemon);
  EXPECT_EQ(j.served->daemon->pid, 4242);
  const std::string id0 = nbd_backend_prefix(file) + "0";
  EXPECT_EQ(j.served->nbd, (std::vector<std::string>{id0, nbd_backend_prefix(file) + "1"}));
  append_journal_record(file, "nbd-cancel " + journal_escape(id0));
  EXPECT_EQ(read_journal(file).served->nbd, std::vector<std::string>{nbd_backend_prefix(file) + "1"});
}

TEST_F(ServedJournalTest, ForeignFilesAndDevicesAreRefused) {
  // gc signals the daemon a pidfile names and deletes these files as root.
  std::string file = make_journal(false, 0);
  append_journal_record(file, "serve /etc/passwd /tmp/a /tmp/b /tmp/c");
  EXPECT_THROW(read_journal(file), Error);
  file = make_journal(false, 0);
  append_journal_record(file, "nbd qemu-lio:other.journal:0");
  EXPECT_THROW(read_journal(file), Error);
}

TEST_F(ServedJournalTest, VersionOneStillReads) {
  const std::string file = dir_ / "old.journal";
  std::ofstream(file) << "qemu-lio-journal 1\nvm old\nwrapper 1 1\nready\n";
  EXPECT_EQ(read_journal(file).version, 1);
  std::ofstream(file) << "qemu-lio-journal 3\nvm new\nwrapper 1 1\n";
  EXPECT_THROW(read_journal(file), Error);
}

TEST_F(ServedJournalTest, RecordsOfANameWithDotsRead) {
  // A VM named "web." has the journal "web..PID.journal": its files are its own all the same.
  JournalWriter j(dir_ / "state", "web.", ProcessId{::getpid(), 1});
  j.storage_daemon(served_files(j.path()));
  j.nbd(nbd_backend_prefix(j.path()) + "0", false);
  const JournalContents r = read_journal(j.path());
  ASSERT_TRUE(r.served);
  EXPECT_EQ(r.served->log, j.path() + ".daemon.log");
  EXPECT_EQ(r.served->nbd.size(), 1u);
}

// Records what a teardown did to the served part, in order.
struct Recorder {
  std::vector<std::string> calls;
  bool stuck = false;
  bool daemon_alive = true;
  ServedEffects effects() {
    return {[this](const std::string& id) -> std::pair<bool, bool> {
              calls.push_back("disconnect " + id.substr(id.rfind(':') + 1));
              return {true, stuck};
            },
            [this](const JournalContents::Served&) -> std::pair<bool, bool> {
              calls.push_back("stop daemon");
              return {daemon_alive, false};
            }};
  }
};

TEST_F(ServedJournalTest, TeardownRemovesDevicesNewestFirstThenTheDaemon) {
  JournalContents j = read_journal(make_journal());
  Recorder rec;
  auto r = teardown_served(*j.served, rec.effects());
  EXPECT_EQ(rec.calls, (std::vector<std::string>{"disconnect 1", "disconnect 0", "stop daemon"}));
  EXPECT_EQ(r, std::make_pair(3, 0));
}

TEST_F(ServedJournalTest, AStuckDeviceKeepsTheDaemonAndTheJournal) {
  // Stopping the daemon under a device that would not let go leaves its I/O on a dead socket.
  JournalContents j = read_journal(make_journal());
  Recorder rec;
  rec.stuck = true;
  FakeConfigFs fs;
  std::vector<std::string> forgotten;
  TeardownResult r = teardown_journal(fs, j, kFastRetry, [&](const std::string& f) { forgotten.push_back(f); },
                                      rec.effects());
  EXPECT_GT(r.failed, 0);
  EXPECT_EQ(rec.calls, (std::vector<std::string>{"disconnect 1", "disconnect 0"}));
  EXPECT_TRUE(forgotten.empty());
}

TEST_F(ServedJournalTest, LioObjectsGoFirstAndTheFilesWithTheJournal) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  const std::string file = make_journal();
  std::ofstream(files_.pidfile) << "4242\n";
  std::ofstream(files_.log) << "";
  Plan plan = build_plan("vm", {served_image("/img/b.qcow2")});
  {
    JournalWriter journal(file);
    Provisioner prov(fs, kFastRetry);
    prov.bind({{"NBD0", "/dev/nbd7"}});
    prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
    prov.apply(plan);
    prov.release();
  }
  // A LIO object that will not go keeps the devices and the daemon.
  const JournalContents j = read_journal(file);
  Recorder rec;
  fs.fail_on(FsOp::kRmdir, "lun_0", EPERM);
  EXPECT_GT(teardown_journal(fs, j, kFastRetry, [](const std::string&) {}, rec.effects()).failed, 0);
  EXPECT_TRUE(rec.calls.empty());
  fs.clear_faults();
  std::vector<std::string> forgotten;
  TeardownResult r = teardown_journal(fs, j, kFastRetry, [&](const std::string& f) { forgotten.push_back(f); },
                                      rec.effects());
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(rec.calls, (std::vector<std::string>{"disconnect 1", "disconnect 0", "stop daemon"}));
  // The files that exist go, the journal last.
  EXPECT_EQ(forgotten, (std::vector<std::string>{files_.pidfile, files_.log, file}));
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

TEST(OpenFiles, ListsTheRegularFilesAProcessHoldsOpen) {
  TempDir dir;
  const std::string f = dir / "backing.img";
  std::ofstream(f) << "x";
  const std::vector<std::string> before = open_files(::getpid());
  EXPECT_EQ(std::find(before.begin(), before.end(), f), before.end());
  std::ifstream held(f);
  const std::vector<std::string> now = open_files(::getpid());
  EXPECT_NE(std::find(now.begin(), now.end(), f), now.end());
}

}  // namespace
}  // namespace qemu_lio
