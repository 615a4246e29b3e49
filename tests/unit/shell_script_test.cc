#include "qemu_lio/shell_script.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "qemu_lio/plan_builder.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

struct ShResult {
  int status = -1;     // exit status, -1 if it did not exit
  std::string output;  // stdout and stderr
};

// Runs `command` with /bin/sh -c, stdin from /dev/null.
ShResult sh(const std::string& command) {
  ShResult r;
  FILE* p = ::popen(("exec </dev/null 2>&1; " + command).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Every entry below `root`, as "d path", "f path = content" or "l path -> target".
std::string tree(const std::string& root) {
  std::vector<std::string> lines;
  namespace fs = std::filesystem;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = it->path().string().substr(root.size());
    if (it->is_symlink()) lines.push_back("l " + rel + " -> " + fs::read_symlink(it->path()).string());
    else if (it->is_directory()) lines.push_back("d " + rel);
    else lines.push_back("f " + rel + " = " + slurp(it->path()));
  }
  std::sort(lines.begin(), lines.end());
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

TEST(ShellQuote, SingleQuotesEverything) {
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("abc"), "'abc'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("$x `y` \"z\""), "'$x `y` \"z\"'");
}

TEST(ShellQuote, SurvivesARoundTripThroughSh) {
  for (const std::string& s : std::vector<std::string>{"plain", "two words", "it's", "''", "$HOME", "`id`", "a\\b",
                              "new\nline", "*?[]", "-n", "\"", "a;b|c&d>e<f", "~", "#x"}) {
    ShResult r = sh("printf '%s' " + shell_quote(s));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.output, s);
  }
}

