// The QEMU_LIO_FAULT crash points (test build only): the spec parser, and a wrapper that
// SIGKILLs the process right before the Nth creating or removing configfs operation.

#include "qemu_lio/fault_injection.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "fake_configfs.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

TEST(ParseFaultPoint, GoodValues) {
  FaultPoint f = parse_fault_point("provision:1");
  EXPECT_EQ(f.phase, FaultPoint::Phase::kProvision);
  EXPECT_EQ(f.op, 1);
  f = parse_fault_point("provision:17");
  EXPECT_EQ(f.phase, FaultPoint::Phase::kProvision);
  EXPECT_EQ(f.op, 17);
  f = parse_fault_point("teardown:3");
  EXPECT_EQ(f.phase, FaultPoint::Phase::kTeardown);
  EXPECT_EQ(f.op, 3);
}

TEST(ParseFaultPoint, BadPhaseIsAUsageError) {
  for (const std::string spec : {"setup:1", "Provision:1", "", ":1", "provision1", "teardown 1"}) {
    const std::string msg = usage_error_of([&] { parse_fault_point(spec); }, "'" + spec + "'");
    EXPECT_EQ(msg.rfind("QEMU_LIO_FAULT: ", 0), 0u) << msg;
  }
}

TEST(ParseFaultPoint, NBelowOneIsAUsageError) {
  for (const std::string spec : {"provision:0", "teardown:0", "provision:-1", "provision",
                                 "teardown:", "teardown:x", "provision:2x", "provision: 3",
                                 "teardown:1:2", "provision:99999999999999999999"}) {
    const std::string msg = usage_error_of([&] { parse_fault_point(spec); }, "'" + spec + "'");
    EXPECT_NE(msg.find("N >= 1"), std::string::npos) << msg;
  }
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  FaultInjectionTest() { ::unsetenv("QEMU_LIO_FAULT"); }
  ~FaultInjectionTest() override { ::unsetenv("QEMU_LIO_FAULT"); }

  struct Outcome {
    bool killed = false;  ///< died by SIGKILL
    int exit_code = -1;   ///< when it exited
    int done = 0;         ///< operations that completed before it ended
  };

  // Runs `ops` in a forked child against a fresh FakeConfigFs wrapped with
  // $QEMU_LIO_FAULT = `spec`; each op's step() call reports a completed operation.
  Outcome run_child(const std::string& spec,
                    const std::function<void(ConfigFs&, const std::function<void()>&)>& ops) {
    ::setenv("QEMU_LIO_FAULT", spec.c_str(), 1);
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(p[0]);
      try {
        std::unique_ptr<ConfigFs> fs = wrap_for_fault_injection(std::make_unique<FakeConfigFs>());
        ops(*fs, [&] {
          char c = '.';
          if (::write(p[1], &c, 1) != 1) ::_exit(90);
        });
      } catch (...) {
        ::_exit(91);
      }
      ::_exit(0);
    }
    ::unsetenv("QEMU_LIO_FAULT");
    ::close(p[1]);
    Outcome o;
    char buf[64];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) o.done += static_cast<int>(n);
    ::close(p[0]);
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, 0), child);
    o.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
    return o;
  }
};

TEST_F(FaultInjectionTest, WithoutTheVariableTheInnerObjectIsReturned) {
  auto inner = std::make_unique<FakeConfigFs>();
  ConfigFs* raw = inner.get();
  std::unique_ptr<ConfigFs> wrapped = wrap_for_fault_injection(std::move(inner));
  EXPECT_EQ(wrapped.get(), raw);
  ::setenv("QEMU_LIO_FAULT", "", 1);  // empty counts as unset
  auto inner2 = std::make_unique<FakeConfigFs>();
  raw = inner2.get();
  EXPECT_EQ(wrap_for_fault_injection(std::move(inner2)).get(), raw);
}

