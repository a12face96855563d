#!/bin/bash
# libstubdm's real-Xen end-to-end test: boots Xen 4.17 + a Debian dom0 under
# QEMU (TCG), runs tests/xen/payload.sh in dom0 against the project's own
# binaries, prints its results and exits with its status.
#
#   sudo tests/xen/run.sh [--timeout SEC] [--tests "xs wait qmp spawn ..."]
#   sections: xs wait qmp spawn spawndisk crash spawnqemu spawncon bootdisk stubdmd libxl side stubdom ocaml pcihw pci
#   (docs/real-xen.md; CI: XT_IOMMU=1 --tests "qmp spawn spawndisk crash spawncon bootdisk stubdmd libxl ocaml pci")
#   make test-xen
#
# Exit status: 0 all passed; 1 failures (payload's "N passed, N failed");
# 124 the guest hung and was killed at the timeout; 2 setup failed.
# Env: XT_WORK (default /var/tmp/libstubdm-xen, cached between runs),
#      XT_BUILD (project build dir, default $XT_WORK/build), XT_TESTS,
#      XT_SKIP_BUILD=1 (use the binaries already in XT_BUILD),
#      XT_TIMEOUT (default 1200 s), XT_MEM (MB, default 3072),
#      XT_DOM0_MEM (default 1536M), XT_STUB_EXTRA (stubdomain command line
#      words for the real-qemu-xen sections, e.g. xt.malloccheck),
#      XT_CPU (QEMU -cpu, default max), XT_IOMMU=1 (VT-d and an edu device), XT_XEN_EXTRA (more Xen boot options,
#      e.g. xsave=0: see docs/real-xen.md, sporadic segfaults),
#      XT_SPC_MACHINE (spawncon's QEMU -machine: none (default) or pc),
#      XT_LX_CASES (section libxl's failure cases, default "panic dmexit
#      destroy"), XT_LIBXL (section libxl: a patched libxenlight.so.4.17.0 to use
#      instead of examples/libxl-4.17/build.sh's; XEN_TARBALL: its source).
source "$(dirname "$0")/common.sh"
TIMEOUT=${XT_TIMEOUT:-1200}
TESTS=${XT_TESTS:-xs wait qmp spawn}
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) TIMEOUT=$2; shift ;;
        --tests) TESTS=$2; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) xt_die "unknown argument $1" ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "test-xen: must run as root (debootstrap, chroot)" >&2; exit 2; }
exec < /dev/null
T0=$(date +%s)

need=
for p in qemu-system-x86:qemu-system-x86_64 debootstrap:debootstrap cpio:cpio xz-utils:xz \
         cmake:cmake gcc:gcc pkg-config:pkg-config libxen-dev:/usr/include/xenctrl.h \
         libyajl-dev:/usr/include/yajl/yajl_parse.h; do
    c=${p#*:}
    if [ "${c#/}" != "$c" ]; then [ -e "$c" ] || need="$need ${p%%:*}"
    else command -v "$c" >/dev/null || need="$need ${p%%:*}"; fi
done
if [ -n "$need" ]; then
    xt_log "installing host packages:$need"
    { apt-get install -y -q --no-install-recommends $need || { apt-get update -q && apt-get install -y -q --no-install-recommends $need; }; } \
        > "${TMPDIR:-/tmp}/test-xen-apt.log" 2>&1 || { tail "${TMPDIR:-/tmp}/test-xen-apt.log"; exit 2; }
fi

# 1. the project, built on the host (same glibc and Xen 4.17.7 libraries as dom0)
B=${XT_BUILD:-$XT_WORK/build}
mkdir -p "$XT_WORK"
if [ "${XT_SKIP_BUILD:-0}" = 1 ] && [ -x "$B/examples/stubdm-ctl" ]; then
    xt_log "XT_SKIP_BUILD=1: using the existing build in $B"
else
xt_log "building the project in $B"
# section ocaml: the OCaml example program too (dune, make deps)
ocaml_opts=() ocaml_target=()
case " $TESTS " in *" ocaml "*) ocaml_opts=(-DSTUBDM_BUILD_OCAML=ON) ocaml_target=(stubdm_ocaml) ;; esac
{ cmake -S "$XT_TOP" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTUBDM_BUILD_BENCH=OFF "${ocaml_opts[@]}" &&
  cmake --build "$B" -j "$(nproc)" --target stubdm stubdm-ctl stubdm-mockxs-helper stubdmd stubdm-qmp-client "${ocaml_target[@]}"; } \
    > "$XT_WORK/build.log" 2>&1 || { tail -n 30 "$XT_WORK/build.log"; xt_log "project build failed"; exit 2; }
