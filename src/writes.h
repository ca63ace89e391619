/* The API's writes, committed in groups. A thread that writes queues its
 * request; the first queued thread while no group is under way becomes the
 * leader: it takes every request queued so far, runs each in a savepoint of
 * its own inside one transaction, commits once, and wakes the others with
 * their answers. The next group forms while one commits, so a lone write
 * commits at once and a burst of writes pays for one commit (and, with
 * ORDERS_SYNC=full, one fsync) per group.
 *
 * A request is answered only after the transaction that holds it has
 * committed; one refused (404, 409, 412, 422 …) is undone alone; when the
 * transaction itself fails, every write in it fails and none is kept.
 *
 * A write waits at most ORDERS_BUSY_TIMEOUT_MS in all, and while another
 * process keeps the database locked at most ORDERS_THREADS / 2 threads (at
 * least 1) wait at once; beyond either it fails with 503 unavailable. */
#ifndef ORDERS_WRITES_H
#define ORDERS_WRITES_H

#include "buf.h"
#include "config.h"
#include "error.h"
#include "metrics.h"
#include "order.h"
#include "store.h"

enum write_kind { WRITE_CREATE, WRITE_PATCH, WRITE_DELETE };

/* One write, with its inputs and where its answer goes: the arguments of
 * store_create, store_patch or store_delete. The caller owns everything it
 * points at, and keeps it alive until writes_apply() returns. */
struct write_request {
    enum write_kind kind;
    const char *id;                     /* patch, delete */
    const struct order_input *in;       /* create, patch */
    const char *if_match;               /* patch, delete; NULL for none */
    const char *idempotency_key;        /* create; NULL for none */
    const char *body_sha256;            /* create, with a key */
    struct order_doc *doc;              /* create, patch: filled */
    struct buf *out;                    /* create, patch: the order's JSON */
    struct error *err;                  /* set on failure */
};

struct writes;

/* Writes go through store, which the returned object borrows (the caller
 * closes it after writes_free), and are counted in metrics (NULL: not
 * counted). Returns NULL when out of memory. */
struct writes *writes_new(struct store *store, const struct config *cfg, struct metrics *metrics);
void writes_free(struct writes *w);

/* What the group commit has done since writes_new(), and the threads that
 * wait in it now. */
struct writes_stats {
    long long groups;           /* groups that answered a write 2xx */
    long long committed;        /* writes answered 2xx from them */
    int waiting;
};
void writes_get_stats(struct writes *w, struct writes_stats *st);

/* Runs one write in the next group and returns 0 once it has committed, or
 * -1 with r->err set. Any thread may call it. */
int writes_apply(struct writes *w, const struct write_request *r);

#endif
