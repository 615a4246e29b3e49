#pragma once
// Deterministic crash points for the real-kernel fault suite, compiled only into the test
// build (CMake option QEMU_LIO_FAULT_INJECTION). With QEMU_LIO_FAULT set, the wrapper
// SIGKILLs itself right before a chosen configfs operation, so the tests can prove that the
// backstop (or gc) recovers from a crash at exactly that point.

#include <memory>
#include <string>

#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// Which operation to die at: "provision:N" (before the Nth operation that creates: mkdir,
/// symlink, a write other than NULL) or "teardown:N" (before the Nth that removes: rmdir,
/// unlink, writing NULL to a nexus), counted from 1 over the process's life.
struct FaultPoint {
  enum class Phase { kProvision, kTeardown } phase = Phase::kProvision;
  int op = 0;
};

/// Parses QEMU_LIO_FAULT's value; throws UsageError if malformed.
FaultPoint parse_fault_point(const std::string& spec);

/// `inner`, wrapped to die at $QEMU_LIO_FAULT if it is set; `inner` itself otherwise.
std::unique_ptr<ConfigFs> wrap_for_fault_injection(std::unique_ptr<ConfigFs> inner);

}  // namespace qemu_lio
