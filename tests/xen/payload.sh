#!/bin/sh
# The real-Xen test payload, run in the nested dom0 as /mnt/host/payload by
# dom0-init.sh (see run.sh).  Uses the project's binaries from /mnt/host/bin
# and /mnt/host/lib (built on the host) and the project's stubdomain image
# in /mnt/host/images.  Sections (from /mnt/host/tests): xs wait qmp spawn spawndisk crash spawncon spawnqemu bootdisk stubdmd libxl side stubdom ocaml pcihw pci
# Output: "PASS name" / "FAIL name: reason" per check, "FIGURE name value"
# for measurements, "INFO ..." for observations, and at the end
# "N passed, N failed".  Exit status: 0 if nothing failed, else 1.
export PATH=/mnt/host/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
export LD_LIBRARY_PATH=/mnt/host/lib
TESTS=$(cat /mnt/host/tests 2>/dev/null || echo "xs wait qmp")
RAMDISK=${XT_RAMDISK:-/mnt/host/images/stubdom-rootfs.cpio.gz}
# extra stubdomain kernel command line words for the real-qemu-xen sections
# (spawnqemu, stubdom), e.g. "xt.malloccheck xt.qemutrace=xen_*" (run.sh:
# XT_STUB_EXTRA)
STUB_EXTRA=$(cat /mnt/host/stub-extra 2>/dev/null)
STUBMEM=${XT_STUBMEM:-320}
OUT=/mnt/host/out
P=0 F=0
pass() { P=$((P + 1)); echo "PASS $1"; }
fail() { F=$((F + 1)); echo "FAIL $1: $2"; }
fig()  { echo "FIGURE $*"; }
info() { echo "INFO $*"; }
ms()   { date +%s%3N; }
has()  { case " $TESTS " in *" $1 "*) return 0 ;; esac; return 1; }
conlog() { echo "/var/log/xen/console/guest-$1.log"; }
# wait_file_grep FILE PATTERN SECONDS
wait_grep() { i=0; while [ $i -lt $(($3 * 5)) ]; do grep -aq "$2" "$1" 2>/dev/null && return 0; sleep 0.2; i=$((i + 1)); done; return 1; }
T0=$(date +%s%3N)
section() { echo; echo "=== $* [payload +$(( ($(date +%s%3N) - T0) / 1000 )) s]"; }

info "xl: $(xl info | sed -n 's/^xen_version *: //p') $(xl info | sed -n 's/^xen_commandline *: //p')"
XS_SOCK=
for s in /run/xenstored/socket /var/run/xenstored/socket; do [ -S $s ] && { XS_SOCK=$s; break; }; done
XSD=$(ps -eo comm | grep -m1 xenstored)
info "xenstored: $XSD, socket ${XS_SOCK:-none}"

# The guest domain the fake stubdomains serve: a real (paused) PV domain.
GUEST=
mk_guest() {
    cat > /tmp/xt-guest.cfg <<CFG
name = "xt-guest"
type = "pv"
kernel = "/mnt/host/images/vmlinuz"
memory = 96
vcpus = 1
CFG
    xl create -p /tmp/xt-guest.cfg > /tmp/xt-guest.log 2>&1 && GUEST=$(xl domid xt-guest)
    [ -n "$GUEST" ] || { cat /tmp/xt-guest.log; GUEST=999; info "no guest domain; using the unused domid $GUEST"; }
}

# The HVM guest the library's spawn serves (section spawn, side): Xen makes a
# domain the device model of HVM guests only (XEN_DOMCTL_set_target on a PV
# target: EOPNOTSUPP), so the PV xt-guest cannot be used.  Created paused
# with libxl's dom0 qemu-xen (dom0 may create ioreq servers); the spawned
# stubdomain runs next to it.
HGUEST=
# hvm_cfg NAME: the xl config lines every small HVM guest here shares (32
# MB, no display, boots from its first disk, qemu-xen)
hvm_cfg() { cat <<CFG
name = "$1"
type = "hvm"
memory = 32
vcpus = 1
vga = "none"
vnc = 0
sdl = 0
nographic = 1
tsc_mode = "native"
boot = "c"
device_model_version = "qemu-xen"
CFG
}
# mk_hvm_guest [CFG-LINE...]: the lines added to the guest's config
mk_hvm_guest() {
    { hvm_cfg xt-hguest; for l in "$@"; do echo "$l"; done; } > /tmp/xt-hguest.cfg
    t=$(ms)
    xl create -p /tmp/xt-hguest.cfg > /tmp/xt-hguest.log 2>&1 && HGUEST=$(xl domid xt-hguest)
    [ -n "$HGUEST" ] || { cat /tmp/xt-hguest.log; HGUEST=$GUEST; info "no HVM guest; using $GUEST"; }
    info "HVM guest $HGUEST (paused, dom0 qemu-xen) created in $(( $(ms) - t )) ms"
}

# fake_stub NAME EXTRA [ON_CRASH ON_POWEROFF] -> $STUB (domid), created paused,
# device-model/<guest> made writable for it, then unpaused.  $T_UNPAUSE (ms).
fake_stub() {
    cat > /tmp/$1.cfg <<CFG
name = "$1"
type = "pv"
kernel = "/mnt/host/images/vmlinuz"
ramdisk = "$RAMDISK"
extra = "console=hvc0 quiet xt.guest=$GUEST $2"
memory = $STUBMEM
vcpus = 1
on_crash = "${3:-preserve}"
on_poweroff = "${4:-preserve}"
CFG
    STUB=
    xl create -p /tmp/$1.cfg > /tmp/$1.create.log 2>&1 || { cat /tmp/$1.create.log; return 1; }
    STUB=$(xl domid "$1")
    xenstore-write "/local/domain/$STUB/device-model/$GUEST/state" ""
    xenstore-chmod "/local/domain/$STUB/device-model" "n0" "r$STUB"
    xenstore-chmod "/local/domain/$STUB/device-model/$GUEST" "n$STUB"
    xenstore-chmod "/local/domain/$STUB/device-model/$GUEST/state" "n$STUB"
    xl unpause "$STUB"
    T_UNPAUSE=$(ms)
}
gone() { ! xl list "$1" >/dev/null 2>&1; }
# xs_dump STUB GUEST FILE: the stubdomain's and the guest's nodes with
# permissions (xenstore-ls -fp), the guest's /vm (dm-argv) and /libxl, dom0's
# device-model and console/vbd/vif backends of both: to compare the
# library's layout with libxl's.
xs_dump() {
    {   for d in "/local/domain/$1" "/local/domain/$2" "$(xenstore-read /local/domain/$2/vm 2>/dev/null)" \
                 "/libxl/$2" "/local/domain/0/device-model/$1" "/local/domain/0/device-model/$2"; do
            [ -n "$d" ] || continue
            echo "## $d"; xenstore-ls -fp "$d" 2>&1
        done
        echo "## dom0 backends of $1 and $2"
        xenstore-ls -fp /local/domain/0/backend 2>/dev/null | grep -e "/$1/" -e "/$2/"
    } > "$3" 2>&1
}
kill_stub() { [ -n "$1" ] || return 0; xl destroy "$1" 2>/dev/null; xenstore-rm "/local/domain/$2/device-model" 2>/dev/null; true; }

# ===================================================================== xs
if has xs; then
    section "1. conformance.sh against the real $XSD (dom0, $XS_SOCK)"
    XENSTORED_PATH=$XS_SOCK sh /mnt/host/bin/conformance.sh --helper /mnt/host/bin/stubdm-mockxs-helper \
        > /tmp/conf.log 2>&1
    sed 's/^/  conf| /' /tmp/conf.log
    cp /tmp/conf.log $OUT/conformance.log
    summary=$(tail -n1 /tmp/conf.log)
    if grep -q '^FAIL' /tmp/conf.log; then
        fail "xs-conformance" "$summary; failing: $(grep '^FAIL' /tmp/conf.log | sed 's/^FAIL: //' | tr '\n' ';')"
    elif echo "$summary" | grep -q ' passed, 0 failed'; then
        pass "xs-conformance ($summary, $(grep -c '^SKIP' /tmp/conf.log) skipped)"
    else
        fail "xs-conformance" "no summary: $summary"
    fi

    section "1b. oxenstored observations (for docs/real-xen.md and the mock)"
    export XENSTORED_PATH=$XS_SOCK
    H=/mnt/host/bin/stubdm-mockxs-helper
    B=/tool/xt-probe
    xenstore-write $B ""
    for n in 2048 2049 4000; do
        v=$(head -c $n /dev/zero | tr '\0' x)
        info "dom0 write of a $n-byte value: $($H write $B/v$n "$v" 2>&1 || true)"
    done
    info "read of a missing node: $($H read $B/none 2>&1)"
    info "read under a missing parent: $($H read $B/none/deeper 2>&1)"
    info "write with an invalid path: $($H write "$B/bad path" x 2>&1)"
    info "is-introduced 0: $($H is-introduced 0 2>&1); of unused domid 4321: $($H is-introduced 4321 2>&1)"
    info "set-target 4321 4322 (no such domains): $($H set-target 4321 4322 2>&1)"
    info "domain-path 4321: $($H domain-path 4321 2>&1)"
    xenstore-write $B/p x
    xenstore-chmod $B/p n0 r4321 2>&1 | sed 's/^/INFO chmod with unknown domid: /'
    info "ls -p of a node with r4321: $(xenstore-ls -p $B | tr -s ' ')"
    info "xenstore-ls -p raw line: '$(xenstore-ls -p $B | grep '^p')'"
    # dom0 node-count quota (oxenstored's default quota-maxent is 1000).
    # 1100 single writes take ~45 s under TCG: only with XT_QUOTA_PROBE=1.
    if [ "${XT_QUOTA_PROBE:-0}" = 1 ]; then
        t=$(ms); i=0; args=
        while [ $i -lt 1100 ]; do args="$args $B/many/n$i x"; i=$((i + 1)); done
        # shellcheck disable=SC2086
        if xenstore-write $args 2>/tmp/q.err; then
            info "dom0 created 1100 nodes in one subtree: accepted ($(( $(ms) - t )) ms): dom0 is exempt from the entry quota"
        else
            info "dom0 1100 nodes: refused after $(xenstore-list $B/many | wc -l): $(cat /tmp/q.err)"
        fi
    fi
    # @releaseDomain / @introduceDomain event text
    info "special watch paths: $(timeout 3 xenstore-watch -n 1 @releaseDomain 2>&1 | tr '\n' ' ')"
    xenstore-rm $B
    unset XENSTORED_PATH
fi

has wait || has qmp || has spawn || has side || has stubdom && mk_guest
has spawn || has spawndisk || has crash || has side || has spawnqemu || has spawncon || has ocaml && mk_hvm_guest
info "guest domain: $GUEST"
xl list

# ===================================================================== wait
if has wait; then
    section "2a. stubdm-ctl wait: fake stubdomain writes running after 10 s"
    if fake_stub xt-fake-run "xt.delay=10 xt.dm=qemu"; then
        out=$(stubdm-ctl wait $STUB $GUEST --timeout 90 2>&1); rc=$?
        t=$(( $(ms) - T_UNPAUSE ))
        echo "  $out"
        if [ $rc = 0 ]; then pass "wait-running (stub $STUB, ${t} ms after unpause)"; fig wait_running_after_unpause_ms $t
        else fail "wait-running" "exit $rc: $out"; sed -n 's/^/  console| /p' $(conlog xt-fake-run) | tail -20; fi
        RUN_STUB=$STUB
    else fail "wait-running" "xl create failed"; fi

    section "2b. stubdomain destroyed during the wait"
    if fake_stub xt-fake-never "xt.dm=never"; then
        stubdm-ctl wait $STUB $GUEST --timeout 120 > /tmp/w.out 2>&1 &
        wpid=$!
        wait_grep $(conlog xt-fake-never) XT-STUB-ARGV-END 90 || info "fake stub $STUB did not report (console)"
        sleep 1
        td=$(ms); xl destroy $STUB; tx=$(ms)
        wait $wpid; rc=$?; te=$(ms)
        lat=$((te - td))
        echo "  $(cat /tmp/w.out)"
        fig destroy_detect_latency_ms $lat "(xl destroy itself took $((tx - td)) ms)"
        if [ $rc = 4 ] && [ $lat -lt 10000 ]; then pass "wait-destroyed (exit 4 in $lat ms: $(tr '\n' ' ' < /tmp/w.out))"
        else fail "wait-destroyed" "exit $rc after $lat ms: $(cat /tmp/w.out)"; fi
        xenstore-rm /local/domain/$STUB 2>/dev/null
    else fail "wait-destroyed" "xl create failed"; fi

    section "2c. stubdomain kernel panics (init exits) during the wait"
    if fake_stub xt-fake-panic "xt.panic"; then
        stubdm-ctl wait $STUB $GUEST --timeout 120 > /tmp/w.out 2>&1 &
        wpid=$!
        # note when Xen shows the domain as crashed (xl list state 'c')
        tc=
        while kill -0 $wpid 2>/dev/null; do
            [ -z "$tc" ] && xl list $STUB 2>/dev/null | awk 'NR==2 {exit !($5 ~ /c/)}' && tc=$(ms)
            sleep 0.1
        done
        wait $wpid; rc=$?; te=$(ms)
        [ -z "$tc" ] && xl list $STUB 2>/dev/null | awk 'NR==2 {exit !($5 ~ /c/)}' && tc=$te
        echo "  $(cat /tmp/w.out)"
        info "xl list: $(xl list $STUB 2>&1 | tail -n1)"
        [ -n "$tc" ] && fig crash_detect_latency_ms $((te - tc)) "(upper bound: from the first xl list showing 'c', polled every ~0.3 s)"
        fig crash_detect_after_unpause_ms $((te - T_UNPAUSE))
        if [ $rc = 4 ] && grep -q crash /tmp/w.out; then pass "wait-crashed (exit 4: $(tr '\n' ' ' < /tmp/w.out))"
        else fail "wait-crashed" "exit $rc: $(cat /tmp/w.out)"; tail -5 $(conlog xt-fake-panic); fi
        kill_stub $STUB $STUB
    else fail "wait-crashed" "xl create failed"; fi

    section "2d. device model exits: the stubdomain powers off during the wait"
    if fake_stub xt-fake-dmexit "xt.dm=exit"; then
        out=$(stubdm-ctl wait $STUB $GUEST --timeout 120 2>&1); rc=$?
        echo "  $out"
        fig dmexit_detect_after_unpause_ms $(( $(ms) - T_UNPAUSE ))
        if [ $rc = 4 ] && echo "$out" | grep -q 'shut down'; then pass "wait-dm-exited (exit 4: $out)"
        else fail "wait-dm-exited" "exit $rc: $out"; fi
        kill_stub $STUB $STUB
    else fail "wait-dm-exited" "xl create failed"; fi

    section "2e. timeout when nothing is written"
    if [ -n "${RUN_STUB:-}" ]; then
        xenstore-write /local/domain/$RUN_STUB/device-model/4242/state starting
        t=$(ms); out=$(stubdm-ctl wait $RUN_STUB 4242 --timeout 2 2>&1); rc=$?; t=$(( $(ms) - t ))
        echo "  $out"
        if [ $rc = 3 ]; then pass "wait-timeout (exit 3 after $t ms)"; else fail "wait-timeout" "exit $rc: $out"; fi
        xenstore-rm /local/domain/$RUN_STUB/device-model/4242
    fi
fi

# ===================================================================== qmp
if has qmp; then
    section "3. QMP over the real libxenvchan (qemu-system-x86_64 -machine none in the fake stubdomain)"
    if [ -z "${RUN_STUB:-}" ] || gone "$RUN_STUB"; then
        fake_stub xt-fake-run "xt.dm=qemu" && stubdm-ctl wait $STUB $GUEST --timeout 120 && RUN_STUB=$STUB
    fi
    S=$RUN_STUB
    if [ -n "$S" ]; then
        xenstore-ls -fp /local/domain/$S/device-model 2>&1 | sed 's/^/  /'
        t=$(ms)
        if xt-qmp $S $GUEST -n 20 query-status query-version > /tmp/q.out 2>&1; then
            sed 's/^/  /' /tmp/q.out
            if grep -q '^reply query-status .*"status"' /tmp/q.out && grep -q '^reply query-version .*"qemu"' /tmp/q.out; then
                pass "qmp-vchan (query-status, query-version answered)"
            else fail "qmp-vchan" "unexpected replies: $(cat /tmp/q.out)"; fi
            fig qmp_open_ms $(sed -n 's/^open \([0-9]*\).*/\1/p' /tmp/q.out)
            fig qmp_rtt_query_status $(grep '^rtt query-status' /tmp/q.out | cut -d' ' -f3-)
        else
            fail "qmp-vchan" "$(cat /tmp/q.out)"
            tail -n 20 $(conlog xt-fake-run) | sed 's/^/  console| /'
        fi
        # a second client after the first closed (vchan-socket-proxy re-serves)
        if xt-qmp $S $GUEST query-status > /tmp/q2.out 2>&1; then pass "qmp-vchan-reconnect (second connection)"
        else fail "qmp-vchan-reconnect" "$(cat /tmp/q2.out)"; fi
        if stubdm-ctl --help 2>&1 | grep -q '^  qmp'; then
            out=$(stubdm-ctl qmp $S $GUEST query-status 2>&1); rc=$?
            echo "  stubdm-ctl qmp: $out"
            [ $rc = 0 ] && pass "stubdm-ctl-qmp" || fail "stubdm-ctl-qmp" "exit $rc: $out"
        else
            info "stubdm-ctl has no qmp command in this build"
        fi
        info "dom0 processes talking to the stub: $(ps -eo pid,comm | grep -c vchan-socket) vchan-socket-proxy"
    else fail "qmp-vchan" "no running fake stubdomain"; fi
    [ -n "${RUN_STUB:-}" ] && kill_stub $RUN_STUB $RUN_STUB
fi

# ===================================================================== spawn (the library's PV builder)
# xs_snapshot FILE: every node path, minus the ones Xen/dom0 itself keeps
# changing (dom0's memory target, the tool/ scratch of the earlier sections).
xs_snapshot() { xenstore-ls -f 2>/dev/null | sed 's/ = .*//' \
    | grep -v -e '^/local/domain/0/memory' -e '^/tool/xt-probe' | LC_ALL=C sort > "$1"; }
