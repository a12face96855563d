#!/usr/bin/env bash
# The package stage of .ci/test-all.sh: libstubdm as Debian ships it.
#
#   1. dpkg-buildpackage -us -uc -b of the tracked tree (a copy in
#      WORK/src; DEB_BUILD_OPTIONS=nocheck: the build stage ran the tests)
#   2. lintian on the .debs: no error and no warning that is not
#      overridden (debian/*.lintian-overrides, each with its reason)
#   3. install test, in parallel with 2: a clean Debian 12 chroot (a
#      debootstrap --variant=minbase of bookworm from the host's apt
#      mirror, with the consumer's tools, cached in CACHE/base; each run
#      works on a fresh copy) gets the .debs with apt-get install ./*.deb,
#      then, from the installed files only: stubdm-ctl --version, the
#      tests/install-consumer program built with pkg-config and with
#      find_package(), the OCaml binding through ocamlfind, and the
#      simulated-host demo (/usr/share/doc/stubdm-tools/examples/demo.sh).
#
# Prints "package: N passed, N failed" (one per check) and exits non-zero
# on a failure.  Root (debootstrap, chroot, mounts; sudo otherwise).
# Nothing stays mounted or running: the chroot's processes are killed and
# its mounts undone on every exit.
#
# usage: .ci/package.sh [WORK]      (default: build-pkg)
#        .ci/package.sh --base-only  (make the cached base chroot if it is
#                                     missing, nothing else: test-all.sh
#                                     runs it in the background early)
# env:   STUBDM_PKG_CACHE (default /var/tmp/libstubdm-pkg), JOBS
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
if [ "$(id -u)" -ne 0 ]; then
    exec sudo env JOBS="${JOBS:-}" STUBDM_PKG_CACHE="${STUBDM_PKG_CACHE:-}" "$0" "$@"
fi
src_root=$PWD
base_only=
if [ "${1:-}" = --base-only ]; then base_only=1; shift; fi
work=$(mkdir -p "${1:-build-pkg}" && cd "${1:-build-pkg}" && pwd) || exit 2
cache=${STUBDM_PKG_CACHE:-/var/tmp/libstubdm-pkg}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
suite=bookworm
pass=0 fail=0
ok() { echo "package: ok: $*"; pass=$((pass + 1)); }
bad() { echo "package: FAILED: $*" >&2; fail=$((fail + 1)); }
t() { echo "$(($(date +%s%N) / 1000000))"; }
t0=$(t)

