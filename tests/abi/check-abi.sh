#!/usr/bin/env bash
# ABI checks on the built shared library (see docs/building.md, "ABI policy"):
#
#   exports   SONAME is the expected one; the dynamic symbol table defines
#             only stubdm_* symbols, each bound to a LIBSTUBDM_* version
#             node of lib/libstubdm.map, plus the node names themselves;
#             every symbol of the released-ABI baseline (libstubdm.symbols)
#             is still there, in the same node.
#   header    every function the public header declares STUBDM_EXPORT is
#             exported, and every exported function is declared.
#
# usage: check-abi.sh exports LIB.so SONAME MAPFILE BASELINE
#        check-abi.sh header  LIB.so HEADER
#        check-abi.sh update  LIB.so BASELINE   (rewrite the baseline; at release)
#        check-abi.sh debian-symbols BASELINE   (print debian/libstubdm0.symbols)
set -euo pipefail

fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

mode=${1:?mode}
if [ "$mode" = debian-symbols ]; then
    # dpkg-gensymbols' file: each symbol with the first upstream version
    # that has it, which is its node's (LIBSTUBDM_x.y: x.y.0).
    baseline=${2:?baseline}
    echo "libstubdm.so.0 libstubdm0 #MINVER#"
    echo "* Build-Depends-Package: libstubdm-dev"
    awk '!/^#/ && NF == 2 { print $2 }' "$baseline" | sort -u | while read -r node; do
        echo " $node@$node ${node#LIBSTUBDM_}.0"
    done
    awk '!/^#/ && NF == 2 { v = $2; sub(/^LIBSTUBDM_/, "", v); print " " $1 "@" $2 " " v ".0" }' \
        "$baseline" | sort
    exit 0
fi
lib=${2:?shared library}
[ -f "$lib" ] || { echo "no such library: $lib" >&2; exit 2; }

# "name node" for each defined dynamic symbol, node "-" when unversioned;
# version-node entries (type A) as "NODE node".
exports() {
    nm -D --defined-only --with-symbol-versions "$lib" | awk '
        $2 == "A" { print "NODE " $3; next }
        {
            sym = $3; node = "-"
            i = index(sym, "@")
            if (i) { node = substr(sym, i); sub(/^@+/, "", node); sym = substr(sym, 1, i - 1) }
            print sym " " node
        }'
}

case $mode in
exports)
    want_soname=${3:?soname}; map=${4:?map}; baseline=${5:?baseline}
    soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "$want_soname" ] || bad "SONAME is '$soname', expected '$want_soname'"

    nodes=$(sed -n 's/^[[:space:]]*\(LIBSTUBDM_[0-9][0-9.]*\)[[:space:]]*{.*/\1/p' "$map")
    [ -n "$nodes" ] || bad "no LIBSTUBDM_x.y version node in $map"
    n=0
    while read -r sym node; do
        if [ "$sym" = NODE ]; then
            grep -qx "$node" <<<"$nodes" || bad "version node $node is not in $map"
            continue
        fi
        n=$((n + 1))
        case $sym in
        stubdm_*) ;;
        *) bad "exported symbol outside the stubdm_ namespace: $sym" ;;
        esac
        if [ "$node" = - ]; then
            bad "$sym is exported without a version node"
        elif ! grep -qx "$node" <<<"$nodes"; then
            bad "$sym is bound to $node, which $map does not define"
        fi
    done < <(exports)
    [ "$n" -gt 0 ] || bad "no exported symbols at all"

    # Released ABI: lines "symbol NODE"; '#' comments.
    if [ -f "$baseline" ]; then
        current=$(exports)
        while read -r sym node; do
            case $sym in ''|'#'*) continue ;; esac
            grep -qx "$sym $node" <<<"$current" ||
                bad "released symbol $sym@$node is gone or moved (ABI break)"
        done < "$baseline"
    fi
    echo "$n symbols exported, SONAME $soname, nodes: $(tr '\n' ' ' <<<"$nodes")"
    ;;
header)
    header=${3:?header}
    declared=$(tr '\n' ' ' < "$header" | grep -o 'STUBDM_EXPORT[^;(]*(' |
               grep -o 'stubdm_[A-Za-z0-9_]*($' | tr -d '(' | sort -u)
    exported=$(exports | awk '$1 != "NODE" { print $1 }' | sort -u)
    while read -r sym; do
        [ -n "$sym" ] && bad "declared in $(basename "$header") but not exported: $sym"
    done < <(comm -23 <(echo "$declared") <(echo "$exported"))
    while read -r sym; do
        [ -n "$sym" ] && bad "exported but not declared in $(basename "$header"): $sym"
    done < <(comm -13 <(echo "$declared") <(echo "$exported"))
    echo "$(echo "$declared" | wc -l) functions declared, $(echo "$exported" | wc -l) exported"
    ;;
update)
    baseline=${3:?baseline}
    {
        sed -n '/^#/p' "$baseline" 2>/dev/null || true
        exports | awk '$1 != "NODE"' | sort
    } > "$baseline.new"
    mv "$baseline.new" "$baseline"
    echo "wrote $baseline"
    ;;
*)
    echo "unknown mode: $mode" >&2; exit 2 ;;
esac
exit $fail
