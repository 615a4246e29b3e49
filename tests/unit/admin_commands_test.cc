// `gc`, `list` and `check` as the operator sees them: what they print to stdout and what
// they return, over a temporary state directory and the fake kernel.

#include "qemu_lio/admin_commands.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "fake_configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/process_identity.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

const std::string kHba = "target/core/fileio_0";
const std::string kSo = kHba + "/vm1-disk0";

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size()))
    ++n;
  return n;
}

class AdminCommandsTest : public ::testing::Test {
 protected:
  AdminCommandsTest() {
    opts_.state_dir = dir_ / "state";
    // Not the standard mount point: prepare_lio leaves it alone.
    opts_.configfs = dir_ / "configfs";
    fs_.mkdir("target/vhost");
    initial_ = fs_.snapshot();
  }
  ~AdminCommandsTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  // A journal of a wrapper that is gone (our pid, another start time: a recycled pid), with
  // an HBA and a storage object it made.
  std::string stale_run() {
    JournalWriter j(opts_.state_dir, "vm1", ProcessId{::getpid(), 1});
    j.image("/img/a.raw", "naa.5001405000000001");
    j.object({Undo::Kind::kRmdir, kHba, ""}, false);
    fs_.mkdir(kHba);
    j.object({Undo::Kind::kRmdir, kSo, ""}, false);
    fs_.mkdir(kSo);
    fs_.write(kSo + "/control", "fd_dev_name=/img/a.raw,fd_dev_size=1048576");
    return j.path();
  }

  template <class F>
  std::string stdout_of(F&& f, int* rc) {
    ::testing::internal::CaptureStdout();
    *rc = f();
    std::fflush(stdout);
    return ::testing::internal::GetCapturedStdout();
  }

  TempDir dir_;
  RunOptions opts_;
  FakeConfigFs fs_;
  std::string initial_;
};

TEST_F(AdminCommandsTest, ListJsonWithoutJournalsIsAnEmptyArray) {
  opts_.json = true;
  int rc = -1;
  EXPECT_EQ(stdout_of([&] { return list_command(opts_, fs_); }, &rc), "[]\n");
  EXPECT_EQ(rc, 0);
}

TEST_F(AdminCommandsTest, ListTextWithoutJournalsPrintsNothing) {
  int rc = -1;
  EXPECT_EQ(stdout_of([&] { return list_command(opts_, fs_); }, &rc), "");
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(file_exists(opts_.state_dir));  // list never creates the state dir
}

TEST_F(AdminCommandsTest, ListShowsAStaleRun) {
  const std::string journal = stale_run();
  opts_.json = true;
  int rc = -1;
  const std::string out = stdout_of([&] { return list_command(opts_, fs_); }, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("\"name\": \"vm1\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"state\": \"stale\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"objects_present\": 2"), std::string::npos) << out;
  EXPECT_NE(out.find("/img/a.raw"), std::string::npos) << out;
  EXPECT_TRUE(file_exists(journal));
}

