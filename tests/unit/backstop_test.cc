// The backstop's building blocks with real processes: finding QEMU's daemon through its
// -pidfile without believing a stale one, and waiting for a process to exit.

#include "qemu_lio/backstop.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>

#include "qemu_lio/journal.h"
#include "qemu_lio/process_identity.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A child that runs until killed; killed and reaped on destruction.
class Sleeper {
 public:
  Sleeper() {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) ::pause();
    }
    EXPECT_GT(pid_, 0);
  }
  ~Sleeper() { stop(); }
  pid_t pid() const { return pid_; }
  // Kills it and waits for it: afterwards it is gone.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

uint64_t our_start() { return identify_process(::getpid()).value().start_time; }

void write_pidfile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(FindDaemon, LiveDaemonStartedAfterUsIsFound) {
  TempDir dir;
  Sleeper daemon;
  write_pidfile(dir / "qemu.pid", std::to_string(daemon.pid()) + "\n");
  std::optional<ProcessId> found = find_daemon(dir / "qemu.pid", our_start());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, identify_process(daemon.pid()).value());
  // QEMU writes the pid without a newline too.
  write_pidfile(dir / "qemu.pid", std::to_string(daemon.pid()));
  EXPECT_TRUE(find_daemon(dir / "qemu.pid", our_start()).has_value());
}

TEST(FindDaemon, DeadDaemonIsNotFound) {
  TempDir dir;
  Sleeper daemon;
  const pid_t pid = daemon.pid();
  daemon.stop();
  write_pidfile(dir / "qemu.pid", std::to_string(pid) + "\n");
  EXPECT_FALSE(find_daemon(dir / "qemu.pid", our_start()).has_value());
}

TEST(FindDaemon, ZombieIsNotFound) {
  TempDir dir;
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Not reaped yet: a zombie holds no disks.
  siginfo_t info = {};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  write_pidfile(dir / "qemu.pid", std::to_string(child));
  EXPECT_FALSE(find_daemon(dir / "qemu.pid", 0).has_value());
  int status = 0;
  ::waitpid(child, &status, 0);
}

TEST(FindDaemon, GarbageOrMissingPidfileIsNotBelieved) {
  TempDir dir;
  for (const std::string text : {"", "abc\n", "-1\n", "0\n", " \n"}) {
    write_pidfile(dir / "qemu.pid", text);
    EXPECT_FALSE(find_daemon(dir / "qemu.pid", 0).has_value()) << "'" << text << "'";
  }
  EXPECT_FALSE(find_daemon(dir / "missing.pid", 0).has_value());
}

TEST(FindDaemon, ProcessOlderThanTheRunIsNotBelieved) {
  TempDir dir;
  Sleeper daemon;
  write_pidfile(dir / "qemu.pid", std::to_string(daemon.pid()));
  const uint64_t started = identify_process(daemon.pid()).value().start_time;
  EXPECT_TRUE(find_daemon(dir / "qemu.pid", started).has_value());  // no earlier is fine
  EXPECT_FALSE(find_daemon(dir / "qemu.pid", started + 1).has_value());
  // A stale pidfile naming an old process (here: init).
  write_pidfile(dir / "qemu.pid", "1\n");
  EXPECT_FALSE(find_daemon(dir / "qemu.pid", our_start()).has_value());
}

TEST(WaitUntilGone, ReturnsOnceTheProcessExits) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::usleep(200 * 1000);
    ::_exit(0);
  }
  const ProcessId id = identify_process(child).value();
  const auto start = steady_clock::now();
  wait_until_gone(id);
  const auto took = steady_clock::now() - start;
  EXPECT_FALSE(process_alive(id));  // a zombie now, not yet reaped
  EXPECT_GE(took, milliseconds(100));
  EXPECT_LT(took, milliseconds(3000));
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
}

TEST(WaitUntilGone, GoneAlreadyReturnsAtOnce) {
  Sleeper s;
  const ProcessId id = identify_process(s.pid()).value();
  s.stop();
  const auto start = steady_clock::now();
  wait_until_gone(id);
  EXPECT_LT(steady_clock::now() - start, milliseconds(500));
  // A live pid with another start time is another process: ours is gone.
  ProcessId recycled = identify_process(::getpid()).value();
  recycled.start_time += 1;
  const auto start2 = steady_clock::now();
  wait_until_gone(recycled);
  EXPECT_LT(steady_clock::now() - start2, milliseconds(500));
}

// The backstop of a run that tore down itself: it records itself, then ends with the
// wrapper (here a child that stands in for it) without touching anything.
TEST(SpawnBackstop, RecordsItselfAndEndsWithItsWrapper) {
  TempDir dir;
  TempDir configfs;
  Sleeper wrapper;
  const ProcessId wrapper_id = identify_process(wrapper.pid()).value();
  std::string file;
  {
    JournalWriter j(dir / "state", "vm", wrapper_id);
    file = j.path();
  }
  spawn_backstop(file, configfs.path(), wrapper_id);
  JournalContents c = read_journal(file);
  ASSERT_TRUE(c.backstop.has_value());
  const ProcessId backstop = *c.backstop;
  EXPECT_TRUE(process_alive(backstop));
  EXPECT_NE(backstop.pid, ::getpid());
  // The run ends cleanly: no journal; then its wrapper exits and the backstop follows.
  ::unlink(file.c_str());
  wrapper.stop();
  const auto start = steady_clock::now();
  while (process_alive(backstop) && steady_clock::now() - start < std::chrono::seconds(5))
    ::usleep(10 * 1000);
  EXPECT_FALSE(process_alive(backstop));
}

TEST(SpawnBackstop, MissingJournalFails) {
  TempDir dir;
  const std::string msg = error_of([&] {
    spawn_backstop(dir / "none.journal", dir.path(), identify_process(::getpid()).value());
  });
  EXPECT_NE(msg.find("backstop"), std::string::npos) << msg;
}

}  // namespace
}  // namespace qemu_lio
