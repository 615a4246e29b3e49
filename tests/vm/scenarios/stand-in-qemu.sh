#!/bin/sh
# Stands in for QEMU in the configfs scenarios: it records its argv, runs a probe while
# qemu-lio's objects exist, then ends the way the scenario asks.
#   STANDIN_ARGV=FILE   write argv there, one argument per line
#   STANDIN_RUN=CMD     run CMD with bash (e.g. snapshot configfs) before ending
#   STANDIN_END=exit:N | signal:SIG | wait-term   (default exit:0)
#   STANDIN_READY=FILE  touched once wait-term waits
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
esac
