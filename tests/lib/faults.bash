# shellcheck shell=bash
# Fault injection cases (issue 5): a database locked by another process, a
# full disk (ORDERS_MAX_PAGES), start-up refusals, SIGKILL of the responder
# and of lighttpd under write load, a graceful stop (SIGTERM) with requests
# in flight and a stream open, and /health while the database does not
# answer.
#
#   load 'lib/common'
#   load 'lib/stream'
#   load 'lib/faults'
#
# Used by tests/faults.bats (lighttpd) and tests/faults-apache.bats (the
# lock, start-up, SIGTERM and /health cases behind Apache httpd +
# mod_fcgid). Each case runs on
# an instance of its own (temp dir, database, web server) started inside the
# test with stream_aux_start, so that the web server is a child of the test's
# shell: it can be signalled and reaped by PID, and stream_test_teardown stops
# it. Every process a case starts is tracked (bg_track) and stopped by PID;
# every wait is bounded. The load generator and the database checker are
# tests/lib/faults_tools.py.

FAULTS_TOOLS=$ORDERS_TESTS_LIB/faults_tools.py

# ---------------------------------------------------------------- instances, processes

# faults_instance VAR=VALUE...: a fresh instance for this test (database
# migrated, web server of $ORDERS_TEST_SERVER started with the stream suite's
# settings, ORDERS_PING_S=1, plus these).
faults_instance() {
	stream_aux_start "$@"
}

# faults_instance_unstarted: a fresh instance (temp dir, migrated database),
# no web server yet; start it with server_start.
faults_instance_unstarted() {
	[[ -n $STREAM_HOME_TMP ]] || STREAM_HOME_TMP=${ORDERS_TMP:-}
	instance_new
	STREAM_AUX_DIRS+=("$ORDERS_TMP")
	migrate_db
}

