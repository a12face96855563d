#!/usr/bin/env python3
"""bench_stubdmd: the service (examples/stubdmd) on the simulated host, N
stubdomains (default 100) with the sim stubdomain's --no-qemu stand-in
(it answers QMP itself and, for the console figures, puts bytes into
console 0's ring on request: x-sim-console-write / x-sim-console-mark).

  - memory and fds: stubdmd's VmRSS and open fds serving 1 and N; the
    difference per served stubdomain;
  - idle: stubdmd's context switches (voluntary + involuntary) and CPU
    over 10 s while nothing happens (no polling: should be 0);
  - adoption after a restart, for 1, 10 and N: from exec to READY (the
    --ready-fd newline: every stubdomain adopted, its socket made) and to
    the last "QMP ready" (every QMP connection up);
  - console 0 throughput (to its log file, --console-rate 0): one
    stubdomain alone, and N at once;
  - fairness: the latency of a line on a quiet stubdomain's console (ring
    -> log file, by the CLOCK_MONOTONIC stamp the sim puts in it) while
    its neighbour floods its own, against the same with no flood.

Figures, not a test: nothing here passes or fails; it exits non-zero
only when it cannot run to the end.

  bench_stubdmd.py STUBDM-CTL STUBDMD [N]
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ctl, daemon = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 100
G0 = 1000  # guests G0 .. G0+N-1

work = tempfile.mkdtemp(prefix="bench-stubdmd.")
os.chmod(work, 0o700)
for d in ("log", "qmp", "run"):
    os.mkdir(os.path.join(work, d))
env = dict(os.environ, STUBDM_SIM_DIR=os.path.join(work, "sim"))
for k in ("XENSTORED_PATH", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET",
          "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
    env.pop(k, None)
proc = None
errfile = None


def die(msg):
    print("bench_stubdmd: " + msg, file=sys.stderr)
    if errfile and os.path.exists(errfile):
        with open(errfile) as f:
            sys.stderr.write("".join(f.readlines()[-10:]))
    sys.exit(1)


def sim(cmd):
    return subprocess.run([ctl, "sim", cmd], env=env, capture_output=True,
                          text=True)


def cleanup():
    if proc and proc.poll() is None:
        proc.kill()
        proc.wait()
    sim("stop")
    shutil.rmtree(work, ignore_errors=True)


r = sim("start")
m = re.search(r"XENSTORED_PATH=(\S+)", r.stdout)
if r.returncode or not m:
    die("cannot start the simulated host: " + r.stderr)
env["XENSTORED_PATH"] = m.group(1)

# ---- stubdomains ------------------------------------------------------------
stubs = {}  # guest -> stubdomain domid


def spawn(g):
    r = subprocess.run(
        [ctl, "spawn", "--guest", str(g), "--service", "--sim-arg",
         "--no-qemu", "--timeout", "120", "--", "-xen-domid", str(g),
         "-machine", "xenfv", "-m", "16", "-nodefaults"],
        env=env, capture_output=True, text=True)
    if r.returncode or not r.stdout.strip().isdigit():
        raise RuntimeError("spawn %d: %s" % (g, r.stderr.strip()))
    return g, int(r.stdout)


def spawn_many(guests):
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for g, s in ex.map(spawn, guests):
            stubs[g] = s


def destroy_many(guests):
    def one(g):
        subprocess.run([ctl, "destroy", str(stubs[g])], env=env,
                       capture_output=True)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(one, guests))
    for g in guests:
        del stubs[g]


# ---- the daemon -------------------------------------------------------------
def qmp_ready_lines():
    with open(errfile) as f:
        return sum(1 for l in f if "QMP ready" in l)


def start_daemon(expect):
    """Start stubdmd; returns (ms to READY, ms to the last QMP ready)."""
    global proc, errfile
    errfile = os.path.join(work, "stubdmd-%d.err" % time.monotonic_ns())
    rfd, wfd = os.pipe()
    t0 = time.monotonic()
    with open(errfile, "w") as err:
        proc = subprocess.Popen(
            [daemon, "--run-dir", os.path.join(work, "run"),
             "--log-dir", os.path.join(work, "log"),
             "--qmp-dir", os.path.join(work, "qmp"),
             "--log-size", str(1 << 40), "--console-rate", "0",
             "--ready-fd", str(wfd)],
            env=env, stderr=err, pass_fds=(wfd,))
    os.close(wfd)
    if os.read(rfd, 1) != b"\n":
        die("stubdmd never got ready")
    t_ready = time.monotonic()
    os.close(rfd)
    while qmp_ready_lines() < expect:
        if time.monotonic() - t0 > 300 or proc.poll() is not None:
            die("stubdmd: %d of %d QMP ready" % (qmp_ready_lines(), expect))
        time.sleep(0.005)
    return (t_ready - t0) * 1000, (time.monotonic() - t0) * 1000


def stop_daemon():
    global proc
    proc.send_signal(signal.SIGTERM)
    if proc.wait(60) != 0:
        die("stubdmd exited %d" % proc.returncode)
    proc = None


def proc_status():
    st = {}
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            k, v = line.split(":", 1)
            st[k] = (v.split() or [""])[0]
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    st["cpu_ticks"] = int(fields[11]) + int(fields[12])  # utime + stime
    st["fds"] = len(os.listdir("/proc/%d/fd" % proc.pid))
    return st


# ---- QMP through the daemon's proxy ----------------------------------------
class Qmp:
    def __init__(self, guest):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(60)
        self.s.connect(os.path.join(work, "qmp", "qmp-libxl-%d" % guest))
        self.buf = b""
        self.line()  # greeting
        self.cmd("qmp_capabilities")

    def line(self):
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                die("QMP connection closed")
            self.buf += data
        l, self.buf = self.buf.split(b"\n", 1)
        return json.loads(l)

    def send(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\r\n")

    def reply(self):
        while True:
            r = self.line()
            if "return" in r or "error" in r:
                if "error" in r:
                    die("QMP error: %s" % r["error"])
                return r

    def cmd(self, name, args=None):
        self.send(name, args)
        return self.reply()


def log_path(g):
    return os.path.join(work, "log", "qemu-dm-guest%d-dm.log" % g)


def log_size(g):
    try:
        return os.stat(log_path(g)).st_size
    except FileNotFoundError:
        return 0


def flood(guests, nbytes):
    """Every guest's console 0 gets nbytes at once; returns the seconds from
    the requests to the last byte in the last log, and each guest's."""
    clients = {g: Qmp(g) for g in guests}
    base = {g: log_size(g) for g in guests}
    t0 = time.monotonic()
    for g, q in clients.items():
        q.send("x-sim-console-write", {"bytes": nbytes})
    done = {}
    while len(done) < len(guests):
        for g in guests:
            if g not in done and log_size(g) >= base[g] + nbytes:
                done[g] = time.monotonic() - t0
        if time.monotonic() - t0 > 600:
            die("console flood: %d of %d done" % (len(done), len(guests)))
        time.sleep(0.001)
    for q in clients.values():
        q.reply()
        q.s.close()
    return max(done.values()), done


