// The inventory is read from configfs itself: every storage object under an HBA (whoever
// made it) with the file it serves, and every vhost target, skipping the kernel's own
// entries.

#include "qemu_lio/lio_inventory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

const Backstore* find_backstore(const Inventory& inv, const std::string& hba,
                                const std::string& name) {
  for (const Backstore& b : inv.backstores)
    if (b.hba == hba && b.name == name) return &b;
  return nullptr;
}

class LioInventoryTest : public ::testing::Test {
 protected:
  // A fileio storage object set up by hand, as another tool (targetcli) would.
  void make_fileio(const std::string& hba, const std::string& name, const std::string& file,
                   bool enable = true) {
    if (!fs_.exists("target/core/" + hba)) fs_.mkdir("target/core/" + hba);
    const std::string so = "target/core/" + hba + "/" + name;
    fs_.mkdir(so);
    fs_.write(so + "/control", "fd_dev_name=" + file + ",fd_dev_size=1048576");
    if (enable) fs_.write(so + "/enable", "1");
  }

  FakeConfigFs fs_;
};

TEST_F(LioInventoryTest, FreshTreeIsEmpty) {
  Inventory inv = scan_inventory(fs_);  // target/core holds only alua, no target/vhost
  EXPECT_TRUE(inv.backstores.empty());
  EXPECT_TRUE(inv.vhost_wwns.empty());
}

TEST_F(LioInventoryTest, FindsBackstoresWithTheirFileFromInfo) {
  make_fileio("fileio_0", "vm-disk0", "/img/a.raw");
  make_fileio("fileio_3", "other tool's", "/img/b.raw", /*enable=*/false);
  Inventory inv = scan_inventory(fs_);
  ASSERT_EQ(inv.backstores.size(), 2u);
  const Backstore* a = find_backstore(inv, "fileio_0", "vm-disk0");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->file, "/img/a.raw");
  EXPECT_EQ(a->path(), "target/core/fileio_0/vm-disk0");
  const Backstore* b = find_backstore(inv, "fileio_3", "other tool's");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->file, "/img/b.raw");
}

TEST_F(LioInventoryTest, UdevPathWinsOverInfo) {
  make_fileio("fileio_0", "so", "/img/a.raw");
  fs_.write("target/core/fileio_0/so/udev_path", "/img/link-to-a.raw");
  Inventory inv = scan_inventory(fs_);
  ASSERT_EQ(inv.backstores.size(), 1u);
  EXPECT_EQ(inv.backstores[0].file, "/img/link-to-a.raw");
}

TEST_F(LioInventoryTest, ObjectWithoutFileHasEmptyFile) {
  fs_.mkdir("target/core/fileio_1");
  fs_.mkdir("target/core/fileio_1/bare");
  Inventory inv = scan_inventory(fs_);
  ASSERT_EQ(inv.backstores.size(), 1u);
  EXPECT_EQ(inv.backstores[0].name, "bare");
  EXPECT_EQ(inv.backstores[0].file, "");
}

TEST_F(LioInventoryTest, SkipsAluaAndHbaAttributes) {
  fs_.mkdir("target/core/fileio_2");  // an HBA with nothing in it but hba_info, hba_mode
  make_fileio("fileio_0", "so", "/img/a.raw");
  ASSERT_TRUE(fs_.exists("target/core/alua"));
  ASSERT_TRUE(fs_.exists("target/core/fileio_2/hba_info"));
  ASSERT_TRUE(fs_.exists("target/core/fileio_2/hba_mode"));
  Inventory inv = scan_inventory(fs_);
  ASSERT_EQ(inv.backstores.size(), 1u);
  EXPECT_EQ(inv.backstores[0].hba, "fileio_0");
  EXPECT_EQ(inv.backstores[0].name, "so");
  for (const Backstore& b : inv.backstores) {
    EXPECT_NE(b.hba, "alua");
    EXPECT_NE(b.name, "hba_info");
    EXPECT_NE(b.name, "hba_mode");
  }
}

TEST_F(LioInventoryTest, ListsVhostWwnsButNotFabricAttributes) {
  fs_.mkdir("target/vhost");
  fs_.mkdir("target/vhost/naa.5001405000000001");
  fs_.mkdir("target/vhost/naa.5001405000000002");
  ASSERT_TRUE(fs_.exists("target/vhost/discovery_auth"));
  ASSERT_TRUE(fs_.exists("target/vhost/version"));
  Inventory inv = scan_inventory(fs_);
  std::vector<std::string> wwns = inv.vhost_wwns;
  std::sort(wwns.begin(), wwns.end());
  EXPECT_EQ(wwns, (std::vector<std::string>{"naa.5001405000000001", "naa.5001405000000002"}));
}

TEST_F(LioInventoryTest, EmptyFabricHasNoWwns) {
  fs_.mkdir("target/vhost");
  EXPECT_TRUE(scan_inventory(fs_).vhost_wwns.empty());
}

TEST(FileKey, HardLinksAreTheSameFile) {
  TempDir dir;
  write_file(dir / "a.raw", 4096);
  ASSERT_EQ(::link((dir / "a.raw").c_str(), (dir / "b.raw").c_str()), 0);
  FileKey a = file_key(dir / "a.raw"), b = file_key(dir / "b.raw");
  EXPECT_TRUE(a.valid);
  EXPECT_TRUE(b.valid);
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(file_key(dir.path() + "/./a.raw") == a);
}

TEST(FileKey, SymlinkIsTheFileItNames) {
  TempDir dir;
  write_file(dir / "a.raw", 4096);
  ASSERT_EQ(::symlink((dir / "a.raw").c_str(), (dir / "l.raw").c_str()), 0);
  EXPECT_TRUE(file_key(dir / "l.raw") == file_key(dir / "a.raw"));
}

TEST(FileKey, DistinctFilesDiffer) {
  TempDir dir;
  write_file(dir / "a.raw", 4096);
  write_file(dir / "b.raw", 4096);
  FileKey a = file_key(dir / "a.raw"), b = file_key(dir / "b.raw");
  ASSERT_TRUE(a.valid);
  ASSERT_TRUE(b.valid);
  EXPECT_FALSE(a == b);
}

TEST(FileKey, MissingFileIsInvalidAndEqualToNothing) {
  TempDir dir;
  FileKey k = file_key(dir / "gone.raw");
  EXPECT_FALSE(k.valid);
  EXPECT_FALSE(k == k);  // two missing files are not "the same file"
  EXPECT_FALSE(k == file_key(dir / "also-gone.raw"));
}

}  // namespace
}  // namespace qemu_lio
