#!/usr/bin/env bash
# The lifecycle suite (real kernel): who owns a run's LIO objects and who removes them, however
# the run ends. The backstop (a detached process per run) tears down when the wrapper and
# QEMU are gone and follows a -daemonize daemon; the wrapper's signal handling survives a
# caller that ignores SIGCHLD, a closed stderr pipe, and a terminal's Ctrl-C.
#   QEMU_LIO: the qemu-lio binary under test.
# Each scenario compares configfs with its own starting snapshot and uses its own state
# directory, so a failure does not spill into the next one.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d /tmp/qemu-lio-lifecycle.XXXXXX)   # 0700, root's: fit for state directories
IMG=$WORK/img
mkdir -p "$IMG" "$T/vhost"

# Set by each scenario: its state directory and its starting snapshot.
S=
before=

use_state_dir() { S=$WORK/state-$1; }
qlio() { "$QEMU_LIO" --state-dir "$S" "$@"; }
new_image() { truncate -s 8M "$IMG/$1.img"; echo "$IMG/$1.img"; }
journals() { ls "$S"/*.journal 2>/dev/null || true; }
# journal_of NAME: the journal of VM NAME (fails if there is none).
journal_of() {
  local f
  f=$(ls "$S/$1".*.journal 2>/dev/null | head -n 1)
  [ -n "$f" ] && echo "$f"
}
dump_journals() {
  local f
  for f in $(journals); do echo "  journal $f:"; sed 's/^/    /' "$f"; done
}

# pidfd_watches PID TARGET: PID holds a pidfd for TARGET (fdinfo "Pid:").
pidfd_watches() {
  grep -qs "^Pid:[[:space:]]*$2\$" /proc/"$1"/fdinfo/*
}
# signal_pending PID SIG-NUMBER: SIG is pending (private or shared) for PID.
signal_pending() {
  local mask
  for mask in $(awk '$1 == "SigPnd:" || $1 == "ShdPnd:" { print $2 }' "/proc/$1/status" 2>/dev/null); do
    if (((16#$mask >> ($2 - 1)) & 1)); then return 0; fi
  done
  return 1
}
# idle_with_nothing_pending PID SIG: PID is asleep (S) and has no SIG pending: it has
# taken SIG and done whatever it does with it.
idle_with_nothing_pending() {
  [ "$(stat_field "$1" 3)" = S ] && ! signal_pending "$1" "$2"
}

# fd_table PID: "FD TARGET" per open fd, every fd above 2 shown as N.
fd_table() {
  local f n
  for f in /proc/"$1"/fd/*; do
    n=${f##*/}
    if [ "$n" -gt 2 ]; then n=N; fi
    echo "$n $(readlink "$f")"
  done | sort
}
fd_table_is() { [ "$(fd_table "$1")" = "$2" ]; }
has_lines() { [ "$(wc -l <"$1")" -ge "$2" ]; }

clean() { [ "$before" = "$(configfs_snapshot)" ] && [ -z "$(journals)" ]; }
wait_clean() {  # WHAT
  wait_for 15 clean || {
    echo "  configfs diff (< before, > now):"
    diff <(echo "$before") <(configfs_snapshot) | head -n 30 | sed 's/^/    /'
    dump_journals
    fail "$1: configfs not back to its starting state, or a journal left"
  }
}

# list_field NAME FIELD: FIELD of VM NAME in `qemu-lio list --json` (JSON literal, disks
# as "backstore wwn" of the first disk for FIELD=disk0).
list_field() {
  qlio list --json | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
for vm in json.load(sys.stdin):
    if vm["name"] == name:
        if field == "disk0":
            print(vm["disks"][0]["backstore"], vm["disks"][0]["wwn"])
        else:
            print(json.dumps(vm.get(field)))
        sys.exit(0)
sys.exit(1)' "$1" "$2"
}
# assert_objects_exist NAME: the first disk's backstore and vhost target are in configfs.
assert_objects_exist() {
  local disk backstore wwn
  disk=$(list_field "$1" disk0) || fail "$1: not in 'qemu-lio list'"
  read -r backstore wwn <<<"$disk"
  [ -n "$backstore" ] && [ -n "$wwn" ] || fail "$1: list names no backstore/wwn: [$disk]"
  assert_exists "$T/$backstore" "$T/vhost/$wwn"
}

