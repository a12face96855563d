#!/bin/bash
# stubdmd under a service manager, on the simulated host, with a scripted
# stand-in for systemd (tests/stubdmd-fake-systemd.py: the notification
# socket, the fd store, Restart=always; no real systemd is needed):
#  1. lines to the journal start with their priority (<6>); READY=1 comes after the stubdomains running at start are adopted
#     (with STATUS=serving 1 stubdomain), each proxy's socket given to the
#     fd store first (FDSTORE=1, FDNAME=qmp-libxl-<guest>);
#  2. STATUS= follows what is served (a stubdomain adopted later);
#  3. SIGTERM: STOPPING=1; while no stubdmd runs the socket still takes
#     connections (the store keeps it listening; no ENOENT, no
#     ECONNREFUSED), a client that connected then is served by the next
#     instance, which got the socket back (LISTEN_FDS) and says so;
#     a start that fails (no xenstore) leaves the store as it was;
#  4. the same after kill -9;
#  5. a stubdomain destroyed while served: FDSTOREREMOVE, its file gone;
#  6. one destroyed while no stubdmd runs: its passed socket dropped from
#     the store at the next start;
#  7. without a service manager: --ready-fd gets a newline once the
#     stubdomains are adopted; a restart's window (what a client sees, and
#     how long) is measured and printed.
#
#   tests/stubdmd-systemd.sh STUBDM-CTL STUBDMD QMP-CLIENT
set -u

ctl=${1:?usage: stubdmd-systemd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
daemon=${2:?usage: stubdmd-systemd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
client=${3:?usage: stubdmd-systemd.sh STUBDM-CTL STUBDMD QMP-CLIENT}
here=$(dirname "$0")
fake=$here/stubdmd-fake-systemd.py
. "$here/stubdmd-lib.sh"
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }

sd=$dir/sd
mkdir "$sd"
mpid=
cleanup_sd() {
    [ -n "$mpid" ] && kill -TERM "$mpid" 2> /dev/null && wait "$mpid"
    cleanup
}
trap cleanup_sd EXIT

events() { cat "$sd/events" 2> /dev/null; }
# passed_all PID: the start of PID was passed the four stored sockets,
# both proxies (libxl's and xenopsd's) of guests 100 and 101, in any order.
passed_all() {
    local names
    names=$(events | sed -n "s/^[0-9.]* start $1 //p" | tr ':' '\n' | sort | tr '\n' ' ')
    [ "$names" = "qmp-event-100 qmp-event-101 qmp-libxl-100 qmp-libxl-101 " ]
}
has_event() { # PATTERN (extended regexp on the lines without their time)
    events | cut -d' ' -f2- | grep -qE "$1"
}
mainpid() { cat "$sd/mainpid"; }
starts() { events | grep -c ' start '; }
wait_restarted() { # N: the Nth start has sent READY=1
    until_ok 20 eval '[ "$(starts)" -ge '"$1"' ] &&
        has_event "^ready $(mainpid)\$"'
}
sock=$dir/qmp/qmp-libxl-100

s100=$(spawn 100 --service)
[[ "$s100" =~ ^[0-9]+$ ]] || { cat "$dir/spawn.err"; echo "FAIL: spawn"; exit 1; }
# The daemon's stderr goes to $sd/stubdmd.err; the summary shows $dir's.
ln -sf "$sd/stubdmd.err" "$dir/stubdmd.err"
python3 "$fake" "$sd" 3 -- "$daemon" --run-dir "$dir/run" \
    --log-dir "$dir/log" --qmp-dir "$dir/qmp" > "$sd/manager.out" 2>&1 &
mpid=$!

# ---- 1. READY=1 after the adoption, the socket stored first --------------------
check "no READY=1: $(events)" until_ok 10 has_event "^ready "
p1=$(mainpid)
check "READY=1 without 'serving 1 stubdomain': $(events)" \
    has_event "^status $p1 serving 1 stubdomain\$"
check "qmp-libxl-100 not stored before READY=1: $(events)" \
    eval 'events | cut -d" " -f2- | grep -E "^(fdstore|ready) " | head -1 |
        grep -qx "fdstore $p1 qmp-libxl-100"'
check "query-status through qmp-libxl-100" qmp_running 100
check "the socket is 0600" test "$(stat -c %a "$sock")" = 600
check "a line to the journal without its priority: $(head -2 "$sd/stubdmd.err")" \
    grep -q "^<6>stubdmd: info: dom$s100 (guest 100): adopting" "$sd/stubdmd.err"

# ---- 2. STATUS= follows -----------------------------------------------------
s101=$(spawn 101 --service)
check "no STATUS=serving 2 stubdomains: $(events)" \
    until_ok 10 has_event "^status $p1 serving 2 stubdomains\$"
check "qmp-libxl-101 not stored: $(events)" \
    has_event "^fdstore $p1 qmp-libxl-101\$"

# ---- 3. SIGTERM: no window ------------------------------------------------------
# probe_start NAME: a client connecting every 100 ms until probe_stop NAME
# (python starts slowly on a loaded host: waited for).
probe_start() {
    rm -f "$dir/$1.stop"
    python3 "$fake" --probe "$sock" "$dir/$1.stop" > "$dir/$1.out" 2>&1 &
    probe=$!
    until_ok 30 grep -q started "$dir/$1.out" || bad "probe $1 did not start"
}
probe_stop() { # NAME: sets ok enoent refused other longest
    touch "$dir/$1.stop"
    wait "$probe"
    read -r _ ok _ enoent _ refused _ other _ longest < <(tail -1 "$dir/$1.out")
}
no_failure() { # NAME
    test "${ok:-0}" -gt 0 -a "${enoent:-1}" = 0 -a "${refused:-1}" = 0 \
        -a "${other:-1}" = 0
}
# A client connected across the restart sees a clean close.
python3 -c '
import socket, sys
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); c.settimeout(30)
c.recv(4096)  # the greeting
open(sys.argv[2], "w").close()
data = b"x"
while data: data = c.recv(4096)
print("closed")' "$sock" "$dir/held.greeted" > "$dir/held.out" 2>&1 &
held=$!
until_ok 30 test -e "$dir/held.greeted" || bad "the held client: $(cat "$dir/held.out")"
probe_start probe
kill -TERM "$p1"
until_ok 10 has_event "^exit $p1 " || bad "stubdmd $p1 did not exit: $(events)"
# Connects while no stubdmd runs (the next one starts 3 s later).
"$client" "$sock" query-status 30 > "$dir/qmp-down.out" 2>> "$dir/qmp.err" &
down_client=$!
check "STOPPING=1 not sent: $(events)" has_event "^stopping $p1\$"
check "exit status of stubdmd after SIGTERM: $(events | grep " exit $p1")" \
    has_event "^exit $p1 0\$"
