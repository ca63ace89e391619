/* The store in PostgreSQL (store.h), with the schema of sql/pg/. Every
 * host's writers take turns at one row, event_log_state, locked first
 * thing in each write transaction: the schema's triggers number events
 * from it, so ids become visible in commit order, and since every write
 * transaction takes that lock before any order's row, two of them can
 * never deadlock. Reads take no lock at all. */
#include "store.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cursor.h"
#include "http.h"
#include "pg.h"
#include "store_backend.h"

#define IDEMPOTENCY_TTL_MS (24LL * 3600 * 1000)
#define PRUNE_BATCH 2000
#define PRUNE_KEYS_BATCH 500
/* Like store_sqlite.c's: a wait for the turn longer than any turn. */
#define BLOCKED_AFTER_MS 500

enum stmt_id {
    ST_GET,
    ST_GET_STATE,
    ST_LIST,
    ST_LIST_STATUS,
    ST_INSERT,
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
    [ST_GET] = "SELECT doc, version FROM order_documents WHERE id = $1",
    /* The row stays locked to the end of the write transaction: If-Match
     * and the transition are checked against what the write will change. */
    [ST_GET_STATE] = "SELECT version, status FROM orders WHERE id = $1 FOR UPDATE",
    [ST_LIST] = "SELECT seq, doc FROM order_documents WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
    [ST_LIST_STATUS] = "SELECT seq, doc FROM order_documents WHERE status = $3 AND seq < $1 "
                       "ORDER BY seq DESC LIMIT $2",
    /* Each write is a round trip or two less than with a read after it:
     * the writer's turn lasts as long as its round trips. The row as
     * returned has what the BEFORE trigger set (id, total, version). */
    [ST_INSERT] = "INSERT INTO orders (customer, items, currency, status, note) "
                  "VALUES ($1, $2::text::json, $3, $4, $5) "
                  "RETURNING orders_document(orders), version, id",
    /* As store_sqlite.c's: only a real change touches the row, and moves
     * version, updated_at and total_cents itself. The order's document is
     * the changed row's, or the unchanged one's. */
    [ST_UPDATE] = "WITH changed AS (UPDATE orders SET customer = coalesce($2, customer), "
                  "items = coalesce($3::text::json, items), currency = coalesce($4, currency), "
                  "status = coalesce($5, status), note = coalesce($6, note), "
                  "total_cents = coalesce($7::bigint, total_cents), version = version + 1, "
                  "updated_at = orders_now_text() "
                  "WHERE id = $1 AND (customer IS DISTINCT FROM coalesce($2, customer) "
                  "OR items::text IS DISTINCT FROM coalesce($3::text, items::text) "
                  "OR currency IS DISTINCT FROM coalesce($4, currency) "
                  "OR status IS DISTINCT FROM coalesce($5, status) "
                  "OR note IS DISTINCT FROM coalesce($6, note)) "
                  "RETURNING orders_document(orders) AS doc, version) "
                  "SELECT doc, version FROM changed UNION ALL "
                  "SELECT doc, version FROM order_documents "
                  "WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)",
    [ST_DELETE] = "DELETE FROM orders WHERE id = $1",
    [ST_EVENTS] = "SELECT '{\"eventId\":' || id || ',\"type\":' || to_json(type)::text "
                  "|| ',\"id\":' || to_json(order_id)::text || ',\"patch\":' || patch::text "
                  "|| ',\"ts\":' || ts || '}' FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    [ST_HEAD] = "SELECT head FROM event_log_state",
    [ST_IDEMPOTENCY_GET] = "SELECT body_sha256, response, order_id FROM idempotency_keys "
                           "WHERE key = $1 AND created_ms > $2",
    [ST_IDEMPOTENCY_PUT] = "INSERT INTO idempotency_keys "
                           "(key, body_sha256, order_id, response, created_ms) "
                           "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET "
                           "body_sha256 = excluded.body_sha256, order_id = excluded.order_id, "
                           "response = excluded.response, created_ms = excluded.created_ms",
    [ST_PRUNE_EVENTS] = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= $1 "
                        "ORDER BY id LIMIT $2)",
    [ST_PRUNE_IDEMPOTENCY] = "DELETE FROM idempotency_keys WHERE key IN (SELECT key "
                             "FROM idempotency_keys WHERE created_ms <= $1 LIMIT $2)",
    [ST_PRUNED_THROUGH] = "UPDATE event_log_state SET pruned_through = greatest(pruned_through, $1)",
    [ST_OLDEST_EVENT] = "SELECT coalesce(min(id), 0) FROM events",
    [ST_EXPIRED_KEY] = "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys "
                       "WHERE created_ms <= $1 LIMIT 1) AS expired",
};

