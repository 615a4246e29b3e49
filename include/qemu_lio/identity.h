#pragma once
// Stable SCSI identities derived from an image's name (its canonical path, or a block
// device's stable /dev/disk/by-* name), so the guest's /dev/disk/by-id names survive
// restarts without any stored state.

#include <cstdint>
#include <string>

namespace qemu_lio {

/// The names a disk is known by in LIO and in the guest.
struct Identity {
  std::string wwn;     ///< vhost target WWPN: naa.5001405 + 9 hex (LIO's IEEE OUI)
  std::string nexus;   ///< I_T nexus initiator name: naa. + 16 hex, never equal to wwn
  std::string serial;  ///< vpd_unit_serial: a UUID-shaped string
};

/// Derives the identity of the image known as `name` (ImageInfo::identity_name: the canonical
/// path, or a block device's stable /dev/disk/by-* name). Pure: same input, same output.
Identity derive_identity(const std::string& name);

/// 64-bit FNV-1a of `s` continuing from `seed` (exposed for tests).
uint64_t fnv1a64(const std::string& s, uint64_t seed = 0xcbf29ce484222325ULL);

}  // namespace qemu_lio
