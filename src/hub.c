#include "hub.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "eventlog.h"
#include "fcgi_record.h"
#include "frame.h"
#include "http.h"
#include "outq.h"

#define EPOLL_BATCH 256
#define READ_BATCH 512          /* events read from the table at a time */
#define CATCHUP_BATCH 256       /* replayed per stream per loop */
#define STREAM_BUDGET (64 * 1024)       /* own bytes a stream queues before it waits */
#define WINDOW_BUDGET (8 * 1024 * 1024) /* frames held for the live streams, shared */
#define PROGRESS_BYTES (256 * 1024)     /* written while blocked: not stalled */
#define READ_LIMIT (64 * 1024)  /* what the web server may send after the request */
#define TICK_MS 200
#define GZIP_WINDOW_BITS (10 + 16)      /* 1 KiB window; +16 writes a gzip wrapper */
#define GZIP_MEM_LEVEL 2

/* A stream is live while its position is inside the hub's window: it sends
 * shared frames from there. Otherwise it replays from the table, into its
 * own bytes, a budget at a time, until it reaches the window. */
struct stream {
    int fd;
    int request_id;
    long long pos;              /* id of the last event queued or passed over */
    bool live;
    uint64_t seq;               /* live: number of the next frame to look at */
    size_t off;                 /* live: bytes of that frame already queued */
    bool end_wanted;            /* end after the current event */
    bool ending;                /* the end records are queued; close when drained */
    enum metrics_close_reason end_reason;   /* why the end was wanted */
    bool want_write;            /* EPOLLOUT is armed */
    struct sse_filter filter;
    z_stream *zs;               /* gzip state, NULL for identity */
    struct outq q;
    long long last_write_ms;    /* for pings */
    long long stalled_ms;       /* since when bytes wait without progress, or 0 */
    size_t progress;            /* bytes written since stalled_ms */
    long long end_ms;           /* ORDERS_STREAM_MAX_S, jittered */
    long long end_deadline_ms;  /* once ending: closed by then, drained or not */
    size_t read_bytes;          /* sent by the web server since the hand-over */
    struct stream *prev, *next;
};

/* A request handed over by a worker, waiting for the hub thread. */
struct adoption {
    struct stream *stream;
    long long position;
    struct buf headers;
    struct adoption *next;
};

struct hub {
    const struct config *cfg;
    struct metrics *metrics;
    struct eventlog *log;
    int epfd;
    int wakefd;                 /* eventfd: adoptions queued or a commit made */
    pthread_t thread;
    pthread_mutex_t lock;       /* guards adoptions */
    struct adoption *adoptions;
    atomic_long count;          /* open streams, adopted ones included */
    atomic_bool stopping;       /* hub_stop(): end every stream, then exit */
    atomic_bool based;          /* the window starts at the log's real head */
    struct window win;          /* the newest events, framed; its head is the hub's */
    bool backlog;               /* the table holds events the window had no room for */
    bool push_failed;           /* out of memory framing an event: read it again */
    struct stream *streams;
    long replaying;             /* streams that are not live: catch_up() has work */
    long long error_logged_ms;  /* log_hub_error */
    bool db_failing;            /* an outage of the database is logged */
    unsigned rand_state;
};

static void free_stream(struct stream *s)
{
    if (s->zs) {
        deflateEnd(s->zs);
        free(s->zs);
    }
    sse_filter_free(&s->filter);
    outq_free(&s->q);
    free(s);
}

static void close_stream(struct hub *hub, struct stream *s, enum metrics_close_reason why)
{
    metrics_stream_closed(hub->metrics, why);
    /* close() also takes the fd out of the epoll set. */
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (!s->live)
        hub->replaying--;
    free_stream(s);
    atomic_fetch_sub(&hub->count, 1);
}

