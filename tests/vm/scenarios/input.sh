#!/usr/bin/env bash
# The input suite (real kernel): what callers and guests hand qemu-lio. format=raw over a
# guest-written qcow2 magic, a --dry-run script that hostile arguments cannot escape, a
# -device that used a vhost drive (with the real QEMU), an escaped comma in -name, a partition
# that can discard, a block device's identity across a change of its kernel name, and
# worker_per_virtqueue chosen by what QEMU and the kernel can do.
#   QEMU_LIO: the qemu-lio binary under test.
#   VM_WAIT_SCALE: multiplies every bounded wait (default 1; raise it on a slow host).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d "${SCRATCH:-/tmp}/qemu-lio-input.XXXXXX")
STATE_DIR=$WORK/state
LINKDIR=$WORK/bin
mkdir -p "$LINKDIR" "$T/vhost"
ln -s "$QEMU_LIO" "$LINKDIR/qemu-system-x86_64"
export QEMU_LIO_STATE_DIR=$STATE_DIR

qlio() { "$QEMU_LIO" --state-dir "$STATE_DIR" "$@"; }
# The drop-in binary; QEMU_LIO_QEMU picks the stand-in or, unset, the real QEMU on PATH.
dropin() { PATH=$LINKDIR:$PATH qemu-system-x86_64 "$@"; }


raw_image() {  # PATH [SIZE-MB]
  truncate -s "${2:-8}M" "$1"
}

# The wwpn of the vhost-scsi-pci device in an argv file written by the stand-in.
wwpn_of() { sed -n 's/^vhost-scsi-pci,wwpn=\(naa\.[0-9a-f]*\),.*/\1/p' "$1"; }

scenario_format_raw() {
  local img=$WORK/guest-wrote-qcow2.img before rc
  raw_image "$img"
  # What a guest can do to its own raw disk: write a qcow2 header into sector 0.
  printf 'QFI\xfb\0\0\0\3' | dd of="$img" conv=notrunc status=none
  before=$(configfs_snapshot)

  rc=0
  qlio --image "$img" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 1 "$rc" "status without format=raw"
  grep -qF "$img: has a qcow2 header but its name does not say qcow2: set format=qcow2 to serve it as qcow2, or format=raw if it is a raw disk" \
    "$WORK/err" || fail "message: $(cat "$WORK/err")"
  if grep -q 'qemu-img' "$WORK/err"; then fail "message still suggests qemu-img: $(cat "$WORK/err")"; fi
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the refusal"

  # --image ...,format=raw: served, whatever sector 0 holds.
  rc=0
  STANDIN_RUN="ls $T/vhost | grep -c '^naa\.' > $WORK/targets" \
    qlio --image "$img,format=raw" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status with --image format=raw ($(cat "$WORK/err"))"
  assert_eq 1 "$(cat "$WORK/targets")" "vhost targets while QEMU ran"

  # -drive ...,format=raw,if=vhost-scsi in drop-in mode.
  rc=0; rm -f "$WORK/targets"
  QEMU_LIO_QEMU=$STANDIN STANDIN_ARGV=$WORK/argv STANDIN_RUN="ls $T/vhost | grep -c '^naa\.' > $WORK/targets" \
    dropin -drive "file=$img,format=raw,if=vhost-scsi" 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status with -drive format=raw ($(cat "$WORK/err"))"
  assert_eq 1 "$(cat "$WORK/targets")" "vhost targets while QEMU ran (-drive)"
  grep -q '^vhost-scsi-pci,wwpn=naa\.' "$WORK/argv" || fail "no vhost-scsi-pci in QEMU's argv: $(cat "$WORK/argv")"

  # format = "raw" in a -readconfig [drive].
  printf '[drive "d0"]\n  file = "%s"\n  format = "raw"\n  if = "vhost-scsi"\n' "$img" > "$WORK/vm.cfg"
  rc=0; rm -f "$WORK/targets"
  QEMU_LIO_QEMU=$STANDIN STANDIN_RUN="ls $T/vhost | grep -c '^naa\.' > $WORK/targets" \
    dropin -readconfig "$WORK/vm.cfg" 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status with readconfig format = raw ($(cat "$WORK/err"))"
  assert_eq 1 "$(cat "$WORK/targets")" "vhost targets while QEMU ran (-readconfig)"

  # Not an image format (a protocol driver would reach past the image): a usage error
  # without a conversion hint.
  rc=0
  QEMU_LIO_QEMU=$STANDIN dropin -drive "file=$img,format=nbd,if=vhost-scsi" 2> "$WORK/err" || rc=$?
  assert_eq 2 "$rc" "status with -drive format=nbd"
  grep -qF "format 'nbd' is not raw or one of qcow2," "$WORK/err" || fail "message: $(cat "$WORK/err")"
  if grep -q 'qemu-img' "$WORK/err"; then fail "message suggests qemu-img: $(cat "$WORK/err")"; fi
  rc=0
  qlio --image "$img,format=file" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 2 "$rc" "status with --image format=file"
  grep -qF "image key format: 'file' is not raw or one of qcow2," "$WORK/err" || fail "message: $(cat "$WORK/err")"

  # QEMU fd sets cannot reach LIO: one line, exit 2.
  rc=0
  QEMU_LIO_QEMU=$STANDIN dropin -drive "file=/dev/fdset/3,if=vhost-scsi" 2> "$WORK/err" || rc=$?
  assert_eq 2 "$rc" "status with /dev/fdset"
  assert_eq "qemu-lio: error: /dev/fdset/3: QEMU fd sets are not supported for vhost-scsi disks: LIO opens the image by path" \
    "$(cat "$WORK/err")" "fd set message"
  assert_eq "$before" "$(configfs_snapshot)" "configfs at the end"
}

