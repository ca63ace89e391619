#!/usr/bin/env bash
# A bulk edit with streams open (SPEC section 4: "however large the burst
# ... the responder's memory bounded per stream"): STREAMS streams read
# while one sqlite3 UPDATE changes ORDERS orders; prints how long the
# streams took to get every event, and the responder's RSS before and its
# peak after. A benchmark: it prints figures; tests/burst.bats asserts the
# bound at 200 streams and 10,000 orders.
#
# What runs, on 127.0.0.1, a free port, one temp directory: lighttpd with
# the responder (bin-path), the database seeded with ORDERS orders, and
# tests/lib/sse_burst.py holding the streams and checking that each one
# gets exactly the events of the table, in order.
#
# Environment (all optional):
#   ORDERS       orders changed by the bulk edit (default 100000)
#   STREAMS      streams that read (default 20)
#   NOTE_BYTES   random bytes per note, written as hex (default 100)
#   ORDERS_FCGI  responder binary (default src/orders.fcgi)
#   LIGHTTPD     lighttpd binary (default: on PATH, else /usr/sbin/lighttpd)
set -euo pipefail

BENCH_NAME=burst
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

ORDERS=${ORDERS:-100000}
STREAMS=${STREAMS:-20}
NOTE_BYTES=${NOTE_BYTES:-100}
for v in ORDERS STREAMS NOTE_BYTES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number"
done
bench_init
DB=$T/orders.db
log "seeding $ORDERS orders"
bench_db "$DB" "$ORDERS"
PORT=$(free_port)
HEALTH_URLS="http://127.0.0.1:$PORT/api/v1/health" start_lighttpd web "$PORT" "
fastcgi.server = ( \"/api/v1/\" => ((
  \"socket\" => \"$T/orders.sock\", \"bin-path\" => \"$BIN\", \"check-local\" => \"disable\",
  \"max-procs\" => 1, \"bin-environment\" => ( \"ORDERS_DB\" => \"$DB\" ),
)) )
\$HTTP[\"url\"] =^ \"/api/v1/stream/\" { server.stream-response-body = 2 }
server.max-fds = 4096"
rpid=$(lighttpd_responder) || die "no responder under lighttpd"

python3 "$root/tests/lib/sse_burst.py" --port "$PORT" --db "$DB" --ready "$T/ready" \
  --go "$T/go" --streams "$STREAMS" --deadline 900 >"$T/burst.json" 2>"$T/burst.err" &
client=$!
BENCH_PIDS+=("$client")
for _ in $(seq 1 600); do [ -s "$T/ready" ] && break; alive "$client" || break; sleep 0.1; done
[ -s "$T/ready" ] || die "the streams did not connect: $(cat "$T/burst.err")"
rss0=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$rpid/status")
hwm0=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$rpid/status")
log "bulk edit of $ORDERS orders with $STREAMS streams open"
t0=$(date +%s.%N)
as_run sqlite3 -cmd '.timeout 60000' "$DB" \
  "UPDATE orders SET note = 'bulk ' || hex(randomblob($NOTE_BYTES)) WHERE customer LIKE 'Bench %'"
t1=$(date +%s.%N)
as_run sqlite3 "$DB" 'SELECT max(id) FROM events' >"$T/go.tmp" && mv "$T/go.tmp" "$T/go"
rc=0
wait "$client" || rc=$?
hwm1=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$rpid/status")
rss1=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$rpid/status")
anon1=$(awk '$1 == "RssAnon:" {print $2}' "/proc/$rpid/status")
file1=$(awk '$1 == "RssFile:" {print $2}' "/proc/$rpid/status")
echo "machine: $(machine)"
echo "bulk edit: $ORDERS orders, notes of $((2 * NOTE_BYTES + 5)) characters, committed in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"
echo "streams: $(cat "$T/burst.json")"
echo "responder RSS: $rss0 KiB before, peak $hwm1 KiB (peak before: $hwm0 KiB), $rss1 KiB after"
# SQLite reads the file through mmap: its pages count in RSS as RssFile
# (clean, shared, given back under pressure); the service's own memory is RssAnon.
echo "after: RssAnon $anon1 KiB (the service's heap and stacks), RssFile $file1 KiB (the database mapped)"
[ "$rc" -eq 0 ] || die "the streams did not all get every event (exit $rc)"
