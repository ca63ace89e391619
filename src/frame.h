/* Events framed once and shared by every stream that sends them.
 *
 * A frame is one event as SSE text ("id:", "event:", "data:" and the blank
 * line), made once per process however many streams send it. Streams hold
 * references to frames instead of copies, so a burst costs its size once,
 * not once per stream.
 *
 * The window is the tail of the event log held as frames: every event with
 * base_id < id <= its newest id, oldest first, numbered by a sequence number
 * that only grows. A stream positioned inside the window sends from it; one
 * below it reads from the table. Its bytes are bounded by the hub, which
 * evicts from the old end. Both are used by the hub thread only. */
#ifndef ORDERS_FRAME_H
#define ORDERS_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct frame {
    long long id;
    unsigned refs;
    size_t len;                 /* bytes of text, without the NUL */
    const char *type;           /* in the same allocation, after text */
    const char *order_id;
    char text[];
};

/* Frames an event. Returns it with one reference, or NULL when out of
 * memory. */
struct frame *frame_new(long long id, const char *type, const char *order_id, const char *data);
struct frame *frame_ref(struct frame *f);
/* Drops a reference; the last one frees the frame. NULL is ignored. */
void frame_unref(struct frame *f);

struct window {
    struct frame **ring;        /* cap slots, cap a power of two */
    size_t cap;
    uint64_t lo, hi;            /* the frames are numbered lo .. hi-1 */
    size_t bytes;               /* text bytes of the frames held */
    long long base_id;          /* every event after it, up to the newest frame, is held */
};

void window_init(struct window *w, long long base_id);
/* Drops every frame; the window is empty and may be initialised again. */
void window_free(struct window *w);

/* Appends f, whose id must be greater than the newest one's, taking over the
 * caller's reference. Returns -1 (the caller keeps its reference) when out
 * of memory. */
int window_push(struct window *w, struct frame *f);

/* The frame numbered seq, or NULL when it is not held. */
struct frame *window_at(const struct window *w, uint64_t seq);

/* The number of the first frame with an id greater than after_id (hi when
 * there is none). after_id must be at least base_id. */
uint64_t window_seek(const struct window *w, long long after_id);

/* Drops the frames numbered below seq; base_id becomes the id of the last
 * one dropped. */
void window_drop_before(struct window *w, uint64_t seq);

/* The newest id the window accounts for: its newest frame's, else base_id. */
long long window_head(const struct window *w);

#endif
