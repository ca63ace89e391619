#!/usr/bin/env bats
# Configuration (SPEC.md section 5) and the event log's retention (section 3):
# bad environment values stop the responder at start with one line naming the
# variable; --migrate; ORDERS_RETAIN_EVENTS pruning; ORDERS_MAX_BODY; ORDERS_SYNC.
# Runs behind lighttpd (or ORDERS_TEST_SERVER); the behaviour is the responder's.
# Run from the repository root: bats --tap tests/config.bats

load 'lib/common'

setup_file() {
	export ORDERS_TEST_SERVER=${ORDERS_TEST_SERVER:-lighttpd}
	instance_new
	migrate_db
	server_start ORDERS_RETAIN_EVENTS=5 ORDERS_MAX_BODY=1024
}

teardown_file() {
	orders_suite_teardown
}

setup() {
	orders_test_setup
}

teardown() {
	orders_test_teardown
}

# start_with VAR=VALUE...: run the responder directly (stdin /dev/null, no web
# server) with a fresh database path and these settings; sets status, output
# (stderr) and lines like bats' run.
start_with() {
	local bin db
	bin=$(orders_binary)
	db=$BATS_TEST_TMPDIR/start.db
	run --separate-stderr timeout 5 env ORDERS_DB="$db" "$@" "$bin" </dev/null
}

# assert_refused_start VAR=VALUE...: exit status 1–125 (no crash, no timeout)
# and exactly one line on stderr, naming the variable of the last argument.
assert_refused_start() {
	local last=${*: -1} var
	var=${last%%=*}
	start_with "$@"
	((status != 0)) || fail "$last: the responder started (exit 0); it must refuse the value"
	((status != 124)) || fail "$last: the responder did not exit within 5 s; it must refuse the value at start"
	((status < 126)) || fail "$last: exit status $status (crash?); stderr: $stderr"
	local n
	n=$(grep -c . <<<"$stderr" || true)
	[[ $n == 1 ]] || fail "$last: expected exactly one line on stderr, got $n: $stderr"
	[[ $stderr == *"$var"* ]] || fail "$last: the stderr line must name $var: $stderr"
}

@test "bad numeric settings stop the responder with one line naming the variable" {
	bats_require_minimum_version 1.5.0
	local kv
	for kv in ORDERS_POLL_MS=abc ORDERS_POLL_MS=-5 ORDERS_POLL_MS=12abc ORDERS_POLL_MS=99999999999999999999 \
		ORDERS_PING_S=abc ORDERS_PING_S=-1 ORDERS_RETRY_MS=x ORDERS_RETRY_MS=-1 \
		ORDERS_RETAIN_EVENTS=abc ORDERS_RETAIN_EVENTS=-1 ORDERS_WRITE_TIMEOUT_S=abc \
		ORDERS_STREAM_MAX_S=abc ORDERS_STREAM_MAX_S=-1 ORDERS_MAX_BODY=abc ORDERS_MAX_BODY=-1 \
		ORDERS_MAX_STREAMS=abc ORDERS_MAX_STREAMS=-1 ORDERS_THREADS=0 ORDERS_THREADS=abc ORDERS_THREADS=-2; do
		soft assert_refused_start "$kv"
	done
	soft_done
}

@test "bad enumerated settings stop the responder with one line naming the variable" {
	bats_require_minimum_version 1.5.0
	local kv
	for kv in ORDERS_READ_TOKENS=2 ORDERS_READ_TOKENS=abc ORDERS_SYNC=bogus ORDERS_SYNC=fully; do
		soft assert_refused_start "$kv"
	done
	soft_done
}

@test "a missing ORDERS_DB stops the responder with one line naming it" {
	bats_require_minimum_version 1.5.0
	local bin
	bin=$(orders_binary)
	run --separate-stderr timeout 5 env -u ORDERS_DB "$bin" </dev/null
	((status != 0 && status < 124)) || fail "unset ORDERS_DB: exit status $status; stderr: $stderr"
	[[ $(grep -c . <<<"$stderr") == 1 && $stderr == *ORDERS_DB* ]] || fail "stderr must be one line naming ORDERS_DB: $stderr"
	soft assert_refused_start ORDERS_DB=/nonexistent-dir/x/orders.db
	soft_done
}

@test "an unreadable ORDERS_TOKENS_FILE stops the responder with one line naming it" {
	bats_require_minimum_version 1.5.0
	assert_refused_start "ORDERS_TOKENS_FILE=$BATS_TEST_TMPDIR/no-such-tokens-file"
}

@test "--help prints the usage on stdout (exit 0); an unknown argument on stderr (exit 2)" {
	local bin
	bin=$(orders_binary)
	run --separate-stderr "$bin" --help
	assert_success
	[[ $output == "usage: orders.fcgi [--migrate | --help]"* && -z $stderr ]] ||
		fail "--help: stdout [$output], stderr [$stderr]"
	run --separate-stderr "$bin" --frobnicate
	((status == 2)) || fail "--frobnicate: exit $status, not 2"
	[[ -z $output && $stderr == "usage: orders.fcgi"* ]] || fail "--frobnicate: stdout [$output], stderr [$stderr]"
}

