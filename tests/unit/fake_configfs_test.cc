// The fake kernel is only useful if it refuses what the kernel refuses: these tests pin
// the rules of lio-kernel-facts.md that the other tests rely on.

#include "fake_configfs.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "test_support.h"

namespace qemu_lio {
namespace {

const std::string kHba = "target/core/fileio_0";
const std::string kSo = kHba + "/vm-disk0";
const std::string kWwn = "target/vhost/naa.5001405000000001";
const std::string kTpg = kWwn + "/tpgt_1";
const std::string kLun = kTpg + "/lun/lun_0";
const std::string kLink = kLun + "/vm-disk0";
const std::string kNexus = "naa.6000000000000001";
const std::string kControl = "fd_dev_name=/img/a.raw,fd_dev_size=1048576";

class FakeConfigFsTest : public ::testing::Test {
 protected:
  void make_device(const std::string& control = kControl) {
    fs_.mkdir(kHba);
    fs_.mkdir(kSo);
    fs_.write(kSo + "/control", control);
  }
  void make_enabled_device(const std::string& control = kControl) {
    make_device(control);
    fs_.write(kSo + "/enable", "1");
  }
  void make_target() {
    if (!fs_.exists("target/vhost")) fs_.mkdir("target/vhost");
    fs_.mkdir(kWwn);
    fs_.mkdir(kTpg);
    fs_.mkdir(kLun);
  }
  // A device exported through a LUN, as qemu-lio leaves it while QEMU runs.
  void make_export() {
    make_enabled_device();
    make_target();
    fs_.write(kTpg + "/nexus", kNexus);
    fs_.symlink(kSo, kLink);
  }
  std::string attrib(const std::string& name) { return fs_.read(kSo + "/attrib/" + name); }

  FakeConfigFs fs_;
};

TEST_F(FakeConfigFsTest, StartsAsAFreshlyLoadedTargetCore) {
  EXPECT_TRUE(fs_.exists("target/core"));
  EXPECT_TRUE(fs_.exists("target/core/alua"));
  EXPECT_TRUE(fs_.exists("target/version"));
  EXPECT_FALSE(fs_.exists("target/vhost"));
  EXPECT_EQ(fs_.list("target/core"), std::vector<std::string>{"alua"});
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kWwn); }), ENOENT);  // no fabric dir yet
  EXPECT_EQ(fs_.ops_count(), 1);
  EXPECT_FALSE(fs_.kernel_crashed());
}

TEST_F(FakeConfigFsTest, VhostFabricDirAppearsWhenMade) {
  fs_.mkdir("target/vhost");
  EXPECT_EQ(fs_.list("target/vhost"), (std::vector<std::string>{"discovery_auth", "version"}));
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/vhost"); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_.rmdir("target/vhost/discovery_auth"); }), EPERM);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/bogus_fabric"); }), EINVAL);
  fs_.rmdir("target/vhost");
  EXPECT_FALSE(fs_.exists("target/vhost"));
}

TEST_F(FakeConfigFsTest, HbaNamesArePluginUnderscoreNumber) {
  fs_.mkdir("target/core/fileio_0");
  fs_.mkdir("target/core/iblock_7");
  fs_.mkdir("target/core/fileio_0x10");  // N is parsed with base 0
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_0"); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_x"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/pscsi_0"); }), EINVAL);
  EXPECT_EQ(fs_.list("target/core/fileio_0"), (std::vector<std::string>{"hba_info", "hba_mode"}));
  EXPECT_NE(fs_.read("target/core/iblock_7/hba_info").find("plugin: iblock"), std::string::npos);
  EXPECT_EQ(errno_of([&] { fs_.write("target/core/fileio_0/hba_mode", "1"); }), EINVAL);
}

