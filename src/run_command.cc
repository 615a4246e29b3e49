#include "qemu_lio/run_command.h"

#include <unistd.h>

#include <fmt/core.h>

#include <cstdio>

#include "qemu_lio/error.h"
#include "qemu_lio/image_check.h"
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
  check_conflicts(plan, scan_inventory(fs));
  std::vector<std::string> qemu_argv = with_extra_args(opts.qemu_argv, plan.qemu_extra_args);

  if (opts.dry_run) {
    std::string script = render_shell_script(plan, opts.configfs, qemu_argv);
    std::fwrite(script.data(), 1, script.size(), stdout);
    std::fflush(stdout);
    return 0;
  }

  if (!plan.disks.empty() && !fs.exists("target/core"))
    throw Error(opts.configfs + "/target", "LIO is not available: mount configfs and load "
                                           "target_core_mod, target_core_file, vhost_scsi");

  Provisioner prov(fs);
  prov.apply(plan);
  for (const DiskPlan& d : plan.disks)
    log_verbose(fmt::format("{} -> {}", d.info.canonical_path, d.identity.wwn));

  ChildStatus status;
  try {
    status = supervise(qemu_argv, signals);
  } catch (const Error&) {
    prov.teardown();  // QEMU never ran: nothing can hold the objects
    throw;
  }
  // QEMU has exited and was reaped: its vhost fds are closed, so teardown may begin.
  int leaked = prov.teardown();
  if (leaked > 0) {
    log_error(fmt::format("{}: {} LIO object(s) could not be removed (QEMU exited with {})",
                          name, leaked, status.exit_code()));
    return exit_code::kTeardownFailed;
  }
  return status.exit_code();
}

}  // namespace qemu_lio
