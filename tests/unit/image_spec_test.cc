#include "qemu_lio/image_spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace qemu_lio {
namespace {

using Parts = std::vector<std::string>;

// The UsageError message for a SPEC that must be refused (exit code 2).
std::string usage_error(const std::string& spec) {
  return usage_error_of([&] { parse_image_spec(spec); }, spec);
}

TEST(SplitQemuOpts, DoubleCommaIsALiteralComma) {
  EXPECT_EQ(split_qemu_opts("a"), Parts{"a"});
  EXPECT_EQ(split_qemu_opts(""), Parts{""});
  EXPECT_EQ(split_qemu_opts("a,b=1"), (Parts{"a", "b=1"}));
  EXPECT_EQ(split_qemu_opts("a,,b"), Parts{"a,b"});
  EXPECT_EQ(split_qemu_opts("a,,,,b,c=d"), (Parts{"a,,b", "c=d"}));
  EXPECT_EQ(split_qemu_opts("a,,,b"), (Parts{"a,", "b"}));  // as QEMU reads it
  EXPECT_EQ(split_qemu_opts("a,"), (Parts{"a", ""}));
  EXPECT_EQ(split_qemu_opts(",,"), Parts{","});
}

TEST(ParseImageSpec, PathAloneGivesTheDefaults) {
  ImageSpec s = parse_image_spec("/img/a.raw");
  EXPECT_EQ(s.path, "/img/a.raw");
  EXPECT_EQ(s.cache, CacheMode::kWriteback);
  EXPECT_EQ(s.block_size, 512u);
  EXPECT_TRUE(s.discard);
  EXPECT_FALSE(s.readonly);
  EXPECT_EQ(s.max_sectors, 16384);  // what Windows guests need
  EXPECT_FALSE(s.wwn || s.serial || s.bootindex || s.num_queues || s.id || s.bus || s.addr);
}

TEST(ParseImageSpec, EscapedCommaStaysInThePath) {
  EXPECT_EQ(parse_image_spec("a,,b.raw").path, "a,b.raw");
  ImageSpec s = parse_image_spec("/x/a,,b,,,,c.raw,cache=none");
  EXPECT_EQ(s.path, "/x/a,b,,c.raw");
  EXPECT_EQ(s.cache, CacheMode::kNone);
}

TEST(ParseImageSpec, EveryKey) {
  ImageSpec s = parse_image_spec(
      "disk.raw,wwn=naa.5001405ABCdef012,serial=ab-1_2.3:4,block-size=4096,cache=writethrough,"
      "discard=off,readonly=on,bootindex=2,num-queues=8,max-sectors=2048,id=d0,bus=pci.1,"
      "addr=0x5");
  EXPECT_EQ(s.path, "disk.raw");
  EXPECT_EQ(s.wwn, "naa.5001405ABCdef012");
  EXPECT_EQ(s.serial, "ab-1_2.3:4");
  EXPECT_EQ(s.block_size, 4096u);
  EXPECT_EQ(s.cache, CacheMode::kWritethrough);
  EXPECT_FALSE(s.discard);
  EXPECT_TRUE(s.readonly);
  EXPECT_EQ(s.bootindex, 2);
  EXPECT_EQ(s.num_queues, 8);
  EXPECT_EQ(s.max_sectors, 2048);
  EXPECT_EQ(s.id, "d0");
  EXPECT_EQ(s.bus, "pci.1");
  EXPECT_EQ(s.addr, "0x5");
}

TEST(ParseImageSpec, CacheModesAndOnOff) {
  EXPECT_EQ(parse_image_spec("a,cache=writeback").cache, CacheMode::kWriteback);
  EXPECT_EQ(parse_image_spec("a,cache=writethrough").cache, CacheMode::kWritethrough);
  EXPECT_EQ(parse_image_spec("a,cache=none").cache, CacheMode::kNone);
  EXPECT_TRUE(parse_image_spec("a,discard=off,discard=on").discard);  // the last one wins
  EXPECT_FALSE(parse_image_spec("a,readonly=off").readonly);
  for (CacheMode m : {CacheMode::kWriteback, CacheMode::kWritethrough, CacheMode::kNone})
    EXPECT_EQ(parse_image_spec(std::string("a,cache=") + to_string(m)).cache, m);
}

TEST(ParseImageSpec, BlockSizes) {
  for (unsigned bs : {512u, 1024u, 2048u, 4096u})
    EXPECT_EQ(parse_image_spec("a,block-size=" + std::to_string(bs)).block_size, bs);
  for (const char* bad : {"0", "256", "768", "8192", "0x200", "512k", "", "-512"})
    EXPECT_NE(usage_error(std::string("a,block-size=") + bad).find("block-size"),
              std::string::npos)
        << bad;
}

TEST(ParseImageSpec, IntegerRanges) {
  EXPECT_EQ(parse_image_spec("a,bootindex=0").bootindex, 0);
  EXPECT_EQ(parse_image_spec("a,num-queues=1").num_queues, 1);
  EXPECT_EQ(parse_image_spec("a,num-queues=128").num_queues, 128);
  EXPECT_EQ(parse_image_spec("a,max-sectors=65535").max_sectors, 65535);
  for (const char* bad : {"bootindex=-1", "bootindex=x", "num-queues=0", "num-queues=129",
                          "max-sectors=0", "max-sectors=65536", "bootindex=1 ",
                          "num-queues=99999999999999999999"})
    EXPECT_NE(usage_error(std::string("a,") + bad).find("not an integer"), std::string::npos)
        << bad;
}

TEST(ParseImageSpec, BadValuesNameTheKey) {
  EXPECT_NE(usage_error("a,cache=unsafe").find("image key cache"), std::string::npos);
  EXPECT_NE(usage_error("a,cache=directsync").find("writeback, writethrough or none"),
            std::string::npos);
  EXPECT_NE(usage_error("a,discard=yes").find("image key discard"), std::string::npos);
  EXPECT_NE(usage_error("a,readonly=1").find("on or off"), std::string::npos);
  EXPECT_NE(usage_error("a,wwn=naa.123").find("image key wwn"), std::string::npos);
  EXPECT_NE(usage_error("a,wwn=iqn.5001405abcdef012").find("wwn"), std::string::npos);
  EXPECT_NE(usage_error("a,wwn=naa.5001405abcdef01g").find("wwn"), std::string::npos);
  EXPECT_NE(usage_error("a,serial=").find("image key serial"), std::string::npos);
  EXPECT_NE(usage_error("a,serial=" + std::string(129, 'x')).find("serial"), std::string::npos);
  EXPECT_NE(usage_error("a,serial=a/b").find("serial"), std::string::npos);
  EXPECT_NE(usage_error("a,serial=a b").find("serial"), std::string::npos);
  EXPECT_NE(usage_error("a,id=x=y").find("image key id"), std::string::npos);
  EXPECT_NE(usage_error("a,bus=a,,b").find("image key bus"), std::string::npos);
  EXPECT_NE(usage_error("a,addr=").find("image key addr"), std::string::npos);
}

TEST(ParseImageSpec, FormatIsRawOrAnImageFormatOfQemu) {
  EXPECT_EQ("", parse_image_spec("/img/a.raw").format);
  EXPECT_EQ("raw", parse_image_spec("/img/a.raw,format=raw").format);
  EXPECT_EQ("qcow2", parse_image_spec("/img/a.qcow2,format=qcow2").format);
  EXPECT_EQ("vmdk", parse_image_spec("/img/a,format=vmdk").format);
  // Protocol drivers are not formats: named as one they would reach past the image.
  for (const char* bad : {"nbd", "file", "host_device", "", "QCOW2"})
    EXPECT_EQ(usage_error(std::string("/img/a,format=") + bad),
              std::string("image key format: '") + bad + "' is not raw or one of " + image_formats());
}

TEST(ParseImageSpec, FdSetsAreRefused) {
  EXPECT_EQ(usage_error("/dev/fdset/3"), "/dev/fdset/3: QEMU fd sets are not supported for "
                                         "vhost-scsi disks: LIO opens the image by path");
}

TEST(ParseImageSpec, UnknownKeyMessageNamesTheKey) {
  std::string msg = usage_error("/img/a.raw,size=1");
  EXPECT_NE(msg.find("unknown key 'size'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/img/a.raw"), std::string::npos) << msg;
  EXPECT_NE(msg.find("known: wwn"), std::string::npos) << msg;
}

TEST(ParseImageSpec, MalformedSpecs) {
  EXPECT_NE(usage_error("").find("no image path"), std::string::npos);
  EXPECT_NE(usage_error(",cache=none").find("no image path"), std::string::npos);
  EXPECT_NE(usage_error("a,cache").find("'cache' is not key=value"), std::string::npos);
  EXPECT_NE(usage_error("a,").find("is not key=value"), std::string::npos);
}

TEST(CheckToken, AcceptsPlainTokens) {
  for (const char* ok : {"d0", "pci.1", "0x5.0", "pcie-root-port_3", "a:b", "A"})
    EXPECT_NO_THROW(check_token("what", ok)) << ok;
  EXPECT_NO_THROW(check_token("what", std::string(128, 'a')));
}

TEST(CheckToken, RejectsWhatWouldInjectOrBreak) {
  for (const std::string& bad :
       {std::string(","), std::string("a,b"), std::string("a=b"), std::string("a b"),
        std::string("a\tb"), std::string("a\nb"), std::string("\"a\""), std::string("'a'"),
        std::string("a\\b"), std::string("$x"), std::string("`x`"), std::string("a/b"),
        std::string("\x01"), std::string("\x7f"), std::string("caf\xc3\xa9"), std::string(""),
        std::string(129, 'a')}) {
    std::string msg = error_of<UsageError>([&] { check_token("image key id", bad); });
    EXPECT_NE(msg.find("image key id"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of<UsageError>([&] { check_token("x", "a,b"); }).find("','"), std::string::npos);
}

TEST(IsValidNaa, SixteenHexDigits) {
  EXPECT_TRUE(is_valid_naa("naa.5001405abcdef012"));
  EXPECT_TRUE(is_valid_naa("naa.5001405ABCDEF012"));
  EXPECT_FALSE(is_valid_naa("naa.5001405abcdef01"));
  EXPECT_FALSE(is_valid_naa("naa.5001405abcdef0123"));
  EXPECT_FALSE(is_valid_naa("NAA.5001405abcdef012"));
  EXPECT_FALSE(is_valid_naa("naa:5001405abcdef012"));
  EXPECT_FALSE(is_valid_naa("naa.5001405abcdef01x"));
  EXPECT_FALSE(is_valid_naa(""));
}

}  // namespace
}  // namespace qemu_lio
