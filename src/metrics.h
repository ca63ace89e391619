/* Prometheus metrics for the whole service, whichever process answers the
 * scrape (SPEC section 2, GET /metrics).
 *
 * The processes that serve one database share a small file beside it,
 * <ORDERS_DB>-metrics, mapped into each of them: a header, one "retired"
 * slot, and METRICS_SLOTS process slots. A process claims a free slot at
 * start (under flock) and counts into it with relaxed atomic adds: no lock
 * and no system call on the hot path, from any thread. A clean exit folds
 * its counts into the retired slot and frees its slot; a scrape, under
 * flock, first folds the slots of processes that are gone (killed,
 * crashed: kill(pid, 0) fails, or /proc start time differs from the one
 * recorded, so a reused pid is told apart), then sums retired + live slots.
 * So counters never go backwards when a process exits, however it exits.
 * Gauges (streams open) count live slots only.
 *
 * Every label set is fixed, so the file has a fixed layout. A NULL
 * struct metrics is allowed everywhere and counts nothing. */
#ifndef ORDERS_METRICS_H
#define ORDERS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_SLOTS 256

/* The method label: the API's methods, then anything else. */
enum metrics_method {
    MM_GET, MM_POST, MM_PATCH, MM_DELETE, MM_OPTIONS, MM_OTHER, MM_COUNT
};

/* The route label: the pattern, not the path. */
enum metrics_route {
    MR_ORDERS, MR_ORDER, MR_EVENTS, MR_STREAM, MR_HEALTH, MR_METRICS, MR_UNMATCHED, MR_COUNT
};

/* Why a stream ended. */
enum metrics_close_reason {
    MC_CLIENT_GONE,     /* EOF or a failed write: the web server closed the connection */
    MC_WRITE_TIMEOUT,   /* bytes waited ORDERS_WRITE_TIMEOUT_S unread */
    MC_TOO_FAR_BEHIND,  /* never, today: a stream that falls behind reads from the
                         * table instead (hub.c: demote); one that stops reading
                         * ends as MC_WRITE_TIMEOUT */
    MC_MAX_LIFE,        /* ORDERS_STREAM_MAX_S */
    MC_SHUTDOWN,        /* SIGTERM */
    MC_ERROR,           /* the hub could not set the stream up (epoll), or the web
                         * server sent more request input than a stream takes */
    MC_COUNT
};

/* Plain counters. */
enum metrics_counter {
    MX_STREAMS_OPENED,
    MX_EVENTS_DELIVERED,    /* log events queued to a stream, live or replayed */
    MX_EVENTS_REPLAYED,     /* of those, read from the table for that stream */
    MX_DB_LOCK_TIMEOUTS,    /* writes refused 503 for want of the database lock */
    MX_WRITE_GROUPS,        /* group commits that answered a write 2xx */
    MX_WRITES_COMMITTED,    /* writes answered 2xx by them */
    MX_COUNT
};

struct metrics;

/* Maps path (created with mode when missing) and claims a slot for this
 * process. Returns NULL with one line in err. With every slot taken the
 * process counts into memory of its own, says so on stderr, and its counts
 * are not shown. */
struct metrics *metrics_open(const char *path, unsigned mode, char *err, size_t errlen);

/* Folds this process's counts into the retired slot, frees its slot and
 * unmaps. Call once nothing counts any more. NULL is fine. */
void metrics_close(struct metrics *m);

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n);
void metrics_stream_opened(struct metrics *m);
void metrics_stream_closed(struct metrics *m, enum metrics_close_reason why);

/* One answered request: method, route, HTTP status and how long it took. */
void metrics_request(struct metrics *m, enum metrics_method method, enum metrics_route route,
                     int status, long long duration_ns);

/* What the scrape adds from the database. */
struct metrics_db {
    long long head_id;          /* newest event id ever given */
    long long oldest_id;        /* oldest event kept; 0 when the log is empty */
};

/* Sums every process's counts (folding the slots of dead processes first)
 * and writes the text exposition format 0.0.4 into out. Returns 0, or -1
 * when the file could not be locked. */
int metrics_render(struct metrics *m, const struct metrics_db *db, struct buf *out);

/* The sums that metrics_render shows, for the unit test. */
struct metrics_totals {
    uint64_t counter[MX_COUNT];
    uint64_t closed[MC_COUNT];
    uint64_t requests;          /* over every label */
    int64_t streams_open;       /* live processes only */
    long processes;
};
int metrics_totals(struct metrics *m, struct metrics_totals *t);

#endif
