/* The cases of the group commit's unit tests (src/writes.c), shared by
 * the programs that run them on each backend: writes_test.c (SQLite) and
 * writes_pg_test.c (PostgreSQL). Each program defines query_int(),
 * hold_lock() and release_lock(), sets cfg and writes, and calls
 * run_write_cases() on a database with no orders yet.
 *
 * Groups are made on purpose: the test holds the write lock with a
 * connection of its own (as the pruner or another host would), so that the
 * first writer leads a group of one and blocks in it while the others
 * queue; when the lock goes, the next leader takes every queued write as
 * one group. Each case then checks what the database holds, not what
 * writes.c says. */
#ifndef ORDERS_WRITES_CASES_H
#define ORDERS_WRITES_CASES_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/clock.h"
#include "../../src/store.h"
#include "../../src/writes.h"
#include "tap.h"

#define WRITERS 8

/* What a backend's test program provides before it runs the cases. */
static struct config cfg;
static struct writes *writes;       /* over the store under test */

/* The first column of the first row of sql, as the database has it
 * committed (read on a connection of the test's own), or -1. */
static long long query_int(const char *sql);

/* Takes the write lock the way another process of the service would, on
 * a connection of the test's own, and lets it go. */
static void hold_lock(void);
static void release_lock(void);

/* One write as a thread sends it, and what it got back. */
struct job {
    enum write_kind kind;
    char id[ORDER_ID_MAX];
    const char *body;
    const char *if_match;
    const char *key;
    const char *body_sha;
    struct order_doc doc;
    struct buf out;
    struct error err;
    int rc;
    long long ms;           /* how long writes_apply() took */
    pthread_t thread;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    struct order_input in;
    struct error perr;
    j->out = (struct buf)BUF_INIT;
    if (j->kind != WRITE_DELETE
        && order_input_parse(j->body, strlen(j->body), j->kind == WRITE_CREATE, &in, &perr) != 0) {
        j->rc = -2;
        return NULL;
    }
    struct write_request r = {.kind = j->kind, .id = j->id, .in = &in, .if_match = j->if_match,
                              .idempotency_key = j->key, .body_sha256 = j->body_sha,
                              .doc = &j->doc, .out = &j->out, .err = &j->err};
    long long t0 = clock_monotonic_ms();
    j->rc = writes_apply(writes, &r);
    j->ms = clock_monotonic_ms() - t0;
    if (j->kind != WRITE_DELETE)
        order_input_free(&in);
    return NULL;
}

static void start(struct job *j)
{
    if (pthread_create(&j->thread, NULL, run_job, j) != 0) {
        perror("pthread_create");
        exit(2);
    }
}

static void finish(struct job *j)
{
    pthread_join(j->thread, NULL);
    buf_free(&j->out);
}

static void wait_for_waiting(int n)
{
    struct writes_stats st;
    for (int i = 0; i < 5000; i++) {
        writes_get_stats(writes, &st);
        if (st.waiting >= n)
            return;
        usleep(1000);
    }
    diag("only %d writers are waiting, expected %d", st.waiting, n);
}

/* Runs jobs[0] alone while the lock is held, then the rest, which queue
 * behind it in order, and lets the lock go: jobs 1..n-1 form one group. */
static void run_grouped(struct job *jobs, int n)
{
    hold_lock();
    start(&jobs[0]);
    wait_for_waiting(1);
    usleep(20000);      /* jobs[0] leads, and waits for the lock */
    /* One at a time, so that the queue holds them in this order. */
    for (int i = 1; i < n; i++) {
        start(&jobs[i]);
        wait_for_waiting(i + 1);
    }
    release_lock();
    for (int i = 0; i < n; i++)
        finish(&jobs[i]);
}

static const char *order_body = "{\"customer\":\"Ada\",\"items\":[{\"sku\":\"A-1\",\"name\":\"A\","
                                "\"qty\":1,\"unitPriceCents\":100}]}";

static void test_lone_write(void)
{
    struct writes_stats before, after;
    writes_get_stats(writes, &before);
    struct job j = {.kind = WRITE_CREATE, .body = order_body};
    start(&j);
    pthread_join(j.thread, NULL);
    ok(j.rc == 0, "a lone create succeeds");
    ok(j.ms < 200, "a lone write commits at once (%lld ms)", j.ms);
    is_int(query_int("SELECT count(*) FROM orders"), 1, "its order is committed");
    is_int(query_int("SELECT count(*) FROM events"), 1, "with its event");
    writes_get_stats(writes, &after);
    is_int(after.groups - before.groups, 1, "in a group of its own");
    buf_free(&j.out);
}