wait "$down_client"
check "the client connected while no stubdmd ran was not served: $(cat "$dir/qmp-down.out" "$dir/qmp.err")" \
    grep -q '"status":"running"' "$dir/qmp-down.out"
check "the second instance is not ready: $(events)" wait_restarted 2
probe_stop probe
check "a client found no socket during the restart: $(tail -1 "$dir/probe.out")" \
    no_failure
echo "with the fd store, SIGTERM + 3 s + start: $(tail -1 "$dir/probe.out")"
wait "$held"
check "the client held across the restart was not closed: $(cat "$dir/held.out")" \
    grep -qx closed "$dir/held.out"
p2=$(mainpid)
check "the stored sockets not passed: $(events)" passed_all "$p2"
check "the passed socket was stored again: $(events)" \
    eval '! has_event "^fdstore $p2 "'
check "query-status after the restart" qmp_running 100

# ---- 3b. a start that fails keeps the store -----------------------------------
# The next start cannot reach xenstore and exits: the sockets it was passed
# stay in the store for the one after.
echo "XENSTORED_PATH=$dir/nowhere" > "$sd/env.once"
kill -TERM "$p2"
until_ok 10 has_event "^exit $p2 " || bad "stubdmd $p2 did not exit: $(events)"
check "the failing start did not fail: $(events)" \
    until_ok 20 eval '[ "$(starts)" -ge 3 ] && has_event "^exit $(mainpid) 256\$"'
pf=$(mainpid)
check "a failed start dropped the stored sockets: $(events)" \
    eval '! has_event "^fdstoreremove $pf "'
check "no instance after the failed start: $(events)" wait_restarted 4
p2=$(mainpid)
check "the sockets not passed after a failed start: $(events)" passed_all "$p2"
check "query-status after the failed start" qmp_running 100

# ---- 4. kill -9: no window either -------------------------------------------------
probe_start probe9
kill -KILL "$p2"
until_ok 10 has_event "^exit $p2 " || bad "stubdmd $p2 did not die: $(events)"
"$client" "$sock" query-status 30 > "$dir/qmp-down.out" 2>> "$dir/qmp.err" &
down_client=$!
wait "$down_client"
check "the client connected after kill -9 was not served: $(cat "$dir/qmp-down.out")" \
    grep -q '"status":"running"' "$dir/qmp-down.out"