TEST_F(FakeConfigFsTest, StorageObjectHasDefaultGroupsThatCannotBeRemoved) {
  make_device();
  for (const char* p : {"/attrib/block_size", "/attrib/emulate_tpu", "/attrib/emulate_write_cache",
                        "/attrib/hw_block_size", "/attrib/queue_depth", "/wwn/vpd_unit_serial",
                        "/control", "/enable", "/info", "/udev_path", "/alias"})
    EXPECT_TRUE(fs_.exists(kSo + p)) << p;
  for (const char* g : {"/attrib", "/wwn", "/pr", "/statistics", "/alua"})
    EXPECT_EQ(errno_of([&] { fs_.rmdir(kSo + g); }), EPERM) << g;
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kSo + "/attrib/x"); }), EPERM);
  EXPECT_EQ(fs_.read(kSo + "/enable"), "0\n");
  EXPECT_EQ(attrib("emulate_write_cache"), "0\n");
  EXPECT_EQ(attrib("emulate_tpu"), "0\n");
  EXPECT_EQ(fs_.read(kSo + "/udev_path"), "");
  EXPECT_EQ(errno_of([&] { fs_.read(kSo + "/control"); }), EACCES);  // write-only
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/info", "x"); }), EACCES);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/hw_block_size", "4096"); }), EACCES);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kHba); }), ENOTEMPTY);
  fs_.rmdir(kSo);
  fs_.rmdir(kHba);
}

TEST_F(FakeConfigFsTest, WritingAMissingAttributeIsEnoentAndCreatesNothing) {
  make_device();
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/no_such_attr", "1"); }), ENOENT);
  EXPECT_FALSE(fs_.exists(kSo + "/attrib/no_such_attr"));
  EXPECT_EQ(errno_of([&] { fs_.write("target/core/fileio_9/x/enable", "1"); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_.read("target/core/fileio_9/x/info"); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib", "1"); }), EISDIR);
}

TEST_F(FakeConfigFsTest, EnableNeedsNameAndSizeAndHappensOnce) {
  make_device("fd_dev_size=4096");
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/enable", "1"); }), EINVAL);  // no fd_dev_name
  fs_.write(kSo + "/control", "fd_dev_name=/img/a.raw");
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/enable", "0"); }), EINVAL);  // must contain "1"
  fs_.write(kSo + "/enable", "1\n");
  EXPECT_EQ(fs_.read(kSo + "/enable"), "1\n");
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/enable", "1"); }), EEXIST);

  FakeConfigFs other;
  other.mkdir(kHba);
  other.mkdir(kSo);
  other.write(kSo + "/control", "fd_dev_name=/img/a.raw");  // a regular file needs a size
  EXPECT_EQ(errno_of([&] { other.write(kSo + "/enable", "1"); }), EINVAL);
}

TEST_F(FakeConfigFsTest, ControlSplitsOnCommaAndNewlineAndIgnoresUnknownKeys) {
  make_enabled_device("fd_dev_name=/img/a.raw\nfd_dev_size=4096,bogus_key=3,fd_buffered_io=1");
  EXPECT_EQ(fs_.read(kSo + "/info"),
            "Status: DEACTIVATED  Max Queue Depth: 128  SectorSize: 512  HwMaxSectors: 16384\n"
            "        TCM FILEIO ID: 0        File: /img/a.raw  Size: 4096  Mode: Buffered-WCE "
            "Async: 0\n");
  EXPECT_EQ(attrib("emulate_write_cache"), "1\n");  // forced by fd_buffered_io at enable
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/control", "fd_buffered_io=2"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/control", "fd_dev_size=big"); }), EINVAL);
}

TEST_F(FakeConfigFsTest, InfoShowsWriteThroughAndAsync) {
  make_enabled_device(kControl + ",fd_async_io=1");
  const std::string info = fs_.read(kSo + "/info");
  EXPECT_NE(info.find("Mode: O_DSYNC Async: 1"), std::string::npos) << info;
  EXPECT_EQ(attrib("emulate_write_cache"), "0\n");  // async alone advertises no cache
}

TEST_F(FakeConfigFsTest, LongFileNamesAreTruncatedSilently) {
  const std::string name = "/" + std::string(300, 'a');
  make_enabled_device("fd_dev_name=" + name + ",fd_dev_size=512");
  EXPECT_NE(fs_.read(kSo + "/info").find("File: " + name.substr(0, 255) + "  Size"),
            std::string::npos);
}

