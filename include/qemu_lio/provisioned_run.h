#pragma once
// The one owner of what a run provisions: its journal, the backstop that heals the set if
// we die, and the LIO objects themselves (through the journal). Destroying it before QEMU
// started rolls everything back; once QEMU runs, nothing here ever removes a disk under it.

#include <functional>
#include <string>

#include "qemu_lio/backstop.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/control_socket.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan.h"
#include "qemu_lio/process_identity.h"

namespace qemu_lio {

/// A run's LIO objects from the first journal record to the last teardown step.
class ProvisionedRun {
 public:
  /// Creates the journal under `state_dir` and starts the backstop: from the first object
  /// on, whatever happens to this process, the objects go once nothing uses them. The
  /// backstop is awaited (it has recorded itself) before this run's first journal record or
  /// object, so its start overlaps the state lock and the inventory scan. Throws Error if
  /// the journal cannot be made or the backstop not started; nothing exists in the kernel then.
  ProvisionedRun(ConfigFs& fs, const std::string& configfs_root, const std::string& state_dir,
                 const std::string& vm_name);
  /// Before QEMU started: tears down (a failed start). After: leaves the set to the backstop.
  ~ProvisionedRun();
  ProvisionedRun(const ProvisionedRun&) = delete;
  ProvisionedRun& operator=(const ProvisionedRun&) = delete;

  /// Returns once the backstop has recorded itself in the journal (provision() and every
  /// record below wait for it first). On failure removes the still empty journal and throws
  /// Error.
  void backstop_ready();

  /// Checks `plan` against the live tree and applies it, as one step under the state lock
  /// (two runs on one image cannot both pass the check). Every object is journalled before
  /// it exists. On failure the kernel is as it was and Error is thrown.
  /// `check_file` vets each file a served image's storage daemon opened (see serve_images).
  void provision(const Plan& plan, const std::function<void(const std::string&)>& check_file = {});

  /// Run in QEMU's process between fork and exec: names it in the journal before it may
  /// run. Throws Error if the record cannot be written (QEMU then does not start).
  void record_qemu_in_child();

  /// QEMU runs (its child side recorded it): from now on the objects are in use, and only
  /// finish() (after QEMU has exited) or the backstop removes them.
  void qemu_started() { qemu_started_ = true; }

  /// QEMU's daemon runs as `daemon` (-daemonize): recorded for the backstop to follow.
  void daemon_started(const ProcessId& daemon);

  /// Records the -pidfile where QEMU's daemon will name itself (the backstop follows it).
  void daemon_pidfile(const std::string& path);

  /// The set belongs to libvirt's domain `uuid`, whose QEMU libvirt starts after we exit and
  /// names in the daemon pidfile; the backstop waits up to `await_seconds` for it.
  void libvirt_domain(const std::string& uuid, int await_seconds);

  /// Records the VM's control socket in the journal (so the teardown deletes it and attach
  /// finds it), then binds it. Throws Error if it cannot be bound.
  void control_socket(ControlSocket& socket);

  /// Leaves the objects and the journal to the backstop: QEMU (a daemon) runs on without us.
  void hand_off();

  /// QEMU is gone: tears down from the journal. Returns the number of objects left in the
  /// kernel (0 = clean, journal deleted).
  int finish() noexcept;

  /// This process as the journal names it (the wrapper).
  const ProcessId& wrapper() const { return self_; }

  /// The journal file.
  const std::string& journal_path() const { return journal_.path(); }

 private:
  /// Runs `step`, which comes before the journal's first record (the backstop's start or
  /// its await): if it throws, the still empty journal is removed and the error passes on.
  template <typename F>
  void before_first_record(F&& step);

  ConfigFs& fs_;
  std::string state_dir_;
  ProcessId self_;
  JournalWriter journal_;
  BackstopStart backstop_;
  bool qemu_started_ = false;
  bool done_ = false;
};

}  // namespace qemu_lio
