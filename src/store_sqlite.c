/* The store in a SQLite file (store.h), with the schema of sql/ and the
 * connection settings of db.c. */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cursor.h"
#include "db.h"
#include "http.h"
#include "store_backend.h"

#define IDEMPOTENCY_TTL_MS (24LL * 3600 * 1000)
#define PRUNE_BATCH 2000
#define PRUNE_KEYS_BATCH 500

/* The statements, in one table so that opening and closing stay a loop. */
enum stmt_id {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_GET,
    ST_GET_STATE,
    ST_LIST,
    ST_LIST_STATUS,
    ST_INSERT,
    ST_GET_BY_SEQ,
    ST_UPDATE,
    ST_DELETE,
    ST_EVENTS,
    ST_HEAD,
    ST_IDEMPOTENCY_GET,
    ST_IDEMPOTENCY_PUT,
    ST_PRUNE_EVENTS,
    ST_PRUNE_IDEMPOTENCY,
    ST_PRUNED_THROUGH,
    ST_OLDEST_EVENT,
    ST_EXPIRED_KEY,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT one_write",
    [ST_RELEASE] = "RELEASE one_write",
    [ST_ROLLBACK_TO] = "ROLLBACK TO one_write",
    [ST_GET] = "SELECT doc, version FROM order_documents WHERE id = ?1",
    [ST_GET_STATE] = "SELECT version, status FROM orders WHERE id = ?1",
    [ST_LIST] = "SELECT seq, doc FROM order_documents WHERE seq < ?1 "
                "ORDER BY seq DESC LIMIT ?2",
    [ST_LIST_STATUS] = "SELECT seq, doc FROM order_documents WHERE status = ?3 AND seq < ?1 "
                       "ORDER BY seq DESC LIMIT ?2",
    [ST_INSERT] = "INSERT INTO orders (customer, items, currency, status, note) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_GET_BY_SEQ] = "SELECT doc, version, id FROM order_documents WHERE seq = ?1",
    /* Touches the row only when a value changes, and then moves version,
     * updated_at and total_cents itself (see the orders_updated trigger). */
    [ST_UPDATE] = "UPDATE orders SET customer = coalesce(?2, customer), "
                  "items = coalesce(?3, items), currency = coalesce(?4, currency), "
                  "status = coalesce(?5, status), note = coalesce(?6, note), "
                  "total_cents = coalesce(?7, total_cents), version = version + 1, "
                  "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                  "WHERE id = ?1 AND (customer IS NOT coalesce(?2, customer) "
                  "OR items IS NOT coalesce(?3, items) OR currency IS NOT coalesce(?4, currency) "
                  "OR status IS NOT coalesce(?5, status) OR note IS NOT coalesce(?6, note))",
    [ST_DELETE] = "DELETE FROM orders WHERE id = ?1",
    /* Rows written by hand are shown, not refused: a patch that is not
     * JSON as a string, BLOBs as text (orders_text, db.h). */
    [ST_EVENTS] = "SELECT json_object('eventId', id, 'type', type, 'id', order_id, "
                  "'patch', CASE WHEN json_valid(patch) THEN json(patch) ELSE patch END, "
                  "'ts', ts) FROM (SELECT id, orders_text(type) AS type, "
                  "orders_text(order_id) AS order_id, orders_text(patch) AS patch, "
                  "orders_text(ts) AS ts FROM events) WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_HEAD] = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
    [ST_IDEMPOTENCY_GET] = "SELECT body_sha256, response, order_id FROM idempotency_keys "
                           "WHERE key = ?1 AND created_ms > ?2",
    [ST_IDEMPOTENCY_PUT] = "INSERT OR REPLACE INTO idempotency_keys "
                           "(key, body_sha256, order_id, response, created_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PRUNE_EVENTS] = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ?1 "
                        "ORDER BY id LIMIT ?2)",
    [ST_PRUNE_IDEMPOTENCY] = "DELETE FROM idempotency_keys WHERE key IN (SELECT key "
                             "FROM idempotency_keys WHERE created_ms <= ?1 LIMIT ?2)",
    [ST_EXPIRED_KEY] = "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys "
                       "WHERE created_ms <= ?1 LIMIT 1)",
    [ST_OLDEST_EVENT] = "SELECT coalesce(min(id), 0) FROM events",
    [ST_PRUNED_THROUGH] = "UPDATE event_log_state SET pruned_through = max(pruned_through, ?1)",
};

struct sqlite_store {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    long busy_timeout_ms;       /* ORDERS_BUSY_TIMEOUT_MS: the pruner's deadline, reads' wait */
    long long write_deadline_ms;    /* of the write under way, for busy_wait() */
    long long write_began_ms;       /* when it began to wait for SQLite's lock */
};

static void sq_close(struct store *base);

static struct sqlite_store *sqlite_of(struct store *base)
{
    return (struct sqlite_store *)base;
}

static struct store *sq_open(const struct config *cfg, char *err, size_t errlen)
{
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory opening the database");
        return NULL;
    }
    s->db = db_open(cfg, 0, err, errlen);
    if (!s->db) {
        free(s);
        return NULL;
    }
    s->base.ops = &sqlite_store_ops;
    s->busy_timeout_ms = cfg->busy_timeout_ms;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->stmt[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare a statement: %s", sqlite3_errmsg(s->db));
            sq_close(&s->base);
            return NULL;
        }
    }
    return &s->base;
}

