#!/usr/bin/env bats
# The PostgreSQL schema (sql/pg/001_schema.sql) on its own, without the
# responder: what its triggers make of INSERT, UPDATE and DELETE by hand
# with psql (the same events, patches, versions and updatedAt as the SQLite
# schema), its CHECKs, and event ids that become visible in commit order.
# Starts its own cluster (tests/lib/pg.bash); needs Debian's postgresql package.
# Run from the repository root: bats --tap tests/pg-schema.bats

BATS_LIB_DIR=${BATS_LIB_DIR:-/usr/lib/bats}
load "$BATS_LIB_DIR/bats-support/load"
load "$BATS_LIB_DIR/bats-assert/load"
load 'lib/pg'

SCHEMA=$BATS_TEST_DIRNAME/../sql/pg/001_schema.sql
TS_RE='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
ITEMS='[{"sku":"BK-001","name":"Notebook","qty":2,"unitPriceCents":1299},{"sku":"PN-7","name":"Pen","qty":3,"unitPriceCents":150}]'

setup_file() {
	# track_commit_timestamp: the commit-order test reads when events committed
	pg_start track_commit_timestamp=on
	# Every test gets a copy of this database, so that its ids start at 1.
	local url
	url=$(pg_new_db orders_template)
	# As the migration runner applies it: the whole file in one simple query
	# (one PQexec), inside a transaction.
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -1 -d "$url" -c "$(<"$SCHEMA")"
}

teardown_file() {
	pg_stop
}

setup() {
	DB=$(pg_new_db "t_$BATS_TEST_NUMBER" orders_template)
}

# q SQL...: run SQL on this test's database, print the rows (fields split by |).
q() { pg_sql "$DB" "$@"; }

# ms TIMESTAMP: 2026-01-02T03:04:05.678Z as Unix milliseconds, by date(1).
ms() { date -u -d "$1" +%s%3N; }

# insert_order [CUSTOMER]: an INSERT by hand, with only what a person would type.
insert_order() {
	q "INSERT INTO orders (customer, items) VALUES ('${1:-Ada Lovelace}', '$ITEMS')"
}

# wait_for SECONDS SQL: until SQL (on the postgres database) prints t.
wait_for() {
	local deadline=$((SECONDS + $1)) out
	while ((SECONDS < deadline)); do
		out=$(pg_sql "$(pg_url postgres)" "$2") || true
		[[ $out == t ]] && return 0
		sleep 0.05
	done
	return 1
}

@test "the file applies in one PQexec within a transaction, and leaves the version table and BEGIN to the runner" {
	# outside comments and PL/pgSQL bodies (whose BEGIN has no semicolon)
	run grep -inE '^[[:space:]]*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION)[[:space:]]*;' "$SCHEMA"
	assert_failure
	run bash -c 'grep -v "^[[:space:]]*--" "$1" | grep -iE "orders_schema_version|advisory"' _ "$SCHEMA"
	assert_failure
	run q "SELECT to_regclass('orders_schema_version') IS NULL"
	assert_output t
	run q "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
	        WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v')"
	assert_output event_log_state,events,idempotency_keys,order_documents,orders
	run q "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	        WHERE attrelid = 'orders'::regclass AND attname = 'items'"
	assert_output json
	run q "SELECT head, pruned_through FROM event_log_state"
	assert_output '0|0'
	# one row: a second is refused
	run q "INSERT INTO event_log_state VALUES (0, 0)"
	assert_failure
}

@test "an INSERT by hand gets ord_00001, its total, version 1, updatedAt = createdAt and one order.created event" {
	insert_order
	local id total version created updated
	IFS='|' read -r id total version created updated < <(q "SELECT id, total_cents, version, created_at, updated_at FROM orders")
	assert_equal "$id" ord_00001
	assert_equal "$total" 3048
	assert_equal "$version" 1
	[[ $created =~ ^$TS_RE$ ]] || fail "createdAt $created is not YYYY-MM-DDTHH:MM:SS.mmmZ"
	assert_equal "$updated" "$created"
	# within a minute of now: UTC, not local time
	local now
	now=$(date +%s%3N)
	(($(ms "$created") > now - 60000 && $(ms "$created") <= now + 1000)) || fail "createdAt $created is not now"

	local doc
	doc=$(q "SELECT doc FROM order_documents WHERE id = 'ord_00001'")
	assert_equal "$doc" "{\"id\":\"ord_00001\",\"customer\":\"Ada Lovelace\",\"items\":$ITEMS,\"totalCents\":3048,\"currency\":\"EUR\",\"status\":\"pending\",\"note\":\"\",\"createdAt\":\"$created\",\"updatedAt\":\"$created\",\"version\":1}"

	run q "SELECT id, type, order_id FROM events"
	assert_output '1|order.created|ord_00001'
	run q "SELECT patch::text = (SELECT doc FROM order_documents WHERE id = 'ord_00001') FROM events"
	assert_output t
	run q "SELECT ts FROM events"
	assert_output "$(ms "$created")"
}

