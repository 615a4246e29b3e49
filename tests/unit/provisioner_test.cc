// The Provisioner against the fake kernel: every object it makes must be undone, in an
// order the kernel accepts, whatever fails and wherever.

#include "qemu_lio/provisioner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <iterator>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/plan_builder.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

// The fake never needs long; a short deadline keeps permanent EBUSY cases quick.
const RetryPolicy kFastRetry{milliseconds(1), milliseconds(4), milliseconds(20)};

// Three disks covering every cache mode, a 4 KiB disk without discard, and a read-only
// disk with its explicit ACL.
Plan three_disk_plan() {
  return build_plan("vm", {checked_image("/img/a.raw"),
                           checked_image("/img/b.raw,cache=writethrough,block-size=4096,"
                                         "discard=off"),
                           checked_image("/img/c.raw,cache=none,readonly=on,serial=c-serial")});
}

// The kernel as a host with vhost_scsi in use looks: target/vhost already made (it is
// shared and qemu-lio never removes it).
void prepare(FakeConfigFs& fs) { fs.mkdir("target/vhost"); }

// Paths of one disk once the Provisioner bound its HBA.
struct DiskPaths {
  std::string so, tpg, lun, link, acl;
};

DiskPaths paths_of(const Plan& plan, const Provisioner& p, size_t i) {
  const DiskPlan& d = plan.disks.at(i);
  DiskPaths out;
  out.so = bind_vars("target/core/$" + d.hba_var + "/" + d.so_name, p.bindings());
  out.tpg = "target/vhost/" + d.identity.wwn + "/tpgt_1";
  out.lun = out.tpg + "/lun/lun_0";
  out.link = out.lun + "/" + d.so_name;
  out.acl = out.tpg + "/acls/" + d.identity.nexus;
  return out;
}

class ProvisionerTest : public ::testing::Test {
 protected:
  ProvisionerTest() {
    prepare(fs_);
    initial_ = fs_.snapshot();
  }
  ~ProvisionerTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  std::string read(const std::string& path) { return fs_.read(path); }

  FakeConfigFs fs_;
  Plan plan_ = three_disk_plan();
  std::string initial_;
};

TEST_F(ProvisionerTest, ApplyMakesEveryObjectWithItsSettings) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  ASSERT_EQ(p.bindings().size(), 3u);

  struct Want {
    const char* mode;
    const char* sector_size;
    const char* write_cache;
    const char* discard;
  };
  const Want want[] = {{"Mode: Buffered-WCE Async: 0", "SectorSize: 512", "1\n", "1\n"},
                       {"Mode: O_DSYNC Async: 0", "SectorSize: 4096", "0\n", "0\n"},
                       {"Mode: O_DSYNC Async: 1", "SectorSize: 512", "1\n", "1\n"}};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("disk " + std::to_string(i));
    const DiskPlan& d = plan_.disks[i];
    DiskPaths at = paths_of(plan_, p, i);
    EXPECT_EQ(read(at.so + "/enable"), "1\n");
    const std::string info = read(at.so + "/info");
    EXPECT_NE(info.find("Status: ACTIVATED"), std::string::npos) << info;
    EXPECT_NE(info.find(want[i].mode), std::string::npos) << info;
    EXPECT_NE(info.find(want[i].sector_size), std::string::npos) << info;
    EXPECT_NE(info.find("File: " + d.info.canonical_path + "  Size: 1048576"), std::string::npos);
    EXPECT_EQ(read(at.so + "/attrib/emulate_write_cache"), want[i].write_cache);
    EXPECT_EQ(read(at.so + "/attrib/emulate_tpu"), want[i].discard);
    EXPECT_EQ(read(at.so + "/udev_path"), d.info.canonical_path + "\n");
    EXPECT_EQ(read(at.so + "/wwn/vpd_unit_serial"),
              "T10 VPD Unit Serial Number: " + d.identity.serial + "\n");
    EXPECT_EQ(read(at.tpg + "/nexus"), d.identity.nexus + "\n");
    EXPECT_EQ(fs_.link_target(at.link), at.so);
  }
  EXPECT_EQ(plan_.disks[2].identity.serial, "c-serial");
  EXPECT_EQ(read(paths_of(plan_, p, 2).acl + "/lun_0/write_protect"), "1\n");
  EXPECT_FALSE(fs_.exists(paths_of(plan_, p, 0).acl));  // only the read-only disk has one
}

TEST_F(ProvisionerTest, KernelSawEnableBeforeBlockSizeBeforeDiscardBeforeExport) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  DiskPaths at = paths_of(plan_, p, 0);
  auto index = [&](const std::string& entry) {
    const auto& log = fs_.log();
    auto it = std::find(log.begin(), log.end(), entry);
    EXPECT_NE(it, log.end()) << entry;
    return it - log.begin();
  };
  EXPECT_LT(index("write " + at.so + "/enable=1"), index("write " + at.so + "/attrib/block_size=512"));
  EXPECT_LT(index("write " + at.so + "/attrib/block_size=512"),
            index("write " + at.so + "/attrib/emulate_tpu=1"));
  EXPECT_LT(index("write " + at.so + "/attrib/emulate_tpu=1"),
            index("symlink " + at.link + " -> " + at.so));
}

