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
  std::string canonical_path;  ///< absolute, symlinks resolved
  ImageKind kind = ImageKind::kFile;
  uint64_t size = 0;           ///< bytes
  /// False for a block device whose queue cannot discard: iblock refuses emulate_tpu=1
  /// there, so discard is left off for it.
  bool discard_supported = true;
  /// What the checked file is, as file_identity() spells it: "DEV:INO" for a file (st_dev,
  /// st_ino), "b:MAJOR:MINOR" for a block device (st_rdev). "" if unknown (tests).
  std::string file_id;
};

/// The identity of the file or block device `path` names now (stat(2), symlinks followed,
/// as the kernel's open follows them): "DEV:INO" in decimal, as `stat -L -c %d:%i` prints
/// it, or for a block device "b:MAJOR:MINOR" in hex, as `stat -L -c b:%t:%T` prints it.
/// "" if it cannot be stat'ed.
std::string file_identity(const std::string& path);

/// Stats, resolves and sniffs the image named by `spec`. Throws Error naming the image and
/// the cause (missing, not a regular file or block device, empty, size not a multiple of
/// the block size, a non-raw format, a path the kernel cannot take, no O_DIRECT for
/// cache=none).
ImageInfo inspect_image(const ImageSpec& spec);

/// The format name if `header` (the first 512 bytes or fewer of an image) carries the magic
/// of a non-raw format QEMU knows (qcow2, qcow, vmdk, vhdx, vdi, qed, vpc), else "".
std::string detect_image_format(const std::string& header);

}  // namespace qemu_lio
