#!/bin/bash
# stubdmd's QMP on the simulated host (issue 15):
#  1. both proxy sockets, qmp-libxl-<guest> (libxl's ev_qmp) and
#     qmp-event-<guest> (xenopsd), exist while the spawn is still at its
#     hotplug step, before the unpause; a client connecting then is
#     greeted once QEMU is ready; both answer on the one QMP connection;
#  2. a QMP open that fails (the lock held past --qmp-timeout) is retried
#     with a backoff (1 s, 2 s, ... logged with the cause) until it
#     succeeds once the lock is released; a client waiting on the socket
#     meanwhile is served;
#  3. the QMP connection lost while the stubdomain lives (the stand-in
#     closes it on SIGUSR1): an idle client sees a clean close, stubdmd
#     reopens at once, both sockets answer again.
# The times (retry schedule, loss to close, loss to QMP back) are printed.
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

# ---- 2. a failed open retried --------------------------------------------------
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
start_daemon_opts() { # OPTION...
    "$daemon" --run-dir "$dir/run" --log-dir "$dir/log" \
        --qmp-dir "$dir/qmp" "$@" 2>> "$dir/stubdmd.err" &
    dpid=$!
}
s101=$(spawn 101 --service)
lock="$STUBDM_SIM_DIR/qmp-vchan/$s101.101.lock"
# Another client holds the QMP lock until $dir/unlock exists: each 1 s
# attempt fails, until the second retry is logged.
flock "$lock" sh -c "while [ ! -e '$dir/unlock' ]; do sleep 0.05; done" &
fpid=$!
sleep 0.2
: > "$dir/stubdmd.err"
t0=$(ms_now)
start_daemon_opts --qmp-timeout 1
check "no qmp-libxl-101: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 test -S "$dir/qmp/qmp-libxl-101"
"$client" "$dir/qmp/qmp-libxl-101" query-status 30 > "$dir/w101.out" \
    2> "$dir/w101.err" &
cpid=$!
check "first retry not logged with its cause: $(grep 'guest 101' "$dir/stubdmd.err")" \
    until_ok 20 grep -q "(guest 101): QMP open failed: .*lock.*; retry 1 in 1.000 s" \
    "$dir/stubdmd.err"
check "no second retry after 2 s: $(grep 'guest 101' "$dir/stubdmd.err")" \
    until_ok 20 grep -q "(guest 101): QMP open failed: .*; retry 2 in 2.000 s" \
    "$dir/stubdmd.err"
t1=$(ms_now)
touch "$dir/unlock"
wait "$fpid"
check "no QMP after the lock was freed: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 20 grep -q "(guest 101): QMP ready" "$dir/stubdmd.err"
t2=$(ms_now)
wait "$cpid"
check "the client waiting through the retries: $(cat "$dir/w101.err")" \
    grep -q '"running"' "$dir/w101.out"
echo "retries (lock held, --qmp-timeout 1): $(grep -o 'retry [0-9]* in [0-9.]* s' "$dir/stubdmd.err" | tr '\n' ',') second retry logged $((t1 - t0)) ms after the start, QMP ready $((t2 - t1)) ms after the lock's release"
check "query-status on qmp-event-101 after the retries" \
    "$client" "$dir/qmp/qmp-event-101" query-status 10

# ---- 3. a lost connection reopened -----------------------------------------------
check "no QMP for guest 100: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 qmp_running 100
"$client" "$dir/qmp/qmp-event-100" query-status 20 hold > "$dir/hold.out" \
    2> "$dir/hold.err" &
hpid=$!
check "the holding client got no answer" \
    until_ok 10 grep -q '"running"' "$dir/hold.out"
spid=$("$helper" control sim-list | awk -v d="$(cat "$dir/s100")" '$1 == d {print $3}')
t0=$(ms_now)
kill -USR1 "$spid"
wait "$hpid"
rc=$?
t1=$(ms_now)
check "the idle client on qmp-event-100 after the loss: exit $rc: $(cat "$dir/hold.err")" \
    grep -q '^closed$' "$dir/hold.out"
check "the loss not logged: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 grep -q "(guest 100): QMP connection to stubdomain .* lost: .*; reopening" \
    "$dir/stubdmd.err"
check "no QMP on qmp-libxl-100 after the loss: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 qmp_running 100
t2=$(ms_now)
check "no QMP on qmp-event-100 after the loss" \
    "$client" "$dir/qmp/qmp-event-100" query-status 10
echo "QMP lost (SIGUSR1 to the stand-in): idle client closed after $((t1 - t0)) ms, query-status answered again after $((t2 - t0)) ms"

kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0

stubdmd_summary stubdmd-qmp
