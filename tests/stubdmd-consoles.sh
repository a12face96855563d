#!/bin/bash
# stubdmd's consoles beyond console 0, on the simulated host (issue 15):
#  1. a spawn with --service leaves the serials to the service (nobody
#     serves console 3 before stubdmd runs) and refuses a serial that is
#     not "pty";
#  2. stubdmd serves console 3 as a pty: its path in the frontend's tty
#     node (`xl console <guest>`) and in the dom0-owned
#     /local/domain/G/serial/0/tty (`xl console -t serial <guest>`); the
#     guest's output reaches a reader of the pty, what the reader writes
#     reaches the stubdomain (the simulated one echoes it back);
#  3. kill -9 and a new stubdmd: the pty comes back (the tty nodes written
#     again), and what the stubdomain wrote while no stubdmd ran reaches
#     the reader once, on the serial and in console 0's log;
#  4. SIGTERM hands the serial over (backend InitWait), empties the tty
#     nodes; the next stubdmd serves it again with nothing lost;
#  5. figures: the serial's throughput through the pty, the time for it
#     to come back after a restart (printed, not asserted).
# The reader follows /local/domain/G/serial/0/tty with a xenstore watch
# and reopens it when its pty hangs up, as a client across restarts must.
#
#   tests/stubdmd-consoles.sh STUBDM-CTL STUBDMD QMP-CLIENT
set -u

ctl=${1:?usage: stubdmd-consoles.sh STUBDM-CTL STUBDMD QMP-CLIENT}
daemon=${2:?usage: stubdmd-consoles.sh STUBDM-CTL STUBDMD QMP-CLIENT}
client=${3:?usage: stubdmd-consoles.sh STUBDM-CTL STUBDMD QMP-CLIENT}
. "$(dirname "$0")/stubdmd-lib.sh"

rpid=
stop_reader() {
    [ -n "$rpid" ] && kill "$rpid" 2> /dev/null && wait "$rpid" 2> /dev/null
    rpid=
}
trap 'stop_reader; cleanup' EXIT

