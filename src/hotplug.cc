#include "qemu_lio/hotplug.h"

#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "qemu_lio/config_file.h"
#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"
#include "qemu_lio/gc.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_policy.h"
#include "qemu_lio/image_spec.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/qmp_client.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/supervisor.h"
#include "qemu_lio/teardown.h"
#include "qemu_lio/vhost_caps.h"

namespace qemu_lio {
namespace {

using Json = nlohmann::json;

// QEMU's pcie-root-port: Red Hat's vendor id, device 0x000c.
constexpr int kRedHatVendor = 0x1b36;
constexpr int kPcieRootPort = 0x000c;

void require_root(const std::string& configfs) {
  if (::geteuid() != 0)
    throw Error(configfs, fmt::format("qemu-lio must run as root to change LIO objects (running as uid {})",
                                      ::geteuid()));
}

// The VM's journal, locked, read again under the lock, with its QEMU still alive.
struct LockedVm {
  std::unique_ptr<JournalLock> lock;
  JournalContents journal;
  const std::string& lock_file() const { return lock->file(); }
};

// `state`, if given, is held on return too: taken first, as gc takes them. While another
// process holds the journal (a detach waiting for its guest, the VM's exit), the state lock
// is not kept waiting: every start on the host would wait with it.
LockedVm lock_running_vm(const RunOptions& opts, std::optional<StateLock>* state = nullptr) {
  const std::string& vm = opts.args.at(0);
  LockedVm v;
  for (;;) {
    if (state) state->emplace(opts.state_dir);
    JournalContents found = find_running_vm(opts.state_dir, vm);
    v.lock = std::make_unique<JournalLock>(found.file, state == nullptr);
    if (v.lock->held()) break;
    state->reset();
    JournalLock{found.file};  // wait for its holder, then start over
  }
  if (!v.lock->still_current()) throw Error(vm, "exited meanwhile");
  v.journal = read_journal(v.lock_file());
  if (!vm_running(v.journal)) throw Error(vm, "exited meanwhile");
  if (v.journal.control_socket.empty())
    throw Error(vm, v.journal.libvirt_uuid.empty()
                        ? "was started without a qemu-lio control socket (by an older qemu-lio, or with "
                          "a state directory path too long for one)"
                        : "is libvirt's (its disks came from the hook): use virsh attach-device");
  return v;
}

// Journals each of `made` that is really gone as "cancel"; once all are, "detach": the
// journal then no longer counts the disk. Returns how many are left (they keep their
// records: the VM's exit and gc remove them).
int record_gone(ConfigFs& fs, JournalWriter& journal, const std::vector<Undo>& made, const std::string& wwn,
                int lun = 0) {
  int left = 0;
  // A shared object that another VM still uses is no longer this VM's either.
  const std::vector<bool> behind = left_behind(fs, made);
  for (size_t i = 0; i < made.size(); ++i) {
    if (behind[i]) ++left;
    else journal.object(made[i], true);
  }
  if (left == 0) journal.detach(wwn, lun);
  return left;
}

// The QOM path of the disk's vhost-scsi-pci device, found by its wwpn: a disk started with
// the VM may have no id. Empty if QEMU has no such device (any more).
std::string device_path(QmpClient& qmp, const JournalContents::Image& img) {
  for (const char* container : {"/machine/peripheral", "/machine/peripheral-anon"}) {
    Json children = qmp.execute("qom-list", {{"path", container}});
    for (const Json& c : children) {
      if (c.value("type", "") != "child<vhost-scsi-pci>") continue;
      const std::string path = std::string(container) + "/" + c.value("name", "");
      Json wwpn = qmp.execute("qom-get", {{"path", path}, {"property", "wwpn"}});
      if (wwpn.is_string() && wwpn.get<std::string>() == img.wwn) return path;
    }
  }
  return "";
}

std::chrono::milliseconds timeout_of(const RunOptions& opts) { return std::chrono::seconds(opts.timeout); }

}  // namespace

bool vm_running(const JournalContents& j) {
  // Once QEMU is recorded it alone counts: a supervising wrapper outlives its QEMU while it
  // tears down. Before that (exec mode: the wrapper's pid is QEMU's) the wrapper does.
  if (j.owner) return journal_qemu_alive(j);
  return process_alive(j.wrapper) || journal_qemu_alive(j);
}

JournalContents find_running_vm(const std::string& state_dir, const std::string& vm) {
  std::vector<JournalContents> found;
  for (const std::string& file : list_journals(state_dir)) {
    JournalContents j;
    try {
      j = read_journal(file);
    } catch (const Error&) {
      continue;
    }
    if (j.vm_name == vm && vm_running(j)) found.push_back(std::move(j));
  }
  if (found.empty())
    throw Error(vm, "no running VM of that name has qemu-lio disks in " + state_dir + " (see 'qemu-lio list')");
  if (found.size() > 1)
    throw Error(vm, fmt::format("{} running VMs have this name (journals {} and {}): give each a distinct -name",
                                found.size(), found[0].file, found[1].file));
  return found.front();
}

bool lists_property(const Json& props, const std::string& name) {
  if (!props.is_array()) return false;
  return std::any_of(props.begin(), props.end(), [&](const Json& p) {
    return p.is_object() && p.value("name", "") == name;
  });
}

std::optional<std::string> free_hotplug_port(const Json& query_pci) {
  std::optional<std::string> found;
  std::function<void(const Json&)> scan = [&](const Json& devices) {
    for (const Json& d : devices) {
      if (found) return;
      if (!d.contains("pci_bridge")) continue;
      const Json& bridge = d["pci_bridge"];
      const Json behind = bridge.value("devices", Json::array());
      const Json id = d.value("id", Json::object());
      if (id.value("vendor", 0) == kRedHatVendor && id.value("device", 0) == kPcieRootPort &&
          !d.value("qdev_id", "").empty() && behind.empty()) {
        found = d.value("qdev_id", "");
        return;
      }
      scan(behind);
    }
  };
  if (query_pci.is_array())
    for (const Json& bus : query_pci) scan(bus.value("devices", Json::array()));
  return found;
}

// Another disk of the VM is a LUN of the same controller.
static bool shares_target(const JournalContents& j, const std::string& wwn, int lun) {
  return std::any_of(j.images.begin(), j.images.end(), [&](const auto& o) { return o.wwn == wwn && o.lun != lun; });
}

std::vector<Undo> disk_undo_steps(const JournalContents& j, const std::string& wwn, int lun) {
  std::string hba;
  for (const auto& img : j.images)
    if (img.wwn == wwn && img.lun == lun && !img.backstore.empty()) hba = layout::parse("target/" + img.backstore).hba;
  const bool shared_target = shares_target(j, wwn, lun);
  std::vector<Undo> out;
  using K = layout::Parsed::Kind;
  for (const Undo& u : j.undo) {
    const layout::Parsed p = layout::parse(u.path);
    const bool backstore = (p.kind == K::kHba || p.kind == K::kStorageObject) && !hba.empty() && p.hba == hba;
    bool target = !p.wwn.empty() && p.wwn == wwn;
    // On a controller that keeps other disks only this disk's LUN goes, with its mapping in
    // the ACL; the target, its nexus and QEMU's device stay for the others.
    if (target && shared_target)
      target = ((p.kind == K::kLun || p.kind == K::kLunLink) && p.lun == lun) ||
               ((p.kind == K::kAclLun || p.kind == K::kAclLunLink) && p.mapped_lun == lun);
    if (backstore || target) out.push_back(u);
  }
  return out;
}

int attach_command(const RunOptions& opts, ConfigFs& fs) {
  const std::string& vm = opts.args.at(0);
  ImageSpec spec = parse_image_spec(opts.args.at(1));
  // QEMU 7.2's vhost-scsi cannot announce a new LUN to a running guest, so no disk can join
  // a controller while the VM runs, and one of a controller's own would be its only disk.
  if (spec.controller)
    throw UsageError("controller " + *spec.controller,
                     "a disk attached to a running VM gets a device of its own (QEMU's vhost-scsi cannot announce "
                     "a new LUN on a running controller); leave controller= out");
  if (opts.device_id) {
    check_token("--id", *opts.device_id);
    spec.id = *opts.device_id;
  }
  require_root(opts.configfs);
  const Config cfg = load_config();
  prepare_lio(opts.configfs);
  // The state lock first, then the journal's, as gc takes them: "is this image exported?"
  // and the creation are one step. The state lock goes once the objects exist; the
  // journal's is kept until QEMU has answered, so the VM's exit waits for the outcome.
  SignalBlock signals;  // Ctrl-C waits until the disk is either attached or gone again
  std::optional<StateLock> state;
  LockedVm v = lock_running_vm(opts, &state);
  const JournalContents& j = v.journal;

  // Exactly the checks of a start.
  CheckedImage img{spec, inspect_image(spec)};
  check_image_policy(cfg, img.spec, img.info);
  // A served image needs its own storage daemon and NBD device: attach makes neither yet.
  if (img.info.served())
    throw UsageError("image " + spec.path,
                     fmt::format("format {} cannot be attached to a running VM (only raw images can)", img.info.format));
  Plan plan = build_plan(j.vm_name, {img}, j.disks_ever);
  DiskPlan& d = plan.disks.front();
  if (!d.spec.id) d.spec.id = fmt::format("qemu-lio-disk{}", j.disks_ever);
  for (const auto& other : j.images)
    if (other.device_id == *d.spec.id) throw Error(*d.spec.id, "the VM already has a disk with this id");
  const Inventory inv = scan_inventory(fs);
  check_conflicts(plan, inv);
  join_shared(plan, inv);

  JournalWriter journal(j.file);
  std::vector<Undo> made;  // what the journal says exists for this disk
  Provisioner prov(fs);
  prov.set_observer([&](const Undo& u, bool cancelled) {
    journal.object(u, cancelled);
    if (!cancelled) made.push_back(u);
    else if (auto it = std::find_if(made.rbegin(), made.rend(), [&](const Undo& m) {
               return m.kind == u.kind && m.path == u.path; });
             it != made.rend())
      made.erase(std::next(it).base());
  });
  // On any failure from here: the disk's objects go (the provisioner's stack), and the
  // journal says so once they are gone; the VM never saw the device.
  auto roll_back = [&] {
    prov.teardown();
    if (int left = record_gone(fs, journal, made, d.identity.wwn))
      throw Error(d.info.canonical_path,
                  fmt::format("attach failed and {} of its LIO object(s) could not be removed; the VM's "
                              "journal keeps them for its exit and 'qemu-lio gc'",
                              left),
                  exit_code::kTeardownFailed);
  };
  journal.image(d.info.canonical_path, d.identity.wwn);
  journal.device(d.identity.wwn, *d.spec.id);
  try {
    prov.apply(plan);
    if (d.spec.share) {
      ensure_pr_directory(fs);
      journal.shared_disk(d.so_name, d.identity.serial);
    }
  } catch (...) {
    roll_back();
    throw;
  }
  state.reset();
  bool sent = false;
  try {
    QmpClient qmp(j.control_socket, vm, timeout_of(opts));
    // The choice a start makes, asked of this VM's own QEMU (its binary may have been
    // upgraded since, or be another one than the caps cache knows); with the setting off
    // there is nothing to ask.
    const bool qemu_has_workers =
        cfg.worker_per_virtqueue != WorkerSetting::kOff &&
        lists_property(qmp.execute("device-list-properties", {{"typename", "vhost-scsi-pci"}}), "worker_per_virtqueue");
    set_worker_per_virtqueue(plan.disks, want_worker_per_virtqueue(cfg.worker_per_virtqueue, qemu_has_workers, vm,
                                                                   [] { return probe_vhost_workers(); }));
    Json dev = Json::parse(device_json(d));
    // q35's root bus takes no hot-plugged device: a free pcie-root-port does. pc's does.
    if (!d.spec.bus)
      if (auto port = free_hotplug_port(qmp.execute("query-pci"))) dev["bus"] = *port;
    try {
      sent = true;
      qmp.execute("device_add", dev);
    } catch (const QmpRefused& e) {
      sent = false;  // QEMU said no: it has no such device
      if (e.desc().find("does not support hotplugging") != std::string::npos)
        throw Error(vm, "has no free hot-plug port (a q35 VM needs one pcie-root-port per disk: start it "
                        "with --hotplug-ports N, or hotplug_ports = N in qemu-lio.conf)");
      throw;
    }
  } catch (const std::exception& e) {
    // device_add went out and no answer came: QEMU may have the device, and pulling its LUN
    // would leave the guest a dead disk. Ask again; only a QEMU without it gets a rollback.
    bool has_it = false;
    if (sent) {
      try {
        QmpClient again(j.control_socket, vm, timeout_of(opts));
        has_it = !device_path(again, {d.info.canonical_path, d.identity.wwn, "", *d.spec.id, 0}).empty();
      } catch (const Error&) {
        // QEMU is gone or still silent: if it exits, its teardown removes the disk too.
      }
    }
    if (!has_it) {
      roll_back();
      throw;
    }
    log_warning(fmt::format("{}: QEMU answered device_add late ({}); it has the device", vm, e.what()));
  }
  prov.release();  // the VM's journal owns the disk now
  std::printf("%s: attached %s as %s (wwpn %s)\n", vm.c_str(), d.info.canonical_path.c_str(),
              d.spec.id->c_str(), d.identity.wwn.c_str());
  return 0;
}

int detach_command(const RunOptions& opts, ConfigFs& fs) {
  const std::string& vm = opts.args.at(0);
  const std::string& which = opts.args.at(1);
  require_root(opts.configfs);
  SignalBlock signals;  // Ctrl-C waits until the disk is either detached or kept whole
  LockedVm v = lock_running_vm(opts);
  const JournalContents& j = v.journal;
  const JournalContents::Image* img = nullptr;
  for (const auto& i : j.images)
    if (!i.device_id.empty() && i.device_id == which) img = &i;
  if (!img) {
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(which.c_str(), nullptr), &std::free);
    for (const auto& i : j.images)
      if (i.path == which || (real && i.path == real.get())) img = &i;
  }
  if (!img) throw Error(which, "is neither the id nor the image of a disk of VM " + vm + " (see 'qemu-lio list')");

