#include "qemu_lio/image_policy.h"

#include <sys/stat.h>

#include <fmt/core.h>

#include <cerrno>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

// Why `dir` would let someone other than root replace an entry in it, or "" if it does not.
// As OpenSSH's StrictModes and sudo's checks: the owner must be root and no group or other
// write bit may be set; a sticky directory only lets an entry's owner rename or remove it
// (fs/namei.c may_delete), so it is safe for an image root owns.
std::string writable_by_others(const std::string& dir, const struct stat& st, bool image_root_owned) {
  const bool group_or_other = st.st_mode & (S_IWGRP | S_IWOTH);
  if (st.st_uid == 0 && !group_or_other) return "";
  if ((st.st_mode & S_ISVTX) && image_root_owned) return "";
  if (st.st_uid != 0)
    return fmt::format("directory {} on its path is owned by uid {}, not root", dir, st.st_uid);
  return fmt::format("directory {} on its path is writable by {} (mode {:04o}) and {}", dir,
                     (st.st_mode & S_IWOTH) ? "others" : "its group", st.st_mode & 07777,
                     (st.st_mode & S_ISVTX) ? "the image is not root's" : "not sticky");
}

}  // namespace

void check_image_policy(const Config& cfg, const ImageSpec& spec, const ImageInfo& info) {
  if (cfg.allow.empty()) return;
  const std::string& p = info.canonical_path;
  bool allowed = false;
  for (const std::string& dir : cfg.allow)
    if (dir == "/" || p.rfind(dir + "/", 0) == 0) allowed = true;
  if (!allowed)
    throw Error(spec.path, fmt::format("{} is outside the directories allowed by {} "
                                       "(allow = ...)",
                                       p, cfg.source));

  struct stat image;
  if (::stat(p.c_str(), &image) != 0) throw Error(spec.path, errno_string(errno));
  const bool image_root_owned = image.st_uid == 0;
  // Every directory from / to the image's parent: the canonical path has no symlinks, "."
  // or "..", so its prefixes are the directories the kernel's lookup walks.
  for (size_t slash = 0; slash != std::string::npos && slash < p.size();
       slash = p.find('/', slash + 1)) {
    const std::string dir = slash == 0 ? "/" : p.substr(0, slash);
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0)
      throw Error(spec.path, fmt::format("cannot check directory {}: {}", dir, errno_string(errno)));
    std::string why = writable_by_others(dir, st, image_root_owned);
    if (!why.empty())
      throw Error(spec.path, why + ": someone else could swap the image before the kernel "
                                   "opens it (" + cfg.source + " has allow = ...)");
  }
}

}  // namespace qemu_lio