TEST(ShellComment, EveryLineIsAComment) {
  EXPECT_EQ(shell_comment("plain"), "# plain\n");
  EXPECT_EQ(shell_comment("a\nb", "  "), "  # a\n  # b\n");
  EXPECT_EQ(shell_comment("a\n"), "# a\n# \n");
  EXPECT_EQ(shell_comment(""), "# \n");
  // Run as a script, none of it does anything, whatever it holds.
  TempDir dir;
  const std::string marker = dir / "pwned";
  spit(dir / "s.sh", shell_comment("x\ntouch " + marker + " #\r\ntouch " + marker + "\n\n"));
  ShResult r = sh("sh " + shell_quote(dir / "s.sh"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "");
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(DisplayQuote, PlainArgumentsAreShellQuoted) {
  EXPECT_EQ(display_quote("it's"), shell_quote("it's"));
  EXPECT_EQ(display_quote("-m"), "'-m'");
}

TEST(DisplayQuote, ControlCharactersStayOnOneLineAndRoundTripThroughBash) {
  EXPECT_EQ(display_quote("x\ntouch /tmp/pwned #"), "$'x\\ntouch /tmp/pwned #'");
  for (const std::string& s : std::vector<std::string>{"a\nb", "it's\n", "back\\slash\t", "cr\r",
                                                       std::string("nul\x01\x7f", 5), "\x1b[31m"}) {
    const std::string q = display_quote(s);
    EXPECT_EQ(q.find_first_of("\n\r"), std::string::npos) << q;
    ShResult r = sh("bash -c " + shell_quote("printf '%s' " + q));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.output, s) << q;
  }
}

// A plan of one disk written by hand, so that running its script against an ordinary
// directory works: every op kind, values that need quoting.
class ScriptRunTest : public ::testing::Test {
 protected:
  ScriptRunTest() {
    cfs_ = dir_ / "cfs";
    std::filesystem::create_directories(cfs_ + "/target/core/fileio_0");  // another tool's
    // configfs drops a directory's attributes with it; an ordinary directory needs help.
    shim_ = dir_ / "shim";
    std::filesystem::create_directories(shim_);
    spit(shim_ + "/rmdir",
         "#!/bin/sh\n"
         "for f in \"$1\"/* \"$1\"/.[!.]*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && rm -f -- \"$f\"; done\n"
         "exec /bin/rmdir -- \"$1\"\n");
    ::chmod((shim_ + "/rmdir").c_str(), 0755);

    DiskPlan d;
    d.info.canonical_path = image_;
    d.so_name = "vm-disk0";
    d.hba_var = "HBA0";
    d.plugin = "fileio";
    d.identity.wwn = "naa.5001405000000001";
    plan_.vm_name = "vm";
    plan_.disks.push_back(d);
    const std::string so = "target/core/$HBA0/vm-disk0";
    const std::string wwn = "target/vhost/naa.5001405000000001";
    auto op = [](Op::Kind k, std::string path, std::string value, std::string undo = "") {
      Op o;
      o.kind = k;
      o.path = std::move(path);
      o.value = std::move(value);
      o.undo_value = std::move(undo);
      o.why = "step";
      return o;
    };
    Op claim = op(Op::Kind::kClaimHba, "target/core", "fileio");
    claim.var = "HBA0";
    plan_.ops = {claim,
                 op(Op::Kind::kMkdir, so, ""),
                 op(Op::Kind::kWrite, so + "/udev_path", image_),
                 op(Op::Kind::kWrite, so + "/control", control_),
                 op(Op::Kind::kExpect, so + "/control", "x='y'"),
                 op(Op::Kind::kEnsureDir, "target/vhost", ""),
                 op(Op::Kind::kMkdir, wwn, ""),
                 op(Op::Kind::kWrite, wwn + "/nexus", "naa.6000000000000001", "NULL"),
                 op(Op::Kind::kSymlink, wwn + "/vm-disk0", so)};
  }

  std::string write_script() {
    const std::string path = dir_ / "dry-run.sh";
    spit(path, render_shell_script(plan_, cfs_, {"qemu-system-x86_64", "-m", "1G"}));
    return path;
  }
  ShResult run(const std::string& script, const std::string& arg) {
    return sh("PATH=" + shell_quote(shim_) + ":$PATH sh " + shell_quote(script) + " " + arg);
  }

  TempDir dir_;
  std::string cfs_, shim_;
  const std::string image_ = "/img/a b'c.raw";
  const std::string control_ = "fd_dev_name=/img/a b'c.raw,x='y' $HOME `id`";
  Plan plan_;
};

TEST_F(ScriptRunTest, UpProvisionsAndDownRemovesExactlyThat) {
  const std::string before = tree(cfs_);
  const std::string script = write_script();
  ShResult up = run(script, "up");
  ASSERT_EQ(up.status, 0) << up.output;
  // fileio_0 was taken: the claim loop moved on to fileio_1.
  const std::string so = cfs_ + "/target/core/fileio_1/vm-disk0";
  EXPECT_EQ(slurp(so + "/udev_path"), image_);
  EXPECT_EQ(slurp(so + "/control"), control_);  // no expansion, no word splitting
  EXPECT_EQ(slurp(cfs_ + "/target/vhost/naa.5001405000000001/nexus"), "naa.6000000000000001");
  EXPECT_EQ(std::filesystem::read_symlink(cfs_ + "/target/vhost/naa.5001405000000001/vm-disk0"),
            so);

  ShResult down = run(script, "down");
  ASSERT_EQ(down.status, 0) << down.output;
  EXPECT_FALSE(std::filesystem::exists(cfs_ + "/target/core/fileio_1"));
  EXPECT_FALSE(std::filesystem::exists(cfs_ + "/target/vhost/naa.5001405000000001"));
  EXPECT_TRUE(std::filesystem::exists(cfs_ + "/target/vhost"));  // shared: never removed
  std::filesystem::remove(cfs_ + "/target/vhost");
  EXPECT_EQ(tree(cfs_), before);
}

TEST_F(ScriptRunTest, UpIsTheDefaultAndDownIsIdempotent) {
  const std::string script = write_script();
  ASSERT_EQ(sh("sh " + shell_quote(script)).status, 0);
  EXPECT_TRUE(std::filesystem::exists(cfs_ + "/target/core/fileio_1/vm-disk0"));
  ASSERT_EQ(run(script, "down").status, 0);
  EXPECT_EQ(run(script, "down").status, 0);
  EXPECT_EQ(run(script, "sideways").status, 2);
}

TEST_F(ScriptRunTest, DownOnACleanTreeIsSilent) {
  // After a partial up or a targetctl clear, down has nothing to do and nothing to say:
  // clearing the nexus of a TPG that is gone is not an error worth printing.
  ShResult down = run(write_script(), "down");
  EXPECT_EQ(down.status, 0);
  EXPECT_EQ(down.output, "");
}

TEST_F(ScriptRunTest, SettingTheKernelIgnoredStopsTheScript) {
  plan_.ops[4].value = "fd_async_io=1";
  ShResult up = run(write_script(), "up");
  EXPECT_EQ(up.status, 1);
  EXPECT_NE(up.output.find("qemu-lio: error: " + cfs_ + "/target/core/fileio_1/vm-disk0/control: kernel "
                           "did not take the setting fd_async_io=1"),
            std::string::npos)
      << up.output;
  EXPECT_FALSE(std::filesystem::exists(cfs_ + "/target/vhost"));  // stopped right there
}

TEST_F(ScriptRunTest, NewlinesInAnyTextNeverLeaveTheirComment) {
  // A QEMU argument, a why text, a path: each with a newline followed by a command. Neither
  // up nor down may run it.
  const std::string marker = dir_ / "pwned";
  const std::string evil = "x\ntouch " + marker + " #";
  for (Op& op : plan_.ops) op.why = evil;
  plan_.vm_name = evil;
  plan_.disks[0].info.canonical_path = "/img/" + evil;
  const std::string script = dir_ / "dry-run.sh";
  spit(script, render_shell_script(plan_, cfs_, {"qemu-system-x86_64", "-append", evil,
                                                 "-name", "a\rtouch " + marker}));
  ShResult syntax = sh("sh -n " + shell_quote(script));
  EXPECT_EQ(syntax.status, 0) << syntax.output;
  ShResult down = run(script, "down");
  EXPECT_EQ(down.status, 0) << down.output;
  EXPECT_FALSE(std::filesystem::exists(marker)) << "down ran a command from a comment";
  ShResult up = run(script, "up");
  EXPECT_EQ(up.status, 0) << up.output;
  EXPECT_FALSE(std::filesystem::exists(marker)) << "up ran a command from a comment";
  EXPECT_EQ(run(script, "down").status, 0);
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST_F(ScriptRunTest, KernelRefusalMessageDoesNotExpandTheValue) {
  plan_.ops[4].value = "$(touch " + dir_ / "pwned" + ")";
  ShResult up = run(write_script(), "up");
  EXPECT_EQ(up.status, 1);
  EXPECT_NE(up.output.find("take the setting $(touch"), std::string::npos) << up.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "pwned"));
}

