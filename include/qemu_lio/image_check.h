#pragma once
// Everything qemu-lio verifies about an image file before it touches configfs. The kernel
// checks almost none of it: a wrong fd_dev_name creates an empty file, a ',' splits the
// control string, and O_DIRECT on tmpfs oopses on the first write.

#include <cstdint>
#include <string>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// What kind of backstore an image needs.
enum class ImageKind { kFile, kBlockDevice };

/// The facts about an image that provisioning needs.
struct ImageInfo {
  std::string canonical_path;  ///< absolute, symlinks resolved: what the kernel is given
  /// What the derived wwn, nexus and serial come from. For a block device named through a
  /// stable directory (is_stable_device_name), that name as given, made absolute but not
  /// resolved, so the identity survives a renumbering of the kernel name (loopN, sdX, zdN);
  /// else canonical_path.
  std::string identity_name;
  ImageKind kind = ImageKind::kFile;
  uint64_t size = 0;           ///< bytes
  /// False for a block device whose queue cannot discard: iblock refuses emulate_tpu=1
  /// there, so discard is left off for it.
  bool discard_supported = true;
  /// What the checked file is, as file_identity() spells it: "DEV:INO" for a file (st_dev,
  /// st_ino), "b:MAJOR:MINOR" for a block device (st_rdev). "" if unknown (tests).
  std::string file_id;
  /// "raw": LIO reads the file or device itself. Any other format (the caller's format=, or
  /// detected): qemu-storage-daemon reads it and LIO serves its NBD device (served_disks.h);
  /// `size` is then the file's, not the disk's.
  std::string format = "raw";
  bool served() const { return format != "raw"; }
};

/// The identity of the file or block device `path` names now (stat(2), symlinks followed,
/// as the kernel's open follows them): "DEV:INO" in decimal, as `stat -L -c %d:%i` prints
/// it, or for a block device "b:MAJOR:MINOR" in hex, as `stat -L -c b:%t:%T` prints it.
/// "" if it cannot be stat'ed.
std::string file_identity(const std::string& path);

/// Stats, resolves and sniffs the image named by `spec`. Throws Error naming the image and
/// the cause (missing, not a regular file or block device, empty, size not a multiple of
/// the block size, a format header in a file whose name does not say that format, a path
/// the kernel cannot take, no O_DIRECT for cache=none).
ImageInfo inspect_image(const ImageSpec& spec);

/// `path` made absolute against the working directory and normalised lexically: '.', '..'
/// and repeated '/' are resolved without following any symlink.
std::string lexically_absolute(const std::string& path);

/// True if `path` (absolute, normalised) lies under /dev/disk/by-id, by-uuid, by-partuuid,
/// by-path, by-label, by-partlabel, /dev/zvol or /dev/mapper: names that udev, ZFS and
/// device-mapper keep for a device whatever its kernel name.
bool is_stable_device_name(const std::string& path);

/// Whether the block device whose sysfs directory is `sys_dev_dir` (/sys/dev/block/M:m) can
/// discard. A partition has no queue of its own (it has a "partition" file): its disk's
/// queue, in the parent directory, answers for it.
bool block_device_discards(const std::string& sys_dev_dir);

/// The format name if `header` (the first 512 bytes or fewer of an image) carries the magic
/// of a non-raw format QEMU knows (qcow2, qcow, vmdk, vhdx, vdi, qed, vpc), else "".
std::string detect_image_format(const std::string& header);

/// True if the file name `path` ends in the extension of `format` (".qcow2", ".vhdx",
/// ".vdi", ".qed"): a detected format is trusted only then. vmdk and vpc never are (their
/// raw variants share the extension).
bool extension_names_format(const std::string& path, const std::string& format);

}  // namespace qemu_lio