static void arm_write(struct hub *hub, struct stream *s, bool on)
{
    if (s->want_write == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = s};
    if (epoll_ctl(hub->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
        s->want_write = on;
}

/* Failures of the hub's own machinery: at most one line per 10 s. */
static void log_hub_error(struct hub *hub, const char *what)
{
    long long now = clock_monotonic_ms();
    if (now - hub->error_logged_ms < 10000)
        return;
    hub->error_logged_ms = now;
    fprintf(stderr, "orders: stream hub: %s\n", what);
}

/* The database's: one line per outage, however long (the poll retries
 * every ORDERS_POLL_MS); db_answered() ends the outage. */
static void log_db_error(struct hub *hub, const char *what)
{
    if (hub->db_failing)
        return;
    hub->db_failing = true;
    fprintf(stderr, "orders: stream hub: %s; streams stay open and catch up later\n", what);
}

static void db_answered(struct hub *hub)
{
    hub->db_failing = false;
}

/* Appends response body bytes to the stream's own bytes, through gzip when
 * the stream has it; a sync flush after each event keeps the stream live. */
static void append_body(struct stream *s, const char *data, size_t len, int flush_mode)
{
    if (!s->zs) {
        fcgi_stdout(&s->q.own, s->request_id, data, len);
        return;
    }
    unsigned char chunk[4096];
    s->zs->next_in = (unsigned char *)data;
    s->zs->avail_in = (unsigned)len;
    do {
        s->zs->next_out = chunk;
        s->zs->avail_out = sizeof chunk;
        if (deflate(s->zs, flush_mode) == Z_STREAM_ERROR) {
            s->q.own.failed = true;
            return;
        }
        fcgi_stdout(&s->q.own, s->request_id, chunk, sizeof chunk - s->zs->avail_out);
    } while (s->zs->avail_out == 0);
}

static void append_event(struct stream *s, long long id, const char *name, const char *data)
{
    struct buf text = BUF_INIT;
    sse_event(&text, id, name, data);
    append_body(s, buf_str(&text), text.len, Z_SYNC_FLUSH);
    if (buf_failed(&text))
        s->q.own.failed = true;
    buf_free(&text);
}

/* Queues the end of the response, after the last complete event. */
static void queue_end(struct stream *s)
{
    assert(s->off == 0 && !s->ending);
    if (s->zs)
        append_body(s, "", 0, Z_FINISH);
    fcgi_end_request(&s->q.own, s->request_id);
    s->ending = true;
}

/* The stream has queued (or, filtered out, passed over) frame f. */
static void pass(struct stream *s, const struct frame *f)
{
    assert(f->id > s->pos);
    s->pos = f->id;
    s->seq++;
    s->off = 0;
}

/* Queues what a live stream may send now: pieces of the window's frames
 * for identity (shared, no copy), compressed copies for gzip, within the
 * stream's budget; then the end, when one is wanted. */
static void fill(struct hub *hub, struct stream *s)
{
    while (s->live && !s->ending) {
        if (s->end_wanted && s->off == 0)
            break;
        struct frame *f = window_at(&hub->win, s->seq);
        if (!f)
            break;
        if (f->id <= s->pos) {
            s->seq++;   /* joined ahead of the window (begin_stream): already had it */
            continue;
        }
        if (s->off == 0 && !sse_filter_match(&s->filter, f->type, f->order_id)) {
            pass(s, f);
            continue;
        }
        if (s->zs) {
            if (outq_own_unsent(&s->q) >= STREAM_BUDGET)
                break;
            append_body(s, f->text, f->len, Z_SYNC_FLUSH);
            pass(s, f);
            metrics_add(hub->metrics, MX_EVENTS_DELIVERED, 1);
            continue;
        }
        size_t n = outq_take(&s->q, s->request_id, f, s->off);
        if (n == 0)
            break;
        s->off += n;
        if (s->off == f->len) {
            pass(s, f);
            metrics_add(hub->metrics, MX_EVENTS_DELIVERED, 1);
        }
    }
    if (s->end_wanted && !s->ending && s->off == 0)
        queue_end(s);
}

/* Writes took n bytes. A stream that moves PROGRESS_BYTES within each
 * ORDERS_WRITE_TIMEOUT_S while bytes wait for it is not stalled, however
 * often it blocks; one whose client trickles (a byte now and then, or a TCP
 * zero-window probe's worth) is, and is closed. */
static void note_progress(struct stream *s, size_t n, long long now)
{
    s->last_write_ms = now;
    if (!s->stalled_ms)
        return;
    s->progress += n;
    if (s->progress >= PROGRESS_BYTES) {
        s->stalled_ms = now;
        s->progress = 0;
    }
}

/* Queues what the stream may send and writes what its connection takes.
 * Returns -1 when the stream was closed. */
static int pump(struct hub *hub, struct stream *s, long long now)
{
    for (;;) {
        fill(hub, s);
        if (!outq_unsent(&s->q))
            break;
        bool blocked;
        ssize_t n = outq_write(&s->q, s->fd, &blocked);
        if (n < 0) {
            close_stream(hub, s, MC_CLIENT_GONE);   /* the web server went away, or no memory */
            return -1;
        }
        if (n > 0)
            note_progress(s, (size_t)n, now);
        if (blocked) {
            if (!s->stalled_ms) {
                s->stalled_ms = now;
                s->progress = 0;
            }
            arm_write(hub, s, true);
            return 0;
        }
    }
    s->stalled_ms = 0;
    arm_write(hub, s, false);
    if (s->ending) {
        close_stream(hub, s, s->end_reason);
        return -1;
    }
    return 0;
}

/* Sends a live stream from the window, after position pos. */
static void go_live(struct hub *hub, struct stream *s)
{
    assert(s->pos >= hub->win.base_id);
    if (!s->live)
        hub->replaying--;
    s->live = true;
    s->seq = window_seek(&hub->win, s->pos);
    s->off = 0;
}

/* A live stream that holds the full window back reads from the table
 * instead. What it has queued of a frame that spans records is finished
 * from its own bytes, so it still goes out as one whole event. */
static void demote(struct hub *hub, struct stream *s)
{
    if (s->off > 0) {
        struct frame *f = window_at(&hub->win, s->seq);
        assert(f);
        fcgi_stdout(&s->q.own, s->request_id, f->text + s->off, f->len - s->off);
        pass(s, f);
        metrics_add(hub->metrics, MX_EVENTS_DELIVERED, 1);
    }
    s->live = false;
    hub->replaying++;
}

/* Frames no live stream needs any more leave the window. When it is over
 * its budget, a blocked stream in the older half stops holding it: it
 * reads from the table at its own pace and the others go on. */
static void trim_window(struct hub *hub)
{
    struct window *w = &hub->win;
    bool full = w->bytes >= WINDOW_BUDGET;
    uint64_t half = w->lo + (w->hi - w->lo) / 2;
    uint64_t need = w->hi;
    for (struct stream *s = hub->streams; s; s = s->next) {
        if (!s->live)
            continue;
        if (full && s->stalled_ms && s->seq < half) {
            demote(hub, s);
            continue;
        }
        if (s->seq < need)
            need = s->seq;
    }
    window_drop_before(w, need);
}

static void push_frame(void *arg, const struct event *ev)
{
    struct hub *hub = arg;
    if (hub->push_failed)
        return;     /* read again from the last one held */
    struct frame *f = frame_new(ev->id, ev->type, ev->order_id, ev->data);
    if (!f || window_push(&hub->win, f) != 0) {
        frame_unref(f);
        hub->push_failed = true;
    }
}

/* With no stream open the hub reads nothing, and a first stream starts
 * from the current head. data_version is read first, so a commit made
 * between the two reads is either in the head or seen by the next poll. */
static void rebase(struct hub *hub)
{
    bool changed;
    long long head, pruned_through;
    if (eventlog_changed(hub->log, &changed) != 0
        || eventlog_bounds(hub->log, &head, &pruned_through) != 0) {
        log_db_error(hub, "the database did not answer");
        return;
    }
    db_answered(hub);
    window_free(&hub->win);
    window_init(&hub->win, head);
    hub->backlog = false;
    atomic_store(&hub->based, true);
}

/* Reads the events committed since the last look into the window, while
 * it has room, and sends them to the live streams that can take them. A
 * read that fails, or stops for room, is taken up again by the next poll
 * whatever data_version says. */
static void read_log(struct hub *hub, long long now)
{
    if (!hub->streams)
        return;
    bool changed;
    if (eventlog_changed(hub->log, &changed) != 0) {
        log_db_error(hub, "the database did not answer");
        return;
    }
    if (!changed && !hub->backlog) {
        db_answered(hub);
        return;
    }
    hub->backlog = true;
    while (hub->win.bytes < WINDOW_BUDGET) {
        hub->push_failed = false;
        int n = eventlog_read(hub->log, window_head(&hub->win), INT64_MAX, READ_BATCH, push_frame, hub);
        if (n < 0) {
            log_db_error(hub, "reading the event log failed");
            break;
        }
        if (hub->push_failed) {
            log_hub_error(hub, "out of memory framing events");
            break;
        }
        db_answered(hub);
        if (n < READ_BATCH) {
            hub->backlog = false;
            break;
        }
    }
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (s->live && !s->want_write)
            pump(hub, s, now);
    }
}

/* One stream's replay batch: it stops taking events once its budget is
 * queued, so that a burst costs each replaying stream one budget at most
 * (and one event more, however large). */
struct replay {
    struct stream *s;
    bool full;
    uint64_t sent;              /* events queued, for the metrics */
};

static void replay_one(void *arg, const struct event *ev)
{
    struct replay *r = arg;
    struct stream *s = r->s;
    if (r->full || outq_own_unsent(&s->q) >= STREAM_BUDGET) {
        r->full = true;
        return;
    }
    assert(ev->id > s->pos);
    if (sse_filter_match(&s->filter, ev->type, ev->order_id)) {
        append_event(s, ev->id, ev->type, ev->data);
        r->sent++;
    }
    s->pos = ev->id;
}

static void send_reset(struct hub *hub, struct stream *s, const char *reason)
{
    long long head = window_head(&hub->win);
    char data[128];
    snprintf(data, sizeof data, "{\"reason\":\"%s\",\"lastEventId\":%lld}", reason, head);
    append_event(s, head, "reset", data);
    s->pos = head;
    go_live(hub, s);
}

/* Replays a batch from the table to each stream below the window, up to
 * the window; a stream that reaches it goes live. Returns true when a
 * stream could take more right away. */
static bool catch_up(struct hub *hub, long long now)
{
    assert(hub->replaying >= 0);
    if (!hub->replaying)
        return false;
    bool more = false;
    long long newest, pruned_through = -1;  /* read once a pass, when a stream replays */
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (s->live || s->ending || outq_own_unsent(&s->q) >= STREAM_BUDGET)
            continue;
        long long upto = hub->win.base_id;
        /* The pruner may have passed a slow replay: say so, not skip. */
        if (pruned_through < 0 && eventlog_bounds(hub->log, &newest, &pruned_through) != 0) {
            log_db_error(hub, "reading the event log bounds failed");
            return false;
        }
        if (s->pos < pruned_through) {
            send_reset(hub, s, "history_truncated");
        } else if (s->pos < upto) {
            struct replay r = {s, false, 0};
            int n = eventlog_read(hub->log, s->pos, upto, CATCHUP_BATCH, replay_one, &r);
            metrics_add(hub->metrics, MX_EVENTS_DELIVERED, r.sent);
            metrics_add(hub->metrics, MX_EVENTS_REPLAYED, r.sent);
            if (n < 0) {
                log_db_error(hub, "replaying the event log failed");
                continue;
            }
            if (n < CATCHUP_BATCH && !r.full)
                s->pos = upto;  /* the table has nothing more up to the window */
        }
        if (!s->live && s->pos >= hub->win.base_id)
            go_live(hub, s);
        if (pump(hub, s, now) == 0 && !s->live && outq_own_unsent(&s->q) < STREAM_BUDGET)
            more = true;
    }
    return more;
}