TEST(RenderNoDisks, IsValidShAndUpAndDownDoNothing) {
  TempDir dir;
  Plan empty;
  empty.vm_name = "vm";
  spit(dir / "s.sh", render_shell_script(empty, dir / "cfs", {"qemu-system-x86_64", "-m", "1G"}));
  ShResult syntax = sh("sh -n " + shell_quote(dir / "s.sh"));
  EXPECT_EQ(syntax.status, 0) << syntax.output;
  for (const char* arg : {"up", "down"}) {
    ShResult r = sh("sh " + shell_quote(dir / "s.sh") + " " + arg);
    EXPECT_EQ(r.status, 0) << arg << ": " << r.output;
    EXPECT_EQ(r.output, "") << arg;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "cfs"));
}

TEST_F(ScriptRunTest, ClaimWithoutLioFailsInsteadOfLooping) {
  std::filesystem::remove_all(cfs_ + "/target/core");
  ShResult up = run(write_script(), "up");
  EXPECT_EQ(up.status, 1);
  EXPECT_NE(up.output.find("qemu-lio: error: " + cfs_ + "/target/core/fileio_0: cannot create"),
            std::string::npos)
      << up.output;
}

// The script of a real plan: its shape, checked as text and by sh -n.
class RenderTest : public ::testing::Test {
 protected:
  RenderTest()
      : plan_(build_plan("vm", {checked_image("/img/a.raw,bootindex=1"),
                                checked_image("/img/c.raw,readonly=on"),
                                checked_image("/dev/vdb", 1 << 30, ImageKind::kBlockDevice)})),
        argv_({"qemu-system-x86_64", "-name", "it's", "-m", "1G"}) {
    argv_ = qemu_argv_for(plan_, argv_);
    script_ = render_shell_script(plan_, "/sys/kernel/config", argv_);
  }
  // Position of `needle` inside the body of function `fn` ("up" or "down"), at or after
  // `from` when that lies inside it.
  size_t in(const std::string& fn, const std::string& needle, size_t from = 0) {
    size_t start = script_.find(fn + "() {\n");
    size_t end = script_.find("\n}\n", start);
    size_t at = script_.find(needle, std::max(start, from));
    EXPECT_TRUE(start != std::string::npos && at != std::string::npos && at < end)
        << "'" << needle << "' not in " << fn << "()";
    return at;
  }

  Plan plan_;
  std::vector<std::string> argv_;
  std::string script_;
};

