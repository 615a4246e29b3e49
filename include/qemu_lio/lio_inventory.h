#pragma once
// What already lives in the LIO tree, read back from configfs itself (never from our own
// records), so checks see objects other tools made too.

#include <string>
#include <vector>

#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// A storage object found under target/core.
struct Backstore {
  std::string hba;     ///< "fileio_3"
  std::string name;    ///< storage object name
  std::string file;    ///< the file or device it serves (udev_path, else info's "File:")
  /// "target/core/<hba>/<name>".
  std::string path() const;
};

/// A snapshot of the parts of the tree qemu-lio must not collide with.
struct Inventory {
  std::vector<Backstore> backstores;
  std::vector<std::string> vhost_wwns;  ///< names under target/vhost
};

/// Reads the inventory. Missing directories simply yield empty lists.
Inventory scan_inventory(ConfigFs& fs);

/// What makes a file the same file: device and inode (or, for block devices, the device
/// number), so two paths to one image compare equal.
struct FileKey {
  unsigned long long dev = 0, ino = 0;
  bool valid = false;  ///< false if the file could not be stat'ed
  bool operator==(const FileKey& o) const { return valid && o.valid && dev == o.dev && ino == o.ino; }
};

/// The key of the file at `path` (not valid if it is gone).
FileKey file_key(const std::string& path);


}  // namespace qemu_lio
