# shellcheck shell=bash
# Exhaustion cases (issue 8): writers piling up behind a lock another
# process holds, rows of the event log that JSON cannot hold, descriptors
# running out, and SIGUSR1.
#
#   load 'lib/common'
#   load 'lib/stream'
#   load 'lib/faults'
#   load 'lib/exhaustion'
#
# Used by tests/exhaustion.bats. Like lib/faults.bash, each case starts an
# instance of its own inside the test, tracks every process it starts
# (bg_track) and stops it by PID; every wait is bounded.

# ---------------------------------------------------------------- helpers

# ecurl OUT [curl args...] URL: one request in the background; OUT gets
# "<status> <seconds>", OUT.hdr the headers. Sets ECURL_PID.
ecurl() {
	local out=$1
	shift
	curl -s -o /dev/null -D "$out.hdr" -w '%{http_code} %{time_total}\n' --max-time 30 "$@" \
		</dev/null >"$out" 2>/dev/null 3>&- &
	ECURL_PID=$!
	bg_track "$ECURL_PID"
}

# ---------------------------------------------------------------- 1. writers behind a lock

# Another process holds BEGIN EXCLUSIVE while 16 clients PATCH and POST at
# once. At most ORDERS_THREADS / 2 threads wait for the write lock; the
# other writes are refused at once, so threads stay free and 20 GETs in a
# row each answer within 1 s. Every write gets 503 unavailable with
# Retry-After within ORDERS_BUSY_TIMEOUT_MS (one deadline for the
# process's own mutex and SQLite's lock together) plus slack.
ecase_locked_writers() {
	local busy=2000 slack=1500
	faults_instance "ORDERS_BUSY_TIMEOUT_MS=$busy"
	local a d i t0 ms worst=0 code secs wms
	local -a pids=()
	create_order "$(order_json 'Held')"
	a=$OID
	d=$BATS_TEST_TMPDIR/writers
	mkdir -p "$d"
	snap
	faults_lock_start
	for i in $(seq 1 16); do
		if ((i % 2)); then
			ecurl "$d/$i" -X PATCH -H 'Content-Type: application/json' \
				--data-binary "{\"note\":\"writer $i\"}" "$API_BASE/api/v1/orders/$a"
		else
			ecurl "$d/$i" -X POST -H 'Content-Type: application/json' \
				--data-binary "$(order_json "Writer $i")" "$API_BASE/api/v1/orders"
		fi
		pids+=("$ECURL_PID")
	done
	for i in $(seq 1 20); do
		t0=$(now_ms)
		case $((i % 4)) in
		0) api GET "/api/v1/orders/$a" --max-time 10 ;;
		1) api GET '/api/v1/orders?limit=5' --max-time 10 ;;
		2) api GET '/api/v1/events?after=0' --max-time 10 ;;
		3) api GET /api/v1/health --max-time 10 ;;
		esac
		ms=$(($(now_ms) - t0))
		assert_status 200
		((ms > worst)) && worst=$ms
		((ms < 1000)) || fail "GET $i took $ms ms while writers waited for the lock"
	done
	echo "# 20 GETs under the lock: the slowest took $worst ms" >&3
	for i in "${pids[@]}"; do
		wait_child_gone "$i" 20 || fail "a writer got no answer within 20 s"
	done
	worst=0
	for i in $(seq 1 16); do
		read -r code secs <"$d/$i" || fail "writer $i wrote nothing"
		wms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
		[[ $code == 503 ]] || fail "writer $i: $code after $wms ms, expected 503: $(cat "$d/$i.hdr")"
		grep -qi '^Retry-After: [0-9]' "$d/$i.hdr" || fail "writer $i: 503 without Retry-After"
		((wms > worst)) && worst=$wms
		((wms <= busy + slack)) || fail "writer $i: 503 after $wms ms, over $busy ms + $slack ms"
	done
	echo "# 16 writers under the lock: 503 + Retry-After, the slowest after $worst ms" >&3
	assert_unchanged
	faults_lock_release
	api_json PATCH "/api/v1/orders/$a" '{"note":"after the lock"}'
	assert_status 200
	assert_no_sanitizer_report
}

