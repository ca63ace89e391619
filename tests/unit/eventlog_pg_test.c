/* Unit tests of the event log on PostgreSQL (src/eventlog_pg.c), through
 * eventlog.h only, against the real database ORDERS_TEST_PG_URL names
 * (pgtest.h). The test writes with a connection of its own, by SQL, as
 * psql or another host would: the schema's triggers append the events and
 * send the NOTIFY the log listens for. What the hub relies on is checked:
 * the wake descriptor, eventlog_changed(), reads by range with their SSE
 * data, ids in commit order, and a reconnection after the server dropped
 * the log's connection, which must count as a change so that the hub
 * re-reads what it missed. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/clock.h"
#include "../../src/eventlog.h"
#include "pgtest.h"

#define WAKE_WITHIN_MS 500
#define MAX_SEEN 16

static PGconn *writer;      /* the test's writes */
static PGconn *peek;        /* reads what was committed, and the server's view */

/* Whether fd becomes readable within ms. */
static bool readable_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long long until = clock_monotonic_ms() + ms;
    for (;;) {
        long long left = until - clock_monotonic_ms();
        int n = poll(&p, 1, left > 0 ? (int)left : 0);
        if (n > 0)
            return true;
        if (n == 0 || errno != EINTR)
            return false;
    }
}

/* Calls eventlog_changed() until it says changed or ms pass. Returns
 * whether it did; *failures counts the calls that returned -1. */
static bool changed_within(struct eventlog *log, int ms, int *failures)
{
    long long until = clock_monotonic_ms() + ms;
    do {
        bool changed = false;
        if (eventlog_changed(log, &changed) != 0)
            ++*failures;
        else if (changed)
            return true;
        usleep(20000);
    } while (clock_monotonic_ms() < until);
    return false;
}

/* What eventlog_read() handed over, copied: its strings live only until
 * the callback returns. */
struct seen {
    int n;
    long long id[MAX_SEEN];
    char *type[MAX_SEEN], *order_id[MAX_SEEN], *data[MAX_SEEN];
};

static void collect(void *arg, const struct event *ev)
{
    struct seen *s = arg;
    if (s->n == MAX_SEEN)
        return;
    s->id[s->n] = ev->id;
    s->type[s->n] = strdup(ev->type);
    s->order_id[s->n] = strdup(ev->order_id);
    s->data[s->n] = strdup(ev->data);
    if (!s->type[s->n] || !s->order_id[s->n] || !s->data[s->n])
        pgtest_bail("out of memory");
    s->n++;
}

static void seen_free(struct seen *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->type[i]);
        free(s->order_id[i]);
        free(s->data[i]);
    }
    s->n = 0;
}

static int read_range(struct eventlog *log, long long after, long long upto, int limit,
                      struct seen *s)
{
    seen_free(s);
    return eventlog_read(log, after, upto, limit, collect, s);
}

/* The SSE data an event must have, made here from the events table's own
 * columns rather than by the SQL the log runs. type and order_id are plain
 * names (order.created, ord_00001): they need no escaping. */
static char *expected_data(long long id)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT type, order_id, patch::text, ts FROM events WHERE id = %lld",
             id);
    PGresult *res = PQexec(peek, sql);
    char *data = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        size_t len = strlen(PQgetvalue(res, 0, 2)) + 200;
        data = malloc(len);
        if (data)
            snprintf(data, len, "{\"type\":\"%s\",\"id\":\"%s\",\"patch\":%s,\"ts\":%s}",
                     PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                     PQgetvalue(res, 0, 3));
    }
    PQclear(res);
    return data;
}

static void check_event(const struct seen *s, int i, long long id, const char *type,
                        const char *order_id)
{
    is_int(s->id[i], id, "event %d of the read has id %lld", i, id);
    is_str(s->type[i], type, "event %lld is %s", id, type);
    is_str(s->order_id[i], order_id, "event %lld is about %s", id, order_id);
    char *want = expected_data(id);
    is_str(s->data[i], want, "event %lld's data is the SSE JSON of what the events table holds",
           id);
    free(want);
}