fi
# 2. images (cached)
"$XT_DIR/build-rootfs.sh" || exit 2
"$XT_DIR/build-images.sh" || exit 2

# 3. the share: /mnt/host in dom0
rm -rf "$XT_SHARE"; mkdir -p "$XT_SHARE/bin" "$XT_SHARE/lib" "$XT_SHARE/out" "$XT_SHARE/images"
ln "$XT_OUT/vmlinuz" "$XT_OUT"/stubdom-rootfs.cpio.{gz,xz} "$XT_SHARE/images/" 2>/dev/null ||
    cp "$XT_OUT/vmlinuz" "$XT_OUT"/stubdom-rootfs.cpio.{gz,xz} "$XT_SHARE/images/"
cp "$B/examples/stubdm-ctl" "$B/tests/mock-xenstored/stubdm-mockxs-helper" "$XT_WORK/ioreq-probe" "$XT_SHARE/bin/"
# section stubdmd: the daemon, and a QMP client of its proxy sockets
cp "$B/examples/stubdmd" "$B/tests/support/stubdm-qmp-client" "$XT_SHARE/bin/"
# section ocaml: the xenopsd-shaped example (bindings/ocaml, examples/ocaml)
cp "$B/ocaml/default/examples/ocaml/xenopsd_dm.exe" "$XT_SHARE/bin/" 2>/dev/null || true
cp -a "$B"/lib/libstubdm.so* "$XT_SHARE/lib/"
# section libxl: the patched libxenlight (docs/libxl.md), built from Xen's
# source (cached by build.sh); without it the section fails with the reason
case " $TESTS " in *" libxl "*)
    mkdir -p "$XT_SHARE/libxl"
    if [ -n "${XT_LIBXL:-}" ]; then cp "$XT_LIBXL" "$XT_SHARE/libxl/libxenlight.so.4.17.0"
    elif ! "$XT_TOP/examples/libxl-4.17/build.sh" --out "$XT_SHARE/libxl" > "$XT_WORK/libxl-build.log" 2>&1; then
        tail -n 5 "$XT_WORK/libxl-build.log" > "$XT_SHARE/libxl/missing"
        xt_log "section libxl: no patched libxenlight: $(tail -n 1 "$XT_WORK/libxl-build.log")"
    fi ;;
esac
gcc -O2 -Wall -std=gnu11 -I"$XT_TOP/include" -o "$XT_SHARE/bin/xt-qmp" "$XT_DIR/xt-qmp.c" \
    -L"$B/lib" -lstubdm -Wl,-rpath,/mnt/host/lib || { xt_log "building xt-qmp failed"; exit 2; }
gcc -O2 -Wall -o "$XT_SHARE/bin/xt-unpause" "$XT_DIR/xt-unpause.c" -lxenctrl \
    || { xt_log "building xt-unpause failed"; exit 2; }
gcc -O2 -Wall -o "$XT_SHARE/bin/xt-memcheck" "$XT_DIR/xt-memcheck.c" \
    || { xt_log "building xt-memcheck failed"; exit 2; }
cp "$XT_TOP/tests/mock-xenstored/conformance.sh" "$XT_DIR"/bench-side-by-side.sh "$XT_SHARE/bin/" 2>/dev/null || true
cp "$XT_DIR/mk-bootsector.sh" "$XT_SHARE/bin/"
# section pci's boot sector (pci-probe.s), assembled here: dom0 has no
# toolchain
as --32 -o "$XT_WORK/pci-probe.o" "$XT_DIR/pci-probe.s" &&
    ld -m elf_i386 -Ttext 0x7c00 --oformat binary -e _start -o "$XT_WORK/pci-probe.bin" "$XT_WORK/pci-probe.o" ||
    xt_die "assembling pci-probe.s"
