/* What a storage backend implements: the functions of store.h and
 * eventlog.h, as a table each. store.c and eventlog.c choose the table from
 * the configuration (ORDERS_DB's form) and call through it, so that the
 * routes, the group commit and the hub never know which backend runs.
 * Each function has the contract of its namesake in store.h or eventlog.h.
 * An implementation's handles begin with struct store or struct eventlog,
 * so that the dispatchers can reach the table. */
#ifndef ORDERS_STORE_BACKEND_H
#define ORDERS_STORE_BACKEND_H

#include "eventlog.h"
#include "store.h"

struct store {
    const struct store_ops *ops;
};

struct eventlog {
    const struct eventlog_ops *ops;
};

struct store_ops {
    const char *name;       /* "sqlite", "postgresql": /health's backend */
    int (*migrate)(const struct config *cfg, bool at_start, char *err, size_t errlen);
    struct store *(*open)(const struct config *cfg, char *err, size_t errlen);
    void (*close)(struct store *s);
    int (*get)(struct store *s, const char *id, struct order_doc *doc, struct buf *out,
               struct error *err);
    int (*list)(struct store *s, const char *status, long long after_seq, int limit,
                struct buf *out, struct error *err);
    int (*write_begin)(struct store *s, long long deadline_ms, struct error *err);
    int (*write_commit)(struct store *s, struct error *err);
    void (*write_rollback)(struct store *s);
    bool (*write_blocked)(struct store *s);
    bool (*write_open)(struct store *s);
    int (*savepoint)(struct store *s, struct error *err);
    int (*savepoint_release)(struct store *s, struct error *err);
    int (*savepoint_undo)(struct store *s, struct error *err);
    int (*create)(struct store *s, const struct order_input *in, const char *idempotency_key,
                  const char *body_sha256, struct order_doc *doc, struct buf *out,
                  struct error *err);
    int (*patch)(struct store *s, const char *id, const struct order_input *in,
                 const char *if_match, struct order_doc *doc, struct buf *out,
                 struct error *err);
    int (*delete)(struct store *s, const char *id, const char *if_match, struct error *err);
    int (*oldest)(struct store *s, long long *oldest, struct error *err);
    int (*events)(struct store *s, long long after, int limit, struct buf *out,
                  struct error *err);
    int (*head)(struct store *s, long long *head, struct error *err);
    long long (*prune)(struct store *s, long long retain, struct error *err);
    int (*checkpoint)(struct store *s, struct error *err);
};

struct eventlog_ops {
    struct eventlog *(*open)(const struct config *cfg, char *err, size_t errlen);
    void (*close)(struct eventlog *log);
    int (*wake_fd)(struct eventlog *log, bool *renewed);
    int (*changed)(struct eventlog *log, bool *changed);
    int (*bounds)(struct eventlog *log, long long *head, long long *pruned_through);
    int (*read)(struct eventlog *log, long long after, long long upto, int limit,
                void (*fn)(void *arg, const struct event *ev), void *arg);
};

extern const struct store_ops sqlite_store_ops;
extern const struct eventlog_ops sqlite_eventlog_ops;
#ifdef HAVE_POSTGRESQL
extern const struct store_ops pg_store_ops;
extern const struct eventlog_ops pg_eventlog_ops;
#endif

#endif
