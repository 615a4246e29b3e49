#pragma once
// `qemu-lio libvirt-hook`: libvirt's qemu hook (/etc/libvirt/hooks/qemu.d/qemu-lio), for
// libvirt's own unprivileged QEMU. libvirt runs it as root with the domain's XML on stdin:
//   prepare begin    provision the domain's <lio:disk>s; a failure refuses the start
//   release end      QEMU is gone for good: tear them down
//   reconnect begin  libvirtd restarted: make sure a backstop watches the running QEMU
//   migrate/restore  print nothing (the XML stays as it is); the prepare that follows provisions
// Every other operation, and every domain without qemu-lio's metadata, is left alone.

#include <string>
#include <vector>

#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/libvirt_domain.h"

namespace qemu_lio {

/// How long a set made by `prepare` waits for the QEMU libvirt starts next before its
/// backstop gives the disks up (libvirtd died mid-start; a failed start is released at once).
inline constexpr int kLibvirtAwaitSeconds = 300;

/// Where libvirt's system instance has each QEMU write its pid.
inline constexpr const char* kLibvirtRunDir = "/run/libvirt/qemu";

/// Runs one hook call: `args` = DOMAIN OP SUBOP [EXTRA], `xml` the domain on stdin. Returns
/// the exit status; throws Error for a failure (libvirt refuses a start on non-zero).
int libvirt_hook(const RunOptions& opts, const std::string& xml, ConfigFs& fs);

/// Tears down every set of the domain `uuid` whose QEMU is gone: its backstop is stopped
/// first, so one process does it. Returns the number of objects left.
int release_libvirt_domain(ConfigFs& fs, const std::string& state_dir, const std::string& uuid);

/// Gives every set of the domain `uuid` a live backstop (reconnect). Never tears down.
void rearm_libvirt_domain(const std::string& configfs_root, const std::string& state_dir,
                          const std::string& uuid);

/// `qemu-lio libvirt-xml SPEC`: the <hostdev> and metadata for one image.
int libvirt_xml_command(const RunOptions& opts);

}  // namespace qemu_lio
