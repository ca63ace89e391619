#!/usr/bin/env bash
# Trickled request bodies (slowloris) against one responder, through a front
# end that buffers request bodies and through one that streams them: how
# long a normal GET waits meanwhile. A benchmark: it prints figures, it does
# not pass or fail. See bench/README.md, "Trickled bodies".
#
# The shipped configurations buffer request bodies (lighttpd's default
# server.stream-request-body = 0; mod_fcgid always), so the responder sees a
# request only once its body is complete and a slow client holds none of its
# ORDERS_THREADS worker threads. With server.stream-request-body = 2 the
# responder reads the body as it trickles in, holding a thread for as long:
# more slow clients than threads then hold them all, and a normal request
# waits for one to come free. tests/hostile.bats checks that the responder
# recovers either way; this measures the wait.
#
# For each front (FRONTS) and each number of slow clients (BODIES): a fresh
# lighttpd with its own responder (bin-path) and database; N clients each
# send a POST /api/v1/orders whose head comes at once and whose body (about
# 90 bytes) one byte every INTERVAL s; meanwhile a GET /api/v1/orders?limit=5
# every 0.25 s (tests/lib/hostile.py slowloris: a probe counts as slow over
# 1 s, as failed without an answer within 5 s). Reported: the probes, how
# many were slow or failed, the slowest, the POSTs answered 201, and the
# responder's threads and descriptors before and 2 s after.
#
# Environment (all optional):
#   FRONTS       buffered and/or streamed (default "buffered streamed")
#   BODIES       numbers of slow clients (default "4 8 10 16"; ORDERS_THREADS is 8 by default)
#   INTERVAL     seconds between two bytes of a body (default 0.1)
#   BENCH_THREADS  ORDERS_THREADS of the responder (default: its own default)
#   ORDERS_FCGI  responder binary (default src/orders.fcgi)
#   LIGHTTPD     lighttpd binary (default: on PATH, else /usr/sbin/lighttpd)
#   KEEP_TMP=1   keep the temporary directory
set -euo pipefail

BENCH_NAME=slowloris
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

FRONTS=${FRONTS:-buffered streamed}
BODIES=${BODIES:-4 8 10 16}
INTERVAL=${INTERVAL:-0.1}
for f in $FRONTS; do case $f in buffered|streamed) ;; *) die "FRONTS: unknown '$f'" ;; esac; done
for n in $BODIES; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "BODIES: '$n' is not a positive whole number"; done
[[ $INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "INTERVAL must be a number of seconds"
HOSTILE_PY=$root/tests/lib/hostile.py
[ -r "$HOSTILE_PY" ] || die "$HOSTILE_PY not found"
bench_init python3

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

log "temp dir $T; responder $BIN; fronts: $FRONTS; slow clients: $BODIES; a byte every $INTERVAL s"
echo "Machine: $(machine)"
echo "lighttpd: $("$LIGHTTPD" -v 2>&1 | head -n 1); ORDERS_THREADS=${BENCH_THREADS:-default}"
echo
echo "| front (server.stream-request-body) | slow clients | run s | probes | slow (> 1 s) or failed | slowest probe ms | POSTs answered 201 | responder threads, fds before → after |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
k=0
for front in $FRONTS; do
  for n in $BODIES; do
    k=$((k + 1))
    db=$T/run$k.db
    bench_db "$db" 5
    env_lines="\"ORDERS_DB\" => \"$db\""
    [ -z "${BENCH_THREADS:-}" ] || env_lines+=", \"ORDERS_THREADS\" => \"$BENCH_THREADS\""
    srb=0
    [ "$front" = buffered ] || srb=2
    port=$(free_port)
    HEALTH_URLS="http://127.0.0.1:$port/api/v1/health" start_lighttpd "run$k" "$port" "server.stream-request-body = $srb
server.max-read-idle = 60
fastcgi.server = ( \"/api/v1/\" => (( \"socket\" => \"$T/run$k.sock\", \"bin-path\" => \"$BIN\",
                   \"bin-environment\" => ( $env_lines ),
                   \"check-local\" => \"disable\", \"max-procs\" => 1 )) )"
    rpid=$(lighttpd_responder) || die "no responder under lighttpd"
    sleep 0.5
    before="$(threads "$rpid"), $(fds "$rpid")"
    res=$(python3 "$HOSTILE_PY" slowloris --port "$port" --bodies "$n" --headers 0 --interval "$INTERVAL" \
      --seconds 60 --probe-path '/api/v1/orders?limit=5' 2>"$T/run$k.err") || true
    sleep 2
    after="$(threads "$rpid"), $(fds "$rpid")"
    echo "$res" >"$T/run$k.json"
    python3 - "$front" "$srb" "$n" "$before" "$after" "$T/run$k.json" <<'PYEOF' || echo "| $front ($srb) | $n | no result: $(head -c 300 "$T/run$k.err") | | | | | |"
import json, sys
front, srb, n, before, after, path = sys.argv[1:7]
r = json.load(open(path))
probe_fails = [f for f in r["failures"] if f.startswith("probe")]
slow = str(len(probe_fails)) + ("+" if len(r["failures"]) >= 30 else "")   # hostile.py keeps 30 failures
posts = sum(1 for k, v in r["statuses"].items() if k.startswith("body") and v == 201)
print("| %s (%s) | %s | %.1f | %d | %s | %d | %s of %s | %s → %s |" % (
    front, srb, n, r["seconds"], r["probes"], slow, r["probe_max_ms"], posts, n, before, after))
PYEOF
    stop_tree "$LIGHTTPD_PID"
  done
done
