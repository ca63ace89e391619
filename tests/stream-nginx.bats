#!/usr/bin/env bats
# Event stream suite (SPEC.md section 4) behind nginx: the cases of
# tests/stream.bats that do not build a lighttpd of their own, then nginx's
# FastCGI connection reuse (fastcgi_keep_conn on, upstream keepalive):
# requests share kept connections, each idle one holds a responder thread,
# a stream over a kept connection is closed by the responder when it ends,
# and SIGTERM still stops a responder whose threads wait on idle ones.
# nginx does not start FastCGI programs: tests/lib/nginx-run.sh starts the
# responder with spawn-fcgi, and again when it dies.
# Run from the repository root: bats --tap tests/stream-nginx.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/keepconn'

setup_file() {
	export ORDERS_TEST_SERVER=nginx
	stream_suite_setup
}

teardown_file() {
	stream_suite_teardown
}

teardown() {
	stream_test_teardown
}

@test "nginx stream: retry, connected, replay from 0, live event and ping, byte for byte" { scase_sequence_byte_for_byte; }
@test "nginx stream: replay from 0, from the middle (header and parameter) and from the head" { scase_replay_positions; }
@test "nginx stream: Last-Event-ID header wins over the lastEventId parameter" { scase_header_wins; }
@test "nginx stream: invalid Last-Event-ID or lastEventId: 400 invalid_last_event_id" { scase_invalid_last_event_id; }
@test "nginx stream: position beyond the head: reset unknown_event_id, then live" { scase_reset_unknown_event_id; }
@test "nginx stream: position 9223372036854775807 (largest SQLite id): reset unknown_event_id, not 400" { scase_reset_max_id; }
@test "nginx stream: position below the pruned history: reset history_truncated, then live" { scase_reset_history_truncated; }
@test "nginx stream: filters types, ids and both on replay and live; unknown type 400" { scase_filters; }
@test "nginx stream: gzip is decoded to the same text and stays live" { scase_gzip; }
@test "nginx stream: a long replay (3000+ events) is exact: plain, gzip and filtered, then live" { scase_long_replay; }
@test "nginx stream: a change made with the sqlite3 command reaches an open stream within 1 s" { scase_sqlite3_change; }
@test "nginx stream: a hand-made event whose patch is not JSON goes out as a JSON string, live and in replay" { scase_hand_made_patch; }
@test "nginx stream: no gap, no duplicate: 4 writers x 500 PATCHes, 50 clients dropping and reconnecting" { scase_nogap; }
@test "nginx stream: responder SIGKILLed mid-stream, started again; resuming client sees every event once" { scase_sigkill_responder; }
@test "nginx stream: ORDERS_MAX_STREAMS gives 503 with Retry-After; health counts and releases streams" { scase_max_streams; }
@test "nginx stream: ORDERS_STREAM_MAX_S ends 16 streams cleanly after 80-100 %, each at its own point; resume without gap" { scase_stream_max; }
@test "nginx keep-conn: 60 requests in a row share one FastCGI connection, which holds the one responder thread" { kcase_reuse; }
@test "nginx keep-conn: a stream takes a kept connection, the REST API goes on, and after the stream it still works" { kcase_stream_over_kept; }
@test "nginx keep-conn: a stream asked with FCGI_KEEP_CONN ends cleanly, the responder closes its connection" { kcase_stream_keep_conn_flag; }
@test "nginx keep-conn: SIGTERM stops a responder whose threads wait on idle kept connections, within 5 s" { kcase_sigterm_idle; }
