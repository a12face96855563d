#!/bin/bash
# stubdmd's control socket on the simulated host (issue 15):
#  1. without stubdmd, `stubdm-ctl list` prints what it printed before
#     (byte for byte), `console` and `restore` say nothing serves them;
#  2. RUNDIR/control is a 0600 socket; `stubdm-ctl list` shows who serves
#     what (text and JSON) after adoption;
#  3. `stubdm-ctl save` of a served stubdomain goes through stubdmd (its
#     QMP handle, the file passed as an fd): the file holds QEMU's device
#     state (QEVM), the QMP proxy still answers;
#  4. bad requests (malformed, oversized, unknown, an fd where none is
#     taken, a bad domid, one not served) each get "error NAME ..." and
#     change nothing (the same list, QMP answers, no file); a client of
#     another uid is refused (SO_PEERCRED; its request read, so it gets
#     the error, not a reset) and, with the socket's mode, cannot even
#     connect; a 17th client is refused (EBUSY), the 16 still answered;
#  5. console of a serial not served as a pty: the error; the relay, with
#     a stand-in stubdmd passing a pty;
#  6. restore: refused for a running device model; a stubdomain spawned
#     for restore with console 2 left to stubdmd is restored through it;
#  7. SIGTERM removes the socket; stubdm-ctl is as without stubdmd.
#
#   tests/stubdmd-control.sh STUBDM-CTL STUBDMD QMP-CLIENT
set -u

ctl=${1:?usage: stubdmd-control.sh STUBDM-CTL STUBDMD QMP-CLIENT}
daemon=${2:?usage: stubdmd-control.sh STUBDM-CTL STUBDMD QMP-CLIENT}
client=${3:?usage: stubdmd-control.sh STUBDM-CTL STUBDMD QMP-CLIENT}
. "$(dirname "$0")/stubdmd-lib.sh"

