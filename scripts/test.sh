#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds, then runs the
# unit tests and the real-kernel VM tests through CTest. .ci/run calls exactly this.
# Extra arguments go to ctest (e.g. -L unit, -R vm_e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh --test
cd "${BUILD_DIR:-build}"
rc=0
ctest --output-on-failure "$@" || rc=$?
# The VM suites' own summaries (how many scenarios ran and passed), from CTest's log.
echo "== VM scenario summaries"
grep -h '^vm-scenarios: [0-9]' Testing/Temporary/LastTest.log 2>/dev/null || echo "(no VM suite ran)"
exit "$rc"
