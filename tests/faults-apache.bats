#!/usr/bin/env bats
# Fault injection suite (issue 5) behind Apache httpd + mod_fcgid: the core
# cases of tests/faults.bats — the database locked by another process, the
# start-up refusals (directly, under spawn-fcgi and as mod_fcgid's process),
# /health while the database does not answer, and SIGTERM with requests in
# flight and a stream open. Under mod_fcgid every open stream and every
# request in flight holds a responder process of its own, and mod_fcgid
# answers with its own 500 when the process it starts exits at once.
# Run from the repository root: bats --tap tests/faults-apache.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/faults'

setup_file() {
	export ORDERS_TEST_SERVER=apache
	orders_binary >/dev/null
}

teardown() {
	stream_test_teardown
}

@test "apache faults: database locked by another process: writes 503 + Retry-After after the busy timeout, reads go on, streams catch up" { fcase_db_locked; }
@test "apache faults: start-up refuses a read-only database file (one line on stderr, exit non-zero)" { fcase_startup_refusal readonly; }
@test "apache faults: start-up refuses a database in a missing directory" { fcase_startup_refusal missing_dir; }
@test "apache faults: start-up refuses a corrupt database file (random bytes)" { fcase_startup_refusal corrupt; }
@test "apache faults: start-up refuses a damaged database (valid header, schema page overwritten)" { fcase_startup_refusal damaged; }
@test "apache faults: start-up refuses a database with a newer schema (user_version 99)" { fcase_startup_refusal newer_schema; }
@test "apache faults: /health answers 503 unavailable + Retry-After while the database does not answer (a damaged page), 200 again once it does" { fcase_health_db_unavailable; }
@test "apache faults: SIGTERM to every responder with requests in flight and a stream open: 2xx, clean stream end, exit within 5 s, resume misses nothing" { fcase_graceful_stop; }
