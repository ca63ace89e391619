/* Server-Sent Events as SPEC section 4 writes them: event framing, the
 * client's position (Last-Event-ID), and the types= and ids= filters.
 * Pure logic, unit-tested. */
#ifndef ORDERS_SSE_H
#define ORDERS_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

#define SSE_IDS_MAX 100

struct sse_filter {
    unsigned types;             /* bit per event type; 0 lets every type pass */
    char **ids;                 /* order ids, owned; NULL lets every order pass */
    size_t id_count;
};

/* Appends one event: "id: N\n" (only when id >= 0), "event: NAME\n",
 * "data: DATA\n", and the blank line that ends it. data is one line of JSON. */
void sse_event(struct buf *out, long long id, const char *name, const char *data);

/* Parses a position: a non-negative decimal integer, nothing else. */
int sse_parse_position(const char *s, long long *pos);

/* Fills f from the types= and ids= parameters (either may be NULL). Returns
 * -1 with err set (invalid_parameter) on an unknown type or too many ids.
 * Release with sse_filter_free(). */
int sse_filter_parse(const char *types, const char *ids, struct sse_filter *f,
                     struct error *err);
void sse_filter_free(struct sse_filter *f);
bool sse_filter_match(const struct sse_filter *f, const char *type, const char *order_id);

#endif
