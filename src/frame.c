#include "frame.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sse.h"

#define WINDOW_MIN_CAP 64

struct frame *frame_new(long long id, const char *type, const char *order_id, const char *data)
{
    struct buf text = BUF_INIT;
    sse_event(&text, id, type, data);
    size_t type_len = strlen(type), order_len = strlen(order_id);
    struct frame *f = NULL;
    if (!buf_failed(&text))
        f = malloc(sizeof *f + text.len + 1 + type_len + 1 + order_len + 1);
    if (f) {
        char *p = f->text;
        memcpy(p, buf_str(&text), text.len + 1);
        p += text.len + 1;
        memcpy(p, type, type_len + 1);
        f->type = p;
        p += type_len + 1;
        memcpy(p, order_id, order_len + 1);
        f->order_id = p;
        f->id = id;
        f->refs = 1;
        f->len = text.len;
    }
    buf_free(&text);
    return f;
}

struct frame *frame_ref(struct frame *f)
{
    assert(f->refs > 0);
    f->refs++;
    return f;
}

void frame_unref(struct frame *f)
{
    if (!f)
        return;
    assert(f->refs > 0);
    if (--f->refs == 0)
        free(f);
}

void window_init(struct window *w, long long base_id)
{
    memset(w, 0, sizeof *w);
    w->base_id = base_id;
}

void window_free(struct window *w)
{
    window_drop_before(w, w->hi);
    free(w->ring);
    w->ring = NULL;
    w->cap = 0;
}

static struct frame **slot(const struct window *w, uint64_t seq)
{
    return &w->ring[seq & (w->cap - 1)];
}

/* Doubles the ring, keeping every frame at its number. */
static int grow(struct window *w)
{
    size_t cap = w->cap ? w->cap * 2 : WINDOW_MIN_CAP;
    struct frame **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -1;
    for (uint64_t seq = w->lo; seq < w->hi; seq++)
        ring[seq & (cap - 1)] = *slot(w, seq);
    free(w->ring);
    w->ring = ring;
    w->cap = cap;
    return 0;
}

int window_push(struct window *w, struct frame *f)
{
    assert(f->id > window_head(w));
    if (w->hi - w->lo == w->cap && grow(w) != 0)
        return -1;
    *slot(w, w->hi++) = f;
    w->bytes += f->len;
    return 0;
}

struct frame *window_at(const struct window *w, uint64_t seq)
{
    return seq >= w->lo && seq < w->hi ? *slot(w, seq) : NULL;
}

uint64_t window_seek(const struct window *w, long long after_id)
{
    assert(after_id >= w->base_id);
    uint64_t lo = w->lo, hi = w->hi;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((*slot(w, mid))->id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void window_drop_before(struct window *w, uint64_t seq)
{
    while (w->lo < seq && w->lo < w->hi) {
        struct frame *f = *slot(w, w->lo++);
        w->bytes -= f->len;
        w->base_id = f->id;
        frame_unref(f);
    }
}

long long window_head(const struct window *w)
{
    return w->hi > w->lo ? (*slot(w, w->hi - 1))->id : w->base_id;
}
