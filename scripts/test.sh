#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds, then runs the
# unit tests and the real-kernel VM tests through CTest. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 3000 "$@"
