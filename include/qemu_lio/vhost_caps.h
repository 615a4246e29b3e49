#pragma once
// What the running kernel's vhost can do, asked of /dev/vhost-scsi itself, and the choice of
// QEMU's `worker_per_virtqueue` that follows from it, from QEMU's answer and the setting.
//
// One vhost worker serves every virtqueue of a device by default, which caps a disk at about
// what one host CPU can complete (~500k IOPS). QEMU 9.0 (`worker_per_virtqueue=on`) gives
// each I/O queue its own worker through Linux 6.5's VHOST_NEW_WORKER. Both sides are needed:
// QEMU 7.2 refuses the unknown property, and a QEMU that has it on a kernel without the
// ioctl only warns and keeps the single worker, so the setting would say more than is true.

#include <functional>
#include <string>

#include <vector>

#include "qemu_lio/config_file.h"
#include "qemu_lio/plan.h"

namespace qemu_lio {

/// What the kernel answered.
struct VhostWorkerSupport {
  enum class Answer { kYes, kNo, kUnknown };
  Answer answer = Answer::kUnknown;
  std::string why;  ///< for kNo and kUnknown: what was seen
};

/// Opens `device`, becomes its owner and asks for a second worker (VHOST_NEW_WORKER). The fd
/// is closed before returning, which frees the worker and the owner's default one. kUnknown
/// when the device cannot be opened (module not loaded, not root).
VhostWorkerSupport probe_vhost_workers(const std::string& device = "/dev/vhost-scsi");

/// Whether the disks get `worker_per_virtqueue=on`. `kernel` is called only when the answer
/// depends on it (QEMU has the property and the setting is not off). auto: both sides must
/// say yes. on: a QEMU without the property, or a kernel that says no, is refused (Error
/// naming `qemu` or the device), because the operator asked for what would not happen.
bool want_worker_per_virtqueue(WorkerSetting setting, bool qemu_has_property, const std::string& qemu,
                               const std::function<VhostWorkerSupport()>& kernel);

/// Gives the disks `worker_per_virtqueue=on` when `want`, except a disk with one I/O queue
/// (num_queues=1), which has nothing to spread over workers.
void set_worker_per_virtqueue(std::vector<DiskPlan>& disks, bool want);

}  // namespace qemu_lio
