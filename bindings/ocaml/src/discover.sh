#!/bin/sh
# Writes c_flags.sexp and c_library_flags.sexp: "CFLAGS | LIBS" as given
# (the CMake build), or pkg-config's libstubdm (an installed library).
cflags= libs= seen=
for a in "$@"; do
    if [ "$a" = "|" ]; then seen=1; continue; fi
    [ -n "$a" ] || continue
    if [ -z "$seen" ]; then cflags="$cflags $a"; else libs="$libs $a"; fi
done
if [ -z "$libs" ]; then
    cflags=$(pkg-config --cflags libstubdm) || exit 1
    libs=$(pkg-config --libs libstubdm) || exit 1
fi
sexp() {
    printf '('
    for w in $1; do printf ' "%s"' "$w"; done
    printf ' )\n'
}
sexp "$cflags" > c_flags.sexp
sexp "$libs" > c_library_flags.sexp