  // A disk on a controller that keeps other disks leaves without its device: only its LUN goes.
  const bool lun_only = shares_target(j, img->wwn, img->lun);
  if (!lun_only) {
    QmpClient qmp(j.control_socket, vm, timeout_of(opts));
    const std::string path = device_path(qmp, *img);
    if (!path.empty()) {
      try {
        qmp.execute("device_del", {{"id", path}});
      } catch (const QmpRefused& e) {
        // An earlier detach asked already and the guest has not answered yet (QEMU before
        // 8.1 refuses to ask twice): wait for that request.
        if (e.desc().find("already in the process of unplug") == std::string::npos) throw;
      }
      // QEMU sends DEVICE_DELETED when the device is finalized, which can lag its removal
      // from the tree by an RCU grace period or more; the device is unrealized (its vhost
      // endpoint closed) once it has left the tree. Either one is the guest's release.
      const std::string parent = path.substr(0, path.rfind('/'));
      const std::string name = path.substr(path.rfind('/') + 1);
      auto in_tree = [&] {
        for (const Json& c : qmp.execute("qom-list", {{"path", parent}}))
          if (c.value("name", "") == name) return true;
        return false;
      };
      const auto deadline = std::chrono::steady_clock::now() + timeout_of(opts);
      bool gone = false;
      while (!gone && std::chrono::steady_clock::now() < deadline) {
        gone = qmp.wait_event(
                   [&](const Json& e) {
                     return e.value("event", "") == "DEVICE_DELETED" &&
                            e.value("data", Json::object()).value("path", "") == path;
                   },
                   std::chrono::milliseconds(250)) ||
               !in_tree();
      }
      if (!gone)
        throw Error(which, fmt::format("the guest did not release the device within {} s; its LIO objects "
                                       "are kept (the request stays pending: once the guest lets it go, "
                                       "detach again removes them; the VM's exit does in any case)",
                                       opts.timeout));
    }
  }
  const std::vector<Undo> steps = disk_undo_steps(j, img->wwn, img->lun);
  const int failed = run_undo(fs, steps, RetryPolicy{});
  if (failed > 0)
    throw Error(which, fmt::format("{} LIO object(s) could not be removed; the VM's journal keeps them for "
                                   "its exit and 'qemu-lio gc'",
                                   failed),
                exit_code::kTeardownFailed);
  if (!img->backstore.empty()) remove_stale_pr_files(fs, j, unlink_journal, img->backstore);
  JournalWriter journal(j.file);
  record_gone(fs, journal, steps, img->wwn, img->lun);
  if (lun_only) {
    std::printf("%s: detached %s (LUN %d of %s)\n", vm.c_str(), img->path.c_str(), img->lun, img->wwn.c_str());
    // vhost-scsi in QEMU 7.2 offers the guest no hot-plug events: the guest learns of the
    // removal only when its next command to the LUN fails.
    log_warning(fmt::format("{}: the guest was not told that LUN {} is gone; its disk now fails I/O: remove it "
                            "in the guest (echo 1 > /sys/block/sdX/device/delete)",
                            vm, img->lun));
  } else {
    std::printf("%s: detached %s (%s)\n", vm.c_str(), img->path.c_str(), img->wwn.c_str());
  }
  return 0;
}

}  // namespace qemu_lio
