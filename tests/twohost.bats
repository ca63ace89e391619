#!/usr/bin/env bats
# Two hosts over one PostgreSQL database (issue 11, "Two hosts"): hosts A and
# B are two lighttpd + responder pairs, each with its own temp dir, port and
# metrics file, and the same ORDERS_DB=postgresql://... on one throwaway
# cluster (lib/pg.bash; needs Debian's postgresql package). The writers and
# stream clients are lib/twohost.py.
# Each test starts both hosts (the first at the same moment on the empty
# database) and stops them, so each also runs alone (bats -f).
#
#   ORDERS_FCGI=$PWD/src/orders.fcgi bats --tap tests/twohost.bats

load 'lib/common'
load 'lib/stream'
load 'lib/pg'
load 'lib/twohost'

setup_file() {
	twohost_setup_file
}

teardown_file() {
	twohost_teardown_file
}

setup() {
	# the first test starts both hosts itself, at the same moment
	[[ $BATS_TEST_DESCRIPTION == "both hosts start at once"* ]] || twohost_setup
}

teardown() {
	twohost_teardown
}

# etag_of: the ETag of the last response.
etag_of() { hdr ETag; }

@test "both hosts start at once on an empty database: the schema is migrated once and both are healthy" {
	local h n want versions
	run dbq "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
	assert_output 0
	# both lighttpd spawn their responder at once; each migrates at start
	host_launch A
	host_launch B
	host_wait A
	host_wait B

	# one row per migration file, each applied once
	want=$(find "$BATS_TEST_DIRNAME/../sql/pg" -name '[0-9]*.sql' -printf '%f\n' |
		sed -E 's/^0*([0-9]+).*/\1/' | sort -n | paste -sd,)
	[[ -n $want ]] || fail "no migrations in sql/pg"
	run dbq "SELECT string_agg(version::text, ',' ORDER BY version) FROM orders_schema_version"
	assert_success
	assert_output "$want"
	n=$(dbq "SELECT count(*) FROM orders_schema_version")
	versions=$(tr ',' '\n' <<<"$want" | wc -l)
	((n == versions)) || fail "orders_schema_version has $n rows for $versions migrations"
	# the schema is whole: its one state row, no second copy of anything
	run dbq "SELECT count(*) FROM event_log_state"
	assert_output 1

	for h in A B; do
		host_health "$h"
		assert_status 200
		assert_jq '.status' '"ok"'
		assert_jq '.backend' '"postgresql"'
		assert_jq '.database' '"reachable"'
		assert_jq '.lastEventId' 0
		run grep -iE 'migration|cannot|failed|error' "$ORDERS_TMP/server.out" "$ORDERS_TMP/lighttpd-error.log"
		assert_failure
	done
	# each host its own metrics file
	[[ -e $TH_A/metrics && -e $TH_B/metrics ]] ||
		fail "each host should have its metrics file: $(ls -l "$TH_A" "$TH_B")"
}

@test "an order created on A reads the same on B with the same ETag; a stale If-Match is refused on either" {
	local oid body etag head v1_patch
	host_use A
	create_order "$(order_json 'Two Hosts' '"note":"from A"')"
	oid=$OID
	etag=$(etag_of)
	assert_equal "$etag" '"1"'
	api GET "/api/v1/orders/$oid"
	assert_status 200
	body=$BODY
	assert_equal "$body" "$ORDER"

	host_use B
	api GET "/api/v1/orders/$oid"
	assert_status 200
	assert_equal "$BODY" "$body"
	assert_hdr ETag "$etag"

	# a PATCH on A makes version 1 stale
	host_use A
	api_json PATCH "/api/v1/orders/$oid" '{"status":"paid"}' -H 'If-Match: "1"'
	assert_status 200
	assert_hdr ETag '"2"'
	v1_patch=$BODY
	head=$(dbq "SELECT head FROM event_log_state")

	for h in B A; do
		host_use "$h"
		api_json PATCH "/api/v1/orders/$oid" '{"note":"stale"}' -H 'If-Match: "1"'
		assert_error 412 precondition_failed
		run dbq "SELECT version, note FROM orders WHERE id = '$oid'"
		assert_output '2|from A'
		run dbq "SELECT head FROM event_log_state"
		assert_output "$head"
		api GET "/api/v1/orders/$oid"
		assert_status 200
		assert_equal "$BODY" "$v1_patch"
		assert_hdr ETag '"2"'
	done

	# the current version is taken on B, and A reads what B wrote
	host_use B
	api_json PATCH "/api/v1/orders/$oid" '{"note":"from B"}' -H 'If-Match: "2"'
	assert_status 200
	assert_hdr ETag '"3"'
	body=$BODY
	host_use A
	api GET "/api/v1/orders/$oid"
	assert_status 200
	assert_equal "$BODY" "$body"
	assert_hdr ETag '"3"'
}

