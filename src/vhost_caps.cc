#include "qemu_lio/vhost_caps.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

// linux/vhost.h: VHOST_VIRTIO is 0xAF. Spelled out here because the build host's headers
// (Debian 12, Linux 6.1) predate VHOST_NEW_WORKER, while the kernel that runs may be newer.
struct WorkerState {
  unsigned int worker_id;  // struct vhost_worker_state
};
constexpr unsigned long kVhostSetOwner = _IO(0xAF, 0x01);
constexpr unsigned long kVhostNewWorker = _IOR(0xAF, 0x08, WorkerState);

}  // namespace

VhostWorkerSupport probe_vhost_workers(const std::string& device) {
  using A = VhostWorkerSupport::Answer;
  UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (fd.get() < 0) return {A::kUnknown, "cannot open " + device + ": " + errno_string(errno)};
  if (::ioctl(fd.get(), kVhostSetOwner) != 0)
    return {A::kUnknown, "VHOST_SET_OWNER on " + device + ": " + errno_string(errno)};
  WorkerState w{};
  if (::ioctl(fd.get(), kVhostNewWorker, &w) == 0) return {A::kYes, ""};
  // The ioctl syscall turns the driver's "not mine" (ENOIOCTLCMD) into ENOTTY.
  if (errno == ENOTTY || errno == EINVAL)
    return {A::kNo, device + " has no VHOST_NEW_WORKER (Linux 6.5 and later)"};
  return {A::kUnknown, "VHOST_NEW_WORKER on " + device + ": " + errno_string(errno)};
}

bool want_worker_per_virtqueue(WorkerSetting setting, bool qemu_has_property, const std::string& qemu,
                               const std::function<VhostWorkerSupport()>& kernel) {
  using A = VhostWorkerSupport::Answer;
  if (setting == WorkerSetting::kOff) return false;
  if (!qemu_has_property) {
    if (setting == WorkerSetting::kOn)
      throw Error(qemu, "worker_per_virtqueue = on, but this QEMU's vhost-scsi-pci has no such "
                        "property (QEMU 9.0 and later)");
    return false;
  }
  const VhostWorkerSupport k = kernel();
  switch (k.answer) {
    case A::kYes: return true;
    case A::kNo:
      if (setting == WorkerSetting::kOn) throw Error("worker_per_virtqueue = on", k.why);
      log_verbose("worker_per_virtqueue not used: " + k.why);
      return false;
    case A::kUnknown:
      // on: QEMU asks the kernel itself and keeps one worker if it must; auto does not guess.
      log_verbose("worker_per_virtqueue: kernel support unknown (" + k.why + ")");
      return setting == WorkerSetting::kOn;
  }
  return false;
}

void set_worker_per_virtqueue(std::vector<DiskPlan>& disks, bool want) {
  for (DiskPlan& d : disks) d.worker_per_virtqueue = want && d.spec.num_queues.value_or(0) != 1;
}

}  // namespace qemu_lio
