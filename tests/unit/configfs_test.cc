// The ConfigFs implementations of the library: the real one (over a temporary directory,
// which behaves like any file system for what is tested here) and the dry run that only
// says what it would do.

#include "qemu_lio/configfs.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Names = std::vector<std::string>;

// The SysError `f` throws (errno 0 and empty path if none).
template <class F>
SysError sys_error_of(F&& f) {
  try {
    f();
  } catch (const SysError& e) {
    return e;
  }
  ADD_FAILURE() << "no SysError";
  return SysError(0, "", "");
}

class RealConfigFsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::unique_ptr<ConfigFs> fs_ = make_real_configfs(dir_.path());
};

TEST_F(RealConfigFsTest, OperationsAndAbsolutePaths) {
  EXPECT_EQ(fs_->absolute("target/core"), dir_ / "target/core");
  fs_->mkdir("a");
  fs_->mkdir("a/b");
  EXPECT_TRUE(fs_->exists("a/b"));
  write_file(dir_ / "a/attr", 0);
  fs_->write("a/attr", "1\n");
  EXPECT_EQ(fs_->read("a/attr"), "1\n");
  fs_->symlink("a/b", "a/link");
  EXPECT_TRUE(fs_->exists("a/link"));
  EXPECT_EQ(fs_->list("a"), (Names{"attr", "b", "link"}));
  EXPECT_TRUE(fs_->list("nowhere").empty());
  fs_->unlink("a/link");
  fs_->rmdir("a/b");
  EXPECT_EQ(fs_->list("a"), Names{"attr"});
}

TEST_F(RealConfigFsTest, ErrorsNameTheAbsolutePath) {
  SysError e = sys_error_of([&] { fs_->rmdir("missing"); });
  EXPECT_EQ(e.err(), ENOENT);
  EXPECT_EQ(e.path(), dir_ / "missing");
  EXPECT_EQ(std::string(e.what()).rfind(dir_ / "missing" + ": cannot remove", 0), 0u) << e.what();
  // Attributes are never created by a write.
  EXPECT_EQ(sys_error_of([&] { fs_->write("new", "1"); }).err(), ENOENT);
  EXPECT_FALSE(fs_->exists("new"));
  fs_->mkdir("a");
  EXPECT_EQ(sys_error_of([&] { fs_->mkdir("a"); }).err(), EEXIST);
  EXPECT_EQ(sys_error_of([&] { fs_->read("nothing"); }).path(), dir_ / "nothing");
}

// A dry run over a real tree: "a/b/c" with a sibling "a/d".
class DryRunTest : public ::testing::Test {
 protected:
  DryRunTest() {
    inner_->mkdir("a");
    inner_->mkdir("a/b");
    inner_->mkdir("a/b/c");
    inner_->mkdir("a/d");
    write_file(dir_ / "a/d/attr", 6, "value\n");
  }
  std::function<void(const std::string&)> say() {
    return [this](const std::string& s) { said_.push_back(s); };
  }

  TempDir dir_;
  std::unique_ptr<ConfigFs> inner_ = make_real_configfs(dir_.path());
  Names said_;
  std::unique_ptr<ConfigFs> dry_ = make_dry_run_configfs(*inner_, say());
};

TEST_F(DryRunTest, RemovedDirectoryIsGoneWithEverythingUnderIt) {
  dry_->rmdir("a/b");
  EXPECT_EQ(said_, Names{"would remove " + dir_ / "a/b"});
  EXPECT_FALSE(dry_->exists("a/b"));
  EXPECT_FALSE(dry_->exists("a/b/c"));
  EXPECT_TRUE(dry_->exists("a"));
  EXPECT_TRUE(dry_->exists("a/d"));
  // A name that merely starts the same is another entry.
  inner_->mkdir("a/bb");
  EXPECT_TRUE(dry_->exists("a/bb"));
  // The inner tree is untouched.
  EXPECT_TRUE(inner_->exists("a/b"));
  EXPECT_TRUE(inner_->exists("a/b/c"));
}

