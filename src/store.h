/* The orders and their event log: every read and write the API makes, on
 * one connection to the database. Two backends implement it, SQLite (a
 * file, store_sqlite.c) and PostgreSQL (a URI, store_pg.c), chosen by
 * ORDERS_DB; store_backend.h is the seam. A store belongs to one thread at
 * a time: the writer's is used by whichever thread leads the group commit
 * (writes.c).
 * Writes run inside a write transaction (store_write_begin), each in a
 * savepoint of its own when several share one; the events they cause are
 * appended by the schema's triggers inside the same transaction. */
#ifndef ORDERS_STORE_H
#define ORDERS_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "order.h"

#define ORDER_ID_MAX 32

struct store;

/* Creates the database or brings its schema up to date. At start
 * (at_start), a PostgreSQL server that does not answer is logged, not
 * fatal: requests get 503 until it answers, and the first connection then
 * migrates. Returns 0, or -1 with one line in err. */
int store_migrate(const struct config *cfg, bool at_start, char *err, size_t errlen);

/* Opens a connection to the migrated database and prepares its statements
 * (PostgreSQL: when it first answers). Returns NULL with one line in err.
 * Free with store_close(). */
struct store *store_open(const struct config *cfg, char *err, size_t errlen);
void store_close(struct store *s);

/* "sqlite" or "postgresql". */
const char *store_backend_name(const struct store *s);

/* The JSON document of one order, as sent to clients. */
struct order_doc {
    char id[ORDER_ID_MAX];
    long long version;
    bool replayed;          /* store_create: the answer of an earlier request */
};

/* Each function below returns 0, or -1 with err set. JSON goes into out,
 * which the caller owns and has initialised. */

int store_get(struct store *s, const char *id, struct order_doc *doc, struct buf *out,
              struct error *err);

/* One page, newest first: {"data":[…],"nextCursor":…}. status may be NULL;
 * after_seq 0 starts at the newest order. */
int store_list(struct store *s, const char *status, long long after_seq, int limit,
               struct buf *out, struct error *err);

/* The write transaction. Write transactions take turns, across processes
 * and hosts: store_write_begin() waits for the turn until deadline_ms
 * (clock_monotonic_ms) and fails with 503 unavailable after it. A
 * successful begin is ended by exactly one store_write_commit() or
 * store_write_rollback(). */
int store_write_begin(struct store *s, long long deadline_ms, struct error *err);
int store_write_commit(struct store *s, struct error *err);
void store_write_rollback(struct store *s);

/* True while this process's write transaction has been kept waiting by
 * another process's lock for 500 ms or more: longer than two processes
 * taking turns at writing ever wait. */
bool store_write_blocked(struct store *s);

/* False once an error (a full disk, an I/O error, a lost connection) has
 * lost the whole write transaction, which the caller then rolls back. */
bool store_write_open(struct store *s);

/* One write's changes inside the transaction: begun, kept (release), or
 * undone alone (undo), leaving the transaction open. */
int store_savepoint(struct store *s, struct error *err);
int store_savepoint_release(struct store *s, struct error *err);
int store_savepoint_undo(struct store *s, struct error *err);

/* The three writes run inside the write transaction, which the caller
 * commits; a refused one may have written part of its changes, which the
 * caller undoes (savepoint or rollback). */

/* Creates an order. With an idempotency key, a repeat of the same body
 * (body_sha256) within 24 h answers the first order again. */
int store_create(struct store *s, const struct order_input *in, const char *idempotency_key,
                 const char *body_sha256, struct order_doc *doc, struct buf *out,
                 struct error *err);

/* Applies the fields of in. if_match is the If-Match header or NULL. */
int store_patch(struct store *s, const char *id, const struct order_input *in,
                const char *if_match, struct order_doc *doc, struct buf *out, struct error *err);

int store_delete(struct store *s, const char *id, const char *if_match, struct error *err);

/* The oldest event kept in the log, 0 when it is empty. */
int store_oldest(struct store *s, long long *oldest, struct error *err);

/* {"data":[events after `after`, oldest first],"lastEventId":head}. */
int store_events(struct store *s, long long after, int limit, struct buf *out, struct error *err);

/* The id of the newest event ever written (0 for none), pruned or not. */
int store_head(struct store *s, long long *head, struct error *err);

/* Deletes events beyond the newest `retain` and idempotency keys older than
 * 24 h, in small transactions so that writers never wait long. Returns the
 * number of events deleted, or -1. */
long long store_prune(struct store *s, long long retain, struct error *err);

/* SQLite: copies the WAL into the database as far as readers allow,
 * without waiting for anyone (a passive checkpoint). One that finds another
 * checkpoint running leaves the work to it and returns 0. PostgreSQL
 * checkpoints by itself: nothing to do. */
int store_checkpoint(struct store *s, struct error *err);

#endif
