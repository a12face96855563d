#!/bin/bash
# Build (once) the Debian bookworm tree for the real-Xen harness:
# $XT_WORK/rootfs.  debootstrap --variant=minbase from the host's apt mirror,
# then bookworm-updates/-security and dist-upgrade so Xen and its libraries
# are 4.17.7 like the host's libxen-dev (binaries built on the host then run
# in dom0 unchanged).  Kept between runs; delete it to rebuild.
source "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || xt_die "must run as root"

if [ -e "$XT_ROOTFS/.xt-complete" ]; then
    xt_log "rootfs: reusing $XT_ROOTFS"; exit 0
fi
MIRROR=$(xt_mirror $XT_SUITE | head -n1)
SEC=$(xt_mirror $XT_SUITE-security | head -n1)
[ -n "$MIRROR" ] || xt_die "no apt source for $XT_SUITE on the host"
mkdir -p "$XT_WORK"
rm -rf "$XT_ROOTFS"
xt_log "rootfs: debootstrap $XT_SUITE from $MIRROR (log $XT_WORK/debootstrap.log)"
# --include only the base; the rest goes in with apt so Recommends stay out.
debootstrap --variant=minbase --include=busybox,kmod "$XT_SUITE" "$XT_ROOTFS" "$MIRROR" \
    > "$XT_WORK/debootstrap.log" 2>&1 || { tail -n 30 "$XT_WORK/debootstrap.log"; xt_die "debootstrap failed"; }
{
    echo "deb $MIRROR $XT_SUITE main"
    echo "deb $MIRROR $XT_SUITE-updates main"
    [ -n "$SEC" ] && echo "deb $SEC $XT_SUITE-security main"
} > "$XT_ROOTFS/etc/apt/sources.list"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$XT_ROOTFS/etc/apt/apt.conf.d/90xt-no-recommends"
# our own /init is booted, never Debian's initrd
mkdir -p "$XT_ROOTFS/etc/initramfs-tools"
echo 'update_initramfs=no' > "$XT_ROOTFS/etc/initramfs-tools/update-initramfs.conf"

mount -t proc proc "$XT_ROOTFS/proc"
trap 'umount "$XT_ROOTFS/proc" 2>/dev/null || true' EXIT
apt_in() { chroot "$XT_ROOTFS" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -y -q \
               -o Dpkg::Options::=--force-confold "$@" < /dev/null; }
xt_log "rootfs: apt-get update, dist-upgrade, install ${XT_PKGS//,/ }"
{ apt_in update && apt_in dist-upgrade && apt_in install ${XT_PKGS//,/ }; } \
    > "$XT_WORK/apt.log" 2>&1 || { tail -n 30 "$XT_WORK/apt.log"; xt_die "apt in the rootfs failed"; }
KV=$(xt_kver)
for old in $(ls "$XT_ROOTFS/boot" | sed -n 's/^vmlinuz-//p'); do
    [ "$old" = "$KV" ] || apt_in purge "linux-image-$old" >> "$XT_WORK/apt.log" 2>&1
done
apt_in clean >/dev/null
umount "$XT_ROOTFS/proc"; trap - EXIT
touch "$XT_ROOTFS/.xt-complete"
xt_log "rootfs: kernel $KV, $(chroot "$XT_ROOTFS" dpkg-query -W -f '${Package}=${Version} ' xen-utils-4.17 qemu-system-xen), $(du -sh "$XT_ROOTFS" | cut -f1)"