TEST_F(DryRunTest, ListHidesRemovedEntries) {
  EXPECT_EQ(dry_->list("a"), (Names{"b", "d"}));
  dry_->rmdir("a/b");
  EXPECT_EQ(dry_->list("a"), Names{"d"});
  EXPECT_TRUE(dry_->list("a/b").empty());
  EXPECT_EQ(inner_->list("a"), (Names{"b", "d"}));
}

TEST_F(DryRunTest, RemovingAMissingPathIsEnoentWithAnAbsolutePath) {
  SysError e = sys_error_of([&] { dry_->rmdir("a/missing"); });
  EXPECT_EQ(e.err(), ENOENT);
  EXPECT_EQ(e.path(), dir_ / "a/missing");
  EXPECT_EQ(e.path().front(), '/');
  // Nor twice, nor below something already removed.
  dry_->rmdir("a/b");
  EXPECT_EQ(sys_error_of([&] { dry_->rmdir("a/b"); }).err(), ENOENT);
  EXPECT_EQ(sys_error_of([&] { dry_->unlink("a/b/c"); }).path(), dir_ / "a/b/c");
  EXPECT_EQ(said_, Names{"would remove " + dir_ / "a/b"});
}

TEST_F(DryRunTest, ChangesAreOnlySaid) {
  dry_->mkdir("a/new");
  dry_->symlink("a/d", "a/b/link");
  dry_->write("a/d/attr", "other");
  EXPECT_EQ(said_, (Names{"would create " + dir_ / "a/new",
                          "would link " + dir_ / "a/b/link -> " + dir_ / "a/d",
                          "would write 'other' to " + dir_ / "a/d/attr"}));
  EXPECT_FALSE(inner_->exists("a/new"));
  EXPECT_FALSE(inner_->exists("a/b/link"));
  EXPECT_EQ(inner_->read("a/d/attr"), "value\n");
  // Reads see the write that would have been made.
  EXPECT_EQ(dry_->read("a/d/attr"), "other");
  EXPECT_EQ(dry_->absolute("x"), dir_ / "x");
}

TEST_F(DryRunTest, WritesAndReadsOfMissingAttributesFail) {
  EXPECT_EQ(sys_error_of([&] { dry_->write("a/d/none", "1"); }).err(), ENOENT);
  dry_->rmdir("a/d");
  EXPECT_EQ(sys_error_of([&] { dry_->read("a/d/attr"); }).err(), ENOENT);
  EXPECT_EQ(sys_error_of([&] { dry_->write("a/d/attr", "1"); }).path(), dir_ / "a/d/attr");
  EXPECT_EQ(said_.size(), 1u);
}

// Over the fake kernel: clearing a nexus reads back empty, as the kernel shows it.
TEST(DryRunNexus, ClearedNexusReadsEmpty) {
  FakeConfigFs fs;
  fs.mkdir("target/vhost");
  Plan plan = build_plan("vm", {checked_image("/img/a.raw")});
  Provisioner prov(fs);
  prov.apply(plan);
  const std::string nexus = "target/vhost/" + plan.disks[0].identity.wwn + "/tpgt_1/nexus";
  ASSERT_EQ(fs.read(nexus), plan.disks[0].identity.nexus + "\n");
  const std::string before = fs.snapshot();

  Names said;
  auto dry = make_dry_run_configfs(fs, [&](const std::string& s) { said.push_back(s); });
  dry->write(nexus, "NULL");
  EXPECT_EQ(dry->read(nexus), "");
  EXPECT_EQ(said, Names{"would write 'NULL' to /sys/kernel/config/" + nexus});
  EXPECT_EQ(fs.read(nexus), plan.disks[0].identity.nexus + "\n");
  EXPECT_EQ(fs.snapshot(), before);
  EXPECT_FALSE(fs.kernel_crashed());
  EXPECT_EQ(prov.teardown(), 0);
}

}  // namespace
}  // namespace qemu_lio
