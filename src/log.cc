#include "qemu_lio/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace qemu_lio {
namespace {
// Set once from the command line, read from every thread.
std::atomic<Verbosity> g_verbosity{Verbosity::kNormal};

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

// One write(2) per line, so that neither our own threads (the disks of a run are handled
// in parallel) nor other writers to the same stderr (QEMU shares it) split a message:
// stdio may cut a long line into several writes.
void emit(const std::string& prefix, const std::string& msg) {
  const std::string line = prefix + one_line(msg) + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report it
    done += static_cast<size_t>(n);
  }
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
