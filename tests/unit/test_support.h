#pragma once
// Small helpers shared by the unit tests: temporary files and images, and catching the
// message of an expected exception.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qemu_lio/configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"

namespace qemu_lio {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  /// `base` is where to create it ("" = $TMPDIR or /tmp).
  explicit TempDir(const std::string& base = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  /// The directory's absolute, canonical path.
  const std::string& path() const { return path_; }
  /// path() + "/" + name.
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Creates (or truncates) `path` with `size` bytes that start with `header`.
void write_file(const std::string& path, uint64_t size, const std::string& header = "");

/// An image as inspect_image() would have returned it, without touching the disk:
/// `spec` is parsed as --image, the canonical path is the spec's path as given.
CheckedImage checked_image(const std::string& spec, uint64_t size = 1 << 20,
                           ImageKind kind = ImageKind::kFile);

/// A run as a wrapper leaves it: one disk on `image` provisioned in `fs` through a journal
/// of `vm` under `state_dir` (after the header, `first` may add records, a libvirt domain
/// say), then owner and backstop records if given. Returns the journal's path.
std::string provision_journalled(ConfigFs& fs, const std::string& state_dir, const std::string& vm,
                                 const std::string& image, const ProcessId& wrapper,
                                 std::optional<ProcessId> owner = {}, std::optional<ProcessId> backstop = {},
                                 const std::function<void(JournalWriter&)>& first = {},
                                 const RetryPolicy& retry = {});

/// The argv QEMU gets when `user` is the command after "--" and the plan's disks came from
/// --image: the path `qemu-lio run` takes (scan, prepend the images, finalize).
std::vector<std::string> qemu_argv_for(const Plan& plan, const std::vector<std::string>& user);

/// Runs `f` and returns the what() of the `E` it throws; records a failure if it throws
/// nothing (and returns "").
template <class E = Error, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception, none was thrown";
  return "";
}

/// Runs `f`, which must refuse its input with a UsageError (exit code 2), and returns the
/// error's what(). Records a failure naming `context` if `f` throws nothing or another Error
/// (and returns "" or that error's what()).
std::string usage_error_of(const std::function<void()>& f, const std::string& context = "");

/// Runs `f` and returns the errno of the SysError it throws, 0 if it throws none.
template <class F>
int errno_of(F&& f) {
  try {
    f();
  } catch (const SysError& e) {
    return e.err();
  }
  return 0;
}

}  // namespace qemu_lio
