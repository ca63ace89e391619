#!/usr/bin/env python3
"""Tools for the fault-injection suites (tests/faults.bats,
tests/faults-apache.bats), python3 stdlib only. Every loop is bounded in time.

  faults_tools.py lock --db PATH --ready FILE --release FILE [--max-hold S]
                       [--sql SQL]...
      Holds BEGIN EXCLUSIVE on the database (another process, as sqlite3 would)
      until FILE --release exists or --max-hold seconds passed, then commits.
      Each --sql statement runs inside the locked transaction right after the
      lock is taken: changes made "during" the lock, visible at the commit.
      Writes "locked <epoch ms>" to --ready once it holds the lock and
      "released <epoch ms>" after the commit.

  faults_tools.py load --base URL --out FILE [--writers 4] [--stop FILE]
                       [--max-seconds 60] [--tag T] [--patches 4]
      Writers, one keep-alive connection each: bursts of one POST (a new
      order, customer "<tag> w<W> #<N>") followed by --patches PATCHes of
      the note ("<tag> w<W> n<N>") of that writer's orders. Each request is
      one JSON line in FILE (flushed at once):
        {"w", "op", "id", "customer"|"note", "status", "version", "kind", "t"}
      kind: "ok" (2xx from the responder), "api_error" (an error of the
      responder: {"error": {...}} body), "server_error" (an answer that is not
      the responder's: the web server's own 5xx page), "no_answer" (the
      connection failed before a status line), "truncated" (a status line but
      the body cut short). Runs until --stop exists or --max-seconds.

  faults_tools.py check --db PATH|URL [--log FILE]...
      Checks the database (a SQLite file or a postgresql:// URL, read with
      psql: tests/lib/pgrows.py) against itself and against the load logs:
      integrity_check; every order's version equals the number of its events,
      and the versions in its events are exactly 1..version; one order.created
      per order; sqlite_sequence (on PostgreSQL: event_log_state.head and
      the orders.seq identity) at or above the largest id of events and
      orders; every 2xx of a log is in the database with its event (the
      created order, the PATCH's note and version); nothing a responder error
      refused is there at all (with --strict-errors: nothing that got the web
      server's own error either); at most one order per customer of the logs.
      Prints one JSON summary line; exit status 1 when a check failed.

  faults_tools.py backup-check --copy PATH --live PATH --before MS [--log FILE]...
      Checks a backup (a copy taken while the load ran) against the live
      database and the load logs: integrity_check of the copy is ok; its
      user_version equals the live file's; every 2xx of a log recorded
      before MS (epoch ms, when the backup started) is in the copy with its
      event (the created order and its order.created; the PATCH's
      order.updated with its version and note, the order at that version or
      later); the copy's events are a prefix of the live file's: exactly the
      live rows (every column) with an id up to the copy's largest.
      Prints one JSON summary line; exit status 1 when a check failed.
"""

import argparse
import http.client
import json
import os
import sqlite3
import sys
import threading
import time
import urllib.parse

import pgrows


def epoch_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- lock

