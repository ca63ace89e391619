#!/usr/bin/env bash
# Stream benchmark: SSE fan-out of the orders responder behind lighttpd vs.
# Nchan (nginx's pub/sub module), in one run. See bench/README.md,
# "Stream benchmark".
#
# For each row (N streams, rate R, M events) and each server, a fresh server is
# started, bench/sse-load opens N streams, holds them idle, publishes M changes
# at R/s and reports delivery, latency, CPU and memory. Then the server stops.
#
# Environment (all optional):
#   ROWS           standard (default): 1000:100:200 5000:20:200 9500:10:200
#                  small: 200:50:50 (smoke test); or a list of N:RATE:EVENTS
#   STREAM_SERVERS servers, in order (default "ours nchan")
#   ORDERS_FCGI    responder binary (default src/orders.fcgi)
#   BENCH_OUT      results directory (default bench/out); a new stream-<UTC time>/ per run
#   IDLE_S         seconds the streams stay idle before publishing (default 3)
#   DRAIN_S        seconds to wait for deliveries after the last publish (default 15)
#   PUB_CONNS      publisher keep-alive connections (default 4)
#   CONNECT_RATE   new streams per second (default 2000)
#   NCHAN_WORKERS  nginx worker_processes (default auto, as Debian's nginx.conf)
#   LIGHTTPD_WORKERS  lighttpd server.max-worker (default 1: one lighttpd process, as
#                  conf/lighttpd-orders.conf; 2 forks two lighttpd workers that share the
#                  one responder, each with its own server.max-fds)
#   NCHAN_MODULE   the Nchan module (default /usr/lib/nginx/modules/ngx_nchan_module.so)
#   LIGHTTPD, NGINX  binaries (default: on PATH, else /usr/sbin/...)
#   SSE_LOAD       the load generator (default bench/sse-load, built if missing or stale)
#   QUIET_WAIT     before each run, wait up to this many seconds for the machine to be
#                  idle (< 10 % CPU busy over 2 s), so that another load does not skew
#                  the numbers (default 600; 0 = do not wait)
#   RETRIES        repeat a run during which other processes used > 10 % CPU, up to
#                  this many times (default 2)
#   BENCH_BACKEND  ours' store: sqlite (default) or postgresql (a throwaway cluster, see
#                  bench/pg.sh: fsync on, synchronous_commit BENCH_PG_SYNC_COMMIT (default
#                  on), shared_buffers 256MB; the same 320 orders as the SQLite database,
#                  a new database per run)
#   BENCH_HOSTS    1 (default) or 2 (postgresql only): two lighttpd + responder sets on two
#                  ports over one database; the streams split half-half over them and the
#                  writes alternate between them (sse-load -p PORT1,PORT2)
#   KEEP_TMP=1     keep the temporary directory (databases, configs, logs)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$root/$1" ;; esac; }
die() { echo "stream.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

ORDERS_FCGI=$(abspath "${ORDERS_FCGI:-src/orders.fcgi}")
BENCH_OUT=$(abspath "${BENCH_OUT:-bench/out}")
SSE_LOAD=$(abspath "${SSE_LOAD:-bench/sse-load}")
ROWS=${ROWS:-standard}
STREAM_SERVERS=${STREAM_SERVERS:-ours nchan}
IDLE_S=${IDLE_S:-3}
DRAIN_S=${DRAIN_S:-15}
PUB_CONNS=${PUB_CONNS:-4}
CONNECT_RATE=${CONNECT_RATE:-2000}
NCHAN_WORKERS=${NCHAN_WORKERS:-auto}
LIGHTTPD_WORKERS=${LIGHTTPD_WORKERS:-1}
case $LIGHTTPD_WORKERS in ''|*[!0-9]*|0) die "LIGHTTPD_WORKERS must be a positive integer" ;; esac
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
QUIET_WAIT=${QUIET_WAIT:-600}
RETRIES=${RETRIES:-2}
BENCH_BACKEND=${BENCH_BACKEND:-sqlite}
BENCH_HOSTS=${BENCH_HOSTS:-1}
case $BENCH_BACKEND in sqlite|postgresql) ;; *) die "BENCH_BACKEND must be sqlite or postgresql" ;; esac
case $BENCH_HOSTS in 1|2) ;; *) die "BENCH_HOSTS must be 1 or 2" ;; esac
[ "$BENCH_HOSTS" = 1 ] || [ "$BENCH_BACKEND" = postgresql ] || die "BENCH_HOSTS=2 needs BENCH_BACKEND=postgresql (SQLite serves one host)"
[ "$PUB_CONNS" -ge "$BENCH_HOSTS" ] || die "PUB_CONNS must be at least BENCH_HOSTS"

