#pragma once
// Applies a Plan to configfs. Every object pushes its undo step the moment it exists, so
// a failure at any step, or the end of the VM, unwinds exactly what this run made.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "qemu_lio/configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/plan.h"

namespace qemu_lio {

/// How hard teardown tries when the kernel says EBUSY (a vhost endpoint is still closing).
struct RetryPolicy {
  std::chrono::milliseconds first_delay{5};
  std::chrono::milliseconds max_delay{400};
  std::chrono::milliseconds deadline{10000};
};

/// Told, before each kernel object is created, the step that would remove it
/// (cancelled=false), and again with cancelled=true if the creation then failed. The
/// journal hooks in here. With several disks it is called from several threads at once
/// (one per disk, each disk's calls in order), so it must be thread-safe.
using UndoObserver = std::function<void(const Undo& undo, bool cancelled)>;

/// A share=on disk's object (or its HBA) that the run joins went away before its LUN linked
/// it: the disk's last other VM left meanwhile (its teardown takes no state lock). Thrown by
/// apply after the rollback; a fresh plan makes the object anew.
class SharedDiskGone : public Error {
 public:
  using Error::Error;
};

/// Owns the objects created in the kernel. The destructor rolls back anything not torn
/// down explicitly, so an exception between apply() and teardown() leaks nothing.
class Provisioner {
 public:
  explicit Provisioner(ConfigFs& fs, RetryPolicy retry = {});
  ~Provisioner();
  Provisioner(const Provisioner&) = delete;
  Provisioner& operator=(const Provisioner&) = delete;

  /// Applies the ops of each disk in plan order; the disks themselves run at once (up to
  /// kMaxParallelDisks) when the ConfigFs is concurrent(), else one after another. On any
  /// failure the other disks stop at their next step, everything made by all of them is
  /// rolled back, and Error is thrown naming the first failing object and the kernel's cause.
  void apply(const Plan& plan);

  /// Removes every created object in reverse order (per disk; disks in parallel, see
  /// run_undo). EBUSY is retried with backoff, ENOENT counts as done, other errors are
  /// logged and teardown carries on. Never throws.
  /// Returns the number of objects that could not be removed (0 = kernel clean).
  int teardown() noexcept;

  /// Hands the objects over (to the journal, which teardown reads back): forgets the undo
  /// stack without removing anything.
  void release() { undo_.clear(); }

  /// The undo steps pending, oldest first (for tests and the journal).
  const std::vector<Undo>& pending() const { return undo_; }

  /// The HBA variables bound so far ("HBA0" -> "fileio_3").
  const std::vector<std::pair<std::string, std::string>>& bindings() const { return vars_; }

  /// Binds the variables made outside configfs before apply() (a served image's NBD device,
  /// "NBD0" -> "/dev/nbd3"): every disk's steps see them.
  void bind(const std::vector<std::pair<std::string, std::string>>& vars) { preset_ = vars; }

  /// Sets the observer (see UndoObserver); a claim reports each name it tries.
  void set_observer(UndoObserver obs) { observer_ = std::move(obs); }

 private:
  using Bindings = std::vector<std::pair<std::string, std::string>>;
  void run_disks(const std::vector<std::vector<const Op*>>& disks);
  void run_disk(const std::vector<const Op*>& ops, const std::atomic<bool>& stop);
  void run_op(const Op& op, Bindings& own);
  void claim_hba(const Op& op, Bindings& own);
  void announce(const Undo& u, bool cancelled);
  void created(const Undo& u);

  ConfigFs& fs_;
  RetryPolicy retry_;
  std::mutex mu_;  ///< guards undo_, vars_ and next_hba_ while disks run in parallel
  std::vector<Undo> undo_;  ///< in creation order: each disk's steps in its own order
  Bindings vars_;
  Bindings preset_;  ///< see bind()
  std::map<std::string, int> next_hba_;  ///< per "target/core/<plugin>": where to probe next
  UndoObserver observer_;
};

/// Runs a list of undo steps (oldest first) in reverse with the retry rules of
/// Provisioner::teardown. When `fs` is concurrent(), the steps are split per disk
/// (undo_groups) and the disks are undone in parallel, each in its own reverse order.
/// Returns the number that failed. Used by gc for journals of dead runs.
int run_undo(ConfigFs& fs, const std::vector<Undo>& steps, const RetryPolicy& retry) noexcept;

/// True if the object `u` removes is in the kernel now (a nexus: while it names one).
bool object_present(ConfigFs& fs, const Undo& u);

/// True if a vhost LUN links the storage object at `path` (qemu-lio names a LUN's link after
/// the object it exports), other than the links `ours` would remove: for a shared disk's
/// object, another VM still uses it.
bool linked_by_a_lun(ConfigFs& fs, const std::string& path, const std::vector<Undo>& ours = {});

/// The serial rules of run_undo over one group of steps (oldest first): newest first, and
/// ACLs left in place under a nexus that could not be cleared. Returns the number that failed.
int undo_in_order(ConfigFs& fs, const std::vector<Undo>& steps, const RetryPolicy& retry) noexcept;

/// Calls `each` once per independent group of `steps` (undo_groups), the groups at once from
/// up to kMaxParallelDisks threads when `fs` is concurrent(); otherwise once, with all the
/// steps, in the caller's thread. run_undo and teardown_journal share this one split, so
/// what teardown asks the kernel about a disk happens in that disk's thread too.
/// `each` must not throw.
void for_each_undo_group(ConfigFs& fs, const std::vector<Undo>& steps,
                         const std::function<void(const std::vector<Undo>& group)>& each) noexcept;

/// Splits undo steps (oldest first) into independent groups, one per disk: an HBA, its
/// storage object, and the vhost target whose LUN links that object (by name), with
/// everything under it. Each group keeps the steps' order; the groups come newest first
/// (by their newest step). A step whose path is not a LIO object (layout::parse) puts all
/// steps into one group: nothing is known about what it depends on.
std::vector<std::vector<Undo>> undo_groups(const std::vector<Undo>& steps);

}  // namespace qemu_lio
