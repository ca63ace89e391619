#!/usr/bin/env bats
# Tokens and CORS (SPEC.md section 5), behind lighttpd, or behind Apache
# httpd + mod_fcgid when this file is run by the name auth-apache.bats (a
# symbolic link to it) or with ORDERS_TEST_SERVER=apache.
# The cases live in lib/auth_cases.bash; each @test below is a one-line wrapper.
# Run from the repository root: bats --tap tests/auth.bats

load 'lib/common'
load 'lib/auth_cases'

setup_file() {
	case $BATS_TEST_FILENAME in
	*-apache.bats) export ORDERS_TEST_SERVER=apache ;;
	*) export ORDERS_TEST_SERVER=${ORDERS_TEST_SERVER:-lighttpd} ;;
	esac
	auth_suite_setup
}

teardown_file() {
	auth_suite_teardown
}

setup() {
	orders_test_setup
}

teardown() {
	orders_test_teardown
}

@test "tokens: POST without a token: 401 with WWW-Authenticate: Bearer" { case_auth_post_without_token; }
@test "tokens: wrong, partial, hashed-form, other-scheme tokens: 401" { case_auth_post_with_bad_tokens; }
@test "tokens: a raw token from the file" { case_auth_post_with_raw_token; }
@test "tokens: a token given as sha256:<hex> in the file" { case_auth_post_with_hashed_token; }
@test "tokens: the Bearer scheme is case-insensitive" { case_auth_scheme_case_insensitive; }
@test "tokens: PATCH and DELETE need a token" { case_auth_patch_delete_need_token; }
@test "tokens: 401 comes before body and id checks" { case_auth_checked_before_body; }
@test "tokens: GETs stay open without ORDERS_READ_TOKENS" { case_auth_reads_open_by_default; }
@test "CORS: allowed origins get Access-Control-Allow-Origin and Vary: Origin" { case_cors_allowed_origin; }
@test "CORS: other origins get no Access-Control-Allow-Origin" { case_cors_disallowed_origin; }
@test "CORS: headers on 201, 401 and 404 too" { case_cors_headers_on_writes_and_errors; }
@test "CORS: OPTIONS preflight 204 without a token" { case_cors_preflight; }
@test "CORS: preflight from another origin" { case_cors_preflight_disallowed_origin; }
@test "ORDERS_READ_TOKENS=1: GETs need a token" { case_read_tokens_required; }
@test "ORDERS_READ_TOKENS=1: writes need a token" { case_read_tokens_writes_still_need_token; }
@test "ORDERS_READ_TOKENS=1: the stream takes access_token or Authorization" { case_read_tokens_stream; }
@test "ORDERS_READ_TOKENS=1: /health needs a token too (401 + WWW-Authenticate, 200 with one); access_token only for the stream" { case_read_tokens_health; }
@test "CORS *: Access-Control-Allow-Origin: *" { case_cors_star; }
@test "tokens: the file is re-read when it changes" { case_auth_tokens_file_reloaded; }
@test "no crashed responder or sanitizer report in the server logs" { case_auth_no_crash_in_server_log; }
@test "every case in lib/auth_cases.bash has an @test here" { case_auth_all_cases_wrapped; }
