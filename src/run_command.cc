#include "qemu_lio/run_command.h"

#include <unistd.h>

#include <fmt/core.h>

#include <cstdio>

#include "qemu_lio/error.h"
#include "qemu_lio/gc.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/process_identity.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/log.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/qemu_args.h"
#include "qemu_lio/shell_script.h"
#include "qemu_lio/supervisor.h"

namespace qemu_lio {
namespace {

std::string vm_name_for(const RunOptions& opts) {
  if (opts.name) {
    check_token("--name", *opts.name);
    if (opts.name->size() > 64) throw UsageError("--name", "longer than 64 characters");
    return *opts.name;
  }
  if (auto q = qemu_option_value(opts.qemu_argv, "-name")) {
    std::string n = sanitize_vm_name(*q);
    if (!n.empty()) return n;
  }
  return fmt::format("qemu-lio-{}", ::getpid());
}

}  // namespace

int run_vm(const RunOptions& opts, ConfigFs& fs) {
  // Blocked from the start: a SIGTERM during provisioning waits and goes to QEMU, instead
  // of killing us between two configfs writes.
  SignalBlock signals;

  const std::string name = vm_name_for(opts);
  // Parse every SPEC first: a typo in the third image must not cost a provisioning cycle.
  std::vector<ImageSpec> specs;
  for (const std::string& s : opts.images) specs.push_back(parse_image_spec(s));
  std::vector<CheckedImage> images;
  for (const ImageSpec& spec : specs) images.push_back({spec, inspect_image(spec)});

  Plan plan = build_plan(name, images);
  std::vector<std::string> qemu_argv = with_extra_args(opts.qemu_argv, plan.qemu_extra_args);

  if (opts.dry_run) {
    check_conflicts(plan, scan_inventory(fs));
    std::string script = render_shell_script(plan, opts.configfs, qemu_argv);
    std::fwrite(script.data(), 1, script.size(), stdout);
    std::fflush(stdout);
    return 0;
  }
  if (plan.disks.empty()) {
    // Nothing to provision: no journal, no lock, just supervise.
    return supervise(qemu_argv, signals).exit_code();
  }

  prepare_lio(opts.configfs);
  if (!fs.exists("target/core"))
    throw Error(opts.configfs + "/target", "LIO is not available: load target_core_mod, "
                                           "target_core_file and vhost_scsi (see 'qemu-lio check')");
  // Runs killed earlier (wrapper and QEMU gone) left objects that may hold our images.
  for (const std::string& line : collect_garbage(fs, opts.state_dir, false).lines)
    log_warning("gc: " + line);

  auto self = identify_process(::getpid());
  JournalWriter journal(opts.state_dir, name, self.value_or(ProcessId{::getpid(), 0}));
  Provisioner prov(fs);
  try {
    {
      // The conflict check and the creation of the backstores form one step for every
      // qemu-lio on this host: two runs on one image cannot both pass the check.
      StateLock lock(opts.state_dir);
      check_conflicts(plan, scan_inventory(fs));
      for (const DiskPlan& d : plan.disks) journal.image(d.info.canonical_path, d.identity.wwn);
      prov.set_observer([&journal](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
      prov.apply(plan);
    }
    journal.ready();
  } catch (...) {
    // apply() has rolled back; the journal goes only if the kernel really is clean.
    if (prov.teardown() == 0) journal.remove();
    throw;
  }
  for (const DiskPlan& d : plan.disks)
    log_verbose(fmt::format("{} -> {}", d.info.canonical_path, d.identity.wwn));

  ChildStatus status;
  try {
    status = supervise(qemu_argv, signals, [&journal](pid_t pid) {
      if (auto q = identify_process(pid)) journal.owner(*q);
    });
  } catch (const Error&) {
    // QEMU never ran: nothing can hold the objects.
    if (prov.teardown() == 0) journal.remove();
    throw;
  }
  // QEMU has exited and was reaped: its vhost fds are closed, so teardown may begin.
  int leaked = prov.teardown();
  if (leaked > 0) {
    log_error(fmt::format("{}: {} LIO object(s) could not be removed (QEMU exited with {}); "
                          "the journal {} keeps them for 'qemu-lio gc'",
                          name, leaked, status.exit_code(), journal.path()));
    return exit_code::kTeardownFailed;
  }
  journal.remove();
  return status.exit_code();
}

}  // namespace qemu_lio
