#!/usr/bin/env python3
"""Hostile clients for tests/hostile.bats, python3 stdlib only. Every
connection has a timeout and every loop a deadline. Each command prints one
JSON object on stdout; the checks that belong to the command are in its
"failures" list, and the exit status is 1 when that list is not empty.

  hostile.py big --port P --kind headers|bigheader|params|ids --count N
      One request: N header lines / a header value of N bytes / N query
      parameters on GET /api/v1/orders / a stream filter of N order ids.
      Reports who answered: "responder" (a JSON or event-stream answer),
      "server" (the web server's own answer) or "none".

  hostile.py slowloris --port P --bodies N --headers M [--interval 0.1]
                       [--seconds S] --probe-path PATH
      N connections send a POST whose body trickles in one byte every
      --interval seconds, M connections send their request line and headers
      the same way (all done within S seconds); meanwhile a normal GET of PROBE-PATH every 0.25 s must
      answer within 1 s. At the end every trickled request must have its
      answer (201 for the POSTs, 200 for the GETs).

  hostile.py idle --port P --conns N --hold S --probe-path PATH
                  [--watch PID]...
      Opens N connections that never send anything, holds them S seconds
      while a normal GET answers within 1 s every 0.25 s, samples the
      descriptor count of each --watch PID while they are open, then closes
      them all.

  hostile.py inject --port P --order ID [--origin O]
      CR/LF in Idempotency-Key, If-Match, If-None-Match, Last-Event-ID and
      Origin (bare CR, obs-fold, bare LF) and in query parameters (percent-
      encoded and raw): no response may carry an injected header, every
      header line must be well-formed, an Origin is echoed only when it is
      exactly an allowed one, and what the responder answers must be the
      expected status.
"""

import argparse
import json
import os
import re
import resource
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def now():
    return time.monotonic()


class Answer:
    def __init__(self):
        self.status = None
        self.headers = []       # (name, value), raw bytes decoded latin-1
        self.raw_head = b""
        self.body = b""
        self.ms = None
        self.error = None

    def header(self, name):
        vals = [v for n, v in self.headers if n.lower() == name.lower()]
        return vals[0] if vals else None

    @property
    def content_type(self):
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def source(self):
        if self.status is None:
            return "none"
        if self.content_type in ("application/json", "text/event-stream"):
            return "responder"
        if self.status in (204, 304) and self.header("Server") is not None:
            # the responder's 204/304 carry no type; lighttpd's own never come here
            return "responder"
        return "server"

    def brief(self):
        return {"status": self.status, "source": self.source, "ms": self.ms,
                "error": self.error, "body": self.body[:160].decode("utf-8", "replace")}


def exchange(port, data, timeout=10.0, stream_grace=0.3, trickle=None, deadline=None):
    """Sends data (all at once, or one byte every `trickle` s) on a new
    connection and reads one answer: up to Content-Length, to the close, or
    for an event stream the headers and what comes in stream_grace s."""
    a = Answer()
    t0 = now()
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except OSError as e:
        a.error = "connect: %s" % e
        return a
    try:
        if trickle:
            for i in range(len(data)):
                if deadline and now() > deadline:
                    a.error = "trickle deadline"
                    return a
                s.sendall(data[i:i + 1])
                time.sleep(trickle)
        else:
            s.sendall(data)
        buf = b""
        end = now() + timeout
        head_end = -1
        while now() < end:
            try:
                s.settimeout(max(0.05, end - now()))
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            buf += c
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    parse_head(a, buf[:head_end])
                    if a.content_type == "text/event-stream":
                        end = min(end, now() + stream_grace)
            if head_end >= 0:
                cl = a.header("Content-Length")
                if cl is not None and cl.isdigit() and len(buf) - head_end - 4 >= int(cl):
                    break
        if head_end < 0:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                parse_head(a, buf[:head_end])
            elif buf:
                a.error = "incomplete head: %r" % buf[:200]
        if head_end >= 0:
            a.body = buf[head_end + 4:]
    except OSError as e:
        a.error = "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
    a.ms = int((now() - t0) * 1000)
    return a


def parse_head(a, head):
    a.raw_head = head
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    a.status = int(m.group(1)) if m else None
    for ln in lines[1:]:
        n, _, v = ln.partition(b":")
        a.headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))


HEADER_LINE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[\x21-\x7e\x80-\xff]*(?:[ \t]+[\x21-\x7e\x80-\xff]+)*[ \t]*$")


