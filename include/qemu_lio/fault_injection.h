#pragma once
// Deterministic crash points for the real-kernel fault suite. With QEMU_LIO_FAULT set, the
// wrapper SIGKILLs itself right before a chosen configfs operation, so the tests can prove
// that `qemu-lio gc` (or the next run) recovers from a crash at exactly that point.
// Unset (production), nothing is wrapped and nothing changes.

#include <memory>
#include <string>

#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// Which operation to die at: "provision:N" (the Nth mutating op while provisioning, from 1)
/// or "teardown:N" (the Nth mutating op after QEMU exited).
struct FaultPoint {
  enum class Phase { kProvision, kTeardown } phase = Phase::kProvision;
  int op = 0;
};

/// Parses QEMU_LIO_FAULT's value; throws UsageError if malformed.
FaultPoint parse_fault_point(const std::string& spec);

/// Wraps `inner`; counts mutating operations (mkdir, rmdir, write, symlink, unlink) per
/// phase and raises SIGKILL before the chosen one.
class FaultInjectingConfigFs : public ConfigFs {
 public:
  FaultInjectingConfigFs(std::unique_ptr<ConfigFs> inner, FaultPoint at);
  /// Switches counting to the teardown phase.
  void enter_teardown() { phase_ = FaultPoint::Phase::kTeardown; count_ = 0; }

  void mkdir(const std::string& p) override { tick(); inner_->mkdir(p); }
  void rmdir(const std::string& p) override { tick(); inner_->rmdir(p); }
  void write(const std::string& p, const std::string& v) override { tick(); inner_->write(p, v); }
  std::string read(const std::string& p) override { return inner_->read(p); }
  void symlink(const std::string& t, const std::string& l) override { tick(); inner_->symlink(t, l); }
  void unlink(const std::string& p) override { tick(); inner_->unlink(p); }
  bool exists(const std::string& p) override { return inner_->exists(p); }
  std::vector<std::string> list(const std::string& d) override { return inner_->list(d); }
  std::string absolute(const std::string& p) const override { return inner_->absolute(p); }

 private:
  void tick();
  std::unique_ptr<ConfigFs> inner_;
  FaultPoint at_;
  FaultPoint::Phase phase_ = FaultPoint::Phase::kProvision;
  int count_ = 0;
};

/// The real configfs at `root`, wrapped for fault injection if QEMU_LIO_FAULT is set.
std::unique_ptr<ConfigFs> make_configfs(const std::string& root);

/// If `fs` injects faults, switches it to the teardown phase; otherwise does nothing.
void mark_teardown_phase(ConfigFs& fs);

}  // namespace qemu_lio
