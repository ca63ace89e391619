#!/usr/bin/env python3
"""Two hosts over one PostgreSQL database: writers and SSE streams on both,
checked against the event log. python3 stdlib only; psql for the database.

Used by tests/twohost.bats (see tests/lib/twohost.bash). Two commands:

  twohost.py run --base-a URL --base-b URL --db-url URL --psql PATH
      [--clients-a N] [--clients-b N] [--failover] [--writers N]
      [--writes N] [--writer-hosts ab|b] [--action PREFIX --action-after N
      --writes-after N] [--allow-503] [--deadline S] [--seed N]

    Writers (one order each, then PATCHes of its note and every fifth write
    a POST of a new order, a unique tag in each) send their writes to the
    hosts in turn (ab) or to B only (b). Stream clients open on A and on B
    from the head as it was before the writes, half with Last-Event-ID and
    half with ?lastEventId, and read until the last event. At the end:
      - every client saw exactly the ids of the log after its start, in
        order, once each, with the data GET /api/v1/events gives for them,
        so all clients saw the same sequence;
      - every write that got a 2xx has its row and its one event in the
        database (psql), and the number of events is what the writers
        were told (unless --allow-503, when a write cut off by an outage
        may or may not have committed);
      - without --failover a stream never closes; with it, a client whose
        stream closes reconnects to the next host with Last-Event-ID.
    With --action PREFIX, once --action-after writes succeeded the script
    creates PREFIX.ready and goes on writing; the caller does something
    (kill a host, restart PostgreSQL) and creates PREFIX.done; then every
    writer makes --writes-after more successful writes and stops.
    With --allow-503 a write may get 503 unavailable with Retry-After (it
    is retried with a new tag); any other failure, 500 above all, fails.

  twohost.py notify --base-a URL --base-b URL --db-url URL --psql PATH
      [--clients N] [--runs N] [--max-ms 900] [--median-ms 200]

    N streams on each host; then, --runs times, a psql UPDATE of an
    order's note: every stream must get its event within --max-ms of the
    statement's timestamp (the event's ts), and the median over all must
    be under --median-ms. The hub also reads the head every second when
    no NOTIFY came: were that the path, deliveries would spread over the
    whole second.

Prints one JSON summary line; exit status 0 when every check passed, 1
when one failed ("failures" in the summary), 2 on bad usage.
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

from sse_oracle import block_fields   # beside this file


def now():
    return time.monotonic()


class Shared:
    def __init__(self, deadline):
        self.lock = threading.Lock()
        self.failures = []
        self.deadline = deadline
        self.final_head = None
        self.abort = threading.Event()

    def fail(self, msg):
        with self.lock:
            if len(self.failures) < 60:
                self.failures.append(msg)


def parse_base(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError("a base must be http://host:port, not %r" % url)
    return (u.hostname, u.port or 80)


def psql(args, sql):
    out = subprocess.run([args.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                          "-d", args.db_url, "-c", sql],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql[:80], out.stderr.decode(errors="replace")))
    return [line.split("\t") for line in out.stdout.decode().splitlines() if line]


def http_json(base, method, path, body=None, headers=None, timeout=20):
    conn = http.client.HTTPConnection(base[0], base[1], timeout=timeout)
    try:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), raw
    finally:
        conn.close()


LOG_503 = []    # 503s that GET /api/v1/events answered (and was retried for)


def log_events(base, after, upto):
    """GET /api/v1/events from after up to upto, page by page: {id: entry}.
    A 503 with Retry-After (a connection of the responder that died with a
    restart of PostgreSQL, found out only now) is retried for up to 10 s."""
    out = {}
    pos = after
    t_end = now() + 10
    while pos < upto:
        st, headers, raw = http_json(base, "GET", "/api/v1/events?after=%d&limit=1000" % pos)
        if st == 503 and headers.get("retry-after") and now() < t_end:
            LOG_503.append(raw[:120].decode(errors="replace"))
            time.sleep(0.2)
            continue
        if st != 200:
            raise RuntimeError("GET /api/v1/events?after=%d: %d %r" % (pos, st, raw[:200]))
        page = json.loads(raw)["data"]
        if not page:
            break
        for e in page:
            out[e["eventId"]] = e
        pos = page[-1]["eventId"]
    return out


ITEM = {"sku": "TH-1", "name": "Two hosts", "qty": 1, "unitPriceCents": 100}


# ---------------------------------------------------------------- streams

class Client:
    """One SSE client: reads until the final head, reconnecting with
    Last-Event-ID (to the next host with failover) when its stream ends."""

    def __init__(self, idx, bases, start, use_header, failover, shared):
        self.idx = idx
        self.bases = bases          # [(host, port)], the first is its host
        self.host_i = 0
        self.start = start          # a position, or None: from the head
        self.use_header = use_header
        self.failover = failover
        self.shared = shared
        self.events = []            # (id, type, data dict, recv time, host index)
        self.last_id = None
        self.connections = 0
        self.closed = 0             # streams that ended (EOF or error) under us
        self.hosts_used = []
        self.problems = []
        self.connected = threading.Event()
        self.on_event = None        # callback(client, event) for notify

    def problem(self, msg):
        if len(self.problems) < 10:
            self.problems.append(msg)

    def position(self):
        return self.last_id if self.last_id is not None else self.start

    def done(self):
        fh = self.shared.final_head
        pos = self.position()
        return fh is not None and pos is not None and pos >= fh

    def request(self, host, port):
        pos = self.position()
        path = "/api/v1/stream/events"
        headers = "Host: %s:%d\r\nAccept: text/event-stream\r\n" % (host, port)
        if pos is not None:
            # after a reconnect always the header, as EventSource does
            if self.use_header or self.connections > 1:
                headers += "Last-Event-ID: %d\r\n" % pos
            else:
                path += "?lastEventId=%d" % pos
        return ("GET %s HTTP/1.0\r\n%s\r\n" % (path, headers)).encode()

    def dispatch(self, block):
        fields, _ = block_fields(block)
        if b"retry" in fields and b"data" not in fields:
            return
        ev = fields.get(b"event", b"message").decode()
        if ev == "connected":
            data = json.loads(fields[b"data"])
            if self.start is None:
                self.start = data["lastEventId"]
            self.connected.set()
            return
        if ev == "ping":
            return
        if ev == "reset":
            self.problem("reset %s" % fields.get(b"data", b"").decode())
            return
        if b"id" not in fields:
            self.problem("%s event without id" % ev)
            return
        eid = int(fields[b"id"])
        try:
            data = json.loads(fields.get(b"data", b""))
        except ValueError:
            data = None
            self.problem("event %d: data is not JSON" % eid)
        rec = (eid, ev, data, time.time(), self.host_i)
        self.events.append(rec)
        self.last_id = eid
        if self.on_event:
            self.on_event(self, rec)

    def one_connection(self):
        host, port = self.bases[self.host_i]
        self.connections += 1
        self.hosts_used.append(self.host_i)
        s = socket.create_connection((host, port), timeout=5)
        try:
            s.sendall(self.request(host, port))
            s.settimeout(0.1)
            buf = b""
            headers_done = False
            while True:
                if self.done() or self.shared.abort.is_set() or now() >= self.shared.deadline:
                    return True
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    if not headers_done:
                        self.problem("host %d closed before the headers" % self.host_i)
                    return False
                buf += chunk
                if not headers_done:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    status = buf[:end].split(b"\r\n", 1)[0].decode("latin-1")
                    if " 200 " not in status + " ":
                        self.problem("host %d answered %r" % (self.host_i, status))
                        return False
                    buf = buf[end + 4:]
                    headers_done = True
                while True:
                    end = buf.find(b"\n\n")
                    if end < 0:
                        break
                    block, buf = buf[:end], buf[end + 2:]
                    self.dispatch(block)
        finally:
            s.close()

    def run(self):
        try:
            while not self.done() and not self.shared.abort.is_set() \
                    and now() < self.shared.deadline:
                try:
                    finished = self.one_connection()
                except OSError as e:
                    finished = False
                    if self.connections == 1:
                        self.problem("first connection failed: %r" % e)
                if finished:
                    break
                self.closed += 1
                if self.failover:
                    self.host_i = (self.host_i + 1) % len(self.bases)
                else:
                    self.problem("stream on host %d closed (last id %s)"
                                 % (self.host_i, self.last_id))
                time.sleep(0.05)
            if not self.done() and not self.shared.abort.is_set():
                self.problem("did not reach the last event %s (last seen %s)"
                             % (self.shared.final_head, self.last_id))
        except Exception as e:  # noqa: BLE001 - reported
            self.problem("client crashed: %r" % e)
        finally:
            self.connected.set()


# ---------------------------------------------------------------- writers

class Writer:
    def __init__(self, idx, bases, order_hosts, args, shared, progress):
        self.idx = idx
        self.bases = bases
        self.order_hosts = order_hosts   # indexes into bases, taken in turn
        self.args = args
        self.shared = shared
        self.progress = progress
        self.conns = {}
        self.acks = []       # (kind, tag, order id, version)
        self.statuses = {}
        self.statuses_after = {}    # once the caller's action is done
        self.phase = None
        self.conn_errors = []
        self.order_id = None
        self.k = 0

    def send(self, host_i, method, path, body):
        """One request on a keep-alive connection; a connection the server
        closed while idle is opened again (the request never left)."""
        for attempt in (1, 2):
            conn = self.conns.get(host_i)
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection(*self.bases[host_i], timeout=20)
                self.conns[host_i] = conn
            try:
                conn.request(method, path, body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.conns.pop(host_i, None)
                if fresh or attempt == 2 or not isinstance(
                        e, (http.client.RemoteDisconnected, BrokenPipeError,
                            ConnectionResetError)):
                    return None, {}, repr(e).encode()
                continue
            headers = dict((k.lower(), v) for k, v in resp.getheaders())
            if headers.get("connection", "").lower() == "close":
                conn.close()
                self.conns.pop(host_i, None)
            return resp.status, headers, raw
        return None, {}, b"unreachable"

    def write(self, kind):
        """One write; True when it got its 2xx."""
        self.k += 1
        tag = "w%d-%d" % (self.idx, self.k)
        host_i = self.order_hosts[(self.idx + self.k) % len(self.order_hosts)]
        if kind == "POST":
            st, headers, raw = self.send(host_i, "POST", "/api/v1/orders",
                                         {"customer": tag, "items": [ITEM]})
            want = 201
        else:
            st, headers, raw = self.send(host_i, "PATCH", "/api/v1/orders/" + self.order_id,
                                         {"note": tag})
            want = 200
        key = str(st)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if self.phase and self.phase.action and self.phase.done.is_set():
            self.statuses_after[key] = self.statuses_after.get(key, 0) + 1
        if st == want:
            doc = json.loads(raw)
            self.acks.append((kind, tag, doc["id"], doc["version"]))
            if kind == "POST" and self.order_id is None:
                self.order_id = doc["id"]
            self.progress()
            return True
        if st is None:
            self.conn_errors.append("%s %s on host %d: %s" % (kind, tag, host_i, raw.decode()))
            self.shared.fail("writer %d: %s %s on host %d: no response (%s)"
                             % (self.idx, kind, tag, host_i, raw.decode()))
        elif st == 503 and self.args.allow_503:
            code = None
            try:
                code = json.loads(raw)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                pass
            if code != "unavailable" or not headers.get("retry-after"):
                self.shared.fail("writer %d: %s %s on host %d: 503 without code unavailable "
                                 "and Retry-After: %r %r"
                                 % (self.idx, kind, tag, host_i, headers, raw[:200]))
            time.sleep(0.05)
        else:
            self.shared.fail("writer %d: %s %s on host %d -> %s %r"
                             % (self.idx, kind, tag, host_i, st, raw[:200]))
            time.sleep(0.05)
        return False

    def run(self, phase):
        self.phase = phase
        try:
            while self.order_id is None and now() < self.shared.deadline \
                    and not self.shared.abort.is_set():
                self.write("POST")
            n_ok = 0
            n_after = 0
            while now() < self.shared.deadline and not self.shared.abort.is_set():
                if phase.action:
                    if phase.done.is_set() and n_after >= self.args.writes_after:
                        break
                elif n_ok >= self.args.writes:
                    break
                after = phase.done.is_set()
                kind = "POST" if self.k % 5 == 4 else "PATCH"
                if self.write(kind):
                    n_ok += 1
                    if after:
                        n_after += 1
                if self.args.pause_ms:
                    time.sleep(random.uniform(0, 2 * self.args.pause_ms / 1000.0))
        except Exception as e:  # noqa: BLE001 - reported
            self.shared.fail("writer %d crashed: %r" % (self.idx, e))
        finally:
            for c in self.conns.values():
                c.close()


class Phase:
    """The --action hand-shake with the caller."""

    def __init__(self, args, shared):
        self.action = args.action
        self.after = args.action_after
        self.shared = shared
        self.count = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.done = threading.Event()
        if not self.action:
            self.done.set()

    def progress(self):
        with self.lock:
            self.count += 1
            if self.action and not self.ready.is_set() and self.count >= self.after:
                self.ready.set()
                with open(self.action + ".ready", "w") as f:
                    f.write("%d\n" % self.count)

    def watch(self):
        while self.action and not self.done.is_set() and not self.shared.abort.is_set():
            if os.path.exists(self.action + ".done"):
                self.done.set()
                return
            if now() >= self.shared.deadline:
                self.shared.fail("%s.done never came" % self.action)
                self.shared.abort.set()
                return
            time.sleep(0.02)


# ---------------------------------------------------------------- run

def check_db(args, shared, head0, writers, exact):
    rows = psql(args, "SELECT id, type, order_id, patch::text FROM events WHERE id > %d "
                      "ORDER BY id" % head0)
    events = [(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]
    orders = dict((r[0], r[1]) for r in psql(args, "SELECT id, customer FROM orders"))
    by_key = {}
    for eid, etype, oid, patch in events:
        tag = patch.get("note") if etype == "order.updated" else patch.get("customer")
        by_key.setdefault((etype, oid, tag), []).append((eid, patch))
    acked = 0
    for w in writers:
        for kind, tag, oid, version in w.acks:
            acked += 1
            etype = "order.created" if kind == "POST" else "order.updated"
            found = by_key.get((etype, oid, tag), [])
            if len(found) != 1:
                shared.fail("acknowledged %s %s (%s version %d): %d matching events in the log"
                            % (kind, tag, oid, version, len(found)))
            elif found[0][1].get("version") != version:
                shared.fail("acknowledged %s %s: its event has version %r, the response said %d"
                            % (kind, tag, found[0][1].get("version"), version))
            if kind == "POST" and orders.get(oid) != tag:
                shared.fail("acknowledged POST %s: orders row %s has customer %r"
                            % (tag, oid, orders.get(oid)))
    if exact and len(events) != acked:
        shared.fail("%d events in the log after %d, but %d acknowledged writes"
                    % (len(events), head0, acked))
    return events, acked


def check_clients(shared, clients, log, final_head):
    ids_all = sorted(i for i in log if i <= final_head)
    seqs = {}
    for c in clients:
        tag = "client %d (start %s, hosts %s)" % (c.idx, c.start, c.hosts_used[:6])
        for p in c.problems:
            shared.fail("%s: %s" % (tag, p))
        if c.start is None:
            shared.fail("%s: never connected" % tag)
            continue
        ids = [e[0] for e in c.events]
        for a, b in zip(ids, ids[1:]):
            if b <= a:
                shared.fail("%s: id %d after %d" % (tag, b, a))
                break
        want = [i for i in ids_all if i > c.start]
        if ids != want:
            got, exp = set(ids), set(want)
            shared.fail("%s: %d events, expected %d; missing %s; extra %s; duplicates %d"
                        % (tag, len(ids), len(want), sorted(exp - got)[:10],
                           sorted(got - exp)[:10], len(ids) - len(got)))
        for eid, etype, data, _, _ in c.events:
            e = log.get(eid)
            if e is None:
                continue
            expect = {"type": e["type"], "id": e["id"], "patch": e["patch"], "ts": e["ts"]}
            if etype != e["type"] or data != expect:
                shared.fail("%s: event %d is %s %s, the log says %s"
                            % (tag, eid, etype, json.dumps(data)[:160],
                               json.dumps(expect)[:160]))
                break
        seqs.setdefault(c.start, set()).add(tuple(ids))
    for start, s in seqs.items():
        if len(s) > 1:
            shared.fail("clients that started at %s saw %d different sequences" % (start, len(s)))


def cmd_run(args):
    bases = [parse_base(args.base_a), parse_base(args.base_b)]
    t0 = now()
    shared = Shared(t0 + args.deadline)
    random.seed(args.seed)
    head0 = int(psql(args, "SELECT head FROM event_log_state")[0][0])

    clients = []
    for i in range(args.clients_a + args.clients_b):
        home = 0 if i < args.clients_a else 1
        order = [bases[home], bases[1 - home]]
        clients.append(Client(i, order, head0, i % 2 == 0, args.failover, shared))
    cthreads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in cthreads:
        t.start()
    for c in clients:
        if not c.connected.wait(max(0.0, shared.deadline - now())):
            break
    not_connected = [c.idx for c in clients if c.start is None or c.connections == 0]
    if not_connected:
        shared.fail("clients %s did not connect" % not_connected)

    phase = Phase(args, shared)
    hosts = [0, 1] if args.writer_hosts == "ab" else [1]
    writers = [Writer(i, bases, hosts, args, shared, phase.progress) for i in range(args.writers)]
    wthreads = [threading.Thread(target=w.run, args=(phase,), daemon=True) for w in writers]
    for t in wthreads:
        t.start()
    phase.watch()
    for t in wthreads:
        t.join(max(0.0, shared.deadline - now()))
    t_writes = now() - t0
    if any(t.is_alive() for t in wthreads):
        shared.fail("writers still running at the deadline")
    if args.action and not phase.ready.is_set():
        shared.fail("the writers never reached %d writes: %s.ready was not made"
                    % (args.action_after, args.action))

    # the last event: what the database says, once the writers are done
    shared.final_head = int(psql(args, "SELECT head FROM event_log_state")[0][0])
    for t in cthreads:
        t.join(max(0.0, shared.deadline - now() + 5))
    if any(t.is_alive() for t in cthreads):
        shared.abort.set()
        shared.fail("stream clients still running at the deadline")
    t_streams = now() - t0

    events, acked = check_db(args, shared, head0, writers, exact=not args.allow_503)
    log_base = bases[1]
    log = log_events(log_base, head0, shared.final_head)
    db_ids = [e[0] for e in events if e[0] <= shared.final_head]
    if sorted(log) != db_ids:
        shared.fail("GET /api/v1/events has %d events after %d, the table %d"
                    % (len(log), head0, len(db_ids)))
    check_clients(shared, clients, log, shared.final_head)
    if args.failover:
        for c in clients:
            if c.hosts_used and c.hosts_used[0] == 0 and 1 not in c.hosts_used:
                shared.fail("client %d never moved to host B" % c.idx)
            if c.hosts_used and c.hosts_used[0] == 0:
                before = sum(1 for e in c.events if e[4] == 0)
                if before == 0:
                    shared.fail("client %d saw no event on host A before the switch" % c.idx)

    statuses_after = {}
    for w in writers:
        for k, v in w.statuses_after.items():
            statuses_after[k] = statuses_after.get(k, 0) + v
    statuses = {}
    for w in writers:
        for k, v in w.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    summary = {
        "ok": not shared.failures,
        "seed": args.seed,
        "head_before": head0,
        "final_head": shared.final_head,
        "events": len(events),
        "acknowledged": acked,
        "statuses": statuses,
        "clients": len(clients),
        "connections": sum(c.connections for c in clients),
        "write_seconds": round(t_writes, 1),
        "seconds": round(t_streams, 1),
        "failures": shared.failures,
    }
    if args.failover:
        summary["switched"] = sum(1 for c in clients if len(set(c.hosts_used)) > 1)
        summary["events_on_a_before_switch"] = sum(
            sum(1 for e in c.events if e[4] == 0) for c in clients if c.hosts_used[:1] == [0])
    if args.action:
        summary["statuses_after_action"] = statuses_after
    if LOG_503:
        summary["events_api_503"] = len(LOG_503)
    for k in ("write_seconds", "seconds", "failures"):
        summary[k] = summary.pop(k)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


# ---------------------------------------------------------------- notify

def cmd_notify(args):
    bases = [parse_base(args.base_a), parse_base(args.base_b)]
    t0 = now()
    shared = Shared(t0 + 60)
    st, _, raw = http_json(bases[0], "POST", "/api/v1/orders",
                           {"customer": "Notify target", "items": [ITEM]})
    if st != 201:
        print(json.dumps({"ok": False, "failures": ["POST on A: %d %r" % (st, raw[:200])]}))
        return 1
    oid = json.loads(raw)["id"]
    head0 = int(psql(args, "SELECT head FROM event_log_state")[0][0])
    seen = {}       # tag -> {client idx: latency ms}
    cond = threading.Condition()

    def on_event(c, rec):
        _, etype, data, recv, _ = rec
        if etype != "order.updated" or not isinstance(data, dict):
            return
        tag = data.get("patch", {}).get("note")
        if not tag:
            return
        with cond:
            seen.setdefault(tag, {})[c.idx] = (recv * 1000.0 - data["ts"], c.bases[0][1])
            cond.notify_all()

    clients = []
    for i in range(2 * args.clients):
        home = 0 if i < args.clients else 1
        c = Client(i, [bases[home]], head0, i % 2 == 0, False, shared)
        c.on_event = on_event
        clients.append(c)
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    for c in clients:
        c.connected.wait(10)
    lat = []
    for r in range(args.runs):
        # at a random point of the hub's one-second head check
        time.sleep(random.uniform(0.1, 0.7))
        tag = "notify-%d-%d" % (r, random.randrange(1 << 30))
        psql(args, "UPDATE orders SET note = '%s' WHERE id = '%s'" % (tag, oid))
        t_end = now() + 5
        with cond:
            while len(seen.get(tag, {})) < len(clients) and now() < t_end:
                cond.wait(0.05)
            got = dict(seen.get(tag, {}))
        missing = [c.idx for c in clients if c.idx not in got]
        if missing:
            shared.fail("run %d: clients %s did not get the UPDATE within 5 s" % (r, missing))
        for idx, (ms, port) in sorted(got.items()):
            lat.append(ms)
            if ms > args.max_ms:
                shared.fail("run %d: client %d (port %d) got the UPDATE after %.0f ms (limit %d)"
                            % (r, idx, port, ms, args.max_ms))
    shared.final_head = int(psql(args, "SELECT head FROM event_log_state")[0][0])
    for t in threads:
        t.join(10)
    shared.abort.set()
    log = log_events(bases[1], head0, shared.final_head)
    check_clients(shared, clients, log, shared.final_head)
    med = statistics.median(lat) if lat else None
    if med is not None and med > args.median_ms:
        shared.fail("median delivery %.0f ms over %d deliveries, limit %d ms: the NOTIFY path "
                    "is not what woke the hubs" % (med, len(lat), args.median_ms))
    summary = {
        "ok": not shared.failures,
        "deliveries": len(lat),
        "median_ms": round(med, 1) if med is not None else None,
        "max_ms": round(max(lat), 1) if lat else None,
        "latencies_ms": [round(x) for x in lat],
        "seconds": round(now() - t0, 1),
        "failures": shared.failures,
    }
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "notify"):
        p = sub.add_parser(name)
        p.add_argument("--base-a", required=True)
        p.add_argument("--base-b", required=True)
        p.add_argument("--db-url", required=True)
        p.add_argument("--psql", default="psql")
        p.add_argument("--seed", type=int, default=None)
    p = sub.choices["run"]
    p.add_argument("--clients-a", type=int, default=10)
    p.add_argument("--clients-b", type=int, default=10)
    p.add_argument("--failover", action="store_true")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--writes", type=int, default=200)
    p.add_argument("--writer-hosts", choices=("ab", "b"), default="ab")
    p.add_argument("--pause-ms", type=float, default=0)
    p.add_argument("--action", default=None)
    p.add_argument("--action-after", type=int, default=100)
    p.add_argument("--writes-after", type=int, default=50)
    p.add_argument("--allow-503", action="store_true")
    p.add_argument("--deadline", type=float, default=60)
    p = sub.choices["notify"]
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--max-ms", type=int, default=900)
    p.add_argument("--median-ms", type=int, default=200)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    random.seed(args.seed)
    try:
        return cmd_run(args) if args.cmd == "run" else cmd_notify(args)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