scenario_dry_run_safe() {
  local img=$WORK/dry.img before rc marker=$WORK/pwned hostile
  raw_image "$img"
  hostile=$'x\ntouch '"$marker"$' #'
  before=$(configfs_snapshot)
  qlio --dry-run --image "$img" -- qemu-system-x86_64 -append "$hostile" -name $'vm\ntouch '"$marker" \
    > "$WORK/dry.sh" 2> "$WORK/err" || fail "dry run failed: $(cat "$WORK/err")"
  sh -n "$WORK/dry.sh" || fail "the dry-run script is not valid sh"
  assert_eq "$before" "$(configfs_snapshot)" "dry run changed configfs"
  sh "$WORK/dry.sh" down > "$WORK/out" 2>&1 || fail "down failed: $(cat "$WORK/out")"
  assert_absent "$marker"
  # The script really provisions and removes, and its comments stay comments throughout.
  sh "$WORK/dry.sh" up > "$WORK/out" 2>&1 || fail "up failed: $(cat "$WORK/out")"
  assert_absent "$marker"
  local targets=("$T"/vhost/naa.*)
  assert_exists "${targets[0]}"
  assert_eq 1 "${#targets[@]}" "vhost targets after up"
  sh "$WORK/dry.sh" down > "$WORK/out" 2>&1 || fail "down failed: $(cat "$WORK/out")"
  assert_absent "$marker"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after up and down"

  # No disk: still valid sh that does nothing.
  qlio --dry-run -- qemu-system-x86_64 -append "$hostile" > "$WORK/empty.sh" 2> "$WORK/err" \
    || fail "dry run without disks failed: $(cat "$WORK/err")"
  sh -n "$WORK/empty.sh" || fail "the dry-run script without disks is not valid sh"
  for rc in up down; do
    sh "$WORK/empty.sh" "$rc" > "$WORK/out" 2>&1 || fail "$rc failed: $(cat "$WORK/out")"
    assert_eq "" "$(cat "$WORK/out")" "output of $rc without disks"
  done
  assert_absent "$marker"
  assert_eq "$before" "$(configfs_snapshot)" "configfs at the end"
}

