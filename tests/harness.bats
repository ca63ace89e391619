#!/usr/bin/env bats
# The harness's own checks, on fixtures: the sanitizer-report check that
# every suite runs when its responders have exited (instance_remove) must
# fail on an AddressSanitizer report, a UBSan "runtime error:" line and a
# LeakSanitizer summary, wherever the responder's stderr went, and must pass
# a log with only the service's ordinary lines. No server is started.
# Run from the repository root: bats --tap tests/harness.bats

load 'lib/common'

FIXTURES=$ORDERS_REPO_ROOT/tests/fixtures/sanitizer

setup() {
	ORDERS_TMP=$BATS_TEST_TMPDIR/instance
	mkdir -p "$ORDERS_TMP"
	export ORDERS_TMP
}

# report_in FIXTURE FILE: an instance whose FILE holds the fixture's lines.
report_in() {
	cp "$FIXTURES/$1" "$ORDERS_TMP/$2"
}

# The check fails, names the file and the line, and keeps the dir to read.
assert_caught() {
	local want=$1
	run assert_no_sanitizer_report
	assert_failure
	assert_output --partial "$want"
	run instance_remove
	assert_failure
	assert_output --partial "$want"
	[[ -d $ORDERS_TMP ]] || fail "instance_remove deleted the dir of a failed check"
}

@test "harness: an AddressSanitizer report in lighttpd's stderr (server.out) fails the check" {
	report_in asan-report.txt server.out
	assert_caught 'server.out:3:==4711==ERROR: AddressSanitizer: heap-buffer-overflow'
}

@test "harness: a UBSan runtime error in Apache's error log (mod_fcgid) fails the check" {
	report_in ubsan-runtime-error.txt apache-error.log
	assert_caught 'apache-error.log:2:src/cursor.c:61:23: runtime error: signed integer overflow'
}

@test "harness: a LeakSanitizer summary in a spawn-fcgi responder's log fails the check" {
	report_in lsan-summary.txt a.log
	assert_caught 'a.log:4:SUMMARY: AddressSanitizer: 96 byte(s) leaked'
}

@test "harness: each fixture report is caught in every file a responder writes to" {
	local f fx
	for fx in asan-report.txt ubsan-runtime-error.txt lsan-summary.txt; do
		for f in server.out lighttpd-error.log apache-error.log two.out migrate.log b.log; do
			rm -rf "$ORDERS_TMP" && mkdir -p "$ORDERS_TMP"
			report_in "$fx" "$f"
			run assert_no_sanitizer_report
			[[ $status != 0 ]] || fail "$fx in $f was not caught"
		done
	done
}

@test "harness: the service's ordinary lines and clients' requests in access logs pass" {
	report_in clean.txt server.out
	report_in clean.txt apache-error.log
	# whatever clients sent is in the access log, which is not the responder's
	report_in asan-report.txt lighttpd-access.log
	run assert_no_sanitizer_report
	assert_success
	run instance_remove
	assert_success
	[[ ! -d $ORDERS_TMP ]] || fail "instance_remove kept the dir of a clean instance"
}

@test "harness: a responder death in the web server's log fails assert_no_crash_in_log" {
	ORDERS_SERVER_KIND=lighttpd
	report_in clean.txt server.out
	printf '%s\n' '2026-12-01 10:00:05: (gw_backend.c.924) child signaled: 6' \
		'2026-12-01 10:00:05: (gw_backend.c.924) child exited: 134 unix:/tmp/x/orders.sock' >"$ORDERS_TMP/lighttpd-error.log"
	run assert_no_crash_in_log
	assert_failure
	assert_output --partial 'child exited: 134'
}
