# shellcheck shell=bash
# PostgreSQL for the benchmarks, sourced by bench/rest.sh and bench/stream.sh
# (which set $root, and define children_of and log). One throwaway cluster
# from tests/lib/pg.bash (the test suites' harness), started once per run with
# settings for a fair benchmark instead of the tests' no-fsync ones; a
# template database; one database per server set made from it.
#
# Environment:
#   BENCH_PG_SYNC_COMMIT     synchronous_commit (default on: a commit waits
#                            for its WAL flush, like SQLite's synchronous=full)
#   BENCH_PG_SHARED_BUFFERS  shared_buffers (default 256MB)
#   BENCH_PG_SETTINGS        more postgresql.conf settings, NAME=VALUE ...
#   KEEP_TMP=1               keep the cluster's directory too

# shellcheck source=tests/lib/pg.bash
source "${root:?}/tests/lib/pg.bash"

BENCH_PG_SYNC_COMMIT=${BENCH_PG_SYNC_COMMIT:-on}
BENCH_PG_SHARED_BUFFERS=${BENCH_PG_SHARED_BUFFERS:-256MB}
BENCH_PG_SETTINGS=${BENCH_PG_SETTINGS:-}
BENCH_PG_TEMPLATE=bench_template

# bench_pg_start: the cluster, on a free port of 127.0.0.1. pg.bash's own
# lines (fsync off for the tests) come first in postgresql.conf; these
# follow them and so win.
bench_pg_start() {
	local -a settings=(fsync=on full_page_writes=on "synchronous_commit=$BENCH_PG_SYNC_COMMIT"
		"shared_buffers=$BENCH_PG_SHARED_BUFFERS")
	local kv
	for kv in $BENCH_PG_SETTINGS; do
		[[ $kv == *=* ]] || { echo "BENCH_PG_SETTINGS: '$kv' is not NAME=VALUE" >&2; return 1; }
		settings+=("$kv")
	done
	export ORDERS_TEST_KEEP=${KEEP_TMP:-0}
	pg_start "${settings[@]}"
}

bench_pg_stop() { pg_stop; }

# bench_pg_describe: one line with the server's version and the settings in
# effect (as the server reports them), for the results.
bench_pg_describe() {
	local u
	u=$(pg_url postgres)
	printf 'PostgreSQL %s: %s\n' "$(pg_sql "$u" 'SHOW server_version' | awk '{print $1}')" \
		"$(pg_sql "$u" "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
		       FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes',
		       'shared_buffers', 'max_connections', 'wal_level', 'max_wal_size')")"
}

# bench_pg_template SEEDFN: the template database: migrated by the responder
# ($ORDERS_FCGI --migrate), then SEEDFN URL fills it; vacuumed and frozen, so
# that no run pays for hint bits or autovacuum of the seed. Prints its URL.
bench_pg_template() {
	local url
	url=$(pg_new_db "$BENCH_PG_TEMPLATE") || return 1
	ORDERS_DB=$url ORDERS_METRICS_FILE=$PG_TMP_DIR/migrate.metrics "$ORDERS_FCGI" --migrate >&2 || return 1
	"$1" "$url" || return 1
	pg_sql "$url" 'VACUUM (FREEZE, ANALYZE)' >&2 || return 1
	printf '%s\n' "$url"
}

# bench_pg_db NAME: a new database NAME (dashes become underscores), a copy
# of the template; prints its URL.
bench_pg_db() {
	pg_new_db "bench_${1//-/_}" "$BENCH_PG_TEMPLATE"
}

# bench_pg_seed_orders URL COUNT: COUNT orders with the same data as
# bench/rest.sh's SQLite seed (names, items, prices; the same JSON text),
# inserted as (customer, items) only, so that the schema's triggers assign
# ids ord_NNNNN in order, totals, timestamps, versions and the order.created
# events. One INSERT ... SELECT over generate_series per 10,000 orders, each
# its own transaction: every insert's trigger updates the one counter row of
# the event log, and 100,000 updates of a row in one transaction cost
# quadratic time (3 minutes here), 10,000 cost about a second.
bench_pg_seed_orders() {
	local url=$1 count=$2 lo hi
	for ((lo = 1; lo <= count; lo += 10000)); do
		hi=$((lo + 9999 < count ? lo + 9999 : count))
		pg_sql "$url" <<SQL || return 1
INSERT INTO orders (customer, items)
SELECT (ARRAY['Ada','Grace','Linus','Margaret','Ken','Barbara','Dennis','Frances','Edsger','Radia'])[i % 10 + 1]
       || ' ' ||
       (ARRAY['Lovelace','Hopper','Torvalds','Hamilton','Thompson','Liskov','Ritchie','Allen','Dijkstra','Perlman'])[(i / 10) % 10 + 1],
       (CASE i % 3
          WHEN 0 THEN '[' || bk || ']'
          WHEN 1 THEN '[' || bk || ',' || pn || ']'
          ELSE '[' || bk || ',' || pn || ',{"sku":"BAG-01","name":"Tote bag","qty":1,"unitPriceCents":1999}]'
        END)::json
  FROM (SELECT i,
               format('{"sku":"BK-%s","name":"Notebook","qty":%s,"unitPriceCents":%s}',
                      lpad((i % 997)::text, 3, '0'), 1 + i % 5, 100 + (i * 7919) % 9900) AS bk,
               format('{"sku":"PN-%s","name":"Pen","qty":%s,"unitPriceCents":%s}',
                      lpad((i % 101)::text, 3, '0'), 1 + i % 3, 150 + (i * 104729) % 850) AS pn
          FROM generate_series($lo::bigint, $hi) AS g(i)) AS s
 ORDER BY i;
SQL
	done
}

# bench_pg_copy_sqlite URL SQLITE_DB: the orders of a SQLite database
# (customer, items as written, currency, status, note, created_at), in seq
# order, so that they get the same ids. Their history (the events of the
# status changes) is not copied: PostgreSQL's log starts with one
# order.created per order.
bench_pg_copy_sqlite() {
	sqlite3 -bail "$2" "SELECT 'INSERT INTO orders (customer, items, currency, status, note, created_at) VALUES ('
	       || quote(customer) || ', ' || quote(items) || ', ' || quote(currency) || ', ' || quote(status) || ', '
	       || quote(note) || ', ' || quote(created_at) || ');' FROM orders ORDER BY seq" |
		{ echo 'BEGIN;'; cat; echo 'COMMIT;'; } | pg_sql "$1" >/dev/null
}

# bench_pg_pids: the postmaster and its children now, space-separated.
bench_pg_pids() {
	printf '%s %s\n' "$PG_PID" "$(children_of "$PG_PID")"
}

# bench_pg_ticks: CPU ticks of the whole cluster so far: the postmaster's own
# and those of its children that ended (cutime, cstime: a backend that exits
# is reaped by it), plus its children's now.
bench_pg_ticks() {
	local s=0 t pid
	for pid in $(bench_pg_pids); do
		t=$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
		s=$((s + ${t:-0}))
	done
	echo "$s"
}
