#pragma once
// The shape of the LIO tree in configfs, in one place: every path qemu-lio builds or reads
// back (HBAs, storage objects, vhost targets, TPGs, LUNs and their links, the nexus, ACLs)
// is made and parsed here, and so is the rule for which undo steps qemu-lio could have
// journalled. Paths are relative to the configfs mount point.

#include <string>

#include "qemu_lio/plan.h"

namespace qemu_lio::layout {

/// Where HBAs live ("target/core").
inline const std::string kCore = "target/core";
/// The vhost fabric directory ("target/vhost").
inline const std::string kVhost = "target/vhost";
/// The name a share=on disk's storage object starts with; the rest is derived from its image.
inline const std::string kSharedObjectPrefix = "qlshared-";

/// An HBA's name: "<plugin>_<index>" ("fileio_3").
std::string hba_name(const std::string& plugin, int index);
/// An HBA directory: "target/core/<hba>". `hba` may be a "$HBA<n>" variable.
std::string hba(const std::string& hba);
/// A storage object: "target/core/<hba>/<object>".
std::string storage_object(const std::string& hba, const std::string& object);
/// A vhost target: "target/vhost/<wwn>".
std::string vhost_target(const std::string& wwn);
/// A target portal group: "target/vhost/<wwn>/tpgt_<tpgt>".
std::string tpg(const std::string& wwn, int tpgt);
/// A TPG's nexus attribute: "<tpg>/nexus".
std::string nexus(const std::string& wwn, int tpgt);
/// A TPG LUN: "<tpg>/lun/lun_<lun>".
std::string lun(const std::string& wwn, int tpgt, int lun);
/// The link that exports a storage object through a LUN: "<lun>/<name>".
std::string lun_link(const std::string& wwn, int tpgt, int lun, const std::string& name);
/// An explicit ACL: "<tpg>/acls/<initiator>".
std::string acl(const std::string& wwn, int tpgt, const std::string& initiator);
/// A mapped LUN of an ACL: "<acl>/lun_<mapped>".
std::string acl_lun(const std::string& wwn, int tpgt, const std::string& initiator, int mapped);
/// The link of a mapped LUN to its TPG LUN: "<acl lun>/<name>".
std::string acl_lun_link(const std::string& wwn, int tpgt, const std::string& initiator,
                         int mapped, const std::string& name);

/// A path split into the LIO object it names.
struct Parsed {
  enum class Kind {
    kNone,           ///< not one of the shapes below
    kHba,            ///< target/core/<plugin>_<N>
    kStorageObject,  ///< target/core/<hba>/<object>
    kVhostTarget,    ///< target/vhost/<wwn>
    kTpg,            ///< <target>/tpgt_<T>
    kNexus,          ///< <tpg>/nexus
    kLun,            ///< <tpg>/lun/lun_<L>
    kLunLink,        ///< <lun>/<name>
    kAcl,            ///< <tpg>/acls/<initiator>
    kAclLun,         ///< <acl>/lun_<M>
    kAclLunLink,     ///< <acl lun>/<name>
  };
  Kind kind = Kind::kNone;
  std::string plugin;     ///< HBA and storage object: "fileio"
  std::string hba;        ///< HBA and storage object: "fileio_3"
  int hba_index = -1;     ///< HBA and storage object: 3
  std::string object;     ///< storage object name
  std::string wwn;        ///< everything under target/vhost
  int tpgt = -1;          ///< TPG and below
  int lun = -1;           ///< kLun, kLunLink
  std::string initiator;  ///< ACLs
  int mapped_lun = -1;    ///< kAclLun, kAclLunLink
  std::string link;       ///< kLunLink, kAclLunLink: the link's own name
};

/// Parses `path`. Every component must be a safe name (see is_safe_name) and every index
/// plain decimal, else the result is kNone: nothing with "..", "." or "//" parses.
Parsed parse(const std::string& path);

/// Splits an HBA name ("fileio_3") into plugin and index; false if it is not one.
bool parse_hba_name(const std::string& name, std::string& plugin, int& index);

/// True if `name` is one of an HBA directory's own attributes (hba_info, hba_mode) rather
/// than a storage object.
bool is_hba_attribute(const std::string& name);

/// True if `name` can be one path component: not empty, not "." or "..", no '/', no
/// whitespace or control characters.
bool is_safe_name(const std::string& name);

/// True if `undo` is a step qemu-lio itself journals: rmdir of an HBA (fileio/iblock), a
/// storage object, a vhost target, a TPG, a TPG LUN, an ACL or an ACL LUN; unlink of a LUN
/// link or an ACL LUN link; or a write of exactly "NULL" to a nexus. gc acts on nothing else.
bool is_qemu_lio_undo(const Undo& undo);

}  // namespace qemu_lio::layout
