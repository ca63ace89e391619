# shellcheck shell=bash
# Helpers shared by bench/delivery.sh and bench/slowloris.sh (sourced, not
# run): a temporary directory the web server's user can use, the responder's
# database, lighttpd on a free port of 127.0.0.1, spawn-fcgi, and stopping
# exactly the processes started here, by PID.
#
# The sourcing script sets BENCH_NAME (for messages and the temp dir) and,
# before calling bench_init, may set ORDERS_FCGI and LIGHTTPD.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

die() { echo "$BENCH_NAME: $*" >&2; exit 2; }
log() { echo "== $(date +%H:%M:%S) $*" >&2; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$root/$1" ;; esac; }

BENCH_PIDS=()       # every process started here; stopped by PID at exit

alive() { # PID: running and not a zombie
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
wait_gone() { # PID SECONDS
  local end=$((SECONDS + $2))
  while alive "$1"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | awk '{print $1}'; }
stop_pid() { # PID: TERM, 6 s, KILL
  alive "$1" || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait_gone "$1" 6 || kill -KILL "$1" 2>/dev/null || true
}
# our_job PID: a background job of this shell that still runs. Only such a
# PID is safe to signal: once bash has reaped a job, its PID may be reused.
our_job() { [[ " $(jobs -pr | tr '\n' ' ') " == *" $1 "* ]]; }
stop_tree() { # PID: our job, then the children it had (lighttpd's responder)
  local kids k
  our_job "$1" || return 0
  kids=$(children_of "$1")
  stop_pid "$1"
  for k in $kids; do stop_pid "$k"; done
}
bench_cleanup() {
  set +e
  local p
  for p in "${BENCH_PIDS[@]}"; do stop_tree "$p"; done
  wait 2>/dev/null
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "temporary files kept in $T" >&2; else rm -rf "$T"; fi
}

# free_port: a TCP port of 127.0.0.1 nobody listens on.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_init: checks the tools, makes the temp dir $T (readable by the run
# user: www-data when root), sets BIN (the responder, copied into $T when the
# run user cannot execute it where it is), RUN_USER/RUN_GROUP, as_run, give.
bench_init() {
  ORDERS_FCGI=$(abspath "${ORDERS_FCGI:-src/orders.fcgi}")
  LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
  [ -x "$ORDERS_FCGI" ] || die "responder not found: $ORDERS_FCGI (make, or set ORDERS_FCGI)"
  local c
  for c in python3 sqlite3 curl "$LIGHTTPD" "$@"; do
    command -v "$c" >/dev/null || die "$c not found"
  done
  T=$(mktemp -d "${TMPDIR:-/tmp}/orders-$BENCH_NAME.XXXXXX")
  chmod 0755 "$T"
  mkdir -p "$T/htdocs" "$T/uploads"
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ "$(id -u)" = 0 ]; then
    RUN_USER=$(id -u www-data >/dev/null 2>&1 && echo www-data || echo nobody)
    RUN_GROUP=$(id -gn "$RUN_USER")
    as_run() { runuser -u "$RUN_USER" -- "$@"; }
  else
    RUN_USER=; RUN_GROUP=
    as_run() { "$@"; }
  fi
  BIN=$ORDERS_FCGI
  if ! as_run test -x "$BIN" 2>/dev/null; then
    mkdir -p "$T/bin" && cp "$BIN" "$T/bin/orders.fcgi" && chmod 0755 "$T/bin" "$T/bin/orders.fcgi"
    BIN=$T/bin/orders.fcgi
  fi
}
give() { [ -z "$RUN_USER" ] || chown -R "$RUN_USER:$RUN_GROUP" "$T"; }

# bench_db FILE ORDERS: a migrated database with ORDERS orders 'Bench <n>'.
bench_db() {
  give
  as_run env ORDERS_DB="$1" "$BIN" --migrate >"$T/migrate.log" 2>&1 || die "migrating $1 failed: $(cat "$T/migrate.log")"
  as_run sqlite3 -cmd '.timeout 10000' "$1" \
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
     INSERT INTO orders (customer, items)
     SELECT 'Bench ' || i, '[{\"sku\":\"BN-1\",\"name\":\"Bench\",\"qty\":1,\"unitPriceCents\":100}]' FROM n" ||
    die "seeding $1 failed"
}

# spawn_responder SOCKET LOG VAR=VALUE...: orders.fcgi under spawn-fcgi on a
# unix socket, as the run user; sets SPAWN_PID (spawn-fcgi -n execs it).
spawn_responder() {
  local sock=$1 out=$2 own=()
  shift 2
  command -v spawn-fcgi >/dev/null || die "spawn-fcgi not found"
  [ -z "$RUN_USER" ] || own=(-u "$RUN_USER" -g "$RUN_GROUP" -U "$RUN_USER" -G "$RUN_GROUP")
  env -i PATH=/usr/bin:/bin "$@" spawn-fcgi -n -s "$sock" -M 0660 "${own[@]}" -- "$BIN" </dev/null >>"$out" 2>&1 &
  SPAWN_PID=$!
  BENCH_PIDS+=("$SPAWN_PID")
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; alive "$SPAWN_PID" || break; sleep 0.05; done
  [ -S "$sock" ] || die "spawn-fcgi did not start a responder on $sock: $(cat "$out")"
}

# start_lighttpd NAME PORT CONF_LINES: lighttpd on 127.0.0.1:PORT with the
# temp dir's document root and logs, running as the run user, plus
# CONF_LINES (its fastcgi.server and the like); $T/NAME.conf. Sets
# LIGHTTPD_PID and waits until every URL given in HEALTH_URLS answers 200.
start_lighttpd() {
  local name=$1 port=$2 lines=$3 conf=$T/$1.conf user_lines="" u ok
  [ -z "$RUN_USER" ] || user_lines="server.username = \"$RUN_USER\"
server.groupname = \"$RUN_GROUP\""
  cat >"$conf" <<EOF
server.document-root = "$T/htdocs"
server.bind          = "127.0.0.1"
server.port          = $port
server.errorlog      = "$T/$name-error.log"
server.upload-dirs   = ( "$T/uploads" )
$user_lines
server.modules += ( "mod_fastcgi" )
$lines
EOF
  give
  "$LIGHTTPD" -tt -f "$conf" >"$T/$name.out" 2>&1 || die "lighttpd config $conf: $(cat "$T/$name.out")"
  "$LIGHTTPD" -D -f "$conf" </dev/null >>"$T/$name.out" 2>&1 &
  LIGHTTPD_PID=$!
  BENCH_PIDS+=("$LIGHTTPD_PID")
  for u in ${HEALTH_URLS:-}; do
    ok=0
    for _ in $(seq 1 100); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$u")" = 200 ] && { ok=1; break; }
      alive "$LIGHTTPD_PID" || break
      sleep 0.1
    done
    [ "$ok" = 1 ] || die "$u does not answer: $(tail -n 5 "$T/$name-error.log" "$T/$name.out" 2>/dev/null)"
  done
}

# lighttpd_responder: the orders.fcgi child of LIGHTTPD_PID (bin-path).
lighttpd_responder() {
  local c
  for c in $(children_of "$LIGHTTPD_PID"); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = orders.fcgi ] && alive "$c" && { echo "$c"; return 0; }
  done
  return 1
}

# machine: one line describing the machine and the moment.
machine() {
  local model
  model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
  printf '%s CPUs (nproc), %s; %s; Linux %s; load average %s\n' "$(nproc)" "${model:-unknown CPU}" \
    "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
