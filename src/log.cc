#include "qemu_lio/log.h"

#include <cstdio>

namespace qemu_lio {
namespace {
Verbosity g_verbosity = Verbosity::kNormal;

// One fputs per line so concurrent writers (QEMU shares our stderr) never split a message.
void emit(const std::string& line) { std::fputs(line.c_str(), stderr); }
}  // namespace

void set_verbosity(Verbosity v) { g_verbosity = v; }
Verbosity verbosity() { return g_verbosity; }

void log_error(const std::string& msg) { emit("qemu-lio: error: " + msg + "\n"); }

void log_warning(const std::string& msg) {
  if (g_verbosity >= Verbosity::kNormal) emit("qemu-lio: warning: " + msg + "\n");
}

void log_verbose(const std::string& msg) {
  if (g_verbosity >= Verbosity::kVerbose) emit("qemu-lio: " + msg + "\n");
}

}  // namespace qemu_lio
