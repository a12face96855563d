#!/bin/bash
# Build Xen 4.17.7's libxenlight with the patches of this directory applied
# (the series file gives their order): a libxenlight.so.4.17.0 that a
# Debian 12 dom0 can use in place of its own, linked with libstubdm.
#
#   examples/libxl-4.17/build.sh [--stubdm-build DIR] [--out DIR]
#
#   --stubdm-build DIR  a configured and built CMake build directory of
#                       this project, installed into a staging root for
#                       libxl's build (default: build one, Release, here)
#   --out DIR           where libxenlight.so.4.17.0 and its symlinks go
#                       (default build/libxl-4.17)
#
# The source is XEN_TARBALL (default ../shared/xen/xen-4.17.7.tar.xz next
# to the project), checked against its sha256.  Without it, Debian's
# source of 4.17.5+72 (bookworm's archive, sha256-checked, kept in the
# cache) brought to 4.17.7 by debian-orig-to-4.17.7.diff: every file the
# build reads is then 4.17.7's (XEN_TARBALL=debian: that one anyway).
# Configured with Debian's paths (docs/libxl.md), only tools/libs built.  The result is cached under
# STUBDM_LIBXL_CACHE (default ~/.cache/libstubdm) by the hash of the
# tarball, the patches, this script and the library's public header and
# symbol map: an unchanged input set is not built again.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tarball=${XEN_TARBALL:-$root/../shared/xen/xen-4.17.7.tar.xz}
tarball_sha256=df6da32a8a00bd955443c5b4d34b601702eccd052b575a0ae44f27ca9b0a0f17
tarball_dir=xen-4.17.7
# the fallback: Debian's orig tarball, its sha256 from the .dsc
debian_url=${XEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/x/xen/xen_4.17.5+72-g01140da4e8.orig.tar.xz
debian_sha256=53922f4d0a02c577f2ea9d63f65989cd88715779eebeed879ca1d314103ee06e
debian_dir=xen-4.17.5+72-g01140da4e8
upgrade=
cache_root=${STUBDM_LIBXL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libstubdm}
out=$root/build/libxl-4.17
stubdm_build=
jobs=${JOBS:-$(nproc 2> /dev/null || echo 2)}

die() { echo "libxl-4.17/build.sh: $*" >&2; exit 1; }
say() { echo "libxl-4.17: $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
    --stubdm-build) stubdm_build=$(cd "${2:?}" && pwd); shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (--help)" ;;
    esac
done

# Debian's archive into the cache, once (checked before it is kept).
fetch_debian_source() {
    local f=$cache_root/${debian_url##*/}
    if ! echo "$debian_sha256  $f" | sha256sum --quiet -c - > /dev/null 2>&1; then
        say "fetching Debian's source $debian_url"
        mkdir -p "$cache_root"
        curl -fsSL --retry 3 -o "$f.part" "$debian_url" ||
            die "fetching $debian_url failed (or set XEN_TARBALL)"
        echo "$debian_sha256  $f.part" | sha256sum --quiet -c - > /dev/null 2>&1 ||
            { rm -f "$f.part"; die "$debian_url: sha256 differs from its .dsc's"; }
        mv "$f.part" "$f"
    fi
    tarball=$f tarball_sha256=$debian_sha256 tarball_dir=$debian_dir
    upgrade=$here/debian-orig-to-4.17.7.diff
}

if [ "${XEN_TARBALL:-}" = debian ] ||
    { [ -z "${XEN_TARBALL:-}" ] && [ ! -r "$tarball" ]; }; then
    fetch_debian_source
fi
[ -r "$tarball" ] || die "no Xen source at $tarball (XEN_TARBALL)"
echo "$tarball_sha256  $tarball" | sha256sum --quiet -c - > /dev/null 2>&1 ||
    die "$tarball is not the archive expected (sha256 differs)"
mapfile -t patches < <(grep -v '^\s*\(#\|$\)' "$here/series")
for p in "${patches[@]}"; do
    [ -r "$here/$p" ] || die "series names $p, which is missing"
done

# Everything that changes the result, hashed: an entry per input.
key=$( {
    echo "$tarball_sha256"
    for p in "${patches[@]}"; do sha256sum < "$here/$p"; done
    sha256sum < "$0"
    [ -z "$upgrade" ] || sha256sum < "$upgrade"
    sha256sum < "$root/include/libstubdm.h"
    sha256sum < "$root/lib/libstubdm.map"
} | sha256sum | cut -c1-16)
cached=$cache_root/libxl-4.17.7-$key

install_out() {
    mkdir -p "$out"
    cp -f "$cached/libxenlight.so.4.17.0" "$out/"
    ln -sf libxenlight.so.4.17.0 "$out/libxenlight.so.4.17"
    ln -sf libxenlight.so.4.17 "$out/libxenlight.so"
    say "$out/libxenlight.so.4.17.0 (${#patches[@]} patches, cache key $key)"
}

if [ -r "$cached/libxenlight.so.4.17.0" ]; then
    install_out
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/libxl-4.17.XXXXXX")
trap 'rm -rf "$work"' EXIT

# libstubdm, installed into a staging root with the prefix its build was
# configured with (the one its .pc names), read by pkg-config through its
# sysroot.  Built here: Debian's layout.
if [ -z "$stubdm_build" ]; then
    stubdm_build=$work/stubdm-build
    say "building libstubdm (Release) in $stubdm_build"
    cmake -S "$root" -B "$stubdm_build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib/x86_64-linux-gnu \
        -DSTUBDM_BUILD_TESTS=OFF -DSTUBDM_BUILD_BENCH=OFF \
        -DSTUBDM_BUILD_EXAMPLES=OFF > "$work/stubdm-cmake.log" ||
        { cat "$work/stubdm-cmake.log" >&2; die "configuring libstubdm"; }
    cmake --build "$stubdm_build" -j "$jobs" > "$work/stubdm-build.log" ||
        { tail -n 30 "$work/stubdm-build.log" >&2; die "building libstubdm"; }
fi
stage=$work/stage
DESTDIR=$stage cmake --install "$stubdm_build" > /dev/null ||
    die "installing libstubdm from $stubdm_build into $stage"
pcdir=$(dirname "$(find "$stage" -name libstubdm.pc | head -n 1)")
[ -d "$pcdir" ] && [ "$pcdir" != . ] || die "no libstubdm.pc under $stage"

say "unpacking $(basename "$tarball")"
tar -C "$work" -xJf "$tarball"
src=$work/$tarball_dir
if [ -n "$upgrade" ]; then
    patch -d "$src" -p1 --batch --forward --quiet < "$upgrade" ||
        die "${upgrade##*/} does not apply to Debian's source"
fi
for p in "${patches[@]}"; do
    patch -d "$src" -p1 --batch --forward --quiet < "$here/$p" ||
        die "patch $p does not apply"
done

say "configuring (Debian's paths) and building tools/libs with ${#patches[@]} patches"
(
    cd "$src"
    ./configure --prefix=/usr --libdir=/usr/lib/x86_64-linux-gnu \
        --with-libexec-leaf-dir=xen-4.17 \
        --with-system-qemu=/usr/libexec/xen-qemu-system-i386 \
        --with-system-seabios=/usr/share/seabios/bios-256k.bin \
        --with-system-ovmf=/usr/share/ovmf/OVMF.fd \
        --disable-xen --disable-docs --disable-stubdom --disable-ocamltools \
        --disable-golang --disable-pvshim --disable-qemu-traditional \
        --disable-rombios --disable-ipxe --disable-monitors --disable-xsmpolicy
    make build-tools-public-headers
    # libxl's test programs link libxenlight, which needs libstubdm.so.0
    # from the staging root.
    PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$pcdir \
        make -j "$jobs" -C tools/libs \
        APPEND_LDFLAGS="-Wl,-rpath-link=$stage$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir libstubdm)"
) > "$work/xen-build.log" 2>&1 ||
    { tail -n 40 "$work/xen-build.log" >&2; die "building libxenlight failed (log above)"; }

lib=$src/tools/libs/light/libxenlight.so.4.17.0
[ -r "$lib" ] || die "the build made no libxenlight.so.4.17.0"
if [ "${#patches[@]}" -gt 0 ]; then
    readelf -d "$lib" | grep -q 'NEEDED.*libstubdm\.so' ||
        die "the patched libxenlight does not link libstubdm"
fi
mkdir -p "$cached.tmp"
cp "$lib" "$cached.tmp/"
cp "$work/xen-build.log" "$cached.tmp/build.log"
rm -rf "$cached"
mv "$cached.tmp" "$cached"
install_out