# --- the -daemonize hand-over -----------------------------------------------------------

daemonize_case() {  # LABEL MODE(exec|supervised) PIDFILE(empty: qemu-lio picks one)
  local label=$1 mode=$2 pidfile=$3 img j dpid bs rc=0 opts=() qargs=(-daemonize)
  echo "  case $label: $mode mode, pidfile ${pidfile:-chosen by qemu-lio}"
  img=$(new_image "$label")
  before=$(configfs_snapshot)
  if [ "$mode" = exec ]; then opts+=(--exec); fi
  if [ -n "$pidfile" ]; then qargs+=(-pidfile "$pidfile"); fi
  STANDIN_END=daemonize STANDIN_READY=$WORK/$label.ready \
    qlio "${opts[@]}" --name "$label" --image "$img" -- "$STANDIN" "${qargs[@]}" || rc=$?
  assert_eq 0 "$rc" "$label: status of the wrapper (QEMU's first process)"
  assert_exists "$WORK/$label.ready"
  j=$(journal_of "$label") || fail "$label: no journal left once QEMU's first process exited (torn down under the daemon)"
  if [ -z "$pidfile" ]; then
    pidfile=$(sed -n 's/^pidfile //p' "$j")
    [ -n "$pidfile" ] || { dump_journals; fail "$label: the journal has no pidfile record"; }
  fi
  dpid=$(cat "$pidfile")
  bs=$(awk '$1 == "backstop" { print $2 }' "$j")
  [ -n "$bs" ] || { dump_journals; fail "$label: the journal has no backstop record"; }
  # The backstop's decision point: it names the daemon as the owner and watches it.
  wait_for 15 grep -q "^owner $dpid " "$j" || { dump_journals; fail "$label: no owner record for the daemon $dpid"; }
  wait_for 15 pidfd_watches "$bs" "$dpid" || { dump_journals; fail "$label: backstop $bs does not watch the daemon $dpid"; }
  # The disks stay while the daemon lives.
  gone "$dpid" && fail "$label: the daemon $dpid is gone"
  assert_objects_exist "$label"
  gone "$bs" && fail "$label: the backstop $bs is gone while the daemon lives"
  kill -TERM "$dpid"
  wait_for 15 gone "$dpid" || fail "$label: the daemon ignored SIGTERM"
  wait_clean "$label: after the daemon exited"
  wait_for 15 gone "$bs" || fail "$label: the backstop $bs outlived its run"
}

scenario_exec_daemonize_keeps_disks() {
  use_state_dir exec-daemonize
  daemonize_case ed-exec exec "$WORK/ed-exec.pid"
  daemonize_case ed-exec-auto exec ""
  daemonize_case ed-supervised supervised "$WORK/ed-supervised.pid"
  daemonize_case ed-supervised-auto supervised ""
}

# --- SIGKILL of the wrapper: QEMU dies with it, the backstop cleans ----------------------

scenario_sigkill_wrapper_heals() {
  use_state_dir sigkill
  local img wpid qpid out
  img=$(new_image sk)
  before=$(configfs_snapshot)
  STANDIN_END=wait-term STANDIN_READY=$WORK/sk.ready STANDIN_RUN="echo \$PPID > $WORK/sk.qpid" \
    "$QEMU_LIO" --state-dir "$S" --name sk --image "$img" -- "$STANDIN" &
  wpid=$!
  wait_for 30 test -e "$WORK/sk.ready" || fail "the stand-in never got ready"
  qpid=$(cat "$WORK/sk.qpid")
  assert_objects_exist sk
  kill -9 "$wpid"
  wait "$wpid" 2>/dev/null || true
  wait_for 15 gone "$qpid" || fail "QEMU ($qpid) outlived its SIGKILLed wrapper"
  # No gc: the backstop alone brings configfs back.
  wait_clean "after SIGKILL of the wrapper, without gc"
  out=$(qlio gc)
  echo "  $out"
  grep -q '0 stale set(s)' <<<"$out" || fail "gc found something to collect: $out"
}