TEST_F(AdminCommandsTest, GcOnAnEmptyStateDir) {
  int rc = -1;
  const std::string out = stdout_of([&] { return gc_command(opts_, fs_); }, &rc);
  EXPECT_EQ(out, "gc: 0 stale set(s), 0 object(s) removed, 0 failure(s)\n");
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(file_exists(opts_.state_dir));  // gc of an unused state dir creates nothing
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(AdminCommandsTest, GcQuietPrintsNoSummary) {
  opts_.verbosity = Verbosity::kQuiet;
  int rc = -1;
  EXPECT_EQ(stdout_of([&] { return gc_command(opts_, fs_); }, &rc), "");
  EXPECT_EQ(rc, 0);
}

TEST_F(AdminCommandsTest, GcDryRunSaysWhatItWouldDoAndTouchesNothing) {
  const std::string journal = stale_run();
  const std::string tree = fs_.snapshot();
  const JournalContents before = read_journal(journal);
  const size_t changes = fs_.log().size();
  opts_.dry_run = true;
  int rc = -1;
  const std::string out = stdout_of([&] { return gc_command(opts_, fs_); }, &rc);
  EXPECT_EQ(rc, 0) << out;
  const std::string so_line = "would remove " + fs_.absolute(kSo) + "\n";
  const std::string hba_line = "would remove " + fs_.absolute(kHba) + "\n";
  ASSERT_NE(out.find(so_line), std::string::npos) << out;
  ASSERT_NE(out.find(hba_line), std::string::npos) << out;
  EXPECT_EQ(count(out, "would remove "), 2u) << out;
  EXPECT_LT(out.find(so_line), out.find(hba_line)) << "the object goes before its HBA\n" << out;
  EXPECT_NE(out.find("would delete " + journal), std::string::npos) << out;
  EXPECT_NE(out.find("(dry run: nothing was changed)"), std::string::npos) << out;
  EXPECT_NE(out.find("gc: 1 stale set(s)"), std::string::npos) << out;

  EXPECT_EQ(fs_.snapshot(), tree);
  EXPECT_EQ(fs_.log().size(), changes);  // no change went through
  ASSERT_TRUE(file_exists(journal));
  const JournalContents after = read_journal(journal);
  EXPECT_EQ(after.vm_name, before.vm_name);
  EXPECT_EQ(after.wrapper, before.wrapper);
  ASSERT_EQ(after.undo.size(), before.undo.size());
  for (size_t i = 0; i < after.undo.size(); ++i) EXPECT_EQ(after.undo[i].path, before.undo[i].path);
}

TEST_F(AdminCommandsTest, GcRemovesAStaleRun) {
  const std::string journal = stale_run();
  int rc = -1;
  const std::string out = stdout_of([&] { return gc_command(opts_, fs_); }, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("would "), std::string::npos) << out;
  EXPECT_NE(out.find("cleaned VM vm1: removed 2 object(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("gc: 1 stale set(s), 2 object(s) removed, 0 failure(s)"), std::string::npos)
      << out;
  EXPECT_FALSE(fs_.exists(kSo));
  EXPECT_FALSE(fs_.exists(kHba));
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_FALSE(file_exists(journal));
}

TEST_F(AdminCommandsTest, GcLeavesALiveRunAlone) {
  auto self = identify_process(::getpid());
  ASSERT_TRUE(self);
  std::string journal;
  {
    JournalWriter j(opts_.state_dir, "live", *self);
    journal = j.path();
    j.object({Undo::Kind::kRmdir, kHba, ""}, false);
    fs_.mkdir(kHba);
    j.ready();
  }
  const std::string tree = fs_.snapshot();
  int rc = -1;
  const std::string out = stdout_of([&] { return gc_command(opts_, fs_); }, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "gc: 0 stale set(s), 0 object(s) removed, 0 failure(s)\n");
  EXPECT_EQ(fs_.snapshot(), tree);
  EXPECT_TRUE(file_exists(journal));
}

TEST_F(AdminCommandsTest, GcReportsAFailureWithExitOne) {
  const std::string journal = stale_run();
  fs_.fail_on_exact(FsOp::kRmdir, kSo, EPERM);
  int rc = -1;
  const std::string out = stdout_of([&] { return gc_command(opts_, fs_); }, &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("failure(s)"), std::string::npos) << out;
  EXPECT_EQ(out.find(", 0 failure(s)"), std::string::npos) << out;
  EXPECT_TRUE(fs_.exists(kSo));
  EXPECT_TRUE(file_exists(journal));  // kept for the next gc
}

TEST_F(AdminCommandsTest, CheckFailsForAMissingQemu) {
  opts_.qemu = "/nonexistent/qemu";
  int rc = -1;
  const std::string out = stdout_of([&] { return check_command(opts_); }, &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("FAIL  /nonexistent/qemu offers vhost-scsi-pci: /nonexistent/qemu not found"),
            std::string::npos)
      << out;
  // One line per item, each "ok    ", "FAIL  " or "info  " (a finding that never fails).
  size_t lines = 0;
  for (size_t pos = 0; pos < out.size();) {
    size_t nl = out.find('\n', pos);
    ASSERT_NE(nl, std::string::npos) << out;
    const std::string line = out.substr(pos, nl - pos);
    EXPECT_TRUE(line.rfind("ok    ", 0) == 0 || line.rfind("FAIL  ", 0) == 0 || line.rfind("info  ", 0) == 0)
        << line;
    ++lines;
    pos = nl + 1;
  }
  EXPECT_GE(lines, 9u);  // root, configfs, 4 modules, target, /dev/vhost-scsi, async, QEMU
}

}  // namespace
}  // namespace qemu_lio
