#include "http.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "order.h"

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Internal Server Error";
    }
}

void reply_init(struct reply *r)
{
    memset(r, 0, sizeof *r);
    r->status = 200;
}

void reply_free(struct reply *r)
{
    buf_free(&r->headers);
    buf_free(&r->body);
}

/* The value goes straight into the growing header buffer: a fixed buffer
 * would cut a long value (a Location, an echoed Origin) without a word. */
void reply_header(struct reply *r, const char *name, const char *fmt, ...)
{
    va_list ap;
    buf_printf(&r->headers, "%s: ", name);
    va_start(ap, fmt);
    buf_vprintf(&r->headers, fmt, ap);
    va_end(ap);
    buf_puts(&r->headers, "\r\n");
}

/* Messages may quote what a client sent, cut to a length: keep them valid
 * UTF-8 so that the error body is valid JSON text. */
static void clean_utf8(char *s)
{
    size_t len = strlen(s);
    while (len && !utf8_valid(s, len))
        s[--len] = '\0';
}

void reply_error(struct reply *r, const struct error *err)
{
    char message[sizeof err->message];
    snprintf(message, sizeof message, "%s", err->message);
    clean_utf8(message);

    r->status = error_status(err->kind);
    r->content_type = "application/json";
    buf_reset(&r->body);

    json_object *body = json_object_new_object(), *inner = json_object_new_object();
    if (body && inner
        && json_object_object_add(inner, "code", json_object_new_string(error_code(err->kind))) == 0
        && json_object_object_add(inner, "message", json_object_new_string(message)) == 0
        && json_object_object_add(body, "error", inner) == 0) {
        inner = NULL;   /* owned by body now */
        const char *text = json_object_to_json_string_ext(
            body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        buf_puts(&r->body, text ? text : "");
    }
    json_object_put(inner);
    json_object_put(body);
    if (r->body.len == 0 || buf_failed(&r->body)) {
        buf_reset(&r->body);
        buf_printf(&r->body, "{\"error\":{\"code\":\"%s\",\"message\":\"\"}}", error_code(err->kind));
    }
}

int reply_send(struct reply *r, FCGX_Stream *out)
{
    /* Headers or a body that ran out of memory must not go out cut short:
     * the answer becomes a 500 through the one error body instead. */
    if (buf_failed(&r->headers) || buf_failed(&r->body)) {
        struct error err;
        error_set(&err, ERR_INTERNAL, "out of memory building the response");
        buf_free(&r->headers);
        reply_error(r, &err);
    }
    struct buf head = BUF_INIT;
    buf_printf(&head, "Status: %d %s\r\n", r->status, reason_phrase(r->status));
    if (r->content_type && r->status != 204 && r->status != 304)
        buf_printf(&head, "Content-Type: %s\r\nContent-Length: %zu\r\n", r->content_type,
                   r->body.len);
    buf_append(&head, buf_str(&r->headers), r->headers.len);
    buf_puts(&head, "\r\n");
    int rc = 0;
    if (buf_failed(&head) || FCGX_PutStr(head.data, (int)head.len, out) < 0)
        rc = -1;
    if (rc == 0 && r->content_type && r->status != 204 && r->status != 304 && r->body.len
        && FCGX_PutStr(r->body.data, (int)r->body.len, out) < 0)
        rc = -1;
    /* No flush: FCGX_Finish_r (http_finish) sends the rest with the empty
     * stdout record and FCGI_END_REQUEST, in one write when it fits in
     * libfcgi's 8 KiB buffer. Flushed apart, the response could reach a
     * client that leaves before the end of the request reaches nginx,
     * which then closes the connection it would have kept (499). */
    buf_free(&head);
    return rc;
}

int http_read_body(FCGX_Request *req, long max, struct buf *body, struct error *err)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
    long long expected = 0;
    if (cl && *cl) {
        char *end;
        expected = strtoll(cl, &end, 10);
        if (*end || expected < 0)
            return error_set(err, ERR_INVALID_JSON, "Content-Length is not a number");
    }
    char chunk[8192];
    long long got = 0;
    int n;
    while (got < expected
           && (n = FCGX_GetStr(chunk, (int)(expected - got < (long long)sizeof chunk
                                                ? expected - got : (long long)sizeof chunk),
                               req->in)) > 0) {
        if (expected <= max)
            buf_append(body, chunk, (size_t)n);
        got += n;
    }
    if (expected > max)
        return error_set(err, ERR_PAYLOAD_TOO_LARGE, "the request body is over %ld bytes", max);
    if (got < expected)
        return error_set(err, ERR_INVALID_JSON, "the request body is shorter than Content-Length");
    if (buf_failed(body))
        return error_set(err, ERR_INTERNAL, "out of memory");
    return 0;
}

