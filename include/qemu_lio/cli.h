#pragma once
// The command line:
//   qemu-lio [run] [OPTIONS] -- QEMU [QEMU-ARGS...]
//   qemu-lio gc [--dry-run] | list [--json] | check [--qemu PATH]   [--configfs DIR] [--state-dir DIR]
//   qemu-lio [OPTIONS] libvirt-hook DOMAIN OP SUBOP [EXTRA]   (libvirt's words, verbatim)
//   qemu-lio libvirt-xml SPEC [--name DOMAIN]
//   qemu-lio attach VM SPEC [--id ID] [--timeout S] | detach VM ID|IMAGE [--timeout S]

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/log.h"

namespace qemu_lio {

/// Options of every subcommand (each reads the ones that concern it).
struct RunOptions {
  std::vector<std::string> images;     ///< raw --image SPECs, in order
  std::optional<std::string> name;     ///< --name
  bool dry_run = false;                ///< run, gc
  bool exec_mode = false;              ///< run: --exec (QEMU keeps our pid)
  bool json = false;                   ///< list
  std::string qemu = "qemu-system-x86_64";  ///< check
  std::string configfs = "/sys/kernel/config";
  std::string state_dir = "/run/qemu-lio";
  Verbosity verbosity = Verbosity::kNormal;
  std::optional<int> hotplug_ports;     ///< run: --hotplug-ports (else the config's)
  std::optional<std::string> device_id;  ///< attach: --id
  int timeout = 30;                    ///< attach, detach: --timeout, seconds for each QEMU wait
  std::vector<std::string> qemu_argv;  ///< run: everything after "--"
  std::vector<std::string> args;       ///< libvirt-hook, libvirt-xml, attach, detach: their words
};

/// What main() should do.
struct Command {
  enum class Kind { kRun, kGc, kList, kCheck, kLibvirtHook, kLibvirtXml, kAttach, kDetach, kHelp, kVersion };
  Kind kind = Kind::kRun;
  RunOptions run;
};

/// Parses the arguments after argv[0]. Throws UsageError (exit 2) on any mistake.
Command parse_command_line(const std::vector<std::string>& args);

/// The --help text.
std::string help_text();

}  // namespace qemu_lio
