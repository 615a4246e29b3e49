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
/// QEMU's ",," escaping. Returns nullopt unless if=vhost-scsi; throws as
/// drive_options_to_image().
std::optional<ImageSpec> drive_to_image(std::string_view opts);

}  // namespace qemu_lio
