#include "qemu_lio/config_file.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

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
  EXPECT_EQ(c.mode, std::nullopt);
  EXPECT_TRUE(c.allow.empty());
}

TEST(ConfigFile, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of<UsageError>([] { parse_config("mode = exec\ncolour = blue\n", "q.conf"); }),
            "q.conf:2: unknown key 'colour' (known: qemu, mode, allow, hotplug_ports, worker_per_virtqueue)");
  EXPECT_NE(error_of<UsageError>([] { parse_config("mode = fast\n", "q.conf"); }).find("q.conf:1"),
            std::string::npos);
  EXPECT_NE(error_of<UsageError>([] { parse_config("qemu = relative/qemu\n", "q.conf"); }).find("absolute"),
            std::string::npos);
  EXPECT_NE(error_of<UsageError>([] { parse_config("just words\n", "q.conf"); }).find("key = value"),
            std::string::npos);
}

TEST(ConfigFile, WorkerPerVirtqueueIsAutoOnOrOff) {
  EXPECT_EQ(parse_config("", "x").worker_per_virtqueue, WorkerSetting::kAuto);
  EXPECT_EQ(parse_config("worker_per_virtqueue = on\n", "x").worker_per_virtqueue, WorkerSetting::kOn);
  EXPECT_EQ(parse_config("worker_per_virtqueue = off\n", "x").worker_per_virtqueue, WorkerSetting::kOff);
  EXPECT_EQ(parse_config("worker_per_virtqueue=auto\n", "x").worker_per_virtqueue, WorkerSetting::kAuto);
  EXPECT_EQ(error_of<UsageError>([] { parse_config("worker_per_virtqueue = yes\n", "q.conf"); }),
            "q.conf:1: worker_per_virtqueue must be auto, on or off, not 'yes'");
}

// Sets QEMU_LIO_CONFIG for one test.
class ConfigEnv {
 public:
  explicit ConfigEnv(const std::string& path) { ::setenv("QEMU_LIO_CONFIG", path.c_str(), 1); }
  ~ConfigEnv() { ::unsetenv("QEMU_LIO_CONFIG"); }
};

TEST(LoadConfig, MissingFileMeansDefaults) {
  TempDir dir;
  ConfigEnv env(dir / "none.conf");
  Config c = load_config();
  EXPECT_TRUE(c.allow.empty());
  EXPECT_EQ(c.source, "");
}

TEST(LoadConfig, ReadsTheFileTheEnvironmentNames) {
  TempDir dir;
  std::ofstream(dir / "q.conf") << "allow = /persist\n";
  ConfigEnv env(dir / "q.conf");
  Config c = load_config();
  EXPECT_EQ(c.allow, std::vector<std::string>{"/persist"});
  EXPECT_EQ(c.source, dir / "q.conf");
}

// A config that exists but cannot be read must not silently drop its allow = rules.
TEST(LoadConfig, DirectoryIsAUsageError) {
  TempDir dir;
  ConfigEnv env(dir.path());
  EXPECT_EQ(usage_error_of([] { load_config(); }, "a directory taken as no config"),
            dir.path() + ": cannot read: Is a directory");
}

TEST(LoadConfig, UnreadableFileIsAUsageError) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  std::ofstream(dir / "q.conf") << "allow = /persist\n";
  ::chmod((dir / "q.conf").c_str(), 0);
  ConfigEnv env(dir / "q.conf");
  const std::string want = dir / "q.conf" + ": cannot read: Permission denied";
  // Root reads any file: the check runs in a child that has given up root (the tests run
  // as root in CI), and reports through its exit status.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    try {
      load_config();
    } catch (const UsageError& e) {
      ::_exit(e.what() == want ? 0 : 1);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(4);  // no error at all: the policy would silently vanish
  }
  int status = 0;
  ASSERT_EQ(child, ::waitpid(child, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status)) << "1 wrong message, 2 wrong error type, 3 cannot drop root, 4 no error";
}

}  // namespace
}  // namespace qemu_lio