SP_KERNEL=/mnt/host/images/vmlinuz
SP_RAMDISK=${XT_SPAWN_RAMDISK:-/mnt/host/images/stubdom-rootfs.cpio.xz}
SP_MEM=${XT_SPAWN_MEM:-256}
# the dm-argv written: spaces, quotes, commas, '=', shell metacharacters:
# each must come back byte for byte.  (Non-ASCII bytes and '\' are refused
# by the library before anything is made: xenstore-read in the stubdomain
# would print them escaped.)
sp_args() { printf '%s\n' -xen-domid "$HGUEST" -name "xt guest 'one'" -m 64 \
    -drive 'file=/dev/xvda,if=ide,index=0,media=disk,format=raw' -display none \
    '--weird=a,,b;c$HOME`x`|&*?' -S; }
# spawn_stub TAG CMDLINE-EXTRA [TIMEOUT]: runs stubdm-ctl spawn in the
# background (output /tmp/sp-TAG.{out,err}, pid $SP_PID, start $SP_T0).
spawn_stub() {
    SP_T0=$(ms)
    (   set -f; IFS='
'
        # shellcheck disable=SC2046
        exec stubdm-ctl $SP_V spawn --guest "$HGUEST" --name "xt-sp-$1" \
            --kernel $SP_KERNEL --ramdisk $SP_RAMDISK --memory $SP_MEM \
            --cmdline "console=hvc0 quiet xt.dm=qemu $2" --console-backend xenconsoled \
            --timeout "${3:-150}" --qmp-status -- $(sp_args)
    ) > /tmp/sp-$1.out 2> /tmp/sp-$1.err &
    SP_PID=$!
}
sp_domid() { xl domid "xt-sp-$1" 2>/dev/null; }
sp_leaks() { # TAG: "" if nothing is left, else what is
    l=
    xl list 2>/dev/null | grep -q "xt-sp-$1" && l="domain: $(xl list | grep "xt-sp-$1" | tr -s ' ');"
    xs_snapshot /tmp/xs-after-$1
    d=$(LC_ALL=C comm -13 /tmp/xs-before /tmp/xs-after-$1 | head -n 20 | tr '\n' ' ')
    [ -n "$d" ] && l="$l nodes: $d"
    echo "$l"
}
sp_console() { sed -n 's/^/  console| /p' "$(conlog "xt-sp-$1")" 2>/dev/null | tail -n "${2:-25}"; }

if has spawn; then
    section "4a. stubdm-ctl spawn (the library's PV builder, no xl) for guest $HGUEST"
    xs_snapshot /tmp/xs-before
    sp_args > /tmp/sp-args.want
    SP_V=-v; spawn_stub ok ""; SP_V=   # -v: the library's debug log, libxc's included
    wait $SP_PID; rc=$?; t=$(( $(ms) - SP_T0 ))
    S=$(head -n1 /tmp/sp-ok.out)
    cp /tmp/sp-ok.err $OUT/spawn-debug.log
    grep -i 'error\|panic\|fail\|warn' /tmp/sp-ok.err | head -n 20 | cut -c1-400 | sed 's/^/  spawn-err| /'
    tail -n 12 /tmp/sp-ok.err | cut -c1-300 | sed 's/^/  spawn| /'
    if [ $rc = 0 ] && [ -n "$S" ]; then
        pass "spawn-running (stubdomain $S for guest $HGUEST, $t ms)"
        fig spawn_to_running_ms $t
        xl list
        xenstore-ls -fp /local/domain/$S 2>&1 | head -n 60 | sed 's/^/  xs| /'
    else
        fail "spawn-running" "exit $rc after $t ms: $(grep -v '^\[\|debug' /tmp/sp-ok.err | tr '\n' ' ')"
        xl dmesg | tail -n 20 | sed 's/^/  xl-dmesg| /'
    fi
    # dm-argv as the stubdomain read it (XT-STUB-ARGV n arg, one per line)
    f=$(conlog xt-sp-ok)
    wait_grep "$f" XT-STUB-ARGV-END 10
    grep -a '^XT-STUB-ARGV [0-9]' "$f" 2>/dev/null | tr -d '\r' | sed 's/^XT-STUB-ARGV [0-9]* //' > /tmp/sp-args.got
    if [ -s /tmp/sp-args.got ] && cmp -s /tmp/sp-args.want /tmp/sp-args.got; then
        pass "spawn-dm-argv (the stubdomain read back all $(wc -l < /tmp/sp-args.want) arguments byte for byte)"
    else
        fail "spawn-dm-argv" "console ${f}: $(diff /tmp/sp-args.want /tmp/sp-args.got 2>&1 | head -n 12 | tr '\n' '|')"
        sp_console ok 40
    fi
    if [ -n "$S" ] && [ $rc = 0 ]; then
        info "stubdm-ctl list: $(stubdm-ctl list 2>&1 | tr '\n' '|')"
        out=$(stubdm-ctl qmp $S $HGUEST query-status 2>&1); qrc=$?
        out2=$(stubdm-ctl qmp $S $HGUEST query-version 2>&1); qrc2=$?
        echo "  query-status: $out"; echo "  query-version: $out2"
        if [ $qrc = 0 ] && [ $qrc2 = 0 ] && echo "$out" | grep -q status && echo "$out2" | grep -q qemu; then
            pass "spawn-qmp (stubdm-ctl qmp query-status and query-version over real libxenvchan)"
        else fail "spawn-qmp" "exit $qrc/$qrc2: $out / $out2"; fi
        if xt-qmp $S $HGUEST -n 20 query-status query-version > /tmp/sp-q.out 2>&1; then
            fig spawn_qmp_open_ms $(sed -n 's/^open \([0-9]*\).*/\1/p' /tmp/sp-q.out)
            fig spawn_qmp_rtt_query_status $(grep '^rtt query-status' /tmp/sp-q.out | cut -d' ' -f3-)
            fig spawn_qmp_rtt_query_version $(grep '^rtt query-version' /tmp/sp-q.out | cut -d' ' -f3-)
        else info "xt-qmp: $(tr '\n' ' ' < /tmp/sp-q.out)"; fi
        t=$(ms); out=$(stubdm-ctl destroy $S 2>&1); drc=$?; t=$(( $(ms) - t ))
        echo "  destroy: $out ($t ms)"
        fig spawn_destroy_ms $t
        sleep 1
        l=$(sp_leaks ok)
        if [ $drc = 0 ] && [ -z "$l" ]; then pass "spawn-destroy (no domain, no node left; $t ms)"
        else fail "spawn-destroy" "exit $drc: $out; left: $l"; fi
    fi
    kill_stub "$S" "$S" 2>/dev/null

    # ---- failure paths: each must be reported with its cause, nothing left
    # spawn_fail_case TAG CMDLINE-EXTRA PATTERN DESCRIPTION
    spawn_fail_case() {
        section "4${5}. spawn failure: $4"
        xs_snapshot /tmp/xs-before
        spawn_stub "$1" "$2"
        if [ "$1" = destroyed ]; then
            # xl destroy from a background job once the stubdomain has booted
            i=0; D=
            while [ $i -lt 600 ] && kill -0 $SP_PID 2>/dev/null; do
                D=$(sp_domid destroyed)
                [ -n "$D" ] && grep -aq XT-STUB-ARGV-END "$(conlog xt-sp-destroyed)" 2>/dev/null && break
                sleep 0.2; i=$((i + 1))
            done
            sleep 1; TD=$(ms)
            # (never `xl destroy ""`: xl takes it as domain 0)
            if [ -n "$D" ] && kill -0 $SP_PID 2>/dev/null; then
                xl destroy "$D"; info "xl destroy $D took $(( $(ms) - TD )) ms"
            else info "no stubdomain to destroy (spawn already ended)"; TD=; fi
        fi
        # for the others: note when Xen shows the domain as crashed/shut down
        TC=
        while kill -0 $SP_PID 2>/dev/null; do
            if [ -z "$TC" ]; then
                st=$(xl list "xt-sp-$1" 2>/dev/null | awk 'NR==2 {print $5}')
                case $st in *c*|*s*) TC=$(ms) ;; esac
            fi
            sleep 0.1
        done
        wait $SP_PID; rc=$?; te=$(ms)
        [ "$1" = destroyed ] && TC=$TD
        msg=$(tr '\n' ' ' < /tmp/sp-$1.err)
        echo "  exit $rc: $msg"
        lat=
        [ -n "$TC" ] && { lat=$((te - TC)); fig "spawn_${1}_report_latency_ms" $lat "(from $( [ "$1" = destroyed ] && echo 'the start of xl destroy' || echo 'the first xl list showing it'))"; }
        sleep 1
        l=$(sp_leaks "$1")
        if [ $rc != 0 ] && echo "$msg" | grep -Eq "$3" && [ -z "$l" ] && { [ -z "$lat" ] || [ $lat -lt 10000 ]; }; then
            pass "spawn-fail-$1 (exit $rc${lat:+ in $lat ms}: $msg)"
        else
            fail "spawn-fail-$1" "exit $rc${lat:+ after $lat ms}: $msg; left: ${l:-nothing}"
            sp_console "$1" 15
        fi
        D=$(sp_domid "$1"); [ -n "$D" ] && kill_stub "$D" "$D"
    }
    spawn_fail_case panic "xt.panic" "crash" "the stubdomain kernel panics (xt.panic)" b
    spawn_fail_case dmexit "xt.dm=exit" "shut ?down|poweroff" "the device model exits (xt.dm=exit)" c
    spawn_fail_case destroyed "xt.dm=never" "destroyed|gone" "the stubdomain is destroyed during the wait (xl destroy)" d
fi

# ===================================================================== spawndisk (hotplug scripts run by the library)
# The library's spawn with a disk and a nic: dom0's blkback and netback
# take the backends to InitWait, the library runs /etc/xen/scripts/block
# add (a file: a loop device) and vif-bridge online (vif<S>.0 into
# xenbr0), waits for hotplug-status connected, and only then unpauses.
# The stubdomain (xt.diskcheck) prints the sha256 of its /dev/xvda and its
# nics.  Destroy: block remove (the loop device goes), vif-bridge offline,
# then the backend nodes.  Without section spawn in the run, a plain spawn
# of the same image and command line first gives the time to running
# without devices (with it, compare spawn_to_running_ms).
# ocaml: the OCaml binding (bindings/ocaml) on real Xen: examples/ocaml's
# xenopsd_dm.exe, natively compiled on the host (STUBDM_BUILD_OCAML=ON) and
# copied to /mnt/host/bin, spawns for the HVM guest, waits for running,
# query-status over the real libxenvchan, destroys; nothing left.
if has ocaml; then
    section "ocaml. the OCaml binding: spawn -> running -> query-status -> destroy"
    if [ ! -x /mnt/host/bin/xenopsd_dm.exe ]; then
        fail ocaml-spawn "no /mnt/host/bin/xenopsd_dm.exe (a STUBDM_BUILD_OCAML=ON build copied by run.sh)"
    else
        xs_snapshot /tmp/xs-before
        t=$(ms)
        xenopsd_dm.exe --smoke --xenconsoled --guest "$HGUEST" --kernel $SP_KERNEL \
            --ramdisk $SP_RAMDISK --stubdom-memory $SP_MEM \
            --cmdline "console=hvc0 quiet xt.dm=qemu" --workdir /tmp > /tmp/ocaml.out 2>&1
        rc=$?; t=$(( $(ms) - t ))
        sed 's/^/  ocaml| /' /tmp/ocaml.out
        if [ $rc = 0 ] && grep -q 'query-status.*"running": *true' /tmp/ocaml.out && grep -q destroyed /tmp/ocaml.out; then
            pass "ocaml-spawn (running, query-status running, destroyed; $t ms)"
            fig ocaml_spawn_to_destroy_ms $t
        else
            fail ocaml-spawn "exit $rc after $t ms: $(tail -n 3 /tmp/ocaml.out | tr '\n' ' ')"
        fi
        sleep 1
        xs_snapshot /tmp/xs-after-ocaml
        d=$(LC_ALL=C comm -13 /tmp/xs-before /tmp/xs-after-ocaml | head -n 20 | tr '\n' ' ')
        if [ -z "$d" ] && ! xl list | grep -q vm$HGUEST-dm; then pass "ocaml-clean (no domain, no node left)"
        else fail ocaml-clean "left: $d $(xl list | grep vm$HGUEST-dm)"; fi
    fi
fi

if has spawndisk; then
    section "4g. spawn with a disk (file -> loop device) and a nic (xenbr0), hotplug scripts run by the library"
    for m in xen-blkback xen-netback bridge loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    ip link show xenbr0 >/dev/null 2>&1 || ip link add xenbr0 type bridge
    ip link set xenbr0 up
    SPD_IMG=/tmp/xt-disk.img
    dd if=/dev/urandom of=$SPD_IMG bs=1M count=8 2>/dev/null
    SPD_SUM=$(sha256sum $SPD_IMG | cut -d' ' -f1)
    SPD_SIZE=$(stat -c %s $SPD_IMG)
    info "disk image $SPD_IMG: $SPD_SIZE bytes, sha256 $SPD_SUM"
    # spd_spawn TAG EXTRA-OPTIONS...: stubdm-ctl -v spawn, waits for its end
    spd_spawn() {
        tag=$1; shift
        SP_T0=$(ms)
        (   set -f; IFS='
'
            # shellcheck disable=SC2046
            exec stubdm-ctl -v spawn --guest "$HGUEST" --name "xt-sp-$tag" \
                --kernel $SP_KERNEL --ramdisk $SP_RAMDISK --memory $SP_MEM \
                --cmdline "console=hvc0 quiet xt.dm=qemu xt.diskcheck" --console-backend xenconsoled \
                --timeout 200 "$@" -- $(sp_args)
        ) > /tmp/sp-$tag.out 2> /tmp/sp-$tag.err
        SPD_RC=$? SPD_MS=$(( $(ms) - SP_T0 ))
        SPD_S=$(head -n1 /tmp/sp-$tag.out)
        cp /tmp/sp-$tag.err $OUT/spawndisk-$tag-debug.log
    }
    # spd_step_s TAG STEP: seconds into the spawn at which STEP began (debug log)
    spd_step_s() { sed -n "s/.*guest [0-9]*: $2 (\([0-9.]*\) s).*/\1/p" /tmp/sp-$1.err | head -n1; }
    if ! has spawn; then
        spd_spawn base
        if [ $SPD_RC = 0 ] && [ -n "$SPD_S" ]; then
            fig spawn_nodev_to_running_ms $SPD_MS
            stubdm-ctl destroy $SPD_S > /dev/null 2>&1
        else info "baseline spawn failed (exit $SPD_RC): $(tail -n 3 /tmp/sp-base.err | tr '\n' ' ')"; fi
        kill_stub "$SPD_S" "$SPD_S" 2>/dev/null
    fi
    losetup -a > /tmp/loop-before 2>&1
    xs_snapshot /tmp/xs-before
    spd_spawn disk --disk "$SPD_IMG" --nic mac=00:16:3e:5d:15:c0,bridge=xenbr0
    S=$SPD_S
    grep -i 'hotplug\|error\|warn' /tmp/sp-disk.err | grep -v 'STUBDM_ENOENT: reading' | head -n 30 | cut -c1-300 | sed 's/^/  spawn| /'
    if [ $SPD_RC = 0 ] && [ -n "$S" ]; then
        th=$(spd_step_s disk "running hotplug scripts"); tu=$(spd_step_s disk unpausing)
        pass "spawndisk-running (stubdomain $S, $SPD_MS ms; hotplug step ${th:-?} s -> ${tu:-?} s)"
        fig spawn_disk_nic_to_running_ms $SPD_MS
        [ -n "$th" ] && [ -n "$tu" ] && fig spawn_hotplug_step_ms "$(awk "BEGIN { printf \"%d\", ($tu - $th) * 1000 }")"
        VBD=/local/domain/0/backend/vbd/$S/51712 VIF=/local/domain/0/backend/vif/$S/0
        xenstore-ls -fp $VBD 2>&1 | sed 's/^/  xs| /'
        xenstore-ls -fp $VIF 2>&1 | sed 's/^/  xs| /'
        vst=$(xenstore-read $VBD/state 2>&1); vhs=$(xenstore-read $VBD/hotplug-status 2>&1)
        node=$(xenstore-read $VBD/node 2>&1); pdev=$(xenstore-read $VBD/physical-device 2>&1)
        info "loop devices: $(losetup -a | tr '\n' ' ')"
        if [ "$vst" = 4 ] && [ "$vhs" = connected ] && losetup "$node" 2>/dev/null | grep -q "$SPD_IMG"; then
            pass "spawndisk-blkback (backend state 4, hotplug-status connected, physical-device $pdev = $node on $SPD_IMG)"
        else fail "spawndisk-blkback" "state '$vst', hotplug-status '$vhs', node '$node', physical-device '$pdev'"; fi
        f=$(conlog xt-sp-disk)
        wait_grep "$f" XT-STUB-DISK 60
        got=$(grep -a '^XT-STUB-DISK xvda' "$f" | tr -d '\r' | head -n1)
        grep -a '^XT-STUB-\(DISK\|NIC\)' "$f" | sed 's/^/  console| /'
        if [ "$got" = "XT-STUB-DISK xvda $SPD_SUM $SPD_SIZE" ]; then
            pass "spawndisk-xvda (the stubdomain read /dev/xvda: sha256 and size match the dom0 file)"
        else fail "spawndisk-xvda" "got '$got', want sha256 $SPD_SUM $SPD_SIZE"; sp_console disk 30; fi
        fst=$(xenstore-read $VIF/state 2>&1); fhs=$(xenstore-read $VIF/hotplug-status 2>&1)
        br=$(sed -n 's/^INTERFACE=//p' /sys/class/net/vif$S.0/brport/bridge/uevent 2>/dev/null)
        info "ports of xenbr0: $(ip -o link show master xenbr0 2>&1 | cut -d' ' -f2 | tr '\n' ' ')"
        if [ "$fhs" = connected ] && [ "$br" = xenbr0 ] && grep -aq '^XT-STUB-NIC .* 00:16:3e:5d:15:c0' "$f"; then
            pass "spawndisk-vif (vif$S.0 is a port of xenbr0, hotplug-status connected, backend state $fst, the stubdomain has the nic)"
        else fail "spawndisk-vif" "vif$S.0 bridge '$br', hotplug-status '$fhs', backend state '$fst'"; fi
        # Another toolstack destroys the stubdomain first (as xl's monitor
        # does with a guest's device model): libxl removes the domain and
        # /local/domain/<S> but not the library's backends nor the loop
        # device.  The library's by-domid destroy must clean up after it.
        xl destroy $S > /tmp/sp-xl-destroy.log 2>&1; xrc=$?
        left_by_xl=$(xenstore-list /local/domain/0/backend/vbd/$S 2>/dev/null | tr '\n' ' ')
        info "after xl destroy $S (exit $xrc): vbd backends left: ${left_by_xl:-none}; /local/domain/$S: $(xenstore-read /local/domain/$S/name 2>&1)"
        t=$(ms); out=$(stubdm-ctl destroy $S 2>&1); drc=$?; t=$(( $(ms) - t ))
        echo "  destroy: $out ($t ms)"
        fig spawndisk_destroy_ms $t
        # the loop device goes when blkback lets go of it (autoclear)
        i=0; while [ $i -lt 50 ] && losetup -a | grep -q "$SPD_IMG"; do sleep 0.2; i=$((i + 1)); done
        l=$(sp_leaks disk)
        loops=$(losetup -a | grep "$SPD_IMG")
        vifs=$(ip -o link show 2>/dev/null | grep "vif$S\.")
        if [ -n "$left_by_xl" ] && [ $drc = 0 ] && [ -z "$l" ] && [ -z "$loops" ] && [ -z "$vifs" ]; then
            pass "spawndisk-destroy (xl destroy first, leaving vbd backends '${left_by_xl}'; then stubdm-ctl destroy: no domain, node, loop device or vif left; $t ms)"
        else fail "spawndisk-destroy" "xl destroy exit $xrc; stubdm-ctl destroy exit $drc: $out; left: ${l:-no node} ${loops:+loop: $loops} ${vifs:+vif: $vifs}"; fi
        tail -n 20 /var/log/xen/xen-hotplug.log 2>/dev/null | sed 's/^/  hotplug-log| /'
    else
        fail "spawndisk-running" "exit $SPD_RC after $SPD_MS ms: $(grep -v 'debug\|^\[' /tmp/sp-disk.err | tail -n 5 | tr '\n' ' ')"
        tail -n 30 /tmp/sp-disk.err | cut -c1-300 | sed 's/^/  spawn| /'
        tail -n 30 /var/log/xen/xen-hotplug.log 2>/dev/null | sed 's/^/  hotplug-log| /'
        sp_console disk 30
        l=$(sp_leaks disk); loops=$(losetup -a | grep "$SPD_IMG")
        info "after the failure: left ${l:-no node} ${loops:+loop: $loops}"
    fi
    kill_stub "$S" "$S" 2>/dev/null
