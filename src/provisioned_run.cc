#include "qemu_lio/provisioned_run.h"

#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>

#include "qemu_lio/backstop.h"
#include "qemu_lio/error.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/served_disks.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/teardown.h"

namespace qemu_lio {
namespace {
// How long the storage daemon may take to get ready, and each NBD handshake: only a
// failure ever waits this long (a daemon that exits says so at once).
constexpr std::chrono::seconds kServeTimeout{60};

ProcessId self_identity() { return identify_process(::getpid()).value_or(ProcessId{::getpid(), 0}); }
}  // namespace

template <typename F>
void ProvisionedRun::before_first_record(F&& step) {
  try {
    step();
  } catch (...) {
    journal_.remove();  // it records nothing yet
    done_ = true;
    throw;
  }
}

ProvisionedRun::ProvisionedRun(ConfigFs& fs, const std::string& configfs_root,
                               const std::string& state_dir, const std::string& vm_name)
    : fs_(fs), state_dir_(state_dir), self_(self_identity()), journal_(state_dir, vm_name, self_) {
  before_first_record([&] { backstop_ = start_backstop(journal_.path(), configfs_root, self_); });
}

void ProvisionedRun::backstop_ready() {
  before_first_record([&] { backstop_.await(); });
}

ProvisionedRun::~ProvisionedRun() {
  if (done_) return;
  if (qemu_started_) {
    // We are leaving while QEMU may still run (an error after its start): never pull its
    // disks. The backstop waits for QEMU and then removes them.
    log_warning(fmt::format("{}: QEMU may still use its disks; the backstop removes them once it exits",
                            journal_.path()));
    return;
  }
  finish();
}

void ProvisionedRun::provision(const Plan& checked, const std::function<void(const std::string&)>& check_file) {
  StateLock lock(state_dir_);
  // A share=on disk's last other VM can leave between the scan and the join; the objects of
  // the attempt are rolled back, and the next one makes the disk anew. Its teardown is
  // already past the object then, so one more attempt suffices; the third is spare.
  constexpr int kAttempts = 3;
  // The NBD devices of served images (non-raw formats), made once: a retry joins anew only
  // the LIO objects of shared disks, which are raw.
  std::vector<std::pair<std::string, std::string>> devices;
  for (int attempt = 1;; ++attempt) {
    const Inventory inv = scan_inventory(fs_);
    check_conflicts(checked, inv);
    // A share=on disk another VM already serves is joined, not made again.
    Plan plan = checked;
    join_shared(plan, inv);
    if (attempt == 1) {
      // The backstop started in the constructor; under TCG its double fork took as long as
      // the lock and the scan above, which now run beside it. Nothing is recorded or made
      // before it has recorded itself.
      backstop_ready();
      for (const DiskPlan& d : plan.disks) {
        journal_.image(d.info.canonical_path, d.identity.wwn, d.lun);
        if (d.spec.id) journal_.device(d.identity.wwn, *d.spec.id, d.lun);  // detach can name it
      }
      // A failure here leaves the daemon and devices made so far in the journal: the
      // teardown (this object's destructor) removes them.
      devices = serve_images(plan, journal_, "qemu-storage-daemon", kServeTimeout, check_file);
    }
    Provisioner prov(fs_);
    prov.bind(devices);
    prov.set_observer([this](const Undo& u, bool cancelled) { journal_.object(u, cancelled); });
    try {
      prov.apply(plan);  // rolls back what it made if it throws
    } catch (const SharedDiskGone& e) {
      if (attempt == kAttempts) throw;
      log_verbose(std::string(e.what()) + ": starting the disks again");
      continue;
    }
    if (std::any_of(plan.disks.begin(), plan.disks.end(), [](const DiskPlan& d) { return d.spec.share; })) {
      try {
        ensure_pr_directory(fs_);  // the guests' PR REGISTER fails without it
        for (const DiskPlan& d : plan.disks)
          if (d.spec.share) journal_.shared_disk(d.so_name, d.identity.serial);
      } catch (...) {
        prov.teardown();
        throw;
      }
    }
    // From here the journal alone owns the objects: teardown reads it back.
    prov.release();
    journal_.ready();
    for (const DiskPlan& d : plan.disks)
      log_verbose(fmt::format("{} -> {}", d.info.canonical_path, d.identity.wwn));
    return;
  }
}

void ProvisionedRun::record_qemu_in_child() { journal_.owner(self_identity()); }

void ProvisionedRun::daemon_started(const ProcessId& daemon) {
  journal_.owner(daemon);
  qemu_started_ = true;
}

void ProvisionedRun::daemon_pidfile(const std::string& path) {
  backstop_ready();
  journal_.pidfile(path);
}

void ProvisionedRun::libvirt_domain(const std::string& uuid, int await_seconds) {
  backstop_ready();
  journal_.libvirt_domain(uuid);
  journal_.await_qemu(await_seconds);
}

void ProvisionedRun::control_socket(ControlSocket& socket) {
  backstop_ready();
  journal_.control_socket(socket.path());
  socket.bind_and_listen();
}

void ProvisionedRun::hand_off() { done_ = true; }

int ProvisionedRun::finish() noexcept {
  done_ = true;
  // A run that failed before provisioning: let the backstop record itself first, so that
  // it finds no journal afterwards and ends quietly. If it never started, the teardown
  // below is ours alone.
  backstop_.settle();
  try {
    return teardown_journal_file(fs_, journal_.path(), RetryPolicy{}).failed;
  } catch (const std::exception& e) {
    log_error(e.what());
    return 1;
  }
}

}  // namespace qemu_lio
