#pragma once
// One-line messages to stderr, prefixed "qemu-lio: ", filtered by verbosity.

#include <fmt/core.h>

#include <string>

namespace qemu_lio {

/// How much the tool says: quiet (errors only), normal (warnings), verbose (every kernel step).
enum class Verbosity { kQuiet = 0, kNormal = 1, kVerbose = 2 };

/// Sets the process-wide verbosity (from -q / -v).
void set_verbosity(Verbosity v);

/// Prints "qemu-lio: error: MSG" (always).
void log_error(const std::string& msg);
/// Prints "qemu-lio: warning: MSG" unless quiet.
void log_warning(const std::string& msg);
/// Prints "qemu-lio: MSG" only when verbose.
void log_verbose(const std::string& msg);

}  // namespace qemu_lio
