# shellcheck shell=bash
# Helpers for the orders integration suites (bats).
#
#   load 'lib/common'            # from a tests/*.bats file
#
# Environment:
#   ORDERS_FCGI          the responder binary (default <repo>/src/orders.fcgi)
#   ORDERS_TEST_SERVER   lighttpd (default), apache (mod_fcgid), apache-proxy
#                        (mod_proxy_fcgi) or nginx
#   ORDERS_TEST_BACKEND  sqlite (default) or postgresql. With postgresql the
#                        suite starts one throwaway cluster (tests/lib/pg.bash,
#                        orders_backend_setup, once per bats file; stopped by
#                        orders_backend_teardown), every instance gets a new
#                        database of its own (ORDERS_DB_URL in instance.env),
#                        the responder gets ORDERS_DB=<that URL> and
#                        ORDERS_METRICS_FILE=$ORDERS_TMP/metrics, and db runs
#                        psql on it. A suite whose file name ends in -pg.bats
#                        sets it (orders_suite_from_name)
#   ORDERS_TEST_KEEP=1   keep the suite's temp dir (configs, logs, database)
#   ORDERS_TEST_USER     unprivileged user for the web server when run as root
#                        (default www-data, else nobody)
#   ORDERS_TEST_TMPDIR   where the temp dirs go (default $TMPDIR, else /tmp)
#   ORDERS_TEST_TRACE    a file: every request is logged there with its time
#   ORDERS_TEST_MAX_PROCS  lighttpd's max-procs for the responder (default 1);
#                        with N > 1 process i listens on $ORDERS_TMP/orders.sock-i
#   ORDERS_TEST_BALANCE  lighttpd's balance (default least-connection)
#   NGINX_KEEPALIVE      nginx's upstream keepalive (idle connections kept to
#                        the responder), default 2 as in conf/nginx-orders.conf
#   APACHE_PROXY_REUSE_MAX  apache-proxy's enablereuse max= per httpd process
#                        (default 2; 2 processes x 2 < ORDERS_THREADS 8)
#
# One "instance" = one temp dir with its own SQLite file (or PostgreSQL
# database), web server config and server process. The current instance is
# described by exported variables:
#   ORDERS_TMP  ORDERS_DBFILE  ORDERS_DB_URL  ORDERS_PORT  ORDERS_SERVER_PID  API_BASE
# (ORDERS_DB_URL is empty on SQLite; orders_db prints what ORDERS_DB is)
# and is also written to $ORDERS_TMP/instance.env, so a suite with two
# servers switches between them with instance_use DIR.

BATS_LIB_DIR=${BATS_LIB_DIR:-/usr/lib/bats}
load "$BATS_LIB_DIR/bats-support/load"
load "$BATS_LIB_DIR/bats-assert/load"

ORDERS_TESTS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORDERS_REPO_ROOT=$(cd "$ORDERS_TESTS_LIB/../.." && pwd)
export ORDERS_TESTS_LIB ORDERS_REPO_ROOT
: "${ORDERS_FCGI:=$ORDERS_REPO_ROOT/src/orders.fcgi}"
: "${ORDERS_TEST_SERVER:=lighttpd}"
: "${ORDERS_TEST_BACKEND:=sqlite}"
export ORDERS_FCGI ORDERS_TEST_SERVER ORDERS_TEST_BACKEND

LIGHTTPD_BIN=${LIGHTTPD_BIN:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
APACHE_BIN=${APACHE_BIN:-$(command -v apache2 || echo /usr/sbin/apache2)}
APACHE_MODULES=${APACHE_MODULES:-/usr/lib/apache2/modules}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}

# ---------------------------------------------------------------- basics

on_apache() { [[ $ORDERS_TEST_SERVER == apache ]]; }
on_lighttpd() { [[ $ORDERS_TEST_SERVER == lighttpd ]]; }
on_nginx() { [[ $ORDERS_TEST_SERVER == nginx ]]; }
on_apache_proxy() { [[ $ORDERS_TEST_SERVER == apache-proxy ]]; }
on_postgresql() { [[ $ORDERS_TEST_BACKEND == postgresql ]]; }
on_sqlite() { ! on_postgresql; }

# orders_suite_from_name: the front end and the backend from the suite's file
# name (from setup_file): NAME-apache.bats, NAME-nginx.bats and
# NAME-apache-proxy.bats run behind that server, NAME-pg.bats behind lighttpd
# on PostgreSQL; any other name keeps ORDERS_TEST_SERVER (default lighttpd)
# and ORDERS_TEST_BACKEND (default sqlite).
orders_suite_from_name() {
	case $BATS_TEST_FILENAME in
	*-apache.bats) export ORDERS_TEST_SERVER=apache ;;
	*-nginx.bats) export ORDERS_TEST_SERVER=nginx ;;
	*-apache-proxy.bats) export ORDERS_TEST_SERVER=apache-proxy ;;
	*-pg.bats) export ORDERS_TEST_SERVER=lighttpd ORDERS_TEST_BACKEND=postgresql ;;
	*) export ORDERS_TEST_SERVER=${ORDERS_TEST_SERVER:-lighttpd} ;;
	esac
}

# orders_backend_setup: with PostgreSQL, start this suite's cluster (once;
# from setup_file); nothing on SQLite.
orders_backend_setup() {
	on_postgresql || return 0
	[[ -z ${PG_TMP_DIR:-} ]] || return 0
	# shellcheck disable=SC1091
	source "$ORDERS_TESTS_LIB/pg.bash"
	pg_start
}

# orders_backend_teardown: stop the suite's cluster (from teardown_file).
orders_backend_teardown() {
	on_postgresql || return 0
	[[ -n ${PG_TMP_DIR:-} ]] || return 0
	# shellcheck disable=SC1091
	declare -F pg_stop >/dev/null || source "$ORDERS_TESTS_LIB/pg.bash"
	pg_stop
}