sock=$dir/run/control
c() { "$ctl" --control "$sock" "$@"; }
# raw REQUEST [FD-FILE | <FD-FILE]: one request as stubdmd gets it, its reply on
# stdout (python's socket module: any bytes, any size, an fd).
raw() {
    python3 - "$sock" "$@" <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
req = sys.argv[2].encode().decode('unicode_escape').encode('latin-1')
try:  # a refused client gets its reply, then EPIPE
    if len(sys.argv) > 3:  # "<FILE": read from it, else write to it
        path = sys.argv[3]
        fd = (os.open(path[1:], os.O_RDONLY) if path[0] == '<' else
              os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        socket.send_fds(s, [req], [fd])
    else:
        s.send(req)
except BrokenPipeError:
    pass
out = b''
reset = False
while not (out.endswith(b'\n') and (out.split(b'\n')[-2].startswith(b'ok') or out.split(b'\n')[-2].startswith(b'error '))):
    try:
        m = s.recv(8192)
    except ConnectionResetError:  # once: the reply may follow (see stubdmd_client.c)
        if reset:
            raise
        reset = True
        continue
    if not m:
        break
    out += m
sys.stdout.write(out.decode())
PY
}

# ---- 1. without stubdmd -----------------------------------------------------------
s100=$(spawn 100 --service)
[[ "$s100" =~ ^[0-9]+$ ]] || { cat "$dir/spawn.err"; echo "FAIL: spawn"; exit 1; }
"$ctl" list > "$dir/list.plain" 2>&1
c list > "$dir/list.none" 2>&1
check "list without stubdmd differs: $(diff "$dir/list.plain" "$dir/list.none")" \
    cmp -s "$dir/list.plain" "$dir/list.none"
"$ctl" --json list > "$dir/list.plain.json" 2>&1
c --json list > "$dir/list.none.json" 2>&1
check "list --json without stubdmd differs" \
    cmp -s "$dir/list.plain.json" "$dir/list.none.json"
c console "$s100" 3 > /dev/null 2> "$dir/console.err"
rc=$?
check "console without stubdmd: exit $rc, want 11: $(cat "$dir/console.err")" \
    test "$rc" = 11
check "console without stubdmd says: $(cat "$dir/console.err")" \
    grep -q "no stubdmd answers on $sock" "$dir/console.err"

# ---- 2. list after adoption -----------------------------------------------------
# Under umask 0 the control socket is still 0600.
old_umask=$(umask)
umask 0
start_daemon
umask "$old_umask"
check "console 0 of $s100 not in the log: $(cat "$dir/stubdmd.err")" \
    until_ok 10 logged 100 "device model running"
check "no QMP: $(cat "$dir/qmp.err" 2>/dev/null)" until_ok 10 qmp_running 100
check "the control socket is not a 0600 socket: $(stat -c '%F %a' "$sock")" \
    test -S "$sock" -a "$(stat -c %a "$sock")" = 600
c list > "$dir/list" 2>&1
check "list shows no served stubdomain: $(cat "$dir/list")" \
    grep -qE "^$s100 +100 +[^ ]+ +running +stubdmd\[$dpid\] +connected +[1-9][0-9]* +ready +0$" "$dir/list"
c --json list > "$dir/list.json" 2>&1
check "list --json: $(cat "$dir/list.json")" \
    grep -qF "\"stubdom\":$s100,\"guest\":100,\"name\":\"guest100-dm\",\"state\":\"running\",\"served_by\":{\"service\":\"stubdmd\",\"pid\":$dpid,\"con0\":\"connected\"" "$dir/list.json"
raw list > "$dir/raw.list"
check "raw list: $(cat "$dir/raw.list")" \
    grep -qE "^served stub=$s100 guest=100 name=guest100-dm con0=connected logged=[1-9][0-9]* dropped=0 qmp=ready clients=0$" "$dir/raw.list"
check "raw list's end: $(cat "$dir/raw.list")" \
    grep -qx "ok pid=$dpid served=1" "$dir/raw.list"

# ---- 3. save through stubdmd ----------------------------------------------------
# A real QEMU (not --no-qemu): xen-save-devices-state writes its "QEVM" stream.
qemu_args=(-xen-domid 110 -machine xenfv -m 16 -nodefaults -display none
    -no-shutdown)
s110=$("$ctl" spawn --guest 110 --service --timeout 30 -- "${qemu_args[@]}" \
    2>> "$dir/spawn.err")
check "spawn of guest 110 (QEMU): $(tail -3 "$dir/spawn.err")" \
    test -n "$s110"
check "no QMP for 110: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 20 qmp_running 110
c save "$s110" --out "$dir/dm.state" 2> "$dir/save.err"
rc=$?
check "save through stubdmd: exit $rc: $(cat "$dir/save.err")" test "$rc" = 0
check "the save went through stubdmd: $(grep -i save "$dir/stubdmd.err")" \
    grep -q "dom$s110 (guest 110): control: save: done" "$dir/stubdmd.err"
size=$(stat -c %s "$dir/dm.state" 2>/dev/null || echo 0)
check "the saved state is empty" test "$size" -gt 0
check "the saved state is not QEMU's (no QEVM)" grep -q QEVM "$dir/dm.state"
check "the save's report: $(cat "$dir/save.err")" \
    grep -q "saved the device model of guest 110 (stubdomain $s110): $size bytes" \
    "$dir/save.err"
check "the file is 0600" test "$(stat -c %a "$dir/dm.state")" = 600
# The QMP proxy is still there: stubdmd's handle stayed open.
"$client" "$dir/qmp/qmp-libxl-110" cont 10 > /dev/null 2>> "$dir/qmp.err"
check "QMP through the proxy after the save" qmp_running 110
# Without stubdmd the same save would have failed: stubdmd holds the lock.
c --json save "$s110" --out "$dir/dm2.state" > "$dir/save.json" 2>&1
check "save --json through stubdmd: $(cat "$dir/save.json")" \
    grep -qE "^\{\"stubdom\":$s110,\"guest\":110,\"bytes\":[1-9][0-9]*," "$dir/save.json"
"$client" "$dir/qmp/qmp-libxl-110" cont 10 > /dev/null 2>> "$dir/qmp.err"

# ---- 4. bad requests change nothing ---------------------------------------------
raw list | grep -v '^ok' | sed 's/ logged=[0-9]*//' > "$dir/before"
bad_request() { # DESCRIPTION EXPECTED-LINE-REGEX REQUEST [FD-FILE]
    local what=$1 want=$2
    shift 2
    raw "$@" > "$dir/bad.out" 2>&1
    check "$what: $(cat "$dir/bad.out")" grep -qE "^$want" "$dir/bad.out"
    check "$what: more than one line: $(cat "$dir/bad.out")" \
        test "$(wc -l < "$dir/bad.out")" = 1
}
bad_request "empty" "error STUBDM_EINVAL malformed request" ""
bad_request "control byte" "error STUBDM_EINVAL malformed request" 'list\x01'
bad_request "two spaces" "error STUBDM_EINVAL malformed request" "console  $s100 3"
bad_request "non-ASCII" "error STUBDM_EINVAL malformed request" 'list\xe9'
bad_request "oversized" "error STUBDM_ELIMIT request over 256 bytes" \
    "list $(head -c 300 /dev/zero | tr '\0' x)"
bad_request "a 256-byte request is parsed, not refused as too long" \
    "error STUBDM_EINVAL usage: list" "list $(head -c 251 /dev/zero | tr '\0' x)"
bad_request "unknown" "error STUBDM_ENOTSUP unknown request 'destroy'" "destroy $s100"
bad_request "an fd with list" "error STUBDM_EINVAL 'list' takes no fd" list "$dir/fd.1"
bad_request "save without fd" "error STUBDM_EINVAL usage: save" "save $s100 1000 0"
bad_request "save, bad domid" "error STUBDM_EINVAL bad stubdomain domid '0100'" \
    "save 0100 1000 0" "$dir/fd.2"
bad_request "save, not served" "error STUBDM_ENOENT dom4242 is not served" \
    "save 4242 1000 0" "$dir/fd.3"
bad_request "save, timeout 0" "error STUBDM_EINVAL usage: save" \
    "save $s100 0 0" "$dir/fd.4"
bad_request "save with --no-qemu's QMP" "error STUBDM_EQMP" \
    "save $s100 5000 0" "$dir/fd.5"
bad_request "console, not a serial" "error STUBDM_ENOENT console 3 of dom$s100 is not a serial served as a pty" \
    "console $s100 3"
bad_request "console 0" "error STUBDM_ENOENT console 0 of dom$s100" "console $s100 0"
bad_request "restore, running" "error STUBDM_ESTATE the device model of dom$s110 runs" \
    "restore $s110" "<$dir/dm.state"
check "a refused save left something in its file" \
    test ! -s "$dir/fd.2" -a ! -s "$dir/fd.3" -a ! -s "$dir/fd.4"
# 16 clients at most: the 17th is refused, the 16 are still answered.
python3 - "$sock" > "$dir/clients.out" 2>&1 <<'PY'
import socket, sys, time
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    return s
held = [conn() for _ in range(16)]
time.sleep(0.5)
extra = conn()
print("17th:", extra.recv(4096).decode(), end="")
held[0].send(b"list")
print("1st:", held[0].recv(4096).decode().split("\n")[-2])
PY
check "a 17th client: $(cat "$dir/clients.out")" \
    grep -qx "17th: error STUBDM_EBUSY too many control clients" "$dir/clients.out"
check "the 16 held: $(cat "$dir/clients.out")" \
    grep -q "^1st: ok pid=$dpid" "$dir/clients.out"
raw list > "$dir/raw.list"
check "a client after the 16 closed: $(cat "$dir/raw.list")" \
    grep -q "^ok pid=$dpid" "$dir/raw.list"

raw list | grep -v '^ok' | sed 's/ logged=[0-9]*//' > "$dir/after"
check "bad requests changed the list: $(diff "$dir/before" "$dir/after")" \
    cmp -s "$dir/before" "$dir/after"
check "QMP after the bad requests" qmp_running 100
check "stubdmd died on the bad requests" kill -0 "$dpid"

# A client of another uid: the socket's mode keeps it out; with the mode
# opened (as a mistake would), stubdmd's SO_PEERCRED check refuses it.
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
    chmod 711 "$dir" "$dir/run"
    nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }
    nobody "$ctl" --control "$sock" console "$s100" 3 > /dev/null 2> "$dir/uid.err"
    rc=$?
    check "console as uid 65534 (0600 socket): exit $rc, want 5: $(cat "$dir/uid.err")" \
        test "$rc" = 5
    check "console as uid 65534 (0600 socket): $(cat "$dir/uid.err")" \
        grep -q "stubdmd's control socket $sock: Permission denied (STUBDM_EPERM)" \
        "$dir/uid.err"
    chmod 666 "$sock"
    nobody "$ctl" --control "$sock" console "$s100" 3 > /dev/null 2> "$dir/uid.err"
    rc=$?
    check "console as uid 65534 (0666 socket): exit $rc, want 5: $(cat "$dir/uid.err")" \
        test "$rc" = 5
    check "console as uid 65534 (0666 socket): $(cat "$dir/uid.err")" \
        grep -q "uid 65534 may not use the control socket (root only) (STUBDM_EPERM)" "$dir/uid.err"
    (export -f raw; export sock; nobody bash -c 'raw list') > "$dir/uid.out" 2>&1
    check "a raw list as uid 65534: $(cat "$dir/uid.out")" \
        grep -qx "error STUBDM_EPERM uid 65534 may not use the control socket (root only)" \
        "$dir/uid.out"
    check "stubdmd does not log the refusal" \
        grep -q "control: refused a client of uid 65534" "$dir/stubdmd.err"
    # The request already queued when stubdmd accepts (stopped meanwhile):
    # the refusal still reaches the client at its first read (stubdmd
    # reads what it was sent before closing; an unread message would make
    # that read fail with ECONNRESET).
    kill -STOP "$dpid"
    nobody /usr/bin/python3 - "$sock" > "$dir/uid.out" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"list")
