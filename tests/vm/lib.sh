# shellcheck shell=bash disable=SC2034 # the variables here are for the scripts that source it
# lib.sh: helpers for scenario scripts that run inside the test VM (via vm-run.sh).
#
#   . "$(dirname "$0")/lib.sh"
#   my_case() { ...; assert_eq 1 "$(cat "$T/core/fileio_0/x/enable")" "enabled"; }
#   scenario my-case my_case
#   scenarios_summary            # prints the summary, exits non-zero if anything failed
#
# Provides: KERNEL GUEST_KERNEL QBOOT KVER GUEST_BASE_INITRD (from the cache env),
# GUEST_BOOT_ARGS GUEST_APPEND, CONFIGFS, T (= the target tree), MAKE_GUEST_INITRD, scaled, wait_for,
# wait_for_progress, fail, assert_eq, assert_exists, assert_absent, log,
# configfs_snapshot, vm_start_dbus, guest_boot, scenario, scenarios_summary.
# Env: VM_SCENARIOS="glob ..." runs only the scenarios whose names match.
set -euo pipefail

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAKE_GUEST_INITRD=$VM_LIB_DIR/make-guest-initrd.sh
CONFIGFS=/sys/kernel/config
T=$CONFIGFS/target

# vm-run.sh exports the cache paths; fall back to the env file when sourced some other way.
if [ -z "${KERNEL:-}" ]; then
    _vm_env=${QEMU_LIO_VM_CACHE:-/var/cache/qemu-lio-vm}/env
    if [ -r "$_vm_env" ]; then
        while IFS='=' read -r _k _v; do
            [ -n "${!_k:-}" ] || export "$_k=$_v"
        done <"$_vm_env"
    fi
    unset _vm_env _k _v
fi

# How to boot a nested guest fast, for scenarios that build their own QEMU command line:
#   qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd INITRD -append "$GUEST_APPEND" -device ...
# GUEST_KERNEL is the uncompressed vmlinux (PVH entry) when prepare.sh could extract it, and
# qboot replaces SeaBIOS: under two levels of TCG the bzImage's xz decompression and the BIOS
# POST cost tens of seconds. cryptomgr.notests skips the boot-time crypto self-tests (several
# seconds there). KERNEL (the vmlinuz) works too, only slower.
GUEST_KERNEL=${GUEST_KERNEL:-${KERNEL:-}}
GUEST_APPEND="console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests"
GUEST_BOOT_ARGS=(-machine pc -m 256 -smp 1 -nographic -no-reboot -nic none -kernel "$GUEST_KERNEL")
if [ -n "${QBOOT:-}" ]; then GUEST_BOOT_ARGS+=(-bios "$QBOOT"); fi

_vm_lib_t0=$EPOCHREALTIME
_vm_elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# log MSG: progress line with seconds since the script started (TCG makes timing interesting).
log() { echo "[$(_vm_elapsed "$_vm_lib_t0")s] $*"; }

# The one knob for every bounded wait: VM_WAIT_SCALE (vm-run.sh passes it in; default 1).
# A wait's bound is how long a loaded machine may need, never the verdict of a test.
VM_WAIT_SCALE=${VM_WAIT_SCALE:-1}

# scaled SECONDS: SECONDS x VM_WAIT_SCALE, rounded up to a whole second.
scaled() { awk -v s="$1" -v k="$VM_WAIT_SCALE" 'BEGIN { v = s * k; printf "%d", (v == int(v)) ? v : int(v) + 1 }'; }

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds; fails once
# SECONDS x VM_WAIT_SCALE have passed.
wait_for() {
    local deadline
    deadline=$(awk -v a="$EPOCHREALTIME" -v s="$(scaled "$1")" 'BEGIN { printf "%.1f", a + s }')
    shift
    until "$@"; do
        if awk -v d="$deadline" -v n="$EPOCHREALTIME" 'BEGIN { exit !(n > d) }'; then return 1; fi
        sleep 0.1
    done
}

