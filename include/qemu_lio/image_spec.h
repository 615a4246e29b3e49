#pragma once
// An --image SPEC: PATH[,key=value]... parsed into settings, with QEMU's ",," escaping.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qemu_lio {

/// How LIO's fileio backstore caches writes.
enum class CacheMode {
  kWriteback,     ///< fd_buffered_io=1: page cache, emulate_write_cache=1, flush -> fsync
  kWritethrough,  ///< LIO's default O_DSYNC
  kNone,          ///< fd_async_io=1 (O_DIRECT) with emulate_write_cache=1
};

/// Name of a cache mode as the SPEC spells it.
const char* to_string(CacheMode m);

/// One disk as the user asked for it; validated for syntax, not yet against the file system.
struct ImageSpec {
  std::string path;                  ///< as given (may be relative)
  std::optional<std::string> wwn;    ///< naa.<16 hex>; derived from the path when absent
  std::optional<std::string> serial; ///< vpd_unit_serial; derived when absent
  uint32_t block_size = 512;         ///< 512, 1024, 2048 or 4096
  CacheMode cache = CacheMode::kWriteback;
  bool discard = true;               ///< emulate_tpu=1
  std::optional<int> bootindex;      ///< QEMU bootindex; also sets boot_tpgt
  std::optional<int> num_queues;     ///< QEMU num_queues (1..128)
  int max_sectors = 16384;           ///< QEMU max_sectors; 16384 keeps Windows guests working
  std::optional<std::string> id;     ///< QEMU device id
  std::optional<std::string> bus;    ///< QEMU bus
  std::optional<std::string> addr;   ///< QEMU PCI addr
  bool readonly = false;             ///< guest writes are refused by the target
  /// Disks of one VM that name the same controller share one vhost target (LUNs 0..N in
  /// their order) and one vhost-scsi-pci device.
  std::optional<std::string> controller;
  /// Several VMs may use this writable image at once: one storage object serves them all,
  /// and SCSI-3 persistent reservations work between them.
  bool share = false;
  /// The format the caller named (format=): "raw" means raw whatever its first sector holds,
  /// so the header is not sniffed (a guest may write any bytes there, a qcow2 magic
  /// included); any other is read by qemu-storage-daemon. Empty: detected (image_check.h).
  std::string format;
};

/// True if `format` is one qemu-lio serves: "raw" (LIO reads the file or device itself) or an
/// image format of QEMU's block layer that qemu-storage-daemon reads (image_formats()).
bool known_image_format(const std::string& format);
/// The image formats besides raw, for messages and --help.
const char* image_formats();

/// Splits a QEMU-style option string on ',' where ",," stands for a literal ','.
std::vector<std::string> split_qemu_opts(std::string_view s);

/// The inverse of split_qemu_opts() for one value: ',' becomes ",,".
std::string escape_commas(const std::string& v);

/// Parses SPEC. Throws UsageError naming the key for unknown keys or bad values.
ImageSpec parse_image_spec(std::string_view spec);

/// Checks a value that ends up inside a QEMU -device option or a configfs name: it must not
/// carry ',', '=', whitespace, quotes or control characters. Throws UsageError naming `what`.
void check_token(const std::string& what, const std::string& value);

/// Throws UsageError if `path` names a QEMU fd set (/dev/fdset/N): LIO opens images by path.
void check_not_fdset(const std::string& path);

/// True if `wwn` is "naa." followed by exactly 16 hex digits.
bool is_valid_naa(const std::string& wwn);

}  // namespace qemu_lio
