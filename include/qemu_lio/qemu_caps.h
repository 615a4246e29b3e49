#pragma once
// What a QEMU binary can do, asked of the binary itself (`-device help`, then
// `-device vhost-scsi-pci,help`) and cached per binary in the state directory, as libvirt
// caches capabilities: a start with disks must not pay two QEMU runs each time, and a QEMU
// without vhost-scsi-pci (RHEL 9's qemu-kvm) must be refused before anything is provisioned.
// Pass-through never probes.

#include <string>

namespace qemu_lio {

/// The answers.
struct QemuCaps {
  /// The binary printed a device list: it is a QEMU whose answers count. Anything else (a
  /// wrapper script, a stand-in) is not judged.
  bool is_qemu = false;
  bool vhost_scsi_pci = false;        ///< the device exists
  bool worker_per_virtqueue = false;  ///< vhost-scsi-pci has the property (QEMU 9.0+)
};

/// Reads the output of `-device help` and of `-device vhost-scsi-pci,help`.
QemuCaps parse_qemu_caps(const std::string& device_help, const std::string& vhost_help);

/// Runs the binary twice, each run bounded (a QEMU that does not answer within
/// `timeout_seconds` is killed and counts as no answer).
QemuCaps probe_qemu_caps(const std::string& exe, int timeout_seconds = 30);

/// probe_qemu_caps, cached under `<state_dir>/caps/` and keyed by the binary's path, device,
/// inode, size and mtime, so an upgraded QEMU is probed again. A cache that cannot be
/// written costs a probe next time, nothing else.
QemuCaps cached_qemu_caps(const std::string& exe, const std::string& state_dir);

/// Throws Error naming `exe` if it is a QEMU without vhost-scsi-pci.
void require_vhost_scsi(const QemuCaps& caps, const std::string& exe);

}  // namespace qemu_lio
