#include "hub.h"

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

#include "eventlog.h"
#include "fcgi_record.h"

#define EPOLL_BATCH 256
#define READ_BATCH 512          /* events read from the table at a time */
#define CATCHUP_BATCH 256       /* replayed per stream per loop */
#define CATCHUP_HIGH_WATER (64 * 1024)  /* replay waits while this much is unsent */
#define OUT_LIMIT (1024 * 1024) /* a stream this far behind is closed */
#define TICK_MS 200
#define GZIP_WINDOW_BITS (10 + 16)      /* 1 KiB window; +16 writes a gzip wrapper */
#define GZIP_MEM_LEVEL 2

struct stream {
    int fd;
    int request_id;
    long long pos;              /* id of the last event this stream has passed */
    bool live;                  /* caught up: fed by the fan-out */
    bool ending;                /* the end records are queued; close when drained */
    bool want_write;            /* EPOLLOUT is armed */
    struct sse_filter filter;
    z_stream *zs;               /* gzip state, NULL for identity */
    struct buf out;             /* FastCGI records not yet written */
    size_t out_sent;            /* bytes of out already written */
    long long last_write_ms;    /* for pings */
    long long stalled_ms;       /* since when out could not be written, or 0 */
    long long end_ms;           /* ORDERS_STREAM_MAX_S, jittered */
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
    struct eventlog *log;
    int epfd;
    int wakefd;                 /* eventfd: adoptions queued or a commit made */
    pthread_t thread;
    pthread_mutex_t lock;       /* guards adoptions */
    struct adoption *adoptions;
    atomic_long count;          /* open streams, adopted ones included */
    atomic_bool stopping;       /* hub_stop(): end every stream, then exit */
    long long head;             /* the newest event id the hub has read */
    struct stream *streams;
    long long db_error_logged_ms;
    unsigned rand_state;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_stream(struct stream *s)
{
    if (s->zs) {
        deflateEnd(s->zs);
        free(s->zs);
    }
    sse_filter_free(&s->filter);
    buf_free(&s->out);
    free(s);
}

static void close_stream(struct hub *hub, struct stream *s)
{
    /* close() also takes the fd out of the epoll set. */
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
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

/* Writes what the socket takes. Returns -1 when the stream was closed. */
static int flush(struct hub *hub, struct stream *s, long long now)
{
    while (s->out_sent < s->out.len) {
        ssize_t n = write(s->fd, s->out.data + s->out_sent, s->out.len - s->out_sent);
        if (n > 0) {
            s->out_sent += (size_t)n;
            s->last_write_ms = now;
            s->stalled_ms = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!s->stalled_ms)
                s->stalled_ms = now;
            arm_write(hub, s, true);
            return 0;
        }
        close_stream(hub, s);       /* the web server went away */
        return -1;
    }
    /* Drained: an idle stream keeps no buffer. */
    buf_free(&s->out);
    s->out_sent = 0;
    s->stalled_ms = 0;
    arm_write(hub, s, false);
    if (s->ending) {
        close_stream(hub, s);
        return -1;
    }
    return 0;
}

/* Appends response body bytes, through gzip when the stream has it; a
 * sync flush after each event keeps the stream live. */
static void append_body(struct stream *s, const char *data, size_t len, int flush_mode)
{
    if (!s->zs) {
        fcgi_stdout(&s->out, s->request_id, data, len);
        return;
    }
    unsigned char chunk[4096];
    s->zs->next_in = (unsigned char *)data;
    s->zs->avail_in = (unsigned)len;
    do {
        s->zs->next_out = chunk;
        s->zs->avail_out = sizeof chunk;
        if (deflate(s->zs, flush_mode) == Z_STREAM_ERROR) {
            s->out.failed = true;
            return;
        }
        fcgi_stdout(&s->out, s->request_id, chunk, sizeof chunk - s->zs->avail_out);
    } while (s->zs->avail_out == 0);
}

static void append_event(struct stream *s, long long id, const char *name, const char *data)
{
    struct buf text = BUF_INIT;
    sse_event(&text, id, name, data);
    append_body(s, buf_str(&text), text.len, Z_SYNC_FLUSH);
    if (buf_failed(&text))
        s->out.failed = true;
    buf_free(&text);
}

/* Queues the end of the response after the last complete event. */
static void end_stream(struct stream *s)
{
    if (s->ending)
        return;
    if (s->zs)
        append_body(s, "", 0, Z_FINISH);
    fcgi_end_request(&s->out, s->request_id);
    s->ending = true;
}

/* A stream whose client reads too slowly, or that ran out of memory, is
 * closed: it reconnects with Last-Event-ID and replays from the table. */
static bool over_limit(const struct stream *s)
{
    return buf_failed(&s->out) || s->out.len - s->out_sent > OUT_LIMIT;
}

static void fan_out(void *arg, const struct event *ev)
{
    struct hub *hub = arg;
    struct buf text = BUF_INIT;
    sse_event(&text, ev->id, ev->type, ev->data);     /* framed once for all */
    for (struct stream *s = hub->streams; s; s = s->next) {
        if (!s->live || s->ending)
            continue;
        if (sse_filter_match(&s->filter, ev->type, ev->order_id)) {
            if (s->zs)
                append_body(s, buf_str(&text), text.len, Z_SYNC_FLUSH);
            else
                fcgi_stdout(&s->out, s->request_id, buf_str(&text), text.len);
        }
        s->pos = ev->id;
    }
    buf_free(&text);
    hub->head = ev->id;
}

static void log_db_error(struct hub *hub, const char *what)
{
    long long now = now_ms();
    if (now - hub->db_error_logged_ms < 10000)
        return;
    hub->db_error_logged_ms = now;
    fprintf(stderr, "orders: stream hub: %s; streams stay open and catch up later\n", what);
}

/* With no stream open the hub reads nothing, and a first stream starts
 * from the current head. data_version is read first, so a commit made
 * between the two reads is either in the head or seen by the next poll. */
static void rebase(struct hub *hub)
{
    bool changed;
    long long pruned_through;
    if (eventlog_changed(hub->log, &changed) != 0
        || eventlog_bounds(hub->log, &hub->head, &pruned_through) != 0)
        log_db_error(hub, "the database did not answer");
}

/* Reads every event committed since the last look and fans it out. */
static void poll_log(struct hub *hub, long long now)
{
    if (!hub->streams)
        return;
    bool changed;
    if (eventlog_changed(hub->log, &changed) != 0) {
        log_db_error(hub, "the database did not answer");
        return;
    }
    if (!changed)
        return;
    int n;
    do {
        n = eventlog_read(hub->log, hub->head, INT64_MAX, READ_BATCH, fan_out, hub);
        if (n < 0)
            log_db_error(hub, "reading the event log failed");
    } while (n == READ_BATCH);

    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (over_limit(s))
            close_stream(hub, s);
        else if (s->out.len > s->out_sent)
            flush(hub, s, now);
    }
}