case $ROWS in
  standard) ROWS="1000:100:200 5000:20:200 9500:10:200" ;;
  small)    ROWS="200:50:50" ;;
esac
max_n=0
for row in $ROWS; do
  [[ $row =~ ^[0-9]+:[0-9]+(\.[0-9]+)?:[0-9]+$ ]] || die "ROWS: bad row '$row' (want N:RATE:EVENTS)"
  n=${row%%:*}; [ "$n" -gt "$max_n" ] && max_n=$n
done
[ "$max_n" -le 9500 ] || echo "stream.sh: warning: more than 9,500 streams do not fit lighttpd's 20000 fds (2 per stream)" >&2
for s in $STREAM_SERVERS; do case $s in ours|nchan) ;; *) die "STREAM_SERVERS: unknown '$s'" ;; esac; done
use_pg=0; [[ $BENCH_BACKEND == postgresql && " $STREAM_SERVERS " == *" ours "* ]] && use_pg=1
if [ "$use_pg" = 1 ]; then
  # shellcheck source=bench/pg.sh
  source "$here/pg.sh"
fi

# One client process holds every stream: raise the soft file limit.
want_fds=$(( max_n + 200 )); [ "$want_fds" -lt 20000 ] && want_fds=20000
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $(( max_n + 100 )) ] \
  || die "file limit $(ulimit -n) is too low for $max_n streams (raise ulimit -n to 20000)"

if [ -z "${LIGHTTPD:-}" ]; then LIGHTTPD=$(command -v lighttpd || echo /usr/sbin/lighttpd); fi
if [ -z "${NGINX:-}" ]; then NGINX=$(command -v nginx || echo /usr/sbin/nginx); fi
command -v curl >/dev/null || die "curl not found"
command -v setsid >/dev/null || die "setsid not found (util-linux)"

# ---------------------------------------------------------------- the generator
if [ ! -x "$SSE_LOAD" ] || [ "$here/sse-load.c" -nt "$SSE_LOAD" ]; then
  log "building $SSE_LOAD"
  ${CC:-cc} -O2 -Wall -Wextra -std=c11 -o "$SSE_LOAD" "$here/sse-load.c" || die "cannot build sse-load"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orders-stream-bench.XXXXXX")
