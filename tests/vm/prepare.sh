#!/bin/bash
# prepare.sh: get everything the VM tests need onto this machine, once.
#
#   tests/vm/prepare.sh            # prints the env file (KEY=VALUE lines) on stdout
#
# The host kernel of the dev/CI machines has no configfs, no LIO and no /lib/modules, so the
# tests boot Debian's own kernel under QEMU (TCG). This script:
#   1. apt-get installs the Debian packages the harness runs (only those missing, so a
#      second run costs a dpkg-query, not an apt run);
#   2. downloads the linux-image package that linux-image-amd64 currently depends on,
#      extracts it into the cache (outside the repo) and runs depmod there;
#   3. builds the test VM's initramfs (busybox-static, the needed .ko files, an /init) and
#      the base initramfs for nested guests (see make-guest-initrd.sh);
#   4. writes $CACHE/env with the paths (KERNEL, INITRD, ...).
# Everything is keyed by kernel version, plus a hash of the scripts that build the initramfs,
# so a rerun with nothing to do takes well under a second.
#
# Env: QEMU_LIO_VM_CACHE  cache dir (default /var/cache/qemu-lio-vm)
#      QEMU_LIO_VM_KERNEL_PKG  pin a kernel package (e.g. linux-image-6.1.0-56-amd64)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=initrd-lib.sh
. "$here/initrd-lib.sh"

CACHE=${QEMU_LIO_VM_CACHE:-/var/cache/qemu-lio-vm}
PACKAGES="qemu-system-x86 qemu-utils busybox-static cpio kmod targetcli-fb fio sg3-utils e2fsprogs dbus"

log() { echo "prepare: $*" >&2; }
die() { echo "prepare: error: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
    # Fresh CI images often ship without package lists; update at most once per run.
    [ "$apt_updated" = 1 ] && return 0
    log "apt-get update"
    timeout 600 apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
}

# Names of packages from "$@" that are not installed. One dpkg-query for all of them.
missing_packages() {
    local p st
    for p in "$@"; do
        st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [ "${st:0:2}" = ii ] || echo "$p"
    done
}

