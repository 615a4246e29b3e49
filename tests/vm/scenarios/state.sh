# shellcheck shell=bash
# Helpers for scenarios that drive qemu-lio with a state directory of their own (control.sh,
# shared.sh). Sourced after lib.sh; the caller sets QEMU_LIO and STATE_DIR.

qlio() { "$QEMU_LIO" --state-dir "$STATE_DIR" "$@"; }

# vm_field NAME PYEXPR: evaluates PYEXPR on VM NAME's entry of `list --json` (as `vm`).
vm_field() {
  qlio list --json | python3 -c '
import json, sys
for vm in json.load(sys.stdin):
    if vm["name"] == sys.argv[1]:
        print(eval(sys.argv[2])); sys.exit(0)
sys.exit(1)' "$1" "$2"
}

show_tail() {  # LOG
  echo "  last lines of $1:"; tail -n 30 "$1" | sed 's/^/  | /'
}

# wait_log SECONDS LOG PATTERN: waits for PATTERN in LOG; on timeout shows its tail.
wait_log() {
  wait_for "$1" grep -q "$3" "$2" || { show_tail "$2"; fail "no '$3' in $2 within $(scaled "$1") s"; }
}

# expect_error STATUS PATTERN -- COMMAND...: COMMAND exits STATUS with one error line
# matching PATTERN.
expect_error() {
  local want=$1 pat=$2 rc=0 out
  shift 3
  out=$("$@" 2>&1) || rc=$?
  echo "  $* -> $rc: $out"
  assert_eq "$want" "$rc" "exit status of $*"
  assert_eq 1 "$(printf '%s\n' "$out" | grep -c '^qemu-lio: error: ')" "one error line"
  printf '%s\n' "$out" | grep -q "$pat" || fail "error does not say '$pat': $out"
}

# leftovers: journals, control sockets and pidfiles in the state dir (caps/ and lock stay).
leftovers() { ls "$STATE_DIR" 2>/dev/null | awk '$0 != "caps" && $0 != "lock"'; }
no_leftovers() { [ -z "$(leftovers)" ]; }

backstore_of() {  # VM IMAGE: the backstore path of IMAGE in VM's journal
  vm_field "$1" "[d['backstore'] for d in vm['disks'] if d['image'] == '$2'][0]"
}
