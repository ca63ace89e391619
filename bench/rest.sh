#!/usr/bin/env bash
# REST benchmark: our FastCGI responder behind lighttpd vs. the Node.js peer
# (Hono + better-sqlite3). One command; `make bench` calls it. See bench/README.md.
#
# Environment (all optional):
#   ORDERS_FCGI    responder binary                (default src/orders.fcgi)
#   HONO_REF       peer source directory           (default ../shared/peers/hono-ref)
#   BENCH_OUT      results directory               (default bench/out); each run writes
#                  a new subdirectory rest-<UTC time>/ there
#   WRK_THREADS    wrk -t                          (default 2)
#   WRK_CONNS      wrk -c, space-separated list    (default "64"; e.g. "64 256")
#   WRK_DURATION   wrk -d of a measured run        (default 15s)
#   WRK_WARMUP     wrk -d of the warm-up run before each measured run (default 5s; 0 = none)
#   WRK_TIMEOUT    wrk --timeout                   (default 2s, wrk's own default)
#   BENCH_TESTS    tests to run, in order          (default "get patch")
#   BENCH_SERVERS  servers to run                  (default "peer ours")
#   BENCH_PROCS    responder processes, space-separated list: one front end + responder
#                  set per value, e.g. "1 2" compares 1 and 2 processes (default 1)
#   BENCH_FRONTS   front ends for ours, space-separated (default "lighttpd"):
#                  lighttpd  starts the responders itself (bin-path, max-procs), one
#                            FastCGI connection per request
#                  nginx     responders started by spawn-fcgi on their own sockets,
#                            fastcgi_keep_conn on with an upstream keepalive of
#                            NGINX_KEEPALIVE (default 2) per worker, NGINX_WORKERS
#                            worker processes (default 2)
#   BENCH_THREADS  ORDERS_THREADS for the responder (default: unset, its own default)
#   BENCH_ORDERS   orders seeded into each database (default 10000)
#   BENCH_SYNC     ORDERS_SYNC for ours / SQLITE_SYNCHRONOUS for the peer (default normal)
#   PEER_NPM_CACHE directory in which to keep the peer's `npm ci` result between runs,
#                  keyed by its package-lock.json (default: none, fresh `npm ci` each run)
#   LIGHTTPD       lighttpd binary (default: lighttpd on PATH, else /usr/sbin/lighttpd)
#   KEEP_TMP=1     keep the temporary directory (databases, configs, server logs)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$root/$1" ;; esac; }

ORDERS_FCGI=$(abspath "${ORDERS_FCGI:-src/orders.fcgi}")
HONO_REF=$(abspath "${HONO_REF:-../shared/peers/hono-ref}")
BENCH_OUT=$(abspath "${BENCH_OUT:-bench/out}")
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-15s}
WRK_WARMUP=${WRK_WARMUP:-5s}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
BENCH_TESTS=${BENCH_TESTS:-get patch}
BENCH_SERVERS=${BENCH_SERVERS:-peer ours}
BENCH_PROCS=${BENCH_PROCS:-1}
BENCH_FRONTS=${BENCH_FRONTS:-lighttpd}
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-2}
NGINX_WORKERS=${NGINX_WORKERS:-2}
BENCH_THREADS=${BENCH_THREADS:-}
BENCH_ORDERS=${BENCH_ORDERS:-10000}
BENCH_SYNC=${BENCH_SYNC:-normal}
PEER_NPM_CACHE=${PEER_NPM_CACHE:-}
export BENCH_ORDERS

die() { echo "rest.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

command -v wrk >/dev/null || die "wrk not found (Debian package: wrk)"
command -v curl >/dev/null || die "curl not found"
NGINX=${NGINX:-$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)}
if [ -z "${LIGHTTPD:-}" ]; then
  LIGHTTPD=$(command -v lighttpd || true)
  [ -n "$LIGHTTPD" ] || LIGHTTPD=/usr/sbin/lighttpd
