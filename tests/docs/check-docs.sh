#!/usr/bin/env bash
# Keeps README.md, man/qemu-lio.8, --help and the package's sample config true to the code:
# every option --help lists, every --image key, every documented exit code and every
# environment variable the code reads must appear in README and man; the man page names the
# version and lints clean; packaging/qemu-lio.conf shows every config key, commented out.
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
# Every subcommand of --help's usage lines ("qemu-lio [OPTIONS] libvirt-hook ..." too).
cmds=$(sed -n '/^Usage:/,/^$/p' <<<"$help" | sed -E 's/^(Usage:)? *qemu-lio //; s/^\[OPTIONS\] //; s/^\[run\].*/run/' | awk '{print $1}' | sort -u)
[ "$(wc -w <<<"$cmds")" -ge 5 ] || miss "no subcommands found in --help's usage lines"
for c in $cmds; do
  grep -qE "qemu-lio (\[OPTIONS\] )?\[?$c" "$readme" || miss "subcommand $c (in --help) is missing from README.md's usage"
  grep -qE "qemu-lio (\[OPTIONS\] )?$c|^\.RB \[ $c \]|^\.B $c\$" <<<"$man_text" || miss "subcommand $c (in --help) is missing from the man page's synopsis"
done
keys=$(sed -n '/Keys:/,/^  --name/p' <<<"$help" | tr -s ' \n' ' ' | sed 's/.*Keys: //; s/ --name.*//; s/([^)]*)//g' | tr ',' '\n' | sed 's/ //g' | grep -v '^$')
[ -n "$keys" ] || miss "no image keys found in --help"
for k in $keys; do
  grep -qE "\`$k\`" "$readme" || miss "image key $k (in --help) is missing from README.md's key table"
  grep -qE "(^|[^a-z-])$k([^a-z-]|$)" <<<"$man_text" || miss "image key $k (in --help) is missing from the man page"
done
# --help lists exactly the keys the SPEC parser knows (its error for an unknown key lists them).
err=$("$bin" --dry-run --image /nonexistent.img,no-such-key=1 -- true 2>&1 >/dev/null) \
  && miss "qemu-lio accepted an unknown image key"
parsed=$(sed -n 's/.*(known: \(.*\))$/\1/p' <<<"$err" | tr -d ' ' | tr ',' '\n' | sort)
[ -n "$parsed" ] || miss "no list of known image keys in qemu-lio's error for an unknown key"
[ "$parsed" = "$(sort <<<"$keys")" ] || miss "--help lists image keys [$(echo $keys)], the parser knows [$(echo $parsed)]"
for code in $(grep -oE 'constexpr int k[A-Za-z]+ = [0-9]+' "$top/include/qemu_lio/error.h" | awk '{print $NF}'); do
  grep -qE "^\| $code |^\| [0-9]+ / $code |^\| $code / " "$readme" || miss "exit code $code is missing from README.md's table"
  grep -qxF "$code" <<<"$man_text" || miss "exit code $code is missing from the man page's EXIT STATUS"
done
for var in $(grep -rhoE '(secure_)?getenv\("QEMU_LIO_[A-Z_]+"\)' "$top/src" | grep -oE 'QEMU_LIO_[A-Z_]+' | sort -u); do
  grep -qF "$var" "$readme" || miss "environment variable $var (read by the code) is missing from README.md"
  grep -qF "$var" <<<"$man_text" || miss "environment variable $var (read by the code) is missing from the man page"
done
# The man page's header names the version --version prints (CMake's project version).
version=$("$bin" --version | sed -n 's/^qemu-lio //p')
grep -qE "^\.TH QEMU-LIO 8 \"[^\"]*\" \"qemu-lio $version\"" "$man" \
  || miss "the man page's .TH does not say qemu-lio $version (--version)"
# The man page lints clean: mandoc -Tlint (style included), else groff's warnings.
if command -v mandoc >/dev/null; then
  lint=$(mandoc -Tlint "$man" 2>&1) || true
else
  lint=$(groff -man -Tutf8 -ww -z "$man" 2>&1) || true
fi
[ -z "$lint" ] || miss "the man page does not lint clean:"$'\n'"$lint"
# The package's sample /etc/qemu-lio.conf shows exactly the keys the parser knows (its error
# for an unknown key lists them), commented out, and parses once uncommented.
sample=$top/packaging/qemu-lio.conf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'no-such-key = 1\n' >"$tmp/bad.conf"
err=$(QEMU_LIO_CONFIG=$tmp/bad.conf "$bin" --dry-run -- true 2>&1 >/dev/null) \
  && miss "qemu-lio accepted an unknown config key"
known=$(sed -n 's/.*(known: \(.*\))$/\1/p' <<<"$err" | tr -d ' ' | tr ',' '\n' | sort)
[ -n "$known" ] || miss "no list of known config keys in qemu-lio's error for an unknown key"
shown=$(sed -nE 's/^#([a-z_-]+) = .*/\1/p' "$sample" | sort -u)
[ "$known" = "$shown" ] || miss "packaging/qemu-lio.conf shows keys [$(echo $shown)], the parser knows [$(echo $known)]"
if grep -vE '^(#|$)' "$sample" | grep -q .; then miss "packaging/qemu-lio.conf sets something (it must be all comments)"; fi
sed -E 's/^#([a-z_-]+ = )/\1/' "$sample" >"$tmp/all.conf"
out=$(QEMU_LIO_CONFIG=$tmp/all.conf "$bin" --dry-run -- true 2>&1 >/dev/null) \
  || miss "packaging/qemu-lio.conf, uncommented, does not parse: $out"
for k in $known; do
  grep -qE "(^|[^a-z])$k = " "$readme" || grep -qE "\`$k = " "$readme" || miss "config key $k is missing from README.md"
  grep -qE "$k = " <<<"$man_text" || miss "config key $k is missing from the man page's FILES"
done
[ "$fails" = 0 ] && echo "check-docs: README.md, man page, --help and the sample config agree with the code"
exit "$((fails > 0))"
