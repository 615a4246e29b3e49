// Teardown from a journal against the fake kernel: what a run applied and journalled is
// removed, the journal forgotten only once the kernel holds none of it.

#include "qemu_lio/teardown.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

const RetryPolicy kFastRetry{milliseconds(1), milliseconds(4), milliseconds(20)};

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

class TeardownTest : public ::testing::Test {
 protected:
  TeardownTest() {
    fs_.mkdir("target/vhost");
    initial_ = fs_.snapshot();
  }
  ~TeardownTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  // Applies two disks (one read-only, with its ACL) the way a run does: every object
  // journalled before it exists; the journal then owns them.
  JournalContents provision() {
    Plan plan = build_plan("vm", {checked_image("/img/a.raw"),
                                  checked_image("/img/b.raw,readonly=on")});
    std::string file;
    {
      JournalWriter journal(dir_ / "state", "vm", ProcessId{::getpid(), 1});
      file = journal.path();
      for (const DiskPlan& d : plan.disks) journal.image(d.info.canonical_path, d.identity.wwn);
      Provisioner prov(fs_, kFastRetry);
      prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
      prov.apply(plan);
      prov.release();
      journal.ready();
    }
    provisioned_ = fs_.snapshot();
    EXPECT_NE(provisioned_, initial_);
    JournalContents j = read_journal(file);
    EXPECT_FALSE(j.undo.empty());
    return j;
  }

  // A forget that remembers what it was told.
  ForgetJournal recorder() {
    return [this](const std::string& f) { forgotten_.push_back(f); };
  }

  TempDir dir_;
  FakeConfigFs fs_;
  std::string initial_, provisioned_;
  std::vector<std::string> forgotten_;
};

TEST_F(TeardownTest, RemovesEverythingAndForgetsTheJournalOnce) {
  JournalContents j = provision();
  for (const Undo& u : j.undo) EXPECT_TRUE(object_present(fs_, u)) << u.path;
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(r.present, static_cast<int>(j.undo.size()));
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  for (const Undo& u : j.undo) EXPECT_FALSE(object_present(fs_, u)) << u.path;
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
  EXPECT_TRUE(file_exists(j.file));  // only forget() deletes it, and this one did not
}