install_packages() {
    local missing
    missing=$(missing_packages "$@" | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages: $missing(run this script as root once, or apt-get install them)"
    log "installing:$missing"
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    if ! timeout 1200 apt-get install -y -qq --no-install-recommends $missing >&2; then
        # Stale lists give 404s: refresh and try once more.
        apt_update
        # shellcheck disable=SC2086
        timeout 1200 apt-get install -y -qq --no-install-recommends $missing >&2 \
            || die "apt-get install$missing failed"
    fi
}

# The kernel package name, e.g. linux-image-6.1.0-56-amd64.
resolve_kernel_pkg() {
    local pkg
    if [ -n "${QEMU_LIO_VM_KERNEL_PKG:-}" ]; then
        echo "$QEMU_LIO_VM_KERNEL_PKG"
        return
    fi
    pkg=$(timeout 60 apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
    if [ -z "$pkg" ]; then
        apt_update
        pkg=$(timeout 60 apt-cache depends linux-image-amd64 2>/dev/null \
            | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
    fi
    if [ -z "$pkg" ] && [ -r "$CACHE/env" ]; then
        # No usable apt metadata (offline?): keep testing with the kernel we already have.
        pkg=linux-image-$(sed -n 's/^KVER=//p' "$CACHE/env")
        log "warning: cannot resolve linux-image-amd64, using cached $pkg"
    fi
    [ -n "$pkg" ] || die "cannot resolve the kernel package behind linux-image-amd64"
    echo "$pkg"
}

# fetch_kernel PKG KDIR: KDIR/root gets boot/vmlinuz-KVER and lib/modules/KVER (+ depmod).
fetch_kernel() {
    local pkg=$1 kdir=$2 kver=${1#linux-image-} tmp deb
    [ -e "$kdir/.extracted" ] && return 0
    mkdir -p "$kdir"
    tmp=$(mktemp -d "$kdir/.fetch.XXXXXX")
    log "downloading $pkg"
    # Sandbox user root: the _apt user cannot write into a root-owned cache dir, and the
    # warning about it is noise.
    if ! (cd "$tmp" && timeout 900 apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); then
        apt_update
        (cd "$tmp" && timeout 900 apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) \
            || die "apt-get download $pkg failed"
    fi
    deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)
    [ -n "$deb" ] || die "apt-get download $pkg produced no .deb"
    timeout 600 dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $deb failed"
    rm -f "$deb"
    # Newer Debian kernels install to /usr/lib/modules; keep one layout (DIR/lib/modules)
    # for `modprobe -d` and `depmod -b`.
    if [ ! -d "$tmp/root/lib/modules/$kver" ] && [ -d "$tmp/root/usr/lib/modules/$kver" ]; then
        mkdir -p "$tmp/root/lib"
        mv "$tmp/root/usr/lib/modules" "$tmp/root/lib/modules"
    fi
    [ -d "$tmp/root/lib/modules/$kver" ] || die "$pkg has no lib/modules/$kver"
    [ -e "$tmp/root/boot/vmlinuz-$kver" ] || die "$pkg has no boot/vmlinuz-$kver"
    # The package's postinst normally runs depmod; we did not install it, so run it here.
    timeout 300 depmod -b "$tmp/root" "$kver" || die "depmod -b $tmp/root $kver failed"
    rm -rf "$kdir/root"
    mv "$tmp/root" "$kdir/root"
    rmdir "$tmp"
    touch "$kdir/.extracted"
}

# extract_vmlinux KVER ROOT: ROOT/boot/vmlinux-KVER, the uncompressed ELF kernel, if this
# kernel can boot from it (CONFIG_PVH: QEMU then enters it directly through the PVH note).
# Why: a nested guest runs under two levels of TCG, where the bzImage's own xz decompression
# takes tens of seconds; natively here it takes half a second. Best effort: without it
# GUEST_KERNEL stays the vmlinuz.
extract_vmlinux() {
    local kver=$1 root=$2 z out magic off cmd
    z=$root/boot/vmlinuz-$kver
    out=$root/boot/vmlinux-$kver
    [ -s "$out" ] && return 0
    grep -qx 'CONFIG_PVH=y' "$root/boot/config-$kver" 2>/dev/null || return 0
    # Find the payload by its magic (the same idea as the kernel's extract-vmlinux script);
    # the decompressors stop at, or complain about, the trailing data, so the result is
    # judged by its ELF magic rather than their exit status.
    for magic in xz gzip zstd; do
        case $magic in
            xz)   off=$(LC_ALL=C grep -abo -m1 $'\xfd7zXZ' "$z" | head -n1 | cut -d: -f1); cmd="xz -dcq --single-stream" ;;
            gzip) off=$(LC_ALL=C grep -abo -m1 $'\x1f\x8b\x08' "$z" | head -n1 | cut -d: -f1); cmd="gzip -dcq" ;;
            zstd) off=$(LC_ALL=C grep -abo -m1 $'\x28\xb5\x2f\xfd' "$z" | head -n1 | cut -d: -f1); cmd="zstd -dcq" ;;
        esac
        if [ -z "$off" ] || ! command -v "${cmd%% *}" >/dev/null; then continue; fi
        # shellcheck disable=SC2086 # $cmd is a command with options
        tail -c +$((off + 1)) "$z" | timeout 120 $cmd >"$out.tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            mv -f "$out.tmp" "$out"
            return 0
        fi
    done
    rm -f "$out.tmp"
    log "note: could not extract vmlinux from $z; nested guests boot the compressed kernel"
}

# Modules the test VM loads at boot. Required ones must exist; optional ones are skipped if the
# kernel lacks them (or has them built in). Dependencies and softdeps come from modules.dep.
VM_MODULES_REQUIRED="virtio_pci virtio_blk 9pnet_virtio 9p overlay ext4 loop configfs
    target_core_mod target_core_file target_core_iblock tcm_loop iscsi_target_mod
    vhost vhost_iotlb vhost_scsi virtio_scsi sd_mod scsi_mod"
# virtio-rng: python (targetcli) blocks in getrandom() until the crng is seeded.
# crc32c: ext4 metadata checksums (softdep crypto-crc32c). pscsi/nbd: optional backends.
VM_MODULES_OPTIONAL="virtio-rng crc32c_generic crc32c-intel target_core_pscsi nbd"

# PID 1 of the test VM (busybox sh). It is configured by /vmio/vm.conf, written by vm-run.sh
# into the per-run directory that QEMU shares as mount_tag "vmio".
write_vm_init() {
    cat >"$1" <<'INIT'
#!/bin/sh
# Test VM init. Never returns: every path ends in poweroff, so QEMU (-no-reboot) exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
say() { echo "vm-init: $*"; }
halt_vm() {
    sync
    poweroff -f
    # Only reached if ACPI power-off did not work.
    echo o >/proc/sysrq-trigger
    sleep 60
}
die() { say "FATAL: $*"; halt_vm; }

mount -t proc proc /proc || die "mount /proc"
mount -t sysfs sysfs /sys || die "mount /sys"
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
KVER=$(uname -r)

# insmod in the order computed at build time (dependencies first). Optional accelerator
# modules may fail with "No such device" on this virtual CPU; that is harmless.
while read -r rel; do
    err=$(insmod "/lib/modules/$KVER/$rel" 2>&1) || case $err in
        *"File exists"*) ;;
        *) say "insmod $rel: $err" ;;
    esac
