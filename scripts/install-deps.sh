#!/usr/bin/env bash
# Installs what building and testing qemu-lio need, from Debian's packages, only when
# missing, so a second run costs a second. Needs root (CI runs as root).
set -euo pipefail

build_pkgs=(g++ cmake make libboost-program-options-dev libboost-filesystem-dev libboost-dev
            libfmt-dev libgtest-dev nlohmann-json3-dev libpugixml-dev
            dpkg-dev)    # scripts/package.sh: dpkg-shlibdeps for the .deb's Depends
# The real-kernel VM tests: a Debian kernel under QEMU TCG, with the host's own QEMU,
# targetcli and fio running inside it. qemu-utils: qemu-img and qemu-io for the formats suite.
vm_pkgs=(qemu-system-x86 qemu-utils busybox-static cpio kmod targetcli-fb fio sg3-utils e2fsprogs dbus
         xz-utils zstd libvirt-daemon-system libvirt-clients)
# The package's lintian check and the man page's lint (docs test).
check_pkgs=(lintian mandoc)

want=("${build_pkgs[@]}")
[ "${1:-}" = "--build-only" ] || want+=("${vm_pkgs[@]}" "${check_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
