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
#   BENCH_SYNC     ORDERS_SYNC for ours / SQLITE_SYNCHRONOUS for the peer (default normal);
#                  SQLite only
#   BENCH_BACKEND  ours' store, space-separated (default "sqlite"): sqlite, postgresql
#                  (a throwaway cluster, see bench/pg.sh: fsync on, synchronous_commit
#                  BENCH_PG_SYNC_COMMIT (default on), shared_buffers 256MB)
#   BENCH_HOSTS    "hosts" per set, space-separated (default 1): 2 starts two front end +
#                  responder sets on two ports over one PostgreSQL database, loaded by
#                  two wrk at once (half of -c each); postgresql only
#   BENCH_PG_SYNC_COMMIT, BENCH_PG_SHARED_BUFFERS, BENCH_PG_SETTINGS: see bench/pg.sh
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
BENCH_BACKEND=${BENCH_BACKEND:-sqlite}
BENCH_HOSTS=${BENCH_HOSTS:-1}
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
for b in $BENCH_BACKEND; do case $b in sqlite|postgresql) ;; *) die "BENCH_BACKEND: unknown backend '$b' (sqlite, postgresql)" ;; esac; done
for h in $BENCH_HOSTS; do case $h in 1|2) ;; *) die "BENCH_HOSTS: bad value '$h' (1 or 2)" ;; esac; done
if [[ " $BENCH_HOSTS " == *" 2 "* && " $BENCH_BACKEND " != *" postgresql "* ]]; then
  die "BENCH_HOSTS=2 needs BENCH_BACKEND=postgresql (SQLite serves one host)"
fi
use_pg=0; [[ " $BENCH_BACKEND " == *" postgresql "* && " $BENCH_SERVERS " == *" ours "* ]] && use_pg=1
if [ "$use_pg" = 1 ]; then
  # shellcheck source=bench/pg.sh
  source "$here/pg.sh"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orders-bench.XXXXXX")
out="$BENCH_OUT/rest-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
hz=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes
# Every server we start is recorded here and stopped (by PID) on exit.
started=()
mon=""         # the RSS sampler of the run in progress
wrk_pid=""     # the wrk(s) in progress
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
  # shellcheck disable=SC2086
  [ -n "$wrk_pid" ] && kill $wrk_pid 2>/dev/null   # one per host
  for pid in "${started[@]}"; do
    kids=$(children_of "$pid")        # lighttpd's responders: stop them too
    stop_pid "$pid"
    for k in $kids; do stop_pid "$k"; done
  done
  [ "$use_pg" = 1 ] && bench_pg_stop   # after its clients: a fast shutdown, by its data directory
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
declare -A URL URLS APP_PIDS FRONT_PID LABEL NHOSTS FRONT_KIND BACKEND
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
  servers+=(peer); URL[peer]=http://127.0.0.1:$port; URLS[peer]=${URL[peer]}; APP_PIDS[peer]=$pid; FRONT_PID[peer]=""
  NHOSTS[peer]=1; FRONT_KIND[peer]=""; BACKEND[peer]=""
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

# One "host" of ours: a front end and its responders, on a free port. Sets H_URL,
# H_APP (the responders' pids) and H_FRONT (the front end's pids).
# $1 = tag (file names), $2 = dir, $3 = responder processes, $4 = ORDERS_DB,
# $5 = the metrics file (PostgreSQL: one per host, in the host's dir; else empty)
# PostgreSQL: the cluster (once per run) and its template database, with the
# same orders as the SQLite template (bench/pg.sh).
make_ours_pg() {
  log "ours: starting a PostgreSQL cluster (bench/pg.sh)"
  bench_pg_start > "$out/pg-start.log" 2>&1 || { cat "$out/pg-start.log" >&2; die "PostgreSQL did not start"; }
  log "ours: $(bench_pg_describe | tee "$out/pg-settings.txt")"
  log "ours: PostgreSQL template: schema (--migrate) and $BENCH_ORDERS orders"
  bench_pg_template seed_pg > "$out/pg-seed.log" 2>&1 || { cat "$out/pg-seed.log" >&2; die "making the PostgreSQL template failed"; }
  local got want; want=$(printf 'ord_%05d' "$BENCH_ORDERS")
  got=$(pg_sql "$(pg_url "$BENCH_PG_TEMPLATE")" "SELECT count(*) || '|' || min(id) || '|' || max(id) FROM orders")
  [ "$got" = "$BENCH_ORDERS|ord_00001|$want" ] || die "the PostgreSQL template holds $got, not $BENCH_ORDERS orders ord_00001..$want"
  log "ours: PostgreSQL template: orders $got, events $(pg_sql "$(pg_url "$BENCH_PG_TEMPLATE")" 'SELECT count(*) FROM events')"
}
seed_pg() { bench_pg_seed_orders "$1" "$BENCH_ORDERS"; }