done </etc/modules.load
for m in 9p overlay configfs target_core_mod target_core_file target_core_iblock tcm_loop vhost_scsi loop ext4; do
    [ -d "/sys/module/$m" ] || die "module $m did not load"
done

mkdir -p /vmio /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmio /vmio || die "mount 9p vmio"
[ -r /vmio/vm.conf ] || die "/vmio/vm.conf missing"
. /vmio/vm.conf

# The host root, read-only, under a tmpfs overlay: host binaries run unchanged and writes
# stay in guest RAM. cache=loose: the host tree does not change during a run, and without
# it every exec re-reads binaries over 9p (python for targetcli is slow enough already).
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower \
    || die "mount 9p hostroot"
mount -t tmpfs -o mode=755 tmpfs /rw || die "mount tmpfs /rw"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || die "mount overlay"

R=/newroot
mount -t proc proc $R/proc || die "mount $R/proc"
mount -t sysfs sysfs $R/sys || die "mount $R/sys"
mount -t configfs configfs $R/sys/kernel/config || die "mount configfs"
mount -t devtmpfs devtmpfs $R/dev || die "mount $R/dev"
# What udev would add: bash's process substitution <(...) needs /dev/fd.
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts || die "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
# Host directories under /tmp or /run that the run needs (a CI checkout and its build tree,
# say) would vanish under the fresh tmpfs: hold them aside and put them back on top, still
# copy-on-write like the rest of the root.
kept=""
n=0
for d in ${VM_KEEP_DIRS:-}; do
    [ -d "$R$d" ] || continue
    mkdir -p /keep/$n
    mount -o bind "$R$d" /keep/$n || die "hold $d"
    kept="$kept $n:$d"
    n=$((n + 1))
done
mount -t tmpfs -o mode=755 tmpfs $R/run || die "mount $R/run"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || die "mount $R/tmp"
for k in $kept; do
    mkdir -p "$R${k#*:}"
    mount -o bind "/keep/${k%%:*}" "$R${k#*:}" || die "keep ${k#*:}"
done
mkdir -p $R/run/vmio
mount -o bind /vmio $R/run/vmio || die "bind vmio"
# A cache dir under /tmp or /run is now hidden by the tmpfs: show it again, read-only from
# the lower layer, at the same path (the script gets KERNEL etc. as paths in it).
if [ -n "${VM_CACHE_DIR:-}" ] && [ ! -d "$R$VM_CACHE_DIR" ]; then
    mkdir -p "$R$VM_CACHE_DIR"
    mount -o bind "/lower$VM_CACHE_DIR" "$R$VM_CACHE_DIR" || die "bind $VM_CACHE_DIR"
fi

# modprobe inside the chroot must find this kernel's modules: bind the cached tree over
# /lib/modules. Resolve the path inside the new root first (/lib is a symlink there).
moddir=$(chroot $R /bin/sh -c 'mkdir -p /lib/modules && readlink -f /lib/modules') || die "resolve /lib/modules"
mount -o bind "$R$VM_MODULES_ROOT/lib/modules" "$R$moddir" || die "bind $VM_MODULES_ROOT/lib/modules"

if [ "${VM_SCRATCH:-0}" = 1 ]; then
    mkdir -p $R/scratch
    mount -t ext4 /dev/vda $R/scratch || die "mount scratch /dev/vda"
fi

# Module requests from the kernel (crypto algorithms, target backends, ...) run /sbin/modprobe
# in the initramfs root. From now on the wrapper there hands them to kmod in the chroot,
# which sees every module of this kernel, not just the initramfs subset.
: >/run/chroot-ready

say "booted in $(cut -d' ' -f1 /proc/uptime) s (kernel uptime)"
cut -d' ' -f1 /proc/uptime >/vmio/started

# Script output goes to the console (streamed live by the host) and to /vmio/output.
# A fifo and a background tee, not a pipeline: a daemon the script leaves behind
# (dbus-daemon) may keep the write end open, and PID 1 must not wait for it.
mkfifo /run/out.fifo
tee /vmio/output </run/out.fifo &
tee_pid=$!
chroot $R /bin/bash /run/vmio/run.sh </dev/null >/run/out.fifo 2>&1
rc=$?
echo "$rc" >/vmio/rc.tmp && mv /vmio/rc.tmp /vmio/rc
sleep 1
kill $tee_pid 2>/dev/null
halt_vm
INIT
    chmod 755 "$1"
}