fi

# ===================================================================== crash (stubdm-ctl spawn SIGKILLed, then destroy)
# `stubdm-ctl spawn` with a disk (a file: the block script's loop device)
# and a nic (xenbr0) is killed with SIGKILL at three points, then
# `stubdm-ctl destroy <domid>` (a new process) must leave nothing: no
# domain (xl list), no node the spawn wrote (xenstore-ls before/after), no
# loop device on the file, no vif, no stubdm-ctl or hotplug script process.
#   devices  DEVICES done, entering HOTPLUG: backends written, no script
#            yet (the CLI's test hook STUBDM_CTL_CRASH_AT kills it there:
#            those steps run back to back, no outside signal can land)
#   hotplug  inside HOTPLUG: once the library logged the block script's
#            start, the kill lands while it runs; destroy lets the orphaned
#            add finish (or kills it after 30 s), then runs remove
#   wait     inside WAIT (xt.dm=never: the device model never runs): the
#            stubdomain runs, the loop device and the vif are attached
if has crash; then
    section "4i. crash: stubdm-ctl spawn killed (SIGKILL) at DEVICES, HOTPLUG and WAIT, then stubdm-ctl destroy"
    for m in xen-blkback xen-netback bridge loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    ip link show xenbr0 >/dev/null 2>&1 || ip link add xenbr0 type bridge
    ip link set xenbr0 up
    CR_IMG=/tmp/xt-crash.img
    dd if=/dev/zero of=$CR_IMG bs=1M count=4 2>/dev/null
    # crash_procs: processes of a spawn or its scripts still running
    crash_procs() { ps -eo pid,args | grep -E 'stubdm-ctl|/etc/xen/scripts/(block|vif)' | grep -v grep | tr -s ' ' | tr '\n' ';'; }
    # crash_case TAG CRASH_AT-TEXT | -EXTERNAL-PATTERN, DM: the point, the
    # stubdomain's xt.dm
    crash_case() {
        tag=$1 at=$2 dm=$3 hook= pat=
        case $at in -*) pat=${at#-} ;; *) hook=$at ;; esac
        losetup -a > /tmp/cr-loop-before 2>&1
        xs_snapshot /tmp/xs-before
        SP_T0=$(ms)
        (   set -f; IFS='
'
            # shellcheck disable=SC2046
            export STUBDM_CTL_CRASH_AT="$hook"
            exec stubdm-ctl -v spawn --guest "$HGUEST" --name "xt-sp-cr$tag" \
                --kernel $SP_KERNEL --ramdisk $SP_RAMDISK --memory $SP_MEM \
                --cmdline "console=hvc0 quiet xt.dm=$dm" --console-backend xenconsoled \
                --timeout 200 --disk "$CR_IMG" --nic bridge=xenbr0 -- $(sp_args)
        ) > /tmp/sp-cr$tag.out 2> /tmp/sp-cr$tag.err &
        CR_PID=$!
        if [ -n "$pat" ]; then
            i=0; while [ $i -lt 1500 ] && kill -0 $CR_PID 2>/dev/null && ! grep -aq -- "$pat" /tmp/sp-cr$tag.err; do
                sleep 0.1; i=$((i + 1)); done
            seen=$(grep -ac -- "$pat" /tmp/sp-cr$tag.err)
            kill -KILL $CR_PID 2>/dev/null
        else seen=1; fi
        wait $CR_PID; rc=$?; tk=$(( $(ms) - SP_T0 ))
        cp /tmp/sp-cr$tag.err $OUT/crash-$tag-debug.log
        tail -n 4 /tmp/sp-cr$tag.err | cut -c1-200 | sed 's/^/  spawn| /'
        S=$(sp_domid cr$tag)
        at_kill="loop: $(losetup -a | grep -c "$CR_IMG"), vif: $(ip -o link show 2>/dev/null | grep -c "vif$S\."), procs: $(crash_procs)"
        info "crash-$tag: killed after $tk ms (exit $rc), stubdomain ${S:-none}; at the kill: $at_kill"
        if [ -z "$S" ] || [ "$rc" != 137 ] || [ "$seen" = 0 ]; then
            fail "crash-$tag" "not killed at the point (exit $rc, pattern seen: $seen, domid '${S}')"
            return
        fi
        t=$(ms); out=$(stubdm-ctl -v destroy "$S" 2>&1); drc=$?; t=$(( $(ms) - t ))
        echo "$out" > $OUT/crash-$tag-destroy.log
        echo "$out" | grep -a 'hotplug\]' | grep -v 'STUBDM_ENOENT: reading' | cut -c1-250 | sed 's/^/  destroy| /'
        echo "  destroy: $(echo "$out" | tail -n 3 | tr '\n' ' ') ($t ms)"
        fig crash_${tag}_destroy_ms $t
        # the loop device goes when blkback lets go of it (autoclear)
        i=0; while [ $i -lt 50 ] && losetup -a | grep -q "$CR_IMG"; do sleep 0.2; i=$((i + 1)); done
        l=$(sp_leaks cr$tag)
        loops=$(losetup -a | grep "$CR_IMG")
        vifs=$(ip -o link show 2>/dev/null | grep "vif$S\.")
        procs=$(crash_procs)
        if [ $drc = 0 ] && [ -z "$l" ] && [ -z "$loops" ] && [ -z "$vifs" ] && [ -z "$procs" ]; then
            pass "crash-$tag (SIGKILL after $tk ms with $at_kill; destroy $S in $t ms: no domain, node, loop device, vif or process left)"
        else
            fail "crash-$tag" "destroy exit $drc: $(echo "$out" | tail -n 2 | tr '\n' ' '); left: ${l:-no node} ${loops:+loop: $loops} ${vifs:+vif: $vifs} ${procs:+processes: $procs}"
            tail -n 20 /var/log/xen/xen-hotplug.log 2>/dev/null | sed 's/^/  hotplug-log| /'
            kill_stub "$S" "$S" 2>/dev/null
        fi
    }
    crash_case devices "running hotplug scripts" never
    crash_case hotplug "-/etc/xen/scripts/block add (pid" never
    crash_case wait "-spawn: waiting for running" never
fi

# ===================================================================== spawncon (library-served consoles on Xen)
# The library serving the stubdomain's PV consoles itself (--console-backend
# libstubdm): console 0 (the builder's page) to a log file, 1 (save, held),
# 2 (restore, or the serials' placeholder), 3 (a serial, to a file), with no
# QEMU in dom0.  The device model is Debian's qemu-system-x86_64 (TCG,
# -machine none, see spc_args) started by the image's init with the dm-argv
# (xt.dm=qemu-argv:
# log to hvc0, fdset 1 pumped into /dev/hvc1, -incoming fd:3 fed from
# /dev/hvc2).  Then the #8 round trip: `stubdm-ctl save` (another process)
# through console 1, and a new spawn `--restore FILE` through console 2 whose
# QEMU must load the stream (query-migrate completed) and run.
# -machine none: in this nested stubdomain qemu-system-x86_64 -machine pc
# died at start in every run (gz/320 MB and xz/512 MB alike, with and
# without -S): a stack-overflow segfault in a recursion over 512-entry
# tables (the code of phys_page_compact), and ld.so "Inconsistency
# detected" / a segfaulting `sleep` next to it; the same binary and
# arguments run on the host.  -machine none (what sections 2-6 run) saves
# a small but real QEVM stream (timer, globalstate: 191 bytes on the host,
# binary: 00 and 03 bytes).  -S: stopped, as after a save.  Restoring: no
# configuration section in xen-save-devices-state's stream.
# XT_SPC_MACHINE=pc (run.sh): -machine pc -m 16 instead (vapic off: its
# kvm-tpr-opt state does not load under TCG).
SPC_MACHINE=$(cat /mnt/host/spc-machine 2>/dev/null || echo none)
spc_args() { printf '%s\n' -machine "$SPC_MACHINE" -nodefaults -no-user-config -display none -S \
    -serial /dev/hvc3
    [ "$SPC_MACHINE" = pc ] && printf '%s\n' -m 16 -global apic.vapic=off
    [ "$1" = restore ] && printf '%s\n' -global migration.send-configuration=off; }
# spc_spawn TAG LOG SERIAL [spawn options...] -> $SPC_PID (stubdm-ctl --serve in the
# background), $SPC_DOM (domid, once running), $SPC_MS (start to running)
spc_spawn() {
    tag=$1 log=$2 ser=$3; shift 3
    rm -f "$log" "$ser" /tmp/spc-$tag.out
    SPC_T0=$(ms)
    (   set -f; IFS='
'
        # shellcheck disable=SC2046
        exec stubdm-ctl -v spawn --guest "$HGUEST" --name "xt-spc-$tag" --kernel /mnt/host/images/vmlinuz \
            --ramdisk /mnt/host/images/stubdom-rootfs.cpio.gz --memory 320 \
            --cmdline "console=hvc0 xt.dm=qemu-argv" --console-backend libstubdm \
            --log "$log" --serial "file:$ser" --timeout 240 --serve "$@" -- $(spc_args $SPC_MODE)
    ) > /tmp/spc-$tag.out 2> /tmp/spc-$tag.err &
    SPC_PID=$! SPC_DOM= SPC_MS=
    i=0
    while [ $i -lt 1300 ] && kill -0 $SPC_PID 2>/dev/null; do
        SPC_DOM=$(head -n1 /tmp/spc-$tag.out 2>/dev/null)
        [ -n "$SPC_DOM" ] && { SPC_MS=$(( $(ms) - SPC_T0 )); break; }
        sleep 0.2; i=$((i + 1))
    done
    cp /tmp/spc-$tag.err $OUT/spawncon-$tag-debug.log 2>/dev/null
    # Which way the library reached console 0's page (reserved grant or
    # frame number): the debug log says it once the console is served.
    info "spawncon $tag: $(grep -o 'console 0 of domain.*' /tmp/spc-$tag.err 2>/dev/null | head -n1)"
}
# be_states DOMID: backend state of consoles 0..3
be_states() { for n in 0 1 2 3; do printf '%s ' "$(xenstore-read /local/domain/0/backend/console/$1/$n/state 2>/dev/null || echo -)"; done; }
spc_stop() { # stop the --serve process (SIGINT: it lets the consoles go)
    [ -n "$SPC_PID" ] && kill -INT $SPC_PID 2>/dev/null
    i=0; while kill -0 $SPC_PID 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    kill -0 $SPC_PID 2>/dev/null && { kill $SPC_PID; info "the --serve process did not stop on SIGINT"; }
    wait $SPC_PID 2>/dev/null; SPC_PID=
}
spc_dump() { # TAG LOG
    grep -a 'console\|warn\|error\|fail' /tmp/spc-$1.err | grep -v 'qmp\]' | tail -n 30 | cut -c1-300 | sed 's/^/  spc-debug| /'
    [ -n "$SPC_DOM" ] && xenstore-ls -f /local/domain/$SPC_DOM/device/console /local/domain/$SPC_DOM/console \
        /local/domain/0/backend/console/$SPC_DOM 2>&1 | head -n 60 | sed 's/^/  xs| /'
    tail -n 40 "$2" 2>/dev/null | sed 's/^/  spc-console| /'
}

if has spawncon; then
    section "4f. stubdm-ctl spawn --console-backend libstubdm: consoles 0-3 served by the library, save and restore through consoles 1 and 2"
    # No QEMU in dom0 at all: the paused HVM guest's own dom0 qemu-xen is
    # stopped (the guest stays paused; nothing here runs it), and so is the
    # dom0 disk backend Xen's init script starts (xen-qemu-system-i386
    # -xen-domid 0 -xen-attach -M xenpv: dom0's own qdisk, unused here).
    for pid in $(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null) \
               $(cat /run/qemu-dom0.pid 2>/dev/null); do
        info "stopping dom0 QEMU $pid: $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | cut -c1-120)"
        kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    done
    L1=/tmp/spc-console.log S1=/tmp/spc-serial.log
    SPC_MODE=; spc_spawn a $L1 $S1
    SA=$SPC_DOM
    if [ -n "$SA" ]; then
        pass "spawncon-running (stubdomain $SA, libstubdm consoles, running after $SPC_MS ms)"
        fig spawncon_to_running_ms $SPC_MS
        sleep 3
        st=$(be_states $SA)
        info "backend states of consoles 0-3: $st"
        if [ "$st" = "4 4 4 4 " ]; then pass "spawncon-consoles (consoles 0-3 Connected, served by the library)"
        else fail "spawncon-consoles" "backend states $st (want 4 4 4 4)"; spc_dump a $L1; fi
        # no QEMU at all in dom0 (libxl's ioemu backend would be one with
        # -xen-domid <stubdomain>)
        q=$(ps -eo pid,comm,args | awk '$2 ~ /qemu/' | cut -c1-200)
        if [ -z "$q" ]; then pass "spawncon-no-dom0-qemu (ps: no qemu process in dom0)"
        else fail "spawncon-no-dom0-qemu" "$(echo "$q" | tr '\n' '|')"; fi
        s1=$(wc -c < $L1); sleep 5; s2=$(wc -c < $L1)
        info "console-0 log $L1: $s1 then $s2 bytes"
        grep -a 'XT-STUB \[' $L1 | head -n 12 | sed 's/^/  spc-console| /'
        if grep -aq 'Run /init' $L1 && grep -aq 'XT-STUB.*init started' $L1 && grep -aq 'QEMU ready' $L1; then
            pass "spawncon-log (console 0 to the log file: kernel boot, the init's lines and QEMU's start; $s2 bytes)"
        else fail "spawncon-log" "$L1 has $s2 bytes without the kernel/init lines"; spc_dump a $L1; fi
        if grep -aq 'Waiting for devices to initialise\|Timeout connecting to device' $L1; then
            fail "spawncon-no-xenbus-wait" "$(grep -a 'Waiting for devices\|Timeout connecting' $L1 | tr '\n' '|')"
        else pass "spawncon-no-xenbus-wait (the kernel did not wait for an unconnected console)"; fi
        info "serial (console 3) $S1: $(wc -c < $S1 2>/dev/null || echo 0) bytes: $(tr -c '[:print:]\n' ' ' < $S1 2>/dev/null | grep -a . | head -n 4 | tr '\n' '|' | cut -c1-300)"
        if grep -aq 'XT-STUB-SERIAL /dev/hvc3' $S1 2>/dev/null; then
            pass "spawncon-serial (console 3 to its file: the stubdomain's line$(grep -aq SeaBIOS $S1 && echo ' and SeaBIOS through sgabios'))"
        else fail "spawncon-serial" "$S1: $(wc -c < $S1 2>/dev/null) bytes"; fi
        # ---- save (another process, console 1) -----------------------------
        spc_stop
        info "after the --serve process stopped: backend states $(be_states $SA) (2 = let go, frontend still connected)"
        rm -f /tmp/spc.save
        t=$(ms); out=$(stubdm-ctl -v save "$SA" --out /tmp/spc.save --timeout 120 2>/tmp/spc-save.err); rc=$?; t=$(( $(ms) - t ))
        cp /tmp/spc-save.err $OUT/spawncon-save-debug.log
        sz=$(wc -c < /tmp/spc.save 2>/dev/null || echo 0)
        hdr=$(head -c 4 /tmp/spc.save 2>/dev/null)
        info "stubdm-ctl save: exit $rc after $t ms, $sz bytes, header '$hdr': $out $(grep -v '^\[' /tmp/spc-save.err | tr '\n' ' ')"
        grep -a 'saved\|stream-end\|reported\|quiet' /tmp/spc-save.err | tail -n 4 | cut -c1-300 | sed 's/^/  save| /'
        if [ $rc = 0 ] && [ "$sz" -gt 0 ] && [ "$hdr" = QEVM ]; then
            pass "spawncon-save (stubdm-ctl save through console 1: $sz bytes, QEVM, $t ms)"
            fig spawncon_save_bytes $sz; fig spawncon_save_ms $t
        else fail "spawncon-save" "exit $rc, $sz bytes, header '$hdr'"; spc_dump a $L1; fi
        grep -a 'xt-hvc\|XT-STUB \[' $L1 | tail -n 6 | sed 's/^/  spc-console| /'
        stubdm-ctl destroy "$SA" >/dev/null 2>&1
        # ---- restore (a new spawn, console 2) ------------------------------
        if [ -s /tmp/spc.save ]; then
            L2=/tmp/spc-console-r.log S2=/tmp/spc-serial-r.log
            SPC_MODE=restore; spc_spawn r $L2 $S2 --restore /tmp/spc.save
            SR=$SPC_DOM
            if [ -n "$SR" ]; then
                fig spawncon_restore_to_running_ms $SPC_MS
                grep -a 'restored\|console 2' /tmp/spc-r.err | tail -n 4 | cut -c1-300 | sed 's/^/  restore| /'
                spc_stop
                qm=$(stubdm-ctl qmp "$SR" "$HGUEST" query-migrate 2>&1); qs=$(stubdm-ctl qmp "$SR" "$HGUEST" query-status 2>&1)
                echo "  query-migrate: $qm"; echo "  query-status: $qs"
                grep -a 'xt-hvc\|XT-STUB \[\|qemu-system' $L2 | tail -n 8 | sed 's/^/  spc-console-r| /'
                if echo "$qm" | grep -q '"completed"' && echo "$qs" | grep -q '"status": *"\(paused\|running\)"'; then
                    pass "spawncon-restore (spawn --restore: QEMU loaded the $sz-byte stream through console 2: query-migrate completed, status $(echo "$qs" | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p') (-S); $SPC_MS ms to running)"
                else fail "spawncon-restore" "query-migrate: $qm; query-status: $qs"; spc_dump r $L2; fi
                stubdm-ctl destroy "$SR" >/dev/null 2>&1
            else
                fail "spawncon-restore" "spawn --restore did not reach running: $(grep -v '^\[' /tmp/spc-r.err | tr '\n' ' ' | cut -c1-400)"
                spc_dump r $L2; spc_stop
            fi
        fi
    else
        fail "spawncon-running" "no stubdomain after $(( $(ms) - SPC_T0 )) ms: $(grep -v '^\[' /tmp/spc-a.err | tr '\n' ' ' | cut -c1-400)"
        spc_dump a $L1; spc_stop
    fi
    for d in xt-spc-a xt-spc-r; do D=$(xl domid $d 2>/dev/null); [ -n "$D" ] && kill_stub "$D" "$D"; done
