/* Unit tests of the stream hub's queueing: src/frame.c (shared frames and
 * the window) and src/outq.c (a stream's output queue), driven through a
 * socketpair whose far end reads what the queue wrote and parses it back
 * into FastCGI records. */
#include <errno.h>
#include <fastcgi.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/buf.h"
#include "../../src/fcgi_record.h"
#include "../../src/frame.h"
#include "../../src/outq.h"
#include "tap.h"

/* ------------------------------------------------------------ helpers */

static struct frame *event_frame(long long id, size_t data_len)
{
    char *data = malloc(data_len + 1);
    for (size_t i = 0; i < data_len; i++)
        data[i] = (char)('a' + (id + (long long)i) % 26);
    data[data_len] = '\0';
    struct frame *f = frame_new(id, "order.updated", "ord_00001", data);
    free(data);
    return f;
}

static int fcntl_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* A socketpair with a small send buffer on the queue's end, so that writes
 * block early and partial writes happen. fds[0] is written, fds[1] read. */
static void small_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        perror("socketpair");
        exit(99);
    }
    int size = 4096;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    for (int i = 0; i < 2; i++)
        if (fcntl_nonblock(fds[i]) != 0)
            exit(99);
}

/* What the far end received, parsed: the FastCGI records' content for one
 * request id, and whether the records were well formed. */
struct received {
    struct buf raw;
    struct buf content;
    int records, end_records;
    bool bad;
};

static void drain(int fd, struct received *r)
{
    char chunk[65536];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_append(&r->raw, chunk, (size_t)n);
}

/* Parses r->raw into r->content; every record must be complete. */
static void parse_records(struct received *r, int request_id)
{
    const unsigned char *p = (const unsigned char *)r->raw.data;
    size_t left = r->raw.len;
    while (left >= FCGI_HEADER_LEN) {
        size_t len = (size_t)p[4] << 8 | p[5];
        size_t pad = p[6];
        if (p[0] != FCGI_VERSION_1 || ((int)p[2] << 8 | p[3]) != request_id
            || left < FCGI_HEADER_LEN + len + pad) {
            r->bad = true;
            return;
        }
        if (p[1] == FCGI_STDOUT) {
            buf_append(&r->content, p + FCGI_HEADER_LEN, len);
            r->records++;
        } else if (p[1] == FCGI_END_REQUEST) {
            r->end_records++;
        } else {
            r->bad = true;
            return;
        }
        p += FCGI_HEADER_LEN + len + pad;
        left -= FCGI_HEADER_LEN + len + pad;
    }
    if (left)
        r->bad = true;
}

/* Writes the queue out completely, reading the far end in between. */
static bool write_all(struct outq *q, int fds[2], struct received *r, int *blocks)
{
    for (int rounds = 0; outq_unsent(q) && rounds < 100000; rounds++) {
        bool blocked;
        if (outq_write(q, fds[0], &blocked) < 0)
            return false;
        if (blocked)
            (*blocks)++;
        drain(fds[1], r);
    }
    drain(fds[1], r);
    return outq_unsent(q) == 0;
}

static void received_free(struct received *r)
{
    buf_free(&r->raw);
    buf_free(&r->content);
}

/* ------------------------------------------------------------ the window */

static void test_frame(void)
{
    struct frame *f = frame_new(43, "order.updated", "ord_00042", "{\"a\":1}");
    ok(f != NULL, "frame made");
    is_str(f->text, "id: 43\nevent: order.updated\ndata: {\"a\":1}\n\n", "framed as SSE");
    is_int((long long)f->len, (long long)strlen(f->text), "len is the text's");
    is_str(f->type, "order.updated", "type kept for the filter");
    is_str(f->order_id, "ord_00042", "order id kept for the filter");
    is_int(f->refs, 1, "made with one reference");
    frame_ref(f);
    frame_unref(f);
    is_int(f->refs, 1, "ref and unref balance");
    frame_unref(f);
    frame_unref(NULL);
}

