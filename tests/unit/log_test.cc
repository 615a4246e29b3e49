// Log lines: one per message, prefixed, filtered by verbosity, control characters escaped.

#include "qemu_lio/log.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace qemu_lio {
namespace {

class LogTest : public ::testing::Test {
 protected:
  ~LogTest() override { set_verbosity(Verbosity::kNormal); }

  // Everything `f` writes to stderr.
  template <class F>
  std::string stderr_of(F&& f) {
    ::testing::internal::CaptureStderr();
    f();
    std::fflush(stderr);
    return ::testing::internal::GetCapturedStderr();
  }
};

TEST_F(LogTest, ErrorIsAlwaysPrinted) {
  for (Verbosity v : {Verbosity::kQuiet, Verbosity::kNormal, Verbosity::kVerbose}) {
    set_verbosity(v);
    EXPECT_EQ(stderr_of([] { log_error("boom"); }), "qemu-lio: error: boom\n")
        << static_cast<int>(v);
  }
}

TEST_F(LogTest, WarningUnlessQuiet) {
  set_verbosity(Verbosity::kQuiet);
  EXPECT_EQ(stderr_of([] { log_warning("careful"); }), "");
  set_verbosity(Verbosity::kNormal);
  EXPECT_EQ(stderr_of([] { log_warning("careful"); }), "qemu-lio: warning: careful\n");
  set_verbosity(Verbosity::kVerbose);
  EXPECT_EQ(stderr_of([] { log_warning("careful"); }), "qemu-lio: warning: careful\n");
}

TEST_F(LogTest, VerboseOnlyWhenVerbose) {
  set_verbosity(Verbosity::kQuiet);
  EXPECT_EQ(stderr_of([] { log_verbose("step"); }), "");
  set_verbosity(Verbosity::kNormal);
  EXPECT_EQ(stderr_of([] { log_verbose("step"); }), "");
  set_verbosity(Verbosity::kVerbose);
  EXPECT_EQ(stderr_of([] { log_verbose("mkdir target/core/fileio_0"); }),
            "qemu-lio: mkdir target/core/fileio_0\n");
}

TEST_F(LogTest, NewlineInMessageStaysOneLine) {
  const std::string out = stderr_of([] { log_error("/img/a\nb.raw: cannot open"); });
  EXPECT_EQ(out, "qemu-lio: error: /img/a\\nb.raw: cannot open\n");
  EXPECT_EQ(out.find('\n'), out.size() - 1);
}

TEST_F(LogTest, ControlCharactersAreEscaped) {
  const std::string out = stderr_of([] { log_warning(std::string("a\tb\rc\x1b[31md\x7f")); });
  EXPECT_EQ(out, "qemu-lio: warning: a\\x09b\\x0dc\\x1b[31md\\x7f\n");
  EXPECT_EQ(out.find('\n'), out.size() - 1);
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

TEST_F(LogTest, NonAsciiBytesPassThrough) {
  EXPECT_EQ(stderr_of([] { log_error("disque \xc3\xa9"); }), "qemu-lio: error: disque \xc3\xa9\n");
}

// The disks of a run log from several threads: every line comes out whole.
TEST_F(LogTest, LinesFromManyThreadsAreNeverInterleaved) {
  set_verbosity(Verbosity::kVerbose);
  const std::string out = stderr_of([] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([t] {
        // Longer than stdio's buffers, so a split write would show.
        const std::string body(6000, static_cast<char>('a' + t));
        for (int k = 0; k < 40; ++k) log_verbose(std::to_string(t) + " " + body);
      });
    for (auto& th : threads) th.join();
  });
  std::istringstream in(out);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    ASSERT_EQ(line.rfind("qemu-lio: ", 0), 0u) << line.substr(0, 40);
    const std::string rest = line.substr(10);
    ASSERT_GE(rest.size(), 2u);
    const int t = rest[0] - '0';
    ASSERT_TRUE(t >= 0 && t < 8) << rest.substr(0, 40);
    EXPECT_EQ(rest.substr(2), std::string(6000, static_cast<char>('a' + t))) << "line " << lines;
  }
  EXPECT_EQ(lines, 8 * 40);
}

}  // namespace
}  // namespace qemu_lio
