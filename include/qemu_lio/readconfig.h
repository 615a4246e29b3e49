#pragma once
// A QEMU -readconfig file (EVE-OS writes its VMs this way) split into what qemu-lio keeps
// byte for byte and the vhost-scsi [drive] sections it replaces by [device] sections.

#include <string>
#include <utility>
#include <vector>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// A [device] section that referred to a vhost-scsi drive (drive = "ID") and is left out of
/// the rewritten file, because that drive no longer exists for QEMU.
struct DroppedDevice {
  std::string id;     ///< the section's "ID" ([device "ID"]); empty for a bare [device]
  std::string drive;  ///< the drive it referred to
  int line = 0;       ///< 1-based line of its header
};

/// A parsed -readconfig file.
struct ReadConfig {
  /// One piece of the file, in file order.
  struct Chunk {
    enum class Kind {
      kVerbatim,       ///< kept byte for byte: comments, blank lines, every other section
      kVhostDrive,     ///< a [drive] section with if = "vhost-scsi": replaced by a [device]
      kDroppedDevice,  ///< a [device] section that used a vhost-scsi drive: left out
    };
    Kind kind = Kind::kVerbatim;
    std::string text;      ///< the bytes as read (render emits them for kVerbatim only)
    int line = 0;          ///< 1-based line of the chunk's first line
    std::string id;        ///< kVhostDrive: the "ID" of [drive "ID"] (may be empty)
    ImageSpec spec;        ///< kVhostDrive: the disk, mapped as drive_options_to_image() does
  };
  std::vector<Chunk> chunks;                   ///< the whole file, in order
  std::vector<DroppedDevice> dropped_devices;  ///< the kDroppedDevice chunks, described

  /// The specs of the kVhostDrive chunks, in file order: render_readconfig() wants one
  /// device property list per entry, in this order.
  std::vector<ImageSpec> images() const;
};

/// Parses QEMU's readconfig syntax: [group] or [group "id"] headers, key = "value" lines,
/// '#' comments, blank lines. A [drive] section with if = "vhost-scsi" becomes a kVhostDrive
/// chunk; its "ID" is the spec's id unless it has an id key. A [device] section whose
/// drive = "ID" names such a drive is dropped; its bus and addr (if it was a PCI device)
/// and bootindex carry over to the vhost-scsi device, which so takes its place in the
/// guest's PCI topology. Throws UsageError, naming the section and line, for a malformed
/// line or a bad key in a vhost-scsi section; anything wrong elsewhere is QEMU's to report.
ReadConfig parse_readconfig(const std::string& text);

/// The file with each kVhostDrive chunk i replaced by [device "ID"] and one `  key = "value"`
/// line per pair of devices[i] (from device_properties(), driver first; an id pair goes into
/// the header); an empty devices[i] drops chunk i (a further LUN of a controller, served by
/// its first disk's device). Dropped devices are left out, everything else is emitted unchanged. Throws
/// Error if devices has the wrong size or a value cannot be written in QEMU's syntax.
std::string render_readconfig(const ReadConfig& rc,
                              const std::vector<std::vector<std::pair<std::string, std::string>>>& devices);

}  // namespace qemu_lio