fi

# ===================================================================== spawnqemu (library spawn + real qemu-xen)
# The library's spawn with the REAL qemu-xen (and privcmd-shim.so) in the
# stubdomain serving a real HVM guest: the paused xt-hguest's dom0 QEMU is
# stopped (SIGTERM: it destroys its ioreq server), the stubdomain gets
# libxl-style dm-argv and xt.dm=qemu-xen, then the guest is unpaused and
# must reach SeaBIOS through the stubdomain's device model.
# memcheck_start TAG / memcheck_end TAG: xt-memcheck (256 MB of dom0
# memory, pattern-checked twice a second) around a section: any change is
# memory corruption from outside the process (docs/real-xen.md).
memcheck_start() { xt-memcheck 256 900 > /tmp/memcheck-$1.log 2>&1 & MC_PID=$!; }
memcheck_end() {
    kill "$MC_PID" 2>/dev/null; wait "$MC_PID"
    sed 's/^/  /' /tmp/memcheck-$1.log | head -n 20
    if grep -q 'end: .* 0 corrupted' /tmp/memcheck-$1.log; then info "memcheck-$1: dom0 memory intact"
    else info "memcheck-$1: DOM0 MEMORY CORRUPTED: $(tail -n1 /tmp/memcheck-$1.log)"; fi
}
if has spawnqemu; then
    section "4e. stubdm-ctl spawn with real qemu-xen in the stubdomain for HVM guest $HGUEST"
    memcheck_start spawnqemu
    pid=$(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null)
    info "dom0 qemu-xen of guest $HGUEST: pid ${pid:-none}"
    [ -n "$pid" ] && { kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done; }
    t=$(ms)
    stubdm-ctl spawn --guest "$HGUEST" --name xt-spq --kernel /mnt/host/images/vmlinuz \
        --ramdisk /mnt/host/images/stubdom-rootfs.cpio.gz --memory 320 \
        --cmdline "console=hvc0 xt.dm=qemu-xen${STUB_EXTRA:+ $STUB_EXTRA}" --console-backend xenconsoled --timeout 150 --qmp-status --qmp-timeout 60 \
        -- -xen-domid "$HGUEST" -no-shutdown -nodefaults -no-user-config -name xt-hguest -display none \
        -nographic -boot order=c -net none -machine xenfv,suppress-vmdesc=on -m 32 \
        > /tmp/spq.out 2> /tmp/spq.err; rc=$?
    t=$(( $(ms) - t ))
    SQ=$(head -n1 /tmp/spq.out)
    sed 's/^/  spawn| /' /tmp/spq.err
    grep -a 'XT-STUB' "$(conlog xt-spq)" 2>/dev/null | grep -v 'XT-STUB-ARGV ' | sed 's/^/  stub| /'
    if [ $rc = 0 ] && [ -n "$SQ" ]; then
        fig spawn_qemu_xen_to_running_ms $t
        xs_dump "$SQ" "$HGUEST" $OUT/spawnqemu-xs-running.txt
        # not `xl unpause`: it resumes libxl's (stopped) dom0 QEMU over QMP
        # first and does not unpause when that fails
        xt-unpause "$HGUEST" || info "xt-unpause $HGUEST failed"
        i=0; ok=
        while [ $i -lt 120 ]; do
            # SeaBIOS itself (hvmloader's "System requested SeaBIOS" is not enough)
            xl dmesg | grep -q "(d$HGUEST) \(SeaBIOS (version\|No bootable device\|Booting from\)" && { ok=1; break; }
            gone "$SQ" && break
            sleep 1; i=$((i + 1))
        done
        # at once: SeaBIOS reboots the guest 60 s after "No bootable
        # device", and xl's monitor of xt-hguest then restarts it, which
        # destroys its device model (device-model-domid: our stubdomain)
        out=$(stubdm-ctl qmp "$SQ" "$HGUEST" query-status 2>&1)
        xl dmesg | grep "(d$HGUEST)" | grep -i 'HVM Loader\|SeaBIOS (version\|Booting\|bootable' | sed 's/^/  guest| /'
        xl dmesg | grep "(d$HGUEST)" | tail -n 3 | sed 's/^/  guest-last| /'
        grep -a 'segfault\|device model exited\|XT-STUB-QEMU\|XT-STUB-DMLOG\|XT-SHIM\|XT-MEMCHECK' "$(conlog xt-spq)" 2>/dev/null | sed 's/^/  stub| /'
        xs_dump "$SQ" "$HGUEST" $OUT/spawnqemu-xs-end.txt
        xl dmesg | grep "(d$HGUEST)" > $OUT/spawnqemu-guest.log
        echo "  query-status: $out"
        if [ -n "$ok" ]; then pass "spawn-qemu-xen (library spawn, real qemu-xen in the stubdomain: running after $t ms; the HVM guest reached SeaBIOS; query-status $out)"
        else fail "spawn-qemu-xen" "running after $t ms, but the guest did not reach SeaBIOS ($(gone "$SQ" && echo 'the stubdomain is gone' || echo '120 s'))"; fi
        stubdm-ctl destroy "$SQ" >/dev/null 2>&1
    else
        fail "spawn-qemu-xen" "exit $rc after $t ms: $(tr '\n' ' ' < /tmp/spq.err)"
        tail -n 30 "$(conlog xt-spq)" 2>/dev/null | sed 's/^/  console| /'
        grep -a 'XT-MEMCHECK\|XT-SHIM-CRASH \(signal\|rip\)' "$(conlog xt-spq)" 2>/dev/null | sed 's/^/  stub| /'
    fi
    xl destroy "$HGUEST" 2>/dev/null; HGUEST=
    memcheck_end spawnqemu
fi

