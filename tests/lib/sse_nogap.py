#!/usr/bin/env python3
"""No-gap test of the event stream (SPEC.md section 4), python3 stdlib only.

Writers PATCH the note of their own order over keep-alive connections while
stream clients connect, drop at random moments (sometimes mid-event) and
reconnect with the id of the last complete event they saw, as Last-Event-ID
header or lastEventId parameter. At the end every client's ids, concatenated
over all its connections, must be strictly increasing and must be exactly the
ids of the events table after its first start position up to the last event;
every data line must be what lib/sse_oracle.py makes of its row.

Prints one JSON summary line; exit status 0 when every check passed, 1 when
one failed (the reasons are in the summary's "failures"), 2 on bad usage.

  sse_nogap.py --base http://127.0.0.1:PORT --db PATH|URL [--writers 4]
               [--patches 500] [--clients 50] [--pause-ms 10] [--deadline 90]
               [--stale-every N] [--seed N]

With --stale-every N, every Nth PATCH of a writer carries a stale If-Match:
it must be refused with 412 and leave no event, while the writes around it
(in the same group commit, when writers do not pause) are kept.
"""

import argparse
import http.client
import json
import random
import socket
import sqlite3

import pgrows
import sys
import threading
import time
import urllib.parse

from sse_oracle import block_fields, event_data   # beside this file: the stream as SPEC writes it


def now():
    return time.monotonic()


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.failures = []
        self.writers_done = threading.Event()
        self.final_head = None  # set once the writers are done
        self.abort = threading.Event()

    def fail(self, msg):
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(msg)