@test "an INSERT with nothing in items totals 0, and one with an id of its own keeps it" {
	q "INSERT INTO orders (customer, items, id) VALUES ('Bo', '[]', 'legacy-7')"
	run q "SELECT id, total_cents FROM orders"
	assert_output 'legacy-7|0'
	run q "SELECT order_id, patch->>'id' FROM events"
	assert_output 'legacy-7|legacy-7'
}

@test "an UPDATE of status by hand bumps the version, moves updatedAt and writes one order.updated" {
	insert_order
	local created
	created=$(q "SELECT created_at FROM orders")
	sleep 0.01
	q "UPDATE orders SET status = 'paid' WHERE id = 'ord_00001'"
	local version updated
	IFS='|' read -r version updated < <(q "SELECT version, updated_at FROM orders")
	assert_equal "$version" 2
	[[ $updated =~ ^$TS_RE$ ]] || fail "updatedAt $updated"
	(($(ms "$updated") > $(ms "$created"))) || fail "updatedAt $updated did not move past createdAt $created"
	run q "SELECT created_at FROM orders"
	assert_output "$created"
	run q "SELECT id, type, order_id, patch FROM events WHERE id > 1"
	assert_output "2|order.updated|ord_00001|{\"status\":\"paid\",\"updatedAt\":\"$updated\",\"version\":2}"
	run q "SELECT ts FROM events WHERE id = 2"
	assert_output "$(ms "$updated")"
	run q "SELECT doc FROM order_documents"
	assert_output --partial "\"status\":\"paid\",\"note\":\"\",\"createdAt\":\"$created\",\"updatedAt\":\"$updated\",\"version\":2}"
}

@test "an UPDATE of items recomputes totalCents, and the patch has items then totalCents" {
	insert_order
	local new='[{"sku":"X","qty":3,"unitPriceCents":100}]'
	q "UPDATE orders SET items = '$new', note = 'gift' WHERE id = 'ord_00001'"
	local updated
	updated=$(q "SELECT updated_at FROM orders")
	run q "SELECT total_cents, version FROM orders"
	assert_output '300|2'
	run q "SELECT patch FROM events WHERE id = 2"
	assert_output "{\"items\":$new,\"totalCents\":300,\"note\":\"gift\",\"updatedAt\":\"$updated\",\"version\":2}"
	# new items with the same total: no totalCents in the patch
	local same='[{"sku":"Y","qty":1,"unitPriceCents":300}]'
	q "UPDATE orders SET items = '$same' WHERE id = 'ord_00001'"
	updated=$(q "SELECT updated_at FROM orders")
	run q "SELECT patch FROM events WHERE id = 3"
	assert_output "{\"items\":$same,\"updatedAt\":\"$updated\",\"version\":3}"
	# every field a client may change, in SQLite's order
	q "UPDATE orders SET note = 'n', status = 'cancelled', currency = 'USD', items = '[]', customer = 'Cy' WHERE id = 'ord_00001'"
	updated=$(q "SELECT updated_at FROM orders")
	run q "SELECT patch FROM events WHERE id = 4"
	assert_output "{\"customer\":\"Cy\",\"items\":[],\"totalCents\":0,\"currency\":\"USD\",\"status\":\"cancelled\",\"note\":\"n\",\"updatedAt\":\"$updated\",\"version\":4}"
	# a hand-set total is put back to what the items say
	q "UPDATE orders SET total_cents = 999 WHERE id = 'ord_00001'"
	run q "SELECT total_cents, version, (SELECT count(*) FROM events) FROM orders"
	assert_output '0|4|4'
}

@test "an UPDATE that sets fields to their own values writes no event and keeps version and updatedAt" {
	insert_order
	local before
	before=$(q "SELECT version, updated_at, total_cents FROM orders")
	sleep 0.01
	q "UPDATE orders SET status = 'pending', customer = customer, note = '', currency = 'EUR' WHERE id = 'ord_00001'"
	q "UPDATE orders SET items = '$ITEMS' WHERE id = 'ord_00001'"
	run q "SELECT version, updated_at, total_cents FROM orders"
	assert_output "$before"
	run q "SELECT count(*), max(id) FROM events"
	assert_output '1|1'
	run q "SELECT head FROM event_log_state"
	assert_output 1
}