# ===================================================================== bootdisk (the whole path: disk in, serial out)
# An HVM guest boots from a disk served by the real qemu-xen in a library
# stubdomain, and its serial output reaches a dom0 file through the
# library's console 3.  The disk: a 1 MiB raw image whose MBR boot sector
# (mk-bootsector.sh, hand-assembled) writes XT-BOOTED-FROM-XVDA to COM1
# and idles (sti; hlt: a halt with interrupts off would power the guest
# off, and xl's monitor would then destroy it and its device model, our
# stubdomain); given with --disk (the library runs the block script: a loop
# device; blkback; the stubdomain's /dev/xvda), and to qemu-xen as the
# guest's IDE disk as libxl gives it to a Linux stubdomain's QEMU
# (/dev/xvda, format=host_device: /work/shared/notes/protocol.md).  The serial: -serial /dev/hvc3
# (libxl's form), console 3 served by the library (--console-backend
# libstubdm --serial file:PATH --serve).  The guest is made as for 4e, fresh
# (xt-hguest, created paused with a dom0 qemu-xen, which is stopped, as 4e
# does; an earlier section's guest is destroyed first); xt-unpause, then
# the marker must reach the file.  Destroy: no domain, node or loop device.
# bd_leaks: "" if nothing the spawn made is left, else what is.  Nodes the
# guest itself made under /local/domain/<guest> while it ran (owner: the
# guest) are not the spawn's; they are listed as INFO.
# (NAME: the stubdomain's name, xt-bd by default; section stubdmd's too.)
bd_leaks() {
    l= nm=${1:-xt-bd}
    xl list 2>/dev/null | grep -q "$nm " && l="domain: $(xl list | grep "$nm " | tr -s ' ');"
    xs_snapshot /tmp/xs-after-$nm
    for p in $(LC_ALL=C comm -13 /tmp/xs-before /tmp/xs-after-$nm); do
        perm=
        case $p in
            /local/domain/$HGUEST/*)
                perm=$(xenstore-ls -fp "${p%/*}" 2>/dev/null | awk -v p="$p" 'index($0, p " = ") == 1' | sed -n 's/.*(\([^)]*\))$/\1/p')
                case $perm in n$HGUEST|n$HGUEST,*) echo "$p ($perm)" >> /tmp/bd-guest-nodes; continue ;; esac ;;
        esac
        l="$l $p${perm:+ ($perm)}"
    done
    echo "$l"
}
if has bootdisk; then
    section "4h. bootdisk: HVM guest boots from xvda served by qemu-xen in a library stubdomain; its serial to a dom0 file through console 3"
    for m in xen-blkback loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    # a fresh guest: one that no earlier section's stubdomain served
    [ -n "$HGUEST" ] && { xl destroy "$HGUEST" 2>/dev/null; HGUEST=; }
    mk_hvm_guest
    memcheck_start bootdisk
    BD_IMG=/tmp/xt-boot.img BD_LOG=/tmp/bd-console.log BD_SER=/tmp/bd-serial.log
    BD_MARK=XT-BOOTED-FROM-XVDA
    rm -f "$BD_LOG" "$BD_SER" /tmp/bd.out /tmp/bd-guest-nodes
    sh /mnt/host/bin/mk-bootsector.sh "$BD_IMG" "$BD_MARK"
    BD_SUM=$(sha256sum $BD_IMG | cut -d' ' -f1) BD_SIZE=$(stat -c %s $BD_IMG)
    info "boot image $BD_IMG: $BD_SIZE bytes, sha256 $BD_SUM, signature $(od -An -tx1 -j510 -N2 $BD_IMG | tr -d ' '), marker as text in it: $(grep -c "$BD_MARK" $BD_IMG)"
    pid=$(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null)
    info "dom0 qemu-xen of guest $HGUEST: pid ${pid:-none}"
    [ -n "$pid" ] && { kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done; }
    xs_snapshot /tmp/xs-before
    BD_T0=$(ms)
    stubdm-ctl -v spawn --guest "$HGUEST" --name xt-bd --kernel /mnt/host/images/vmlinuz \
        --ramdisk /mnt/host/images/stubdom-rootfs.cpio.gz --memory 320 \
        --cmdline "console=hvc0 xt.dm=qemu-xen xt.diskcheck${STUB_EXTRA:+ $STUB_EXTRA}" \
        --console-backend libstubdm --log "$BD_LOG" --serial "file:$BD_SER" --disk "$BD_IMG" \
        --timeout 240 --qmp-status --qmp-timeout 60 --serve \
        -- -xen-domid "$HGUEST" -no-shutdown -nodefaults -no-user-config -name xt-hguest -display none \
        -nographic -boot order=c -net none -machine xenfv,suppress-vmdesc=on -m 32 \
        -drive file=/dev/xvda,if=ide,index=0,readonly=off,media=disk,format=host_device,cache=writeback \
        -serial /dev/hvc3 \
        > /tmp/bd.out 2> /tmp/bd.err &
    BD_PID=$! BD= BD_MS=
    i=0
    while [ $i -lt 1600 ] && kill -0 $BD_PID 2>/dev/null; do
        BD=$(head -n1 /tmp/bd.out 2>/dev/null)
        [ -n "$BD" ] && { BD_MS=$(( $(ms) - BD_T0 )); break; }
        sleep 0.2; i=$((i + 1))
    done
    [ -z "$BD" ] && BD=$(head -n1 /tmp/bd.out 2>/dev/null)
    bd_dump() {
        grep -a 'error\|warn\|fail\|hotplug\|console [0-9]' /tmp/bd.err | grep -v 'STUBDM_ENOENT: reading' | tail -n 30 | cut -c1-300 | sed 's/^/  spawn| /'
        grep -a 'XT-STUB' "$BD_LOG" 2>/dev/null | grep -v 'XT-STUB-ARGV ' | tail -n 30 | sed 's/^/  stub| /'
        grep -a 'segfault\|device model exited\|XT-STUB-DMLOG\|XT-SHIM\|XT-MEMCHECK\|Aborted' "$BD_LOG" 2>/dev/null | tail -n 40 | sed 's/^/  stub-crash| /'
        tail -n 20 /var/log/xen/xen-hotplug.log 2>/dev/null | sed 's/^/  hotplug-log| /'
    }
    if [ -n "$BD" ] && [ -n "$BD_MS" ]; then
        pass "bootdisk-running (stubdomain $BD for guest $HGUEST: qemu-xen, xvda and console 3; running and QMP open after $BD_MS ms)"
        fig bootdisk_to_running_ms $BD_MS
        grep -a 'query-status:' /tmp/bd.err | head -n1 | sed 's/^/  /'
        VBD=/local/domain/0/backend/vbd/$BD/51712
        vst=$(xenstore-read $VBD/state 2>&1); vhs=$(xenstore-read $VBD/hotplug-status 2>&1); node=$(xenstore-read $VBD/node 2>&1)
        wait_grep "$BD_LOG" '^XT-STUB-DISK' 30
        got=$(grep -a '^XT-STUB-DISK xvda' "$BD_LOG" | tr -d '\r' | head -n1)
        if [ "$vst" = 4 ] && [ "$vhs" = connected ] && losetup "$node" 2>/dev/null | grep -q "$BD_IMG" &&
           [ "$got" = "XT-STUB-DISK xvda $BD_SUM $BD_SIZE" ]; then
            pass "bootdisk-xvda (vbd Connected, $node on $BD_IMG; the stubdomain's /dev/xvda has the image's sha256 and size)"
        else fail "bootdisk-xvda" "vbd state '$vst', hotplug-status '$vhs', node '$node'; stubdomain: '$got'"; bd_dump; fi
        st=$(be_states $BD)
        info "backend states of consoles 0-3: $st"
        grep -a '^XT-STUB-ARGV [0-9]* \(file=\|-serial\|/dev/hvc\)' "$BD_LOG" | sed 's/^/  stub| /'
        xs_dump "$BD" "$HGUEST" $OUT/bootdisk-xs-running.txt
        # not `xl unpause`: it resumes libxl's (stopped) dom0 QEMU first
        sb=$(wc -c < "$BD_SER" 2>/dev/null || echo 0)
        xt-unpause "$HGUEST" || info "xt-unpause $HGUEST failed"
        BD_TU=$(ms)
        i=0; tm=
        while [ $i -lt 900 ]; do
            grep -aq "$BD_MARK" "$BD_SER" 2>/dev/null && { tm=$(( $(ms) - BD_TU )); break; }
            gone "$BD" && break
            sleep 0.2; i=$((i + 1))
        done
        info "guest $HGUEST: $(xl list "$HGUEST" 2>&1 | tail -n1 | tr -s ' ')"
        # (no stubdm-ctl qmp here: the --serve process holds the one QMP
        # connection it opened for --qmp-status)
        sleep 1
        xl dmesg | grep "(d$HGUEST)" > $OUT/bootdisk-guest.log
        grep -i 'HVM Loader\|SeaBIOS (version\|Booting\|bootable\|ata\|drive' $OUT/bootdisk-guest.log | head -n 20 | sed 's/^/  guest| /'
        tail -n 3 $OUT/bootdisk-guest.log | sed 's/^/  guest-last| /'
        info "serial file $BD_SER: $sb bytes before the unpause, $(wc -c < "$BD_SER" 2>/dev/null || echo 0) after: $(tr -c '[:print:]\n' '.' < "$BD_SER" 2>/dev/null | grep -a . | head -n 5 | tr '\n' '|' | cut -c1-300)"
        hd=$(grep -a 'Booting from Hard Disk' $OUT/bootdisk-guest.log | head -n1)
        # byte for byte: the guest's COM1 is all console 3 carries
        printf '%s\r\n' "$BD_MARK" > /tmp/bd-serial.want
        if [ -n "$tm" ] && [ -n "$hd" ] && cmp -s /tmp/bd-serial.want "$BD_SER"; then
            pass "bootdisk-marker (guest $HGUEST: SeaBIOS '$(echo "$hd" | sed 's/.*) //')', and $BD_MARK, written by the boot sector to COM1, reached $BD_SER through qemu-xen in stubdomain $BD and the library's console 3, $tm ms after the unpause; the file is exactly its $(wc -c < /tmp/bd-serial.want) bytes)"
            fig bootdisk_unpause_to_marker_ms $tm
        else
            fail "bootdisk-marker" "marker ${tm:+after $tm ms}${tm:-not in $BD_SER after $((i / 5)) s}; $BD_SER: $(wc -c < "$BD_SER" 2>/dev/null || echo 0) bytes (want exactly '$BD_MARK' CR LF); SeaBIOS hard-disk boot line: ${hd:-none}; $(gone "$BD" && echo 'the stubdomain is gone')"
            bd_dump
        fi
        grep -a 'segfault\|device model exited\|XT-STUB-QEMU\|XT-STUB-DMLOG\|XT-SHIM\|XT-MEMCHECK' "$BD_LOG" 2>/dev/null | sed 's/^/  stub| /'
        # ---- destroy: the stubdomain, then its --serve process ends
        t=$(ms); out=$(stubdm-ctl destroy "$BD" 2>&1); drc=$?; t=$(( $(ms) - t ))
        echo "  destroy: $out ($t ms)"
        fig bootdisk_destroy_ms $t
        # the --serve process ends by itself once the stubdomain is gone
        i=0; while kill -0 $BD_PID 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
        serve=ended
        if kill -0 $BD_PID 2>/dev/null; then serve="still running 10 s after the destroy"; kill -INT $BD_PID; fi
        wait $BD_PID; info "stubdm-ctl spawn --serve exited $?: $(grep -a '^console [0-9]' /tmp/bd.err | tr '\n' ' ')"
        i=0; while [ $i -lt 50 ] && losetup -a | grep -q "$BD_IMG"; do sleep 0.2; i=$((i + 1)); done
        l=$(bd_leaks)
        loops=$(losetup -a | grep "$BD_IMG")
        [ -s /tmp/bd-guest-nodes ] && info "nodes the guest made under /local/domain/$HGUEST while it ran (its own): $(tr '\n' ' ' < /tmp/bd-guest-nodes)"
        # Xen keeps a dying stubdomain while the guest lives: the guest's
        # ioreq server, made by qemu-xen in it, holds a reference to its
        # emulator domain (ioreq_server_init: get_knownalive_domain) until
        # the server goes with the guest.  So: the guest is destroyed, and
        # then the stubdomain must be gone too.
        dst=$(xl list "$BD" 2>/dev/null | tail -n1 | tr -s ' ')
        info "stubdomain $BD after its destroy, guest $HGUEST still there: ${dst:-gone}"
        xl destroy "$HGUEST" 2>/dev/null; tg=$(ms)
        i=0; while [ $i -lt 150 ] && ! gone "$BD"; do sleep 0.2; i=$((i + 1)); done
        gone "$BD" && dgone="gone $(( $(ms) - tg )) ms after the guest's destroy" || dgone=
        if [ $drc = 0 ] && [ -z "$l" ] && [ -z "$loops" ] && [ "$serve" = ended ] && [ -n "$dgone" ]; then
            pass "bootdisk-destroy (no node or loop device left, the --serve process ended; $t ms; the domain ${dst:+dying until the guest went, }$dgone)"
        else fail "bootdisk-destroy" "exit $drc: $out; left: ${l:-no node} ${loops:+loop: $loops}; --serve $serve; domain $BD: ${dgone:-still there 30 s after the guest's destroy: $(xl list "$BD" 2>&1 | tail -n1 | tr -s ' ')}"; fi
    else
        fail "bootdisk-running" "no stubdomain after $(( $(ms) - BD_T0 )) ms: $(grep -v '^\[' /tmp/bd.err | tr '\n' ' ' | cut -c1-400)"
        bd_dump
        kill -INT $BD_PID 2>/dev/null; wait $BD_PID 2>/dev/null
        D=$(xl domid xt-bd 2>/dev/null); [ -n "$D" ] && kill_stub "$D" "$D"
    fi
    cp /tmp/bd.err $OUT/bootdisk-debug.log; cp "$BD_LOG" $OUT/bootdisk-console.log 2>/dev/null; cp "$BD_SER" $OUT/bootdisk-serial.log 2>/dev/null
    xl destroy "$HGUEST" 2>/dev/null; HGUEST=
    memcheck_end bootdisk
fi

# ===================================================================== stubdmd (issue 15: the service on real Xen)
# bootdisk's guest and disk, but the stubdomain spawned with `stubdm-ctl
# spawn --service` (no --serve: stubdm-ctl exits once it runs) and served
# by stubdmd at its real paths: console 0 into
# /var/log/xen/qemu-dm-<stubdomain>.log, QMP through the proxy at
# /var/run/xen/qmp-libxl-<guest> (stubdm-qmp-client: greeting,
# qmp_capabilities, query-status), the guest's serial (console 3) as a
# pty named by /local/domain/<guest>/serial/0/tty (and the frontend's tty).
# A dom0 reader copies the pty into a file and reopens the path the node
# names whenever its pty hangs up (the daemon that held it died).  The stubdomain's init ticks
# (xt.tick: "XT-STUB-TICK i" every 0.2 s on console 0), so the log shows a
# line lost or written twice.  The daemon is killed with -9 right after
# the guest's unpause and restarted only once SeaBIOS logs "Booting from
# 0000:7c00" (xl dmesg): the boot sector's marker is then written while no
# daemon runs.  The file is still complete because nothing reads console
# 3's ring meanwhile: the guest's bytes wait in the ring (2 KiB, in the
# stubdomain's page, its indexes too), and the next daemon, adopting the
# stubdomain, starts from the consumer index the dead one left; so for
# console 0's ticks.  Then destroy: no domain, node, loop device or
# process left, the proxy socket gone, and stubdmd stops on SIGTERM (0).
if has stubdmd; then
    section "4i. stubdmd: the bootdisk guest's stubdomain spawned with --service, served by the daemon across a kill -9"
    for m in xen-blkback loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    [ -n "$HGUEST" ] && { xl destroy "$HGUEST" 2>/dev/null; HGUEST=; }
    mk_hvm_guest
    pid=$(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null)
    [ -n "$pid" ] && { kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done; }
    SDN=xt-hguest-dm SDE=/tmp/stubdmd.err SDS=/tmp/sdd-serial.log SDR=/tmp/sdd-reader.log
    SDL=/var/log/xen/qemu-dm-$SDN.log SDQ=/var/run/xen/qmp-libxl-$HGUEST SDI=/tmp/xt-sdd.img
    BD_MARK=XT-BOOTED-FROM-XVDA
    rm -f "$SDL"* "$SDS" "$SDR" "$SDE" /tmp/sdd.out /tmp/sdd-qmp.err /tmp/sdd-reader.stop /tmp/bd-guest-nodes
    sh /mnt/host/bin/mk-bootsector.sh "$SDI" "$BD_MARK"
    : > "$SDS"
    # sd_start: a stubdmd at the real paths, in the background ($SD_PID),
    # back once it logged "ready" (bound 20 s); 1 if it did not.
    # --qmp-timeout 600: the daemon adopts the stubdomain when the spawn
    # writes the contract, before the domain is even built, and its QMP
    # open's bound (60 s by default) runs from there; on this nested host
    # the build alone can take minutes (246 s under load in a run).  A
    # QMP open that times out is retried, but up to 30 s apart: the long
    # bound has the open succeed as soon as QEMU answers.
    sd_start() {
        n0=$(grep -c 'stubdmd: info: ready' "$SDE" 2>/dev/null)
        stubdmd --run-dir /run/stubdmd --log-dir /var/log/xen --qmp-dir /var/run/xen --qmp-timeout 600 \
            >> "$SDE" 2>&1 &
        SD_PID=$!
        i=0
        while [ $i -lt 100 ] && kill -0 $SD_PID 2>/dev/null; do
            [ "$(grep -c 'stubdmd: info: ready' "$SDE")" -gt "${n0:-0}" ] && return 0
            sleep 0.2; i=$((i + 1))
        done
        return 1
    }
    # sd_qmp TIMEOUT_S: query-status through the proxy says running
    sd_qmp() { stubdm-qmp-client "$SDQ" query-status "$1" > /tmp/sdd-qmp.out 2>> /tmp/sdd-qmp.err &&
               grep -q '"status": *"running"' /tmp/sdd-qmp.out; }
    # sd_qmp_wait SECONDS -> $SDQ_MS: ms until query-status answered running
    sd_qmp_wait() { t=$(ms); SDQ_MS=
        while [ $(( $(ms) - t )) -lt $(($1 * 1000)) ]; do
            sd_qmp 3 && { SDQ_MS=$(( $(ms) - t )); return 0; }
            sleep 0.1
        done; return 1; }
    sd_ticks() { tr -d '\r' < "$SDL" 2>/dev/null | sed -n 's/^XT-STUB-TICK \([0-9]*\)$/\1/p'; }
    sd_dump() {
        tail -n 25 "$SDE" | cut -c1-300 | sed 's/^/  stubdmd| /'
        grep -a 'error\|warn\|fail\|console [0-9]' /tmp/sdd.err | grep -v 'STUBDM_ENOENT: reading' | tail -n 15 | cut -c1-300 | sed 's/^/  spawn| /'
        grep -a 'XT-STUB' "$SDL" 2>/dev/null | grep -v 'XT-STUB-ARGV \|XT-STUB-TICK' | tail -n 15 | sed 's/^/  stub| /'
        [ -n "$SD" ] && xenstore-ls -f /local/domain/0/backend/console/$SD 2>&1 | head -n 30 | sed 's/^/  xs| /'
        sed 's/^/  reader| /' "$SDR" 2>/dev/null
    }
    if sd_start; then pass "stubdmd-start (stubdmd $SD_PID ready: run-dir /run/stubdmd, log-dir /var/log/xen, qmp-dir /var/run/xen)"
    else fail "stubdmd-start" "no 'ready' from stubdmd in 20 s: $(tail -n 5 "$SDE" | tr '\n' ' ')"; fi
    xs_snapshot /tmp/xs-before
    SD_T0=$(ms)
    stubdm-ctl -v spawn --guest "$HGUEST" --name "$SDN" --kernel /mnt/host/images/vmlinuz \
        --ramdisk /mnt/host/images/stubdom-rootfs.cpio.gz --memory 320 \
        --cmdline "console=hvc0 quiet xt.dm=qemu-xen xt.tick=1500${STUB_EXTRA:+ $STUB_EXTRA}" \
        --console-backend libstubdm --service --serial pty --disk "$SDI" --timeout 300 \
        -- -xen-domid "$HGUEST" -no-shutdown -nodefaults -no-user-config -name xt-hguest -display none \
        -nographic -boot order=c -net none -machine xenfv,suppress-vmdesc=on -m 32 \
        -drive file=/dev/xvda,if=ide,index=0,readonly=off,media=disk,format=host_device,cache=writeback \
        -serial /dev/hvc3 \
        > /tmp/sdd.out 2> /tmp/sdd.err; src=$?
    SD_MS=$(( $(ms) - SD_T0 ))
    SD=$(head -n1 /tmp/sdd.out 2>/dev/null)
    if [ $src = 0 ] && [ -n "$SD" ] && kill -0 $SD_PID 2>/dev/null; then
        pass "stubdmd-spawn (stubdm-ctl spawn --service exited 0 with stubdomain $SD running after $SD_MS ms)"
        fig stubdmd_spawn_to_running_ms $SD_MS
        # ---- served by the first daemon: console 0, QMP, the serial's pty
        sd_qmp_wait 60; q1=$SDQ_MS
        wait_grep "$SDL" 'XT-STUB-ARGV-END' 10
        # the serial's pty: the guest's serial/0/tty (dom0's node, what
        # `xl console -t serial` reads) and the frontend's (`xl console`)
        SDT=/local/domain/$HGUEST/serial/0/tty SDF=/local/domain/$SD/device/console/3/tty
        tty1=$(xenstore-read $SDT 2>/dev/null) fe1=$(xenstore-read $SDF 2>/dev/null)
        mode=$(stat -c %a "$SDQ" 2>/dev/null)
        if [ -n "$q1" ] && grep -aq 'XT-STUB-ARGV-END' "$SDL" && grep -q "adopting $SDN" "$SDE"; then
            pass "stubdmd-serves (adopted $SDN; $SDL has the init's lines ($(wc -l < "$SDL") so far); query-status through $SDQ (mode $mode): running, $q1 ms after the spawn's exit; serial/0/tty ${tty1:-none}, frontend tty ${fe1:-none})"
        else fail "stubdmd-serves" "adopted: $(grep -c "adopting $SDN" "$SDE"); $SDL: $(wc -l < "$SDL" 2>/dev/null || echo no) lines; QMP: ${q1:-no answer in 60 s: $(tail -n 2 /tmp/sdd-qmp.err | tr '\n' ' ')}"; sd_dump; fi
        # The serial reader: the pty the tty node names, copied into $SDS,
        # reopened whenever it ends (the daemon that held it died).
        (   last=
            while [ ! -e /tmp/sdd-reader.stop ]; do
                t=$(xenstore-read $SDT 2>/dev/null)
                if [ -n "$t" ] && [ -c "$t" ]; then
                    echo "$(ms) open $t" >> "$SDR"
                    cat "$t" >> "$SDS" 2>> "$SDR" &
                    echo $! > /tmp/sdd-cat.pid; wait $!
                    echo "$(ms) ended $t ($?)" >> "$SDR"
                fi
                sleep 0.1
            done ) 2>/dev/null &
        SDR_PID=$!
        # ---- the guest boots; the daemon is killed at once
        sb=$(wc -c < "$SDS")
        xt-unpause "$HGUEST" || info "xt-unpause $HGUEST failed"
        SD_TU=$(ms)
        kill -9 $SD_PID; SD_TK=$(ms); wait $SD_PID 2>/dev/null
        k_ticks=$(sd_ticks | wc -l)
        kb=$(xl dmesg | grep -c "(d$HGUEST) Booting from 0000:7c00")
        info "stubdmd $SD_PID killed (-9) $((SD_TK - SD_TU)) ms after the unpause (the guest $([ "$kb" = 0 ] && echo 'not yet at its boot sector' || echo 'ALREADY at its boot sector')); $k_ticks ticks in the log; the socket $([ -S "$SDQ" ] && echo stays || echo is gone)"
        i=0; tb=
        while [ $i -lt 300 ]; do
            xl dmesg | grep -q "(d$HGUEST) Booting from 0000:7c00" && { tb=$(( $(ms) - SD_TU )); break; }
            gone "$SD" && break
            sleep 0.2; i=$((i + 1))
        done
        sleep 1  # the sector's 21 bytes reach console 3's ring
        r_ticks=$(sd_ticks | wc -l)
        info "guest $HGUEST: 'Booting from 0000:7c00' $([ -n "$tb" ] && echo "$tb ms after the unpause" || echo 'not seen in 60 s'); serial file $(wc -c < "$SDS" 2>/dev/null || echo 0) bytes with no daemon (before the unpause: $sb); log ticks $r_ticks (at the kill: $k_ticks)"
        # ---- the restart
        SD_TR=$(ms)
        sd_start || info "the restarted stubdmd logged no 'ready' in 20 s"
        if sd_qmp_wait 60; then
            pass "stubdmd-restart-qmp (a new stubdmd $SD_PID answers query-status running through $SDQ $SDQ_MS ms after its start)"
            fig stubdmd_restart_to_qmp_ms $SDQ_MS
        else fail "stubdmd-restart-qmp" "no running through $SDQ in 60 s after the restart: $(tail -n 3 /tmp/sdd-qmp.err | tr '\n' ' ')"; sd_dump; fi
        i=0; tm=
        while [ $i -lt 150 ]; do
            grep -aq "$BD_MARK" "$SDS" 2>/dev/null && { tm=$(ms); break; }
            sleep 0.2; i=$((i + 1))
        done
        # when the reader wrote it (the file's mtime; this loop lags on a
        # loaded host), if stat can say it to the ms
        tf=$(stat -c %.3Y "$SDS" 2>/dev/null | tr -d .)
        [ -n "$tm" ] && [ -n "$tf" ] && [ "$tf" -le "$tm" ] && [ "$tf" -ge "$SD_TR" ] && tm=$tf
        sleep 1  # whatever else would come (nothing should)
        printf '%s\r\n' "$BD_MARK" > /tmp/sdd-serial.want
        tty2=$(xenstore-read $SDT 2>/dev/null) fe2=$(xenstore-read $SDF 2>/dev/null)
        if [ -n "$tm" ] && cmp -s /tmp/sdd-serial.want "$SDS" && [ -c "$tty2" ] && [ "$tty2" = "$fe2" ]; then
            pass "stubdmd-serial ($BD_MARK, written by the guest while no stubdmd ran, reached $SDS through the new daemon's pty $tty2, named by $SDT and the frontend's tty (before the kill: $tty1): exactly its 21 bytes; $((tm - SD_TU)) ms after the unpause, $((tm - SD_TR)) ms after the restart)"
            fig stubdmd_unpause_to_marker_ms $((tm - SD_TU))
            fig stubdmd_restart_to_marker_ms $((tm - SD_TR))
        else
            fail "stubdmd-serial" "${tm:+marker after $((tm - SD_TU)) ms, but }$SDS: $(wc -c < "$SDS" 2>/dev/null || echo 0) bytes ($(tr -c '[:print:]' '.' < "$SDS" 2>/dev/null | cut -c1-100)), want exactly '$BD_MARK' CR LF; serial/0/tty '${tty1:-none}' then '${tty2:-none}', frontend tty '${fe1:-none}' then '${fe2:-none}'"
            sd_dump
        fi
        # ---- console 0 across the kill: every tick once, in order (some
        # ticks the new daemon logged after those of the ring, bound 30 s)
        i=0; while [ $i -lt 150 ] && [ "$(sd_ticks | wc -l)" -le $((r_ticks + 5)) ]; do sleep 0.2; i=$((i + 1)); done
        sd_ticks > /tmp/sdd-ticks
        nt=$(wc -l < /tmp/sdd-ticks)
        bad=$(awk '$1 != NR { print NR ": " $1; exit }' /tmp/sdd-ticks)
        dup=$(tr -d '\r' < "$SDL" | grep -a '^XT-STUB' | sort | uniq -d | head -n 3 | tr '\n' ' ')
        if [ -z "$bad" ] && [ -z "$dup" ] && [ "$nt" -gt $((r_ticks + 5)) ]; then
            pass "stubdmd-log-continuous ($SDL: ticks 1..$nt each once and in order across the kill -9 ($k_ticks logged at the kill, $r_ticks at the restart), no XT-STUB line twice)"
        else fail "stubdmd-log-continuous" "$nt ticks (at the kill $k_ticks, at the restart $r_ticks); ${bad:+first out of order: line $bad; }${dup:+twice: $dup}"; fi
        # ---- cleanup: destroy, then nothing left, then SIGTERM
        # (the reader's cat, killed until the reader saw the stop file)
        touch /tmp/sdd-reader.stop; i=0
        while kill -0 $SDR_PID 2>/dev/null && [ $i -lt 25 ]; do
            kill "$(cat /tmp/sdd-cat.pid 2>/dev/null)" 2>/dev/null; sleep 0.2; i=$((i + 1))
        done
        wait $SDR_PID 2>/dev/null
        t=$(ms); out=$(stubdm-ctl destroy "$SD" 2>&1); drc=$?; t=$(( $(ms) - t ))
        echo "  destroy: $out ($t ms)"
        fig stubdmd_destroy_ms $t
        i=0; while [ $i -lt 50 ] && losetup -a | grep -q "$SDI"; do sleep 0.2; i=$((i + 1)); done
        # The guest's serial/0/tty is stubdmd's, written [n0, rG] in the
        # guest's directory: emptied when the stubdomain goes (no pts path
        # another pty may get), left with the guest, as libxl's own.
        i=0; while [ $i -lt 50 ] && [ -n "$(xenstore-read /local/domain/$HGUEST/serial/0/tty 2>/dev/null)" ]; do sleep 0.2; i=$((i + 1)); done
        gser=$(xenstore-read /local/domain/$HGUEST/serial/0/tty 2>/dev/null)
        l=$(bd_leaks "$SDN" | sed "s# /local/domain/$HGUEST/serial\(/0\)\{0,1\}\(/tty\)\{0,1\} (n0,r$HGUEST)##g")
        l=$(echo $l)
        [ -n "$gser" ] && l="$l guest's serial/0/tty still '$gser'"
        loops=$(losetup -a | grep "$SDI")
        # the stubdomain stays dying until its guest goes (see bootdisk)
        xl destroy "$HGUEST" 2>/dev/null
        i=0; while [ $i -lt 150 ] && ! gone "$SD"; do sleep 0.2; i=$((i + 1)); done
        i=0; while [ $i -lt 50 ] && [ -e "$SDQ" ]; do sleep 0.2; i=$((i + 1)); done
        procs=$(ps -eo pid,args | grep -e 'stubdm-ctl' -e '/etc/xen/scripts/' -e 'cat /dev/pts' | grep -v grep | tr -s ' ' | tr '\n' ';')
        [ -s /tmp/bd-guest-nodes ] && info "nodes the guest made under /local/domain/$HGUEST while it ran (its own): $(tr '\n' ' ' < /tmp/bd-guest-nodes)"
        if [ $drc = 0 ] && [ -z "$l" ] && [ -z "$loops" ] && [ -z "$procs" ] && gone "$SD" && [ ! -e "$SDQ" ]; then
            pass "stubdmd-destroy (stubdm-ctl destroy $t ms; no domain, node, loop device or process left; the guest's serial/0/tty emptied; the daemon removed $SDQ)"
        else fail "stubdmd-destroy" "exit $drc: $out; left: ${l:-no node} ${loops:+loop: $loops} ${procs:+processes: $procs} $(gone "$SD" || echo "domain $SD") $([ -e "$SDQ" ] && echo "socket $SDQ")"; sd_dump; fi
        ts=$(ms); kill -TERM $SD_PID; i=0
        while kill -0 $SD_PID 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
        if kill -0 $SD_PID 2>/dev/null; then fail "stubdmd-sigterm" "still running 10 s after SIGTERM"; kill -9 $SD_PID; wait $SD_PID
        else wait $SD_PID; trc=$?
            if [ $trc = 0 ]; then pass "stubdmd-sigterm (exit 0 $(( $(ms) - ts )) ms after SIGTERM)"
            else fail "stubdmd-sigterm" "exit $trc"; fi
        fi
    else
        fail "stubdmd-spawn" "exit $src after $SD_MS ms, stubdomain '${SD:-none}', stubdmd $(kill -0 $SD_PID 2>/dev/null && echo running || echo gone): $(grep -v '^\[' /tmp/sdd.err | tr '\n' ' ' | cut -c1-400)"
        sd_dump
        kill -TERM $SD_PID 2>/dev/null; wait $SD_PID 2>/dev/null
        D=$(xl domid "$SDN" 2>/dev/null); [ -n "$D" ] && stubdm-ctl destroy "$D" > /dev/null 2>&1
    fi
    cp "$SDE" $OUT/stubdmd-daemon.log; cp /tmp/sdd.err $OUT/stubdmd-spawn.log; cp "$SDL" $OUT/stubdmd-qemu-dm.log 2>/dev/null
    cp "$SDS" $OUT/stubdmd-serial.log 2>/dev/null; cp "$SDR" $OUT/stubdmd-reader.log 2>/dev/null
    xl destroy "$HGUEST" 2>/dev/null; HGUEST=
fi

# ===================================================================== side (libxl vs libstubdm)
if has side; then
    section "6. side by side: xl create (libxl's stubdomain path) vs stubdm-ctl spawn, same image"
    [ -n "$HGUEST" ] || mk_hvm_guest
    bash /mnt/host/bin/bench-side-by-side.sh "$HGUEST" > /tmp/side.out 2>&1
    sed -n '/^FIGURE\|^SIDE-/!s/^/  /p' /tmp/side.out
    grep '^FIGURE' /tmp/side.out
    grep '^SIDE-FAIL' /tmp/side.out | while read -r _ what; do echo "INFO side: $what"; done
    if grep -q '^SIDE-PASS libxl' /tmp/side.out && grep -q '^SIDE-PASS libstubdm' /tmp/side.out &&
       ! grep -q '^SIDE-FAIL' /tmp/side.out; then pass "side-by-side (both running, QMP measured on both)"
    else fail "side-by-side" "$(grep '^SIDE-' /tmp/side.out | tr '\n' ';')"; fi
fi

# ===================================================================== pcihw (issue 18: the hardware side)
# With XT_IOMMU=1 (run.sh): Xen's VT-d with interrupt remapping, QEMU's edu
# device (1234:11e8) seen by dom0, made assignable through pciback and
# given back.  The stubdomain path itself comes later.
if has pcihw; then
    section "pcihw. the nested machine's IOMMU and edu device: assignable through pciback"
    xl dmesg | grep -i -e 'vt-d' -e 'iommu' -e 'interrupt remapping' | head -n 12 | sed 's/^/  xen| /'
    iommu=$(xl info 2>/dev/null | awk -F': ' '/virt_caps/ { print $2 }')
    info "xl info virt_caps: $iommu"
    PD=
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null):$(cat "$d/device" 2>/dev/null)" = 0x1234:0x11e8 ] && PD=${d##*/}
    done
    info "edu device: ${PD:-none}; driver: $(basename "$(readlink /sys/bus/pci/devices/$PD/driver 2>/dev/null)" 2>/dev/null)"
    modprobe xen-pciback 2>&1 | sed 's/^/  modprobe| /'
    if [ -n "$PD" ] && echo "$iommu" | grep -q hvm_directio; then
        t=$(ms); xl pci-assignable-add "$PD" 2>&1 | sed 's/^/  xl| /'; ta=$(( $(ms) - t ))
        al=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
        drv=$(basename "$(readlink /sys/bus/pci/devices/$PD/driver)")
        for f in resource irq; do sed "s/^/  sysfs $f| /" /sys/bus/pci/devices/$PD/$f | head -n 3; done
        xl pci-assignable-remove "$PD" 2>&1 | sed 's/^/  xl| /'
        al2=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
        if echo "$al" | grep -q "$PD" && [ "$drv" = pciback ] && ! echo "$al2" | grep -q "$PD"; then
            pass "pcihw-assignable ($PD: pciback in $ta ms, listed, given back)"
        else fail "pcihw-assignable" "$PD: list '$al', driver '$drv', after remove '$al2'"; fi
    else fail "pcihw-assignable" "edu device '${PD:-none}', virt_caps '$iommu' (XT_IOMMU=1?)"; fi
