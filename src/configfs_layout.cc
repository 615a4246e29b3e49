#include "qemu_lio/configfs_layout.h"

#include <fmt/core.h>

#include <cctype>
#include <vector>

#include "qemu_lio/image_spec.h"

namespace qemu_lio::layout {
namespace {

std::vector<std::string> split(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) return parts;
    start = slash + 1;
  }
}

// "<prefix><number>" with the number as the kernel parses it: kstrtoul base 0 for HBA and
// LUN indexes (decimal, octal, 0x-hex), base 10 for tpgt_. No sign, no spaces, no newline.
bool parse_index(const std::string& s, const std::string& prefix, int& out, bool base0 = true) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string num = s.substr(prefix.size());
  const bool hex = base0 && num.size() > 2 && num[0] == '0' && (num[1] == 'x' || num[1] == 'X');
  const std::string digits = hex ? num.substr(2) : num;
  if (digits.empty() || digits.size() > 8) return false;
  for (char c : digits)
    if (!(c >= '0' && c <= '9') && !(hex && std::isxdigit(static_cast<unsigned char>(c))))
      return false;
  const int base = hex ? 16 : (base0 && digits.size() > 1 && digits[0] == '0') ? 8 : 10;
  if (base == 8 && digits.find_first_of("89") != std::string::npos) return false;
  out = static_cast<int>(std::stol(digits, nullptr, base));
  return true;
}

}  // namespace

std::string hba_name(const std::string& plugin, int index) {
  return fmt::format("{}_{}", plugin, index);
}
std::string hba(const std::string& hba) { return kCore + "/" + hba; }
std::string storage_object(const std::string& h, const std::string& object) {
  return hba(h) + "/" + object;
}
std::string vhost_target(const std::string& wwn) { return kVhost + "/" + wwn; }
std::string tpg(const std::string& wwn, int tpgt) {
  return fmt::format("{}/tpgt_{}", vhost_target(wwn), tpgt);
}
std::string nexus(const std::string& wwn, int tpgt) { return tpg(wwn, tpgt) + "/nexus"; }
std::string lun(const std::string& wwn, int tpgt, int l) {
  return fmt::format("{}/lun/lun_{}", tpg(wwn, tpgt), l);
}
std::string lun_link(const std::string& wwn, int tpgt, int l, const std::string& name) {
  return lun(wwn, tpgt, l) + "/" + name;
}
std::string acl(const std::string& wwn, int tpgt, const std::string& initiator) {
  return tpg(wwn, tpgt) + "/acls/" + initiator;
}
std::string acl_lun(const std::string& wwn, int tpgt, const std::string& initiator, int mapped) {
  return fmt::format("{}/lun_{}", acl(wwn, tpgt, initiator), mapped);
}
std::string acl_lun_link(const std::string& wwn, int tpgt, const std::string& initiator,
                         int mapped, const std::string& name) {
  return acl_lun(wwn, tpgt, initiator, mapped) + "/" + name;
}

bool is_hba_attribute(const std::string& name) { return name == "hba_info" || name == "hba_mode"; }

bool is_safe_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (unsigned char c : name)
    if (c == '/' || c <= 0x20 || c == 0x7f) return false;
  return true;
}

bool parse_hba_name(const std::string& name, std::string& plugin, int& index) {
  auto us = name.rfind('_');
  if (us == std::string::npos || us == 0) return false;
  // The kernel splits at the last '_' of names like rd_mcp_0 (target_core_call_addhbatotarget).
  std::string p = name.substr(0, us);
  for (char c : p)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  if (!parse_index(name.substr(us), "_", index)) return false;
  plugin = p;
  return true;
}

Parsed parse(const std::string& path) {
  using K = Parsed::Kind;
  Parsed none;
  std::vector<std::string> c = split(path);
  for (const std::string& part : c)
    if (!is_safe_name(part)) return none;
  if (c.size() < 3 || c[0] != "target") return none;
  Parsed p;
  if (c[1] == "core") {
    if (!parse_hba_name(c[2], p.plugin, p.hba_index)) return none;
    p.hba = c[2];
    if (c.size() == 3) {
      p.kind = K::kHba;
      return p;
    }
    if (c.size() == 4 && !is_hba_attribute(c[3])) {
      p.object = c[3];
      p.kind = K::kStorageObject;
      return p;
    }
    return none;
  }
  if (c[1] != "vhost") return none;
  p.wwn = c[2];
  if (c.size() == 3) {
    p.kind = K::kVhostTarget;
    return p;
  }
  if (!parse_index(c[3], "tpgt_", p.tpgt, false)) return none;
  if (c.size() == 4) {
    p.kind = K::kTpg;
    return p;
  }
  if (c.size() == 5 && c[4] == "nexus") {
    p.kind = K::kNexus;
    return p;
  }
  if (c.size() >= 6 && c[4] == "lun") {
    if (!parse_index(c[5], "lun_", p.lun)) return none;
    if (c.size() == 6) p.kind = K::kLun;
    else if (c.size() == 7) p.link = c[6], p.kind = K::kLunLink;
    else return none;
    return p;
  }
  if (c.size() >= 6 && c[4] == "acls") {
    p.initiator = c[5];
    if (c.size() == 6) {
      p.kind = K::kAcl;
      return p;
    }
    if (!parse_index(c[6], "lun_", p.mapped_lun)) return none;
    if (c.size() == 7) p.kind = K::kAclLun;
    else if (c.size() == 8) p.link = c[7], p.kind = K::kAclLunLink;
    else return none;
    return p;
  }
  return none;
}

bool is_qemu_lio_undo(const Undo& u) {
  using K = Parsed::Kind;
  const Parsed p = parse(u.path);
  // Every name under target/vhost that qemu-lio makes is a naa. wwn (the user's wwn= is
  // checked by is_valid_naa too); anything else there belongs to another tool.
  if (!p.wwn.empty() && !is_valid_naa(p.wwn)) return false;
  if (!p.initiator.empty() && !is_valid_naa(p.initiator)) return false;
  // Only a share=on disk's HBA and storage object are removed "if unused".
  if (u.shared && !(u.kind == Undo::Kind::kRmdir && (p.kind == K::kHba || p.kind == K::kStorageObject)))
    return false;
  switch (u.kind) {
    case Undo::Kind::kRmdir:
      switch (p.kind) {
        case K::kHba: return p.plugin == "fileio" || p.plugin == "iblock";
        case K::kStorageObject: return p.plugin == "fileio" || p.plugin == "iblock";
        case K::kVhostTarget:
        case K::kTpg:
        case K::kLun:
        case K::kAcl:
        case K::kAclLun: return true;
        default: return false;
      }
    case Undo::Kind::kUnlink: return p.kind == K::kLunLink || p.kind == K::kAclLunLink;
    // The only attribute qemu-lio restores is the nexus, and only by clearing it.
    case Undo::Kind::kWrite: return p.kind == K::kNexus && u.value == "NULL";
  }
  return false;
}

}  // namespace qemu_lio::layout