start_host_lighttpd() {
  local tag=$1 dir=$2 procs=$3 db=$4 metrics=$5
  mkdir -p "$dir/www"
  local port=0
  local conns_max=0 c
  for c in $WRK_CONNS; do [ "$c" -gt "$conns_max" ] && conns_max=$c; done
  local maxconn=$(( conns_max * 2 + 256 )); [ "$maxconn" -lt 1024 ] && maxconn=1024
  local maxfds=$(( maxconn * 3 ))
  local extra_env=""
  [ -n "$BENCH_THREADS" ] && extra_env+=", \"ORDERS_THREADS\" => \"$BENCH_THREADS\""
  [ -n "$metrics" ] && extra_env+=", \"ORDERS_METRICS_FILE\" => \"$metrics\""
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
  "bin-environment" => ( "ORDERS_DB" => "$db", "ORDERS_SYNC" => "$BENCH_SYNC"$extra_env ),
  "check-local" => "disable",
  "min-procs" => $procs,
  "max-procs" => $procs
) ) )
\$HTTP["url"] =^ "/api/v1/stream/" {
  server.stream-response-body = 2
}
CONF
  "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" > "$out/$tag-lighttpd-check.log" 2>&1 \
    || { cat "$out/$tag-lighttpd-check.log" >&2; die "lighttpd rejects the generated config"; }
  local pid try
  for try in 1 2 3 4 5; do   # another program may take the port between check and bind
    port=$(free_port) || die "no free port"
    sed -i "s/^server.port = .*/server.port = $port/" "$dir/lighttpd.conf"
    "$LIGHTTPD" -D -f "$dir/lighttpd.conf" > "$out/$tag-lighttpd.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_http "http://127.0.0.1:$port/api/v1/health" "$pid" && break
    grep -q "Address already in use" "$out/$tag-lighttpd.log" && ! kill -0 "$pid" 2>/dev/null && continue
    cat "$out/$tag-lighttpd.log" "$dir/lighttpd-error.log" >&2 2>/dev/null || true
    die "lighttpd + responder did not answer /api/v1/health on port $port"
  done
  kill -0 "$pid" 2>/dev/null || die "lighttpd did not come up: no free port after 5 tries"
  # The copy kept with the results names no path of this machine.
  sed -e "s|$tmp|<tmp>|g" -e "s|$root/|<repo>/|g" "$dir/lighttpd.conf" > "$out/$tag-lighttpd.conf"
  local kids i
  for i in $(seq 50); do
    kids=$(children_of "$pid"); [ "$(echo $kids | wc -w)" -ge "$procs" ] && break; sleep 0.1
  done
  H_URL=http://127.0.0.1:$port H_APP=$kids H_FRONT=$pid
  log "$tag: lighttpd pid $pid on 127.0.0.1:$port, responder pid(s) $kids"
}

