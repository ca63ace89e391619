# shellcheck shell=bash
# Two "hosts" over one PostgreSQL database, for tests/twohost.bats: one
# throwaway cluster (lib/pg.bash) and one database; hosts A and B are two
# instances of lib/common.bash (each its own temp dir, port, lighttpd and
# responder, and ORDERS_METRICS_FILE, since two hosts on one machine would
# otherwise share the per-host metrics file) with the same ORDERS_DB.
#
#   load 'lib/common'; load 'lib/stream'; load 'lib/pg'; load 'lib/twohost'
#   setup_file()    { twohost_setup_file; }
#   teardown_file() { twohost_teardown_file; }
#   setup()         { twohost_setup; }      # starts both hosts, at once
#   teardown()      { twohost_teardown; }   # stops them
#
# bats runs each test in a process of its own: a lighttpd started in one
# test is no child of the next, which then could neither stop it by its PID
# nor tell it from a stranger's. So each test starts both hosts (in setup,
# at the same moment, a second or two) and stops them (in teardown), and
# every PID this file signals is a child of the test's own process.
#
# Exported: TH_DB (the database's URL), TH_A and TH_B (the instances' dirs).
# host_use A|B makes a host the current instance (API_BASE, ORDERS_TMP, ...).

TWOHOST_PY=$ORDERS_TESTS_LIB/twohost.py

# The responders' environment on both hosts (common's defaults otherwise:
# ORDERS_POLL_MS=50, ORDERS_THREADS=8).
twohost_env() {
	printf '%s\n' "ORDERS_DB=$TH_DB" "ORDERS_METRICS_FILE=$ORDERS_TMP/metrics" "ORDERS_PING_S=5"
}

twohost_setup_file() {
	pg_start || return 1
	TH_DB=$(pg_new_db orders) || return 1
	instance_new
	TH_A=$ORDERS_TMP
	instance_new
	TH_B=$ORDERS_TMP
	export TH_DB TH_A TH_B
}

twohost_teardown_file() {
	local h rc=0
	for h in A B; do
		[[ -n ${TH_A:-} ]] || break
		host_use "$h"
		host_reap_stray
		instance_remove || rc=1
	done
	pg_stop
	return "$rc"
}

# twohost_setup: start both hosts at the same moment and wait for them.
twohost_setup() {
	host_launch A
	host_launch B
	host_wait A
	host_wait B
}

twohost_teardown() {
	local h
	if [[ ${BATS_TEST_COMPLETED:-} != 1 ]]; then
		for h in A B; do
			host_use "$h"
			echo "=== host $h ($API_BASE)"
			server_log_tail 15
			if [[ -s $ORDERS_TMP/server.out ]]; then
				echo "--- $ORDERS_TMP/server.out (the responder's stderr)"
				tail -n 15 "$ORDERS_TMP/server.out"
			fi
		done
		_pg_log_tail 15
	fi
	((${#STREAM_BG_PIDS[@]} == 0)) || bg_kill "${STREAM_BG_PIDS[@]}"
	STREAM_BG_PIDS=()
	for h in A B; do
		host_use "$h"
		host_stop
	done
	# after the stop, so that LeakSanitizer's report at exit is in; a test
	# that SIGKILLs a responder leaves no report from it, and fails nothing
	for h in A B; do
		host_use "$h"
		assert_no_sanitizer_report "$ORDERS_TMP/server.out"
	done
}

host_dir() { case $1 in A) printf '%s\n' "$TH_A" ;; B) printf '%s\n' "$TH_B" ;; *) return 1 ;; esac; }

# host_use A|B: make the host the current instance.
host_use() { instance_use "$(host_dir "$1")"; }

# host_base A|B: the host's http://127.0.0.1:PORT.
host_base() { (host_use "$1" && printf '%s\n' "$API_BASE"); }

# host_launch A|B: write the current config of the host and start its
# lighttpd (which spawns the responder at once) without waiting: so that
# both hosts can start at the same moment. host_wait then waits.
host_launch() {
	host_use "$1"
	local bin env
	local -a over
	bin=$(server_binary) || return 1
	mapfile -t over < <(twohost_env)
	env=$(_merge_env "${over[@]}")
	ORDERS_SERVER_KIND=lighttpd
	ORDERS_PORT=$(free_port) || return 1
	API_BASE=http://127.0.0.1:$ORDERS_PORT
	export ORDERS_SERVER_KIND ORDERS_PORT API_BASE
	_write_lighttpd_conf "$bin" <<<"$env"
	instance_chown
	_config_check lighttpd "$LIGHTTPD_BIN" -tt -f "$ORDERS_TMP/lighttpd.conf" || return 1
	"$LIGHTTPD_BIN" -D -f "$ORDERS_TMP/lighttpd.conf" </dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
	ORDERS_SERVER_PID=$!
	export ORDERS_SERVER_PID
	instance_save
}

# host_wait A|B [SECONDS]: until the host's /health answers 200; fails with
# its logs when it does not (or its lighttpd died).
host_wait() {
	host_use "$1"
	if ! wait_healthy "${2:-20}" || [[ $STATUS != 200 ]]; then
		echo "host $1 ($API_BASE) not healthy: $STATUS $BODY" >&2
		cat "$ORDERS_TMP/server.out" >&2
		server_log_tail 30 >&2
		return 1
	fi
}

# host_stop: stop the current host (TERM to its lighttpd, a child of this
# test's process, which stops its responder; see lib/stream.bash).
host_stop() { stream_server_stop; }