static void test_window(void)
{
    struct window w;
    window_init(&w, 10);
    is_int(window_head(&w), 10, "empty window: head is base_id");
    is_int((long long)window_seek(&w, 10), 0, "empty window: seek gives hi");
    ok(window_at(&w, 0) == NULL, "empty window holds nothing");

    /* Ids with gaps, as AUTOINCREMENT leaves after rollbacks. */
    size_t bytes = 0;
    for (long long id = 11; id <= 400; id += 3) {
        struct frame *f = event_frame(id, 20);
        bytes += f->len;
        if (window_push(&w, f) != 0)
            return;
    }
    is_int((long long)(w.hi - w.lo), 130, "130 frames held");
    is_int((long long)w.bytes, (long long)bytes, "bytes counted");
    is_int(window_head(&w), 398, "head is the newest frame's id");
    is_int(window_at(&w, 0)->id, 11, "first frame");
    is_int((long long)window_seek(&w, 10), 0, "seek after base_id: the first frame");
    is_int((long long)window_seek(&w, 11), 1, "seek after an id held: the next one");
    is_int((long long)window_seek(&w, 12), 1, "seek after a gap: the next id above");
    is_int((long long)window_seek(&w, 398), 130, "seek after the head: hi");

    struct frame *kept = frame_ref(window_at(&w, 5));
    window_drop_before(&w, 50);
    is_int((long long)w.lo, 50, "dropped below 50");
    is_int(w.base_id, window_at(&w, 50)->id - 3, "base_id is the last dropped id");
    ok(window_at(&w, 49) == NULL, "a dropped frame is not held");
    is_int(kept->refs, 1, "a frame still referenced outlives the window");
    is_int(kept->id, 26, "and is still whole");
    frame_unref(kept);

    /* Pushing and dropping in turn wraps the ring many times. */
    bool ordered = true;
    for (long long id = 401; id <= 5000; id++) {
        window_push(&w, event_frame(id, 5));
        if (w.hi - w.lo > 100)
            window_drop_before(&w, w.hi - 100);
        /* once the ids with gaps are gone, the 100 held are id-99 .. id */
        if (window_at(&w, w.hi - 1)->id != id || window_seek(&w, id - 1) != w.hi - 1
            || (id > 500 && window_at(&w, w.lo)->id != id - 99))
            ordered = false;
    }
    ok(ordered, "after wrapping, every frame is at its number");
    is_int((long long)w.cap, 256, "the ring did not grow past what it held");
    window_free(&w);
    is_int((long long)w.bytes, 0, "freed: no bytes");
}

/* ------------------------------------------------------------ the queue */

/* Frames sent without copying arrive as whole records, in order, however
 * the socket splits the writes. */
static void test_shared_frames(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    struct received r = {0};
    struct buf want = BUF_INIT;
    struct frame *f[40];
    for (int i = 0; i < 40; i++) {
        f[i] = event_frame(i + 1, 300 + (size_t)i * 37);
        buf_append(&want, f[i]->text, f[i]->len);
    }
    int taken = 0, blocks = 0;
    size_t off = 0;
    while (taken < 40) {
        size_t n = outq_take(&q, 7, f[taken], off);
        if (n == 0) {
            if (!write_all(&q, fds, &r, &blocks))
                break;
            continue;
        }
        off += n;
        if (off == f[taken]->len) {
            taken++;
            off = 0;
        }
    }
    ok(write_all(&q, fds, &r, &blocks), "everything written");
    parse_records(&r, 7);
    ok(!r.bad, "well-formed records");
    ok(r.content.len == want.len && memcmp(r.content.data, want.data, want.len) == 0,
       "the content is the frames, in order (%zu of %zu bytes)", r.content.len, want.len);
    ok(r.records <= 3, "32 pieces a record: %d records for 40 frames", r.records);
    ok(blocks > 0, "the small socket made writes block (%d times)", blocks);
    bool refs = true;
    for (int i = 0; i < 40; i++) {
        refs = refs && f[i]->refs == 1;
        frame_unref(f[i]);
    }
    ok(refs, "written records dropped their references");
    outq_free(&q);
    buf_free(&want);
    received_free(&r);
    close(fds[0]);
    close(fds[1]);
}

/* A frame larger than a record spans records; the content is exact. */
static void test_big_frame(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    struct received r = {0};
    struct frame *f = event_frame(9, 200000);
    size_t off = 0;
    int blocks = 0;
    bool capped = true;
    while (off < f->len) {
        size_t n = outq_take(&q, 1, f, off);
        if (n == 0) {
            write_all(&q, fds, &r, &blocks);
            continue;
        }
        capped = capped && n <= OUTQ_RECORD_MAX;
        off += n;
    }
    write_all(&q, fds, &r, &blocks);
    parse_records(&r, 1);
    ok(capped, "no record over 65535 bytes");
    ok(!r.bad && r.records == 4, "200 KB in 4 records (%d)", r.records);
    ok(r.content.len == f->len && memcmp(r.content.data, f->text, f->len) == 0,
       "the big frame arrives whole");
    frame_unref(f);
    outq_free(&q);
    received_free(&r);
    close(fds[0]);
    close(fds[1]);
}

