#!/usr/bin/env bash
# The ABI of the built libstubdm.so.0 against the released baseline
# tests/abi/libstubdm.abi (abidw XML of 0.1.0), with libabigail's abidiff
# (Debian: abigail-tools).  Only what the public header declares is
# compared (--headers-dir, private types dropped).
#
#   incompatible (a removed or changed function, a changed enum value, a
#   struct or callback type a caller sees)   -> fails, abidiff's report
#   compatible additions (new functions, enumerators appended, fields
#   appended to a stats struct or the loop hooks: libstubdm.abignore)
#                                             -> passes, listed
#
# usage: check-abidiff.sh LIB.so BASELINE.abi HEADER
#        check-abidiff.sh update LIB.so BASELINE.abi HEADER   (at a release)
set -uo pipefail

update=
if [ "${1:-}" = update ]; then update=1; shift; fi
lib=${1:?shared library}
baseline=${2:?baseline}
header=${3:?public header}
command -v abidw > /dev/null && command -v abidiff > /dev/null ||
    { echo "FAIL: abidw/abidiff not installed (make deps: abigail-tools)" >&2; exit 1; }

# Without DWARF abidw sees only ELF symbols and every type would look gone.
sections=$(readelf -S "$lib")
grep -q '\.debug_info' <<< "$sections" ||
    { echo "FAIL: $lib has no debug info: build with -g (RelWithDebInfo, Debug)" >&2; exit 1; }
abidw_() { # LIB OUT
    abidw --headers-dir "$(dirname "$header")" --drop-private-types \
        --no-corpus-path --no-comp-dir-path --no-show-locs --out-file "$2" "$1"
}
if [ -n "$update" ]; then
    abidw_ "$lib" "$baseline" && echo "wrote $baseline"
    exit
fi
[ -f "$baseline" ] || { echo "FAIL: no baseline $baseline" >&2; exit 1; }
cur=$(mktemp)
trap 'rm -f "$cur"' EXIT
abidw_ "$lib" "$cur" || { echo "FAIL: abidw $lib failed" >&2; exit 1; }
report=$(abidiff --suppressions "$(dirname "$0")/libstubdm.abignore" "$baseline" "$cur")
rc=$?
# abidiff's status is a bit set: 1 error, 2 usage, 4 ABI change,
# 8 incompatible ABI change.
if [ $((rc & 3)) -ne 0 ]; then
    echo "$report"
    echo "FAIL: abidiff could not compare (status $rc)" >&2
    exit 1
fi
# abidiff flags only some breaks as incompatible (8): a changed enum value
# or struct layout is "a change" (4) to it.  Here anything removed or
# changed is a break; what the policy allows (enumerators and stats fields
# appended) abidiff filters out itself or libstubdm.abignore suppresses,
# so only additions may remain.
removed_or_changed=$(sed -n 's/.*changes summary: \([0-9]*\) Removed[^,]*, \([0-9]*\) Changed.*/\1 \2/p' <<< "$report" |
    awk '{ n += $1 + $2 } END { print n + 0 }')
if [ $((rc & 8)) -ne 0 ] || [ "$removed_or_changed" -ne 0 ]; then
    echo "$report"
    echo "FAIL: incompatible ABI change against $(basename "$baseline") (abidiff status $rc): a released function, type or enum value changed or went away; see docs/building.md, \"ABI policy\"" >&2
    exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
    echo "$report"
    echo "abidiff: compatible changes only (additions), listed above"
else
    echo "abidiff: no ABI change against $(basename "$baseline")"
fi
exit 0