# Without another process's lock, 16 writes at once (twice ORDERS_THREADS)
# queue for each other and are all accepted: the cap on waiting writers is
# for a lock that is held up, not for ordinary concurrency. The 16 requests
# are sent whole but for their last byte, which they all send together, so
# that the web server hands them to the responder at the same moment.
ecase_concurrent_writers() {
	faults_instance
	local out
	create_order "$(order_json 'Shared')"
	out=$(python3 - "$ORDERS_PORT" "$OID" <<'PY'
import json, socket, sys, time
port, oid = int(sys.argv[1]), sys.argv[2]
socks = []
for i in range(16):
    if i % 2:
        body = json.dumps({"note": "writer %d" % i}).encode()
        head = "PATCH /api/v1/orders/%s" % oid
    else:
        body = json.dumps({"customer": "Writer %d" % i, "items": [{"sku": "W-1", "name": "W",
                           "qty": 1, "unitPriceCents": 100}]}).encode()
        head = "POST /api/v1/orders"
    req = ("%s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
           % (head, len(body))).encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(req[:-1])
    socks.append((s, req[-1:]))
time.sleep(0.5)
for s, last in socks:
    s.sendall(last)
codes = []
for s, _ in socks:
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    codes.append(int(data.split(b" ", 2)[1]) if data else 0)
print(" ".join(map(str, codes)))
PY
	) || fail "the writers failed: $out"
	[[ $out =~ ^((200|201)\ ?)+$ ]] || fail "not every write was accepted: $out"
	[[ $(db "SELECT count(*) FROM orders WHERE customer LIKE 'Writer %'") == 8 ]] || fail "not 8 orders created"
	[[ $(db "SELECT version FROM orders WHERE id = '$OID'") == 9 ]] || fail "not 8 patches applied"
}

