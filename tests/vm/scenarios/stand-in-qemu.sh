#!/bin/sh
# Stands in for QEMU in the configfs scenarios: it records its argv, runs a probe while
# qemu-lio's objects exist, then ends the way the scenario asks.
#   STANDIN_ARGV=FILE   write argv there, one argument per line
#   STANDIN_RUN=CMD     run CMD with sh (e.g. snapshot configfs) before ending
#   STANDIN_END=exit:N | signal:SIG | wait-term   (default exit:0)
#   STANDIN_READY=FILE  touched once wait-term waits
[ -z "${STANDIN_ARGV:-}" ] || printf '%s\n' "$@" > "$STANDIN_ARGV"
[ -z "${STANDIN_RUN:-}" ] || sh -c "$STANDIN_RUN"
case "${STANDIN_END:-exit:0}" in
  exit:*) exit "${STANDIN_END#exit:}" ;;
  signal:*) kill -s "${STANDIN_END#signal:}" $$; sleep 5; exit 99 ;;
  wait-term)
    # QEMU exits 0 on SIGTERM; so does this stand-in.
    trap 'exit 0' TERM
    touch "${STANDIN_READY:?}"
    while :; do sleep 0.1; done ;;
esac
