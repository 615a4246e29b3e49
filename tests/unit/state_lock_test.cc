// The state directory holds the journals gc runs as root and the lock that decides who may
// export an image: nobody but root (or the user running qemu-lio) may be able to write it.

#include "qemu_lio/state_lock.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "qemu_lio/journal.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

TEST(StateDir, MadeWhenMissingWithMode0700) {
  TempDir dir;
  ensure_state_dir(dir / "s");
  struct stat st;
  ASSERT_EQ(::lstat((dir / "s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  StateLock lock(dir / "s");  // and usable
}

TEST(StateDir, SymlinkIsRefused) {
  TempDir dir;
  ::mkdir((dir / "real").c_str(), 0700);
  ASSERT_EQ(::symlink((dir / "real").c_str(), (dir / "s").c_str()), 0);
  EXPECT_EQ(error_of([&] { ensure_state_dir(dir / "s"); }),
            dir / "s" + ": state directory is a symlink; use a real directory");
  EXPECT_NE(error_of([&] { StateLock lock(dir / "s"); }).find("symlink"), std::string::npos);
}

TEST(StateDir, GroupOrOtherWritableIsRefused) {
  TempDir dir;
  for (mode_t mode : {0770, 0703, 01777}) {
    std::string s = dir / ("s" + std::to_string(mode));
    ASSERT_EQ(::mkdir(s.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(s.c_str(), mode), 0);
    std::string msg = error_of([&] { ensure_state_dir(s); });
    EXPECT_EQ(msg.rfind(s + ": state directory is writable by ", 0), 0u) << msg;
    // A journal cannot be written there either.
    EXPECT_NE(error_of([&] { JournalWriter j(s, "vm", ProcessId{1, 1}); }).find("writable"),
              std::string::npos);
  }
}

TEST(StateDir, NotADirectoryIsRefused) {
  TempDir dir;
  std::ofstream(dir / "f") << "";
  EXPECT_EQ(error_of([&] { ensure_state_dir(dir / "f"); }),
            dir / "f" + ": state directory is not a directory");
}

TEST(StateDir, OwnedBySomeoneElseIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  TempDir dir;
  std::string s = dir / "s";
  ASSERT_EQ(::mkdir(s.c_str(), 0700), 0);
  ASSERT_EQ(::chown(s.c_str(), 1000, 1000), 0);
  EXPECT_EQ(error_of([&] { ensure_state_dir(s); }),
            s + ": state directory is owned by uid 1000, not by root or uid 0");
}

TEST(StateLock, LockFileThatIsASymlinkIsNotFollowed) {
  TempDir dir;
  std::string s = dir / "s";
  ensure_state_dir(s);
  ASSERT_EQ(::symlink((dir / "elsewhere").c_str(), (s + "/lock").c_str()), 0);
  std::string msg = error_of([&] { StateLock lock(s); });
  EXPECT_EQ(msg.rfind(s + "/lock: cannot open lock: ", 0), 0u) << msg;
  EXPECT_NE(::access((dir / "elsewhere").c_str(), F_OK), 0);  // nothing was created there
}

TEST(Journal, JournalPathThatIsASymlinkIsNotFollowed) {
  TempDir dir;
  std::string s = dir / "s";
  ensure_state_dir(s);
  ASSERT_EQ(::symlink((dir / "elsewhere").c_str(), (s + "/vm.1.journal").c_str()), 0);
  EXPECT_NE(error_of([&] { JournalWriter j(s, "vm", ProcessId{1, 1}); }).find("cannot create journal"),
            std::string::npos);
  EXPECT_NE(::access((dir / "elsewhere").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace qemu_lio
