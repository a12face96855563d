#!/bin/bash
# stubdmd on the simulated host (issue 15, first slice):
#  1. `stubdm-ctl spawn --service` exits; a stubdmd started afterwards
#     adopts the stubdomain: console 0's output reaches
#     LOGDIR/qemu-dm-<name>.log, a QMP client on QMPDIR/qmp-libxl-<guest>
#     gets query-status;
#  2. a second stubdmd refuses to start (the lock), naming the holder;
#  3. a stubdomain spawned while stubdmd runs is adopted (its adoption
#     node watched), its console 0 left to stubdmd by the spawn even with
#     --log; one spawned without --service is not;
#  4. a stubdomain destroyed while served is dropped (its socket goes);
#  5. SIGTERM: stubdmd exits 0, every stubdomain runs on (stubdm-ctl list),
#     console 0 let go (backend InitWait), not closed;
#  6. a new stubdmd adopts them again: QMP answers, and the log has each
#     line once (the ring's indexes are in the shared page);
#  7. the same after kill -9 (the stale socket replaced, console 0
#     connected again).
#
#   tests/stubdmd.sh STUBDM-CTL STUBDMD QMP-CLIENT
set -u

ctl=${1:?usage: stubdmd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
daemon=${2:?usage: stubdmd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
client=${3:?usage: stubdmd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
. "$(dirname "$0")/stubdmd-lib.sh"

# ---- 1. adopted at start ------------------------------------------------------
s100=$(spawn 100 --service)
[[ "$s100" =~ ^[0-9]+$ ]] || { cat "$dir/spawn.err"; echo "FAIL: spawn"; exit 1; }
start_daemon
check "console 0 of $s100 not in the log: $(cat "$dir/stubdmd.err")" \
    until_ok 10 logged 100 "device model running"
check "query-status through qmp-libxl-100: $(cat "$dir/qmp.err" "$dir/qmp.out" 2>/dev/null)" \
    qmp_running 100
check "the socket is 0600" \
    test "$(stat -c %a "$dir/qmp/qmp-libxl-100")" = 600

# ---- 2. a second instance -------------------------------------------------------
"$daemon" --run-dir "$dir/run" --log-dir "$dir/log" --qmp-dir "$dir/qmp" \
    > /dev/null 2> "$dir/second.err"
rc=$?
check "second stubdmd: exit $rc, want 1" test "$rc" = 1
check "second stubdmd: $(cat "$dir/second.err")" \
    grep -q "another stubdmd is running (pid $dpid" "$dir/second.err"
check "the first one still serves" qmp_running 100

# ---- 3. adopted while running; not without --service --------------------------
# With --log too: console 0 is the service's, the spawn leaves it alone.
s101=$(spawn 101 --service --log "$dir/spawn-101.log")
s102=$(spawn 102)
check "console 0 of $s101 not in the log" \
    until_ok 10 logged 101 "device model running"
check "query-status through qmp-libxl-101" qmp_running 101
check "the spawn served console 0 of $s101 itself" \
    test ! -e "$dir/spawn-101.log"
# A spawn opening QMP itself too is refused before anything is made:
# stubdmd takes the QMP lock as soon as the contract is written.
"$ctl" spawn --guest 103 --service --qmp-status --sim-arg --no-qemu -- \
    -xen-domid 103 -m 16 > /dev/null 2> "$dir/spawn-103.err"
rc=$?
check "spawn --service --qmp-status: exit $rc: $(cat "$dir/spawn-103.err")" \
    grep -q "the service holds the QMP connection" "$dir/spawn-103.err"
check "spawn --service --qmp-status made a stubdomain: $("$ctl" list)" \
    eval '! "$ctl" list | grep -qE "^[0-9]+ +103 "'
sleep 0.5
check "guest 102 served without --service" \
    test ! -e "$dir/log/qemu-dm-guest102-dm.log" -a \
    ! -e "$dir/qmp/qmp-libxl-102"

# ---- 4. destroyed while served ------------------------------------------------
"$ctl" destroy "$s101" > /dev/null 2>> "$dir/spawn.err" || bad "destroy $s101"
check "destroyed $s101 still served: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 test ! -e "$dir/qmp/qmp-libxl-101"
check "no 'gone' line for $s101" \
    grep -q "dom$s101 (guest 101): gone" "$dir/stubdmd.err"

# ---- 5. SIGTERM -----------------------------------------------------------------
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0
"$ctl" list > "$dir/list" 2>&1
check "not running after SIGTERM: $(cat "$dir/list")" \
    grep -qE "^$s100 +100 .* running" "$dir/list"
check "guest 102's stubdomain not running: $(cat "$dir/list")" \
    grep -qE "^$s102 +102 .* running" "$dir/list"
check "console 0 of $s100 closed, not let go: state $(be_state "$s100")" \
    test "$(be_state "$s100")" = 2

# ---- 6. a new stubdmd -----------------------------------------------------------
start_daemon
check "no QMP after the restart: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 qmp_running 100
n=$(grep -c "device model running" "$dir/log/qemu-dm-guest100-dm.log")
check "the log has 'device model running' $n times, want 1" test "$n" = 1
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "restarted stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0

# ---- 7. kill -9 and a new stubdmd ------------------------------------------------
start_daemon
check "no QMP before the kill: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 qmp_running 100
kill -KILL "$dpid"
wait "$dpid" 2> /dev/null
dpid=
check "the killed stubdmd's socket file is not left for the next one" test -S "$dir/qmp/qmp-libxl-100"
start_daemon
check "no QMP after kill -9 and restart: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 qmp_running 100
check "console 0 of $s100 not served after kill -9: state $(be_state "$s100")" \
    until_ok 10 test "$(be_state "$s100")" = 4
n=$(grep -c "device model running" "$dir/log/qemu-dm-guest100-dm.log")
check "after kill -9 the log has 'device model running' $n times, want 1" \
    test "$n" = 1
kill -TERM "$dpid"
wait "$dpid"
dpid=

stubdmd_summary stubdmd
