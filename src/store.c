/* The store's calls, passed on to the backend that ORDERS_DB chose. */
#include "store.h"

#include <stdio.h>

#include "store_backend.h"

/* The backend's table, or NULL with err set. */
static const struct store_ops *ops_for(const struct config *cfg, char *err, size_t errlen)
{
    switch (cfg->backend) {
    case BACKEND_SQLITE:
        return &sqlite_store_ops;
    case BACKEND_POSTGRESQL:
#ifdef HAVE_POSTGRESQL
        return &pg_store_ops;
#else
        break;      /* config_load() refuses the URI */
#endif
    }
    snprintf(err, errlen, "this orders.fcgi was built without the backend ORDERS_DB names");
    return NULL;
}

int store_migrate(const struct config *cfg, bool at_start, char *err, size_t errlen)
{
    const struct store_ops *ops = ops_for(cfg, err, errlen);
    return ops ? ops->migrate(cfg, at_start, err, errlen) : -1;
}

struct store *store_open(const struct config *cfg, char *err, size_t errlen)
{
    const struct store_ops *ops = ops_for(cfg, err, errlen);
    return ops ? ops->open(cfg, err, errlen) : NULL;
}

void store_close(struct store *s)
{
    if (s)
        s->ops->close(s);
}

const char *store_backend_name(const struct store *s)
{
    return s->ops->name;
}

int store_get(struct store *s, const char *id, struct order_doc *doc, struct buf *out,
              struct error *err)
{
    return s->ops->get(s, id, doc, out, err);
}

int store_list(struct store *s, const char *status, long long after_seq, int limit,
               struct buf *out, struct error *err)
{
    return s->ops->list(s, status, after_seq, limit, out, err);
}

int store_write_begin(struct store *s, long long deadline_ms, struct error *err)
{
    return s->ops->write_begin(s, deadline_ms, err);
}

int store_write_commit(struct store *s, struct error *err)
{
    return s->ops->write_commit(s, err);
}

void store_write_rollback(struct store *s)
{
    s->ops->write_rollback(s);
}

bool store_write_blocked(struct store *s)
{
    return s->ops->write_blocked(s);
}

bool store_write_open(struct store *s)
{
    return s->ops->write_open(s);
}

int store_savepoint(struct store *s, struct error *err)
{
    return s->ops->savepoint(s, err);
}

int store_savepoint_release(struct store *s, struct error *err)
{
    return s->ops->savepoint_release(s, err);
}

int store_savepoint_undo(struct store *s, struct error *err)
{
    return s->ops->savepoint_undo(s, err);
}

int store_create(struct store *s, const struct order_input *in, const char *idempotency_key,
                 const char *body_sha256, struct order_doc *doc, struct buf *out,
                 struct error *err)
{
    return s->ops->create(s, in, idempotency_key, body_sha256, doc, out, err);
}

int store_patch(struct store *s, const char *id, const struct order_input *in,
                const char *if_match, struct order_doc *doc, struct buf *out, struct error *err)
{
    return s->ops->patch(s, id, in, if_match, doc, out, err);
}

int store_delete(struct store *s, const char *id, const char *if_match, struct error *err)
{
    return s->ops->delete(s, id, if_match, err);
}

int store_oldest(struct store *s, long long *oldest, struct error *err)
{
    return s->ops->oldest(s, oldest, err);
}

int store_events(struct store *s, long long after, int limit, struct buf *out, struct error *err)
{
    return s->ops->events(s, after, limit, out, err);
}

int store_head(struct store *s, long long *head, struct error *err)
{
    return s->ops->head(s, head, err);
}

long long store_prune(struct store *s, long long retain, struct error *err)
{
    return s->ops->prune(s, retain, err);
}

int store_checkpoint(struct store *s, struct error *err)
{
    return s->ops->checkpoint(s, err);
}
