/* What one stream has yet to write to its web server connection.
 *
 * Two parts, always written in this order:
 *  - one FastCGI record whose content is pieces of shared frames, written
 *    with writev() straight from the frames, never copied;
 *  - bytes made for this stream alone ("own"): complete FastCGI records of
 *    its response head, pings, resets, gzip output, replayed events, the end.
 * A record of frames is only begun when no own bytes wait, and own bytes
 * appended while a record is queued follow it, so the order of the stream is
 * the order things were queued. Pure logic over a file descriptor. */
#ifndef ORDERS_OUTQ_H
#define ORDERS_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "frame.h"

#define OUTQ_PIECES 32
#define OUTQ_RECORD_MAX 65535   /* content bytes of one FastCGI record */

struct outq {
    struct buf own;             /* append with fcgi_stdout() / fcgi_end_request() */
    size_t own_sent;
    int request_id;             /* of the record of frames */
    unsigned pieces;
    size_t rec_len;             /* content bytes of the record of frames */
    size_t rec_sent;            /* of its header and content; counting starts when sealed */
    bool sealed;                /* its header is fixed: nothing more may be added */
    unsigned char head[8];
    struct {
        struct frame *f;        /* a reference, dropped when the record is written */
        uint32_t off, len;
    } piece[OUTQ_PIECES];
};

/* A zeroed struct outq is an empty queue. outq_free() drops the frames and
 * the own bytes. */
void outq_free(struct outq *q);

/* Adds bytes off .. off+n of f to the record of frames and returns n: as
 * many as fit (0 when own bytes wait, the record is being written, or it is
 * full). */
size_t outq_take(struct outq *q, int request_id, struct frame *f, size_t off);

/* Bytes queued and not yet written. */
size_t outq_unsent(const struct outq *q);

/* Own bytes not yet written: what a stream's budget counts. */
size_t outq_own_unsent(const struct outq *q);

/* Writes what the descriptor takes. Returns the number of bytes written
 * (*blocked set when the descriptor would block with bytes left), or -1
 * with errno set when the connection failed or the own bytes could not be
 * made (ENOMEM): the stream must then be closed, since a record header may
 * have gone out without its content. */
ssize_t outq_write(struct outq *q, int fd, bool *blocked);

#endif
