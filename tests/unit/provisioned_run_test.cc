// ProvisionedRun over the fake kernel, with its real journal and backstop. The backstop
// watches this test process; every test leaves no journal behind, so each backstop simply
// ends once the test binary exits (and would tear down only under the temporary
// configfs root, never the host's).

#include "qemu_lio/provisioned_run.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "fake_configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/teardown.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

const RetryPolicy kFastRetry{milliseconds(1), milliseconds(4), milliseconds(20)};

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

class ProvisionedRunTest : public ::testing::Test {
 protected:
  ProvisionedRunTest() {
    fs_.mkdir("target/vhost");
    initial_ = fs_.snapshot();
  }
  ~ProvisionedRunTest() override {
    EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason();
    EXPECT_TRUE(list_journals(state_).empty()) << "a test left a journal behind";
  }

  std::unique_ptr<ProvisionedRun> start(const std::string& vm = "vm") {
    return std::make_unique<ProvisionedRun>(fs_, configfs_.path(), state_, vm);
  }
  // A plan for one real image (check_conflicts compares files by inode).
  Plan plan(const std::string& name = "a.raw", const std::string& options = "") {
    write_file(dir_ / name, 1 << 20);
    return build_plan("vm", {checked_image(dir_ / name + options)});
  }

  TempDir dir_;
  TempDir configfs_;  // where a backstop would tear down: an empty directory
  std::string state_ = dir_ / "state";
  FakeConfigFs fs_;
  std::string initial_;
};

