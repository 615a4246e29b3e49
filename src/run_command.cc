#include "qemu_lio/run_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "qemu_lio/error.h"
#include "qemu_lio/fault_injection.h"
#include "qemu_lio/gc.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"
#include "qemu_lio/monitor.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/process_identity.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/qemu_args.h"
#include "qemu_lio/shell_script.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/supervisor.h"

namespace qemu_lio {
namespace {

// vhost_scsi's max_io_vqs defaults to 128.
constexpr int kMaxQueues = 128;

std::string vm_name_for(const LaunchRequest& req) {
  if (req.name) {
    check_token("--name", *req.name);
    if (req.name->size() > 64) throw UsageError("--name", "longer than 64 characters");
    return *req.name;
  }
  if (auto q = qemu_option_value(req.qemu.argv, "-name")) {
    std::string n = sanitize_vm_name(*q);
    if (!n.empty()) return n;
  }
  return fmt::format("qemu-lio-{}", ::getpid());
}

void check_allowed(const Config& cfg, const CheckedImage& img) {
  if (cfg.allow.empty()) return;
  const std::string& p = img.info.canonical_path;
  for (const std::string& dir : cfg.allow)
    if (dir == "/" || p.rfind(dir + "/", 0) == 0) return;
  throw Error(img.spec.path, fmt::format("{} is outside the directories allowed by {} "
                                         "(allow = ...)",
                                         p, cfg.source));
}

// Writes a file only we can read: the rewritten readconfig names images and wwns.
void write_private_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(path, "cannot create: " + errno_string(errno));
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw Error(path, "cannot write: " + errno_string(err));
}

[[noreturn]] void exec_qemu(const std::string& exe, const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(exe.c_str(), args.data());
  int err = errno;
  throw Error(exe, "cannot execute QEMU: " + errno_string(err),
              err == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable);
}

}  // namespace

