// Readying the kernel for LIO: nothing is done to a configfs tree that is not the standard
// mount point, and the preflight explains what is missing.

#include "qemu_lio/lio_setup.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_support.h"

namespace qemu_lio {
namespace {

const CheckItem* item_containing(const std::vector<CheckItem>& items, const std::string& what) {
  for (const CheckItem& c : items)
    if (c.what.find(what) != std::string::npos) return &c;
  return nullptr;
}

TEST(PrepareLio, LeavesANonStandardRootAlone) {
  TempDir dir;
  EXPECT_NO_THROW(prepare_lio(dir.path()));
  struct stat st;
  EXPECT_NE(::stat((dir / "target").c_str(), &st), 0);  // nothing created
  EXPECT_NO_THROW(prepare_lio(dir / "does-not-exist"));
  EXPECT_NE(::stat((dir / "does-not-exist").c_str(), &st), 0);
  EXPECT_NO_THROW(prepare_lio("/sys/kernel/config/"));  // not the exact standard spelling
  EXPECT_NO_THROW(prepare_lio(""));
}

TEST(ModuleLoaded, UnknownModuleIsNotLoaded) {
  EXPECT_FALSE(module_loaded("definitely_not_a_module"));
}

TEST(LioModules, HoldsTheTargetAndVhostModules) {
  for (const std::string m : {"target_core_mod", "target_core_file", "target_core_iblock", "vhost_scsi"})
    EXPECT_NE(std::find(kLioModules.begin(), kLioModules.end(), m), kLioModules.end()) << m;
}

TEST(Preflight, MissingQemuIsNotFound) {
  TempDir dir;
  std::vector<CheckItem> items = preflight(dir.path(), "/nonexistent/qemu");
  const CheckItem* q = item_containing(items, "/nonexistent/qemu");
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(q->ok);
  EXPECT_NE(q->detail.find("not found"), std::string::npos) << q->detail;
  EXPECT_NE(q->what.find("vhost-scsi-pci"), std::string::npos) << q->what;
}

TEST(Preflight, ListsEveryItemWithAFix) {
  TempDir dir;
  std::vector<CheckItem> items = preflight(dir.path(), "/nonexistent/qemu");
  for (const std::string& m : kLioModules) {
    const CheckItem* c = item_containing(items, "module " + m);
    ASSERT_NE(c, nullptr) << m;
    EXPECT_EQ(c->ok, module_loaded(m)) << m;
  }
  EXPECT_NE(item_containing(items, "running as root"), nullptr);
  EXPECT_NE(item_containing(items, "/dev/vhost-scsi"), nullptr);
  EXPECT_NE(item_containing(items, "fd_async_io"), nullptr);
  for (const CheckItem& c : items) {
    if (!c.info) {
      EXPECT_FALSE(c.detail.empty()) << c.what;  // a finding has no fix to offer
    }
  }
  EXPECT_NE(item_containing(items, "VHOST_NEW_WORKER"), nullptr);
}

TEST(Preflight, ANonStandardRootCountsAsMountedAndIsCheckedForTarget) {
  TempDir dir;
  std::vector<CheckItem> items = preflight(dir.path(), "/nonexistent/qemu");
  const CheckItem* mounted = item_containing(items, "configfs mounted at " + dir.path());
  ASSERT_NE(mounted, nullptr);
  EXPECT_TRUE(mounted->ok);
  const CheckItem* target = item_containing(items, dir.path() + "/target present");
  ASSERT_NE(target, nullptr);
  EXPECT_FALSE(target->ok);

  ASSERT_EQ(::mkdir((dir / "target").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "target/core").c_str(), 0755), 0);
  items = preflight(dir.path(), "/nonexistent/qemu");
  target = item_containing(items, dir.path() + "/target present");
  ASSERT_NE(target, nullptr);
  EXPECT_TRUE(target->ok);
}

}  // namespace
}  // namespace qemu_lio
