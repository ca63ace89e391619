#!/usr/bin/env bats
# Event stream suite (SPEC.md section 4) behind Apache httpd + mod_proxy_fcgi
# (event MPM, tests/lib/apache-proxy.conf.in, after
# conf/apache-proxy-orders.conf.in): the cases of tests/stream.bats that do
# not build a lighttpd of their own, as tests/stream-nginx.bats runs them.
# Apache does not start the responder here: tests/lib/front-run.sh starts it
# with spawn-fcgi, and again when it dies. Each open stream holds an httpd
# worker thread, not a responder process (one responder serves them all, so
# /health's stream count is asserted as behind lighttpd). Then the REST
# API over kept connections (enablereuse=on) beside a stream that is not kept.
# Run from the repository root: bats --tap tests/stream-apache-proxy.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/keepconn'

setup_file() {
	export ORDERS_TEST_SERVER=apache-proxy
	stream_suite_setup
}

teardown_file() {
	stream_suite_teardown
}

teardown() {
	stream_test_teardown
}

@test "apache-proxy stream: retry, connected, replay from 0, live event and ping, byte for byte" { scase_sequence_byte_for_byte; }
@test "apache-proxy stream: replay from 0, from the middle (header and parameter) and from the head" { scase_replay_positions; }
@test "apache-proxy stream: Last-Event-ID header wins over the lastEventId parameter" { scase_header_wins; }
@test "apache-proxy stream: invalid Last-Event-ID or lastEventId: 400 invalid_last_event_id" { scase_invalid_last_event_id; }
@test "apache-proxy stream: position beyond the head: reset unknown_event_id, then live" { scase_reset_unknown_event_id; }
@test "apache-proxy stream: position 9223372036854775807 (largest SQLite id): reset unknown_event_id, not 400" { scase_reset_max_id; }
@test "apache-proxy stream: position below the pruned history: reset history_truncated, then live" { scase_reset_history_truncated; }
@test "apache-proxy stream: filters types, ids and both on replay and live; unknown type 400" { scase_filters; }
@test "apache-proxy stream: gzip is decoded to the same text and stays live" { scase_gzip; }
@test "apache-proxy stream: a long replay (3000+ events) is exact: plain, gzip and filtered, then live" { scase_long_replay; }
@test "apache-proxy stream: a change made with the sqlite3 command reaches an open stream within 1 s" { scase_sqlite3_change; }
@test "apache-proxy stream: a hand-made event whose patch is not JSON goes out as a JSON string, live and in replay" { scase_hand_made_patch; }
@test "apache-proxy stream: no gap, no duplicate: 4 writers x 500 PATCHes, 50 clients dropping and reconnecting" { scase_nogap; }
@test "apache-proxy stream: responder SIGKILLed mid-stream, started again; resuming client sees every event once" { scase_sigkill_responder; }
@test "apache-proxy stream: ORDERS_MAX_STREAMS gives 503 with Retry-After; health counts and releases streams" { scase_max_streams; }
@test "apache-proxy stream: ORDERS_STREAM_MAX_S ends 16 streams cleanly after 80-100 %, each at its own point; resume without gap" { scase_stream_max; }
@test "apache-proxy keep-conn: REST requests share at most 2 x 2 kept connections; a stream has its own, closed when it ends" { kcase_proxy_reuse; }
