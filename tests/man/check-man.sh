#!/usr/bin/env bash
# The manual pages (docs/man): the section-3 pages are what
# docs/man/gen-man3.py makes of include/libstubdm.h; every page is clean
# for mandoc -Tlint (warnings and style); every function the shared
# library exports is in some section-3 page's SYNOPSIS; every page's
# EXAMPLE (docs/man/examples/*.c) compiles against the header.
#
# usage: check-man.sh SOURCE_DIR LIBSTUBDM.so [CC]
set -uo pipefail

src=${1:?source dir}
lib=${2:?shared library}
cc=${3:-${CC:-cc}}
man=$src/docs/man
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. in step with the header
python3 "$man/gen-man3.py" "$src/include/libstubdm.h" "$tmp" || bad "gen-man3.py failed"
for f in "$tmp"/*; do
    diff -u "$man/${f##*/}" "$f" > "$tmp/diff" ||
        bad "docs/man/${f##*/} is not what gen-man3.py makes of the header (run: docs/man/gen-man3.py include/libstubdm.h docs/man):
$(head -n 40 "$tmp/diff")"
done
for f in "$man"/*.3; do
    [ -e "$tmp/${f##*/}" ] || bad "docs/man/${f##*/} is not made by gen-man3.py (stale page?)"
done

# 2. lint: mandoc reports warnings and style messages; none is allowed
pages=("$man"/*.[1-8])
lint=$(mandoc -Tlint -Wstyle "${pages[@]}" 2>&1)
[ -z "$lint" ] || bad "mandoc -Tlint:
$lint"
echo "mandoc -Tlint: ${#pages[@]} pages"

# 3. every exported function is documented in a section-3 page
documented=$(sed -n '/^\.SH SYNOPSIS/,/^\.SH/p' "$man"/*.3 |
             grep -o 'stubdm_[A-Za-z0-9_]*(' | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u)
[ -n "$exported" ] || bad "no exported functions in $lib"
while read -r fn; do
    [ -n "$fn" ] && bad "exported but in no manual page's SYNOPSIS: $fn"
done < <(comm -23 <(echo "$exported") <(echo "$documented"))
echo "$(echo "$exported" | wc -l) exported functions, $(echo "$documented" | wc -l) in the SYNOPSIS of ${#pages[@]} pages"

# 4. the examples compile
for ex in "$man"/examples/*.c; do
    "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$src/include" \
        -c "$ex" -o "$tmp/example.o" || bad "example ${ex#"$src"/} does not compile"
done

[ "$fail" -eq 0 ] && echo "man pages: OK"
exit $fail
