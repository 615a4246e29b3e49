#pragma once
// QEMU's command line, modelled in one place: what qemu-lio reads from it (vhost-scsi disks
// from -drive if=vhost-scsi, -readconfig drive sections and -lio-image; -name, -smp,
// -daemonize, -pidfile) and what it writes into it (the -device vhost-scsi-pci options, the
// private -readconfig copies). Both front ends use it: `run` and the drop-in qemu-system-*.

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/config_file.h"
#include "qemu_lio/image_spec.h"
#include "qemu_lio/plan.h"
#include "qemu_lio/readconfig.h"

namespace qemu_lio {

/// A -readconfig file that holds vhost-scsi drives, or any -readconfig that is not a regular
/// file (a pipe, /dev/stdin, /dev/fd/N): that one was read here once and QEMU cannot read it
/// again, so it needs a copy even with no vhost drive in it (count 0).
struct ReadConfigUse {
  size_t arg_index = 0;     ///< index in QemuCommandLine::argv of the FILE argument
  ReadConfig parsed;        ///< the whole text: render_readconfig(parsed, {}) gives it back
  size_t first_image = 0;   ///< its drives are images [first_image, first_image + count)
  size_t count = 0;
  bool stream = false;      ///< not a regular file: read once, QEMU must get a copy
};

/// QEMU's argv, with what qemu-lio must act on taken out.
struct QemuCommandLine {
  std::vector<std::string> argv;  ///< vhost drives and -lio-image removed; argv[0] kept
  std::vector<ImageSpec> images;
  /// Per image from the command line: the argv index before which "-device X" goes
  /// (argv.size() appends). Images from -readconfig have none.
  std::vector<std::optional<size_t>> slots;
  std::vector<ReadConfigUse> readconfigs;
  bool daemonize = false;
  std::optional<std::string> pidfile;
  std::optional<int> smp_cpus;  ///< from -smp (or [smp-opts] in a readconfig)
  std::optional<std::string> name;  ///< the last -name value, as given
  /// The machine type of -machine/-M ("q35", "pc-q35-7.2"), if given.
  std::optional<std::string> machine;
  /// The caller writes -device as JSON (libvirt does since QEMU 6.0): ours follow suit.
  bool json_devices = false;
};

/// True if `argv0`'s file name starts with "qemu-system-".
bool is_dropin_name(const std::string& argv0);

/// Scans QEMU's argv. Reads -readconfig files to find vhost drives (an unreadable file is
/// left for QEMU to complain about); every one that is not a regular file is recorded. A
/// -device whose drive= names a vhost drive of the command line (-drive id=ID,if=vhost-scsi)
/// is taken out; its bootindex, and the bus and addr of a PCI device, go to the vhost-scsi
/// device. Throws UsageError for a bad vhost drive.
QemuCommandLine scan_qemu_argv(const std::vector<std::string>& argv);

/// Puts `--image` disks first (disk0, disk1, ...), with their -device options at the end of
/// the argv, after the user's own options.
void prepend_images(QemuCommandLine& req, const std::vector<ImageSpec>& specs);

/// The QEMU device properties for one disk, in order, starting with driver=vhost-scsi-pci.
std::vector<std::pair<std::string, std::string>> device_properties(const DiskPlan& d);

/// The -device value for one disk: "vhost-scsi-pci,wwpn=...,max_sectors=...".
std::string device_option(const DiskPlan& d);

/// The -device value for one disk as JSON: {"driver":"vhost-scsi-pci","wwpn":"...",...}.
std::string device_json(const DiskPlan& d);

/// The id prefix of the hot-plug ports qemu-lio adds ("qemu-lio-port0", ...).
inline const std::string kHotplugPortPrefix = "qemu-lio-port";

/// True for a q35 machine type: its root bus takes no hot-plugged device.
bool is_q35(const std::string& machine);

/// `count` empty pcie-root-ports for attach, as -device options (JSON ones for a JSON caller).
std::vector<std::string> hotplug_port_options(int count, bool json);

/// The final argv: -device options in the drives' places (all at the end, as JSON, when the
/// caller's own -device options are JSON), readconfig FILEs replaced by
/// `readconfig_copies[i]` (rendered by the caller from the plan's disks).
std::vector<std::string> finalize_argv(const QemuCommandLine& req, const Plan& plan,
                                       const std::vector<std::string>& readconfig_copies);

/// The cpu count of a -smp value ("4", "cpus=4,sockets=1", "sockets=2,cores=2").
std::optional<int> parse_smp(const std::string& value);

/// The real QEMU for drop-in name `argv0`: $QEMU_LIO_QEMU, else `qemu =` of the config,
/// else the same file name on PATH, skipping qemu-lio's own file (compared by inode).
/// Throws Error (exit 127) if none, or if the choice is qemu-lio itself.
std::string find_real_qemu(const std::string& argv0, const Config& cfg);

}  // namespace qemu_lio
