#include "qemu_lio/cli.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace qemu_lio {
namespace {

using Args = std::vector<std::string>;

// The UsageError message for a command line that must be refused with exit code 2.
std::string usage_error(const Args& args) {
  return usage_error_of([&] { parse_command_line(args); });
}

TEST(Cli, RunKeywordIsOptional) {
  for (const Args& args : {Args{"--", "qemu-system-x86_64", "-m", "1G"},
                           Args{"run", "--", "qemu-system-x86_64", "-m", "1G"}}) {
    Command c = parse_command_line(args);
    EXPECT_EQ(c.kind, Command::Kind::kRun);
    EXPECT_EQ(c.run.qemu_argv, (Args{"qemu-system-x86_64", "-m", "1G"}));
  }
}

TEST(Cli, RunOptions) {
  Command c = parse_command_line({"run", "--image", "/a.raw", "--image=/b,,c.raw,cache=none",
                                  "--name", "vm1", "--exec", "--dry-run", "--", "qemu"});
  EXPECT_EQ(c.run.images, (Args{"/a.raw", "/b,,c.raw,cache=none"}));  // raw SPECs, in order
  EXPECT_EQ(c.run.name, "vm1");
  EXPECT_TRUE(c.run.exec_mode);
  EXPECT_TRUE(c.run.dry_run);
}

TEST(Cli, Defaults) {
  Command c = parse_command_line({"--", "qemu"});
  EXPECT_TRUE(c.run.images.empty());
  EXPECT_FALSE(c.run.name);
  EXPECT_FALSE(c.run.dry_run);
  EXPECT_FALSE(c.run.exec_mode);
  EXPECT_EQ(c.run.configfs, "/sys/kernel/config");
  EXPECT_EQ(c.run.state_dir, "/run/qemu-lio");
  EXPECT_EQ(c.run.verbosity, Verbosity::kNormal);
}

TEST(Cli, EverythingAfterTheDoubleDashIsQemus) {
  Command c = parse_command_line({"-v", "--", "qemu", "--image", "x", "-q", "--", "--help"});
  EXPECT_EQ(c.kind, Command::Kind::kRun);
  EXPECT_TRUE(c.run.images.empty());
  EXPECT_EQ(c.run.verbosity, Verbosity::kVerbose);
  EXPECT_EQ(c.run.qemu_argv, (Args{"qemu", "--image", "x", "-q", "--", "--help"}));
}

TEST(Cli, DoubleDashIsRequiredForRun) {
  EXPECT_NE(usage_error({"--image", "/a.raw"}).find("'--'"), std::string::npos);
  EXPECT_NE(usage_error({}).find("'--'"), std::string::npos);
  EXPECT_NE(usage_error({"run"}).find("'--'"), std::string::npos);
  EXPECT_NE(usage_error({"run", "--"}).find("no QEMU command"), std::string::npos);
}

TEST(Cli, UnknownOptionIsAUsageError) {
  std::string msg = usage_error({"--bogus", "--", "qemu"});
  EXPECT_NE(msg.find("bogus"), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("command line: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("see --help"), std::string::npos) << msg;
  usage_error({"-x", "--", "qemu"});
  usage_error({"--name", "--", "qemu"});    // --name needs its value before "--"
  usage_error({"gc", "--image", "/a.raw"});  // a run option
  usage_error({"list", "--exec"});
}

TEST(Cli, StrayArgumentIsAUsageError) {
  // Forgetting --image must not run the VM without its disk.
  usage_error({"/img/a.raw", "--", "qemu"});
  usage_error({"run", "--image", "/a.raw", "/b.raw", "--", "qemu"});
  usage_error({"gc", "now"});
  usage_error({"gc", "--", "x"});  // only run takes a QEMU command
}

TEST(Cli, VerboseAndQuiet) {
  EXPECT_EQ(parse_command_line({"-v", "--", "q"}).run.verbosity, Verbosity::kVerbose);
  EXPECT_EQ(parse_command_line({"--verbose", "--", "q"}).run.verbosity, Verbosity::kVerbose);
  EXPECT_EQ(parse_command_line({"-q", "--", "q"}).run.verbosity, Verbosity::kQuiet);
  EXPECT_EQ(parse_command_line({"gc", "--quiet"}).run.verbosity, Verbosity::kQuiet);
  EXPECT_NE(usage_error({"-v", "-q", "--", "q"}).find("exclude each other"), std::string::npos);
  usage_error({"-vq", "--", "q"});
}

TEST(Cli, HelpAndVersionNeedNoQemu) {
  for (const Args& args : {Args{"--help"}, Args{"-h"}, Args{"gc", "--help"},
                           Args{"--image", "x", "--help"}, Args{"-v", "-q", "--help"}})
    EXPECT_EQ(parse_command_line(args).kind, Command::Kind::kHelp);
  EXPECT_EQ(parse_command_line({"--version"}).kind, Command::Kind::kVersion);
  EXPECT_EQ(parse_command_line({"check", "--version"}).kind, Command::Kind::kVersion);
}

TEST(Cli, HelpTextDescribesEveryCommandAndOption) {
  const std::string h = help_text();
  EXPECT_EQ(h.rfind("Usage: qemu-lio [run] [OPTIONS] -- QEMU [QEMU-ARGS...]\n", 0), 0u);
  for (const char* s : {"qemu-lio gc", "qemu-lio list", "qemu-lio check", "--image", "--name",
                        "--exec", "--dry-run", "--json", "--qemu", "--configfs", "--state-dir",
                        "--verbose", "--quiet", "--help", "--version", "Exit status", "128+N"})
    EXPECT_NE(h.find(s), std::string::npos) << s;
}

TEST(Cli, Subcommands) {
  Command gc = parse_command_line({"gc", "--dry-run", "--state-dir", "/var/run/x"});
  EXPECT_EQ(gc.kind, Command::Kind::kGc);
  EXPECT_TRUE(gc.run.dry_run);
  EXPECT_EQ(gc.run.state_dir, "/var/run/x");
  Command list = parse_command_line({"list", "--json"});
  EXPECT_EQ(list.kind, Command::Kind::kList);
  EXPECT_TRUE(list.run.json);
  Command check = parse_command_line({"check", "--qemu", "/usr/bin/qemu-system-aarch64"});
  EXPECT_EQ(check.kind, Command::Kind::kCheck);
  EXPECT_EQ(check.run.qemu, "/usr/bin/qemu-system-aarch64");
  EXPECT_EQ(parse_command_line({"check"}).run.qemu, "qemu-system-x86_64");
}

TEST(Cli, SubcommandMayFollowOptions) {
  Command gc = parse_command_line({"--state-dir", "/var/run/x", "-q", "gc", "--dry-run"});
  EXPECT_EQ(gc.kind, Command::Kind::kGc);
  EXPECT_EQ(gc.run.state_dir, "/var/run/x");
  EXPECT_TRUE(gc.run.dry_run);
  EXPECT_EQ(gc.run.verbosity, Verbosity::kQuiet);
  EXPECT_EQ(parse_command_line({"--configfs", "/cfs", "list"}).kind, Command::Kind::kList);
  // An option's value is never taken for a subcommand.
  Command run = parse_command_line({"--image", "gc", "--name", "list", "--", "qemu"});
  EXPECT_EQ(run.kind, Command::Kind::kRun);
  EXPECT_EQ(run.run.images, Args{"gc"});
  EXPECT_EQ(run.run.name, "list");
  // A subcommand word after "--" is QEMU's.
  EXPECT_EQ(parse_command_line({"--", "gc"}).run.qemu_argv, Args{"gc"});
}

TEST(Cli, DirectoriesMustBeAbsolute) {
  EXPECT_NE(usage_error({"--configfs", "sys/kernel/config", "--", "q"}).find("--configfs"),
            std::string::npos);
  EXPECT_NE(usage_error({"--configfs", "", "--", "q"}).find("must be an absolute path"),
            std::string::npos);
  EXPECT_NE(usage_error({"gc", "--state-dir", "run/qemu-lio"}).find("--state-dir"),
            std::string::npos);
  Command c = parse_command_line({"--configfs", "/tmp/cfs//", "--state-dir=/tmp/st/", "--", "q"});
  EXPECT_EQ(c.run.configfs, "/tmp/cfs");
  EXPECT_EQ(c.run.state_dir, "/tmp/st");
  EXPECT_EQ(parse_command_line({"--configfs", "/", "--", "q"}).run.configfs, "/");
}

}  // namespace
}  // namespace qemu_lio