# The responders run under spawn-fcgi, one socket each, as systemd's
# orders.socket would give them; nginx balances over them and keeps
# NGINX_KEEPALIVE idle connections per worker to reuse (FCGI_KEEP_CONN).
# Arguments and results as start_host_lighttpd.
start_host_nginx() {
  local tag=$1 dir=$2 procs=$3 db=$4 metrics=$5 i
  mkdir -p "$dir/www" "$dir/nginx-tmp"
  local kids="" upstream=""
  for i in $(seq "$procs"); do
    rm -f "$dir/orders-$i.sock"
    env ORDERS_DB="$db" ORDERS_SYNC="$BENCH_SYNC" ${BENCH_THREADS:+ORDERS_THREADS=$BENCH_THREADS} \
      ${metrics:+ORDERS_METRICS_FILE=$metrics} \
      spawn-fcgi -n -s "$dir/orders-$i.sock" -- "$ORDERS_FCGI" > "$out/$tag-responder-$i.log" 2>&1 &
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
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" > "$out/$tag-nginx.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_http "http://127.0.0.1:$port/api/v1/health" "$pid" && break
    grep -q "Address already in use" "$dir/nginx-error.log" 2>/dev/null && ! kill -0 "$pid" 2>/dev/null && continue
    cat "$out/$tag-nginx.log" "$dir/nginx-error.log" >&2 2>/dev/null || true
    die "nginx + responder did not answer /api/v1/health on port $port"
  done
  kill -0 "$pid" 2>/dev/null || die "nginx did not come up: no free port after 5 tries"
  sed -e "s|$tmp|<tmp>|g" -e "s|$root/|<repo>/|g" "$dir/nginx.conf" > "$out/$tag-nginx.conf"
  # The front's CPU: the master and its workers.
  H_URL=http://127.0.0.1:$port H_APP=$kids H_FRONT="$pid $(children_of "$pid")"
  log "$tag: nginx pid $pid on 127.0.0.1:$port, responder pid(s) $kids, keepalive $NGINX_KEEPALIVE x $NGINX_WORKERS workers"
}

# One set of ours: $2 responder processes behind front end $1 on each of $4
# hosts, over backend $3. SQLite: a copy of the template database; PostgreSQL:
# a database made from the template, shared by the hosts.
start_ours() {   # $1 = lighttpd | nginx, $2 = processes per host, $3 = sqlite | postgresql, $4 = hosts
  local front=$1 procs=$2 backend=$3 hosts=$4 name=ours db h dir tag metrics=""
  [ "$front" = nginx ] && name+=-nginx
  [ "$backend" = postgresql ] && name+=-pg-h$hosts
  name+=-p$procs
  mkdir -p "$tmp/$name"
  if [ "$backend" = postgresql ]; then
    db=$(bench_pg_db "$name") || die "cannot create the database of $name"
  else
    cp "$ours_template" "$tmp/$name/orders.db"
    db=$tmp/$name/orders.db
  fi
  local urls="" apps="" fronts=""
  for h in $(seq "$hosts"); do
    dir=$tmp/$name tag=$name
    [ "$hosts" -gt 1 ] && { dir=$tmp/$name/host$h; tag=$name-host$h; }
    [ "$backend" = postgresql ] && metrics=$dir/orders.metrics
    "start_host_$front" "$tag" "$dir" "$procs" "$db" "$metrics"
    urls+=${urls:+ }$H_URL apps+=${apps:+ }$H_APP fronts+=${fronts:+ }$H_FRONT
  done
  servers+=("$name"); URL[$name]=${urls%% *}; URLS[$name]=$urls; APP_PIDS[$name]=$apps; FRONT_PID[$name]=$fronts
  NHOSTS[$name]=$hosts; FRONT_KIND[$name]=$front; BACKEND[$name]=$backend
  local plural="" hplural=""; [ "$procs" -gt 1 ] && plural=s; [ "$hosts" -gt 1 ] && hplural=s
  LABEL[$name]="ours, $front + $procs responder$plural, $backend, $hosts host$hplural"
  log "ours: ${LABEL[$name]}: ${urls// /, }; ORDERS_DB=${db//$tmp/<tmp>}${BENCH_THREADS:+, ORDERS_THREADS=$BENCH_THREADS}"
}

# Check that both requests of the benchmark answer 200 with the order, before measuring.
# With two hosts, on each (the files of the second are <server>-host2-precheck-*).
precheck() {   # $1 = server
  local u id code ok=1 h=0 f
  id=$(printf 'ord_%05d' "$BENCH_ORDERS")
  for u in ${URLS[$1]}; do
    h=$((h + 1)); f=$out/$1; [ "$h" -gt 1 ] && f=$out/$1-host$h
    code=$(curl -s -D "$f-precheck-get.headers" -o "$f-precheck-get.json" -w '%{http_code}' "$u/api/v1/orders/$id")
    [ "$code" = 200 ] && grep -q "\"$id\"" "$f-precheck-get.json" || { ok=0; log "$1: GET $id on $u -> $code (expected 200)"; }
    code=$(curl -s -D "$f-precheck-patch.headers" -o "$f-precheck-patch.json" -w '%{http_code}' -X PATCH \
      -H 'Content-Type: application/json' --data "{\"note\":\"bench precheck $h\"}" "$u/api/v1/orders/ord_00001")
    [ "$code" = 200 ] && grep -q "\"bench precheck $h\"" "$f-precheck-patch.json" || { ok=0; log "$1: PATCH ord_00001 on $u -> $code (expected 200)"; }
  done
  local where=""; [ "${NHOSTS[$1]}" -gt 1 ] && where=", on both hosts"
  [ $ok = 1 ] && log "$1: precheck ok (GET and PATCH answer 200$where)"
  return 0
}

