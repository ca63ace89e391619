#!/usr/bin/env bats
# Event stream suite (SPEC.md section 4) behind lighttpd: the byte-exact
# sequence, replay and positions, resets, filters, gzip, other processes'
# commits, a hand-made event that is not JSON, the no-gap load test, slow
# clients, a killed responder, the stream limit and ORDERS_STREAM_MAX_S.
# The cases live in lib/stream.bash; tests/stream-apache.bats runs the core
# ones behind Apache httpd + mod_fcgid.
# On PostgreSQL (a throwaway cluster, tests/lib/pg.bash) by the name
# stream-pg.bats (a symbolic link to it) or with ORDERS_TEST_BACKEND=postgresql.
# Run from the repository root: bats --tap tests/stream.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd
	orders_suite_from_name
	stream_suite_setup
}

teardown_file() {
	stream_suite_teardown
}

teardown() {
	stream_test_teardown
}

@test "stream: retry, connected, replay from 0, live event and ping, byte for byte" { scase_sequence_byte_for_byte; }
@test "stream: replay from 0, from the middle (header and parameter) and from the head" { scase_replay_positions; }
@test "stream: Last-Event-ID header wins over the lastEventId parameter" { scase_header_wins; }
@test "stream: invalid Last-Event-ID or lastEventId: 400 invalid_last_event_id" { scase_invalid_last_event_id; }
@test "stream: position beyond the head: reset unknown_event_id, then live" { scase_reset_unknown_event_id; }
@test "stream: position 9223372036854775807 (largest SQLite id): reset unknown_event_id, not 400" { scase_reset_max_id; }
@test "stream: position below the pruned history: reset history_truncated, then live" { scase_reset_history_truncated; }
@test "stream: filters types, ids and both on replay and live; unknown type 400" { scase_filters; }
@test "stream: gzip is decoded to the same text and stays live" { scase_gzip; }
@test "stream: a long replay (3000+ events) is exact: plain, gzip and filtered, then live" { scase_long_replay; }
@test "stream: a change made with the sqlite3 command reaches an open stream within 1 s" { scase_sqlite3_change; }
@test "stream: a hand-made event whose patch is not JSON goes out as a JSON string, live and in replay" { scase_hand_made_patch; }
@test "stream: two responder processes (spawn-fcgi) on one database see each other's commits within 1 s" { scase_cross_process; }
@test "stream: no gap, no duplicate: 4 writers x 500 PATCHes, 50 clients dropping and reconnecting" { scase_nogap; }
@test "stream: no gap under group commit: 16 writers x 300 PATCHes without pause, every 5th refused (412), 20 clients" { scase_nogap_grouped; }
@test "stream: a client that stops reading is closed after ORDERS_WRITE_TIMEOUT_S, others not slowed" { scase_slow_client_dropped; }
@test "stream: responder SIGKILLed mid-stream, respawned; resuming client sees every event once" { scase_sigkill_responder; }
@test "stream: ORDERS_MAX_STREAMS gives 503 with Retry-After; health counts and releases streams" { scase_max_streams; }
@test "stream: ORDERS_STREAM_MAX_S ends 16 streams cleanly after 80-100 %, each at its own point; resume without gap" { scase_stream_max; }