def cmd_lock(args):
    deadline = time.monotonic() + args.max_hold
    conn = sqlite3.connect(args.db, isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("BEGIN EXCLUSIVE")
    for sql in args.sql or []:
        conn.execute(sql)
    with open(args.ready, "w") as f:
        f.write("locked %d\n" % epoch_ms())
    while not os.path.exists(args.release) and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.execute("COMMIT")
    conn.close()
    with open(args.ready, "a") as f:
        f.write("released %d\n" % epoch_ms())
    return 0


# ---------------------------------------------------------------- load

ITEM = {"sku": "FL-1", "name": "Fault load", "qty": 1, "unitPriceCents": 100}


class Writer(threading.Thread):
    def __init__(self, idx, args, out, lock, stop_at):
        super().__init__(daemon=True)
        self.idx = idx
        self.args = args
        self.out = out
        self.lock = lock
        self.stop_at = stop_at
        u = urllib.parse.urlsplit(args.base)
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.conn = None
        self.orders = []        # ids this writer created (2xx)
        self.n = 0

    def stopped(self):
        return time.monotonic() >= self.stop_at or (
            self.args.stop and os.path.exists(self.args.stop))

    def record(self, rec):
        rec["w"] = self.idx
        rec["t"] = epoch_ms()
        line = json.dumps(rec, separators=(",", ":"))
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def request(self, method, path, body):
        """One request; returns (kind, status, parsed body or None)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        status = None
        try:
            self.conn.request(method, self.prefix + path, body=json.dumps(body),
                              headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            status = resp.status
            data = resp.read()
        except http.client.IncompleteRead:
            self.drop()
            return "truncated", status, None
        except (OSError, http.client.HTTPException):
            self.drop()
            return ("no_answer" if status is None else "truncated"), status, None
        if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
            self.drop()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if 200 <= status < 300 and isinstance(doc, dict) and "id" in doc:
            return "ok", status, doc
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return "api_error", status, doc
        return "server_error", status, None

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self):
        tag = self.args.tag
        while not self.stopped():
            self.n += 1
            customer = "%s w%d #%d" % (tag, self.idx, self.n)
            kind, status, doc = self.request(
                "POST", "/api/v1/orders", {"customer": customer, "items": [ITEM]})
            rec = {"op": "POST", "customer": customer, "status": status, "kind": kind}
            if kind == "ok":
                rec["id"] = doc["id"]
                rec["version"] = doc["version"]
                self.orders.append(doc["id"])
            self.record(rec)
            if kind in ("no_answer", "server_error"):
                time.sleep(0.05)   # the responder is being restarted
            for k in range(self.args.patches):
                if self.stopped() or not self.orders:
                    break
                oid = self.orders[-1 - (k % min(len(self.orders), 3))]
                note = "%s w%d n%d.%d" % (tag, self.idx, self.n, k)
                kind, status, doc = self.request(
                    "PATCH", "/api/v1/orders/" + oid, {"note": note})
                rec = {"op": "PATCH", "id": oid, "note": note, "status": status, "kind": kind}
                if kind == "ok":
                    rec["version"] = doc["version"]
                    if doc.get("note") != note:
                        rec["kind"] = "wrong_body"
                self.record(rec)
                if kind in ("no_answer", "server_error"):
                    time.sleep(0.05)
        self.drop()


def cmd_load(args):
    stop_at = time.monotonic() + args.max_seconds
    lock = threading.Lock()
    with open(args.out, "a") as out:
        writers = [Writer(i, args, out, lock, stop_at) for i in range(args.writers)]
        for w in writers:
            w.start()
        for w in writers:
            w.join(max(0.0, stop_at - time.monotonic()) + 15)
    return 0


# ---------------------------------------------------------------- check

def read_logs(paths):
    recs = []
    for p in paths or []:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    recs.append(json.loads(line))
    return recs


def cmd_check(args):
    fails = []

    def fail(msg):
        if len(fails) < 40:
            fails.append(msg)

    if pgrows.is_url(args.db):
        db = pgrows.connect(args.db)
        orders = {r[0]: {"version": r[1], "customer": r[2], "note": r[3], "seq": r[4]}
                  for r in db.execute("SELECT id, version, customer, note, seq FROM orders")}
        events = db.execute(
            "SELECT id, type, order_id, patch::text FROM events ORDER BY id").fetchall()
        pruned = db.execute("SELECT pruned_through FROM event_log_state").fetchone()[0]
        seqs = {"events": db.execute("SELECT head FROM event_log_state").fetchone()[0],
                "orders": db.execute(
                    "SELECT coalesce(pg_sequence_last_value("
                    "pg_get_serial_sequence('orders', 'seq')::regclass), 0)").fetchone()[0]}
        max_event = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        max_seq = db.execute("SELECT coalesce(max(seq), 0) FROM orders").fetchone()[0]
    else:
        db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(args.db), uri=True, timeout=10)
        db.execute("PRAGMA busy_timeout = 10000")
        ic = db.execute("PRAGMA integrity_check").fetchall()
        if ic != [("ok",)]:
            fail("integrity_check: %r" % ic[:5])

        orders = {r[0]: {"version": r[1], "customer": r[2], "note": r[3], "seq": r[4]}
                  for r in db.execute("SELECT id, version, customer, note, seq FROM orders")}
        events = db.execute(
            "SELECT id, type, order_id, patch FROM events ORDER BY id").fetchall()
        pruned = db.execute("SELECT pruned_through FROM event_log_state").fetchone()[0]
        seqs = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        max_event = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        max_seq = db.execute("SELECT coalesce(max(seq), 0) FROM orders").fetchone()[0]
        db.close()

    if seqs.get("events", 0) < max_event:
        fail("sqlite_sequence for events %s below the largest event id %d"
             % (seqs.get("events"), max_event))
    if seqs.get("orders", 0) < max_seq:
        fail("sqlite_sequence for orders %s below the largest order seq %d"
             % (seqs.get("orders"), max_seq))

    # per order: the versions its events carry
    by_order = {}
    deleted = set()
    created_doc = {}
    updated_by = {}     # (id, version) -> patch
    prev = 0
    for eid, etype, oid, patch in events:
        if eid <= prev:
            fail("event ids not increasing: %d after %d" % (eid, prev))
        prev = eid
        try:
            p = json.loads(patch)
        except ValueError:
            fail("event %d: patch is not JSON: %r" % (eid, patch[:100]))
            continue
        if etype == "order.deleted":
            deleted.add(oid)
            continue
        if etype == "order.created":
            if oid in created_doc:
                fail("order %s has two order.created events" % oid)
            created_doc[oid] = p
            v = p.get("version")
        elif etype == "order.updated":
            v = p.get("version")
            updated_by[(oid, v)] = p
        else:
            fail("event %d: unknown type %r" % (eid, etype))
            continue
        by_order.setdefault(oid, []).append(v)

    if pruned == 0:
        for oid, o in orders.items():
            vs = by_order.get(oid, [])
            if len(vs) != o["version"]:
                fail("order %s: version %d but %d events (half-written change?)"
                     % (oid, o["version"], len(vs)))
            elif sorted(vs) != list(range(1, o["version"] + 1)):
                fail("order %s: event versions %r, expected 1..%d" % (oid, vs, o["version"]))
            if oid not in created_doc:
                fail("order %s has no order.created event" % oid)
        for oid in by_order:
            if oid not in orders and oid not in deleted:
                fail("events for %s, which is neither in orders nor deleted (event without its row)"
                     % oid)

    recs = read_logs(args.log)
    refusals = ("api_error", "server_error") if args.strict_errors else ("api_error",)
    kinds = {}
    customers = {}
    for o in orders.values():
        customers[o["customer"]] = customers.get(o["customer"], 0) + 1
    notes_in_events = {}
    for (oid, v), p in updated_by.items():
        if "note" in p:
            notes_in_events[p["note"]] = (oid, v)
    for r in recs:
        k = "%s %s" % (r["op"], r["kind"])
        kinds[k] = kinds.get(k, 0) + 1
        if r["kind"] in ("wrong_body",):
            fail("%s answered 2xx with a body that does not show the change: %r" % (r["op"], r))
        if r["op"] == "POST":
            n = customers.get(r["customer"], 0)
            if n > 1:
                fail("customer %r: %d orders for one POST" % (r["customer"], n))
            if r["kind"] == "ok":
                oid = r["id"]
                if oid not in created_doc:
                    fail("POST %s answered %s but no order.created event" % (oid, r["status"]))
                elif created_doc[oid].get("customer") != r["customer"]:
                    fail("order.created of %s is for %r, not %r"
                         % (oid, created_doc[oid].get("customer"), r["customer"]))
                if oid not in orders and oid not in deleted:
                    fail("POST %s answered %s but the order is not in the table" % (oid, r["status"]))
            elif r["kind"] in refusals and n:
                fail("POST for %r answered %s (%s), but the order exists"
                     % (r["customer"], r["status"], r["kind"]))
        elif r["op"] == "PATCH":
            if r["kind"] == "ok":
                p = updated_by.get((r["id"], r["version"]))
                if p is None:
                    fail("PATCH %s answered version %s but no order.updated event with that version"
                         % (r["id"], r["version"]))
                elif p.get("note") != r["note"]:
                    fail("order.updated %s v%s has note %r, the 2xx PATCH sent %r"
                         % (r["id"], r["version"], p.get("note"), r["note"]))
                o = orders.get(r["id"])
                if o is None and r["id"] not in deleted:
                    fail("PATCH %s answered 2xx but the order is gone" % r["id"])
                elif o is not None and o["version"] < r["version"]:
                    fail("PATCH %s answered version %d, the table has %d"
                         % (r["id"], r["version"], o["version"]))
            elif r["kind"] in refusals and r["note"] in notes_in_events:
                fail("PATCH %s answered %s (%s), but its change is in event version %s"
                     % (r["id"], r["status"], r["kind"], notes_in_events[r["note"]][1]))

    summary = {
        "ok": not fails,
        "orders": len(orders),
        "events": len(events),
        "max_event_id": max_event,
        "sequence": seqs,
        "requests": kinds,
        "failures": fails,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if not fails else 1


# ---------------------------------------------------------------- backup-check

def cmd_backup_check(args):
    fails = []

    def fail(msg):
        if len(fails) < 40:
            fails.append(msg)

    def ro(path):
        c = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(path), uri=True, timeout=10)
        c.execute("PRAGMA busy_timeout = 10000")
        return c

    copy = ro(args.copy)
    ic = copy.execute("PRAGMA integrity_check").fetchall()
    if ic != [("ok",)]:
        fail("copy: integrity_check: %r" % ic[:5])
        print(json.dumps({"ok": False, "failures": fails}, sort_keys=True))
        return 1
    live = ro(args.live)
    uv_copy = copy.execute("PRAGMA user_version").fetchone()[0]
    uv_live = live.execute("PRAGMA user_version").fetchone()[0]
    if uv_copy != uv_live:
        fail("copy: user_version %d, the live file's %d" % (uv_copy, uv_live))

    cev = copy.execute("SELECT * FROM events ORDER BY id").fetchall()
    cmax = cev[-1][0] if cev else 0
    # one read transaction on the live file for its events and nothing else
    lev = live.execute("SELECT * FROM events WHERE id <= ? ORDER BY id", (cmax,)).fetchall()
    live.close()
    if cev != lev:
        cids = {r[0] for r in cev}
        lids = {r[0] for r in lev}
        missing = sorted(lids - cids)
        extra = sorted(cids - lids)
        differ = [c[0] for c, l in zip(cev, lev) if c != l][:5]
        fail("copy's events are not the live events up to id %d: %d in the copy, %d live; "
             "missing from the copy %r, only in the copy %r, first rows that differ %r"
             % (cmax, len(cev), len(lev), missing[:10], extra[:10], differ))

    rows = {r[0]: r[1] for r in copy.execute("SELECT id, version FROM orders")}
    created = {}
    updated = {}
    for eid, etype, oid, patch in copy.execute(
            "SELECT id, type, order_id, patch FROM events ORDER BY id"):
        p = json.loads(patch)
        if etype == "order.created":
            created[oid] = p
        elif etype == "order.updated":
            updated[(oid, p.get("version"))] = p
    copy.close()

    before = after = 0
    for r in read_logs(args.log):
        if r["kind"] != "ok":
            continue
        if r["t"] >= args.before:
            after += 1
            continue
        before += 1
        oid = r["id"]
        if oid not in rows:
            fail("%s %s acknowledged at %d, before the backup (%d), but the order is not in the copy"
                 % (r["op"], oid, r["t"], args.before))
            continue
        if rows[oid] < r["version"]:
            fail("%s %s acknowledged version %d before the backup, the copy has version %d"
                 % (r["op"], oid, r["version"], rows[oid]))
        if r["op"] == "POST":
            if created.get(oid, {}).get("customer") != r["customer"]:
                fail("POST %s acknowledged before the backup: no order.created for %r in the copy"
                     % (oid, r["customer"]))
        elif updated.get((oid, r["version"]), {}).get("note") != r["note"]:
            fail("PATCH %s v%d acknowledged before the backup: no order.updated with note %r in the copy"
                 % (oid, r["version"], r["note"]))

    summary = {"ok": not fails, "events": len(cev), "max_event_id": cmax,
               "orders": len(rows), "acked_before": before, "acked_later": after,
               "failures": fails}
    print(json.dumps(summary, sort_keys=True))
    return 0 if not fails else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lock")
    p.add_argument("--db", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--release", required=True)
    p.add_argument("--max-hold", type=float, default=30)
    p.add_argument("--sql", action="append")
    p = sub.add_parser("load")
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--patches", type=int, default=4)
    p.add_argument("--stop")
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument("--tag", default="load")
    p = sub.add_parser("check")
    p.add_argument("--db", required=True)
    p.add_argument("--log", action="append")
    p.add_argument("--strict-errors", action="store_true",
                   help="the web server's own errors count as refusals too (no kill: "
                        "whatever got no 2xx must not be in the database at all)")
    p = sub.add_parser("backup-check")
    p.add_argument("--copy", required=True)
    p.add_argument("--live", required=True)
    p.add_argument("--before", type=int, required=True,
                   help="epoch ms when the backup started")
    p.add_argument("--log", action="append")
    args = ap.parse_args()
    return {"lock": cmd_lock, "load": cmd_load, "check": cmd_check,
            "backup-check": cmd_backup_check}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
