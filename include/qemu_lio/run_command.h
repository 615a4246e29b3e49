#pragma once
// `qemu-lio run`: validate every image, provision, supervise QEMU, tear down.

#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// Runs a VM as `opts` says, through `fs` (the real configfs in production). Returns the
/// exit code: QEMU's, or one of exit_code::*. Throws Error for failures before QEMU starts,
/// after rolling back.
int run_vm(const RunOptions& opts, ConfigFs& fs);

}  // namespace qemu_lio
