#include "outq.h"

#include <assert.h>
#include <errno.h>
#include <fastcgi.h>
#include <string.h>
#include <sys/uio.h>

/* Own bytes already written are cut off the front once they are at least
 * this many and at least half the buffer, so a stream that always has a
 * little queued cannot grow it without bound. */
#define OWN_COMPACT_MIN 4096

static void drop_record(struct outq *q)
{
    for (unsigned i = 0; i < q->pieces; i++)
        frame_unref(q->piece[i].f);
    q->pieces = 0;
    q->rec_len = q->rec_sent = 0;
    q->sealed = false;
}

void outq_free(struct outq *q)
{
    drop_record(q);
    buf_free(&q->own);
    q->own_sent = 0;
}

size_t outq_own_unsent(const struct outq *q)
{
    assert(q->own_sent <= q->own.len);
    return q->own.len - q->own_sent;
}

size_t outq_unsent(const struct outq *q)
{
    size_t rec = q->pieces ? FCGI_HEADER_LEN + q->rec_len - q->rec_sent : 0;
    return rec + outq_own_unsent(q);
}

size_t outq_take(struct outq *q, int request_id, struct frame *f, size_t off)
{
    assert(off < f->len);
    if (outq_own_unsent(q) || q->sealed || q->pieces == OUTQ_PIECES
        || q->rec_len == OUTQ_RECORD_MAX)
        return 0;
    assert(q->pieces == 0 || q->request_id == request_id);
    size_t n = f->len - off;
    if (n > OUTQ_RECORD_MAX - q->rec_len)
        n = OUTQ_RECORD_MAX - q->rec_len;
    q->request_id = request_id;
    q->piece[q->pieces].f = frame_ref(f);
    q->piece[q->pieces].off = (uint32_t)off;
    q->piece[q->pieces].len = (uint32_t)n;
    q->pieces++;
    q->rec_len += n;
    return n;
}

static void seal(struct outq *q)
{
    unsigned char h[FCGI_HEADER_LEN] = {
        FCGI_VERSION_1, FCGI_STDOUT,
        (unsigned char)(q->request_id >> 8), (unsigned char)q->request_id,
        (unsigned char)(q->rec_len >> 8), (unsigned char)q->rec_len,
        0, 0,
    };
    memcpy(q->head, h, sizeof h);
    q->sealed = true;
}

/* The unwritten rest of the queue as iovecs: the record's header and
 * pieces from rec_sent on, then the own bytes. Returns the count. */
static int gather(const struct outq *q, struct iovec *iov)
{
    int n = 0;
    if (q->pieces) {
        size_t skip = q->rec_sent;
        if (skip < FCGI_HEADER_LEN) {
            iov[n++] = (struct iovec){(void *)(q->head + skip), FCGI_HEADER_LEN - skip};
            skip = 0;
        } else {
            skip -= FCGI_HEADER_LEN;
        }
        for (unsigned i = 0; i < q->pieces; i++) {
            size_t len = q->piece[i].len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            iov[n++] = (struct iovec){q->piece[i].f->text + q->piece[i].off + skip, len - skip};
            skip = 0;
        }
    }
    if (outq_own_unsent(q))
        iov[n++] = (struct iovec){q->own.data + q->own_sent, outq_own_unsent(q)};
    return n;
}

/* Accounts for n bytes written: first the record's, then own ones. */
static void advance(struct outq *q, size_t n)
{
    if (q->pieces) {
        size_t rec_left = FCGI_HEADER_LEN + q->rec_len - q->rec_sent;
        size_t k = n < rec_left ? n : rec_left;
        q->rec_sent += k;
        n -= k;
        if (q->rec_sent == FCGI_HEADER_LEN + q->rec_len)
            drop_record(q);
    }
    q->own_sent += n;
    assert(q->own_sent <= q->own.len);
    if (q->own_sent == q->own.len) {
        /* Drained: an idle stream keeps no buffer. */
        buf_free(&q->own);
        q->own_sent = 0;
    } else if (q->own_sent >= OWN_COMPACT_MIN && q->own_sent >= q->own.len / 2) {
        memmove(q->own.data, q->own.data + q->own_sent, q->own.len - q->own_sent + 1);
        q->own.len -= q->own_sent;
        q->own_sent = 0;
    }
}

ssize_t outq_write(struct outq *q, int fd, bool *blocked)
{
    *blocked = false;
    if (buf_failed(&q->own)) {
        errno = ENOMEM;
        return -1;
    }
    if (q->pieces && !q->sealed)
        seal(q);
    size_t total = 0;
    while (outq_unsent(q)) {
        struct iovec iov[OUTQ_PIECES + 2];
        int n = gather(q, iov);
        assert(n > 0);
        ssize_t w = writev(fd, iov, n);
        if (w > 0) {
            advance(q, (size_t)w);
            total += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *blocked = true;
            break;
        }
        if (w == 0)
            errno = EPIPE;
        return -1;
    }
    return (ssize_t)total;
}