TEST_F(FakeConfigFsTest, EnableResetsBlockSize) {
  make_device();
  fs_.write(kSo + "/attrib/block_size", "4096");
  EXPECT_EQ(attrib("block_size"), "4096\n");
  fs_.write(kSo + "/enable", "1");
  EXPECT_EQ(attrib("block_size"), "512\n");
  fs_.write(kSo + "/attrib/block_size", "4096");
  EXPECT_EQ(attrib("block_size"), "4096\n");
  EXPECT_NE(fs_.read(kSo + "/info").find("SectorSize: 4096"), std::string::npos);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/block_size", "1000"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/block_size", "abc"); }), EINVAL);
}

TEST_F(FakeConfigFsTest, DiscardBeforeEnableCrashesTheKernel) {
  make_device();
  fs_.write(kSo + "/attrib/emulate_tpu", "0");  // clearing takes no unmap path
  EXPECT_FALSE(fs_.kernel_crashed());
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/emulate_tpu", "1"); }), ENODEV);
  EXPECT_TRUE(fs_.kernel_crashed());
  EXPECT_NE(fs_.crash_reason().find("emulate_tpu"), std::string::npos);

  FakeConfigFs tpws;
  tpws.mkdir(kHba);
  tpws.mkdir(kSo);
  EXPECT_EQ(errno_of([&] { tpws.write(kSo + "/attrib/emulate_tpws", "1"); }), ENODEV);
  EXPECT_TRUE(tpws.kernel_crashed());
}

TEST_F(FakeConfigFsTest, DiscardAfterEnableWorks) {
  make_enabled_device();
  fs_.write(kSo + "/attrib/emulate_tpu", "1");
  EXPECT_EQ(attrib("emulate_tpu"), "1\n");
  EXPECT_FALSE(fs_.kernel_crashed());
}

TEST_F(FakeConfigFsTest, VhostNamesAreChecked) {
  fs_.mkdir("target/vhost");
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/vhost/5001405000000001"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/vhost/naa." + std::string(260, '1')); }), EINVAL);
  fs_.mkdir(kWwn);
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kWwn + "/tpg_1"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kWwn + "/tpgt_256"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kWwn + "/tpgt_x"); }), EINVAL);
  fs_.mkdir(kTpg);
  for (const char* g : {"lun", "acls", "np", "attrib", "param", "auth"})
    EXPECT_TRUE(fs_.exists(kTpg + "/" + g)) << g;
  EXPECT_TRUE(fs_.exists(kTpg + "/nexus"));
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kTpg + "/lun/0"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.mkdir(kTpg + "/lun/lun_x"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kTpg + "/lun"); }), EPERM);
  fs_.mkdir(kLun);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kTpg); }), ENOTEMPTY);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kWwn); }), ENOTEMPTY);
}

TEST_F(FakeConfigFsTest, LunLinkNeedsAnEnabledStorageObject) {
  make_device();
  make_target();
  EXPECT_EQ(errno_of([&] { fs_.symlink(kSo, kLink); }), ENODEV);
  EXPECT_EQ(errno_of([&] { fs_.symlink(kHba, kLink); }), EFAULT);
  EXPECT_EQ(errno_of([&] { fs_.symlink(kHba + "/nope", kLink); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_.symlink(kSo, kTpg + "/vm-disk0"); }), EPERM);
  fs_.write(kSo + "/enable", "1");
  fs_.symlink(kSo, kLink);
  EXPECT_TRUE(fs_.is_link(kLink));
  EXPECT_EQ(fs_.link_target(kLink), kSo);
  EXPECT_EQ(errno_of([&] { fs_.symlink(kSo, kLun + "/second"); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_.symlink(kSo, kLink); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_.link_target(kLun + "/statistics"); }), EINVAL);
}