print(s.recv(4096).decode(), end="")
PY
    upid=$!
    sleep 0.3
    kill -CONT "$dpid"
    wait "$upid"
    check "refused with the request queued: $(cat "$dir/uid.out")" \
        grep -qx "error STUBDM_EPERM uid 65534 may not use the control socket (root only)" \
        "$dir/uid.out"
    chmod 600 "$sock"
    chmod 700 "$dir"
    raw list | grep -v '^ok' | sed 's/ logged=[0-9]*//' > "$dir/after"
    check "the refused client changed the list" cmp -s "$dir/before" "$dir/after"
else
    echo "note: not root or no setpriv: the other-uid checks are skipped"
fi

# ---- 5. console ------------------------------------------------------------------
c console "$s100" 3 < /dev/null > /dev/null 2> "$dir/console.err"
rc=$?
check "console of a non-pty: exit $rc, want 5: $(cat "$dir/console.err")" \
    test "$rc" = 5
check "console of a non-pty says: $(cat "$dir/console.err")" \
    grep -q "console 3 of dom$s100 is not a serial served as a pty" "$dir/console.err"

# The relay itself, against a stand-in stubdmd (python) that answers
# "console 5 3" with a pty of its own: what the pty says reaches stdout,
# stdin reaches the pty.
python3 - "$dir/fake" "$dir/fake.got" <<'PY' > "$dir/fake.err" 2>&1 &
import os, socket, sys, time
l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
l.bind(sys.argv[1]); l.listen(1)
c, _ = l.accept()
req = c.recv(512)
m, sl = os.openpty()
os.system("stty raw -echo < " + os.ttyname(sl))
socket.send_fds(c, [b"ok tty=" + os.ttyname(sl).encode() + b"\n"], [sl])
os.close(sl)
os.write(m, b"hello from serial 3\r\n")
got = b""
end = time.time() + 5
while b"typed" not in got and time.time() < end:
    got += os.read(m, 100)
