#include "qemu_lio/libvirt_domain.h"

#include <fmt/core.h>
#include <pugixml.hpp>

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

// The image keys that describe the LIO side of a disk. QEMU's device keys (bootindex,
// num-queues, max-sectors, id, bus, addr) belong to libvirt's <hostdev>, which makes the
// device; wwn is the wwpn= attribute.
const std::set<std::string> kLioKeys = {"serial", "block-size", "cache", "discard", "readonly", "format"};

std::string local_name(const char* qname) {
  const char* colon = std::strchr(qname, ':');
  return colon ? colon + 1 : qname;
}

std::string prefix_of(const char* qname) {
  const char* colon = std::strchr(qname, ':');
  return colon ? std::string(qname, colon) : "";
}

// The element's namespace as declared on itself or an ancestor (libvirt keeps a metadata
// element's declaration on the element).
std::string namespace_of(pugi::xml_node n) {
  const std::string p = prefix_of(n.name());
  const std::string attr = p.empty() ? "xmlns" : "xmlns:" + p;
  for (pugi::xml_node a = n; a; a = a.parent())
    if (pugi::xml_attribute d = a.attribute(attr.c_str())) return d.value();
  return "";
}

ImageSpec disk_from(pugi::xml_node disk, size_t index) {
  const std::string what = fmt::format("<lio:disk> #{}", index + 1);
  std::string file, wwpn, keys;
  for (pugi::xml_attribute a : disk.attributes()) {
    const std::string k = a.name(), v = a.value();
    if (k == "file") file = v;
    else if (k == "wwpn") wwpn = v;
    else if (kLioKeys.count(k)) keys += "," + k + "=" + escape_commas(v);
    else if (k.rfind("xmlns", 0) == 0) continue;
    else if (k == "wwn")
      throw Error(what, "wwn= is spelled wwpn= here, as in libvirt's <hostdev>");
    else
      throw Error(what, fmt::format("attribute '{}' is not an image key qemu-lio takes from libvirt "
                                    "(known: file, wwpn, {}; QEMU's device keys belong to the <hostdev>)",
                                    k, "serial, block-size, cache, discard, readonly, format"));
  }
  if (file.empty()) throw Error(what, "has no file= attribute");
  if (wwpn.empty()) throw Error(what, "has no wwpn= attribute");
  if (!is_valid_naa(wwpn)) throw Error(what, fmt::format("wwpn '{}' is not naa. followed by 16 hex digits", wwpn));
  if (file[0] != '/') throw Error(what, fmt::format("file '{}' is not an absolute path", file));
  ImageSpec spec;
  try {
    spec = parse_image_spec(escape_commas(file) + keys);
  } catch (const Error& e) {
    throw Error(what, e.what());
  }
  spec.wwn = wwpn;
  return spec;
}

}  // namespace

std::optional<LibvirtDomain> parse_libvirt_domain(const std::string& xml) {
  pugi::xml_document doc;
  pugi::xml_parse_result ok = doc.load_buffer(xml.data(), xml.size());
  if (!ok) {
    // A domain that is not ours must never be refused because of us; one that names our
    // namespace must not start without its disks.
    if (xml.find(kLibvirtNamespace) == std::string::npos) return std::nullopt;
    throw Error("domain XML", fmt::format("cannot parse at offset {}: {}", ok.offset, ok.description()));
  }
  pugi::xml_node domain = doc.child("domain");
  pugi::xml_node ours;
  for (pugi::xml_node m : domain.child("metadata").children())
    if (local_name(m.name()) == "disks" && namespace_of(m) == kLibvirtNamespace) ours = m;
  if (!ours) return std::nullopt;

  LibvirtDomain d;
  d.name = domain.child_value("name");
  d.uuid = domain.child_value("uuid");
  if (d.name.empty()) throw Error("domain XML", "has no <name>");
  if (d.uuid.empty()) throw Error("domain " + d.name, "has no <uuid>");
  std::set<std::string> hostdevs;
  for (pugi::xml_node h : domain.child("devices").children("hostdev")) {
    pugi::xml_node src = h.child("source");
    if (std::string(h.attribute("type").value()) == "scsi_host" &&
        std::string(src.attribute("protocol").value()) == "vhost")
      hostdevs.insert(src.attribute("wwpn").value());
  }
  size_t index = 0;
  std::set<std::string> seen;
  for (pugi::xml_node disk : ours.children()) {
    if (disk.type() != pugi::node_element) continue;
    if (local_name(disk.name()) != "disk")
      throw Error("<lio:disks>", fmt::format("unexpected element <{}>", disk.name()));
    ImageSpec spec = disk_from(disk, index++);
    const std::string what = fmt::format("<lio:disk wwpn=\"{}\">", *spec.wwn);
    if (!seen.insert(*spec.wwn).second) throw Error(what, "names the same wwpn as an earlier <lio:disk>");
    if (!hostdevs.count(*spec.wwn))
      throw Error(what, "no <hostdev type='scsi_host'><source protocol='vhost'> in <devices> uses "
                        "this wwpn, so the guest would never see the disk");
    d.disks.push_back(std::move(spec));
  }
  if (d.disks.empty()) throw Error("<lio:disks>", "names no <lio:disk>");
  return d;
}

std::string libvirt_domain_uuid(const std::string& xml) {
  pugi::xml_document doc;
  if (!doc.load_buffer(xml.data(), xml.size())) return "";
  return doc.child("domain").child_value("uuid");
}

std::string libvirt_xml_for(const std::string& file, const ImageSpec& spec, const std::string& wwn) {
  if (spec.bootindex || spec.num_queues || spec.id || spec.bus || spec.addr || spec.max_sectors != 16384 ||
      spec.controller)
    throw UsageError("image " + spec.path,
                     "bootindex, num-queues, max-sectors, id, bus, addr and controller are QEMU's device keys: "
                     "with libvirt, set them on the <hostdev> (<boot order>, <address>; one <hostdev> per disk)");
  if (spec.share)
    throw UsageError("image " + spec.path,
                     "share=on is not offered through libvirt's hook (its <lio:disk> has no share key); run the "
                     "cluster's VMs with qemu-lio directly");
  pugi::xml_document doc;
  doc.append_child(pugi::node_comment).set_value(" in <devices>: ");
  pugi::xml_node h = doc.append_child("hostdev");
  h.append_attribute("mode") = "subsystem";
  h.append_attribute("type") = "scsi_host";
  pugi::xml_node src = h.append_child("source");
  src.append_attribute("protocol") = "vhost";
  src.append_attribute("wwpn") = wwn.c_str();
  doc.append_child(pugi::node_comment)
      .set_value(" in <metadata> (one <lio:disks> per domain, one <lio:disk> per image): ");
  pugi::xml_node disks = doc.append_child("lio:disks");
  disks.append_attribute("xmlns:lio") = kLibvirtNamespace;
  pugi::xml_node d = disks.append_child("lio:disk");
  d.append_attribute("wwpn") = wwn.c_str();
  d.append_attribute("file") = file.c_str();
  if (spec.serial) d.append_attribute("serial") = spec.serial->c_str();
  if (spec.block_size != 512) d.append_attribute("block-size") = spec.block_size;
  if (spec.cache != CacheMode::kWriteback) d.append_attribute("cache") = to_string(spec.cache);
  if (!spec.discard) d.append_attribute("discard") = "off";
  if (spec.readonly) d.append_attribute("readonly") = "on";
  if (spec.format == "raw") d.append_attribute("format") = "raw";
  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default | pugi::format_no_declaration);
  return out.str();
}

}  // namespace qemu_lio
