#pragma once
// `qemu-lio attach` and `qemu-lio detach`: a disk added to or removed from a running VM that
// qemu-lio started, through the VM's private QMP socket (control_socket.h). The disk's LIO
// objects go into the VM's own journal, so the VM's exit, gc and `list` know them like the
// disks it started with; attach, detach and the exit's teardown take the journal's lock.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/journal.h"

namespace qemu_lio {

/// attach VM SPEC [--id ID]: provisions SPEC with every check of a start, records it in the
/// VM's journal and hot-plugs a vhost-scsi-pci device for it. Any failure rolls the disk
/// back and leaves the VM as it was. Returns 0; throws Error.
int attach_command(const RunOptions& opts, ConfigFs& fs);

/// detach VM ID|IMAGE: unplugs the disk's device, waits (bounded) until the guest has let it
/// go, then removes that disk's LIO objects alone. Returns 0; throws Error.
int detach_command(const RunOptions& opts, ConfigFs& fs);

/// The first pcie-root-port (QEMU's 1b36:000c) with an id and nothing behind it, in a
/// query-pci answer; none on a machine without such ports (pc plugs into its root bus).
std::optional<std::string> free_hotplug_port(const nlohmann::json& query_pci);

/// A device-list-properties answer names property `name`.
bool lists_property(const nlohmann::json& device_list_properties, const std::string& name);

/// The journal's undo steps that belong to the disk at LUN `lun` of `wwn`: its HBA and storage
/// object, and everything under its vhost target; or, when other disks of the journal are
/// LUNs of the same target (a controller), only its LUN and its mapping in the ACL. Oldest first.
std::vector<Undo> disk_undo_steps(const JournalContents& j, const std::string& wwn, int lun = 0);

/// The VM of journal `j` runs: its recorded QEMU, or before one is recorded its wrapper (in
/// exec mode QEMU itself) or a QEMU daemon named in its pidfile.
bool vm_running(const JournalContents& j);

/// The journal of the running VM named `vm`. Throws Error if there is none, or several.
JournalContents find_running_vm(const std::string& state_dir, const std::string& vm);

}  // namespace qemu_lio
