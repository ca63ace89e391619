#!/usr/bin/env bats
# Exhaustion suite (issue 8) behind lighttpd: writers piling up behind a lock
# held by another process, rows of the event log that JSON cannot hold,
# descriptors running out, and signals libfcgi would take for its own.
# The cases live in lib/exhaustion.bash and use the helpers of lib/stream
# and lib/faults. Each case starts an instance of its own (temp dir,
# database, lighttpd on a free port).
# Run from the repository root: bats --tap tests/exhaustion.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/faults'
load 'lib/exhaustion'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd
	orders_binary >/dev/null
}

teardown() {
	stream_test_teardown
}

@test "exhaustion: 16 writers behind another process's lock: GETs answer within 1 s each, writes 503 + Retry-After within the busy timeout" { ecase_locked_writers; }
@test "exhaustion: BLOB type, order_id, patch, ts written by hand: live and replaying streams get every event after them, /events pages answer" { ecase_blob_rows; }