check "no instance after kill -9: $(events)" wait_restarted 5
probe_stop probe9
check "a client found no socket after kill -9: $(tail -1 "$dir/probe9.out")" \
    no_failure
echo "with the fd store, kill -9 + 3 s + start: $(tail -1 "$dir/probe9.out")"
p3=$(mainpid)
check "STOPPING=1 after kill -9: $(events)" eval '! has_event "^stopping $p2\$"'

# ---- 5. destroyed while served --------------------------------------------------
"$ctl" destroy "$s101" > /dev/null 2>> "$dir/spawn.err" || bad "destroy $s101"
check "no FDSTOREREMOVE for qmp-libxl-101: $(events)" \
    until_ok 10 has_event "^fdstoreremove $p3 qmp-libxl-101\$"
check "qmp-libxl-101 left when its FDSTOREREMOVE came" test ! -e "$dir/qmp/qmp-libxl-101"
check "STATUS= not back to 1: $(events)" \
    until_ok 5 has_event "^status $p3 serving 1 stubdomain\$"

# ---- 6. destroyed while no stubdmd runs --------------------------------------------
s102=$(spawn 102 --service)
until_ok 10 has_event "^fdstore $p3 qmp-libxl-102\$" ||
    bad "qmp-libxl-102 not stored: $(events)"
kill -TERM "$p3"
until_ok 10 has_event "^exit $p3 " || bad "stubdmd $p3 did not exit"
"$ctl" destroy "$s102" > /dev/null 2>> "$dir/spawn.err" || bad "destroy $s102"
check "no instance after the SIGTERM: $(events)" wait_restarted 6
p4=$(mainpid)
check "qmp-libxl-102 passed to the fourth: $(events)" \
    has_event "^start $p4 .*qmp-libxl-102"
check "the socket of a gone stubdomain kept in the store: $(events)" \
    has_event "^fdstoreremove $p4 qmp-libxl-102\$"
check "READY=1 with 'serving 1 stubdomain': $(events)" \
    has_event "^status $p4 serving 1 stubdomain\$"
check "query-status after the fourth start" qmp_running 100

kill -TERM "$mpid"
wait "$mpid"
mpid=
check "the manager's stubdmd did not exit 0: $(events | tail -2)" \
    has_event "^exit $p4 0\$"

# ---- 7. without a service manager ------------------------------------------------
rm "$dir/stubdmd.err"
"$daemon" --run-dir "$dir/run" --log-dir "$dir/log" --qmp-dir "$dir/qmp" \
    --ready-fd 5 5> "$dir/ready" 2>> "$dir/stubdmd.err" &
dpid=$!
check "--ready-fd: no newline" until_ok 10 test -s "$dir/ready"
check "--ready-fd: not a newline: $(od -c "$dir/ready")" \
    test "$(od -An -c "$dir/ready" | tr -d ' ')" = '\n'
check "ready before the adoption: $(cat "$dir/stubdmd.err")" \
    grep -q "^stubdmd: info: dom$s100 (guest 100): adopting" "$dir/stubdmd.err"
check "query-status without a service manager" qmp_running 100
# What a client sees during a restart without one: the socket is removed
# at SIGTERM (ENOENT) until the next instance adopts the stubdomain; after
# kill -9 it is left, dead (ECONNREFUSED), until then.
probe_start plain
kill -TERM "$dpid"
wait "$dpid"
sleep 0.5
start_daemon
until_ok 10 qmp_running 100 || bad "no QMP after the plain restart"
probe_stop plain
echo "without a service manager, SIGTERM + 0.5 s + start: $(tail -1 "$dir/plain.out")"
check "no window measured without a service manager: $(tail -1 "$dir/plain.out")" \
    test "${enoent:-0}" -gt 0
probe_start plain9
kill -KILL "$dpid"
wait "$dpid" 2> /dev/null
sleep 0.5
start_daemon
until_ok 10 qmp_running 100 || bad "no QMP after the plain kill -9"
probe_stop plain9
echo "without a service manager, kill -9 + 0.5 s + start: $(tail -1 "$dir/plain9.out")"
check "no ECONNREFUSED after kill -9 without a service manager: $(tail -1 "$dir/plain9.out")" \
    test "${refused:-0}" -gt 0
kill -TERM "$dpid"
wait "$dpid"
dpid=

[ "$fail" = 0 ] || { echo "--- the manager"; cat "$sd/manager.out"; }
stubdmd_summary stubdmd-systemd
