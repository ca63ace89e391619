/* The event log in a SQLite file (eventlog.h). A commit from any
 * connection of any process moves PRAGMA data_version, which the hub polls.
 * Every statement here is reset as soon as it is read: a statement left
 * open would pin a WAL snapshot and starve the checkpointer. */
#include "eventlog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "store_backend.h"

enum { EL_DATA_VERSION, EL_BOUNDS, EL_READ, EL_COUNT };

static const char *const el_sql[EL_COUNT] = {
    [EL_DATA_VERSION] = "PRAGMA data_version",
    [EL_BOUNDS] = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
                  "(SELECT pruned_through FROM event_log_state)",
    /* Rows written by hand must not stop every stream at them: a patch
     * that is not JSON goes out as a string, and BLOBs, which JSON cannot
     * hold, as text (orders_text, db.h). The subquery is flattened: the
     * range is still a search of the rowid. */
    [EL_READ] = "SELECT id, type, order_id, json_object('type', type, 'id', order_id, "
                "'patch', CASE WHEN json_valid(patch) THEN json(patch) ELSE patch END, "
                "'ts', ts) FROM (SELECT id, orders_text(type) AS type, "
                "orders_text(order_id) AS order_id, orders_text(patch) AS patch, "
                "orders_text(ts) AS ts FROM events) "
                "WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
};

struct sqlite_eventlog {
    struct eventlog base;
    sqlite3 *db;
    sqlite3_stmt *stmt[EL_COUNT];
    long long data_version;
    bool read_failed;           /* since eventlog_changed() last answered */
};

static void el_close(struct eventlog *base);

static struct sqlite_eventlog *sqlite_of(struct eventlog *base)
{
    return (struct sqlite_eventlog *)base;
}

static struct eventlog *el_open(const struct config *cfg, char *err, size_t errlen)
{
    struct sqlite_eventlog *log = calloc(1, sizeof *log);
    if (!log) {
        snprintf(err, errlen, "out of memory opening the event log");
        return NULL;
    }
    log->db = db_open(cfg, 0, err, errlen);
    if (!log->db) {
        free(log);
        return NULL;
    }
    for (int i = 0; i < EL_COUNT; i++) {
        if (sqlite3_prepare_v3(log->db, el_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &log->stmt[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare the event log: %s", sqlite3_errmsg(log->db));
            el_close(&log->base);
            return NULL;
        }
    }
    log->base.ops = &sqlite_eventlog_ops;
    log->data_version = -1;
    return &log->base;
}

static void el_close(struct eventlog *base)
{
    struct sqlite_eventlog *log = sqlite_of(base);
    for (int i = 0; i < EL_COUNT; i++)
        sqlite3_finalize(log->stmt[i]);
    sqlite3_close(log->db);
    free(log);
}

static int el_changed(struct eventlog *base, bool *changed)
{
    struct sqlite_eventlog *log = sqlite_of(base);
    sqlite3_stmt *st = log->stmt[EL_DATA_VERSION];
    int rc = sqlite3_step(st);
    long long v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return -1;
    /* data_version moves once per commit. Were a failed read forgotten
     * here, the events of the commit it missed would wait for the next
     * commit, which may never come. */
    *changed = v != log->data_version || log->read_failed;
    log->data_version = v;
    log->read_failed = false;
    return 0;
}

static int el_bounds(struct eventlog *base, long long *head, long long *pruned_through)
{
    struct sqlite_eventlog *log = sqlite_of(base);
    sqlite3_stmt *st = log->stmt[EL_BOUNDS];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *head = sqlite3_column_int64(st, 0);
        *pruned_through = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        log->read_failed = true;
        return -1;
    }
    return 0;
}

static int el_read(struct eventlog *base, long long after, long long upto, int limit,
                  void (*fn)(void *arg, const struct event *ev), void *arg)
{
    struct sqlite_eventlog *log = sqlite_of(base);
    sqlite3_stmt *st = log->stmt[EL_READ];
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    sqlite3_bind_int(st, 3, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct event ev = {
            .id = sqlite3_column_int64(st, 0),
            .type = (const char *)sqlite3_column_text(st, 1),
            .order_id = (const char *)sqlite3_column_text(st, 2),
            .data = (const char *)sqlite3_column_text(st, 3),
        };
        /* The columns are NOT NULL: NULL here means SQLite ran out of memory. */
        if (!ev.type || !ev.order_id || !ev.data) {
            rc = SQLITE_NOMEM;
            break;
        }
        fn(arg, &ev);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log->read_failed = true;
        return -1;
    }
    return n;
}

/* The hub polls data_version: there is nothing to wait on. */
static int el_wake_fd(struct eventlog *base, bool *renewed)
{
    (void)base;
    *renewed = false;
    return -1;
}

const struct eventlog_ops sqlite_eventlog_ops = {
    .open = el_open,
    .close = el_close,
    .wake_fd = el_wake_fd,
    .changed = el_changed,
    .bounds = el_bounds,
    .read = el_read,
};
