#!/usr/bin/env bats
# Event stream suite (SPEC.md section 4) behind Apache httpd + mod_fcgid: the
# core cases of tests/stream.bats (byte-exact sequence, positions, resets,
# filters, gzip, a change made with sqlite3, a hand-made event that is not
# JSON, the no-gap load test, a killed responder), and ORDERS_STREAM_MAX_S
# against mod_fcgid's FcgidBusyTimeout. mod_fcgid gives each open stream a
# responder process of its own, so FcgidMaxProcessesPerClass is raised for
# this suite, and /health's stream count (per process) is not asserted here.
# Run from the repository root: bats --tap tests/stream-apache.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'

setup_file() {
	export ORDERS_TEST_SERVER=apache
	stream_apache_wrapper 40
	stream_suite_setup
}

teardown_file() {
	stream_suite_teardown
}

teardown() {
	stream_test_teardown
}

@test "apache stream: retry, connected, replay from 0, live event and ping, byte for byte" { scase_sequence_byte_for_byte; }
@test "apache stream: replay from 0, from the middle (header and parameter) and from the head" { scase_replay_positions; }
@test "apache stream: Last-Event-ID header wins over the lastEventId parameter" { scase_header_wins; }
@test "apache stream: invalid Last-Event-ID or lastEventId: 400 invalid_last_event_id" { scase_invalid_last_event_id; }
@test "apache stream: position beyond the head: reset unknown_event_id, then live" { scase_reset_unknown_event_id; }
@test "apache stream: position 9223372036854775807 (largest SQLite id): reset unknown_event_id, not 400" { scase_reset_max_id; }
@test "apache stream: position below the pruned history: reset history_truncated, then live" { scase_reset_history_truncated; }
@test "apache stream: filters types, ids and both on replay and live; unknown type 400" { scase_filters; }
@test "apache stream: gzip is decoded to the same text and stays live" { scase_gzip; }
@test "apache stream: a long replay (3000+ events) is exact: plain, gzip and filtered, then live" { scase_long_replay; }
@test "apache stream: a change made with the sqlite3 command reaches an open stream within 1 s" { scase_sqlite3_change; }
@test "apache stream: a hand-made event whose patch is not JSON goes out as a JSON string, live and in replay" { scase_hand_made_patch; }
@test "apache stream: no gap, no duplicate: 4 writers x 200 PATCHes, 8 clients dropping and reconnecting" { scase_nogap; }
@test "apache stream: responder SIGKILLed mid-stream, another serves; resuming client sees every event once" { scase_sigkill_responder; }
@test "apache stream: ORDERS_STREAM_MAX_S ends a stream cleanly before FcgidBusyTimeout, its process kept, resume without gap" { scase_stream_max_vs_busy_timeout; }
