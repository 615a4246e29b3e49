#pragma once
// QEMU's own disk syntax (-drive, and [drive] sections of -readconfig) translated into
// ImageSpec, so that qemu-lio can stand in for qemu-system-*.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// A drive's options as key/value pairs, in the order given (QEMU lets the last one win).
using DriveOptions = std::vector<std::pair<std::string, std::string>>;

/// The interface name that marks a drive as ours: if=vhost-scsi.
inline constexpr const char* kVhostScsiInterface = "vhost-scsi";

/// Maps the options of one drive onto an ImageSpec. Returns nullopt unless `if` is
/// vhost-scsi: other drives are QEMU's business. `name` names the drive in errors
/// ("-drive file=a.img", "[drive \"d0\"] at line 12"). Throws UsageError for a missing
/// file, a non-raw format, an unknown or unsupported key, or a bad value. Both -drive and
/// -readconfig go through here, so the two syntaxes cannot drift apart.
std::optional<ImageSpec> drive_options_to_image(const std::string& name, const DriveOptions& opts);

/// Parses the value of one -drive option ("file=a.img,if=vhost-scsi,cache=none"), with
/// QEMU's ",," escaping. `first` goes ahead of the drive's own options (which so win over
/// it): what a replaced device contributes. Returns nullopt unless if=vhost-scsi; throws as
/// drive_options_to_image().
std::optional<ImageSpec> drive_to_image(std::string_view opts, const DriveOptions& first = {});

/// A device (-device, or a [device] section of -readconfig) whose drive= names a vhost-scsi
/// drive. QEMU would fail on it ("drive not found"), so it is left out and the vhost-scsi
/// device takes its place.
struct ReplacedDevice {
  std::string name;                      ///< names it in errors
  std::string driver;                    ///< "virtio-blk-pci", "scsi-hd", ...
  std::optional<std::string> bootindex;  ///< its bootindex, if it had one
  std::optional<std::string> bus;        ///< its bus, if it had one
  std::optional<std::string> addr;       ///< its addr, if it had one
  std::optional<std::string> share_rw;   ///< its share-rw (a disk several VMs write)
};

/// The drive options a replaced device contributes: its bootindex and share-rw (device
/// properties in QEMU). They go ahead of the drive's own, so a key on the drive wins.
DriveOptions replaced_device_options(const ReplacedDevice& dev);

/// If the replaced device was a PCI device (its driver ends in "-pci"), gives `spec` its bus
/// and addr, so that vhost-scsi-pci takes its slot and the guest sees the disk at the same
/// address. A device on another kind of bus (scsi-hd on a SCSI HBA, ide-hd) has no slot to
/// pass on. Throws UsageError, naming the device, for a value that cannot go into -device.
void take_pci_slot(ImageSpec& spec, const ReplacedDevice& dev);

}  // namespace qemu_lio
