#pragma once
// `qemu-lio gc` and `qemu-lio list`: the journals under the state dir, checked against the
// live processes and the live configfs tree.

#include <chrono>
#include <string>
#include <vector>

#include "qemu_lio/configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/teardown.h"

namespace qemu_lio {

/// One VM's object set as `list` shows it.
struct VmStatus {
  JournalContents journal;
  bool wrapper_alive = false;
  bool owner_alive = false;
  bool backstop_alive = false;
  int objects_present = 0;  ///< recorded objects still in configfs
  int objects_missing = 0;  ///< recorded objects already gone
  /// "active" (a live process owns it, all objects present), "partial" (owned, but still
  /// provisioning or some objects gone), "stale" (no live wrapper, QEMU or backstop: gc
  /// removes it).
  std::string state;
};

/// The set's QEMU runs: the recorded owner, or a QEMU that named itself in the journal's
/// pidfile but is not recorded yet (its recorder died first).
bool journal_qemu_alive(const JournalContents& j);

/// Reads every journal in `state_dir` and classifies it. Unreadable journals are skipped
/// with a warning.
std::vector<VmStatus> vm_statuses(ConfigFs& fs, const std::string& state_dir);

/// What gc acts on: the kernel tree and the journals. A dry run swaps both for ones that
/// only say what they would do.
struct GcEffects {
  ConfigFs& fs;
  ForgetJournal forget;
  ServedEffects served = ServedEffects::real();
  /// The real tree; journals are deleted.
  static GcEffects real(ConfigFs& fs) { return {fs, unlink_journal}; }
};

/// What gc did.
struct GcReport {
  int sets = 0;            ///< stale object sets handled
  int objects_removed = 0;
  int failures = 0;        ///< objects that could not be removed
  std::vector<std::string> lines;  ///< one human line per set
};

/// Tears down every stale set (no live wrapper, QEMU or backstop) through `fx` and forgets
/// its journal once clean. Never touches a set that something alive still owns.
GcReport collect_garbage(const GcEffects& fx, const std::string& state_dir,
                         const RetryPolicy& retry = {});

/// Waits, at most `limit`, while a run that is leaving holds one of `images` (canonical
/// paths): its wrapper and QEMU are gone and its live backstop is still tearing down. A
/// launcher that restarts a VM the moment its QEMU died (exec mode: nobody waits for the
/// teardown) then gets the disks instead of "already exported". Takes no lock: the backstop
/// it waits for never needs one. Returns the images some leaving run still holds.
std::vector<std::string> wait_for_leaving_runs(const std::string& state_dir,
                                               const std::vector<std::string>& images,
                                               std::chrono::milliseconds limit);

/// `list` as text (one block per VM) or as JSON.
std::string render_statuses(const std::vector<VmStatus>& vms, bool json);

}  // namespace qemu_lio
