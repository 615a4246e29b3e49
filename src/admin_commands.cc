#include "qemu_lio/admin_commands.h"

#include <fmt/core.h>

#include <cstdio>

#include "qemu_lio/gc.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"

namespace qemu_lio {

namespace {
void print_line(const std::string& line) { fmt::print("{}\n", line); }
}  // namespace

int gc_command(const RunOptions& opts, ConfigFs& fs) {
  prepare_lio(opts.configfs);
  // A dry run is the same gc against a tree and a state directory that only print.
  auto dry_fs = make_dry_run_configfs(fs, print_line);
  const GcEffects fx = opts.dry_run ? GcEffects{*dry_fs,
                                                [](const std::string& f) { print_line("would delete " + f); },
                                                ServedEffects::dry_run(print_line)}
                                    : GcEffects::real(fs);
  GcReport r = collect_garbage(fx, opts.state_dir);
  for (const std::string& l : r.lines) print_line(l);
  if (opts.verbosity != Verbosity::kQuiet)
    fmt::print("gc: {} stale set(s), {} object(s) removed{}, {} failure(s)\n", r.sets,
               r.objects_removed, opts.dry_run ? " (dry run: nothing was changed)" : "", r.failures);
  return r.failures ? 1 : 0;
}

int list_command(const RunOptions& opts, ConfigFs& fs) {
  std::string out = render_statuses(vm_statuses(fs, opts.state_dir), opts.json);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int check_command(const RunOptions& opts) {
  int failed = 0;
  for (const CheckItem& c : preflight(opts.configfs, opts.qemu)) {
    if (c.info) {
      fmt::print("info  {}\n", c.what);
    } else if (c.ok) {
      fmt::print("ok    {}\n", c.what);
    } else {
      ++failed;
      fmt::print("FAIL  {}: {}\n", c.what, c.detail);
    }
  }
  return failed ? 1 : 0;
}

}  // namespace qemu_lio