# --- the backstop holds nothing of its caller's ------------------------------------------

scenario_backstop_hygiene() {
  use_state_dir hygiene
  local img wpid j bs want my_sid bs_sid hi
  img=$(new_image hy)
  before=$(configfs_snapshot)
  # A high fd: something the caller leaves open (a tap fd, a log pipe); QEMU may inherit
  # it, the backstop must not keep it. 1500 needs a soft fd limit above 1024.
  ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
  hi=1500
  if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -le "$hi" ]; then hi=$(($(ulimit -Sn) - 1)); fi
  echo "  caller's extra fd: $hi"
  eval "exec $hi>\"\$WORK/hy.fd\""
  STANDIN_END=wait-term STANDIN_READY=$WORK/hy.ready \
    "$QEMU_LIO" --state-dir "$S" --exec --name hy --image "$img" -- "$STANDIN" &
  wpid=$!
  eval "exec $hi>&-"
  wait_for 30 test -e "$WORK/hy.ready" || fail "the stand-in never got ready"
  [ -e "/proc/$wpid/fd/$hi" ] || fail "QEMU did not get fd $hi (the test's premise)"
  j=$(journal_of hy) || fail "no journal"
  bs=$(awk '$1 == "backstop" { print $2 }' "$j")
  [ -n "$bs" ] || { dump_journals; fail "the journal has no backstop record"; }
  want=$'0 /dev/null\n1 /dev/null\n2 /dev/null\nN anon_inode:[pidfd]'
  wait_for 10 fd_table_is "$bs" "$want" || fail "backstop $bs fds: $(fd_table "$bs" | tr '\n' ';')"
  pidfd_watches "$bs" "$wpid" || fail "the backstop's pidfd is not for the wrapper/QEMU $wpid"
  assert_eq / "$(readlink "/proc/$bs/cwd")" "backstop cwd"
  my_sid=$(stat_field "$BASHPID" 6)
  bs_sid=$(stat_field "$bs" 6)
  [ "$bs_sid" != "$my_sid" ] || fail "the backstop is in the caller's session $my_sid"
  assert_eq "$bs" "$bs_sid" "backstop session (its own, by setsid)"
  kill -TERM "$wpid"
  wait "$wpid" || fail "QEMU's status after SIGTERM: $?"
  wait_clean "after QEMU exited"
}

# --- a caller that ignores SIGCHLD ---------------------------------------------------------

scenario_sigchld_ignored() {
  use_state_dir sigchld
  local img rc=0
  img=$(new_image sc)
  before=$(configfs_snapshot)
  STANDIN_END=exit:7 timeout -k 5 "$(scaled 60)" python3 -c '
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$QEMU_LIO" --state-dir "$S" --name sc --image "$img" -- "$STANDIN" || rc=$?
  assert_eq 7 "$rc" "status with SIGCHLD ignored by the caller (124 or 137: it hung and timeout killed it)"
  wait_clean "after QEMU exited 7"
}

# --- stderr is a pipe whose reader is gone -------------------------------------------------

scenario_sigpipe_stderr() {
  use_state_dir sigpipe
  local img rc
  img=$(new_image sp)
  before=$(configfs_snapshot)
  # QEMU ends only once its stderr (the same pipe) refuses writes: head has exited, so every
  # line of the teardown hits a closed pipe.
  local probe="trap '' PIPE; for i in \$(seq $(($(scaled 60) * 10))); do printf x >&2 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
  rc=$(
    set +e
    STANDIN_RUN=$probe qlio -v --name sp --image "$img" -- "$STANDIN" 2>&1 | head -c 1 >/dev/null
    echo "${PIPESTATUS[0]}"
  )
  assert_eq 0 "$rc" "wrapper status with a closed stderr (141: killed by SIGPIPE)"
  wait_clean "after teardown with a closed stderr"
}

# --- Ctrl-C on a terminal reaches QEMU once ------------------------------------------------