/* Own bytes follow the record queued before them, and no record starts
 * while own bytes wait. */
static void test_order_with_own_bytes(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    struct received r = {0};
    struct frame *a = event_frame(1, 100), *b = event_frame(2, 100);
    fcgi_stdout(&q.own, 3, "head\n", 5);
    is_int((long long)outq_take(&q, 3, a, 0), 0, "no record while own bytes wait");
    int blocks = 0;
    write_all(&q, fds, &r, &blocks);
    ok(outq_take(&q, 3, a, 0) == a->len, "a record once they are written");
    fcgi_stdout(&q.own, 3, "ping\n", 5);
    is_int((long long)outq_take(&q, 3, b, 0), 0, "nothing added behind own bytes");
    write_all(&q, fds, &r, &blocks);
    ok(outq_take(&q, 3, b, 0) == b->len, "then the next frame");
    fcgi_end_request(&q.own, 3);
    write_all(&q, fds, &r, &blocks);
    parse_records(&r, 3);
    struct buf want = BUF_INIT;
    buf_puts(&want, "head\n");
    buf_append(&want, a->text, a->len);
    buf_puts(&want, "ping\n");
    buf_append(&want, b->text, b->len);
    ok(!r.bad && r.end_records == 1, "records well formed, one end");
    is_str(buf_str(&r.content), buf_str(&want), "own bytes and frames in the order queued");
    frame_unref(a);
    frame_unref(b);
    buf_free(&want);
    outq_free(&q);
    received_free(&r);
    close(fds[0]);
    close(fds[1]);
}

/* A queue whose own bytes could not be made writes nothing: never a record
 * header without its content. */
static void test_failed_buffer(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    fcgi_stdout(&q.own, 1, "partial", 7);
    q.own.failed = true;
    bool blocked;
    errno = 0;
    ok(outq_write(&q, fds[0], &blocked) == -1 && errno == ENOMEM, "a failed buffer is an error");
    char c;
    ok(read(fds[1], &c, 1) < 0 && errno == EAGAIN, "and nothing was written");
    outq_free(&q);
    close(fds[0]);
    close(fds[1]);
}

/* A reader that keeps up but is never quite idle: the own buffer stays
 * bounded by what is unsent, not by what was ever queued through it. */
static void test_compaction(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    char line[1000], sink[1008];
    memset(line, 'x', sizeof line);
    bool blocked, never_idle = true;
    /* a backlog of 64 records, more than the socket holds */
    for (int i = 0; i < 64; i++)
        fcgi_stdout(&q.own, 1, line, sizeof line);
    outq_write(&q, fds[0], &blocked);
    size_t most = 0;
    for (int i = 0; i < 5000; i++) {
        fcgi_stdout(&q.own, 1, line, sizeof line);     /* one record in */
        if (outq_write(&q, fds[0], &blocked) < 0)
            break;
        size_t got = 0;                                 /* one record out */
        while (got < sizeof sink) {
            ssize_t n = read(fds[1], sink, sizeof sink - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        never_idle = never_idle && outq_own_unsent(&q) > 0;
        if (q.own.cap > most)
            most = q.own.cap;
    }
    ok(never_idle, "the queue always had a backlog");
    ok(most <= 256 * 1024, "5 MB through it: the buffer peaked at %zu bytes", most);
    outq_free(&q);
    close(fds[0]);
    close(fds[1]);
}

static void test_peer_gone(void)
{
    int fds[2];
    small_pair(fds);
    struct outq q = {0};
    fcgi_stdout(&q.own, 1, "hello", 5);
    close(fds[1]);
    bool blocked;
    ok(outq_write(&q, fds[0], &blocked) == -1 && errno == EPIPE, "a closed peer is an error");
    outq_free(&q);
    close(fds[0]);
}

int main(void)
{
    /* A vanished peer shows as EPIPE, as in the responder. */
    signal(SIGPIPE, SIG_IGN);
    test_frame();
    test_window();
    test_shared_frames();
    test_big_frame();
    test_order_with_own_bytes();
    test_failed_buffer();
    test_compaction();
    test_peer_gone();
    return done_testing();
}