def create_order(host, port, prefix, customer):
    conn = http.client.HTTPConnection(host, port, timeout=20)
    body = json.dumps({"customer": customer,
                       "items": [{"sku": "NG-1", "name": "Nogap", "qty": 1,
                                  "unitPriceCents": 100}]})
    conn.request("POST", prefix + "/api/v1/orders", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 201:
        raise RuntimeError("create order: %d %r" % (resp.status, data[:200]))
    return json.loads(data)["id"]


def writer(idx, host, port, prefix, order_id, patches, pause, stale_every, shared, stats,
           deadline):
    conn = None
    done = 0
    errors = 0
    refused = 0
    n = 0
    while done < patches and now() < deadline and not shared.abort.is_set():
        n += 1
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=20)
        body = json.dumps({"note": "writer %d change %d %s" % (idx, n, "x" * random.randint(0, 40))})
        headers = {"Content-Type": "application/json"}
        stale = stale_every and n % stale_every == 0
        if stale:
            headers["If-Match"] = '"0"'     # versions start at 1
        try:
            conn.request("PATCH", prefix + "/api/v1/orders/" + order_id, body=body,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            errors += 1
            conn.close()
            conn = None
            if errors > 20:
                shared.fail("writer %d: too many connection errors, last %r" % (idx, e))
                break
            continue
        if stale and resp.status == 412:
            refused += 1
        elif resp.status == 200 and not stale:
            done += 1
        else:
            errors += 1
            if errors <= 3:
                shared.fail("writer %d: PATCH %s -> %d %r" % (idx, order_id, resp.status, data[:200]))
            if resp.status != 503 or errors > 20:
                break
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
        if pause:
            time.sleep(random.uniform(0, 2 * pause))
    if conn is not None:
        conn.close()
    stats["writer%d" % idx] = {"ok": done, "errors": errors, "refused": refused}
    if done < patches:
        shared.fail("writer %d: only %d of %d PATCHes succeeded" % (idx, done, patches))


class Client:
    """One logical SSE client that reconnects with its last seen id."""

    def __init__(self, idx, host, port, prefix, start, rng, shared, deadline):
        self.idx = idx
        self.host, self.port, self.prefix = host, port, prefix
        self.start_arg = start  # None: from the head; else a position
        self.start = start      # the first start position, known after connect
        self.rng = rng
        self.shared = shared
        self.deadline = deadline
        self.events = []        # (id, type, data) over all connections
        self.last_id = None
        self.connections = 0
        self.mid_event_drops = 0
        self.resets = []
        self.problems = []

    def problem(self, msg):
        if len(self.problems) < 10:
            self.problems.append(msg)

    def position(self):
        """Where the next connection starts: the last event seen, else the
        first start position (None until known: the head)."""
        return self.last_id if self.last_id is not None else self.start

    def reached(self):
        pos = self.position()
        return self.shared.final_head is not None and pos is not None \
            and pos >= self.shared.final_head

    def request(self):
        pos = self.position()
        path = self.prefix + "/api/v1/stream/events"
        headers = "Host: %s:%d\r\nAccept: text/event-stream\r\n" % (self.host, self.port)
        if pos is not None:
            if self.rng.random() < 0.5:
                headers += "Last-Event-ID: %d\r\n" % pos
            else:
                path += "?" + urllib.parse.urlencode({"lastEventId": pos})
        # HTTP/1.0: the body is the raw stream up to the close, no chunking
        return ("GET %s HTTP/1.0\r\n%s\r\n" % (path, headers)).encode()

    def dispatch(self, block):
        """Handles one complete block (without its blank line)."""
        fields, repeated = block_fields(block)
        for name in repeated:
            self.problem("repeated field %r in block %r" % (name, block[:200]))
        ev = fields.get(b"event", b"message").decode()
        if b"retry" in fields:
            return
        if ev == "connected":
            data = json.loads(fields[b"data"])
            if self.start is None:
                self.start = data["lastEventId"]
            if b"id" in fields:
                self.problem("connected event with an id")
            return
        if ev == "ping":
            if b"id" in fields:
                self.problem("ping with an id")
            return
        if ev == "reset":
            self.resets.append(fields.get(b"data", b"").decode())
            return
        if b"id" not in fields:
            self.problem("%s event without id: %r" % (ev, block[:200]))
            return
        eid = int(fields[b"id"])
        self.events.append((eid, ev, fields.get(b"data", b"").decode()))
        self.last_id = eid

    def one_connection(self, final):
        """Reads one connection until a random drop; final: read until the head."""
        self.connections += 1
        s = socket.create_connection((self.host, self.port), timeout=10)
        try:
            s.sendall(self.request())
            buf = b""
            headers_done = False
            # a drop at a random moment: after some time, or some events
            life = None if final else self.rng.choice(
                [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0])
            max_events = None if final else self.rng.choice([1, 3, 10, 50, 200, 10**9])
            t_end = now() + life if life is not None else self.deadline
            seen = 0
            s.settimeout(0.05)
            while True:
                if now() >= t_end or now() >= self.deadline or self.shared.abort.is_set():
                    if buf.strip(b"\n") and headers_done:
                        self.mid_event_drops += 1
                    return
                if final and self.reached():
                    return
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    if not headers_done:
                        self.problem("connection closed before the headers")
                    return
                buf += chunk
                if not headers_done:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head = buf[:end].decode("latin-1")
                    status = head.split("\r\n", 1)[0]
                    if " 200 " not in status + " ":
                        self.problem("status %r" % status)
                        return
                    buf = buf[end + 4:]
                    headers_done = True
                while True:
                    end = buf.find(b"\n\n")
                    if end < 0:
                        break
                    block, buf = buf[:end], buf[end + 2:]
                    self.dispatch(block)
                    seen += 1
                    if max_events is not None and seen >= max_events:
                        # drop right here, maybe with half an event in the buffer
                        if buf:
                            self.mid_event_drops += 1
                        return
        finally:
            try:
                if self.rng.random() < 0.3:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass

    def run(self):
        try:
            while now() < self.deadline and not self.shared.abort.is_set():
                final = self.shared.writers_done.is_set() and self.shared.final_head is not None
                if final and self.reached():
                    return
                try:
                    self.one_connection(final)
                except OSError as e:
                    self.problem("connection error %r" % e)
                    time.sleep(0.05)
                if not final:
                    time.sleep(self.rng.choice([0, 0, 0.01, 0.05, 0.1]))
            if not self.reached():
                self.problem("did not reach the last event %s (last seen %s) before the deadline"
                             % (self.shared.final_head, self.last_id))
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            self.problem("client crashed: %r" % e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--patches", type=int, default=500)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pause-ms", type=float, default=10,
                    help="mean pause of a writer between two PATCHes, so that the writes "
                         "last long enough for many drops and reconnects")
    ap.add_argument("--deadline", type=float, default=90)
    ap.add_argument("--stale-every", type=int, default=0,
                    help="every Nth PATCH of a writer has a stale If-Match and must get 412")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.base)
    if u.scheme != "http" or not u.hostname:
        print("--base must be http://host:port[/prefix]", file=sys.stderr)
        return 2
    host, port, prefix = u.hostname, u.port or 80, u.path.rstrip("/")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    t0 = now()
    deadline = t0 + args.deadline
    shared = Shared()
    stats = {}

    if pgrows.is_url(args.db):
        db = pgrows.connect(args.db)
        patch_col = "patch::text"
    else:
        db = sqlite3.connect(args.db, timeout=30)
        patch_col = "patch"
    head0 = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    orders = [create_order(host, port, prefix, "Nogap writer %d" % i) for i in range(args.writers)]
    head1 = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    # start positions: from 0, from the head (no position), from a random id
    clients = []
    for i in range(args.clients):
        kind = i % 3
        if kind == 0:
            start = 0
        elif kind == 1:
            start = None
        else:
            start = random.randint(max(0, head0 - 50), head1)
        clients.append(Client(i, host, port, prefix, start, random.Random(seed + i + 1),
                              shared, deadline))

    def delayed(c):
        time.sleep(c.rng.uniform(0, 0.5))
        c.run()

    cthreads = [threading.Thread(target=delayed, args=(c,), daemon=True) for c in clients]
    for t in cthreads:
        t.start()
    wthreads = [threading.Thread(target=writer, daemon=True,
                                 args=(i, host, port, prefix, orders[i], args.patches,
                                       args.pause_ms / 1000.0, args.stale_every, shared, stats,
                                       deadline))
                for i in range(args.writers)]
    for t in wthreads:
        t.start()
    for t in wthreads:
        t.join(max(0.0, deadline - now()))
    t_writes = now() - t0
    shared.final_head = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    shared.writers_done.set()
    for t in cthreads:
        t.join(max(0.0, deadline - now() + 5))
    if any(t.is_alive() for t in cthreads + wthreads):
        shared.abort.set()
        shared.fail("threads still running at the deadline")

    final = shared.final_head
    rows = {}
    for eid, etype, order_id, patch, ts in db.execute(
            "SELECT id, type, order_id, %s, ts FROM events WHERE id <= ? ORDER BY id" % patch_col,
            (final,)):
        rows[eid] = (etype, event_data(etype, order_id, patch, ts))
    all_ids = sorted(rows)
    pruned = db.execute("SELECT pruned_through FROM event_log_state").fetchone()[0]
    if pruned:
        shared.fail("the log was pruned during the test (pruned_through %d)" % pruned)
    writes = db.execute("SELECT count(*) FROM events WHERE id > ? AND type = 'order.updated'",
                        (head1,)).fetchone()[0]
    if writes != args.writers * args.patches:
        shared.fail("expected %d order.updated events from the writers, the table has %d"
                    % (args.writers * args.patches, writes))

    total_conns = 0
    total_mid = 0
    for c in clients:
        total_conns += c.connections
        total_mid += c.mid_event_drops
        tag = "client %d (start %s)" % (c.idx, c.start)
        for p in c.problems:
            shared.fail("%s: %s" % (tag, p))
        if c.resets:
            shared.fail("%s: got reset %s" % (tag, c.resets[:3]))
        if c.start is None:
            shared.fail("%s: never connected" % tag)
            continue
        ids = [e[0] for e in c.events]
        for a, b in zip(ids, ids[1:]):
            if b <= a:
                shared.fail("%s: id %d after %d (not strictly increasing)" % (tag, b, a))
                break
        want = [i for i in all_ids if i > c.start]
        if ids != want:
            got_set, want_set = set(ids), set(want)
            missing = sorted(want_set - got_set)
            extra = sorted(got_set - want_set)
            dups = len(ids) - len(got_set)
            shared.fail("%s: %d events, expected %d; missing %s%s; extra %s; duplicates %d"
                        % (tag, len(ids), len(want), missing[:10],
                           "..." if len(missing) > 10 else "", extra[:10], dups))
        for eid, etype, data in c.events:
            row = rows.get(eid)
            if row is None:
                continue
            if row[0] != etype or row[1] != data:
                shared.fail("%s: event %d differs from its row: %s %s / %s %s"
                            % (tag, eid, etype, data[:120], row[0], row[1][:120]))
                break
        if c.connections < 2:
            shared.fail("%s: connected only %d time(s)" % (tag, c.connections))

    summary = {
        "ok": not shared.failures,
        "seed": seed,
        "events_checked": len([i for i in all_ids if i > head0]),
        "head_before": head0,
        "final_head": final,
        "clients": len(clients),
        "connections": total_conns,
        "mid_event_drops": total_mid,
        "write_seconds": round(t_writes, 1),
        "seconds": round(now() - t0, 1),
        "writers": stats,
        "failures": shared.failures,
    }
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
