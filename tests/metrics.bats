#!/usr/bin/env bats
# GET /api/v1/metrics behind lighttpd with two responder processes
# (max-procs 2): promtool accepts the text, the counters move as requests
# are answered, streams open and close and events flow, and every process
# shows the same totals, also after one of them is SIGKILLed.
# Run from the repository root: bats --tap tests/metrics.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd ORDERS_TEST_MAX_PROCS=2 ORDERS_TEST_BALANCE=round-robin
	# pings every second: lighttpd notices a vanished client at its next write
	orders_suite_setup ORDERS_PING_S=1
}

teardown_file() {
	stream_suite_teardown
}

setup() {
	orders_test_setup
}

teardown() {
	stream_test_teardown
}

METRICS_CT='text/plain; version=0.0.4; charset=utf-8'

# scrape: GET /metrics through lighttpd into METRICS.
scrape() {
	api GET /api/v1/metrics "$@"
	assert_status 200
	METRICS=$BODY
}

# scrape_socket N: the same, straight from responder process N's socket.
scrape_socket() {
	METRICS=$(python3 "$ORDERS_TESTS_LIB/fcgi_get.py" "$ORDERS_TMP/orders.sock-$1" /api/v1/metrics \
		| tr -d '\r' | sed '1,/^$/d')
	[[ $METRICS == *orders_processes* ]] || fail "process $1 gave no metrics: $METRICS"
}

# mval SERIES: the value of the series written exactly so (name and labels), 0 when absent.
mval() {
	awk -v s="$1" 'index($0, s " ") == 1 { v = $2 } END { print (v == "" ? 0 : v) }' <<<"$METRICS"
}

# wait_mval SERIES WANT [SECONDS]: scrape until SERIES is WANT.
wait_mval() {
	local deadline=$(($(now_ms) + ${3:-10} * 1000))
	while :; do
		scrape
		[[ $(mval "$1") == "$2" ]] && return 0
		(($(now_ms) < deadline)) || fail "$1 is $(mval "$1"), not $2, after ${3:-10} s"
		sleep 0.1
	done
}

# The series that no scrape moves: everything but the requests and durations.
stable() {
	grep -v -e '^#' -e '^orders_http_request' <<<"$METRICS"
}

