#pragma once
// Applies a Plan to configfs. Every object pushes its undo step the moment it exists, so
// a failure at any step, or the end of the VM, unwinds exactly what this run made.

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qemu_lio/configfs.h"
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
/// journal hooks in here.
using UndoObserver = std::function<void(const Undo& undo, bool cancelled)>;

/// Owns the objects created in the kernel. The destructor rolls back anything not torn
/// down explicitly, so an exception between apply() and teardown() leaks nothing.
class Provisioner {
 public:
  explicit Provisioner(ConfigFs& fs, RetryPolicy retry = {});
  ~Provisioner();
  Provisioner(const Provisioner&) = delete;
  Provisioner& operator=(const Provisioner&) = delete;

  /// Applies every op in order. On failure rolls back what it made and throws Error naming
  /// the object and the kernel's cause.
  void apply(const Plan& plan);

  /// Removes every created object in reverse order. EBUSY is retried with backoff, ENOENT
  /// counts as done, other errors are logged and teardown carries on. Never throws.
  /// Returns the number of objects that could not be removed (0 = kernel clean).
  int teardown() noexcept;

  /// Hands the objects over (to the journal, which teardown reads back): forgets the undo
  /// stack without removing anything.
  void release() { undo_.clear(); }

  /// The undo steps pending, oldest first (for tests and the journal).
  const std::vector<Undo>& pending() const { return undo_; }

  /// The HBA variables bound so far ("HBA0" -> "fileio_3").
  const std::vector<std::pair<std::string, std::string>>& bindings() const { return vars_; }

  /// Sets the observer (see UndoObserver); a claim reports each name it tries.
  void set_observer(UndoObserver obs) { observer_ = std::move(obs); }

 private:
  void run_op(const Op& op);
  void claim_hba(const Op& op);
  void announce(const Undo& u, bool cancelled);

  ConfigFs& fs_;
  RetryPolicy retry_;
  std::vector<Undo> undo_;
  std::vector<std::pair<std::string, std::string>> vars_;
  std::map<std::string, int> next_hba_;  ///< per "target/core/<plugin>": where to probe next
  UndoObserver observer_;
};

/// Runs a list of undo steps in reverse with the retry rules of Provisioner::teardown.
/// Returns the number that failed. Used by gc for journals of dead runs.
int run_undo(ConfigFs& fs, const std::vector<Undo>& steps, const RetryPolicy& retry) noexcept;

}  // namespace qemu_lio
