/* Unit tests of src/writes.c, the group commit, on PostgreSQL: the cases
 * of writes_cases.h (the same as on SQLite), then the retry of a write
 * that met a deadlock, against the real database ORDERS_TEST_PG_URL names
 * (pgtest.h).
 *
 * The write lock is what every write transaction of the service takes
 * first (store_pg.c): the row of event_log_state, FOR UPDATE. A connection
 * of the test's own holds it, as another host's writer would. */
#include "pgtest.h"
#include "writes_cases.h"

/* The deadlock detector's wait in the service's sessions: short, so that
 * the case is quick, and below the test's own, so that the service's
 * transaction, which waits first, is the one PostgreSQL aborts. */
#define SERVICE_DEADLOCK_TIMEOUT "100ms"

static PGconn *peek;        /* reads what was committed */
static PGconn *holder;      /* holds the write lock */
static PGconn *rival;       /* the other side of the deadlock */

static long long query_int(const char *sql)
{
    return pgtest_int(peek, sql);
}

static void hold_lock(void)
{
    pgtest_must(holder, "BEGIN; SELECT head FROM event_log_state FOR UPDATE");
}

static void release_lock(void)
{
    pgtest_must(holder, "ROLLBACK");
}

/* Waits until a connection of the service's waits for a lock the rival
 * holds (and not, say, for the one hold_lock() held a moment ago). */
static bool service_waits_for_rival(void)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) " PGTEST_SERVICE_BACKENDS
             " AND %d = ANY (pg_blocking_pids(pid))", PQbackendPID(rival));
    for (int i = 0; i < 1000; i++) {
        if (query_int(sql) >= 1)
            return true;
        usleep(2000);
    }
    return false;
}

/* The rival updates order id while the service's transaction holds the
 * write lock and waits for the rival's lock on another order: a deadlock.
 * Returns whether the rival's UPDATE went through (the service's
 * transaction was the one aborted); the rival's transaction is then
 * committed, else rolled back. */
static bool rival_update(const char *id)
{
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE orders SET note = 'rival' WHERE id = '%s'", id);
    PGresult *res = PQexec(rival, sql);
    bool went = PQresultStatus(res) == PGRES_COMMAND_OK;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!went)
        diag("the rival's UPDATE: %s (%s)", PQresultErrorMessage(res), state ? state : "?");
    PQclear(res);
    pgtest_must(rival, went ? "COMMIT" : "ROLLBACK");
    return went;
}

/* The service's PATCH of order a waits for the rival's row lock on it,
 * holding the write lock; the rival then updates order b, which needs
 * the write lock. PostgreSQL aborts the service's transaction (40P01,
 * ERR_WRITE_CONFLICT), writes.c runs the PATCH again, and it succeeds
 * once the rival commits. grouped: the PATCH shares its group with a
 * create, which must not be lost with it. */
