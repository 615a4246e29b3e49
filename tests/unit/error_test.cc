// The error types carry the message format every diagnostic of the tool uses
// ("object: cause") and the exit code main() returns.

#include "qemu_lio/error.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "test_support.h"

namespace qemu_lio {
namespace {

TEST(Error, WhatIsObjectColonCause) {
  Error e("/img/a.raw", "not a regular file");
  EXPECT_STREQ(e.what(), "/img/a.raw: not a regular file");
  EXPECT_EQ(e.object(), "/img/a.raw");
  EXPECT_EQ(e.exit_code(), exit_code::kProvisionFailed);
}

TEST(Error, CarriesTheGivenExitCode) {
  EXPECT_EQ(Error("x", "y", exit_code::kTeardownFailed).exit_code(), 3);
  EXPECT_EQ(Error("x", "y", exit_code::kNotFound).exit_code(), 127);
  EXPECT_EQ(Error("x", "y", exit_code::kNotExecutable).exit_code(), 126);
}

TEST(Error, DocumentedExitCodes) {
  EXPECT_EQ(exit_code::kProvisionFailed, 1);
  EXPECT_EQ(exit_code::kUsage, 2);
  EXPECT_EQ(exit_code::kTeardownFailed, 3);
  EXPECT_EQ(exit_code::kNotExecutable, 126);
  EXPECT_EQ(exit_code::kNotFound, 127);
}

TEST(Error, IsARuntimeError) {
  try {
    throw Error("obj", "why");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "obj: why");
  }
}

TEST(UsageError, ExitsWithTwoAndIsAnError) {
  UsageError u("--image", "missing value");
  EXPECT_STREQ(u.what(), "--image: missing value");
  EXPECT_EQ(u.exit_code(), exit_code::kUsage);
  EXPECT_EQ(u.object(), "--image");
  const Error& base = u;
  EXPECT_EQ(base.exit_code(), 2);
  EXPECT_EQ(usage_error_of([] { throw UsageError("a", "b"); }), "a: b");
}

TEST(SysError, WhatIsPathActionStrerror) {
  const std::string path = "/sys/kernel/config/target/core/fileio_0/x";
  SysError e(EEXIST, "cannot create", path);
  EXPECT_EQ(std::string(e.what()), path + ": cannot create: " + std::strerror(EEXIST));
  EXPECT_EQ(e.err(), EEXIST);
  EXPECT_EQ(e.path(), path);
  EXPECT_EQ(e.action(), "cannot create");
  EXPECT_EQ(e.code(), std::error_code(EEXIST, std::generic_category()));
}

TEST(SysError, KeepsErrnoForCallers) {
  EXPECT_EQ(errno_of([] { throw SysError(EBUSY, "cannot remove", "/x"); }), EBUSY);
  EXPECT_EQ(errno_of([] { throw SysError(ENOENT, "cannot open", "/x"); }), ENOENT);
  EXPECT_EQ(errno_of([] {}), 0);
}

TEST(ErrnoString, MatchesStrerror) {
  for (int err : {ENOENT, EEXIST, EBUSY, EACCES, EINVAL})
    EXPECT_EQ(errno_string(err), std::strerror(err)) << err;
  EXPECT_EQ(errno_string(ENOENT), "No such file or directory");
  EXPECT_FALSE(errno_string(0).empty());
}

}  // namespace
}  // namespace qemu_lio
