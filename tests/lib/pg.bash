# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the test suites.
#
#   source "$BATS_TEST_DIRNAME/lib/pg.bash"   # or: load 'lib/pg'
#   setup_file()    { pg_start; DB=$(pg_new_db orders); }
#   teardown_file() { pg_stop; }
#
# Plain bash scripts source it too (bench/pg.sh, under set -euo pipefail):
# nothing here needs bats.
#
# pg_start initdb's a cluster in a fresh temp dir and starts it on a free
# port on 127.0.0.1 only, with its unix socket in that dir (never
# /var/run/postgresql): it needs Debian's postgresql package and nothing the
# package starts. As root, the server runs as the `postgres` system user
# (initdb refuses root), which then owns the temp dir.
#
# Exported while a cluster runs:
#   PGHOST=127.0.0.1  PGPORT  PGUSER   what libpq and psql connect with;
#                     PGUSER is the cluster's superuser (trust auth, no password)
#   PG_DATA_DIR       the cluster's data directory
#   PG_TMP_DIR        the temp dir holding it, the socket dir and server.log
#   PG_BINDIR         the directory of initdb, pg_ctl, postgres and psql
#   PG_PID            the postmaster's PID (changes with pg_restart)
#
# Environment:
#   PG_TEST_SUPERUSER  the superuser role's name (default postgres)
#   PG_TEST_OS_USER    the system user the server runs as when root
#                      (default postgres, else nobody)
#   ORDERS_TEST_TMPDIR where the temp dir goes (default $TMPDIR, else /tmp)
#   ORDERS_TEST_KEEP=1 pg_stop keeps the temp dir (data and server.log)

# The directory of the server binaries: pg_config's, else the newest
# /usr/lib/postgresql/*/bin (Debian puts no initdb on PATH).
pg_bindir() {
	local d
	if d=$(pg_config --bindir 2>/dev/null) && [[ -x $d/initdb && -x $d/pg_ctl ]]; then
		printf '%s\n' "$d"
		return 0
	fi
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
		printf '%s\n' "$d"
		return 0
	fi
	echo "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package" >&2
	return 1
}

_pg_is_root() { [[ $(id -u) == 0 ]]; }

# The system user the server runs as when we are root.
_pg_os_user() {
	if [[ -n ${PG_TEST_OS_USER:-} ]]; then
		printf '%s\n' "$PG_TEST_OS_USER"
	elif id postgres >/dev/null 2>&1; then
		echo postgres
	else
		echo nobody
	fi
}

# _pg_as CMD...: run CMD as the server's user (as is, unless root), from
# the temp dir (a cwd the server's user cannot read upsets initdb), with
# stdin from /dev/null and bats' fd 3 closed so that a server left behind
# cannot hold up bats.
_pg_as() {
	if _pg_is_root; then
		local u
		u=$(_pg_os_user)
		if command -v runuser >/dev/null 2>&1; then
			(cd "$PG_TMP_DIR" && runuser -u "$u" -- "$@" </dev/null 3>&-)
		else
			(cd "$PG_TMP_DIR" && setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups \
				-- "$@" </dev/null 3>&-)
		fi
	else
		(cd "$PG_TMP_DIR" && "$@" </dev/null 3>&-)
	fi
}

# shellcheck source=tests/lib/ports.bash
source "$(dirname "${BASH_SOURCE[0]}")/ports.bash"

_pg_log_tail() {
	[[ -f $PG_TMP_DIR/server.log ]] || return 0
	echo "--- last lines of $PG_TMP_DIR/server.log"
	tail -n "${1:-30}" "$PG_TMP_DIR/server.log"
	echo "---"
}

# _pg_ctl_start: start the cluster in $PG_DATA_DIR and wait until it
# accepts connections; sets PG_PID.
_pg_ctl_start() {
	_pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DATA_DIR" -l "$PG_TMP_DIR/server.log" -w -t 60 start \
		>>"$PG_TMP_DIR/pg_ctl.out" 2>&1 || return 1
	PG_PID=$(head -n 1 "$PG_DATA_DIR/postmaster.pid" 2>/dev/null)
	[[ $PG_PID =~ ^[0-9]+$ ]] || return 1
	export PG_PID
}

