#!/usr/bin/env bash
# The trust suite (real kernel, configfs level): what qemu-lio believes about its state
# directory, its journals, its config file and the images under `allow`, and the shape of
# its error messages. Every refusal must be one line, and leave configfs (and the files it
# was tricked into naming) as they were.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d /tmp/qemu-lio-trust.XXXXXX)
IMG=$WORK/img
STATE_DIR=$WORK/state
mkdir -p "$IMG" "$T/vhost"

qlio() { "$QEMU_LIO" --state-dir "$STATE_DIR" "$@"; }

# Runs ARGS and checks: status WANT-RC, exactly one stderr line matching the extended
# regex PATTERN, configfs as in $before.
refused() {  # WANT-RC PATTERN DESCRIPTION ARGS...
  local want=$1 pattern=$2 what=$3 rc=0 err
  shift 3
  "$@" 2> "$WORK/err" > /dev/null || rc=$?
  err=$(cat "$WORK/err")
  [ "$rc" = "$want" ] || fail "$what: status $rc, expected $want: $err"
  assert_eq 1 "$(wc -l < "$WORK/err")" "$what: one line on stderr ($err)"
  grep -Eq -- "$pattern" "$WORK/err" || fail "$what: message [$err] does not match [$pattern]"
  assert_eq "$before" "$(configfs_snapshot)" "$what: configfs unchanged"
  echo "  $what -> $rc: ${err#qemu-lio: error: }"
}

# A journal that a local user planted: its undo steps climb out of configfs with "..".
# configfs is at /sys/kernel/config, so 5 ".." above target/core/X and 7 above
# target/vhost/W/tpgt_1/X reach "/".
scenario_planted_journal() {
  local victim=/tmp/qemu-lio-victim.$$ file=/tmp/qemu-lio-victim.$$.f out
  mkdir -p "$STATE_DIR"; chmod 700 "$STATE_DIR"
  mkdir "$victim"                    # empty: a followed rmdir would remove it
  printf 'precious' > "$file"        # a followed write of NULL would overwrite it
  before=$(configfs_snapshot)
  {
    echo "qemu-lio-journal 1"
    echo "vm planted"
    echo "wrapper 999999 1"          # gone: the set looks stale, gc would act on it
    echo "make rmdir target/core/../../../../..$victim %"
    echo "make write target/vhost/naa.5001405000000001/tpgt_1/../../../../../../..$file NULL"
  } > "$STATE_DIR/planted.999999.journal"
  out=$(qlio gc 2> "$WORK/gc.err") || fail "gc failed: $(cat "$WORK/gc.err")"
  assert_exists "$victim"
  assert_eq precious "$(cat "$file")" "file named by the planted write"
  assert_eq 1 "$(wc -l < "$WORK/gc.err")" "one warning ($(cat "$WORK/gc.err"))"
  grep -q "^qemu-lio: warning: $STATE_DIR/planted.999999.journal: record 4: rmdir .* is not a LIO object qemu-lio makes\$" \
    "$WORK/gc.err" || fail "warning: $(cat "$WORK/gc.err")"
  echo "$out" | grep -q '^gc: 0 stale set(s)' || fail "gc acted on the planted set: $out"
  # list skips it the same way.
  qlio list > "$WORK/list.out" 2> "$WORK/list.err" || fail "list failed: $(cat "$WORK/list.err")"
  assert_eq 1 "$(wc -l < "$WORK/list.err")" "list: one warning"
  assert_eq "" "$(cat "$WORK/list.out")" "list shows nothing of the planted set"
  assert_eq "$before" "$(configfs_snapshot)" "configfs unchanged"
  # The write record alone is refused too (record 4 again).
  sed -i '4d' "$STATE_DIR/planted.999999.journal"
  qlio gc > /dev/null 2> "$WORK/gc.err" || fail "gc failed: $(cat "$WORK/gc.err")"
  grep -q "record 4: write .* is not a LIO object qemu-lio makes" "$WORK/gc.err" \
    || fail "write record: $(cat "$WORK/gc.err")"
  assert_eq precious "$(cat "$file")" "file named by the planted write"
  rm -f "$STATE_DIR/planted.999999.journal"; rmdir "$victim"; rm -f "$file"
}

# The state directory decides what gc runs as root: only root (or the caller) may write it.
scenario_state_dir() {
  local img=$IMG/sd.img d
  truncate -s 8M "$img"
  before=$(configfs_snapshot)
  mkdir "$WORK/real-state"; chmod 700 "$WORK/real-state"
  ln -s "$WORK/real-state" "$WORK/link-state"
  refused 1 "^qemu-lio: error: $WORK/link-state: state directory is a symlink" "symlinked state dir" \
    "$QEMU_LIO" --state-dir "$WORK/link-state" --image "$img" -- "$STANDIN"
  d=$WORK/group-state; mkdir "$d"; chmod 770 "$d"
  refused 1 "^qemu-lio: error: $d: state directory is writable by its group \\(mode 0770\\)" \
    "group-writable state dir" "$QEMU_LIO" --state-dir "$d" --image "$img" -- "$STANDIN"
  d=$WORK/world-state; mkdir "$d"; chmod 1777 "$d"
  refused 1 "^qemu-lio: error: $d: state directory is writable by others \\(mode 1777\\)" \
    "world-writable state dir" "$QEMU_LIO" --state-dir "$d" --image "$img" -- "$STANDIN"
  d=$WORK/user-state; mkdir "$d"; chmod 700 "$d"; chown 1000:1000 "$d"
  refused 1 "^qemu-lio: error: $d: state directory is owned by uid 1000, not by root or uid 0\$" \
    "state dir owned by uid 1000" "$QEMU_LIO" --state-dir "$d" --image "$img" -- "$STANDIN"
  # gc refuses the same directory before it reads a journal from it.
  echo "qemu-lio-journal 1" > "$d/x.1.journal"
  refused 1 "^qemu-lio: error: $d: state directory is owned by uid 1000" "gc in a state dir owned by uid 1000" \
    "$QEMU_LIO" --state-dir "$d" gc
  [ -z "$(ls "$WORK/real-state")" ] || fail "something was written through the symlink: $(ls "$WORK/real-state")"
  # A good one still works.
  qlio --image "$img" -- "$STANDIN" || fail "run with a good state dir failed"
  assert_eq "$before" "$(configfs_snapshot)" "clean after the good run"
}

