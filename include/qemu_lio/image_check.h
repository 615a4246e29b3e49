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
};

/// Stats, resolves and sniffs the image named by `spec`. Throws Error naming the image and
/// the cause (missing, not a regular file or block device, empty, size not a multiple of
/// the block size, a non-raw format, a path the kernel cannot take, no O_DIRECT for
/// cache=none).
ImageInfo inspect_image(const ImageSpec& spec);

/// The format name if `header` (the first 512 bytes or fewer of an image) carries the magic
/// of a non-raw format QEMU knows (qcow2, qcow, vmdk, vhdx, vdi, qed, vpc), else "".
std::string detect_image_format(const std::string& header);

}  // namespace qemu_lio
