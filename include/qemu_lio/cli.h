#pragma once
// The command line: `qemu-lio [run] [OPTIONS] -- QEMU [QEMU-ARGS...]`.

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/log.h"

namespace qemu_lio {

/// Options of `qemu-lio run`.
struct RunOptions {
  std::vector<std::string> images;     ///< raw --image SPECs, in order
  std::optional<std::string> name;     ///< --name
  bool dry_run = false;
  std::string configfs = "/sys/kernel/config";
  std::string state_dir = "/run/qemu-lio";
  Verbosity verbosity = Verbosity::kNormal;
  std::vector<std::string> qemu_argv;  ///< everything after "--"
};

/// What main() should do.
struct Command {
  enum class Kind { kRun, kHelp, kVersion };
  Kind kind = Kind::kRun;
  RunOptions run;
};

/// Parses the arguments after argv[0]. Throws UsageError (exit 2) on any mistake.
Command parse_command_line(const std::vector<std::string>& args);

/// The --help text.
std::string help_text();

}  // namespace qemu_lio
