# shellcheck shell=bash
# Shared settings of the real-Xen harness (tests/xen).  Sourced, not run.
#
# Work dir ($XT_WORK, default /var/tmp/libstubdm-xen), kept between runs:
#   rootfs/        Debian bookworm tree from debootstrap (dom0 userland, the
#                  kernel, Xen, and the donor of every guest binary)
#   out/           xen (uncompressed), vmlinuz, dom0.cpio, fakestub.cpio.gz,
#                  stubdom-rootfs.cpio.xz
#   share/         the 9p share, /mnt/host in dom0 (payload, binaries, out/)
#   serial.log     Xen + dom0 console of the last run
set -euo pipefail

XT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XT_TOP=$(cd "$XT_DIR/../.." && pwd)
XT_WORK=${XT_WORK:-/var/tmp/libstubdm-xen}
XT_ROOTFS=$XT_WORK/rootfs
XT_OUT=$XT_WORK/out
XT_SHARE=$XT_WORK/share
XT_SUITE=bookworm
# Debian packages of the rootfs.  qemu-system-x86 gives the fake stubdomain a
# real QEMU (-machine none); qemu-system-xen is the real qemu-xen for the
# project's stubdomain image.  APT::Install-Recommends is off (see
# docs/real-xen.md: with Recommends qemu-system-xen pulls in ~700 MB).
XT_PKGS=linux-image-amd64,xen-hypervisor-4.17-amd64,xen-utils-4.17,xenstore-utils,busybox,kmod,procps,iproute2,socat,qemu-system-x86,qemu-system-xen,libyajl2

xt_log() { printf '[test-xen %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
xt_die() { xt_log "ERROR: $*"; exit 1; }

# First "deb" URI of the host's apt sources that serves suite $1.
xt_mirror() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" } {
            uri = ""; ok = 0; deb = 0
            for (k = 1; k <= NF; k++) {
                if ($k ~ /^URIs:/)   { split($k, a, /[ \t]+/); uri = a[2] }
                if ($k ~ /^Types:/ && $k ~ /[ \t]deb([ \t]|$)/) deb = 1
                if ($k ~ /^Suites:/) { n = split($k, b, /[ \t]+/)
                                       for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
            }
            if (ok && deb && uri != "") print uri }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" { i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) print $i }' "$f"
    done | cat
} 

xt_kver() {
    local v
    v=$(ls "$XT_ROOTFS/boot" 2>/dev/null | sed -n 's/^vmlinuz-//p' | sort -V | tail -n1)
    [ -n "$v" ] || xt_die "no kernel in $XT_ROOTFS/boot"
    echo "$v"
}

# xt_copy_with_libs DEST FILE... : copy rootfs ELF files and the libraries the
# rootfs' own loader resolves for them, to the same paths under DEST.
xt_copy_with_libs() {
    local dest=$1 f real; shift
    for f in $(for b in "$@"; do
                   echo "$b"
                   chroot "$XT_ROOTFS" ldd "$b" | awk '/=> \//{print $3} /^\t\//{print $1}'
               done | sort -u); do
        real=$(chroot "$XT_ROOTFS" readlink -f "$f")
        mkdir -p "$dest$(dirname "$f")"
        [ -e "$dest$f" ] || cp "$XT_ROOTFS$real" "$dest$f"
    done
}

# xt_modules DEST LISTFILE MODULE... : copy modules + dependencies (insmod
# order) into DEST at /usr/lib/modules/..., append their paths to LISTFILE.
xt_modules() {
    local dest=$1 list=$2 kv ko; shift 2
    kv=$(xt_kver)
    for m in "$@"; do
        chroot "$XT_ROOTFS" /sbin/modprobe -S "$kv" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
    done | sed 's|^/lib/|/usr/lib/|' | awk '!seen[$0]++' | while read -r ko; do
        mkdir -p "$dest$(dirname "$ko")"
        cp "$XT_ROOTFS$ko" "$dest$ko"
        echo "$ko" >> "$list"
    done
}