TEST_F(ProvisionerTest, PendingUndoStepsAreBoundAndOldestFirst) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  ASSERT_FALSE(p.pending().empty());
  for (const Undo& u : p.pending()) EXPECT_EQ(u.path.find('$'), std::string::npos) << u.path;
  EXPECT_EQ(p.pending().front().path, "target/core/" + p.bindings()[0].second);
  EXPECT_EQ(p.pending().back().kind, Undo::Kind::kUnlink);
}

TEST_F(ProvisionerTest, TeardownReturnsTheTreeToItsStartingState) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  EXPECT_NE(fs_.snapshot(), initial_);
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_TRUE(p.pending().empty());
  const long ops = fs_.ops_count();
  EXPECT_EQ(p.teardown(), 0);  // nothing left to do
  EXPECT_EQ(fs_.ops_count(), ops);
}

TEST_F(ProvisionerTest, DestructorRollsBack) {
  {
    Provisioner p(fs_, kFastRetry);
    p.apply(plan_);
  }
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, ReleaseHandsTheObjectsOver) {
  std::vector<Undo> steps;
  std::string provisioned;
  {
    Provisioner p(fs_, kFastRetry);
    p.apply(plan_);
    steps = p.pending();
    provisioned = fs_.snapshot();
    p.release();
    EXPECT_TRUE(p.pending().empty());
  }
  EXPECT_EQ(fs_.snapshot(), provisioned);  // nothing removed
  // What gc does with the journal of a run that is gone.
  EXPECT_EQ(run_undo(fs_, steps, kFastRetry), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST(ProvisionerFreshKernel, MakesTheVhostFabricDirAndLeavesIt) {
  FakeConfigFs fs, expected;
  expected.mkdir("target/vhost");
  Provisioner p(fs, kFastRetry);
  p.apply(three_disk_plan());
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs.snapshot(), expected.snapshot());
  EXPECT_FALSE(fs.kernel_crashed());
}

TEST(ProvisionerClaim, SkipsHbasOtherToolsHold) {
  FakeConfigFs fs;
  prepare(fs);
  fs.mkdir("target/core/fileio_0");
  fs.mkdir("target/core/fileio_1");
  const std::string initial = fs.snapshot();
  Provisioner p(fs, kFastRetry);
  p.apply(three_disk_plan());
  using Binding = std::pair<std::string, std::string>;
  EXPECT_EQ(p.bindings(), (std::vector<Binding>{{"HBA0", "fileio_2"}, {"HBA1", "fileio_3"},
                                                {"HBA2", "fileio_4"}}));
  EXPECT_TRUE(fs.exists("target/core/fileio_2/vm-disk0"));
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs.snapshot(), initial);  // the others' HBAs are untouched
}

TEST(ProvisionerClaim, LosingARaceForAnHbaTakesTheNext) {
  FakeConfigFs fs;
  prepare(fs);
  const std::string initial = fs.snapshot();
  // Another tool made fileio_0 between our look and our mkdir (and removed it since).
  fs.fail_on_exact(FsOp::kMkdir, "target/core/fileio_0", EEXIST, 1);
  Provisioner p(fs, kFastRetry);
  p.apply(build_plan("vm", {checked_image("/img/a.raw")}));
  EXPECT_EQ(p.bindings().at(0).second, "fileio_1");
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs.snapshot(), initial);
}

TEST(ProvisionerClaim, OtherClaimErrorsFail) {
  FakeConfigFs fs;
  prepare(fs);
  const std::string initial = fs.snapshot();
  fs.fail_on(FsOp::kMkdir, "target/core/fileio_", ENOSPC);
  Provisioner p(fs, kFastRetry);
  std::string msg = error_of([&] { p.apply(three_disk_plan()); });
  EXPECT_EQ(msg, "/sys/kernel/config/target/core/fileio_0: cannot create: No space left on device");
  EXPECT_EQ(fs.snapshot(), initial);
}

