#include "qemu_lio/fault_injection.h"

#include <signal.h>

#include <atomic>
#include <charconv>
#include <cstdlib>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

// Counts creating and removing operations apart: which phase an operation belongs to is
// a property of the operation, so the launch code needs no hook for the tests.
class FaultInjectingConfigFs : public ConfigFs {
 public:
  FaultInjectingConfigFs(std::unique_ptr<ConfigFs> inner, FaultPoint at)
      : inner_(std::move(inner)), at_(at) {}
  void mkdir(const std::string& p) override { tick(FaultPoint::Phase::kProvision); inner_->mkdir(p); }
  void rmdir(const std::string& p) override { tick(FaultPoint::Phase::kTeardown); inner_->rmdir(p); }
  void write(const std::string& p, const std::string& v) override {
    tick(v == "NULL" ? FaultPoint::Phase::kTeardown : FaultPoint::Phase::kProvision);
    inner_->write(p, v);
  }
  std::string read(const std::string& p) override { return inner_->read(p); }
  void symlink(const std::string& t, const std::string& l) override {
    tick(FaultPoint::Phase::kProvision);
    inner_->symlink(t, l);
  }
  void unlink(const std::string& p) override { tick(FaultPoint::Phase::kTeardown); inner_->unlink(p); }
  bool exists(const std::string& p) override { return inner_->exists(p); }
  std::vector<std::string> list(const std::string& d) override { return inner_->list(d); }
  std::string absolute(const std::string& p) const override { return inner_->absolute(p); }
  bool concurrent() const override { return inner_->concurrent(); }

 private:
  // With disks handled in parallel the Nth operation belongs to whichever disk got there
  // first; the count itself stays exact (atomic), and the kill takes the whole process.
  void tick(FaultPoint::Phase phase) {
    if (phase == at_.phase && ++count_ == at_.op) ::raise(SIGKILL);
  }
  std::unique_ptr<ConfigFs> inner_;
  FaultPoint at_;
  std::atomic<int> count_{0};
};

}  // namespace

FaultPoint parse_fault_point(const std::string& spec) {
  FaultPoint f;
  auto colon = spec.find(':');
  std::string phase = spec.substr(0, colon);
  if (phase == "provision") f.phase = FaultPoint::Phase::kProvision;
  else if (phase == "teardown") f.phase = FaultPoint::Phase::kTeardown;
  else throw UsageError("QEMU_LIO_FAULT", "'" + spec + "' is not provision:N or teardown:N");
  const char* first = colon == std::string::npos ? spec.data() + spec.size() : spec.data() + colon + 1;
  const char* last = spec.data() + spec.size();
  auto [end, ec] = std::from_chars(first, last, f.op);
  if (ec != std::errc() || end != last || f.op <= 0)
    throw UsageError("QEMU_LIO_FAULT", "'" + spec + "' needs a whole number N >= 1");
  return f;
}

std::unique_ptr<ConfigFs> wrap_for_fault_injection(std::unique_ptr<ConfigFs> inner) {
  const char* spec = std::getenv("QEMU_LIO_FAULT");
  if (!spec || !*spec) return inner;
  return std::make_unique<FaultInjectingConfigFs>(std::move(inner), parse_fault_point(spec));
}

}  // namespace qemu_lio