@test "no gap: 4 writers alternating between A and B while 10 streams on each see every event once, in order" {
	twohost_py run --clients-a 10 --clients-b 10 --writers 4 --writes 200 --deadline 60
	[[ $(jq '.events' <<<"$TH_SUMMARY") -ge 800 ]] || fail "too few events: $TH_SUMMARY"
	[[ $(jq '.connections' <<<"$TH_SUMMARY") == 20 ]] || fail "a stream was reopened: $TH_SUMMARY"
}

@test "A's lighttpd and responder are killed: its streams reconnect to B with Last-Event-ID and miss nothing" {
	local act=$BATS_TEST_TMPDIR/kill
	twohost_py_bg run --clients-a 10 --clients-b 0 --failover --writers 2 --writer-hosts b \
		--action "$act" --action-after 150 --writes-after 150 --pause-ms 2 --deadline 60
	wait_file "$act.ready" 40
	host_kill A
	touch "$act.done"
	twohost_py_wait
	[[ $(jq '.switched' <<<"$TH_SUMMARY") == 10 ]] || fail "not every client moved to B: $TH_SUMMARY"
	[[ $(jq '.events_on_a_before_switch' <<<"$TH_SUMMARY") -gt 0 ]] || fail "no events before the kill: $TH_SUMMARY"
	host_health B
	assert_status 200
}

@test "a psql UPDATE on orders reaches the open streams on both hosts well within the 1 s fallback (NOTIFY)" {
	twohost_py notify --clients 3 --runs 6 --max-ms 900 --median-ms 200
}

@test "PostgreSQL restarts during writes on both hosts: nothing acknowledged is lost, 503 meanwhile, streams catch up" {
	local act=$BATS_TEST_TMPDIR/pg h
	twohost_py_bg run --clients-a 5 --clients-b 5 --writers 4 --allow-503 \
		--action "$act" --action-after 150 --writes-after 100 --pause-ms 2 --deadline 75
	wait_file "$act.ready" 40
	pg_restart
	touch "$act.done"
	twohost_py_wait
	local n503 n500
	n503=$(jq '.statuses["503"] // 0' <<<"$TH_SUMMARY")
	n500=$(jq '.statuses["500"] // 0' <<<"$TH_SUMMARY")
	((n500 == 0)) || fail "$n500 writes got 500: $TH_SUMMARY"
	((n503 > 0)) || fail "no write got 503 during the restart: did the outage happen? $TH_SUMMARY"
	[[ $(jq '.connections' <<<"$TH_SUMMARY") == 10 ]] || fail "a stream was closed: $TH_SUMMARY"
	for h in A B; do
		host_use "$h"
		wait_healthy 10 && [[ $STATUS == 200 ]] || fail "host $h not healthy after the restart: $STATUS $BODY"
		api GET /api/v1/health
		assert_jq '.database' '"reachable"'
	done
}

@test "once PostgreSQL is back after a restart, no request on either host gets 503" {
	local h r bad=() outage codes
	local -A lines=()
	for h in A B; do
		host_use "$h"
		# concurrent requests, so that every worker thread has its connection
		for r in 1 2 3; do parallel_gets 16 >/dev/null; done
		lines[$h]=$(wc -l <"$ORDERS_TMP/server.out")
	done
	pg_restart
	# PostgreSQL answers again, and the responders' reconnect backoff (at
	# most 5 s) has run out: from here on every request must succeed,
	# whichever worker thread takes it
	sleep 6
	for h in A B; do
		host_use "$h"
		for r in 1 2 3; do
			codes=$(parallel_gets 16 | sort | uniq -c | tr -s ' \n' ' ')
			[[ $codes =~ ^\ ?16\ 200\ ?$ ]] || bad+=("host $h, round $r of 16 concurrent GET /api/v1/events: ${codes}(count status)")
		done
		# "logs once per outage" (issue 11)
		outage=$(tail -n "+$((lines[$h] + 1))" "$ORDERS_TMP/server.out" | grep -c 'PostgreSQL does not answer' || true)
		((outage <= 1)) || bad+=("host $h logged the one outage $outage times: $(tail -n "+$((lines[$h] + 1))" "$ORDERS_TMP/server.out" | tr '\n' '|')")
	done
	((${#bad[@]} == 0)) || fail "$(printf '%s\n' "${bad[@]}")"
}
