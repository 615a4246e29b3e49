#pragma once
// Getting the kernel ready for LIO: configfs mounted, the target and vhost modules loaded.
// `run` does what it needs itself; `check` explains every missing piece with its fix.

#include <functional>
#include <string>
#include <vector>

#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// Modules qemu-lio needs; only iscsi and loopback are autoloaded by the kernel.
extern const std::vector<std::string> kLioModules;

/// Mounts configfs at `configfs_root` if it is the standard mount point and not mounted,
/// and loads missing modules with modprobe. Failures are left for the caller's own
/// operations to report (with their errno), except an unusable configfs, which throws.
void prepare_lio(const std::string& configfs_root);

/// Makes sure `<dbroot>/pr` exists (0700), dbroot as `target/dbroot` in `fs` names it. The
/// kernel writes a file there on every persistent reservation REGISTER, even with APTPL off,
/// and fails the command when the directory is missing; it never creates it itself. Like
/// target/vhost, it is shared with other tools and never removed. Read it once a storage
/// object exists: dbroot cannot change from then on. Throws Error if it cannot be made.
void ensure_pr_directory(ConfigFs& fs);

/// Deletes `<dbroot>/pr/aptpl_<serial>` once no storage object named `object` and none with
/// unit serial `serial` is left in `fs`: the kernel writes that file on every PR
/// registration of a share=on disk and never deletes it, and qemu-lio never restores it
/// (APTPL is not offered), so after the disk's last VM it is stale. A serial that is not a
/// plain token is ignored (a journal names it; gc runs this as root). The file goes through
/// `remove` (gc --dry-run only says so; default: unlink). Never throws.
void remove_stale_pr_file(ConfigFs& fs, const std::string& object, const std::string& serial,
                          const std::function<void(const std::string&)>& remove = {}) noexcept;

/// One preflight item.
struct CheckItem {
  std::string what;
  bool ok = false;
  std::string detail;  ///< the fix when not ok
  bool info = false;   ///< a finding, not a requirement: never fails the check
};

/// Runs the preflight (root, configfs, modules, /dev/vhost-scsi, fd_async_io support,
/// QEMU offering vhost-scsi-pci). Loads and mounts as run would.
std::vector<CheckItem> preflight(const std::string& configfs_root, const std::string& qemu);

/// True if /sys/module/<name> exists.
bool module_loaded(const std::string& name);

/// Loads module `name` with `params` unless it is loaded; true if it is loaded afterwards.
bool load_module(const std::string& name, const std::vector<std::string>& params);

}  // namespace qemu_lio