@test "an UPDATE that moves version itself, as the service's does, is not bumped again" {
	insert_order
	# the service's statement: the fields, total_cents, version + 1 and updated_at at once
	q "UPDATE orders SET status = 'shipped', total_cents = 3048, version = version + 1,
	          updated_at = '2031-05-06T07:08:09.010Z' WHERE id = 'ord_00001'"
	run q "SELECT version, updated_at, total_cents FROM orders"
	assert_output '2|2031-05-06T07:08:09.010Z|3048'
	run q "SELECT id, patch FROM events WHERE id > 1"
	assert_output '2|{"status":"shipped","updatedAt":"2031-05-06T07:08:09.010Z","version":2}'
	# and with orders_now_text(), as one statement: its updatedAt and ts agree
	q "UPDATE orders SET note = 'x', version = version + 1, updated_at = orders_now_text() WHERE id = 'ord_00001'"
	local updated
	updated=$(q "SELECT updated_at FROM orders")
	run q "SELECT version FROM orders"
	assert_output 3
	run q "SELECT patch, ts FROM events WHERE id = 3"
	assert_output "{\"note\":\"x\",\"updatedAt\":\"$updated\",\"version\":3}|$(ms "$updated")"
}

@test "a DELETE writes order.deleted with the patch {}" {
	insert_order
	local before after
	before=$(date +%s%3N)
	q "DELETE FROM orders WHERE id = 'ord_00001'"
	after=$(date +%s%3N)
	run q "SELECT id, type, order_id, patch FROM events WHERE id > 1"
	assert_output '2|order.deleted|ord_00001|{}'
	local ts
	ts=$(q "SELECT ts FROM events WHERE id = 2")
	((ts >= before - 1000 && ts <= after + 1000)) || fail "ts $ts is not between $before and $after"
	# seq is never reused: the next order is ord_00002
	insert_order
	run q "SELECT id FROM orders"
	assert_output ord_00002
}

@test "event ids are 1, 2, 3… without a gap, a rollback gives its id back, and head is the newest" {
	insert_order
	q "INSERT INTO orders (customer, items) VALUES ('B', '[]'), ('C', '[]')"
	q "UPDATE orders SET status = 'paid'"
	q "BEGIN" "INSERT INTO orders (customer, items) VALUES ('D', '[]')" "ROLLBACK"
	run q "INSERT INTO orders (customer, items) VALUES ('E', '[]', 'x')"
	assert_failure
	q "DELETE FROM orders WHERE customer = 'B'"
	run q "SELECT string_agg(id::text || ':' || type, ' ' ORDER BY id) FROM events"
	assert_output '1:order.created 2:order.created 3:order.created 4:order.updated 5:order.updated 6:order.updated 7:order.deleted'
	run q "SELECT head FROM event_log_state"
	assert_output 7
	# head stays the newest id ever written when the log is pruned
	q "DELETE FROM events WHERE id > 5"
	insert_order F
	run q "SELECT max(id) FROM events"
	assert_output 8
}

@test "a LISTEN on orders_events hears each committed event's id, and nothing of a rollback" {
	local out=$BATS_TEST_TMPDIR/listen.out
	PGAPPNAME=pg_schema_listener "$PG_BINDIR/psql" -X -d "$DB" -c 'LISTEN orders_events' \
		-c 'SELECT pg_sleep(1.5)' -c 'SELECT 1' >"$out" 2>&1 3>&- &
	local listener=$!
	wait_for 10 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_schema_listener'
	               AND state = 'active' AND query LIKE '%pg_sleep%')" || {
		kill "$listener"
		fail "the listener did not start"
	}
	q "BEGIN" "INSERT INTO orders (customer, items) VALUES ('A', '[]'), ('B', '[]')" "COMMIT"
	q "BEGIN" "INSERT INTO orders (customer, items) VALUES ('C', '[]')" "ROLLBACK"
	q "UPDATE orders SET status = 'paid' WHERE id = 'ord_00001'"
	wait "$listener" || fail "the listener failed: $(cat "$out")"
	run grep -o 'notification "orders_events" with payload "[^"]*"' "$out"
	assert_output 'notification "orders_events" with payload "1"