write_modprobe_wrapper() {
    cat >"$1" <<'MP'
#!/bin/sh
# Kernel-requested module loads (kernel.modprobe = /sbin/modprobe) resolve in the initramfs.
# Once the chroot is up, use its kmod and full module tree; before that, busybox and the
# initramfs subset.
if [ -e /run/chroot-ready ]; then
    exec chroot /newroot /sbin/modprobe "$@"
fi
exec /bin/modprobe "$@"
MP
    chmod 755 "$1"
}

build_vm_initrd() {
    local root=$1 kver=$2 out=$3 stage
    stage=$(mktemp -d "${out%/*}/.stage.XXXXXX")
    initrd_add_busybox "$stage"
    initrd_add_modules "$stage" "$root" "$kver" "$VM_MODULES_REQUIRED" "$VM_MODULES_OPTIONAL"
    write_vm_init "$stage/init"
    # target_core_mod opens its dbroot (/etc/target) at load time, from the initramfs root, and
    # logs "db_root: cannot open: /etc/target" when it is missing.
    mkdir -p "$stage/etc/target"
    write_modprobe_wrapper "$stage/sbin/modprobe"
    initrd_pack "$stage" "$out"
    rm -rf "$stage"
}

main() {
    # shellcheck disable=SC2086 # a list of package names
    install_packages $PACKAGES
    mkdir -p "$CACHE"
    # Parallel test runs share the cache: one builder at a time.
    exec 9>"$CACHE/.lock"
    timeout 1800 flock 9 || die "cannot lock $CACHE/.lock"

    local pkg kver kdir root stamp
    pkg=$(resolve_kernel_pkg)
    kver=${pkg#linux-image-}
    kdir=$CACHE/$kver
    root=$kdir/root
    fetch_kernel "$pkg" "$kdir"
    extract_vmlinux "$kver" "$root"
    local guest_kernel=$root/boot/vmlinuz-$kver qboot=
    [ -s "$root/boot/vmlinux-$kver" ] && guest_kernel=$root/boot/vmlinux-$kver
    # qboot: a minimal firmware that goes straight to the kernel; SeaBIOS's POST is slow
    # under nested TCG. Shipped in qemu-system-data; without it QEMU uses SeaBIOS.
    [ -r /usr/share/qemu/qboot.rom ] && qboot=/usr/share/qemu/qboot.rom

    # Compressed modules (newer Debian kernels) need the decompressor on the build side.
    if find "$root/lib/modules/$kver/kernel" -name '*.ko.xz' -print -quit | grep -q .; then
        install_packages xz-utils
    fi
    if find "$root/lib/modules/$kver/kernel" -name '*.ko.zst' -print -quit | grep -q .; then
        install_packages zstd
    fi

    stamp=$(cat "$here/prepare.sh" "$here/initrd-lib.sh" | sha256sum | cut -c1-16)
    if [ "$(cat "$kdir/vm-initrd.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -e "$kdir/vm-initrd.cpio" ]; then
        log "building VM initramfs for $kver"
        build_vm_initrd "$root" "$kver" "$kdir/vm-initrd.cpio"
        echo "$stamp" >"$kdir/vm-initrd.stamp"
    fi
    stamp=$(cat "$here/make-guest-initrd.sh" "$here/initrd-lib.sh" | sha256sum | cut -c1-16)
    if [ "$(cat "$kdir/guest-base.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -e "$kdir/guest-base.cpio" ]; then
        log "building nested-guest base initramfs for $kver"
        GUEST_MODULES_ROOT=$root KVER=$kver "$here/make-guest-initrd.sh" --base "$kdir/guest-base.cpio"
        echo "$stamp" >"$kdir/guest-base.stamp"
    fi

    cat >"$kdir/env.tmp" <<EOF
QEMU_LIO_VM_CACHE=$CACHE
KVER=$kver
KERNEL=$root/boot/vmlinuz-$kver
GUEST_KERNEL=$guest_kernel
QBOOT=$qboot
INITRD=$kdir/vm-initrd.cpio
GUEST_BASE_INITRD=$kdir/guest-base.cpio
GUEST_MODULES_ROOT=$root
GUEST_MODULES_DIR=$root/lib/modules/$kver
EOF
    mv -f "$kdir/env.tmp" "$kdir/env"
    cp -f "$kdir/env" "$CACHE/env.tmp" && mv -f "$CACHE/env.tmp" "$CACHE/env"
    cat "$CACHE/env"
}

main "$@"