fi
case $BENCH_SYNC in normal|full) ;; *) die "BENCH_SYNC must be normal or full" ;; esac
case $BENCH_ORDERS in ''|*[!0-9]*) die "BENCH_ORDERS must be a positive integer" ;; esac
[ "$BENCH_ORDERS" -ge 1 ] && [ "$BENCH_ORDERS" -le 99999 ] || die "BENCH_ORDERS must be 1..99999 (ids are ord_%05d)"
for p in $BENCH_PROCS; do case $p in ''|*[!0-9]*|0) die "BENCH_PROCS: bad value '$p'" ;; esac; done
for t in $BENCH_TESTS; do case $t in get|patch) ;; *) die "BENCH_TESTS: unknown test '$t'" ;; esac; done
for f in $BENCH_FRONTS; do case $f in lighttpd|nginx) ;; *) die "BENCH_FRONTS: unknown front end '$f'" ;; esac; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orders-bench.XXXXXX")
out="$BENCH_OUT/rest-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
hz=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes
# Every server we start is recorded here and stopped (by PID) on exit.
started=()
mon=""         # the RSS sampler of the run in progress
wrk_pid=""     # the wrk in progress
# wrk in the background + wait, so that a signal stops the script at once.
run_wrk() { wrk "$@" & wrk_pid=$!; wait "$wrk_pid" || true; wrk_pid=""; }
stop_pid() {   # $1 = pid: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | awk '{printf "%s%s", sep, $1; sep = " "}'; }
cleanup() {
  local pid kids
  set +e
  [ -n "$mon" ] && kill "$mon" 2>/dev/null
  [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null
  for pid in "${started[@]}"; do
    kids=$(children_of "$pid")        # lighttpd's responders: stop them too
    stop_pid "$pid"
    for k in $kids; do stop_pid "$k"; done
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "temporary files kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port nobody listens on now (checked with ss, else by trying to connect).
# Outside the kernel's ephemeral range, so that no outgoing connection holds it.
free_port() {
  local p i lo=32768 hi=60999
  read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  for i in $(seq 200); do
    p=$(( 10000 + (RANDOM * 32768 + RANDOM) % 55000 ))
    [ "$p" -ge "$lo" ] && [ "$p" -le "$hi" ] && continue
    if command -v ss >/dev/null; then
      [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

wait_http() {   # $1 = url, $2 = pid that must stay alive; up to 30 s
  local i
  for i in $(seq 300); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -sf -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.1
  done
  return 1
}

rss_kb() { awk '/^VmRSS/ {print $2; f=1} END {if (!f) print 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
ticks() {      # utime + stime (all threads) of the given pids, summed
  local pid s=0 t
  for pid in "$@"; do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    s=$((s + t))
  done
  echo "$s"
}

# ---------------------------------------------------------------- servers
# Per server name: URL, "app" pids (node, or the responders) and "front" pid (lighttpd).
declare -A URL APP_PIDS FRONT_PID LABEL
servers=()

start_peer() {
  if [ ! -f "$HONO_REF/package.json" ] || [ ! -f "$HONO_REF/server.js" ]; then
    log "peer skipped: no hono-ref at HONO_REF=$HONO_REF"; return 0
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "peer skipped: node/npm not found"; return 0
  fi
  local dir=$tmp/peer
  log "peer: copying $HONO_REF and installing its dependencies (npm ci)"
  mkdir -p "$dir"
  (cd "$HONO_REF" && tar cf - --exclude=./node_modules --exclude=./data --exclude='./bench/out*' .) | (cd "$dir" && tar xf -)
  chmod -R u+w "$dir"
  local key="" cached=""
  if [ -n "$PEER_NPM_CACHE" ]; then
    key=$( (cat "$dir/package-lock.json"; node -v) | sha256sum | cut -c1-16)
    cached=$(abspath "$PEER_NPM_CACHE")/hono-ref-$key
  fi
  if [ -n "$cached" ] && [ -d "$cached/node_modules" ]; then
    cp -a "$cached/node_modules" "$dir/"
    log "peer: node_modules reused from $cached"
  elif ! (cd "$dir" && npm ci --no-audit --no-fund) > "$out/peer-npm-ci.log" 2>&1; then
    log "peer skipped: npm ci failed (see $out/peer-npm-ci.log)"; tail -5 "$out/peer-npm-ci.log" >&2; return 0
  elif [ -n "$cached" ]; then
    mkdir -p "$cached" && cp -a "$dir/node_modules" "$cached/"
  fi
  if ! (cd "$dir" && node -e "require('better-sqlite3')(':memory:')") >> "$out/peer-npm-ci.log" 2>&1; then
    log "peer skipped: better-sqlite3 does not load (native addon not built? see $out/peer-npm-ci.log)"; return 0
  fi
  local sync; sync=$(echo "$BENCH_SYNC" | tr a-z A-Z)
  (cd "$dir" && DB_PATH="$dir/data/orders.db" SEED_COUNT=$BENCH_ORDERS node seed.js) > "$out/peer-seed.log" 2>&1 \
    || { log "peer skipped: seed.js failed"; cat "$out/peer-seed.log" >&2; return 0; }
  local port pid try
  for try in 1 2 3 4 5; do   # another program may take the port between check and bind
    port=$(free_port) || die "no free port"
    (cd "$dir" && exec env HOST=127.0.0.1 PORT="$port" DB_PATH="$dir/data/orders.db" SQLITE_SYNCHRONOUS="$sync" \
       node server.js) > "$out/peer-server.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz" "$pid" && break
    grep -q EADDRINUSE "$out/peer-server.log" && ! kill -0 "$pid" 2>/dev/null && continue
    cat "$out/peer-server.log" >&2; die "peer did not come up on port $port"
  done
  kill -0 "$pid" 2>/dev/null || die "peer did not come up: no free port after 5 tries"
  servers+=(peer); URL[peer]=http://127.0.0.1:$port; APP_PIDS[peer]=$pid; FRONT_PID[peer]=""
  LABEL[peer]="hono-ref (node)"
  log "peer: node server.js pid $pid on 127.0.0.1:$port, synchronous=$sync"
}

ours_template=$tmp/ours-template.db
make_ours_db() {
  log "ours: creating schema (--migrate) and $BENCH_ORDERS orders"
  rm -f "$ours_template" "$ours_template-wal" "$ours_template-shm"
  ORDERS_DB="$ours_template" "$ORDERS_FCGI" --migrate > "$out/ours-migrate.log" 2>&1 \
    || { cat "$out/ours-migrate.log" >&2; die "$ORDERS_FCGI --migrate failed"; }
  # Inserting only (customer, items) lets the schema's triggers assign id ord_NNNNN,
  # totals, currency/status defaults, timestamps, version, and the order.created event.
  # Deterministic data: 1-3 items per order, ten first x ten last names.
  sqlite3 -bail "$ours_template" > "$out/ours-seed.log" 2>&1 <<SQL || { cat "$out/ours-seed.log" >&2; die "seeding our database failed"; }
PRAGMA busy_timeout = 5000;
BEGIN IMMEDIATE;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $BENCH_ORDERS),
first(k, v) AS (VALUES (0,'Ada'),(1,'Grace'),(2,'Linus'),(3,'Margaret'),(4,'Ken'),
                       (5,'Barbara'),(6,'Dennis'),(7,'Frances'),(8,'Edsger'),(9,'Radia')),
last(k, v) AS (VALUES (0,'Lovelace'),(1,'Hopper'),(2,'Torvalds'),(3,'Hamilton'),(4,'Thompson'),
                      (5,'Liskov'),(6,'Ritchie'),(7,'Allen'),(8,'Dijkstra'),(9,'Perlman'))
INSERT INTO orders (customer, items)
SELECT (SELECT v FROM first WHERE k = i % 10) || ' ' || (SELECT v FROM last WHERE k = (i / 10) % 10),
       CASE i % 3
         WHEN 0 THEN json_array(json_object('sku', printf('BK-%03d', i % 997), 'name', 'Notebook', 'qty', 1 + i % 5, 'unitPriceCents', 100 + (i * 7919) % 9900))
         WHEN 1 THEN json_array(json_object('sku', printf('BK-%03d', i % 997), 'name', 'Notebook', 'qty', 1 + i % 5, 'unitPriceCents', 100 + (i * 7919) % 9900),
                                json_object('sku', printf('PN-%03d', i % 101), 'name', 'Pen', 'qty', 1 + i % 3, 'unitPriceCents', 150 + (i * 104729) % 850))
         ELSE json_array(json_object('sku', printf('BK-%03d', i % 997), 'name', 'Notebook', 'qty', 1 + i % 5, 'unitPriceCents', 100 + (i * 7919) % 9900),
                         json_object('sku', printf('PN-%03d', i % 101), 'name', 'Pen', 'qty', 1 + i % 3, 'unitPriceCents', 150 + (i * 104729) % 850),
                         json_object('sku', 'BAG-01', 'name', 'Tote bag', 'qty', 1, 'unitPriceCents', 1999))
       END
FROM n;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SELECT 'orders', count(*), min(id), max(id) FROM orders;
SELECT 'events', count(*) FROM events;
SQL
  local want; want=$(printf 'ord_%05d' "$BENCH_ORDERS")
  grep -q "^orders|$BENCH_ORDERS|ord_00001|$want\$" "$out/ours-seed.log" \
    || { cat "$out/ours-seed.log" >&2; die "our database does not hold ord_00001..$want after seeding"; }
  log "ours: $(tr '\n' ' ' < "$out/ours-seed.log")"
}

start_ours() {   # $1 = max-procs
  local procs=$1 name=ours-p$1 dir=$tmp/ours-p$1
  mkdir -p "$dir/www"
  cp "$ours_template" "$dir/orders.db"
  local port=0
  local conns_max=0 c
  for c in $WRK_CONNS; do [ "$c" -gt "$conns_max" ] && conns_max=$c; done
  local maxconn=$(( conns_max * 2 + 256 )); [ "$maxconn" -lt 1024 ] && maxconn=1024
  local maxfds=$(( maxconn * 3 ))
  local threads_env=""
  [ -n "$BENCH_THREADS" ] && threads_env=", \"ORDERS_THREADS\" => \"$BENCH_THREADS\""
  cat > "$dir/lighttpd.conf" <<CONF
server.modules += ( "mod_fastcgi" )
server.document-root = "$dir/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/lighttpd-error.log"
server.max-fds = $maxfds
server.max-connections = $maxconn
# wrk keeps its connections open for the whole run; node never closes an idle
# keep-alive connection under load either. (lighttpd's default is 1000 requests.)
server.max-keep-alive-requests = 1000000
fastcgi.server = ( "/api/v1/" => ( (
  "socket" => "$dir/orders.sock",
  "bin-path" => "$ORDERS_FCGI",
  "bin-environment" => ( "ORDERS_DB" => "$dir/orders.db", "ORDERS_SYNC" => "$BENCH_SYNC"$threads_env ),
  "check-local" => "disable",
  "min-procs" => $procs,
  "max-procs" => $procs
) ) )
\$HTTP["url"] =^ "/api/v1/stream/" {
  server.stream-response-body = 2
}
CONF
  "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" > "$out/$name-lighttpd-check.log" 2>&1 \
    || { cat "$out/$name-lighttpd-check.log" >&2; die "lighttpd rejects the generated config"; }
  local pid try
  for try in 1 2 3 4 5; do   # another program may take the port between check and bind
    port=$(free_port) || die "no free port"
    sed -i "s/^server.port = .*/server.port = $port/" "$dir/lighttpd.conf"
    "$LIGHTTPD" -D -f "$dir/lighttpd.conf" > "$out/$name-lighttpd.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_http "http://127.0.0.1:$port/api/v1/health" "$pid" && break
    grep -q "Address already in use" "$out/$name-lighttpd.log" && ! kill -0 "$pid" 2>/dev/null && continue
    cat "$out/$name-lighttpd.log" "$dir/lighttpd-error.log" >&2 2>/dev/null || true
    die "lighttpd + responder did not answer /api/v1/health on port $port"
  done
  kill -0 "$pid" 2>/dev/null || die "lighttpd did not come up: no free port after 5 tries"
  # The copy kept with the results names no path of this machine.
  sed -e "s|$tmp|<tmp>|g" -e "s|$root/|<repo>/|g" "$dir/lighttpd.conf" > "$out/$name-lighttpd.conf"
  local kids i
  for i in $(seq 50); do
    kids=$(children_of "$pid"); [ "$(echo $kids | wc -w)" -ge "$procs" ] && break; sleep 0.1
  done
  servers+=("$name"); URL[$name]=http://127.0.0.1:$port; APP_PIDS[$name]=$kids; FRONT_PID[$name]=$pid
  local plural=""; [ "$procs" -gt 1 ] && plural=s
  LABEL[$name]="ours, lighttpd + $procs responder$plural"
  log "ours: lighttpd pid $pid on 127.0.0.1:$port, responder pid(s) $kids, ORDERS_SYNC=$BENCH_SYNC${BENCH_THREADS:+, ORDERS_THREADS=$BENCH_THREADS}"
}

# The responders run under spawn-fcgi, one socket each, as systemd's
# orders.socket would give them; nginx balances over them and keeps
# NGINX_KEEPALIVE idle connections per worker to reuse (FCGI_KEEP_CONN).
start_ours_nginx() {   # $1 = responder processes
  local procs=$1 name=ours-nginx-p$1 dir=$tmp/ours-nginx-p$1 i
  mkdir -p "$dir/www" "$dir/nginx-tmp"
  cp "$ours_template" "$dir/orders.db"
  local kids="" upstream=""
  for i in $(seq "$procs"); do
    rm -f "$dir/orders-$i.sock"
    env ORDERS_DB="$dir/orders.db" ORDERS_SYNC="$BENCH_SYNC" ${BENCH_THREADS:+ORDERS_THREADS=$BENCH_THREADS} \
      spawn-fcgi -n -s "$dir/orders-$i.sock" -- "$ORDERS_FCGI" > "$out/$name-responder-$i.log" 2>&1 &
    started+=("$!")
    kids="$kids${kids:+ }$!"
    upstream="$upstream    server unix:$dir/orders-$i.sock;"$'\n'
  done
  for i in $(seq 100); do [ -S "$dir/orders-$procs.sock" ] && break; sleep 0.05; done
  local port=0 user=""
  # As root, nginx's workers would run as nobody, who cannot reach the sockets.
  [ "$(id -u)" = 0 ] && user="user root;"
  cat > "$dir/nginx.conf" <<CONF
$user
daemon off;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-tmp/body;
  proxy_temp_path $dir/nginx-tmp/proxy;
  fastcgi_temp_path $dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $dir/nginx-tmp/uwsgi;
  scgi_temp_path $dir/nginx-tmp/scgi;
  keepalive_requests 1000000;
  upstream orders {
$upstream    keepalive $NGINX_KEEPALIVE;
  }
  server {
    listen 127.0.0.1:$port;
    location /api/v1/ {
      include $root/tests/lib/nginx-fastcgi.params;
      fastcgi_pass orders;
      fastcgi_keep_conn on;
    }
  }
}
CONF
  local pid try
  for try in 1 2 3 4 5; do
    port=$(free_port) || die "no free port"
    sed -i "s/listen 127.0.0.1:[0-9]*;/listen 127.0.0.1:$port;/" "$dir/nginx.conf"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" > "$out/$name-nginx.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_http "http://127.0.0.1:$port/api/v1/health" "$pid" && break
    grep -q "Address already in use" "$dir/nginx-error.log" 2>/dev/null && ! kill -0 "$pid" 2>/dev/null && continue
    cat "$out/$name-nginx.log" "$dir/nginx-error.log" >&2 2>/dev/null || true
    die "nginx + responder did not answer /api/v1/health on port $port"
  done
  kill -0 "$pid" 2>/dev/null || die "nginx did not come up: no free port after 5 tries"
  sed -e "s|$tmp|<tmp>|g" -e "s|$root/|<repo>/|g" "$dir/nginx.conf" > "$out/$name-nginx.conf"
  # The front's CPU: the master and its workers.
  local front="$pid $(children_of "$pid")"
  servers+=("$name"); URL[$name]=http://127.0.0.1:$port; APP_PIDS[$name]=$kids; FRONT_PID[$name]=$front
  local plural=""; [ "$procs" -gt 1 ] && plural=s
  LABEL[$name]="ours, nginx + $procs responder$plural"
  log "ours: nginx pid $pid on 127.0.0.1:$port, responder pid(s) $kids, keepalive $NGINX_KEEPALIVE x $NGINX_WORKERS workers"
}

# Check that both requests of the benchmark answer 200 with the order, before measuring.
precheck() {   # $1 = server
  local u=${URL[$1]} id code ok=1
  id=$(printf 'ord_%05d' "$BENCH_ORDERS")
  code=$(curl -s -D "$out/$1-precheck-get.headers" -o "$out/$1-precheck-get.json" -w '%{http_code}' "$u/api/v1/orders/$id")
  [ "$code" = 200 ] && grep -q "\"$id\"" "$out/$1-precheck-get.json" || { ok=0; log "$1: GET $id -> $code (expected 200)"; }
  code=$(curl -s -D "$out/$1-precheck-patch.headers" -o "$out/$1-precheck-patch.json" -w '%{http_code}' -X PATCH \
    -H 'Content-Type: application/json' --data '{"note":"bench precheck"}' "$u/api/v1/orders/ord_00001")
  [ "$code" = 200 ] && grep -q '"bench precheck"' "$out/$1-precheck-patch.json" || { ok=0; log "$1: PATCH ord_00001 -> $code (expected 200)"; }
  [ $ok = 1 ] && log "$1: precheck ok (GET and PATCH answer 200)"
  return 0
}

# ---------------------------------------------------------------- measuring
# One wrk run with /proc sampling of the server's processes.
# Writes $out/<server>-<test>-c<conns>.txt and appends one row to $out/rows.tsv.
measure() {   # $1 = server, $2 = test, $3 = connections
  local s=$1 test=$2 c=$3 u=${URL[$1]}
  local app=${APP_PIDS[$1]} front=${FRONT_PID[$1]} file=$out/$1-$2-c$3
  if [ "$WRK_WARMUP" != 0 ]; then
    run_wrk -t"$WRK_THREADS" -c"$c" -d"$WRK_WARMUP" --timeout "$WRK_TIMEOUT" -s "$here/$test.lua" "$u" > "$file.warmup.txt" 2>&1
    sleep 1
  fi
  local samples=$file.rss
  : > "$samples"
  # shellcheck disable=SC2086
  ( while kill -0 $$ 2>/dev/null; do   # ends with the script, whatever happens
      a=0; for p in $app; do a=$((a + $(rss_kb "$p"))); done
      f=0; for p in $front; do f=$((f + $(rss_kb "$p"))); done
      echo "$a $f"; sleep 0.2
    done ) >> "$samples" &
  mon=$!
  # shellcheck disable=SC2086
  local a0 f0 t0; a0=$(ticks $app); f0=$(ticks $front); t0=$(date +%s.%N)
  local cmd="wrk -t$WRK_THREADS -c$c -d$WRK_DURATION --timeout $WRK_TIMEOUT --latency -s bench/$test.lua ${u}"
  { echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "\$ $cmd"; } > "$file.txt"
  run_wrk -t"$WRK_THREADS" -c"$c" -d"$WRK_DURATION" --timeout "$WRK_TIMEOUT" --latency -s "$here/$test.lua" "$u" >> "$file.txt" 2>&1
  # shellcheck disable=SC2086
  local a1 f1 t1; a1=$(ticks $app); f1=$(ticks $front); t1=$(date +%s.%N)
  kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null || true
  mon=""
  local arss frss; read -r arss frss < <(awk 'BEGIN{a=0;f=0} {if ($1>a) a=$1; if ($2>f) f=$2} END{print a, f}' "$samples")
  local wall; wall=$(awk -v s="$t0" -v e="$t1" 'BEGIN{printf "%.2f", e - s}')
  local acpu fcpu
  acpu=$(awk -v d=$((a1 - a0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz}')
  fcpu=$(awk -v d=$((f1 - f0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz}')
  local note=""
  case $s in
  ours-p*)
    local now; now=$(children_of "$front")
    [ "$(echo $now)" = "$(echo $app)" ] || note="responder pids changed: $app -> $now (crash/respawn?)" ;;
  *)
    for p in $app; do kill -0 "$p" 2>/dev/null || note="server process $p gone"; done ;;
  esac
  {
    echo "server: ${LABEL[$s]}; wall ${wall} s"
    echo "app CPU: ${acpu} s (pids $app); app RSS max: ${arss} kB"
    if [ -n "$front" ]; then echo "front end CPU: ${fcpu} s (pid $front); front end RSS max: ${frss} kB"; fi
    if [ -n "$note" ]; then echo "NOTE: $note"; fi
  } >> "$file.txt"
  local bench; bench=$(grep '^BENCH ' "$file.txt" | tail -1 || true)
  [ -n "$bench" ] || { log "$s $test c$c: wrk produced no result, see $file.txt"; bench="BENCH requests=0 duration_us=1"; }
  # shellcheck disable=SC2086
  local kv; kv=$(echo "$bench" | cut -d' ' -f2-)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$test" "$c" "$kv" "$wall" "$acpu" "$arss" \
    "${front:+$fcpu}" "${front:+$frss}" "$note" "$(grep -c . "$samples")" >> "$out/rows.tsv"
  local rps; rps=$(echo "$kv" | tr ' ' '\n' | awk -F= '$1=="requests"{r=$2} $1=="duration_us"{d=$2} END{printf "%.0f", r / (d / 1e6)}')
  log "$s $test -c$c: $rps req/s${note:+ ($note)}"
}

# ---------------------------------------------------------------- environment
lib_version() {   # $1 = binary, $2 = library name: "<lib file> (<package> <version>)" where known
  local f pkg
  f=$(ldd "$1" 2>/dev/null | awk -v l="$2" 'index($1, l) == 1 {print $3; exit}')
  [ -n "$f" ] || { echo "$2 (not linked)"; return; }
  f=$(readlink -f "$f")
  pkg=$(dpkg-query -S "$f" 2>/dev/null | head -1 | cut -d: -f1) || true
  if [ -n "$pkg" ]; then echo "$(basename "$f") ($pkg $(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null | head -1))"
  else basename "$f"; fi
}
machine_info() {
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -sr)"
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2, $3}')"
  echo "lighttpd: $("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{print $1}')"
  echo "sqlite3 CLI: $(sqlite3 --version 2>/dev/null | awk '{print $1}')"
  if [ -x "$ORDERS_FCGI" ]; then
    echo "responder: $(basename "$ORDERS_FCGI") sha256 $(sha256sum "$ORDERS_FCGI" | cut -c1-12), built $(date -u -r "$ORDERS_FCGI" +%FT%TZ); source $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "responder links: $(lib_version "$ORDERS_FCGI" libsqlite3), $(lib_version "$ORDERS_FCGI" libfcgi), $(lib_version "$ORDERS_FCGI" libjson-c)"
  fi
  if command -v node >/dev/null; then echo "node: $(node -v)"; fi
  if [ -d "$tmp/peer/node_modules" ]; then
    (cd "$tmp/peer" && node -e "
      const fs = require('fs'); const v = (p) => JSON.parse(fs.readFileSync('node_modules/' + p + '/package.json')).version;
      const D = require('better-sqlite3');
      console.log('peer: hono ' + v('hono') + ', @hono/node-server ' + v('@hono/node-server') + ', better-sqlite3 ' + v('better-sqlite3') +
                  ' (SQLite ' + new D(':memory:').prepare('select sqlite_version() v').get().v + ')')" 2>/dev/null) || true
  fi
  echo "wrk settings: -t$WRK_THREADS -c{${WRK_CONNS// /,}} -d$WRK_DURATION --timeout $WRK_TIMEOUT, warm-up $WRK_WARMUP before each run"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "sync: $BENCH_SYNC; orders seeded: $BENCH_ORDERS; BENCH_PROCS: $BENCH_PROCS; ORDERS_THREADS: ${BENCH_THREADS:-(responder default)}"
}

# ---------------------------------------------------------------- main
log "results: $out"
for s in $BENCH_SERVERS; do
  case $s in
    peer) start_peer ;;
    ours)
      if [ ! -x "$ORDERS_FCGI" ]; then
        log "ours skipped: responder $ORDERS_FCGI not built (run make)"
      elif [ ! -x "$LIGHTTPD" ]; then
        log "ours skipped: lighttpd not found (Debian package: lighttpd)"
      elif ! command -v sqlite3 >/dev/null; then
        log "ours skipped: sqlite3 not found (Debian package: sqlite3)"
      else
        make_ours_db
        for f in $BENCH_FRONTS; do
          for p in $BENCH_PROCS; do
            case $f in
            lighttpd) start_ours "$p" ;;
            nginx)
              if [ -z "$NGINX" ] || ! command -v spawn-fcgi >/dev/null; then
                log "ours behind nginx skipped: nginx or spawn-fcgi not found"
              else
                start_ours_nginx "$p"
              fi ;;
            esac
          done
        done
      fi ;;
    *) die "BENCH_SERVERS: unknown server '$s'" ;;
  esac