int launch(const LaunchRequest& req, ConfigFs& fs) {
  // Blocked from the start: a SIGTERM during provisioning waits and goes to QEMU, instead
  // of killing us between two configfs writes.
  SignalBlock signals;

  const std::string name = vm_name_for(req);
  std::vector<CheckedImage> images;
  for (ImageSpec spec : req.qemu.images) {
    if (!spec.num_queues && req.qemu.smp_cpus)
      spec.num_queues = std::clamp(*req.qemu.smp_cpus, 1, kMaxQueues);
    CheckedImage img{spec, inspect_image(spec)};
    check_allowed(req.config, img);
    images.push_back(img);
  }
  Plan plan = build_plan(name, images);

  // -readconfig files with vhost drives get a rewritten private copy.
  std::vector<std::string> copies, copy_texts;
  for (size_t c = 0; c < req.qemu.readconfigs.size(); ++c) {
    const ReadConfigUse& use = req.qemu.readconfigs[c];
    std::vector<std::vector<std::pair<std::string, std::string>>> devices;
    for (size_t k = 0; k < use.count; ++k)
      devices.push_back(device_properties(plan.disks.at(use.first_image + k)));
    copies.push_back(fmt::format("{}/{}.{}.{}.cfg", req.state_dir, name, ::getpid(), c));
    copy_texts.push_back(render_readconfig(use.parsed, devices));
  }
  std::vector<std::string> qemu_argv = finalize_argv(req.qemu, plan, copies);
  const std::string exe = req.qemu_exe.empty() ? qemu_argv.at(0) : req.qemu_exe;

  if (req.dry_run) {
    check_conflicts(plan, scan_inventory(fs));
    std::string script = render_shell_script(plan, req.configfs, qemu_argv);
    for (size_t c = 0; c < copies.size(); ++c)
      script += fmt::format("# {} (readconfig copy):\n#   {}\n", copies[c],
                            [&] {
                              std::string t = copy_texts[c];
                              for (size_t p = t.find('\n'); p != std::string::npos && p + 1 < t.size();
                                   p = t.find('\n', p + 5))
                                t.replace(p, 1, "\n#   ");
                              return t;
                            }());
    std::fwrite(script.data(), 1, script.size(), stdout);
    std::fflush(stdout);
    return 0;
  }
  if (plan.disks.empty()) return supervise(qemu_argv, signals).exit_code();

  // libvirt's system instance runs the emulator unprivileged; fail before QEMU starts.
  if (::geteuid() != 0)
    throw Error(req.configfs, fmt::format("qemu-lio must run as root to create LIO objects "
                                          "(running as uid {}); for libvirt set user = \"root\" "
                                          "in /etc/libvirt/qemu.conf",
                                          ::geteuid()));
  prepare_lio(req.configfs);
  if (!fs.exists("target/core"))
    throw Error(req.configfs + "/target", "LIO is not available: load target_core_mod, "
                                          "target_core_file and vhost_scsi (see 'qemu-lio check')");
  // Runs killed earlier (wrapper and QEMU gone) left objects that may hold our images.
  for (const std::string& line : collect_garbage(fs, req.state_dir, false).lines)
    log_warning("gc: " + line);

  auto self = identify_process(::getpid()).value_or(ProcessId{::getpid(), 0});
  JournalWriter journal(req.state_dir, name, self);
  Provisioner prov(fs);
  auto cleanup_files = [&] {
    for (const std::string& f : copies) ::unlink(f.c_str());
  };
  // On any failure before QEMU owns the disks: apply() has rolled back, or teardown does it
  // now; the journal goes only if the kernel really is clean.
  auto abandon = [&] {
    if (prov.teardown() == 0) journal.remove();
    cleanup_files();
  };
  try {
    {
      // The conflict check and the creation of the backstores form one step for every
      // qemu-lio on this host: two runs on one image cannot both pass the check.
      StateLock lock(req.state_dir);
      check_conflicts(plan, scan_inventory(fs));
      for (const DiskPlan& d : plan.disks) journal.image(d.info.canonical_path, d.identity.wwn);
      prov.set_observer([&journal](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
      prov.apply(plan);
    }
    for (size_t c = 0; c < copies.size(); ++c) write_private_file(copies[c], copy_texts[c]);
    journal.ready();
  } catch (...) {
    abandon();
    throw;
  }
  for (const DiskPlan& d : plan.disks)
    log_verbose(fmt::format("{} -> {}", d.info.canonical_path, d.identity.wwn));

  if (req.config.mode == LaunchMode::kExec) {
    // QEMU keeps our pid (libvirt uses it for affinity, prlimit, /proc/PID/task). A
    // detached monitor holds a pidfd on it and tears down once it exits.
    try {
      int pidfd = open_pidfd(::getpid());
      spawn_teardown_monitor(pidfd, journal.path(), req.configfs, copies);
      ::close(pidfd);
      journal.owner(self);
    } catch (...) {
      abandon();
      throw;
    }
    prov.release();
    sigprocmask(SIG_SETMASK, &signals.original(), nullptr);
    try {
      const std::string path = find_executable(exe);
      exec_qemu(path.empty() ? exe : path, qemu_argv);
    } catch (const Error&) {
      // The monitor sees us exit and finds the work done (or does it, if we are killed).
      JournalContents j = read_journal(journal.path());
      if (run_undo(fs, j.undo, RetryPolicy{}) == 0) journal.remove();
      cleanup_files();
      throw;
    }
  }

  // -daemonize: QEMU's first process exits once the VM is initialised; the daemon lives on.
  std::string own_pidfile;
  if (req.qemu.daemonize && !req.qemu.pidfile) {
    own_pidfile = fmt::format("{}/{}.{}.pid", req.state_dir, name, ::getpid());
    qemu_argv.push_back("-pidfile");
    qemu_argv.push_back(own_pidfile);
  }
  std::vector<std::string> supervised_argv = qemu_argv;
  supervised_argv[0] = exe;

  ChildStatus status;
  try {
    status = supervise(supervised_argv, signals, [&journal](pid_t pid) {
      if (auto q = identify_process(pid)) journal.owner(*q);
    });
  } catch (const Error&) {
    abandon();  // QEMU never ran: nothing can hold the objects
    throw;
  }

  if (req.qemu.daemonize && status.exit_code() == 0) {
    // The daemon now owns the disks; hand teardown to a monitor that waits on its pidfd.
    const std::string pidfile = req.qemu.pidfile ? *req.qemu.pidfile : own_pidfile;
    try {
      pid_t daemon = read_pidfile(pidfile);
      int pidfd = open_pidfd(daemon);
      if (auto q = identify_process(daemon)) journal.owner(*q);
      std::vector<std::string> extra = copies;
      if (!own_pidfile.empty()) extra.push_back(own_pidfile);
      spawn_teardown_monitor(pidfd, journal.path(), req.configfs, extra);
      ::close(pidfd);
      prov.release();
      return 0;
    } catch (const Error& e) {
      // No daemon to watch (it died at once): the disks are free again.
      log_warning(e.what());
    }
  }

  // QEMU has exited and was reaped: its vhost fds are closed, so teardown may begin.
  mark_teardown_phase(fs);
  int leaked = prov.teardown();
  cleanup_files();
  if (!own_pidfile.empty()) ::unlink(own_pidfile.c_str());
  if (leaked > 0) {
    log_error(fmt::format("{}: {} LIO object(s) could not be removed (QEMU exited with {}); "
                          "the journal {} keeps them for 'qemu-lio gc'",
                          name, leaked, status.exit_code(), journal.path()));
    return exit_code::kTeardownFailed;
  }
  journal.remove();
  return status.exit_code();
}

int run_vm(const RunOptions& opts, ConfigFs& fs) {
  LaunchRequest req;
  req.name = opts.name;
  req.dry_run = opts.dry_run;
  req.configfs = opts.configfs;
  req.state_dir = opts.state_dir;
  req.config = load_config();
  if (opts.exec_mode) req.config.mode = LaunchMode::kExec;
  // Parse every SPEC first: a typo in the third image must not cost a provisioning cycle.
  std::vector<ImageSpec> specs;
  for (const std::string& s : opts.images) specs.push_back(parse_image_spec(s));
  req.qemu = scan_qemu_argv(opts.qemu_argv);
  prepend_images(req.qemu, specs);
  return launch(req, fs);
}

int dropin_main(const std::vector<std::string>& argv) {
  Config cfg = load_config();
  const std::string exe = find_real_qemu(argv.at(0), cfg);
  DropinRequest scanned = scan_qemu_argv(argv);
  if (scanned.images.empty()) {
    // Nothing to do: become QEMU. Same pid, argv untouched, argv[0] preserved.
    exec_qemu(exe, argv);
  }
  LaunchRequest req;
  req.qemu = std::move(scanned);
  req.qemu_exe = exe;
  req.config = cfg;
  if (const char* d = ::secure_getenv("QEMU_LIO_STATE_DIR"); d && *d) req.state_dir = d;
  auto fs = make_configfs(req.configfs);
  return launch(req, *fs);
}

}  // namespace qemu_lio
