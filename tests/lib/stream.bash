# shellcheck shell=bash
# Helpers and cases for the event stream suites (SPEC.md section 4):
# tests/stream.bats (lighttpd) and tests/stream-apache.bats (Apache + mod_fcgid).
#
#   load 'lib/common'
#   load 'lib/stream'
#
# Stream clients are curl processes in the background (sse_open), each writing
# its raw body to a file that the cases compare byte for byte with what the
# events table says they must hold (sse_db_text). Every process a case starts
# is remembered and killed by PID in stream_test_teardown; every wait is bounded.

# The suite's settings. RETRY is not the default so that the test sees it is
# the configured value that reaches the stream.
STREAM_RETRY_MS=2500
STREAM_SUITE_ENV=(ORDERS_PING_S=1 "ORDERS_RETRY_MS=$STREAM_RETRY_MS")

STREAM_BG_PIDS=()    # processes started by the current test
STREAM_AUX_DIRS=()   # instances (temp dir + server) started by the current test
STREAM_HOME_TMP=     # the suite's instance, restored after an aux instance

# ---------------------------------------------------------------- time, processes

now_ms() {
	local t=${EPOCHREALTIME//[!0-9]/}
	echo $((10#$t / 1000))
}

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	[[ -r /proc/$1/stat ]] || return 1
	st=$(<"/proc/$1/stat") 2>/dev/null || return 1
	st=${st##*) }
	[[ ${st%% *} != Z ]]
}

# wait_gone PID SECONDS: wait until PID has exited (or is a zombie).
wait_gone() {
	local deadline=$(($(now_ms) + ${2:-5} * 1000))
	while alive "$1"; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.05
	done
}

bg_track() { STREAM_BG_PIDS+=("$@"); }

# child_running PID: PID is a background job of this shell that still runs.
# Only such a PID is safe to signal: once bash has reaped a job, its PID may
# already belong to somebody else (pid_max is 32768 here, and a suite forks
# tens of thousands of processes).
child_running() {
	[[ -n $1 && " $(jobs -pr | tr '\n' ' ') " == *" $1 "* ]]
}

# wait_child_gone PID SECONDS: wait until our background job PID has ended.
wait_child_gone() {
	local deadline=$(($(now_ms) + ${2:-5} * 1000))
	while child_running "$1"; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.05
	done
}

# bg_kill PID...: TERM those of our background jobs that still run, KILL
# after 3 s, and reap them.
bg_kill() {
	local p
	local -a live=()
	for p in "$@"; do
		child_running "$p" && live+=("$p")
	done
	((${#live[@]})) || return 0
	kill -TERM "${live[@]}" 2>/dev/null || true
	for p in "${live[@]}"; do
		if ! wait_child_gone "$p" 3 && child_running "$p"; then
			kill -KILL "$p" 2>/dev/null || true
		fi
		wait "$p" 2>/dev/null || true
	done
}

_stream_descendants() {
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		printf '%s\n' "$c"
		_stream_descendants "$c"
	done
}

# stream_server_stop: stop the current instance's web server (a background
# job of this shell) and the responders it spawned. Like common's server_stop,
# but a responder that is already a zombie (reparented to an init that does
# not reap) counts as gone.
stream_server_stop() {
	local pid=${ORDERS_SERVER_PID:-} kids p
	[[ -n $pid ]] || return 0
	if child_running "$pid"; then
		kids=$(_stream_descendants "$pid")
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_child_gone "$pid" 10 && child_running "$pid"; then
			echo "server $pid did not stop after TERM; sending KILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	for p in $kids; do
		if ! wait_gone "$p" 5; then
			echo "process $p of server $pid alive 5 s after it stopped; sending KILL" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	ORDERS_SERVER_PID=
	export ORDERS_SERVER_PID
	instance_save
}

# stream_apache_wrapper N: make server_start run Apache with
# FcgidMaxProcessesPerClass N (a directive given after the config files):
# under mod_fcgid every open stream holds a responder process, and the
# shared template allows 8.
stream_apache_wrapper() {
	local real=${APACHE_BIN:-$(command -v apache2 || echo /usr/sbin/apache2)}
	local w=${BATS_FILE_TMPDIR:?}/apache2-streams
	[[ $real == "$w" ]] && return 0
	printf '#!/bin/sh\nexec %q "$@" -c %q\n' "$real" "FcgidMaxProcessesPerClass $1" >"$w"
	chmod 0755 "$w"
	APACHE_BIN=$w
	export APACHE_BIN
}

# apache_with_directives DIRECTIVE...: prints the path of a wrapper around
# APACHE_BIN that gives Apache these directives after its config files (as
# stream_apache_wrapper does), for one instance:
#   APACHE_BIN=$(apache_with_directives 'FcgidBusyTimeout 4') stream_aux_start ...
apache_with_directives() {
	local w d
	w=$(mktemp "${BATS_TEST_TMPDIR:?}/apache2-directives.XXXXXX")
	{
		printf '#!/bin/sh\nexec %q "$@"' "${APACHE_BIN:-$(command -v apache2 || echo /usr/sbin/apache2)}"
		for d in "$@"; do printf ' -c %q' "$d"; done
		printf '\n'
	} >"$w"
	chmod 0755 "$w"
	printf '%s\n' "$w"
}

stream_suite_setup() {
	orders_suite_setup "${STREAM_SUITE_ENV[@]}" "$@"
}

stream_suite_teardown() {
	local rc=0
	if [[ -n ${ORDERS_TMP:-} ]]; then
		stream_server_stop
		instance_remove || rc=$?
	fi
	orders_backend_teardown
	return "$rc"
}

# stream_aux_start VAR=VALUE...: a second instance (temp dir, database,
# server of the same kind) with other settings, for one test. It becomes the
# current instance; stream_test_teardown stops it and returns to the suite's.
stream_aux_start() {
	[[ -n $STREAM_HOME_TMP ]] || STREAM_HOME_TMP=$ORDERS_TMP
	instance_new
	STREAM_AUX_DIRS+=("$ORDERS_TMP")
	migrate_db
	server_start "${STREAM_SUITE_ENV[@]}" "$@"
}

# stream_aux_stop_all: stop and remove every aux instance; fails when one
# of them shows a sanitizer report (instance_remove), after stopping all.
stream_aux_stop_all() {
	local d rc=0
	for d in "${STREAM_AUX_DIRS[@]}"; do
		instance_use "$d"
		stream_server_stop
		instance_remove || rc=1
	done
	STREAM_AUX_DIRS=()
	if [[ -n $STREAM_HOME_TMP ]]; then
		instance_use "$STREAM_HOME_TMP"
		STREAM_HOME_TMP=
	fi
	return "$rc"
}

stream_test_teardown() {
	if [[ ${BATS_TEST_COMPLETED:-} != 1 && -n ${ORDERS_TMP:-} ]]; then
		server_log_tail 20
		local f
		for f in "$(stream_dir)"/*.err; do
			[[ -s $f ]] && { echo "--- $f"; tail -n 5 "$f"; }
		done
	fi
	((${#STREAM_BG_PIDS[@]} == 0)) || bg_kill "${STREAM_BG_PIDS[@]}"
	STREAM_BG_PIDS=()
	((${#STREAM_AUX_DIRS[@]} == 0)) || stream_aux_stop_all
}

# ---------------------------------------------------------------- stream clients

stream_dir() {
	local d=${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-$ORDERS_TMP/curl}}/sse
	mkdir -p "$d"
	printf '%s\n' "$d"
}

sse_body() { printf '%s/%s.body\n' "$(stream_dir)" "$1"; }
sse_hdrs() { printf '%s/%s.hdr\n' "$(stream_dir)" "$1"; }

# sse_open NAME PATH [curl args...]: start a stream client (curl -sN) in the
# background. Its body goes to $(sse_body NAME), its headers to $(sse_hdrs NAME),
# its PID to SSE_PID_<NAME>. API_BASE is read now, so a case may point one
# client at another server.
sse_open() {
	local name=$1 path=$2 d
	shift 2
	d=$(stream_dir)
	: >"$d/$name.body"
	: >"$d/$name.hdr"
	curl -sS -N --path-as-is -g --max-time "${SSE_MAX_TIME:-90}" \
		-D "$d/$name.hdr" -o "$d/$name.body" "$@" "$API_BASE$path" \
		</dev/null 2>"$d/$name.err" 3>&- &
	printf -v "SSE_PID_$name" '%s' "$!"
	bg_track "$!"
}

sse_pid() { local v="SSE_PID_$1"; printf '%s\n' "${!v:-}"; }

# sse_close NAME: stop the client (if it still runs).
sse_close() { bg_kill "$(sse_pid "$1")"; }

# sse_content NAME: the body received so far, in SSE_TEXT (trailing newlines kept).
sse_content() {
	SSE_TEXT=
	IFS= read -r -d '' SSE_TEXT <"$(sse_body "$1")" || true
}

# sse_wait NAME TEXT [SECONDS]: wait until the body of NAME contains TEXT.
# Sets WAITED_MS. Fails the test with what was received on timeout.
sse_wait() {
	local name=$1 text=$2 secs=${3:-5} t0 deadline
	t0=$(now_ms)
	deadline=$((t0 + secs * 1000))
	while :; do
		sse_content "$name"
		if [[ $SSE_TEXT == *"$text"* ]]; then
			WAITED_MS=$(($(now_ms) - t0))
			return 0
		fi
		if (($(now_ms) >= deadline)); then
			fail "stream $name: no $(printf '%q' "$text") within $secs s; received $(wc -c <"$(sse_body "$name")") bytes, ending: $(tail -c 400 "$(sse_body "$name")" | sed -n l)
$(cat "$(stream_dir)/$name.err" 2>/dev/null)"
			return 1
		fi
		sleep 0.02
	done
}

# sse_wait_id NAME ID [SECONDS]: wait for the event with that id on NAME.
sse_wait_id() { sse_wait "$1" $'\nid: '"$2"$'\n' "${3:-5}"; }

# sse_wait_connected NAME: wait for the connected event; sets CONNECTED_HEAD.
sse_wait_connected() {
	sse_wait "$1" $'event: connected\ndata: {"message":"Connected to event stream","lastEventId":' "${2:-10}" || return 1
	sse_wait "$1" $'}\n\n' 2 || return 1
	sse_content "$1"
	CONNECTED_HEAD=$(sed -n 's/^data: {"message":"Connected to event stream","lastEventId":\([0-9]*\)}$/\1/p' <<<"$SSE_TEXT" | head -n 1)
	[[ $CONNECTED_HEAD =~ ^[0-9]+$ ]] || fail "stream $1: bad connected event: $(sed -n l <<<"$SSE_TEXT" | head -5)"
}

# sse_hdr NAME HEADER: value of a response header of stream NAME (last block).
sse_hdr() {
	local HEADERS # read by common's hdr
	# shellcheck disable=SC2034
	HEADERS=$(tr -d '\r' <"$(sse_hdrs "$1")" | awk '/^HTTP\//{blk=""} {blk=blk $0 "\n"} END{printf "%s", blk}')
	hdr "$2"
}

# sse_wait_headers NAME [SECONDS]: until the response headers of NAME are in.
sse_wait_headers() {
	local f deadline
	f=$(sse_hdrs "$1")
	deadline=$(($(now_ms) + ${2:-10} * 1000))
	until grep -q $'^\r*$' "$f" 2>/dev/null; do
		(($(now_ms) < deadline)) || fail "stream $1: no response headers within ${2:-10} s: $(cat "$(stream_dir)/$1.err")"
		sleep 0.02
	done
}

sse_status() { tr -d '\r' <"$(sse_hdrs "$1")" | awk '/^HTTP\//{s=$2} END{print s}'; }

# assert_stream_headers NAME: status 200 and the headers of SPEC section 4.
assert_stream_headers() {
	local name=$1 st v
	st=$(sse_status "$name")
	[[ $st == 200 ]] || fail "stream $name: status $st; headers: $(cat "$(sse_hdrs "$name")")"
	v=$(sse_hdr "$name" Content-Type) || fail "stream $name: no Content-Type"
	[[ $v == 'text/event-stream; charset=utf-8' ]] || fail "stream $name: Content-Type [$v]"
	v=$(sse_hdr "$name" Cache-Control) || fail "stream $name: no Cache-Control"
	[[ $v == no-cache ]] || fail "stream $name: Cache-Control [$v]"
	v=$(sse_hdr "$name" X-Accel-Buffering) || fail "stream $name: no X-Accel-Buffering"
	[[ $v == no ]] || fail "stream $name: X-Accel-Buffering [$v]"
	if v=$(sse_hdr "$name" Content-Length); then
		fail "stream $name: must have no Content-Length, has [$v]"
	fi
}

# ---------------------------------------------------------------- expected text

# The expected text of log events, built in Python from the raw columns of
# `events`, not with SQLite's JSON functions (the service's own way,
# src/eventlog.c): an oracle that shares the code under test agrees with it
# whatever it does. SPEC section 4 and section 2: data is the object
# {"type","id","patch","ts"} in that order, written compact; patch is the
# row's JSON with its keys in their order (duplicates kept, as they are
# text); strings are UTF-8, escaping only '"', '\' and control characters
# (\b \t \n \f \r, else \u00xx); integers in decimal. A patch that is not
# JSON (strict RFC 8259: no NaN, no raw control characters) is sent as a
# JSON string (README, "A hand-made event"). No event holds a non-integer
# number and SPEC does not say how one is written: the oracle stops there.
# shellcheck disable=SC2016
SSE_ORACLE=$ORDERS_TESTS_LIB/sse_oracle.py

# sse_db_text WHERE: the exact stream text of the log rows matching the SQL
# condition, oldest first: id, event and data lines, as SPEC section 4
# frames them, made in Python from the raw rows (lib/sse_oracle.py).
sse_db_text() {
	python3 "$SSE_ORACLE" "$(orders_db)" "$1"
}

sse_retry_text() { printf 'retry: %s\n\n' "$STREAM_RETRY_MS"; }

sse_connected_text() {
	printf 'event: connected\ndata: {"message":"Connected to event stream","lastEventId":%s}\n\n' "$1"
}

sse_reset_text() {
	printf 'id: %s\nevent: reset\ndata: {"reason":"%s","lastEventId":%s}\n\n' "$1" "$2" "$1"
}

# shellcheck disable=SC2016
_SSE_PY_PINGS='
import re, sys
data = open(sys.argv[1], "rb").read()
lo, hi = int(sys.argv[2]), int(sys.argv[3])
blocks = data.split(b"\n\n")
tail = blocks.pop()
out, bad, n = [], [], 0
for b in blocks:
    m = re.fullmatch(rb"event: ping\ndata: \{\"ts\":(\d+)\}", b)
    if m:
        n += 1
        ts = int(m.group(1))
        if not lo <= ts <= hi:
            bad.append("ping ts %d not in [%d, %d]" % (ts, lo, hi))
        continue
    if re.search(rb"(^|\n)event: ping(\n|$)", b):
        bad.append("malformed ping block: %r" % b)
    out.append(b + b"\n\n")
sys.stdout.buffer.write(b"".join(out) + tail)
sys.stderr.write("%d\n" % n)
if bad:
    sys.stderr.write("\n".join(bad) + "\n")
    sys.exit(1)
'

# sse_strip_pings NAME OUT T0_MS [T1_MS]: OUT = the body of NAME without its
# pings, after checking each is exactly `event: ping` + `data: {"ts":<ms>}`
# (no id) with ts between T0 and T1 (wall clock ms). Sets PINGS (count).
sse_strip_pings() {
	local err
	err=$(python3 -c "$_SSE_PY_PINGS" "$(sse_body "$1")" "$3" "${4:-$(($(now_ms) + 1000))}" 2>&1 >"$2") ||
		fail "stream $1: $err"
	PINGS=${err%%$'\n'*}
}

# assert_same_file EXPECTED ACTUAL [WHAT]: byte for byte.
assert_same_file() {
	if ! cmp -s "$1" "$2"; then
		fail "${3:-stream} differs from what SPEC section 4 and the events table say (- expected, + got, sed -n l):
$(diff <(sed -n l "$1") <(sed -n l "$2") | head -n 40)"
	fi
}

# sse_ids FILE: the id of each event, one a line.
sse_ids() { grep -a '^id: ' "$1" | cut -c5- || true; }

# ---------------------------------------------------------------- API shortcuts

# note_change ID TEXT: PATCH the note (asserts 200); sets EVENT_ID to the new
# head (no other writer in these cases).
note_change() {
	api_json PATCH "/api/v1/orders/$1" "{\"note\":$(jstr "$2")}"
	assert_status 200
	EVENT_ID=$(db_head)
}

health_streams() {
	local out
	out=$(curl -s --max-time 10 "$API_BASE/api/v1/health") || return 1
	jq -er .streams <<<"$out"
}

# wait_health_streams N SECONDS: until /health says N open streams.
wait_health_streams() {
	local want=$1 deadline got=
	deadline=$(($(now_ms) + ${2:-10} * 1000))
	while (($(now_ms) < deadline)); do
		got=$(health_streams) || got='?'
		[[ $got == "$want" ]] && return 0
		sleep 0.1
	done
	fail "health: expected streams $want within ${2:-10} s, last seen $got"
}

# churn_until T_MS: in the background until wall clock T_MS, the notes of
# the 'Churn' orders change every 50 ms (another process, sqlite3 or psql),
# so that events keep flowing while streams end. CHURN_PID is the writer.
churn_until() {
	(
		while (($(now_ms) < $1)); do
			if on_postgresql; then
				db "UPDATE orders SET note = $(sql_random_hex 400) WHERE customer LIKE 'Churn %'" || exit 1
			else
				sqlite3 -cmd '.timeout 10000' "$ORDERS_DBFILE" \
					"UPDATE orders SET note = hex(randomblob(200)) WHERE customer LIKE 'Churn %'" || exit 1
			fi
			sleep 0.05
		done
	) </dev/null >/dev/null 2>&1 3>&- &
	CHURN_PID=$!
	bg_track "$CHURN_PID"
}

# sql_random_hex N: an SQL expression of N random upper-case hex digits, new
# for each row of an UPDATE of orders (SQLite: hex(randomblob(N / 2))).
sql_random_hex() {
	if on_postgresql; then
		printf "upper(substr((SELECT string_agg(md5(random()::text || g::text || orders.seq::text), '') FROM generate_series(1, %d) AS g), 1, %d))" \
			$((($1 + 31) / 32)) "$1"
	else
		printf 'hex(randomblob(%d))' $(($1 / 2))
	fi
}

# sql_orders N [PREFIX]: insert N orders with sqlite3 (psql) in one statement.
sql_orders() {
	db "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
	    INSERT INTO orders (customer, items)
	    SELECT '${2:-Bulk} ' || i, '[{\"sku\":\"B-1\",\"name\":\"Bulk\",\"qty\":1,\"unitPriceCents\":100}]' FROM n"
}

# ---------------------------------------------------------------- cases

# 1. The whole sequence of section 4, byte for byte.
scase_sequence_byte_for_byte() {
	local a b d exp got t0 h
	if on_apache; then
		# mod_fcgid starts a second process only when a request finds none
		# idle, and makes that request wait about 1 s: pay it now, with a
		# stream holding one process while the orders are made, so that the
		# live change below finds an idle process
		sse_open warm /api/v1/stream/events
		sse_wait_connected warm
	fi
	create_order "$(order_json 'Seq One')"
	a=$OID
	create_order "$(order_json 'Seq Two')"
	b=$OID
	note_change "$a" 'first note'
	if on_apache; then
		sse_close warm
		sleep 1.5 # Apache notices the client left at the next ping
	fi
	t0=$(now_ms)
	sse_open seq /api/v1/stream/events -H 'Last-Event-ID: 0'
	sse_wait_connected seq
	h=$CONNECTED_HEAD
	[[ $h == "$(db_head)" ]] || fail "connected lastEventId $h, head is $(db_head)"
	sse_wait_id seq "$h"
	local t_replay t_live
	t_replay=$(now_ms)
	note_change "$b" 'live note: naïve café ✓ “quoted” \\ and \"'
	sse_wait_id seq "$EVENT_ID" 3
	t_live=$(now_ms)
	((WAITED_MS < 1000)) || fail "live event of this process took $WAITED_MS ms"
	# then silence: a ping after ORDERS_PING_S=1
	local live
	live=$(sse_db_text "id = $EVENT_ID")
	sse_wait seq "$live"$'\n\nevent: ping\n' 4
	sleep 0.2
	sse_close seq
	assert_stream_headers seq

	d=$(stream_dir)
	exp=$d/seq.expected
	got=$d/seq.got
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id <= $EVENT_ID"
		printf 'event: ping\ndata: {"ts":TS}\n\n'
	} >"$exp"
	# every ping well-formed, and what is not a ping exact
	sed -E 's/^data: \{"ts":[0-9]+\}$/data: {"ts":TS}/' "$(sse_body seq)" >"$got"
	sse_strip_pings seq "$d/seq.noping" "$t0"
	((PINGS >= 1)) || fail "no ping"
	# exactly one ping was due before the client left (it left 0.2 s after it)
	if ! cmp -s "$exp" "$got" && ((t_live - t_replay >= 900)); then
		# the PATCH took so long (a loaded machine; under mod_fcgid maybe a
		# process start) that a ping was due before the live event too
		echo "# the live change came $((t_live - t_replay)) ms after the replay: pings before it allowed" >&3
		{
			sse_retry_text
			sse_connected_text "$h"
			sse_db_text "id <= $EVENT_ID"
		} >"$exp"
		assert_same_file "$exp" "$d/seq.noping" "stream from Last-Event-ID 0 (pings left out)"
		[[ $(tail -c 31 "$got") == $'\n\nevent: ping\ndata: {"ts":TS}' ]] ||
			fail "no ping after the live event: $(tail -c 200 "$got" | sed -n l)"
	else
		assert_same_file "$exp" "$got" "stream from Last-Event-ID 0"
	fi

	# each replayed data line is also what GET /events says about that event
	events_after 0
	local ev_api ev_sse
	ev_api=$(jq -cS '[.data[] | select(.eventId <= '"$EVENT_ID"') | {type, id, patch, ts}]' <<<"$BODY")
	ev_sse=$(grep -a '^data: {"type"' "$got" | cut -c7- | jq -cS -s .)
	[[ $ev_api == "$ev_sse" ]] || fail "stream data differs from GET /events:
api: ${ev_api:0:400}
sse: ${ev_sse:0:400}"
}

# 2a. Replay from 0, from the middle, from the head.
scase_replay_positions() {
	local i a h mid d
	create_order "$(order_json 'Replay')"
	a=$OID
	for i in 1 2 3 4; do note_change "$a" "replay $i"; done
	h=$(db_head)
	mid=$((h - 3))
	d=$(stream_dir)
	sse_open zero '/api/v1/stream/events?lastEventId=0'
	sse_open mid_h /api/v1/stream/events -H "Last-Event-ID: $mid"
	sse_open mid_q "/api/v1/stream/events?lastEventId=$mid"
	sse_open head_h /api/v1/stream/events -H "Last-Event-ID: $h"
	sse_open none /api/v1/stream/events
	local n
	for n in zero mid_h mid_q head_h none; do
		sse_wait_connected "$n"
		[[ $CONNECTED_HEAD == "$h" ]] || fail "$n: connected lastEventId $CONNECTED_HEAD, head $h"
	done
	sse_wait_id zero "$h"
	sse_wait_id mid_h "$h"
	sse_wait_id mid_q "$h"
	note_change "$a" 'replay live'
	for n in zero mid_h mid_q head_h none; do sse_wait_id "$n" "$EVENT_ID" 3; done
	for n in zero mid_h mid_q head_h none; do sse_close "$n"; done

	for n in zero mid_h mid_q head_h none; do
		local from
		case $n in
		zero) from=0 ;;
		mid_*) from=$mid ;;
		*) from=$h ;;
		esac
		{
			sse_retry_text
			sse_connected_text "$h"
			sse_db_text "id > $from AND id <= $EVENT_ID"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n (from $from)"
	done
}

# 2b. Last-Event-ID header wins over the lastEventId parameter.
scase_header_wins() {
	local a h d
	create_order "$(order_json 'Header Wins')"
	a=$OID
	note_change "$a" 'hw 1'
	note_change "$a" 'hw 2'
	h=$(db_head)
	d=$(stream_dir)
	sse_open hw "/api/v1/stream/events?lastEventId=0" -H "Last-Event-ID: $((h - 1))"
	sse_wait_connected hw
	sse_wait_id hw "$h"
	note_change "$a" 'hw live'
	sse_wait_id hw "$EVENT_ID" 3
	sse_close hw
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $((h - 1)) AND id <= $EVENT_ID"
	} >"$d/hw.expected"
	sse_strip_pings hw "$d/hw.got" 0
	assert_same_file "$d/hw.expected" "$d/hw.got" "header $((h - 1)) with lastEventId=0"

	# an invalid header is judged even when the parameter is valid
	api GET "/api/v1/stream/events?lastEventId=0" -H 'Last-Event-ID: abc'
	assert_error 400 invalid_last_event_id
}

# 2c. Not a non-negative integer: 400 invalid_last_event_id.
scase_invalid_last_event_id() {
	local v
	snap
	for v in abc -1 1.5 1e3 +5 0x10 12abc '1 2' 'ﾑ'; do
		api GET /api/v1/stream/events -H "Last-Event-ID: $v" --max-time 5
		soft assert_error 400 invalid_last_event_id
		[[ $(hdr Content-Type) != text/event-stream* ]] || SOFT_FAILS+=("header $v: answered as a stream")
	done
	for v in abc -1 1.5 '%2B5' 7x '%20'; do
		api GET "/api/v1/stream/events?lastEventId=$v" --max-time 5
		soft assert_error 400 invalid_last_event_id
	done
	soft_done
	assert_unchanged
}

# 2d. A position beyond the head: reset unknown_event_id, then live.
scase_reset_unknown_event_id() {
	local a h d n
	create_order "$(order_json 'Future')"
	a=$OID
	h=$(db_head)
	d=$(stream_dir)
	sse_open fut_h /api/v1/stream/events -H "Last-Event-ID: $((h + 1000))"
	sse_open fut_q "/api/v1/stream/events?lastEventId=$((h + 1))"
	for n in fut_h fut_q; do
		sse_wait_connected "$n"
		sse_wait "$n" 'event: reset'
	done
	note_change "$a" 'after reset'
	for n in fut_h fut_q; do sse_wait_id "$n" "$EVENT_ID" 3; done
	for n in fut_h fut_q; do
		sse_close "$n"
		{
			sse_retry_text
			sse_connected_text "$h"
			sse_reset_text "$h" unknown_event_id
			sse_db_text "id = $EVENT_ID"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n (position beyond head $h)"
	done
}

# 2d'. The largest id SQLite can give (2^63 - 1) is a non-negative integer:
# a position beyond the head, not a 400.
scase_reset_max_id() {
	local h d
	create_order "$(order_json 'Max Id')"
	h=$(db_head)
	d=$(stream_dir)
	sse_open big /api/v1/stream/events -H 'Last-Event-ID: 9223372036854775807'
	sse_wait_headers big
	sleep 0.5
	sse_close big
	[[ $(sse_status big) == 200 ]] ||
		fail "Last-Event-ID 9223372036854775807: status $(sse_status big), body $(head -c 300 "$(sse_body big)")"
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_reset_text "$h" unknown_event_id
	} >"$d/big.expected"
	sse_strip_pings big "$d/big.got" 0
	assert_same_file "$d/big.expected" "$d/big.got" "stream from 9223372036854775807"
}

# 2e. A position below the pruned history: reset history_truncated, then live.
# Needs its own server with ORDERS_RETAIN_EVENTS=5.
scase_reset_history_truncated() {
	stream_aux_start ORDERS_RETAIN_EVENTS=5
	local a i p h d n deadline
	create_order "$(order_json 'Pruned')"
	a=$OID
	for i in $(seq 1 11); do note_change "$a" "prune $i"; done
	h=$(db_head)
	deadline=$(($(now_ms) + 15000))
	while :; do
		p=$(db 'SELECT pruned_through FROM event_log_state')
		((p >= h - 5)) && break
		(($(now_ms) < deadline)) || fail "pruner did not prune to $((h - 5)) in 15 s (pruned_through $p)"
		sleep 0.2
	done
	[[ $(db 'SELECT count(*) FROM events') == 5 ]] || fail "expected 5 retained events, have $(db 'SELECT count(*) FROM events')"
	d=$(stream_dir)
	sse_open old1 /api/v1/stream/events -H 'Last-Event-ID: 1'
	sse_open old_q "/api/v1/stream/events?lastEventId=$((p - 1))"
	sse_open zero /api/v1/stream/events -H 'Last-Event-ID: 0'
	sse_open edge /api/v1/stream/events -H "Last-Event-ID: $p"
	for n in old1 old_q zero edge; do sse_wait_connected "$n"; done
	sse_wait_id edge "$h"
	for n in old1 old_q zero; do sse_wait "$n" 'event: reset'; done
	# the retained events, read before the next change lets the pruner drop one more
	sse_db_text "id > $p AND id <= $h" >"$d/edge.replay"
	[[ $(sse_ids "$d/edge.replay" | head -n 1) == $((p + 1)) ]] || fail "event $((p + 1)) not retained"
	note_change "$a" 'after truncation'
	for n in old1 old_q zero edge; do sse_wait_id "$n" "$EVENT_ID" 3; done
	for n in old1 old_q zero edge; do
		sse_close "$n"
		{
			sse_retry_text
			sse_connected_text "$h"
			if [[ $n == edge ]]; then
				cat "$d/edge.replay"
				sse_db_text "id = $EVENT_ID"
			else
				sse_reset_text "$h" history_truncated
				sse_db_text "id = $EVENT_ID"
			fi
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n (pruned through $p, head $h)"
	done
}

# 3. Filters types, ids and both, on replay and live; connected and reset pass.
scase_filters() {
	local x y z w h0 d n q
	h0=$(db_head)
	create_order "$(order_json 'Filter X')"
	x=$OID
	create_order "$(order_json 'Filter Y')"
	y=$OID
	create_order "$(order_json 'Filter Z')"
	z=$OID
	note_change "$x" 'fx'
	note_change "$y" 'fy'
	api DELETE "/api/v1/orders/$z"
	assert_status 204
	local h
	h=$(db_head)
	d=$(stream_dir)
	# name, query, SQL condition of the events that pass
	local -a names=(types ids both deleted_only)
	local -A query=(
		[types]="types=order.created,order.updated"
		[ids]="ids=$x,$z"
		[both]="types=order.updated&ids=$x,$y"
		[deleted_only]="types=order.deleted&ids=$y"
	)
	local -A cond=(
		[types]="type IN ('order.created','order.updated')"
		[ids]="order_id IN ('$x','$z')"
		[both]="type = 'order.updated' AND order_id IN ('$x','$y')"
		[deleted_only]="type = 'order.deleted' AND order_id = '$y'"
	)
	for n in "${names[@]}"; do
		sse_open "$n" "/api/v1/stream/events?lastEventId=$h0&${query[$n]}"
	done
	for n in "${names[@]}"; do sse_wait_connected "$n"; done
	# replay done when the last passing replayed event is there
	for n in types ids both; do
		sse_wait_id "$n" "$(db "SELECT max(id) FROM events WHERE id > $h0 AND ${cond[$n]}")"
	done
	# live: one of each kind
	create_order "$(order_json 'Filter W')"
	w=$OID
	note_change "$w" 'fw'
	api_json PATCH "/api/v1/orders/$z" '{"note":"gone"}' # deleted: 404, no event
	assert_status 404
	note_change "$y" 'fy live'
	api DELETE "/api/v1/orders/$y"
	assert_status 204
	note_change "$x" 'fx live' # passes types, ids and both: the sentinel
	local last=$EVENT_ID
	for n in types ids both; do sse_wait_id "$n" "$last" 3; done
	sse_wait_id deleted_only "$((last - 1))" 3
	for n in "${names[@]}"; do
		sse_close "$n"
		{
			sse_retry_text
			sse_connected_text "$h"
			sse_db_text "id > $h0 AND id <= $last AND ${cond[$n]}"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream with ${query[$n]}"
	done

	# reset passes any filter
	h=$(db_head)
	sse_open rf "/api/v1/stream/events?types=order.deleted&ids=ord_99999&lastEventId=$((h + 5))"
	sse_wait_connected rf
	sse_wait rf 'event: reset'
	sse_wait rf $'event: ping\n' 4 # pings pass a filter that matches nothing
	sse_close rf
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_reset_text "$h" unknown_event_id
	} >"$d/rf.expected"
	sse_strip_pings rf "$d/rf.got" 0
	((PINGS >= 1)) || fail "no ping on the filtered stream"
	assert_same_file "$d/rf.expected" "$d/rf.got" "filtered stream with a future position"

	# unknown types: 400 invalid_parameter
	for q in 'types=order.bogus' 'types=order.created,order.shipped' 'types=ORDER.CREATED'; do
		api GET "/api/v1/stream/events?$q" --max-time 5
		assert_error 400 invalid_parameter types
	done
}

# 4. gzip: Content-Encoding gzip, decoded text exact, events still live.
scase_gzip() {
	local a h d v
	create_order "$(order_json 'Gzip')"
	a=$OID
	note_change "$a" 'gz 1'
	h=$(db_head)
	d=$(stream_dir)
	sse_open gz /api/v1/stream/events --compressed -H "Last-Event-ID: $((h - 2))"
	sse_open raw /api/v1/stream/events -H 'Accept-Encoding: gzip' -H "Last-Event-ID: $((h - 2))"
	sse_wait_connected gz
	sse_wait_id gz "$h"
	local i
	for i in 1 2 3; do
		note_change "$a" "gz live $i"
		sse_wait_id gz "$EVENT_ID" 3
		((WAITED_MS < 1000)) || fail "gzip stream: live event $EVENT_ID took $WAITED_MS ms"
	done
	sse_close gz
	sse_close raw
	[[ $(sse_hdr gz Content-Encoding) == gzip ]] || fail "no Content-Encoding: gzip: $(cat "$(sse_hdrs gz)")"
	assert_stream_headers gz
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $((h - 2)) AND id <= $EVENT_ID"
	} >"$d/gz.expected"
	sse_strip_pings gz "$d/gz.got" 0
	assert_same_file "$d/gz.expected" "$d/gz.got" "gzip stream, decoded"
	# the raw body is gzip, and what arrived so far decodes to whole events
	[[ $(head -c 2 "$(sse_body raw)" | od -An -tx1 | tr -d ' ') == 1f8b ]] ||
		fail "raw body does not start with the gzip magic: $(head -c 16 "$(sse_body raw)" | od -An -tx1)"
	python3 -c '
import sys, zlib
d = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(open(sys.argv[1], "rb").read())
sys.exit(0 if d.startswith(b"retry: ") and d.endswith(b"\n\n") and b"\nid: %s\n" % sys.argv[2].encode() in d else 1)
' "$(sse_body raw)" "$EVENT_ID" || fail "raw gzip body does not decode to the events up to $EVENT_ID"
	# identity when gzip is refused
	sse_open ident /api/v1/stream/events -H 'Accept-Encoding: gzip;q=0, identity'
	sse_wait_connected ident
	sse_close ident
	if v=$(sse_hdr ident Content-Encoding); then fail "Content-Encoding [$v] although gzip;q=0"; fi
}

# A long replay (thousands of events, in many batches) is complete and exact,
# plain, gzip and filtered, and goes on live after it.
scase_long_replay() {
	local d h a n
	sql_orders 1000 Long
	db "UPDATE orders SET note = 'long ' || seq WHERE customer LIKE 'Long %'"
	db "UPDATE orders SET status = 'paid' WHERE customer LIKE 'Long %'"
	a=$(db "SELECT id FROM orders WHERE customer = 'Long 500'")
	h=$(db_head)
	d=$(stream_dir)
	sse_open lp '/api/v1/stream/events?lastEventId=0'
	sse_open lz '/api/v1/stream/events?lastEventId=0' --compressed
	sse_open lf "/api/v1/stream/events?lastEventId=0&ids=$a&types=order.updated"
	for n in lp lz; do sse_wait_id "$n" "$h" 20; done
	sse_wait_id lf "$(db "SELECT max(id) FROM events WHERE order_id = '$a' AND type = 'order.updated'")" 20
	note_change "$a" 'long live'
	for n in lp lz lf; do sse_wait_id "$n" "$EVENT_ID" 3; done
	for n in lp lz lf; do sse_close "$n"; done
	for n in lp lz lf; do
		{
			sse_retry_text
			sse_connected_text "$h"
			if [[ $n == lf ]]; then
				sse_db_text "id <= $EVENT_ID AND order_id = '$a' AND type = 'order.updated'"
			else
				sse_db_text "id <= $EVENT_ID"
			fi
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "long replay $n"
	done
}

# 5b. A change made with the sqlite3 command reaches an open stream within 1 s.
scase_sqlite3_change() {
	local a d h t0
	create_order "$(order_json 'By Hand')"
	a=$OID
	d=$(stream_dir)
	sse_open sq /api/v1/stream/events
	sse_wait_connected sq
	h=$CONNECTED_HEAD
	db "UPDATE orders SET note = 'changed with sqlite3' WHERE id = '$a'"
	local id1
	id1=$(db_head)
	sse_wait_id sq "$id1" 3
	((WAITED_MS < 1000)) || fail "sqlite3 change took $WAITED_MS ms to reach the stream"
	db "UPDATE orders SET status = 'paid', note = 'and paid' WHERE id = '$a'"
	db "INSERT INTO orders (customer, items) VALUES ('Hand Made', '[{\"sku\":\"H-1\",\"name\":\"Hand\",\"qty\":1,\"unitPriceCents\":5}]')"
	local last
	last=$(db_head)
	sse_wait_id sq "$last" 3
	((WAITED_MS < 1000)) || fail "sqlite3 change took $WAITED_MS ms to reach the stream"
	sse_close sq
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $h AND id <= $last"
	} >"$d/sq.expected"
	sse_strip_pings sq "$d/sq.got" 0
	assert_same_file "$d/sq.expected" "$d/sq.got" "stream seeing sqlite3 changes"
}

# 5c. README ("Failure modes"): a hand-made event whose patch is not JSON is
# sent as a JSON string rather than stopping the streams: live, in replay,
# and the same through GET /events (which case 1 holds to the stream's data).
# The patch holds what a JSON string must escape and what an SSE data line
# must not carry raw: a quote, a backslash, a tab, and a newline followed by
# a forged `data:` line. Its own instance, so that no other case (the no-gap
# check builds its expectation with SQLite's json()) meets the row.
scase_hand_made_patch() {
	if on_postgresql; then
		_scase_hand_made_patch_pg
		return
	fi
	stream_aux_start
	local a h d hm ts want n bad=$'{"note":"hand made, not closed \\ café\t\ndata: forged'
	create_order "$(order_json 'Hand Made Patch')"
	a=$OID
	h=$(db_head)
	d=$(stream_dir)
	sse_open live /api/v1/stream/events
	sse_wait_connected live
	[[ $CONNECTED_HEAD == "$h" ]] || fail "connected lastEventId $CONNECTED_HEAD, head $h"
	ts=$(now_ms)
	db "INSERT INTO events (type, order_id, patch, ts) VALUES ('order.updated', '$a', '$bad', $ts)"
	hm=$(db_head)
	[[ $(db "SELECT json_valid(patch) FROM events WHERE id = $hm") == 0 ]] || fail "the hand-made patch is JSON after all"
	sse_wait_id live "$hm" 3
	# the stream goes on after it
	note_change "$a" 'after the hand-made event'
	sse_wait_id live "$EVENT_ID" 3
	sse_open replay /api/v1/stream/events -H "Last-Event-ID: $h"
	sse_wait_connected replay
	sse_wait_id replay "$EVENT_ID" 5
	sse_close live
	sse_close replay
	# the data line written by hand, apart from the oracle of sse_db_text
	want='data: {"type":"order.updated","id":"'"$a"'","patch":"{\"note\":\"hand made, not closed \\ café\t\ndata: forged","ts":'"$ts"'}'
	for n in live replay; do
		[[ $(grep -a -c -x -F -- "$want" "$(sse_body "$n")") == 1 ]] ||
			fail "stream $n: no data line $want; got: $(grep -a -A 3 "^id: $hm\$" "$(sse_body "$n")" | sed -n l)"
		{
			sse_retry_text
			if [[ $n == live ]]; then sse_connected_text "$h"; else sse_connected_text "$EVENT_ID"; fi
			sse_db_text "id > $h AND id <= $EVENT_ID"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n over a hand-made patch that is not JSON"
	done
	events_after "$h"
	jq -e --argjson hm "$hm" --arg a "$a" --arg p "$bad" --argjson ts "$ts" \
		'.data[0] == {eventId: $hm, type: "order.updated", id: $a, patch: $p, ts: $ts}
		 and (.data | length) == 2 and .data[1].eventId == ($hm + 1)' <<<"$BODY" >/dev/null ||
		fail "GET /events?after=$h does not list the hand-made event with its patch as a string: ${BODY:0:600}"
}

# On PostgreSQL events.patch is json: a patch that is not JSON cannot be
# stored there. The hand-made event on PostgreSQL is one appended with psql
# (through orders_append_event, since events.id is the counter of
# event_log_state, not a default), whose patch is JSON but not as the
# service writes it: spaces between tokens, an escaped newline that would
# spell a forged `data:` line, a backslash, a non-ASCII letter, nested
# values. Live, in replay and in GET /events it goes out as its JSON value,
# compact (SPEC: JSON is written compact), as the oracle frames it.
_scase_hand_made_patch_pg() {
	stream_aux_start
	local a h d hm n patch
	patch='{ "note" : "hand made\ndata: forged \\ café" ,  "extra" : [ 1, { "x" : null } ] }'
	create_order "$(order_json 'Hand Made Patch')"
	a=$OID
	h=$(db_head)
	d=$(stream_dir)
	sse_open live /api/v1/stream/events
	sse_wait_connected live
	[[ $CONNECTED_HEAD == "$h" ]] || fail "connected lastEventId $CONNECTED_HEAD, head $h"
	hm=$(db "SELECT orders_append_event('order.updated', '$a', '$patch')")
	[[ $hm == $((h + 1)) ]] || fail "the hand-made event got id $hm, head was $h"
	sse_wait_id live "$hm" 3
	note_change "$a" 'after the hand-made event'
	sse_wait_id live "$EVENT_ID" 3
	sse_open replay /api/v1/stream/events -H "Last-Event-ID: $h"
	sse_wait_connected replay
	sse_wait_id replay "$EVENT_ID" 5
	sse_close live
	sse_close replay
	for n in live replay; do
		{
			sse_retry_text
			if [[ $n == live ]]; then sse_connected_text "$h"; else sse_connected_text "$EVENT_ID"; fi
			sse_db_text "id > $h AND id <= $EVENT_ID"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n over a hand-made event written with psql"
	done
	events_after "$h"
	jq -e --argjson hm "$hm" --arg a "$a" --argjson p "$patch" \
		'.data[0].eventId == $hm and .data[0].id == $a and .data[0].patch == $p
		 and (.data | length) == 2' <<<"$BODY" >/dev/null ||
		fail "GET /events?after=$h does not list the hand-made event with its patch: ${BODY:0:600}"
	assert_compact
}

# ---------------------------------------------------------------- spawn-fcgi

# spawn_responder NAME VAR=VALUE...: start orders.fcgi with spawn-fcgi on the
# unix socket $ORDERS_TMP/NAME.sock (as the unprivileged user when root);
# SPAWN_PID_<NAME> is the responder's PID (spawn-fcgi -n execs it).
spawn_responder() {
	local name=$1 bin sock u
	shift
	bin=$(orders_binary) || return 1
	sock=$ORDERS_TMP/$name.sock
	local -a own=()
	if is_root; then
		u=$(orders_run_user)
		own=(-u "$u" -g "$(id -gn "$u")" -U "$u" -G "$(id -gn "$u")")
	fi
	local -a backend_env
	mapfile -t backend_env < <(orders_backend_env)
	env -i PATH=/usr/bin:/bin "${backend_env[@]}" ORDERS_POLL_MS=50 "${STREAM_SUITE_ENV[@]}" "$@" \
		spawn-fcgi -n -s "$sock" -M 0660 "${own[@]}" -- "$bin" \
		</dev/null >>"$ORDERS_TMP/$name.log" 2>&1 3>&- &
	printf -v "SPAWN_PID_$name" '%s' "$!"
	bg_track "$!"
	local deadline=$(($(now_ms) + 10000))
	until [[ -S $sock ]]; do
		(($(now_ms) < deadline)) || fail "spawn-fcgi did not create $sock: $(cat "$ORDERS_TMP/$name.log")"
		child_running "$!" || fail "spawn-fcgi exited: $(cat "$ORDERS_TMP/$name.log")"
		sleep 0.05
	done
}

# lighttpd_two_backends A B: a lighttpd on a free port mapping /a/api/v1/ to
# socket A and /b/api/v1/ to socket B (the responder finds /api/v1/ anywhere
# in the path). Sets TWO_BASE_A, TWO_BASE_B, TWO_LIGHTTPD_PID.
lighttpd_two_backends() {
	local port user_lines="" conf=$ORDERS_TMP/two.conf
	port=$(free_port)
	user_lines=$(lighttpd_user_lines)
	cat >"$conf" <<EOF
server.document-root = "$ORDERS_TMP/htdocs"
server.bind          = "127.0.0.1"
server.port          = $port
server.errorlog      = "$ORDERS_TMP/two-error.log"
server.max-read-idle = 10
$user_lines
server.modules += ( "mod_fastcgi" )
fastcgi.server = (
  "/a/api/v1/" => (( "socket" => "$ORDERS_TMP/$1.sock", "check-local" => "disable" )),
  "/b/api/v1/" => (( "socket" => "$ORDERS_TMP/$2.sock", "check-local" => "disable" )),
)
\$HTTP["url"] =~ "^/[ab]/api/v1/stream/" {
  server.stream-response-body = 2
}
EOF
	instance_chown
	"$LIGHTTPD_BIN" -tt -f "$conf" >"$ORDERS_TMP/two.out" 2>&1 || fail "lighttpd config: $(cat "$ORDERS_TMP/two.out")"
	"$LIGHTTPD_BIN" -D -f "$conf" </dev/null >>"$ORDERS_TMP/two.out" 2>&1 3>&- &
	TWO_LIGHTTPD_PID=$!
	bg_track "$TWO_LIGHTTPD_PID"
	TWO_BASE_A=http://127.0.0.1:$port/a
	TWO_BASE_B=http://127.0.0.1:$port/b
	local deadline=$(($(now_ms) + 10000)) st
	for b in "$TWO_BASE_A" "$TWO_BASE_B"; do
		while :; do
			st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$b/api/v1/health") || true
			[[ $st == 200 ]] && break
			(($(now_ms) < deadline)) || fail "$b/api/v1/health: $st; $(cat "$ORDERS_TMP/two.out" "$ORDERS_TMP/two-error.log" 2>/dev/null)"
			sleep 0.1
		done
	done
}

# 5a. Two responder processes on one database.
scase_cross_process() {
	[[ -n $STREAM_HOME_TMP ]] || STREAM_HOME_TMP=$ORDERS_TMP
	instance_new
	STREAM_AUX_DIRS+=("$ORDERS_TMP")
	migrate_db
	spawn_responder one
	spawn_responder two
	lighttpd_two_backends one two
	local d a
	d=$(stream_dir)
	API_BASE=$TWO_BASE_A create_order "$(order_json 'Cross')"
	a=$OID
	API_BASE=$TWO_BASE_A sse_open on_a /api/v1/stream/events
	API_BASE=$TWO_BASE_B sse_open on_b /api/v1/stream/events
	sse_wait_connected on_a
	local h=$CONNECTED_HEAD
	sse_wait_connected on_b
	[[ $CONNECTED_HEAD == "$h" ]] || fail "heads differ: $h and $CONNECTED_HEAD"
	# a change through A reaches B's stream (and A's at once)
	API_BASE=$TWO_BASE_A note_change "$a" 'through A'
	sse_wait_id on_b "$EVENT_ID" 3
	((WAITED_MS < 1000)) || fail "event of process A reached process B after $WAITED_MS ms"
	sse_wait_id on_a "$EVENT_ID" 1
	# and the other way
	API_BASE=$TWO_BASE_B note_change "$a" 'through B'
	sse_wait_id on_a "$EVENT_ID" 3
	((WAITED_MS < 1000)) || fail "event of process B reached process A after $WAITED_MS ms"
	sse_wait_id on_b "$EVENT_ID" 1
	# and a third writer: sqlite3
	db "UPDATE orders SET note = 'through sqlite3' WHERE id = '$a'"
	local last
	last=$(db_head)
	sse_wait_id on_a "$last" 3
	((WAITED_MS < 1000)) || fail "sqlite3 change reached process A after $WAITED_MS ms"
	sse_wait_id on_b "$last" 3
	((WAITED_MS < 1000)) || fail "sqlite3 change reached process B after $WAITED_MS ms"
	# each process counts its own streams
	[[ $(API_BASE=$TWO_BASE_A health_streams) == 1 ]] || fail "process A: streams $(API_BASE=$TWO_BASE_A health_streams)"
	[[ $(API_BASE=$TWO_BASE_B health_streams) == 1 ]] || fail "process B: streams $(API_BASE=$TWO_BASE_B health_streams)"
	sse_close on_a
	sse_close on_b
	for n in on_a on_b; do
		{
			sse_retry_text
			sse_connected_text "$h"
			sse_db_text "id > $h AND id <= $last"
		} >"$d/$n.expected"
		sse_strip_pings "$n" "$d/$n.got" 0
		assert_same_file "$d/$n.expected" "$d/$n.got" "stream $n"
	done
}

# ---------------------------------------------------------------- load and failure cases

# 6. No gap, no duplicate: writers and reconnecting clients (tests/lib/sse_nogap.py).
scase_nogap() {
	local out=$BATS_TEST_TMPDIR/nogap.json rc=0 clients=${NOGAP_CLIENTS:-50} patches=${NOGAP_PATCHES:-500}
	if on_apache; then
		# under mod_fcgid every open stream holds a responder process, and a
		# dropped one until Apache notices (at its next event or ping): 50
		# clients reconnecting every second or so would keep the suite's
		# FcgidMaxProcessesPerClass busy, and a writer's PATCH would wait
		# for a process past its 20 s timeout (then retried: one event
		# more than the check expects). 8 clients need about 17 processes.
		clients=${NOGAP_CLIENTS:-8}
		patches=${NOGAP_PATCHES:-200}
	fi
	timeout 110 python3 "$ORDERS_TESTS_LIB/sse_nogap.py" --base "$API_BASE" --db "$(orders_db)" \
		--writers "${NOGAP_WRITERS:-4}" --patches "$patches" \
		--clients "$clients" --deadline "${NOGAP_DEADLINE:-90}" \
		--pause-ms "${NOGAP_PAUSE_MS:-10}" --stale-every "${NOGAP_STALE_EVERY:-0}" \
		>"$out" 2>"$out.err" 3>&- || rc=$?
	local summary
	summary=$(jq -c 'del(.failures)' "$out" 2>/dev/null || true)
	echo "# nogap: $summary" >&3
	((rc == 0)) || fail "no-gap check failed (rc $rc): $(jq . "$out" 2>/dev/null || cat "$out") $(tail -n 20 "$out.err")"
	# every stream the clients dropped is released (lighttpd and nginx notice at
	# the next ping; under mod_fcgid the count is per process)
	if ! on_apache; then
		wait_health_streams 0 15
	fi
	# the responders' checkpoints meet each other under this load (many
	# processes under mod_fcgid): that is not a failure, and is not logged
	local f
	for f in $(responder_stderr_files); do
		! grep -q 'checkpoint failed' "$f" || fail "$f: $(grep -c 'checkpoint failed' "$f") 'checkpoint failed' lines"
	done
}

# The same under group commit: 16 writers that do not pause keep the
# responder's writers queued, so that its writes commit in groups, and every
# 5th PATCH has a stale If-Match: refused with 412 inside a group, it leaves
# no event, and the writes around it stay.
scase_nogap_grouped() {
	local g0 c0 g1 c1
	read -r g0 c0 < <(write_group_counts)
	NOGAP_WRITERS=16 NOGAP_PATCHES=300 NOGAP_CLIENTS=20 NOGAP_PAUSE_MS=0 NOGAP_STALE_EVERY=5 \
		scase_nogap
	read -r g1 c1 < <(write_group_counts)
	echo "# group commit: $((c1 - c0)) writes in $((g1 - g0)) groups" >&3
	# the writes did share transactions: otherwise this tested no group
	(((c1 - c0) > (g1 - g0))) || fail "no group held more than one write: $((c1 - c0)) writes in $((g1 - g0)) groups"
}

# write_group_counts: "<groups> <writes committed>" from /api/v1/metrics.
write_group_counts() {
	curl -s --max-time 10 "$API_BASE/api/v1/metrics" | awk '
		$1 == "orders_write_groups_total" { g = $2 }
		$1 == "orders_writes_committed_total" { c = $2 }
		END { if (g == "" || c == "") exit 1; print g, c }'
}

# shellcheck disable=SC2016
_SSE_PY_SLOW='
import socket, sys, time
host, port, path, out, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect((host, port))
s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode())
buf = b""
deadline = time.monotonic() + 10
while b"Connected to event stream" not in buf and time.monotonic() < deadline:
    c = s.recv(1)
    if not c:
        break
    buf += c
with open(out, "w") as f:
    f.write(("connected %d\n" % s.getsockname()[1]) if b"Connected to event stream" in buf else "failed\n")
time.sleep(hold)   # holds the connection open and never reads again
'

# slow_client NAME PATH HOLD_S: a client with a tiny receive buffer that reads
# up to the connected event, then stops reading (and keeps the connection).
# Sets SLOW_PORT to its local port.
slow_client() {
	local d
	d=$(stream_dir)
	python3 -c "$_SSE_PY_SLOW" 127.0.0.1 "$ORDERS_PORT" "$2" "$d/$1.state" "$3" \
		</dev/null >"$d/$1.err" 2>&1 3>&- &
	bg_track "$!"
	printf -v "SSE_PID_$1" '%s' "$!"
	local deadline=$(($(now_ms) + 10000))
	until [[ -s $d/$1.state ]]; do
		(($(now_ms) < deadline)) || fail "slow client did not connect: $(cat "$d/$1.err")"
		sleep 0.05
	done
	local state
	state=$(<"$d/$1.state")
	[[ $state == connected\ * ]] || fail "slow client: no connected event"
	SLOW_PORT=${state#connected }
}

# 7. A client that stops reading is closed after ORDERS_WRITE_TIMEOUT_S,
# without slowing another stream.
#
# When does the timeout start? The responder cannot see the client: it
# starts the clock when its own write to lighttpd would block (hub.c,
# flush(): stalled_ms is set at the first EAGAIN and cleared by any byte
# written), and a client that stopped reading blocks it only once every
# buffer between them is full, in this order:
#  1. the client's TCP connection: lighttpd's send queue to it grows
#     (kernel autotuning, to about 2 MB here) until the connection stops
#     accepting bytes. This is t_sat: ss shows the queue no longer grows
#     while events are pushed;
#  2. lighttpd itself: with server.stream-response-body = 2 it reads the
#     backend on until it holds about 64-128 KB for the client;
#  3. the unix socket from the responder to lighttpd: its send buffer
#     (net.core.wmem_default, 208 KiB by default).
# So the case pushes events until t_sat, going carefully near the end so
# that less than 2. and 3. hold has been pushed beyond it when t_sat is
# seen (the clock has not started then), and at once pushes the fill:
# about 470 KB, more than 2. and 3. take and far less than the responder's
# own 1 MiB per-stream limit beyond them (which would close the stream
# without waiting for the timeout). The clock starts when the fill reaches
# the responder, between t_sat and the end of the fill (t_filled) plus a
# poll. So the stream must close no sooner than ORDERS_WRITE_TIMEOUT_S
# after t_sat, and no later than ORDERS_WRITE_TIMEOUT_S plus
# SLOW_CLOSE_SLACK_MS after t_filled.
#
# The slack: ORDERS_POLL_MS (50) for the hub to read the fill from the
# table; TICK_MS in hub.c (200: the hub checks write timeouts at that pace);
# 50 ms between this case's looks at /api/v1/health; and 700 ms for a
# shared, loaded 2-core machine to schedule the hub thread, lighttpd and
# curl (and for the slower sanitizer build).
SLOW_CLOSE_SLACK_MS=1000

# bulk_notes [PARITY]: a new 1000-character note on each of the 100 'Bulk'
# orders (about 117 KB of events), or on those whose seq % 2 is PARITY
# (about 59 KB).
bulk_notes() {
	db "UPDATE orders SET note = $(sql_random_hex 1000) WHERE customer LIKE 'Bulk %'${1:+ AND seq % 2 = $1}"
}

scase_slow_client_dropped() {
	command -v ss >/dev/null 2>&1 ||
		fail "this case needs ss (iproute2, which tools/install-deps.sh installs) to see when the client's connection stops accepting bytes"
	local wt=2
	stream_aux_start ORDERS_WRITE_TIMEOUT_S=$wt
	local a d h t_push t_sat='' t_filled t_drop='' got worst=0 q=0 prev=-1 port rounds=0 marked=0 deadline
	create_order "$(order_json 'Marker')"
	a=$OID
	sql_orders 100 Bulk
	d=$(stream_dir)
	sse_open fast /api/v1/stream/events
	sse_wait_connected fast
	h=$CONNECTED_HEAD
	slow_client slow /api/v1/stream/events 90
	port=$SLOW_PORT
	wait_health_streams 2 5
	t_push=$(now_ms)
	# whole rounds while the send queue takes most of each
	while ((rounds < 60)); do
		bulk_notes
		rounds=$((rounds + 1))
		sleep 0.15
		q=$(send_queue_to "$port") || fail "ss shows no connection from the slow client (port $port) to port $ORDERS_PORT"
		((q - prev > 80000)) || {
			prev=$q
			break
		}
		prev=$q
	done
	# then half rounds, each followed by a marker on the reading stream: once
	# it is there the hub has read the round, and 0.1 s later lighttpd has
	# passed it on. t_sat: the queue grew by less than a quarter of a round.
	deadline=$(($(now_ms) + 30000))
	while [[ -z $t_sat ]]; do
		(($(now_ms) < deadline)) || fail "lighttpd's send queue to the stalled client still grows after $rounds rounds ($q B)"
		bulk_notes $((rounds % 2))
		rounds=$((rounds + 1))
		note_change "$a" "marker $(now_ms)"
		sse_wait_id fast "$EVENT_ID" 3
		((WAITED_MS > worst)) && worst=$WAITED_MS
		got=$(health_streams)
		[[ $got == 2 ]] || fail "the stalled stream was closed (health streams $got) before lighttpd's send queue to it stopped growing ($q B after $rounds rounds)"
		sleep 0.1
		q=$(send_queue_to "$port") || fail "ss shows no connection from the slow client (port $port) to port $ORDERS_PORT"
		((q - prev < 15000)) && t_sat=$(now_ms)
		prev=$q
	done
	# the fill, at once: four whole rounds
	bulk_notes
	bulk_notes
	bulk_notes
	bulk_notes
	t_filled=$(now_ms)
	# now only the write timeout can close the slow stream; halfway through
	# it, while the responder holds the stalled stream, a marker must still
	# reach the reading stream at once
	deadline=$((t_filled + wt * 1000 + SLOW_CLOSE_SLACK_MS + 5000))
	while (($(now_ms) < deadline)); do
		got=$(health_streams) || got='?'
		if [[ $got == 1 ]]; then
			t_drop=$(now_ms)
			break
		fi
		if ((!marked && $(now_ms) >= t_filled + wt * 500)); then
			marked=1
			note_change "$a" "marker $(now_ms)"
			sse_wait_id fast "$EVENT_ID" 3
			((WAITED_MS > worst)) && worst=$WAITED_MS
		fi
		sleep 0.05
	done
	[[ -n $t_drop ]] || fail "the stream of the client that stopped reading is still open $((($(now_ms) - t_filled) / 1000)) s after the fill (health streams $got; send queue stopped at $q B after $rounds rounds)
slow client port $port: $(ss -tn "( sport = :$port or dport = :$port )" 2>&1 | head -n 8)
$(cat "$d/slow.err")"
	echo "# slow client: send queue full at $q B after $((t_sat - t_push)) ms, $rounds rounds; fill took $((t_filled - t_sat)) ms; closed $((t_drop - t_sat)) ms after t_sat ($((t_drop - t_filled)) after the fill); worst marker latency $worst ms" >&3
	((t_drop - t_sat >= wt * 1000)) ||
		fail "the stalled stream was closed $((t_drop - t_sat)) ms after its client's connection stopped accepting bytes: before ORDERS_WRITE_TIMEOUT_S=$wt"
	((t_drop - t_filled <= wt * 1000 + SLOW_CLOSE_SLACK_MS)) ||
		fail "the stalled stream was closed $((t_drop - t_filled)) ms after the fill that blocks the responder ($((t_drop - t_sat)) ms after t_sat): more than ORDERS_WRITE_TIMEOUT_S=$wt plus $SLOW_CLOSE_SLACK_MS ms"
	((worst < 1000)) || fail "the reading stream was slowed: an event took $worst ms"
	# the reading stream got everything, in order, once
	note_change "$a" 'last marker'
	sse_wait_id fast "$EVENT_ID" 3
	sse_close fast
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $h AND id <= $EVENT_ID"
	} >"$d/fast.expected"
	sse_strip_pings fast "$d/fast.got" 0
	assert_same_file "$d/fast.expected" "$d/fast.got" "the reading stream"
}

# send_queue_to PORT: bytes in the web server's TCP send queue to the client
# whose local port is PORT (needs ss; the current instance's server).
send_queue_to() {
	command -v ss >/dev/null 2>&1 || return 1
	ss -tnH state established "( sport = :$ORDERS_PORT and dport = :$1 )" 2>/dev/null |
		awk 'NR == 1 {print $2; f = 1} END {exit !f}'
}

# responder_pids: the live orders.fcgi processes of the current instance's
# web server, one a line: lighttpd's child (bin-path), or under mod_fcgid the
# children of its process manager (itself a child of Apache): one per open
# stream or request in flight, plus idle ones.
responder_pids() {
	local c exe
	for c in $(_stream_descendants "$ORDERS_SERVER_PID"); do
		exe=$(readlink "/proc/$c/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)} # the binary may have been rebuilt since it started
		if [[ ${exe##*/} == orders.fcgi ]] && alive "$c"; then
			printf '%s\n' "$c"
		fi
	done
	return 0
}

# The orders.fcgi process lighttpd spawned (under Apache: one of them).
responder_pid() {
	local p
	p=$(responder_pids)
	[[ -n $p ]] || return 1
	printf '%s\n' "${p%%$'\n'*}"
}

# busy_responder_pids: those of responder_pids serving a request right now.
# The web server connects to a responder once per request (mod_fcgid to the
# socket it made for that process), so a busy one holds a socket besides its
# listening one on fd 0; an idle one holds none.
busy_responder_pids() {
	local p f l
	for p in $(responder_pids); do
		for f in /proc/"$p"/fd/*; do
			[[ ${f##*/} != 0 ]] || continue
			l=$(readlink "$f" 2>/dev/null) || continue
			if [[ $l == socket:* ]]; then
				printf '%s\n' "$p"
				break
			fi
		done
	done
	return 0
}

