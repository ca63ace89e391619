#!/usr/bin/env bats
# Streams through bursts larger than any stream's budget (SPEC section 4),
# behind lighttpd: a bulk edit of 10,000 orders with 200 streams open and
# one that reads nothing; a 2 MiB event live, gzip and in replay; pruning
# that overtakes a slow replay; a stream request with a body (behind Apache,
# since lighttpd refuses a GET with a body itself).
# The cases live in lib/burst.bash (client: lib/sse_burst.py).
# Run from the repository root: bats --tap tests/burst.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/burst'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd
	stream_suite_setup
}

teardown_file() {
	stream_suite_teardown
}

teardown() {
	stream_test_teardown
}

@test "burst: 200 streams through a bulk edit of 10,000 orders: all stay open and get every event; one that reads nothing is closed; RSS bounded" { bcase_bulk_edit; }
@test "burst: a 2 MiB event reaches a live, a gzip and a replaying stream whole, with the event after it" { bcase_big_event; }
@test "burst: pruning that overtakes a slow replay gives reset history_truncated, no silent gap" { bcase_prune_during_replay; }
@test "burst: a client resuming ahead of what the hub has read of a burst gets no reset and exactly the events after its position" { bcase_resume_ahead_of_window; }
@test "burst: a stream request with a body is refused (413) and opens no stream" { bcase_stream_with_body; }