n=$(stat -c %s "$XT_WORK/pci-probe.bin")
[ "$n" -le 510 ] || xt_die "pci-probe.s: $n bytes, more than a boot sector's 510"
{ cat "$XT_WORK/pci-probe.bin"; head -c $((510 - n)) /dev/zero; printf '\125\252'; } > "$XT_SHARE/bin/pci-probe.mbr"
install -m 755 "$XT_DIR/qmp-rtt.py" "$XT_SHARE/bin/"
install -m 755 "$XT_DIR/payload.sh" "$XT_SHARE/payload"
echo "$TESTS" > "$XT_SHARE/tests"
echo "${XT_STUB_EXTRA:-}" > "$XT_SHARE/stub-extra"
echo "${XT_LX_CASES:-}" > "$XT_SHARE/lx-cases"  # section libxl's failure cases
echo "${XT_SPC_MACHINE:-none}" > "$XT_SHARE/spc-machine"  # spawncon's QEMU machine
xt_log "images and binaries ready after $(( $(date +%s) - T0 ))s; tests: $TESTS"

# 4. boot.  TCG: this host's /dev/kvm is kvm-pvm (no VMX/SVM) and cannot run
# Xen.  smap=0: without it Xen crashes dom0 at its first exception under TCG.
# No commas in the dom0 command line: QEMU splits -initrd at commas.
LOG=$XT_WORK/serial.log
rm -f "$LOG" "$XT_WORK/qemu.pid"
XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=${XT_DOM0_MEM:-1536M},max:${XT_DOM0_MEM:-1536M} dom0_max_vcpus=2 loglvl=all guest_loglvl=all smap=0${XT_XEN_EXTRA:+ $XT_XEN_EXTRA}"
DOM0_ARGS="console=hvc0 earlyprintk=xen rdinit=/init"
XT_CPU=${XT_CPU:-max}
# XT_IOMMU=1 (issue 18, PCI passthrough): the nested machine gets Intel's
# IOMMU with interrupt remapping (which needs the split irqchip) and QEMU's
# edu device to pass through; Xen logs its IOMMU set-up
MACHINE=q35 IOMMU_DEV=()
if [ "${XT_IOMMU:-0}" = 1 ]; then
    MACHINE=q35,kernel-irqchip=split
    IOMMU_DEV=(-device intel-iommu,intremap=on,caching-mode=on -device edu)
    XEN_ARGS="$XEN_ARGS iommu=verbose"
fi
B0=$(date +%s)
xt_log "booting Xen under QEMU TCG (serial: $LOG, timeout ${TIMEOUT}s)"
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi,tb-size=512 -cpu "$XT_CPU" \
    -machine "$MACHINE" "${IOMMU_DEV[@]}" -smp 2 -m "${XT_MEM:-3072}" -nodefaults -display none -no-reboot \
    -kernel "$XT_OUT/xen" -append "$XEN_ARGS" \
    -initrd "$XT_OUT/vmlinuz $DOM0_ARGS,$XT_OUT/dom0.cpio" \
    -virtfs "local,path=$XT_SHARE,mount_tag=xtshare,security_model=none,id=xtshare" \
    -serial "file:$LOG" -pidfile "$XT_WORK/qemu.pid" &
QPID=$!
trap 'kill $QPID 2>/dev/null' INT TERM EXIT
ready=
while kill -0 $QPID 2>/dev/null; do
    sleep 1
    if [ -z "$ready" ] && grep -q XT-DOM0-READY "$LOG" 2>/dev/null; then
        ready=$(( $(date +%s) - B0 )); xt_log "dom0 ready after ${ready}s"
    fi
done
set +e; wait $QPID; qrc=$?; set -e
trap - INT TERM EXIT
END=$(date +%s)
xt_log "QEMU exited ($qrc) after $((END - B0))s; total $((END - T0))s"
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
    xt_log "TIMEOUT: the nested guest hung and was killed after ${TIMEOUT}s; last serial lines:"
    tail -n 40 "$LOG" >&2
    [ -s "$XT_SHARE/out/payload.log" ] && { echo "--- payload log so far:"; cat "$XT_SHARE/out/payload.log"; }
    exit 124
fi
if [ ! -r "$XT_SHARE/out/rc" ]; then
    xt_log "the payload did not finish; last serial lines:"; tail -n 40 "$LOG" >&2; exit 125
fi
rc=$(cat "$XT_SHARE/out/rc")
xt_log "payload exit status $rc; logs: $XT_SHARE/out/ (payload.log, xen-logs/, xl-dmesg.log)"
grep -E '^(PASS|FAIL|SKIP|RESULT|FIGURE)' "$XT_SHARE/out/payload.log" || true
tail -n 1 "$XT_SHARE/out/payload.log"
[ "$rc" = 0 ] && exit 0 || exit 1