static void test_empty(struct eventlog *log)
{
    long long head = -1, pruned = -1;
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds of a new log are read");
    ok(head == 0 && pruned == 0, "a new log's bounds are (0, 0): (%lld, %lld)", head, pruned);
    bool renewed = false;
    int fd = eventlog_wake_fd(log, &renewed);
    ok(fd >= 0 && renewed, "once connected, the log has a wake descriptor, new (fd %d)", fd);
    fd = eventlog_wake_fd(log, &renewed);
    ok(fd >= 0 && !renewed, "asked again, the same connection is not new");
    bool changed = false;
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    ok(changed, "its first answer after connecting is changed (anything may have been missed)");
    is_int(eventlog_changed(log, &changed), 0, "and answers again");
    ok(!changed, "with no commit since, not changed");
    struct seen s = {0};
    is_int(read_range(log, 0, LLONG_MAX, 100, &s), 0, "an empty log reads no event");
}

static void test_wake_and_read(struct eventlog *log)
{
    bool renewed;
    int fd = eventlog_wake_fd(log, &renewed);
    long long t0 = clock_monotonic_ms();
    pgtest_must(writer, "INSERT INTO orders (customer, items) VALUES ('Ada', "
                        "'[{\"sku\":\"A-1\",\"name\":\"A\",\"qty\":2,\"unitPriceCents\":150}]')");
    bool woke = readable_within(fd, WAKE_WITHIN_MS);
    ok(woke, "a commit by another connection makes the wake descriptor readable within %d ms "
       "(%lld ms)", WAKE_WITHIN_MS, clock_monotonic_ms() - t0);
    bool changed = false;
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers after the wake");
    ok(changed, "and says changed");
    ok(!readable_within(fd, 0), "the notification was taken: the descriptor is quiet again");

    /* Three more events: an update whose note needs JSON escaping, a
     * second order, a delete. */
    pgtest_must(writer, "UPDATE orders SET note = E'say \"hi\"\\n\\\\ caf\u00e9', "
                        "status = 'paid' WHERE id = 'ord_00001'");
    pgtest_must(writer, "INSERT INTO orders (customer, items, currency) VALUES ('Bo', '[]', 'USD')");
    pgtest_must(writer, "DELETE FROM orders WHERE id = 'ord_00002'");
    long long head = -1, pruned = -1;
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds are read");
    is_int(head, 4, "the head is the fourth event");

    struct seen s = {0};
    is_int(read_range(log, 0, head, 100, &s), 4, "a read of (0, head] gives all four events");
    if (s.n == 4) {
        check_event(&s, 0, 1, "order.created", "ord_00001");
        check_event(&s, 1, 2, "order.updated", "ord_00001");
        check_event(&s, 2, 3, "order.created", "ord_00002");
        check_event(&s, 3, 4, "order.deleted", "ord_00002");
        /* As the SQLite schema has it: an order.created's patch is the
         * order's document, and a deleted order's patch is empty. */
        char *doc = pgtest_text(peek, "SELECT '{\"type\":\"order.updated\",\"id\":\"ord_00001\","
                                      "\"patch\":' || patch::text FROM events WHERE id = 2");
        ok(doc && strncmp(s.data[1], doc, strlen(doc)) == 0
           && strstr(s.data[1], "\"note\":\"say \\\"hi\\\"\\n\\\\ caf\u00e9\"")
           && strstr(s.data[1], "\"status\":\"paid\""),
           "the update's patch has the note JSON-escaped and the status: %s", s.data[1]);
        free(doc);
        ok(strstr(s.data[3], "\"patch\":{}") != NULL, "a delete's patch is {}");
    }
    is_int(read_range(log, 1, 3, 100, &s), 2, "a read of (1, 3] gives two events");
    ok(s.n == 2 && s.id[0] == 2 && s.id[1] == 3, "events 2 and 3, oldest first");
    is_int(read_range(log, 0, head, 3, &s), 3, "a limit of 3 gives three events");
    ok(s.n == 3 && s.id[0] == 1 && s.id[2] == 3, "the oldest three");
    is_int(read_range(log, head, LLONG_MAX, 100, &s), 0, "nothing after the head");
    is_int(read_range(log, 3, 2, 100, &s), 0, "an empty range gives nothing");
    seen_free(&s);

    /* The four commits above are reported once (however many NOTIFYs),
     * and then nothing is, until another commit. */
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    ok(changed, "the three later commits are reported");
    is_int(eventlog_changed(log, &changed), 0, "and again");
    ok(!changed, "no commit since the last call: not changed");
    /* Past the log's periodic check of the head (HEAD_CHECK_MS, 1 s), which
     * must not take an unmoved head for a change. */
    usleep(1200 * 1000);
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers after a quiet second");
    ok(!changed, "a quiet second is not a change: the notifications moved the head it checks");
    usleep(1200 * 1000);
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers after another one");
    ok(!changed, "a second quiet second is not a change: the head check reads an unmoved head");

    /* A rolled-back write hands its id back and wakes nobody. */
    pgtest_must(writer, "BEGIN; INSERT INTO orders (customer, items) VALUES ('Gone', '[]'); "
                        "ROLLBACK");
    ok(!readable_within(fd, 200), "a rolled-back write does not wake the log");
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    ok(!changed, "and does not report it");
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds are read");
    is_int(head, 4, "the head did not move");
}

