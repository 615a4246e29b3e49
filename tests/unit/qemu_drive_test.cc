#include "qemu_lio/qemu_drive.h"

#include <gtest/gtest.h>

#include <string>

#include "qemu_lio/error.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

ImageSpec vhost(const std::string& extra) {
  std::optional<ImageSpec> img = drive_to_image("file=/img/a.raw,if=vhost-scsi" + extra);
  EXPECT_TRUE(img.has_value());
  return img.value_or(ImageSpec{});
}

std::string usage_error(const std::string& opts) {
  return usage_error_of([&] { drive_to_image(opts); }, opts);
}

TEST(DriveToImage, OtherInterfacesAreLeftAlone) {
  EXPECT_FALSE(drive_to_image("file=a.qcow2,if=virtio,format=qcow2"));
  EXPECT_FALSE(drive_to_image("file=a.img"));  // QEMU's default interface
  EXPECT_FALSE(drive_to_image("file=a.img,if=none,index=3,bogus"));
  EXPECT_FALSE(drive_to_image("file=a.img,if=vhost-scsi,if=virtio"));  // the last one wins
}

TEST(DriveToImage, Defaults) {
  ImageSpec s = vhost("");
  EXPECT_EQ(s.path, "/img/a.raw");
  EXPECT_EQ(s.cache, CacheMode::kWriteback);
  EXPECT_FALSE(s.readonly);
  EXPECT_FALSE(s.discard);  // QEMU's default is discard=ignore
  EXPECT_FALSE(s.serial);
  EXPECT_FALSE(s.id);
  EXPECT_FALSE(s.bootindex);
  EXPECT_EQ(s.block_size, 512u);
  EXPECT_TRUE(drive_to_image("if=vhost-scsi,file=/img/a.raw,format=raw,media=disk,"));
}

TEST(DriveToImage, EscapedCommasInFile) {
  EXPECT_EQ(drive_to_image("file=/img/a.raw,,x,if=vhost-scsi")->path, "/img/a.raw,x");
  ImageSpec s = *drive_to_image("file=/img/a,,b,,,,c.raw,if=vhost-scsi,serial=s1");
  EXPECT_EQ(s.path, "/img/a,b,,c.raw");
  EXPECT_EQ(s.serial, "s1");
}

TEST(DriveCache, QemuCacheModesMapOntoLio) {
  EXPECT_EQ(vhost(",cache=writeback").cache, CacheMode::kWriteback);
  EXPECT_EQ(vhost(",cache=writethrough").cache, CacheMode::kWritethrough);
  EXPECT_EQ(vhost(",cache=none").cache, CacheMode::kNone);
  EXPECT_EQ(vhost(",cache=directsync").cache, CacheMode::kWritethrough);
  EXPECT_EQ(vhost(",cache=unsafe").cache, CacheMode::kWriteback);
  EXPECT_NE(usage_error("file=a,if=vhost-scsi,cache=fast").find("cache 'fast'"), std::string::npos);
}

TEST(DriveCache, AioKeepsOrRefinesTheCacheMode) {
  EXPECT_EQ(vhost(",cache=none,aio=native").cache, CacheMode::kNone);
  EXPECT_EQ(vhost(",aio=io_uring,cache=none").cache, CacheMode::kNone);
  EXPECT_EQ(vhost(",cache=none,aio=threads").cache, CacheMode::kNone);
  EXPECT_EQ(vhost(",aio=threads").cache, CacheMode::kWriteback);
  EXPECT_EQ(vhost(",cache=writeback,aio=io_uring").cache, CacheMode::kWriteback);
  EXPECT_EQ(vhost(",cache=writethrough,aio=native").cache, CacheMode::kWritethrough);
  EXPECT_EQ(vhost(",cache=directsync,aio=native").cache, CacheMode::kWritethrough);
  EXPECT_EQ(vhost(",cache=unsafe,aio=io_uring").cache, CacheMode::kWriteback);
  EXPECT_NE(usage_error("file=a,if=vhost-scsi,aio=posix").find("aio 'posix'"), std::string::npos);
}

TEST(DriveFormat, ImageFormatsPassToTheSpecAndOthersAreRefused) {
  EXPECT_EQ("qcow2", vhost(",format=qcow2").format);
  EXPECT_EQ("vmdk", vhost(",format=vmdk").format);
  std::string e = usage_error("file=/vm/disk.qcow2,if=vhost-scsi,format=nbd");
  EXPECT_EQ(e, std::string("-drive file=/vm/disk.qcow2: format 'nbd' is not raw or one of ") + image_formats());
}

TEST(DriveFormat, ExplicitRawTurnsOffHeaderSniffing) {
  EXPECT_EQ("raw", vhost(",format=raw").format);
  EXPECT_EQ("", vhost("").format);
  EXPECT_EQ("raw", vhost(",format=raw,cache=none").format);
}