notification "orders_events" with payload "2"
notification "orders_events" with payload "3"'
}

@test "a bad currency, status or items is refused by a CHECK and writes nothing" {
	insert_order
	local before
	before=$(q "SELECT string_agg(doc, ',') FROM order_documents")
	local sql check
	while IFS='@' read -r check sql; do
		run q "$sql"
		assert_failure
		[[ $output == *"violates check constraint \"$check\""* ]] || fail "$sql: expected $check to refuse it, got: $output"
	done <<-'EOF'
		orders_currency_check@INSERT INTO orders (customer, items, currency) VALUES ('A', '[]', 'eur')
		orders_currency_check@INSERT INTO orders (customer, items, currency) VALUES ('A', '[]', 'EURO')
		orders_currency_check@INSERT INTO orders (customer, items, currency) VALUES ('A', '[]', E'EUR\n')
		orders_currency_check@UPDATE orders SET currency = 'E1R'
		orders_status_check@INSERT INTO orders (customer, items, status) VALUES ('A', '[]', 'lost')
		orders_status_check@UPDATE orders SET status = 'Paid'
		orders_items_check@INSERT INTO orders (customer, items) VALUES ('A', '{"sku":"X","qty":1}')
		orders_items_check@INSERT INTO orders (customer, items) VALUES ('A', '"[]"')
		orders_items_check@INSERT INTO orders (customer, items) VALUES ('A', '3')
		orders_items_check@UPDATE orders SET items = '{}'
	EOF
	run q "INSERT INTO orders (customer, items) VALUES ('A', 'not json')"
	assert_failure
	assert_output --partial 'invalid input syntax for type json'
	run q "INSERT INTO orders (customer) VALUES ('A')"
	assert_failure
	assert_output --partial 'not-null'
	run q "SELECT string_agg(doc, ',') FROM order_documents"
	assert_output "$before"
	run q "SELECT count(*), max(id), (SELECT head FROM event_log_state) FROM events"
	assert_output '1|1|1'
}

@test "seq 99999 gives ord_99999 and seq 100000 gives ord_100000" {
	q "SELECT setval(pg_get_serial_sequence('orders', 'seq'), 99998)"
	insert_order
	insert_order
	run q "SELECT string_agg(seq || ':' || id, ' ' ORDER BY seq) FROM orders"
	assert_output '99999:ord_99999 100000:ord_100000'
	run q "SELECT string_agg(order_id, ' ' ORDER BY id) FROM events"
	assert_output 'ord_99999 ord_100000'
}

@test "event ids are in commit order: a second writer waits for the first's commit" {
	# A inserts (event 1) and holds its transaction open; B inserts meanwhile.
	PGAPPNAME=pg_schema_a "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -c 'BEGIN' \
		-c "INSERT INTO orders (customer, items) VALUES ('A', '[]')" \
		-c 'SELECT pg_sleep(1.5)' -c 'COMMIT' >"$BATS_TEST_TMPDIR/a.out" 2>&1 3>&- &
	local a=$!
	wait_for 10 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_schema_a'
	               AND state = 'active' AND query LIKE '%pg_sleep%')" || {
		kill "$a"
		fail "writer A did not get to its sleep"
	}
	PGAPPNAME=pg_schema_b "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" \
		-c "INSERT INTO orders (customer, items) VALUES ('B', '[]')" >"$BATS_TEST_TMPDIR/b.out" 2>&1 3>&- &
	local b=$!
	local waited=0
	wait_for 5 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_schema_b'
	             AND wait_event_type = 'Lock')" && waited=1
	# meanwhile a reader sees neither event
	local seen
	seen=$(q "SELECT count(*) FROM events")
	local a_running=0
	kill -0 "$a" 2>/dev/null && a_running=1
	wait "$a" || fail "writer A failed: $(cat "$BATS_TEST_TMPDIR/a.out")"
	wait "$b" || fail "writer B failed: $(cat "$BATS_TEST_TMPDIR/b.out")"
	((a_running)) || fail "writer A committed before B was seen waiting: the test proved nothing"
	((waited)) || fail "writer B did not wait for A's commit"
	assert_equal "$seen" 0
	run q "SELECT string_agg(e.id || ':' || o.customer, ' ' ORDER BY e.id) FROM events e JOIN orders o ON o.id = e.order_id"
	assert_output '1:A 2:B'
	run q "SELECT bool_and(committed_before_next) FROM (
	         SELECT pg_xact_commit_timestamp(xmin) < lead(pg_xact_commit_timestamp(xmin)) OVER (ORDER BY id)
	                OR lead(id) OVER (ORDER BY id) IS NULL AS committed_before_next FROM events) c"
	assert_output t
}