fi

# ===================================================================== pci (issue 18: passthrough through a library stubdomain)
# With XT_IOMMU=1 (run.sh).  The edu device made assignable (pciback); a
# fresh HVM guest (passthrough enabled, created paused, its dom0 qemu-xen
# stopped); `stubdm-ctl spawn --pci` of a stubdomain with the real qemu-xen
# and a disk whose boot sector (pci-probe.s) finds the device in the
# guest's PCI configuration space, reads edu's identification register
# through BAR0 and writes and reads back its liveness register; the line
# it writes to COM1 (QEMU: -serial file:/dev/hvc0) reaches xenconsoled's
# log of console 0, and Xen's `xl dmesg` through port 0xe9 (consoles
# served by xenconsoled: the spawn exits, so later stubdm-ctl calls can
# open QMP; the library's own console backend lives in its process).  At
# runtime: pci-detach (device_del; the boot sector's idle loop ejects as an
# ACPI OS would; DEVICE_DELETED), then libxl's `xl pci-attach` of the same
# device to a second guest with a dom0 qemu-xen (timed: libxl's figure; it
# succeeds only if the detach deassigned the device in Xen), that guest
# destroyed, and pci-attach again to the running guest (timed).  The
# stubdomain's destroy with the device attached: nothing left, the device
# pciback's and assignable again, `xl pci-assignable-list` as before.
if has pci; then
    section "pci. PCI passthrough through a library stubdomain: edu read by the guest at its slot, detached and attached at runtime"
    for m in xen-pciback xen-blkback loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    PD=
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null):$(cat "$d/device" 2>/dev/null)" = 0x1234:0x11e8 ] && PD=${d##*/}
    done
    PA0=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
    [ -n "$HGUEST" ] && { xl destroy "$HGUEST" 2>/dev/null; HGUEST=; }
    if [ -z "$PD" ]; then fail "pci-spawn" "no edu device in dom0 (XT_IOMMU=1?)"
    else
    t=$(ms); xl pci-assignable-add "$PD" 2>&1 | sed 's/^/  xl| /'
    info "$PD ($(cat /sys/bus/pci/devices/$PD/vendor):$(cat /sys/bus/pci/devices/$PD/device)) pciback's in $(( $(ms) - t )) ms; assignable before: '${PA0}'"
    PA1=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
    mk_hvm_guest 'passthrough = "enabled"'
    pid=$(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null)
    [ -n "$pid" ] && { kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done; }
    PCI_IMG=/tmp/xt-pci.img PCI_SER=$(conlog xt-pci)
    rm -f "$PCI_SER" /tmp/pci.out /tmp/pci.err
    dd if=/dev/zero of="$PCI_IMG" bs=1M count=1 2>/dev/null
    dd if=/mnt/host/bin/pci-probe.mbr of="$PCI_IMG" conv=notrunc 2>/dev/null
    xs_snapshot /tmp/xs-before
    t=$(ms)
    stubdm-ctl -v spawn --guest "$HGUEST" --name xt-pci --kernel /mnt/host/images/vmlinuz \
        --ramdisk /mnt/host/images/stubdom-rootfs.cpio.gz --memory 320 \
        --cmdline "console=hvc0 xt.dm=qemu-xen xt.dmlog xen_privcmd.unrestricted=1${STUB_EXTRA:+ $STUB_EXTRA}" \
        --console-backend xenconsoled --disk "$PCI_IMG" --pci "$PD" --timeout 240 --qmp-status --qmp-timeout 60 \
        -- -xen-domid "$HGUEST" -no-shutdown -nodefaults -no-user-config -name xt-hguest -display none \
        -nographic -boot order=c -net none -machine xenfv,suppress-vmdesc=on -m 32 \
        -drive file=/dev/xvda,if=ide,index=0,readonly=off,media=disk,format=host_device,cache=writeback \
        -serial file:/dev/hvc0 > /tmp/pci.out 2> /tmp/pci.err; rc=$?
    PS_MS=$(( $(ms) - t )) PS=$(head -n1 /tmp/pci.out)
    PBE=/local/domain/0/backend/pci/$PS/0
    pci_dump() {
        grep -a 'pci\|PCI\|error\|warn\|fail' /tmp/pci.err | tail -n 30 | cut -c1-300 | sed 's/^/  spawn| /'
        grep -a 'XT-STUB\|pcifront\|pci 0000\|xen_pt\|xen-pci\|privcmd' "$(conlog xt-pci)" 2>/dev/null | grep -v 'XT-STUB-ARGV ' | tail -n 60 | cut -c1-300 | sed 's/^/  stub| /'
        xenstore-ls -f "$PBE" 2>/dev/null | sed 's/^/  backend| /'
        xl dmesg | grep -i "$PD\|d$HGUEST\|d$PS" | grep -iv 'hvm loader\|seabios' | tail -n 15 | sed 's/^/  xen| /'
    }
    spawn_attach=$(grep -a "PCI device $PD attached to guest" /tmp/pci.err | head -n1)
    sa_s=$(echo "$spawn_attach" | sed -n 's/.* after \([0-9.]*\) s.*/\1/p')
    if [ $rc = 0 ] && [ -n "$PS" ]; then
        PL=$(stubdm-ctl pci-list "$PS" 2>&1); slot=$(echo "$PL" | awk -v d="$PD" '$1 == d { print $2 }')
        pass "pci-spawn (stubdomain $PS for guest $HGUEST running after $PS_MS ms with $PD on its bus: pciback's vdev-0 '$(xenstore-read $PBE/vdev-0 2>&1)', QEMU's slot ${slot:-none}; the attach's QMP part done ${sa_s:-?} s after its start)"
        fig pci_spawn_to_running_ms $PS_MS
        [ -n "$sa_s" ] && fig pci_spawn_attach_ms "$(echo "$sa_s" | awk '{ printf "%d", $1 * 1000 }')"
        xenstore-ls -f "$PBE" | sed 's/^/  backend| /'
        grep -a 'pcifront\|pci 0000:00:00\|xen_pt' "$(conlog xt-pci)" 2>/dev/null | head -n 12 | cut -c1-200 | sed 's/^/  stub| /'
        xs_dump "$PS" "$HGUEST" $OUT/pci-xs-running.txt
        xt-unpause "$HGUEST" || info "xt-unpause $HGUEST failed"
        tu=$(ms)
        i=0; tm=
        while [ $i -lt 300 ]; do
            xl dmesg | grep -aq "(d$HGUEST) XT-PCI-EDU" && { tm=$(( $(ms) - tu )); break; }
            sleep 0.2; i=$((i + 1))
        done
        # the values from port 0xe9 (Xen prints each guest line whole);
        # COM1 shares console 0 with the stubdomain's kernel, whose
        # messages may come between its characters
        com1=$(tr -d '\r' < "$PCI_SER" | grep -a 'XT-PCI-EDU slot=' | head -n1)
        line=$(xl dmesg | grep -a "(d$HGUEST) XT-PCI-EDU slot=" | head -n1 | sed 's/^.*(d[0-9]*) //')
        info "guest's port 0xe9 (xl dmesg): ${line:-none}; its COM1 (console 0's log): ${com1:-none}"
        xl dmesg | grep "(d$HGUEST)" | grep -i 'pci\|bar\|Booting' | head -n 12 | sed 's/^/  guest| /'
        gs=$(echo "$line" | sed -n 's/.*slot=\([0-9a-f]*\) .*/\1/p')
        gid=$(echo "$line" | sed -n 's/.* id=\([0-9a-f]*\).*/\1/p')
        glive=$(echo "$line" | sed -n 's/.* live=\([0-9a-f]*\).*/\1/p')
        if [ -n "$tm" ] && [ "$gid" = 010000ed ] && [ "$glive" = edcba987 ] && [ "$gs.0" = "$slot" ] && [ -n "$com1" ]; then
            pass "pci-guest-reads (guest $HGUEST found 1234:11e8 at slot $gs, QEMU's slot; BAR0 identification register 0x$gid; liveness 0x12345678 written, 0x$glive read back; on port 0xe9 and COM1 $tm ms after the unpause)"
            fig pci_unpause_to_bar0_ms $tm
        else fail "pci-guest-reads" "line '${line:-none}' (want slot $slot, id 010000ed, live edcba987)"; pci_dump; fi
        # ---- runtime detach: device_del, the guest ejects, DEVICE_DELETED
        t=$(ms); out=$(stubdm-ctl -v pci-detach "$PS" "$HGUEST" "$PD" 2>/tmp/pci-detach.err); drc=$?; td=$(( $(ms) - t ))
        ej=$(xl dmesg | grep -a "(d$HGUEST) XT-PCI-EDU eject" | head -n1 | sed 's/^.*(d[0-9]*) //')
        grep -a '^libstubdm\[pci\]' /tmp/pci-detach.err | cut -c1-200 | sed 's/^/  detach| /'
        left=$(xenstore-exists "$PBE" 2>/dev/null && echo "backend $PBE left")
        if [ $drc = 0 ] && [ -n "$ej" ] && [ -z "$left" ] && [ -z "$(stubdm-ctl pci-list "$PS" 2>&1)" ]; then
            pass "pci-detach (runtime, $td ms: device_del, the guest's '$ej', DEVICE_DELETED, the bus removed)"
            fig pci_runtime_detach_ms $td
        else fail "pci-detach" "exit $drc after $td ms: $out $(grep -v xencall /tmp/pci-detach.err | tail -n 3 | tr '\n' ' '); guest: '${ej:-no eject}'; $left"; pci_dump; fi
        # ---- libxl's xl pci-attach of the same device, to a second guest
        # with a dom0 qemu-xen: libxl's figure, and Xen's proof that the
        # detach deassigned the device (else: busy)
        { hvm_cfg xt-pg2; echo 'passthrough = "enabled"'; } > /tmp/xt-pg2.cfg
        if xl create -p /tmp/xt-pg2.cfg > /tmp/xt-pg2.log 2>&1; then
            t=$(ms); xl pci-attach xt-pg2 "$PD" > /tmp/xl-pci.log 2>&1; xrc=$?; tx=$(( $(ms) - t ))
            xl pci-list xt-pg2 2>&1 | sed 's/^/  xl pci-list| /'
            if [ $xrc = 0 ]; then
                pass "pci-xl-attach (libxl's xl pci-attach of $PD to a guest with a dom0 qemu-xen: $tx ms; the device was free in Xen after the library's detach)"
                fig pci_xl_attach_ms $tx
            else fail "pci-xl-attach" "exit $xrc after $tx ms: $(tail -n 5 /tmp/xl-pci.log | tr '\n' ' ')"; fi
            t=$(ms); xl destroy xt-pg2; info "xl destroy of xt-pg2 (its device back to pciback): $(( $(ms) - t )) ms"
            # libxl's record of its assignment (/libxl/pci/BDF) outlives
            # xl destroy: libxl's, not the stubdomain's
            xs_snapshot /tmp/xs-pg2
            grep '^/libxl/pci' /tmp/xs-pg2 | LC_ALL=C comm -13 /tmp/xs-before - > /tmp/xs-libxl-pci
            [ -s /tmp/xs-libxl-pci ] && info "left by libxl: $(tr '\n' ' ' < /tmp/xs-libxl-pci)"
            LC_ALL=C sort -u /tmp/xs-before /tmp/xs-libxl-pci -o /tmp/xs-before
        else fail "pci-xl-attach" "xl create of a second guest: $(tail -n 3 /tmp/xt-pg2.log | tr '\n' ' ')"; fi
        # ---- runtime attach to the running guest
        t=$(ms); out=$(stubdm-ctl -v pci-attach "$PS" "$HGUEST" "$PD" 2>/tmp/pci-attach.err); arc=$?; ta=$(( $(ms) - t ))
        grep -a '^libstubdm\[pci\]' /tmp/pci-attach.err | cut -c1-200 | sed 's/^/  attach| /'
        PL=$(stubdm-ctl pci-list "$PS" 2>&1)
        if [ $arc = 0 ] && echo "$PL" | grep -q "^$PD "; then
            pass "pci-attach (runtime, $ta ms: $PL)"
            fig pci_runtime_attach_ms $ta
        else fail "pci-attach" "exit $arc after $ta ms: $out $(grep -v xencall /tmp/pci-attach.err | tail -n 3 | tr '\n' ' '); list '$PL'"; pci_dump; fi
        # ---- destroy with the device attached
        t=$(ms); out=$(stubdm-ctl destroy "$PS" 2>&1); drc=$?; t=$(( $(ms) - t ))
        info "destroy: exit $drc, $out ($t ms)"
        xl destroy "$HGUEST" 2>/dev/null; HGUEST=
        l=$(bd_leaks xt-pci)
        PA2=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
        drv=$(basename "$(readlink /sys/bus/pci/devices/$PD/driver)")
        if [ $drc = 0 ] && [ -z "$l" ] && [ "$PA2" = "$PA1" ] && [ "$drv" = pciback ]; then
            pass "pci-destroy (exit 0 in $t ms; no domain or node left; $PD pciback's, assignable-list '$PA2' as after pci-assignable-add)"
        else fail "pci-destroy" "exit $drc: $out; left: '$l'; assignable '$PA2' (want '$PA1'); driver $drv"; fi
    else
        fail "pci-spawn" "exit $rc after $PS_MS ms: $(grep -v xencall /tmp/pci.err | tail -n 5 | tr '\n' ' ')"
        pci_dump
        [ -n "$PS" ] && stubdm-ctl destroy "$PS" >/dev/null 2>&1
        xl destroy "$HGUEST" 2>/dev/null; HGUEST=
    fi
    xl pci-assignable-remove "$PD" 2>&1 | sed 's/^/  xl| /'
    PA3=$(xl pci-assignable-list 2>&1 | tr '\n' ' ')
    if [ "$PA3" = "$PA0" ]; then pass "pci-assignable-restored ($PD given back: xl pci-assignable-list '$PA3' as before the section)"
    else fail "pci-assignable-restored" "'$PA3', before '$PA0'"; fi
    fi