def head_problems(a, injected=(b"x-injected", b"set-cookie")):
    """Header lines that are not `name: value` or that carry an injection."""
    out = []
    lines = a.raw_head.split(b"\r\n")[1:]
    for ln in lines:
        if not HEADER_LINE.match(ln):
            out.append("malformed header line %r" % ln[:120])
        name = ln.partition(b":")[0].strip().lower()
        if name in injected:
            out.append("injected header %r" % ln[:120])
        if b"x-injected" in ln.lower():
            out.append("injected text in header %r" % ln[:120])
    if b"\r" in a.raw_head.replace(b"\r\n", b"") or b"\n" in a.raw_head.replace(b"\r\n", b""):
        out.append("bare CR or LF in the response head")
    return out


def get(path, extra=b""):
    return (b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra + b"\r\n")


# ---------------------------------------------------------------- big

def header_names(n):
    al = "abcdefghijklmnopqrstuvwxyz0123456789"
    out = []
    for a in al[:26]:
        for b in al:
            out.append("x" + a + b)
            if len(out) == n:
                return out
    for a in al[:26]:
        for b in al:
            for c in al:
                out.append("x" + a + b + c)
                if len(out) == n:
                    return out
    return out


def cmd_big(args):
    n = args.count
    if args.kind == "headers":
        extra = b"".join(b"%s: 1\r\n" % h.encode() for h in header_names(n))
        req = get(b"/api/v1/health", extra)
    elif args.kind == "bigheader":
        req = get(b"/api/v1/health", b"X-Big: " + b"a" * n + b"\r\n")
    elif args.kind == "params":
        req = get(b"/api/v1/orders?" + b"&".join([b"a=1"] * n) + b"&limit=1")
    elif args.kind == "ids":
        ids = b",".join(b"ord_%05d" % i for i in range(1, n + 1))
        req = get(b"/api/v1/stream/events?ids=" + ids)
    else:
        raise SystemExit("unknown kind")
    a = exchange(args.port, req, timeout=20)
    res = a.brief()
    res.update({"kind": args.kind, "count": n, "bytes": len(req), "failures": []})
    if a.status is None:
        res["failures"].append("no answer (%s)" % a.error)
    elif a.source == "responder":
        if args.kind == "params" and a.status != 200:
            res["failures"].append("the responder answered %d to GET /orders with %d parameters"
                                   % (a.status, n))
        if args.kind in ("headers", "bigheader") and a.status != 200:
            res["failures"].append("the responder answered %d to GET /health" % a.status)
        if args.kind == "ids" and a.status not in (200, 400):
            res["failures"].append("the responder answered %d to a stream with %d ids" % (a.status, n))
        if a.content_type == "application/json":
            try:
                json.loads(a.body)
            except ValueError:
                res["failures"].append("the responder's body is not JSON: %r" % a.body[:200])
    elif a.status < 400:
        res["failures"].append("the web server answered %d itself" % a.status)
    print(json.dumps(res))
    return 1 if res["failures"] else 0


# ---------------------------------------------------------------- probes

class Prober(threading.Thread):
    def __init__(self, port, path, stop, limit_ms=1000):
        super().__init__(daemon=True)
        self.port, self.path, self.stop, self.limit_ms = port, path.encode(), stop, limit_ms
        self.n = 0
        self.max_ms = 0
        self.failures = []

    def run(self):
        while not self.stop.is_set():
            a = exchange(self.port, get(self.path), timeout=5)
            self.n += 1
            self.max_ms = max(self.max_ms, a.ms or 0)
            if a.status != 200:
                self.failures.append("probe %d: status %s (%s)" % (self.n, a.status, a.error))
            elif a.ms > self.limit_ms:
                self.failures.append("probe %d: answered after %d ms" % (self.n, a.ms))
            self.stop.wait(0.25)


# ---------------------------------------------------------------- slowloris

