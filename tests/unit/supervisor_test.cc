// The supervisor with real children: exit codes as a shell reports them, exec failures as
// 126/127, the hook that runs between fork and exec, signal forwarding, and the signal
// state a run needs.

#include "qemu_lio/supervisor.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "qemu_lio/error.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

TEST(DecodeWaitStatus, ExitCodeAndSignal) {
  ChildStatus exited = decode_wait_status(7 << 8);  // W_EXITCODE(7, 0)
  EXPECT_FALSE(exited.signaled);
  EXPECT_EQ(exited.value, 7);
  EXPECT_EQ(exited.exit_code(), 7);

  ChildStatus killed = decode_wait_status(SIGKILL);  // W_EXITCODE(0, SIGKILL)
  EXPECT_TRUE(killed.signaled);
  EXPECT_EQ(killed.value, SIGKILL);
  EXPECT_EQ(killed.exit_code(), 128 + SIGKILL);

  EXPECT_EQ(decode_wait_status(0).exit_code(), 0);
}

TEST(DecodeWaitStatus, StatusesOfRealChildren) {
  pid_t a = ::fork();
  ASSERT_GE(a, 0);
  if (a == 0) ::_exit(42);
  int status = 0;
  ASSERT_EQ(::waitpid(a, &status, 0), a);
  EXPECT_EQ(decode_wait_status(status).exit_code(), 42);

  pid_t b = ::fork();
  ASSERT_GE(b, 0);
  if (b == 0) {
    ::raise(SIGUSR1);
    ::_exit(0);
  }
  ASSERT_EQ(::waitpid(b, &status, 0), b);
  ChildStatus cs = decode_wait_status(status);
  EXPECT_TRUE(cs.signaled);
  EXPECT_EQ(cs.value, SIGUSR1);
  EXPECT_EQ(cs.exit_code(), 128 + SIGUSR1);
}

TEST(Supervise, ExitCodeIsTheChilds) {
  SignalBlock block;
  ChildStatus s = supervise({"/bin/sh", "-c", "exit 7"}, block);
  EXPECT_FALSE(s.signaled);
  EXPECT_EQ(s.value, 7);
  EXPECT_EQ(s.exit_code(), 7);
}

TEST(Supervise, ArgvZeroIsLookedUpOnPath) {
  SignalBlock block;
  EXPECT_EQ(supervise({"sh", "-c", "exit 3"}, block).exit_code(), 3);
}

TEST(Supervise, KilledChildGives128PlusSignal) {
  SignalBlock block;
  ChildStatus s = supervise({"/bin/sh", "-c", "kill -TERM $$"}, block);
  EXPECT_TRUE(s.signaled);
  EXPECT_EQ(s.value, SIGTERM);
  EXPECT_EQ(s.exit_code(), 143);
}

TEST(Supervise, MissingBinaryIs127) {
  SignalBlock block;
  TempDir dir;
  try {
    supervise({dir / "no-such-qemu"}, block);
    ADD_FAILURE() << "a missing binary was started";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), exit_code::kNotFound) << e.what();
  }
  try {
    supervise({"qemu-lio-test-no-such-binary-on-path"}, block);
    ADD_FAILURE() << "a missing binary was started";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), exit_code::kNotFound) << e.what();
  }
}

TEST(Supervise, NonExecutableFileIs126) {
  SignalBlock block;
  TempDir dir;
  write_file(dir / "qemu", 0, "#!/bin/sh\nexit 0\n");
  ASSERT_EQ(::chmod((dir / "qemu").c_str(), 0644), 0);
  try {
    supervise({dir / "qemu"}, block);
    ADD_FAILURE() << "a file without execute permission was started";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), exit_code::kNotExecutable) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir / "qemu"), std::string::npos) << e.what();
  }
}

TEST(Supervise, FailingBeforeExecStopsTheCommand) {
  SignalBlock block;
  TempDir dir;
  const std::string marker = dir / "ran";
  bool started = false;
  try {
    supervise({"/bin/sh", "-c", "touch '" + marker + "'"}, block,
              [] { throw Error("x", "y"); }, [&](pid_t) { started = true; });
    ADD_FAILURE() << "supervise returned although before_exec threw";
  } catch (const Error& e) {
    // The hook's own message, whole, on every run (Boost's error pipe used to cut it).
    EXPECT_EQ(std::string(e.what()), "x: y (QEMU was not started)");
    EXPECT_EQ(e.exit_code(), exit_code::kProvisionFailed) << e.what();
  }
  EXPECT_FALSE(started);
  ::usleep(100 * 1000);  // a command that did run would have made its marker by now
  EXPECT_FALSE(exists(marker));
}

TEST(Supervise, BeforeExecRunsInTheChild) {
  SignalBlock block;
  TempDir dir;
  const std::string file = dir / "pid";
  pid_t started = -1;
  ChildStatus s = supervise(
      {"/bin/sh", "-c", "exit 0"}, block,
      [&] { std::ofstream(file) << ::getpid() << "\n"; },
      [&](pid_t pid) { started = pid; });
  EXPECT_EQ(s.exit_code(), 0);
  ASSERT_GT(started, 0);
  EXPECT_NE(started, ::getpid());
  EXPECT_EQ(slurp(file), std::to_string(started) + "\n");
}

