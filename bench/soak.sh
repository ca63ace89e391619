#!/usr/bin/env bash
# Soak test: SOAK_MINUTES of mixed load through lighttpd against two
# responder processes sharing one database, meant for the sanitizer build, to
# find leaks (memory, descriptors), crashes and lost events that only a long
# run shows. A script, not a test: it prints what it measured and exits 1
# when a check failed.
#
# Build the sanitizer responder in a build directory of its own (the source
# tree and its normal build stay as they are), then point ORDERS_FCGI at it:
#
#   mkdir -p /tmp/orders-asan && cd /tmp/orders-asan
#   /path/to/orders/configure --enable-sanitizers && make -j2
#   cd /path/to/orders && ORDERS_FCGI=/tmp/orders-asan/src/orders.fcgi bench/soak.sh
#
# (configure needs a generated tree: autoreconf -fi first in a fresh clone.)
# Any build works; with the normal src/orders.fcgi there is simply no
# sanitizer report to collect.
#
# What runs, all on 127.0.0.1, free ports, one temp directory:
#   - lighttpd with two FastCGI backends on one database: responder A is
#     lighttpd's own (bin-path, /api/v1/), responder B is started by
#     spawn-fcgi on a second socket (/b/api/v1/);
#   - REST load (python): GET list / GET one / POST / PATCH / DELETE, half
#     through A, half through B, at SOAK_RPS requests per second;
#   - SOAK_STREAMS stream clients (python): SOAK_STAYERS of them stay connected
#     the whole run, the others connect, read for 0.5-20 s, drop and resume
#     with Last-Event-ID, alternating between A and B; every client checks
#     that the ids it receives are contiguous (the events table's ids are);
#   - a sqlite3 writer: an UPDATE of a random order every 100 ms;
#   - every 10 s: RSS, descriptors and threads of both responders.
# At the end the load stops, the stayers must have caught up with the head,
# both responders get SIGTERM (each must exit within 5 s, ending its streams
# after a complete event), then lighttpd. Then: every stayer received every
# event from its start to the head with no gap (compared with the events
# table), the churning clients saw no gap either, LeakSanitizer / UBSan
# output (ASAN_OPTIONS log_path in the temp dir) is printed if there is any,
# and a summary table compares RSS and descriptors at warm-up and at the end.
#
# Environment (all optional):
#   SOAK_MINUTES   length of the load phase (default 10)
#   SOAK_RPS       REST requests per second, both responders together (default 150)
#   SOAK_STREAMS   stream clients (default 500)
#   SOAK_STAYERS   of those, clients that stay connected the whole run (default 20)
#   SOAK_SAMPLE_S  sampling interval in seconds (default 10)
#   ORDERS_FCGI    responder binary (default src/orders.fcgi)
#   SOAK_KEEP=1    keep the temp directory (it is kept anyway when a check failed)
#   LIGHTTPD       lighttpd binary (default: on PATH, else /usr/sbin/lighttpd)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

die() { echo "soak.sh: $*" >&2; exit 2; }
log() { echo "== $(date +%H:%M:%S) $*"; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$root/$1" ;; esac; }

SOAK_MINUTES=${SOAK_MINUTES:-10}
SOAK_RPS=${SOAK_RPS:-150}
SOAK_STREAMS=${SOAK_STREAMS:-500}
SOAK_STAYERS=${SOAK_STAYERS:-20}
SOAK_SAMPLE_S=${SOAK_SAMPLE_S:-10}
ORDERS_FCGI=$(abspath "${ORDERS_FCGI:-src/orders.fcgi}")
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}