/* One stream's replay batch: it stops taking events once enough bytes
 * wait, so that big events cannot push a replaying stream over OUT_LIMIT. */
struct replay {
    struct stream *s;
    bool full;
};

static void replay_one(void *arg, const struct event *ev)
{
    struct replay *r = arg;
    struct stream *s = r->s;
    if (r->full || s->out.len - s->out_sent > CATCHUP_HIGH_WATER) {
        r->full = true;
        return;
    }
    if (sse_filter_match(&s->filter, ev->type, ev->order_id))
        append_event(s, ev->id, ev->type, ev->data);
    s->pos = ev->id;
}

/* Replays a batch from the table to each stream still behind the hub.
 * Returns true when a stream could take more right away. */
static bool catch_up(struct hub *hub, long long now)
{
    bool more = false;
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (s->live || s->ending || s->out.len - s->out_sent > CATCHUP_HIGH_WATER)
            continue;
        struct replay r = {s, false};
        int n = eventlog_read(hub->log, s->pos, hub->head, CATCHUP_BATCH, replay_one, &r);
        if (n < 0) {
            log_db_error(hub, "replaying the event log failed");
            continue;
        }
        if (n < CATCHUP_BATCH && !r.full)
            s->live = true;     /* the table has nothing more up to the hub's head */
        if (over_limit(s))
            close_stream(hub, s);
        else if (flush(hub, s, now) == 0 && !s->live && s->out.len - s->out_sent
                                                              <= CATCHUP_HIGH_WATER)
            more = true;
    }
    return more;
}