TEST_F(RenderTest, IsValidShWithUpAndDown) {
  TempDir dir;
  spit(dir / "s.sh", script_);
  ShResult r = sh("sh -n " + shell_quote(dir / "s.sh"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(script_.rfind("#!/bin/sh\n", 0), 0u);
  EXPECT_NE(script_.find("set -eu\n"), std::string::npos);
  EXPECT_NE(script_.find("CFS='/sys/kernel/config'\n"), std::string::npos);
  EXPECT_NE(script_.find("up() {\n"), std::string::npos);
  EXPECT_NE(script_.find("down() {\n"), std::string::npos);
  EXPECT_NE(script_.find("# qemu-lio dry run for VM 'vm': 3 disk(s).\n"), std::string::npos);
}

TEST_F(RenderTest, EndsWithTheQemuCommandLineAsAComment) {
  std::string last = script_.substr(script_.rfind("\n#", script_.size() - 2) + 1);
  std::string want = "#";
  for (const std::string& a : argv_) want += " " + shell_quote(a);
  EXPECT_EQ(last, want + "\n");
  EXPECT_NE(last.find("'it'\\''s'"), std::string::npos);
  EXPECT_NE(last.find("'-device' 'vhost-scsi-pci,wwpn=" + plan_.disks[0].identity.wwn),
            std::string::npos);
  EXPECT_NE(script_.find("# QEMU command line, run between up and down:\n"), std::string::npos);
}

TEST_F(RenderTest, UpHasEveryStepInPlanOrder) {
  size_t last = 0;
  for (const Op& op : plan_.ops) {
    size_t at = in("up", op.kind == Op::Kind::kClaimHba ? op.var + "=" + op.value + "_$n"
                                                        : "$CFS/" + op.path + "\"",
                   last);
    last = at;
  }
  EXPECT_NE(script_.find("printf '%s' '1' > \"$CFS/target/core/$HBA0/vm-disk0/enable\""),
            std::string::npos);
  EXPECT_NE(script_.find("# the image was checked to exist"), std::string::npos);  // op.why
}

TEST_F(RenderTest, DownUndoesInReverseAndFindsEachHba) {
  for (const DiskPlan& d : plan_.disks)
    in("down", d.hba_var + "=$(find_hba " + d.plugin + " " + d.so_name + " " +
                   shell_quote(d.info.canonical_path) + ")");
  const std::string tpg = "target/vhost/" + plan_.disks[1].identity.wwn + "/tpgt_1";
  const std::string acl = tpg + "/acls/" + plan_.disks[1].identity.nexus;
  // The order the kernel needs for a read-only disk's ACL.
  size_t acl_link = in("down", "rm \"$CFS/" + acl + "/lun_0/lun_0\"");
  size_t lun_link = in("down", "rm \"$CFS/" + tpg + "/lun/lun_0/vm-disk1-ro\"");
  size_t nexus = in("down", "printf '%s' 'NULL' > \"$CFS/" + tpg + "/nexus\"");
  size_t acl_dir = in("down", "rmdir \"$CFS/" + acl + "\"");
  size_t tpg_dir = in("down", "rmdir \"$CFS/" + tpg + "\"");
  size_t so_dir = in("down", "rmdir \"$CFS/target/core/$HBA1/vm-disk1-ro\"");
  size_t hba_dir = in("down", "rmdir \"$CFS/target/core/$HBA1\"");
  EXPECT_LT(acl_link, lun_link);
  EXPECT_LT(lun_link, nexus);
  EXPECT_LT(nexus, acl_dir);
  EXPECT_LT(acl_dir, tpg_dir);
  EXPECT_LT(tpg_dir, so_dir);
  EXPECT_LT(so_dir, hba_dir);
  EXPECT_EQ(script_.find("rmdir \"$CFS/target/vhost\""), std::string::npos);
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

// The dry run checks, right after enable, that the image path still names the file that was
// checked, as the run does: a swapped file stops the script with a qemu-lio error line.
TEST_F(ScriptRunTest, SwappedImageStopsTheScriptAfterEnable) {
  const std::string img = dir_ / "a'b.img", other = dir_ / "other.img";
  write_file(img, 4096);
  write_file(other, 4096);
  ImageSpec spec = parse_image_spec(img);
  const std::string id = inspect_image(spec).file_id;
  Op same;
  same.kind = Op::Kind::kExpectSameFile;
  same.path = img;
  same.value = id;
  same.why = "same file";
  plan_.ops.insert(plan_.ops.begin() + 4, same);
  const std::string script = write_script();
  EXPECT_NE(slurp(script).find("stat -L -c '%d:%i' '" + dir_.path() + "/a'\\''b.img'"), std::string::npos);
  ShResult up = run(script, "up");
  ASSERT_EQ(up.status, 0) << up.output;
  ASSERT_EQ(run(script, "down").status, 0);
  std::filesystem::remove(cfs_ + "/target/vhost");  // shared: down leaves it

  ASSERT_EQ(std::rename(other.c_str(), img.c_str()), 0);
  up = run(script, "up");
  EXPECT_EQ(up.status, 1);
  EXPECT_EQ(up.output, "qemu-lio: error: " + img + ": changed between the check and enable\n");
  EXPECT_FALSE(std::filesystem::exists(cfs_ + "/target/vhost"));  // stopped right there
}

}  // namespace
}  // namespace qemu_lio