# pty-ctrl-c.py READY COUNT QPID-FILE TIMEOUT CMD...: runs CMD on a new pseudo-terminal as its
# foreground job. Once READY exists it stops the wrapper (CMD's process) with SIGSTOP, types
# ^C, waits for QEMU to count it, continues the wrapper and waits until the wrapper has taken
# its own SIGINT and gone back to sleep: a wrapper that forwards the terminal's SIGINT has
# then sent QEMU a second one, which cannot merge with the first. Then SIGTERM to QEMU; the
# exit status is the wrapper's.
write_pty_helper() {
  cat >"$WORK/pty-ctrl-c.py" <<'PY'
import os, pty, select, signal, sys, time

ready, count, qpid_file, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cmd = sys.argv[5:]
pid, fd = pty.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(cmd[0], cmd)

out = bytearray()


def pump(t=0.05):
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try:
            out.extend(os.read(fd, 4096))
        except OSError:
            pass


def fail(msg):
    sys.stderr.write("pty-ctrl-c: %s\n  terminal: %r\n" % (msg, bytes(out)))
    for p, s in ((pid, signal.SIGCONT), (pid, signal.SIGKILL)):
        try:
            os.kill(p, s)
        except OSError:
            pass
    sys.exit(101)


def until(what, cond):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        pump()


def lines():
    try:
        with open(count) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def stat_state(p):
    try:
        with open("/proc/%d/stat" % p) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone"


def int_pending(p):
    try:
        with open("/proc/%d/status" % p) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("SigPnd", "ShdPnd") and int(v.strip(), 16) & (1 << (signal.SIGINT - 1)):
                    return True
    except FileNotFoundError:
        pass
    return False


until("the stand-in to get ready", lambda: os.path.exists(ready))
os.kill(pid, signal.SIGSTOP)
until("the wrapper to stop", lambda: stat_state(pid) == "T")
os.write(fd, b"\x03")
until("QEMU to count the terminal's SIGINT", lambda: lines() >= 1)
until("the wrapper to have the terminal's SIGINT pending", lambda: int_pending(pid))
os.kill(pid, signal.SIGCONT)
until("the wrapper to take its SIGINT", lambda: not int_pending(pid) and stat_state(pid) == "S")
with open(qpid_file) as f:
    os.kill(int(f.read()), signal.SIGTERM)
end = time.monotonic() + limit
while True:
    got, status = os.waitpid(pid, os.WNOHANG)
    if got == pid:
        break
    if time.monotonic() > end:
        fail("the wrapper did not exit after QEMU's SIGTERM")
    pump()
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
PY
}

scenario_ctrl_c_once() {
  use_state_dir ctrl-c
  local img rc=0 wpid qpid
  img=$(new_image cc)
  write_pty_helper
  before=$(configfs_snapshot)
  # 1. ^C on the terminal: the stand-in gets it from the terminal, and only from there.
  : >"$WORK/cc.count"
  STANDIN_END=count-int:$WORK/cc.count STANDIN_READY=$WORK/cc.ready STANDIN_RUN="echo \$PPID > $WORK/cc.qpid" \
    python3 "$WORK/pty-ctrl-c.py" "$WORK/cc.ready" "$WORK/cc.count" "$WORK/cc.qpid" "$(scaled 30)" \
    "$QEMU_LIO" --state-dir "$S" --name cc --image "$img" -- "$STANDIN" || rc=$?
  assert_eq 0 "$rc" "status of the run on a terminal"
  assert_eq 1 "$(wc -l <"$WORK/cc.count")" "SIGINTs QEMU got for one ^C on the terminal"
  wait_clean "after the terminal run"

  # 2. kill -INT to the wrapper (not from a terminal) is forwarded, once. A background job
  # of a script starts with SIGINT ignored; env gives the wrapper (and QEMU) the default.
  : >"$WORK/ci.count"
  rm -f "$WORK/ci.ready"
  STANDIN_END=count-int:$WORK/ci.count STANDIN_READY=$WORK/ci.ready STANDIN_RUN="echo \$PPID > $WORK/ci.qpid" \
    env --default-signal=INT "$QEMU_LIO" --state-dir "$S" --name ci --image "$img" -- "$STANDIN" &
  wpid=$!
  wait_for 30 test -e "$WORK/ci.ready" || fail "the stand-in never got ready"
  qpid=$(cat "$WORK/ci.qpid")
  kill -INT "$wpid"
  wait_for 15 has_lines "$WORK/ci.count" 1 || fail "kill -INT of the wrapper never reached QEMU"
  wait_for 15 idle_with_nothing_pending "$wpid" 2 || fail "the wrapper did not take its SIGINT"
  kill -TERM "$qpid"
  rc=0
  wait "$wpid" || rc=$?
  assert_eq 0 "$rc" "status after SIGINT then SIGTERM"
  assert_eq 1 "$(wc -l <"$WORK/ci.count")" "SIGINTs QEMU got for one kill -INT of the wrapper"
  wait_clean "after kill -INT"
}

