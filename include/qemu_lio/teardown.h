#pragma once
// The one teardown path: every object a journal records is removed, newest first, and the
// journal is forgotten only once the kernel holds none of them. A run that ends normally,
// the backstop of a run that was killed, and gc all end here.

#include <functional>
#include <set>
#include <string>

#include "qemu_lio/configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/served_disks.h"

namespace qemu_lio {

/// What happens to a file of a set once its objects are gone (the journal, a -pidfile or
/// control socket beside it, the kernel's stale reservation file): unlink it, or (gc
/// --dry-run) say so.
using ForgetJournal = std::function<void(const std::string& journal_file)>;

/// Deletes a journal file (and a -pidfile or control socket qemu-lio made for the run in the
/// same directory).
void unlink_journal(const std::string& journal_file);

/// What a teardown did.
struct TeardownResult {
  int present = 0;  ///< recorded objects that existed before
  int failed = 0;   ///< objects still there afterwards (0 = the kernel is clean)
};

/// Removes the objects of `j` through `fs` in reverse order (EBUSY retried under `retry`,
/// ENOENT counts as done), then its served images' NBD devices and storage daemon through
/// `served`, then calls `forget(j.file)` if none is left. Never throws.
TeardownResult teardown_journal(ConfigFs& fs, const JournalContents& j, const RetryPolicy& retry,
                                const ForgetJournal& forget = unlink_journal,
                                const ServedEffects& served = ServedEffects::real()) noexcept;

/// teardown_journal for the journal `file`, read and torn down under its JournalLock, so an
/// attach or detach of the same set is either wholly before or wholly after. A journal
/// deleted meanwhile (its set already torn down) counts as clean. Steps whose path is in
/// `others` (objects a live run's journal records: gc's view) are not this journal's to undo.
TeardownResult teardown_journal_file(ConfigFs& fs, const std::string& file, const RetryPolicy& retry,
                                     const ForgetJournal& forget = unlink_journal,
                                     const std::set<std::string>& others = {},
                                     const ServedEffects& served = ServedEffects::real()) noexcept;

/// True if `u`'s object still exists and is this set's to remove: a share=on disk's object
/// and HBA stay, rightly, while another VM uses them, and are not counted.
bool still_ours(ConfigFs& fs, const Undo& u);

/// Per step of `steps` (after their removal was tried): this set still owns the object.
/// still_ours, and also a shared disk's object that no LUN links any more (its removal
/// failed, nobody else uses it) with its HBA.
std::vector<bool> left_behind(ConfigFs& fs, const std::vector<Undo>& steps);

/// How many of `steps` are still_ours.
int count_present(ConfigFs& fs, const std::vector<Undo>& steps);

/// The kernel's stale reservation files of the journal's share=on disks (remove_stale_pr_file),
/// through `remove`; with `backstore` ("core/<hba>/<object>"), only that disk's.
void remove_stale_pr_files(ConfigFs& fs, const JournalContents& j, const ForgetJournal& remove,
                           const std::string& backstore = "");

}  // namespace qemu_lio