out="$BENCH_OUT/stream-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
hz=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes
started=()          # every server we start; stopped by PID
stop_pid() {        # $1 = pid: TERM, wait up to 10 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | awk '{printf "%s%s", sep, $1; sep = " "}'; }
stop_tree() {       # $1 = pid: the process and the children it had
  local kids k
  kids=$(children_of "$1")
  stop_pid "$1"
  for k in $kids; do stop_pid "$k"; done
}
cleanup() {
  set +e
  local pid
  for pid in "${started[@]}"; do stop_tree "$pid"; done
  [ "$use_pg" = 1 ] && bench_pg_stop   # after its clients: a fast shutdown, by its data directory
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "temporary files kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {       # a TCP port nobody listens on
  local p i
  for i in $(seq 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))    # below the ephemeral range
    if command -v ss >/dev/null; then
      [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || continue
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

wait_url() {        # $1 = url, $2 = pid that must stay alive, $3 = status pattern (default 2??); up to 30 s
  local i code
  for i in $(seq 300); do
    kill -0 "$2" 2>/dev/null || return 1
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true)
    # shellcheck disable=SC2254
    case $code in ${3:-2??}) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

cpu_busy_pct() {    # share of all CPUs busy over the next 2 s
  local a b
  a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); tot = 0; idle = 0
    for (i = 2; i <= n && i <= 9; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
    printf "%.0f", tot ? 100 * (tot - idle) / tot : 0 }'
}
wait_quiet() {      # sets QUIET to the last busy share seen
  local waited=0
  QUIET=$(cpu_busy_pct)
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  while [ "$QUIET" -ge 10 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    [ $((waited % 30)) = 0 ] && log "machine busy ($QUIET % CPU by other processes): waiting (QUIET_WAIT=$QUIET_WAIT s)"
    sleep 3; waited=$((waited + 5))
    QUIET=$(cpu_busy_pct)
  done
  [ "$QUIET" -lt 10 ] || log "machine still busy ($QUIET %) after $waited s: measuring anyway"
}

rss_kb() { awk '/^VmRSS/ {print $2; f=1} END {if (!f) print 0}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- servers
template=$tmp/template.db
make_db() {
  log "ours: database with the demo orders (--migrate, sql/demo.sql)"
  ORDERS_DB="$template" "$ORDERS_FCGI" --migrate > "$out/ours-migrate.log" 2>&1 \
    || { cat "$out/ours-migrate.log" >&2; die "$ORDERS_FCGI --migrate failed"; }
  sqlite3 -bail "$template" < sql/demo.sql > "$out/ours-seed.log" 2>&1 \
    || { cat "$out/ours-seed.log" >&2; die "loading sql/demo.sql failed"; }
  sqlite3 "$template" "PRAGMA wal_checkpoint(TRUNCATE);" > /dev/null
  read -r ORDERS_COUNT FIRST_ORDER < <(sqlite3 -separator ' ' "$template" \
    "SELECT count(*), min(seq) FROM orders" 2>/dev/null || sqlite3 -separator ' ' "$template" "SELECT count(*), 1 FROM orders")
  [ "${ORDERS_COUNT:-0}" -ge 1 ] || die "no orders in the database"
  log "ours: $ORDERS_COUNT orders, $(sqlite3 "$template" 'SELECT count(*) FROM events') events"
  if [ "$use_pg" = 1 ]; then
    log "ours: starting a PostgreSQL cluster (bench/pg.sh)"
    bench_pg_start > "$out/pg-start.log" 2>&1 || { cat "$out/pg-start.log" >&2; die "PostgreSQL did not start"; }
    bench_pg_describe > "$out/pg-settings.txt"
    log "ours: $(cat "$out/pg-settings.txt")"
    bench_pg_template copy_to_pg > "$out/pg-seed.log" 2>&1 || { cat "$out/pg-seed.log" >&2; die "making the PostgreSQL template failed"; }
    local got; got=$(pg_sql "$(pg_url "$BENCH_PG_TEMPLATE")" "SELECT count(*) || ' ' || min(seq) FROM orders")
    [ "$got" = "$ORDERS_COUNT $FIRST_ORDER" ] || die "the PostgreSQL template holds '$got' (count, first), not '$ORDERS_COUNT $FIRST_ORDER'"
    log "ours: PostgreSQL template with the same $ORDERS_COUNT orders"
  fi
}
copy_to_pg() { bench_pg_copy_sqlite "$1" "$template"; }

# One host of ours: lighttpd and its responder. Sets H_PORT, H_PID (lighttpd),
# H_APP (responder), H_WEB (the lighttpd processes that serve: the one, or the
# workers; comma list).
start_ours_host() { # $1 = dir, $2 = ORDERS_DB, $3 = metrics file (PostgreSQL) or ""
  local dir=$1 db=$2 metrics=$3 port pid
  mkdir -p "$dir/www"
  port=$(free_port) || die "no free port"
  cat > "$dir/lighttpd.conf" <<CONF
# generated by bench/stream.sh (compare conf/lighttpd-orders.conf)
server.modules += ( "mod_fastcgi" )
server.document-root = "$dir/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/lighttpd-error.log"
# two descriptors per stream (client + responder)
server.max-fds = 20000
server.max-connections = 9600
server.listen-backlog = 4096
server.max-keep-alive-requests = 1000000
$([ "$LIGHTTPD_WORKERS" -gt 1 ] && echo "server.max-worker = $LIGHTTPD_WORKERS")
fastcgi.server = ( "/api/v1/" => ( (
  "socket" => "$dir/orders.sock",
  "bin-path" => "$ORDERS_FCGI",
  "bin-environment" => ( "ORDERS_DB" => "$db", "ORDERS_MAX_STREAMS" => "12000"${metrics:+, \"ORDERS_METRICS_FILE\" => \"$metrics\"} ),
  "check-local" => "disable",
  "listen-backlog" => 4096,
  "max-procs" => 1
) ) )
\$HTTP["url"] =^ "/api/v1/stream/" {
  server.stream-response-body = 2
}
CONF
  "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" > "$dir/check.log" 2>&1 \
    || { cat "$dir/check.log" >&2; die "lighttpd rejects the generated config"; }
  sed -e "s|$tmp|<tmp>|g" -e "s|$root/|<repo>/|g" "$dir/lighttpd.conf" > "$out/ours-lighttpd.conf"
  # its own session: lighttpd with server.max-worker passes a TERM on to its
  # whole process group, which would otherwise be this script
  setsid "$LIGHTTPD" -D -f "$dir/lighttpd.conf" > "$dir/lighttpd.out" 2>&1 &
  pid=$!
  started+=("$pid")
  if ! wait_url "http://127.0.0.1:$port/api/v1/health" "$pid"; then
    cat "$dir/lighttpd.out" "$dir/lighttpd-error.log" >&2 2>/dev/null || true
    die "lighttpd + responder did not answer /api/v1/health on port $port"
  fi
  local kids k app="" web=""
  for i in $(seq 50); do
    kids=$(children_of "$pid")
    [ "$(echo "$kids" | wc -w)" -ge "$LIGHTTPD_WORKERS" ] && break
    sleep 0.1
  done
  for k in $kids; do
    if [ "$(cat "/proc/$k/comm" 2>/dev/null)" = lighttpd ]; then web+=${web:+,}$k; else app+=${app:+ }$k; fi
  done
  [ "$(echo "$app" | wc -w)" = 1 ] || die "expected one responder under lighttpd, found '$app'"
  [ "$LIGHTTPD_WORKERS" -gt 1 ] || web=$pid
  H_APP=$app H_WEB=$web H_PORT=$port H_PID=$pid
}

# Sets SRV_PORT (comma list: one port per host), SRV_PID (lighttpd, one per
# host), SRV_APP (responders, one per host), SRV_WEB (comma list), SRV_DIRS.
# SQLite: a copy of the template; PostgreSQL: a new database made from the
# template, shared by the hosts.
db_seq=0
start_ours() {      # $1 = tag
  local dir=$tmp/$1 db metrics="" h hdir
  mkdir -p "$dir"
  if [ "$use_pg" = 1 ]; then
    db_seq=$((db_seq + 1))
    db=$(bench_pg_db "run$db_seq") || die "cannot create the database of $1"
  else
    cp "$template" "$dir/orders.db"
    db=$dir/orders.db
  fi
  SRV_PORT="" SRV_PID="" SRV_APP="" SRV_WEB="" SRV_DIRS=""
  for h in $(seq "$BENCH_HOSTS"); do
    hdir=$dir; [ "$BENCH_HOSTS" -gt 1 ] && hdir=$dir/host$h
    [ "$use_pg" = 1 ] && metrics=$hdir/orders.metrics
    start_ours_host "$hdir" "$db" "$metrics"
    SRV_PORT+=${SRV_PORT:+,}$H_PORT SRV_PID+=${SRV_PID:+ }$H_PID SRV_APP+=${SRV_APP:+ }$H_APP
    SRV_WEB+=${SRV_WEB:+,}$H_WEB SRV_DIRS+=${SRV_DIRS:+ }$hdir
  done
}

# Sets SRV_PORT, SRV_PID (nginx master), SRV_APP (workers, comma list), SRV_DIR.
start_nchan() {     # $1 = tag
  local dir=$tmp/$1 port pid load user i
  mkdir -p "$dir"
  port=$(free_port) || die "no free port"
  if [ -f "$NCHAN_MODULE" ]; then load="load_module $NCHAN_MODULE;"; else load="# nchan built in"; fi
  if [ "$(id -u)" = 0 ]; then user="user root;"; else user="# runs as $(id -un)"; fi
  sed -e "s|@LOAD_MODULE@|$load|" -e "s|@USER@|$user|" -e "s|@WORKERS@|$NCHAN_WORKERS|" \
      -e "s|@TMP@|$dir|g" -e "s|@PORT@|$port|" "$here/nchan.conf.in" > "$dir/nginx.conf"
  "$NGINX" -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" > "$dir/check.log" 2>&1 \
    || { cat "$dir/check.log" >&2; die "nginx rejects the generated config"; }
  sed -e "s|$tmp/[^/ ;]*|<tmp>|g" "$dir/nginx.conf" > "$out/nchan-nginx.conf"
  setsid "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" > "$dir/nginx.out" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_url "http://127.0.0.1:$port/pub?id=probe" "$pid" '[1-5]??' \
    || { cat "$dir/nginx.out" "$dir/nginx-error.log" >&2 2>/dev/null || true; die "nginx did not come up on port $port"; }
  for i in $(seq 50); do SRV_APP=$(children_of "$pid"); [ -n "$SRV_APP" ] && break; sleep 0.1; done
  SRV_APP=$(echo "$SRV_APP" | tr ' ' ',')
  SRV_PORT=$port SRV_PID=$pid SRV_DIR=$dir SRV_DIRS=$dir
}

# ---------------------------------------------------------------- one run
rows_tsv=$out/rows.tsv
printf 'server\tn\trate\tevents\tresult\n' > "$rows_tsv"

# One measured run, with its files under $out/<tag>.*; sets RUN_RESULT.
run_attempt() {     # $1 = server, $2 = N, $3 = rate, $4 = events, $5 = row number
  local s=$1 n=$2 r=$3 m=$4 k=$5 tag file args rc=0
  tag=$s-n$n-r$r
  file=$out/$tag.txt
  wait_quiet
  case $s in
    ours)
      start_ours "$tag"
      log "ours ($BENCH_BACKEND, $BENCH_HOSTS host(s)): lighttpd pid $SRV_PID (serving: $SRV_WEB), responder pid $SRV_APP, port $SRV_PORT; $n streams x $m events at $r/s"
      args=(-P orders -L ours -W "app=${SRV_APP// /,}" -W "web=$SRV_WEB"
            --orders "$ORDERS_COUNT" --first-order "$FIRST_ORDER")
      # every process of the PostgreSQL cluster, those that end meanwhile included
      [ "$use_pg" = 1 ] && args+=(-W "db=tree:$PG_PID") ;;
    nchan)
      start_nchan "$tag"
      log "nchan: nginx master $SRV_PID, workers $SRV_APP, port $SRV_PORT; $n streams x $m events at $r/s"
      args=(-P nchan -L nchan -S "/sub/bench$k" -U "/pub?id=bench$k" -W "web=$SRV_APP") ;;
  esac
  {
    echo "# $(date -u +%FT%TZ) load average before: $(cut -d' ' -f1-3 /proc/loadavg); CPU busy before the server started: $QUIET %"
    echo "\$ sse-load -p $SRV_PORT -n $n -m $m -r $r -t $DRAIN_S -c $PUB_CONNS --idle-seconds $IDLE_S --connect-rate $CONNECT_RATE ${args[*]}"
  } > "$file"
  "$SSE_LOAD" -p "$SRV_PORT" -n "$n" -m "$m" -r "$r" -t "$DRAIN_S" -c "$PUB_CONNS" \
      --idle-seconds "$IDLE_S" --connect-rate "$CONNECT_RATE" --events-out "$out/$tag.events.tsv" \
      "${args[@]}" >> "$file" 2> "$file.stderr" &
  local gen=$! probe_url probe="-"
  # While the streams are idle: does the server still accept a new connection?
  # (sse-load's publishers connected before the streams; a real client did not.)
  if [ "$s" = ours ]; then probe_url=http://127.0.0.1:${SRV_PORT%%,*}/api/v1/health
  else probe_url="http://127.0.0.1:$SRV_PORT/pub?id=bench$k"; fi
  while kill -0 "$gen" 2>/dev/null && ! grep -q '^READY' "$file.stderr" 2>/dev/null; do sleep 0.1; done
  if kill -0 "$gen" 2>/dev/null; then
    probe=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$probe_url" 2>/dev/null || true)
    [ -n "$probe" ] || probe=000
  fi
  wait "$gen" || rc=$?
  echo "# new connection while the streams were idle: HTTP $probe (000 = no answer within 2 s)" >> "$file"
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$file"
  local result extra=" probe_http=$probe busy_before_pct=$QUIET"
  result=$(grep '^RESULT ' "$file" | tail -1 | cut -d' ' -f2- || true)
  [ -n "$result" ] || { log "$tag: sse-load gave no result (exit $rc), see $file.stderr"; result="failed=1 keepup=no reason=generator_failed"; }

  # After the clients closed: did the server free every stream, is it alive?
  if [ "$s" = ours ]; then
    # lighttpd notices a vanished client of an idle stream only when it next
    # writes to it (the next ping, ORDERS_PING_S = 15 s): wait up to 20 s.
    local now_app health streams="?" streams_1s="" t0 freed="" i
    now_app=""
    local kid lpid port sum
    for lpid in $SRV_PID; do
      for kid in $(children_of "$lpid"); do
        [ "$(cat "/proc/$kid/comm" 2>/dev/null)" = lighttpd ] || now_app+=${now_app:+ }$kid
      done
    done
    [ "$now_app" = "$SRV_APP" ] || extra+=" responder_pids_changed=${SRV_APP// /,}->${now_app:-none}"
    t0=$(date +%s.%N)
    for i in $(seq 200); do
      # every host's streams, summed (unreachable: empty)
      sum=0
      for port in ${SRV_PORT//,/ }; do
        health=$(curl -s --max-time 2 "http://127.0.0.1:$port/api/v1/health" || true)
        streams=$(echo "$health" | sed -n 's/.*"streams":\([0-9]*\).*/\1/p')
        [ -n "$streams" ] && [ -n "$sum" ] && sum=$((sum + streams)) || sum=""
      done
      streams=$sum
      [ "$i" = 10 ] && streams_1s=${streams:-unreachable}
      if [ "$streams" = 0 ]; then freed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'); break; fi
      sleep 0.1
    done
    extra+=" streams_after_1s=${streams_1s:-0} streams_freed_s=${freed:-never} app_rss_after_close_kb=$(rss_kb "${now_app:-0}") web_rss_after_close_kb=$(for kid in ${SRV_WEB//,/ }; do rss_kb "$kid"; done | awk '{s += $1} END {print s + 0}')"
    echo "# after close: streams still open after 1 s: ${streams_1s:-0}; all freed after: ${freed:-not within 20 s} s; health $health" >> "$file"
    for kid in $SRV_DIRS; do
      grep -v -e 'server started' -e 'server stopped' "$kid/lighttpd-error.log" 2>/dev/null | tail -20 || true
    done > "$out/$tag.server-errors.log"
  else
    kill -0 "$SRV_PID" 2>/dev/null || extra+=" nginx_gone=1"
    grep -v -e '\[notice\]' -e '\[info\]' "$SRV_DIR/nginx-error.log" 2>/dev/null | tail -20 > "$out/$tag.server-errors.log" || true
  fi
  [ -s "$out/$tag.server-errors.log" ] || rm -f "$out/$tag.server-errors.log"
  for k in $SRV_PID; do stop_tree "$k"; done
  RUN_RESULT="$result$extra"
  local kv; kv=$(echo "$result" | tr ' ' '\n')
  log "$tag: $(echo "$kv" | awk -F= '$1=="delivered"{d=$2} $1=="expected"{e=$2} $1=="lat_p99_ms"{p=$2} $1=="keepup"{k=$2} $1=="foreign_cpu_s"{f=$2} END{printf "delivered %s/%s, p99 %s ms, keeps up: %s; CPU of other processes meanwhile %s s", d, e, p, k, f}')"
}

# A run during which other processes used more than 10 % of the wall time in
# CPU is repeated (up to RETRIES times); the earlier attempts are kept as
# <tag>.busy<K>.* and the table says so.
run_one() {         # $1 = server, $2 = N, $3 = rate, $4 = events, $5 = row number
  local tag=$1-n$2-r$3 attempt=0 busy f
  while :; do
    run_attempt "$@"
    busy=$(echo "$RUN_RESULT" | tr ' ' '\n' | awk -F= '$1=="window_s"{w=$2} $1=="foreign_cpu_s"{f=$2} END{print (w > 0 && f > 0.1 * w) ? 1 : 0}')
    [ "$busy" = 1 ] && [ "$attempt" -lt "$RETRIES" ] || break
    attempt=$((attempt + 1))
    log "$tag: another load ran at the same time; repeating (attempt $((attempt + 1)) of $((RETRIES + 1)))"
    for f in "$out/$tag".*; do
      case $f in *.busy[0-9]*) continue ;; esac
      mv "$f" "${f/$tag./$tag.busy$attempt.}"
    done
  done
  printf '%s\t%s\t%s\t%s\t%s attempts=%s\n' "$1" "$2" "$3" "$4" "$RUN_RESULT" "$((attempt + 1))" >> "$rows_tsv"
}

# ---------------------------------------------------------------- environment
machine_info() {
  echo "date: $(date -u +%FT%TZ)"
  echo "machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)), $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
  echo "lighttpd: $("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{print $1}'), server.max-worker $LIGHTTPD_WORKERS"
  if [[ " $STREAM_SERVERS " == *" nchan "* ]]; then
    echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?'), worker_processes $NCHAN_WORKERS"
  fi
  echo "sqlite3: $(sqlite3 --version 2>/dev/null | awk '{print $1}')"
  echo "ours: backend $BENCH_BACKEND, $BENCH_HOSTS host(s)$([ "$BENCH_HOSTS" -gt 1 ] && echo ": two lighttpd + responder sets on two ports over one PostgreSQL database, sharing this machine's cores; streams split half-half, writes alternate")"
  [ "$use_pg" = 1 ] && echo "postgresql: $(cat "$out/pg-settings.txt"); one throwaway cluster on 127.0.0.1, a new database per run, copied from a template; db CPU = every process of the cluster"
  echo "rows (N:rate:events): $ROWS; idle ${IDLE_S} s; drain timeout ${DRAIN_S} s; $PUB_CONNS publisher connections; connect rate $CONNECT_RATE/s"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---------------------------------------------------------------- table
fmt_table() {
  local ours_label="ours (lighttpd + responder" hs=""
  [ "$LIGHTTPD_WORKERS" -gt 1 ] && ours_label="ours (lighttpd x $LIGHTTPD_WORKERS workers + responder"
  [ "$BENCH_HOSTS" -gt 1 ] && hs=s
  ours_label+=", $BENCH_BACKEND, $BENCH_HOSTS host$hs)"
  awk -F'\t' -v ours_label="$ours_label" '
    NR == 1 { next }
    {
      delete v
      n = split($5, kv, " ")
      for (i = 1; i <= n; i++) { j = index(kv[i], "="); v[substr(kv[i], 1, j - 1)] = substr(kv[i], j + 1) }
      srv = ($1 == "ours") ? ours_label : "Nchan (nginx)"
      deliv = sprintf("%s/%s", v["delivered"], v["expected"])
      lat = sprintf("%s / %s / %s / %s", v["lat_p50_ms"], v["lat_p90_ms"], v["lat_p99_ms"], v["lat_max_ms"])
      if ($1 == "ours") {
        cpu = sprintf("%s + %s", v["app_cpu_s"], v["web_cpu_s"])
        if ("db_cpu_s" in v) cpu = cpu sprintf(" + db %s", v["db_cpu_s"])
        rss = sprintf("%.1f + %.1f", v["app_rss_max_kb"] / 1024, v["web_rss_max_kb"] / 1024)
        idle = sprintf("%.2f (+ %.2f)", v["app_kib_per_idle_stream"], v["web_kib_per_idle_stream"])
      } else {
        cpu = sprintf("%s", v["web_cpu_s"])
        rss = sprintf("%.1f", v["web_rss_max_kb"] / 1024)
        idle = sprintf("%.2f", v["web_kib_per_idle_stream"])
      }
      keep = (v["keepup"] == "yes") ? "yes" : "**cannot keep up** (" v["reason"] ")"
      if (v["keepup"] == "yes" && v["reason"] != "-" && v["reason"] != "") keep = "yes (" v["reason"] ")"
      if (v["failed"] + 0 > 0) keep = keep ", " v["failed"] " streams failed"
      if (v["responder_pids_changed"] != "") keep = keep ", RESPONDER RESTARTED " v["responder_pids_changed"]
      if (v["streams_freed_s"] == "never") keep = keep ", STREAMS NOT FREED 20 s after close"
      if (v["probe_http"] == "000") keep = keep ", server refused new connections while holding the streams"
      if (v["window_s"] + 0 > 0 && v["foreign_cpu_s"] + 0 > 0.1 * v["window_s"]) keep = keep sprintf(", other processes used %.1f CPU s during the run", v["foreign_cpu_s"])
      if (v["attempts"] + 0 > 1) keep = keep sprintf(" (attempt %d)", v["attempts"])
      printf "| %s | %d | %s/s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", srv, $2, $3, deliv, v["dups"], v["ooo"], lat, v["connect_p99_ms"], cpu, rss, idle, keep
    }' "$rows_tsv"
}

aims() {            # per row: every event delivered, p99 <= 1.5 x Nchan p99, < 16 KiB per idle stream
  awk -F'\t' '
    NR == 1 { next }
    {
      delete v
      n = split($5, kv, " ")
      for (i = 1; i <= n; i++) { j = index(kv[i], "="); v[substr(kv[i], 1, j - 1)] = substr(kv[i], j + 1) }
      key = $2 ":" $3
      if (!(key in seen)) { seen[key] = 1; order[++rows] = key; N[key] = $2; R[key] = $3 }
      p99[$1, key] = v["lat_p99_ms"] + 0; ok[$1, key] = (v["delivered"] + 0 == v["expected"] + 0 && v["dups"] + 0 == 0 && v["ooo"] + 0 == 0)
      kib[$1, key] = (($1 == "ours") ? v["app_kib_per_idle_stream"] : v["web_kib_per_idle_stream"]) + 0
      has[$1, key] = 1
    }
    END {
      for (i = 1; i <= rows; i++) {
        k = order[i]
        if (!has["ours", k]) continue
        line = sprintf("| %d x %s/s | %s | ", N[k], R[k], ok["ours", k] ? "yes" : "**no**")
        if (has["nchan", k] && p99["nchan", k] > 0) {
          ratio = p99["ours", k] / p99["nchan", k]
          line = line sprintf("%s ms vs %s ms = %.2fx %s | ", p99["ours", k], p99["nchan", k], ratio, ratio <= 1.5 ? "(met)" : "**(missed)**")
        } else line = line "(no Nchan run) | "
        line = line sprintf("%.2f KiB %s |", kib["ours", k], kib["ours", k] < 16 ? "(met)" : "**(missed)**")
        print line
      }
    }' "$rows_tsv"
}

# ---------------------------------------------------------------- main
have=()
for s in $STREAM_SERVERS; do
  case $s in
    ours)
      if [ ! -x "$ORDERS_FCGI" ]; then log "ours skipped: $ORDERS_FCGI not built (run make)"; continue; fi
      [ -x "$LIGHTTPD" ] || { log "ours skipped: lighttpd not found (Debian package: lighttpd)"; continue; }
      command -v sqlite3 >/dev/null || { log "ours skipped: sqlite3 not found"; continue; }
      make_db ;;
    nchan)
      if [ ! -x "$NGINX" ]; then log "nchan skipped: nginx not found (apt-get install nginx-light libnginx-mod-nchan)"; continue; fi
      if [ ! -f "$NCHAN_MODULE" ] && ! "$NGINX" -V 2>&1 | grep -q nchan; then
        log "nchan skipped: no Nchan module at $NCHAN_MODULE (apt-get install libnginx-mod-nchan)"; continue
      fi ;;
  esac
  have+=("$s")
done
[ ${#have[@]} -gt 0 ] || die "nothing to benchmark"

log "results: $out"
machine_info | tee "$out/env.txt" >&2
k=0
for row in $ROWS; do
  k=$((k + 1))
  IFS=: read -r n r m <<< "$row"
  for s in "${have[@]}"; do run_one "$s" "$n" "$r" "$m" "$k"; done
done

{
  echo "## Stream benchmark, $(date -u +%F)"
  echo
  sed 's/^/    /' "$out/env.txt"
  echo
  echo "| server | streams | rate | delivered/expected | dups | out of order | latency p50 / p90 / p99 / max (ms) | connect p99 (ms) | CPU s (responder + lighttpd (+ db)) | RSS max MiB | KiB per idle stream (responder (+ lighttpd)) | keeps up |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"
  fmt_table
  if [[ " ${have[*]} " == *" ours "* ]]; then
    echo
    echo "Aims (ours): every event delivered; p99 within 1.5x of Nchan's in the same run; under 16 KiB of responder memory per idle stream."
    echo
    echo "| row | all delivered | p99 ours vs Nchan | responder KiB per idle stream |"
    echo "| --- | --- | --- | --- |"
    aims
  fi
} > "$out/summary.md"
echo >&2
cat "$out/summary.md"
echo
echo "(details: $out)"
