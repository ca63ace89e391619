#!/usr/bin/env bats
# Hostile-client suite (issue 5) behind lighttpd: 10,000 headers, a 1 MB
# header value, 100,000 query parameters, slowloris (trickled bodies and
# heads), 1,000 idle connections, CR/LF injection in headers and parameters,
# SQL metacharacters everywhere. Each case then checks that the responder is
# the same process, answers a normal GET within 1 s, and is back to its
# thread and descriptor counts (/proc/PID/status Threads, /proc/PID/fd).
# Requests that lighttpd's defaults refuse are also sent through a second,
# permissive lighttpd on the same FastCGI socket, so that they reach the
# responder. The cases live in lib/hostile.bash (clients: lib/hostile.py).
# Run from the repository root: bats --tap tests/hostile.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/faults'
load 'lib/hostile'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd
	hostile_suite_setup
}

teardown_file() {
	hostile_suite_teardown
}

setup() {
	orders_test_setup
}

teardown() {
	stream_test_teardown
}

@test "hostile: 10,000 headers (refused by lighttpd or answered), up to 7,000 through a permissive front; responder recovers" { hcase_many_headers; }
@test "hostile: a 1 MB header value (lighttpd 431), 60 KB through a permissive front; responder recovers" { hcase_huge_header; }
@test "hostile: 100,000 query parameters (refused by lighttpd), thousands through a permissive front, huge ids filter; responder recovers" { hcase_many_params; }
@test "hostile: slowloris: 8 trickled bodies and 4 trickled heads while normal GETs answer within 1 s" { hcase_slowloris; }
@test "hostile: 1,000 connections that never send while a normal GET answers within 1 s; descriptors back after closing" { hcase_idle_connections; }
@test "hostile: CR/LF in Idempotency-Key, If-Match, If-None-Match, Last-Event-ID, Origin and parameters never reaches a response header" { hcase_crlf_injection; }
@test "hostile: SQL metacharacters in every parameter, header and field are inert" { hcase_sql_metacharacters; }
@test "hostile: 10 trickled bodies through a front that streams request bodies (stream-request-body = 2): each POST gets 201; responder recovers" { hcase_slowloris_streamed_bodies; }
@test "hostile: the suite's responder survived every case; no crash or sanitizer report" {
	faults_alive "$(hostile_rpid)" || fail "responder $(hostile_rpid) is gone"
	[[ $(faults_responder_pid) == "$(hostile_rpid)" ]] || fail "lighttpd's responder changed: $(faults_responder_pid)"
	assert_no_crash_in_log
}
