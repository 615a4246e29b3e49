#!/usr/bin/env bash
# Keeps README.md, man/qemu-lio.8 and --help true to the code: every option --help lists,
# every --image key, every documented exit code and every environment variable the code
# reads must appear in README and man.
#   check-docs.sh QEMU_LIO_BINARY
set -euo pipefail
bin=${1:?usage: check-docs.sh QEMU_LIO_BINARY}
top=$(cd "$(dirname "$0")/../.." && pwd)
readme=$top/README.md man=$top/man/qemu-lio.8
fails=0
miss() { echo "check-docs: $1"; fails=$((fails + 1)); }
# man escapes dashes: "\-\-image" reads as "--image".
man_text=$(sed 's/\\-/-/g; s/\\(em/-/g' "$man")
help=$("$bin" --help)

for opt in $(grep -oE -- '--[a-z][a-z-]+' <<<"$help" | sort -u); do
  grep -qF -- "$opt" "$readme" || miss "option $opt (in --help) is missing from README.md"
  grep -qF -- "$opt" <<<"$man_text" || miss "option $opt (in --help) is missing from the man page"
done
keys=$(sed -n '/Keys:/,/^  --name/p' <<<"$help" | tr -s ' \n' ' ' | sed 's/.*Keys: //; s/ --name.*//; s/([^)]*)//g' | tr ',' '\n' | sed 's/ //g' | grep -v '^$')
[ -n "$keys" ] || miss "no image keys found in --help"
for k in $keys; do
  grep -qE "\`$k\`" "$readme" || miss "image key $k (in --help) is missing from README.md's key table"
  grep -qE "(^|[^a-z-])$k([^a-z-]|$)" <<<"$man_text" || miss "image key $k (in --help) is missing from the man page"
done
for code in $(grep -oE 'constexpr int k[A-Za-z]+ = [0-9]+' "$top/include/qemu_lio/error.h" | awk '{print $NF}'); do
  grep -qE "^\| $code |^\| [0-9]+ / $code |^\| $code / " "$readme" || miss "exit code $code is missing from README.md's table"
  grep -qxF "$code" <<<"$man_text" || miss "exit code $code is missing from the man page's EXIT STATUS"
done
for var in $(grep -rhoE '(secure_)?getenv\("QEMU_LIO_[A-Z_]+"\)' "$top/src" | grep -oE 'QEMU_LIO_[A-Z_]+' | sort -u); do
  grep -qF "$var" "$readme" || miss "environment variable $var (read by the code) is missing from README.md"
  grep -qF "$var" <<<"$man_text" || miss "environment variable $var (read by the code) is missing from the man page"
done
[ "$fails" = 0 ] && echo "check-docs: README.md, man page and --help agree with the code"
exit "$((fails > 0))"
