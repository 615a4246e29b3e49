#include "qemu_lio/lio_inventory.h"

#include <sys/stat.h>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// The fileio info attribute says "... File: /path  Size: ..."; udev_path is optional.
std::string file_from_info(const std::string& info) {
  auto pos = info.find("File: ");
  if (pos == std::string::npos) return "";
  pos += 6;
  auto end = info.find("  ", pos);
  return info.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

std::string read_or_empty(ConfigFs& fs, const std::string& path) {
  try {
    return fs.read(path);
  } catch (const SysError&) {
    return "";  // another tool may be removing the object right now
  }
}

}  // namespace

std::string Backstore::path() const { return layout::storage_object(hba, name); }

Inventory scan_inventory(ConfigFs& fs) {
  Inventory inv;
  for (const std::string& hba : fs.list(layout::kCore)) {
    std::string plugin;
    int index = 0;
    if (!layout::parse_hba_name(hba, plugin, index)) continue;  // alua, or not an HBA
    for (const std::string& so : fs.list(layout::hba(hba))) {
      // Every other entry counts, whatever its name: another tool's object may still
      // serve our image, and the conflict check must see it.
      if (layout::is_hba_attribute(so)) continue;
      Backstore b;
      b.hba = hba;
      b.name = so;
      b.file = trim(read_or_empty(fs, b.path() + "/udev_path"));
      if (b.file.empty()) b.file = file_from_info(read_or_empty(fs, b.path() + "/info"));
      inv.backstores.push_back(b);
    }
  }
  for (const std::string& w : fs.list(layout::kVhost))
    if (w != "discovery_auth" && w != "version") inv.vhost_wwns.push_back(w);
  return inv;
}

FileKey file_key(const std::string& path) {
  struct stat st;
  FileKey k;
  if (::stat(path.c_str(), &st) != 0) return k;
  k.valid = true;
  if (S_ISBLK(st.st_mode)) {
    k.ino = st.st_rdev;  // device nodes in different places name one disk
  } else {
    k.dev = st.st_dev;
    k.ino = st.st_ino;
  }
  return k;
}

}  // namespace qemu_lio