def cmd_slowloris(args):
    deadline = now() + args.seconds + 30
    stop = threading.Event()
    probe = Prober(args.port, args.probe_path, stop)
    results = {}

    def slow_body(i):
        body = json.dumps({"customer": "Slow %d" % i, "items": [
            {"sku": "S-%d" % i, "name": "Slow", "qty": 1, "unitPriceCents": 1}]},
            separators=(",", ":")).encode()
        head = (b"POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        # the head at once, the body one byte at a time
        a = Answer()
        t0 = now()
        try:
            s = socket.create_connection((HOST, args.port), timeout=args.seconds + 20)
            s.sendall(head)
            pause = args.interval
            for k in range(len(body)):
                if now() > deadline:
                    raise OSError("deadline")
                s.sendall(body[k:k + 1])
                time.sleep(pause)
            buf = b""
            while now() < deadline:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
            s.close()
            he = buf.find(b"\r\n\r\n")
            if he >= 0:
                parse_head(a, buf[:he])
                a.body = buf[he + 4:]
        except OSError as e:
            a.error = str(e)
        a.ms = int((now() - t0) * 1000)
        results["body%d" % i] = a

    def slow_head(i):
        req = get(b"/api/v1/health", b"X-Slow: %d\r\n" % i)
        results["head%d" % i] = exchange(args.port, req, timeout=args.seconds + 20,
                                         trickle=args.interval, deadline=deadline)

    threads = [threading.Thread(target=slow_body, args=(i,), daemon=True) for i in range(args.bodies)]
    threads += [threading.Thread(target=slow_head, args=(i,), daemon=True) for i in range(args.headers)]
    t0 = now()
    for t in threads:
        t.start()
    time.sleep(0.3)
    probe.start()
    for t in threads:
        t.join(max(0.0, deadline - now()))
    stop.set()
    probe.join(10)
    fails = list(probe.failures)
    statuses = {}
    for k, a in sorted(results.items()):
        statuses[k] = a.status
        want = 201 if k.startswith("body") else 200
        if a.status != want:
            fails.append("%s: expected %d, got %s (%s) %r" % (k, want, a.status, a.error, a.body[:160]))
    missing = args.bodies + args.headers - len(results)
    if missing:
        fails.append("%d trickling clients did not finish" % missing)
    res = {"seconds": round(now() - t0, 1), "probes": probe.n, "probe_max_ms": probe.max_ms,
           "statuses": statuses, "failures": fails[:30]}
    print(json.dumps(res))
    return 1 if fails else 0


# ---------------------------------------------------------------- idle connections

def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def cmd_idle(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    socks = []
    fails = []
    t0 = now()
    for i in range(args.conns):
        try:
            s = socket.socket()
            s.settimeout(5)
            s.connect((HOST, args.port))
            socks.append(s)
        except OSError as e:
            fails.append("connection %d: %s" % (i, e))
            break
    opened_ms = int((now() - t0) * 1000)
    time.sleep(0.5)
    fds_open = {str(p): fd_count(p) for p in args.watch or []}
    stop = threading.Event()
    probe = Prober(args.port, args.probe_path, stop)
    probe.start()
    time.sleep(args.hold)
    stop.set()
    probe.join(10)
    fails += probe.failures
    # which ones the server closed meanwhile (it may time idle ones out)
    closed = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in socks:
        s.close()
    res = {"opened": len(socks), "opened_ms": opened_ms, "probes": probe.n,
           "probe_max_ms": probe.max_ms, "fds_while_open": fds_open,
           "closed_by_server": closed, "failures": fails[:30]}
    if len(socks) < args.conns:
        fails.append("only %d of %d connections opened" % (len(socks), args.conns))
    if probe.n < 3:
        fails.append("only %d probes" % probe.n)
    res["failures"] = fails[:30]
    print(json.dumps(res))
    return 1 if fails else 0


# ---------------------------------------------------------------- injection

def cmd_inject(args):
    oid = args.order.encode()
    good = args.origin.encode()
    body = json.dumps({"customer": "Inject", "items": [
        {"sku": "I-1", "name": "Inject", "qty": 1, "unitPriceCents": 1}]}).encode()
    patch = b'{"note":"inject"}'
    bad = {
        "cr": b"\rX-Injected: 1",
        "fold": b"\r\n X-Injected: 1",
        "lf": b"\nX-Injected: 1",
    }

    def req(method, path, extra, data=b""):
        h = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
        if data:
            h += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        return h + extra + b"\r\n" + data

    cases = []   # (name, request, statuses the responder may answer)
    for kind, inj in bad.items():
        # a bare LF ends the header line: the value before it is what counts
        lf = kind == "lf"
        cases += [
            ("Idempotency-Key " + kind, req(b"POST", b"/api/v1/orders",
                                           b"Idempotency-Key: inj-" + kind.encode() + inj + b"\r\n", body),
             {201} if lf else {400}),
            ("If-Match " + kind, req(b"PATCH", b"/api/v1/orders/" + oid, b'If-Match: "999"' + inj + b"\r\n", patch),
             {412} if lf else {400, 412}),
            ("If-None-Match " + kind, req(b"GET", b"/api/v1/orders/" + oid, b'If-None-Match: "999"' + inj + b"\r\n"),
             {200} if lf else {200, 400}),
            ("Last-Event-ID " + kind, req(b"GET", b"/api/v1/stream/events", b"Last-Event-ID: 1" + inj + b"\r\n"),
             {200} if lf else {400}),
            ("Origin " + kind, req(b"GET", b"/api/v1/orders?limit=1", b"Origin: " + good + inj + b"\r\n"),
             {200}),
            ("Origin on the stream " + kind, req(b"GET", b"/api/v1/stream/events", b"Origin: " + good + inj + b"\r\n"),
             {200}),
            ("Origin preflight " + kind, req(b"OPTIONS", b"/api/v1/orders", b"Origin: " + good + inj +
                                             b"\r\nAccess-Control-Request-Method: POST\r\n"),
             {204}),
        ]
    enc = b"%0D%0AX-Injected:%201"
    for path, ok in [
        (b"/api/v1/orders?status=paid" + enc, {400}),
        (b"/api/v1/orders?limit=1" + enc, {400}),
        (b"/api/v1/orders?cursor=abc" + enc, {400}),
        (b"/api/v1/events?after=1" + enc, {400}),
        (b"/api/v1/events?limit=1" + enc, {400}),
        (b"/api/v1/stream/events?lastEventId=1" + enc, {400}),
        (b"/api/v1/stream/events?types=order.created" + enc, {400}),
        (b"/api/v1/stream/events?ids=" + oid + enc, {200, 400}),
        (b"/api/v1/stream/events?access_token=x" + enc, {200}),
        (b"/api/v1/orders/" + oid + enc, {404}),
        (b"/api/v1/orders/" + enc, {404}),
        (b"/api/v1/orders?status=paid&x=%0D%0ASet-Cookie:%20a=1", {200}),
        (b"/api/v1/orders?status=paid%0D%0ASet-Cookie:%20a=1", {400}),
    ]:
        cases.append(("query " + path.decode(), get(path), ok))
    for path in [b"/api/v1/orders?status=paid\rX-Injected: 1", b"/api/v1/orders?limit=1\r\nX-Injected: 1"]:
        cases.append(("raw CR/LF in the target " + repr(path), get(path), {400, 200}))

    fails = []
    seen = []
    for name, data, ok in cases:
        a = exchange(args.port, data, timeout=10)
        seen.append((name, a.status, a.source))
        for p in head_problems(a):
            fails.append("%s: %s" % (name, p))
        if a.status is None:
            fails.append("%s: no answer (%s)" % (name, a.error))
            continue
        acao = a.header("Access-Control-Allow-Origin")
        if acao is not None and acao not in (args.origin, "*"):
            fails.append("%s: Access-Control-Allow-Origin %r echoes what was sent" % (name, acao))
        if name.startswith("Origin") and not name.endswith("lf") and acao is not None and a.source == "responder":
            fails.append("%s: an Origin with CR/LF was allowed: %r" % (name, acao))
        if a.source == "responder" and a.status not in ok:
            fails.append("%s: the responder answered %d, expected %s: %r"
                         % (name, a.status, sorted(ok), a.body[:200]))
        if a.source == "server" and a.status < 400:
            fails.append("%s: the web server answered %d itself" % (name, a.status))
    res = {"cases": len(cases),
           "by_source": {s: sum(1 for x in seen if x[2] == s) for s in ("responder", "server", "none")},
           "answers": ["%s -> %s %s" % x for x in seen], "failures": fails[:40]}
    print(json.dumps(res))
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("big")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("--count", type=int, required=True)
    p = sub.add_parser("slowloris")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bodies", type=int, default=8)
    p.add_argument("--headers", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=20, help="deadline for the whole case")
    p.add_argument("--probe-path", default="/api/v1/health")
    p = sub.add_parser("idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--hold", type=float, default=4)
    p.add_argument("--probe-path", default="/api/v1/health")
    p.add_argument("--watch", type=int, action="append")
    p = sub.add_parser("inject")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--order", required=True)
    p.add_argument("--origin", default="https://good.example")
    args = ap.parse_args()
    return {"big": cmd_big, "slowloris": cmd_slowloris, "idle": cmd_idle,
            "inject": cmd_inject}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