TEST(DriveKeys, BusAndAddrPlaceTheVhostDevice) {
  // libvirt and other launchers address every device; if=vhost-scsi refused them before.
  auto img = drive_to_image("file=a.raw,if=vhost-scsi,bus=pcie.0,addr=0x1f.0x2");
  ASSERT_TRUE(img);
  EXPECT_EQ(img->bus, "pcie.0");
  EXPECT_EQ(img->addr, "0x1f.0x2");
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,addr=0x5 x").find("addr"), std::string::npos);
}

TEST(DriveFile, FdSetsAreRefusedInOneLine) {
  EXPECT_EQ(usage_error("file=/dev/fdset/3,if=vhost-scsi"),
            "/dev/fdset/3: QEMU fd sets are not supported for vhost-scsi disks: LIO opens the "
            "image by path");
  // Only vhost drives are ours: an fd set on another drive is QEMU's business.
  EXPECT_FALSE(drive_to_image("file=/dev/fdset/3,if=virtio"));
}

TEST(DriveKeys, UnsupportedKeysAreNamed) {
  for (const char* key : {"index=1", "snapshot=on", "copy-on-read=on", "werror=stop",
                          "cache.direct=on", "node-name=n"}) {
    std::string k(key);
    std::string e = usage_error("file=a.raw,if=vhost-scsi," + k);
    EXPECT_NE(e.find("-drive key '" + k.substr(0, k.find('=')) + "' is not supported with if=vhost-scsi"),
              std::string::npos)
        << e;
  }
  // Spelling out QEMU's defaults is harmless.
  EXPECT_TRUE(drive_to_image("file=a.raw,if=vhost-scsi,snapshot=off,copy-on-read=no"));
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,media=cdrom").find("media 'cdrom'"), std::string::npos);
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,readonly").find("'readonly' is not key=value"),
            std::string::npos);
}

TEST(DriveKeys, FileIsRequired) {
  EXPECT_NE(usage_error("if=vhost-scsi,cache=none").find("has no file="), std::string::npos);
  EXPECT_NE(usage_error("file=,if=vhost-scsi").find("has no file="), std::string::npos);
}

TEST(DriveKeys, ReadonlyTakesQemuBooleans) {
  for (const char* on : {"on", "yes", "true", "y"}) EXPECT_TRUE(vhost(std::string(",readonly=") + on).readonly);
  for (const char* off : {"off", "no", "false", "n"})
    EXPECT_FALSE(vhost(std::string(",readonly=") + off).readonly);
  EXPECT_NE(usage_error("file=a,if=vhost-scsi,readonly=maybe").find("readonly 'maybe'"), std::string::npos);
}

TEST(DriveKeys, Discard) {
  EXPECT_TRUE(vhost(",discard=unmap").discard);
  EXPECT_TRUE(vhost(",discard=on").discard);
  EXPECT_FALSE(vhost(",discard=ignore").discard);
  EXPECT_FALSE(vhost(",discard=off").discard);
  EXPECT_NE(usage_error("file=a,if=vhost-scsi,discard=yes").find("discard 'yes'"), std::string::npos);
}

TEST(DriveKeys, SerialIdBootindexFollowImageSpecRules) {
  ImageSpec s = vhost(",serial=EVE-disk_1.0:a,id=disk0,bootindex=2");
  EXPECT_EQ(s.serial, "EVE-disk_1.0:a");
  EXPECT_EQ(s.id, "disk0");
  EXPECT_EQ(s.bootindex, 2);

  std::string e = usage_error("file=a.raw,if=vhost-scsi,serial=a b");
  EXPECT_NE(e.find("-drive file=a.raw: key serial"), std::string::npos) << e;
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,id=a/b").find("key id"), std::string::npos);
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,id=a,,b").find("key id"), std::string::npos);
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,bootindex=-1").find("key bootindex"), std::string::npos);
  EXPECT_NE(usage_error("file=a.raw,if=vhost-scsi,bootindex=x").find("key bootindex"), std::string::npos);
}

TEST(DriveOptionsToImage, SharedWithReadconfig) {
  DriveOptions opts = {{"file", "/x/a b.img"}, {"if", "vhost-scsi"}, {"cache", "none"}, {"aio", "native"}};
  std::optional<ImageSpec> s = drive_options_to_image("[drive \"d\"]", opts);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->path, "/x/a b.img");
  EXPECT_EQ(s->cache, CacheMode::kNone);
  EXPECT_FALSE(drive_options_to_image("x", {{"file", "a"}, {"if", "none"}}));
  EXPECT_EQ(usage_error_of([] {
              drive_options_to_image("[drive \"d\"]", {{"file", "a"}, {"if", "vhost-scsi"}, {"unit", "0"}});
            }),
            "[drive \"d\"]: -drive key 'unit' is not supported with if=vhost-scsi");
}

}  // namespace
}  // namespace qemu_lio