# --- --exec without a disk keeps the pid ---------------------------------------------------

scenario_exec_no_disk_keeps_pid() {
  use_state_dir exec-no-disk
  local wpid
  before=$(configfs_snapshot)
  STANDIN_RUN="echo \$PPID > $WORK/nd.pid" "$QEMU_LIO" --state-dir "$S" --exec -- "$STANDIN" &
  wpid=$!
  wait "$wpid" || fail "status $?"
  assert_eq "$wpid" "$(cat "$WORK/nd.pid")" "QEMU's pid (the wrapper's, when exec'd in place)"
  assert_eq "$before" "$(configfs_snapshot)" "configfs untouched"
}

# --- list shows the backstop; gc leaves a set whose backstop lives -------------------------

scenario_list_shows_backstop() {
  use_state_dir list
  local img wpid qpid j bs out
  img=$(new_image ls)
  before=$(configfs_snapshot)
  STANDIN_END=wait-term STANDIN_READY=$WORK/ls.ready STANDIN_RUN="echo \$PPID > $WORK/ls.qpid" \
    "$QEMU_LIO" --state-dir "$S" --name ls --image "$img" -- "$STANDIN" &
  wpid=$!
  wait_for 30 test -e "$WORK/ls.ready" || fail "the stand-in never got ready"
  qpid=$(cat "$WORK/ls.qpid")
  j=$(journal_of ls) || fail "no journal"
  bs=$(awk '$1 == "backstop" { print $2 }' "$j")
  [ -n "$bs" ] || { dump_journals; fail "the journal has no backstop record"; }
  assert_eq true "$(list_field ls backstop_alive)" "list: backstop_alive during the run"
  assert_eq "$bs" "$(list_field ls backstop_pid)" "list: backstop_pid"
  assert_eq '"active"' "$(list_field ls state)" "list: state"
  # Only the backstop left alive (stopped, so that it cannot clean yet): not stale.
  # shellcheck disable=SC2064 # $bs now: it is a local, gone when the EXIT trap runs
  trap "kill -CONT $bs 2>/dev/null || true" EXIT
  kill -STOP "$bs"
  kill -9 "$wpid"
  wait "$wpid" 2>/dev/null || true
  wait_for 15 gone "$qpid" || fail "QEMU outlived its SIGKILLed wrapper"
  assert_eq false "$(list_field ls wrapper_alive)" "list: wrapper_alive after SIGKILL"
  assert_eq false "$(list_field ls owner_alive)" "list: owner_alive after SIGKILL"
  assert_eq true "$(list_field ls backstop_alive)" "list: backstop_alive (stopped)"
  out=$(qlio gc) || fail "gc failed: $out"
  echo "  $out"
  grep -q '0 stale set(s)' <<<"$out" || fail "gc collected a set whose backstop lives: $out"
  assert_objects_exist ls
  kill -CONT "$bs"
  wait_clean "after the backstop was continued"
}

scenario exec-daemonize-keeps-disks scenario_exec_daemonize_keeps_disks
scenario sigkill-wrapper-heals scenario_sigkill_wrapper_heals
scenario backstop-hygiene scenario_backstop_hygiene
scenario sigchld-ignored scenario_sigchld_ignored
scenario sigpipe-stderr scenario_sigpipe_stderr
scenario ctrl-c-once scenario_ctrl_c_once
scenario exec-no-disk-keeps-pid scenario_exec_no_disk_keeps_pid
scenario list-shows-backstop scenario_list_shows_backstop
scenarios_summary
