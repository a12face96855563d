#!/bin/bash
# Build the boot artefacts from $XT_WORK/rootfs (build-rootfs.sh), each only
# when one of its inputs is newer:
#   out/xen                 uncompressed multiboot Xen (QEMU -kernel cannot
#                           load Debian's xen-*.gz)
#   out/vmlinuz             the Debian kernel: dom0, stubdomain and test domUs
#   out/stubdom-rootfs.cpio.{gz,xz}
#                           the project's stubdomain image (tests/xen/stubdom):
#                           busybox, xenstore-*, vchan-socket-proxy, qemu-xen
#                           (xen-qemu-system-i386), qemu-system-x86_64,
#                           ioreq-probe, Xen frontend modules, /init
#   out/dom0.cpio           the rootfs (no docs/locales/apt lists, ~30
#                           modules) + /init = tests/xen/dom0-init.sh.
#                           (The guest images reach dom0 through the 9p
#                           share, /mnt/host/images, not the cpio: the
#                           initramfs tmpfs is capped at half of dom0's RAM,
#                           and a full one ends in "Initramfs unpacking
#                           failed: write error" with files missing.)  Uncompressed
#                           on purpose: gunzip under TCG is slower than
#                           QEMU loading more bytes.
source "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || xt_die "must run as root"
[ -e "$XT_ROOTFS/.xt-complete" ] || xt_die "no rootfs: run build-rootfs.sh"
KV=$(xt_kver)
mkdir -p "$XT_OUT"

# newer TARGET INPUT... : true if TARGET is missing or older than an input
newer() { local t=$1; shift; [ -e "$t" ] || return 0
          for i in "$@"; do [ "$i" -nt "$t" ] && return 0; done; return 1; }

XENGZ=$(ls "$XT_ROOTFS"/boot/xen-4.17-amd64.gz 2>/dev/null || ls "$XT_ROOTFS"/boot/xen-*.gz | sort -V | tail -n1)
newer "$XT_OUT/xen" "$XENGZ" && zcat "$XENGZ" > "$XT_OUT/xen"
newer "$XT_OUT/vmlinuz" "$XT_ROOTFS/boot/vmlinuz-$KV" && cp "$XT_ROOTFS/boot/vmlinuz-$KV" "$XT_OUT/vmlinuz"