# 8. SIGKILL the responder mid-stream; the reconnecting client sees every
# event committed meanwhile exactly once.
scase_sigkill_responder() {
	local a d old new last h i ok st deadline
	create_order "$(order_json 'Killed')"
	a=$OID
	note_change "$a" 'before the kill'
	d=$(stream_dir)
	sse_open k1 /api/v1/stream/events -H "Last-Event-ID: $((EVENT_ID - 1))"
	sse_wait_connected k1
	sse_wait_id k1 "$EVENT_ID"
	if on_apache; then
		# mod_fcgid: the process that holds the stream (nothing else is in
		# flight); its idle siblings serve the requests below
		old=$(busy_responder_pids)
		[[ $old =~ ^[0-9]+$ ]] || fail "expected one busy orders.fcgi under Apache $ORDERS_SERVER_PID, found [$old] (all: $(responder_pids | tr '\n' ' '))"
	else
		old=$(responder_pid) || fail "no orders.fcgi child of lighttpd $ORDERS_SERVER_PID"
	fi
	kill -KILL "$old"
	last=$(sse_ids "$(sse_body k1)" | tail -n 1)
	[[ $last == "$EVENT_ID" ]] || fail "last id seen $last, expected $EVENT_ID"
	# the stream ends (the web server lost its backend)
	wait_child_gone "$(sse_pid k1)" 10 || fail "the stream did not end after its responder was killed"
	# meanwhile: changes by sqlite3, and through the API once the web server has a responder again
	db "UPDATE orders SET note = 'while dead 1' WHERE id = '$a'"
	db "UPDATE orders SET note = 'while dead 2' WHERE id = '$a'"
	ok=0
	deadline=$(($(now_ms) + 20000))
	i=0
	while ((ok < 3 && $(now_ms) < deadline)); do
		i=$((i + 1))
		api_json PATCH "/api/v1/orders/$a" "{\"note\":\"after respawn $i\"}" --max-time 5
		if [[ $STATUS == 200 ]]; then
			ok=$((ok + 1))
		else
			sleep 0.2
		fi
	done
	((ok == 3)) || fail "no responder answered within 20 s after the kill (last $STATUS $BODY)"
	new=$(responder_pid) || fail "$ORDERS_TEST_SERVER did not respawn orders.fcgi"
	[[ $new != "$old" ]] || fail "responder PID unchanged ($old)"
	! alive "$old" || fail "the killed responder $old is still there"
	h=$(db_head)
	sse_open k2 /api/v1/stream/events -H "Last-Event-ID: $last"
	sse_wait_connected k2
	[[ $CONNECTED_HEAD == "$h" ]] || fail "connected lastEventId $CONNECTED_HEAD, head $h"
	sse_wait_id k2 "$h"
	note_change "$a" 'live after respawn'
	sse_wait_id k2 "$EVENT_ID" 3
	sse_close k2
	{
		sse_retry_text
		sse_connected_text "$h"
		sse_db_text "id > $last AND id <= $EVENT_ID"
	} >"$d/k2.expected"
	sse_strip_pings k2 "$d/k2.got" 0
	assert_same_file "$d/k2.expected" "$d/k2.got" "stream resumed after the kill from $last"
	# the killed stream's body held complete events only up to the kill
	sse_strip_pings k1 "$d/k1.got" 0
	local at
	if on_apache && at=$(grep -a -b -o -m 1 '<!DOCTYPE' "$d/k1.got" | cut -d: -f1) && [[ -n $at ]]; then
		# mod_fcgid answers a responder that vanished mid-response with a
		# 500, too late for the status line: Apache appends its error page
		# to the stream. It carries no field an EventSource acts on (no
		# data, id, event or retry line), so the client keeps the last
		# event it had; checked, then cut off.
		tail -c +$((at + 1)) "$d/k1.got" >"$d/k1.apache"
		if grep -aqE '^(data|id|event|retry)(:|$)' "$d/k1.apache"; then
			fail "what Apache appended to the cut stream has SSE fields: $(sed -n l "$d/k1.apache" | head -n 20)"
		fi
		head -c "$at" "$d/k1.got" >"$d/k1.events"
		mv "$d/k1.events" "$d/k1.got"
	fi
	{
		sse_retry_text
		sse_connected_text "$last"
		sse_db_text "id = $last"
	} >"$d/k1.expected"
	assert_same_file "$d/k1.expected" "$d/k1.got" "stream cut by the kill"
}