open(sys.argv[2], "wb").write(req + b"|" + got)
PY
fpid=$!
until_ok 5 test -S "$dir/fake"
printf 'typed\n' | "$ctl" --control "$dir/fake" console 5 3 > "$dir/relay.out" 2> "$dir/relay.err"
rc=$?
wait "$fpid"
check "console relay: exit $rc: $(cat "$dir/relay.err" "$dir/fake.err")" test "$rc" = 0
check "console relay: the pty's output: $(cat "$dir/relay.out")" \
    grep -q "hello from serial 3" "$dir/relay.out"
check "console relay: request and stdin: $(cat "$dir/fake.got")" \
    grep -q "^console 5 3|typed" "$dir/fake.got"

# The relay through stubdmd itself: a stubdomain with a serial, which the
# --no-qemu stand-in echoes; what is typed comes back through the pty.
s112=$("$ctl" spawn --guest 112 --service --serial pty --sim-arg --no-qemu \
    --timeout 20 -- -xen-domid 112 -machine xenfv -m 16 -nodefaults \
    -serial /dev/hvc3 2>> "$dir/spawn.err")
serial_served() { raw list | grep -q "guest=112 .*con3=/dev/pts/"; }
check "console 3 of $s112 not listed as served: $(raw list)" until_ok 10 serial_served
(printf 'typed through stubdmd\n'; sleep 2) |
    timeout 20 "$ctl" --control "$sock" console "$s112" 3 > "$dir/relay2.out" 2> "$dir/relay2.err"
