#pragma once
// What qemu-lio reads from, and writes for, a libvirt domain's XML: the vhost hostdevs libvirt
// attaches (libvirt opens /dev/vhost-scsi and passes the fd to its unprivileged QEMU) and,
// in <metadata>, which image backs each of them:
//
//   <metadata>
//     <lio:disks xmlns:lio="urn:qemu-lio:libvirt:1">
//       <lio:disk wwpn="naa.5001405..." file="/var/lib/images/a.raw" cache="none"/>
//     </lio:disks>
//   </metadata>
//   <devices>
//     <hostdev mode="subsystem" type="scsi_host">
//       <source protocol="vhost" wwpn="naa.5001405..."/>
//     </hostdev>
//   </devices>

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// The XML namespace of qemu-lio's metadata element.
inline constexpr const char* kLibvirtNamespace = "urn:qemu-lio:libvirt:1";

/// A domain as the hook sees it.
struct LibvirtDomain {
  std::string name;
  std::string uuid;
  std::vector<ImageSpec> disks;  ///< one per <lio:disk>, its wwn set from wwpn=
};

/// Parses a domain's XML. Returns nullopt for a domain without qemu-lio's metadata (not
/// ours: the hook leaves it alone). Throws Error naming the element and the cause for
/// metadata that is ours but wrong, or a <lio:disk> that no vhost <hostdev> uses.
std::optional<LibvirtDomain> parse_libvirt_domain(const std::string& xml);

/// The domain's <uuid>, or "" if the XML has none or cannot be parsed. release and
/// reconnect need nothing else: they act on the journals made for that UUID, whatever the
/// XML says now (a hostdev detached or metadata edited while the domain ran).
std::string libvirt_domain_uuid(const std::string& xml);

/// The <hostdev> and the metadata element for one image (`file` canonical, `spec` as the
/// user gave it, `wwn` its target), ready to paste into `virsh edit`.
std::string libvirt_xml_for(const std::string& file, const ImageSpec& spec, const std::string& wwn);

}  // namespace qemu_lio
