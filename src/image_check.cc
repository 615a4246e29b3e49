#include "qemu_lio/image_check.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "qemu_lio/error.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

// fd_dev_name is a 256-byte buffer in the kernel and is truncated silently.
constexpr size_t kMaxKernelPath = 255;


bool starts_with(const std::string& s, const char* magic, size_t n, size_t off = 0) {
  return s.size() >= off + n && std::memcmp(s.data() + off, magic, n) == 0;
}

// The block device itself, not the node that names it: two nodes of one disk are one disk.
std::string identity_of(const struct stat& st) {
  if (S_ISBLK(st.st_mode)) return fmt::format("b:{:x}:{:x}", major(st.st_rdev), minor(st.st_rdev));
  return fmt::format("{}:{}", static_cast<unsigned long long>(st.st_dev),
                     static_cast<unsigned long long>(st.st_ino));
}

}  // namespace

std::string lexically_absolute(const std::string& path) {
  std::string full = path;
  if (full.empty() || full[0] != '/') {
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) throw Error(path, "cannot resolve: " + errno_string(errno));
    full = std::string(cwd) + "/" + full;
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= full.size()) {
    size_t slash = full.find('/', i);
    if (slash == std::string::npos) slash = full.size();
    std::string part = full.substr(i, slash - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = slash + 1;
  }
  std::string out;
  for (const std::string& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

bool is_stable_device_name(const std::string& path) {
  static const char* const kStableDirs[] = {
      "/dev/disk/by-id/",    "/dev/disk/by-uuid/",  "/dev/disk/by-partuuid/",
      "/dev/disk/by-path/",  "/dev/disk/by-label/", "/dev/disk/by-partlabel/",
      "/dev/zvol/",          "/dev/mapper/"};
  for (const char* dir : kStableDirs) {
    const size_t n = std::strlen(dir);
    if (path.size() > n && path.compare(0, n, dir) == 0) return true;
  }
  return false;
}

bool block_device_discards(const std::string& sys_dev_dir) {
  struct stat st;
  // The kernel resolves the /sys/dev/block symlink before "..", so "../queue" is the disk's.
  const bool partition = ::stat((sys_dev_dir + "/partition").c_str(), &st) == 0;
  std::ifstream q(sys_dev_dir + (partition ? "/../queue" : "/queue") + "/discard_max_bytes");
  uint64_t max_discard = 0;
  return (q >> max_discard) && max_discard > 0;
}

std::string file_identity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return identity_of(st);
}

std::string detect_image_format(const std::string& h) {
  if (starts_with(h, "QFI\xfb", 4)) return "qcow2";  // qcow and qcow2 share the magic
  if (starts_with(h, "KDMV", 4) || starts_with(h, "# Disk DescriptorFile", 21)) return "vmdk";
  if (starts_with(h, "vhdxfile", 8)) return "vhdx";
  if (starts_with(h, "QED\0", 4)) return "qed";
  if (starts_with(h, "conectix", 8)) return "vpc";
  // VDI: signature 0xbeda107f little-endian at offset 0x40.
  if (starts_with(h, "\x7f\x10\xda\xbe", 4, 0x40)) return "vdi";
  return "";
}

bool extension_names_format(const std::string& path, const std::string& format) {
  // Only formats whose every file starts with its header. A raw vmdk extent ("-flat.vmdk")
  // and a fixed VHD (footer only) are raw disks with those extensions: a guest could write a
  // descriptor naming any host file into their first sector. vmdk and vpc need format=.
  static const std::vector<std::pair<std::string, std::string>> names = {
      {".qcow2", "qcow2"}, {".vhdx", "vhdx"}, {".vdi", "vdi"}, {".qed", "qed"}};
  const std::string base = path.substr(path.rfind('/') + 1);
  for (const auto& [ext, f] : names)
    if (f == format && base.size() > ext.size() &&
        base.compare(base.size() - ext.size(), ext.size(), ext) == 0)
      return true;
  return false;
}

ImageInfo inspect_image(const ImageSpec& spec) {
  const std::string& given = spec.path;
  ImageInfo info;

  char resolved[PATH_MAX];
  if (!::realpath(given.c_str(), resolved)) {
    int e = errno;
    throw Error(given, e == ELOOP ? "symlink loop" : errno_string(e));
  }
  info.canonical_path = resolved;
  const std::string& p = info.canonical_path;

  // The kernel splits the control string on ',' and '\n', so such a path cannot be passed.
  if (p.find_first_of(",\n") != std::string::npos)
    throw Error(given, "path contains ',' or a newline, which LIO's control string cannot "
                       "carry; rename the file or link it from a plain path");
  if (p.size() > kMaxKernelPath)
    throw Error(given, fmt::format("canonical path is {} bytes, LIO takes at most {}", p.size(),
                                   kMaxKernelPath));

  struct stat st;
  if (::stat(p.c_str(), &st) != 0) throw Error(given, errno_string(errno));
  if (S_ISREG(st.st_mode)) {
    info.kind = ImageKind::kFile;
    info.size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    info.kind = ImageKind::kBlockDevice;
  } else {
    throw Error(given, S_ISDIR(st.st_mode) ? "is a directory, not an image"
                                           : "is not a regular file or block device");
  }

  // O_RDONLY only: never create, never change the image while checking it.
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw Error(given, "cannot open: " + errno_string(errno));
  // What is checked below is what this descriptor reads; the path must still name it.
  struct stat opened;
  if (::fstat(fd.get(), &opened) != 0) throw Error(given, "cannot stat: " + errno_string(errno));
  info.file_id = identity_of(opened);
  if (info.file_id != identity_of(st))
    throw Error(given, "changed while it was being checked");
  if (info.kind == ImageKind::kBlockDevice) {
    uint64_t bytes = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0)
      throw Error(given, "cannot read device size: " + errno_string(errno));
    info.size = bytes;
    info.discard_supported = block_device_discards(
        fmt::format("/sys/dev/block/{}:{}", major(st.st_rdev), minor(st.st_rdev)));
  }
  // A block device's kernel name changes (loop devices, renumbered disks); the names in
  // /dev/disk/by-*, /dev/zvol and /dev/mapper do not, so identity follows them. Files keep
  // their canonical path.
  info.identity_name = p;
  if (info.kind == ImageKind::kBlockDevice) {
    std::string named = lexically_absolute(given);
    if (is_stable_device_name(named)) info.identity_name = named;
  }

  if (info.size == 0) throw Error(given, "image is empty (size 0)");
  info.format = spec.format.empty() ? "raw" : spec.format;
  if (spec.format.empty()) {
    // A raw disk's first sector is the guest's: a guest that writes a qcow2 header there
    // (with a backing file naming any host file) must not turn its disk into that format
    // at the next start. A header counts only in a file whose name says the same format;
    // anywhere else it is refused, and format= decides.
    std::string header(512, '\0');
    ssize_t n = ::pread(fd.get(), header.data(), header.size(), 0);
    if (n < 0) throw Error(given, "cannot read: " + errno_string(errno));
    header.resize(static_cast<size_t>(n));
    const std::string found = detect_image_format(header);
    if (!found.empty() && (info.kind != ImageKind::kFile || !extension_names_format(p, found)))
      throw Error(given, fmt::format("has a {0} header but its name does not say {0}: set format={0} to serve it "
                                     "as {0}, or format=raw if it is a raw disk",
                                     found));
    if (!found.empty()) info.format = found;
  }
  if (info.served()) {
    // The daemon reads the file; LIO serves its NBD device, whose size the format decides.
    if (info.kind != ImageKind::kFile)
      throw Error(given, fmt::format("format {} is served from image files only, not block devices", info.format));
    // A read-only export offers no TRIM, so its NBD device cannot discard and iblock refuses
    // emulate_tpu=1 there; a writable one with discard=unmap always offers it.
    info.discard_supported = !spec.readonly;
    return info;
  }
  if (info.size % spec.block_size != 0)
    throw Error(given, fmt::format("size {} is not a multiple of block-size {}", info.size,
                                   spec.block_size));

  if (spec.cache == CacheMode::kNone && info.kind == ImageKind::kFile) {
    // fd_async_io on a file system without O_DIRECT (tmpfs) oopses the kernel on the first
    // guest write (generic_file_direct_write). Prove O_DIRECT works before asking for it.
    UniqueFd direct(::open(p.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (direct.get() < 0)
      throw Error(given, fmt::format("cache=none needs O_DIRECT, which this file system refuses "
                                     "({}); use cache=writeback",
                                     errno_string(errno)));
  }
  return info;
}

}  // namespace qemu_lio