fi

# ===================================================================== libxl (issue 16: xl create through the patched libxl)
# Debian's `xl` with the patched libxenlight of examples/libxl-4.17
# (docs/libxl.md), built on the host (run.sh: /mnt/host/libxl), installed
# in place of Debian's with dpkg-divert, libstubdm next to it (xl runs
# without LD_LIBRARY_PATH), stubdmd at its real paths.  `xl create -p` of
# bootdisk's guest and disk (the disk given by libxl: its vbd and block
# script) with a Linux stubdomain (the project's image, real qemu-xen) and
# serial="pty": the stubdomain's consoles and QMP are stubdmd's, so dom0
# has no QEMU and no vchan-socket-proxy.  A reader copies the pty named by
# the guest's serial/0/tty (what `xl console -t serial` opens) into a
# file; `xl unpause` (QMP "cont" through stubdmd's proxy) lets SeaBIOS
# boot the disk, whose sector writes the marker to COM1.  Then QMP users
# of libxl (qemu-monitor-command, pause/unpause) and `xl destroy`: no
# domain, node, loop device or process left, the proxy socket gone.
# Failure paths: the stubdomain's kernel panicking (xt.panic panic=1),
# its device model exiting before running (xt.dm=exit), the stubdomain
# destroyed during the wait (xt.dm=never): `xl create` fails with the
# cause, soon, and leaves nothing.  Debian's library is restored at the end.
LXLIB=/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17.0 LXDIV=/usr/lib/libstubdm-diverted
lx() { env -u LD_LIBRARY_PATH xl "$@"; }
# lx_cfg NAME CMDLINE-EXTRA > config: the guest, its disk, a Linux stubdomain
lx_cfg() { hvm_cfg "$1"; cat <<CFG
serial = "pty"
disk = [ "format=raw, vdev=hda, access=rw, target=$LXI" ]
device_model_stubdomain_override = 1
stubdomain_kernel = "/mnt/host/images/vmlinuz"
stubdomain_ramdisk = "$RAMDISK"
stubdomain_memory = $STUBMEM
stubdomain_cmdline = "console=hvc0 ${LX_QUIET-quiet} $2"
CFG
}
# lx_procs: dom0 processes that would be a device model, a proxy or a
# hotplug script left over.  (Not the QEMU Debian's init script starts for
# dom0 itself, -name dom0, its qdisk backend: no guest's.)
lx_procs() { ps -eo pid,args | grep -e 'qemu-system' -e 'vchan-socket-proxy' -e '/etc/xen/scripts/' -e 'cat /dev/pts' \
                 | grep -v -e grep -e '-xen-domid 0 .*-name dom0 ' | tr -s ' ' | tr '\n' ';'; }
# lx_leaks NAME: "" if nothing xl create made is left (domains, nodes
# against /tmp/xs-before-lx, loop devices on the image, processes)
lx_leaks() {
    l=$(xl list 2>/dev/null | awk -v n="$1" '$1 == n || $1 == n "-dm" { printf "domain %s %s; ", $1, $2 }')
    xs_snapshot /tmp/xs-after-lx
    # (/libxl and /vm themselves: the parents libxl makes with the boot's
    # first guest and keeps, as Debian's libxl does)
    n=$(LC_ALL=C comm -3 /tmp/xs-before-lx /tmp/xs-after-lx | tr -d '\t' | grep -v -x -e /libxl -e /vm | head -n 12 | tr '\n' ' ')
    [ -n "$n" ] && l="$l nodes (+/-): $n;"
    lo=$(losetup -a | grep "$LXI"); [ -n "$lo" ] && l="$l loop: $lo;"
    p=$(lx_procs); [ -n "$p" ] && l="$l processes: $p"
    echo "$l"
}
# lx_settle NAME: wait (30 s) until the domains and the loop device are gone
lx_settle() { i=0; while [ $i -lt 150 ]; do
    xl list 2>/dev/null | awk -v n="$1" '$1 == n || $1 == n "-dm" { f = 1 } END { exit !f }' || losetup -a | grep -q "$LXI" || return 0
    sleep 0.2; i=$((i + 1)); done; }
