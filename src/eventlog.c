/* The event log's calls, passed on to the backend that ORDERS_DB chose. */
#include "eventlog.h"

#include <stdio.h>

#include "store_backend.h"

struct eventlog *eventlog_open(const struct config *cfg, char *err, size_t errlen)
{
    switch (cfg->backend) {
    case BACKEND_SQLITE:
        return sqlite_eventlog_ops.open(cfg, err, errlen);
    case BACKEND_POSTGRESQL:
#ifdef HAVE_POSTGRESQL
        return pg_eventlog_ops.open(cfg, err, errlen);
#else
        break;      /* config_load() refuses the URI */
#endif
    }
    snprintf(err, errlen, "this orders.fcgi was built without the backend ORDERS_DB names");
    return NULL;
}

void eventlog_close(struct eventlog *log)
{
    if (log)
        log->ops->close(log);
}

int eventlog_wake_fd(struct eventlog *log, bool *renewed)
{
    return log->ops->wake_fd(log, renewed);
}

int eventlog_changed(struct eventlog *log, bool *changed)
{
    return log->ops->changed(log, changed);
}

int eventlog_bounds(struct eventlog *log, long long *head, long long *pruned_through)
{
    return log->ops->bounds(log, head, pruned_through);
}

int eventlog_read(struct eventlog *log, long long after, long long upto, int limit,
                  void (*fn)(void *arg, const struct event *ev), void *arg)
{
    return log->ops->read(log, after, upto, limit, fn, arg);
}