# 8b. ORDERS_STREAM_MAX_S against mod_fcgid's FcgidBusyTimeout (Apache).
# mod_fcgid stops a process whose request has run longer than
# FcgidBusyTimeout (SIGTERM, then SIGKILL at the next look), looking every
# FcgidBusyScanInterval. conf/apache-orders.conf.in keeps it above
# ORDERS_STREAM_MAX_S (3700 s against the default 3600 s), so that a stream
# ends itself first, after a complete event, and its process goes back to
# mod_fcgid's idle list instead of being stopped. The same order in seconds:
# ORDERS_STREAM_MAX_S=2 under FcgidBusyTimeout 4, looked at every second. The
# stream ends cleanly after 80-100 % of 2 s, well before 4 s; the process
# that held it is still alive after mod_fcgid would have stopped it (4 s
# and a scan); mod_fcgid logged no busy timeout (LogLevel fcgid:info says
# "took longer than busy timeout" for a request it cut); the client resumes
# without a gap, on a stream that ends the same way.
scase_stream_max_vs_busy_timeout() {
	on_apache || skip 'FcgidBusyTimeout is a mod_fcgid setting'
	local conf busy max d t0 t1 holder pid rc dur first last h writer i n
	conf=$ORDERS_REPO_ROOT/conf/apache-orders.conf.in
	busy=$(awk '$1 == "FcgidBusyTimeout" {print $2}' "$conf")
	max=$(awk '$1 == "FcgidInitialEnv" && $2 == "ORDERS_STREAM_MAX_S" {gsub(/"/, "", $3); print $3}' "$conf")
	[[ $busy =~ ^[0-9]+$ ]] || fail "no FcgidBusyTimeout in $conf"
	((busy > ${max:-3600})) || fail "$conf: FcgidBusyTimeout $busy is not above ORDERS_STREAM_MAX_S ${max:-3600}"

	APACHE_BIN=$(apache_with_directives 'FcgidBusyTimeout 4' 'FcgidBusyScanInterval 1' 'LogLevel warn fcgid:info') \
		stream_aux_start ORDERS_STREAM_MAX_S=2
	sql_orders 20 Churn
	d=$(stream_dir)
	t0=$(now_ms)
	sse_open v1 '/api/v1/stream/events?lastEventId=0'
	sse_wait_connected v1
	holder=$(busy_responder_pids)
	[[ $holder =~ ^[0-9]+$ ]] || fail "expected one busy orders.fcgi, found [$holder] (all: $(responder_pids | tr '\n' ' '))"
	# events keep flowing while the stream ends
	churn_until $(($(now_ms) + 4000))
	writer=$CHURN_PID
	pid=$(sse_pid v1)
	wait_child_gone "$pid" 6 || fail "stream v1 still open 6 s after it began (ORDERS_STREAM_MAX_S=2, FcgidBusyTimeout 4)"
	dur=$(($(now_ms) - t0))
	rc=0
	wait "$pid" || rc=$?
	((rc == 0)) || fail "stream v1 did not end cleanly: curl exit $rc ($(cat "$d/v1.err"))"
	((dur >= 1500)) || fail "stream v1 ended after $dur ms, before 80 % of 2 s"
	((dur < 4000)) || fail "stream v1 ended after $dur ms: not before FcgidBusyTimeout (4 s)"
	bg_kill "$writer"
	sse_strip_pings v1 "$d/v1.got" 0
	[[ $(tail -c 2 "$d/v1.got" | od -An -c | tr -d ' ') == '\n\n' ]] ||
		fail "stream v1 does not end after a complete event: $(tail -c 200 "$d/v1.got" | sed -n l)"
	first=$(sed -n 's/^data: {"message":"Connected to event stream","lastEventId":\([0-9]*\)}$/\1/p' "$d/v1.got")
	last=$(sse_ids "$d/v1.got" | tail -n 1)
	((last > first)) || fail "stream v1 saw no live event before it ended (connected at $first, last id ${last:-none})"
	{
		sse_retry_text
		sse_connected_text "$first"
		sse_db_text "id <= $last"
	} >"$d/v1.expected"
	assert_same_file "$d/v1.expected" "$d/v1.got" "stream ended by ORDERS_STREAM_MAX_S under mod_fcgid"
	alive "$holder" || fail "responder $holder, which held stream v1, is gone after the stream ended"
	# the client resumes from its last event; that stream too ends by itself
	t1=$(now_ms)
	sse_open v2 /api/v1/stream/events -H "Last-Event-ID: $last"
	sse_wait_connected v2
	((CONNECTED_HEAD > last)) || db "UPDATE orders SET note = 'one more' WHERE customer = 'Churn 1'"
	h=$(db_head)
	sse_wait_id v2 "$h" 5
	pid=$(sse_pid v2)
	wait_child_gone "$pid" 6 || fail "stream v2 still open 6 s after it began"
	dur=$(($(now_ms) - t1))
	rc=0
	wait "$pid" || rc=$?
	((rc == 0 && dur < 4000)) || fail "stream v2 did not end cleanly before FcgidBusyTimeout: curl exit $rc after $dur ms"
	sse_strip_pings v2 "$d/v2.got" 0
	[[ $(sse_ids "$d/v2.got" | tr '\n' ' ') == "$(db "SELECT id FROM events WHERE id > $last AND id <= $h ORDER BY id" | tr '\n' ' ')" ]] ||
		fail "resumed stream: ids differ from the table after $last: $(sse_ids "$d/v2.got" | tr '\n' ' ')"
	# past the moment mod_fcgid would have stopped v1's process (4 s after
	# the stream began, at a look every 1-2 s)
	n=$((t0 + 7000 - $(now_ms)))
	((n <= 0)) || sleep "$((n / 1000)).$(printf '%03d' $((n % 1000)))"
	alive "$holder" || fail "responder $holder, which held stream v1, was stopped: $(grep -F "($holder)" "$(server_log)" | tail -n 3)"
	if grep -q 'busy timeout' "$(server_log)"; then
		fail "mod_fcgid cut a request at its busy timeout: $(grep 'busy timeout' "$(server_log)" | head -n 3)"
	fi
}

