#include "qemu_lio/log.h"

#include <cstdio>

namespace qemu_lio {
namespace {
Verbosity g_verbosity = Verbosity::kNormal;

// Messages are one line even when they quote a path with a newline in it: control
// characters are shown escaped.
std::string one_line(const std::string& msg) {
  std::string out;
  for (unsigned char c : msg) {
    if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// One fputs per line so concurrent writers (QEMU shares our stderr) never split a message.
void emit(const std::string& prefix, const std::string& msg) {
  std::fputs((prefix + one_line(msg) + "\n").c_str(), stderr);
}
}  // namespace

void set_verbosity(Verbosity v) { g_verbosity = v; }

void log_error(const std::string& msg) { emit("qemu-lio: error: ", msg); }

void log_warning(const std::string& msg) {
  if (g_verbosity >= Verbosity::kNormal) emit("qemu-lio: warning: ", msg);
}

void log_verbose(const std::string& msg) {
  if (g_verbosity >= Verbosity::kVerbose) emit("qemu-lio: ", msg);
}

}  // namespace qemu_lio
