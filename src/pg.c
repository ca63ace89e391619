#include "pg.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "migrations.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

/* Any number that other users of the database are unlikely to pick. */
#define MIGRATION_LOCK_KEY "7260111"

/* Whether the server answers, as this process last found: so that an
 * outage is logged once, not by every thread on every attempt. */
static atomic_bool server_down;

/* Whether this process has seen the schema up to date. */
static pthread_mutex_t migrate_lock = PTHREAD_MUTEX_INITIALIZER;
static bool migrated;

static void note_down(const char *why)
{
    if (!atomic_exchange(&server_down, true))
        fprintf(stderr, "orders: PostgreSQL does not answer (%s); requests get 503 until it "
                "does\n", why);
}

static void note_up(void)
{
    if (atomic_exchange(&server_down, false))
        fprintf(stderr, "orders: PostgreSQL answers again\n");
}

/* The message of a failed connection without its trailing newline. */
static void first_line(PGconn *conn, char *out, size_t len)
{
    snprintf(out, len, "%s", conn ? PQerrorMessage(conn) : "out of memory");
    out[strcspn(out, "\n")] = '\0';
}

/* Notices (CREATE ... IF NOT EXISTS that skips, for one) are not errors:
 * they would only fill the web server's error log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The connection settings: the URI's own, after these defaults, and then
 * what the service depends on (its JSON is UTF-8). The keepalives find a
 * server whose host vanished without a word (a partition, a power cut)
 * within about 25 s, where TCP alone would wait for minutes with a worker
 * thread held. */
static PGconn *connect_to(const struct config *cfg)
{
    const char *const keys[] = {"connect_timeout", "application_name", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "dbname",
                                "client_encoding", NULL};
    const char *const values[] = {"5", "orders", "10", "5", "3", cfg->db_path, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn && PQstatus(conn) == CONNECTION_OK)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

void pg_link_init(struct pg_link *link, const struct config *cfg)
{
    memset(link, 0, sizeof *link);
    link->cfg = cfg;
    link->backoff_ms = BACKOFF_FIRST_MS;
}

void pg_link_close(struct pg_link *link)
{
    PQfinish(link->conn);
    link->conn = NULL;
}

static int migrate_conn(PGconn *conn, char *err, size_t errlen);

/* Runs the migrations on conn once per process. */
static int ensure_migrated(PGconn *conn, struct error *err)
{
    char msg[256];
    int rc = 0;
    pthread_mutex_lock(&migrate_lock);
    if (!migrated) {
        rc = migrate_conn(conn, msg, sizeof msg);
        migrated = rc == 0;
    }
    pthread_mutex_unlock(&migrate_lock);
    if (rc != 0) {
        fprintf(stderr, "orders: %s\n", msg);
        return error_set(err, ERR_UNAVAILABLE, "the database's schema cannot be brought up to date");
    }
    return 0;
}

int pg_link_ready(struct pg_link *link, struct error *err)
{
    if (link->conn && PQstatus(link->conn) == CONNECTION_OK)
        return 0;
    pg_link_close(link);
    long long now = clock_monotonic_ms();
    if (now < link->retry_at_ms)
        return error_set(err, ERR_UNAVAILABLE, "the database does not answer, try again");
    PGconn *conn = connect_to(link->cfg);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char why[200];
        first_line(conn, why, sizeof why);
        PQfinish(conn);
        note_down(why);
        link->retry_at_ms = now + link->backoff_ms;
        link->backoff_ms = link->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                                 : link->backoff_ms * 2;
        return error_set(err, ERR_UNAVAILABLE, "the database does not answer, try again");
    }
    if (ensure_migrated(conn, err) != 0) {
        PQfinish(conn);
        link->retry_at_ms = now + BACKOFF_MAX_MS;
        return -1;
    }
    note_up();
    link->conn = conn;
    link->renewed = true;
    link->backoff_ms = BACKOFF_FIRST_MS;
    return 0;
}

/* SQLSTATE classes and codes (PostgreSQL's appendix A). */
static bool state_is(const char *state, const char *prefix)
{
    return strncmp(state, prefix, strlen(prefix)) == 0;
}

bool pg_link_lost(const struct pg_link *link)
{
    return !link->conn || PQstatus(link->conn) != CONNECTION_OK;
}