# 9. ORDERS_MAX_STREAMS: the next stream gets 503 with Retry-After; health
# counts open streams, and they are released when the clients leave.
scase_max_streams() {
	stream_aux_start ORDERS_MAX_STREAMS=3
	local n
	[[ $(health_streams) == 0 ]] || fail "health streams $(health_streams) before any stream"
	for n in m1 m2 m3; do
		sse_open "$n" /api/v1/stream/events
		sse_wait_connected "$n"
	done
	wait_health_streams 3 5
	snap
	api GET /api/v1/stream/events --max-time 10
	assert_error 503 unavailable
	local ra
	ra=$(hdr Retry-After) || fail "503 without Retry-After: $STATUS $HEADERS $BODY"
	[[ $ra =~ ^[0-9]+$ ]] || fail "Retry-After [$ra] is not delay-seconds"
	assert_unchanged
	# still 503 with a position, a filter and gzip
	api GET '/api/v1/stream/events?types=order.created' -H 'Last-Event-ID: 0' -H 'Accept-Encoding: gzip' --max-time 10
	assert_error 503 unavailable
	# the REST API is not affected
	api GET /api/v1/orders
	assert_status 200
	# clients leave: lighttpd notices at the next ping (ORDERS_PING_S=1)
	sse_close m1
	wait_health_streams 2 8
	sse_close m2
	sse_close m3
	wait_health_streams 0 8
	for n in m4 m5 m6; do
		sse_open "$n" /api/v1/stream/events
		sse_wait_connected "$n"
	done
	wait_health_streams 3 5
	for n in m4 m5 m6; do sse_close "$n"; done
	wait_health_streams 0 8
}