# A config file that exists but cannot be read must not mean "no allow = rules".
scenario_unreadable_config() {
  local img=$IMG/cfg.img
  truncate -s 8M "$img"
  mkdir -p "$WORK/conf.d"
  before=$(configfs_snapshot)
  refused 2 "^qemu-lio: error: $WORK/conf.d: cannot read: Is a directory\$" "a directory as QEMU_LIO_CONFIG" \
    env QEMU_LIO_CONFIG="$WORK/conf.d" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$img" -- "$STANDIN"
  # A missing one is still "no config".
  env QEMU_LIO_CONFIG="$WORK/missing.conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$img" -- "$STANDIN" \
    || fail "a missing config file should mean the defaults"
  assert_eq "$before" "$(configfs_snapshot)" "clean after the run"
}

# allow = DIR: no one but root may be able to swap the image (or a directory on its path)
# between qemu-lio's checks and the kernel's open at enable.
scenario_allow_directories() {
  local a=$WORK/allowed conf=$WORK/allow.conf
  mkdir -p "$a"; chmod 755 "$a"
  printf 'allow = %s\n' "$a" > "$conf"
  mkdir "$a/shared"; chmod 777 "$a/shared"; truncate -s 8M "$a/shared/ww.img"
  mkdir "$a/user"; chown 1000:1000 "$a/user"; chmod 755 "$a/user"; truncate -s 8M "$a/user/u.img"
  mkdir "$a/sticky"; chmod 1777 "$a/sticky"; truncate -s 8M "$a/sticky/st.img"
  truncate -s 8M "$a/sticky/theirs.img"; chown 1000:1000 "$a/sticky/theirs.img"
  before=$(configfs_snapshot)
  refused 1 "^qemu-lio: error: $a/shared/ww.img: directory $a/shared on its path is writable by others \\(mode 0777\\) and not sticky" \
    "world-writable directory on the path" \
    env QEMU_LIO_CONFIG="$conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$a/shared/ww.img" -- "$STANDIN"
  refused 1 "^qemu-lio: error: $a/user/u.img: directory $a/user on its path is owned by uid 1000, not root" \
    "directory owned by uid 1000 on the path" \
    env QEMU_LIO_CONFIG="$conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$a/user/u.img" -- "$STANDIN"
  refused 1 "^qemu-lio: error: $a/sticky/theirs.img: directory .* on its path is writable by others \\(mode 1777\\) and the image is not root's" \
    "another user's image in a sticky directory" \
    env QEMU_LIO_CONFIG="$conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$a/sticky/theirs.img" -- "$STANDIN"
  # A sticky directory (as /tmp) only lets an entry's owner replace it: root's image is safe.
  STANDIN_RUN="ls -d $T/core/*/trust-st-disk0 > $WORK/st.so" \
    env QEMU_LIO_CONFIG="$conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --name trust-st \
    --image "$a/sticky/st.img" -- "$STANDIN" 2> "$WORK/err" || fail "root's image in a sticky dir refused: $(cat "$WORK/err")"
  [ -s "$WORK/st.so" ] || fail "the sticky-dir image was not exported"
  assert_eq "$before" "$(configfs_snapshot)" "clean after the sticky-dir run"
}

# Errors name the object first, as an absolute path, then the action and the kernel's cause.
scenario_message_format() {
  local dev
  truncate -s 16M "$WORK/fs.img"; mkfs.ext4 -q "$WORK/fs.img"
  dev=$(losetup -f --show "$WORK/fs.img"); mkdir -p "$WORK/mnt"; mount "$dev" "$WORK/mnt"
  before=$(configfs_snapshot)
  # iblock opens the device exclusively at enable; a mounted one says EBUSY.
  refused 1 "^qemu-lio: error: /sys/kernel/config/target/core/iblock_[0-9]+/trust-msg-disk0/enable: cannot write '1': Device or resource busy\$" \
    "kernel refusal names the absolute path" qlio --name trust-msg --image "$dev" -- "$STANDIN"
  umount "$WORK/mnt"; losetup -d "$dev"
}

scenario planted-journal scenario_planted_journal
scenario state-dir scenario_state_dir
scenario unreadable-config scenario_unreadable_config
scenario allow-directories scenario_allow_directories
scenario message-format scenario_message_format
scenarios_summary