TEST_F(ProvisionerTest, ErrorNamesTheObjectThenTheKernelsCause) {
  fs_.fail_on(FsOp::kWrite, "vm-disk1/enable", EINVAL);
  Provisioner p(fs_, kFastRetry);
  try {
    p.apply(plan_);
    FAIL() << "apply succeeded";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "/sys/kernel/config/target/core/fileio_1/vm-disk1/enable: cannot write '1': "
                           "Invalid argument");
    EXPECT_EQ(e.object(), "/sys/kernel/config/target/core/fileio_1/vm-disk1/enable");
    EXPECT_EQ(e.exit_code(), exit_code::kProvisionFailed);
  }
  EXPECT_TRUE(p.pending().empty());
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, ForeignWwnIsNeverRemoved) {
  // Another VM owns the wwn disk 1 would use: its mkdir gives EEXIST, which is a failure,
  // and the rollback must leave the other VM's target alone.
  const std::string foreign = "target/vhost/" + plan_.disks[1].identity.wwn;
  fs_.mkdir(foreign);
  const std::string initial = fs_.snapshot();
  Provisioner p(fs_, kFastRetry);
  std::string msg = error_of([&] { p.apply(plan_); });
  EXPECT_EQ(msg, "/sys/kernel/config/" + foreign + ": cannot create: File exists");
  EXPECT_TRUE(fs_.exists(foreign));
  EXPECT_EQ(fs_.snapshot(), initial);
}

TEST_F(ProvisionerTest, KernelThatIgnoresAsyncIoIsCaught) {
  // Before 4.18 fd_async_io= is an unknown key, accepted without an error.
  fs_.ignore_control_key("fd_async_io");
  Provisioner p(fs_, kFastRetry);
  std::string msg = error_of([&] { p.apply(plan_); });
  EXPECT_NE(msg.find("vm-disk2-ro/info: kernel did not take the setting: expected 'Async: 1'"),
            std::string::npos)
      << msg;
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, BlockSizeThatDidNotStickIsCaught) {
  fs_.fail_on(FsOp::kRead, "vm-disk1/attrib/block_size", EIO, 1);
  Provisioner p(fs_, kFastRetry);
  EXPECT_EQ(error_of([&] { p.apply(plan_); }),
            "/sys/kernel/config/target/core/fileio_1/vm-disk1/attrib/block_size: cannot read: "
            "Input/output error");
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, BusyRmdirIsRetriedWithinThePolicy) {
  Provisioner p(fs_, RetryPolicy{milliseconds(1), milliseconds(2), milliseconds(2000)});
  p.apply(plan_);
  DiskPaths at = paths_of(plan_, p, 0);
  fs_.busy(at.so, 3);  // the vhost endpoint is still being released
  fs_.busy(at.tpg, 2);
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, PermanentBusyIsCountedNotThrown) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  const std::vector<Undo> steps = p.pending();
  DiskPaths at = paths_of(plan_, p, 0);
  fs_.fail_on_exact(FsOp::kRmdir, at.so, EBUSY);
  const auto start = std::chrono::steady_clock::now();
  int failed = -1;
  EXPECT_NO_THROW(failed = p.teardown());
  // The storage object, and so its HBA, stay; everything else is gone.
  EXPECT_GE(failed, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));  // bounded backoff
  EXPECT_TRUE(fs_.exists(at.so));
  EXPECT_TRUE(fs_.exists("target/core/" + p.bindings()[0].second));
  EXPECT_FALSE(fs_.exists(at.tpg));
  EXPECT_FALSE(fs_.exists(paths_of(plan_, p, 1).so));
  // Once the kernel lets go, gc finishes the job from the journal.
  fs_.clear_faults();
  EXPECT_EQ(run_undo(fs_, steps, kFastRetry), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, TeardownLogsEachFailureOnceObjectFirst) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  DiskPaths at = paths_of(plan_, p, 1);
  fs_.fail_on_exact(FsOp::kRmdir, at.so, EROFS);
  ::testing::internal::CaptureStderr();
  const int failed = p.teardown();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_GE(failed, 1);
  // "qemu-lio: error: <object>: <cause>", the cause said once, as every other message.
  EXPECT_NE(err.find("qemu-lio: error: /sys/kernel/config/" + at.so + ": cannot remove: Read-only file system\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("Read-only file system: Read-only file system"), std::string::npos) << err;
}

TEST_F(ProvisionerTest, ObjectsAlreadyGoneCountAsRemoved) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  fs_.clear_all();  // targetctl clear while the VM ran
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionerTest, TeardownWhileQemuHoldsTheTargetKeepsWhatIsPinned) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  DiskPaths at = paths_of(plan_, p, 0);
  fs_.attach_vhost(plan_.disks[0].identity.wwn);
  // Clearing the nexus and removing the TPG give EBUSY, so the WWN is not empty: three
  // objects stay. The LUN goes (a silent hot-unplug), and so can the backstore.
  EXPECT_EQ(p.teardown(), 3);
  EXPECT_TRUE(fs_.exists(at.tpg));
  EXPECT_FALSE(fs_.exists(at.lun));
  EXPECT_FALSE(fs_.exists(at.so));
  EXPECT_FALSE(fs_.exists(paths_of(plan_, p, 2).tpg));
}

