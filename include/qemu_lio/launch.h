#pragma once
// Launching a VM: prepare (decide everything, touch nothing), then one of four small modes:
// a dry run, QEMU supervised as our child, QEMU exec'd in place, or QEMU daemonized. Both
// front ends end here: `qemu-lio run` and the drop-in qemu-system-* name.

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/cli.h"
#include "qemu_lio/config_file.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/control_socket.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/plan.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

/// Everything a launch needs, whichever front end built it.
struct LaunchRequest {
  std::optional<std::string> name;  ///< explicit VM name (--name), else derived
  QemuCommandLine qemu;               ///< QEMU argv and the disks taken from it
  std::string qemu_exe;             ///< the binary to run; "" = argv[0] looked up on PATH
  bool dry_run = false;
  std::string configfs = "/sys/kernel/config";
  std::string state_dir = "/run/qemu-lio";
  Config config;                    ///< mode and allow list
  /// The mode when the config names none: `run` supervises; the drop-in execs, because its
  /// callers (libvirt, containerd, systemd) track the pid they started and expect QEMU there.
  LaunchMode default_mode = LaunchMode::kSupervise;
  /// libvirt's hook: the set belongs to this domain. Its QEMU, which libvirt starts after
  /// the hook has exited, names itself in `pidfile`; the backstop waits for it.
  struct LibvirtDomain {
    std::string uuid;
    std::string pidfile;
    int await_seconds = 0;
  };
  std::optional<LibvirtDomain> libvirt;
  /// --hotplug-ports; unset: the config's hotplug_ports.
  std::optional<int> hotplug_ports;
};

/// What a launch will do, decided before anything is touched.
struct Prepared {
  std::string vm_name;
  Plan plan;                                  ///< the disks and their configfs steps
  std::vector<std::string> qemu_argv;         ///< QEMU's final argv
  std::string exe;                            ///< the binary to run ("" = argv[0] on PATH)
  std::vector<std::string> readconfig_texts;  ///< the private -readconfig copies' contents
  /// The copies, as memfds QEMU inherits and opens as /dev/fd/N: nothing to clean up, and
  /// a stream (a pipe, /dev/stdin) is given back to QEMU with every byte.
  std::vector<UniqueFd> readconfig_fds;
  /// Where a daemonized QEMU names its daemon (the caller's -pidfile, or one qemu-lio adds
  /// in the state directory); "" without -daemonize.
  std::string daemon_pidfile;
  /// The VM's private QMP socket for attach/detach (none without disks or QEMU argv).
  ControlSocket control;
};

/// Names the VM, checks every image (allow list, num_queues from -smp), builds the plan and
/// QEMU's argv. Touches neither configfs nor QEMU. Throws Error/UsageError.
Prepared prepare(const LaunchRequest& req);

/// Launches as `req` says through `fs`. Returns QEMU's status or an exit_code::*; throws
/// Error for failures before QEMU starts, after rolling back.
int launch(const LaunchRequest& req, ConfigFs& fs);

/// libvirt's `prepare` hook: provisions `req`'s disks for `req.libvirt`'s domain and leaves
/// them to the run's backstop (which follows the QEMU libvirt starts next). Throws Error,
/// after rolling back, if anything fails.
void provision_for_libvirt(const LaunchRequest& req, ConfigFs& fs);

/// `qemu-lio run`: --image disks plus any the QEMU command line asks for.
int run_vm(const RunOptions& opts, ConfigFs& fs);

/// The drop-in front end (argv[0] is qemu-system-*): becomes QEMU when no disk asks for
/// vhost-scsi, else launches.
int dropin_main(const std::vector<std::string>& argv);

}  // namespace qemu_lio
