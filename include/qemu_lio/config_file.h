#pragma once
// /etc/qemu-lio.conf: host-wide settings for the drop-in mode, where the caller (libvirt,
// EVE, a script) cannot pass qemu-lio options.

#include <optional>
#include <string>
#include <vector>

namespace qemu_lio {

/// How a VM with vhost-scsi disks is run.
enum class LaunchMode {
  kSupervise,  ///< QEMU is our child; we return once the kernel is clean (`run`'s default)
  kExec,       ///< we exec QEMU in place (it keeps our pid); the backstop tears down
               ///< (the drop-in's default)
};

/// `worker_per_virtqueue = auto|on|off`: QEMU's per-virtqueue vhost workers (vhost_caps.h).
enum class WorkerSetting { kAuto, kOn, kOff };

/// The settings of the config file.
struct Config {
  std::optional<std::string> qemu;  ///< `qemu = PATH`: the real QEMU binary
  /// `mode = supervise|exec`; unset, each front end picks its own default (LaunchRequest).
  std::optional<LaunchMode> mode;
  std::vector<std::string> allow;   ///< `allow = DIR`, repeatable: images must be under one
  /// `hotplug_ports = N`: empty pcie-root-ports a q35 VM gets for `qemu-lio attach`.
  int hotplug_ports = 0;
  WorkerSetting worker_per_virtqueue = WorkerSetting::kAuto;
  std::string source;               ///< the file read ("" if none)
};

/// The config file path: $QEMU_LIO_CONFIG, else /etc/qemu-lio.conf.
std::string config_path();

/// Parses config text; `source` names it in errors. Throws UsageError naming file:line for
/// unknown keys or bad values.
Config parse_config(const std::string& text, const std::string& source);

/// Loads config_path(); a missing file gives the defaults.
Config load_config();

}  // namespace qemu_lio