TEST_F(FakeConfigFsTest, AnExportedDeviceIsFrozen) {
  make_export();
  EXPECT_NE(fs_.read(kSo + "/info").find("Status: ACTIVATED"), std::string::npos);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/attrib/block_size", "4096"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/wwn/vpd_unit_serial", "abc"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kSo); }), EBUSY);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kLun); }), ENOTEMPTY);
  EXPECT_EQ(errno_of([&] { fs_.write(kTpg + "/nexus", "NULL"); }), EBUSY);
  fs_.write(kSo + "/attrib/emulate_tpu", "1");  // not frozen
  fs_.unlink(kLink);
  EXPECT_EQ(errno_of([&] { fs_.unlink(kLink); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_.unlink(kSo + "/enable"); }), EPERM);
  fs_.write(kSo + "/wwn/vpd_unit_serial", "abc");
  EXPECT_EQ(fs_.read(kSo + "/wwn/vpd_unit_serial"), "T10 VPD Unit Serial Number: abc\n");
  EXPECT_EQ(errno_of([&] { fs_.write(kSo + "/wwn/vpd_unit_serial", std::string(254, 'x')); }),
            EOVERFLOW);
  EXPECT_NE(fs_.read(kSo + "/info").find("Status: DEACTIVATED"), std::string::npos);
}

TEST_F(FakeConfigFsTest, NexusIsSetOnceAndClearedWithNull) {
  make_target();
  const std::string nexus = kTpg + "/nexus";
  EXPECT_EQ(errno_of([&] { fs_.read(nexus); }), ENODEV);
  EXPECT_EQ(errno_of([&] { fs_.write(nexus, "NULL"); }), ENODEV);
  EXPECT_EQ(errno_of([&] { fs_.write(nexus, "iqn.2003-01.org.x:y"); }), EINVAL);  // not SAS
  EXPECT_EQ(errno_of([&] { fs_.write(nexus, "6000000000000001"); }), EINVAL);
  fs_.write(nexus, kNexus + "\n");
  EXPECT_EQ(fs_.read(nexus), kNexus + "\n");
  EXPECT_EQ(errno_of([&] { fs_.write(nexus, "naa.6000000000000002"); }), EEXIST);
  fs_.write(nexus, "NULL");
  EXPECT_EQ(errno_of([&] { fs_.read(nexus); }), ENODEV);
}

TEST_F(FakeConfigFsTest, QemuAttachedPinsTheTarget) {
  make_target();
  fs_.write(kTpg + "/nexus", kNexus);
  fs_.rmdir(kLun);
  fs_.attach_vhost("naa.5001405000000001");
  EXPECT_EQ(errno_of([&] { fs_.write(kTpg + "/nexus", "NULL"); }), EBUSY);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kTpg); }), EBUSY);
  fs_.detach_vhost("naa.5001405000000001");
  fs_.rmdir(kTpg);  // drops the nexus with it
  fs_.rmdir(kWwn);
}

TEST_F(FakeConfigFsTest, ExplicitAclWithWriteProtect) {
  make_export();
  const std::string acl = kTpg + "/acls/" + kNexus;
  const std::string mapped = acl + "/lun_0";
  fs_.mkdir(acl);
  fs_.mkdir(mapped);
  fs_.write(mapped + "/write_protect", "1");  // no mapping yet: no effect
  EXPECT_EQ(fs_.read(mapped + "/write_protect"), "");
  EXPECT_EQ(errno_of([&] { fs_.symlink(kSo, mapped + "/lun_0"); }), EFAULT);
  fs_.symlink(kLun, mapped + "/lun_0");
  EXPECT_EQ(fs_.read(mapped + "/write_protect"), "0\n");
  fs_.write(mapped + "/write_protect", "1");
  EXPECT_EQ(fs_.read(mapped + "/write_protect"), "1\n");
  EXPECT_EQ(errno_of([&] { fs_.write(mapped + "/write_protect", "2"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(acl); }), ENOTEMPTY);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kLun); }), ENOTEMPTY);
}

