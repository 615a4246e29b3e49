#include "qemu_lio/launch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "qemu_lio/error.h"
#include "qemu_lio/backstop.h"
#include "qemu_lio/gc.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_policy.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioned_run.h"
#include "qemu_lio/qemu_caps.h"
#include "qemu_lio/readconfig.h"
#include "qemu_lio/shell_script.h"
#include "qemu_lio/supervisor.h"
#include "qemu_lio/vhost_caps.h"

namespace qemu_lio {
namespace {

// vhost_scsi's max_io_vqs defaults to 128.
constexpr int kMaxQueues = 128;

// How long a start waits for a leaving run's teardown of its images: the backstop removes
// about 12 disks a second in a TCG guest, far faster on hardware, so a minute covers any
// set a VM can have without hiding a run that is stuck.
constexpr std::chrono::seconds kLeavingRunWait{60};

std::string vm_name_for(const LaunchRequest& req) {
  if (req.name) {
    check_token("--name", *req.name);
    if (req.name->size() > 64) throw UsageError("--name", "longer than 64 characters");
    return *req.name;
  }
  if (req.qemu.name) {
    std::string n = sanitize_vm_name(*req.qemu.name);
    if (!n.empty()) return n;
  }
  return fmt::format("qemu-lio-{}", ::getpid());
}

// A private copy QEMU can open by name: a memfd it inherits, opened as /dev/fd/N.
UniqueFd make_memfd_copy(const std::string& text) {
  UniqueFd fd(::memfd_create("qemu-lio-readconfig", 0));
  if (fd.get() < 0) throw Error("readconfig copy", "cannot create a memfd: " + errno_string(errno));
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("readconfig copy", "cannot write: " + errno_string(errno));
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

// --- the four modes -----------------------------------------------------------------------

int dry_run(const LaunchRequest& req, const Prepared& p, ConfigFs& fs) {
  const Inventory inv = scan_inventory(fs);
  check_conflicts(p.plan, inv);
  // As a start would: a share=on disk that another VM serves now is joined, not made.
  Plan plan = p.plan;
  join_shared(plan, inv);
  std::string script = render_shell_script(plan, req.configfs, p.qemu_argv);
  for (size_t c = 0; c < p.readconfig_texts.size(); ++c)
    script += shell_comment(fmt::format("readconfig copy {} (given to QEMU as /dev/fd/{}):\n{}", c,
                                        p.readconfig_fds[c].get(), p.readconfig_texts[c]));
  std::fwrite(script.data(), 1, script.size(), stdout);
  std::fflush(stdout);
  return 0;
}

// Everything the provisioning modes share: root, LIO loaded, stale sets collected, the run's
// owner created and the plan applied.
std::unique_ptr<ProvisionedRun> provision(const LaunchRequest& req, Prepared& p, ConfigFs& fs) {
  // libvirt's system instance runs the emulator unprivileged; fail before QEMU starts.
  if (::geteuid() != 0)
    throw Error(req.configfs, fmt::format("qemu-lio must run as root to create LIO objects "
                                          "(running as uid {}); for libvirt, run this domain's "
                                          "QEMU as root (user = \"root\" in /etc/libvirt/qemu.conf) "
                                          "or use qemu-lio's libvirt hook (qemu-lio(8), LIBVIRT)",
                                          ::geteuid()));
  prepare_lio(req.configfs);
  if (!fs.exists("target/core"))
    throw Error(req.configfs + "/target", "LIO is not available: load target_core_mod, "
                                          "target_core_file and vhost_scsi (see 'qemu-lio check')");
  // Runs whose wrapper, QEMU and backstop are all gone left objects that may hold our images.
  for (const std::string& line : collect_garbage(GcEffects::real(fs), req.state_dir).lines)
    log_warning("gc: " + line);
  // An instant restart: the previous QEMU of these images just died and its backstop is
  // still removing their objects (a 64-disk set takes seconds). Past the limit, the
  // conflict check below names the image that is still exported.
  std::vector<std::string> images;
  for (const DiskPlan& d : p.plan.disks) images.push_back(d.info.canonical_path);
  wait_for_leaving_runs(req.state_dir, images, kLeavingRunWait);
  auto run = std::make_unique<ProvisionedRun>(fs, req.configfs, req.state_dir, p.vm_name);
  if (!p.daemon_pidfile.empty()) run->daemon_pidfile(p.daemon_pidfile);
  if (req.libvirt) {
    run->daemon_pidfile(req.libvirt->pidfile);
    run->libvirt_domain(req.libvirt->uuid, req.libvirt->await_seconds);
  }
  // A served image's backing files are opened by its storage daemon: each must pass the
  // same policy as an image named on the command line.
  run->provision(p.plan, [&](const std::string& file) {
    ImageSpec spec;
    spec.path = file;
    ImageInfo info;
    info.canonical_path = file;
    check_image_policy(req.config, spec, info);
  });
  if (p.control.enabled()) run->control_socket(p.control);
  return run;
}

int finish_after_qemu(ProvisionedRun& run, const Prepared& p, const ChildStatus& status) {
  int leaked = run.finish();
  if (leaked > 0) {
    log_error(fmt::format("{}: {} LIO object(s) could not be removed (QEMU exited with {}); "
                          "the journal {} keeps them for 'qemu-lio gc'",
                          p.vm_name, leaked, status.exit_code(), run.journal_path()));
    return exit_code::kTeardownFailed;
  }
  return status.exit_code();
}

// QEMU as our child, named in the journal before it runs; returns once it has exited.
ChildStatus run_qemu(ProvisionedRun& run, Prepared& p, const SignalBlock& signals) {
  return supervise(p.qemu_argv, signals,
                   [&run, &p] {
                     run.record_qemu_in_child();
                     p.control.inherit_in_exec();
                   },
                   [&run, &p](pid_t) {
                     run.qemu_started();
                     p.control.close_ours();  // QEMU's copy serves attach from now on
                   });
}

// QEMU as our child; we return once it has exited and the kernel is clean.
int run_supervised(const LaunchRequest& req, Prepared& p, ConfigFs& fs, const SignalBlock& signals) {
  if (p.plan.disks.empty()) return supervise(p.qemu_argv, signals).exit_code();
  auto run = provision(req, p, fs);
  ChildStatus status = run_qemu(*run, p, signals);
  return finish_after_qemu(*run, p, status);
}

// -daemonize: QEMU's first process exits once the VM is initialised; its daemon lives on and
// keeps the disks, which the backstop then watches.
int run_daemonized(const LaunchRequest& req, Prepared& p, ConfigFs& fs, const SignalBlock& signals) {
  if (p.plan.disks.empty()) return supervise(p.qemu_argv, signals).exit_code();
  auto run = provision(req, p, fs);
  ChildStatus status = run_qemu(*run, p, signals);
  if (status.exit_code() == 0) {
    if (auto daemon = find_daemon(p.daemon_pidfile, run->wrapper().start_time)) {
      run->daemon_started(*daemon);
      run->hand_off();
      return 0;
    }
    // No daemon to watch (it died at once, or wrote no pid): the disks are free again.
    log_warning(p.daemon_pidfile + ": names no running QEMU daemon; removing its disks");
  }
  return finish_after_qemu(*run, p, status);
}

// QEMU keeps our pid (libvirt uses it for affinity, prlimit, /proc/PID/task). The backstop
// already watches this pid, which QEMU is about to become.
int run_exec(const LaunchRequest& req, Prepared& p, ConfigFs& fs, const SignalBlock& signals) {
  std::unique_ptr<ProvisionedRun> run;
  if (!p.plan.disks.empty()) run = provision(req, p, fs);
  p.control.inherit_in_exec();
  exec_in_place(p.exe, p.qemu_argv, signals);  // returns only by throwing: run rolls back
}

enum class Mode { kDryRun, kSupervised, kDaemonized, kExec };

// The inode of the host's own pid namespace (the kernel's PROC_PID_INIT_INO).
constexpr const char* kInitialPidNamespace = "pid:[4026531836]";

// Exec'd as the init of a pid namespace (a container's task), QEMU would be that init; as
// the only child of that init (tini, dumb-init, sh -c), its exit ends the init. Either way
// the kernel then kills the rest of the namespace, the backstop mid-teardown with it.
bool exec_would_end_the_namespace() {
  if (::getpid() == 1) return true;
  if (::getppid() != 1) return false;
  char ns[64];
  ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  if (n <= 0) return false;
  ns[n] = '\0';
  return std::string(ns) != kInitialPidNamespace;  // the host's init (systemd) is no such case
}

Mode mode_for(const LaunchRequest& req) {
  if (req.dry_run) return Mode::kDryRun;
  if (req.config.mode.value_or(req.default_mode) == LaunchMode::kExec) {
    if (!exec_would_end_the_namespace()) return Mode::kExec;
    // Supervising keeps the teardown in the process the container waits for.
    if (req.config.mode)
      log_warning("exec mode: QEMU would end this container's pid namespace, and the teardown "
                  "with it; supervising instead");
  }
  return req.qemu.daemonize ? Mode::kDaemonized : Mode::kSupervised;
}

// What QEMU and the kernel can do decides part of each disk's -device, so it is asked
// before the command line is built; a dry run prints what a run would pass. A QEMU without
// vhost-scsi-pci is refused here, before anything exists (it would only fail once the disks
// were made). The hook has no QEMU command line: libvirt's QEMU is libvirt's. Only a
// program named like QEMU is asked: `run -- numactl ... qemu-system-x86_64` must not have
// numactl run as root with QEMU's probe arguments.
void ask_qemu_and_kernel(const LaunchRequest& req, Plan& plan) {
  if (plan.disks.empty() || req.qemu.argv.empty()) return;
  const std::string exe = req.qemu_exe.empty() ? find_executable(req.qemu.argv.front()) : req.qemu_exe;
  if (exe.empty() || exe.substr(exe.rfind('/') + 1).find("qemu") == std::string::npos) return;
  // A dry run leaves no file behind, not even the answer's cache.
  const QemuCaps caps = req.dry_run ? probe_qemu_caps(exe) : cached_qemu_caps(exe, req.state_dir);
  require_vhost_scsi(caps, exe);
  const bool workers = want_worker_per_virtqueue(req.config.worker_per_virtqueue, caps.worker_per_virtqueue, exe, [&req] {
    // The device exists once vhost_scsi is loaded, which the run does next anyway. If that
    // fails, the answer is "unknown" here and the run's own prepare_lio says why, by name.
    if (::access("/dev/vhost-scsi", F_OK) != 0 && ::geteuid() == 0) {
      try {
        prepare_lio(req.configfs);
      } catch (const Error&) {
      }
    }
    return probe_vhost_workers();
  });
  set_worker_per_virtqueue(plan.disks, workers);
}

}  // namespace

Prepared prepare(const LaunchRequest& req) {
  Prepared p;
  p.vm_name = vm_name_for(req);
  std::vector<CheckedImage> images;
  for (ImageSpec spec : req.qemu.images) {
    if (!spec.num_queues && req.qemu.smp_cpus)
      spec.num_queues = std::clamp(*req.qemu.smp_cpus, 1, kMaxQueues);
    CheckedImage img{spec, inspect_image(spec)};
    check_image_policy(req.config, img.spec, img.info);
    // The hook's process is gone before libvirt starts QEMU; a storage daemon it started
    // would have nobody to watch it. Not offered there yet.
    if (req.libvirt && img.info.served())
      throw UsageError("image " + spec.path, fmt::format("format {} is not offered through libvirt's hook; convert "
                                                         "it to raw (qemu-img convert -O raw) or run qemu-lio directly",
                                                         img.info.format));
    images.push_back(img);
  }
  p.plan = build_plan(p.vm_name, images);
  ask_qemu_and_kernel(req, p.plan);

  std::vector<std::string> copy_names;
  for (const ReadConfigUse& use : req.qemu.readconfigs) {
    std::vector<std::vector<std::pair<std::string, std::string>>> devices;
    for (size_t k = 0; k < use.count; ++k) {
      const DiskPlan& d = p.plan.disks.at(use.first_image + k);
      // A further LUN of a controller gets no [device]: its first disk's device serves it.
      devices.push_back(d.lun == 0 ? device_properties(d) : std::vector<std::pair<std::string, std::string>>{});
    }
    p.readconfig_texts.push_back(render_readconfig(use.parsed, devices));
    p.readconfig_fds.push_back(make_memfd_copy(p.readconfig_texts.back()));
    copy_names.push_back(fmt::format("/dev/fd/{}", p.readconfig_fds.back().get()));
  }
  p.qemu_argv = finalize_argv(req.qemu, p.plan, copy_names);
  p.exe = req.qemu_exe;
  if (!p.exe.empty()) p.qemu_argv.at(0) = p.exe;
  if (!p.plan.disks.empty() && !p.qemu_argv.empty()) {
    // attach and detach talk to QEMU through this socket; bound only once provisioning
    // starts (a dry run shows the options and makes nothing).
    p.control = ControlSocket(fmt::format("{}/{}.{}.qmp", req.state_dir, p.vm_name, ::getpid()));
    if (!p.control.enabled()) log_verbose(p.vm_name + ": no control socket: " + p.control.why_not());
    for (std::string& o : p.control.qemu_options()) p.qemu_argv.push_back(std::move(o));
    const int ports = req.hotplug_ports.value_or(req.config.hotplug_ports);
    if (ports > 0 && req.qemu.machine && is_q35(*req.qemu.machine)) {
      for (std::string& o : hotplug_port_options(ports, req.qemu.json_devices)) p.qemu_argv.push_back(std::move(o));
    } else if (ports > 0) {
      log_verbose(p.vm_name + ": hot-plug ports are only added to a q35 machine (pc plugs into its root bus)");
    }
  }
  if (req.qemu.daemonize) {
    if (req.qemu.pidfile) {
      p.daemon_pidfile = *req.qemu.pidfile;
    } else {
      p.daemon_pidfile = fmt::format("{}/{}.{}.pid", req.state_dir, p.vm_name, ::getpid());
      p.qemu_argv.push_back("-pidfile");
      p.qemu_argv.push_back(p.daemon_pidfile);
    }
  }
  return p;
}

int launch(const LaunchRequest& req, ConfigFs& fs) {
  // From the first instruction: a SIGTERM during provisioning waits and goes to QEMU,
  // instead of killing us between two configfs writes.
  SignalBlock signals;
  Prepared p = prepare(req);
  switch (mode_for(req)) {
    case Mode::kDryRun: return dry_run(req, p, fs);
    case Mode::kSupervised: return run_supervised(req, p, fs, signals);
    case Mode::kDaemonized: return run_daemonized(req, p, fs, signals);
    case Mode::kExec: return run_exec(req, p, fs, signals);
  }
  return exit_code::kProvisionFailed;
}

void provision_for_libvirt(const LaunchRequest& req, ConfigFs& fs) {
  SignalBlock signals;  // a signal now would kill us between two configfs writes
  Prepared p = prepare(req);
  auto run = provision(req, p, fs);
  run->hand_off();
}

int run_vm(const RunOptions& opts, ConfigFs& fs) {
  LaunchRequest req;
  req.name = opts.name;
  req.dry_run = opts.dry_run;
  req.configfs = opts.configfs;
  req.state_dir = opts.state_dir;
  req.config = load_config();
  if (opts.exec_mode) req.config.mode = LaunchMode::kExec;
  req.hotplug_ports = opts.hotplug_ports;
  // Parse every SPEC first: a typo in the third image must not cost a provisioning cycle.
  std::vector<ImageSpec> specs;
  for (const std::string& s : opts.images) specs.push_back(parse_image_spec(s));
  req.qemu = scan_qemu_argv(opts.qemu_argv);
  prepend_images(req.qemu, specs);
  return launch(req, fs);
}

int dropin_main(const std::vector<std::string>& argv) {
  LaunchRequest req;
  req.config = load_config();
  req.default_mode = LaunchMode::kExec;
  req.qemu_exe = find_real_qemu(argv.at(0), req.config);
  req.qemu = scan_qemu_argv(argv);
  if (const char* d = ::secure_getenv("QEMU_LIO_STATE_DIR"); d && *d) req.state_dir = d;
  // Nothing to do, and no stream read that QEMU must get back: become QEMU, same pid, argv
  // untouched (argv[0] preserved).
  if (req.qemu.images.empty() && req.qemu.readconfigs.empty()) {
    SignalBlock signals;
    exec_in_place(req.qemu_exe, argv, signals);
  }
  auto fs = make_configfs(req.configfs);
  return launch(req, *fs);
}

}  // namespace qemu_lio
