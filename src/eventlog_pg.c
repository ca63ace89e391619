/* The event log in PostgreSQL (eventlog.h). The schema's triggers send
 * NOTIFY orders_events with each new event's id; the hub waits on this
 * connection's socket and reads the log from its last event when woken.
 * A notification sent while the connection was down is lost, so a new
 * connection counts as a change, and the head is also read every
 * HEAD_CHECK_MS, in case a notification went missing some other way. */
#include "eventlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "pg.h"
#include "store_backend.h"

#define HEAD_CHECK_MS 1000

enum { EL_BOUNDS, EL_READ, EL_COUNT };

static const char *const el_sql[EL_COUNT] = {
    [EL_BOUNDS] = "SELECT head, pruned_through FROM event_log_state",
    [EL_READ] = "SELECT id, type, order_id, '{\"type\":' || to_json(type)::text "
                "|| ',\"id\":' || to_json(order_id)::text || ',\"patch\":' || patch::text "
                "|| ',\"ts\":' || ts || '}' FROM events WHERE id > $1 AND id <= $2 "
                "ORDER BY id LIMIT $3",
};

struct pg_eventlog {
    struct eventlog base;
    struct pg_link link;
    bool fd_renewed;            /* a new connection, not yet told by wake_fd */
    struct buf data;            /* one event's data, made compact */
    bool read_failed;           /* since el_changed() last answered */
    long long seen_head;        /* the head as the last check read it */
    long long head_checked_ms;
};

static struct pg_eventlog *pg_of(struct eventlog *base)
{
    return (struct pg_eventlog *)base;
}

static struct eventlog *el_open(const struct config *cfg, char *err, size_t errlen)
{
    struct pg_eventlog *log = calloc(1, sizeof *log);
    if (!log) {
        snprintf(err, errlen, "out of memory opening the event log");
        return NULL;
    }
    log->base.ops = &pg_eventlog_ops;
    log->seen_head = -1;
    pg_link_init(&log->link, cfg);
    return &log->base;
}

static void el_close(struct eventlog *base)
{
    struct pg_eventlog *log = pg_of(base);
    pg_link_close(&log->link);
    buf_free(&log->data);
    free(log);
}

/* The connection, listening and with the statements prepared. */
static int ready(struct pg_eventlog *log)
{
    struct error err;
    if (pg_link_ready(&log->link, &err))
        return -1;
    if (!log->link.renewed)
        return 0;
    PGresult *res = PQexec(log->link.conn, "LISTEN orders_events");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    for (int i = 0; ok && i < EL_COUNT; i++) {
        char name[8];
        snprintf(name, sizeof name, "e%d", i);
        res = PQprepare(log->link.conn, name, el_sql[i], 0, NULL);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (!ok) {
        pg_error(&log->link, NULL, &err);
        pg_link_close(&log->link);
        return -1;
    }
    log->link.renewed = false;
    log->fd_renewed = true;
    log->read_failed = true;    /* what was missed meanwhile is read now */
    return 0;
}

static int el_wake_fd(struct eventlog *base, bool *renewed)
{
    struct pg_eventlog *log = pg_of(base);
    *renewed = log->fd_renewed;
    log->fd_renewed = false;
    return log->link.conn ? PQsocket(log->link.conn) : -1;
}

/* Runs a prepared read; on a connection the server closed meanwhile, once
 * more on a new one (pg.h). */
static PGresult *run(struct pg_eventlog *log, int which, int nparams, const char *const *params)
{
    char name[8];
    snprintf(name, sizeof name, "e%d", which);
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecPrepared(log->link.conn, name, nparams, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            return res;
        bool again = attempt == 0 && pg_link_lost(&log->link);
        struct error err;
        pg_error(&log->link, res, &err);
        PQclear(res);
        log->read_failed = true;
        if (!again || ready(log))
            return NULL;
    }
}

static int el_bounds(struct eventlog *base, long long *head, long long *pruned_through)
{
    struct pg_eventlog *log = pg_of(base);
    if (ready(log)) {
        log->read_failed = true;
        return -1;
    }
    PGresult *res = run(log, EL_BOUNDS, 0, NULL);
    if (!res)
        return -1;
    int rc = -1;
    if (PQntuples(res) == 1) {
        *head = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        *pruned_through = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        rc = 0;
    } else {
        log->read_failed = true;
    }
    PQclear(res);
    return rc;
}

/* Drains the notifications that have arrived; each carries the id of the
 * event it announces, which moves seen_head, so that the next check of
 * the head does not report them again. Returns how many, or -1 when the
 * connection is lost. */
static int take_notifications(struct pg_eventlog *log)
{
    if (!PQconsumeInput(log->link.conn)) {
        struct error err;
        pg_error(&log->link, NULL, &err);
        return -1;
    }
    int n = 0;
    PGnotify *note;
    while ((note = PQnotifies(log->link.conn))) {
        long long id = strtoll(note->extra, NULL, 10);
        if (id > log->seen_head)
            log->seen_head = id;
        PQfreemem(note);
        n++;
    }
    return n;
}

static int el_changed(struct eventlog *base, bool *changed)
{
    struct pg_eventlog *log = pg_of(base);
    if (ready(log))
        return -1;
    int notes = take_notifications(log);
    /* Lost while idle (a restart): a new connection reads what it missed. */
    if (notes < 0 && (ready(log) || (notes = take_notifications(log)) < 0))
        return -1;
    bool moved = false;
    long long now = clock_monotonic_ms();
    if (now - log->head_checked_ms >= HEAD_CHECK_MS) {
        long long head, pruned;
        if (el_bounds(base, &head, &pruned) != 0)
            return -1;
        moved = head != log->seen_head;
        log->seen_head = head;
        log->head_checked_ms = now;
    }
    *changed = notes > 0 || moved || log->read_failed;
    log->read_failed = false;
    return 0;
}

static int el_read(struct eventlog *base, long long after, long long upto, int limit,
                   void (*fn)(void *arg, const struct event *ev), void *arg)
{
    struct pg_eventlog *log = pg_of(base);
    if (ready(log)) {
        log->read_failed = true;
        return -1;
    }
    char from[24], to[24], count[16];
    snprintf(from, sizeof from, "%lld", after);
    snprintf(to, sizeof to, "%lld", upto);
    snprintf(count, sizeof count, "%d", limit);
    const char *params[] = {from, to, count};
    PGresult *res = run(log, EL_READ, 3, params);
    if (!res)
        return -1;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        buf_reset(&log->data);
        pg_append_compact_json(&log->data, PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3));
        if (buf_failed(&log->data)) {
            n = -1;
            break;
        }
        struct event ev = {
            .id = strtoll(PQgetvalue(res, i, 0), NULL, 10),
            .type = PQgetvalue(res, i, 1),
            .order_id = PQgetvalue(res, i, 2),
            .data = buf_str(&log->data),
        };
        fn(arg, &ev);
    }
    PQclear(res);
    if (n < 0)
        log->read_failed = true;
    return n;
}

const struct eventlog_ops pg_eventlog_ops = {
    .open = el_open,
    .close = el_close,
    .wake_fd = el_wake_fd,
    .changed = el_changed,
    .bounds = el_bounds,
    .read = el_read,
};
