#!/usr/bin/env python3
"""QMP round trip over a unix socket (libxl's /var/run/xen/qmp-libxl-<G>):
greeting, qmp_capabilities, then N query-status, each timed from the
send to its reply.  Prints "median_us min_us max_us n" or exits 1 with
the reason.  Used by payload.sh's section libxl for every column of the
side by side, so all three are measured the same way.

    qmp-rtt.py SOCKET [N]
"""
import json
import socket
import sys
import time


def reply(f):
    """The next line that is a reply (events skipped), as a dict."""
    while True:
        line = f.readline()
        if not line:
            raise EOFError("the peer closed")
        msg = json.loads(line)
        if "return" in msg or "error" in msg or "QMP" in msg:
            return msg


def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("r")
    if "QMP" not in reply(f):
        raise SystemExit("no QMP greeting")
    s.sendall(b'{"execute":"qmp_capabilities"}\n')
    if "return" not in reply(f):
        raise SystemExit("qmp_capabilities refused")
    rtts = []
    for _ in range(n):
        t = time.monotonic_ns()
        s.sendall(b'{"execute":"query-status"}\n')
        r = reply(f)
        rtts.append((time.monotonic_ns() - t) // 1000)
        if "return" not in r:
            raise SystemExit("query-status: %s" % r)
    rtts.sort()
    print(rtts[len(rtts) // 2], rtts[0], rtts[-1], n)


if __name__ == "__main__":
    try:
        main()
    except (OSError, EOFError, ValueError) as e:
        raise SystemExit("qmp-rtt: %s" % e)
