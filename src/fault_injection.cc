#include "qemu_lio/fault_injection.h"

#include <signal.h>

#include <cstdlib>

#include "qemu_lio/error.h"

namespace qemu_lio {

FaultPoint parse_fault_point(const std::string& spec) {
  FaultPoint f;
  auto colon = spec.find(':');
  std::string phase = spec.substr(0, colon);
  if (phase == "provision") f.phase = FaultPoint::Phase::kProvision;
  else if (phase == "teardown") f.phase = FaultPoint::Phase::kTeardown;
  else throw UsageError("QEMU_LIO_FAULT", "'" + spec + "' is not provision:N or teardown:N");
  f.op = colon == std::string::npos ? 0 : std::atoi(spec.c_str() + colon + 1);
  if (f.op <= 0) throw UsageError("QEMU_LIO_FAULT", "'" + spec + "' needs N >= 1");
  return f;
}

FaultInjectingConfigFs::FaultInjectingConfigFs(std::unique_ptr<ConfigFs> inner, FaultPoint at)
    : inner_(std::move(inner)), at_(at) {}

void FaultInjectingConfigFs::tick() {
  if (phase_ == at_.phase && ++count_ == at_.op) ::raise(SIGKILL);
}

std::unique_ptr<ConfigFs> make_configfs(const std::string& root) {
  const char* spec = std::getenv("QEMU_LIO_FAULT");
  if (!spec || !*spec) return make_real_configfs(root);
  return std::make_unique<FaultInjectingConfigFs>(make_real_configfs(root), parse_fault_point(spec));
}

void mark_teardown_phase(ConfigFs& fs) {
  if (auto* f = dynamic_cast<FaultInjectingConfigFs*>(&fs)) f->enter_teardown();
}

}  // namespace qemu_lio