[[ $SOAK_MINUTES =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SOAK_MINUTES must be a number of minutes"
for v in SOAK_RPS SOAK_STREAMS SOAK_STAYERS SOAK_SAMPLE_S; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
((SOAK_STAYERS <= SOAK_STREAMS)) || die "SOAK_STAYERS is more than SOAK_STREAMS"
[ -x "$ORDERS_FCGI" ] || die "responder not found: $ORDERS_FCGI (make, or set ORDERS_FCGI)"
for c in python3 sqlite3 curl spawn-fcgi "$LIGHTTPD"; do
  command -v "$c" >/dev/null || die "$c not found"
done
load_s=$(awk -v m="$SOAK_MINUTES" 'BEGIN {printf "%d", m * 60}')
((load_s >= 30)) || die "SOAK_MINUTES is too short (at least 0.5)"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- temp dir, user
T=$(mktemp -d /tmp/orders-soak.XXXXXX)
chmod 0755 "$T"
mkdir -p "$T/htdocs" "$T/uploads" "$T/asan"
DB=$T/orders.db
STOP=$T/stop
if [ "$(id -u)" = 0 ]; then
  RUN_USER=$(id -u www-data >/dev/null 2>&1 && echo www-data || echo nobody)
  RUN_GROUP=$(id -gn "$RUN_USER")
  as_run() { runuser -u "$RUN_USER" -- "$@"; }
else
  RUN_USER=; RUN_GROUP=
  as_run() { "$@"; }
fi
# the run user must be able to execute the responder
BIN=$ORDERS_FCGI
if ! as_run test -x "$BIN" 2>/dev/null; then
  mkdir -p "$T/bin" && cp "$BIN" "$T/bin/orders.fcgi" && chmod 0755 "$T/bin" "$T/bin/orders.fcgi"
  BIN=$T/bin/orders.fcgi
fi
give() { [ -z "$RUN_USER" ] || chown -R "$RUN_USER:$RUN_GROUP" "$T"; }

PIDS=()          # background processes started here, stopped by PID at exit
LIGHTTPD_PID=
B_PID=
failed=0
problem() { echo "FAIL: $*"; failed=1; }

alive() { # not gone and not a zombie
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
wait_gone() { # PID SECONDS
  local end=$((SECONDS + $2))
  while alive "$1"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
responder_a() { # lighttpd's orders.fcgi child
  local c exe
  for c in $(ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null); do
    exe=$(readlink "/proc/$c/exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}   # rebuilt since it started
    [ "${exe##*/}" = orders.fcgi ] && alive "$c" && { echo "$c"; return 0; }
  done
  return 1
}
cleanup() {
  local p a
  touch "$STOP" 2>/dev/null || true
  a=$( [ -n "$LIGHTTPD_PID" ] && responder_a || true)
  for p in "${PIDS[@]}" $a; do
    alive "$p" && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}" $a; do
    wait_gone "$p" 6 || kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$failed" = 0 ] && [ "${SOAK_KEEP:-0}" != 1 ]; then
    rm -rf "$T"
  else
    echo "temp dir kept: $T"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- the python parts
cat >"$T/soak.py" <<'PYEOF'
import http.client, json, os, random, selectors, socket, sys, threading, time

def now():
    return time.monotonic()

# ---------------------------------------------------------------- REST
def rest(port, rps, stop, out, deadline):
    prefixes = ["", "/b"]
    lock = threading.Lock()
    stats = {"requests": 0, "by_status": {}, "unexpected": [], "max_ms": 0}
    pool = []            # order ids known to exist
    mine = []            # ids this load created (may be deleted)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/v1/orders?limit=200")
    pool.extend(o["id"] for o in json.loads(c.getresponse().read())["data"])
    c.close()
    threads = 4
    per = rps / threads

    def worker(k):
        rnd = random.Random(k)
        conns = {}
        n = 0
        t_next = now()
        while not os.path.exists(stop) and now() < deadline:
            n += 1
            prefix = prefixes[n % 2]
            r = rnd.random()
            with lock:
                some = rnd.choice(pool) if pool else None
            if r < 0.40 or some is None:
                method, path, body, ok = "GET", "/api/v1/orders?limit=20", None, {200}
            elif r < 0.60:
                method, path, body, ok = "GET", "/api/v1/orders/" + some, None, {200, 404}
            elif r < 0.85:
                method, path, ok = "PATCH", "/api/v1/orders/" + some, {200, 404}
                body = {"note": "soak %d.%d %s" % (k, n, "x" * rnd.randint(0, 200))}
            elif r < 0.97:
                method, path, ok = "POST", "/api/v1/orders", {201}
                body = {"customer": "Soak %d.%d" % (k, n),
                        "items": [{"sku": "SK-%d" % rnd.randint(1, 50), "name": "Soak",
                                   "qty": rnd.randint(1, 5), "unitPriceCents": rnd.randint(1, 9999)}]}
            else:
                with lock:
                    victim = mine.pop(rnd.randrange(len(mine))) if mine else None
                    if victim in pool:
                        pool.remove(victim)
                if victim is None:
                    continue
                method, path, body, ok = "DELETE", "/api/v1/orders/" + victim, None, {204, 404}
            conn = conns.get(prefix)
            if conn is None:
                conn = conns[prefix] = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            t0 = now()
            try:
                hdrs = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, prefix + path, body=json.dumps(body) if body is not None else None,
                             headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                st = resp.status
            except (OSError, http.client.HTTPException) as e:
                st, data = 0, str(e).encode()
                conn.close()
                conns[prefix] = None
            ms = int((now() - t0) * 1000)
            with lock:
                stats["requests"] += 1
                stats["by_status"][str(st)] = stats["by_status"].get(str(st), 0) + 1
                stats["max_ms"] = max(stats["max_ms"], ms)
                if st not in ok and len(stats["unexpected"]) < 20:
                    stats["unexpected"].append("%s %s%s -> %s %r" % (method, prefix, path, st, data[:160]))
                if st == 201:
                    oid = json.loads(data)["id"]
                    pool.append(oid)
                    mine.append(oid)
            t_next += 1.0 / per
            d = t_next - now()
            if d > 0:
                time.sleep(d)
            elif d < -1:
                t_next = now()
        for cn in conns.values():
            if cn is not None:
                cn.close()

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0, deadline - now()) + 30)
    with open(out, "w") as f:
        json.dump(stats, f)

# ---------------------------------------------------------------- streams
class Client:
    def __init__(self, idx, prefix, stayer, rnd):
        self.idx, self.prefix, self.stayer, self.rnd = idx, prefix, stayer, rnd
        self.last = None           # last complete event id (or connected head)
        self.start = None
        self.events = 0
        self.gaps = []
        self.connects = 0
        self.errors = []
        self.resets = 0
        self.sock = None
        self.buf = b""
        self.head_done = False
        self.until = None
        self.ended_clean = None
        self.done = False

    def request(self):
        h = "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if self.last is not None:
            h += "Last-Event-ID: %d\r\n" % self.last
        return ("GET %s/api/v1/stream/events HTTP/1.0\r\n%s\r\n" % (self.prefix, h)).encode()

    def block(self, b):
        f = {}
        for line in b.split(b"\n"):
            k, _, v = line.partition(b":")
            f[k] = v[1:] if v.startswith(b" ") else v
        ev = f.get(b"event", b"message")
        if b"retry" in f or ev == b"ping":
            return
        if ev == b"connected":
            head = json.loads(f[b"data"])["lastEventId"]
            if self.last is None:
                self.last = head
            if self.start is None:
                self.start = head
            return
        if ev == b"reset":
            self.resets += 1
            self.gaps.append("reset %r" % f.get(b"data"))
            self.last = int(f[b"id"])
            return
        eid = int(f[b"id"])
        if self.last is not None and eid != self.last + 1:
            if len(self.gaps) < 10:
                self.gaps.append("%d after %d" % (eid, self.last))
        self.last = eid
        self.events += 1

def streams(port, n, stayers, stop, out, progress, deadline):
    sel = selectors.DefaultSelector()
    rnd = random.Random(7)
    clients = [Client(i, "" if i % 2 == 0 else "/b", i < stayers, random.Random(i)) for i in range(n)]
    pending = []   # (time, client) to (re)connect
    for i, c in enumerate(clients):
        pending.append((now() + 0.01 * i, c))   # spread the first connects
    stopping = False
    t_prog = 0

    def connect(c):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(c.request())
            s.setblocking(False)
        except OSError as e:
            if len(c.errors) < 5:
                c.errors.append("connect: %s" % e)
            pending.append((now() + 1, c))
            return
        c.sock, c.buf, c.head_done = s, b"", False
        c.connects += 1
        c.until = None if c.stayer else now() + c.rnd.uniform(0.5, 20)
        sel.register(s, selectors.EVENT_READ, c)

    def close(c, clean):
        sel.unregister(c.sock)
        c.sock.close()
        c.sock = None
        if c.stayer:
            c.done = True
            c.ended_clean = clean
        elif not stopping:
            pending.append((now() + c.rnd.uniform(0, 0.2), c))

    while now() < deadline:
        if not stopping and os.path.exists(stop):
            stopping = True
            for c in clients:
                if not c.stayer and c.sock is not None:
                    close(c, True)
            pending = [p for p in pending if p[1].stayer]
        t = now()
        due = [p for p in pending if p[0] <= t]
        pending = [p for p in pending if p[0] > t]
        for _, c in due:
            connect(c)
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data = b""
                if len(c.errors) < 5:
                    c.errors.append("recv: %s" % e)
            if not data:
                close(c, c.head_done and c.buf == b"")
                continue
            c.buf += data
            if not c.head_done:
                i = c.buf.find(b"\r\n\r\n")
                if i < 0:
                    continue
                status = c.buf.split(b" ", 2)[1]
                c.head_done = True
                c.buf = c.buf[i + 4:]
                if status != b"200":
                    if len(c.errors) < 5:
                        c.errors.append("status %s" % status.decode())
                    sel.unregister(c.sock)
                    c.sock.close()
                    c.sock = None
                    pending.append((now() + 1, c))
                    continue
            while b"\n\n" in c.buf:
                b, c.buf = c.buf.split(b"\n\n", 1)
                c.block(b)
        t = now()
        for c in clients:
            if c.sock is not None and c.until is not None and t >= c.until:
                close(c, True)
        if t - t_prog >= 1:
            t_prog = t
            st = [c for c in clients if c.stayer]
            with open(progress + ".tmp", "w") as f:
                json.dump({"open": sum(1 for c in clients if c.sock is not None),
                           "connects": sum(c.connects for c in clients),
                           "events": sum(c.events for c in clients),
                           "stayers_open": sum(1 for c in st if c.sock is not None),
                           "stayers_min_last": min((c.last if c.last is not None else -1) for c in st) if st else None,
                           "gaps": sum(len(c.gaps) for c in clients)}, f)
            os.replace(progress + ".tmp", progress)
        if stopping and all(c.done for c in clients if c.stayer):
            break
    res = {"stayers": [], "churners": {"clients": 0, "connects": 0, "events": 0, "gaps": [], "errors": []}}
    for c in clients:
        if c.stayer:
            res["stayers"].append({"idx": c.idx, "via": c.prefix or "/", "start": c.start, "last": c.last,
                                   "events": c.events, "connects": c.connects, "gaps": c.gaps,
                                   "clean_end": c.ended_clean, "errors": c.errors})
        else:
            ch = res["churners"]
            ch["clients"] += 1
            ch["connects"] += c.connects
            ch["events"] += c.events
            ch["gaps"] += ["client %d: %s" % (c.idx, g) for g in c.gaps][:5]
            ch["errors"] += ["client %d: %s" % (c.idx, e) for e in c.errors][:3]
    res["churners"]["gaps"] = res["churners"]["gaps"][:30]
    res["churners"]["errors"] = res["churners"]["errors"][:30]
    with open(out, "w") as f:
        json.dump(res, f)

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "rest":
        port, rps, stop, out, secs = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
        rest(port, rps, stop, out, now() + secs)
    elif cmd == "streams":
        port, n, stayers, stop, out, progress, secs = (int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                                       sys.argv[5], sys.argv[6], sys.argv[7], float(sys.argv[8]))
        streams(port, n, stayers, stop, out, progress, now() + secs)
PYEOF

# ---------------------------------------------------------------- database, responders, lighttpd
log "temp dir $T; responder $BIN"
give
ASAN_OPTS="log_path=$T/asan/asan:detect_leaks=1:halt_on_error=1"
UBSAN_OPTS="log_path=$T/asan/ubsan:print_stacktrace=1:halt_on_error=1"
RESP_ENV=(ORDERS_DB="$DB" ORDERS_POLL_MS=50 ORDERS_PING_S=5 ORDERS_RETAIN_EVENTS=100000
  ORDERS_BUSY_TIMEOUT_MS=5000 ORDERS_MAX_STREAMS=2000
  ASAN_OPTIONS="$ASAN_OPTS" UBSAN_OPTIONS="$UBSAN_OPTS" LSAN_OPTIONS="report_objects=1")
as_run env "${RESP_ENV[@]}" "$BIN" --migrate || die "migrating $DB failed"
as_run sqlite3 -cmd '.timeout 10000' "$DB" \
  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
   INSERT INTO orders (customer, items)
   SELECT 'Seed ' || i, '[{\"sku\":\"SD-1\",\"name\":\"Seed\",\"qty\":1,\"unitPriceCents\":100}]' FROM n"

# responder B: spawn-fcgi on a second socket (spawn-fcgi -n execs it: $! is the responder)
own=()
[ -z "$RUN_USER" ] || own=(-u "$RUN_USER" -g "$RUN_GROUP" -U "$RUN_USER" -G "$RUN_GROUP")
env -i PATH=/usr/bin:/bin "${RESP_ENV[@]}" \
  spawn-fcgi -n -s "$T/b.sock" -M 0660 "${own[@]}" -- "$BIN" </dev/null >>"$T/b.log" 2>&1 &
B_PID=$!
PIDS+=("$B_PID")
for _ in $(seq 1 100); do [ -S "$T/b.sock" ] && break; alive "$B_PID" || break; sleep 0.05; done
[ -S "$T/b.sock" ] || die "spawn-fcgi did not start responder B: $(cat "$T/b.log")"

PORT=$(free_port)
env_lines=""
for kv in "${RESP_ENV[@]}"; do env_lines+="\"${kv%%=*}\" => \"${kv#*=}\", "; done
user_lines=""
[ -z "$RUN_USER" ] || user_lines="server.username = \"$RUN_USER\"
server.groupname = \"$RUN_GROUP\""
cat >"$T/lighttpd.conf" <<EOF
server.document-root = "$T/htdocs"
server.bind          = "127.0.0.1"
server.port          = $PORT
server.errorlog      = "$T/lighttpd-error.log"
server.upload-dirs   = ( "$T/uploads" )
server.max-fds       = 8192
server.max-connections = 4000
server.max-read-idle = 30
$user_lines
server.modules += ( "mod_fastcgi" )
fastcgi.server = (
  "/b/api/v1/" => (( "socket" => "$T/b.sock", "check-local" => "disable" )),
  "/api/v1/"   => (( "socket" => "$T/a.sock", "bin-path" => "$BIN",
                     "bin-environment" => ( $env_lines ),
                     "check-local" => "disable", "max-procs" => 1 )),
)
\$HTTP["url"] =~ "^(/b)?/api/v1/stream/" {
  server.stream-response-body = 2
}
EOF
give
"$LIGHTTPD" -tt -f "$T/lighttpd.conf" >"$T/lighttpd.out" 2>&1 || die "lighttpd config: $(cat "$T/lighttpd.out")"
"$LIGHTTPD" -D -f "$T/lighttpd.conf" </dev/null >>"$T/lighttpd.out" 2>&1 &
LIGHTTPD_PID=$!
PIDS+=("$LIGHTTPD_PID")
for prefix in "" /b; do
  ok=0
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT$prefix/api/v1/health")" = 200 ] && { ok=1; break; }
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "http://127.0.0.1:$PORT$prefix/api/v1/health does not answer: $(tail -n 5 "$T/lighttpd-error.log" "$T/lighttpd.out" "$T/b.log" 2>/dev/null)"
done
A_PID=$(responder_a) || die "no responder A under lighttpd"
log "lighttpd $LIGHTTPD_PID on port $PORT; responder A $A_PID (bin-path), B $B_PID (spawn-fcgi)"
has_asan_env() { tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -c '^ASAN_OPTIONS=.*log_path=' || true; }
asan_env_a=$( [ "$(has_asan_env "$A_PID")" = 1 ] && echo yes || echo no)
asan_env_b=$( [ "$(has_asan_env "$B_PID")" = 1 ] && echo yes || echo no)

# ---------------------------------------------------------------- load
total_s=$((load_s + 120))
python3 "$T/soak.py" streams "$PORT" "$SOAK_STREAMS" "$SOAK_STAYERS" "$STOP" "$T/streams.json" \
  "$T/progress.json" "$total_s" </dev/null >"$T/streams.log" 2>&1 &
STREAMS_PID=$!
PIDS+=("$STREAMS_PID")
python3 "$T/soak.py" rest "$PORT" "$SOAK_RPS" "$STOP" "$T/rest.json" "$((load_s + 30))" \
  </dev/null >"$T/rest.log" 2>&1 &
REST_PID=$!
PIDS+=("$REST_PID")
as_run bash -c '
  db=$1 stop=$2 end=$((SECONDS + $3)) n=0
  while [ ! -e "$stop" ] && [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    sqlite3 -cmd ".timeout 5000" "$db" \
      "UPDATE orders SET note = '"'"'sqlite3 '"'"' || $n WHERE seq = (SELECT seq FROM orders ORDER BY random() LIMIT 1)" \
      >/dev/null 2>>"$4" || echo "update $n failed" >>"$4"
    sleep 0.1
  done' soak-writer "$DB" "$STOP" "$((load_s + 30))" "$T/writer.err" </dev/null &
WRITER_PID=$!
PIDS+=("$WRITER_PID")

printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' t_s a_pid a_rss_kb a_fds a_threads b_rss_kb b_fds b_threads open_streams phase >"$T/samples.tsv"
status_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
sample() { # T PHASE
  local t=$1 phase=$2 a open
  a=$(responder_a || echo -)
  open=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["open"])' "$T/progress.json" 2>/dev/null || echo -)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$a" \
    "$( [ "$a" != - ] && status_field "$a" VmRSS || echo -)" "$( [ "$a" != - ] && fds "$a" || echo -)" \
    "$( [ "$a" != - ] && status_field "$a" Threads || echo -)" \
    "$(status_field "$B_PID" VmRSS || echo -)" "$(fds "$B_PID")" "$(status_field "$B_PID" Threads || echo -)" \
    "$open" "$phase" >>"$T/samples.tsv"
  tail -n 1 "$T/samples.tsv"
}

log "load for $load_s s: REST $SOAK_RPS req/s, $SOAK_STREAMS stream clients ($SOAK_STAYERS stay), sqlite3 UPDATE every 100 ms"
echo "t_s  a_pid  a_rss_kb a_fds a_thr  b_rss_kb b_fds b_thr  open_streams"
t0=$SECONDS
next=0
while :; do
  t=$((SECONDS - t0))
  if ((t >= next)); then
    sample "$t" load | awk -F'\t' '{printf "%-4s %-6s %-8s %-5s %-5s  %-8s %-5s %-5s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
    next=$((next + SOAK_SAMPLE_S))
  fi
  ((t >= load_s)) && break
  if [ "$(responder_a || true)" != "$A_PID" ]; then problem "responder A $A_PID died during the run (now: $(responder_a || echo none))"; A_PID=$(responder_a || echo "$A_PID"); fi
  alive "$B_PID" || { problem "responder B $B_PID died during the run"; break; }
  alive "$STREAMS_PID" || { problem "the stream clients exited early: $(tail -n 5 "$T/streams.log")"; break; }
  sleep 1
done

# ---------------------------------------------------------------- stop
log "stopping the load"
touch "$STOP"
for p in "$REST_PID" "$WRITER_PID"; do
  wait_gone "$p" 40 || { problem "load process $p did not stop"; kill -KILL "$p" 2>/dev/null || true; }
done
wait "$REST_PID" 2>/dev/null || problem "the REST load failed: $(tail -n 5 "$T/rest.log")"
head=$(sqlite3 -cmd '.timeout 10000' "$DB" 'SELECT coalesce(max(id), 0) FROM events')
caught=0
for _ in $(seq 1 150); do
  m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stayers_min_last"])' "$T/progress.json" 2>/dev/null || echo -1)
  [ "$m" != None ] && [ "$m" -ge "$head" ] 2>/dev/null && { caught=1; break; }
  sleep 0.1
done
[ "$caught" = 1 ] || problem "the stayers did not catch up with the head $head within 15 s (slowest at $m)"
sample "$((SECONDS - t0))" stopped >/dev/null
A_PID=$(responder_a || echo "$A_PID")

log "SIGTERM to responders A $A_PID and B $B_PID"
ta=$(date +%s%N)
kill -TERM "$A_PID" "$B_PID" 2>/dev/null || true
for p in "$A_PID" "$B_PID"; do
  if wait_gone "$p" 8; then
    ms=$((($(date +%s%N) - ta) / 1000000))
    ((ms <= 5000)) || problem "responder $p took $ms ms to exit after SIGTERM"
    echo "responder $p exited $ms ms after SIGTERM"
  else
    problem "responder $p still running 8 s after SIGTERM"
  fi
done
wait "$B_PID" 2>/dev/null && b_rc=0 || b_rc=$?
[ "$b_rc" = 0 ] || problem "responder B exited with status $b_rc"
wait_gone "$STREAMS_PID" 30 || problem "the stream clients did not finish within 30 s of the stop"
log "SIGTERM to lighttpd $LIGHTTPD_PID"
kill -TERM "$LIGHTTPD_PID" 2>/dev/null || true
wait_gone "$LIGHTTPD_PID" 10 || problem "lighttpd did not stop"
a2=$(ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null || true)
for p in $a2; do wait_gone "$p" 6 || kill -KILL "$p" 2>/dev/null || true; done
sleep 0.5

# ---------------------------------------------------------------- checks
head=$(sqlite3 -cmd '.timeout 10000' "$DB" 'SELECT coalesce(max(id), 0) FROM events')
read -r ev_min ev_count < <(sqlite3 -separator ' ' "$DB" 'SELECT coalesce(min(id), 0), count(*) FROM events')
[ "$ev_count" = 0 ] || [ $((head - ev_min + 1)) = "$ev_count" ] ||
  problem "the events table has gaps: ids $ev_min..$head but $ev_count rows"
[ -s "$T/streams.json" ] || problem "no result from the stream clients: $(tail -n 5 "$T/streams.log")"
if [ -s "$T/streams.json" ]; then
  python3 - "$T/streams.json" "$head" "$ev_min" "$DB" >"$T/streams.check" <<'PYEOF' || failed=1
import json, sqlite3, sys
res = json.load(open(sys.argv[1]))
head, ev_min = int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(sys.argv[4])
bad = 0
for s in res["stayers"]:
    why = []
    if s["start"] is None:
        why.append("never connected")
    else:
        if s["last"] != head:
            why.append("last id %s, head %d" % (s["last"], head))
        if s["gaps"]:
            why.append("gaps %s" % s["gaps"][:3])
        if s["connects"] != 1:
            why.append("%d connections (dropped)" % s["connects"])
        if not s["clean_end"]:
            why.append("the stream did not end after a complete event")
        lo = max(s["start"], ev_min - 1)
        n = db.execute("SELECT count(*) FROM events WHERE id > ? AND id <= ?", (lo, head)).fetchone()[0]
        want = head - s["start"]
        if s["events"] != want:
            why.append("%d events received, the table has %d after %d (%d retained)" % (s["events"], want, s["start"], n))
    if why:
        bad += 1
        print("FAIL: stayer %d (via %s): %s" % (s["idx"], s["via"], "; ".join(why)))
ch = res["churners"]
if ch["gaps"]:
    bad += 1
    print("FAIL: churning clients saw gaps: %s" % ch["gaps"][:10])
print("stayers: %d, every one from its start to head %d: %s" % (len(res["stayers"]), head, "ok" if not bad else "NOT ok"))
print("churners: %d clients, %d connections, %d events, %d gaps, errors: %s"
      % (ch["clients"], ch["connects"], ch["events"], len(ch["gaps"]), ch["errors"][:5]))
sys.exit(1 if bad else 0)
PYEOF
  cat "$T/streams.check"
fi
if [ -s "$T/rest.json" ]; then
  python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
print("REST: %d requests, by status %s, slowest %d ms" % (r["requests"], json.dumps(r["by_status"], sort_keys=True), r["max_ms"]))
for u in r["unexpected"][:10]: print("  unexpected: " + u)
sys.exit(1 if any(k in ("0",) or k.startswith("5") for k in r["by_status"]) else 0)' "$T/rest.json" ||
    problem "REST requests failed (status 0 = no answer, or 5xx)"
fi
[ ! -s "$T/writer.err" ] || problem "sqlite3 writer: $(sort "$T/writer.err" | uniq -c | head -n 5)"
if grep -hiE 'AddressSanitizer|LeakSanitizer|runtime error|segfault' "$T/lighttpd.out" "$T/b.log" "$T/lighttpd-error.log" >/dev/null 2>&1; then
  problem "sanitizer or crash lines in the responders' stderr:"
  grep -hiE 'AddressSanitizer|LeakSanitizer|runtime error|segfault' "$T/lighttpd.out" "$T/b.log" "$T/lighttpd-error.log" | head -n 20
fi
reports=$(find "$T/asan" -type f -size +0 2>/dev/null | sort)
if [ -n "$reports" ]; then
  problem "sanitizer reports:"
  for f in $reports; do echo "---- $f"; head -n 80 "$f"; done
else
  echo "sanitizer reports: none in $T/asan (LeakSanitizer reports at a clean exit)"
fi
syms=$( { nm -D "$BIN"; nm "$BIN"; } 2>/dev/null || true)
if [[ $syms != *__asan_init* ]]; then
  echo "note: $BIN is not an AddressSanitizer build: no leak report could be made"
else
  echo "AddressSanitizer build; ASAN_OPTIONS in the environment of A: $asan_env_a, of B: $asan_env_b"
fi

# ---------------------------------------------------------------- summary
python3 - "$T/samples.tsv" "$load_s" <<'PYEOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
load_s = int(sys.argv[2])
rows = [r for r in rows if r[2] != "-"]
if not rows:
    print("no samples"); sys.exit(0)
during = [r for r in rows if r[9] == "load"] or rows
warm_t = max(30, load_s // 5)
warm = next((r for r in during if int(r[0]) >= warm_t), during[0])
end = during[-1]
after = next((r for r in rows if r[9] == "stopped"), None)
def num(x):
    try: return int(x)
    except ValueError: return None
print()
print("| responder | measure | warm-up (t=%ss) | end of load (t=%ss) | change | load stopped (t=%ss) |"
      % (warm[0], end[0], after[0] if after else "-"))
print("| --- | --- | --- | --- | --- | --- |")
for name, cols in (("A (lighttpd bin-path)", (2, 3, 4)), ("B (spawn-fcgi)", (5, 6, 7))):
    for label, c in zip(("RSS kB", "fds", "threads"), cols):
        w, e = num(warm[c]), num(end[c])
        ch = "%+d" % (e - w) if w is not None and e is not None else "-"
        if label == "RSS kB" and w and e is not None:
            ch += " (%+.1f %%)" % (100.0 * (e - w) / w)
        print("| %s | %s | %s | %s | %s | %s |" % (name, label, warm[c], end[c], ch, after[c] if after else "-"))
print("| both | open streams | %s | %s | | %s |" % (warm[8], end[8], after[8] if after else "-"))
PYEOF
echo
echo "samples: $T/samples.tsv"
if [ "$failed" = 0 ]; then
  log "soak passed"
else
  log "soak FAILED"
fi
exit "$failed"