# orders_db: what ORDERS_DB is for the current instance (its PostgreSQL URL,
# else its SQLite file).
orders_db() {
	if on_postgresql; then
		printf '%s\n' "$ORDERS_DB_URL"
	else
		printf '%s\n' "$ORDERS_DBFILE"
	fi
}

# orders_backend_env: the responder's VAR=VALUE lines that name its store
# (and, on PostgreSQL, its metrics file, which would otherwise be one per
# host in $TMPDIR).
orders_backend_env() {
	printf 'ORDERS_DB=%s\n' "$(orders_db)"
	on_sqlite || printf 'ORDERS_METRICS_FILE=%s\n' "$ORDERS_TMP/metrics"
}

# The responder binary, as an absolute path; fails the caller if missing.
orders_binary() {
	local b=$ORDERS_FCGI
	[[ $b == /* ]] || b=$PWD/$b
	if [[ ! -x $b ]]; then
		echo "responder binary not found or not executable: $b (set ORDERS_FCGI or run make)" >&2
		return 1
	fi
	printf '%s\n' "$b"
}

# The binary as the web server's user can run it: when that user cannot reach
# the build tree (a root-only home, say), a copy in the instance's temp dir.
server_binary() {
	local b
	b=$(orders_binary) || return 1
	if ! as_run_user test -x "$b" 2>/dev/null; then
		mkdir -p "$ORDERS_TMP/bin"
		cp "$b" "$ORDERS_TMP/bin/orders.fcgi"
		chmod 0755 "$ORDERS_TMP/bin" "$ORDERS_TMP/bin/orders.fcgi"
		b=$ORDERS_TMP/bin/orders.fcgi
	fi
	printf '%s\n' "$b"
}

# free_port: a TCP port on 127.0.0.1 that nobody listens on right now.
# shellcheck source=tests/lib/ports.bash
source "$ORDERS_TESTS_LIB/ports.bash"

# The unprivileged user the web server (and its responders) run as when we are root.
orders_run_user() {
	if [[ -n ${ORDERS_TEST_USER:-} ]]; then
		printf '%s\n' "$ORDERS_TEST_USER"
	elif id www-data >/dev/null 2>&1; then
		echo www-data
	else
		echo nobody
	fi
}

is_root() { [[ $(id -u) == 0 ]]; }

# as_run_user CMD...: run CMD as the unprivileged user (as is, unless root).
as_run_user() {
	if is_root; then
		runuser -u "$(orders_run_user)" -- "$@"
	else
		"$@"
	fi
}

# instance_new: make a fresh temp dir and make it the current instance.
instance_new() {
	local base=${ORDERS_TEST_TMPDIR:-${TMPDIR:-/tmp}}
	# the web server's user must reach it (a root-only TMPDIR would not do)
	as_run_user test -x "$base" 2>/dev/null || base=/tmp
	ORDERS_TMP=$(mktemp -d "$base/orders-test.XXXXXX")
	chmod 0755 "$ORDERS_TMP"
	mkdir -p "$ORDERS_TMP/htdocs" "$ORDERS_TMP/uploads" "$ORDERS_TMP/apache-run" \
		"$ORDERS_TMP/fcgid" "$ORDERS_TMP/curl" "$ORDERS_TMP/nginx"
	ORDERS_DBFILE=$ORDERS_TMP/orders.db
	ORDERS_DB_URL=
	if on_postgresql; then
		[[ -n ${PGPORT:-} ]] || orders_backend_setup || return 1
		# shellcheck disable=SC1091
		declare -F pg_new_db >/dev/null || source "$ORDERS_TESTS_LIB/pg.bash"
		# a database of its own: orders_<the temp dir's suffix>_<n>
		local name=${ORDERS_TMP##*.}
		name=orders_${name,,}_$((++ORDERS_DB_SERIAL))_$RANDOM
		ORDERS_DB_URL=$(pg_new_db "$name") || return 1
	fi
	ORDERS_PORT=
	ORDERS_SERVER_PID=
	API_BASE=
	export ORDERS_TMP ORDERS_DBFILE ORDERS_DB_URL ORDERS_PORT ORDERS_SERVER_PID API_BASE
	instance_save
}

instance_save() {
	{
		printf 'ORDERS_TMP=%q\n' "$ORDERS_TMP"
		printf 'ORDERS_DBFILE=%q\n' "$ORDERS_DBFILE"
		printf 'ORDERS_DB_URL=%q\n' "${ORDERS_DB_URL:-}"
		printf 'ORDERS_PORT=%q\n' "$ORDERS_PORT"
		printf 'ORDERS_SERVER_PID=%q\n' "$ORDERS_SERVER_PID"
		printf 'ORDERS_SERVER_KIND=%q\n' "${ORDERS_SERVER_KIND:-$ORDERS_TEST_SERVER}"
		printf 'API_BASE=%q\n' "$API_BASE"
	} >"$ORDERS_TMP/instance.env"
}

# instance_use DIR: make the instance in DIR current.
instance_use() {
	# shellcheck disable=SC1091
	source "$1/instance.env"
	export ORDERS_TMP ORDERS_DBFILE ORDERS_DB_URL ORDERS_PORT ORDERS_SERVER_PID ORDERS_SERVER_KIND API_BASE
}

# Give the temp dir to the unprivileged user (no-op unless root).
instance_chown() {
	is_root || return 0
	local u
	u=$(orders_run_user)
	chown -R "$u:$(id -gn "$u")" "$ORDERS_TMP"
}

# migrate_db [VAR=VALUE...]: create the database with `orders.fcgi --migrate`,
# as the unprivileged user when root.
migrate_db() {
	local bin
	bin=$(server_binary) || return 1
	instance_chown
	if ! as_run_user env "ORDERS_DB=$(orders_db)" "$@" "$bin" --migrate </dev/null >"$ORDERS_TMP/migrate.log" 2>&1; then
		echo "orders.fcgi --migrate failed:" >&2
		cat "$ORDERS_TMP/migrate.log" >&2
		return 1
	fi
	instance_chown
}

# ---------------------------------------------------------------- servers

# Default responder environment; server_start VAR=VALUE arguments add to / override it.
orders_default_env() {
	orders_backend_env
	printf '%s\n' \
		"ORDERS_POLL_MS=50" \
		"ORDERS_PING_S=15" \
		"ORDERS_THREADS=8"
}

# Merge defaults with overrides (later wins, keeps first position); prints VAR=VALUE lines.
_merge_env() {
	local -A val=()
	local -a order=()
	local kv k
	while IFS= read -r kv; do
		[[ -n $kv ]] || continue
		k=${kv%%=*}
		[[ -v val[$k] ]] || order+=("$k")
		val[$k]=${kv#*=}
	done < <(orders_default_env; printf '%s\n' "$@")
	for k in "${order[@]}"; do
		printf '%s=%s\n' "$k" "${val[$k]}"
	done
}

_lighttpd_quote() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

_render() { # _render TEMPLATE OUT KEY=VALUE...
	local tpl out kv
	tpl=$(<"$1")
	out=$2
	shift 2
	for kv in "$@"; do
		tpl=${tpl//@${kv%%=*}@/${kv#*=}}
	done
	printf '%s\n' "$tpl" >"$out"
}

# lighttpd_user_lines: the server.username/groupname lines a lighttpd
# started as root needs to run as the unprivileged test user; none otherwise.
lighttpd_user_lines() {
	local u
	is_root || return 0
	u=$(orders_run_user)
	printf 'server.username  = "%s"\nserver.groupname = "%s"\n' "$u" "$(id -gn "$u")"
}

_write_lighttpd_conf() { # ENV lines on stdin
	local bin=$1 env_lines="" copy_env="" kv user_lines
	while IFS= read -r kv; do
		env_lines+="$(_lighttpd_quote "${kv%%=*}") => $(_lighttpd_quote "${kv#*=}"), "
	done
	# let sanitizer settings through when the binary was built with them
	for kv in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[[ -n ${!kv:-} ]] && copy_env+="\"$kv\", "
	done
	user_lines=$(lighttpd_user_lines)
	_render "$ORDERS_TESTS_LIB/lighttpd.conf.in" "$ORDERS_TMP/lighttpd.conf" \
		"TMP=$ORDERS_TMP" "PORT=$ORDERS_PORT" "FCGI=$bin" "USER_LINES=$user_lines" \
		"ENV=$env_lines" "COPY_ENV=$copy_env" "MAX_PROCS=${ORDERS_TEST_MAX_PROCS:-1}" \
		"BALANCE=${ORDERS_TEST_BALANCE:-least-connection}"
}

# apache_user_lines: the User/Group lines an Apache started as root needs to
# run as the unprivileged test user; none otherwise.
apache_user_lines() {
	local u
	is_root || return 0
	u=$(orders_run_user)
	printf 'User  %s\nGroup %s\n' "$u" "$(id -gn "$u")"
}

_write_apache_conf() { # ENV lines on stdin
	local bin=$1 env_lines="" kv v
	while IFS= read -r kv; do
		v=${kv#*=}
		v=${v//\\/\\\\}
		v=${v//\"/\\\"}
		env_lines+="FcgidInitialEnv ${kv%%=*} \"$v\""$'\n'
	done
	for kv in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[[ -n ${!kv:-} ]] && env_lines+="FcgidInitialEnv $kv \"${!kv}\""$'\n'
	done
	_render "$ORDERS_TESTS_LIB/apache.conf.in" "$ORDERS_TMP/apache.conf" \
		"TMP=$ORDERS_TMP" "PORT=$ORDERS_PORT" "FCGI=$bin" "FCGI_DIR=$(dirname "$bin")" \
		"FCGI_BASE=$(basename "$bin")" "MODDIR=$APACHE_MODULES" \
		"USER_LINES=$(apache_user_lines)" "ENV=$env_lines"
}

# _write_responder_env: the ENV lines on stdin, and the sanitizer settings,
# into responder.env for tests/lib/front-run.sh; sets RESPONDER_THREADS.
_write_responder_env() {
	local env kv
	env=$(cat)
	for kv in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[[ -n ${!kv:-} ]] && env+=$'\n'"$kv=${!kv}"
	done
	printf '%s\n' "$env" >"$ORDERS_TMP/responder.env"
	RESPONDER_THREADS=8
	[[ $env =~ (^|$'\n')ORDERS_THREADS=([0-9]+) ]] && RESPONDER_THREADS=${BASH_REMATCH[2]}
	return 0
}

# nginx: the responder's stderr is not in nginx's log (nginx did not start
# it) but in responder.log, which the sanitizer checks read too.
_write_nginx_conf() { # ENV lines on stdin
	local user_lines="" u threads
	_write_responder_env
	threads=$RESPONDER_THREADS
	if is_root; then
		u=$(orders_run_user)
		user_lines="user $u $(id -gn "$u");"
	fi
	_render "$ORDERS_TESTS_LIB/nginx.conf.in" "$ORDERS_TMP/nginx.conf" \
		"TMP=$ORDERS_TMP" "PORT=$ORDERS_PORT" "LIB=$ORDERS_TESTS_LIB" \
		"USER_LINES=$user_lines" "KEEPALIVE=${NGINX_KEEPALIVE:-2}" "THREADS=$threads" \
		"LOG_LEVEL=${NGINX_LOG_LEVEL:-warn}"
}

# Apache + mod_proxy_fcgi: like nginx, the responder is started by
# tests/lib/front-run.sh and writes responder.log.
_write_apache_proxy_conf() { # ENV lines on stdin
	_write_responder_env
	_render "$ORDERS_TESTS_LIB/apache-proxy.conf.in" "$ORDERS_TMP/apache.conf" \
		"TMP=$ORDERS_TMP" "PORT=$ORDERS_PORT" "MODDIR=$APACHE_MODULES" \
		"USER_LINES=$(apache_user_lines)" "THREADS=$RESPONDER_THREADS" \
		"REUSE_MAX=${APACHE_PROXY_REUSE_MAX:-2}"
}

# spawn-fcgi's arguments that give the responder and its socket to the
# unprivileged user when root; none otherwise.
_spawn_owner_args() {
	local u g
	is_root || return 0
	u=$(orders_run_user)
	g=$(id -gn "$u")
	printf '%s\n' -u "$u" -g "$g" -U "$u" -G "$g"
}

server_log() {
	case ${ORDERS_SERVER_KIND:-$ORDERS_TEST_SERVER} in
	apache | apache-proxy) printf '%s\n' "$ORDERS_TMP/apache-error.log" ;;
	nginx) printf '%s\n' "$ORDERS_TMP/nginx-error.log" ;;
	*) printf '%s\n' "$ORDERS_TMP/lighttpd-error.log" ;;
	esac
}

# Print the tail of the web server's error log (the responder's stderr goes there too).
server_log_tail() {
	local f
	f=$(server_log)
	[[ -f $f ]] || return 0
	echo "--- last lines of $f"
	tail -n "${1:-25}" "$f"
	echo "---"
}

# What a sanitizer, the C library or the kernel writes when a responder
# crashed, leaked or corrupted memory (an extended regular expression, also
# read by the browser suite). Exact words, case and all, so that an ordinary
# log line cannot match by accident.
SANITIZER_REPORT_RE=$(<"$ORDERS_TESTS_LIB/sanitizer-report.ere")

# responder_stderr_files: every file of the current instance that a
# responder's stderr can reach. lighttpd hands the responders it spawns its
# own stderr (server.out) and logs their deaths to its error log; mod_fcgid
# gives them Apache's error log; spawn-fcgi responders of the stream suites
# write NAME.log, those behind nginx or mod_proxy_fcgi responder.log
# (tests/lib/front-run.sh; Apache's own errors go to apache-error.log),
# a second lighttpd NAME.out, `--migrate` migrate.log.
# Access logs hold what clients sent, which may be anything: not these.
responder_stderr_files() {
	local f
	for f in "$ORDERS_TMP"/*.out "$ORDERS_TMP"/*.log "$ORDERS_TMP"/*.err; do
		[[ -f $f && $f != *access.log ]] && printf '%s\n' "$f"
	done
	return 0
}

# sanitizer_reports FILE...: the first lines of the FILEs that show a
# sanitizer report or a crash, as FILE:LINE:TEXT; nothing when clean.
sanitizer_reports() {
	(($#)) || return 0
	{ grep -HnE "$SANITIZER_REPORT_RE" "$@" 2>/dev/null || true; } | head -n 20
}

# assert_no_sanitizer_report [FILE...]: no sanitizer report or crash in the
# FILEs, by default in every file the responder's stderr can reach.
assert_no_sanitizer_report() {
	local -a files=("$@")
	(($#)) || mapfile -t files < <(responder_stderr_files)
	local hits
	hits=$(sanitizer_reports "${files[@]}")
	[[ -z $hits ]] || fail "sanitizer report or crash in the responder's stderr:
$hits"
}

# assert_no_crash_in_log: no sanitizer report or crash in what the responder
# wrote, and no responder that the web server saw die ("child exited" and
# "child signal" in its error log; the suites that kill responders on
# purpose use assert_no_sanitizer_report alone).
assert_no_crash_in_log() {
	assert_no_sanitizer_report
	local f hits
	f=$(server_log)
	[[ -f $f ]] || return 0
	hits=$(grep -iE 'child signal|child exited|unexpected signal' "$f" | head -n 20 || true)
	[[ -z $hits ]] || fail "a responder died, says $f:
$hits"
}

# _config_check NAME CMD...: run the web server's config test CMD; on
# failure print what it (and nginx's error log) said and fail.
_config_check() {
	local name=$1
	shift
	"$@" >"$ORDERS_TMP/config-check.out" 2>&1 && return 0
	echo "$name config test failed:" >&2
	cat "$ORDERS_TMP/config-check.out" >&2
	[[ $name != nginx ]] || cat "$ORDERS_TMP/nginx-error.log" >&2
	return 1
}

# server_start [VAR=VALUE...]: write the config for $ORDERS_TEST_SERVER into the
# current instance, start the server in the foreground (in the background of
# this shell), save its PID and wait until /api/v1/health answers 200. The
# server's stderr is appended to server.out, so that a restart keeps what the
# responders of the last server wrote there (instance_remove reads it).
server_start() {
	local bin attempt env
	bin=$(server_binary) || return 1
	env=$(_merge_env "$@")
	ORDERS_SERVER_KIND=$ORDERS_TEST_SERVER
	export ORDERS_SERVER_KIND
	for attempt in 1 2 3; do
		ORDERS_PORT=$(free_port) || { echo "no free port" >&2; return 1; }
		API_BASE=http://127.0.0.1:$ORDERS_PORT
		export ORDERS_PORT API_BASE
		case $ORDERS_TEST_SERVER in
		lighttpd)
			_write_lighttpd_conf "$bin" <<<"$env"
			instance_chown
			_config_check lighttpd "$LIGHTTPD_BIN" -tt -f "$ORDERS_TMP/lighttpd.conf" || return 1
			"$LIGHTTPD_BIN" -D -f "$ORDERS_TMP/lighttpd.conf" </dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
			ORDERS_SERVER_PID=$!
			;;
		apache)
			_write_apache_conf "$bin" <<<"$env"
			instance_chown
			_config_check apache "$APACHE_BIN" -t -f "$ORDERS_TMP/apache.conf" || return 1
			"$APACHE_BIN" -f "$ORDERS_TMP/apache.conf" -DFOREGROUND </dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
			ORDERS_SERVER_PID=$!
			;;
		nginx)
			_write_nginx_conf "$bin" <<<"$env"
			instance_chown
			_config_check nginx "$NGINX_BIN" -t -q -p "$ORDERS_TMP/nginx/" -c "$ORDERS_TMP/nginx.conf" \
				-e "$ORDERS_TMP/nginx-error.log" || return 1
			instance_chown
			local -a own
			mapfile -t own < <(_spawn_owner_args)
			"$ORDERS_TESTS_LIB/nginx-run.sh" "$ORDERS_TMP" "$NGINX_BIN" "$bin" "${own[@]}" \
				</dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
			ORDERS_SERVER_PID=$!
			;;
		apache-proxy)
			_write_apache_proxy_conf "$bin" <<<"$env"
			instance_chown
			_config_check apache "$APACHE_BIN" -t -f "$ORDERS_TMP/apache.conf" || return 1
			local -a own
			mapfile -t own < <(_spawn_owner_args)
			"$ORDERS_TESTS_LIB/front-run.sh" apache-proxy-run "$ORDERS_TMP" "$bin" "${own[@]}" -- \
				"$APACHE_BIN" -f "$ORDERS_TMP/apache.conf" -DFOREGROUND \
				</dev/null >>"$ORDERS_TMP/server.out" 2>&1 3>&- &
			ORDERS_SERVER_PID=$!
			;;
		*)
			echo "ORDERS_TEST_SERVER must be lighttpd, apache, apache-proxy or nginx, not '$ORDERS_TEST_SERVER'" >&2
			return 1
			;;
		esac
		export ORDERS_SERVER_PID
		instance_save
		if wait_healthy 15; then
			return 0
		fi
		if kill -0 "$ORDERS_SERVER_PID" 2>/dev/null; then
			echo "server started but /api/v1/health did not answer 200 (last: $STATUS $BODY)" >&2
			server_log_tail 40 >&2
			server_stop
			return 1
		fi
		# died: port taken by somebody else in the meantime? try another one
		if ! grep -qiE 'address already in use|could not bind' "$ORDERS_TMP/server.out" "$(server_log)" 2>/dev/null; then
			echo "server exited at start:" >&2
			cat "$ORDERS_TMP/server.out" >&2
			server_log_tail 40 >&2
			return 1
		fi
	done
	return 1
}

# wait_healthy SECONDS: poll /api/v1/health until it answers 200 or 401 (or the server died).
wait_healthy() {
	local deadline=$((SECONDS + ${1:-15}))
	STATUS=000
	BODY=
	while ((SECONDS < deadline)); do
		kill -0 "$ORDERS_SERVER_PID" 2>/dev/null || return 1
		STATUS=$(curl -s -o "$ORDERS_TMP/curl/health" -w '%{http_code}' --max-time 5 \
			"$API_BASE/api/v1/health" 2>/dev/null) || true
		# 401: up, but /health wants a token (ORDERS_READ_TOKENS=1)
		if [[ $STATUS == 200 || $STATUS == 401 ]]; then
			return 0
		fi
		BODY=$(cat "$ORDERS_TMP/curl/health" 2>/dev/null || true)
		sleep 0.1
	done
	return 1
}

_descendants() { # PIDs of all descendants of $1
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		printf '%s\n' "$c"
		_descendants "$c"
	done
}

# server_stop: stop the current instance's server (TERM by saved PID, wait for exit,
# KILL after 10 s), then wait for the responder processes it had spawned.
# Sets SERVER_STOP_FORCED=1 when something had to be killed.
server_stop() {
	local pid=$ORDERS_SERVER_PID kids p i
	SERVER_STOP_FORCED=0
	[[ -n $pid ]] || return 0
	kids=$(_descendants "$pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "server $pid did not stop after TERM; sending KILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
			SERVER_STOP_FORCED=1
		fi
	fi
	wait "$pid" 2>/dev/null || true
	# the responders the server spawned (lighttpd bin-path, mod_fcgid) go with it
	for p in $kids; do
		for i in $(seq 1 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			echo "process $p spawned by server $pid still alive 5 s after it stopped; sending KILL" >&2
			kill -KILL "$p" 2>/dev/null || true
			SERVER_STOP_FORCED=1
		fi
	done
	ORDERS_SERVER_PID=
	export ORDERS_SERVER_PID
	instance_save
}

# server_restart [VAR=VALUE...]: same instance (database), new server and environment.
server_restart() {
	server_stop
	server_start "$@"
}

# instance_remove: delete the current instance's temp dir, once its server
# has stopped. LeakSanitizer reports when a responder exits, after the last
# test looked: so this looks again, and fails (keeping the dir to read) when
# anything a responder wrote shows a sanitizer report or a crash.
instance_remove() {
	[[ -n ${ORDERS_TMP:-} && -d $ORDERS_TMP ]] || return 0
	local hits
	local -a files
	mapfile -t files < <(responder_stderr_files)
	hits=$(sanitizer_reports "${files[@]}")
	if [[ -n $hits ]]; then
		echo "sanitizer report or crash after the responders of $ORDERS_TMP exited (dir kept):
$hits" >&2
		return 1
	fi
	if [[ ${ORDERS_TEST_KEEP:-0} == 1 ]]; then
		echo "# kept $ORDERS_TMP" >&3
		return 0
	fi
	rm -rf "$ORDERS_TMP"
}

# Standard suite life cycle: one instance, database migrated, server started.
orders_suite_setup() {
	orders_backend_setup
	instance_new
	migrate_db "$@"
	server_start "$@"
}

orders_suite_teardown() {
	local rc=0
	if [[ -n ${ORDERS_TMP:-} ]]; then
		# a test may have restarted the server: take the PID it saved
		[[ -f $ORDERS_TMP/instance.env ]] && instance_use "$ORDERS_TMP"
		server_stop
		instance_remove || rc=$?
	fi
	orders_backend_teardown
	return "$rc"
}

# Per-test setup: take the instance state saved last (a previous test may have
# restarted the server; its exported PID and port would be stale).
orders_test_setup() {
	if [[ -n ${ORDERS_TMP:-} && -f $ORDERS_TMP/instance.env ]]; then
		instance_use "$ORDERS_TMP"
	fi
}

# Per-test teardown: on failure show the end of the server log.
orders_test_teardown() {
	if [[ ${BATS_TEST_COMPLETED:-} != 1 && -n ${ORDERS_TMP:-} ]]; then
		server_log_tail 20
	fi
}

# ---------------------------------------------------------------- HTTP

# api METHOD PATH [curl args...]
# Sends one request to $API_BASE$PATH (the path goes out exactly as written:
# --path-as-is, no globbing) and sets:
#   STATUS   the HTTP status ("000" when no response)
#   BODY     the response body (trailing newlines stripped)
#   HEADERS  the response headers of the final response, CR stripped
#   LAST_REQ "METHOD PATH" for messages
# The raw body is in $API_BODY_FILE.
api() {
	local method=$1 path=$2
	shift 2
	local d=${BATS_TEST_TMPDIR:-$ORDERS_TMP/curl}
	mkdir -p "$d"
	API_BODY_FILE=$d/api-body
	local hf=$d/api-headers
	: >"$hf"
	: >"$API_BODY_FILE"
	LAST_REQ="$method $path"
	local a prev=""
	for a in "$@"; do
		if [[ $prev == --data-binary ]]; then
			LAST_REQ+=" body: ${a:0:160}"
			((${#a} > 160)) && LAST_REQ+="…(${#a} bytes)"
		elif [[ $prev == -H && $a != Content-Type:\ application/json ]]; then
			LAST_REQ+=" [$a]"
		fi
		prev=$a
	done
	local -a m=(-X "$method")
	[[ $method == HEAD ]] && m=(-I)
	STATUS=$(curl -sS --path-as-is -g -H 'Expect:' --max-time "${API_TIMEOUT:-20}" \
		"${m[@]}" -o "$API_BODY_FILE" -D "$hf" -w '%{http_code} %{time_total}' "$@" "$API_BASE$path" 2>"$d/api-stderr") || true
	[[ -n $STATUS ]] || STATUS=000
	# ORDERS_TEST_TRACE=FILE: log every request with its time
	[[ -z ${ORDERS_TEST_TRACE:-} ]] || printf '%s %s %s\n' "$STATUS" "$method" "${path:0:120}" >>"$ORDERS_TEST_TRACE"
	STATUS=${STATUS%% *}
	BODY=$(<"$API_BODY_FILE")
	_read_headers "$hf"
}

# _read_headers FILE: HEADERS = the last header block in FILE (skips 1xx), CR stripped.
_read_headers() {
	local -a lines
	local l
	mapfile -t lines <"$1"
	HEADERS=""
	for l in "${lines[@]}"; do
		l=${l%$'\r'}
		if [[ $l == HTTP/* ]]; then
			HEADERS=$l
		elif [[ -n $l ]]; then
			HEADERS+=$'\n'$l
		fi
	done
}

# stream_until TEXT PATH [curl args...]: GET PATH (an SSE stream) until its
# body holds TEXT, or with TEXT empty until the response headers and the
# first body bytes arrived (at most 10 s), then drop the connection. Sets
# STATUS, HEADERS, BODY like api.
stream_until() {
	local text=$1 path=$2
	shift 2
	local d=${BATS_TEST_TMPDIR:-$ORDERS_TMP/curl}
	mkdir -p "$d"
	local hf=$d/stream-headers bf=$d/stream-body pid i
	: >"$hf"
	: >"$bf"
	LAST_REQ="GET $path (stream)"
	curl -sN --path-as-is -g --max-time 10 -D "$hf" -o "$bf" "$@" "$API_BASE$path" 2>/dev/null 3>&- &
	pid=$!
	for i in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || break
		if [[ -n $text ]]; then
			[[ $(<"$bf") == *"$text"* ]] && break
		elif grep -qE $'^\r?$' "$hf" 2>/dev/null && [[ -s $bf ]]; then
			break
		fi
		sleep 0.05
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	_read_headers "$hf"
	STATUS=${HEADERS#HTTP/* }
	STATUS=${STATUS%%[ $'\n']*}
	[[ $STATUS =~ ^[0-9]{3}$ ]] || STATUS=000
	BODY=$(<"$bf")
}

# stream_probe PATH [curl args...]: stream_until the first body bytes.
stream_probe() {
	stream_until '' "$@"
}

# api_json METHOD PATH JSON [curl args...]: with Content-Type: application/json.
api_json() {
	local method=$1 path=$2 json=$3
	shift 3
	api "$method" "$path" -H 'Content-Type: application/json' --data-binary "$json" "$@"
}

# hdr NAME: value of response header NAME (case-insensitive; several joined with ", ").
# Returns 1 when absent.
hdr() {
	local want=${1,,} line name val out="" found=1
	while IFS= read -r line; do
		[[ $line == *:* ]] || continue
		name=${line%%:*}
		[[ ${name,,} == "$want" ]] || continue
		val=${line#*:}
		val="${val#"${val%%[![:space:]]*}"}"
		val="${val%"${val##*[![:space:]]}"}"
		if ((found)); then out=$val; else out+=", $val"; fi
		found=0
	done <<<"$HEADERS"
	printf '%s' "$out"
	return $found
}

# jf FILTER: jq -r FILTER on the last response body.
jf() { jq -r "$1" <<<"$BODY"; }

# jfc FILTER: jq -c FILTER on the last response body.
jfc() { jq -c "$1" <<<"$BODY"; }

# ---------------------------------------------------------------- DB

# db SQL...: sqlite3 on the current instance's database; on PostgreSQL psql
# (as pg_sql: -X -At, ON_ERROR_STOP; each SQL one -c, SQL from stdin when
# there is none). sqlite3's -separator S becomes psql's -F S (both print
# '|' between columns by default).
db() {
	if on_postgresql; then
		local -a args=()
		while (($#)); do
			case $1 in
			-separator) args+=(-F "$2"); shift 2 ;;
			-*) args+=("$1"); shift ;;
			*) args+=(-c "$1"); shift ;;
			esac
		done
		[[ " ${args[*]} " == *" -c "* ]] || args+=(-f -)
		"${PG_BINDIR:-$(pg_bindir)}/psql" -X -q -v ON_ERROR_STOP=1 -At -d "$ORDERS_DB_URL" "${args[@]}"
		return
	fi
	sqlite3 -batch -bail -cmd '.timeout 10000' "$ORDERS_DBFILE" "$@"
}

# db_state: one line that changes whenever a write reached the database:
# for each of orders, events and idempotency_keys its row count and a
# SHA3-256 of every column of every row in key order (sha3_query of the
# sqlite3 shell hashes each value with its type, so 1 and '1', NULL and ''
# differ). Counts and sums would miss a stored idempotency key, a field
# changed without a new version, or an event rewritten in place. One sqlite3
# process and one read transaction: the three tables are seen at one moment.
# On PostgreSQL the same with md5 of each row's text form (a record's text
# quotes '' and leaves NULL empty), in one statement, so one snapshot.
db_state() {
	if on_postgresql; then
		db "SELECT 'orders ' || (SELECT count(*) FROM orders) || ' ' ||
		           (SELECT md5(coalesce(string_agg(md5(t::text), ',' ORDER BY t.seq), '')) FROM orders t) ||
		           '; events ' || (SELECT count(*) FROM events) || ' ' ||
		           (SELECT md5(coalesce(string_agg(md5(t::text), ',' ORDER BY t.id), '')) FROM events t) ||
		           '; idempotency_keys ' || (SELECT count(*) FROM idempotency_keys) || ' ' ||
		           (SELECT md5(coalesce(string_agg(md5(t::text), ',' ORDER BY t.key), ''))
		              FROM idempotency_keys t)"
		return
	fi
	db "SELECT 'orders ' || (SELECT count(*) FROM orders) || ' ' ||
	           lower(hex(sha3_query('SELECT * FROM orders ORDER BY seq', 256))) ||
	           '; events ' || (SELECT count(*) FROM events) || ' ' ||
	           lower(hex(sha3_query('SELECT * FROM events ORDER BY id', 256))) ||
	           '; idempotency_keys ' || (SELECT count(*) FROM idempotency_keys) || ' ' ||
	           lower(hex(sha3_query('SELECT * FROM idempotency_keys ORDER BY key', 256)))"
}

db_head() { db 'SELECT coalesce(max(id),0) FROM events'; }

snap() { SNAP=$(db_state); }

assert_unchanged() {
	local now
	now=$(db_state)
	[[ $now == "$SNAP" ]] ||
		fail "database changed by refused request '$LAST_REQ' (status $STATUS): before [$SNAP], after [$now]"
}

# ---------------------------------------------------------------- assertions

_resp() { printf '%s -> %s\n%s\nbody: %s' "$LAST_REQ" "$STATUS" "$HEADERS" "${BODY:0:600}"; }

assert_status() {
	[[ $STATUS == "$1" ]] || fail "expected HTTP $1; got: $(_resp)"
}

assert_json_ct() {
	local ct
	ct=$(hdr Content-Type) || fail "no Content-Type; got: $(_resp)"
	ct=${ct%%;*}
	ct=${ct// /}
	[[ ${ct,,} == application/json ]] || fail "expected Content-Type application/json; got: $(_resp)"
}

# assert_compact: no whitespace between JSON tokens in $BODY.
assert_compact() {
	local stripped
	stripped=$(sed -E 's/"([^"\\]|\\.)*"/""/g' <<<"$BODY")
	if [[ $stripped == *[[:space:]]* ]]; then
		fail "JSON body is not compact: ${BODY:0:300}"
	fi
}

# assert_hdr NAME VALUE: header present with exactly VALUE.
assert_hdr() {
	local v
	v=$(hdr "$1") || fail "header $1 missing; got: $(_resp)"
	[[ $v == "$2" ]] || fail "header $1: expected [$2], got [$v]; $(_resp)"
}

assert_no_hdr() {
	local v
	if v=$(hdr "$1"); then
		fail "header $1 must be absent, got [$v]; $(_resp)"
	fi
}

# assert_jq FILTER EXPECTED: jq -c FILTER on the body equals EXPECTED (compact JSON text).
assert_jq() {
	local got
	got=$(jq -c "$1" <<<"$BODY" 2>&1) || fail "body is not JSON ($1): $(_resp)"
	[[ $got == "$2" ]] || fail "jq '$1': expected $2, got $got; $(_resp)"
}

# assert_json_eq JSON [FILTER]: body (or jq FILTER of it) equals JSON, key order ignored.
assert_json_eq() {
	local want got
	want=$(jq -cS . <<<"$1" 2>&1) || fail "bad expected JSON in test: $1"
	got=$(jq -cS "${2:-.}" <<<"$BODY" 2>&1) || fail "body is not JSON: $(_resp)"
	[[ $got == "$want" ]] || fail "JSON ${2:-body} differs
expected: $want
got:      $got
$(_resp)"
}

# same_json A B: the two JSON texts are equal, key order ignored.
same_json() {
	[[ $(jq -cS . <<<"$1") == "$(jq -cS . <<<"$2")" ]]
}

# assert_error STATUS CODE [WORD]: error response with that status and code;
# WORD (usually the field name) must appear in the message.
assert_error() {
	assert_status "$1"
	assert_json_ct
	local out shape code msg
	# fast path (no fork): compact {"error":{"code":"…","message":"…"}}
	local re='^\{"error":\{"code":"([a-z_]+)","message":"(([^"\\]|\\.)+)"\}\}$'
	if [[ $BODY =~ $re ]]; then
		code=${BASH_REMATCH[1]}
		msg=${BASH_REMATCH[2]}
		[[ $code == "$2" ]] || fail "expected error code $2, got $code; $(_resp)"
		if [[ -n ${3:-} ]]; then
			[[ ${msg,,} == *"${3,,}"* ]] || fail "error message should name '$3': $(_resp)"
		fi
		return 0
	fi
	# one jq run: shape ok?, code, message
	out=$(jq -r '[(type == "object" and keys == ["error"] and (.error|type) == "object"
	               and (.error|keys) == ["code","message"]
	               and (.error.code|type) == "string" and (.error.message|type) == "string"),
	              .error.code?, .error.message?] | map(tostring | gsub("[\t\n\r]"; " ")) | @tsv' \
		<<<"$BODY" 2>/dev/null) || fail "error body is not JSON: $(_resp)"
	IFS=$'\t' read -r shape code msg <<<"$out"
	[[ $shape == true ]] ||
		fail "error body must be {\"error\":{\"code\":\"…\",\"message\":\"…\"}}: $(_resp)"
	[[ $code == "$2" ]] || fail "expected error code $2, got $code; $(_resp)"
	[[ -n $msg ]] || fail "empty error message; $(_resp)"
	if [[ -n ${3:-} ]]; then
		[[ ${msg,,} == *"${3,,}"* ]] || fail "error message should name '$3': $(_resp)"
	fi
	assert_compact
}

# refused STATUS CODE WORD METHOD PATH [curl args...]:
# the request is refused with that error and changes nothing in the database.
refused() {
	local st=$1 code=$2 word=$3
	shift 3
	snap
	api "$@"
	assert_error "$st" "$code" "$word"
	assert_unchanged
}

# post_refused STATUS CODE WORD JSON [curl args...]: POST /orders with a JSON body.
post_refused() {
	local st=$1 code=$2 word=$3 json=$4
	shift 4
	refused "$st" "$code" "$word" POST /api/v1/orders -H 'Content-Type: application/json' \
		--data-binary "$json" "$@"
}

# ---------------------------------------------------------------- soft assertions

SOFT_FAILS=()

# soft CMD...: run an assertion (a function that fails the test) in a subshell;
# on failure record its message and go on, so that one run of a loop of bad
# inputs reports every input that is mishandled. Call soft_done at the end.
soft() {
	local out rc t
	t=$(trap -p ERR)
	trap - ERR
	set +e
	out=$(
		set -e
		"$@" 2>&1
	)
	rc=$?
	set -e
	eval "$t"
	if ((rc)); then
		SOFT_FAILS+=("$out")
	fi
	return 0
}

soft_done() {
	local n=${#SOFT_FAILS[@]}
	((n == 0)) && return 0
	fail "$n check(s) failed:
$(printf '%s\n-----\n' "${SOFT_FAILS[@]}")"
}

# ---------------------------------------------------------------- orders

ITEM1='{"sku":"BK-001","name":"Notebook","qty":2,"unitPriceCents":1299}'

# jstr TEXT: TEXT as a JSON string (enough escaping for the texts the tests use).
jstr() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\r'/\\r}
	s=${s//$'\t'/\\t}
	printf '"%s"' "$s"
}

# order_json [CUSTOMER] [EXTRA_FIELDS]: a valid create body.
order_json() {
	local c=${1:-Ada Lovelace} extra=${2:-}
	printf '{"customer":%s,"items":[%s]%s}' "$(jstr "$c")" "$ITEM1" "${extra:+,$extra}"
}

# create_order [JSON] [curl args...]: POST it, assert 201, set OID, ORDER (the body).
create_order() {
	local json=${1:-$(order_json)}
	shift || true
	api_json POST /api/v1/orders "$json" "$@"
	assert_status 201
	if [[ $BODY =~ ^\{\"id\":\"(ord_[0-9]+)\" ]]; then
		OID=${BASH_REMATCH[1]}
	else
		OID=$(jf .id)
	fi
	ORDER=$BODY
}

# id_num ord_00042 -> 42
id_num() { local n=${1#ord_}; echo $((10#$n)); }

# events_after N: GET /events?after=N&limit=1000 -> BODY
events_after() { api GET "/api/v1/events?after=$1&limit=1000"; assert_status 200; }

RFC3339_MS='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'
ORDER_ID_RE='^ord_[0-9]{5,}$'