// A SIGTERM from another process, while QEMU runs, is passed on to it.
TEST(Supervise, ForwardsSigtermToTheChild) {
  SignalBlock block;
  const pid_t self = ::getpid();
  pid_t killer = -1;
  const auto start = steady_clock::now();
  ChildStatus s = supervise({"/bin/sleep", "5"}, block, {}, [&](pid_t) {
    killer = ::fork();
    if (killer == 0) {
      ::kill(self, SIGTERM);
      ::_exit(0);
    }
  });
  const auto took = steady_clock::now() - start;
  ASSERT_GT(killer, 0);
  int status = 0;
  EXPECT_EQ(::waitpid(killer, &status, 0), killer);
  EXPECT_TRUE(s.signaled);
  EXPECT_EQ(s.value, SIGTERM);
  EXPECT_EQ(s.exit_code(), 143);
  EXPECT_LT(took, std::chrono::seconds(3));
  // Forwarded, not delivered to us: nothing of it is left pending once the child is gone.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGTERM));
}

void (*handler_of(int sig))(int) {
  struct sigaction sa = {};
  sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

void set_handler(int sig, void (*h)(int)) {
  struct sigaction sa = {};
  sa.sa_handler = h;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

bool blocked_now(int sig) {
  sigset_t cur;
  sigprocmask(SIG_SETMASK, nullptr, &cur);
  return sigismember(&cur, sig);
}

TEST(SignalBlock, SetsAndRestoresDispositionsAndMask) {
  const auto chld = handler_of(SIGCHLD);
  const auto pipe = handler_of(SIGPIPE);
  // As a caller that ignores SIGCHLD (inherited across exec) and lets SIGPIPE kill.
  set_handler(SIGCHLD, SIG_IGN);
  set_handler(SIGPIPE, SIG_DFL);
  ASSERT_FALSE(blocked_now(SIGTERM));
  {
    SignalBlock block;
    EXPECT_EQ(handler_of(SIGCHLD), SIG_DFL);
    EXPECT_EQ(handler_of(SIGPIPE), SIG_IGN);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD}) {
      EXPECT_TRUE(blocked_now(sig)) << sig;
      EXPECT_TRUE(sigismember(&block.blocked(), sig)) << sig;
    }
    EXPECT_FALSE(blocked_now(SIGPIPE));
  }
  EXPECT_EQ(handler_of(SIGCHLD), SIG_IGN);
  EXPECT_EQ(handler_of(SIGPIPE), SIG_DFL);
  EXPECT_FALSE(blocked_now(SIGTERM));
  EXPECT_FALSE(blocked_now(SIGCHLD));
  set_handler(SIGCHLD, chld);
  set_handler(SIGPIPE, pipe);
}

// The child gets the caller's signal state back: an ignored SIGPIPE and a blocked SIGTERM
// must not leak into QEMU.
TEST(Supervise, ChildRunsWithTheCallersSignalState) {
  // The caller's state, whatever the test runner gave us: SIGPIPE default, SIGTERM open.
  const auto pipe = handler_of(SIGPIPE);
  set_handler(SIGPIPE, SIG_DFL);
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, &old_mask);
  std::string text;
  {
    SignalBlock block;
    // SigBlk and SigIgn of the child's own /proc entry, as hex masks.
    TempDir dir;
    const std::string out = dir / "status";
    ChildStatus s = supervise(
        // exec: the child's own mask as it was given. Reading the shell's from a forked grep
        // raced with dash blocking every signal around its fork (1 run in 40).
        {"/bin/sh", "-c", "exec grep -E '^Sig(Blk|Ign)' /proc/self/status > '" + out + "'"}, block);
    EXPECT_EQ(s.exit_code(), 0);
    text = slurp(out);
  }
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  set_handler(SIGPIPE, pipe);
  auto mask = [&](const std::string& name) {
    auto at = text.find(name + ":");
    EXPECT_NE(at, std::string::npos) << text;
    return at == std::string::npos ? 0ULL : std::stoull(text.substr(at + name.size() + 1), nullptr, 16);
  };
  EXPECT_EQ(mask("SigBlk") & (1ULL << (SIGTERM - 1)), 0ULL) << text;
  EXPECT_EQ(mask("SigIgn") & (1ULL << (SIGPIPE - 1)), 0ULL) << text;
}

TEST(FindExecutable, PathsAndPath) {
  EXPECT_EQ(find_executable("/bin/sh"), "/bin/sh");
  EXPECT_EQ(find_executable("./x"), "./x");
  EXPECT_EQ(find_executable(""), "");
  EXPECT_FALSE(find_executable("sh").empty());
  EXPECT_EQ(find_executable("qemu-lio-test-no-such-binary-on-path"), "");
}

}  // namespace
}  // namespace qemu_lio
