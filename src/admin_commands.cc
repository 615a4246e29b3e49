#include "qemu_lio/admin_commands.h"

#include <fmt/core.h>

#include <cstdio>

#include "qemu_lio/gc.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"

namespace qemu_lio {

int gc_command(const RunOptions& opts, ConfigFs& fs) {
  if (!opts.dry_run) prepare_lio(opts.configfs);
  GcReport r = collect_garbage(fs, opts.state_dir, opts.dry_run);
  for (const std::string& l : r.lines) fmt::print("{}\n", l);
  if (opts.verbosity != Verbosity::kQuiet)
    fmt::print("gc: {} stale set(s), {} object(s) {}, {} failure(s)\n", r.sets,
               opts.dry_run ? 0 : r.objects_removed, opts.dry_run ? "removed (dry run)" : "removed",
               r.failures);
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
    if (c.ok) {
      fmt::print("ok    {}\n", c.what);
    } else {
      ++failed;
      fmt::print("FAIL  {}: {}\n", c.what, c.detail);
    }
  }
  return failed ? 1 : 0;
}

}  // namespace qemu_lio
