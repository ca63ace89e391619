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
@test "exhaustion: 16 writes at once without another process's lock: all accepted" { ecase_concurrent_writers; }
@test "exhaustion: two responder processes, 16 writers without pause: taking turns at the lock refuses no write" { ecase_two_process_writers; }
@test "exhaustion: BLOB type, order_id, patch, ts written by hand: live and replaying streams get every event after them, /events pages answer" { ecase_blob_rows; }
@test "exhaustion: file limit lowered to 64 under 100 streams: accept failures logged once and retried; /health 20/20 and a new stream afterwards" { ecase_accept_fails; }
@test "exhaustion: started with a file limit of 64: ORDERS_MAX_STREAMS lowered with one line, streams over it 503 + Retry-After, /health 20/20 and a new stream afterwards" { ecase_fd_limit_clamp; }
@test "exhaustion: SIGUSR1 does not stop the responder from accepting" { ecase_sigusr1; }