# qmp_session OUT QEMU-ARGS...: the real QEMU through the drop-in link, stopped (-S), answering
# QMP on stdio: capabilities, query-pci, the bootindex of device d0, quit.
qmp_session() {
  local out=$1
  shift
  printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-pci"}' \
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/d0","property":"bootindex"}}' \
    '{"execute":"quit"}' \
    | timeout "$(scaled 120)" \
        env -u QEMU_LIO_QEMU PATH="$LINKDIR:$PATH" qemu-system-x86_64 \
        -machine pc -nodefaults -display none -S -qmp stdio "$@" > "$out" 2> "$out.err"
}

# Device d0 in a qmp_session transcript: "SLOT BOOTINDEX CLASS" (None for what is missing).
slot_and_bootindex() {
  python3 - "$1" <<'PY'
import json, sys
slot = boot = desc = None
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    r = msg.get("return")
    if isinstance(r, list) and r and "devices" in r[0]:
        for bus in r:
            for d in bus["devices"]:
                if d.get("qdev_id") == "d0":
                    slot = d["slot"]
                    desc = d.get("class_info", {}).get("desc", "").replace(" ", "_")
    elif isinstance(r, int):
        boot = r
print(slot, boot, desc)
PY
}

scenario_device_of_vhost_drive() {
  local img=$WORK/dev.img before rc slot boot class
  raw_image "$img"
  before=$(configfs_snapshot)
  # The device first, then its drive: a SCSI disk that boots first.
  rc=0
  qmp_session "$WORK/qmp1" -device scsi-hd,drive=d0,bootindex=1 \
    -drive "file=$img,if=vhost-scsi,id=d0,format=raw" || rc=$?
  assert_eq 0 "$rc" "QEMU with -device scsi-hd,drive=d0 ($(cat "$WORK/qmp1.err"))"
  read -r slot boot class < <(slot_and_bootindex "$WORK/qmp1")
  [ "$slot" != None ] || fail "no PCI device d0: $(cat "$WORK/qmp1")"
  assert_eq SCSI_controller "$class" "class of device d0"
  assert_eq 1 "$boot" "bootindex of the vhost-scsi device"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the first QEMU"

  # The drive first, then a PCI device in slot 5: vhost-scsi-pci takes that slot.
  rc=0
  qmp_session "$WORK/qmp2" -drive "file=$img,if=vhost-scsi,id=d0" \
    -device virtio-blk-pci,drive=d0,bus=pci.0,addr=0x5 || rc=$?
  assert_eq 0 "$rc" "QEMU with -device virtio-blk-pci,drive=d0 ($(cat "$WORK/qmp2.err"))"
  read -r slot boot class < <(slot_and_bootindex "$WORK/qmp2")
  assert_eq 5 "$slot" "PCI slot of the vhost-scsi device"
  assert_eq SCSI_controller "$class" "class of device d0"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the second QEMU"
}

scenario_name_escaped_comma() {
  local img=$WORK/name.img rc=0
  raw_image "$img"
  STANDIN_RUN="ls $T/core/fileio_*/ > $WORK/objects" \
    qlio --image "$img" -- "$STANDIN" -name guest=a,,b,debug-threads=on 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status ($(cat "$WORK/err"))"
  grep -qx 'a_b-disk0' "$WORK/objects" || fail "storage object is not named a_b-disk0: $(cat "$WORK/objects")"
}

# mbr_one_partition IMAGE: an MS-DOS label with one Linux partition from sector 2048 to the end.
mbr_one_partition() {
  local sectors
  sectors=$(( $(stat -c %s "$1") / 512 - 2048 ))
  le() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
  # status, CHS start, type 0x83, CHS end, LBA start, sector count; then the 0x55aa signature.
  # shellcheck disable=SC2059 # the format is built from escapes on purpose
  printf "\\x00\\x20\\x21\\x00\\x83\\xfe\\xff\\xff$(le 2048)$(le "$sectors")" | dd of="$1" bs=1 seek=446 conv=notrunc status=none
  printf '\x55\xaa' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}