int pg_error(struct pg_link *link, const PGresult *res, struct error *err)
{
    /* Not logged: a server that restarted closes every connection, and
     * only a failed attempt to connect again tells that it does not
     * answer (pg_link_ready). */
    if (pg_link_lost(link)) {
        pg_link_close(link);
        return error_set(err, ERR_UNAVAILABLE, "the database does not answer, try again");
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state) {
        fprintf(stderr, "orders: postgresql: %s", PQerrorMessage(link->conn));
        return error_set(err, ERR_INTERNAL, "internal database error");
    }
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return error_set(err, ERR_WRITE_CONFLICT, "the write met another one, try again");
    if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
        return error_set(err, ERR_UNAVAILABLE, "the database is busy, try again");
    if (strcmp(state, "53100") == 0)
        return error_set(err, ERR_INSUFFICIENT_STORAGE, "the database is full");
    if (state_is(state, "08") || state_is(state, "53") || state_is(state, "57P"))
        return error_set(err, ERR_UNAVAILABLE, "the database is unavailable: %s",
                         PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    fprintf(stderr, "orders: postgresql error %s: %s", state, PQresultErrorMessage(res));
    return error_set(err, ERR_INTERNAL, "internal database error");
}

void pg_append_compact_json(struct buf *out, const char *json, size_t len)
{
    size_t from = 0;        /* the start of the run not yet appended */
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (in_string) {
            if (c == '\\')
                i++;        /* the escaped character, whatever it is */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            buf_append(out, json + from, i - from);
            from = i + 1;
        }
    }
    if (from < len)
        buf_append(out, json + from, len - from);
}

/* Runs sql, which returns no rows or ignores them. Returns 0, or -1 with
 * the server's message in err. */
static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

/* One migration and its row in the version table, in one transaction. */
static int apply(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char msg[200], version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    if (exec_ok(conn, "BEGIN", msg, sizeof msg) || exec_ok(conn, m->sql, msg, sizeof msg))
        goto fail;
    PGresult *res = PQexecParams(conn, "INSERT INTO orders_schema_version (version, name) "
                                 "VALUES ($1, $2)", 2, NULL, params, NULL, NULL, 0);
    bool inserted = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!inserted)
        snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : "out of memory");
    PQclear(res);
    if (!inserted || exec_ok(conn, "COMMIT", msg, sizeof msg))
        goto fail;
    return 0;
fail:
    msg[strcspn(msg, "\n")] = '\0';
    snprintf(err, errlen, "migration sql/pg/%s failed: %s", m->name, msg);
    PQclear(PQexec(conn, "ROLLBACK"));
    return -1;
}

static int migrate_conn(PGconn *conn, char *err, size_t errlen)
{
    const int latest = pg_migrations[pg_migrations_count - 1].version;
    char msg[200];
    if (exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", msg, sizeof msg)) {
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(err, errlen, "cannot lock the database to migrate it: %s", msg);
        return -1;
    }
    int rc = -1;
    PGresult *res = NULL;
    if (exec_ok(conn, "CREATE TABLE IF NOT EXISTS orders_schema_version ("
                      "version integer PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())", msg, sizeof msg)) {
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(err, errlen, "cannot create the schema's version table: %s", msg);
        goto unlock;
    }
    res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM orders_schema_version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read the schema's version: %s", PQerrorMessage(conn));
        goto unlock;
    }
    int version = atoi(PQgetvalue(res, 0, 0));
    if (version > latest) {
        snprintf(err, errlen, "the database has schema version %d, newer than this "
                 "responder's %d", version, latest);
        goto unlock;
    }
    rc = 0;
    for (int i = 0; i < pg_migrations_count && rc == 0; i++)
        if (pg_migrations[i].version > version)
            rc = apply(conn, &pg_migrations[i], err, errlen);
unlock:
    PQclear(res);
    /* Ending the session would release it too; a failure here changes
     * nothing for the migration. */
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")"));
    return rc;
}

int pg_migrate(const struct config *cfg, bool at_start, char *err, size_t errlen)
{
    PGconn *conn = connect_to(cfg);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char why[200];
        first_line(conn, why, sizeof why);
        PQfinish(conn);
        if (at_start) {
            note_down(why);
            return 0;
        }
        snprintf(err, errlen, "cannot connect to ORDERS_DB: %s", why);
        return -1;
    }
    pthread_mutex_lock(&migrate_lock);
    int rc = migrate_conn(conn, err, errlen);
    migrated = rc == 0;
    pthread_mutex_unlock(&migrate_lock);
    PQfinish(conn);
    return rc;
}