# ---- the side by side (Debian's libxl, the patched one, stubdm-ctl spawn)
# utc: a timestamp as oxenstored's access log writes them
utc() { date -u +%Y%m%dT%H:%M:%S.%3NZ; }
# xs_requests FROM TO DOMID...: requests in oxenstored's access log between
# two utc stamps, but those of the named domains' own connections (the
# guest's, the stubdomain's): what dom0's side asked for
xs_requests() {
    a=$1 b=$2; shift 2
    cat /var/log/xen/xenstored-access.log* 2>/dev/null | awk -v a="[$a" -v b="[$b" -v ex=" $* " '
        $1 < a || $1 > b { next }
        { con = $2; sub(/\..*/, "", con) }
        con ~ /^D[0-9]+$/ && index(ex, " " substr(con, 2) " ") { next }
        $3 ~ /^(coalesce|conflict|commit|newconn|endconn|error|invalid|w)$/ { next }
        { n++ } END { print n + 0 }'
}
# rss_of PID...: their resident memory, KiB, summed
rss_of() { [ $# -gt 0 ] && ps -o rss= -p "$(echo "$@" | tr ' ' ,)" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }' || echo 0; }
# qmp_rtt SOCKET: "median_us min_us max_us n" of query-status, or ""
qmp_rtt() { python3 /mnt/host/bin/qmp-rtt.py "$1" 40 2> /tmp/qmp-rtt.err; }
# side_row COLUMN CREATE_MS PROCS RSS_KIB RTT XS: one row of the table
side_row() {
    echo "  side | $1 | create->running $2 ms | dom0 processes: $3 | $4 KiB | QMP query-status median ${5%% *} us | $6 xenstore requests (dom0 side)"
    fig "side_${1}_create_to_running_ms" "$2"
    fig "side_${1}_dom0_rss_kib" "$4"
    fig "side_${1}_qmp_rtt_median_us" "${5%% *}"
    fig "side_${1}_xenstore_requests" "$6"
}
lx_dump() { # TAG
    grep -a -i 'error\|stubdm\|fail\|crash' /tmp/lx-$1.log | tail -n 15 | cut -c1-300 | sed 's/^/  xl| /'
    tail -n 12 "$LXE" | cut -c1-300 | sed 's/^/  stubdmd| /'
    grep -a 'XT-STUB' "/var/log/xen/qemu-dm-$2-dm.log" 2>/dev/null | grep -v 'XT-STUB-ARGV ' | tail -n 12 | sed 's/^/  stub| /'
}
if has libxl; then
    section "4j. libxl: xl create with the patched libxenlight (libstubdm, stubdmd): boot from disk, serial, QMP, destroy, failures"
    for m in xen-blkback loop; do modprobe $m 2>&1 | sed 's/^/  modprobe| /'; done
    [ -n "$HGUEST" ] && { xl destroy "$HGUEST" 2>/dev/null; HGUEST=; }
    # the failure cases to run (a run may name fewer: XT_LX_CASES)
    LX_CASES=$(cat /mnt/host/lx-cases 2>/dev/null); LX_CASES=${LX_CASES:-panic dmexit destroy}
    LXI=/tmp/xt-lx.img LXE=/tmp/lx-stubdmd.log LXS=/tmp/lx-serial.log LXR=/tmp/lx-reader.log
    BD_MARK=XT-BOOTED-FROM-XVDA
    rm -f "$LXE" "$LXS" "$LXR" /tmp/lx-*.log /tmp/lx-reader.stop /var/log/xen/qemu-dm-xt-lx*.log
    sh /mnt/host/bin/mk-bootsector.sh "$LXI" "$BD_MARK"
    LX_OK= SIDE_ROWS=0
    # ---- side by side, column 1: Debian's libxl (a dom0 QEMU serves the
    # stubdomain's consoles, a vchan-socket-proxy its QMP): the same guest,
    # disk image, stubdomain image and command line as the patched libxl's
    LXI=/tmp/xt-lxd.img; cp /tmp/xt-lx.img "$LXI"
    lx_cfg xt-lxd "xt.dm=qemu-xen${STUB_EXTRA:+ $STUB_EXTRA}" > /tmp/xt-lxd.cfg
    a=$(utc); t=$(ms); lx -vvv -T create -p /tmp/xt-lxd.cfg > /tmp/lx-debian.log 2>&1; rc=$?; tc=$(( $(ms) - t )); b=$(utc)
    D=$(xl domid xt-lxd 2>/dev/null) SD=$(xl domid xt-lxd-dm 2>/dev/null)
    if [ $rc = 0 ] && [ -n "$SD" ]; then
        pids=$(ps -eo pid,args | awk -v s="$SD" '($0 ~ /qemu-system/ && $0 ~ ("-xen-domid " s " ")) || $0 ~ /vchan-socket-proxy/ { print $1 }' | tr '\n' ' ')
        names=$(for p in $pids; do ps -o comm= -p $p; done | sort | uniq -c | awk '{ printf "%s%s x%s", n++ ? ", " : "", $2, $1 }')
        side_row debian "$tc" "${names:-none}" "$(rss_of $pids)" "$(qmp_rtt /var/run/xen/qmp-libxl-$D)" "$(xs_requests "$a" "$b" "$D" "$SD")"
        SIDE_ROWS=$((SIDE_ROWS + 1))
    else info "side: Debian's libxl: xl create exit $rc after $tc ms: $(grep -a -i 'error' /tmp/lx-debian.log | tail -n 3 | tr '\n' ' ' | cut -c1-300)"; fi
    lx destroy xt-lxd > /dev/null 2>&1; lx_settle xt-lxd
    LXI=/tmp/xt-lx.img
    if [ -r /mnt/host/libxl/libxenlight.so.4.17.0 ]; then
        # diverted out of the library directory: there ldconfig would point
        # libxenlight.so.4.17 at the diverted file (same soname, a "higher"
        # version by its name)
        mkdir -p "$LXDIV" &&
        dpkg-divert --quiet --rename --divert "$LXDIV/${LXLIB##*/}" --add "$LXLIB" &&
        install -m 644 /mnt/host/libxl/libxenlight.so.4.17.0 "$LXLIB" &&
        cp -a /mnt/host/lib/libstubdm.so.0* /usr/lib/x86_64-linux-gnu/ && ldconfig && LX_OK=1
        ldd_l=$(env -u LD_LIBRARY_PATH ldd /usr/lib/xen-4.17/bin/xl | grep -e libxenlight -e libstubdm | tr -s ' \t' ' ' | tr '\n' ';')
        lx info > /dev/null 2>&1 || LX_OK=
        cmp -s "$(readlink -f /usr/lib/x86_64-linux-gnu/libxenlight.so.4.17)" /mnt/host/libxl/libxenlight.so.4.17.0 || LX_OK=
        echo "$ldd_l" | grep -q 'libstubdm.so.0 => /\(usr/\)\{0,1\}lib/x86_64-linux-gnu/' || LX_OK=
        if [ -n "$LX_OK" ]; then pass "libxl-install (Debian's $LXLIB diverted to $LXDIV, the patched one installed; xl resolves:$ldd_l)"
        else fail "libxl-install" "dpkg-divert/install failed or xl info fails with it: $ldd_l $(lx info 2>&1 | tail -n 2 | tr '\n' ' ')"; fi
    else
        fail "libxl-build" "no patched libxenlight in /mnt/host/libxl (run.sh: examples/libxl-4.17/build.sh): $(tr '\n' ' ' < /mnt/host/libxl/missing 2>/dev/null)"
    fi
    if [ -n "$LX_OK" ]; then
        stubdmd --run-dir /run/stubdmd --log-dir /var/log/xen --qmp-dir /var/run/xen --qmp-timeout 600 >> "$LXE" 2>&1 &
        LXD_PID=$!
        i=0; while [ $i -lt 100 ] && kill -0 $LXD_PID 2>/dev/null && ! grep -q 'stubdmd: info: ready' "$LXE"; do sleep 0.2; i=$((i + 1)); done
        grep -q 'stubdmd: info: ready' "$LXE" || info "stubdmd $LXD_PID: no 'ready' in 20 s: $(tail -n 3 "$LXE" | tr '\n' ' ')"
        xs_snapshot /tmp/xs-before-lx
        lx_cfg xt-lx "xt.dm=qemu-xen${STUB_EXTRA:+ $STUB_EXTRA}" > /tmp/xt-lx.cfg
        # what the stubdomain's consoles look like once it runs (a failed
        # create destroys it): its nodes, the console backends, xl list
        ( i=0; while [ $i -lt 600 ] && [ -z "$(xl domid xt-lx-dm 2>/dev/null)" ]; do sleep 0.1; i=$((i + 1)); done
          sleep 15; s=$(xl domid xt-lx-dm 2>/dev/null)
          { xl list; xenstore-ls -fp /local/domain/$s 2>&1 | grep -v -e '/memory' -e '/cpu/'
            xenstore-ls -fp /local/domain/0/backend/console 2>&1; ps -eo pid,args | grep -e xenconsoled -e stubdmd | grep -v grep
            ls -la /var/log/xen/ /var/log/xen/console; } > $OUT/libxl-debug.txt 2>&1 ) &
        rss0=$(rss_of $LXD_PID)
        a=$(utc); t=$(ms); lx -vvv -T create -p /tmp/xt-lx.cfg > /tmp/lx-create.log 2>&1; rc=$?; LX_MS=$(( $(ms) - t )); b=$(utc)
        D=$(xl domid xt-lx 2>/dev/null) SD=$(xl domid xt-lx-dm 2>/dev/null)
        if [ $rc = 0 ] && [ -n "$SD" ]; then
            rss1=$(rss_of $LXD_PID)
            side_row patched "$LX_MS" "none of its own (stubdmd, shared: +$((rss1 - rss0)) KiB for it)" "$rss1" \
                "$(qmp_rtt /var/run/xen/qmp-libxl-$D)" "$(xs_requests "$a" "$b" "$D" "$SD")"
            SIDE_ROWS=$((SIDE_ROWS + 1))
        fi
        LXQ=/var/run/xen/qmp-libxl-$D
        if [ $rc = 0 ] && [ -n "$D" ] && [ -n "$SD" ]; then
            procs=$(lx_procs)
            dom0=$(ps -eo pid,rss,args | awk '$3 ~ /(^|\/)(xl|stubdmd)$/ { printf "%s(pid %s, %s KiB) ", $3, $1, $2; n++ } END { printf "= %d", n }')
            st=$(xenstore-read /local/domain/0/device-model/$D/state 2>/dev/null || xenstore-read /local/domain/$SD/device-model/$D/state 2>/dev/null)
            if [ -z "$procs" ] && [ -S "$LXQ" ]; then
                pass "libxl-create (xl create -p: guest $D, stubdomain $SD, device model '$st' after $LX_MS ms; dom0: no QEMU, no vchan-socket-proxy; $LXQ is stubdmd's)"
            else fail "libxl-create" "created in $LX_MS ms, but dom0 has: ${procs:-nothing extra}; QMP socket $LXQ $([ -S "$LXQ" ] && echo present || echo missing)"; lx_dump create xt-lx; fi
            fig libxl_create_to_running_ms $LX_MS
            info "dom0 processes for the guest: $dom0"
            fig libxl_dom0_processes "$(echo "$dom0" | sed 's/.*= //')"
            xs_dump "$SD" "$D" $OUT/libxl-xs-running.txt
            # ---- the serial's pty, copied into a file from before the unpause
            LXT=$(xenstore-read /local/domain/$D/serial/0/tty 2>/dev/null)
            if [ -n "$LXT" ] && [ -c "$LXT" ]; then
                cat "$LXT" > "$LXS" 2> "$LXR" & LXC_PID=$!
            else info "no pty in /local/domain/$D/serial/0/tty: '${LXT}'"; LXC_PID=; fi
            t=$(ms); out=$(lx unpause xt-lx 2>&1); urc=$?; LXU_MS=$(( $(ms) - t )); tu=$(ms)
            info "xl unpause: exit $urc in $LXU_MS ms ${out:+($out)}"
            tm=; wait_grep "$LXS" "$BD_MARK" 90 && tm=$(( $(ms) - tu ))
            sleep 0.5
            hd=$(xl dmesg | grep -a "(d$D) Booting from Hard Disk" | head -n 1)
            printf '%s\r\n' "$BD_MARK" > /tmp/lx-serial.want
            if [ -n "$tm" ] && [ -n "$hd" ] && cmp -s /tmp/lx-serial.want "$LXS"; then
                pass "libxl-serial (xl unpause, SeaBIOS '$(echo "$hd" | sed 's/.*) //')'; $BD_MARK from the boot sector's COM1 through qemu-xen in stubdomain $SD and stubdmd's pty $LXT (serial/0/tty) into $LXS, exactly its 21 bytes, $tm ms after the unpause)"
                fig libxl_unpause_to_marker_ms $tm
            else fail "libxl-serial" "pty '${LXT:-none}'; marker ${tm:+after $tm ms}${tm:-not seen in 90 s}; $LXS: $(wc -c < "$LXS" 2>/dev/null || echo 0) bytes ($(tr -c '[:print:]' '.' < "$LXS" 2>/dev/null | cut -c1-80)); SeaBIOS: ${hd:-no hard-disk boot line}; xl unpause exit $urc"; lx_dump create xt-lx; fi
            # ---- QMP users of libxl, through stubdmd's proxy
            t=$(ms); q=$(lx qemu-monitor-command xt-lx "info status" 2>&1); qrc=$?; LXQ_MS=$(( $(ms) - t ))
            if [ $qrc = 0 ] && echo "$q" | grep -q 'VM status: running'; then
                pass "libxl-qmp (xl qemu-monitor-command 'info status': '$(echo "$q" | tr -d '\r' | head -n 1)', $LXQ_MS ms with xl's start)"
                fig libxl_qmp_round_trip_ms $LXQ_MS
            else fail "libxl-qmp" "exit $qrc after $LXQ_MS ms: $(echo "$q" | tail -n 3 | tr '\n' ' ')"; fi
            t=$(ms); prc=0; lx pause xt-lx > /tmp/lx-pause.log 2>&1 || prc=$?; tp=$(( $(ms) - t ))
            s1=$(xl list xt-lx 2>/dev/null | awk 'NR == 2 { print $5 }')
            q1=$(lx qemu-monitor-command xt-lx "info status" 2>&1 | tr -d '\r' | head -n 1)
            t=$(ms); lx unpause xt-lx >> /tmp/lx-pause.log 2>&1 || prc=$((prc + $?)); tup=$(( $(ms) - t ))
            s2=$(xl list xt-lx 2>/dev/null | awk 'NR == 2 { print $5 }')
            q2=$(lx qemu-monitor-command xt-lx "info status" 2>&1 | tr -d '\r' | head -n 1)
            case "$s1/$s2" in
                *p*/*p*|/*|*/) ok= ;;
                *p*/*) ok=1 ;;
                *) ok= ;;
            esac
            if [ $prc = 0 ] && [ -n "$ok" ] && [ "$q2" = "VM status: running" ]; then
                pass "libxl-pause (xl pause $tp ms: state $s1, QEMU '$q1'; xl unpause $tup ms: state $s2, QEMU '$q2')"
            else fail "libxl-pause" "exits $prc: $(tr '\n' ' ' < /tmp/lx-pause.log | cut -c1-200); state after pause '$s1' ('$q1'), after unpause '$s2' ('$q2')"; fi
            # ---- destroy
            [ -n "$LXC_PID" ] && kill $LXC_PID 2>/dev/null; wait $LXC_PID 2>/dev/null
            t=$(ms); out=$(lx destroy xt-lx 2>&1); drc=$?; td=$(( $(ms) - t ))
            lx_settle xt-lx
            i=0; while [ $i -lt 50 ] && [ -e "$LXQ" ]; do sleep 0.2; i=$((i + 1)); done
            l=$(lx_leaks xt-lx)
            # (this guest's xl only: earlier sections' guests keep theirs)
            xlp=$(ps -eo pid,args | awk '$2 ~ /(^|\/)xl$/ && / \/tmp\/xt-lx\.cfg/' | tr -s ' ' | tr '\n' ';')
            if [ $drc = 0 ] && [ -z "$l" ] && [ -z "$xlp" ] && [ ! -e "$LXQ" ]; then
                pass "libxl-destroy (xl destroy $td ms: no domain, node, loop device or process left, no xl left, $LXQ removed by stubdmd)"
                fig libxl_destroy_ms $td
            else fail "libxl-destroy" "exit $drc ($out) in $td ms; left: ${l:-nothing} ${xlp:+xl: $xlp} $([ -e "$LXQ" ] && echo "socket $LXQ")"; lx_dump create xt-lx; fi
        else
            fail "libxl-create" "xl create exit $rc after $LX_MS ms, guest '${D}', stubdomain '${SD}'"
            lx_dump create xt-lx
            xl destroy xt-lx 2>/dev/null; lx_settle xt-lx
        fi
        cp /tmp/lx-create.log $OUT/libxl-create.log; cp /var/log/xen/qemu-dm-xt-lx-dm.log $OUT/libxl-qemu-dm.log 2>/dev/null
        cp /tmp/lx-debian.log $OUT/libxl-side-debian.log 2>/dev/null
        # ---- failure paths: TAG CMDLINE [destroy]
        # (each case its own copy of the image: what one leaves is its own)
        lx_failure() {
            LXI=/tmp/xt-lxf-$1.img; cp /tmp/xt-lx.img "$LXI"
            LX_QUIET= lx_cfg xt-lxf "$2" > /tmp/xt-lxf.cfg  # (the kernel's shutdown in its log)
            rm -f /var/log/xen/qemu-dm-xt-lxf-dm.log
            xs_snapshot /tmp/xs-before-lx
            t=$(ms); lx -vvv -T create /tmp/xt-lxf.cfg > /tmp/lx-$1.log 2>&1 & XP=$!
            # the stubdomain's state and its frontends', every second
            ( while kill -0 $XP 2>/dev/null; do s=$(xl domid xt-lxf-dm 2>/dev/null)
                [ -n "$s" ] && { echo "$(( $(ms) - t )) ms: $(xl list "$s" 2>/dev/null | awk 'NR == 2 { print $5 }')" \
                    $(xenstore-ls -f /local/domain/$s/device 2>/dev/null | grep '/state = ' | sed 's|/local/domain/[0-9]*/device/||; s| = |=|; s|"||g'); }
                sleep 1; done > /tmp/lx-$1.states 2>&1 ) &
            td= XD=
            if [ "$3" = destroy ]; then
                i=0; while [ $i -lt 600 ] && kill -0 $XP 2>/dev/null; do
                    # the stubdomain unpaused: libxl is in its wait for running
                    s=$(xl domid xt-lxf-dm 2>/dev/null)
                    [ -n "$s" ] && xl list "$s" 2>/dev/null | awk 'NR == 2 { exit $5 ~ /p/ }' && break
                    sleep 0.1; i=$((i + 1)); done
                # (in the background: the time is the create's, from the
                # destroy's start to its exit, its own cleanup included)
                sleep 1; td=$(ms); [ -n "$s" ] && { xl destroy "$s" > /tmp/lx-destroy.log 2>&1 & XD=$!; }
            fi
            # bounded: a create that hangs is this check's failure, not the run's
            i=0; while [ $i -lt 750 ] && kill -0 $XP 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
            hung=; kill -0 $XP 2>/dev/null && { hung=1; kill $XP; }
            wait $XP; rc=$?; te=$(ms)
            tot=$((te - t)); after=${td:+$((te - td))}
            lx_settle xt-lxf
            l=$(lx_leaks xt-lxf)
            # the wait's end, as libxl logs it (libxl_stubdm.c wait_done)
            cause=$(grep -a 'wait_done: .*startup: ' /tmp/lx-$1.log | head -n 1 | sed 's/.*startup: //' | cut -c1-200)
            [ -n "$XD" ] && wait $XD
            [ -n "$hung" ] && cause="(xl create still running after 150 s, killed) $cause"
            if [ -z "$hung" ] && [ $rc != 0 ] && [ -n "$cause" ] && [ -z "$l" ] && ! echo "$cause" | grep -q ETIMEDOUT; then
                pass "libxl-fail-$1 (xl create exit $rc after $tot ms${after:+, $after ms after the stubdomain's destroy}: '$cause'; nothing left)"
                fig libxl_fail_${1}_ms ${after:-$tot}
            else fail "libxl-fail-$1" "xl create exit $rc after $tot ms; cause: '${cause:-none}'; left: ${l:-nothing}"; lx_dump $1 xt-lxf; fi
            xl destroy xt-lxf 2>/dev/null; lx_settle xt-lxf
            cp /tmp/lx-$1.log $OUT/libxl-fail-$1.log; cp /tmp/lx-$1.states $OUT/libxl-fail-$1.states 2>/dev/null
            cp /var/log/xen/qemu-dm-xt-lxf-dm.log $OUT/libxl-fail-$1-stub.log 2>/dev/null
        }
        for c in $LX_CASES; do
            case $c in
            panic) lx_failure panic "panic=1 xt.panic" ;;
            dmexit) lx_failure dmexit "xt.dm=exit" ;;
            destroy) lx_failure destroy "xt.dm=never" destroy ;;
            esac
        done
        # ---- side by side, column 3: stubdm-ctl spawn (the library's own
        # builder) of the same stubdomain for a paused HVM guest, served by
        # the same stubdmd (serve only: stubdm-ctl destroy tears it down)
        LXI=/tmp/xt-lxs.img; cp /tmp/xt-lx.img "$LXI"
        mk_hvm_guest
        pid=$(xenstore-read /local/domain/$HGUEST/image/device-model-pid 2>/dev/null)
        [ -n "$pid" ] && { kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done; }
        rss0=$(rss_of $LXD_PID)
        a=$(utc); t=$(ms)
        S=$(stubdm-ctl spawn --guest "$HGUEST" --name xt-lxs-dm --kernel /mnt/host/images/vmlinuz \
            --ramdisk "$RAMDISK" --memory $STUBMEM --cmdline "console=hvc0 quiet xt.dm=qemu-xen${STUB_EXTRA:+ $STUB_EXTRA}" \
            --console-backend libstubdm --service-serve-only --serial pty --disk "$LXI" --timeout 150 \
            -- -xen-domid "$HGUEST" -no-shutdown -nodefaults -no-user-config -name xt-hguest -display none \
            -nographic -boot order=c -net none -machine xenfv,suppress-vmdesc=on -m 32 \
            -drive file=/dev/xvda,if=ide,index=0,media=disk,format=host_device,cache=writeback \
            -serial /dev/hvc3 2> /tmp/lx-spawn.err); rc=$?; tc=$(( $(ms) - t )); b=$(utc)
        if [ $rc = 0 ] && [ -n "$S" ]; then
            rss1=$(rss_of $LXD_PID)
            side_row stubdm-ctl "$tc" "none of its own (stubdmd, shared: +$((rss1 - rss0)) KiB for it)" "$rss1" \
                "$(qmp_rtt /var/run/xen/qmp-libxl-$HGUEST)" "$(xs_requests "$a" "$b" "$HGUEST" "$S")"
            SIDE_ROWS=$((SIDE_ROWS + 1))
            stubdm-ctl destroy "$S" > /dev/null 2>&1 || info "side: stubdm-ctl destroy $S failed"
        else info "side: stubdm-ctl spawn exit $rc after $tc ms: $(tail -n 3 /tmp/lx-spawn.err | tr '\n' ' ' | cut -c1-300)"; fi
        xl destroy "$HGUEST" 2> /dev/null; HGUEST=
        LXI=/tmp/xt-lx.img
        cp /tmp/lx-spawn.err $OUT/libxl-side-spawn.err 2>/dev/null
        if [ "$SIDE_ROWS" = 3 ]; then pass "libxl-side-by-side (Debian's libxl, the patched libxl and stubdm-ctl spawn each started the same stubdomain and were measured; rows above)"
        else fail "libxl-side-by-side" "$SIDE_ROWS of 3 columns measured"; fi
        grep -a '^\[' /var/log/xen/xenstored-access.log 2>/dev/null | head -n 3 | cut -c1-120 | sed 's/^/  xs-access| /'
        kill -TERM $LXD_PID; i=0; while kill -0 $LXD_PID 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
        kill -0 $LXD_PID 2>/dev/null && { info "stubdmd still running 10 s after SIGTERM"; kill -9 $LXD_PID; }
        wait $LXD_PID 2>/dev/null
        cp "$LXE" $OUT/libxl-stubdmd.log
    fi
    # Debian's library back
    if [ -e "$LXDIV/${LXLIB##*/}" ]; then
        rm -f "$LXLIB" /usr/lib/x86_64-linux-gnu/libstubdm.so.0*
        dpkg-divert --quiet --rename --remove "$LXLIB" && ldconfig
        xl info > /dev/null 2>&1 || fail "libxl-restore" "xl info fails with Debian's library restored"
    fi
fi

# ===================================================================== stubdom (libxl, real qemu-xen)
if has stubdom; then
    section "5a. libxl (xl create) HVM guest with the project's stubdomain image, qemu-xen + ioreq-probe"
    cat > /tmp/xt-hvm.cfg <<CFG
name = "xt-hvm"
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
stubdomain_kernel = "/mnt/host/images/vmlinuz"
stubdomain_ramdisk = "$RAMDISK"
stubdomain_memory = $STUBMEM
stubdomain_cmdline = "console=hvc0 quiet xt.ioreq xt.dm=${XT_HVM_DM:-auto}${STUB_EXTRA:+ $STUB_EXTRA}"
CFG
    memcheck_start stubdom
    t=$(ms)
    xl -vvv create /tmp/xt-hvm.cfg > $OUT/xt-hvm-create.log 2>&1; rc=$?
    t=$(( $(ms) - t ))
    grep -E 'error|startup|stubdom' $OUT/xt-hvm-create.log | tail -n 8 | sed 's/^/  xl| /'
    sleep 2
    grep -a 'XT-STUB' /var/log/xen/qemu-dm-xt-hvm.log 2>/dev/null | grep -v 'XT-STUB-ARGV ' | sed 's/^/  stub| /'
    if grep -aq XT-STUB-QEMU-XEN-FAILED /var/log/xen/qemu-dm-xt-hvm.log 2>/dev/null; then
        info "qemu-xen failed in the stubdomain; the init fell back to qemu-system-x86_64 -machine none"
    fi
    D=$(xl domid xt-hvm 2>/dev/null)
    if [ -n "$D" ]; then
        info "the same ioreq-probe from dom0 (privileged) against guest $D:"
        /mnt/host/bin/ioreq-probe "$D" 2>&1 | sed 's/^/  dom0-ioreq| /'
    fi
    if [ $rc = 0 ]; then
        pass "libxl-stubdom (xl create with the project's image: ${t} ms)"; fig libxl_create_ms $t
        xl list
        D=$(xl domid xt-hvm); SD=$(xl domid xt-hvm-dm)
        xs_dump "$SD" "$D" $OUT/stubdom-xs.txt
        sleep "${XT_HVM_RUN:-20}"
        xl dmesg | grep "(d$D)" > $OUT/stubdom-guest.log
        grep -a 'segfault\|device model exited\|XT-STUB-DMLOG\|XT-SHIM\|XT-MEMCHECK' /var/log/xen/qemu-dm-xt-hvm.log | sed 's/^/  stub| /'
        info "libxl's guest $D after ${XT_HVM_RUN:-20} s: $(grep -c . $OUT/stubdom-guest.log) lines, last: $(tail -n1 $OUT/stubdom-guest.log)"
        info "state: $(xenstore-read /local/domain/$SD/device-model/$D/state)"
        xl destroy xt-hvm
    else
        fail "libxl-stubdom" "xl create exit $rc after $t ms"
    fi
    memcheck_end stubdom
fi

section "leftovers"
fig payload_s $(( ($(ms) - T0) / 1000 ))
xl list
echo
echo "$P passed, $F failed"
[ $F = 0 ]