# Two responder processes (lighttpd max-procs 2, round robin) and 16
# writers that do not pause: the processes take turns at SQLite's lock all
# the time, each wait a transaction's milliseconds. That is not another
# process holding the lock: no write is refused, every one is applied.
ecase_two_process_writers() {
	ORDERS_TEST_MAX_PROCS=2 ORDERS_TEST_BALANCE=round-robin faults_instance
	local -a ids=()
	local i out
	for i in $(seq 1 16); do
		create_order "$(order_json "Turns $i")"
		ids+=("$OID")
	done
	[[ $(responder_pids | wc -l) == 2 ]] || fail "expected 2 responders, found: $(responder_pids | tr '\n' ' ')"
	out=$(timeout 120 python3 - "$ORDERS_PORT" "${ids[@]}" <<'PY'
import http.client, json, sys, threading
port, ids = int(sys.argv[1]), sys.argv[2:]
codes = {}
lock = threading.Lock()
def writer(oid):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for n in range(150):
        conn.request("PATCH", "/api/v1/orders/" + oid, body=json.dumps({"note": "turn %d" % n}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        with lock:
            codes[r.status] = codes.get(r.status, 0) + 1
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
t = [threading.Thread(target=writer, args=(oid,)) for oid in ids]
for x in t: x.start()
for x in t: x.join()
print(" ".join("%d:%d" % kv for kv in sorted(codes.items())))
PY
	) || fail "the writers failed: $out"
	echo "# 16 writers x 150 PATCHes over 2 processes: $out" >&3
	[[ $out == "200:2400" ]] || fail "not every PATCH was applied: $out"
	[[ $(db "SELECT count(*) FROM orders WHERE customer LIKE 'Turns %' AND version = 151") == 16 ]] \
		|| fail "not every order is at version 151"
}

# ---------------------------------------------------------------- 2. BLOBs in the event log

# eblob_row SQL_TYPE SQL_ORDER_ID SQL_PATCH SQL_TS: insert one event row by
# hand (values as SQL literals); sets EVENT_ID to its id.
eblob_row() {
	EVENT_ID=$(db "INSERT INTO events (type, order_id, patch, ts) VALUES ($1, $2, $3, $4);
	               SELECT max(id) FROM events")
}

# Rows written by hand with a BLOB type, order_id, patch or ts, between
# normal events: json_object() refuses BLOBs, and such a row used to stop
# every read of the log at it. They go out as text (their bytes when they
# are UTF-8, else their hex digits); a live stream and a stream replaying
# across them get every event after them, and pings; /events pages across
# them answer 200.
ecase_blob_rows() {
	faults_instance
	local a d h0 i id last got
	local -a blob=() expected_rows=()
	create_order "$(order_json 'Blob Neighbour')"
	a=$OID
	d=$(stream_dir)
	h0=$(db_head)
	sse_open live /api/v1/stream/events
	sse_wait_connected live
	[[ $CONNECTED_HEAD == "$h0" ]] || fail "connected lastEventId $CONNECTED_HEAD, head $h0"

	# normal, BLOB type, normal, BLOB order_id, normal, BLOB patches, BLOB ts, normal
	note_change "$a" 'before the blobs'
	eblob_row "CAST('order.updated' AS BLOB)" "'$a'" "'{\"note\":\"blob type\"}'" 1700000000001
	blob+=("$EVENT_ID")
	expected_rows+=("$EVENT_ID order.updated {\"type\":\"order.updated\",\"id\":\"$a\",\"patch\":{\"note\":\"blob type\"},\"ts\":1700000000001}")
	note_change "$a" 'between blobs 1'
	eblob_row "'order.updated'" "x'6F72645FFF00'" "'{}'" 1700000000002
	blob+=("$EVENT_ID")
	expected_rows+=("$EVENT_ID order.updated {\"type\":\"order.updated\",\"id\":\"6F72645FFF00\",\"patch\":{},\"ts\":1700000000002}")
	note_change "$a" 'between blobs 2'
	eblob_row "'order.updated'" "'$a'" "CAST('{\"note\":\"blob patch\"}' AS BLOB)" 1700000000003
	blob+=("$EVENT_ID")
	expected_rows+=("$EVENT_ID order.updated {\"type\":\"order.updated\",\"id\":\"$a\",\"patch\":{\"note\":\"blob patch\"},\"ts\":1700000000003}")
	eblob_row "'order.updated'" "'$a'" "x'FFFE7B7D'" 1700000000004
	blob+=("$EVENT_ID")
	expected_rows+=("$EVENT_ID order.updated {\"type\":\"order.updated\",\"id\":\"$a\",\"patch\":\"FFFE7B7D\",\"ts\":1700000000004}")
	eblob_row "x'FF'" "'$a'" "'{}'" "x'31'"
	blob+=("$EVENT_ID")
	expected_rows+=("$EVENT_ID FF {\"type\":\"FF\",\"id\":\"$a\",\"patch\":{},\"ts\":\"1\"}")
	note_change "$a" 'after the blobs'
	last=$EVENT_ID
	[[ $(db "SELECT count(*) FROM events WHERE typeof(type) = 'blob' OR typeof(order_id) = 'blob'
	         OR typeof(patch) = 'blob' OR typeof(ts) = 'blob'") == 5 ]] || fail "the BLOB rows are not BLOBs"

	# a stream replaying across them, opened now from before the first
	sse_open replay /api/v1/stream/events -H "Last-Event-ID: $h0"
	sse_wait_connected replay
	sse_wait_id live "$last" 5
	sse_wait_id replay "$last" 5
	# both are live now: pings, then a new event
	sse_wait replay $'event: ping\n' 4
	note_change "$a" 'live after the blobs'
	sse_wait_id live "$EVENT_ID" 3
	sse_wait_id replay "$EVENT_ID" 3
	sse_close live
	sse_close replay

	# exact text: the database's rows, the BLOB rows as converted above
	_eblob_expected() { # FROM_ID TO_ID
		local id r done_blob
		for id in $(db "SELECT id FROM events WHERE id > $1 AND id <= $2 ORDER BY id"); do
			done_blob=0
			for r in "${expected_rows[@]}"; do
				if [[ ${r%% *} == "$id" ]]; then
					r=${r#* }
					printf 'id: %s\nevent: %s\ndata: %s\n\n' "$id" "${r%% *}" "${r#* }"
					done_blob=1
				fi
			done
			((done_blob)) || sse_db_text "id = $id"
		done
	}
	{
		sse_retry_text
		sse_connected_text "$h0"
		_eblob_expected "$h0" "$EVENT_ID"
	} >"$d/live.expected"
	sse_strip_pings live "$d/live.got" 0
	assert_same_file "$d/live.expected" "$d/live.got" "live stream across the BLOB rows"
	{
		sse_retry_text
		sse_connected_text "$last"
		_eblob_expected "$h0" "$EVENT_ID"
	} >"$d/replay.expected"
	sse_strip_pings replay "$d/replay.got" 0
	assert_same_file "$d/replay.expected" "$d/replay.got" "stream replaying across the BLOB rows"

	# /events: pages of 2 across them, and one page with all of them
	i=$h0
	while ((i < EVENT_ID)); do
		api GET "/api/v1/events?after=$i&limit=2"
		assert_status 200
		got=$(jf '.data | length')
		((got > 0)) || fail "/events?after=$i&limit=2: empty page before the head: $BODY"
		i=$(jf '.data[-1].eventId')
	done
	api GET "/api/v1/events?after=$h0"
	assert_status 200
	assert_jq "[.data[] | select(.eventId == ${blob[1]}) | .id][0]" '"6F72645FFF00"'
	assert_jq "[.data[] | select(.eventId == ${blob[2]}) | .patch.note][0]" '"blob patch"'
	assert_jq "[.data[] | select(.eventId == ${blob[3]}) | .patch][0]" '"FFFE7B7D"'
	assert_jq "[.data[] | select(.eventId == ${blob[4]}) | .ts][0]" '"1"'
	assert_jq '.data | length' "$((EVENT_ID - h0))"
	assert_no_sanitizer_report
}

# ---------------------------------------------------------------- 3. descriptors, SIGUSR1

# estreams_open PREFIX N: N stream clients PREFIX1..PREFIXN; their PIDs in ESTREAM_PIDS.
estreams_open() {
	local i
	ESTREAM_PIDS=()
	for i in $(seq 1 "$2"); do
		SSE_MAX_TIME=60 sse_open "$1$i" /api/v1/stream/events
		ESTREAM_PIDS+=("$(sse_pid "$1$i")")
	done
}

# estreams_count PREFIX N PATTERN: how many of the N stream bodies hold PATTERN.
estreams_count() {
	local i n=0
	for i in $(seq 1 "$2"); do
		grep -q "$3" "$(sse_body "$1$i")" 2>/dev/null && n=$((n + 1))
	done
	echo "$n"
}

# elog_count PATTERN: lines of the responder's stderr matching PATTERN.
elog_count() {
	local -a files
	mapfile -t files < <(responder_stderr_files)
	cat "${files[@]}" 2>/dev/null | grep -c -- "$1" || true
}

# ehealth_20: /health answers 200 twenty times out of twenty.
ehealth_20() {
	local i st
	for i in $(seq 1 20); do
		st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$API_BASE/api/v1/health") || true
		[[ $st == 200 ]] || fail "/health answer $i of 20: $st"
	done
}

# enew_stream_works ORDER_ID: a new stream connects and gets a new event.
enew_stream_works() {
	sse_open fresh /api/v1/stream/events
	sse_wait_connected fresh
	note_change "$1" "after the exhaustion"
	sse_wait_id fresh "$EVENT_ID" 3
	sse_close fresh
}

# The responder's file limit is lowered to 64 after it started (prlimit), and
# 100 streams are opened: the descriptors run out and accept() fails with
# EMFILE. The workers log that once, back off and retry instead of ending;
# once the clients leave, the same process serves again.
ecase_accept_fails() {
	faults_instance
	local r a opened fails
	create_order "$(order_json 'Descriptor Test')"
	a=$OID
	r=$(faults_wait_responder 10) || fail "no responder"
	echo "# responder $r holds $(proc_fds "$r") descriptors at rest" >&3
	# as the responder's own user: root here may lack CAP_SYS_RESOURCE
	as_run_user prlimit --pid "$r" --nofile=64:64 || fail "prlimit failed"
	estreams_open x 100
	local deadline=$(($(now_ms) + 30000))
	until (($(elog_count 'accepting a connection failed') > 0)); do
		(($(now_ms) < deadline)) || fail "no accept failure logged within 30 s ($(estreams_count x 100 'event: connected') streams connected, $(proc_fds "$r") descriptors)"
		sleep 0.2
	done
	opened=$(estreams_count x 100 'event: connected')
	echo "# $opened of 100 streams connected before the descriptors ran out ($(proc_fds "$r") open)" >&3
	((opened > 0 && opened < 100)) || fail "$opened streams connected: the limit did not bite"
	sleep 2 # eight workers keep retrying meanwhile
	fails=$(elog_count 'accepting a connection failed')
	((fails == 1)) || fail "accept failures logged $fails times while the descriptors were out: not once"
	bg_kill "${ESTREAM_PIDS[@]}"
	faults_wait_health 20
	ehealth_20
	enew_stream_works "$a"
	[[ $(faults_responder_pid) == "$r" ]] || fail "the responder was replaced: $r is gone"
	# as the clients leave, a few more short spells may come and go
	echo "# accept failures logged: $(elog_count 'accepting a connection failed'); recoveries logged: $(elog_count 'accepting connections again')" >&3
	(($(elog_count 'accepting connections again') >= 1)) || fail "the recovery was not logged"
	assert_no_sanitizer_report
}

# The responder starts with a file limit of 64 (a wrapper runs `ulimit -n 64`)
# and ORDERS_MAX_STREAMS=1000: it lowers the cap to what the limit leaves
# after its threads and SQLite, and says so in one line. Of 100 streams, that
# many connect and the rest get 503 unavailable with Retry-After; the
# descriptors never run out; afterwards /health answers 20 times out of 20
# and a new stream works.
ecase_fd_limit_clamp() {
	faults_instance_unstarted
	local dir=$ORDERS_TMP/limited r a cap ok=0 refused=0 i st
	mkdir -p "$dir"
	cp "$(orders_binary)" "$dir/orders.fcgi"
	printf '#!/bin/sh\nulimit -n 64 || exit 1\nexec %s "$@"\n' "$dir/orders.fcgi" >"$dir/orders-limited"
	chmod 0755 "$dir" "$dir/orders.fcgi" "$dir/orders-limited"
	ORDERS_FCGI=$dir/orders-limited server_start "${STREAM_SUITE_ENV[@]}" ORDERS_MAX_STREAMS=1000
	r=$(faults_wait_responder 10) || fail "no responder"
	grep -q '^Max open files *64 *64 ' "/proc/$r/limits" || fail "the responder's limit: $(grep 'open files' "/proc/$r/limits")"
	create_order "$(order_json 'Clamp Test')"
	a=$OID
	(($(elog_count 'ORDERS_MAX_STREAMS lowered from 1000 to') == 1)) || fail "no single clamp line: $(server_log_tail 10)"
	cap=$(cat $(responder_stderr_files) | sed -n 's/.*ORDERS_MAX_STREAMS lowered from 1000 to \([0-9]*\):.*/\1/p' | head -n 1)
	echo "# file limit 64, $(proc_fds "$r") descriptors at rest: ORDERS_MAX_STREAMS lowered to $cap" >&3
	((cap > 0)) || fail "the cap is $cap: no stream could open"
	estreams_open c 100
	local deadline=$(($(now_ms) + 30000))
	while :; do
		ok=0 refused=0
		for i in $(seq 1 100); do
			st=$(sse_status "c$i")
			[[ $st == 200 ]] && grep -q 'event: connected' "$(sse_body "c$i")" && ok=$((ok + 1))
			[[ $st == 503 ]] && ! child_running "$(sse_pid "c$i")" && refused=$((refused + 1))
		done
		((ok + refused == 100)) && break
		(($(now_ms) < deadline)) || fail "after 30 s: $ok streams open, $refused refused, of 100"
		sleep 0.2
	done
	echo "# 100 streams: $ok open, $refused refused with 503; $(proc_fds "$r") descriptors open" >&3
	((ok == cap)) || fail "$ok streams open, the cap is $cap"
	for i in $(seq 1 100); do
		[[ $(sse_status "c$i") == 503 ]] || continue
		sse_hdr "c$i" Retry-After >/dev/null || fail "stream c$i: 503 without Retry-After"
		grep -q '"code":"unavailable"' "$(sse_body "c$i")" || fail "stream c$i: $(cat "$(sse_body "c$i")")"
	done
	(($(proc_fds "$r") < 64)) || fail "the responder holds $(proc_fds "$r") descriptors"
	(($(elog_count 'accepting a connection failed') == 0)) || fail "the descriptors ran out all the same"
	bg_kill "${ESTREAM_PIDS[@]}"
	wait_health_streams 0 10
	ehealth_20
	enew_stream_works "$a"
	[[ $(faults_responder_pid) == "$r" ]] || fail "the responder was replaced: $r is gone"
	assert_no_sanitizer_report
}

# SIGUSR1 makes libfcgi fail every later accept (os_unix.c: OS_SigusrHandler
# sets shutdownPending): the responder keeps it blocked, and serves on.
ecase_sigusr1() {
	faults_instance
	local r a
	create_order "$(order_json 'Signal Test')"
	a=$OID
	r=$(faults_wait_responder 10) || fail "no responder"
	kill -USR1 "$r"
	sleep 0.5
	ehealth_20
	kill -USR1 "$r"
	enew_stream_works "$a"
	ehealth_20
	[[ $(faults_responder_pid) == "$r" ]] || fail "the responder was replaced: $r is gone"
	assert_no_sanitizer_report
}