/* Starts an adopted stream: headers, retry, connected, and where to begin. */
static void begin_stream(struct hub *hub, struct adoption *a, long long now)
{
    struct stream *s = a->stream;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s};
    metrics_stream_opened(hub->metrics);
    if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        close(s->fd);
        free_stream(s);
        atomic_fetch_sub(&hub->count, 1);
        metrics_stream_closed(hub->metrics, MC_ERROR);
        return;
    }
    s->next = hub->streams;
    if (s->next)
        s->next->prev = s;
    hub->streams = s;
    hub->replaying++;       /* until go_live() */

    struct buf head = BUF_INIT;
    buf_puts(&head, "Status: 200 OK\r\n"
                    "Content-Type: text/event-stream; charset=utf-8\r\n"
                    "Cache-Control: no-cache\r\n"
                    "X-Accel-Buffering: no\r\n");
    if (s->zs)
        buf_puts(&head, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
    buf_append(&head, buf_str(&a->headers), a->headers.len);
    buf_puts(&head, "\r\n");
    fcgi_stdout(&s->q.own, s->request_id, buf_str(&head), head.len);
    if (buf_failed(&head))
        s->q.own.failed = true;
    buf_free(&head);

    long long newest = window_head(&hub->win);
    char text[96];
    snprintf(text, sizeof text, "retry: %ld\n\n", hub->cfg->retry_ms);
    append_body(s, text, strlen(text), Z_NO_FLUSH);
    snprintf(text, sizeof text, "{\"message\":\"Connected to event stream\",\"lastEventId\":%lld}",
             newest);
    append_event(s, -1, "connected", text);

    long long table_head, pruned_through;
    if (eventlog_bounds(hub->log, &table_head, &pruned_through) != 0) {
        log_db_error(hub, "reading the event log bounds failed");
        table_head = newest;
        pruned_through = 0;
    }
    /* The window may not have read all of a burst yet: a position is judged
     * by the table's head, and one ahead of the window waits for it. */
    if (a->position < 0 || a->position == newest) {
        s->pos = newest;
        go_live(hub, s);
    } else if (a->position > (table_head > newest ? table_head : newest)) {
        send_reset(hub, s, "unknown_event_id");
    } else if (a->position < pruned_through) {
        send_reset(hub, s, "history_truncated");
    } else {
        s->pos = a->position;
        if (s->pos >= hub->win.base_id)
            go_live(hub, s);    /* else catch_up() replays from here */
    }
    s->last_write_ms = now;
    s->end_ms = now + (long long)(hub->cfg->stream_max_s * 1000.0
                                  * (0.8 + 0.2 * (double)rand_r(&hub->rand_state) / RAND_MAX));
    pump(hub, s, now);
}

