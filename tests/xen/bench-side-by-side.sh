#!/bin/bash
# Side by side on the nested Xen (run in dom0 by payload.sh, section "side"):
# the same stubdomain image (kernel, xz ramdisk, memory, cmdline) started
#   libxl: `xl create` of an HVM guest with device_model_stubdomain_override=1
#   libstubdm: `stubdm-ctl spawn` (the library's PV builder) for the paused
#              guest GUEST
# Printed per side: time from the start to device-model "running", and the
# QMP round trip of query-status on one connection (libxl: through its own
# dom0 vchan-socket-proxy socket; libstubdm: over libxenvchan, xt-qmp).
# The image's init runs qemu-system-x86_64 -machine none (xt.dm=qemu) on
# both sides: qemu-xen cannot run in the stubdomain here (docs/real-xen.md).
#   bench-side-by-side.sh GUEST        prints "FIGURE side_..." and
#                                      "SIDE-PASS/SIDE-FAIL what" lines
GUEST=$1
KERNEL=/mnt/host/images/vmlinuz
# gz and 320 MB as section 5a: with the xz image the kernel reaches /init
# ~20 s later, and libxl's fixed 30 s start timeout then fails xl create.
# No "quiet": both consoles show the kernel's boot (xenbus waits included).
RAMDISK=/mnt/host/images/stubdom-rootfs.cpio.gz
MEM=320
CMDLINE="console=hvc0 xt.dm=qemu"
N=${XT_SIDE_N:-20}
now() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }   # ms, no fork
fig() { echo "FIGURE $*"; }

# ---- libxl -------------------------------------------------------------
cat > /tmp/xt-side.cfg <<CFG
name = "xt-side"
type = "hvm"
memory = 64
vcpus = 1
vga = "none"
vnc = 0
sdl = 0
nographic = 1
tsc_mode = "native"
boot = "c"
device_model_version = "qemu-xen"
device_model_stubdomain_override = 1
stubdomain_kernel = "$KERNEL"
stubdomain_ramdisk = "$RAMDISK"
stubdomain_memory = $MEM
stubdomain_cmdline = "$CMDLINE"
CFG
t0=$(now)
xl create /tmp/xt-side.cfg > /tmp/xt-side.log 2>&1 &
xpid=$!
D= SD= trun=
while kill -0 $xpid 2>/dev/null || [ -z "$trun" ]; do
    [ -z "$D" ] && D=$(xl domid xt-side 2>/dev/null)
    [ -n "$D" ] && [ -z "$SD" ] && SD=$(xenstore-read /local/domain/$D/image/device-model-domid 2>/dev/null)
    if [ -n "$SD" ] && [ -z "$trun" ] &&
       [ "$(xenstore-read /local/domain/$SD/device-model/$D/state 2>/dev/null)" = running ]; then
        trun=$(now)
    fi
    kill -0 $xpid 2>/dev/null || break
    sleep 0.1
done
wait $xpid; xrc=$?; tx=$(now)
sed 's/^/  xl| /' /tmp/xt-side.log | tail -n 6
if [ -n "$trun" ]; then
    fig side_libxl_create_to_running_ms $((trun - t0))
    echo "SIDE-PASS libxl running (guest $D, stubdomain $SD)"
else
    echo "SIDE-FAIL libxl: never running (xl create exit $xrc after $((tx - t0)) ms)"
fi
fig side_libxl_xl_create_returned_ms $((tx - t0)) "(exit $xrc)"
S=/var/run/xen/qmp-libxl-$D
if [ -n "$D" ] && [ -S "$S" ]; then
    # one connection through libxl's proxy: greeting, capabilities, N x query-status
    coproc QMP { exec socat - UNIX-CONNECT:"$S"; }
    rtts=
    if read -r -t 20 g <&"${QMP[0]}"; then
        echo '{"execute":"qmp_capabilities"}' >&"${QMP[1]}"; read -r -t 20 r <&"${QMP[0]}"
        for i in $(seq "$N"); do
            t=${EPOCHREALTIME/./}
            echo '{"execute":"query-status"}' >&"${QMP[1]}"
            while read -r -t 20 r <&"${QMP[0]}"; do case $r in *'"return"'*|*'"error"'*) break ;; esac; done
            rtts="$rtts $(( (${EPOCHREALTIME/./} - t) / 1000 ))"
        done
        echo "  libxl proxy query-status: $r"
        m=$(echo $rtts | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)], "min", a[1], "max", a[NR], "n", NR}')
        fig side_libxl_qmp_rtt_query_status_ms "median $m (dom0 vchan-socket-proxy, UNIX socket)"
    else
        echo "SIDE-FAIL libxl QMP: no greeting on $S"
    fi
    kill $QMP_PID 2>/dev/null
else
    echo "SIDE-FAIL libxl QMP: no proxy socket $S"
fi
xl destroy xt-side 2>/dev/null
sleep 2

# ---- libstubdm -------------------------------------------------------------
t0=$(now)
out=$(stubdm-ctl --json spawn --guest "$GUEST" --name xt-side-lib --kernel $KERNEL --ramdisk $RAMDISK \
        --memory $MEM --cmdline "$CMDLINE" --console-backend xenconsoled --timeout 150 \
        -- -xen-domid "$GUEST" -nodefaults -display none 2>/tmp/side-lib.err)
rc=$?; t1=$(now)
echo "  spawn: $out $(tr '\n' ' ' < /tmp/side-lib.err)"
SS=$(echo "$out" | sed -n 's/.*"stubdom":\([0-9]*\).*/\1/p')
if [ $rc = 0 ] && [ -n "$SS" ]; then
    fig side_libstubdm_spawn_to_running_ms $((t1 - t0))
    echo "SIDE-PASS libstubdm running (stubdomain $SS)"
    if xt-qmp "$SS" "$GUEST" -n "$N" query-status > /tmp/side-q.out 2>&1; then
        fig side_libstubdm_qmp_rtt_query_status_ms "$(grep '^rtt query-status' /tmp/side-q.out | cut -d' ' -f3-) (libxenvchan, no dom0 proxy)"
        fig side_libstubdm_qmp_open_ms "$(sed -n 's/^open \([0-9]*\).*/\1/p' /tmp/side-q.out)"
    else
        echo "SIDE-FAIL libstubdm QMP: $(tr '\n' ' ' < /tmp/side-q.out)"
    fi
    stubdm-ctl destroy "$SS" >/dev/null 2>&1 || echo "SIDE-FAIL libstubdm destroy"
else
    echo "SIDE-FAIL libstubdm spawn exit $rc after $((t1 - t0)) ms"
fi
