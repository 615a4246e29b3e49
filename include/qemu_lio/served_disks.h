#pragma once
// Images in a format LIO cannot read (qcow2, vmdk, ...): one qemu-storage-daemon per VM reads
// them and exports each over NBD on a private unix socket, the kernel's NBD client makes each
// export a /dev/nbdN, and LIO's iblock serves that device (the plan names it "$NBD<i>",
// plan_builder.h). This unit makes the daemon and the devices, each journalled before it
// exists, and removes them after the LIO objects above them (docs/nbd-facts.md).

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qemu_lio/journal.h"
#include "qemu_lio/nbd_netlink.h"
#include "qemu_lio/plan.h"

namespace qemu_lio {

/// Starts one qemu-storage-daemon (`exe`) for the served disks of `plan` and connects one NBD
/// device per disk; returns the bindings of their DiskPlan::nbd_var to "/dev/nbdN". Each is journalled in
/// `journal` before it exists. Waits at most `timeout` for the daemon and each handshake.
/// Throws Error naming the image (the daemon's own reason when it refuses one: a missing
/// backing file, a locked image, a corrupt header); what was made stays journalled for the
/// teardown.
/// Once the daemon is ready, `check_file` is called with every file and block device it has open (the
/// images and their backing files): it throws Error to refuse one (the host's `allow`
/// policy, which a backing file must not escape).
std::vector<std::pair<std::string, std::string>> serve_images(
    const Plan& plan, JournalWriter& journal, const std::string& exe, std::chrono::milliseconds timeout,
    const std::function<void(const std::string& file)>& check_file = {});

/// The regular files and block devices process `pid` has open, by canonical path.
std::vector<std::string> open_files(pid_t pid);

/// Connects the export `name` on the unix socket `socket` as a new NBD device the kernel
/// picks, tagged `backend` and with `block_size`; returns its index (nbdN). Throws Error
/// naming `object` (the server's refusal, a dead socket, `timeout` passing, the kernel's errno).
uint32_t connect_nbd_export(NbdNetlink& nl, const std::string& socket, const std::string& name,
                            const std::string& backend, uint32_t block_size, const std::string& object,
                            std::chrono::milliseconds timeout);

/// What removing a served set does: the real system, or gc --dry-run's account of it.
struct ServedEffects {
  /// Disconnects the NBD device whose backend identifier is `id`, if it is connected;
  /// returns {was connected, still connected}.
  std::function<std::pair<bool, bool>(const std::string& id)> disconnect;
  /// Stops the storage daemon the record names, if it runs; returns {ran, still runs}.
  std::function<std::pair<bool, bool>(const JournalContents::Served&)> stop_daemon;
  /// Disconnect (netlink) and stop (SIGTERM, then SIGKILL) for real.
  static ServedEffects real();
  /// Only says, through `say`, what real() would do (gc --dry-run).
  static ServedEffects dry_run(std::function<void(const std::string&)> say);
};

/// The index of the connected NBD device whose backend identifier is `id` (a scan of
/// /sys/block/nbd*), or -1.
int find_nbd_device(const std::string& id);

/// Removes the served part of a set (the LIO objects above it are gone): every NBD device,
/// newest first, then the daemon. Returns {present before, still present}.
std::pair<int, int> teardown_served(const JournalContents::Served& s, const ServedEffects& fx);

}  // namespace qemu_lio
