// A process is its pid plus its start time: a recycled pid, a reaped child and a zombie
// are all "not alive", and a comm full of spaces and parentheses does not confuse the
// parser of /proc/PID/stat.

#include "qemu_lio/process_identity.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace qemu_lio {
namespace {

// Field 3 of /proc/PID/stat, '?' if it cannot be read.
char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return '?';
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return '?';
  return line[close + 2];
}

// Waits up to 10 s for `pid` to show state `state`.
bool wait_for_state(pid_t pid, char state) {
  for (int i = 0; i < 1000; ++i) {
    if (proc_state(pid) == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(ProcessIdentity, IdentifiesItself) {
  auto self = identify_process(::getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->pid, ::getpid());
  EXPECT_GT(self->start_time, 0u);
  EXPECT_EQ(identify_process(::getpid()), self);  // stable
}

TEST(ProcessIdentity, SelfIsAlive) {
  auto self = identify_process(::getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(process_alive(*self));
}

TEST(ProcessIdentity, WrongStartTimeIsNotAlive) {
  auto self = identify_process(::getpid());
  ASSERT_TRUE(self);
  EXPECT_FALSE(process_alive(ProcessId{self->pid, self->start_time + 1}));
  EXPECT_FALSE(process_alive(ProcessId{self->pid, 0}));
}

TEST(ProcessIdentity, NonPositivePidIsNotAlive) {
  EXPECT_FALSE(process_alive(ProcessId{0, 0}));
  EXPECT_FALSE(process_alive(ProcessId{-1, 1}));
}

TEST(ProcessIdentity, ReapedChildIsGone) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(identify_process(child).has_value());
  EXPECT_FALSE(process_alive(ProcessId{child, 1}));
}

TEST(ProcessIdentity, ReapedChildWithItsRealStartTimeIsNotAlive) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    ::close(go[1]);
    (void)::read(go[0], &c, 1);  // exits once the parent has identified it
    ::_exit(0);
  }
  ::close(go[0]);
  auto id = identify_process(child);
  ::close(go[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(id.has_value());
  EXPECT_GT(id->start_time, 0u);
  EXPECT_FALSE(process_alive(*id));
}

TEST(ProcessIdentity, ZombieIsNotAlive) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    ::close(go[1]);
    (void)::read(go[0], &c, 1);
    ::_exit(0);
  }
  ::close(go[0]);
  auto id = identify_process(child);
  ASSERT_TRUE(id.has_value());
  EXPECT_TRUE(process_alive(*id));
  ::close(go[1]);  // the child exits; it stays a zombie until reaped
  const bool zombie = wait_for_state(child, 'Z');
  EXPECT_TRUE(zombie) << "state " << proc_state(child);
  if (zombie) {
    EXPECT_TRUE(identify_process(child).has_value());  // the pid is still taken
    EXPECT_FALSE(process_alive(*id));
  }
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(process_alive(*id));
}

TEST(ProcessIdentity, CommWithSpacesAndParenthesesIsParsed) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(go[1]);
    ::prctl(PR_SET_NAME, "a) b (c", 0, 0, 0);
    char c = 'r';
    (void)::write(ready[1], &c, 1);
    (void)::read(go[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  std::string comm;
  std::getline(std::ifstream("/proc/" + std::to_string(child) + "/comm"), comm);
  EXPECT_EQ(comm, "a) b (c");
  auto self = identify_process(::getpid());
  auto id = identify_process(child);
  // While the child still waits on the pipe: afterwards it may already be a zombie.
  const bool alive = id && process_alive(*id);
  ::close(go[1]);
  ::close(ready[0]);
  ASSERT_TRUE(self.has_value());
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->pid, child);
  // A misparse would read some other field (the state, a pid) as the start time.
  EXPECT_GE(id->start_time, self->start_time);
  EXPECT_TRUE(alive);
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
}

}  // namespace
}  // namespace qemu_lio
