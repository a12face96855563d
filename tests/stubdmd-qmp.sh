#!/bin/bash
# stubdmd's QMP on the simulated host (issue 15):
#  1. both proxy sockets, qmp-libxl-<guest> (libxl's ev_qmp) and
#     qmp-event-<guest> (xenopsd), exist while the spawn is still at its
#     hotplug step, before the unpause; a client connecting then is
#     greeted once QEMU is ready; both answer on the one QMP connection.
#
#   tests/stubdmd-qmp.sh STUBDM-CTL STUBDMD QMP-CLIENT MOCKXS-HELPER
set -u

usage="usage: stubdmd-qmp.sh STUBDM-CTL STUBDMD QMP-CLIENT MOCKXS-HELPER"
ctl=${1:?$usage}
daemon=${2:?$usage}
client=${3:?$usage}
helper=${4:?$usage}
. "$(dirname "$0")/stubdmd-lib.sh"

# A hotplug script holding the spawn at HOTPLUG until $dir/gate exists.
cat > "$dir/hp-gate" <<EOS
#!/bin/sh
touch "$dir/started-\$XENBUS_TYPE-\$1"
case "\$1" in add|online) ;; *) exit 0 ;; esac
while [ ! -e "$dir/gate" ]; do sleep 0.05; done
xenstore-write "\$XENBUS_PATH/hotplug-status" connected
EOS
chmod 755 "$dir/hp-gate"
: > "$dir/disk.img"

# ---- 1. both sockets before the unpause ---------------------------------------
start_daemon
spawn 100 --service --disk "$dir/disk.img,script=$dir/hp-gate" \
    > "$dir/s100" &
spid=$!
check "the spawn never reached its hotplug step" \
    until_ok 10 test -e "$dir/started-vbd-add"
for p in qmp-libxl qmp-event; do
    check "no $p-100 while the spawn is at HOTPLUG: $(tail -3 "$dir/stubdmd.err")" \
        until_ok 10 test -S "$dir/qmp/$p-100"
    check "$p-100 is not 0600" \
        test "$(stat -c %a "$dir/qmp/$p-100" 2>/dev/null)" = 600
done
check "running before the gate opened" \
    eval '! grep -q "device model running" "$dir/log/qemu-dm-guest100-dm.log" 2>/dev/null'
# xenopsd's client connects now: greeted once QEMU is ready.
"$client" "$dir/qmp/qmp-event-100" query-status 20 > "$dir/early.out" \
    2> "$dir/early.err" &
cpid=$!
sleep 0.3
touch "$dir/gate"
wait "$spid"
check "spawn: exit $?: $(cat "$dir/spawn.err")" test -s "$dir/s100"
wait "$cpid"
check "the early client on qmp-event-100: exit $?: $(cat "$dir/early.err")" \
    grep -q '"running"' "$dir/early.out"
check "query-status through qmp-libxl-100" qmp_running 100
"$client" "$dir/qmp/qmp-event-100" query-status 10 > "$dir/ev.out" \
    2>> "$dir/qmp.err"
check "query-status through qmp-event-100: $(cat "$dir/ev.out")" \
    grep -q '"running"' "$dir/ev.out"

kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0
check "the sockets are left after SIGTERM" \
    test ! -e "$dir/qmp/qmp-libxl-100" -a ! -e "$dir/qmp/qmp-event-100"

stubdmd_summary stubdmd-qmp