@test "no gap: under four concurrent writers a reader never sees an id before all below it" {
	local i pids=()
	for i in 1 2 3 4; do
		"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "DO \$\$
		BEGIN
		    FOR n IN 1..25 LOOP
		        INSERT INTO orders (customer, items) VALUES ('w$i-' || n, '[]');
		        PERFORM pg_sleep(random() * 0.01);
		        COMMIT;
		    END LOOP;
		END \$\$" >"$BATS_TEST_TMPDIR/w$i.out" 2>&1 3>&- &
		pids+=($!)
	done
	# Each statement of the reader's loop has a snapshot of its own (READ
	# COMMITTED): it must never count fewer events than its newest id.
	run q "DO \$\$
	DECLARE c bigint; m bigint; deadline timestamptz := clock_timestamp() + interval '30 s'; checks int := 0;
	BEGIN
	    LOOP
	        SELECT count(*), coalesce(max(id), 0) INTO c, m FROM events;
	        checks := checks + 1;
	        IF c <> m THEN
	            RAISE EXCEPTION 'gap: % events seen up to id %', c, m;
	        END IF;
	        EXIT WHEN c = 100 OR clock_timestamp() > deadline;
	        PERFORM pg_sleep(0.001);
	    END LOOP;
	    RAISE NOTICE 'checks: %', checks;
	END \$\$"
	local reader_status=$status reader_output=$output
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || fail "writer $((i + 1)) failed: $(cat "$BATS_TEST_TMPDIR/w$((i + 1)).out")"
	done
	((reader_status == 0)) || fail "$reader_output"
	run q "SELECT count(*), min(id), max(id), (SELECT head FROM event_log_state) FROM events"
	assert_output '100|1|100|100'
}

@test "hand edits give the same events and documents as the SQLite schema" {
	local sqlite_db=$BATS_TEST_TMPDIR/orders.db
	sqlite3 "$sqlite_db" <"$BATS_TEST_DIRNAME/../sql/001_schema.sql"
	local -a edits=(
		"INSERT INTO orders (customer, items) VALUES ('Zoë \"Q\" back\\slash
new line', '$ITEMS')"
		"INSERT INTO orders (customer, items, currency, note) VALUES ('Bo', '[{\"sku\":\"Z\",\"qty\":1,\"unitPriceCents\":5}]', 'USD', 'tab	here')"
		"UPDATE orders SET status = 'paid' WHERE id = 'ord_00001'"
		"UPDATE orders SET items = '[]', note = 'none' WHERE id = 'ord_00002'"
		"UPDATE orders SET customer = customer, status = status"
		"UPDATE orders SET items = '[{\"sku\":\"K\",\"qty\":2,\"unitPriceCents\":1524}]' WHERE id = 'ord_00001'"
		"UPDATE orders SET note = 'svc', version = version + 1, updated_at = '2030-01-01T00:00:00.000Z' WHERE id = 'ord_00001'"
		"UPDATE orders SET currency = 'GBP', status = 'shipped', customer = 'Cy' WHERE id = 'ord_00001'"
		"DELETE FROM orders WHERE id = 'ord_00002'"
		"INSERT INTO orders (customer, items, id) VALUES ('Di', '[]', 'custom-1')"
	)
	local e
	for e in "${edits[@]}"; do
		q "$e"
		sqlite3 -bail "$sqlite_db" "$e" || fail "sqlite3 refused: $e"
	done
	local report="SELECT id || '|' || type || '|' || order_id || '|' || patch FROM events ORDER BY id;
		SELECT doc FROM order_documents ORDER BY seq;
		SELECT id || '|' || total_cents || '|' || version FROM orders ORDER BY seq;"
	local pg lite
	pg=$(q "$report" | sed -E "s/$TS_RE/TS/g")
	lite=$(sqlite3 "$sqlite_db" "$report" | sed -E "s/$TS_RE/TS/g")
	[[ $pg == "$lite" ]] || fail "PostgreSQL and SQLite differ (timestamps as TS):
--- PostgreSQL
$pg
--- SQLite
$lite"
	# and the report is not empty
	[[ $(grep -c . <<<"$pg") -eq 13 ]] || fail "expected 9 events, 2 documents and 2 orders: $pg"
}
