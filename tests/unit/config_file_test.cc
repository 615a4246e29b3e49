#include "qemu_lio/config_file.h"

#include "test_support.h"

namespace qemu_lio {
namespace {

TEST(ConfigFile, ParsesKeysCommentsAndRepeatedAllow) {
  Config c = parse_config("# host settings\nqemu = /usr/bin/qemu-system-x86_64\n\nmode = exec  # libvirt\n"
                          "allow = /persist/\nallow=/var/lib/images\n",
                          "test.conf");
  ASSERT_TRUE(c.qemu);
  EXPECT_EQ(*c.qemu, "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(c.mode, LaunchMode::kExec);
  EXPECT_EQ(c.allow, (std::vector<std::string>{"/persist", "/var/lib/images"}));
}

TEST(ConfigFile, DefaultsWhenEmpty) {
  Config c = parse_config("", "x");
  EXPECT_FALSE(c.qemu);
  EXPECT_EQ(c.mode, LaunchMode::kSupervise);
  EXPECT_TRUE(c.allow.empty());
}

TEST(ConfigFile, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of<UsageError>([] { parse_config("mode = exec\ncolour = blue\n", "q.conf"); }),
            "q.conf:2: unknown key 'colour' (known: qemu, mode, allow)");
  EXPECT_NE(error_of<UsageError>([] { parse_config("mode = fast\n", "q.conf"); }).find("q.conf:1"),
            std::string::npos);
  EXPECT_NE(error_of<UsageError>([] { parse_config("qemu = relative/qemu\n", "q.conf"); }).find("absolute"),
            std::string::npos);
  EXPECT_NE(error_of<UsageError>([] { parse_config("just words\n", "q.conf"); }).find("key = value"),
            std::string::npos);
}

}  // namespace
}  // namespace qemu_lio