static void sq_close(struct store *base)
{
    struct sqlite_store *s = sqlite_of(base);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s);
}

static int fail(struct sqlite_store *s, sqlite3_stmt *st, int rc, struct error *err)
{
    if (st)
        sqlite3_reset(st);
    return db_error(s->db, rc, err);
}

/* The writers of one process (writes.c's group leader and the pruner, each
 * with its own connection) take turns here, before SQLite's lock: SQLite's
 * busy handler waits by sleeping (1, 2, 5, 10 … ms), which would turn every
 * collision between two threads into milliseconds. Every successful
 * store_write_begin() is paired with one store_write_commit() or
 * store_write_rollback(), which release the mutex.
 *
 * A write transaction has one deadline for the mutex and SQLite's busy
 * wait together. While the holder has waited for another process
 * (busy_wait) for BLOCKED_AFTER_MS or more, write_blocked is set, so that
 * writes.c can refuse new writes at once rather than queue every worker
 * behind the lock. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool write_blocked;
static _Thread_local bool holds_write_lock;     /* for the asserts */

/* The sleeps between tries while another process holds the lock, up to
 * the write's deadline: 1 ms at first, where sqlite3_busy_timeout's start
 * at 1, 2, 5, 10 ms. Two responders that write all the time take turns at
 * the lock, and SQLite keeps no queue: the one that sleeps longer loses
 * every race for it to the one whose next group is ready at once (bench:
 * PATCH p99 360-400 ms with two processes; 40-115 ms with these). Waits
 * shorter than BLOCKED_AFTER_MS are such turns: only a longer one (a lock
 * held by hand, a long transaction) counts as blocked, and makes writes.c
 * refuse writes beyond its cap. */
#define BLOCKED_AFTER_MS 500
static const int busy_delays_ms[] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 5, 10, 10, 25, 25, 50, 100};
#define BUSY_DELAYS (int)(sizeof busy_delays_ms / sizeof busy_delays_ms[0])

static int busy_wait(void *arg, int tries)
{
    struct sqlite_store *s = arg;
    long long left = s->write_deadline_ms - clock_monotonic_ms();
    if (left <= 0)
        return 0;
    if (clock_monotonic_ms() - s->write_began_ms >= BLOCKED_AFTER_MS)
        atomic_store(&write_blocked, true);
    long long ms = busy_delays_ms[tries < BUSY_DELAYS ? tries : BUSY_DELAYS - 1];
    if (ms > left)
        ms = left;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
    nanosleep(&ts, NULL);
    return 1;
}

static bool sq_write_blocked(struct store *base)
{
    (void)base;
    return atomic_load(&write_blocked);
}

static void write_unlock(struct sqlite_store *s)
{
    assert(holds_write_lock);
    holds_write_lock = false;
    atomic_store(&write_blocked, false);
    /* The store's reads wait as configured. */
    sqlite3_busy_timeout(s->db, (int)s->busy_timeout_ms);
    pthread_mutex_unlock(&write_lock);
}

