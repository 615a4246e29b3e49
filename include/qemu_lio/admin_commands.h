#pragma once
// `qemu-lio gc`, `list` and `check`: the operator's view of what qemu-lio owns.

#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// gc: removes stale object sets; prints one line per action. 0 if all clean, else 1.
int gc_command(const RunOptions& opts, ConfigFs& fs);
/// list: prints every journalled VM (text or JSON). Always 0.
int list_command(const RunOptions& opts, ConfigFs& fs);
/// check: prints the preflight with fixes. 0 if all ok, else 1.
int check_command(const RunOptions& opts);

}  // namespace qemu_lio
