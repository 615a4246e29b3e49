#pragma once
// Errors inside the library are exceptions; exit codes exist only at the edge (main).

#include <stdexcept>
#include <string>
#include <system_error>

namespace qemu_lio {

/// Documented exit codes of qemu-lio (see man/qemu-lio.8, EXIT STATUS).
namespace exit_code {
constexpr int kProvisionFailed = 1;  ///< bad image or kernel refusal; everything rolled back
constexpr int kUsage = 2;            ///< bad command line or image SPEC
constexpr int kTeardownFailed = 3;   ///< QEMU ran, but some LIO objects could not be removed
constexpr int kNotExecutable = 126;  ///< QEMU exists but cannot be executed
constexpr int kNotFound = 127;       ///< QEMU binary not found
}  // namespace exit_code

/// An error that carries the object it is about and the exit code main() should use.
/// what() is "<object>: <cause>", ready for "qemu-lio: error: " in front.
class Error : public std::runtime_error {
 public:
  /// `object` names what failed (a path, an option), `cause` says why.
  Error(const std::string& object, const std::string& cause,
        int exit_code = exit_code::kProvisionFailed);
  /// The exit code main() returns for this error.
  int exit_code() const { return exit_code_; }
  /// The object part of the message.
  const std::string& object() const { return object_; }

 private:
  std::string object_;
  int exit_code_;
};

/// A usage error (exit code 2): bad option, bad SPEC key or value.
class UsageError : public Error {
 public:
  /// Same message format as Error, exit code 2.
  UsageError(const std::string& object, const std::string& cause)
      : Error(object, cause, exit_code::kUsage) {}
};

/// A failed system call on a path, keeping errno so callers can decide (EEXIST, EBUSY, ENOENT).
/// what() is "<path>: <action>: <strerror>".
class SysError : public std::system_error {
 public:
  /// `action` is a verb phrase ("cannot create"), `path` the object (absolute).
  SysError(int err, const std::string& action, const std::string& path);
  /// errno of the failed call.
  int err() const { return code().value(); }
  /// The path the call was about.
  const std::string& path() const { return path_; }
  /// The verb phrase ("cannot create").
  const std::string& action() const { return action_; }

 private:
  std::string action_;
  std::string path_;
};

/// strerror() as a std::string, thread-safe.
std::string errno_string(int err);

}  // namespace qemu_lio