static int sq_write_begin(struct store *base, long long deadline_ms, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct timespec until = {.tv_sec = deadline_ms / 1000,
                             .tv_nsec = deadline_ms % 1000 * 1000000};
    int lrc = pthread_mutex_clocklock(&write_lock, CLOCK_MONOTONIC, &until);
    if (lrc == ETIMEDOUT)
        return error_set(err, ERR_UNAVAILABLE, "the database is busy, try again");
    assert(lrc == 0);
    holds_write_lock = true;
    /* SQLite's busy wait gets what is left of the deadline. */
    s->write_deadline_ms = deadline_ms;
    s->write_began_ms = clock_monotonic_ms();
    sqlite3_busy_handler(s->db, busy_wait, s);
    int rc = db_step_done(s->stmt[ST_BEGIN_IMMEDIATE]);
    atomic_store(&write_blocked, false);
    if (rc == SQLITE_DONE)
        return 0;
    fail(s, NULL, rc, err);
    write_unlock(s);
    return -1;
}

static int sq_write_commit(struct store *base, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    assert(holds_write_lock);
    int rc = db_step_done(s->stmt[ST_COMMIT]);
    if (rc != SQLITE_DONE) {
        fail(s, NULL, rc, err);
        /* A failed COMMIT (busy) leaves the transaction open: end it. */
        if (!sqlite3_get_autocommit(s->db))
            db_step_done(s->stmt[ST_ROLLBACK]);
    }
    write_unlock(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void sq_write_rollback(struct store *base)
{
    struct sqlite_store *s = sqlite_of(base);
    assert(holds_write_lock);
    if (!sqlite3_get_autocommit(s->db))
        db_step_done(s->stmt[ST_ROLLBACK]);
    write_unlock(s);
}

static bool sq_write_open(struct store *base)
{
    struct sqlite_store *s = sqlite_of(base);
    assert(holds_write_lock);
    return !sqlite3_get_autocommit(s->db);
}

static int step_control(struct sqlite_store *s, enum stmt_id which, struct error *err)
{
    assert(holds_write_lock);
    int rc = db_step_done(s->stmt[which]);
    return rc == SQLITE_DONE ? 0 : fail(s, NULL, rc, err);
}

static int sq_savepoint(struct store *base, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return step_control(s, ST_SAVEPOINT, err);
}

static int sq_savepoint_release(struct store *base, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return step_control(s, ST_RELEASE, err);
}

static int sq_savepoint_undo(struct store *base, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    if (step_control(s, ST_ROLLBACK_TO, err))
        return -1;
    return step_control(s, ST_RELEASE, err);
}

static void bind_text_or_null(sqlite3_stmt *st, int idx, const char *text)
{
    if (text)
        sqlite3_bind_text(st, idx, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

/* Reads (doc, version) from a stepped row into doc and out. */
static void take_doc(sqlite3_stmt *st, struct order_doc *doc, struct buf *out)
{
    buf_append(out, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    doc->version = sqlite3_column_int64(st, 1);
}

/* Steps statement `which`, keyed by an order id, to its row. Returns 0 with
 * the row ready (the caller resets the statement), or -1 with err set:
 * not_found when there is no such order. */
static int step_order_row(struct sqlite_store *s, enum stmt_id which, const char *id, struct error *err)
{
    sqlite3_stmt *st = s->stmt[which];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return error_set(err, ERR_NOT_FOUND, "no order %s", id);
    }
    return fail(s, st, rc, err);
}

static int read_doc_by_id(struct sqlite_store *s, const char *id, struct order_doc *doc,
                          struct buf *out, struct error *err)
{
    if (step_order_row(s, ST_GET, id, err))
        return -1;
    sqlite3_stmt *st = s->stmt[ST_GET];
    snprintf(doc->id, sizeof doc->id, "%s", id);
    take_doc(st, doc, out);
    sqlite3_reset(st);
    return buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 0;
}

static int sq_get(struct store *base, const char *id, struct order_doc *doc, struct buf *out,
              struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    memset(doc, 0, sizeof *doc);
    return read_doc_by_id(s, id, doc, out, err);
}

static int sq_list(struct store *base, const char *status, long long after_seq, int limit,
               struct buf *out, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = s->stmt[status ? ST_LIST_STATUS : ST_LIST];
    sqlite3_bind_int64(st, 1, after_seq > 0 ? after_seq : (long long)INT64_MAX);
    sqlite3_bind_int(st, 2, limit + 1);     /* one more tells whether a next page exists */
    if (status)
        sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);

    buf_puts(out, "{\"data\":[");
    long long last_seq = 0;
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit)
            break;
        if (n++)
            buf_puts(out, ",");
        last_seq = sqlite3_column_int64(st, 0);
        buf_append(out, sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail(s, st, rc, err);
    bool more = rc == SQLITE_ROW;
    sqlite3_reset(st);
    if (more) {
        char cursor[CURSOR_MAX];
        cursor_encode(last_seq, cursor);
        buf_printf(out, "],\"nextCursor\":\"%s\"}", cursor);
    } else {
        buf_puts(out, "],\"nextCursor\":null}");
    }
    return buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 0;
}

/* Looks the key up inside the write transaction. Returns 1 when the stored
 * answer was copied into out, 0 when the key is new, -1 on error. */
static int idempotent_replay(struct sqlite_store *s, const char *key, const char *body_sha256,
                             struct order_doc *doc, struct buf *out, struct error *err)
{
    sqlite3_stmt *st = s->stmt[ST_IDEMPOTENCY_GET];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clock_wall_ms() - IDEMPOTENCY_TTL_MS);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    if (rc != SQLITE_ROW)
        return fail(s, st, rc, err);
    if (strcmp((const char *)sqlite3_column_text(st, 0), body_sha256) != 0) {
        sqlite3_reset(st);
        return error_set(err, ERR_IDEMPOTENCY_KEY_REUSED,
                         "Idempotency-Key was already used with a different body");
    }
    buf_append(out, sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1));
    snprintf(doc->id, sizeof doc->id, "%s", (const char *)sqlite3_column_text(st, 2));
    doc->version = 1;
    doc->replayed = true;
    sqlite3_reset(st);
    return buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 1;
}

static int remember_key(struct sqlite_store *s, const char *key, const char *body_sha256,
                        const struct order_doc *doc, const struct buf *out, struct error *err)
{
    sqlite3_stmt *st = s->stmt[ST_IDEMPOTENCY_PUT];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, body_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, doc->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, buf_str(out), (int)out->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, clock_wall_ms());
    int rc = db_step_done(st);
    return rc == SQLITE_DONE ? 0 : fail(s, NULL, rc, err);
}