TEST_F(FaultInjectionTest, WithTheVariableTheObjectIsWrapped) {
  ::setenv("QEMU_LIO_FAULT", "provision:5", 1);
  auto inner = std::make_unique<FakeConfigFs>();
  ConfigFs* raw = inner.get();
  std::unique_ptr<ConfigFs> wrapped = wrap_for_fault_injection(std::move(inner));
  EXPECT_NE(wrapped.get(), raw);
  // Calls go through to the inner tree.
  wrapped->mkdir("target/core/fileio_0");
  EXPECT_TRUE(raw->exists("target/core/fileio_0"));
  EXPECT_TRUE(wrapped->exists("target/core/fileio_0"));
  EXPECT_EQ(wrapped->absolute("target"), raw->absolute("target"));
}

TEST_F(FaultInjectionTest, MalformedVariableIsAUsageError) {
  ::setenv("QEMU_LIO_FAULT", "provision:0", 1);
  usage_error_of([] { wrap_for_fault_injection(std::make_unique<FakeConfigFs>()); });
}

TEST_F(FaultInjectionTest, ProvisionTwoDiesAtTheSecondMkdir) {
  Outcome o = run_child("provision:2", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");
    step();
    // Reads and listings do not count.
    (void)fs.read("target/core/fileio_0/hba_info");
    (void)fs.exists("target/core/fileio_0");
    (void)fs.list("target/core");
    step();
    fs.mkdir("target/core/fileio_0/vm-disk0");
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 2);
}

TEST_F(FaultInjectionTest, ProvisionCountsWritesButNotRemovals) {
  Outcome o = run_child("provision:3", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");  // 1
    step();
    fs.rmdir("target/core/fileio_0");  // teardown: not counted
    step();
    fs.mkdir("target/core/fileio_1");  // 2
    step();
    fs.write("target/core/fileio_1/x", "1");  // 3: dies before the (failing) write
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 3);
}

TEST_F(FaultInjectionTest, ProvisionCountsSymlinks) {
  Outcome o = run_child("provision:2", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");  // 1
    step();
    fs.symlink("target/core/fileio_0", "target/vhost/x");  // 2
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 1);
}

TEST_F(FaultInjectionTest, ProvisionBeyondTheLastOperationNeverFires) {
  Outcome o = run_child("provision:3", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");
    step();
    fs.mkdir("target/core/fileio_0/vm-disk0");
    step();
  });
  EXPECT_FALSE(o.killed);
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.done, 2);
}

TEST_F(FaultInjectionTest, TeardownOneDiesAtTheFirstRmdirNotAtMkdir) {
  Outcome o = run_child("teardown:1", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");
    step();
    fs.mkdir("target/core/fileio_0/vm-disk0");
    step();
    fs.write("target/core/fileio_0/vm-disk0/control", "fd_dev_name=/img/a.raw,fd_dev_size=4096");
    step();
    fs.rmdir("target/core/fileio_0/vm-disk0");
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 3);
}

TEST_F(FaultInjectionTest, TeardownOneDiesAtTheFirstUnlink) {
  Outcome o = run_child("teardown:1", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");
    step();
    fs.unlink("target/vhost/naa.5001405000000001/tpgt_1/lun/lun_0/x");
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 1);
}

TEST_F(FaultInjectionTest, TeardownOneDiesAtTheFirstWriteOfNull) {
  Outcome o = run_child("teardown:1", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/vhost");
    step();
    fs.write("target/vhost/naa.5001405000000001/tpgt_1/nexus", "NULL");
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 1);
}

TEST_F(FaultInjectionTest, TeardownTwoCountsRemovalsOnly) {
  Outcome o = run_child("teardown:2", [](ConfigFs& fs, const std::function<void()>& step) {
    fs.mkdir("target/core/fileio_0");
    step();
    fs.rmdir("target/core/fileio_0");  // 1
    step();
    fs.mkdir("target/core/fileio_1");
    step();
    fs.rmdir("target/core/fileio_1");  // 2
    step();
  });
  EXPECT_TRUE(o.killed) << "exit code " << o.exit_code;
  EXPECT_EQ(o.done, 3);
}

}  // namespace
}  // namespace qemu_lio
