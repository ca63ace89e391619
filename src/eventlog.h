/* Reading the event log for the stream hub: noticing commits from any
 * connection of any process or host (SQLite: PRAGMA data_version, polled;
 * PostgreSQL: LISTEN, with polling as the fallback), and reading events by
 * id range with their SSE data already made. One connection, one thread.
 * The backend is the one ORDERS_DB names (store_backend.h). */
#ifndef ORDERS_EVENTLOG_H
#define ORDERS_EVENTLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct eventlog;

struct event {
    long long id;
    const char *type;       /* order.created … */
    const char *order_id;
    const char *data;       /* {"type","id","patch","ts"}, compact JSON */
};

/* Returns NULL with one line in err. Free with eventlog_close(). */
struct eventlog *eventlog_open(const struct config *cfg, char *err, size_t errlen);
void eventlog_close(struct eventlog *log);

/* A descriptor that becomes readable when the log may have changed, for
 * the hub's epoll, or -1 when only polling tells. After a reconnection it
 * is a new socket (*renewed set once), whatever its number: ask again
 * after each call below. */
int eventlog_wake_fd(struct eventlog *log, bool *renewed);

/* Sets *changed when any other connection committed since the last call,
 * and also when a read of this log (eventlog_read, eventlog_bounds) failed
 * since then: a change stays reported until the reads after it succeed.
 * So the caller needs no bookkeeping of its own for a failed read (busy,
 * I/O, no memory): call this before each poll, and whenever it says
 * changed, read from the last event it handed on, as after any commit.
 * Returns 0, or -1 when the database did not answer (the change is then
 * still reported by the next call that succeeds). */
int eventlog_changed(struct eventlog *log, bool *changed);

/* The newest event id ever written and the id through which the log has
 * been pruned. */
int eventlog_bounds(struct eventlog *log, long long *head, long long *pruned_through);

/* Calls fn for each event with after < id <= upto, oldest first, at most
 * limit of them. The event's strings live until fn returns. Returns the
 * number read, or -1. */
int eventlog_read(struct eventlog *log, long long after, long long upto, int limit,
                  void (*fn)(void *arg, const struct event *ev), void *arg);

#endif