# pg_start [NAME=VALUE...]: make and start a new cluster (see the top of
# this file); each NAME=VALUE is one more postgresql.conf setting (say
# track_commit_timestamp=on), written after the defaults below and so
# overriding them (bench/pg.sh sets fsync=on). Fails, with the server's log on stderr, when
# it cannot.
pg_start() {
	local base kv u
	PG_BINDIR=$(pg_bindir) || return 1
	export PG_BINDIR
	base=${ORDERS_TEST_TMPDIR:-${TMPDIR:-/tmp}}
	PG_TMP_DIR=$(mktemp -d "$base/orders-pg.XXXXXX") || return 1
	if _pg_is_root; then
		u=$(_pg_os_user)
		# the server's user must reach the dir: a root-only TMPDIR would not do
		if ! runuser -u "$u" -- test -x "$PG_TMP_DIR" 2>/dev/null; then
			rmdir "$PG_TMP_DIR"
			PG_TMP_DIR=$(mktemp -d /tmp/orders-pg.XXXXXX) || return 1
		fi
		chown "$u:$(id -gn "$u")" "$PG_TMP_DIR"
	fi
	chmod 0700 "$PG_TMP_DIR"
	PG_DATA_DIR=$PG_TMP_DIR/data
	PGUSER=${PG_TEST_SUPERUSER:-postgres}
	export PG_TMP_DIR PG_DATA_DIR PGUSER
	if ! _pg_as "$PG_BINDIR/initdb" -D "$PG_DATA_DIR" -U "$PGUSER" -A trust -E UTF8 --no-locale \
		--no-sync >"$PG_TMP_DIR/initdb.out" 2>&1; then
		echo "initdb failed:" >&2
		cat "$PG_TMP_DIR/initdb.out" >&2
		return 1
	fi
	# Tests only: no fsync (a crash of the machine, not of the server, loses
	# data); synchronous_commit stays on, so that what a test saw committed
	# survives pg_kill. Several responders of ~20 connections each, and psql.
	{
		echo "# added by tests/lib/pg.bash"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$PG_TMP_DIR'"
		echo "max_connections = 400"
		echo "fsync = off"
		echo "full_page_writes = off"
		echo "log_min_messages = warning"
		echo "log_line_prefix = '%m [%p] '"
		for kv in "$@"; do
			printf "%s = '%s'\n" "${kv%%=*}" "${kv#*=}"
		done
	} >>"$PG_DATA_DIR/postgresql.conf"
	unset PGHOSTADDR PGSERVICE PGDATABASE PGPASSWORD
	export PGHOST=127.0.0.1
	for _ in 1 2 3; do
		PGPORT=$(free_port) || { echo "no free port" >&2; return 1; }
		export PGPORT
		echo "port = $PGPORT" >>"$PG_DATA_DIR/postgresql.conf"
		_pg_ctl_start && return 0
		# taken by somebody else in the meantime? try another port
		grep -qiE 'could not bind|address already in use' "$PG_TMP_DIR/server.log" 2>/dev/null || break
	done
	echo "PostgreSQL did not start:" >&2
	cat "$PG_TMP_DIR/pg_ctl.out" >&2
	_pg_log_tail 40 >&2
	return 1
}

# _pg_alive PID: PID is a live process (a zombie that nobody reaped, as
# under a container's init, counts as gone).
_pg_alive() {
	local st
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null || return 1
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[[ $st != Z ]]
}

# _pg_ctl_stop MODE: stop the server (fast or immediate) and wait for it;
# when pg_ctl could not, KILL the postmaster by its PID.
_pg_ctl_stop() {
	local mode=$1
	[[ -n ${PG_DATA_DIR:-} && -d $PG_DATA_DIR ]] || return 0
	if [[ -f $PG_DATA_DIR/postmaster.pid ]] &&
		! _pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DATA_DIR" -m "$mode" -w -t 30 stop \
			>>"$PG_TMP_DIR/pg_ctl.out" 2>&1 && _pg_alive "${PG_PID:-}"; then
		echo "PostgreSQL ($PG_PID) did not stop ($mode); sending KILL" >&2
		kill -KILL "$PG_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do
			_pg_alive "$PG_PID" || break
			sleep 0.1
		done
	fi
	PG_PID=
	export PG_PID
}

# pg_stop: fast shutdown (clients disconnected, a clean checkpoint), then
# remove the temp dir (kept with ORDERS_TEST_KEEP=1). Safe to call twice,
# or when pg_start failed half way.
pg_stop() {
	[[ -n ${PG_TMP_DIR:-} ]] || return 0
	_pg_ctl_stop fast
	if [[ ${ORDERS_TEST_KEEP:-0} == 1 ]]; then
		echo "# kept PostgreSQL's dir $PG_TMP_DIR" >&2
	else
		rm -rf "$PG_TMP_DIR"
	fi
	PG_TMP_DIR="" PG_DATA_DIR=""
	export PG_TMP_DIR PG_DATA_DIR
}

# pg_kill: immediate stop, as after a crash: no checkpoint, clients cut off;
# the next start (pg_restart) recovers from the WAL. The dir stays.
pg_kill() {
	_pg_ctl_stop immediate
}

# pg_restart: stop the cluster if it runs (fast), and start it again with
# the same data, port and settings (say, to test reconnects); after pg_kill,
# just start it.
pg_restart() {
	_pg_ctl_stop fast
	if ! _pg_ctl_start; then
		echo "PostgreSQL did not start again:" >&2
		_pg_log_tail 40 >&2
		return 1
	fi
}

# pg_sql URL SQL...: run each SQL (one psql -c each, so one transaction
# each unless it says BEGIN) on the database at URL, or SQL from stdin when
# there is none; unaligned, tuples only, stops at the first error (exit 3).
pg_sql() {
	local url=$1 s
	shift
	local -a args=()
	for s in "$@"; do
		args+=(-c "$s")
	done
	((${#args[@]})) || args=(-f -)
	"${PG_BINDIR:-$(pg_bindir)}/psql" -X -q -v ON_ERROR_STOP=1 -At -d "$url" "${args[@]}"
}

# pg_url NAME: the URL of database NAME on the running cluster.
pg_url() {
	printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$PGUSER" "$PGPORT" "$1"
}

# pg_new_db NAME [TEMPLATE]: create database NAME (a copy of TEMPLATE when
# given, which nobody may be connected to) and print its URL,
# postgresql://USER@127.0.0.1:PORT/NAME.
pg_new_db() {
	local name=$1 template=${2:-} sql
	[[ $name =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "pg_new_db: '$name' is not a plain name" >&2; return 1; }
	sql="CREATE DATABASE $name"
	[[ -z $template ]] || sql+=" TEMPLATE $template"
	pg_sql "$(pg_url postgres)" "$sql" >/dev/null || return 1
	pg_url "$name"
}
