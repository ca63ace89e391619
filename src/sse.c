#include "sse.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *const event_types[] = {"order.created", "order.updated", "order.deleted"};
#define EVENT_TYPE_COUNT (sizeof event_types / sizeof event_types[0])

/* An event name or id line must not break the framing, whatever a person
 * wrote into the table with sqlite3. */
static void append_line_safe(struct buf *out, const char *s)
{
    for (; *s; s++)
        buf_append(out, (*s == '\n' || *s == '\r') ? " " : s, 1);
}

void sse_event(struct buf *out, long long id, const char *name, const char *data)
{
    if (id >= 0)
        buf_printf(out, "id: %lld\n", id);
    buf_puts(out, "event: ");
    append_line_safe(out, name);
    buf_puts(out, "\ndata: ");
    append_line_safe(out, data);
    buf_puts(out, "\n\n");
}

int sse_parse_position(const char *s, long long *pos)
{
    size_t len = strlen(s);
    if (len == 0 || strspn(s, "0123456789") != len)
        return -1;
    /* A position past the largest id is still a non-negative integer: it
     * is newer than the head, and gets a reset rather than a 400. */
    errno = 0;
    *pos = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        *pos = LLONG_MAX;
    return 0;
}

static int type_bit(const char *s, size_t len)
{
    for (size_t i = 0; i < EVENT_TYPE_COUNT; i++)
        if (strlen(event_types[i]) == len && memcmp(event_types[i], s, len) == 0)
            return 1 << i;
    return 0;
}

/* Calls fn for each non-empty item of a comma list; stops at the first
 * non-zero result and returns it. */
static int each_item(const char *list, int (*fn)(const char *s, size_t len, void *arg), void *arg)
{
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len) {
            int rc = fn(p, len, arg);
            if (rc)
                return rc;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int add_type(const char *s, size_t len, void *arg)
{
    struct sse_filter *f = arg;
    int bit = type_bit(s, len);
    if (!bit)
        return -1;
    f->types |= (unsigned)bit;
    return 0;
}

static int add_id(const char *s, size_t len, void *arg)
{
    struct sse_filter *f = arg;
    if (f->id_count == SSE_IDS_MAX)
        return -1;
    char **grown = realloc(f->ids, (f->id_count + 1) * sizeof *grown);
    if (!grown)
        return -2;
    f->ids = grown;
    if (!(f->ids[f->id_count] = strndup(s, len)))
        return -2;
    f->id_count++;
    return 0;
}

int sse_filter_parse(const char *types, const char *ids, struct sse_filter *f,
                     struct error *err)
{
    memset(f, 0, sizeof *f);
    if (types && each_item(types, add_type, f))
        return error_set(err, ERR_INVALID_PARAMETER,
                         "types must list order.created, order.updated or order.deleted");
    int rc = ids ? each_item(ids, add_id, f) : 0;
    if (rc) {
        sse_filter_free(f);
        if (rc == -2)
            return error_set(err, ERR_INTERNAL, "out of memory");
        return error_set(err, ERR_INVALID_PARAMETER, "ids may list at most %d orders",
                         SSE_IDS_MAX);
    }
    return 0;
}

void sse_filter_free(struct sse_filter *f)
{
    for (size_t i = 0; i < f->id_count; i++)
        free(f->ids[i]);
    free(f->ids);
    memset(f, 0, sizeof *f);
}

bool sse_filter_match(const struct sse_filter *f, const char *type, const char *order_id)
{
    if (f->types && !(f->types & (unsigned)type_bit(type, strlen(type))))
        return false;
    if (!f->ids)
        return true;
    for (size_t i = 0; i < f->id_count; i++)
        if (strcmp(f->ids[i], order_id) == 0)
            return true;
    return false;
}
