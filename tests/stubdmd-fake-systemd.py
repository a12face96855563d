#!/usr/bin/env python3
"""A scripted stand-in for systemd running one Type=notify service with
FileDescriptorStoreMax= and Restart=always, for tests/stubdmd-systemd.sh.

    stubdmd-fake-systemd.py DIR RESTART_SEC -- COMMAND...

What systemd does, and only that: a datagram socket DIR/notify given as
$NOTIFY_SOCKET; READY=1, STATUS=, STOPPING=1, FDSTORE=1 + FDNAME= (the fds
kept, a dup of what the service sent), FDSTOREREMOVE=1 + FDNAME= (closed);
when the service exits it is started again after RESTART_SEC with the
stored fds as fds 3.. and $LISTEN_FDS, $LISTEN_FDNAMES, $LISTEN_PID (its
own pid, set in the child before exec).  Every event is a line in
DIR/events ("start PID NAMES", "ready PID", "status PID TEXT",
"stopping PID", "fdstore PID NAME", "fdstoreremove PID NAME",
"exit PID STATUS"); DIR/mainpid holds the service's pid.  A file
DIR/env.once of KEY=VALUE lines is added to the environment of the next
start only (then removed): a start made to fail.  SIGTERM to this
program: the service gets SIGTERM, the store is closed, exit.

    stubdmd-fake-systemd.py --probe PATH STOPFILE

Connects to the unix socket PATH every 100 ms (at most 400 times; while
no stubdmd runs they wait in the backlog of 128) until STOPFILE exists; prints "started" after the first, then "ok N enoent N
econnrefused N other N longest_failure_ms N": what a client sees during a
restart (each connection is closed at once).
"""
import array
import os
import select
import signal
import socket
import sys
import time


def probe(path, stopfile):
    counts = {"ok": 0, "enoent": 0, "econnrefused": 0, "other": 0}
    longest = 0.0
    fail_since = None
    tries, started = 0, False
    while not os.path.exists(stopfile) and tries < 400:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        now = time.monotonic()
        try:
            c.connect(path)
            counts["ok"] += 1
            tries += 1  # only these fill the backlog
            if fail_since is not None:
                longest = max(longest, now - fail_since)
            fail_since = None
        except OSError as e:
            key = {2: "enoent", 111: "econnrefused"}.get(e.errno, "other")
            counts[key] += 1
            if fail_since is None:
                fail_since = now
        c.close()
        if not started:
            print("started", flush=True)
            started = True
        time.sleep(0.1)
    if fail_since is not None:
        longest = max(longest, time.monotonic() - fail_since)
    print(" ".join("%s %d" % kv for kv in counts.items()),
          "longest_failure_ms %d" % (longest * 1000))
    sys.exit(0)


if sys.argv[1] == "--probe":
    probe(sys.argv[2], sys.argv[3])

d = sys.argv[1]
restart_sec = float(sys.argv[2])
cmd = sys.argv[sys.argv.index("--") + 1:]
path = os.path.join(d, "notify")
store = []  # [(name, fd)]
events = open(os.path.join(d, "events"), "a", buffering=1)
stopping = False


def event(line):
    events.write("%.3f %s\n" % (time.monotonic(), line))


def on_term(sig, frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def start():
    fds = [fd for _, fd in store]
    names = ":".join(n for n, _ in store)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        env.pop(k, None)
    once = os.path.join(d, "env.once")
    if os.path.exists(once):
        with open(once) as f:
            env.update(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
        os.unlink(once)
    pid = os.fork()
    if pid == 0:
        try:
            # Out of the way first, then down to 3.. (they may overlap).
            high = [os.dup(fd) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i, inheritable=True)
            for fd in high:
                if fd >= 3 + len(high):
                    os.close(fd)
            os.closerange(3 + len(fds), 1024)
            if fds:
                env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names,
                           LISTEN_PID=str(os.getpid()))
            err = os.open(os.path.join(d, "stubdmd.err"),
                          os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.dup2(err, 2)
            st = os.fstat(2)  # as systemd does for StandardError=journal
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    with open(os.path.join(d, "mainpid.new"), "w") as f:
        f.write("%d\n" % pid)
    os.rename(os.path.join(d, "mainpid.new"), os.path.join(d, "mainpid"))
    event("start %d %s" % (pid, names or "-"))
    return pid


def receive():
    fdsize = array.array("i").itemsize
    msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(253 * fdsize))
    fds, pid = [], 0
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - len(data) % fdsize])
            fds.extend(a)
        elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid = int.from_bytes(data[:4], sys.byteorder)
    kv = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
    if kv.get("READY") == "1":
        event("ready %d" % pid)
    if "STATUS" in kv:
        event("status %d %s" % (pid, kv["STATUS"]))
    if kv.get("STOPPING") == "1":
        event("stopping %d" % pid)
    name = kv.get("FDNAME", "stored")
    if kv.get("FDSTORE") == "1":
        for fd in fds:
            store.append((name, fd))
            event("fdstore %d %s" % (pid, name))
        fds = []
    if kv.get("FDSTOREREMOVE") == "1":
        for n, fd in [e for e in store if e[0] == name]:
            os.close(fd)
            store.remove((n, fd))
        event("fdstoreremove %d %s" % (pid, name))
    for fd in fds:  # sent without FDSTORE=1: systemd closes them
        os.close(fd)


pid = start()
restart_at = None
while True:
    if stopping is True and pid:
        os.kill(pid, signal.SIGTERM)
        stopping = "sent"
    if stopping and not pid:
        break
    try:
        r, _, _ = select.select([sock], [], [], 0.05)
    except InterruptedError:
        continue
    while r:
        receive()
        r, _, _ = select.select([sock], [], [], 0)
    if pid:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            event("exit %d %d" % (pid, st))
            pid = 0
            if stopping:
                continue
            restart_at = time.monotonic() + restart_sec
    elif restart_at is not None and time.monotonic() >= restart_at:
        restart_at = None
        pid = start()
for _, fd in store:
    os.close(fd)
sock.close()
os.unlink(path)
