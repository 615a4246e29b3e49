# shellcheck shell=bash
# Helpers shared by prepare.sh (the VM's initramfs) and make-guest-initrd.sh (the nested guest's).
# Sourced, not run. Callers have `set -euo pipefail`.
#
# An initramfs here is a staging directory turned into an uncompressed newc cpio archive.
# Uncompressed on purpose: under TCG the kernel's gunzip costs more than QEMU copying a few
# extra MB into guest RAM, and uncompressed archives can simply be concatenated (the kernel
# unpacks every archive it finds in the initrd, later files win), which is how
# make-guest-initrd.sh adds /guest.sh to a prebuilt base in a few milliseconds.

initrd_die() {
    echo "${0##*/}: error: $*" >&2
    exit 1
}

# initrd_add_busybox STAGE: busybox-static as /bin/busybox plus one symlink per applet.
# Symlinks are made here, on the build side, so the guest's init does not spend TCG time on
# `busybox --install`.
initrd_add_busybox() {
    local stage=$1 bb applet
    # Only busybox-static will do: the dynamic "busybox" package (same path) would need libc
    # inside the initramfs. The two packages conflict, so the package check is enough.
    bb=/bin/busybox
    if [ ! -x "$bb" ] || ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        initrd_die "static busybox not found (apt-get install busybox-static)"
    fi
    mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" \
        "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp" "$stage/run" "$stage/mnt" "$stage/etc"
    cp "$bb" "$stage/bin/busybox"
    # One busybox run inside the stage makes all the links (to /bin/busybox, which is where
    # it will be); a loop of `ln -s` costs a fork per applet, ~30 s inside the TCG VM.
    if ! chroot "$stage" /bin/busybox --install -s /bin 2>/dev/null; then
        for applet in $("$stage/bin/busybox" --list); do
            [ "$applet" = busybox ] && continue
            [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
        done
    fi
    # The kernel needs /dev/console to give init its stdio before devtmpfs is mounted.
    # mknod needs root; without it the kernel's own devtmpfs automount covers it only if enabled,
    # so insist on root (CI runs as root anyway).
    [ -e "$stage/dev/console" ] || mknod -m 600 "$stage/dev/console" c 5 1 \
        || initrd_die "cannot create $stage/dev/console: need root"
    [ -e "$stage/dev/null" ] || mknod -m 666 "$stage/dev/null" c 1 3
}

# initrd_add_binaries STAGE BINARY...: each dynamically linked BINARY (a name on PATH or a
# path) at its own path in STAGE, with the shared libraries and loader ldd names for it, so a
# guest script can run host tools such as sg_persist.
initrd_add_binaries() {
    local stage=$1 bin path lib
    shift
    for bin in "$@"; do
        path=$(command -v "$bin") || initrd_die "$bin: not found (the guest needs it)"
        path=$(readlink -f "$path")
        mkdir -p "$stage$(dirname "$path")"
        cp "$path" "$stage$path"
        for lib in $(ldd "$path" | grep -oE '/[^ ]+'); do
            mkdir -p "$stage$(dirname "$lib")"
            [ -e "$stage$lib" ] || cp -L "$lib" "$stage$lib"
        done
    done
}

# initrd_add_modules STAGE MODROOT KVER REQUIRED OPTIONAL
#   Copies the named modules and everything they need (modules.dep + softdeps, as resolved by
#   kmod's `modprobe --show-depends` against MODROOT/lib/modules/KVER) into
#   STAGE/lib/modules/KVER at the same relative paths, decompressed (.ko.xz/.ko.zst/.ko.gz
#   become .ko, so busybox insmod can load them whatever the kernel's compression setting),
#   runs depmod on the stage, and writes STAGE/etc/modules.load: the relative .ko paths in a
#   valid load order (dependencies first). REQUIRED and OPTIONAL are space separated module
#   names; a missing optional module or a built-in one is skipped.
initrd_add_modules() {
    local stage=$1 modroot=$2 kver=$3 required=$4 optional=$5
    local mdir="$modroot/lib/modules/$kver" sdir="$stage/lib/modules/$kver"
    local m line path rel out order=() seen=" " kind
    mkdir -p "$sdir"
    for kind in required optional; do
        local names
        if [ "$kind" = required ]; then names=$required; else names=$optional; fi
        for m in $names; do
            if ! out=$(modprobe -d "$modroot" -S "$kver" --show-depends "$m" 2>&1); then
                [ "$kind" = optional ] && continue
                initrd_die "module $m: not found in $mdir: $out"
            fi
            while IFS= read -r line; do
                case $line in
                    insmod\ *) path=${line#insmod }; path=${path%% *} ;;
                    *) continue ;; # "builtin NAME": nothing to load
                esac
                rel=${path#"$mdir"/}
                case $seen in *" $rel "*) continue ;; esac
                seen="$seen$rel "
                order+=("$rel")
            done <<<"$out"
        done
    done
    : >"$stage/etc/modules.load"
    for rel in "${order[@]}"; do
        mkdir -p "$sdir/$(dirname "$rel")"
        case $rel in
            *.ko.xz)  xz -dc <"$mdir/$rel" >"$sdir/${rel%.xz}" || initrd_die "cannot decompress $rel (xz-utils)"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -qdc <"$mdir/$rel" >"$sdir/${rel%.zst}" || initrd_die "cannot decompress $rel (zstd)"; rel=${rel%.zst} ;;
            *.ko.gz)  gzip -dc <"$mdir/$rel" >"$sdir/${rel%.gz}" || initrd_die "cannot decompress $rel"; rel=${rel%.gz} ;;
            *)        cp "$mdir/$rel" "$sdir/$rel" ;;
        esac
        echo "$rel" >>"$stage/etc/modules.load"
    done
    # modules.builtin keeps busybox/kmod modprobe quiet about built-in names.
    for f in modules.builtin modules.builtin.modinfo modules.order; do
        [ -e "$mdir/$f" ] && cp "$mdir/$f" "$sdir/$f"
    done
    depmod -b "$stage" "$kver" || initrd_die "depmod failed for $stage"
}

# initrd_pack STAGE OUT: newc cpio, uncompressed, root-owned, written atomically.
initrd_pack() {
    local stage=$1 out=$2
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp.$$" \
        || initrd_die "cpio failed for $stage"
    mv -f "$out.tmp.$$" "$out"
}
