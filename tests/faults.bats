#!/usr/bin/env bats
# Fault injection suite (issue 5) behind lighttpd: the database locked by
# another process, a full disk (ORDERS_MAX_PAGES), start-up refusals (read-only
# file, missing directory, corrupt or damaged file, newer schema) directly,
# under spawn-fcgi and under lighttpd, SIGKILL of the responder and of
# lighttpd under write load, and a graceful stop (SIGTERM) with requests in
# flight and a stream open, once and 25 times under load, /health's 503
# while the database does not answer, and an online backup under write load.
# The cases live in lib/faults.bash (load generator and database checker:
# lib/faults_tools.py); tests/faults-apache.bats runs the lock, start-up,
# SIGTERM and /health cases behind Apache httpd + mod_fcgid. Each case starts
# an instance of its own (temp dir, database, lighttpd on a free port).
# Run from the repository root: bats --tap tests/faults.bats
# (ORDERS_FCGI points at the responder, default src/orders.fcgi)

load 'lib/common'
load 'lib/stream'
load 'lib/faults'

setup_file() {
	export ORDERS_TEST_SERVER=lighttpd
	orders_binary >/dev/null
}

teardown() {
	stream_test_teardown
}

@test "faults: database locked by another process: writes 503 + Retry-After after the busy timeout, reads go on, streams catch up" { fcase_db_locked; }
@test "faults: disk full (ORDERS_MAX_PAGES): 507 + Retry-After, nothing half-written, reads and streams go on" { fcase_disk_full; }
@test "faults: start-up refuses a read-only database file (one line on stderr, exit non-zero)" { fcase_startup_refusal readonly; }
@test "faults: start-up refuses a database in a missing directory" { fcase_startup_refusal missing_dir; }
@test "faults: start-up refuses a corrupt database file (random bytes)" { fcase_startup_refusal corrupt; }
@test "faults: start-up refuses a damaged database (valid header, schema page overwritten)" { fcase_startup_refusal damaged; }
@test "faults: start-up refuses a database with a newer schema (user_version 99)" { fcase_startup_refusal newer_schema; }
@test "faults: SIGKILL of the responder under 4 writers: every 2xx is in the database with its event, nothing half there" { fcase_crash_sigkill_responder; }
@test "faults: SIGKILL of lighttpd under 4 writers: database whole, orphaned responder stops on SIGTERM, restart goes on" { fcase_crash_sigkill_lighttpd; }
@test "faults: SIGTERM with requests in flight and a stream open: 2xx, clean stream end, exit within 5 s, resume misses nothing" { fcase_graceful_stop; }
@test "faults: SIGTERM under write load: no response cut short, everything acknowledged kept, stream ends cleanly" { fcase_graceful_stop_under_load; }
@test "faults: 25 SIGTERMs under write load: every stop is prompt (no thread left running into the 4.5 s deadline)" { fcase_repeated_stop_under_load; }
@test "faults: /health answers 503 unavailable + Retry-After while the database does not answer (a damaged page), 200 again once it does" { fcase_health_db_unavailable; }
@test "faults: online backup under write load (sqlite3 .backup and VACUUM INTO): each copy whole, same schema, every write acknowledged before it with its event, events a prefix of the live log" { fcase_online_backup; }
@test "faults: a constraint the database refuses a write with: 500 internal_error, nothing changed, logged; the write works once it is gone" { fcase_constraint_refused; }