static void send_reset(struct stream *s, long long head, const char *reason)
{
    char data[128];
    snprintf(data, sizeof data, "{\"reason\":\"%s\",\"lastEventId\":%lld}", reason, head);
    append_event(s, head, "reset", data);
    s->pos = head;
    s->live = true;
}

/* Starts an adopted stream: headers, retry, connected, and where to begin. */
static void begin_stream(struct hub *hub, struct adoption *a, long long now)
{
    struct stream *s = a->stream;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s};
    if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        close(s->fd);
        free_stream(s);
        atomic_fetch_sub(&hub->count, 1);
        return;
    }
    s->next = hub->streams;
    if (s->next)
        s->next->prev = s;
    hub->streams = s;

    struct buf head = BUF_INIT;
    buf_puts(&head, "Status: 200 OK\r\n"
                    "Content-Type: text/event-stream; charset=utf-8\r\n"
                    "Cache-Control: no-cache\r\n"
                    "X-Accel-Buffering: no\r\n");
    if (s->zs)
        buf_puts(&head, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
    buf_append(&head, buf_str(&a->headers), a->headers.len);
    buf_puts(&head, "\r\n");
    fcgi_stdout(&s->out, s->request_id, buf_str(&head), head.len);
    if (buf_failed(&head))
        s->out.failed = true;
    buf_free(&head);

    char text[96];
    snprintf(text, sizeof text, "retry: %ld\n\n", hub->cfg->retry_ms);
    append_body(s, text, strlen(text), Z_NO_FLUSH);
    snprintf(text, sizeof text, "{\"message\":\"Connected to event stream\",\"lastEventId\":%lld}",
             hub->head);
    append_event(s, -1, "connected", text);

    long long newest, pruned_through;
    if (eventlog_bounds(hub->log, &newest, &pruned_through) != 0) {
        log_db_error(hub, "reading the event log bounds failed");
        pruned_through = 0;
    }
    if (a->position < 0 || a->position == hub->head) {
        s->pos = hub->head;
        s->live = true;
    } else if (a->position > hub->head) {
        send_reset(s, hub->head, "unknown_event_id");
    } else if (a->position < pruned_through) {
        send_reset(s, hub->head, "history_truncated");
    } else {
        s->pos = a->position;       /* catch_up() replays from here */
    }
    s->last_write_ms = now;
    s->end_ms = now + (long long)(hub->cfg->stream_max_s * 1000.0
                                  * (0.8 + 0.2 * (double)rand_r(&hub->rand_state) / RAND_MAX));
    flush(hub, s, now);
}

