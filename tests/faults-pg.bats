#!/usr/bin/env bats
# Fault injection suite on PostgreSQL, behind lighttpd: the cases of
# tests/faults.bats (those that break the SQLite file itself skip, saying
# why), then PostgreSQL's own faults: the server stopped mid-run and started
# again (503 + Retry-After, one log line per outage, streams stay open and
# catch up), the responder started while it is down (migrated once it
# answers), a deadlock with a psql session (retried inside the service), and
# a full disk (SQLSTATE 53100 from a test-only trigger: 507). One throwaway
# cluster for the file (tests/lib/pg.bash), a database per case.
# Run from the repository root: bats --tap tests/faults-pg.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/pg'
load 'lib/stream'
load 'lib/faults'

setup_file() {
	orders_suite_from_name
	orders_binary >/dev/null
	orders_backend_setup
}

teardown_file() {
	orders_backend_teardown
}

teardown() {
	faults_pg_ensure_up
	stream_test_teardown
}

@test "pg faults: database locked by another process (SQLite only)" { fcase_db_locked; }
@test "pg faults: disk full through ORDERS_MAX_PAGES (SQLite only)" { fcase_disk_full; }
@test "pg faults: start-up refuses a read-only database file (SQLite only)" { fcase_startup_refusal readonly; }
@test "pg faults: start-up refuses a database in a missing directory (SQLite only)" { fcase_startup_refusal missing_dir; }
@test "pg faults: start-up refuses a corrupt database file (SQLite only)" { fcase_startup_refusal corrupt; }
@test "pg faults: start-up refuses a damaged database (SQLite only)" { fcase_startup_refusal damaged; }
@test "pg faults: start-up refuses a database with a newer schema (SQLite only)" { fcase_startup_refusal newer_schema; }
@test "pg faults: SIGKILL of the responder under 4 writers: every 2xx is in the database with its event, nothing half there" { fcase_crash_sigkill_responder; }
@test "pg faults: SIGKILL of lighttpd under 4 writers: database whole, orphaned responder stops on SIGTERM, restart goes on" { fcase_crash_sigkill_lighttpd; }
@test "pg faults: SIGTERM with requests in flight held by a SQLite lock (SQLite only)" { fcase_graceful_stop; }
@test "pg faults: SIGTERM under write load: no response cut short, everything acknowledged kept, stream ends cleanly" { fcase_graceful_stop_under_load; }
@test "pg faults: 25 SIGTERMs under write load: every stop is prompt" { fcase_repeated_stop_under_load; }
@test "pg faults: /health 503 while a damaged SQLite page does not answer (SQLite only)" { fcase_health_db_unavailable; }
@test "pg faults: online backup with sqlite3 (SQLite only)" { fcase_online_backup; }
@test "pg faults: PostgreSQL stopped mid-run: 503 + Retry-After, one log line per outage, back within seconds, an open stream catches up without gap" { fcase_pg_server_stopped; }
@test "pg faults: responder started while PostgreSQL is down: 503 (health too), then migrated and normal once it answers" { fcase_pg_start_while_down; }
@test "pg faults: deadlock with a psql session: the PATCH ends 200 (retried), the session's change is kept" { fcase_pg_deadlock; }
@test "pg faults: disk full (SQLSTATE 53100 from a trigger): POST and PATCH 507 insufficient_storage, nothing changed, then writes work" { fcase_pg_disk_full; }
@test "pg faults: a constraint the database refuses a write with: 500 internal_error, nothing changed, logged; the write works once it is gone" { fcase_constraint_refused; }
@test "pg faults: libpq's PG* variables fill in what ORDERS_DB leaves out; the URI's own values win" { fcase_pg_environment; }
@test "pg faults: a database with a newer schema stops the responder at start with one line, and is left as it is" { fcase_pg_newer_schema; }
