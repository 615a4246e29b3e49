#pragma once
// Launching a VM: validate every image, provision, run QEMU (supervised, exec'd in place,
// or daemonised), tear down. Both front ends end here: `qemu-lio run` and the drop-in
// qemu-system-* name.

#include <string>
#include <vector>

#include "qemu_lio/cli.h"
#include "qemu_lio/config_file.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/dropin.h"

namespace qemu_lio {

/// Everything a launch needs, whichever front end built it.
struct LaunchRequest {
  std::optional<std::string> name;  ///< explicit VM name (--name), else derived
  DropinRequest qemu;               ///< QEMU argv and the disks taken from it
  std::string qemu_exe;             ///< the binary to run; "" = argv[0] looked up on PATH
  bool dry_run = false;
  std::string configfs = "/sys/kernel/config";
  std::string state_dir = "/run/qemu-lio";
  Config config;                    ///< mode and allow list
};

/// Launches as `req` says through `fs`. Returns QEMU's status or an exit_code::*; throws
/// Error for failures before QEMU starts, after rolling back.
int launch(const LaunchRequest& req, ConfigFs& fs);

/// `qemu-lio run`: --image disks plus any the QEMU command line asks for.
int run_vm(const RunOptions& opts, ConfigFs& fs);

/// The drop-in front end (argv[0] is qemu-system-*): passes through with execv when no disk
/// asks for vhost-scsi, else launches.
int dropin_main(const std::vector<std::string>& argv);

}  // namespace qemu_lio
