#!/usr/bin/env bash
# The main job, from a fresh Debian machine: install what is needed, build, then boot a
# real Debian kernel under QEMU in which qemu-lio gives a nested guest a vhost-scsi disk.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export QEMU_LIO=$PWD/${BUILD_DIR:-build}/qemu-lio
VM_ENV=QEMU_LIO exec tests/vm/vm-run.sh --timeout 900 scripts/demo-vm.sh
