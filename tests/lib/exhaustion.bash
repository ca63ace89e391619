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