static void test_deadlock_retry(bool grouped)
{
    const char *what = grouped ? "in a group" : "alone";
    char *a = pgtest_text(peek, "INSERT INTO orders (customer, items) VALUES ('A', '[]') "
                                "RETURNING id");
    char *b = pgtest_text(peek, "INSERT INTO orders (customer, items) VALUES ('B', '[]') "
                                "RETURNING id");
    if (!a || !b)
        pgtest_bail("cannot create the deadlock's orders");
    long long orders = query_int("SELECT count(*) FROM orders");
    long long head = query_int("SELECT head FROM event_log_state");

    char sql[160];
    snprintf(sql, sizeof sql, "BEGIN; SELECT 1 FROM orders WHERE id = '%s' FOR UPDATE", a);
    pgtest_must(rival, sql);
    struct job patch = {.kind = WRITE_PATCH, .body = "{\"note\":\"service\"}"};
    snprintf(patch.id, sizeof patch.id, "%s", a);
    struct job lead = {.kind = WRITE_CREATE, .body = order_body};
    struct job other = {.kind = WRITE_CREATE, .body = order_body};
    if (grouped) {
        /* lead commits alone while the lock is held; the PATCH and the
         * other create queue behind it and then run as one group. */
        hold_lock();
        start(&lead);
        wait_for_waiting(1);
        usleep(20000);
        start(&patch);
        wait_for_waiting(2);
        start(&other);
        wait_for_waiting(3);
        release_lock();
    } else {
        start(&patch);
    }
    ok(service_waits_for_rival(), "%s: the service's PATCH waits for the rival's row lock", what);
    bool rival_went = rival_update(b);
    ok(rival_went, "%s: the rival's UPDATE went through: PostgreSQL aborted the service's "
       "transaction, which waited first", what);
    finish(&patch);
    if (grouped) {
        finish(&lead);
        finish(&other);
    }
    ok(patch.rc == 0, "%s: the service's PATCH succeeds, run again after the deadlock (%s)", what,
       patch.rc ? patch.err.message : "ok");
    if (grouped)
        ok(lead.rc == 0 && other.rc == 0, "%s: the creates around it succeed", what);

    snprintf(sql, sizeof sql, "SELECT count(*) FROM orders WHERE id = '%s' AND note = 'service'", a);
    is_int(query_int(sql), 1, "%s: the PATCH's change is there", what);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM orders WHERE id = '%s' AND note = 'rival'", b);
    is_int(query_int(sql), rival_went, "%s: the rival's change is there", what);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE order_id = '%s' "
             "AND type = 'order.updated'", a);
    is_int(query_int(sql), 1, "%s: the PATCH has one event, not one per attempt", what);
    is_int(query_int("SELECT count(*) FROM orders") - orders, grouped ? 2 : 0,
           "%s: the creates are there", what);
    is_int(query_int("SELECT head FROM event_log_state") - head,
           1 + rival_went + (grouped ? 2 : 0), "%s: every committed write has its event", what);
    is_int(query_int("SELECT max(id) - min(id) + 1 - count(*) FROM events"), 0,
           "%s: event ids have no gap", what);
    free(a);
    free(b);
}

int main(void)
{
    const char *url = pgtest_url();
    peek = pgtest_connect(url, "writes_pg_test_peek");
    holder = pgtest_connect(url, "writes_pg_test_holder");
    rival = pgtest_connect(url, "writes_pg_test_rival");
    pgtest_setup(&cfg, url, peek);
    cfg.busy_timeout_ms = 300;
    cfg.threads = 2 * WRITERS;

    /* deadlock_timeout may only be set by a superuser. The service's
     * connections are made after this (a store connects on first use) and
     * take it from PGOPTIONS; the rival keeps a longer one. */
    bool superuser = query_int("SELECT count(*) FROM pg_roles "
                               "WHERE rolname = current_user AND rolsuper") == 1;
    if (superuser) {
        if (setenv("PGOPTIONS", "-c deadlock_timeout=" SERVICE_DEADLOCK_TIMEOUT, 1) != 0)
            pgtest_bail("setenv PGOPTIONS failed");
        pgtest_must(rival, "SET deadlock_timeout = '5s'");
    }

    char err[256];
    struct store *writer = store_open(&cfg, err, sizeof err);
    if (!writer)
        pgtest_bail("store_open: %s", err);
    writes = writes_new(writer, &cfg, NULL);
    if (!writes)
        pgtest_bail("writes_new: out of memory");

    run_write_cases();

    /* A write waits for the deadlock to be found and then for the rival's
     * commit: more than the cases' 300 ms. */
    struct writes *quick = writes;
    struct config patient = cfg;
    patient.busy_timeout_ms = 5000;
    writes = writes_new(writer, &patient, NULL);
    if (!writes)
        pgtest_bail("writes_new: out of memory");
    if (superuser) {
        test_deadlock_retry(false);
        test_deadlock_retry(true);
    } else {
        ok(1, "# SKIP deadlock retry: setting deadlock_timeout needs a superuser");
    }
    writes_free(writes);
    writes_free(quick);

    store_close(writer);
    PQfinish(rival);
    PQfinish(holder);
    PQfinish(peek);
    return done_testing();
}