static int sq_create(struct store *base, const struct order_input *in, const char *idempotency_key,
                 const char *body_sha256, struct order_doc *doc, struct buf *out,
                 struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    memset(doc, 0, sizeof *doc);
    assert(holds_write_lock);
    if (idempotency_key) {
        int found = idempotent_replay(s, idempotency_key, body_sha256, doc, out, err);
        if (found)
            return found < 0 ? -1 : 0;     /* a replay writes nothing */
    }

    sqlite3_stmt *st = s->stmt[ST_INSERT];
    sqlite3_bind_text(st, 1, in->customer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, in->items_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, in->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, order_status_name(in->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, in->note, -1, SQLITE_STATIC);
    int rc = db_step_done(st);
    if (rc != SQLITE_DONE)
        return fail(s, NULL, rc, err);
    long long seq = sqlite3_last_insert_rowid(s->db);

    st = s->stmt[ST_GET_BY_SEQ];
    sqlite3_bind_int64(st, 1, seq);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return fail(s, st, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, err);
    take_doc(st, doc, out);
    snprintf(doc->id, sizeof doc->id, "%s", (const char *)sqlite3_column_text(st, 2));
    sqlite3_reset(st);
    if (buf_failed(out))
        return error_set(err, ERR_INTERNAL, "out of memory");
    return idempotency_key ? remember_key(s, idempotency_key, body_sha256, doc, out, err) : 0;
}

/* Reads the order's version and status inside the write transaction and
 * checks If-Match against it. */
static int check_state(struct sqlite_store *s, const char *id, const char *if_match,
                       long long *version, enum order_status *status, struct error *err)
{
    if (step_order_row(s, ST_GET_STATE, id, err))
        return -1;
    sqlite3_stmt *st = s->stmt[ST_GET_STATE];
    *version = sqlite3_column_int64(st, 0);
    /* A status written by hand with sqlite3 is checked by the schema. */
    if (order_status_parse((const char *)sqlite3_column_text(st, 1), status) != 0)
        *status = STATUS_CANCELLED;
    sqlite3_reset(st);
    if (if_match && !http_etag_matches(if_match, *version, false))
        return error_set(err, ERR_PRECONDITION_FAILED,
                         "If-Match does not match the order's version %lld", *version);
    return 0;
}

static int sq_patch(struct store *base, const char *id, const struct order_input *in,
                const char *if_match, struct order_doc *doc, struct buf *out, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    memset(doc, 0, sizeof *doc);
    assert(holds_write_lock);
    long long version;
    enum order_status status;
    if (check_state(s, id, if_match, &version, &status, err))
        return -1;
    if ((in->fields & FIELD_STATUS) && in->status != status
        && !order_transition_allowed(status, in->status))
        return error_set(err, ERR_INVALID_TRANSITION, "status cannot change from %s to %s",
                         order_status_name(status), order_status_name(in->status));

    /* Only a real change touches the row, and the schema's trigger writes
     * its event: a patch that changes nothing leaves no trace. */
    sqlite3_stmt *st = s->stmt[ST_UPDATE];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bind_text_or_null(st, 2, in->fields & FIELD_CUSTOMER ? in->customer : NULL);
    bind_text_or_null(st, 3, in->fields & FIELD_ITEMS ? in->items_json : NULL);
    bind_text_or_null(st, 4, in->fields & FIELD_CURRENCY ? in->currency : NULL);
    bind_text_or_null(st, 5, in->fields & FIELD_STATUS ? order_status_name(in->status) : NULL);
    bind_text_or_null(st, 6, in->fields & FIELD_NOTE ? in->note : NULL);
    if (in->fields & FIELD_ITEMS)
        sqlite3_bind_int64(st, 7, in->total_cents);
    else
        sqlite3_bind_null(st, 7);
    int rc = db_step_done(st);
    if (rc != SQLITE_DONE)
        return fail(s, NULL, rc, err);
    return read_doc_by_id(s, id, doc, out, err);
}

static int sq_delete(struct store *base, const char *id, const char *if_match, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    assert(holds_write_lock);
    long long version;
    enum order_status status;
    if (check_state(s, id, if_match, &version, &status, err))
        return -1;
    sqlite3_stmt *st = s->stmt[ST_DELETE];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = db_step_done(st);
    return rc == SQLITE_DONE ? 0 : fail(s, NULL, rc, err);
}

/* Runs a statement that gives one integer. */
static int one_int(struct sqlite_store *s, int which, long long *out, struct error *err)
{
    sqlite3_stmt *st = s->stmt[which];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return fail(s, st, rc, err);
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

static int sq_head(struct store *base, long long *head, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return one_int(s, ST_HEAD, head, err);
}

static int sq_oldest(struct store *base, long long *oldest, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return one_int(s, ST_OLDEST_EVENT, oldest, err);
}

static int sq_events(struct store *base, long long after, int limit, struct buf *out, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = s->stmt[ST_EVENTS];
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int(st, 2, limit);
    buf_puts(out, "{\"data\":[");
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++)
            buf_puts(out, ",");
        buf_append(out, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    }
    if (rc != SQLITE_DONE)
        return fail(s, st, rc, err);
    sqlite3_reset(st);
    /* Read after the rows, so the head is never behind the last one shown. */
    long long head;
    if (sq_head(&s->base, &head, err))
        return -1;
    buf_printf(out, "],\"lastEventId\":%lld}", head);
    return buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 0;
}

static long long sq_prune(struct store *base, long long retain, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    long long head, oldest, deleted = 0;
    if (sq_head(&s->base, &head, err) || sq_oldest(&s->base, &oldest, err))
        return -1;
    /* Most calls find nothing to do: they must not take the write lock. */
    while (oldest > 0 && oldest <= head - retain) {
        if (sq_write_begin(&s->base, clock_monotonic_ms() + s->busy_timeout_ms, err))
            return -1;
        sqlite3_stmt *st = s->stmt[ST_PRUNE_EVENTS];
        sqlite3_bind_int64(st, 1, head - retain);
        sqlite3_bind_int(st, 2, PRUNE_BATCH);
        int rc = db_step_done(st);
        if (rc != SQLITE_DONE) {
            fail(s, NULL, rc, err);
            sq_write_rollback(&s->base);
            return -1;
        }
        int n = sqlite3_changes(s->db);
        if (n > 0) {
            st = s->stmt[ST_PRUNED_THROUGH];
            sqlite3_bind_int64(st, 1, head - retain);
            rc = db_step_done(st);
            if (rc != SQLITE_DONE) {
                fail(s, NULL, rc, err);
                sq_write_rollback(&s->base);
                return -1;
            }
        }
        if (sq_write_commit(&s->base, err))
            return -1;
        deleted += n;
        if (n < PRUNE_BATCH)
            break;
    }
    /* Expired idempotency keys go the same way: only when there are some,
     * under the write lock like any write, in batches short enough not to
     * hold the API's writers up. */
    long long expired_before = clock_wall_ms() - IDEMPOTENCY_TTL_MS;
    sqlite3_stmt *st = s->stmt[ST_EXPIRED_KEY];
    sqlite3_bind_int64(st, 1, expired_before);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return fail(s, st, rc, err);
    bool expired = sqlite3_column_int(st, 0) > 0;
    sqlite3_reset(st);
    while (expired) {
        if (sq_write_begin(&s->base, clock_monotonic_ms() + s->busy_timeout_ms, err))
            return -1;
        st = s->stmt[ST_PRUNE_IDEMPOTENCY];
        sqlite3_bind_int64(st, 1, expired_before);
        sqlite3_bind_int(st, 2, PRUNE_KEYS_BATCH);
        rc = db_step_done(st);
        if (rc != SQLITE_DONE) {
            fail(s, NULL, rc, err);
            sq_write_rollback(&s->base);
            return -1;
        }
        expired = sqlite3_changes(s->db) == PRUNE_KEYS_BATCH;
        if (sq_write_commit(&s->base, err))
            return -1;
    }
    return deleted;
}

static int sq_checkpoint(struct store *base, struct error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    /* Under the process's write lock: no write of this process can append
     * to the WAL while the checkpoint copies it, so it copies all of it,
     * and the next write transaction starts the WAL over from its
     * beginning (SQLite restarts a WAL that is fully copied when a writer
     * begins). Otherwise, under a steady stream of writes, the checkpoint
     * never catches up and the WAL grows without end: every new frame then
     * extends the file, and each lookup in the WAL index gets slower. */
    long long deadline_ms = clock_monotonic_ms() + s->busy_timeout_ms;
    struct timespec until = {.tv_sec = deadline_ms / 1000,
                             .tv_nsec = deadline_ms % 1000 * 1000000};
    int lrc = pthread_mutex_clocklock(&write_lock, CLOCK_MONOTONIC, &until);
    if (lrc == ETIMEDOUT)
        return 0;       /* the writers are held up: the next one will do */
    assert(lrc == 0);
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    /* BUSY: another connection (another responder's pruner) is running a
     * checkpoint right now, which does this one's work. */
    int result = rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : db_error(s->db, rc, err);
    pthread_mutex_unlock(&write_lock);
    return result;
}

/* Creates the file when needed and applies the migrations it lacks. A
 * SQLite file is always there to answer: at_start changes nothing. */
static int sq_migrate(const struct config *cfg, bool at_start, char *err, size_t errlen)
{
    (void)at_start;
    sqlite3 *db = db_open(cfg, 1, err, errlen);
    if (!db)
        return -1;
    int rc = db_migrate(db, err, errlen);
    if (sqlite3_close(db) != SQLITE_OK && rc == 0) {
        snprintf(err, errlen, "cannot close the database after migrating it");
        rc = -1;
    }
    return rc;
}

const struct store_ops sqlite_store_ops = {
    .name = "sqlite",
    .migrate = sq_migrate,
    .open = sq_open,
    .close = sq_close,
    .get = sq_get,
    .list = sq_list,
    .write_begin = sq_write_begin,
    .write_commit = sq_write_commit,
    .write_rollback = sq_write_rollback,
    .write_blocked = sq_write_blocked,
    .write_open = sq_write_open,
    .savepoint = sq_savepoint,
    .savepoint_release = sq_savepoint_release,
    .savepoint_undo = sq_savepoint_undo,
    .create = sq_create,
    .patch = sq_patch,
    .delete = sq_delete,
    .oldest = sq_oldest,
    .events = sq_events,
    .head = sq_head,
    .prune = sq_prune,
    .checkpoint = sq_checkpoint,
};