# ---- the chroot ----------------------------------------------------------
mirror() { # the host's apt source for SUITE (deb822 or one-line format)
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v s="$1" 'BEGIN { RS = ""; FS = "\n" } {
            uri = ""; ok = 0; deb = 0
            for (k = 1; k <= NF; k++) {
                if ($k ~ /^URIs:/)   { split($k, a, /[ \t]+/); uri = a[2] }
                if ($k ~ /^Types:/ && $k ~ /[ \t]deb([ \t]|$)/) deb = 1
                if ($k ~ /^Suites:/) { n = split($k, b, /[ \t]+/)
                                       for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
            }
            if (ok && deb && uri != "") print uri }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null |
        awk -v s="$1" '$1 == "deb" && $3 == s { print $2 }'
}
# The consumer's side: a compiler, cmake, pkg-config, OCaml with findlib,
# and what the simulated host's demo runs (QEMU, xenstore-ls).  The
# packages' own dependencies (libxen, yajl) come with them, from apt.
base_pkgs="build-essential cmake pkgconf ocaml-nox ocaml-findlib qemu-system-x86 xenstore-utils procps"
base=$cache/base
root=$work/chroot
mounts=()
cleanup_chroot() {
    local p m i
    # every process whose root is the chroot (the demo's, if it failed)
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2> /dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2> /dev/null
    done
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        m=${mounts[i]}
        umount -R "$m" 2> /dev/null || umount -R -l "$m" 2> /dev/null
    done
    mounts=()
    if [ -d "$root" ] && ! grep -q " $root[/ ]" /proc/mounts; then rm -rf "$root" "$work/overlay"; fi
}
trap 'cleanup_chroot; [ -z "${lintian_pid:-}" ] || kill "$lintian_pid" 2> /dev/null' EXIT
mount_in() { # TYPE-OR-BIND SOURCE TARGET
    mkdir -p "$3"
    if [ "$1" = rbind ]; then
        mount --rbind "$2" "$3" && mount --make-rslave "$3"
    else
        mount -t "$1" "$2" "$3"
    fi && mounts+=("$3")
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@" < /dev/null; }

build_base() {
    local m t2=$(t)
    m=$(mirror "$suite" | head -n 1)
    [ -n "$m" ] || { echo "no apt source for $suite on the host" >&2; return 1; }
    rm -rf "$base.tmp"
    mkdir -p "$cache"
    echo "package: debootstrap --variant=minbase $suite from $m into $base (cached; log $cache/base.log)"
    debootstrap --variant=minbase "$suite" "$base.tmp" "$m" > "$cache/base.log" 2>&1 || return 1
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        > "$base.tmp/etc/apt/apt.conf.d/90no-recommends"
    # a throwaway tree: no fsync per unpacked file
    echo force-unsafe-io > "$base.tmp/etc/dpkg/dpkg.cfg.d/90unsafe-io"
    echo "deb $m $suite main" > "$base.tmp/etc/apt/sources.list"
    m=$(mirror "$suite-updates" | head -n 1)
    [ -z "$m" ] || echo "deb $m $suite-updates main" >> "$base.tmp/etc/apt/sources.list"
    m=$(mirror "$suite-security" | head -n 1)
    [ -z "$m" ] || echo "deb $m $suite-security main" >> "$base.tmp/etc/apt/sources.list"
    mount -t proc proc "$base.tmp/proc" || return 1
    chroot "$base.tmp" env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -q && apt-get dist-upgrade -y -q && apt-get install -y -q $base_pkgs && apt-get clean" \
        < /dev/null >> "$cache/base.log" 2>&1
    local rc=$?
    umount "$base.tmp/proc"
    [ "$rc" -eq 0 ] || return 1
    echo "$base_pkgs" > "$base.tmp/.base-pkgs"
    mv "$base.tmp" "$base"
    echo "package: base chroot made in $((($(t) - t2) / 1000)) s"
}

# ensure_base: the cached base, made if missing or made for other
# packages; under a lock (test-all.sh's early --base-only run, a second
# checkout's CI on the same machine)
ensure_base() {
    mkdir -p "$cache"
    (
        flock 9
        [ "$(cat "$base/.base-pkgs" 2> /dev/null)" = "$base_pkgs" ] && exit 0
        rm -rf "$base"
        build_base || { tail -n 30 "$cache/base.log"; exit 1; }
    ) 9> "$cache/lock"
}

install_test() {
    local t2
    ensure_base || { bad "making the base chroot"; return; }
    t2=$(t)
    rm -rf "$root" "$work/overlay"
    # a fresh tree per run, the cached base never changed: an overlay on
    # it (or, where overlayfs is refused, a copy)
    mkdir -p "$root" "$work/overlay/upper" "$work/overlay/work"
    if mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/overlay/upper,workdir=$work/overlay/work" \
        "$root" 2> /dev/null; then
        mounts+=("$root")
    else
        rmdir "$root" && cp -a "$base" "$root" || { bad "copying the base chroot"; return; }
    fi
    mount_in proc proc "$root/proc" && mount_in sysfs sysfs "$root/sys" &&
        mount_in rbind /dev "$root/dev" && mount_in tmpfs tmpfs "$root/tmp" &&
        mkdir -p "$cache/archives/partial" &&
        mount_in rbind "$cache/archives" "$root/var/cache/apt/archives" ||
        { bad "mounting in the chroot"; return; }
    mkdir -p "$root/root/debs" "$root/root/consumer"
    cp "${debs[@]}" "$root/root/debs/"
    cp "$src_root"/tests/install-consumer/{consumer.c,CMakeLists.txt,Makefile} "$root/root/consumer/"
    if in_root sh -c 'apt-get install -y -q /root/debs/*.deb || { apt-get update -q && apt-get install -y -q /root/debs/*.deb; }' \
        > "$work/install.log" 2>&1; then
        ok "apt-get install ./*.deb in a clean $suite chroot ($(in_root dpkg-query -W -f '${Package} ' libstubdm0 libstubdm-dev stubdm-tools libstubdm-ocaml-dev))"
    else
        tail -n 30 "$work/install.log"
        bad "apt-get install of the packages in the chroot"
        return
    fi
    local want version out
    version=$(sed -n 's/^project(libstubdm VERSION \([0-9.]*\).*/\1/p' "$src_root/CMakeLists.txt")
    want="stubdm-ctl (libstubdm) $version"
    out=$(in_root stubdm-ctl --version 2>&1)
    [ "$out" = "$want" ] && ok "stubdm-ctl --version: $out" || bad "stubdm-ctl --version printed '$out', expected '$want'"

    want="libstubdm $version"
    out=$(in_root sh -c 'cd /root/consumer && make -s consumer-pc && ./consumer-pc' 2>&1)
    [ "$out" = "$want" ] && ok "consumer built with pkg-config: $out" || bad "pkg-config consumer: $out"
    out=$(in_root sh -c 'cd /root/consumer && cmake -S . -B b > /dev/null && cmake --build b > /dev/null &&
        b/consumer-shared && b/consumer-static' 2>&1)
    [ "$out" = "$want"$'\n'"$want" ] && ok "consumer built with find_package(libstubdm), shared and static" ||
        bad "find_package consumer: $out"
    out=$(in_root sh -c 'cd /tmp && echo "let () = print_endline (\"libstubdm \" ^ Stubdm.version ())" > v.ml &&
        ocamlfind ocamlopt -package stubdm -linkpkg v.ml -o v && ./v &&
        ocamlfind ocamlc -package stubdm -linkpkg v.ml -o vb && ./vb' 2>&1)
    [ "$out" = "$want"$'\n'"$want" ] && ok "OCaml binding through ocamlfind, native and bytecode" ||
        bad "OCaml consumer: $out"
    # no file of the packages points into a build tree
    out=$(in_root sh -c 'dpkg -L libstubdm0 stubdm-tools libstubdm-ocaml-dev | while read -r f; do
        [ -f "$f" ] && [ ! -L "$f" ] && readelf -d "$f" 2> /dev/null | grep -E "R(UN)?PATH" | sed "s|^|$f: |"; done' 2>&1)
    [ -z "$out" ] && ok "no RPATH/RUNPATH in the installed ELF files" || bad "rpath: $out"

    if in_root env STUBDM_CTL=/usr/bin/stubdm-ctl TMPDIR=/tmp \
        sh /usr/share/doc/stubdm-tools/examples/demo.sh > "$work/demo.log" 2>&1; then
        ok "the simulated-host demo from the installed files ($(grep -c '^.*== ' "$work/demo.log") steps)"
    else
        tail -n 30 "$work/demo.log"
        bad "the simulated-host demo (log: $work/demo.log)"
    fi
    echo "package: install test $((($(t) - t2) / 1000)) s"
}
if [ -n "$base_only" ]; then
    trap - EXIT
    ensure_base
    exit
fi

# ---- 1. build -------------------------------------------------------------
rm -rf "$work/src" "$work/debs"
mkdir -p "$work/src/libstubdm" "$work/debs"
git ls-files -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 cp --parents -t "$work/src/libstubdm" || { bad "copying the tree"; exit 1; }
if (cd "$work/src/libstubdm" &&
    DEB_BUILD_OPTIONS="nocheck parallel=$jobs" dpkg-buildpackage -us -uc -b) \
    > "$work/build.log" 2>&1; then
    mv "$work/src"/*.deb "$work/debs/"
    ok "dpkg-buildpackage: $(cd "$work/debs" && echo *.deb) ($((($(t) - t0) / 1000)) s)"
else
    tail -n 40 "$work/build.log"
    bad "dpkg-buildpackage (log: $work/build.log)"
    echo "package: $pass passed, $fail failed"
    exit 1
fi
# the -dbgsym packages are lintian-checked but not installed
debs=()
for d in "$work/debs"/*.deb; do [[ $d == *-dbgsym_* ]] || debs+=("$d"); done

# ---- 2. lintian, in the background ---------------------------------------
t1=$(t)
(lintian --fail-on error,warning --tag-display-limit 0 "$work/debs"/*.deb \
    > "$work/lintian.log" 2>&1
 echo $? > "$work/lintian.rc"
 echo $((($(t) - t1) / 1000)) > "$work/lintian.secs") &
lintian_pid=$!

# ---- 3. install test in a chroot, meanwhile ------------------------------
install_test
cleanup_chroot
if grep -q " $root[/ ]" /proc/mounts; then bad "something is still mounted under $root"; fi

wait "$lintian_pid"
lintian_pid=
sed 's/^/  /' "$work/lintian.log"
if [ "$(cat "$work/lintian.rc")" = 0 ]; then
    ok "lintian: no error, no warning not overridden ($(grep -c '^[EW]:' "$work/lintian.log") shown; $(cat "$work/lintian.secs") s)"
else
    bad "lintian (rc $(cat "$work/lintian.rc"))"
fi
echo "package: $((($(t) - t0) / 1000)) s in all"
echo "package: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