# wait_for_progress SECONDS FILE COMMAND...: wait_for for a nested guest that writes FILE (its
# console). Under two levels of TCG on a loaded machine a guest's boot alone has taken 430 s,
# so a slow guest that still makes progress is not a failure: past SECONDS, the wait goes on
# while FILE grew within the last SECONDS/2, and ends at 2 x SECONDS whatever happens (all
# scaled by VM_WAIT_SCALE). Fails with the reason on stderr.
wait_for_progress() {
    local base stall cap file=$2 t0 last size=-1 s now
    base=$(scaled "$1") stall=$(scaled "$(($1 / 2))") cap=$(scaled "$(($1 * 2))")
    shift 2
    t0=$EPOCHREALTIME last=$t0
    until "$@"; do
        now=$EPOCHREALTIME
        s=$(stat -c %s "$file" 2>/dev/null || echo 0)
        if [ "$s" != "$size" ]; then size=$s last=$now; fi
        if awk -v n="$now" -v t0="$t0" -v l="$last" -v b="$base" -v q="$stall" -v c="$cap" \
            'BEGIN { exit !((n - t0 > b && n - l > q) || n - t0 > c) }'; then
            echo "wait_for_progress: gave up after $(_vm_elapsed "$t0") s, $(_vm_elapsed "$last") s since $file last grew" >&2
            return 1
        fi
        sleep 1   # three nested guests share the VM: poll gently
    done
}

# fail MSG: end the current scenario (it runs in a subshell) with a message.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
    if [ "$1" != "$2" ]; then
        fail "${3:-value}: expected [$1], got [$2]"
    fi
}

# stat_field PID N: field N (>= 3) of /proc/PID/stat; fails once the process is gone.
stat_field() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    awk -v n="$(($2 - 2))" '{ print $n }' <<<"$s"
}
# gone PID: the process has exited (a zombie runs no code any more).
gone() {
    local st
    st=$(stat_field "$1" 3) || return 0
    [ "$st" = Z ]
}

# assert_exists PATH...: each PATH exists (a dangling symlink counts).
assert_exists() {
    local p
    for p in "$@"; do
        [ -e "$p" ] || [ -L "$p" ] || fail "$p: does not exist"
    done
}

# assert_absent PATH...
assert_absent() {
    local p
    for p in "$@"; do
        if [ -e "$p" ] || [ -L "$p" ]; then fail "$p: still exists"; fi
    done
}

