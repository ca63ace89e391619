#!/usr/bin/env bash
# Delivery delay of the event stream (SPEC section 4: "an event committed by
# any process reaches every open stream of every process within one poll
# interval (ORDERS_POLL_MS) and the ones of its own process at once"): how
# long a change takes to reach an open stream, as a distribution. A
# benchmark: it prints figures, it does not pass or fail. See bench/README.md,
# "Delivery delay".
#
# What runs, on 127.0.0.1, free ports, one temp directory: lighttpd with two
# responders on one database, A (lighttpd's own, bin-path, /api/v1/) and B
# (spawn-fcgi, /b/api/v1/), both with ORDERS_POLL_MS = POLL_MS. One stream is
# open on A. Then, one change at a time, a random pause of 20-120 ms between
# changes (so that they fall at every point of A's poll cycle), the kinds
# interleaved:
#   same     PATCH through A: A's own commit (no poll involved);
#   other    PATCH through B: another responder's commit, which A sees when
#            it next polls;
#   sqlite3  an UPDATE committed by another process (Python's sqlite3 module:
#            the moment its commit returns is known to the microsecond, which
#            a sqlite3 command started from the shell would blur).
# Each change writes "bench-delivery <kind> <n>" into an order's note; the
# delay is the moment its event arrived on the stream minus, for a PATCH, the
# moment the request was sent (the commit is after it) and, in a second row,
# the moment its response arrived (the commit is before it: this row can be
# negative); for sqlite3 the moment the commit returned.
#
# Environment (all optional):
#   SAMPLES      changes of each kind (default 200)
#   POLL_MS      ORDERS_POLL_MS of both responders (default 50, the default)
#   ORDERS_FCGI  responder binary (default src/orders.fcgi)
#   LIGHTTPD     lighttpd binary (default: on PATH, else /usr/sbin/lighttpd)
#   BENCH_OUT    results directory (default bench/out); a new delivery-<UTC time>/ per run
#   KEEP_TMP=1   keep the temporary directory
set -euo pipefail

BENCH_NAME=delivery
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

SAMPLES=${SAMPLES:-200}
POLL_MS=${POLL_MS:-50}
[[ $SAMPLES =~ ^[1-9][0-9]*$ ]] || die "SAMPLES must be a positive whole number"
[[ $POLL_MS =~ ^[1-9][0-9]*$ ]] || die "POLL_MS must be a positive whole number of milliseconds"
BENCH_OUT=$(abspath "${BENCH_OUT:-bench/out}")
bench_init spawn-fcgi
out=$BENCH_OUT/delivery-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

cat >"$T/delivery.py" <<'PYEOF'
import http.client, json, random, socket, sqlite3, sys, threading, time

port, db_path, samples, out_tsv = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
now = time.monotonic
MARK = b"bench-delivery "

class Stream(threading.Thread):
    """GET /api/v1/stream/events on A; notes when each marker arrives."""
    def __init__(self):
        super().__init__(daemon=True)
        self.seen = {}
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.error = None

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=None)
            s.sendall(b"GET /api/v1/stream/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Accept: text/event-stream\r\n\r\n")
            raw, body, head = b"", b"", True
            while True:
                c = s.recv(65536)
                t = now()
                if not c:
                    raise EOFError("the stream ended")
                raw += c
                if head:
                    i = raw.find(b"\r\n\r\n")
                    if i < 0:
                        continue
                    if b"chunked" not in raw[:i].lower():
                        raise ValueError("not a chunked response: %r" % raw[:i])
                    raw, head = raw[i + 4:], False
                # HTTP/1.1 chunked framing (lighttpd): size line, data, CRLF
                while True:
                    j = raw.find(b"\r\n")
                    if j < 0:
                        break
                    size = int(raw[:j].split(b";")[0], 16)
                    if len(raw) < j + 2 + size + 2:
                        break
                    body += raw[j + 2:j + 2 + size]
                    raw = raw[j + 2 + size + 2:]
                while True:
                    k = body.find(b"\n\n")
                    if k < 0:
                        break
                    ev, body = body[:k], body[k + 2:]
                    if b"event: connected" in ev:
                        self.connected.set()
                    m = ev.find(MARK)
                    if m >= 0:
                        key = ev[m + len(MARK):].split(b'"')[0].decode()
                        with self.cond:
                            self.seen.setdefault(key, t)
                            self.cond.notify_all()
        except Exception as e:                  # reported by the main thread
            self.error = repr(e)
            self.connected.set()
            with self.cond:
                self.cond.notify_all()

    def wait(self, key, timeout):
        end = now() + timeout
        with self.cond:
            while key not in self.seen and self.error is None and now() < end:
                self.cond.wait(end - now())
            return self.seen.get(key)

st = Stream()
st.start()
st.connected.wait(10)
if st.error or not st.connected.is_set():
    sys.exit("no stream: %s" % st.error)