TEST_F(ProvisionerTest, ReadOnlyAclIsNeverRemovedUnderALiveNexus) {
  // If the nexus cannot be cleared (QEMU still bound, or any error), removing the ACL of
  // that nexus blocks the process in the kernel for minutes (seen on 6.1). Teardown must
  // leave the ACL and count it instead.
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  DiskPaths at = paths_of(plan_, p, 2);
  fs_.attach_vhost(plan_.disks[2].identity.wwn);
  EXPECT_GT(p.teardown(), 0);
  EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason();
  EXPECT_TRUE(fs_.exists(at.acl));
}

TEST_F(ProvisionerTest, ObserverHearsOfEachObjectBeforeItExists) {
  struct Event {
    Undo undo;
    bool cancelled;
    bool existed;
  };
  std::vector<Event> events;
  Provisioner p(fs_, kFastRetry);
  p.set_observer([&](const Undo& u, bool cancelled) {
    events.push_back({u, cancelled, fs_.exists(u.path)});
  });
  fs_.mkdir("target/core/fileio_1");  // one claim attempt is cancelled
  p.apply(plan_);
  // Each cancellation withdraws the announcement just before it; what is left must not
  // have existed when it was announced.
  std::vector<Event> live;
  for (const Event& e : events) {
    if (!e.cancelled) {
      live.push_back(e);
      continue;
    }
    ASSERT_FALSE(live.empty());
    EXPECT_EQ(live.back().undo.path, e.undo.path);
    live.pop_back();
  }
  std::vector<std::string> announced;
  for (const Event& e : live) {
    if (e.undo.kind != Undo::Kind::kWrite) {
      EXPECT_FALSE(e.existed) << e.undo.path;
    }
    announced.push_back(e.undo.path);
  }
  std::vector<std::string> pending;
  for (const Undo& u : p.pending()) pending.push_back(u.path);
  EXPECT_EQ(announced, pending);  // the journal knows exactly what exists
}

TEST_F(ProvisionerTest, ObserverHearsOfAFailedCreation) {
  std::vector<std::pair<std::string, bool>> events;
  Provisioner p(fs_, kFastRetry);
  p.set_observer([&](const Undo& u, bool cancelled) { events.emplace_back(u.path, cancelled); });
  fs_.fail_on(FsOp::kSymlink, "vm-disk0", EIO);
  EXPECT_THROW(p.apply(plan_), Error);
  // The link's creation failed: its cancel follows its announcement at once.
  auto first_cancel = std::find_if(events.begin(), events.end(), [](const auto& e) { return e.second; });
  ASSERT_NE(first_cancel, events.end());
  ASSERT_NE(first_cancel, events.begin());
  EXPECT_EQ(std::prev(first_cancel)->first, first_cancel->first);
  EXPECT_FALSE(std::prev(first_cancel)->second);
  // Then the rollback removes what was made, and says so for each: the journal names none.
  for (auto made = events.begin(); made != std::prev(first_cancel); ++made)
    EXPECT_NE(std::find(std::next(first_cancel), events.end(), std::make_pair(made->first, true)), events.end())
        << made->first << " was removed without a cancel";
}

// ---------------------------------------------------------------------------------------
// Every operation of a three-disk run fails in turn.

struct OpFault {
  long n;            // operation number to fail (FakeConfigFs::ops_count numbering)
  std::string what;  // what that operation is in a clean run ("write target/...")
};

void PrintTo(const OpFault& f, std::ostream* os) { *os << "op " << f.n << ": " << f.what; }