# ---- the stubdomain image ------------------------------------------------
S=$XT_DIR/stubdom
if newer "$XT_OUT/stubdom-rootfs.cpio.xz" "$S/init" "$S/ioreq-probe.c" "$S/privcmd-shim.c" "$XT_DIR/xt-memcheck.c" "$S/xt-hvc.c" "$XT_ROOTFS/.xt-complete" "$0"; then
    D=$XT_WORK/stubdom-root
    rm -rf "$D"; mkdir -p "$D"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,var,usr/lib,usr/lib64,usr/local/bin}
    ln -s usr/lib "$D/lib"; ln -s usr/lib64 "$D/lib64"
    # ioreq-probe: built on the host against the same 4.17.7 libraries
    gcc -O2 -Wall -o "$XT_WORK/ioreq-probe" "$S/ioreq-probe.c" -lxendevicemodel -lxenforeignmemory \
        || xt_die "building ioreq-probe (needs libxen-dev)"
    install -m 755 "$XT_WORK/ioreq-probe" "$XT_ROOTFS/usr/local/bin/ioreq-probe"
    gcc -O2 -Wall -o "$XT_WORK/xt-memcheck" "$XT_DIR/xt-memcheck.c" || xt_die "building xt-memcheck"
    install -m 755 "$XT_WORK/xt-memcheck" "$XT_ROOTFS/usr/local/bin/xt-memcheck"
    # console-frontend helpers for library-served consoles (xt.dm=qemu-argv)
    gcc -O2 -Wall -Wextra -o "$XT_WORK/xt-hvc" "$S/xt-hvc.c" -lxenstore \
        || xt_die "building xt-hvc"
    install -m 755 "$XT_WORK/xt-hvc" "$XT_ROOTFS/usr/local/bin/xt-hvc"
    # LD_PRELOAD for qemu-xen: answers libxendevicemodel's DM_OP probe,
    # which Linux's restricted privcmd refuses (privcmd-shim.c)
    gcc -O2 -Wall -shared -fPIC -o "$XT_WORK/privcmd-shim.so" "$S/privcmd-shim.c" -ldl \
        || xt_die "building privcmd-shim.so"
    mkdir -p "$D/usr/local/lib"
    install -m 755 "$XT_WORK/privcmd-shim.so" "$D/usr/local/lib/privcmd-shim.so"
    xt_copy_with_libs "$D" /usr/bin/busybox /usr/libexec/xen-qemu-system-i386 /usr/bin/qemu-system-x86_64 \
        /usr/bin/xenstore-read /usr/bin/xenstore-write /usr/bin/xenstore-list /usr/bin/xenstore-ls \
        /usr/lib/xen-4.17/bin/vchan-socket-proxy /usr/local/bin/ioreq-probe /usr/local/bin/xt-memcheck \
        /usr/local/bin/xt-hvc \
        /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so /usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0
    # (Debian builds TCG as a module: without accel-tcg-x86_64.so
    # qemu-system-x86_64 dies "fatal: could not load module for type
    # 'tcg-accel-ops'")
    [ -e "$D/bin/busybox" ] || ln -s /usr/bin/busybox "$D/bin/busybox"
    # option ROMs qemu-xen may load for an HVM guest's VGA
    mkdir -p "$D/usr/share/seabios"
    cp -L "$XT_ROOTFS"/usr/share/seabios/vgabios-{stdvga,cirrus}.bin "$D/usr/share/seabios/" 2>/dev/null || true
    # qemu-system-x86_64 -machine pc (xt.dm=qemu-argv): SeaBIOS, and sgabios
    # so that -device sga puts SeaBIOS's screen on the serial (console 3)
    cp -L "$XT_ROOTFS"/usr/share/seabios/bios-256k.bin "$D/usr/share/seabios/"
    mkdir -p "$D/usr/share/qemu"
    cp -L "$XT_ROOTFS"/usr/share/qemu/sgabios.bin "$D/usr/share/qemu/"
    : > "$D/etc/xt-modules"
    xt_modules "$D" "$D/etc/xt-modules" xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkfront xen-netfront \
        xen-pcifront
    install -m 755 "$S/init" "$D/init"
    (cd "$D" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$XT_OUT/stubdom-rootfs.cpio"
    gzip -6 -c "$XT_OUT/stubdom-rootfs.cpio" > "$XT_OUT/stubdom-rootfs.cpio.gz"
    # the kernel's xz decoder: crc32 check and a small dictionary only
    xz -T2 --check=crc32 --lzma2=preset=6,dict=1MiB -c "$XT_OUT/stubdom-rootfs.cpio" > "$XT_OUT/stubdom-rootfs.cpio.xz"
    xt_log "stubdom image: $(du -sh "$D" | cut -f1) unpacked, $(du -h "$XT_OUT/stubdom-rootfs.cpio.gz" | cut -f1) gz, $(du -h "$XT_OUT/stubdom-rootfs.cpio.xz" | cut -f1) xz"
    rm -f "$XT_OUT/stubdom-rootfs.cpio"
fi

# ---- dom0 ---------------------------------------------------------------
if newer "$XT_OUT/dom0.cpio" "$XT_DIR/dom0-init.sh" "$XT_ROOTFS/.xt-complete" "$0"; then
    ST=$XT_WORK/dom0-overlay
    rm -rf "$ST"; mkdir -p "$ST/usr/lib/modules/$KV" "$ST/opt/xt"
    : > "$ST/etc-modules"
    # (paths are rewritten to /usr/lib: a ./lib directory in a later cpio
    # archive would replace the merged-/usr /lib symlink -> no ld.so)
    xt_modules "$ST" "$ST/etc-modules" xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd \
        xen-blkback xen-netback xen-pciback 9p 9pnet_virtio virtio_pci loop bridge
    rm -f "$ST/etc-modules"
    cp -a "$XT_ROOTFS/usr/lib/modules/$KV"/modules.* "$ST/usr/lib/modules/$KV/"
    install -m 755 "$XT_DIR/dom0-init.sh" "$ST/init"
    mkdir -p "$XT_WORK/empty"; (cd "$XT_WORK/empty" && mkdir -p proc sys dev run tmp boot && chmod 1777 tmp)
    (
        cd "$XT_ROOTFS"
        find . \( -path ./usr/lib/modules -o -path ./boot -o -path ./usr/share/doc \
                  -o -path ./usr/share/man -o -path ./usr/share/locale -o -path ./usr/share/info \
                  -o -path ./var/cache/apt -o -path ./var/lib/apt/lists -o -path ./proc \
                  -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
                  -o -path ./usr/bin/qemu-system-x86_64 \) -prune -o -print | cpio -o -H newc --quiet
        cd "$XT_WORK/empty" && find . | cpio -o -H newc --quiet
        cd "$ST" && find . | cpio -o -H newc --quiet
    ) > "$XT_OUT/dom0.cpio"
    xt_log "dom0.cpio: $(du -h "$XT_OUT/dom0.cpio" | cut -f1)"
fi