static void take_adoptions(struct hub *hub, long long now)
{
    uint64_t count;
    if (read(hub->wakefd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_hub_error(hub, "reading the wake-up eventfd failed");
    pthread_mutex_lock(&hub->lock);
    struct adoption *list = hub->adoptions;
    hub->adoptions = NULL;
    pthread_mutex_unlock(&hub->lock);

    /* Oldest first, after the log has been read up to now. */
    struct adoption *reversed = NULL;
    while (list) {
        struct adoption *next = list->next;
        list->next = reversed;
        reversed = list;
        list = next;
    }
    if (!hub->streams)
        rebase(hub);
    else
        read_log(hub, now);
    while (reversed) {
        struct adoption *next = reversed->next;
        begin_stream(hub, reversed, now);
        buf_free(&reversed->headers);
        free(reversed);
        reversed = next;
    }
}

/* Asks a stream to end after its current event. */
static void want_end(struct hub *hub, struct stream *s, enum metrics_close_reason why,
                     long long now)
{
    if (s->end_wanted)
        return;
    s->end_wanted = true;
    s->end_reason = why;
    s->end_deadline_ms = now + hub->cfg->write_timeout_s * 1000;
    pump(hub, s, now);
}

/* Pings, write timeouts and the end of long-lived streams. */
static void tick(struct hub *hub, long long now)
{
    const struct config *cfg = hub->cfg;
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (s->stalled_ms && now - s->stalled_ms >= cfg->write_timeout_s * 1000) {
            close_stream(hub, s, MC_WRITE_TIMEOUT);
            continue;
        }
        if (s->end_wanted && now >= s->end_deadline_ms) {
            close_stream(hub, s, s->end_reason);
            continue;
        }
        if (s->end_wanted)
            continue;
        if (now >= s->end_ms) {
            want_end(hub, s, MC_MAX_LIFE, now);
        } else if (!outq_unsent(&s->q) && s->off == 0
                   && now - s->last_write_ms >= cfg->ping_s * 1000) {
            char data[48];
            snprintf(data, sizeof data, "{\"ts\":%lld}", clock_wall_ms());
            append_event(s, -1, "ping", data);
            pump(hub, s, now);
        }
    }
}

/* The web server never tells: a closed connection reads as EOF. What it
 * sends after the request (the empty FCGI_STDIN record; a stream request
 * has no body) is not needed and is dropped, up to READ_LIMIT. */
static void on_readable(struct hub *hub, struct stream *s)
{
    char scratch[512];
    for (;;) {
        ssize_t n = read(s->fd, scratch, sizeof scratch);
        if (n > 0) {
            s->read_bytes += (size_t)n;
            if (s->read_bytes > READ_LIMIT) {
                close_stream(hub, s, MC_ERROR);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    close_stream(hub, s, MC_CLIENT_GONE);
}

/* Ends every stream after its current event. */
static void end_all(struct hub *hub, long long now)
{
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        want_end(hub, s, MC_SHUTDOWN, now);
    }
}

/* Keeps the log's wake-up descriptor (PostgreSQL's LISTEN connection) in
 * the epoll set, with &hub->log as its epoll data. A lost connection's
 * socket is closed, which takes it out of the set by itself: it is never
 * removed here, since its number may already belong to a stream's socket.
 * A new connection's socket, whatever its number, is added. */
static void watch_log(struct hub *hub)
{
    bool renewed = false;
    int fd = eventlog_wake_fd(hub->log, &renewed);
    if (!renewed || fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &hub->log};
    if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        log_hub_error(hub, "cannot watch the event log's connection");
}

static void *hub_main(void *arg)
{
    struct hub *hub = arg;
    struct epoll_event events[EPOLL_BATCH];
    long long next_poll = 0, next_tick = 0;
    for (;;) {
        long long now = clock_monotonic_ms();
        long long wait = next_poll - now;
        if (next_tick - now < wait)
            wait = next_tick - now;
        int n = epoll_wait(hub->epfd, events, EPOLL_BATCH, wait > 0 ? (int)wait : 0);
        if (n < 0 && errno != EINTR)
            log_hub_error(hub, "epoll_wait failed");
        now = clock_monotonic_ms();
        bool woken = false, notified = false;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                woken = true;
                continue;
            }
            if (events[i].data.ptr == &hub->log) {
                notified = true;
                continue;
            }
            struct stream *s = events[i].data.ptr;
            /* EOF first: a stream closed here must not be written to. */
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                on_readable(hub, s);
                continue;
            }
            if (events[i].events & EPOLLOUT)
                pump(hub, s, now);
        }
        bool polled = woken || notified || now >= next_poll;
        if (woken) {
            take_adoptions(hub, now);       /* reads the log too */
            next_poll = now + hub->cfg->poll_ms;
        } else if (polled) {
            read_log(hub, now);
            next_poll = now + hub->cfg->poll_ms;
        }
        /* With no stream the log is not read, but its wake-ups must be
         * taken, or its readable socket would wake epoll_wait at once for
         * ever; the window starts over at the next stream (rebase). */
        if (notified && !hub->streams) {
            bool changed;
            if (eventlog_changed(hub->log, &changed) != 0)
                log_db_error(hub, "the database did not answer");
        }
        if (polled)
            watch_log(hub);
        /* Started while the database did not answer: no stream is taken
         * until the window starts at the real head. */
        if (polled && !atomic_load(&hub->based))
            rebase(hub);
        bool more = catch_up(hub, now);
        /* A pass over every stream: after a read of the log, or when the
         * window is full, not for each stream that could write again. */
        if (polled || more || hub->win.bytes >= WINDOW_BUDGET)
            trim_window(hub);
        if (more || (hub->backlog && hub->win.bytes < WINDOW_BUDGET))
            next_poll = now;    /* go round again without sleeping */
        if (now >= next_tick) {
            tick(hub, now);
            next_tick = now + TICK_MS;
        }
        if (atomic_load(&hub->stopping)) {
            end_all(hub, now);
            if (!hub->streams)
                break;
        }
    }
    return NULL;
}