# host_reap_stray: the safety net of teardown_file, for a test that was cut
# short before its teardown: a lighttpd that the current host's
# instance.env names and that still runs this host's config (its command
# line says so, so it is no stranger's process that got the PID since), and
# its responders, get TERM, then KILL.
host_reap_stray() {
	local pid=${ORDERS_SERVER_PID:-} p
	local -a pids
	[[ -n $pid && -r /proc/$pid/cmdline ]] || return 0
	[[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *" -f $ORDERS_TMP/lighttpd.conf"* ]] || return 0
	mapfile -t pids < <(host_pids)
	echo "# host $ORDERS_TMP: its lighttpd $pid outlived its test; stopping it" >&3
	kill -TERM "${pids[@]}" 2>/dev/null || true
	for p in "${pids[@]}"; do
		wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true
	done
	ORDERS_SERVER_PID=
	export ORDERS_SERVER_PID
	instance_save
}

# host_pids: the current host's lighttpd and the responders it spawned.
host_pids() {
	[[ -n ${ORDERS_SERVER_PID:-} ]] || return 0
	printf '%s\n' "$ORDERS_SERVER_PID"
	ps -o pid= --ppid "$ORDERS_SERVER_PID" 2>/dev/null | tr -d ' '
}

# host_kill A|B: SIGKILL the host's responder and lighttpd, by PID (as a
# crash or a power cut of that host would end them).
host_kill() {
	host_use "$1"
	local -a pids
	mapfile -t pids < <(host_pids)
	((${#pids[@]} >= 2)) || fail "host $1: expected lighttpd and a responder, found PIDs: ${pids[*]}"
	# lighttpd first, so that it cannot spawn the responder again
	kill -KILL "${pids[0]}" "${pids[@]:1}"
	wait "${pids[0]}" 2>/dev/null || true
	local p
	for p in "${pids[@]}"; do
		wait_gone "$p" 5 || fail "host $1: process $p still alive after SIGKILL"
	done
	ORDERS_SERVER_PID=
	export ORDERS_SERVER_PID
	instance_save
}

# host_health A|B: GET /health on the host; sets STATUS, BODY, HEADERS.
host_health() {
	host_use "$1"
	api GET /api/v1/health
}

# dbq SQL...: psql on the shared database (pg_sql).
dbq() { pg_sql "$TH_DB" "$@"; }

# twohost_py CMD ARGS...: lib/twohost.py on hosts A and B; its JSON summary
# in TH_SUMMARY, its stderr in $BATS_TEST_TMPDIR/twohost.err. Fails the test
# with the summary when a check failed.
twohost_py() {
	local cmd=$1 rc=0
	shift
	TH_SUMMARY=$(python3 "$TWOHOST_PY" "$cmd" --base-a "$(host_base A)" --base-b "$(host_base B)" \
		--db-url "$TH_DB" --psql "$PG_BINDIR/psql" "$@" 2>"$BATS_TEST_TMPDIR/twohost.err") || rc=$?
	echo "# $(jq -c 'del(.failures)' <<<"$TH_SUMMARY" 2>/dev/null || printf '%s' "$TH_SUMMARY")" >&3
	((rc == 0)) || fail "twohost.py $cmd failed (exit $rc):
$(jq . <<<"$TH_SUMMARY" 2>/dev/null || printf '%s' "$TH_SUMMARY")
$(tail -n 20 "$BATS_TEST_TMPDIR/twohost.err")"
}

# twohost_py_bg CMD ARGS...: the same in the background (its PID in
# TH_PY_PID, tracked for teardown); twohost_py_wait collects it.
twohost_py_bg() {
	local cmd=$1
	shift
	python3 "$TWOHOST_PY" "$cmd" --base-a "$(host_base A)" --base-b "$(host_base B)" \
		--db-url "$TH_DB" --psql "$PG_BINDIR/psql" "$@" \
		>"$BATS_TEST_TMPDIR/twohost.out" 2>"$BATS_TEST_TMPDIR/twohost.err" 3>&- &
	TH_PY_PID=$!
	bg_track "$TH_PY_PID"
}

twohost_py_wait() {
	local rc=0
	wait "$TH_PY_PID" || rc=$?
	TH_SUMMARY=$(<"$BATS_TEST_TMPDIR/twohost.out")
	echo "# $(jq -c 'del(.failures)' <<<"$TH_SUMMARY" 2>/dev/null || printf '%s' "$TH_SUMMARY")" >&3
	((rc == 0)) || fail "twohost.py failed (exit $rc):
$(jq . <<<"$TH_SUMMARY" 2>/dev/null || printf '%s' "$TH_SUMMARY")
$(tail -n 20 "$BATS_TEST_TMPDIR/twohost.err")"
}

# wait_file PATH SECONDS: until PATH exists (or the background script ended).
wait_file() {
	local deadline=$(($(now_ms) + $2 * 1000))
	until [[ -e $1 ]]; do
		(($(now_ms) < deadline)) || fail "no $1 within $2 s: $(tail -n 5 "$BATS_TEST_TMPDIR/twohost.err" 2>/dev/null)"
		child_running "$TH_PY_PID" || fail "the script ended before $1: $(cat "$BATS_TEST_TMPDIR/twohost.out" "$BATS_TEST_TMPDIR/twohost.err" 2>/dev/null | tail -n 20)"
		sleep 0.02
	done
}

# parallel_gets N: N concurrent GET /api/v1/events?limit=1 on the current
# host; prints their statuses, one a line.
parallel_gets() {
	local i d=$BATS_TEST_TMPDIR/par
	local -a pids=()
	mkdir -p "$d"
	for i in $(seq 1 "$1"); do
		curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 \
			"$API_BASE/api/v1/events?limit=1" >"$d/$i" 2>/dev/null 3>&- &
		pids+=("$!")
	done
	for i in "${pids[@]}"; do wait "$i" || true; done
	cat "$d"/*
}
