#include "writes.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

/* How often a queued write checks whether it should leave (writes_apply). */
#define SHED_CHECK_MS 100

/* How many times a write that met another one (a deadlock or serialization
 * failure, PostgreSQL's way to refuse one of two) runs in all. */
#define WRITE_ATTEMPTS 5

/* A write on its way, on the stack of the thread that waits for it. Its
 * state moves QUEUED -> TAKEN (in a group) -> DONE, under writes.lock; a
 * QUEUED write may leave the queue when its deadline passes, a TAKEN one
 * waits for its leader, whose group ends before any deadline plus the time
 * its statements take. */
struct pending {
    const struct write_request *req;
    long long deadline_ms;
    enum { QUEUED, TAKEN, DONE } state;
    int rc;                     /* 0, or -1 with req->err set */
    bool lock_timeout;          /* failed: its deadline passed waiting for the lock */
    bool again;                 /* runs again: it met another write (retry_conflicts) */
    pthread_cond_t wake;        /* signalled when DONE, or when it may lead */
    struct pending *next;
};

struct writes {
    pthread_mutex_t lock;       /* guards the fields below it */
    struct pending *head, *tail;    /* queued, in arrival order */
    int waiting;                /* threads inside writes_apply() */
    bool leading;               /* a group is under way */
    struct writes_stats stats;
    pthread_condattr_t wake_attr;   /* CLOCK_MONOTONIC, for the deadlines */
    struct store *store;
    struct metrics *metrics;
    long busy_timeout_ms;
    int max_waiters;
};

struct writes *writes_new(struct store *store, const struct config *cfg, struct metrics *metrics)
{
    struct writes *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_condattr_init(&w->wake_attr) != 0
        || pthread_condattr_setclock(&w->wake_attr, CLOCK_MONOTONIC) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    w->store = store;
    w->metrics = metrics;
    w->busy_timeout_ms = cfg->busy_timeout_ms;
    w->max_waiters = cfg->threads / 2 > 1 ? (int)(cfg->threads / 2) : 1;
    return w;
}

