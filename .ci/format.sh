#!/usr/bin/env bash
# The C sources' format (.clang-format; tests/mock-xenstored/ has its own).
#
#   .ci/format.sh          reformat every tracked .c/.h file in place
#                          (`make format`)
#   .ci/format.sh --check  change nothing; list the files clang-format
#                          would change and print "format: N files
#                          formatted, N not" (CI's `format` stage); exit
#                          status non-zero if any would change
#
# clang-format's output differs between versions: the tree is formatted
# with clang-format 14 (Debian 12's); CLANG_FORMAT names another binary.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
    for c in clang-format-14 clang-format; do
        command -v "$c" > /dev/null && { cf=$c; break; }
    done
fi
if [ -z "$cf" ]; then
    echo "format: clang-format not found (make deps installs it)" >&2
    exit 2
fi
case $("$cf" --version) in
*"version 14."*) ;;
*) echo "format: warning: $("$cf" --version): the tree is formatted with 14" >&2 ;;
esac

# Tracked files only (no build trees, no generated files); outside a git
# checkout, the source directories.
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- '*.c' '*.h')
else
    mapfile -t files < <(find lib include examples tests bench \
        -name '*.[ch]' -not -path '*/build*' | sort)
fi

if [ "${1:-}" != --check ]; then
    "$cf" -i -- "${files[@]}"
    exit
fi

# One clang-format run; the files it complains about are the failures.
mapfile -t bad < <("$cf" --dry-run -- "${files[@]}" 2>&1 |
    sed -n 's/^\(.*\):[0-9]*:[0-9]*: \(warning\|error\): code should be clang-formatted.*/\1/p' |
    sort -u)
for f in "${bad[@]}"; do
    echo "format: $f: not as .clang-format (run make format; see: $cf --dry-run $f)"
done
echo "format: $((${#files[@]} - ${#bad[@]})) files formatted, ${#bad[@]} not"
[ "${#bad[@]}" -eq 0 ]