api = {"same": "", "other": "/b"}
conns = {k: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for k in api}
db = sqlite3.connect(db_path, timeout=10, isolation_level=None)
orders = [r[0] for r in db.execute("SELECT id FROM orders ORDER BY seq LIMIT 50")]
plan = [k for k in ("same", "other", "sqlite3") for _ in range(samples)]
random.shuffle(plan)
rows, n = [], 0
for kind in plan:
    n += 1
    key = "%s %d" % (kind, n)
    note = "bench-delivery " + key
    oid = orders[n % len(orders)]
    if kind == "sqlite3":
        db.execute("UPDATE orders SET note = ? WHERE id = ?", (note, oid))
        t_from = t_resp = now()         # the commit has returned
        status = 0
    else:
        c = conns[kind]
        t_from = now()
        c.request("PATCH", "%s/api/v1/orders/%s" % (api[kind], oid), body=json.dumps({"note": note}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        t_resp = now()
        status = r.status
    t_got = st.wait(key, 3.0)
    if st.error:
        sys.exit("the stream failed: %s" % st.error)
    rows.append((kind, n, status, t_from, t_resp, t_got))
    time.sleep(random.uniform(0.020, 0.120))

with open(out_tsv, "w") as f:
    f.write("kind\tn\tstatus\tfrom_request_ms\tfrom_response_ms\tresponse_ms\n")
    for kind, n, status, t_from, t_resp, t_got in rows:
        if t_got is None:
            f.write("%s\t%d\t%d\tlost\tlost\t%.3f\n" % (kind, n, status, (t_resp - t_from) * 1000))
        else:
            f.write("%s\t%d\t%d\t%.3f\t%.3f\t%.3f\n" % (kind, n, status, (t_got - t_from) * 1000,
                                                      (t_got - t_resp) * 1000, (t_resp - t_from) * 1000))
PYEOF

DB=$T/orders.db
log "temp dir $T; responder $BIN; ORDERS_POLL_MS=$POLL_MS; $SAMPLES changes of each kind"
bench_db "$DB" 50
RESP_ENV=(ORDERS_DB="$DB" ORDERS_POLL_MS="$POLL_MS")
spawn_responder "$T/b.sock" "$T/b.log" "${RESP_ENV[@]}"
B_PID=$SPAWN_PID
PORT=$(free_port)
env_lines=""
for kv in "${RESP_ENV[@]}"; do env_lines+="\"${kv%%=*}\" => \"${kv#*=}\", "; done
HEALTH_URLS="http://127.0.0.1:$PORT/api/v1/health http://127.0.0.1:$PORT/b/api/v1/health" \
  start_lighttpd lighttpd "$PORT" "fastcgi.server = (
  \"/b/api/v1/\" => (( \"socket\" => \"$T/b.sock\", \"check-local\" => \"disable\" )),
  \"/api/v1/\"   => (( \"socket\" => \"$T/a.sock\", \"bin-path\" => \"$BIN\",
                     \"bin-environment\" => ( $env_lines ),
                     \"check-local\" => \"disable\", \"max-procs\" => 1 )),
)
\$HTTP[\"url\"] =~ \"^(/b)?/api/v1/stream/\" {
  server.stream-response-body = 2
}"
A_PID=$(lighttpd_responder) || die "no responder under lighttpd"
log "lighttpd $LIGHTTPD_PID on port $PORT; responder A $A_PID (bin-path), B $B_PID (spawn-fcgi)"

before=$(machine)
as_run python3 "$T/delivery.py" "$PORT" "$DB" "$SAMPLES" "$T/samples.tsv" || die "the measurement failed"
after=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$T/samples.tsv" "$out/samples.tsv"

{
  echo "# Delivery delay, $(date -u +%FT%TZ)"
  echo
  echo "Machine: $before at the start, $after at the end."
  echo "lighttpd: $("$LIGHTTPD" -v 2>&1 | head -n 1); responder: $ORDERS_FCGI; ORDERS_POLL_MS=$POLL_MS; $SAMPLES changes of each kind."
  echo
  python3 - "$T/samples.tsv" "$POLL_MS" <<'PYEOF'
import math, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
poll = float(sys.argv[2])

def pct(a, p):                  # nearest rank
    return a[max(1, math.ceil(p * len(a) / 100)) - 1]

print("| change | delay measured from | n | lost | p50 ms | p90 ms | p99 ms | max ms | max / ORDERS_POLL_MS |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for kind, label, col, what in (
        ("same", "same responder (PATCH through A)", 3, "PATCH sent"),
        ("same", "same responder (PATCH through A)", 4, "PATCH answered"),
        ("other", "other responder (PATCH through B)", 3, "PATCH sent"),
        ("other", "other responder (PATCH through B)", 4, "PATCH answered"),
        ("sqlite3", "another process (sqlite3 UPDATE)", 3, "commit returned")):
    vals = [r[col] for r in rows if r[0] == kind]
    a = sorted(float(v) for v in vals if v != "lost")
    lost = len(vals) - len(a)
    if not a:
        print("| %s | %s | 0 | %d | | | | | |" % (label, what, lost))
        continue
    print("| %s | %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.2f |" % (
        label, what, len(a), lost, pct(a, 50), pct(a, 90), pct(a, 99), a[-1], a[-1] / poll))
print()
for kind, name in (("same", "A"), ("other", "B")):
    r = [x for x in rows if x[0] == kind]
    if r:
        print("PATCH through %s: median response %.1f ms, %d not 200" % (
            name, sorted(float(x[5]) for x in r)[len(r) // 2], sum(x[2] != "200" for x in r)))
PYEOF
} | tee "$out/summary.md"
log "results in $out"