@test "--migrate creates the schema, is idempotent, and leaves the database in WAL mode" {
	bats_require_minimum_version 1.5.0
	local bin db=$BATS_TEST_TMPDIR/m.db c
	bin=$(orders_binary)
	run --separate-stderr env ORDERS_DB="$db" "$bin" --migrate </dev/null
	assert_success
	[[ -f $db ]] || fail "no database file"
	run sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('orders')"
	for c in id customer items total_cents currency status note created_at updated_at version; do
		[[ ,$output, == *",$c,"* ]] || fail "orders has no column $c ($output)"
	done
	run sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('events')"
	assert_output 'id,type,order_id,patch,ts'
	run sqlite3 "$db" 'PRAGMA journal_mode'
	assert_output wal
	run --separate-stderr env ORDERS_DB="$db" "$bin" --migrate </dev/null
	assert_success
	sqlite3 "$db" "INSERT INTO orders(customer, items) VALUES ('m', '[{\"sku\":\"a\",\"name\":\"b\",\"qty\":1,\"unitPriceCents\":1}]')"
	run --separate-stderr env ORDERS_DB="$db" "$bin" --migrate </dev/null
	assert_success
	run sqlite3 "$db" 'SELECT count(*) FROM orders'
	assert_output 1
}

@test "a database in rollback-journal mode (a restored VACUUM INTO copy) is back in WAL mode after start" {
	local db=$BATS_TEST_TMPDIR/restored.db
	run env ORDERS_DB="$db" "$(orders_binary)" --migrate
	assert_success
	[[ $(sqlite3 "$db" 'PRAGMA journal_mode = DELETE') == delete ]] || fail "could not leave WAL mode"
	run env ORDERS_DB="$db" "$(orders_binary)" --migrate
	assert_success
	[[ $(sqlite3 "$db" 'PRAGMA journal_mode') == wal ]] || fail "journal_mode is $(sqlite3 "$db" 'PRAGMA journal_mode')"
}

@test "ORDERS_RETAIN_EVENTS=5: the log is pruned to the newest 5, ids keep increasing" {
	local i head ids deadline
	for i in $(seq 1 10); do
		create_order "$(order_json "Retain $i")"
		api_json PATCH "/api/v1/orders/$OID" '{"status":"paid"}'
		assert_status 200
	done
	head=$(db_head)
	((head >= 20)) || fail "expected at least 20 events, head is $head"
	deadline=$((SECONDS + 5))
	while (($(db 'SELECT count(*) FROM events') > 5)); do
		((SECONDS < deadline)) || fail "events not pruned to 5 within ~3 s: $(db 'SELECT count(*) FROM events') rows"
		sleep 0.2
	done
	ids=$(db 'SELECT group_concat(id) FROM (SELECT id FROM events ORDER BY id)')
	[[ $(db 'SELECT max(id) FROM events') == "$head" ]] || fail "the newest event was pruned (ids: $ids, head $head)"
	(($(db 'SELECT min(id) FROM events') > head - 5)) || fail "not the newest events kept: $ids (head $head)"
	api GET /api/v1/events
	assert_status 200
	assert_jq .lastEventId "$head"
	assert_jq '[.data[].eventId]|map(tostring)|join(",")' "\"$ids\""
	api GET /api/v1/health
	assert_jq .lastEventId "$head"
	# the next change gets a new, larger id
	create_order "$(order_json 'After pruning')"
	(($(db_head) > head)) || fail "event id reused after pruning"
	# direct sqlite3 changes are pruned too
	for i in $(seq 1 8); do
		db "UPDATE orders SET note='sql $i' WHERE id='$OID'"
	done
	head=$(db_head)
	deadline=$((SECONDS + 5))
	while (($(db 'SELECT count(*) FROM events') > 5)); do
		((SECONDS < deadline)) || fail "events from sqlite3 not pruned within ~3 s"
		sleep 0.2
	done
	[[ $(db 'SELECT max(id) FROM events') == "$head" ]] || fail "newest event pruned"
}

@test "ORDERS_MAX_BODY=1024: 1024 bytes accepted, 1025 refused with 413" {
	local f=$BATS_TEST_TMPDIR/body body
	body=$(order_json 'Max body')
	{
		printf '%s' "$body"
		head -c $((1024 - ${#body})) /dev/zero | tr '\0' ' '
	} >"$f"
	api POST /api/v1/orders -H 'Content-Type: application/json' --data-binary "@$f"
	assert_status 201
	OID=$(jf .id)
	printf ' ' >>"$f"
	refused 413 payload_too_large "" POST /api/v1/orders -H 'Content-Type: application/json' --data-binary "@$f"
	refused 413 payload_too_large "" PATCH "/api/v1/orders/$OID" -H 'Content-Type: application/json' --data-binary "@$f"
}

@test "the responders exit when the web server stops" {
	local kids
	kids=$(_descendants "$ORDERS_SERVER_PID")
	[[ -n $kids ]] || fail "no responder process under the server"
	server_stop 2>&1
	[[ $SERVER_STOP_FORCED == 0 ]] || fail "the server or its responders ($kids) had to be killed"
	server_start ORDERS_RETAIN_EVENTS=5 ORDERS_MAX_BODY=1024
}

@test "ORDERS_SYNC=full: the responder starts and writes" {
	server_restart ORDERS_SYNC=full ORDERS_RETAIN_EVENTS=5 ORDERS_MAX_BODY=1024
	create_order "$(order_json 'Sync full')"
	api GET "/api/v1/orders/$OID"
	assert_status 200
}

@test "no crashed responder or sanitizer report in the server log" {
	assert_no_crash_in_log
}
