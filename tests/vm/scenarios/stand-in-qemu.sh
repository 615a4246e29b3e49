#!/bin/sh
# Stands in for QEMU in the configfs scenarios: it records its argv, runs a probe while
# qemu-lio's objects exist, then ends the way the scenario asks.
#   STANDIN_ARGV=FILE   write argv there, one argument per line
#   STANDIN_RUN=CMD     run CMD with bash (e.g. snapshot configfs) before ending
#   STANDIN_END=exit:N | signal:SIG | wait-term | daemonize | count-int:FILE   (default exit:0)
#     daemonize       like QEMU's -daemonize: a child in its own session (setsid) writes its
#                     pid to the -pidfile PATH of argv, touches STANDIN_READY (if set) and
#                     waits for SIGTERM (exit 0, removing the pidfile as QEMU does); the first
#                     process exits 0 once the pidfile is written
#     count-int:FILE  every SIGINT appends a line to FILE; SIGTERM exits 0
#   STANDIN_READY=FILE  touched once wait-term / count-int wait (daemonize: once the daemon runs)
# qemu-lio's capability probe (-device help, then -device vhost-scsi-pci,help): answer as a
# QEMU with vhost-scsi-pci would, and do nothing else (no argv record, no STANDIN_RUN).
case "$*" in
  *"-device help"*) echo 'name "virtio-blk-pci", bus PCI'; echo 'name "vhost-scsi-pci", bus PCI'; exit 0 ;;
  *"-device vhost-scsi-pci,help"*) echo 'vhost-scsi-pci options:'; echo '  wwpn=<str>'; exit 0 ;;
esac
[ -z "${STANDIN_ARGV:-}" ] || printf '%s\n' "$@" > "$STANDIN_ARGV"
[ -z "${STANDIN_RUN:-}" ] || bash -c "$STANDIN_RUN"
end=${STANDIN_END:-exit:0}
case "$end" in
  exit:*) exit "${end#exit:}" ;;
  signal:*) kill -s "${end#signal:}" $$; sleep 5; exit 99 ;;
  wait-term)
    # QEMU exits 0 on SIGTERM; so does this stand-in.
    trap 'exit 0' TERM
    touch "${STANDIN_READY:?}"
    while :; do sleep 0.1; done ;;
  count-int:*)
    count_file=${end#count-int:}
    trap 'echo INT >> "$count_file"' INT
    trap 'exit 0' TERM
    touch "${STANDIN_READY:?}"
    while :; do sleep 0.1; done ;;
  daemonize)
    pidfile='' prev=''
    for a in "$@"; do
      [ "$prev" != -pidfile ] || pidfile=$a
      prev=$a
    done
    [ -n "$pidfile" ] || { echo "stand-in-qemu: -daemonize without -pidfile" >&2; exit 98; }
    # The daemon: trap first, then ready, then the pidfile (whole, by rename), so that both
    # are there once the first process exits.
    # shellcheck disable=SC2016 # expanded by the daemon's shell
    daemon='trap "rm -f \"$1\"; exit 0" TERM
      [ -z "$2" ] || touch "$2"
      echo $$ > "$1.tmp" && mv -f "$1.tmp" "$1"
      while :; do sleep 0.1; done'
    if command -v setsid >/dev/null 2>&1; then
      setsid sh -c "$daemon" stand-in-daemon "$pidfile" "${STANDIN_READY:-}" </dev/null >/dev/null 2>&1 &
    else
      sh -c "$daemon" stand-in-daemon "$pidfile" "${STANDIN_READY:-}" </dev/null >/dev/null 2>&1 &
    fi
    # QEMU's first process exits once the daemon is set up. Bounded (60 s x VM_WAIT_SCALE).
    limit=$(awk -v k="${VM_WAIT_SCALE:-1}" 'BEGIN { printf "%d", 600 * k }')
    n=0
    until [ -s "$pidfile" ]; do
      n=$((n + 1))
      [ "$n" -le "$limit" ] || { echo "stand-in-qemu: the daemon wrote no $pidfile" >&2; exit 97; }
      sleep 0.1
    done
    exit 0 ;;
esac
