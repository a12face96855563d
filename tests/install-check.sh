#!/usr/bin/env bash
# Install libstubdm into a temporary prefix and use it the three ways
# docs/building.md documents:
#   1. pkg-config, shared and static;
#   2. find_package(libstubdm) + libstubdm::stubdm / libstubdm::stubdm_static;
#   3. add_subdirectory() of the source tree (tests and examples stay off).
# Each consumer must run and print the library version.
#
# usage: tests/install-check.sh [SOURCE_DIR [WORK_DIR]]
set -euo pipefail

src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=${2:-}
if [ -z "$work" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix
consumer_src=$src/tests/install-consumer
jobs=$(nproc 2>/dev/null || echo 2)
cc=${CC:-cc}
version=$(sed -n 's/^project(libstubdm VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")

step() { echo; echo "== install-check: $*"; }
die() { echo "install-check: FAIL: $*" >&2; exit 1; }
expect_version() { # command...
    local out
    out=$("$@") || die "$* exited $?"
    [ "$out" = "libstubdm $version" ] || die "$* printed '$out', expected 'libstubdm $version'"
    echo "$* -> $out"
}
lib_only=(-DSTUBDM_BUILD_TESTS=OFF -DSTUBDM_BUILD_EXAMPLES=OFF
          -DSTUBDM_BUILD_BENCH=OFF -DSTUBDM_BUILD_FUZZ=OFF -DSTUBDM_SANITIZE=OFF)

step "build and install into $prefix"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$prefix" "${lib_only[@]}" > "$work/configure.log" ||
    { cat "$work/configure.log"; die "configure failed"; }
cmake --build "$work/build" -j "$jobs"
cmake --install "$work/build" > "$work/install.log"
cat "$work/install.log"

pc=$(find "$prefix" -name libstubdm.pc -print -quit)
[ -n "$pc" ] || die "libstubdm.pc not installed"
libdir=$(dirname "$(dirname "$pc")")
for f in "$prefix/include/libstubdm.h" "$libdir/libstubdm.so.0" \
         "$libdir/libstubdm.so" "$libdir/libstubdm.a" \
         "$libdir/cmake/libstubdm/libstubdmConfig.cmake" \
         "$libdir/cmake/libstubdm/libstubdmConfigVersion.cmake" \
         "$libdir/cmake/libstubdm/libstubdmTargets.cmake"; do
    [ -e "$f" ] || die "not installed: $f"
done
if grep -q 'stubdm-mock-xenstored\|/bin/' "$work/install.log"; then
    die "a library-only build installed programs"
fi

step "pkg-config"
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
pkg-config --exists --print-errors libstubdm || die "pkg-config cannot resolve libstubdm"
[ "$(pkg-config --modversion libstubdm)" = "$version" ] || die "pkg-config version mismatch"
cflags=$(pkg-config --cflags libstubdm)
libs=$(pkg-config --libs libstubdm)
echo "cflags: $cflags"
echo "libs:   $libs"
case " $cflags " in *" -D"*) die "Cflags leaks a -D flag: $cflags" ;; esac
# shellcheck disable=SC2086
"$cc" -std=c99 -Wall -Wextra -Werror -o "$work/pc-shared" \
    "$consumer_src/consumer.c" $cflags $libs -Wl,-rpath,"$libdir"
expect_version "$work/pc-shared"
readelf -d "$work/pc-shared" | grep -q 'NEEDED.*\[libstubdm\.so\.0\]' ||
    die "pc-shared does not need libstubdm.so.0"

# Static: the archive, then what --static adds (Requires.private).
static_libs=$(pkg-config --static --libs libstubdm | sed 's/\(^\| \)-lstubdm\( \|$\)/ /')
echo "static: $libdir/libstubdm.a $static_libs"
# shellcheck disable=SC2086
"$cc" -std=c99 -Wall -Wextra -Werror -o "$work/pc-static" \
    "$consumer_src/consumer.c" $cflags "$libdir/libstubdm.a" $static_libs
expect_version "$work/pc-static"
if readelf -d "$work/pc-static" | grep -q 'libstubdm'; then
    die "pc-static is dynamically linked to libstubdm"
fi

step "find_package(libstubdm)"
cmake -S "$consumer_src" -B "$work/consumer-pkg" -DCMAKE_PREFIX_PATH="$prefix" \
      > "$work/consumer-pkg.log" || { cat "$work/consumer-pkg.log"; die "find_package consumer: configure failed"; }
cmake --build "$work/consumer-pkg" -j "$jobs"
expect_version "$work/consumer-pkg/consumer-shared"
expect_version "$work/consumer-pkg/consumer-static"

# A request for a later major version must be refused.
if cmake -S "$consumer_src" -B "$work/consumer-v1" -DCMAKE_PREFIX_PATH="$prefix" \
         -DSTUBDM_WANT_VERSION=1.0 > "$work/consumer-v1.log" 2>&1; then
    die "find_package(libstubdm 1.0) accepted version $version"
fi

step "add_subdirectory()"
cmake -S "$consumer_src" -B "$work/consumer-sub" -DSTUBDM_SOURCE_DIR="$src" \
      > "$work/consumer-sub.log" || { cat "$work/consumer-sub.log"; die "add_subdirectory consumer: configure failed"; }
cmake --build "$work/consumer-sub" -j "$jobs"
expect_version "$work/consumer-sub/consumer-shared"
expect_version "$work/consumer-sub/consumer-static"

echo
echo "install-check: OK"