# ORDERS_STREAM_MAX_S: a stream ends itself cleanly after 80-100 % of it,
# each stream at a point of its own, after a complete event, and the client
# resumes without a gap.
#
# The hub draws each stream's end when it adopts it (hub.c, begin_stream():
# now + ORDERS_STREAM_MAX_S * (0.8 + 0.2 * rand_r() / RAND_MAX), from one
# state per process seeded with its PID and the clock) and ends a stream
# that is due at its next tick (TICK_MS, 200 ms). curl times each stream
# (-w): its total time holds the whole stream, from before it connected;
# from its first byte (headers, retry and connected event, written when the
# hub adopted it) to its end is the stream's own duration, plus the trip of
# the last record through lighttpd. So, for each of STREAM_MAX_STREAMS
# streams under ORDERS_STREAM_MAX_S = STREAM_MAX_S:
#  - total time >= 80 % of it (less 1 ms: the hub counts whole milliseconds);
#  - first byte to end <= 100 % of it + STREAM_MAX_LATE_MS;
# and the streams do not all end at the same share of it: their durations
# (first byte to end) spread over STREAM_MAX_SPREAD_MS or more. Without the
# jitter they would all lie within one tick (200 ms) plus the noise of the
# measure; with it they are spread uniformly over 20 % of 5 s (1000 ms) plus
# the tick, and 16 such durations all fall within 300 ms with a chance under
# 1 in a million (2 million simulated runs: none did).
STREAM_MAX_S=5
STREAM_MAX_STREAMS=16
# The hub's 200 ms tick, and 400 ms for a shared, loaded 2-core machine to
# schedule the hub thread, lighttpd and curl (and the slower sanitizer build).
STREAM_MAX_LATE_MS=600
STREAM_MAX_SPREAD_MS=300