TEST_F(TeardownTest, DefaultForgetUnlinksTheJournal) {
  JournalContents j = provision();
  ASSERT_TRUE(file_exists(j.file));
  TeardownResult r = teardown_journal(fs_, j, kFastRetry);
  EXPECT_EQ(r.failed, 0);
  EXPECT_FALSE(file_exists(j.file));
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(TeardownTest, ObjectThatWillNotGoKeepsTheJournal) {
  JournalContents j = provision();
  fs_.fail_on(FsOp::kRmdir, "/tpgt_1", EIO);
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(r.present, static_cast<int>(j.undo.size()));
  EXPECT_GT(r.failed, 0);
  EXPECT_TRUE(forgotten_.empty());
  // What could go went: the storage objects do not hang on the TPGs.
  for (const Undo& u : j.undo)
    if (u.path.rfind("target/core/", 0) == 0) {
      EXPECT_FALSE(fs_.exists(u.path)) << u.path;
    }

  // A later teardown (gc) finishes the job once the kernel lets it.
  fs_.clear_faults();
  forgotten_.clear();
  TeardownResult again = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(again.present, r.failed);
  EXPECT_EQ(again.failed, 0);
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(TeardownTest, BusyObjectIsRetried) {
  JournalContents j = provision();
  std::string tpg;
  for (const Undo& u : j.undo)
    if (u.kind == Undo::Kind::kRmdir && u.path.size() > 7 &&
        u.path.compare(u.path.size() - 7, 7, "/tpgt_1") == 0)
      tpg = u.path;
  ASSERT_FALSE(tpg.empty());
  fs_.busy(tpg, 2);
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(forgotten_.size(), 1u);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(TeardownTest, ObjectsAlreadyGoneCountAsDone) {
  JournalContents j = provision();
  // The newest objects (the last disk's LUN link, then its ACL mapping) removed by someone
  // else before the teardown runs.
  int removed = 0;
  for (auto it = j.undo.rbegin(); it != j.undo.rend() && removed < 2; ++it) {
    if (it->kind == Undo::Kind::kUnlink) fs_.unlink(it->path);
    else if (it->kind == Undo::Kind::kRmdir) fs_.rmdir(it->path);
    else continue;
    ++removed;
  }
  ASSERT_EQ(removed, 2);
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(r.present, static_cast<int>(j.undo.size()) - 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(TeardownTest, NothingLeftStillForgets) {
  JournalContents j = provision();
  ASSERT_EQ(teardown_journal(fs_, j, kFastRetry, recorder()).failed, 0);
  forgotten_.clear();
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_EQ(r.present, 0);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
}

// A -pidfile qemu-lio added beside the journal goes with it; the caller's own never does.
TEST_F(TeardownTest, ForgetsOurPidfileButNotTheCallers) {
  JournalContents j = provision();
  const std::string dir = j.file.substr(0, j.file.rfind('/'));
  j.pidfile = dir + "/vm.1.pid";
  ASSERT_EQ(teardown_journal(fs_, j, kFastRetry, recorder()).failed, 0);
  EXPECT_EQ(forgotten_, (std::vector<std::string>{dir + "/vm.1.pid", j.file}));

  forgotten_.clear();
  j.pidfile = dir_ / "caller.pid";
  ASSERT_EQ(teardown_journal(fs_, j, kFastRetry, recorder()).failed, 0);
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
}

TEST_F(TeardownTest, UnlinkJournalDeletesTheFile) {
  write_file(dir_ / "x.journal", 0, "qemu-lio-journal 1\n");
  unlink_journal(dir_ / "x.journal");
  EXPECT_FALSE(file_exists(dir_ / "x.journal"));
  unlink_journal(dir_ / "x.journal");  // gone already: no error
}

TEST_F(TeardownTest, NexusIsPresentOnlyWhileItNamesOne) {
  JournalContents j = provision();
  // The first disk's nexus (no ACL under it).
  const Undo* nexus = nullptr;
  for (const Undo& u : j.undo)
    if (!nexus && u.kind == Undo::Kind::kWrite) nexus = &u;
  ASSERT_NE(nexus, nullptr);
  EXPECT_TRUE(object_present(fs_, *nexus));
  // The kernel keeps a nexus while a LUN is linked in its TPG: unlink those first.
  const std::string tpg = nexus->path.substr(0, nexus->path.rfind('/') + 1);
  for (const Undo& u : j.undo)
    if (u.kind == Undo::Kind::kUnlink && u.path.rfind(tpg, 0) == 0) fs_.unlink(u.path);
  EXPECT_TRUE(object_present(fs_, *nexus));
  fs_.write(nexus->path, nexus->value);
  EXPECT_FALSE(object_present(fs_, *nexus));
  EXPECT_FALSE(object_present(fs_, Undo{Undo::Kind::kWrite, "target/vhost/naa.1/tpgt_1/nexus", "NULL"}));
  EXPECT_FALSE(object_present(fs_, Undo{Undo::Kind::kRmdir, "target/core/fileio_9", ""}));
}

// Eight disks provisioned at once through a real journal (appends from every thread), then
// torn down from what the journal says, again at once: nothing is left, nothing was missed.
TEST_F(TeardownTest, ConcurrentlyJournalledDisksAreAllTornDown) {
  fs_.set_concurrent(true);
  fs_.set_latency(std::chrono::microseconds(300));
  std::vector<CheckedImage> images;
  for (int i = 0; i < 8; ++i)
    images.push_back(checked_image("/img/p" + std::to_string(i) + ".raw" + (i == 5 ? ",readonly=on" : "")));
  Plan plan = build_plan("vm", images);
  std::string file;
  std::vector<Undo> pending;
  {
    JournalWriter journal(dir_ / "state", "vm", ProcessId{::getpid(), 1});
    file = journal.path();
    for (const DiskPlan& d : plan.disks) journal.image(d.info.canonical_path, d.identity.wwn);
    Provisioner prov(fs_, kFastRetry);
    prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
    prov.apply(plan);
    pending = prov.pending();
    prov.release();
    journal.ready();
  }
  EXPECT_GE(fs_.max_in_flight(), 2);
  JournalContents j = read_journal(file);
  EXPECT_TRUE(j.complete);
  // The journal holds exactly the objects that exist (in whatever order the disks got there).
  auto paths = [](const std::vector<Undo>& steps) {
    std::vector<std::string> out;
    for (const Undo& u : steps) out.push_back(u.path);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(paths(j.undo), paths(pending));
  // Each image knows its own backstore although the disks' records interleave.
  ASSERT_EQ(j.images.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    const std::string so = plan.disks[i].so_name;
    EXPECT_EQ(j.images[i].backstore.substr(j.images[i].backstore.rfind('/') + 1), so) << i;
    EXPECT_TRUE(fs_.exists("target/" + j.images[i].backstore)) << j.images[i].backstore;
  }
  // The before and after lookups of each disk run in that disk's job: they overlap too.
  fs_.set_lookup_latency(std::chrono::microseconds(300));
  TeardownResult r = teardown_journal(fs_, j, kFastRetry, recorder());
  EXPECT_GE(fs_.max_lookups_in_flight(), 2);
  EXPECT_EQ(r.present, static_cast<int>(j.undo.size()));
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_EQ(forgotten_, std::vector<std::string>{j.file});
}

}  // namespace
}  // namespace qemu_lio