TEST_F(FakeConfigFsTest, RemovingTheAclOfALiveNexusHangsTheKernel) {
  make_target();
  const std::string acl = kTpg + "/acls/" + kNexus;
  fs_.mkdir(acl);
  fs_.write(kTpg + "/nexus", kNexus);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(acl); }), ENODEV);
  EXPECT_TRUE(fs_.kernel_crashed());
}

TEST_F(FakeConfigFsTest, FaultsBySubstringExactPathAndOrdinal) {
  fs_.fail_on(FsOp::kMkdir, "fileio_", EIO, 2);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_0"); }), EIO);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_1"); }), EIO);
  fs_.mkdir("target/core/fileio_0");  // the count is used up
  EXPECT_EQ(fs_.ops_count(), 3);

  fs_.fail_on_exact(FsOp::kAny, "target/core/fileio_0/hba_mode", EROFS);
  EXPECT_EQ(errno_of([&] { fs_.read("target/core/fileio_0/hba_mode"); }), EROFS);
  EXPECT_EQ(errno_of([&] { fs_.read("target/core/fileio_0/hba_info"); }), 0);

  fs_.fail_at_op(fs_.ops_count() + 2, ENOMEM);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_1"); }), 0);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_2"); }), ENOMEM);
  EXPECT_EQ(errno_of([&] { fs_.mkdir("target/core/fileio_2"); }), 0);
  EXPECT_FALSE(fs_.exists("target/core/fileio_3"));  // exists() is not an operation

  fs_.fail_from_op(fs_.ops_count() + 1, EIO);
  EXPECT_EQ(errno_of([&] { fs_.rmdir("target/core/fileio_2"); }), EIO);
  EXPECT_EQ(errno_of([&] { fs_.rmdir("target/core/fileio_1"); }), EIO);
  fs_.clear_faults();
  fs_.rmdir("target/core/fileio_1");
  EXPECT_EQ(fs_.log().back(), "rmdir target/core/fileio_1");
}

TEST_F(FakeConfigFsTest, BusyRmdirGivesUpAfterKTries) {
  fs_.mkdir(kHba);
  fs_.busy(kHba, 2);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kHba); }), EBUSY);
  EXPECT_EQ(errno_of([&] { fs_.rmdir(kHba); }), EBUSY);
  fs_.rmdir(kHba);
}

TEST_F(FakeConfigFsTest, SnapshotSeesEveryChangeAndItsReversal) {
  fs_.mkdir("target/vhost");
  const std::string before = fs_.snapshot();
  make_export();
  EXPECT_NE(fs_.snapshot(), before);
  EXPECT_NE(fs_.snapshot().find("l " + kLink + " -> " + kSo), std::string::npos);
  fs_.unlink(kLink);
  fs_.rmdir(kLun);
  fs_.write(kTpg + "/nexus", "NULL");
  fs_.rmdir(kTpg);
  fs_.rmdir(kWwn);
  fs_.rmdir(kSo);
  EXPECT_NE(fs_.snapshot(), before);  // the HBA is left
  fs_.rmdir(kHba);
  EXPECT_EQ(fs_.snapshot(), before);
}

TEST_F(FakeConfigFsTest, RmdirRemovesOnlyItsOwnSubtree) {
  fs_.mkdir(kHba);
  fs_.mkdir(kSo);
  fs_.mkdir(kSo + "-ro");  // sorts between kSo and kSo + "/..."
  fs_.rmdir(kSo);
  EXPECT_TRUE(fs_.exists(kSo + "-ro/attrib/block_size"));
}

TEST_F(FakeConfigFsTest, ClearAllIsTargetctlClear) {
  fs_.mkdir("target/vhost");
  const std::string before = fs_.snapshot();
  make_export();
  fs_.mkdir(kTpg + "/acls/" + kNexus);
  fs_.mkdir(kTpg + "/acls/" + kNexus + "/lun_0");
  fs_.symlink(kLun, kTpg + "/acls/" + kNexus + "/lun_0/x");
  fs_.clear_all();
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_FALSE(fs_.kernel_crashed());
}

}  // namespace
}  // namespace qemu_lio
