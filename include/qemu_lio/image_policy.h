#pragma once
// The host's policy on which images qemu-lio may hand to the kernel (`allow = DIR` in
// /etc/qemu-lio.conf). The kernel opens fd_dev_name by name, as root, when `enable` is
// written; the policy must hold for the file the kernel opens, not only for the one checked.

#include "qemu_lio/config_file.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// With `allow` entries in `cfg`: throws Error naming the image unless its canonical path is
/// under an allowed directory, and unless every directory from "/" down to the image's
/// parent is writable by root alone (owner uid 0, no group or other write bit); a sticky
/// directory (mode 1777, as /tmp) is accepted when root owns the image. Anyone else who can
/// write such a directory could swap the image for a symlink between the check and enable.
/// Without allow entries it does nothing.
void check_image_policy(const Config& cfg, const ImageSpec& spec, const ImageInfo& info);

}  // namespace qemu_lio