responders() {
	local c exe
	for c in $(ps -o pid= --ppid "$ORDERS_SERVER_PID" 2>/dev/null); do
		exe=$(readlink "/proc/$c/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)}
		[[ ${exe##*/} == orders.fcgi ]] && alive "$c" && printf '%s\n' "$c"
	done
	return 0
}

@test "metrics: text/plain 0.0.4 that promtool check metrics accepts" {
	create_order
	api GET /api/v1/orders/ord_99999
	stream_probe /api/v1/stream/events
	scrape
	[[ $(hdr Content-Type) == "$METRICS_CT" ]] || fail "Content-Type: $(hdr Content-Type)"
	local name
	for name in orders_streams_open orders_events_delivered_total orders_replayed_events_total \
		orders_event_log_head_id orders_event_log_oldest_id orders_db_lock_timeouts_total \
		orders_processes orders_write_groups_total orders_writes_committed_total; do
		grep -q "^$name [0-9]" <<<"$METRICS" || fail "no $name in: $METRICS"
	done
	grep -q '^orders_streams_closed_total{reason="client_gone"} ' <<<"$METRICS" || fail "no close reasons"
	grep -q '^orders_http_request_duration_seconds_bucket{route="/orders",le="+Inf"} ' <<<"$METRICS" \
		|| fail "no histogram"
	if ! command -v promtool >/dev/null; then
		[[ -z ${ORDERS_PROMTOOL_REQUIRED:-} ]] || fail "promtool is missing (Debian package prometheus)"
		skip "promtool is missing (Debian package prometheus)"
	fi
	run promtool check metrics <<<"$METRICS"
	assert_success
	refute_output
}

@test "metrics: requests are counted by method, route pattern and status, errors and 404s too" {
	scrape
	local post=$(mval 'orders_http_requests_total{method="POST",route="/orders",status="201"}')
	local patch=$(mval 'orders_http_requests_total{method="PATCH",route="/orders/{id}",status="200"}')
	local miss=$(mval 'orders_http_requests_total{method="GET",route="/orders/{id}",status="404"}')
	local other=$(mval 'orders_http_requests_total{method="GET",route="unmatched",status="404"}')
	local bad=$(mval 'orders_http_requests_total{method="POST",route="/orders",status="422"}')
	local count=$(mval 'orders_http_request_duration_seconds_count{route="/orders"}')
	local committed=$(mval orders_writes_committed_total)
	create_order
	create_order
	api_json PATCH "/api/v1/orders/$OID" '{"note":"metrics"}'
	assert_status 200
	api GET /api/v1/orders/ord_99999
	assert_status 404
	api GET /api/v1/nowhere
	assert_status 404
	api_json POST /api/v1/orders '{"customer":""}'
	assert_status 422
	scrape
	assert_equal "$(mval 'orders_http_requests_total{method="POST",route="/orders",status="201"}')" $((post + 2))
	assert_equal "$(mval 'orders_http_requests_total{method="PATCH",route="/orders/{id}",status="200"}')" $((patch + 1))
	assert_equal "$(mval 'orders_http_requests_total{method="GET",route="/orders/{id}",status="404"}')" $((miss + 1))
	assert_equal "$(mval 'orders_http_requests_total{method="GET",route="unmatched",status="404"}')" $((other + 1))
	assert_equal "$(mval 'orders_http_requests_total{method="POST",route="/orders",status="422"}')" $((bad + 1))
	assert_equal "$(mval 'orders_http_request_duration_seconds_count{route="/orders"}')" $((count + 3))
	assert_equal "$(mval orders_writes_committed_total)" $((committed + 3))
}

@test "metrics: a stream shows in streams_open, and its end in streams_closed_total{reason=client_gone}" {
	wait_mval orders_streams_open 0
	local opened=$(mval orders_streams_opened_total)
	local gone=$(mval 'orders_streams_closed_total{reason="client_gone"}')
	sse_open s1 /api/v1/stream/events
	sse_wait_connected s1
	wait_mval orders_streams_open 1
	assert_equal "$(mval orders_streams_opened_total)" $((opened + 1))
	sse_close s1
	wait_mval orders_streams_open 0 10
	assert_equal "$(mval 'orders_streams_closed_total{reason="client_gone"}')" $((gone + 1))
}

@test "metrics: events delivered grow by events x streams; a Last-Event-ID replay counts replayed events" {
	wait_mval orders_streams_open 0
	sse_open a /api/v1/stream/events
	sse_open b /api/v1/stream/events
	sse_wait_connected a
	sse_wait_connected b
	wait_mval orders_streams_open 2
	local delivered=$(mval orders_events_delivered_total) replayed=$(mval orders_replayed_events_total)
	create_order
	create_order
	create_order
	local head
	head=$(db_head)
	sse_wait_id a "$head"
	sse_wait_id b "$head"
	scrape
	assert_equal "$(mval orders_events_delivered_total)" $((delivered + 6))
	assert_equal "$(mval orders_replayed_events_total)" "$replayed"
	sse_close a
	sse_close b
	wait_mval orders_streams_open 0 10
	# with no stream open a process's window starts again at the head: the
	# replay below comes from the table
	sse_open r /api/v1/stream/events -H "Last-Event-ID: $((head - 3))"
	sse_wait_id r "$head"
	scrape
	assert_equal "$(mval orders_replayed_events_total)" $((replayed + 3))
	assert_equal "$(mval orders_events_delivered_total)" $((delivered + 9))
	sse_close r
}

@test "metrics: event log head and oldest ids are what sqlite3 sees" {
	create_order
	db 'DELETE FROM events WHERE id = (SELECT min(id) FROM events)'
	scrape
	assert_equal "$(mval orders_event_log_head_id)" "$(db_head)"
	assert_equal "$(mval orders_event_log_oldest_id)" "$(db 'SELECT coalesce(min(id), 0) FROM events')"
}

@test "metrics: both processes show the same totals; a SIGKILLed one's counts stay" {
	# a stream an earlier test closed counts as open until its process
	# notices: the totals compared below must not move meanwhile
	wait_mval orders_streams_open 0 10
	local -a pids
	# lighttpd starts its processes as they are needed
	for _ in 1 2 3 4; do scrape; done
	mapfile -t pids < <(responders)
	assert_equal "${#pids[@]}" 2
	wait_mval orders_processes 2
	local first
	scrape_socket 0
	first=$(stable)
	scrape_socket 1
	assert_equal "$(stable)" "$first"
	scrape
	assert_equal "$(stable)" "$first"
	local before=$METRICS
	kill -KILL "${pids[0]}"
	wait_gone "${pids[0]}" 5 || fail "responder ${pids[0]} did not die"
	# every series of before is still there, none smaller
	local i
	for i in 1 2 3 4; do
		scrape
		awk 'NR == FNR { if ($1 !~ /^#/ && $1 !~ /_open$|_processes$/) want[$1] = $2; next }
			!/^#/ { got[$1] = $2 }
			END { for (k in want) if (!(k in got) || got[k] + 0 < want[k] + 0) { print k " " want[k] " -> " got[k]; bad = 1 } exit bad }' \
			<(printf '%s\n' "$before") <(printf '%s\n' "$METRICS") || fail "counters went backwards after SIGKILL"
	done
	# lighttpd starts a new process for the dead one when it notices, at
	# any moment, and the new one counts once it has registered: so
	# orders_processes is asked to follow the live processes, in time
	local deadline=$(($(now_ms) + 10000))
	while :; do
		scrape
		mapfile -t pids < <(responders)
		[[ $(mval orders_processes) == "${#pids[@]}" ]] && break
		(($(now_ms) < deadline)) || fail "orders_processes is $(mval orders_processes) with ${#pids[@]} responders"
		sleep 0.1
	done
}

@test "metrics: with ORDERS_READ_TOKENS=1 a scrape needs a token (401 without)" {
	stream_aux_start
	printf 'metrics-token-1\n' >"$ORDERS_TMP/tokens"
	chmod 0644 "$ORDERS_TMP/tokens"
	server_restart ORDERS_TOKENS_FILE="$ORDERS_TMP/tokens" ORDERS_READ_TOKENS=1
	api GET /api/v1/metrics
	assert_status 401
	hdr WWW-Authenticate >/dev/null || fail "401 without WWW-Authenticate"
	scrape -H 'Authorization: Bearer metrics-token-1'
	[[ $(hdr Content-Type) == "$METRICS_CT" ]] || fail "Content-Type: $(hdr Content-Type)"
	grep -q 'orders_http_requests_total{method="GET",route="/metrics",status="401"} 1' <<<"$METRICS" \
		|| fail "the 401 is not counted: $METRICS"
}