# ---------------------------------------------------------------- measuring
# One wrk run with /proc sampling of the server's processes.
# Writes $out/<server>-<test>-c<conns>.txt and appends one row to $out/rows.tsv.
# With two hosts: two wrk at once, one per host, each with half of the
# connections and of the threads (at least 1); their BENCH lines are kept per
# host and summed (requests/s, errors) into the row, with each host's
# percentiles (p50_us=<host 1>/<host 2>).
wrk_hosts() {   # $1 = server, $2 = test, $3 = connections, $4 = duration, $5 = file prefix, $6 = --latency or ""
  local s=$1 test=$2 c=$3 d=$4 f=$5 lat=$6 n=${NHOSTS[$1]} u h=0 pids=() t cc
  if [ "$n" = 1 ]; then
    # shellcheck disable=SC2086
    run_wrk -t"$WRK_THREADS" -c"$c" -d"$d" --timeout "$WRK_TIMEOUT" $lat -s "$here/$test.lua" "${URL[$s]}" >> "$f.txt" 2>&1
    return
  fi
  t=$(( WRK_THREADS / n )); [ "$t" -ge 1 ] || t=1
  cc=$(( c / n )); [ "$cc" -ge "$t" ] || cc=$t
  for u in ${URLS[$s]}; do
    h=$((h + 1))
    echo "\$ wrk -t$t -c$cc -d$d --timeout $WRK_TIMEOUT $lat -s bench/$test.lua $u" > "$f.host$h.txt"
    # shellcheck disable=SC2086
    wrk -t"$t" -c"$cc" -d"$d" --timeout "$WRK_TIMEOUT" $lat -s "$here/$test.lua" "$u" >> "$f.host$h.txt" 2>&1 &
    pids+=("$!")
  done
  wrk_pid="${pids[*]}"
  for t in "${pids[@]}"; do wait "$t" || true; done
  wrk_pid=""
  h=0
  for u in ${URLS[$s]}; do
    h=$((h + 1))
    { echo "--- host $h ($u)"; cat "$f.host$h.txt"; } >> "$f.txt"
    rm -f "$f.host$h.txt"
  done
}

# The BENCH lines of a run (one per host) as one key=value list.
merge_bench() {   # $1 = file
  grep '^BENCH ' "$1" | awk '
    { for (i = 2; i <= NF; i++) { split($i, p, "="); v[NR, p[1]] = p[2]; if (NR == 1) keys[++nk] = p[1] } }
    END {
      if (NR == 0) { print "requests=0 duration_us=1 rps=0 hosts=0"; exit }
      rps = 0; for (h = 1; h <= NR; h++) if (v[h, "duration_us"] > 0) rps += v[h, "requests"] / (v[h, "duration_us"] / 1e6)
      out = ""
      for (k = 1; k <= nk; k++) {
        key = keys[k]; val = ""
        if (key ~ /_us$/ && key != "duration_us") { for (h = 1; h <= NR; h++) val = val (h > 1 ? "/" : "") v[h, key] }
        else if (key == "duration_us") { for (h = 1; h <= NR; h++) if (v[h, key] > val + 0) val = v[h, key] }
        else { val = 0; for (h = 1; h <= NR; h++) val += v[h, key] }
        out = out (k > 1 ? " " : "") key "=" val
      }
      printf "%s rps=%.1f hosts=%d\n", out, rps, NR
    }'
}

