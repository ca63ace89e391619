# shellcheck shell=bash
# Cases of tests/burst.bats: streams through bursts that are larger than
# anything a stream may queue (SPEC section 4: "however large the burst").
#
#   load 'lib/common'
#   load 'lib/stream'
#   load 'lib/burst'
#
# Each case starts an instance of its own (stream_aux_start), so that its
# settings and the responder's memory figures are its own.

BURST_PY=$ORDERS_TESTS_LIB/sse_burst.py

# proc_kib PID FIELD: a VmRSS/VmHWM-style field of /proc/PID/status, in KiB.
proc_kib() {
	awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"
}

# wait_file FILE SECONDS PID: until FILE exists, while PID runs.
wait_file() {
	local deadline=$(($(now_ms) + $2 * 1000))
	until [[ -s $1 ]]; do
		child_running "$3" || return 1
		(($(now_ms) < deadline)) || return 1
		sleep 0.1
	done
}

# The responder's memory may grow by this much over a bulk edit: a fixed
# shared window (8 MiB of frames) and a fixed budget per stream (64 KiB of
# its own bytes), far below what the burst would cost copied per stream
# (10,000 events of about 500 bytes, 5 MB, times 200).
BURST_RSS_LIMIT_KIB=$((64 * 1024))

# 200 streams read through a bulk edit of 10,000 orders made with sqlite3,
# while one more stream reads nothing: every reading stream stays open and
# gets the 10,000 events in order; the one that reads nothing is closed
# after ORDERS_WRITE_TIMEOUT_S; the responder's peak RSS grows by less than
# BURST_RSS_LIMIT_KIB.
bcase_bulk_edit() {
	# ASan keeps freed memory in quarantine (256 MiB by default): cap it so
	# that the figure is the service's, not the sanitizer's.
	[[ -z ${ASAN_OPTIONS:-} ]] || export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4"
	stream_aux_start ORDERS_WRITE_TIMEOUT_S=5
	local d=$BATS_TEST_TMPDIR rpid pid hwm0 hwm1 rc=0 head
	sql_orders 10000 Bulk
	rpid=$(responder_pid) || fail "no responder under lighttpd"
	python3 "$BURST_PY" --port "$ORDERS_PORT" --db "$ORDERS_DBFILE" --ready "$d/ready" \
		--go "$d/go" --streams 200 --stalled 1 --deadline 240 \
		</dev/null >"$d/burst.json" 2>"$d/burst.err" 3>&- &
	pid=$!
	bg_track "$pid"
	wait_file "$d/ready" 60 "$pid" || fail "the streams did not connect: $(cat "$d/burst.json" "$d/burst.err")"
	wait_health_streams 201 10
	hwm0=$(proc_kib "$rpid" VmHWM)
	# notes of 300 characters: the burst (about 5.5 MB a stream) is more
	# than the buffers between the responder and a client that reads
	# nothing (lighttpd's send buffer grows to 4 MB) can hold
	db "UPDATE orders SET note = 'bulk edit ' || hex(randomblob(145)) WHERE customer LIKE 'Bulk %'"
	head=$(db_head)
	echo "$head" >"$d/go.tmp" && mv "$d/go.tmp" "$d/go"
	wait "$pid" || rc=$?
	hwm1=$(proc_kib "$rpid" VmHWM)
	echo "# bulk edit: $(cat "$d/burst.json"); responder peak RSS $hwm0 -> $hwm1 KiB" >&3
	((rc == 0)) || fail "burst client: exit $rc: $(cat "$d/burst.json" "$d/burst.err")"
	jq -e '.events == 10000 and .stalled_closed == 1' "$d/burst.json" >/dev/null ||
		fail "expected 10000 events and the stalled stream closed: $(cat "$d/burst.json")"
	((hwm1 - hwm0 < BURST_RSS_LIMIT_KIB)) ||
		fail "the responder's peak RSS grew by $((hwm1 - hwm0)) KiB (limit $BURST_RSS_LIMIT_KIB)"
}

# big_event_sql BYTES: an event of about BYTES inserted by hand: its patch
# is a JSON string of BYTES hex digits.
big_event_sql() {
	printf "INSERT INTO events (type, order_id, patch, ts) VALUES ('order.updated', 'ord_00001', json_quote(hex(randomblob(%d))), 1768557600000)" $(($1 / 2))
}

# A 2 MiB event, far over a stream's budget, reaches a live stream, a
# replaying one and a gzip one, whole, with the events before and after it.
bcase_big_event() {
	stream_aux_start
	local d h big after n
	d=$(stream_dir)
	create_order
	h=$(db_head)
	sse_open live /api/v1/stream/events
	sse_open gz /api/v1/stream/events --compressed
	sse_wait_connected live
	sse_wait_connected gz
	db "$(big_event_sql $((2 * 1024 * 1024)))"
	big=$(db_head)
	note_change "$OID" 'after the big one'
	after=$EVENT_ID
	sse_open replay /api/v1/stream/events -H "Last-Event-ID: $h"
	for n in live gz replay; do
		sse_wait_id "$n" "$after" 20
		sse_close "$n"
		sse_strip_pings "$n" "$d/$n.got" 0
	done
	sse_db_text "id IN ($big, $after)" >"$d/events.expected"
	for n in live gz replay; do
		# the text after `connected`: the two events, nothing else
		sed -n '/^event: connected$/,$p' "$d/$n.got" | tail -n +4 >"$d/$n.events"
		assert_same_file "$d/events.expected" "$d/$n.events" "stream $n"
	done
}