# configfs_snapshot [DIR]: a sorted, stable listing of DIR (default the LIO tree): every
# directory, every symlink with its target, and every attribute with its value (newlines shown
# as '\n', first 4 KiB only; "<unreadable>" for write-only ones). statistics/ subtrees are
# skipped: their counters move on their own. Two snapshots compare equal with `[ "$a" = "$b" ]`
# or diff, e.g. to prove that teardown brought configfs back to where it started.
configfs_snapshot() {
    local root=${1:-$T}
    [ -d "$root" ] || { echo "<no $root>"; return 0; }
    # One find for the shape and one grep for every value: a process per attribute costs
    # tens of ms under TCG, and a tree with a few disks holds hundreds of attributes.
    (
        cd "$root" || exit 1
        LC_ALL=C awk -F'\t' '
            NR == FNR {
                k = $1; sub(/^\.\//, "", k); v = substr($0, length($1) + 2)
                if (k in val) val[k] = val[k] "\\n" v; else val[k] = v
                next
            }
            {
                t = substr($0, 1, 1); p = substr($0, 3)
                if (t == "F") print "F " p " = " ((p in val) ? substr(val[p], 1, 4096) : "")
                else if (t == "U") print "F " p " = <unreadable>"
                else print
            }' \
            <(grep -rsaHZ --exclude-dir=statistics -e '' . | tr '\0' '\t' || true) \
            <(find . -mindepth 1 -name statistics -prune \
                -o -type l -printf 'L %P -> %l\n' \
                -o -type d -printf 'D %P\n' \
                -o -type f ! -readable -printf 'U %P\n' \
                -o -type f -printf 'F %P\n') | LC_ALL=C sort
    )
}

# vm_start_dbus: targetcli (rtslib) wants the system bus. Idempotent.
vm_start_dbus() {
    [ -S /run/dbus/system_bus_socket ] && return 0
    mkdir -p /run/dbus
    timeout 60 dbus-daemon --system --fork >/dev/null || fail "dbus-daemon did not start"
}

# guest_boot INITRD LOG TIMEOUT [QEMU_ARGS...]
#   Boots a nested guest (TCG) with the VM's own kernel and INITRD (from make-guest-initrd.sh),
#   streams its console prefixed with "  guest| ", keeps it in LOG, and returns the guest
#   script's status from its "GUEST-EXIT <rc>" line: 124 on timeout, 125 without the line.
#   QEMU_ARGS add the devices, e.g. -device vhost-scsi-pci,wwpn=naa.5001405...
#   Returns only after QEMU has exited: never tear down LIO objects before that.
guest_boot() {
    local initrd=$1 glog=$2 tmo=$3 qpid tpid qrc=0 t0 rc n=0
    shift 3
    : >"$glog"
    t0=$EPOCHREALTIME
    timeout -k 5 "$tmo" qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$initrd" -append "$GUEST_APPEND" \
        "$@" </dev/null >"$glog" 2>&1 &
    qpid=$!
    tail -n +1 -s 0.5 -F --pid="$qpid" "$glog" 2>/dev/null \
        | sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/^/  guest| /' &
    tpid=$!
    # If the guest printed its verdict but QEMU lingers (power-off failed), do not wait out
    # the whole timeout.
    while kill -0 "$qpid" 2>/dev/null; do
        if grep -q '^GUEST-EXIT ' "$glog" 2>/dev/null; then
            n=$((n + 1))
            if [ "$n" -gt 50 ]; then kill "$qpid" 2>/dev/null || true; fi
        fi
        sleep 0.2
    done
    wait "$qpid" || qrc=$?
    wait "$tpid" 2>/dev/null || true
    log "nested guest ran $(_vm_elapsed "$t0") s (qemu exit $qrc)"
    rc=$(sed -n 's/^GUEST-EXIT \([0-9]*\).*/\1/p' "$glog" | tail -n 1)
    if [ -n "$rc" ]; then return "$rc"; fi
    if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
        echo "guest_boot: TIMEOUT after $tmo s" >&2
        return 124
    fi
    echo "guest_boot: no GUEST-EXIT line (qemu exit $qrc)" >&2
    return 125
}

_vm_sc_run=0 _vm_sc_pass=0 _vm_sc_fail=0 _vm_sc_failed=""

# scenario NAME FUNC [ARGS...]: runs FUNC in a subshell with set -eEuo pipefail (so the first
# failing command ends it, and the ERR trap names it), then prints PASS/FAIL NAME. A failure
# does not stop the following scenarios. The subshell must not run in a conditional context
# (if/||), or bash would silently disable set -e inside it; hence the set +e dance.
scenario() {
    local name=$1 func=$2 t0 rc pat match=0
    shift 2
    if [ -n "${VM_SCENARIOS:-}" ]; then
        for pat in $VM_SCENARIOS; do
            # shellcheck disable=SC2053 # glob match is the point
            [[ $name == $pat ]] && match=1
        done
        if [ "$match" = 0 ]; then
            echo "SKIP $name"
            return 0
        fi
    fi
    echo "---- scenario $name"
    t0=$EPOCHREALTIME
    set +e
    (
        set -eEuo pipefail
        trap 'echo "  error: status $? at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2' ERR
        "$func" "$@"
    )
    rc=$?
    set -e
    _vm_sc_run=$((_vm_sc_run + 1))
    if [ "$rc" = 0 ]; then
        _vm_sc_pass=$((_vm_sc_pass + 1))
        echo "PASS $name ($(_vm_elapsed "$t0") s)"
    else
        _vm_sc_fail=$((_vm_sc_fail + 1))
        _vm_sc_failed="$_vm_sc_failed $name"
        echo "FAIL $name (status $rc, $(_vm_elapsed "$t0") s)"
    fi
}

# scenarios_summary: prints "vm-scenarios: N run, P passed, F failed" and exits 1 if any
# failed (or none ran, which usually means a VM_SCENARIOS typo), else 0.
scenarios_summary() {
    echo "vm-scenarios: $_vm_sc_run run, $_vm_sc_pass passed, $_vm_sc_fail failed"
    if [ "$_vm_sc_fail" != 0 ]; then
        echo "vm-scenarios: failed:$_vm_sc_failed"
        exit 1
    fi
    if [ "$_vm_sc_run" = 0 ]; then
        echo "vm-scenarios: nothing ran"
        exit 1
    fi
    exit 0
}