rc=$?
check "console relay through stubdmd: exit $rc: $(cat "$dir/relay2.err")" test "$rc" = 0
check "console relay through stubdmd: the echo: $(od -c "$dir/relay2.out" | head -5)" \
    grep -q "typed through stubdmd" "$dir/relay2.out"

# ---- 6. restore -------------------------------------------------------------------
"$ctl" spawn --guest 111 --service --restore-by-service --timeout 30 -- \
    -xen-domid 111 -machine xenfv -m 16 -nodefaults -display none \
    -no-shutdown > "$dir/s111" 2> "$dir/spawn-111.err" &
spid=$!
served_111() { raw list > "$dir/list.111"; grep -qE "guest=111 .* qmp=opening" "$dir/list.111"; }
check "guest 111 not served while restoring: $(cat "$dir/list.111" 2>/dev/null)" \
    until_ok 20 served_111
s111=$(sed -n 's/^served stub=\([0-9]*\) guest=111 .*/\1/p' "$dir/list.111")
c restore "$s111" --in "$dir/dm.state" 2> "$dir/restore.err"
rc=$?
check "restore through stubdmd: exit $rc: $(cat "$dir/restore.err")" test "$rc" = 0
check "restore's report: $(cat "$dir/restore.err")" \
    grep -q "restored: stubdmd gave $size bytes of $dir/dm.state to stubdomain $s111" \
    "$dir/restore.err"
wait "$spid"
rc=$?
check "the spawn for restore: exit $rc: $(tail -3 "$dir/spawn-111.err")" test "$rc" = 0
check "QMP of the restored guest 111" until_ok 20 qmp_running 111
c restore "$s111" --in "$dir/dm.state" 2> "$dir/restore.err"
rc=$?
check "a second restore: exit $rc, want 1: $(cat "$dir/restore.err")" test "$rc" = 1
check "a second restore says: $(cat "$dir/restore.err")" \
    grep -q "the device model of dom$s111 runs" "$dir/restore.err"
c restore "$s100" --in "$dir/nothing" 2> "$dir/restore.err"
check "restore of a missing file" grep -q "nothing: No such file" "$dir/restore.err"

# ---- 7. SIGTERM: the socket goes, stubdm-ctl is as before -------------------------
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc" test "$rc" = 0
check "the control socket is left" test ! -e "$sock"
"$ctl" list > "$dir/list.plain" 2>&1
c list > "$dir/list.none" 2>&1
check "list after stubdmd differs: $(diff "$dir/list.plain" "$dir/list.none")" \
    cmp -s "$dir/list.plain" "$dir/list.none"
c save "$s110" --out "$dir/dm3.state" 2> "$dir/save.err"
rc=$?
check "save without stubdmd: exit $rc: $(cat "$dir/save.err")" test "$rc" = 0
check "save without stubdmd: no QEVM" grep -q QEVM "$dir/dm3.state"
c restore "$s110" --in "$dir/dm.state" 2> "$dir/restore.err"
rc=$?
check "restore without stubdmd: exit $rc, want 11: $(cat "$dir/restore.err")" \
    test "$rc" = 11

stubdmd_summary stubdmd-control
