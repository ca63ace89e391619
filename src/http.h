/* HTTP over FastCGI: building a response (status, headers, body) and
 * sending it, the one JSON error body, reading a request body within its
 * limit, and the header rules (ETags, media types) the routes share. */
#ifndef ORDERS_HTTP_H
#define ORDERS_HTTP_H

#include <fcgiapp.h>
#include <stdbool.h>

#include "buf.h"
#include "error.h"

struct reply {
    int status;
    const char *content_type;   /* static string, or NULL for no body */
    struct buf headers;         /* extra header lines, each ending in CRLF */
    struct buf body;
};

void reply_init(struct reply *r);
void reply_free(struct reply *r);

/* Adds one header line, of any length (never cut). The value must come
 * from the service, never from the request, unless it was checked to hold
 * no CR or LF. */
void reply_header(struct reply *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns err into the SPEC's error body {"error":{"code","message"}} with
 * its status, dropping any body built so far. */
void reply_error(struct reply *r, const struct error *err);

/* Writes the response to out, to be sent when the request ends
 * (http_finish); headers or a body that ran out of memory make it a 500
 * internal_error instead. Returns -1 when the web server has gone away
 * (seen when a body over libfcgi's buffer is written). */
int reply_send(struct reply *r, FCGX_Stream *out);

/* Reads the request body (CONTENT_LENGTH bytes) into body. A body over max
 * is read and thrown away, then refused with 413: mod_fcgid sends the whole
 * body before it reads the answer. */
int http_read_body(FCGX_Request *req, long max, struct buf *body, struct error *err);

/* Takes the accepted connection out of req, for a writer of its own (the
 * stream hub): frees the request's buffers and params without closing the
 * connection, and leaves req with no connection (its next FCGX_Accept_r
 * accepts a new one) and no params (envp NULL). Returns the connection's
 * descriptor and sets *request_id, the FastCGI request id its records
 * must carry. The caller owns the descriptor. */
int http_take_connection(FCGX_Request *req, int *request_id);

/* Ends the request, as FCGX_Finish_r does, after reading what is left of
 * its stdin, up to the empty record that ends it. On a kept connection
 * (FCGI_KEEP_CONN: nginx with fastcgi_keep_conn on, mod_proxy_fcgi)
 * libfcgi would read any of it as the start of the next request, call that
 * a protocol error and close the connection; any other connection is
 * closed at once rather than after the web server closes its end. A
 * request whose connection was taken is finished as is. */
void http_finish(FCGX_Request *req);

/* True when an If-Match / If-None-Match value is "*" or lists "<version>".
 * If-None-Match compares weakly (W/"<version>" matches too); If-Match
 * compares strongly (RFC 9110 section 13.1.1), so pass weak = false. */
bool http_etag_matches(const char *header, long long version, bool weak);

/* True for application/json (or application/merge-patch+json when
 * merge_patch is set), with at most a charset=utf-8 parameter. */
bool http_is_json(const char *content_type, bool merge_patch);

#endif
