#!/usr/bin/env bats
# The C unit tests that need a PostgreSQL server (tests/unit/*_pg_test.c:
# the event log and the group commit on PostgreSQL), run against a
# throwaway cluster (tests/lib/pg.bash), each program on a new database of
# its own named by ORDERS_TEST_PG_URL. `make check` runs them as unit tests
# too, where they skip without that variable.
#
# One @test per program: it passes when the program ran to its end with a
# plan and without a `not ok`, a bail-out or a sanitizer's report; its TAP
# output is printed when it does not.
# The programs are found beside the responder that `make check` built
# (ORDERS_FCGI, default src/orders.fcgi: …/src/orders.fcgi -> …/tests/unit/).
# Run from the repository root: bats --tap tests/unit-pg.bats

BATS_LIB_DIR=${BATS_LIB_DIR:-/usr/lib/bats}
load "$BATS_LIB_DIR/bats-support/load"
load "$BATS_LIB_DIR/bats-assert/load"
load 'lib/pg'

: "${ORDERS_FCGI:=$BATS_TEST_DIRNAME/../src/orders.fcgi}"
UNIT_DIR=$(dirname "$ORDERS_FCGI")/../tests/unit
SANITIZER_REPORT_RE=$(<"$BATS_TEST_DIRNAME/lib/sanitizer-report.ere")

setup_file() {
	pg_start
}

teardown_file() {
	pg_stop
}

# run_unit NAME: runs tests/unit/NAME on a new database called NAME and
# checks its TAP output.
run_unit() {
	local name=$1 prog=$UNIT_DIR/$1 url
	[[ -x $prog ]] || skip "$prog is not built (make check TESTS= builds it; configure --without-postgresql leaves it out)"
	url=$(pg_new_db "$name") || fail "cannot create database $name"
	# A bound on the whole program, so that a test that hangs fails.
	run env ORDERS_TEST_PG_URL="$url" timeout 300 "$prog"
	local out=$output
	local planned
	planned=$(grep -E '^1\.\.[0-9]+' <<<"$out" | head -n 1)
	planned=${planned#1..}
	planned=${planned%% *}
	local passed failed skipped
	passed=$(grep -cE '^ok [0-9]+' <<<"$out" || true)
	failed=$(grep -cE '^not ok [0-9]+' <<<"$out" || true)
	# skipped ones count as passed; say so, with the reason (a known bug, say)
	skipped=$(grep -cE '^ok [0-9]+ .*# SKIP' <<<"$out" || true)
	echo "# $name: $passed passed ($skipped skipped), $failed failed of a plan of ${planned:-none}" >&3
	grep -E '^ok [0-9]+ .*# SKIP' <<<"$out" | sed 's/^/#   /' >&3 || true
	if ((status != 0)) || [[ -z $planned ]] || ((planned == 0)) || ((failed > 0)) ||
		((passed != planned)) || grep -q '^Bail out!' <<<"$out" ||
		grep -qE "$SANITIZER_REPORT_RE" <<<"$out"; then
		fail "$name exited $status, plan ${planned:-none}, $passed ok, $failed not ok:
$out"
	fi
}

@test "the event log on PostgreSQL (eventlog_pg_test)" {
	run_unit eventlog_pg_test
}

@test "the group commit on PostgreSQL (writes_pg_test)" {
	run_unit writes_pg_test
}
