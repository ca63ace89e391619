#!/usr/bin/env python3
"""Many event streams through one burst (SPEC.md section 4), stdlib only.

Opens --streams stream connections that read everything, and --stalled ones
that read nothing after their response head, all from the head (no
Last-Event-ID). When every one has its `connected` event it writes "ready"
to --ready and waits until --go exists; then it reads until each reading
stream has the id in --go (the head after the burst), or --deadline
seconds. Checks, for every reading stream, that its ids are exactly the ids
of the events table after its `connected` lastEventId up to that head, in
order, once each, and that it is still open. A stalled stream is probed at
the end: it must have been closed by the service (EOF after whatever the
web server had buffered).

Prints one JSON summary; exit status 0 when every check passed, 1 when one
failed ("failures" says which), 2 on bad usage.

  sse_burst.py --port PORT --db PATH --ready FILE --go FILE
               [--streams 200] [--stalled 0] [--deadline 120]
"""

import argparse
import json
import os
import re
import selectors
import socket
import sqlite3
import sys
import time

ID_LINE = re.compile(rb"(?m)^id: (\d+)$")
CONNECTED = re.compile(rb'event: connected\ndata: \{"message":"Connected to event stream","lastEventId":(\d+)\}\n\n')
# HTTP/1.0: the body comes as it is, not in chunks that could cut a line.
REQUEST = ("GET /api/v1/stream/events HTTP/1.0\r\nHost: 127.0.0.1\r\n"
           "Accept: text/event-stream\r\n\r\n").encode()


class Stream:
    def __init__(self, n, port, stalled):
        self.n = n
        self.stalled = stalled
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if stalled:
            # a small receive buffer (set before connecting, so that the
            # window is negotiated for it), so that the stall shows soon
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(REQUEST)
        self.sock.setblocking(False)
        self.pending = b""      # bytes after the last complete line
        self.head_done = False
        self.start = None       # lastEventId of `connected`
        self.ids = []
        self.eof = False
        self.bytes = 0

    def feed(self, data):
        self.bytes += len(data)
        buf = self.pending + data
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.pending = buf
                return
            self.head_done = True
            buf = buf[end + 4:]
        # Only complete lines: an id line cut by a read waits for the rest.
        cut = buf.rfind(b"\n") + 1
        text, self.pending = buf[:cut], buf[cut:]
        if self.start is None:
            m = CONNECTED.search(text)
            if m:
                self.start = int(m.group(1))
        self.ids.extend(int(m.group(1)) for m in ID_LINE.finditer(text))

    def read(self):
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        self.feed(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--stalled", type=int, default=0)
    p.add_argument("--deadline", type=float, default=120)
    args = p.parse_args()

    failures = []
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    readers = [Stream(i, args.port, False) for i in range(args.streams)]
    stalled = [Stream(i, args.port, True) for i in range(args.stalled)]
    for s in readers:
        sel.register(s.sock, selectors.EVENT_READ, s)

    # Every reader connected; the stalled ones read only their head.
    deadline = t0 + 30
    while time.monotonic() < deadline:
        for s in stalled:
            if s.start is None and not s.eof:
                s.read()
        if all(s.start is not None for s in readers + stalled):
            break
        for key, _ in sel.select(0.05):
            key.data.read()
    else:
        print(json.dumps({"ok": False, "failures": ["not every stream connected within 30 s"]}))
        return 1
    with open(args.ready, "w") as f:
        f.write("ready\n")

    target = None
    deadline = time.monotonic() + args.deadline
    while time.monotonic() < deadline:
        if target is None and os.path.exists(args.go):
            text = open(args.go).read().strip()
            if text:
                target = int(text)
                t_go = time.monotonic()
        for key, _ in sel.select(0.1):
            key.data.read()
            if key.data.eof:
                sel.unregister(key.fileobj)
        if target is not None and all(s.eof or (s.ids and s.ids[-1] >= target) for s in readers):
            break
    t_done = time.monotonic()
    if target is None:
        failures.append("never told to go")
        target = 0

    db = sqlite3.connect(args.db, timeout=10)
    closed = [s.n for s in readers if s.eof]
    if closed:
        failures.append("%d reading streams were closed: %s" % (len(closed), closed[:10]))
    for s in readers:
        want = [r[0] for r in db.execute(
            "SELECT id FROM events WHERE id > ? AND id <= ? ORDER BY id", (s.start, target))]
        got = [i for i in s.ids if i <= target]
        if got != want:
            missing = sorted(set(want) - set(got))
            failures.append("stream %d: %d ids of %d, first missing %s, in order %s" % (
                s.n, len(got), len(want), missing[:3], got == sorted(set(got))))
            if len(failures) > 10:
                break

    # The stalled streams: after what the web server buffered, EOF. Pings
    # keep an open one talking: give up after 30 s.
    stalled_closed = 0
    for s in stalled:
        s.sock.setblocking(True)
        s.sock.settimeout(5)
        until = time.monotonic() + 30
        try:
            while s.sock.recv(1 << 20):
                if time.monotonic() > until:
                    raise socket.timeout
            stalled_closed += 1
        except socket.timeout:
            failures.append("stalled stream %d still open" % s.n)
        except OSError:
            stalled_closed += 1
    print(json.dumps({
        "ok": not failures,
        "streams": len(readers),
        "events": target - (readers[0].start if readers else 0),
        "delivered": sum(len(s.ids) for s in readers),
        "seconds": round(t_done - t_go, 1) if target else None,
        "stalled_closed": stalled_closed,
        "failures": failures,
    }))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