def mark_latencies(g, count, interval):
    """Lines stamped by the sim on g's console 0: ms from the stamp to the
    line in the log (polled every 0.2 ms)."""
    q = Qmp(g)
    out = []
    with open(log_path(g), "rb") as f:
        f.seek(0, 2)
        pending = b""
        for i in range(count):
            q.cmd("x-sim-console-mark", {"mark": "m%d" % i})
            want = b"sim-mark m%d " % i
            deadline = time.monotonic() + 30
            while True:
                pending += f.read()
                seen = time.monotonic_ns()
                k = pending.find(want)
                if k >= 0 and b"\n" in pending[k:]:
                    stamp = int(pending[k:].split(b"\n", 1)[0].split()[2])
                    out.append((seen - stamp) / 1e6)
                    pending = pending[k:].split(b"\n", 1)[1]
                    break
                if time.monotonic() > deadline:
                    die("mark m%d never reached the log" % i)
                time.sleep(0.0002)
            time.sleep(interval)
    q.s.close()
    return out


def cpu_ms():
    return proc_status()["cpu_ticks"] * 1000 / os.sysconf("SC_CLK_TCK")


def row(name, value, unit):
    print("%-52s %12s %s" % (name, value, unit))


# ---- the run --------------------------------------------------------------------
try:
    print("bench_stubdmd: stubdmd on the simulated host, %d stubdomains "
          "(sim-stubdom --no-qemu)" % N)
    spawn_many([G0])
    start_daemon(1)
    one = proc_status()
    spawn_many(range(G0 + 1, G0 + N))
    while qmp_ready_lines() < N:
        if proc.poll() is not None:
            die("stubdmd died")
        time.sleep(0.05)
    time.sleep(1)  # the last adoptions' logs settle
    many = proc_status()
    rss1, rssn = int(one["VmRSS"]), int(many["VmRSS"])
    row("VmRSS serving 1", rss1, "KiB")
    row("VmRSS serving %d" % N, rssn, "KiB")
    row("RSS per served stubdomain", "%.1f" % ((rssn - rss1) / (N - 1)),
        "KiB")
    row("fds serving 1 / %d" % N, "%d / %d" % (one["fds"], many["fds"]), "")
    row("fds per served stubdomain", "%.2f" % ((many["fds"] - one["fds"]) /
                                               (N - 1)), "")

    a = proc_status()
    time.sleep(10)
    b = proc_status()
    sw = lambda s: (int(s["voluntary_ctxt_switches"]) +
                    int(s["nonvoluntary_ctxt_switches"]))
    row("idle, %d served: context switches in 10 s" % N, sw(b) - sw(a), "")
    row("idle, %d served: CPU in 10 s" % N,
        "%d" % ((b["cpu_ticks"] - a["cpu_ticks"]) * 1000 //
                os.sysconf("SC_CLK_TCK")), "ms")

    # Console 0 throughput, no rate limit, to the log file; stubdmd's CPU
    # against the wall time says whether it or the stubdomains' side (the
    # simulated transport, N sim processes) is the bound.
    c0 = cpu_ms()
    t, _ = flood([G0], 16 << 20)
    single = 16 / t
    row("console 0, 1 stubdomain alone, 16 MiB", "%.1f" % single, "MiB/s")
    row("  stubdmd CPU / wall", "%.0f%%" % ((cpu_ms() - c0) / t / 10), "")
    per = 1 << 20
    c0 = cpu_ms()
    t, each = flood(list(range(G0, G0 + N)), per)
    row("console 0, %d at once, 1 MiB each: total" % N, "%.1f" % (N / t),
        "MiB/s")
    row("  stubdmd CPU / wall", "%.0f%%" % ((cpu_ms() - c0) / t / 10), "")
    row("  per stubdomain (mean of each's own)",
        "%.2f" % statistics.mean(1 / v for v in each.values()), "MiB/s")
    row("  first / last to finish", "%.2f / %.2f" % (min(each.values()),
                                                    max(each.values())), "s")

    # Fairness: a quiet console's line latency, alone and while the
    # neighbour floods (enough for the whole measurement).
    quiet, noisy = G0 + 1, G0
    lat0 = mark_latencies(quiet, 30, 0.02)
    clients = Qmp(noisy)
    fbytes = int(max(single, 1) * 8) << 20
    base = log_size(noisy)
    clients.send("x-sim-console-write", {"bytes": fbytes})
    time.sleep(0.3)
    lat1 = mark_latencies(quiet, 30, 0.02)
    still = log_size(noisy) < base + fbytes
    while log_size(noisy) < base + fbytes:
        time.sleep(0.01)
    clients.reply()
    clients.s.close()
    p50_0, p50_1 = statistics.median(lat0), statistics.median(lat1)
    row("line latency, quiet console, no flood: p50 / max",
        "%.2f / %.2f" % (p50_0, max(lat0)), "ms")
    row("  while the neighbour floods (%d MiB): p50 / max" % (fbytes >> 20),
        "%.2f / %.2f" % (p50_1, max(lat1)), "ms")
    row("  ratio of the p50s (flood / none)", "%.2f" % (p50_1 / p50_0), "x")
    if not still:
        print("  (the flood ended before the last line: fewer lines under "
              "load)")

    # Adoption after a restart.
    for n in (N, 10, 1):
        if n < len(stubs):
            destroy_many(sorted(stubs)[n:])
        stop_daemon()
        times = [start_daemon(n)]
        for _ in range(2):
            stop_daemon()
            times.append(start_daemon(n))
        ready = statistics.median(t[0] for t in times)
        qmp = statistics.median(t[1] for t in times)
        row("restart, %d stubdomains: to READY / to all QMP (p50 of 3)" % n,
            "%.0f / %.0f" % (ready, qmp), "ms")
        if n > 1:
            row("  per stubdomain", "%.2f / %.2f" % (ready / n, qmp / n), "ms")
    stop_daemon()
finally:
    cleanup()