# faults_alive PID: the process exists and is not a zombie. Like stream's
# alive, but without a command substitution: a process that vanishes between
# the check and the read must not trip bats' ERR trap.
faults_alive() {
	local st
	{ read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
	st=${st##*) }
	[[ ${st%% *} != Z ]]
}

# faults_wait_gone PID SECONDS: until PID has exited (or is a zombie).
faults_wait_gone() {
	local deadline=$(($(now_ms) + $2 * 1000))
	while faults_alive "$1"; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.05
	done
}

# faults_responder_pid: the orders.fcgi process lighttpd spawned (a live
# child of the current instance's server whose executable is orders.fcgi).
faults_responder_pid() {
	local c exe
	for c in $(ps -o pid= --ppid "$ORDERS_SERVER_PID" 2>/dev/null); do
		exe=$(readlink "/proc/$c/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)} # the binary may have been rebuilt since it started
		if [[ ${exe##*/} == orders.fcgi ]] && faults_alive "$c"; then
			printf '%s\n' "$c"
			return 0
		fi
	done
	return 1
}

# faults_wait_responder SECONDS: until lighttpd has a live responder; prints its PID.
faults_wait_responder() {
	local deadline=$(($(now_ms) + ${1:-10} * 1000)) p
	while (($(now_ms) < deadline)); do
		if p=$(faults_responder_pid); then
			printf '%s\n' "$p"
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# faults_wait_health SECONDS: until /health answers 200 (e.g. after lighttpd
# respawned the responder).
faults_wait_health() {
	local deadline=$(($(now_ms) + ${1:-20} * 1000)) st=000
	while (($(now_ms) < deadline)); do
		st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$API_BASE/api/v1/health" 2>/dev/null) || true
		[[ $st == 200 ]] && return 0
		sleep 0.1
	done
	fail "/health did not answer 200 within ${1:-20} s (last $st)"
}

# faults_sqlite_only WHY: skip this case on PostgreSQL, saying why.
faults_sqlite_only() {
	on_sqlite || skip "$1"
}

# ---------------------------------------------------------------- the lock holder

# faults_lock_start [SQL...]: another process (python's sqlite3) takes
# BEGIN EXCLUSIVE on the database and holds it until faults_lock_release
# (at most 60 s); each SQL runs inside that transaction. Sets LOCK_PID.
faults_lock_start() {
	local d=$BATS_TEST_TMPDIR s
	local -a sql=()
	for s in "$@"; do sql+=(--sql "$s"); done
	rm -f "$d/lock.ready" "$d/lock.release"
	python3 "$FAULTS_TOOLS" lock --db "$ORDERS_DBFILE" --ready "$d/lock.ready" \
		--release "$d/lock.release" --max-hold 60 "${sql[@]}" \
		</dev/null >"$d/lock.out" 2>&1 3>&- &
	LOCK_PID=$!
	bg_track "$LOCK_PID"
	local deadline=$(($(now_ms) + 15000))
	until grep -q '^locked' "$d/lock.ready" 2>/dev/null; do
		child_running "$LOCK_PID" || fail "the lock holder exited: $(cat "$d/lock.out")"
		(($(now_ms) < deadline)) || fail "the lock holder did not get the lock in 15 s: $(cat "$d/lock.out")"
		sleep 0.02
	done
}

# faults_lock_release: commit and end the lock holder (waits at most 10 s).
faults_lock_release() {
	local d=$BATS_TEST_TMPDIR rc=0
	touch "$d/lock.release"
	wait_child_gone "$LOCK_PID" 10 || fail "the lock holder did not end within 10 s of its release"
	wait "$LOCK_PID" || rc=$?
	((rc == 0)) || fail "the lock holder failed (rc $rc): $(cat "$d/lock.out")"
}

# ---------------------------------------------------------------- load and checks

# faults_load_start LOG TAG [WRITERS]: the python writers (POST and PATCH
# bursts) against $API_BASE, each answer a JSON line in LOG. Sets LOAD_PID.
faults_load_start() {
	local log=$1 tag=$2
	rm -f "$BATS_TEST_TMPDIR/load.stop"
	python3 "$FAULTS_TOOLS" load --base "$API_BASE" --out "$log" --writers "${3:-4}" \
		--stop "$BATS_TEST_TMPDIR/load.stop" --max-seconds 90 --tag "$tag" \
		</dev/null >"$log.out" 2>&1 3>&- &
	LOAD_PID=$!
	bg_track "$LOAD_PID"
}

faults_load_stop() {
	touch "$BATS_TEST_TMPDIR/load.stop"
	wait_child_gone "$LOAD_PID" 30 || fail "the load generator did not stop within 30 s"
	local rc=0
	wait "$LOAD_PID" || rc=$?
	((rc == 0)) || fail "the load generator failed (rc $rc): $(tail -n 20 "$1.out" 2>/dev/null)"
}

# faults_ok_count LOG: answers with a 2xx so far.
faults_ok_count() {
	local n
	n=$(grep -c '"kind":"ok"' "$1" 2>/dev/null) || true
	echo "${n:-0}"
}

# faults_wait_ok LOG N SECONDS: until LOG holds N 2xx answers.
faults_wait_ok() {
	local deadline=$(($(now_ms) + $3 * 1000))
	while (($(faults_ok_count "$1") < $2)); do
		(($(now_ms) < deadline)) || return 1
		child_running "$LOAD_PID" || return 1
		sleep 0.05
	done
}

# faults_kinds LOG: "POST ok 12, PATCH no_answer 1, ..." for messages.
faults_kinds() {
	jq -rs 'group_by(.op + " " + .kind) | map("\(.[0].op) \(.[0].kind) \(length)") | join(", ")' "$1" 2>/dev/null
}

# faults_check [--strict-errors] [LOG...]: the database is whole and agrees
# with the logs (faults_tools.py check); the summary is in FAULTS_CHECK.
faults_check() {
	local out rc=0 a
	local -a logs=()
	for a in "$@"; do
		if [[ $a == --* ]]; then logs+=("$a"); else logs+=(--log "$a"); fi
	done
	out=$(python3 "$FAULTS_TOOLS" check --db "$(orders_db)" "${logs[@]}" 2>&1) || rc=$?
	((rc == 0)) || fail "database check failed (rc $rc):
$(jq . <<<"$out" 2>/dev/null || echo "$out")"
	FAULTS_CHECK=$out
}

proc_threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
proc_fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- 1. database locked

# Another process holds BEGIN EXCLUSIVE (as sqlite3 would): writes wait
# ORDERS_BUSY_TIMEOUT_MS, then 503 unavailable with Retry-After and change
# nothing. In WAL mode an exclusive lock of another connection does not block
# readers: GETs answer at once with the state before the lock. Open streams
# keep their connection (pings go on) and, once the lock is released, get the
# change the lock holder committed and everything after it.
fcase_db_locked() {
	faults_sqlite_only "SQLite-only: another process holds BEGIN EXCLUSIVE on the database file (on PostgreSQL writers wait on row locks: see the deadlock case)"
	faults_instance ORDERS_BUSY_TIMEOUT_MS=1000
	local a b d h v0 t0 ms ra n
	create_order "$(order_json 'Locked A')"
	a=$OID
	create_order "$(order_json 'Locked B')"
	b=$OID
	note_change "$a" 'before the lock'
	h=$EVENT_ID
	v0=$(db "SELECT version FROM orders WHERE id = '$a'")
	d=$(stream_dir)
	sse_open during /api/v1/stream/events -H "Last-Event-ID: $((h - 1))"
	sse_wait_connected during
	[[ $CONNECTED_HEAD == "$h" ]] || fail "connected lastEventId $CONNECTED_HEAD, head $h"
	sse_wait_id during "$h"
	snap
	local before=$SNAP

	faults_lock_start "UPDATE orders SET note = 'written under the lock' WHERE id = '$b'"
	local t_lock
	t_lock=$(now_ms)

	# writes: 503 unavailable with Retry-After, after about the busy timeout
	t0=$(now_ms)
	api_json PATCH "/api/v1/orders/$a" '{"note":"refused under the lock"}'
	ms=$(($(now_ms) - t0))
	assert_error 503 unavailable
	ra=$(hdr Retry-After) || fail "503 without Retry-After: $(_resp)"
	[[ $ra =~ ^[0-9]+$ ]] || fail "Retry-After [$ra] is not delay-seconds"
	((ms >= 800)) || fail "the PATCH was refused after $ms ms, before ORDERS_BUSY_TIMEOUT_MS=1000"
	((ms < 5000)) || fail "the PATCH was refused only after $ms ms (ORDERS_BUSY_TIMEOUT_MS=1000)"
	echo "# PATCH under the lock: 503 after $ms ms, Retry-After: $ra" >&3
	api_json POST /api/v1/orders "$(order_json 'Refused Under Lock')" -H 'Idempotency-Key: under-the-lock'
	assert_error 503 unavailable
	hdr Retry-After >/dev/null || fail "503 without Retry-After: $(_resp)"
	api DELETE "/api/v1/orders/$b"
	assert_error 503 unavailable
	hdr Retry-After >/dev/null || fail "503 without Retry-After: $(_resp)"

	# reads are not blocked, and see the state before the lock
	t0=$(now_ms)
	api GET "/api/v1/orders/$a"
	assert_status 200
	assert_jq '.version' "$v0"
	assert_jq '.note' '"before the lock"'
	api GET "/api/v1/orders/$b"
	assert_status 200
	assert_jq '.note' '""'
	api GET '/api/v1/orders?limit=5'
	assert_status 200
	assert_jq '.data | length' 2
	events_after 0
	assert_jq '.lastEventId' "$h"
	api GET /api/v1/health
	assert_status 200
	assert_jq '.lastEventId' "$h"
	ms=$(($(now_ms) - t0))
	((ms < 3000)) || fail "five GETs took $ms ms under the lock: readers were blocked"
	echo "# 5 GETs under the lock: $ms ms in all" >&3

	# a new stream opens during the lock
	sse_open newcomer /api/v1/stream/events
	sse_wait_connected newcomer
	[[ $CONNECTED_HEAD == "$h" ]] || fail "stream opened under the lock: connected lastEventId $CONNECTED_HEAD, head $h"

	# the open stream keeps its connection: a ping arrives during the lock
	sse_wait during $'event: ping\n' 4
	child_running "$(sse_pid during)" || fail "the stream ended during the lock: $(cat "$d/during.err")"
	n=$(db_state)
	[[ $n == "$before" ]] || fail "the refused writes changed the database: before [$before], after [$n]"
	# the lock has been held across all of this
	child_running "$LOCK_PID" || fail "the lock holder ended early: $(cat "$BATS_TEST_TMPDIR/lock.out")"
	echo "# lock held $(($(now_ms) - t_lock)) ms" >&3

	faults_lock_release
	local hl
	hl=$(db_head)
	((hl == h + 1)) || fail "expected exactly the lock holder's event after $h, head is $hl"
	# both streams catch up with the change committed at the release
	sse_wait_id during "$hl" 3
	sse_wait_id newcomer "$hl" 3
	# and writes work again
	note_change "$a" 'after the lock'
	sse_wait_id during "$EVENT_ID" 3
	sse_wait_id newcomer "$EVENT_ID" 3
	sse_close during
	sse_close newcomer
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id >= $h AND id <= $EVENT_ID"
	} >"$d/during.expected"
	sse_strip_pings during "$d/during.got" 0
	assert_same_file "$d/during.expected" "$d/during.got" "stream open across the lock"
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $h AND id <= $EVENT_ID"
	} >"$d/newcomer.expected"
	sse_strip_pings newcomer "$d/newcomer.got" 0
	assert_same_file "$d/newcomer.expected" "$d/newcomer.got" "stream opened during the lock"

	# nothing of the refused requests is there
	[[ $(db "SELECT count(*) FROM orders WHERE customer = 'Refused Under Lock'") == 0 ]] ||
		fail "the POST refused under the lock created an order"
	[[ $(db "SELECT count(*) FROM idempotency_keys WHERE key = 'under-the-lock'") == 0 ]] ||
		fail "the POST refused under the lock left its Idempotency-Key"
	[[ $(db "SELECT count(*) FROM events WHERE patch LIKE '%refused under the lock%'") == 0 ]] ||
		fail "the PATCH refused under the lock left an event"
	[[ $(db "SELECT version FROM orders WHERE id = '$a'") == $((v0 + 1)) ]] ||
		fail "order $a: version $(db "SELECT version FROM orders WHERE id = '$a'"), expected $((v0 + 1))"
	faults_check
	# the same key works now, and creates one order
	api_json POST /api/v1/orders "$(order_json 'Refused Under Lock')" -H 'Idempotency-Key: under-the-lock'
	assert_status 201
	assert_no_sanitizer_report
}

# ---------------------------------------------------------------- 2. disk full

# fjson_note N: a JSON string of N four-byte characters (1000 is the longest
# note: about 4 KB in the row and 4 KB more in its order.created event).
fjson_note() {
	python3 -c 'import sys; print("\"" + "\U0001F4E6" * int(sys.argv[1]) + "\"")' "$1"
}

# ORDERS_MAX_PAGES a little above the database's size: POSTs with big notes
# until 507 insufficient_storage; every order has its event and nothing is
# half written; reads and open streams go on; later small writes either fit
# or fail the same clean way.
fcase_disk_full() {
	faults_sqlite_only "SQLite-only: ORDERS_MAX_PAGES (max_page_count) fills the file (on PostgreSQL: the disk_full trigger case)"
	faults_instance_unstarted
	local pc max d i st big n201=0 key first507 ids=() ra
	pc=$(db 'PRAGMA page_count')
	max=$((pc + 40))
	server_start "${STREAM_SUITE_ENV[@]}" "ORDERS_MAX_PAGES=$max"
	d=$(stream_dir)
	create_order "$(order_json 'Before Full')"
	ids+=("$OID")
	local x=$OID
	sse_open full0 /api/v1/stream/events -H 'Last-Event-ID: 0'
	sse_wait_connected full0
	big=$(fjson_note 1000)
	for i in $(seq 1 400); do
		key=full-$i
		api_json POST /api/v1/orders "$(order_json "Full $i" "\"note\":$big")" -H "Idempotency-Key: $key"
		st=$STATUS
		if [[ $st == 201 ]]; then
			n201=$((n201 + 1))
			ids+=("$(jf .id)")
			continue
		fi
		break
	done
	first507=$i
	assert_error 507 insufficient_storage
	ra=$(hdr Retry-After) || fail "507 without Retry-After: $(_resp)"
	[[ $ra =~ ^[0-9]+$ ]] || fail "Retry-After [$ra] is not delay-seconds"
	((n201 >= 3)) || fail "only $n201 orders fitted in $max pages (the database had $pc)"
	echo "# ORDERS_MAX_PAGES=$max (database $pc pages): $n201 big orders fitted, POST $first507 got 507" >&3

	# nothing half-written: the refused POST left no row, no event, no key
	[[ $(db "SELECT count(*) FROM orders WHERE customer = 'Full $first507'") == 0 ]] ||
		fail "the refused POST created an order"
	[[ $(db "SELECT count(*) FROM idempotency_keys WHERE key = 'full-$first507'") == 0 ]] ||
		fail "the refused POST left its Idempotency-Key"
	[[ $(db 'SELECT count(*) FROM orders') == $((n201 + 1)) ]] ||
		fail "$(db 'SELECT count(*) FROM orders') orders, but $((n201 + 1)) creates were acknowledged"
	[[ $(db "SELECT count(*) FROM events WHERE type = 'order.created'") == $((n201 + 1)) ]] ||
		fail "$(db "SELECT count(*) FROM events WHERE type = 'order.created'") order.created events for $((n201 + 1)) orders"
	faults_check

	# more big writes: refused the same way, changing nothing
	snap
	for i in 1 2 3; do
		api_json POST /api/v1/orders "$(order_json "Full again $i" "\"note\":$big")"
		assert_error 507 insufficient_storage
		assert_unchanged
	done
	# the retried key is not replayed from a half-written state
	api_json POST /api/v1/orders "$(order_json "Full $first507" "\"note\":$big")" -H "Idempotency-Key: full-$first507"
	assert_error 507 insufficient_storage
	assert_unchanged

	# reads go on
	api GET "/api/v1/orders/${ids[1]}"
	assert_status 200
	assert_jq '.note | length' 1000
	api GET '/api/v1/orders?limit=200'
	assert_status 200
	assert_jq '.data | length' $((n201 + 1))
	events_after 0
	assert_jq '.data | length' $((n201 + 1))
	api GET /api/v1/health
	assert_status 200
	# the open stream has every event and is still open; a new one replays everything
	local head
	head=$(db_head)
	sse_wait_id full0 "$head" 5
	child_running "$(sse_pid full0)" || fail "the open stream ended when the database filled up"
	sse_open full1 /api/v1/stream/events -H 'Last-Event-ID: 0'
	sse_wait_connected full1
	sse_wait_id full1 "$head" 5

	# small writes after the failure: each fits or fails cleanly
	local ok=0 full=0 before
	for i in 1 2 3 4 5 6; do
		snap
		before=$SNAP
		case $i in
		1 | 2 | 3) api_json PATCH "/api/v1/orders/$x" "{\"note\":\"small $i\"}" ;;
		4) api_json POST /api/v1/orders "$(order_json "Small After Full")" ;;
		5) api DELETE "/api/v1/orders/${ids[2]}" ;;
		6) api_json PATCH "/api/v1/orders/${ids[3]}" '{"status":"paid"}' ;;
		esac
		case $STATUS in
		200 | 201 | 204) ok=$((ok + 1)) ;;
		507)
			assert_error 507 insufficient_storage
			assert_unchanged
			full=$((full + 1))
			;;
		*) fail "a small write after the disk filled up: expected 2xx or 507, got $(_resp)" ;;
		esac
	done
	echo "# small writes after the 507: $ok fitted, $full refused with 507" >&3
	faults_check
	# the streams got every event committed, in order, once
	head=$(db_head)
	sse_wait_id full0 "$head" 5
	sse_wait_id full1 "$head" 5
	sse_close full0
	sse_close full1
	local n
	for n in full0 full1; do
		{
			sse_retry_text
			if [[ $n == full0 ]]; then sse_connected_text 1; else sse_connected_text "$(sed -n 's/^data: {"message":"Connected to event stream","lastEventId":\([0-9]*\)}$/\1/p' "$(sse_body full1)")"; fi
			sse_db_text "id <= $head"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n across the full disk"
	done
	local pages
	pages=$(db 'PRAGMA page_count')
	((pages <= max)) || fail "the database has $pages pages, over ORDERS_MAX_PAGES=$max"
	assert_no_sanitizer_report
}