static void take_adoptions(struct hub *hub, long long now)
{
    uint64_t count;
    if (read(hub->wakefd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_db_error(hub, "reading the wake-up eventfd failed");
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
        poll_log(hub, now);
    while (reversed) {
        struct adoption *next = reversed->next;
        begin_stream(hub, reversed, now);
        buf_free(&reversed->headers);
        free(reversed);
        reversed = next;
    }
}

/* Pings, write timeouts and the end of long-lived streams. */
static void tick(struct hub *hub, long long now)
{
    const struct config *cfg = hub->cfg;
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        if (s->stalled_ms && now - s->stalled_ms >= cfg->write_timeout_s * 1000) {
            close_stream(hub, s);
            continue;
        }
        if (s->ending)
            continue;
        bool queued = false;
        if (now >= s->end_ms) {
            end_stream(s);
            queued = true;
        } else if (s->live && s->out.len == s->out_sent
                   && now - s->last_write_ms >= cfg->ping_s * 1000) {
            char data[48];
            snprintf(data, sizeof data, "{\"ts\":%lld}", wall_ms());
            append_event(s, -1, "ping", data);
            queued = true;
        }
        if (queued && s->out.len > s->out_sent)
            flush(hub, s, now);
    }
}

/* The web server never tells: a closed connection reads as EOF. Whatever
 * it sends (the empty FCGI_STDIN record) is not needed and is dropped. */
static void on_readable(struct hub *hub, struct stream *s)
{
    char scratch[512];
    for (;;) {
        ssize_t n = read(s->fd, scratch, sizeof scratch);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_stream(hub, s);
        return;
    }
}

/* Ends every stream after its last complete event. */
static void end_all(struct hub *hub, long long now)
{
    for (struct stream *s = hub->streams, *next; s; s = next) {
        next = s->next;
        end_stream(s);
        flush(hub, s, now);
    }
}

static void *hub_main(void *arg)
{
    struct hub *hub = arg;
    struct epoll_event events[EPOLL_BATCH];
    long long next_poll = 0, next_tick = 0;
    for (;;) {
        long long now = now_ms();
        long long wait = next_poll - now;
        if (next_tick - now < wait)
            wait = next_tick - now;
        int n = epoll_wait(hub->epfd, events, EPOLL_BATCH, wait > 0 ? (int)wait : 0);
        if (n < 0 && errno != EINTR)
            log_db_error(hub, "epoll_wait failed");
        now = now_ms();
        bool woken = false;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                woken = true;
                continue;
            }
            struct stream *s = events[i].data.ptr;
            /* EOF first: a stream closed here must not be written to. */
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                on_readable(hub, s);
                continue;
            }
            if (events[i].events & EPOLLOUT)
                flush(hub, s, now);
        }
        if (woken) {
            take_adoptions(hub, now);       /* reads the log too */
            next_poll = now + hub->cfg->poll_ms;
        } else if (now >= next_poll) {
            poll_log(hub, now);
            next_poll = now + hub->cfg->poll_ms;
        }
        if (catch_up(hub, now))
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

struct hub *hub_start(const struct config *cfg, char *err, size_t errlen)
{
    struct hub *hub = calloc(1, sizeof *hub);
    if (!hub) {
        snprintf(err, errlen, "out of memory starting the stream hub");
        return NULL;
    }
    hub->cfg = cfg;
    hub->epfd = -1;
    hub->wakefd = -1;
    hub->rand_state = (unsigned)getpid() ^ (unsigned)now_ms();
    long long pruned_through;
    bool changed;
    if (!(hub->log = eventlog_open(cfg, err, errlen)))
        goto fail;
    if (eventlog_bounds(hub->log, &hub->head, &pruned_through) != 0
        || eventlog_changed(hub->log, &changed) != 0) {
        snprintf(err, errlen, "cannot read the event log");
        goto fail;
    }
    hub->epfd = epoll_create1(EPOLL_CLOEXEC);
    hub->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (hub->epfd < 0 || hub->wakefd < 0
        || epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->wakefd, &ev) != 0) {
        snprintf(err, errlen, "cannot set up epoll for the stream hub: %s", strerror(errno));
        goto fail;
    }
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
    /* libfcgi has no hand-over call. The connection's fd is the request's
     * ipcFd (a field fcgiapp.h asks callers not to touch, stable through
     * 2.4.x): take it, free the request's buffers without closing it, and
     * leave -1 so that the next FCGX_Accept_r accepts a new connection. */
    s->fd = req->ipcFd;
    s->request_id = req->requestId;
    FCGX_Free(req, 0);
    req->ipcFd = -1;
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