/* An event appended without a NOTIFY (as if the notification were lost)
 * is still noticed: the log reads the head itself every second. */
static void test_missed_notification(struct eventlog *log)
{
    bool renewed, changed = false;
    int fd = eventlog_wake_fd(log, &renewed);
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    pgtest_must(writer, "BEGIN; UPDATE event_log_state SET head = head + 1; "
                        "INSERT INTO events (id, type, order_id, patch, ts) "
                        "SELECT head, 'order.updated', 'ord_00001', '{\"note\":\"quiet\"}', 1 "
                        "FROM event_log_state; COMMIT");
    ok(!readable_within(fd, 100), "an event with no NOTIFY does not wake the descriptor");
    int failures = 0;
    long long t0 = clock_monotonic_ms();
    bool noticed = changed_within(log, 1500, &failures);
    ok(noticed, "the head check reports it within 1.5 s (%lld ms)", clock_monotonic_ms() - t0);
    is_int(failures, 0, "no call failed meanwhile");
    struct seen s = {0};
    is_int(read_range(log, 4, LLONG_MAX, 100, &s), 1, "the event is read");
    ok(s.n == 1 && s.id[0] == 5, "event 5");
    seen_free(&s);
}

/* An uncommitted transaction's event is invisible, and the next writer's
 * event waits for it: ids become visible in commit order, never with a
 * gap a reader could step over. */
static void test_uncommitted(struct eventlog *log, const char *url)
{
    PGconn *second = pgtest_connect(url, "eventlog_pg_test_second");
    bool renewed, changed = false;
    int fd = eventlog_wake_fd(log, &renewed);
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    long long head = -1, pruned;
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds are read");

    pgtest_must(writer, "BEGIN; INSERT INTO orders (customer, items) VALUES ('First', '[]')");
    /* The second writer's INSERT waits for the first's lock on the counter. */
    if (!PQsendQuery(second, "INSERT INTO orders (customer, items) VALUES ('Second', '[]')"))
        pgtest_bail("cannot send the second writer's INSERT: %s", PQerrorMessage(second));
    long long waiting = 0;
    for (int i = 0; i < 250 && waiting < 1; i++) {
        waiting = pgtest_int(peek, "SELECT count(*) FROM pg_stat_activity WHERE "
                                   "application_name = 'eventlog_pg_test_second' "
                                   "AND wait_event_type = 'Lock'");
        if (waiting < 1)
            usleep(10000);
    }
    is_int(waiting, 1, "the second writer waits for the first's transaction");
    ok(!readable_within(fd, 100), "nothing wakes the log while both are uncommitted");
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    ok(!changed, "and reports no change");
    struct seen s = {0};
    is_int(read_range(log, head, LLONG_MAX, 100, &s), 0, "the uncommitted event is not read");
    long long now_head = -1;
    is_int(eventlog_bounds(log, &now_head, &pruned), 0, "bounds are read");
    is_int(now_head, head, "the head does not show it");

    pgtest_must(writer, "COMMIT");
    PGresult *res;
    bool second_ok = true;
    while ((res = PQgetResult(second))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            diag("second writer: %s", PQresultErrorMessage(res));
            second_ok = false;
        }
        PQclear(res);
    }
    ok(second_ok, "the second writer's INSERT completes after the first commits");
    ok(readable_within(fd, WAKE_WITHIN_MS), "the commits wake the log");
    int failures = 0;
    ok(changed_within(log, WAKE_WITHIN_MS, &failures), "and are reported");
    is_int(read_range(log, head, LLONG_MAX, 100, &s), 2, "both events are read");
    if (s.n == 2) {
        is_int(s.id[0], head + 1, "the first writer's event has the next id");
        is_int(s.id[1], head + 2, "the second's the one after it");
        char *first = pgtest_text(peek, "SELECT id FROM orders WHERE customer = 'First'");
        char *second_id = pgtest_text(peek, "SELECT id FROM orders WHERE customer = 'Second'");
        ok(first && second_id && strcmp(s.order_id[0], first) == 0
           && strcmp(s.order_id[1], second_id) == 0,
           "in commit order: the first writer's order, then the second's (%s, %s)",
           s.order_id[0], s.order_id[1]);
        free(first);
        free(second_id);
    }
    seen_free(&s);
    PQfinish(second);
}

