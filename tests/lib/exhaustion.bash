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