/* libfcgi has no hand-over call. The connection's descriptor is the
 * request's ipcFd, a field fcgiapp.h asks callers not to touch, stable
 * through libfcgi 2.4.x: this is the one place that reads it, and
 * tests/unit/http_test.c fails if a libfcgi changes it. FCGX_Free(req, 0)
 * frees without closing; -1 makes the next FCGX_Accept_r accept anew. */
int http_take_connection(FCGX_Request *req, int *request_id)
{
    int fd = req->ipcFd;
    *request_id = req->requestId;
    FCGX_Free(req, 0);
    req->ipcFd = -1;
    req->envp = NULL;       /* FCGX_Free leaves it pointing at freed params */
    return fd;
}

/* keepConnection is, like ipcFd, below the fields fcgiapp.h offers; it
 * holds the FCGI_KEEP_CONN flag of the request's FCGI_BEGIN_REQUEST.
 *
 * A connection that is not kept is closed at once, detached: libfcgi's
 * own close shuts the sending side, then waits in poll() until the web
 * server closes its end, so that the thread sleeps through a round trip
 * of the web server's event loop on every request. That wait is there so
 * that unread input does not make the close a reset (a TCP RST, or
 * ECONNRESET for a Unix socket's peer) that could cost the web server the
 * end of the response; the input is read to its end here instead, and
 * the web server sends nothing after it. */
void http_finish(FCGX_Request *req)
{
    if (req->in) {
        char sink[4096];
        while (FCGX_GetStr(sink, (int)sizeof sink, req->in) > 0)
            ;
        if (!req->keepConnection && FCGX_GetError(req->in) == 0)
            (void)FCGX_Detach(req);     /* fails only for a request with no connection */
    }
    FCGX_Finish_r(req);
}

bool http_etag_matches(const char *header, long long version, bool weak)
{
    if (version < 1)
        return false;       /* versions start at 1 */
    char tag[24];
    int tag_len = snprintf(tag, sizeof tag, "%lld", version);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return true;
        bool is_weak = p[0] == 'W' && p[1] == '/';
        if (is_weak)
            p += 2;
        if (*p != '"')
            return false;
        const char *close = strchr(p + 1, '"');
        if (!close)
            return false;
        if (is_weak && !weak) {
            p = close + 1;
            continue;
        }
        /* Entity tags compare as strings: "03" is not "3". */
        if (close - (p + 1) == tag_len && memcmp(p + 1, tag, (size_t)tag_len) == 0)
            return true;
        p = close + 1;
    }
    return false;
}

bool http_is_json(const char *ct, bool merge_patch)
{
    if (!ct)
        return false;
    size_t len;
    if (strncasecmp(ct, "application/json", len = 16) != 0
        && (!merge_patch || strncasecmp(ct, "application/merge-patch+json", len = 28) != 0))
        return false;
    const char *p = ct + len;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return true;
    if (*p++ != ';')
        return false;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "charset=", 8) != 0)
        return false;
    p += 8;
    if (*p == '"')
        p++;
    if (strncasecmp(p, "utf-8", 5) != 0)
        return false;
    p += 5;
    if (*p == '"')
        p++;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0';
}
