/* What the unit tests that run against a real PostgreSQL database share:
 * the database's URL from ORDERS_TEST_PG_URL (a database the test may
 * empty; tests/unit-pg.bats makes a new one per program), the service's
 * configuration for it, and connections of the test's own, which write and
 * read by SQL as psql or another host would.
 *
 * Without ORDERS_TEST_PG_URL a program reports itself skipped, so that
 * `make check` without a server stays green. A failure to set up bails
 * out (TAP's "Bail out!"), since no check after it would mean anything. */
#ifndef ORDERS_PGTEST_H
#define ORDERS_PGTEST_H

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config.h"
#include "../../src/store.h"
#include "tap.h"

static void pgtest_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void pgtest_bail(const char *fmt, ...)
{
    va_list ap;
    fputs("Bail out! ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    exit(2);
}

/* The URL, or the program ends here as skipped. */
static const char *pgtest_url(void)
{
    const char *url = getenv("ORDERS_TEST_PG_URL");
    if (!url || !*url) {
        printf("1..0 # SKIP ORDERS_TEST_PG_URL not set\n");
        exit(0);
    }
    return url;
}

/* A connection of the test's own, named app in pg_stat_activity so that
 * it is never taken for the service's ('orders'). */
static PGconn *pgtest_connect(const char *url, const char *app)
{
    const char *const keys[] = {"dbname", "application_name", NULL};
    const char *const values[] = {url, app, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        pgtest_bail("cannot connect to ORDERS_TEST_PG_URL: %s",
                    conn ? PQerrorMessage(conn) : "out of memory");
    return conn;
}

/* Runs sql (several statements in one string are one round trip, the last
 * one's result counts). Returns whether it succeeded; the server's message
 * is a diagnostic when it did not. */
static bool pgtest_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        diag("%s: %s", sql, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

static void pgtest_must(PGconn *conn, const char *sql)
{
    if (!pgtest_exec(conn, sql))
        pgtest_bail("the test's own SQL failed: %s", sql);
}

/* The first column of the first row, or -1 (with a diagnostic). */
static long long pgtest_int(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    long long v = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else if (PQresultStatus(res) != PGRES_TUPLES_OK)
        diag("%s: %s", sql, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return v;
}

/* The first column of the first row as a string to free, or NULL. */
static char *pgtest_text(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    char *v = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    else if (PQresultStatus(res) != PGRES_TUPLES_OK)
        diag("%s: %s", sql, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return v;
}

/* The service's configuration for the database at url (which cfg
 * borrows), with its schema brought up to date by the service's own
 * migrations, and then emptied: every test starts from order 1 and event
 * 1. TRUNCATE fires no row trigger, so it leaves no event behind. */
static void pgtest_setup(struct config *cfg, const char *url, PGconn *conn)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    cfg->backend = BACKEND_POSTGRESQL;
    cfg->db_path = (char *)url;
    if (store_migrate(cfg, false, err, sizeof err) != 0)
        pgtest_bail("store_migrate: %s", err);
    pgtest_must(conn, "TRUNCATE orders, events, idempotency_keys RESTART IDENTITY; "
                      "UPDATE event_log_state SET head = 0, pruned_through = 0");
}

/* The pids of the service's connections to this database (application
 * name 'orders', as src/pg.c connects), as a count. */
#define PGTEST_SERVICE_BACKENDS \
    "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orders'"

#endif
