/* The stream hub: one thread per process that owns every open event stream
 * (SPEC section 4). A REST worker accepts a stream request with libfcgi,
 * checks it, and hands its connection over with hub_adopt(); from then on
 * the hub writes FastCGI records on the non-blocking socket itself, so an
 * open stream costs a small struct and no thread.
 *
 * The hub notices commits from any process with PRAGMA data_version every
 * ORDERS_POLL_MS (at once when this process committed: hub_notify), reads
 * each new event once and frames it once, into a window of frames that
 * every stream shares (frame.h): a stream sends from it as far as its
 * connection takes, without a copy (outq.h). A stream below the window (a
 * new one replaying, or one that fell behind) reads from the table, a
 * budget at a time, until it reaches the window: both run on the hub
 * thread, so no event falls between replay and live, and a burst costs its
 * size once, not once per stream. */
#ifndef ORDERS_HUB_H
#define ORDERS_HUB_H

#include <fcgiapp.h>
#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "metrics.h"
#include "sse.h"

struct hub;

/* What a stream asked for, checked by the route. */
struct stream_request {
    long long position;         /* the client's last event id; -1 for the head */
    struct sse_filter filter;   /* moved into the hub by hub_adopt() */
    bool gzip;
    struct buf headers;         /* extra response header lines; moved too */
};

/* Opens the hub's own database connection and starts its thread, which
 * counts streams and events in metrics. Returns NULL with one line in err. */
struct hub *hub_start(const struct config *cfg, struct metrics *metrics, char *err,
                      size_t errlen);

/* Takes the request's connection. On success the hub owns the connection,
 * sr's filter and headers, and the request no longer has a connection
 * (FCGX_Finish_r on it only frees memory); its params are gone too. Returns
 * -1 with err set (503 unavailable) when ORDERS_MAX_STREAMS are open. */
int hub_adopt(struct hub *hub, FCGX_Request *req, struct stream_request *sr, struct error *err);

/* Tells the hub that this process committed a change: look now. */
void hub_notify(struct hub *hub);

long hub_stream_count(struct hub *hub);

/* Ends every stream after a complete event and stops the hub thread once
 * they are written; hub_wait() waits for that, at most timeout_ms, and
 * returns 0 when the thread has ended. Only then may hub_free() run. */
void hub_stop(struct hub *hub);
int hub_wait(struct hub *hub, long long timeout_ms);
void hub_free(struct hub *hub);

#endif
