#pragma once
// Turns validated images into a Plan: the configfs steps in the order the kernel demands,
// and the -device options QEMU gets.

#include <string>
#include <vector>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_spec.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/plan.h"

namespace qemu_lio {

/// An image that passed inspect_image().
struct CheckedImage {
  ImageSpec spec;
  ImageInfo info;
};

/// Builds the plan for `vm_name` (already a safe token). Pure: reads nothing. The disks are
/// numbered from `first_disk` (a disk attached later continues the VM's numbering).
Plan build_plan(const std::string& vm_name, const std::vector<CheckedImage>& images, int first_disk = 0);

/// Fails (Error, exit 1) if the plan collides with the live tree or with itself: an image
/// already served by a backstore (unless both exports are read-only, or both are share=on:
/// one object then serves both, see join_shared), a wwn already
/// present, or the same image or wwn twice.
void check_conflicts(const Plan& plan, const Inventory& inv);

using layout::kSharedObjectPrefix;

/// The storage object name of a share=on disk on the image known as `image_name`
/// (ImageInfo::identity_name or the canonical path): the same in every VM.
std::string shared_object_name(const std::string& image_name);

/// True if `b` is a share=on disk's object (its name starts with kSharedObjectPrefix).
bool is_shared_export(const Backstore& b);

/// Turns each share=on disk whose object `inv` already holds (another VM made it) from a
/// maker of the object into a user of it: its HBA and object become kJoin steps (journalled
/// as shared removals), the settings it would have written are read back as kExpect steps
/// (a mismatch fails, naming the attribute), and its LUN links the existing object. Run it
/// under the state lock, after check_conflicts, with the inventory that check saw.
void join_shared(Plan& plan, const Inventory& inv);

/// True if `b` is a read-only export made by qemu-lio (its name ends in "-ro"), which a
/// read-only disk may share.
bool is_read_only_export(const Backstore& b);

/// Turns an arbitrary VM name (QEMU's "-name guest=x,..." included) into a safe token.
std::string sanitize_vm_name(const std::string& raw);

}  // namespace qemu_lio