struct pg_store {
    struct store base;
    struct pg_link link;
    long busy_timeout_ms;
    bool in_savepoint;
    bool release_due;           /* the last savepoint is kept: RELEASE it next */
};

/* Since when this process's writer has waited for the turn, 0 when it
 * does not (store_write_blocked). */
static atomic_llong turn_wait_since_ms;

static struct pg_store *pg_of(struct store *base)
{
    return (struct pg_store *)base;
}

static int migrate(const struct config *cfg, bool at_start, char *err, size_t errlen)
{
    return pg_migrate(cfg, at_start, err, errlen);
}

static struct store *open_store(const struct config *cfg, char *err, size_t errlen)
{
    struct pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory opening the database");
        return NULL;
    }
    s->base.ops = &pg_store_ops;
    s->busy_timeout_ms = cfg->busy_timeout_ms;
    pg_link_init(&s->link, cfg);
    return &s->base;
}

static void close_store(struct store *base)
{
    struct pg_store *s = pg_of(base);
    pg_link_close(&s->link);
    free(s);
}

static void name_of(enum stmt_id which, char name[8])
{
    snprintf(name, 8, "s%d", (int)which);
}

/* The connection, with every statement prepared on it. */
static int ready(struct pg_store *s, struct error *err)
{
    if (pg_link_ready(&s->link, err))
        return -1;
    if (!s->link.renewed)
        return 0;
    for (int i = 0; i < ST_COUNT; i++) {
        char name[8];
        name_of((enum stmt_id)i, name);
        PGresult *res = PQprepare(s->link.conn, name, stmt_sql[i], 0, NULL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            pg_error(&s->link, res, err);
        PQclear(res);
        if (!ok) {
            pg_link_close(&s->link);
            return -1;
        }
    }
    s->link.renewed = false;
    return 0;
}

/* Runs a prepared statement. Returns its result, which the caller clears,
 * or NULL with err set. */
static PGresult *run(struct pg_store *s, enum stmt_id which, int nparams,
                     const char *const *params, struct error *err)
{
    char name[8];
    name_of(which, name);
    bool alone = s->link.conn && PQtransactionStatus(s->link.conn) == PQTRANS_IDLE;
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecPrepared(s->link.conn, name, nparams, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return res;
        bool again = alone && attempt == 0 && pg_link_lost(&s->link);
        pg_error(&s->link, res, err);
        PQclear(res);
        if (!again || ready(s, err))
            return NULL;
    }
}

/* Runs statements that return nothing the caller needs. */
static int run_sql(struct pg_store *s, const char *sql, struct error *err)
{
    PGresult *res = PQexec(s->link.conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : pg_error(&s->link, res, err);
    PQclear(res);
    return rc;
}

static int out_of_memory(struct buf *out, struct error *err)
{
    return buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 0;
}

static const char *text_of(const PGresult *res, int row, int col)
{
    return PQgetvalue(res, row, col);
}

static long long int_of(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Reads (doc, version) from the first row of res into doc and out. */
static void take_doc(const PGresult *res, struct order_doc *doc, struct buf *out)
{
    buf_append(out, text_of(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    doc->version = int_of(res, 0, 1);
}

static int read_doc_by_id(struct pg_store *s, const char *id, struct order_doc *doc,
                          struct buf *out, struct error *err)
{
    const char *params[] = {id};
    PGresult *res = run(s, ST_GET, 1, params, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return error_set(err, ERR_NOT_FOUND, "no order %s", id);
    }
    snprintf(doc->id, sizeof doc->id, "%s", id);
    take_doc(res, doc, out);
    PQclear(res);
    return out_of_memory(out, err);
}

static int get(struct store *base, const char *id, struct order_doc *doc, struct buf *out,
               struct error *err)
{
    struct pg_store *s = pg_of(base);
    memset(doc, 0, sizeof *doc);
    if (ready(s, err))
        return -1;
    return read_doc_by_id(s, id, doc, out, err);
}

static int list(struct store *base, const char *status, long long after_seq, int limit,
                struct buf *out, struct error *err)
{
    struct pg_store *s = pg_of(base);
    if (ready(s, err))
        return -1;
    char seq[24], count[16];
    snprintf(seq, sizeof seq, "%lld", after_seq > 0 ? after_seq : (long long)INT64_MAX);
    snprintf(count, sizeof count, "%d", limit + 1);  /* one more tells whether a next page exists */
    const char *params[] = {seq, count, status};
    PGresult *res = run(s, status ? ST_LIST_STATUS : ST_LIST, status ? 3 : 2, params, err);
    if (!res)
        return -1;
    int rows = PQntuples(res), n = rows > limit ? limit : rows;
    buf_puts(out, "{\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            buf_puts(out, ",");
        buf_append(out, text_of(res, i, 1), (size_t)PQgetlength(res, i, 1));
    }
    if (rows > limit) {
        char cursor[CURSOR_MAX];
        cursor_encode(int_of(res, n - 1, 0), cursor);
        buf_printf(out, "],\"nextCursor\":\"%s\"}", cursor);
    } else {
        buf_puts(out, "],\"nextCursor\":null}");
    }
    PQclear(res);
    return out_of_memory(out, err);
}

/* Opens the transaction and takes the writers' turn: the lock on
 * event_log_state's row, waited for until the deadline at most. The three
 * statements go in one round trip. The lock is taken by an UPDATE that
 * changes nothing rather than by SELECT ... FOR UPDATE: the events of the
 * writes, each in a savepoint (a subtransaction), update the row after it,
 * and a row locked by one transaction id and updated by another needs a
 * MultiXact, which PostgreSQL then has to look up at every update. */
static int write_begin(struct store *base, long long deadline_ms, struct error *err)
{
    struct pg_store *s = pg_of(base);
    if (ready(s, err))
        return -1;
    long long now = clock_monotonic_ms(), left = deadline_ms - now;
    if (left <= 0)
        return error_set(err, ERR_UNAVAILABLE, "the database is busy, try again");
    char sql[160];
    snprintf(sql, sizeof sql, "BEGIN; SET LOCAL lock_timeout = %lld; "
             "UPDATE event_log_state SET head = head", left);
    atomic_store(&turn_wait_since_ms, now);
    PGresult *res = PQexec(s->link.conn, sql);
    /* The connection may have been closed by the server while idle. */
    if (PQresultStatus(res) != PGRES_COMMAND_OK && pg_link_lost(&s->link)) {
        PQclear(res);
        pg_link_close(&s->link);
        res = ready(s, err) ? NULL : PQexec(s->link.conn, sql);
    }
    atomic_store(&turn_wait_since_ms, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok && res)
        pg_error(&s->link, res, err);
    PQclear(res);
    if (ok)
        return 0;
    if (s->link.conn && PQtransactionStatus(s->link.conn) != PQTRANS_IDLE)
        PQclear(PQexec(s->link.conn, "ROLLBACK"));
    return -1;
}

static bool in_transaction(struct pg_store *s)
{
    return s->link.conn && PQtransactionStatus(s->link.conn) == PQTRANS_INTRANS;
}

static int write_commit(struct store *base, struct error *err)
{
    struct pg_store *s = pg_of(base);
    assert(in_transaction(s) && !s->in_savepoint);
    s->release_due = false;
    PGresult *res = PQexec(s->link.conn, "COMMIT");
    /* A COMMIT of a failed transaction answers ROLLBACK. */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    int rc = ok ? 0 : pg_error(&s->link, res, err);
    PQclear(res);
    return rc;
}

static void write_rollback(struct store *base)
{
    struct pg_store *s = pg_of(base);
    s->in_savepoint = false;
    s->release_due = false;
    if (s->link.conn && PQtransactionStatus(s->link.conn) != PQTRANS_IDLE)
        PQclear(PQexec(s->link.conn, "ROLLBACK"));
}

static bool write_blocked(struct store *base)
{
    (void)base;
    long long since = atomic_load(&turn_wait_since_ms);
    return since && clock_monotonic_ms() - since >= BLOCKED_AFTER_MS;
}

/* A statement that failed inside a savepoint leaves the transaction in
 * error until the savepoint is undone: it is still open. */
static bool write_open(struct store *base)
{
    struct pg_store *s = pg_of(base);
    if (!s->link.conn || PQstatus(s->link.conn) != CONNECTION_OK)
        return false;
    PGTransactionStatusType st = PQtransactionStatus(s->link.conn);
    return st == PQTRANS_INTRANS || (st == PQTRANS_INERROR && s->in_savepoint);
}

/* A kept write's RELEASE goes with the next write's SAVEPOINT, or is left
 * to the COMMIT, which releases every savepoint: one round trip less per
 * write in a group. */
static int savepoint(struct store *base, struct error *err)
{
    struct pg_store *s = pg_of(base);
    const char *sql = s->release_due ? "RELEASE one_write; SAVEPOINT one_write"
                                     : "SAVEPOINT one_write";
    s->release_due = false;
    if (run_sql(s, sql, err))
        return -1;
    s->in_savepoint = true;
    return 0;
}

static int savepoint_release(struct store *base, struct error *err)
{
    struct pg_store *s = pg_of(base);
    (void)err;
    assert(s->in_savepoint);
    s->in_savepoint = false;
    s->release_due = true;
    return 0;
}

static int savepoint_undo(struct store *base, struct error *err)
{
    struct pg_store *s = pg_of(base);
    s->in_savepoint = false;
    return run_sql(s, "ROLLBACK TO one_write; RELEASE one_write", err);
}

/* As store_sqlite.c's: 1 when the stored answer was copied into out, 0
 * when the key is new, -1 on error. */
static int idempotent_replay(struct pg_store *s, const char *key, const char *body_sha256,
                             struct order_doc *doc, struct buf *out, struct error *err)
{
    char since[24];
    snprintf(since, sizeof since, "%lld", clock_wall_ms() - IDEMPOTENCY_TTL_MS);
    const char *params[] = {key, since};
    PGresult *res = run(s, ST_IDEMPOTENCY_GET, 2, params, err);
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 0) {
        rc = 0;
    } else if (strcmp(text_of(res, 0, 0), body_sha256) != 0) {
        rc = error_set(err, ERR_IDEMPOTENCY_KEY_REUSED,
                       "Idempotency-Key was already used with a different body");
    } else {
        buf_append(out, text_of(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
        snprintf(doc->id, sizeof doc->id, "%s", text_of(res, 0, 2));
        doc->version = 1;
        doc->replayed = true;
        rc = buf_failed(out) ? error_set(err, ERR_INTERNAL, "out of memory") : 1;
    }
    PQclear(res);
    return rc;
}

static int remember_key(struct pg_store *s, const char *key, const char *body_sha256,
                        const struct order_doc *doc, const struct buf *out, struct error *err)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", clock_wall_ms());
    const char *params[] = {key, body_sha256, doc->id, buf_str(out), now};
    PGresult *res = run(s, ST_IDEMPOTENCY_PUT, 5, params, err);
    PQclear(res);
    return res ? 0 : -1;
}

static int create(struct store *base, const struct order_input *in, const char *idempotency_key,
                  const char *body_sha256, struct order_doc *doc, struct buf *out,
                  struct error *err)
{
    struct pg_store *s = pg_of(base);
    memset(doc, 0, sizeof *doc);
    assert(in_transaction(s));
    if (idempotency_key) {
        int found = idempotent_replay(s, idempotency_key, body_sha256, doc, out, err);
        if (found)
            return found < 0 ? -1 : 0;     /* a replay writes nothing */
    }
    const char *params[] = {in->customer, in->items_json, in->currency,
                            order_status_name(in->status), in->note};
    PGresult *res = run(s, ST_INSERT, 5, params, err);
    if (!res)
        return -1;
    take_doc(res, doc, out);
    snprintf(doc->id, sizeof doc->id, "%s", text_of(res, 0, 2));
    PQclear(res);
    if (buf_failed(out))
        return error_set(err, ERR_INTERNAL, "out of memory");
    return idempotency_key ? remember_key(s, idempotency_key, body_sha256, doc, out, err) : 0;
}

/* Locks the order's row, reads its version and status, and checks
 * If-Match against them. */
static int check_state(struct pg_store *s, const char *id, const char *if_match,
                       enum order_status *status, struct error *err)
{
    const char *params[] = {id};
    PGresult *res = run(s, ST_GET_STATE, 1, params, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return error_set(err, ERR_NOT_FOUND, "no order %s", id);
    }
    long long version = int_of(res, 0, 0);
    /* A status written by hand is checked by the schema. */
    if (order_status_parse(text_of(res, 0, 1), status) != 0)
        *status = STATUS_CANCELLED;
    PQclear(res);
    if (if_match && !http_etag_matches(if_match, version, false))
        return error_set(err, ERR_PRECONDITION_FAILED,
                         "If-Match does not match the order's version %lld", version);
    return 0;
}

static int patch(struct store *base, const char *id, const struct order_input *in,
                 const char *if_match, struct order_doc *doc, struct buf *out, struct error *err)
{
    struct pg_store *s = pg_of(base);
    memset(doc, 0, sizeof *doc);
    assert(in_transaction(s));
    enum order_status status;
    if (check_state(s, id, if_match, &status, err))
        return -1;
    if ((in->fields & FIELD_STATUS) && in->status != status
        && !order_transition_allowed(status, in->status))
        return error_set(err, ERR_INVALID_TRANSITION, "status cannot change from %s to %s",
                         order_status_name(status), order_status_name(in->status));
    char total[24];
    snprintf(total, sizeof total, "%lld", in->total_cents);
    const char *params[] = {
        id,
        in->fields & FIELD_CUSTOMER ? in->customer : NULL,
        in->fields & FIELD_ITEMS ? in->items_json : NULL,
        in->fields & FIELD_CURRENCY ? in->currency : NULL,
        in->fields & FIELD_STATUS ? order_status_name(in->status) : NULL,
        in->fields & FIELD_NOTE ? in->note : NULL,
        in->fields & FIELD_ITEMS ? total : NULL,
    };
    PGresult *res = run(s, ST_UPDATE, 7, params, err);
    if (!res)
        return -1;
    if (PQntuples(res) != 1) {      /* the row is locked: it cannot have gone */
        PQclear(res);
        return error_set(err, ERR_INTERNAL, "the order cannot be read back");
    }
    snprintf(doc->id, sizeof doc->id, "%s", id);
    take_doc(res, doc, out);
    PQclear(res);
    return out_of_memory(out, err);
}

static int delete(struct store *base, const char *id, const char *if_match, struct error *err)
{
    struct pg_store *s = pg_of(base);
    assert(in_transaction(s));
    enum order_status status;
    if (check_state(s, id, if_match, &status, err))
        return -1;
    const char *params[] = {id};
    PGresult *res = run(s, ST_DELETE, 1, params, err);
    PQclear(res);
    return res ? 0 : -1;
}

/* Runs a statement that gives one integer. */
static int one_int(struct pg_store *s, enum stmt_id which, int nparams, const char *const *params,
                   long long *out, struct error *err)
{
    if (ready(s, err))
        return -1;
    PGresult *res = run(s, which, nparams, params, err);
    if (!res)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return error_set(err, ERR_INTERNAL, "the event log's state row is missing");
    }
    *out = int_of(res, 0, 0);
    PQclear(res);
    return 0;
}

static int head(struct store *base, long long *head, struct error *err)
{
    return one_int(pg_of(base), ST_HEAD, 0, NULL, head, err);
}

static int oldest(struct store *base, long long *oldest, struct error *err)
{
    return one_int(pg_of(base), ST_OLDEST_EVENT, 0, NULL, oldest, err);
}

static int events(struct store *base, long long after, int limit, struct buf *out,
                  struct error *err)
{
    struct pg_store *s = pg_of(base);
    if (ready(s, err))
        return -1;
    char from[24], count[16];
    snprintf(from, sizeof from, "%lld", after);
    snprintf(count, sizeof count, "%d", limit);
    const char *params[] = {from, count};
    PGresult *res = run(s, ST_EVENTS, 2, params, err);
    if (!res)
        return -1;
    buf_puts(out, "{\"data\":[");
    for (int i = 0; i < PQntuples(res); i++) {
        if (i)
            buf_puts(out, ",");
        pg_append_compact_json(out, text_of(res, i, 0), (size_t)PQgetlength(res, i, 0));
    }
    PQclear(res);
    /* Read after the rows, so the head is never behind the last one shown. */
    long long newest;
    if (one_int(s, ST_HEAD, 0, NULL, &newest, err))
        return -1;
    buf_printf(out, "],\"lastEventId\":%lld}", newest);
    return out_of_memory(out, err);
}

/* Runs one batch of a prune in its own transaction; returns the rows it
 * deleted, or -1. The events' batch moves pruned_through with them, so
 * that a stream never misses an event without being told. */
static long long prune_batch(struct pg_store *s, enum stmt_id which, const char *upto,
                             const char *batch, struct error *err)
{
    if (run_sql(s, "BEGIN", err))
        return -1;
    const char *params[] = {upto, batch};
    PGresult *res = run(s, which, 2, params, err);
    long long n = res ? strtoll(PQcmdTuples(res), NULL, 10) : -1;
    PQclear(res);
    if (n > 0 && which == ST_PRUNE_EVENTS) {
        res = run(s, ST_PRUNED_THROUGH, 1, params, err);
        PQclear(res);
        if (!res)
            n = -1;
    }
    if (n < 0 || run_sql(s, "COMMIT", err)) {
        write_rollback(&s->base);
        return -1;
    }
    return n;
}

static long long prune(struct store *base, long long retain, struct error *err)
{
    struct pg_store *s = pg_of(base);
    long long newest, first, deleted = 0;
    if (head(base, &newest, err) || oldest(base, &first, err))
        return -1;
    char upto[24], batch[16];
    snprintf(upto, sizeof upto, "%lld", newest - retain);
    snprintf(batch, sizeof batch, "%d", PRUNE_BATCH);
    while (first > 0 && first <= newest - retain) {
        long long n = prune_batch(s, ST_PRUNE_EVENTS, upto, batch, err);
        if (n < 0)
            return -1;
        deleted += n;
        if (n < PRUNE_BATCH)
            break;
    }
    long long expired;
    char before[24];
    snprintf(before, sizeof before, "%lld", clock_wall_ms() - IDEMPOTENCY_TTL_MS);
    const char *params[] = {before};
    if (one_int(s, ST_EXPIRED_KEY, 1, params, &expired, err))
        return -1;
    snprintf(batch, sizeof batch, "%d", PRUNE_KEYS_BATCH);
    while (expired) {
        long long n = prune_batch(s, ST_PRUNE_IDEMPOTENCY, before, batch, err);
        if (n < 0)
            return -1;
        expired = n == PRUNE_KEYS_BATCH;
    }
    return deleted;
}

/* PostgreSQL checkpoints by itself. */
static int checkpoint(struct store *base, struct error *err)
{
    (void)base;
    (void)err;
    return 0;
}

const struct store_ops pg_store_ops = {
    .name = "postgresql",
    .migrate = migrate,
    .open = open_store,
    .close = close_store,
    .get = get,
    .list = list,
    .write_begin = write_begin,
    .write_commit = write_commit,
    .write_rollback = write_rollback,
    .write_blocked = write_blocked,
    .write_open = write_open,
    .savepoint = savepoint,
    .savepoint_release = savepoint_release,
    .savepoint_undo = savepoint_undo,
    .create = create,
    .patch = patch,
    .delete = delete,
    .oldest = oldest,
    .events = events,
    .head = head,
    .prune = prune,
    .checkpoint = checkpoint,
};