void writes_free(struct writes *w)
{
    if (!w)
        return;
    assert(!w->leading && !w->head && w->waiting == 0);
    pthread_condattr_destroy(&w->wake_attr);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static int run_one(struct store *s, const struct write_request *r)
{
    switch (r->kind) {
    case WRITE_CREATE:
        return store_create(s, r->in, r->idempotency_key, r->body_sha256, r->doc, r->out, r->err);
    case WRITE_PATCH:
        return store_patch(s, r->id, r->in, r->if_match, r->doc, r->out, r->err);
    case WRITE_DELETE:
        return store_delete(s, r->id, r->if_match, r->err);
    }
    assert(!"unknown write kind");
    return error_set(r->err, ERR_INTERNAL, "unknown write");
}

/* Whether p is still to run in this pass of its group: every write on the
 * first pass, then those that run again. */
static bool runs(const struct pending *p, bool retrying)
{
    return p->rc == 0 && (!retrying || p->again);
}

/* The transaction that held the group is gone: every write of it that
 * had not failed on its own fails with err, and none is kept. */
static void fail_group(struct pending *group, bool retrying, const struct error *err)
{
    for (struct pending *p = group; p; p = p->next) {
        if (runs(p, retrying)) {
            *p->req->err = *err;
            p->rc = -1;
        }
    }
}

/* Opens the group's transaction. Each write waits no longer than its own
 * deadline: the wait for the lock runs to the earliest one, and when it
 * passes, the writes whose time is up fail and the rest wait on to the
 * next. Returns 0 with the transaction open and only live writes at rc 0,
 * or -1 when no write is left to run. */
static int begin_group(struct store *s, struct pending *group, bool retrying)
{
    for (;;) {
        long long now = clock_monotonic_ms(), deadline = 0;
        for (struct pending *p = group; p; p = p->next) {
            if (!runs(p, retrying))
                continue;
            if (p->deadline_ms <= now) {
                p->rc = error_set(p->req->err, ERR_UNAVAILABLE, "the database is busy, try again");
                p->lock_timeout = true;
            }
            else if (!deadline || p->deadline_ms < deadline)
                deadline = p->deadline_ms;
        }
        if (!deadline)
            return -1;
        struct error err;
        if (store_write_begin(s, deadline, &err) == 0)
            return 0;
        if (err.kind != ERR_UNAVAILABLE || clock_monotonic_ms() < deadline) {
            fail_group(group, retrying, &err);
            return -1;
        }
    }
}

/* Runs the group in one transaction, each write in a savepoint of its own
 * when there are several, so that a refused one is undone alone. On a
 * retrying pass, only the writes marked to run again run. */
static void run_group(struct store *s, struct pending *group, bool retrying)
{
    if (begin_group(s, group, retrying))
        return;
    int count = 0;
    for (struct pending *p = group; p; p = p->next)
        count += runs(p, retrying);
    bool savepoints = count > 1;
    int kept = 0;
    for (struct pending *p = group; p; p = p->next) {
        if (!runs(p, retrying))
            continue;
        p->rc = savepoints && store_savepoint(s, p->req->err) ? -1 : run_one(s, p->req);
        if (!store_write_open(s)) {
            /* The database lost the whole transaction (SQLite: a full
             * disk, an I/O error; PostgreSQL: any failed statement outside
             * a savepoint): the writes before this one are lost with it. */
            fail_group(group, retrying, p->req->err);
            store_write_rollback(s);
            return;
        }
        if (savepoints) {
            struct error err;
            if ((p->rc ? store_savepoint_undo(s, &err) : store_savepoint_release(s, &err)) != 0) {
                fail_group(group, retrying, &err);
                store_write_rollback(s);
                return;
            }
        }
        kept += p->rc == 0;
    }
    if (!kept) {
        store_write_rollback(s);
        return;
    }
    struct error err;
    if (store_write_commit(s, &err) != 0)
        fail_group(group, retrying, &err);
}

/* Marks the writes that met another write, and have time left, to run
 * again in a transaction of their own: the one they were in still held
 * what the other write waits for. Returns whether there is any. */
static bool retry_conflicts(struct pending *group)
{
    long long now = clock_monotonic_ms();
    bool any = false;
    for (struct pending *p = group; p; p = p->next) {
        p->again = p->rc != 0 && p->req->err->kind == ERR_WRITE_CONFLICT && p->deadline_ms > now;
        if (p->again) {
            p->rc = 0;
            any = true;
        }
    }
    return any;
}

/* Called with w->lock held, by the thread of self, which is at the head
 * of the queue while no group is under way. Takes the whole queue as one
 * group, runs it without the lock, and returns with the lock held and
 * every write of the group DONE; the next queued write, if any, is woken
 * to lead the next group. */
static void lead(struct writes *w, struct pending *self)
{
    assert(!w->leading && w->head == self);
    w->leading = true;
    struct pending *group = w->head;
    w->head = w->tail = NULL;
    for (struct pending *p = group; p; p = p->next)
        p->state = TAKEN;
    pthread_mutex_unlock(&w->lock);

    run_group(w->store, group, false);
    for (int attempt = 1; attempt < WRITE_ATTEMPTS && retry_conflicts(group); attempt++)
        run_group(w->store, group, true);

    pthread_mutex_lock(&w->lock);
    int committed = 0;
    for (struct pending *p = group, *next; p; p = next) {
        next = p->next;         /* p may be gone once its thread runs again */
        committed += p->rc == 0;
        metrics_add(w->metrics, MX_DB_LOCK_TIMEOUTS, p->lock_timeout);
        p->state = DONE;
        if (p != self)
            pthread_cond_signal(&p->wake);
    }
    w->stats.groups += committed > 0;
    w->stats.committed += committed;
    metrics_add(w->metrics, MX_WRITE_GROUPS, committed > 0);
    metrics_add(w->metrics, MX_WRITES_COMMITTED, (uint64_t)committed);
    w->leading = false;
    if (w->head)
        pthread_cond_signal(&w->head->wake);
}

/* Takes a QUEUED write out of the queue: its deadline passed, or it leaves
 * for the cap while another process holds the lock (writes_apply). */
static void unqueue(struct writes *w, struct pending *self)
{
    struct pending **link = &w->head, *prev = NULL;
    while (*link != self) {
        prev = *link;
        link = &(*link)->next;
    }
    *link = self->next;
    if (w->tail == self)
        w->tail = prev;
    if (link == &w->head && w->head && !w->leading)
        pthread_cond_signal(&w->head->wake);
}

void writes_get_stats(struct writes *w, struct writes_stats *st)
{
    pthread_mutex_lock(&w->lock);
    *st = w->stats;
    st->waiting = w->waiting;
    pthread_mutex_unlock(&w->lock);
}

static int refuse_crowded(struct error *err)
{
    return error_set(err, ERR_UNAVAILABLE, "too many writes are waiting for the database, try again");
}

int writes_apply(struct writes *w, const struct write_request *r)
{
    struct pending self = {.req = r, .state = QUEUED,
                           .deadline_ms = clock_monotonic_ms() + w->busy_timeout_ms};
    if (pthread_cond_init(&self.wake, &w->wake_attr) != 0)
        return error_set(r->err, ERR_INTERNAL, "out of memory");
    pthread_mutex_lock(&w->lock);
    if (w->waiting >= w->max_waiters && store_write_blocked(w->store)) {
        pthread_mutex_unlock(&w->lock);
        pthread_cond_destroy(&self.wake);
        metrics_add(w->metrics, MX_DB_LOCK_TIMEOUTS, 1);
        return refuse_crowded(r->err);
    }
    w->waiting++;
    if (w->tail)
        w->tail->next = &self;
    else
        w->head = &self;
    w->tail = &self;

    while (self.state != DONE) {
        if (self.state == QUEUED && !w->leading && w->head == &self) {
            lead(w, &self);
            break;
        }
        /* A write in a group waits for its leader, however long. */
        if (self.state == TAKEN) {
            pthread_cond_wait(&self.wake, &w->lock);
            continue;
        }
        /* A queued write looks up every SHED_CHECK_MS: once another process
         * is seen to hold the lock (store_write_blocked), the writes that
         * queued before it was seen leave, down to the cap, so that their
         * threads serve reads meanwhile. */
        long long wake_ms = clock_monotonic_ms() + SHED_CHECK_MS;
        if (wake_ms > self.deadline_ms)
            wake_ms = self.deadline_ms;
        struct timespec until = {.tv_sec = wake_ms / 1000, .tv_nsec = wake_ms % 1000 * 1000000};
        pthread_cond_timedwait(&self.wake, &w->lock, &until);
        if (self.state != QUEUED)
            continue;
        bool late = clock_monotonic_ms() >= self.deadline_ms;
        if (late || (w->waiting > w->max_waiters && store_write_blocked(w->store))) {
            unqueue(w, &self);
            self.rc = late ? error_set(r->err, ERR_UNAVAILABLE, "the database is busy, try again")
                           : refuse_crowded(r->err);
            metrics_add(w->metrics, MX_DB_LOCK_TIMEOUTS, 1);
            break;
        }
    }
    w->waiting--;
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&self.wake);
    return self.rc;
}
