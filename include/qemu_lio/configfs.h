#pragma once
// The one narrow door to the kernel's LIO tree. Everything qemu-lio does to configfs goes
// through this interface, so the unit tests can swap in an in-memory kernel that fails on cue.

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qemu_lio {

/// Operations on configfs, with paths relative to its mount point ("target/core/fileio_0").
/// Every failure throws SysError carrying errno and the ABSOLUTE path, so messages name
/// the object as the user finds it ("/sys/kernel/config/target/core/fileio_0").
class ConfigFs {
 public:
  virtual ~ConfigFs() = default;
  /// mkdir(2); EEXIST is how an HBA claim learns the name is taken.
  virtual void mkdir(const std::string& path) = 0;
  /// rmdir(2).
  virtual void rmdir(const std::string& path) = 0;
  /// Writes `value` to an attribute in a single write(2), as configfs requires.
  virtual void write(const std::string& path, const std::string& value) = 0;
  /// Reads a whole attribute.
  virtual std::string read(const std::string& path) = 0;
  /// symlink(2): creates `link` pointing at the configfs item `target` (both relative).
  virtual void symlink(const std::string& target, const std::string& link) = 0;
  /// unlink(2) of a symlink.
  virtual void unlink(const std::string& path) = 0;
  /// True if the path exists (no error for ENOENT).
  virtual bool exists(const std::string& path) = 0;
  /// Names of the entries of a directory, sorted; empty if it does not exist.
  virtual std::vector<std::string> list(const std::string& dir) = 0;
  /// The absolute path of `path` (relative to the mount point), for messages.
  virtual std::string absolute(const std::string& path) const = 0;
  /// True if several threads may call this object at once. Only then are the disks of a
  /// run provisioned and torn down in parallel; a dry run says no, so that what it prints
  /// comes out in the one order a serial run would take.
  virtual bool concurrent() const { return false; }
};

/// The real configfs at `root` (usually /sys/kernel/config).
std::unique_ptr<ConfigFs> make_real_configfs(const std::string& root);

/// The configfs the tool uses: the real one, wrapped for fault injection in a build with
/// QEMU_LIO_FAULT_INJECTION (the test build) when QEMU_LIO_FAULT is set.
std::unique_ptr<ConfigFs> make_configfs(const std::string& root);

/// A dry run over `inner`: reads go to it, every change is reported through `say` ("would
/// remove /sys/kernel/config/PATH"); removals and writes are remembered, so later reads see
/// what a teardown would leave (made objects are not: gc only removes).
std::unique_ptr<ConfigFs> make_dry_run_configfs(ConfigFs& inner,
                                                std::function<void(const std::string&)> say);

}  // namespace qemu_lio