# A replay slower than the pruner: the stream's position falls below what
# is retained while it replays. It must say so (reset history_truncated),
# never skip the pruned events silently.
bcase_prune_during_replay() {
	stream_aux_start ORDERS_RETAIN_EVENTS=500 ORDERS_WRITE_TIMEOUT_S=120
	local d h rc=0
	d=$BATS_TEST_TMPDIR
	# 400 events of 16 KB to replay: 6.4 MB, more than the buffers between
	# the responder and a client that pauses (lighttpd's send buffer grows
	# to 4 MB) hold
	sql_orders 400 Slow
	db "UPDATE orders SET note = hex(randomblob(8000)) WHERE customer LIKE 'Slow %'"
	h=$(db "SELECT max(id) - 400 FROM events")
	local deadline=$(($(now_ms) + 15000))
	until (($(db 'SELECT pruned_through FROM event_log_state') >= h - 100)); do
		(($(now_ms) < deadline)) || fail "the pruner did not run"
		sleep 0.2
	done
	# a client that reads the head and then pauses, so that the replay waits
	python3 - "$ORDERS_PORT" "$h" "$d/paused" "$d/resume" >"$d/slow.body" 2>"$d/slow.err" 3>&- <<'PY' &
import os, socket, sys, time
port, pos, paused, resume = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(("GET /api/v1/stream/events HTTP/1.0\r\nLast-Event-ID: %s\r\n\r\n" % pos).encode())
got = s.recv(4096)
open(paused, "w").write("paused\n")
while not os.path.exists(resume):
    time.sleep(0.05)
# Read until a second after the reset (pings keep the stream talking), or 30 s.
out, until, seen = sys.stdout.buffer, time.monotonic() + 30, b""
out.write(got)
s.settimeout(1)
while time.monotonic() < until:
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    if not b:
        break
    out.write(b)
    seen = (seen + b)[-64:]
    if b"event: reset" in seen and until > time.monotonic() + 1:
        until = time.monotonic() + 1
PY
	local pid=$!
	bg_track "$pid"
	wait_file "$d/paused" 20 "$pid" || fail "the slow client did not start: $(cat "$d/slow.err")"
	# more events, so that the pruner (every second) passes the replay
	db "UPDATE orders SET note = 'later' WHERE customer LIKE 'Slow %'"
	db "UPDATE orders SET note = 'later still' WHERE customer LIKE 'Slow %'"
	deadline=$(($(now_ms) + 15000))
	until (($(db 'SELECT pruned_through FROM event_log_state') > h + 300)); do
		(($(now_ms) < deadline)) || fail "the pruner did not run"
		sleep 0.2
	done
	touch "$d/resume"
	wait "$pid" || rc=$?
	((rc == 0)) || fail "slow client: exit $rc: $(cat "$d/slow.err")"
	tr -d '\r' <"$d/slow.body" >"$d/slow.txt"
	grep -q '^data: {"reason":"history_truncated","lastEventId":' "$d/slow.txt" ||
		fail "no reset history_truncated in the slow replay: $(grep -a '^event:' "$d/slow.txt" | sort | uniq -c)"
	# before the reset: consecutive ids from the start, none skipped
	local ids want
	# (the reset's own id line comes before its event line: not one of them)
	ids=$(awk '/^event: reset$/ {exit} /^id: / {if (id != "") printf "%s ", id; id = $2}' "$d/slow.txt")
	want=$(seq "$((h + 1))" "$((h + $(wc -w <<<"$ids")))" | tr '\n' ' ')
	[[ -n $ids && $ids == "$want" ]] || fail "ids before the reset are not consecutive from $((h + 1)): ${ids:0:300}"
	echo "# prune during replay: $(wc -w <<<"$ids") events replayed, then reset" >&3
}

# A client resumes in the middle of a burst the hub has not read to its
# end yet (the window holds 8 MiB; ORDERS_POLL_MS is long, so only the new
# stream makes the hub look): its position is judged by the table's head,
# so it gets no reset, and it waits for the window to reach it.
bcase_resume_ahead_of_window() {
	stream_aux_start ORDERS_POLL_MS=60000
	local d h got want
	d=$(stream_dir)
	sql_orders 30000 Ahead
	sse_open a /api/v1/stream/events
	sse_wait_connected a
	# 30,000 events of about 600 bytes: 18 MB, more than the window
	db "UPDATE orders SET note = hex(randomblob(150)) WHERE customer LIKE 'Ahead %'"
	h=$(db_head)
	sse_open b /api/v1/stream/events -H "Last-Event-ID: $((h - 10))"
	sse_wait_id b "$h" 30
	sse_wait_id a "$h" 30
	sse_close b
	sse_close a
	grep -q '^event: reset' "$(sse_body b)" && fail "a reset for a position the table holds: $(grep -A1 '^event: reset' "$(sse_body b)")"
	got=$(sse_ids "$(sse_body b)" | tr '\n' ' ')
	want=$(seq $((h - 9)) "$h" | tr '\n' ' ')
	[[ $got == "$want" ]] || fail "resumed at $((h - 10)): ids [$got], expected [$want]"
	[[ $(sse_ids "$(sse_body a)" | wc -l) == 30000 ]] || fail "stream a: $(sse_ids "$(sse_body a)" | wc -l) events, not 30000"
}

# A stream request with a body is refused before the hub takes it. lighttpd
# refuses a GET with a body itself (400); Apache passes it on, so the case
# runs behind Apache + mod_fcgid.
bcase_stream_with_body() {
	ORDERS_TEST_SERVER=apache stream_aux_start
	api GET /api/v1/stream/events -H 'Content-Type: text/plain' --data-binary 'not for a stream'
	assert_error 413 payload_too_large body
	api GET /api/v1/health
	assert_status 200
	assert_jq .streams 0
}
