#!/usr/bin/env bash
# Builds the Debian package: the installed form of qemu-lio (no fault injection, no tests),
# in its own build dir so the test build is not reconfigured, then `cpack -G DEB`.
# Prints the .deb's path as the last line of stdout.
#   scripts/package.sh                   build dir ./build-package (or $PKG_BUILD_DIR)
# Needs cmake, g++, the -dev packages of scripts/install-deps.sh --build-only, and dpkg-dev
# (dpkg-shlibdeps computes the libc dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${PKG_BUILD_DIR:-build-package}
# Debian's hardening flags (lintian checks for them), when dpkg-buildflags is there, without
# -g: CPack strips the binary anyway (and debug info costs compile time, about a tenth).
cxxflags= ldflags=
if command -v dpkg-buildflags >/dev/null; then
  flags() { DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1"; }
  cxxflags="$(flags CPPFLAGS) $(flags CXXFLAGS | sed 's/\(^\| \)-g\( \|$\)/ /')"
  ldflags=$(flags LDFLAGS)
fi
# A unity build (the sources in batches of 15) halves the compile time, most of it spent
# parsing the same Boost, fmt and JSON headers; the VM's package scenario runs this binary.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=15 \
  -DQEMU_LIO_FAULT_INJECTION=OFF -DQEMU_LIO_BUILD_TESTS=OFF -DQEMU_LIO_INSTALL_ETC=ON \
  -DCMAKE_INSTALL_PREFIX=/usr \
  -DCMAKE_CXX_FLAGS="$cxxflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" >&2
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
arch=$(dpkg --print-architecture)
deb=$(cd "$build_dir" && pwd)/qemu-lio_${version}_${arch}.deb
rm -f "$deb"
(cd "$build_dir" && cpack -G DEB >&2)
[ -f "$deb" ] || { echo "package: cpack made no $deb" >&2; exit 1; }
echo "$deb"