# ---------------------------------------------------------------- 3. start-up refusals

# faults_bad_db KIND DIR: prepares a database file of that kind in DIR (which
# the unprivileged user owns) and prints its path. KIND: readonly, missing_dir,
# corrupt, damaged, newer_schema.
faults_bad_db() {
	local kind=$1 dir=$2 f bin
	bin=$(server_binary) || return 1
	case $kind in
	missing_dir)
		printf '%s\n' "$dir/no-such-directory/orders.db"
		return 0
		;;
	readonly | newer_schema | damaged)
		f=$dir/$kind.db
		as_run_user env ORDERS_DB="$f" "$bin" --migrate </dev/null >/dev/null 2>&1 ||
			{ echo "cannot create $f" >&2; return 1; }
		sqlite3 "$f" "INSERT INTO orders (customer, items) VALUES ('Kept', '[{\"sku\":\"K\",\"name\":\"K\",\"qty\":1,\"unitPriceCents\":1}]')"
		case $kind in
		readonly) chmod 0444 "$f" ;;
		newer_schema) sqlite3 "$f" 'PRAGMA user_version = 99' ;;
		damaged)
			# a valid header, then random bytes over the rest of page 1 (the schema)
			python3 -c 'import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100); f.write(os.urandom(3900))' "$f"
			;;
		esac
		;;
	corrupt)
		f=$dir/$kind.db
		head -c 16384 /dev/urandom >"$f"
		;;
	esac
	is_root && chown "$(orders_run_user)" "$f"
	printf '%s\n' "$f"
}

# What the one line on stderr must say (a regex, case-insensitive).
declare -gA FAULTS_BAD_DB_WORDS=(
	[readonly]='read-only'
	[missing_dir]='cannot open|unable to open'
	[corrupt]='not a database|not a usable'
	[damaged]='malformed|corrupt|not a usable|not a database'
	[newer_schema]='schema version 99.*newer|newer.*schema'
)

# faults_one_line FILE KIND WHAT: FILE holds exactly one line, naming ORDERS_DB
# and saying what FAULTS_BAD_DB_WORDS[KIND] says.
faults_one_line() {
	local f=$1 kind=$2 what=$3 n
	n=$(wc -l <"$f")
	[[ $n == 1 && -n $(head -c 1 "$f") ]] || fail "$what: expected exactly one line on stderr, got $n:
$(head -n 20 "$f")"
	grep -q 'ORDERS_DB' "$f" || fail "$what: the line does not name ORDERS_DB: $(cat "$f")"
	grep -qiE "${FAULTS_BAD_DB_WORDS[$kind]}" "$f" || fail "$what: the line does not say what is wrong (${FAULTS_BAD_DB_WORDS[$kind]}): $(cat "$f")"
}