static void wake(struct hub *hub)
{
    uint64_t one = 1;
    /* Only fails when the counter is full, and then the hub wakes anyway. */
    if (write(hub->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        fprintf(stderr, "orders: cannot wake the stream hub: %s\n", strerror(errno));
}

struct hub *hub_start(const struct config *cfg, struct metrics *metrics, char *err,
                      size_t errlen)
{
    struct hub *hub = calloc(1, sizeof *hub);
    if (!hub) {
        snprintf(err, errlen, "out of memory starting the stream hub");
        return NULL;
    }
    hub->cfg = cfg;
    hub->metrics = metrics;
    hub->epfd = -1;
    hub->wakefd = -1;
    hub->rand_state = (unsigned)getpid() ^ (unsigned)clock_monotonic_ms();
    long long head, pruned_through;
    bool changed;
    if (!(hub->log = eventlog_open(cfg, err, errlen)))
        goto fail;
    /* A PostgreSQL server may not answer yet: the hub starts anyway, and
     * takes streams once it has read the log's head (rebase). */
    if (eventlog_bounds(hub->log, &head, &pruned_through) == 0
        && eventlog_changed(hub->log, &changed) == 0) {
        window_init(&hub->win, head);
        atomic_store(&hub->based, true);
    } else {
        window_init(&hub->win, 0);
    }
    hub->epfd = epoll_create1(EPOLL_CLOEXEC);
    hub->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (hub->epfd < 0 || hub->wakefd < 0
        || epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->wakefd, &ev) != 0) {
        snprintf(err, errlen, "cannot set up epoll for the stream hub: %s", strerror(errno));
        goto fail;
    }
    watch_log(hub);
    if (pthread_mutex_init(&hub->lock, NULL) != 0
        || pthread_create(&hub->thread, NULL, hub_main, hub) != 0) {
        snprintf(err, errlen, "cannot start the stream hub thread");
        goto fail;
    }
    return hub;
fail:
    if (hub->epfd >= 0)
        close(hub->epfd);
    if (hub->wakefd >= 0)
        close(hub->wakefd);
    eventlog_close(hub->log);
    free(hub);
    return NULL;
}

static z_stream *new_gzip(void)
{
    z_stream *zs = calloc(1, sizeof *zs);
    if (zs && deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, GZIP_WINDOW_BITS,
                           GZIP_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(zs);
        return NULL;
    }
    return zs;
}

int hub_adopt(struct hub *hub, FCGX_Request *req, struct stream_request *sr, struct error *err)
{
    if (atomic_load(&hub->stopping))
        return error_set(err, ERR_UNAVAILABLE, "the service is restarting, try again");
    if (!atomic_load(&hub->based))
        return error_set(err, ERR_UNAVAILABLE, "the event log cannot be read yet, try again");
    if (atomic_fetch_add(&hub->count, 1) >= hub->cfg->max_streams) {
        atomic_fetch_sub(&hub->count, 1);
        return error_set(err, ERR_UNAVAILABLE, "too many open streams, try again later");
    }
    struct stream *s = calloc(1, sizeof *s);
    struct adoption *a = calloc(1, sizeof *a);
    if (s && sr->gzip)
        s->zs = new_gzip();
    if (!s || !a || (sr->gzip && !s->zs)) {
        if (s)
            free_stream(s);
        free(a);
        atomic_fetch_sub(&hub->count, 1);
        return error_set(err, ERR_INTERNAL, "out of memory opening a stream");
    }
    s->fd = http_take_connection(req, &s->request_id);
    int flags = fcntl(s->fd, F_GETFL);
    if (flags < 0 || fcntl(s->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(s->fd);
        free_stream(s);
        free(a);
        atomic_fetch_sub(&hub->count, 1);
        return 0;       /* the connection is gone; nobody is left to answer */
    }
    s->filter = sr->filter;
    memset(&sr->filter, 0, sizeof sr->filter);
    a->stream = s;
    a->position = sr->position;
    a->headers = sr->headers;
    memset(&sr->headers, 0, sizeof sr->headers);

    pthread_mutex_lock(&hub->lock);
    a->next = hub->adoptions;
    hub->adoptions = a;
    pthread_mutex_unlock(&hub->lock);
    wake(hub);
    return 0;
}

void hub_stop(struct hub *hub)
{
    atomic_store(&hub->stopping, true);
    wake(hub);
}

int hub_wait(struct hub *hub, long long timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms < 0)
        timeout_ms = 0;
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    /* A stream whose client does not read may hold it up: give up then. */
    return pthread_timedjoin_np(hub->thread, NULL, &deadline) == 0 ? 0 : -1;
}

void hub_free(struct hub *hub)
{
    pthread_mutex_lock(&hub->lock);
    struct adoption *a = hub->adoptions;
    hub->adoptions = NULL;
    pthread_mutex_unlock(&hub->lock);
    while (a) {
        struct adoption *next = a->next;
        close(a->stream->fd);
        free_stream(a->stream);
        buf_free(&a->headers);
        free(a);
        a = next;
    }
    pthread_mutex_destroy(&hub->lock);
    window_free(&hub->win);
    close(hub->epfd);
    close(hub->wakefd);
    eventlog_close(hub->log);
    free(hub);
}

void hub_notify(struct hub *hub)
{
    /* Nobody to tell: without streams the hub reads nothing. */
    if (atomic_load(&hub->count) > 0)
        wake(hub);
}

long hub_stream_count(struct hub *hub)
{
    return atomic_load(&hub->count);
}