std::string test_name(const ::testing::TestParamInfo<OpFault>& info) {
  std::string s = "op" + std::to_string(info.param.n) + "_";
  for (char c : info.param.what) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

// The operations of a clean apply (teardown = false) or of the teardown that follows it.
std::vector<OpFault> clean_run_ops(bool teardown) {
  FakeConfigFs fs;
  prepare(fs);
  Provisioner p(fs, kFastRetry);
  long first = fs.ops_count() + 1;
  p.apply(three_disk_plan());
  if (teardown) {
    first = fs.ops_count() + 1;
    p.teardown();
  }
  const long last = fs.ops_count();
  std::vector<OpFault> out;
  for (long n = first; n <= last; ++n) out.push_back({n, fs.calls().at(static_cast<size_t>(n - 1))});
  return out;
}

class ApplyFailsAtEachOp : public ::testing::TestWithParam<OpFault> {};

TEST_P(ApplyFailsAtEachOp, RollsBackEverything) {
  FakeConfigFs fs;
  prepare(fs);
  const std::string initial = fs.snapshot();
  fs.fail_at_op(GetParam().n, EIO);
  Provisioner p(fs, kFastRetry);
  std::string msg = error_of([&] { p.apply(three_disk_plan()); });
  EXPECT_NE(msg.find("Input/output error"), std::string::npos) << msg;
  EXPECT_TRUE(p.pending().empty());
  EXPECT_EQ(fs.snapshot(), initial);
  EXPECT_FALSE(fs.kernel_crashed()) << fs.crash_reason();
}

INSTANTIATE_TEST_SUITE_P(ThreeDisks, ApplyFailsAtEachOp,
                         ::testing::ValuesIn(clean_run_ops(false)), test_name);

class TeardownFailsAtEachOp : public ::testing::TestWithParam<OpFault> {};

TEST_P(TeardownFailsAtEachOp, CountsAndLeavesWhatGcCanFinish) {
  FakeConfigFs fs;
  prepare(fs);
  const std::string initial = fs.snapshot();
  Provisioner p(fs, kFastRetry);
  p.apply(three_disk_plan());
  const std::vector<Undo> steps = p.pending();
  fs.fail_at_op(GetParam().n, EIO);
  int failed = 0;
  EXPECT_NO_THROW(failed = p.teardown());
  EXPECT_GE(failed, 1);
  EXPECT_FALSE(fs.kernel_crashed()) << fs.crash_reason();
  // gc replays the journal's steps: the ones already done give ENOENT.
  EXPECT_EQ(run_undo(fs, steps, kFastRetry), 0);
  EXPECT_EQ(fs.snapshot(), initial);
}

INSTANTIATE_TEST_SUITE_P(ThreeDisks, TeardownFailsAtEachOp,
                         ::testing::ValuesIn(clean_run_ops(true)), test_name);

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

// The kernel opens fd_dev_name by name, as root, when enable is written. A file swapped in
// between qemu-lio's checks and that open must not be served: the run fails and rolls back.
class SameFileTest : public ::testing::Test {
 protected:
  SameFileTest() {
    write_file(img_, 1 << 20);
    write_file(other_, 1 << 20);
    prepare(fs_);
    initial_ = fs_.snapshot();
    ImageSpec spec = parse_image_spec(img_);
    plan_ = build_plan("vm", {CheckedImage{spec, inspect_image(spec)}});
  }
  ~SameFileTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  TempDir dir_;
  const std::string img_ = dir_ / "a.img", other_ = dir_ / "other.img";
  FakeConfigFs fs_;
  std::string initial_;
  Plan plan_;
};

TEST_F(SameFileTest, UnchangedImageIsServed) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(SameFileTest, FileSwappedAtEnableIsRefusedAndRolledBack) {
  fs_.before(FsOp::kWrite, "target/core/fileio_0/vm-disk0/enable",
             [&] { ASSERT_EQ(std::rename(other_.c_str(), img_.c_str()), 0); });
  Provisioner p(fs_, kFastRetry);
  std::string msg = error_of([&] { p.apply(plan_); });
  EXPECT_EQ(msg.rfind(img_ + ": changed between the check and enable (checked ", 0), 0u) << msg;
  EXPECT_TRUE(p.pending().empty());
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(SameFileTest, SymlinkSwappedInAtEnableIsRefused) {
  fs_.before(FsOp::kWrite, "target/core/fileio_0/vm-disk0/enable", [&] {
    ASSERT_EQ(::unlink(img_.c_str()), 0);
    ASSERT_EQ(::symlink(other_.c_str(), img_.c_str()), 0);
  });
  Provisioner p(fs_, kFastRetry);
  EXPECT_NE(error_of([&] { p.apply(plan_); }).find("changed between the check and enable"),
            std::string::npos);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(SameFileTest, FileRemovedAtEnableIsRefused) {
  fs_.before(FsOp::kWrite, "target/core/fileio_0/vm-disk0/enable",
             [&] { ASSERT_EQ(::unlink(img_.c_str()), 0); });
  Provisioner p(fs_, kFastRetry);
  EXPECT_NE(error_of([&] { p.apply(plan_); }).find(", now gone)"), std::string::npos);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST(SysErrorMessage, ObjectFirstThenActionThenCause) {
  SysError e(EINVAL, "cannot write '1'", "/sys/kernel/config/target/core/fileio_0/d/enable");
  EXPECT_STREQ(e.what(), "/sys/kernel/config/target/core/fileio_0/d/enable: cannot write '1': Invalid argument");
  EXPECT_EQ(e.err(), EINVAL);
}

TEST(FakeErrors, NameTheAbsolutePath) {
  FakeConfigFs fs;
  EXPECT_EQ(error_of<SysError>([&] { fs.mkdir("target/core/fileio_x"); }),
            "/sys/kernel/config/target/core/fileio_x: cannot create: Invalid argument");
  fs.fail_on(FsOp::kRmdir, "alua", EROFS);
  EXPECT_EQ(error_of<SysError>([&] { fs.rmdir("target/core/alua"); }),
            "/sys/kernel/config/target/core/alua: cannot remove: Read-only file system");
}

// ---------------------------------------------------------------------------------------
// Several disks at once: the fake says it is concurrent and makes every change wait, as the
// kernel does, so that the disks' steps really overlap.

// Eight disks: every cache mode, 4 KiB blocks, read-only disks with their ACLs.
Plan eight_disk_plan() {
  std::vector<CheckedImage> images;
  for (int i = 0; i < 8; ++i) {
    const std::string path = "/img/d" + std::to_string(i) + ".raw";
    switch (i % 3) {
      case 0: images.push_back(checked_image(path)); break;
      case 1: images.push_back(checked_image(path + ",cache=writethrough,block-size=4096,discard=off")); break;
      default: images.push_back(checked_image(path + ",cache=none,readonly=on")); break;
    }
  }
  return build_plan("vm", images);
}

// A snapshot with each claimed HBA written as its variable ("target/core/$HBA3"), lines
// sorted again: which disk wins which index depends on the threads, what each disk gets
// must not.
std::vector<std::string> by_variable(std::string snapshot, const Provisioner& p) {
  for (const auto& [var, hba] : p.bindings())
    snapshot = std::regex_replace(snapshot, std::regex("target/core/" + hba + "(?=[/\\s]|$)"),
                                  "target/core/$" + var);
  // The kernel numbers HBAs in creation order too.
  snapshot = std::regex_replace(snapshot, std::regex("HBA Index: [0-9]+"), "HBA Index: N");
  std::vector<std::string> lines;
  std::istringstream in(snapshot);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

class ConcurrentProvisionerTest : public ::testing::Test {
 protected:
  ConcurrentProvisionerTest() {
    prepare(fs_);
    fs_.set_concurrent(true);
    fs_.set_latency(std::chrono::microseconds(300));
    initial_ = fs_.snapshot();
  }
  ~ConcurrentProvisionerTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  FakeConfigFs fs_;
  Plan plan_ = eight_disk_plan();
  std::string initial_;
};

TEST_F(ConcurrentProvisionerTest, MakesTheSameObjectsAsASerialApply) {
  FakeConfigFs serial_fs;
  prepare(serial_fs);
  Provisioner serial(serial_fs, kFastRetry);
  serial.apply(plan_);
  EXPECT_EQ(serial_fs.max_in_flight(), 1);

  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  EXPECT_GE(fs_.max_in_flight(), 2);  // the disks did overlap
  EXPECT_EQ(by_variable(fs_.snapshot(), p), by_variable(serial_fs.snapshot(), serial));
  EXPECT_EQ(p.pending().size(), serial.pending().size());
  // Every disk has its own HBA.
  std::set<std::string> hbas;
  for (const auto& b : p.bindings()) hbas.insert(b.second);
  EXPECT_EQ(hbas.size(), plan_.disks.size());
}

TEST_F(ConcurrentProvisionerTest, EachDisksStepsKeepThePlanOrder) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  for (size_t i = 0; i < plan_.disks.size(); ++i) {
    // The changes the kernel saw for this disk, in the order it saw them.
    const DiskPaths at = paths_of(plan_, p, i);
    const std::string wwn = "target/vhost/" + plan_.disks[i].identity.wwn;
    std::vector<std::string> seen;
    for (const std::string& e : fs_.log())
      if (e.find(at.so) != std::string::npos || e.find(wwn) != std::string::npos) seen.push_back(e);
    // The plan's changes for the same disk, bound.
    std::vector<std::string> planned;
    for (const Op& op : plan_.ops) {
      if (op.disk != i) continue;
      const std::string path = bind_vars(op.path, p.bindings());
      const std::string value = bind_vars(op.value, p.bindings());
      switch (op.kind) {
        case Op::Kind::kMkdir: planned.push_back("mkdir " + path); break;
        case Op::Kind::kWrite: planned.push_back("write " + path + "=" + value); break;
        case Op::Kind::kSymlink: planned.push_back("symlink " + path + " -> " + value); break;
        default: break;  // claims, reads and the shared fabric dir are not in the filter
      }
    }
    EXPECT_EQ(seen, planned) << "disk " << i;
  }
}

TEST_F(ConcurrentProvisionerTest, AFailureInOneDiskRollsBackEveryDisk) {
  fs_.fail_on(FsOp::kSymlink, "vm-disk5", EIO);
  Provisioner p(fs_, kFastRetry);
  const std::string msg = error_of([&] { p.apply(plan_); });
  EXPECT_NE(msg.find("vm-disk5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Input/output error"), std::string::npos) << msg;
  EXPECT_GE(fs_.max_in_flight(), 2);
  EXPECT_TRUE(p.pending().empty());
  EXPECT_EQ(fs_.snapshot(), initial_);
  // The other disks had made objects of their own before the rollback.
  int made = 0;
  for (const std::string& e : fs_.log())
    if (e.rfind("mkdir target/vhost/naa.", 0) == 0) ++made;
  EXPECT_GE(made, 2);
}

TEST_F(ConcurrentProvisionerTest, EveryOperationFailingInTurnLeavesTheKernelAsItWas) {
  // How many counted operations a clean apply of four disks takes.
  Plan plan = build_plan("vm", {checked_image("/img/a.raw"), checked_image("/img/b.raw,cache=none"),
                                checked_image("/img/c.raw,readonly=on"),
                                checked_image("/img/d.raw,cache=writethrough")});
  long total = 0;
  {
    FakeConfigFs fs;
    prepare(fs);
    fs.set_concurrent(true);
    const long before = fs.ops_count();
    Provisioner p(fs, kFastRetry);
    p.apply(plan);
    total = fs.ops_count() - before;
    p.release();
  }
  ASSERT_GT(total, 40);
  for (long n = 1; n <= total; ++n) {
    FakeConfigFs fs;
    prepare(fs);
    fs.set_concurrent(true);
    const std::string start = fs.snapshot();
    fs.fail_at_op(fs.ops_count() + n, EIO);
    Provisioner p(fs, kFastRetry);
    EXPECT_THROW(p.apply(plan), Error) << "op " << n;
    EXPECT_TRUE(p.pending().empty()) << "op " << n;
    EXPECT_EQ(fs.snapshot(), start) << "op " << n;
    EXPECT_FALSE(fs.kernel_crashed()) << "op " << n << ": " << fs.crash_reason();
  }
}

TEST_F(ConcurrentProvisionerTest, ObserverHearsOfEveryObjectBeforeItExists) {
  std::mutex m;
  std::vector<std::string> live;  // announced and not cancelled
  std::vector<std::string> existed_before;
  fs_.mkdir("target/core/fileio_2");  // another tool's HBA: one claim attempt is cancelled
  Provisioner p(fs_, kFastRetry);
  p.set_observer([&](const Undo& u, bool cancelled) {
    const bool exists = fs_.exists(u.path);
    std::lock_guard<std::mutex> lock(m);
    if (cancelled) {
      auto it = std::find(live.rbegin(), live.rend(), u.path);
      ASSERT_NE(it, live.rend()) << u.path;
      live.erase(std::next(it).base());
      return;
    }
    if (u.kind != Undo::Kind::kWrite && exists) existed_before.push_back(u.path);
    live.push_back(u.path);
  });
  p.apply(plan_);
  EXPECT_EQ(existed_before, std::vector<std::string>{"target/core/fileio_2"});  // the cancelled claim
  std::vector<std::string> pending;
  for (const Undo& u : p.pending()) pending.push_back(u.path);
  std::sort(live.begin(), live.end());
  std::sort(pending.begin(), pending.end());
  EXPECT_EQ(live, pending);  // the journal knows exactly what exists
  EXPECT_TRUE(fs_.exists("target/core/fileio_2"));
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_TRUE(fs_.exists("target/core/fileio_2"));  // never ours
}

TEST_F(ConcurrentProvisionerTest, ClaimsSkipOtherToolsHbasAndNeverShareOne) {
  fs_.mkdir("target/core/fileio_1");
  fs_.mkdir("target/core/fileio_4");
  Plan plan = build_plan("vm", [] {
    std::vector<CheckedImage> images;
    for (int i = 0; i < 16; ++i) images.push_back(checked_image("/img/e" + std::to_string(i) + ".raw"));
    return images;
  }());
  Provisioner p(fs_, kFastRetry);
  p.apply(plan);
  std::set<std::string> hbas;
  for (const auto& b : p.bindings()) hbas.insert(b.second);
  EXPECT_EQ(hbas.size(), 16u);
  EXPECT_EQ(hbas.count("fileio_1") + hbas.count("fileio_4"), 0u);
  EXPECT_EQ(p.teardown(), 0);
  EXPECT_TRUE(fs_.exists("target/core/fileio_1"));
  EXPECT_TRUE(fs_.exists("target/core/fileio_4"));
}

TEST_F(ConcurrentProvisionerTest, TeardownOfManyDisksRemovesEverythingInParallel) {
  std::vector<CheckedImage> images;
  for (int i = 0; i < 20; ++i)
    images.push_back(checked_image("/img/f" + std::to_string(i) + ".raw" + (i % 4 == 3 ? ",readonly=on" : "")));
  Plan plan = build_plan("vm", images);
  Provisioner p(fs_, kFastRetry);
  p.apply(plan);
  FakeConfigFs& fs = fs_;
  const std::vector<Undo> steps = p.pending();
  p.release();
  EXPECT_EQ(undo_groups(steps).size(), 20u);
  fs.set_latency(std::chrono::microseconds(1000));
  EXPECT_EQ(run_undo(fs, steps, kFastRetry), 0);
  EXPECT_EQ(fs.snapshot(), initial_);
  EXPECT_GE(fs.max_in_flight(), 2);
}

TEST_F(ConcurrentProvisionerTest, ParallelTeardownKeepsTheSerialRules) {
  Provisioner p(fs_, kFastRetry);
  p.apply(plan_);
  // Disk 2 is read-only: its nexus cannot be cleared, so its ACL must stay. Disk 0's TPG
  // is busy for a while (a vhost endpoint closing): retried. Disk 4's link is gone already.
  const DiskPaths ro = paths_of(plan_, p, 2), busy = paths_of(plan_, p, 0), gone = paths_of(plan_, p, 4);
  fs_.fail_on_exact(FsOp::kWrite, ro.tpg + "/nexus", EIO);
  fs_.busy(busy.tpg, 2);
  fs_.unlink(gone.link);
  const int failed = p.teardown();
  EXPECT_GE(failed, 2);  // the nexus, the ACL (and what the live session pins)
  EXPECT_TRUE(fs_.exists(ro.acl));
  EXPECT_FALSE(fs_.exists(busy.tpg));
  EXPECT_FALSE(fs_.exists(gone.so));
  for (size_t i : {1, 3, 5, 6, 7}) EXPECT_FALSE(fs_.exists(paths_of(plan_, p, i).so)) << i;
}

TEST(UndoGroups, OneGroupPerDiskEachInItsOwnOrderNewestFirst) {
  const std::string w0 = "target/vhost/naa.5001405000000000", w1 = "target/vhost/naa.5001405000000001";
  const std::vector<Undo> steps = {
      {Undo::Kind::kRmdir, "target/core/fileio_0", ""},
      {Undo::Kind::kRmdir, "target/core/fileio_1", ""},
      {Undo::Kind::kRmdir, "target/core/fileio_1/vm-disk1", ""},
      {Undo::Kind::kRmdir, "target/core/fileio_0/vm-disk0", ""},
      {Undo::Kind::kRmdir, w0, ""},
      {Undo::Kind::kRmdir, w1, ""},
      {Undo::Kind::kRmdir, w1 + "/tpgt_1", ""},
      {Undo::Kind::kRmdir, w0 + "/tpgt_1", ""},
      {Undo::Kind::kWrite, w0 + "/tpgt_1/nexus", "NULL"},
      {Undo::Kind::kRmdir, w0 + "/tpgt_1/lun/lun_0", ""},
      {Undo::Kind::kUnlink, w0 + "/tpgt_1/lun/lun_0/vm-disk0", ""},
      {Undo::Kind::kWrite, w1 + "/tpgt_1/nexus", "NULL"},
      {Undo::Kind::kRmdir, w1 + "/tpgt_1/lun/lun_0", ""},
      {Undo::Kind::kUnlink, w1 + "/tpgt_1/lun/lun_0/vm-disk1", ""},
  };
  const auto groups = undo_groups(steps);
  ASSERT_EQ(groups.size(), 2u);
  auto paths = [](const std::vector<Undo>& g) {
    std::vector<std::string> out;
    for (const Undo& u : g) out.push_back(u.path);
    return out;
  };
  // Disk 1's link is the newest step: its group comes first.
  EXPECT_EQ(paths(groups[0]),
            (std::vector<std::string>{"target/core/fileio_1", "target/core/fileio_1/vm-disk1", w1,
                                      w1 + "/tpgt_1", w1 + "/tpgt_1/nexus", w1 + "/tpgt_1/lun/lun_0",
                                      w1 + "/tpgt_1/lun/lun_0/vm-disk1"}));
  EXPECT_EQ(paths(groups[1]),
            (std::vector<std::string>{"target/core/fileio_0", "target/core/fileio_0/vm-disk0", w0,
                                      w0 + "/tpgt_1", w0 + "/tpgt_1/nexus", w0 + "/tpgt_1/lun/lun_0",
                                      w0 + "/tpgt_1/lun/lun_0/vm-disk0"}));
}

TEST(UndoGroups, AStepOutsideTheLayoutKeepsOneOrderForAll) {
  const std::vector<Undo> steps = {{Undo::Kind::kRmdir, "target/core/fileio_0", ""},
                                   {Undo::Kind::kRmdir, "somewhere/else", ""},
                                   {Undo::Kind::kRmdir, "target/core/fileio_1", ""}};
  const auto groups = undo_groups(steps);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].size(), 3u);
}

TEST(UndoGroups, ADryRunStaysSerial) {
  FakeConfigFs inner;
  inner.set_concurrent(true);
  std::vector<std::string> said;
  auto dry = make_dry_run_configfs(inner, [&](const std::string& s) { said.push_back(s); });
  EXPECT_FALSE(dry->concurrent());
  EXPECT_TRUE(make_real_configfs("/nonexistent")->concurrent());
}

}  // namespace
}  // namespace qemu_lio