TEST_F(ProvisionedRunTest, StartsWithAJournalNamingUsAndALiveBackstop) {
  auto run = start();
  const std::string journal = run->journal_path();
  EXPECT_EQ(journal, state_ + "/vm." + std::to_string(::getpid()) + ".journal");
  run->backstop_ready();  // the backstop starts beside the caller's next steps
  JournalContents j = read_journal(journal);
  EXPECT_EQ(j.vm_name, "vm");
  EXPECT_EQ(j.wrapper, identify_process(::getpid()).value());
  ASSERT_TRUE(j.backstop.has_value());
  EXPECT_TRUE(process_alive(*j.backstop));
  EXPECT_NE(j.backstop->pid, ::getpid());
  EXPECT_TRUE(j.undo.empty());
  EXPECT_EQ(fs_.snapshot(), initial_);
  run.reset();  // nothing provisioned: the journal goes
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(ProvisionedRunTest, DestroyedBeforeQemuStartedRollsBack) {
  std::string journal;
  {
    auto run = start();
    journal = run->journal_path();
    run->provision(plan());
    EXPECT_NE(fs_.snapshot(), initial_);
    JournalContents j = read_journal(journal);
    EXPECT_TRUE(j.complete);
    EXPECT_FALSE(j.undo.empty());
    ASSERT_EQ(j.images.size(), 1u);
    EXPECT_EQ(j.images[0].path, dir_ / "a.raw");
    EXPECT_FALSE(j.images[0].backstore.empty());
  }
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(ProvisionedRunTest, FinishAfterQemuTearsDown) {
  auto run = start();
  const std::string journal = run->journal_path();
  run->provision(plan());
  run->qemu_started();
  EXPECT_EQ(run->finish(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_FALSE(file_exists(journal));
  run.reset();  // finished: nothing more happens
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionedRunTest, FinishReportsWhatIsLeft) {
  auto run = start();
  const std::string journal = run->journal_path();
  run->provision(plan());
  run->qemu_started();
  fs_.fail_on(FsOp::kRmdir, "/tpgt_1", EIO);
  EXPECT_GT(run->finish(), 0);
  EXPECT_TRUE(file_exists(journal));  // kept for gc
  run.reset();
  EXPECT_TRUE(file_exists(journal));
  // gc's part, by hand.
  fs_.clear_faults();
  EXPECT_EQ(teardown_journal(fs_, read_journal(journal), kFastRetry).failed, 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionedRunTest, QemuStartedWithoutFinishLeavesTheSetToTheBackstop) {
  auto run = start();
  const std::string journal = run->journal_path();
  run->provision(plan());
  const std::string provisioned = fs_.snapshot();
  run->qemu_started();
  run.reset();
  EXPECT_EQ(fs_.snapshot(), provisioned);
  EXPECT_TRUE(file_exists(journal));
  EXPECT_EQ(teardown_journal(fs_, read_journal(journal), kFastRetry).failed, 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(ProvisionedRunTest, HandOffLeavesObjectsAndJournal) {
  auto run = start();
  const std::string journal = run->journal_path();
  run->daemon_pidfile(dir_ / "qemu.pid");
  run->provision(plan());
  const std::string provisioned = fs_.snapshot();
  run->qemu_started();
  const ProcessId daemon = identify_process(::getpid()).value();
  run->daemon_started(daemon);
  run->hand_off();
  run.reset();
  EXPECT_EQ(fs_.snapshot(), provisioned);
  ASSERT_TRUE(file_exists(journal));
  JournalContents j = read_journal(journal);
  EXPECT_EQ(j.pidfile, dir_ / "qemu.pid");
  ASSERT_TRUE(j.owner.has_value());
  EXPECT_EQ(*j.owner, daemon);
  ASSERT_TRUE(j.backstop.has_value());
  EXPECT_TRUE(process_alive(*j.backstop));
  // The backstop's part, by hand, so that nothing is left.
  TeardownResult r = teardown_journal(fs_, j, kFastRetry);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(ProvisionedRunTest, RecordQemuInChildNamesTheCaller) {
  auto run = start();
  run->record_qemu_in_child();  // here the "child" is us
  JournalContents j = read_journal(run->journal_path());
  ASSERT_TRUE(j.owner.has_value());
  EXPECT_EQ(*j.owner, identify_process(::getpid()).value());
  EXPECT_EQ(run->finish(), 0);
  EXPECT_FALSE(file_exists(run->journal_path()));
}

TEST_F(ProvisionedRunTest, ASharedDiskWhoseLastOtherVmLeavesMidJoinIsMadeAnew) {
  // The other VM's teardown takes no state lock: its object can go between our scan and our
  // LUN's link (symlink: ENOENT), or while we read its settings back (read: ENOENT).
  // With a private disk beside it, the second attempt's HBAs differ from the first's: the
  // journal must name the second attempt's objects only, in their own order.
  write_file(dir_ / "s.raw", 1 << 20);
  write_file(dir_ / "p.raw", 1 << 20);
  const std::string spec = dir_ / "s.raw,share=on";
  for (FsOp when : {FsOp::kSymlink, FsOp::kRead}) {
    SCOPED_TRACE(to_string(when));
    auto other = std::make_unique<Provisioner>(fs_);
    other->apply(build_plan("other", {checked_image(spec)}));
    const Plan mine = build_plan("vm", {checked_image(dir_ / "p.raw"), checked_image(spec)});
    const DiskPlan& d = mine.disks.at(1);
    const std::string hba = other->bindings().begin()->second;
    const std::string path = when == FsOp::kSymlink ? layout::lun_link(d.identity.wwn, 1, 0, d.so_name)
                                                    : layout::storage_object(hba, d.so_name) + "/wwn/vpd_unit_serial";
    fs_.before(when, path, [&] { EXPECT_EQ(other->teardown(), 0); });
    auto run = start();
    run->provision(mine);
    const JournalContents j = read_journal(run->journal_path());
    ASSERT_EQ(j.images.size(), 2u) << "one record per image, whatever the attempts";
    EXPECT_TRUE(fs_.exists("target/" + j.images[1].backstore)) << "made anew";
    for (const Undo& u : j.undo) EXPECT_TRUE(object_present(fs_, u)) << "the journal names a gone " << u.path;
    EXPECT_TRUE(fs_.is_link(layout::lun_link(d.identity.wwn, 1, 0, d.so_name)));
    run->qemu_started();
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(run->finish(), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "no EBUSY retries";
    EXPECT_EQ(fs_.snapshot(), initial_);
  }
}

TEST_F(ProvisionedRunTest, ConflictThrowsAndLeavesNothing) {
  // Another tool exports the image already.
  Plan p = plan();
  const std::string img = dir_ / "a.raw";
  fs_.mkdir("target/core/fileio_0");
  fs_.mkdir("target/core/fileio_0/other");
  fs_.write("target/core/fileio_0/other/control", "fd_dev_name=" + img + ",fd_dev_size=1048576");
  fs_.write("target/core/fileio_0/other/udev_path", img);
  fs_.write("target/core/fileio_0/other/enable", "1");
  const std::string before = fs_.snapshot();
  std::string journal;
  {
    auto run = start();
    journal = run->journal_path();
    std::string msg = error_of([&] { run->provision(p); });
    EXPECT_NE(msg.find("already exported"), std::string::npos) << msg;
    EXPECT_EQ(fs_.snapshot(), before);
  }
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(ProvisionedRunTest, KernelFailureRollsBackAndKeepsNothing) {
  fs_.fail_on(FsOp::kSymlink, "lun_0", EIO);
  std::string journal;
  {
    auto run = start();
    journal = run->journal_path();
    error_of([&] { run->provision(plan()); });
    EXPECT_EQ(fs_.snapshot(), initial_);
  }
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(ProvisionedRunTest, TwoRunsCannotExportOneImage) {
  Plan p = plan();
  auto first = start("first");
  first->provision(p);
  const std::string after_first = fs_.snapshot();
  {
    auto second = start("second");
    Plan q = build_plan("second", {checked_image(dir_ / "a.raw")});
    EXPECT_NE(error_of([&] { second->provision(q); }).find("already exported"), std::string::npos);
  }
  EXPECT_EQ(fs_.snapshot(), after_first);
  first->qemu_started();
  EXPECT_EQ(first->finish(), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

}  // namespace
}  // namespace qemu_lio