done
[ ${#servers[@]} -gt 0 ] || die "nothing to benchmark"

machine_info | tee "$out/env.txt" >&2
for s in "${servers[@]}"; do precheck "$s"; done
for s in "${servers[@]}"; do
  echo "$s idle after start: app RSS $(for p in ${APP_PIDS[$s]}; do rss_kb "$p"; done | awk '{s += $1} END {print s}') kB" >> "$out/idle.txt"
done

: > "$out/rows.tsv"
# Interleaved: for each test and connection count, every server in turn.
for test in $BENCH_TESTS; do
  for c in $WRK_CONNS; do
    for s in "${servers[@]}"; do measure "$s" "$test" "$c"; done
  done
done

for s in "${servers[@]}"; do
  echo "$s idle after all runs: app RSS $(for p in ${APP_PIDS[$s]}; do rss_kb "$p"; done | awk '{s += $1} END {print s}') kB" >> "$out/idle.txt"
done

# ---------------------------------------------------------------- report
{
  echo "## REST benchmark $(date -u +%F)"
  echo
  echo '```'
  cat "$out/env.txt"
  echo '```'
  echo
  awk -F'\t' -v labels="$(for s in "${servers[@]}"; do printf '%s=%s;' "$s" "${LABEL[$s]}"; done)" '
    BEGIN {
      n = split(labels, L, ";"); for (i = 1; i <= n; i++) if (L[i] != "") { split(L[i], kv, "="); name[kv[1]] = kv[2] }
      print "| server | test | conns | req/s | p50 | p99 | non-2xx | sock err / timeouts | app CPU s (% of wall) | app RSS max | front end CPU s | front end RSS max | server CPU / req |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }
    function ms(us) { return sprintf("%.2f ms", us / 1000) }
    function thou(x,   s) { s = sprintf("%.0f", x); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); return s }
    function mb(kb) { return kb == "" ? "–" : sprintf("%.1f MB", kb / 1000) }
    {
      delete v; m = split($4, kv, " "); for (i = 1; i <= m; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
      rps = v["duration_us"] > 0 ? v["requests"] / (v["duration_us"] / 1e6) : 0
      key = $2 SUBSEP $3; R[$1, key] = rps; if (!(key in seen)) { seen[key] = 1; keys[++nk] = key; kt[nk] = $2; kc[nk] = $3 }
      if (!($1 in sseen)) { sseen[$1] = 1; srv[++ns] = $1 }
      sock = v["connect_errors"] + v["read_errors"] + v["write_errors"]
      cpr = v["requests"] > 0 ? sprintf("%.0f µs", 1e6 * ($6 + $8) / v["requests"]) : "–"
      printf "| %s | %s | %s | %s | %s | %s | %d | %d / %d | %s (%.0f %%) | %s | %s | %s | %s |%s\n",
        name[$1], toupper($2), $3, thou(rps), ms(v["p50_us"]), ms(v["p99_us"]), v["status_errors"],
        sock, v["timeouts"], $6, ($5 > 0 ? 100 * $6 / $5 : 0), mb($7), ($8 == "" ? "–" : $8), mb($9), cpr,
        ($10 == "" ? "" : " " $10)
    }
    END {
      if (!("peer" in sseen) || ns < 2) exit
      print ""; print "| ours / peer (req/s) | test | conns | ratio |"; print "|---|---|---:|---:|"
      for (k = 1; k <= nk; k++) for (j = 1; j <= ns; j++) {
        s = srv[j]; if (s == "peer") continue
        if (R["peer", keys[k]] > 0) printf "| %s | %s | %s | %.2f× |\n", name[s], toupper(kt[k]), kc[k], R[s, keys[k]] / R["peer", keys[k]]
      }
    }' "$out/rows.tsv"
  echo
  echo "req/s = requests / wrk duration; p50/p99 from wrk's latency histogram; non-2xx = wrk's status"
  echo "error count (HTTP status >= 400); app = node, or all responder processes together."
  echo "CPU seconds from /proc/<pid>/stat (utime+stime, all threads) over the measured run;"
  echo "RSS max = largest VmRSS sample (every 0.2 s) during the measured run; server CPU / req ="
  echo "(app + front end CPU seconds) / requests; the front end is lighttpd, or nginx's master"
  echo "and workers. Raw output: $(basename "$out")/."
} > "$out/summary.md"
echo
cat "$out/summary.md"
