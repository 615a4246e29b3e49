#pragma once
// `qemu-lio gc` and `qemu-lio list`: the journals under the state dir, checked against the
// live processes and the live configfs tree.

#include <string>
#include <vector>

#include "qemu_lio/configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/provisioner.h"

namespace qemu_lio {

/// One VM's object set as `list` shows it.
struct VmStatus {
  JournalContents journal;
  bool wrapper_alive = false;
  bool owner_alive = false;
  int objects_present = 0;  ///< recorded objects still in configfs
  int objects_missing = 0;  ///< recorded objects already gone
  /// "active" (a live process owns it, all objects present), "partial" (owned, but still
  /// provisioning or some objects gone), "stale" (no live owner: gc removes it).
  std::string state;
};

/// Reads every journal in `state_dir` and classifies it. Unreadable journals are skipped
/// with a warning.
std::vector<VmStatus> vm_statuses(ConfigFs& fs, const std::string& state_dir);

/// What gc did (or would do).
struct GcReport {
  int sets = 0;            ///< stale object sets handled
  int objects_removed = 0;
  int failures = 0;        ///< objects that could not be removed
  std::vector<std::string> lines;  ///< one human line per action
};

/// Tears down every stale set (no live wrapper, no live QEMU) and deletes its journal once
/// clean. Never touches a set whose owner lives. With `dry_run` only reports.
GcReport collect_garbage(ConfigFs& fs, const std::string& state_dir, bool dry_run,
                         const RetryPolicy& retry = {});

/// `list` as text (one block per VM) or as JSON.
std::string render_statuses(const std::vector<VmStatus>& vms, bool json);

}  // namespace qemu_lio
