#pragma once
// The provisioning plan as data: an ordered list of configfs operations. Applying it,
// printing it as a shell script (--dry-run) and journalling it all read this one list, so
// the three can never disagree about what qemu-lio does to the kernel.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/identity.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// One step against configfs. Paths are relative to the configfs mount point and may hold
/// a variable "$HBA<n>" that a kClaimHba step binds when it runs.
struct Op {
  enum class Kind {
    kClaimHba,   ///< mkdir `path`/`value`_N for the first free N; binds `var`; undo rmdir
    kEnsureDir,  ///< mkdir `path` unless it exists; shared with other tools, never removed
    kMkdir,      ///< mkdir `path`; undo rmdir
    kWrite,      ///< write `value` to `path`; undo writes `undo_value` if it is not empty
    kExpect,     ///< read `path`; fail unless it contains `value` (catches ignored settings)
    kSymlink,    ///< symlink `path` -> `value`; undo unlink
    /// stat(2) the file `path` (an image, not a configfs path); fail unless its identity is
    /// `value` (see file_identity). Emitted after enable: the kernel opened the file by
    /// name, and this proves the name still meant the file that was checked.
    kExpectSameFile,
    /// `path` (an HBA or a storage object of a share=on disk) exists: another VM's run made
    /// it and this run uses it too. Its undo is a shared rmdir (see Undo::shared).
    kJoin,
  };
  Kind kind;
  std::string path;
  std::string value;
  std::string var;         ///< kClaimHba: the variable it binds ("HBA0")
  std::string undo_value;  ///< kWrite: what to write at teardown ("NULL" for nexus)
  std::string why;         ///< a comment for the dry-run script and verbose log
  /// The object is shared by the VMs of a share=on disk: its undo is a shared rmdir.
  bool shared = false;
  /// The job this step belongs to: the index (into Plan::disks) of the disk, or for disks
  /// that share a controller, of the controller's first disk. The steps of one job run in
  /// plan order; those of different jobs touch disjoint objects and may run at once.
  std::size_t disk = 0;
};

/// One disk of the plan with everything known about it.
struct DiskPlan {
  ImageSpec spec;
  ImageInfo info;
  Identity identity;     ///< wwn/serial here are the effective ones (user's or derived)
  std::string so_name;   ///< storage object name ("<vm>-disk<i>")
  std::string hba_var;   ///< the variable naming its HBA ("HBA0")
  std::string plugin;    ///< "fileio" or "iblock"
  /// A served image (not raw, served_disks.h): the variable naming its NBD device ("NBD<i>"),
  /// which the run binds before the disk's first step; "" for a raw image.
  std::string nbd_var;
  /// The controller it shares with other disks of the plan ("" when it has its own). Every
  /// disk of a controller has the controller's wwn and nexus; its own serial.
  std::string controller;
  int lun = 0;           ///< its LUN in its target (its place in the controller)
  /// QEMU gives each I/O queue its own vhost worker (decided from QEMU, kernel and config:
  /// vhost_caps.h).
  bool worker_per_virtqueue = false;
};

/// Everything a run does to the kernel and adds to QEMU's command line.
struct Plan {
  std::string vm_name;
  std::vector<DiskPlan> disks;
  std::vector<Op> ops;
};

/// One step that reverses a created object.
struct Undo {
  enum class Kind { kRmdir, kUnlink, kWrite };
  Kind kind;
  std::string path;   ///< may hold "$HBA<n>" until resolved with bind_vars
  std::string value;  ///< kWrite: what to write
  /// kRmdir of an object several VMs use (a share=on disk's storage object and HBA): the
  /// kernel's link count decides. EBUSY (a LUN of another VM still links the object) or
  /// ENOTEMPTY (the HBA still holds it) means another user remains, and the step is done.
  bool shared = false;
};

/// The step that reverses `op` once it has succeeded, if it creates anything.
std::optional<Undo> undo_of(const Op& op);

/// Replaces every "$VAR" of `bindings` (name -> value pairs) in `path`.
std::string bind_vars(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& bindings);

}  // namespace qemu_lio