scenario_partition_discard() {
  local img=$WORK/parted.img loop part before rc=0
  raw_image "$img" 64
  mbr_one_partition "$img"
  loop=$(losetup --find --show --partscan "$img")
  part=${loop}p1
  wait_for 10 test -b "$part" || { losetup -d "$loop"; fail "$part did not appear"; }
  local sysdisk=/sys/class/block/${loop#/dev/}
  [ "$(cat "$sysdisk/queue/discard_max_bytes")" -gt 0 ] || { losetup -d "$loop"; fail "$loop cannot discard: nothing to prove"; }
  before=$(configfs_snapshot)
  STANDIN_RUN="cat $T/core/iblock_*/*-disk0/attrib/emulate_tpu > $WORK/tpu" \
    qlio --image "$part" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  losetup -d "$loop"
  assert_eq 0 "$rc" "status ($(cat "$WORK/err"))"
  assert_eq 1 "$(cat "$WORK/tpu")" "emulate_tpu of the partition's iblock backstore"
  assert_eq "$before" "$(configfs_snapshot)" "configfs at the end"
}

# export_identity LINK OUT: runs qemu-lio on LINK with the stand-in; OUT gets "WWPN SERIAL".
export_identity() {
  local rc=0
  STANDIN_ARGV=$WORK/id-argv STANDIN_RUN="cat $T/core/iblock_*/*-disk0/wwn/vpd_unit_serial > $WORK/id-serial" \
    qlio --image "$1" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status ($(cat "$WORK/err"))"
  echo "$(wwpn_of "$WORK/id-argv") $(sed -n 's/.*Number: *//p' "$WORK/id-serial")" > "$2"
}

scenario_stable_identity() {
  local img=$WORK/ident.img filler=$WORK/filler.img link=/dev/disk/by-id/qemu-lio-test-$$ a b first second
  raw_image "$img"; raw_image "$filler"
  mkdir -p /dev/disk/by-id
  a=$(losetup --find --show "$img")
  ln -sfn "$a" "$link"
  export_identity "$link" "$WORK/first"
  losetup -d "$a"
  # Take the number it had, so the image comes back under another kernel name.
  local hold
  hold=$(losetup --find --show "$filler")
  b=$(losetup --find --show "$img")
  ln -sfn "$b" "$link"
  export_identity "$link" "$WORK/second"
  # And known by its kernel name, for contrast: that identity moves with the name.
  export_identity "$b" "$WORK/kernel-name"
  losetup -d "$b"; losetup -d "$hold"; rm -f "$link"
  [ "$a" != "$b" ] || fail "the image came back under the same name $a: nothing proved"
  first=$(cat "$WORK/first"); second=$(cat "$WORK/second")
  echo "  $a then $b: $first / $second"
  [[ $first =~ ^naa\.5001405[0-9a-f]{9}\ [0-9a-f-]{36}$ ]] || fail "unexpected identity [$first]"
  assert_eq "$first" "$second" "wwn and serial across the change of kernel name"
  [ "$(cat "$WORK/kernel-name")" != "$first" ] || fail "the kernel name gave the stable name's identity"
}

# A -readconfig that is a stream is read once by qemu-lio; QEMU must still get every byte,
# with and without vhost-scsi drives in it (it gets a private copy, a memfd at /dev/fd/N).
scenario_readconfig_stream() {
  local img=$WORK/stream.img cfg=$WORK/plain.cfg before rc=0 arg
  raw_image "$img"
  printf '# a comment\n[machine]\n  type = "pc"\n\n[smp-opts]\n  cpus = "2"' > "$cfg"  # no final newline
  before=$(configfs_snapshot)
  # A pipe (not a redirected file, which is a regular file). No vhost drive: the pass-through
  # must not hand QEMU the emptied pipe.
  STANDIN_ARGV=$WORK/argv STANDIN_RUN='a=$(sed -n "/^-readconfig$/{n;p}" '"$WORK"'/argv); cat "$a" > '"$WORK"'/got' \
    QEMU_LIO_QEMU=$STANDIN dropin -readconfig /dev/stdin < <(cat "$cfg") || rc=$?
  assert_eq 0 "$rc" "status with a stream -readconfig"
  cmp "$cfg" "$WORK/got" || fail "QEMU got other bytes than the stream held: $(od -c "$WORK/got" | head)"
  arg=$(sed -n '/^-readconfig$/{n;p}' "$WORK/argv")
  case $arg in /dev/fd/*) ;; *) fail "QEMU's -readconfig is $arg, not a private copy";; esac
  # With a vhost drive from the same stream: provisioned, and the rest kept byte for byte.
  printf '\n[drive "d0"]\n  file = "%s"\n  if = "vhost-scsi"\n  format = "raw"\n' "$img" >> "$cfg"
  rm -f "$WORK/got"
  STANDIN_ARGV=$WORK/argv STANDIN_RUN='a=$(sed -n "/^-readconfig$/{n;p}" '"$WORK"'/argv); cat "$a" > '"$WORK"'/got; ls '"$T"'/vhost | grep -c "^naa\." > '"$WORK"'/targets' \
    QEMU_LIO_QEMU=$STANDIN dropin -readconfig /dev/stdin < <(cat "$cfg") || fail "run with a vhost drive in a stream"
  assert_eq 1 "$(cat "$WORK/targets")" "vhost target while QEMU ran"
  grep -q 'driver = "vhost-scsi-pci"' "$WORK/got" || fail "no vhost-scsi-pci device in QEMU's copy: $(cat "$WORK/got")"
  grep -q '^# a comment$' "$WORK/got" || fail "the rest of the stream was lost: $(cat "$WORK/got")"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the runs"
}

# A QEMU built without vhost-scsi-pci (RHEL 9's qemu-kvm): refused before anything is made,
# in one line that names the binary; the real QEMU's answer is cached per binary.
scenario_qemu_without_vhost_scsi() {
  local img=$WORK/novhost.img q=$WORK/qemu-without-vhost before rc=0
  raw_image "$img"
  cat > "$q" <<'Q'
#!/bin/sh
case "$*" in
  *"-device help"*) echo 'name "virtio-blk-pci", bus PCI'; echo 'name "virtio-scsi-pci", bus PCI'; exit 0 ;;
esac
echo "started as QEMU" > "${0%/*}/novhost-started"; exit 0
Q
  chmod 755 "$q"
  before=$(configfs_snapshot)
  qlio --image "$img" -- "$q" 2> "$WORK/err" || rc=$?
  assert_eq 1 "$rc" "status"
  assert_eq 1 "$(wc -l < "$WORK/err")" "one line: $(cat "$WORK/err")"
  grep -qF "qemu-lio: error: $q: this QEMU has no vhost-scsi-pci device" "$WORK/err" || fail "message: $(cat "$WORK/err")"
  assert_absent "$WORK/novhost-started"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the refusal"
  [ -z "$(ls "$STATE_DIR"/*.journal 2>/dev/null)" ] || fail "journal left"
  # The real QEMU: probed once, then its cached answer; check prints what it found.
  rc=0
  qlio --image "$img" -- qemu-system-x86_64 -machine none -nodefaults -display none -version \
    > /dev/null 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "a run with the real QEMU ($(cat "$WORK/err"))"
  grep -q '"vhost_scsi_pci":true' "$STATE_DIR"/caps/*.json || fail "no cached answer: $(cat "$STATE_DIR"/caps/*.json)"
  rc=0; "$QEMU_LIO" check > "$WORK/check" 2>&1 || rc=$?  # a FAIL line elsewhere is not this test's matter
  grep -q '^ok    qemu-system-x86_64 offers vhost-scsi-pci' "$WORK/check" || fail "check: $(cat "$WORK/check")"
  grep -q '^info  qemu-system-x86_64 vhost-scsi-pci worker_per_virtqueue: ' "$WORK/check" || fail "check: $(cat "$WORK/check")"
}

# worker_per_virtqueue (one vhost worker thread per queue) needs QEMU 9.0 and Linux 6.5. A
# stand-in QEMU offers the property; this kernel (6.1) has no VHOST_NEW_WORKER, so auto leaves
# it off and "on" is refused in one line before anything is made; check says what it found.
scenario_worker_per_virtqueue() {
  local img=$WORK/workers.img q=$WORK/wq/qemu-system-x86_64 conf=$WORK/workers.conf before rc=0
  raw_image "$img"
  mkdir -p "$WORK/wq"  # not $LINKDIR: its qemu-system-x86_64 is the drop-in link
  cat > "$q" <<'Q'
#!/bin/sh
case "$*" in
  *"vhost-scsi-pci,help"*) echo 'vhost-scsi-pci options:'; echo '  worker_per_virtqueue=<bool> - on/off'; exit 0 ;;
  *"-device help"*) echo 'name "vhost-scsi-pci", bus PCI'; exit 0 ;;
esac
printf '%s\n' "$@" > "${0%/*}/argv"; exit 0
Q
  chmod 755 "$q"
  before=$(configfs_snapshot)
  qlio --image "$img,num-queues=2" -- "$q" -nodefaults 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "auto: status ($(cat "$WORK/err"))"
  grep -q '^vhost-scsi-pci,wwpn=naa\.' "$WORK/wq/argv" || fail "auto: no device: $(cat "$WORK/wq/argv")"
  ! grep -q worker_per_virtqueue "$WORK/wq/argv" || fail "auto set workers on a kernel without them: $(cat "$WORK/wq/argv")"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the auto run"
  rm -f "$WORK/wq/argv"
  echo 'worker_per_virtqueue = on' > "$conf"
  rc=0
  QEMU_LIO_CONFIG=$conf qlio --image "$img,num-queues=2" -- "$q" -nodefaults 2> "$WORK/err" || rc=$?
  assert_eq 1 "$rc" "on: status"
  assert_eq 1 "$(wc -l < "$WORK/err")" "on: one line: $(cat "$WORK/err")"
  grep -qF 'qemu-lio: error: worker_per_virtqueue = on: /dev/vhost-scsi has no VHOST_NEW_WORKER' "$WORK/err" \
    || fail "on: message: $(cat "$WORK/err")"
  assert_absent "$WORK/wq/argv"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the refusal"
  [ -z "$(ls "$STATE_DIR"/*.journal 2>/dev/null)" ] || fail "journal left"
  rc=0; "$QEMU_LIO" check > "$WORK/check" 2>&1 || rc=$?  # a FAIL line elsewhere is not this test's matter
  grep -q '^info  kernel vhost workers per virtqueue (VHOST_NEW_WORKER): no' "$WORK/check" \
    || fail "check: $(cat "$WORK/check")"
}

scenario readconfig-stream scenario_readconfig_stream
scenario qemu-without-vhost-scsi scenario_qemu_without_vhost_scsi
scenario format-raw scenario_format_raw
scenario dry-run-safe scenario_dry_run_safe
scenario device-of-vhost-drive scenario_device_of_vhost_drive
scenario name-escaped-comma scenario_name_escaped_comma
scenario partition-discard scenario_partition_discard
scenario stable-identity scenario_stable_identity
scenario worker-per-virtqueue scenario_worker_per_virtqueue
scenarios_summary