spawn_serial() { # GUEST [OPTION...]: a stubdomain with one serial (console 3)
    local g=$1
    shift
    "$ctl" spawn --guest "$g" --service "$@" --sim-arg --no-qemu --timeout 20 \
        -- -xen-domid "$g" -machine xenfv -m 16 -nodefaults \
        -serial /dev/hvc3 2>> "$dir/spawn.err"
}
xsr() { xenstore-read "$1" 2> /dev/null; }
# sim_pid STUBDOM: the process of a simulated stubdomain of this test's
# private host (its environment names our sim dir and its domid).
sim_pid() {
    local e p
    for e in /proc/[0-9]*/environ; do
        tr '\0' '\n' < "$e" 2> /dev/null | grep -qxF "STUBDM_SIM_DIR=$STUBDM_SIM_DIR" &&
            tr '\0' '\n' < "$e" 2> /dev/null | grep -qx "STUBDM_SIM_DOMID=$1" || continue
        p=${e#/proc/}
        echo "${p%/environ}"
        return 0
    done
    return 1
}
# say STUBDOM N TEXT: the stubdomain writes TEXT and a newline on console N.
say() {
    timeout 5 sh -c 'printf "%s %s\n" "$2" "$3" > "$1"' sh \
        "$STUBDM_SIM_DIR/console/$1.say" "$2" "$3"
}
count() { # FILE TEXT: how many lines of FILE hold TEXT
    local n
    n=$(grep -cF "$2" "$1" 2> /dev/null)
    echo "${n:-0}"
}
has() { [ "$(count "$1" "$2")" -ge 1 ]; }
be_state_n() { # STUBDOM N
    xsr "/local/domain/0/backend/console/$1/$2/state"
}

# The reader: follows a tty node, appends what the pty gives to OUT, notes
# each open in OUT.events ("open PATH SECONDS").
cat > "$dir/follow.py" << 'EOF'
import os, select, signal, subprocess, sys, time
node, out = sys.argv[1], sys.argv[2]
w = subprocess.Popen(["xenstore-watch", node], stdout=subprocess.PIPE)
def stop(*_):
    w.kill()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
ev = open(out + ".events", "a", buffering=1)
o = open(out, "ab", buffering=0)
fd = None
def try_open():
    global fd
    v = subprocess.run(["xenstore-read", node], capture_output=True,
                       text=True).stdout.strip()
    if not v:
        return
    try:
        fd = os.open(v, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return
    ev.write("open %s %.3f\n" % (v, time.time()))
while True:
    r = select.select([w.stdout] + ([fd] if fd is not None else []), [], [])[0]
    if w.stdout in r:
        if not os.read(w.stdout.fileno(), 4096):
            break
        if fd is None:
            try_open()
    if fd is not None and fd in r:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            b = b""
        if b:
            o.write(b)
        else:  # hung up: the next write of the node is the next pty
            os.close(fd)
            fd = None
            ev.write("closed %.3f\n" % time.time())
EOF

# ---- 1. the spawn leaves the serials to the service ---------------------------
s110=$(spawn_serial 110 --serial pty)
[[ "$s110" =~ ^[0-9]+$ ]] || { cat "$dir/spawn.err"; echo "FAIL: spawn"; exit 1; }
check "console 3 of $s110 served by the spawn: backend state $(be_state_n "$s110" 3)" \
    test "$(be_state_n "$s110" 3)" = 1
"$ctl" spawn --guest 112 --service --serial "file:$dir/serial-112" \
    --sim-arg --no-qemu -- -xen-domid 112 -m 16 -serial /dev/hvc3 \
    > /dev/null 2> "$dir/spawn-112.err"
check "spawn --service --serial file: not refused: $(cat "$dir/spawn-112.err")" \
    grep -q 'serves serials as "pty" only' "$dir/spawn-112.err"
s111=$(spawn 111 --service)

# ---- 2. served as a pty ---------------------------------------------------------
fe_tty=/local/domain/$s110/device/console/3/tty
g_tty=/local/domain/110/serial/0/tty
say "$s110" 3 "serial-before-daemon"
start_daemon
check "no pty in $fe_tty: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 eval '[ -c "$(xsr "$fe_tty")" ]'
check "$g_tty is not the frontend's pty: '$(xsr "$g_tty")'" \
    test "$(xsr "$g_tty")" = "$(xsr "$fe_tty")"
check "$g_tty not dom0's, guest-readable: $(xenstore-ls -p /local/domain/110/serial 2>&1)" \
    eval 'xenstore-ls -p /local/domain/110/serial | grep -q "tty = .*(n0,r110)"'
check "console 3 of $s110 not connected: state $(be_state_n "$s110" 3)" \
    until_ok 10 test "$(be_state_n "$s110" 3)" = 4
check "a stubdomain without serials got one" \
    test -z "$(xsr /local/domain/111/serial/0/tty)"
python3 "$dir/follow.py" "$g_tty" "$dir/serial.out" 2>> "$dir/follow.err" &
rpid=$!
check "output written before stubdmd ran not read from the pty" \
    until_ok 10 has "$dir/serial.out" serial-before-daemon
say "$s110" 3 "serial-line-1"
check "the guest's output not read from the pty" \
    until_ok 10 has "$dir/serial.out" serial-line-1
printf 'ping-from-dom0\n' > "$(xsr "$g_tty")"
check "input written into the pty did not reach the stubdomain (no echo)" \
    until_ok 10 has "$dir/serial.out" ping-from-dom0

# ---- 3. kill -9: what is written meanwhile arrives once ---------------------------
say "$s110" 0 "log-line-before-kill"
check "console 0 line not logged" until_ok 10 logged 110 log-line-before-kill
old_tty=$(xsr "$g_tty")
kill -KILL "$dpid"
wait "$dpid" 2> /dev/null
dpid=
for i in 1 2 3; do
    say "$s110" 3 "serial-gap-$i"
    say "$s110" 0 "log-gap-$i"
done
sleep 0.3
t0=$(date +%s.%N)
start_daemon
check "the serial's output written while no stubdmd ran never arrived" \
    until_ok 10 has "$dir/serial.out" serial-gap-3
t1=$(date +%s.%N)
check "the log lines written while no stubdmd ran never arrived" \
    until_ok 10 logged 110 log-gap-3
t_open=$(awk '/^open/ { t = $3 } END { print t }' "$dir/serial.out.events")
echo "serial back after kill -9: the reader reopened the pty $(echo "$t_open - $t0" | bc) s after the new stubdmd's start, had the gap's last line after $(echo "$t1 - $t0" | bc) s (pty $old_tty -> $(xsr "$g_tty"))"
for l in serial-before-daemon serial-line-1 ping-from-dom0 serial-gap-1 \
    serial-gap-2 serial-gap-3; do
    n=$(count "$dir/serial.out" "$l")
    check "the serial gave '$l' $n times, want 1" test "$n" = 1
done
for l in "device model running" log-line-before-kill log-gap-1 log-gap-2 \
    log-gap-3; do
    n=$(count "$dir/log/qemu-dm-guest110-dm.log" "$l")
    check "the log has '$l' $n times, want 1" test "$n" = 1
done
check "the reader did not reopen the pty: $(cat "$dir/serial.out.events")" \
    test "$(grep -c '^open' "$dir/serial.out.events")" = 2

# ---- 4. SIGTERM hands the serial over ---------------------------------------------
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0
check "console 3 closed, not handed over: state $(be_state_n "$s110" 3)" \
    test "$(be_state_n "$s110" 3)" = 2
check "$g_tty still names the closed pty: '$(xsr "$g_tty")'" \
    test -z "$(xsr "$g_tty")"
check "$fe_tty still names the closed pty: '$(xsr "$fe_tty")'" \
    test -z "$(xsr "$fe_tty")"
say "$s110" 3 "serial-after-term"
start_daemon
check "the serial's output written after SIGTERM never arrived" \
    until_ok 10 has "$dir/serial.out" serial-after-term
n=$(count "$dir/serial.out" serial-gap-3)
check "after SIGTERM and a restart the serial gave serial-gap-3 $n times" \
    test "$n" = 1

# ---- 4b. adopted while running; destroyed ----------------------------------------
s113=$(spawn_serial 113 --serial pty)
check "console 3 of $s113 (spawned while stubdmd runs) not served: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 10 eval '[ -c "$(xsr /local/domain/113/serial/0/tty)" ] &&
        [ "$(be_state_n "$s113" 3)" = 4 ]'
# The stubdomain crashes, its guest stays: the guest's node must not keep
# the path of a pty that is gone.
p113=$(sim_pid "$s113") || bad "no process for stubdomain $s113"
[ -n "$p113" ] && kill -KILL "$p113"
check "crashed $s113: /local/domain/113/serial/0/tty still names its pty: '$(xsr /local/domain/113/serial/0/tty)'" \
    until_ok 10 eval '[ -n "$(xsr /local/domain/113/name)" ] &&
        [ -z "$(xsr /local/domain/113/serial/0/tty)" ]'
"$ctl" destroy "$s113" > /dev/null 2>> "$dir/spawn.err" || bad "destroy $s113"

# ---- 5. throughput through the pty ----------------------------------------------------
# 512 KiB as 64-byte lines in one burst (under the console's default budget
# of 1 MiB/s, which holds a second's worth: nothing dropped).
line=$(printf '%058d' 0)
for i in $(seq 1 8192); do printf '3 %05d%s\n' "$i" "$line"; done > "$dir/burst"
t0=$(date +%s.%N)
timeout 20 cp "$dir/burst" "$STUBDM_SIM_DIR/console/$s110.say"
end=$((SECONDS + 20))
while [ "$(count "$dir/serial.out" "$line")" -lt 8192 ] && [ $SECONDS -lt $end ]; do
    sleep 0.02
done
t1=$(date +%s.%N)
n=$(count "$dir/serial.out" "$line")
check "throughput: $n of 8192 lines arrived" test "$n" = 8192
echo "serial throughput through the pty: $((n * 64)) bytes in $(echo "$t1 - $t0" | bc) s = $(echo "$n * 64 / ($t1 - $t0)" | bc) bytes/s"

stop_reader
kill -TERM "$dpid"
wait "$dpid"
dpid=
stubdmd_summary stubdmd-consoles