static void test_group_with_refusals(void)
{
    struct job jobs[WRITERS] = {{0}};
    jobs[0] = (struct job){.kind = WRITE_CREATE, .body = order_body};
    for (int i = 1; i < WRITERS; i++) {
        jobs[i] = (struct job){.kind = WRITE_PATCH, .body = "{\"note\":\"grouped\"}"};
        snprintf(jobs[i].id, sizeof jobs[i].id, "ord_00001");
    }
    jobs[3].if_match = "\"999\"";                       /* 412 */
    jobs[5].body = "{\"status\":\"delivered\"}";         /* 422: pending -> delivered */
    snprintf(jobs[6].id, sizeof jobs[6].id, "ord_99999");    /* 404 */
    jobs[6].kind = WRITE_DELETE;
    long long head = query_int("SELECT max(id) FROM events");
    struct writes_stats before, after;
    writes_get_stats(writes, &before);
    run_grouped(jobs, WRITERS);
    writes_get_stats(writes, &after);

    is_int(after.groups - before.groups, 2, "the queued writes committed as one group");
    ok(jobs[0].rc == 0, "the first write, alone in its group, succeeds");
    ok(jobs[3].rc == -1 && jobs[3].err.kind == ERR_PRECONDITION_FAILED, "a stale If-Match is 412");
    ok(jobs[5].rc == -1 && jobs[5].err.kind == ERR_INVALID_TRANSITION,
       "a forbidden transition is 422");
    ok(jobs[6].rc == -1 && jobs[6].err.kind == ERR_NOT_FOUND, "a missing order is 404");
    int good = 0;
    for (int i = 1; i < WRITERS; i++)
        good += jobs[i].rc == 0;
    is_int(good, WRITERS - 4, "every other write of the group succeeds");
    /* The first patch changes the note, the rest find it already set:
     * a patch that changes nothing writes no event. */
    is_int(query_int("SELECT max(id) FROM events") - head, 2,
           "the group's events: the create's and the one real change");
    is_int(query_int("SELECT max(id) - min(id) + 1 - count(*) FROM events"), 0,
           "event ids have no gap");
    is_int(query_int("SELECT count(*) FROM orders WHERE note = 'grouped'"), 1,
           "the refused writes left nothing behind, the good one is there");
}

static void test_idempotency_in_a_group(void)
{
    struct job jobs[4] = {{0}};
    jobs[0] = (struct job){.kind = WRITE_CREATE, .body = order_body};
    for (int i = 1; i < 4; i++)
        jobs[i] = (struct job){.kind = WRITE_CREATE, .body = order_body, .key = "same-key",
                               .body_sha = i < 3 ? "sha-a" : "sha-b"};
    long long orders = query_int("SELECT count(*) FROM orders");
    run_grouped(jobs, 4);
    ok(jobs[1].rc == 0 && !jobs[1].doc.replayed, "the first use of a key creates");
    ok(jobs[2].rc == 0 && jobs[2].doc.replayed && strcmp(jobs[2].doc.id, jobs[1].doc.id) == 0,
       "its repeat in the same group answers the same order (%s, %s)", jobs[2].doc.id,
       jobs[1].doc.id);
    ok(jobs[3].rc == -1 && jobs[3].err.kind == ERR_IDEMPOTENCY_KEY_REUSED,
       "the key with another body is refused");
    is_int(query_int("SELECT count(*) FROM orders") - orders, 2,
           "two orders: the lone one and the keyed one");
}

static void test_deadline(void)
{
    hold_lock();
    struct job jobs[3] = {{0}};
    for (int i = 0; i < 3; i++)
        jobs[i] = (struct job){.kind = WRITE_CREATE, .body = order_body};
    long long orders = query_int("SELECT count(*) FROM orders");
    for (int i = 0; i < 3; i++)
        start(&jobs[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(jobs[i].thread, NULL);
    release_lock();
    for (int i = 0; i < 3; i++) {
        ok(jobs[i].rc == -1 && jobs[i].err.kind == ERR_UNAVAILABLE,
           "writer %d behind a held lock: 503 unavailable", i);
        ok(jobs[i].ms >= cfg.busy_timeout_ms - 5 && jobs[i].ms < cfg.busy_timeout_ms + 300,
           "writer %d gave up after its own deadline (%lld ms of %ld)", i, jobs[i].ms,
           cfg.busy_timeout_ms);
        buf_free(&jobs[i].out);
    }
    is_int(query_int("SELECT count(*) FROM orders") - orders, 0, "nothing was written");
}

/* Many threads, many writes each: every write answered 2xx is there,
 * once, and the event ids run without a gap. */
static void *burst_writer(void *arg)
{
    int *failures = arg;
    for (int i = 0; i < 50; i++) {
        /* Every patch changes the note, so every write has its event. */
        char note[64];
        snprintf(note, sizeof note, "{\"note\":\"burst %p %d\"}", (void *)failures, i);
        struct job j = {.kind = i % 2 ? WRITE_PATCH : WRITE_CREATE,
                        .body = i % 2 ? note : order_body, .id = "ord_00001"};
        run_job(&j);
        *failures += j.rc != 0;
        buf_free(&j.out);
    }
    return NULL;
}

static void test_burst(void)
{
    pthread_t t[WRITERS];
    int failures[WRITERS] = {0};
    long long events = query_int("SELECT count(*) FROM events");
    struct writes_stats before, after;
    writes_get_stats(writes, &before);
    for (int i = 0; i < WRITERS; i++)
        pthread_create(&t[i], NULL, burst_writer, &failures[i]);
    int failed = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        failed += failures[i];
    }
    writes_get_stats(writes, &after);
    is_int(failed, 0, "%d writers × 50 writes: none fails", WRITERS);
    is_int(after.committed - before.committed, WRITERS * 50, "every write was answered 2xx");
    is_int(query_int("SELECT count(*) FROM events") - events, WRITERS * 50,
           "each has its event");
    is_int(query_int("SELECT max(id) - min(id) + 1 - count(*) FROM events"), 0,
           "event ids have no gap");
    diag("%lld writes in %lld groups", after.committed - before.committed,
         after.groups - before.groups);
}

/* Every case, in order: the first expects no order yet, and the later
 * ones patch ord_00001, which the first creates. */
static void run_write_cases(void)
{
    test_lone_write();
    test_group_with_refusals();
    test_idempotency_in_a_group();
    test_deadline();
    test_burst();
}

#endif