# curl_timing NAME: "FIRST_BYTE_US TOTAL_US" of a finished stream client
# opened with -w "$CURL_TIMING_W".
CURL_TIMING_W='%{stderr}timing %{time_starttransfer} %{time_total}\n'
curl_timing() {
	awk '$1 == "timing" {printf "%d %d\n", $2 * 1000000, $3 * 1000000; f = 1} END {exit !f}' "$(stream_dir)/$1.err"
}

scase_stream_max() {
	stream_aux_start ORDERS_STREAM_MAX_S=$STREAM_MAX_S
	local d n i pid rc first last writer deadline t_end st tot dur lo hi all=() durs=() min='' max=''
	sql_orders 20 Churn
	d=$(stream_dir)
	# three kinds of stream (replay from 0, filtered, gzip), the rest live
	sse_open e1 '/api/v1/stream/events?lastEventId=0' -w "$CURL_TIMING_W"
	sse_open e2 '/api/v1/stream/events?lastEventId=0&types=order.updated' -w "$CURL_TIMING_W"
	sse_open e3 '/api/v1/stream/events?lastEventId=0' --compressed -w "$CURL_TIMING_W"
	all=(e1 e2 e3)
	for ((i = 4; i <= STREAM_MAX_STREAMS; i++)); do
		sse_open "e$i" /api/v1/stream/events -w "$CURL_TIMING_W"
		all+=("e$i")
	done
	for n in "${all[@]}"; do sse_wait_connected "$n"; done
	# events keep flowing while the streams end
	t_end=$(($(now_ms) + STREAM_MAX_S * 1000 + STREAM_MAX_LATE_MS + 1000))
	churn_until "$t_end"
	writer=$CHURN_PID
	deadline=$((t_end + 3000))
	for n in "${all[@]}"; do
		pid=$(sse_pid "$n")
		wait_child_gone "$pid" $(((deadline - $(now_ms)) / 1000 + 1)) ||
			fail "stream $n still open $((STREAM_MAX_S + 4)) s after it began (ORDERS_STREAM_MAX_S=$STREAM_MAX_S)"
		rc=0
		wait "$pid" || rc=$?
		((rc == 0)) || fail "stream $n did not end cleanly: curl exit $rc ($(cat "$d/$n.err"))"
		read -r st tot < <(curl_timing "$n") || fail "stream $n: no timing from curl: $(cat "$d/$n.err")"
		dur=$(((tot - st) / 1000))
		lo=$((STREAM_MAX_S * 800 - 1))
		hi=$((STREAM_MAX_S * 1000 + STREAM_MAX_LATE_MS))
		((tot / 1000 >= lo)) || fail "stream $n ended $((tot / 1000)) ms after curl began: before 80 % of ORDERS_STREAM_MAX_S=$STREAM_MAX_S"
		((dur <= hi)) || fail "stream $n ended $dur ms after its first byte: more than 100 % of ORDERS_STREAM_MAX_S=$STREAM_MAX_S plus $STREAM_MAX_LATE_MS ms"
		durs+=("$dur")
		[[ -n $min ]] && ((min <= dur)) || min=$dur
		[[ -n $max ]] && ((max >= dur)) || max=$dur
		sse_strip_pings "$n" "$d/$n.got" 0
		[[ $(tail -c 2 "$d/$n.got" | od -An -c | tr -d ' ') == '\n\n' ]] ||
			fail "stream $n does not end after a complete event: $(tail -c 200 "$d/$n.got" | sed -n l)"
	done
	bg_kill "$writer"
	echo "# ORDERS_STREAM_MAX_S=$STREAM_MAX_S: ${#durs[@]} streams lasted $min..$max ms from their first byte: $(printf '%s\n' "${durs[@]}" | sort -n | tr '\n' ' ')" >&3
	((max - min >= STREAM_MAX_SPREAD_MS)) ||
		fail "the ${#durs[@]} streams all ended within $((max - min)) ms of each other's durations ($min..$max ms): ORDERS_STREAM_MAX_S is not jittered per stream (want a spread of $STREAM_MAX_SPREAD_MS ms or more)"
	# a stream's text is exactly its events, and a client resumes from its last one
	n=e1
	first=$(sed -n 's/^data: {"message":"Connected to event stream","lastEventId":\([0-9]*\)}$/\1/p' "$d/$n.got")
	last=$(sse_ids "$d/$n.got" | tail -n 1)
	{
		sse_retry_text
		sse_connected_text "$first"
		sse_db_text "id <= $last"
	} >"$d/$n.expected"
	assert_same_file "$d/$n.expected" "$d/$n.got" "stream ended by ORDERS_STREAM_MAX_S"
	sse_open e1b /api/v1/stream/events -H "Last-Event-ID: $last"
	sse_wait_connected e1b
	local h=$CONNECTED_HEAD
	((h > last)) || db "UPDATE orders SET note = 'one more' WHERE customer = 'Churn 1'"
	h=$(db_head)
	sse_wait_id e1b "$h" 5
	sse_close e1b
	sse_strip_pings e1b "$d/e1b.got" 0
	[[ $(sse_ids "$d/e1b.got" | tr '\n' ' ') == "$(db "SELECT id FROM events WHERE id > $last AND id <= $h ORDER BY id" | tr '\n' ' ')" ]] ||
		fail "resumed stream: ids differ from the table after $last"
}
