#include "qemu_lio/image_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <string>

#include "test_support.h"

namespace qemu_lio {
namespace {

class ImageCheckTest : public ::testing::Test {
 protected:
  // The Error message inspect_image() gives for `spec`; names the image first.
  std::string refusal(const std::string& spec) {
    ImageSpec s = parse_image_spec(spec);
    std::string msg = error_of([&] { inspect_image(s); });
    EXPECT_EQ(msg.rfind(s.path + ": ", 0), 0u) << "the image is not named first: " << msg;
    return msg;
  }
  ImageInfo accepted(const std::string& spec) { return inspect_image(parse_image_spec(spec)); }
  // A raw image of `size` bytes in the temp dir.
  std::string raw(const std::string& name, uint64_t size = 1 << 20) {
    write_file(dir_ / name, size);
    return dir_ / name;
  }

  TempDir dir_;
};

TEST_F(ImageCheckTest, RawFileIsAcceptedWithItsCanonicalPathAndSize) {
  std::string p = raw("disk.raw", 3 << 20);
  ImageInfo info = accepted(p);
  EXPECT_EQ(info.canonical_path, p);
  EXPECT_EQ(info.kind, ImageKind::kFile);
  EXPECT_EQ(info.size, 3u << 20);
}

TEST_F(ImageCheckTest, SymlinksAndDotsAreResolved) {
  std::string p = raw("disk.raw");
  ASSERT_EQ(::symlink(p.c_str(), (dir_ / "link.raw").c_str()), 0);
  EXPECT_EQ(accepted(dir_ / "link.raw").canonical_path, p);
  EXPECT_EQ(accepted(dir_.path() + "/./../" + p.substr(p.rfind('/', p.rfind('/') - 1) + 1))
                .canonical_path,
            p);
}

TEST_F(ImageCheckTest, RelativePathBecomesAbsolute) {
  std::string p = raw("rel.raw");
  char old[4096];
  ASSERT_TRUE(::getcwd(old, sizeof old));
  ASSERT_EQ(::chdir(dir_.path().c_str()), 0);
  ImageInfo info = accepted("rel.raw");
  ASSERT_EQ(::chdir(old), 0);
  EXPECT_EQ(info.canonical_path, p);  // the kernel resolves it elsewhere: never pass it relative
}

TEST_F(ImageCheckTest, MissingImageIsRefusedNotCreated) {
  // A wrong fd_dev_name makes the kernel create an empty file: catch it here.
  EXPECT_NE(refusal(dir_ / "missing.raw").find("No such file or directory"), std::string::npos);
  EXPECT_NE(::access((dir_ / "missing.raw").c_str(), F_OK), 0);
}

TEST_F(ImageCheckTest, DirectoryIsRefused) {
  ::mkdir((dir_ / "d").c_str(), 0755);
  EXPECT_NE(refusal(dir_ / "d").find("is a directory"), std::string::npos);
}

TEST_F(ImageCheckTest, FifoIsRefused) {
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  EXPECT_NE(refusal(dir_ / "fifo").find("not a regular file or block device"), std::string::npos);
}

TEST_F(ImageCheckTest, EmptyImageIsRefused) {
  EXPECT_NE(refusal(raw("empty.raw", 0)).find("empty"), std::string::npos);
}

TEST_F(ImageCheckTest, SizeMustBeAMultipleOfTheBlockSize) {
  std::string p = raw("odd.raw", 512 * 3);
  EXPECT_NO_THROW(accepted(p));
  EXPECT_NE(refusal(p + ",block-size=1024").find("not a multiple of block-size 1024"),
            std::string::npos);
  EXPECT_NE(refusal(raw("tiny.raw", 100)).find("size 100"), std::string::npos);
  EXPECT_NO_THROW(accepted(raw("four.raw", 8192) + ",block-size=4096"));
}

struct Magic {
  const char* format;
  std::string header;
};

class ImageFormatTest : public ImageCheckTest, public ::testing::WithParamInterface<Magic> {};

TEST_P(ImageFormatTest, AHeaderInAFileNotNamedForItIsRefused) {
  // A guest may write a format header (with a backing file naming any host file) into its
  // raw disk's first sector: the next start must not read the disk in that format.
  const std::string f = GetParam().format;
  write_file(dir_ / "img", 1 << 20, GetParam().header);
  std::string msg = refusal(dir_ / "img");
  EXPECT_EQ(msg, dir_ / "img" + ": has a " + f + " header but its name does not say " + f + ": set format=" + f +
                     " to serve it as " + f + ", or format=raw if it is a raw disk");
  // qemu-img on guest-written bytes would follow a crafted backing file name.
  EXPECT_EQ(msg.find("qemu-img"), std::string::npos) << msg;
  EXPECT_EQ(detect_image_format(GetParam().header), f);
}

TEST_P(ImageFormatTest, AHeaderInAFileNamedForItIsServed) {
  const std::string f = GetParam().format;
  const std::string ext = f == "vpc" ? ".vhd" : "." + f;
  write_file(dir_ / ("img" + ext), 1 << 20, GetParam().header);
  if (f == "vmdk" || f == "vpc") {
    // A raw extent ("-flat.vmdk") or a fixed VHD is a raw disk with that extension.
    EXPECT_NE(refusal(dir_ / ("img" + ext)).find("set format=" + f), std::string::npos);
  } else {
    ImageInfo info = accepted(dir_ / ("img" + ext));
    EXPECT_EQ(info.format, f);
    EXPECT_TRUE(info.served());
  }
  // Named by the caller, the format is taken without looking at the header.
  EXPECT_EQ(accepted(dir_ / ("img" + ext) + ",format=" + f).format, f);
}

TEST_P(ImageFormatTest, FormatRawServesTheImageWhateverItsFirstSectorHolds) {
  // A guest may write any bytes into sector 0 of its raw disk, a format magic included.
  write_file(dir_ / "img", 1 << 20, GetParam().header);
  ImageInfo info = accepted(dir_ / "img" + ",format=raw");
  EXPECT_EQ(info.size, 1u << 20);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ImageFormatTest,
    ::testing::Values(Magic{"qcow2", std::string("QFI\xfb\0\0\0\3", 8)},
                      Magic{"qcow2", std::string("QFI\xfb\0\0\0\1", 8)},  // qcow v1
                      Magic{"vmdk", "KDMV"}, Magic{"vmdk", "# Disk DescriptorFile\n"},
                      Magic{"vhdx", "vhdxfile"}, Magic{"qed", std::string("QED\0", 4)},
                      Magic{"vpc", "conectix"},
                      Magic{"vdi", std::string(0x40, ' ') + "\x7f\x10\xda\xbe"}),
    [](const ::testing::TestParamInfo<Magic>& i) {
      return std::string(i.param.format) + std::to_string(i.index);
    });

TEST(DetectImageFormat, RawDataIsRaw) {
  EXPECT_EQ(detect_image_format(""), "");
  EXPECT_EQ(detect_image_format(std::string(512, '\0')), "");
  EXPECT_EQ(detect_image_format("QFI"), "");                    // too short for the magic
  EXPECT_EQ(detect_image_format(std::string(0x42, ' ')), "");   // VDI magic cut off
  EXPECT_EQ(detect_image_format("\xeb\x63\x90MSDOS5.0"), "");  // a boot sector
}

TEST_F(ImageCheckTest, CommaInThePathIsRefused) {
  // fd_dev_name is split on ',' by the kernel: such a path cannot be passed.
  std::string p = raw("a,b.raw");
  std::string msg = refusal(dir_.path() + "/a,,b.raw");
  EXPECT_NE(msg.find("','"), std::string::npos) << msg;
  // Through a symlink, the canonical path still holds the comma.
  ASSERT_EQ(::symlink(p.c_str(), (dir_ / "plain.raw").c_str()), 0);
  EXPECT_NE(refusal(dir_ / "plain.raw").find("','"), std::string::npos);
}

TEST_F(ImageCheckTest, NewlineInThePathIsRefused) {
  std::string p = raw("a\nb.raw");
  EXPECT_NE(refusal(p).find("newline"), std::string::npos);
}

TEST_F(ImageCheckTest, CanonicalPathOver255BytesIsRefused) {
  // fd_dev_name is truncated to 255 bytes without an error.
  std::string d = dir_.path();
  while (d.size() < 180) {
    d += "/" + std::string(60, 'd');
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  }
  std::string fits = d + "/" + std::string(255 - d.size() - 1, 'f');
  ASSERT_EQ(fits.size(), 255u);
  write_file(fits, 4096);
  EXPECT_NO_THROW(accepted(fits));
  std::string too_long = fits + "g";
  write_file(too_long, 4096);
  EXPECT_NE(refusal(too_long).find("256 bytes"), std::string::npos);
  // A short symlink does not help: the kernel gets the canonical path.
  ASSERT_EQ(::symlink(too_long.c_str(), (dir_ / "short").c_str()), 0);
  EXPECT_NE(refusal(dir_ / "short").find("at most 255"), std::string::npos);
}

TEST_F(ImageCheckTest, SymlinkLoopIsRefused) {
  ASSERT_EQ(::symlink((dir_ / "b").c_str(), (dir_ / "a").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ / "a").c_str(), (dir_ / "b").c_str()), 0);
  EXPECT_NE(refusal(dir_ / "a").find("symlink loop"), std::string::npos);
}

TEST_F(ImageCheckTest, DanglingSymlinkIsRefused) {
  ASSERT_EQ(::symlink((dir_ / "nowhere").c_str(), (dir_ / "dangling").c_str()), 0);
  EXPECT_NE(refusal(dir_ / "dangling").find("No such file"), std::string::npos);
}

// True if `dir`'s file system refuses O_DIRECT (tmpfs before Linux 6.6).
bool o_direct_refused(const std::string& dir) {
  std::string probe = dir + "/probe";
  write_file(probe, 4096);
  int fd = ::open(probe.c_str(), O_RDONLY | O_DIRECT);
  int err = errno;
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  return fd < 0 && err == EINVAL;
}

TEST(ImageCheckDirect, CacheNoneNeedsODirect) {
  // With fd_async_io on a file system without O_DIRECT the first guest write oopses the
  // kernel. Which file systems refuse O_DIRECT depends on the kernel, so ask this one.
  if (::access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no writable /dev/shm";
  TempDir shm("/dev/shm");
  std::string p = shm / "disk.raw";
  write_file(p, 1 << 20);
  EXPECT_NO_THROW(inspect_image(parse_image_spec(p + ",cache=writeback")));
  EXPECT_NO_THROW(inspect_image(parse_image_spec(p + ",cache=writethrough")));
  if (o_direct_refused(shm.path())) {
    std::string msg = error_of([&] { inspect_image(parse_image_spec(p + ",cache=none")); });
    EXPECT_NE(msg.find("cache=none needs O_DIRECT"), std::string::npos) << msg;
  } else {
    EXPECT_NO_THROW(inspect_image(parse_image_spec(p + ",cache=none")));
  }
}

TEST_F(ImageCheckTest, CacheNoneOnAFileSystemWithODirect) {
  if (o_direct_refused(dir_.path())) GTEST_SKIP() << dir_.path() << " refuses O_DIRECT";
  EXPECT_NO_THROW(accepted(raw("d.raw") + ",cache=none"));
}

TEST(LexicallyAbsolute, NormalisesWithoutFollowingSymlinks) {
  EXPECT_EQ(lexically_absolute("/dev/disk/by-id/x"), "/dev/disk/by-id/x");
  EXPECT_EQ(lexically_absolute("/dev//disk/./by-id/../by-id/x/"), "/dev/disk/by-id/x");
  EXPECT_EQ(lexically_absolute("/dev/disk/by-id/../../sda"), "/dev/sda");
  EXPECT_EQ(lexically_absolute("/../.."), "/");
  char cwd[PATH_MAX];
  ASSERT_TRUE(::getcwd(cwd, sizeof cwd));
  EXPECT_EQ(lexically_absolute("a/./b"), std::string(cwd == std::string("/") ? "" : cwd) + "/a/b");
}

TEST(IsStableDeviceName, OnlyNamesUnderTheStableDirectories) {
  for (const char* yes : {"/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "/dev/disk/by-uuid/1234",
                          "/dev/disk/by-partuuid/ab-01", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
                          "/dev/disk/by-label/data", "/dev/disk/by-partlabel/root",
                          "/dev/zvol/pool/vm1", "/dev/mapper/vg-lv"})
    EXPECT_TRUE(is_stable_device_name(yes)) << yes;
  for (const char* no : {"/dev/sda", "/dev/loop0", "/dev/zd0", "/dev/dm-3", "/dev/disk/by-id",
                         "/dev/disk/by-id/", "/dev/disk/by-idx/a", "/dev/mapperx/a",
                         "/dev/disk/by-diskseq/3", "/tmp/dev/disk/by-id/a", "/dev/vg/lv"})
    EXPECT_FALSE(is_stable_device_name(no)) << no;
}

TEST_F(ImageCheckTest, FilesAreKnownByTheirCanonicalPathEvenThroughALink) {
  const std::string img = raw("a.img");
  ASSERT_EQ(::symlink(img.c_str(), (dir_ / "link").c_str()), 0);
  EXPECT_EQ(accepted(dir_ / "link").identity_name, img);
}

// A fake /sys/dev/block/M:m: a disk dir with a queue, and a partition dir inside it.
class DiscardSysfsTest : public ::testing::Test {
 protected:
  void disk(const std::string& max_discard) {
    ::mkdir((dir_ / "queue").c_str(), 0755);
    write_text(dir_ / "queue/discard_max_bytes", max_discard + "\n");
  }
  std::string partition() {
    ::mkdir((dir_ / "sda1").c_str(), 0755);
    write_text(dir_ / "sda1/partition", "1\n");
    return dir_ / "sda1";
  }
  static void write_text(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  TempDir dir_;
};

TEST_F(DiscardSysfsTest, DiskAnswersForItself) {
  disk("4294966784");
  EXPECT_TRUE(block_device_discards(dir_.path()));
}

TEST_F(DiscardSysfsTest, DiskWithoutDiscard) {
  disk("0");
  EXPECT_FALSE(block_device_discards(dir_.path()));
  EXPECT_FALSE(block_device_discards(dir_ / "missing"));
}

TEST_F(DiscardSysfsTest, PartitionUsesItsDisksQueue) {
  disk("4294966784");
  EXPECT_TRUE(block_device_discards(partition()));
}

TEST_F(DiscardSysfsTest, PartitionOfADiskWithoutDiscard) {
  disk("0");
  EXPECT_FALSE(block_device_discards(partition()));
}

TEST_F(ImageCheckTest, CheckingNeverChangesTheImage) {
  std::string p = raw("same.raw", 4096);
  struct stat before, after;
  ASSERT_EQ(::stat(p.c_str(), &before), 0);
  accepted(p);
  ASSERT_EQ(::stat(p.c_str(), &after), 0);
  EXPECT_EQ(before.st_size, after.st_size);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

TEST(ImageIdentity, RecordsDeviceAndInodeOfTheCheckedFile) {
  TempDir dir;
  write_file(dir / "a.img", 4096);
  struct stat st;
  ASSERT_EQ(::stat((dir / "a.img").c_str(), &st), 0);
  const std::string want = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  EXPECT_EQ(inspect_image(parse_image_spec(dir / "a.img")).file_id, want);
  EXPECT_EQ(file_identity(dir / "a.img"), want);
  EXPECT_EQ(file_identity(dir / "missing"), "");
  ASSERT_EQ(::symlink((dir / "a.img").c_str(), (dir / "l").c_str()), 0);
  EXPECT_EQ(file_identity(dir / "l"), want);  // as the kernel's open, symlinks are followed
}

}  // namespace
}  // namespace qemu_lio