# faults_refusal_direct KIND FILE: orders.fcgi --migrate and orders.fcgi as a
# FastCGI process started by spawn-fcgi, both as the unprivileged user.
faults_refusal_direct() {
	local kind=$1 f=$2 bin rc out err sum0 sum1 sock u
	bin=$(server_binary)
	out=$BATS_TEST_TMPDIR/$kind.direct.out
	err=$BATS_TEST_TMPDIR/$kind.direct.err
	sum0=$(sha256sum "$f" 2>/dev/null || true)
	rc=0
	as_run_user env ORDERS_DB="$f" "$bin" --migrate </dev/null >"$out" 2>"$err" || rc=$?
	((rc != 0)) || fail "$kind: orders.fcgi --migrate exited 0 on $f"
	[[ ! -s $out ]] || fail "$kind: --migrate wrote to stdout: $(head -c 300 "$out")"
	faults_one_line "$err" "$kind" "$kind, orders.fcgi --migrate"
	echo "# $kind: --migrate exit $rc: $(cat "$err")" >&3

	# the same as a FastCGI responder started by spawn-fcgi (which execs it)
	sock=$ORDERS_TMP/$kind.sock
	local -a own=()
	if is_root; then
		u=$(orders_run_user)
		own=(-u "$u" -g "$(id -gn "$u")" -U "$u" -G "$(id -gn "$u")")
	fi
	rc=0
	timeout 20 env -i PATH=/usr/bin:/bin ORDERS_DB="$f" ORDERS_POLL_MS=50 \
		spawn-fcgi -n -s "$sock" -M 0660 "${own[@]}" -- "$bin" \
		</dev/null >"$out" 2>"$err" 3>&- || rc=$?
	((rc != 0 && rc != 124)) || fail "$kind: spawn-fcgi -n orders.fcgi exited $rc on $f (0: it ran; 124: it did not stop)"
	faults_one_line "$err" "$kind" "$kind, under spawn-fcgi"
	rm -f "$sock"
	sum1=$(sha256sum "$f" 2>/dev/null || true)
	[[ $sum0 == "$sum1" ]] || fail "$kind: the refused file was changed ($sum0 -> $sum1)"
	[[ $kind != missing_dir || ! -e ${f%/*} ]] || fail "$kind: the missing directory was created"
}

# faults_launch_server ENV...: like common's server_start, but does not wait
# for /health (the responder is expected to refuse to start).
faults_launch_server() {
	local bin env
	bin=$(server_binary) || return 1
	env=$(_merge_env "$@")
	ORDERS_SERVER_KIND=$ORDERS_TEST_SERVER
	ORDERS_PORT=$(free_port)
	API_BASE=http://127.0.0.1:$ORDERS_PORT
	export ORDERS_SERVER_KIND ORDERS_PORT API_BASE
	case $ORDERS_TEST_SERVER in
	lighttpd)
		_write_lighttpd_conf "$bin" <<<"$env"
		instance_chown
		"$LIGHTTPD_BIN" -D -f "$ORDERS_TMP/lighttpd.conf" </dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
		;;
	apache)
		_write_apache_conf "$bin" <<<"$env"
		instance_chown
		"$APACHE_BIN" -f "$ORDERS_TMP/apache.conf" -DFOREGROUND </dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
		;;
	esac
	ORDERS_SERVER_PID=$!
	export ORDERS_SERVER_PID
	instance_save
}

# faults_refusal_server KIND FILE: the web server starts the responder on
# FILE: requests are answered with the web server's own 5xx (never a 2xx),
# what the responder wrote on stderr is that one line (once per start
# attempt), and the file is unchanged.
faults_refusal_server() {
	local kind=$1 f=$2 sum0 sum1 st i deadline lines src
	sum0=$(sha256sum "$f" 2>/dev/null || true)
	faults_launch_server "${STREAM_SUITE_ENV[@]}" "ORDERS_DB=$f"
	deadline=$(($(now_ms) + 30000))
	st=000
	for i in 1 2 3; do
		(($(now_ms) < deadline)) || break
		child_running "$ORDERS_SERVER_PID" || break
		st=$(curl -s -o "$BATS_TEST_TMPDIR/$kind.body" -w '%{http_code}' --max-time 25 "$API_BASE/api/v1/health") || true
		[[ $st == 000 || $st == 5?? ]] || fail "$kind: $ORDERS_TEST_SERVER answered $st with a refused database: $(head -c 300 "$BATS_TEST_TMPDIR/$kind.body")"
		sleep 0.3
	done
	if on_apache; then src=$(server_log); else src=$ORDERS_TMP/server.out; fi
	# the responder's lines: everything but the web server's own ([...] or date-stamped)
	deadline=$(($(now_ms) + 10000))
	until grep -q 'ORDERS_DB' "$src" 2>/dev/null; do
		(($(now_ms) < deadline)) || fail "$kind: no line of the responder in $src: $(tail -n 20 "$src")"
		sleep 0.1
	done
	stream_server_stop
	lines=$(grep -vE '^\[|^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]+: \(|^AH[0-9]+:' "$src" | sort | uniq -c)
	[[ $(wc -l <<<"$lines") == 1 ]] || fail "$kind: the responder wrote more than one kind of line under $ORDERS_TEST_SERVER:
$lines"
	grep -vE '^\[|^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]+: \(|^AH[0-9]+:' "$src" | head -n 1 >"$BATS_TEST_TMPDIR/$kind.server.err"
	faults_one_line "$BATS_TEST_TMPDIR/$kind.server.err" "$kind" "$kind, under $ORDERS_TEST_SERVER"
	echo "# $kind under $ORDERS_TEST_SERVER: last answer $st; responder: $(sed 's/^ *//' <<<"$lines")" >&3
	sum1=$(sha256sum "$f" 2>/dev/null || true)
	[[ $sum0 == "$sum1" ]] || fail "$kind: the refused file was changed under $ORDERS_TEST_SERVER"
	assert_no_sanitizer_report
}

# One refusal: directly, under spawn-fcgi and under the web server.
fcase_startup_refusal() {
	local kind=$1 f
	faults_sqlite_only "SQLite-only: a bad database file ($kind) given as ORDERS_DB (on PostgreSQL: the start while the server is down case)"
	faults_instance_unstarted
	f=$(faults_bad_db "$kind" "$ORDERS_TMP") || fail "cannot prepare the $kind database"
	faults_refusal_direct "$kind" "$f"
	faults_refusal_server "$kind" "$f"
}

# ---------------------------------------------------------------- 4. crash safety

# 4 writers (POST and PATCH bursts); SIGKILL lighttpd's orders.fcgi mid-burst,
# three times; lighttpd respawns it each time; every acknowledged write is in
# the database with its event, nothing is half there, ids are not reused.
fcase_crash_sigkill_responder() {
	faults_instance ORDERS_BUSY_TIMEOUT_MS=5000
	local log=$BATS_TEST_TMPDIR/load.jsonl pid k n0 pids=()
	faults_load_start "$log" kill
	for k in 1 2 3; do
		pid=$(faults_wait_responder 20) || fail "no orders.fcgi child of lighttpd $ORDERS_SERVER_PID before kill $k"
		faults_wait_ok "$log" $(($(faults_ok_count "$log") + 60)) 40 ||
			fail "kill $k: the writers did not get 60 more 2xx within 40 s: $(faults_kinds "$log")"
		n0=$(wc -l <"$log")
		kill -KILL "$pid"
		faults_wait_gone "$pid" 5 || fail "responder $pid still alive after SIGKILL"
		pids+=("$pid@$n0")
	done
	# lighttpd respawns it; the writers go on
	faults_wait_ok "$log" $(($(faults_ok_count "$log") + 60)) 40 ||
		fail "no 60 more 2xx within 40 s after the last kill: $(faults_kinds "$log")"
	pid=$(faults_responder_pid) || fail "lighttpd did not respawn orders.fcgi"
	for k in "${pids[@]}"; do
		[[ $pid != "${k%@*}" ]] || fail "responder PID unchanged ($pid)"
	done
	faults_load_stop "$log"
	echo "# SIGKILL of responders (pid@requests so far) ${pids[*]}, now $pid, $(wc -l <"$log") requests: $(faults_kinds "$log")" >&3
	faults_check "$log"
	echo "# check: $(jq -c '{orders, events, max_event_id, sequence}' <<<"$FAULTS_CHECK")" >&3
	# a write after the check lands on a new id: nothing is reused
	local max maxo
	max=$(db 'SELECT max(id) FROM events')
	maxo=$(db 'SELECT max(seq) FROM orders')
	create_order "$(order_json 'After Kill')"
	(($(db_head) > max)) || fail "event id reused: head $(db_head), max before $max"
	(($(id_num "$OID") > maxo)) || fail "order id $OID reused (largest before: $maxo)"
}

# The same with SIGKILL of lighttpd itself: the responder is orphaned (it
# holds its listening socket itself, so nothing tells it); it is stopped by
# PID (SIGTERM: it must still stop cleanly) and lighttpd is started again on
# the same database.
fcase_crash_sigkill_lighttpd() {
	faults_instance ORDERS_BUSY_TIMEOUT_MS=5000
	local log=$BATS_TEST_TMPDIR/load.jsonl log2=$BATS_TEST_TMPDIR/load2.jsonl old n0 t0 ms srv
	old=$(faults_wait_responder 10) || fail "no orders.fcgi child of lighttpd $ORDERS_SERVER_PID"
	faults_load_start "$log" lkill
	faults_wait_ok "$log" 80 30 || fail "the writers did not get 80 answers in 30 s: $(faults_kinds "$log")"
	n0=$(wc -l <"$log")
	srv=$ORDERS_SERVER_PID
	kill -KILL "$srv"
	wait "$srv" 2>/dev/null || true
	sleep 1
	faults_load_stop "$log"
	echo "# SIGKILL of lighttpd $srv after $n0 requests: $(faults_kinds "$log")" >&3
	# the orphaned responder: does it notice? (it may not: its listening socket is its own)
	if faults_wait_gone "$old" 2; then
		echo "# the orphaned responder $old exited by itself" >&3
	else
		t0=$(now_ms)
		kill -TERM "$old"
		faults_wait_gone "$old" 6 || {
			kill -KILL "$old" 2>/dev/null || true
			fail "the orphaned responder $old did not stop within 6 s of SIGTERM"
		}
		ms=$(($(now_ms) - t0))
		echo "# the orphaned responder $old was still running 2 s after lighttpd died; it stopped $ms ms after SIGTERM" >&3
	fi
	faults_check "$log"
	echo "# check: $(jq -c '{orders, events, max_event_id, sequence}' <<<"$FAULTS_CHECK")" >&3
	# lighttpd again on the same database (the old PID is gone)
	ORDERS_SERVER_PID=
	server_start "${STREAM_SUITE_ENV[@]}" ORDERS_BUSY_TIMEOUT_MS=5000
	local max
	max=$(db 'SELECT coalesce(max(id), 0) FROM events')
	faults_load_start "$log2" after
	faults_wait_ok "$log2" 40 30 || fail "no writes after the restart: $(faults_kinds "$log2")"
	faults_load_stop "$log2"
	faults_check "$log" "$log2"
	(($(db "SELECT min(id) FROM events WHERE id > $max") == max + 1)) ||
		fail "first event after the restart is $(db "SELECT min(id) FROM events WHERE id > $max"), expected $((max + 1))"
}

# ---------------------------------------------------------------- 5. graceful stop

# SIGTERM to lighttpd's responder while four writes are in flight (waiting for
# a lock another process holds, released 0.5 s after the signal) and a
# stream is open: the writes complete with 2xx, the stream ends after a
# complete event (curl exits 0, the body ends with "\n\n"), the process exits
# within 5 s, and a client that resumes with Last-Event-ID misses nothing.
# Under mod_fcgid the stream and each write hold a process of their own:
# every responder gets the SIGTERM (as at Apache's stop or restart), once
# all five requests are inside one. mod_fcgid starts about one process a
# second, so there the writes wait up to 15 s for the lock instead of 4 s.
fcase_graceful_stop() {
	faults_sqlite_only "SQLite-only: the writes are held in flight by another process's BEGIN EXCLUSIVE on the file (python's sqlite3)"
	local bt=4000
	on_apache && bt=15000
	faults_instance ORDERS_BUSY_TIMEOUT_MS=$bt
	local a b c d h pid t0 t_exit i rc st last head n deadline
	local -a pids=()
	create_order "$(order_json 'Graceful A')"
	a=$OID
	create_order "$(order_json 'Graceful B')"
	b=$OID
	create_order "$(order_json 'Graceful C')"
	c=$OID
	note_change "$a" 'before the stop'
	h=$EVENT_ID
	d=$(stream_dir)
	sse_open g1 /api/v1/stream/events -H "Last-Event-ID: $((h - 1))"
	sse_wait_connected g1
	sse_wait_id g1 "$h"
	if ! on_apache; then
		pid=$(faults_responder_pid) || fail "no orders.fcgi child of lighttpd"
		pids=("$pid")
	fi

	faults_lock_start
	local -a fl=()
	local -a ids=("$a" "$b" "$c")
	for i in 0 1 2; do
		curl -sS --max-time 30 -X PATCH -H 'Content-Type: application/json' \
			--data-binary "{\"note\":\"in flight $i\"}" -o "$d/inflight$i.body" -w '%{http_code}' \
			"$API_BASE/api/v1/orders/${ids[$i]}" </dev/null >"$d/inflight$i.status" 2>"$d/inflight$i.err" 3>&- &
		fl+=("$!")
		bg_track "$!"
	done
	curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' \
		--data-binary "$(order_json 'In Flight Create')" -o "$d/inflight3.body" -w '%{http_code}' \
		"$API_BASE/api/v1/orders" </dev/null >"$d/inflight3.status" 2>"$d/inflight3.err" 3>&- &
	fl+=("$!")
	bg_track "$!"
	sleep 1
	if on_apache; then
		deadline=$(($(now_ms) + 12000))
		until n=$(busy_responder_pids | wc -l) && ((n >= 5)); do
			(($(now_ms) < deadline)) || fail "the stream and 4 writes hold $n responder processes after 13 s, not 5 (all: $(responder_pids | tr '\n' ' '))"
			sleep 0.1
		done
		mapfile -t pids < <(responder_pids)
	fi
	for i in 0 1 2 3; do
		child_running "${fl[$i]}" || fail "request $i finished before the stop (status $(cat "$d/inflight$i.status")): not in flight"
	done
	t0=$(now_ms)
	kill -TERM "${pids[@]}"
	sleep 0.5
	faults_lock_release

	# the requests in flight complete
	for i in 0 1 2 3; do
		wait_child_gone "${fl[$i]}" 10 || fail "request $i still running 10 s after the stop"
		rc=0
		wait "${fl[$i]}" || rc=$?
		st=$(cat "$d/inflight$i.status")
		((rc == 0)) || fail "in-flight request $i: curl exit $rc, status $st: $(cat "$d/inflight$i.err")"
		if ((i < 3)); then
			[[ $st == 200 ]] || fail "in-flight PATCH $i: $st $(head -c 300 "$d/inflight$i.body")"
			[[ $(jq -r .note "$d/inflight$i.body") == "in flight $i" ]] || fail "in-flight PATCH $i: body $(head -c 300 "$d/inflight$i.body")"
		else
			[[ $st == 201 ]] || fail "in-flight POST: $st $(head -c 300 "$d/inflight$i.body")"
		fi
	done

	# the stream ends after a complete event, cleanly
	wait_child_gone "$(sse_pid g1)" 6 || fail "the stream did not end within 6 s of SIGTERM"
	rc=0
	wait "$(sse_pid g1)" || rc=$?
	((rc == 0)) || fail "the stream did not end cleanly: curl exit $rc ($(cat "$d/g1.err"))"
	[[ $(tail -c 2 "$(sse_body g1)" | od -An -c | tr -d ' ') == '\n\n' ]] ||
		fail "the stream does not end after a complete event: $(tail -c 200 "$(sse_body g1)" | sed -n l)"

	# the process exits within 5 s
	for pid in "${pids[@]}"; do
		faults_wait_gone "$pid" 8 || fail "responder $pid still running 8 s after SIGTERM"
	done
	t_exit=$(($(now_ms) - t0))
	((t_exit <= 5000)) || fail "responders ${pids[*]} took $t_exit ms to exit after SIGTERM (more than 5 s)"
	echo "# responders ${pids[*]} exited within $t_exit ms of SIGTERM; in-flight: $(cat "$d"/inflight{0,1,2,3}.status | tr '\n' ' ')" >&3

	# every in-flight write is in the database with its event
	for i in 0 1 2; do
		local v
		v=$(jq -r .version "$d/inflight$i.body")
		[[ $(db "SELECT count(*) FROM events WHERE order_id = '${ids[$i]}' AND type = 'order.updated'
		          AND json_extract(patch, '$.version') = $v AND json_extract(patch, '$.note') = 'in flight $i'") == 1 ]] ||
			fail "PATCH $i acknowledged with version $v has no event"
	done
	faults_check

	# the web server starts a new responder; writes go on
	faults_wait_health 20
	note_change "$b" 'after the restart'
	head=$EVENT_ID
	# the client resumes from its last complete event and misses nothing
	last=$(sse_ids "$(sse_body g1)" | tail -n 1)
	sse_open g2 /api/v1/stream/events -H "Last-Event-ID: $last"
	sse_wait_connected g2
	local h2=$CONNECTED_HEAD
	sse_wait_id g2 "$head" 5
	note_change "$c" 'live after the resume'
	sse_wait_id g2 "$EVENT_ID" 3
	sse_close g2
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id >= $h AND id <= $last"
	} >"$d/g1.expected"
	sse_strip_pings g1 "$d/g1.got" 0
	assert_same_file "$d/g1.expected" "$d/g1.got" "stream ended by SIGTERM"
	{
		sse_retry_text
		sse_connected_text "$h2"
		sse_db_text "id > $last AND id <= $EVENT_ID"
	} >"$d/g2.expected"
	sse_strip_pings g2 "$d/g2.got" 0
	assert_same_file "$d/g2.expected" "$d/g2.got" "stream resumed from $last after the stop"
	assert_no_sanitizer_report
}

# The same stop under continuous load: every answer is whole (2xx from the
# responder, or the web server's own error while no responder runs), never
# a response cut short, and everything acknowledged is in the database.
fcase_graceful_stop_under_load() {
	faults_instance ORDERS_BUSY_TIMEOUT_MS=5000
	local log=$BATS_TEST_TMPDIR/load.jsonl pid t0 ms
	pid=$(faults_wait_responder 10) || fail "no orders.fcgi child of lighttpd"
	sse_open gl /api/v1/stream/events -H 'Last-Event-ID: 0'
	sse_wait_connected gl
	faults_load_start "$log" term
	faults_wait_ok "$log" 80 30 || fail "the writers did not get 80 answers in 30 s: $(faults_kinds "$log")"
	t0=$(now_ms)
	kill -TERM "$pid"
	faults_wait_gone "$pid" 8 || fail "responder $pid still running 8 s after SIGTERM under load"
	ms=$(($(now_ms) - t0))
	((ms <= 5000)) || fail "responder $pid took $ms ms to exit after SIGTERM under load"
	faults_wait_ok "$log" $(($(faults_ok_count "$log") + 40)) 40 ||
		fail "no 40 more 2xx within 40 s after the stop: $(faults_kinds "$log")"
	faults_load_stop "$log"
	echo "# SIGTERM under load: exited after $ms ms; $(faults_kinds "$log")" >&3
	wait_child_gone "$(sse_pid gl)" 6 || fail "the stream did not end after SIGTERM"
	local rc=0
	wait "$(sse_pid gl)" || rc=$?
	((rc == 0)) || fail "the stream did not end cleanly: curl exit $rc"
	[[ $(tail -c 2 "$(sse_body gl)" | od -An -c | tr -d ' ') == '\n\n' ]] ||
		fail "the stream does not end after a complete event: $(tail -c 200 "$(sse_body gl)" | sed -n l)"
	if grep -q '"kind":"truncated"' "$log"; then
		fail "responses cut short by the stop: $(grep '"kind":"truncated"' "$log" | head -n 5)"
	fi
	# no kill: a request the stopping responder took is answered; one it did
	# not take (lighttpd's own error) must have changed nothing
	faults_check --strict-errors "$log"
	# the stream's text is exactly the table's events up to its last one
	local d last
	d=$(stream_dir)
	last=$(sse_ids "$(sse_body gl)" | tail -n 1)
	{
		sse_retry_text
		sse_connected_text 0
		sse_db_text "id <= ${last:-0}"
	} >"$d/gl.expected"
	sse_strip_pings gl "$d/gl.got" 0
	assert_same_file "$d/gl.expected" "$d/gl.got" "stream ended by SIGTERM under load"
}

# faults_wait_gone_ms PID MS: like faults_wait_gone, in milliseconds.
faults_wait_gone_ms() {
	local deadline=$(($(now_ms) + $2))
	while faults_alive "$1"; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.02
	done
}

# faults_threads_report PID: each thread's state, syscall and CPU ticks over
# 0.5 s (what a stop that does not end is doing).
faults_threads_report() {
	local pid=$1 t
	local -A ticks=()
	for t in /proc/"$pid"/task/*; do
		ticks[${t##*/}]=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)
	done
	sleep 0.5
	for t in /proc/"$pid"/task/*; do
		printf 'thread %s: state %s, syscall %s, wchan %s, %s CPU ticks in 0.5 s\n' "${t##*/}" \
			"$(awk '{print $3}' "$t/stat" 2>/dev/null)" "$(cut -d' ' -f1-2 "$t/syscall" 2>/dev/null)" \
			"$(cat "$t/wchan" 2>/dev/null)" \
			"$(($(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0) - ${ticks[${t##*/}]:-0}))"
	done
}

# Repeated SIGTERM under write load (6 writers, so that lighttpd keeps
# connecting): with no slow request in flight, each stop must be prompt.
# A stop that takes the responder's whole 4.5 s emergency deadline means a
# thread did not finish (it exits then without the clean shutdown); the
# failure message shows what the threads were doing.
fcase_repeated_stop_under_load() {
	faults_instance ORDERS_BUSY_TIMEOUT_MS=5000
	local log=$BATS_TEST_TMPDIR/load.jsonl k pid t0 ms slow=() report="" times=()
	faults_load_start "$log" rterm 6
	for k in $(seq 1 25); do
		pid=$(faults_wait_responder 20) || fail "stop $k: no responder under lighttpd"
		faults_wait_ok "$log" $(($(faults_ok_count "$log") + 30)) 40 ||
			fail "stop $k: no 30 more 2xx within 40 s: $(faults_kinds "$log")"
		t0=$(now_ms)
		kill -TERM "$pid"
		if ! faults_wait_gone_ms "$pid" 1500 && [[ -z $report ]]; then
			report="responder $pid, still running 1.5 s after SIGTERM:
$(faults_threads_report "$pid")"
		fi
		faults_wait_gone "$pid" 8 || fail "stop $k: responder $pid still running 8 s after SIGTERM"
		ms=$(($(now_ms) - t0))
		times+=("$ms")
		((ms <= 3000)) || slow+=("stop $k: $ms ms")
	done
	faults_load_stop "$log"
	echo "# 25 stops under load, ms: ${times[*]}" >&3
	faults_check --strict-errors "$log"
	((${#slow[@]} == 0)) || fail "${#slow[@]} of 25 stops took more than 3 s with only millisecond requests in flight (the 4.5 s deadline): ${slow[*]}
$report"
}

# ---------------------------------------------------------------- 6. /health when the database does not answer

# faults_checkpoint: PRAGMA wal_checkpoint(TRUNCATE) from another connection:
# every page back in the database file and the WAL restarted, so that every
# connection of the responders drops its page cache at its next read.
faults_checkpoint() {
	local out i
	for i in 1 2 3 4 5; do
		out=$(db 'PRAGMA wal_checkpoint(TRUNCATE)')
		[[ $out == 0\|* ]] && return 0
		sleep 0.2
	done
	fail "PRAGMA wal_checkpoint(TRUNCATE) stayed busy: $out"
}

# /health is the readiness check: 503 unavailable (with Retry-After, as every
# 503) when the database does not answer. Another process's lock does not
# make it so: in WAL mode a writer never blocks readers (fcase_db_locked
# holds /health to 200 under BEGIN EXCLUSIVE), and a responder opens its
# connections once, at start, so taking the file's permissions away later
# changes nothing. What stops the database from answering a running
# responder is the file going bad under it (a bad sector, a stray write):
# here the page of sqlite_sequence, where /health reads the head, is
# overwritten with zeros behind SQLite's back, after a checkpoint (so that
# the WAL holds no newer copy of it). /health answers 503 from every
# thread (and process); a write meanwhile is refused and leaves nothing;
# once the page is back, /health answers 200 with the same head, without a
# restart, and writes go on.
fcase_health_db_unavailable() {
	faults_sqlite_only "SQLite-only: a page of the database file is overwritten (on PostgreSQL: the server stopped mid-run case)"
	faults_instance
	local a h root psize saved pid="" i ra
	create_order "$(order_json 'Health A')"
	a=$OID
	note_change "$a" 'before the damage'
	h=$EVENT_ID
	api GET /api/v1/health
	assert_status 200
	assert_jq '.lastEventId' "$h"
	on_apache || pid=$(faults_responder_pid) || fail "no orders.fcgi child of lighttpd"
	root=$(db "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_sequence'")
	psize=$(db 'PRAGMA page_size')
	((root > 1 && psize >= 512)) || fail "sqlite_sequence at page [$root], page size [$psize]"
	saved=$BATS_TEST_TMPDIR/sqlite_sequence.page
	faults_checkpoint
	dd if="$ORDERS_DBFILE" of="$saved" bs="$psize" skip=$((root - 1)) count=1 status=none
	dd if=/dev/zero of="$ORDERS_DBFILE" bs="$psize" seek=$((root - 1)) count=1 conv=notrunc status=none
	faults_checkpoint

	for i in 1 2 3 4 5 6; do
		api GET /api/v1/health
		assert_error 503 unavailable
		ra=$(hdr Retry-After) || fail "503 without Retry-After: $(_resp)"
		[[ $ra =~ ^[0-9]+$ ]] || fail "Retry-After [$ra] is not delay-seconds"
	done
	echo "# /health with sqlite_sequence's page zeroed: $STATUS $BODY" >&3
	snap
	api_json PATCH "/api/v1/orders/$a" '{"note":"while the database does not answer"}'
	[[ $STATUS == 5?? ]] || fail "a PATCH while the database does not answer: $(_resp)"
	assert_error "$STATUS" "$(jf .error.code)"
	assert_unchanged
	echo "# PATCH meanwhile: $STATUS $BODY" >&3

	dd if="$saved" of="$ORDERS_DBFILE" bs="$psize" seek=$((root - 1)) count=1 conv=notrunc status=none
	faults_checkpoint
	for i in 1 2 3 4 5 6; do
		api GET /api/v1/health
		assert_status 200
		assert_json_ct
		assert_jq '[.status, .lastEventId, (.streams | type)]' "[\"ok\",$h,\"number\"]"
	done
	[[ -z $pid ]] || [[ $(faults_responder_pid) == "$pid" ]] ||
		fail "the responder was restarted (pid $pid, now $(faults_responder_pid))"
	note_change "$a" 'after the repair'
	((EVENT_ID == h + 1)) || fail "the write after the repair got event $EVENT_ID, expected $((h + 1))"
	[[ $(db 'PRAGMA integrity_check') == ok ]] || fail "integrity_check: $(db 'PRAGMA integrity_check' | head -n 5)"
	faults_check
	assert_no_sanitizer_report
}

# ---------------------------------------------------------------- 7. online backup

# faults_backup_check COPY BEFORE_MS LOG: the copy is whole and consistent in
# itself (faults_tools.py check: versions and events agree, sequences) and
# against the live file and the load log (faults_tools.py backup-check:
# user_version, every 2xx acknowledged before BEFORE_MS there with its
# event, its events a prefix of the live ones). Summary in BACKUP_CHECK.
faults_backup_check() {
	local out rc=0
	out=$(python3 "$FAULTS_TOOLS" check --db "$1" 2>&1) || rc=$?
	((rc == 0)) || fail "the copy $1 is not consistent in itself (rc $rc):
$(jq . <<<"$out" 2>/dev/null || echo "$out")"
	out=$(python3 "$FAULTS_TOOLS" backup-check --copy "$1" --live "$ORDERS_DBFILE" \
		--before "$2" --log "$3" 2>&1) || rc=$?
	((rc == 0)) || fail "backup check of $1 failed (rc $rc):
$(jq . <<<"$out" 2>/dev/null || echo "$out")"
	BACKUP_CHECK=$out
}

# faults_take_copy LOG WHAT SQL: sqlite3 runs SQL on the live file as the
# service's user (within 30 s), then the load must get 20 more 2xx. Sets
# COPY_T0 (when it started, ms) and COPY_MS (how long it took).
faults_take_copy() {
	local log=$1 what=$2 rc=0 n
	COPY_T0=$(now_ms)
	as_run_user timeout 30 sqlite3 -bail "$ORDERS_DBFILE" ".timeout 10000" "$3" \
		</dev/null >"$BATS_TEST_TMPDIR/copy.out" 2>&1 || rc=$?
	COPY_MS=$(($(now_ms) - COPY_T0))
	((rc == 0)) || fail "$what failed (rc $rc, after $COPY_MS ms): $(cat "$BATS_TEST_TMPDIR/copy.out")"
	n=$(faults_ok_count "$log")
	faults_wait_ok "$log" $((n + 20)) 30 || fail "no 20 more 2xx within 30 s after $what: $(faults_kinds "$log")"
}

# The README's backups, under 3 writers through the API: sqlite3's .backup
# (the online backup API) and VACUUM INTO, each run as the service's user
# (it must write the -shm file) while writes go on. Each copy opens, is whole,
# has the live schema version, holds every write acknowledged before it
# started with its event, and its events are exactly the live ones up to its
# last. Both commands must finish within 30 s under the load.
fcase_online_backup() {
	faults_sqlite_only "SQLite-only: sqlite3's .backup and VACUUM INTO of the live file"
	faults_instance ORDERS_BUSY_TIMEOUT_MS=5000
	local log=$BATS_TEST_TMPDIR/load.jsonl dir=$ORDERS_TMP t1 t2 ms1 ms2 c1 c2
	faults_load_start "$log" backup 3
	faults_wait_ok "$log" 60 30 || fail "the writers did not get 60 answers in 30 s: $(faults_kinds "$log")"

	faults_take_copy "$log" .backup ".backup '$dir/copy-backup.db'"
	t1=$COPY_T0 ms1=$COPY_MS
	faults_take_copy "$log" "VACUUM INTO" "VACUUM INTO '$dir/copy-vacuum.db'"
	t2=$COPY_T0 ms2=$COPY_MS
	faults_load_stop "$log"
	faults_check "$log"

	faults_backup_check "$dir/copy-backup.db" "$t1" "$log"
	c1=$BACKUP_CHECK
	faults_backup_check "$dir/copy-vacuum.db" "$t2" "$log"
	c2=$BACKUP_CHECK
	# the copies were taken while writes went on, not after them
	(($(jq .acked_later <<<"$c1") > 0)) || fail ".backup: no write acknowledged after it started: $c1"
	(($(jq .acked_later <<<"$c2") > 0)) || fail "VACUUM INTO: no write acknowledged after it started: $c2"
	echo "# .backup: $ms1 ms, $(jq -c '{acked_before, max_event_id}' <<<"$c1"), journal_mode $(sqlite3 "$dir/copy-backup.db" 'PRAGMA journal_mode')" >&3
	echo "# VACUUM INTO: $ms2 ms, $(jq -c '{acked_before, max_event_id}' <<<"$c2"), journal_mode $(sqlite3 "$dir/copy-vacuum.db" 'PRAGMA journal_mode')" >&3
	echo "# live: $(db_head) events, $(db 'PRAGMA page_count') pages; load: $(faults_kinds "$log")" >&3
}

# ---------------------------------------------------------------- 9. PostgreSQL
# Run by tests/faults-pg.bats only (the suite's cluster of tests/lib/pg.bash):
# the server stopped mid-run and started again, the responder started while
# it is down, a deadlock between the service and a psql session, and a full
# disk (SQLSTATE 53100) raised by a test-only trigger.

# faults_pg_lines TEXT: how many lines with TEXT the responders wrote (every
# file their stderr reaches).
faults_pg_lines() {
	local -a files
	mapfile -t files < <(responder_stderr_files)
	((${#files[@]})) || { echo 0; return 0; }
	cat "${files[@]}" 2>/dev/null | grep -c -F -- "$1" || true
}

# faults_pg_log: the responders' lines about PostgreSQL, for messages.
faults_pg_log() {
	local -a files
	mapfile -t files < <(responder_stderr_files)
	((${#files[@]})) || return 0
	grep -h -F PostgreSQL "${files[@]}" 2>/dev/null || true
}

# faults_pg_ensure_up: the suite's cluster runs again (after a case that
# stopped it failed half way); from teardown.
faults_pg_ensure_up() {
	on_postgresql || return 0
	[[ -n ${PG_DATA_DIR:-} && -d $PG_DATA_DIR ]] || return 0
	if ! "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -t 2 2>/dev/null; then
		pg_restart
	fi
}

# faults_pg_503 METHOD PATH [JSON]: the request gets 503 unavailable with
# Retry-After: 1 and the JSON error.
faults_pg_503() {
	if (($# > 2)); then api_json "$1" "$2" "$3"; else api "$1" "$2"; fi
	assert_error 503 unavailable
	assert_hdr Retry-After 1
}

# faults_pg_wait_get STATUS SECONDS PATH: until GET PATH answers STATUS
# (at most SECONDS); WAITED_MS is how long that took.
faults_pg_wait_get() {
	local want=$1 t0 deadline
	t0=$(now_ms)
	deadline=$((t0 + $2 * 1000))
	while :; do
		api GET "$3"
		[[ $STATUS == "$want" ]] && break
		(($(now_ms) < deadline)) || fail "GET $3 did not answer $want within $2 s: $(_resp)"
		sleep 0.1
	done
	WAITED_MS=$(($(now_ms) - t0))
}

# The server stops mid-run (pg_kill: immediate, as a crash; the data stays):
# reads, writes and /health get 503 unavailable with Retry-After: 1 and the
# JSON error, the responder logs one "does not answer" line for the outage
# however many requests meet it; once the server is started again
# (pg_restart) requests succeed within a few seconds, the log says "answers
# again", and a stream opened before the outage stays open and receives the
# events written after it, with no gap.
fcase_pg_server_stopped() {
	faults_instance
	local a h d i t0 ms last
	create_order "$(order_json 'Before The Outage')"
	a=$OID
	h=$(db_head)
	d=$(stream_dir)
	sse_open across /api/v1/stream/events -H "Last-Event-ID: $h"
	sse_wait_connected across
	[[ $(faults_pg_lines 'PostgreSQL does not answer') == 0 ]] || fail "an outage logged before the outage"
	pg_kill
	t0=$(now_ms)
	for i in 1 2 3; do
		faults_pg_503 GET "/api/v1/orders/$a"
		faults_pg_503 GET /api/v1/orders
		faults_pg_503 POST /api/v1/orders "$(order_json "During The Outage $i")"
		faults_pg_503 PATCH "/api/v1/orders/$a" "{\"note\":\"during the outage $i\"}"
		faults_pg_503 GET /api/v1/health
		faults_pg_503 GET "/api/v1/events?after=0"
		sleep 0.7
	done
	# the open stream is still open (pings go on)
	child_running "$(sse_pid across)" || fail "the stream ended during the outage: $(tail -c 300 "$(sse_body across)")"
	[[ $(faults_pg_lines 'PostgreSQL does not answer') == 1 ]] ||
		fail "expected one 'does not answer' line for the outage, have $(faults_pg_lines 'PostgreSQL does not answer'): $(faults_pg_log)"
	[[ $(faults_pg_lines 'PostgreSQL answers again') == 0 ]] || fail "'answers again' logged while the server is down"
	pg_restart
	faults_pg_wait_get 200 10 "/api/v1/orders/$a"
	ms=$WAITED_MS
	echo "# outage $(($(now_ms) - t0)) ms; GET answers 200 $ms ms after the restart" >&3
	assert_jq .version 1
	api GET /api/v1/health
	assert_status 200
	assert_jq '.backend + " " + .database' '"postgresql reachable"'
	note_change "$a" 'after the outage'
	create_order "$(order_json 'After The Outage')"
	last=$(db_head)
	[[ $(faults_pg_lines 'PostgreSQL answers again') -ge 1 ]] || fail "no 'answers again' line after the restart"
	[[ $(faults_pg_lines 'PostgreSQL does not answer') == 1 ]] ||
		fail "more than one 'does not answer' line for one outage: $(faults_pg_log)"
	# nothing written during the outage, the stream goes on with no gap
	[[ $(db "SELECT count(*) FROM orders WHERE customer LIKE 'During The Outage%'") == 0 ]] ||
		fail "a write refused with 503 is in the database"
	sse_wait_id across "$last" 5
	sse_close across
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $h AND id <= $last"
	} >"$d/across.expected"
	sse_strip_pings across "$d/across.got" 0
	assert_same_file "$d/across.expected" "$d/across.got" "stream open across the restart of PostgreSQL"
}

# The responder starts while the server is down (its database is new: not
# migrated yet): /health and the API answer 503 unavailable with
# Retry-After: 1; once the server is started the schema is migrated and
# everything works.
fcase_pg_start_while_down() {
	[[ -n $STREAM_HOME_TMP ]] || STREAM_HOME_TMP=${ORDERS_TMP:-}
	instance_new
	STREAM_AUX_DIRS+=("$ORDERS_TMP")
	instance_chown
	[[ $(db "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()
	          AND table_name = 'orders'") == 0 ]] || fail "the new database has a schema already"
	pg_kill
	faults_launch_server "${STREAM_SUITE_ENV[@]}"
	bg_track "$ORDERS_SERVER_PID"
	local deadline=$(($(now_ms) + 15000)) i
	while :; do
		api GET /api/v1/health
		[[ $STATUS == 503 ]] && break
		(($(now_ms) < deadline)) || fail "/health did not answer 503 while PostgreSQL is down: $(_resp)"
		sleep 0.1
	done
	for i in 1 2; do
		faults_pg_503 GET /api/v1/health
		faults_pg_503 GET /api/v1/orders
		faults_pg_503 POST /api/v1/orders "$(order_json 'While Down')"
		sleep 0.5
	done
	pg_restart
	faults_pg_wait_get 200 10 /api/v1/health
	echo "# /health 200 $WAITED_MS ms after PostgreSQL started" >&3
	assert_jq '.backend + " " + .database' '"postgresql reachable"'
	[[ $(db "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()
	          AND table_name IN ('orders', 'events', 'idempotency_keys', 'event_log_state')") == 4 ]] ||
		fail "the schema was not migrated once PostgreSQL answered"
	create_order "$(order_json 'After The Start')"
	[[ $(db "SELECT count(*) FROM orders WHERE customer = 'While Down'") == 0 ]] || fail "a refused write is there"
	[[ $(db "SELECT count(*) FROM events WHERE order_id = '$OID' AND type = 'order.created'") == 1 ]] ||
		fail "no order.created event for $OID"
}

# A deadlock: a psql session locks order A (SELECT ... FOR UPDATE); the
# service's PATCH of A takes the event counter (event_log_state) and waits
# for A; then the session updates order B, whose trigger needs the counter.
# PostgreSQL aborts one side after deadlock_timeout: the PATCH still ends
# 200 (the service retries 40P01), and the session's change is there, or
# is made again by the test when its side was the one aborted.
fcase_pg_deadlock() {
	faults_instance
	local a b d rc=0 waits deadline dl0 dl1 out
	create_order "$(order_json 'Deadlock A')"
	a=$OID
	create_order "$(order_json 'Deadlock B')"
	b=$OID
	d=$BATS_TEST_TMPDIR
	dl0=$(grep -c 'deadlock detected' "$PG_TMP_DIR/server.log" || true)
	"$PG_BINDIR/psql" -X -At -d "$ORDERS_DB_URL" >"$d/session.out" 2>&1 3>&- <<EOF_SQL &
BEGIN;
SELECT id FROM orders WHERE id = '$a' FOR UPDATE;
\! touch '$d/session.locked'
\! n=0; while [ ! -e '$d/session.go' ] && [ \$n -lt 300 ]; do sleep 0.05; n=\$((n + 1)); done
UPDATE orders SET note = 'from the psql session' WHERE id = '$b';
COMMIT;
EOF_SQL
	local spid=$!
	bg_track "$spid"
	deadline=$(($(now_ms) + 10000))
	until [[ -e $d/session.locked ]]; do
		(($(now_ms) < deadline)) || fail "the psql session did not lock $a: $(cat "$d/session.out")"
		sleep 0.05
	done
	# the PATCH, in the background
	curl -sS --max-time 30 -o "$d/patch.body" -w '%{http_code}' -X PATCH -H 'Content-Type: application/json' \
		--data-binary '{"note":"from the service"}' "$API_BASE/api/v1/orders/$a" >"$d/patch.status" 2>"$d/patch.err" 3>&- &
	local cpid=$!
	bg_track "$cpid"
	# until it waits for the lock on A
	deadline=$(($(now_ms) + 10000))
	while :; do
		waits=$(db "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		             AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'")
		((waits >= 1)) && break
		(($(now_ms) < deadline)) || fail "the service's PATCH never waited for the row lock of $a"
		sleep 0.05
	done
	touch "$d/session.go"
	wait_child_gone "$spid" 20 || fail "the psql session did not end within 20 s"
	wait "$spid" || true
	wait_child_gone "$cpid" 30 || fail "the PATCH did not end within 30 s"
	wait "$cpid" || rc=$?
	((rc == 0)) || fail "curl failed ($rc): $(cat "$d/patch.err")"
	dl1=$(grep -c 'deadlock detected' "$PG_TMP_DIR/server.log" || true)
	((dl1 > dl0)) || fail "PostgreSQL detected no deadlock (server.log): the case did not build one; session: $(cat "$d/session.out")"
	[[ $(cat "$d/patch.status") == 200 ]] || fail "the PATCH of $a ended $(cat "$d/patch.status"): $(cat "$d/patch.body")"
	BODY=$(cat "$d/patch.body")
	assert_jq .note '"from the service"'
	assert_jq .version 2
	out=$(cat "$d/session.out")
	if [[ $(db "SELECT note FROM orders WHERE id = '$b'") != 'from the psql session' ]]; then
		[[ $out == *deadlock* ]] || fail "the session's change is missing, and it was not the deadlock's victim: $out"
		echo "# the psql session was the deadlock's victim; its change made again" >&3
		db "UPDATE orders SET note = 'from the psql session' WHERE id = '$b'"
	else
		echo "# the service was the deadlock's victim and retried" >&3
	fi
	# each change once, with its event
	[[ $(db "SELECT count(*) FROM events WHERE order_id = '$a' AND type = 'order.updated'") == 1 ]] ||
		fail "order $a: $(db "SELECT count(*) FROM events WHERE order_id = '$a' AND type = 'order.updated'") order.updated events, expected 1"
	[[ $(db "SELECT count(*) FROM events WHERE order_id = '$b' AND type = 'order.updated'") == 1 ]] ||
		fail "order $b: $(db "SELECT count(*) FROM events WHERE order_id = '$b' AND type = 'order.updated'") order.updated events, expected 1"
	api GET "/api/v1/orders/$b"
	assert_jq '.note + " " + (.version|tostring)' '"from the psql session 2"'
}

# A full disk (SQLSTATE 53100) raised by a test-only trigger on orders:
# POST and PATCH answer 507 insufficient_storage and change nothing; reads
# go on; once the trigger is dropped, writes work.
fcase_pg_disk_full() {
	faults_instance
	local a
	create_order "$(order_json 'Disk Full A')"
	a=$OID
	db "CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS \$\$
	    BEGIN RAISE EXCEPTION 'could not extend file: No space left on device (test)' USING ERRCODE = 'disk_full'; END \$\$" \
		"CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION test_disk_full()"
	snap
	api_json POST /api/v1/orders "$(order_json 'Disk Full B')" -H 'Idempotency-Key: disk-full-1'
	assert_error 507 insufficient_storage
	assert_unchanged
	api_json PATCH "/api/v1/orders/$a" '{"note":"no room"}'
	assert_error 507 insufficient_storage
	assert_unchanged
	api_json PATCH "/api/v1/orders/$a" '{"status":"paid"}' -H "If-Match: \"1\""
	assert_error 507 insufficient_storage
	assert_unchanged
	api GET "/api/v1/orders/$a"
	assert_status 200
	api GET /api/v1/health
	assert_status 200
	db 'DROP TRIGGER test_disk_full ON orders' 'DROP FUNCTION test_disk_full()'
	api_json POST /api/v1/orders "$(order_json 'Disk Full B')" -H 'Idempotency-Key: disk-full-1'
	assert_status 201
	api_json PATCH "/api/v1/orders/$a" '{"note":"room again"}'
	assert_status 200
	assert_jq .version 2
}

# A constraint the database refuses a write with (a test-only trigger:
# RAISE(ABORT) on SQLite, SQLSTATE 23514 check_violation on PostgreSQL)
# gives the same answer on both backends: 500 internal_error, nothing
# changed, the database's message in the responder's log and not in the
# answer; once the trigger is gone, the same write works.
fcase_constraint_refused() {
	faults_instance
	local a
	create_order "$(order_json 'Constraint A')"
	a=$OID
	if on_postgresql; then
		db "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
		    BEGIN RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = 'check_violation'; END \$\$" \
			"CREATE TRIGGER test_refuse BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION test_refuse()"
	else
		db "CREATE TRIGGER test_refuse BEFORE UPDATE ON orders BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
	fi
	snap
	api_json PATCH "/api/v1/orders/$a" '{"note":"refused"}'
	assert_error 500 internal_error
	[[ $BODY != *"test trigger"* ]] || fail "the database's message reached the client: $BODY"
	assert_unchanged
	api GET "/api/v1/orders/$a"
	assert_status 200
	assert_jq .version 1
	if on_postgresql; then
		db 'DROP TRIGGER test_refuse ON orders' 'DROP FUNCTION test_refuse()'
	else
		db 'DROP TRIGGER test_refuse'
	fi
	api_json PATCH "/api/v1/orders/$a" '{"note":"accepted"}'
	assert_status 200
	assert_jq .version 2
	local -a logs
	mapfile -t logs < <(responder_stderr_files)
	grep -q 'refused by a test trigger' "${logs[@]}" ||
		fail "the responder did not log the database's message"
}

# libpq's PG* variables fill in what the URI leaves out: with
# ORDERS_DB=postgresql:// alone, PGHOST, PGPORT, PGUSER and PGDATABASE say
# where, and the responder migrates that database; a URI's own values win
# over them.
fcase_pg_environment() {
	local bin url name=pg_env_$$
	bin=$(orders_binary) || return 1
	url=$(pg_new_db "$name") || fail "cannot create database $name"
	run env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
		PGHOST=127.0.0.1 PGPORT="$PGPORT" PGUSER="$PGUSER" PGDATABASE="$name" \
		ORDERS_DB=postgresql:// "$bin" --migrate </dev/null
	((status == 0)) || fail "--migrate with ORDERS_DB=postgresql:// and PG* set failed ($status): $output"
	[[ $(pg_sql "$url" 'SELECT count(*) FROM orders_schema_version') -ge 1 ]] ||
		fail "the database PGDATABASE names was not migrated"
	# the URI names the port: a wrong PGPORT does not matter
	run env PGPORT=1 ORDERS_DB="$url" "$bin" --migrate </dev/null
	((status == 0)) || fail "the URI's port did not win over PGPORT ($status): $output"
	# and PGPORT alone, wrong, is used when the URI leaves the port out
	run env -u PGHOST PGHOST=127.0.0.1 PGPORT=1 PGUSER="$PGUSER" \
		ORDERS_DB="postgresql:///$name" "$bin" --migrate </dev/null
	((status == 1)) || fail "a wrong PGPORT was not used ($status): $output"
	[[ $output == *"cannot connect to ORDERS_DB"* ]] || fail "no clear line: $output"
}

# A database whose schema is newer than the responder's (a newer release
# migrated it) stops the responder at start with one line, as on SQLite:
# --migrate and a plain start both exit 1 and change nothing.
fcase_pg_newer_schema() {
	local bin url name=pg_newer_$$ before
	bin=$(orders_binary) || return 1
	url=$(pg_new_db "$name") || fail "cannot create database $name"
	run env ORDERS_DB="$url" "$bin" --migrate </dev/null
	((status == 0)) || fail "the first --migrate failed ($status): $output"
	pg_sql "$url" "INSERT INTO orders_schema_version (version, name) VALUES (99, '099_future.sql')"
	before=$(pg_sql "$url" 'SELECT string_agg(version::text, $$,$$ ORDER BY version) FROM orders_schema_version')
	for args in --migrate ''; do
		run env ORDERS_DB="$url" "$bin" $args </dev/null
		((status == 1)) || fail "orders.fcgi $args: exit $status, not 1: $output"
		[[ ${#lines[@]} == 1 && $output == *"schema version 99, newer than this responder's"* ]] ||
			fail "orders.fcgi $args: not the one line about the newer schema: $output"
	done
	[[ $(pg_sql "$url" 'SELECT string_agg(version::text, $$,$$ ORDER BY version) FROM orders_schema_version') == "$before" ]] ||
		fail "the version table changed"
}