measure() {   # $1 = server, $2 = test, $3 = connections
  local s=$1 test=$2 c=$3
  local app=${APP_PIDS[$1]} front=${FRONT_PID[$1]} file=$out/$1-$2-c$3 db=""
  [ "${BACKEND[$s]}" = postgresql ] && db=1
  if [ "$WRK_WARMUP" != 0 ]; then
    : > "$file.warmup.txt"
    wrk_hosts "$s" "$test" "$c" "$WRK_WARMUP" "$file.warmup" ""
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
  local a0 f0 d0=0 t0
  # shellcheck disable=SC2086
  a0=$(ticks $app) f0=$(ticks $front)
  [ -z "$db" ] || d0=$(bench_pg_ticks)
  t0=$(date +%s.%N)
  local cmd="wrk -t$WRK_THREADS -c$c -d$WRK_DURATION --timeout $WRK_TIMEOUT --latency -s bench/$test.lua ${URL[$s]}"
  [ "${NHOSTS[$s]}" -gt 1 ] && cmd="${NHOSTS[$s]} x wrk at once, one per host, each with half of -t$WRK_THREADS -c$c (below)"
  { echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "\$ $cmd"; } > "$file.txt"
  wrk_hosts "$s" "$test" "$c" "$WRK_DURATION" "$file" --latency
  local a1 f1 d1=0 t1
  # shellcheck disable=SC2086
  a1=$(ticks $app) f1=$(ticks $front)
  [ -z "$db" ] || d1=$(bench_pg_ticks)
  t1=$(date +%s.%N)
  kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null || true
  mon=""
  local arss frss; read -r arss frss < <(awk 'BEGIN{a=0;f=0} {if ($1>a) a=$1; if ($2>f) f=$2} END{print a, f}' "$samples")
  local wall; wall=$(awk -v s="$t0" -v e="$t1" 'BEGIN{printf "%.2f", e - s}')
  local acpu fcpu dcpu=""
  acpu=$(awk -v d=$((a1 - a0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz}')
  fcpu=$(awk -v d=$((f1 - f0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz}')
  [ -n "$db" ] && dcpu=$(awk -v d=$((d1 - d0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz}')
  local note="" p now=""
  case ${FRONT_KIND[$s]} in
  lighttpd)
    for p in $front; do now+=${now:+ }$(children_of "$p"); done
    [ "$now" = "$app" ] || note="responder pids changed: $app -> $now (crash/respawn?)" ;;
  *)
    for p in $app; do kill -0 "$p" 2>/dev/null || note="server process $p gone"; done ;;
  esac
  {
    echo "server: ${LABEL[$s]}; wall ${wall} s"
    echo "app CPU: ${acpu} s (pids $app); app RSS max: ${arss} kB"
    if [ -n "$front" ]; then echo "front end CPU: ${fcpu} s (pid $front); front end RSS max: ${frss} kB"; fi
    if [ -n "$db" ]; then echo "db CPU: ${dcpu} s (the PostgreSQL cluster: postmaster $PG_PID, its children, and those that ended)"; fi
    if [ -n "$note" ]; then echo "NOTE: $note"; fi
  } >> "$file.txt"
  local kv; kv=$(merge_bench "$file.txt")
  case $kv in *hosts=0) log "$s $test c$c: wrk produced no result, see $file.txt" ;; esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$test" "$c" "$kv" "$wall" "$acpu" "$arss" \
    "${front:+$fcpu}" "${front:+$frss}" "$note" "$(grep -c . "$samples")" "$dcpu" >> "$out/rows.tsv"
  local rps; rps=$(echo "$kv" | tr ' ' '\n' | awk -F= '$1=="rps"{printf "%.0f", $2}')
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
  echo "sync (SQLite): $BENCH_SYNC; orders seeded: $BENCH_ORDERS; BENCH_PROCS: $BENCH_PROCS; ORDERS_THREADS: ${BENCH_THREADS:-(responder default)}"
  local two=""
  [[ " $BENCH_HOSTS " == *" 2 "* ]] && two=" (2 hosts: two front end + responder sets on two ports over one PostgreSQL database, sharing this machine's cores)"
  echo "ours: backend(s) $BENCH_BACKEND; hosts $BENCH_HOSTS$two"
  if [ "$use_pg" = 1 ]; then
    echo "postgresql: $(cat "$out/pg-settings.txt" 2>/dev/null); one throwaway cluster on 127.0.0.1 for the run, a database per server set, copied from a template"
    echo "responder links: $(lib_version "$ORDERS_FCGI" libpq)"
  fi
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
        [ "$use_pg" = 1 ] && make_ours_pg
        for b in $BENCH_BACKEND; do
          for hosts in $BENCH_HOSTS; do
            if [ "$b" = sqlite ] && [ "$hosts" -gt 1 ]; then log "ours, sqlite, $hosts hosts: skipped (SQLite serves one host)"; continue; fi
            for f in $BENCH_FRONTS; do
              for p in $BENCH_PROCS; do
                if [ "$f" = nginx ] && { [ -z "$NGINX" ] || ! command -v spawn-fcgi >/dev/null; }; then
                  log "ours behind nginx skipped: nginx or spawn-fcgi not found"; continue
                fi
                start_ours "$f" "$p" "$b" "$hosts"
              done
            done
          done
        done
        # the databases' copies written out now, not in the first measured run
        [ "$use_pg" = 1 ] && pg_sql "$(pg_url postgres)" CHECKPOINT
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
      print "| server | test | conns | req/s | p50 | p99 | non-2xx | sock err / timeouts | app CPU s (% of wall) | app RSS max | front end CPU s | front end RSS max | db CPU s | server CPU / req |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }
    # one value, or one per host ("1234/1456": host 1 / host 2)
    function ms(us,   n, a, i, s) { n = split(us, a, "/"); s = ""; for (i = 1; i <= n; i++) s = s (i > 1 ? " / " : "") sprintf("%.2f", a[i] / 1000); return s " ms" }
    function thou(x,   s) { s = sprintf("%.0f", x); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); return s }
    function mb(kb) { return kb == "" ? "–" : sprintf("%.1f MB", kb / 1000) }
    {
      delete v; m = split($4, kv, " "); for (i = 1; i <= m; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
      rps = ("rps" in v) ? v["rps"] : (v["duration_us"] > 0 ? v["requests"] / (v["duration_us"] / 1e6) : 0)
      key = $2 SUBSEP $3; R[$1, key] = rps; if (!(key in seen)) { seen[key] = 1; keys[++nk] = key; kt[nk] = $2; kc[nk] = $3 }
      if (!($1 in sseen)) { sseen[$1] = 1; srv[++ns] = $1 }
      sock = v["connect_errors"] + v["read_errors"] + v["write_errors"]
      cpr = v["requests"] > 0 ? sprintf("%.0f µs", 1e6 * ($6 + $8 + $12) / v["requests"]) : "–"
      printf "| %s | %s | %s | %s | %s | %s | %d | %d / %d | %s (%.0f %%) | %s | %s | %s | %s | %s |%s\n",
        name[$1], toupper($2), $3, thou(rps), ms(v["p50_us"]), ms(v["p99_us"]), v["status_errors"],
        sock, v["timeouts"], $6, ($5 > 0 ? 100 * $6 / $5 : 0), mb($7), ($8 == "" ? "–" : $8), mb($9),
        ($12 == "" ? "–" : $12), cpr, ($10 == "" ? "" : " " $10)
    }
    END {
      # PostgreSQL sets against the SQLite set of the same front end and processes
      np = 0
      for (j = 1; j <= ns; j++) {
        s = srv[j]; if (s !~ /-pg-h[0-9]+-/) continue
        base = s; sub(/-pg-h[0-9]+-/, "-", base)
        if (!(base in sseen)) continue
        for (k = 1; k <= nk; k++) if (R[base, keys[k]] > 0) {
          if (!np++) { print ""; print "| postgresql / sqlite (req/s) | test | conns | ratio |"; print "|---|---|---:|---:|" }
          printf "| %s | %s | %s | %.2f× |\n", name[s], toupper(kt[k]), kc[k], R[s, keys[k]] / R[base, keys[k]]
        }
      }
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
  echo "(app + front end + db CPU seconds) / requests; the front end is lighttpd, or nginx's master"
  echo "and workers; db = every process of the PostgreSQL cluster (postmaster, backends, WAL writer,"
  echo "checkpointer...; with SQLite that work is inside the responder). Two hosts: req/s summed over"
  echo "the two wrk, p50/p99 per host (host 1 / host 2), CPU and RSS summed over both hosts."
  echo "Raw output: $(basename "$out")/."
} > "$out/summary.md"
echo
cat "$out/summary.md"