/* The server drops the log's connection (pg_terminate_backend, as a
 * restart or a network cut would). The old descriptor wakes the hub, the
 * next calls fail until a new connection is made, and the new one counts
 * as a change (its LISTEN missed everything meanwhile), with a new wake
 * descriptor. */
static void test_terminated(struct eventlog *log)
{
    bool renewed, changed = false;
    int old_fd = eventlog_wake_fd(log, &renewed);
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    long long head = -1, pruned;
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds are read");
    is_int(pgtest_int(peek, "SELECT count(*) " PGTEST_SERVICE_BACKENDS), 1,
           "the log has one connection of the service's");

    is_int(pgtest_int(peek, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                            PGTEST_SERVICE_BACKENDS), 1, "it is terminated");
    long long left = 1;
    for (int i = 0; i < 250 && left; i++) {
        left = pgtest_int(peek, "SELECT count(*) " PGTEST_SERVICE_BACKENDS);
        if (left)
            usleep(10000);
    }
    is_int(left, 0, "and gone");
    ok(readable_within(old_fd, WAKE_WITHIN_MS), "the dropped connection wakes the descriptor");

    /* Committed while the log has no connection: no NOTIFY reaches it. */
    pgtest_must(writer, "UPDATE orders SET note = 'while down' WHERE id = 'ord_00001'");

    int failures = 0;
    long long t0 = clock_monotonic_ms();
    bool noticed = changed_within(log, 3000, &failures);
    ok(noticed, "once reconnected, eventlog_changed reports a change (after %lld ms)",
       clock_monotonic_ms() - t0);
    /* The server answers: the first call finds the connection closed and
     * makes another at once, rather than failing until the next poll. */
    is_int(failures, 0, "the call that found the connection closed reconnected at once");
    int fd = eventlog_wake_fd(log, &renewed);
    ok(fd >= 0 && renewed, "the wake descriptor is renewed (fd %d, was %d)", fd, old_fd);
    fd = eventlog_wake_fd(log, &renewed);
    ok(fd >= 0 && !renewed, "and reported renewed once");
    is_int(pgtest_int(peek, "SELECT count(*) " PGTEST_SERVICE_BACKENDS), 1,
           "the log has a connection again");

    struct seen s = {0};
    is_int(read_range(log, head, LLONG_MAX, 100, &s), 1, "the event committed meanwhile is read");
    if (s.n == 1) {
        is_int(s.id[0], head + 1, "with the next id");
        ok(strstr(s.data[0], "while down") != NULL, "it is the update made while down");
    }
    seen_free(&s);

    /* The new connection listens. */
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    pgtest_must(writer, "UPDATE orders SET note = 'after' WHERE id = 'ord_00001'");
    ok(readable_within(fd, WAKE_WITHIN_MS), "a commit wakes the new descriptor");
    is_int(eventlog_changed(log, &changed), 0, "eventlog_changed answers");
    ok(changed, "and says changed");
}

static void test_pruned_through(struct eventlog *log)
{
    long long head = -1, pruned = -1, head_before = -1;
    is_int(eventlog_bounds(log, &head_before, &pruned), 0, "bounds are read");
    is_int(pruned, 0, "nothing is pruned yet");
    pgtest_must(writer, "UPDATE event_log_state SET pruned_through = 3");
    is_int(eventlog_bounds(log, &head, &pruned), 0, "bounds are read");
    is_int(pruned, 3, "pruned_through follows event_log_state");
    is_int(head, head_before, "the head does not move with it");
}

int main(void)
{
    const char *url = pgtest_url();
    writer = pgtest_connect(url, "eventlog_pg_test");
    peek = pgtest_connect(url, "eventlog_pg_test_peek");
    struct config cfg;
    pgtest_setup(&cfg, url, writer);
    char err[256];
    struct eventlog *log = eventlog_open(&cfg, err, sizeof err);
    if (!log)
        pgtest_bail("eventlog_open: %s", err);

    test_empty(log);
    test_wake_and_read(log);
    test_missed_notification(log);
    test_uncommitted(log, url);
    test_terminated(log);
    test_pruned_through(log);

    eventlog_close(log);
    PQfinish(peek);
    PQfinish(writer);
    return done_testing();
}
