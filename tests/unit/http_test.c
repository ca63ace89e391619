/* Unit tests of the pure helpers of src/http.c: ETag matching, the JSON
 * media type check, the one JSON error body, header lines; and, through a
 * real libfcgi accept, the hand-over of an accepted connection and the end
 * of a request on a connection kept or not (http_finish). */
#include <fastcgi.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../src/buf.h"
#include "../../src/fcgi_record.h"
#include "../../src/http.h"
#include "../../src/order.h"
#include "tap.h"

static void etag_both(const char *header, long long version, bool want_weak, bool want_strong)
{
    is_int(http_etag_matches(header, version, true), want_weak, "etag '%s' vs %lld (weak): %s",
           header, version, want_weak ? "matches" : "no match");
    is_int(http_etag_matches(header, version, false), want_strong,
           "etag '%s' vs %lld (strong, If-Match): %s", header, version,
           want_strong ? "matches" : "no match");
}

/* Headers without W/ tags compare the same either way. */
static void etag(const char *header, long long version, bool want)
{
    etag_both(header, version, want, want);
}

static void media_type_for(const char *ct, bool want_post, bool want_patch)
{
    is_int(http_is_json(ct, false), want_post, "http_is_json(%s%s%s) for POST: %s",
           ct ? "'" : "", ct ? ct : "NULL", ct ? "'" : "", want_post ? "yes" : "no");
    is_int(http_is_json(ct, true), want_patch, "http_is_json(%s%s%s) for PATCH: %s",
           ct ? "'" : "", ct ? ct : "NULL", ct ? "'" : "", want_patch ? "yes" : "no");
}

static void media_type(const char *ct, bool want)
{
    media_type_for(ct, want, want);
}

static void test_etag(void)
{
    etag("\"3\"", 3, true);
    etag("\"3\"", 4, false);
    etag_both("W/\"3\"", 3, true, false);
    etag_both("W/\"1\", \"3\"", 3, true, true);
    etag("\"1\", \"3\"", 3, true);
    etag("\"1\",\"3\"", 3, true);
    etag_both("\"1\", W/\"3\"", 3, true, false);
    etag("\"1\", \"2\"", 3, false);
    etag("  \"3\"  ", 3, true);
    etag("*", 3, true);
    etag("*", 1, true);
    etag("\"30\"", 3, false);
    etag("\"3\"", 30, false);
    etag("\"13\"", 3, false);
    etag("\"03\"", 3, false);
    etag("3", 3, false);
    etag("garbage", 3, false);
    etag("", 3, false);
    etag("\"\"", 3, false);
    etag("\"abc\"", 3, false);
    etag("\"3", 3, false);
    etag("\"+3\"", 3, false);
    etag("\"-3\"", -3, false);
    etag("\" 3\"", 3, false);
    etag("\"3 \"", 3, false);
    etag("\"3.0\"", 3, false);
    etag("\"9223372036854775807\"", 9223372036854775807LL, true);
    etag("\"99999999999999999999\"", 9223372036854775807LL, false);
    etag("\"1\", garbage, \"3\"", 3, false);
}

static void test_is_json(void)
{
    media_type("application/json", true);
    media_type("Application/JSON", true);
    media_type("application/json; charset=utf-8", true);
    media_type("application/json;charset=UTF-8", true);
    media_type("application/json; charset=\"UTF-8\"", true);
    media_type("application/json ; charset=utf-8 ", true);
    media_type_for("application/merge-patch+json", false, true);
    media_type_for("application/merge-patch+json; charset=utf-8", false, true);
    media_type("text/plain", false);
    media_type("text/json", false);
    media_type("application/jsonx", false);
    media_type("application/json-patch+json", false);
    media_type("application/x-www-form-urlencoded", false);
    media_type("application/json; charset=latin1", false);
    media_type("application/json; charset=utf-16", false);
    media_type("application/json; charset=utf-8x", false);
    media_type("application/json; boundary=x", false);
    media_type("application/json; charset=utf-8; x=y", false);
    media_type("application/json;", false);
    media_type("", false);
    media_type(NULL, false);
}

/* The body must be exactly {"error":{"code":...,"message":...}}; returns the
 * message (malloc'd) or NULL. */
static char *error_message_of(const struct reply *r)
{
    const char *body = r->body.data ? r->body.data : "";
    json_object *o = json_tokener_parse(body), *e, *code, *msg;
    char *out = NULL;
    if (o && json_object_object_length(o) == 1 && json_object_object_get_ex(o, "error", &e)
        && json_object_object_length(e) == 2 && json_object_object_get_ex(e, "code", &code)
        && json_object_object_get_ex(e, "message", &msg)
        && json_object_is_type(msg, json_type_string))
        out = strdup(json_object_get_string(msg));
    json_object_put(o);
    return out;
}

static void test_reply_error(void)
{
    struct reply r;
    struct error e;
    reply_init(&r);
    is_int(r.status, 200, "reply_init: status 200");

    buf_puts(&r.body, "{\"data\":\"half-built\"");
    error_set(&e, ERR_NOT_FOUND, "order %s not found", "ord_00042");
    reply_error(&r, &e);
    is_int(r.status, 404, "reply_error not_found: status 404");
    is_str(r.content_type, "application/json", "reply_error: content type");
    is_str(buf_str(&r.body), "{\"error\":{\"code\":\"not_found\",\"message\":\"order ord_00042 not found\"}}",
           "reply_error not_found: exact body, earlier body dropped");
    is_int(r.body.len, strlen(buf_str(&r.body)), "reply_error: body.len matches");

    error_set(&e, ERR_VALIDATION_FAILED, "say \"hi\" \\ a/b\n\tend");
    reply_error(&r, &e);
    is_int(r.status, 422, "reply_error validation_failed: status 422");
    is_str(buf_str(&r.body),
           "{\"error\":{\"code\":\"validation_failed\",\"message\":\"say \\\"hi\\\" \\\\ a/b\\n\\tend\"}}",
           "reply_error: message escaped, slash left alone");

    error_set(&e, ERR_VALIDATION_FAILED, "customer \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    reply_error(&r, &e);
    is_str(buf_str(&r.body),
           "{\"error\":{\"code\":\"validation_failed\",\"message\":\"customer \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}",
           "reply_error: UTF-8 message kept raw");

    /* Statuses and codes of SPEC section 2. */
    static const struct {
        enum error_kind kind;
        int status;
        const char *code;
    } table[] = {
        {ERR_INVALID_JSON, 400, "invalid_json"},
        {ERR_INVALID_PARAMETER, 400, "invalid_parameter"},
        {ERR_INVALID_LAST_EVENT_ID, 400, "invalid_last_event_id"},
        {ERR_UNAUTHORIZED, 401, "unauthorized"},
        {ERR_NOT_FOUND, 404, "not_found"},
        {ERR_METHOD_NOT_ALLOWED, 405, "method_not_allowed"},
        {ERR_INVALID_TRANSITION, 409, "invalid_transition"},
        {ERR_IDEMPOTENCY_KEY_REUSED, 409, "idempotency_key_reused"},
        {ERR_PRECONDITION_FAILED, 412, "precondition_failed"},
        {ERR_PAYLOAD_TOO_LARGE, 413, "payload_too_large"},
        {ERR_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type"},
        {ERR_VALIDATION_FAILED, 422, "validation_failed"},
        {ERR_UNAVAILABLE, 503, "unavailable"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        error_set(&e, table[i].kind, "m");
        reply_error(&r, &e);
        char want[128];
        snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":\"m\"}}",
                 table[i].code);
        ok(r.status == table[i].status && strcmp(buf_str(&r.body), want) == 0,
           "reply_error %s: %d and its body", table[i].code, table[i].status);
        if (r.status != table[i].status || strcmp(buf_str(&r.body), want) != 0)
            diag("  got %d %s", r.status, buf_str(&r.body));
    }

    /* A message cut by error_set's buffer in the middle of a character. */
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t c = 0; c < 3; c++) {
        for (size_t pad = 0; pad < 4; pad++) {
            char original[600];
            memset(original, 'a', pad);
            original[pad] = '\0';
            while (strlen(original) + 4 < sizeof original - 1)
                strcat(original, chars[c]);
            error_set(&e, ERR_NOT_FOUND, "%s", original);
            bool cut = !utf8_valid(e.message, strlen(e.message));
            reply_error(&r, &e);
            const char *body = buf_str(&r.body);
            char *msg = error_message_of(&r);
            size_t mlen = msg ? strlen(msg) : 0;
            ok(r.status == 404 && utf8_valid(body, r.body.len) && msg
                   && utf8_valid(msg, mlen) && strncmp(msg, original, mlen) == 0
                   && mlen + strlen(chars[c]) > sizeof e.message - 1,
               "reply_error: %zu-byte characters after %zu pad bytes%s: valid UTF-8, only the "
               "broken character dropped (%zu bytes kept)",
               strlen(chars[c]), pad, cut ? " (cut mid-character)" : "", mlen);
            free(msg);
        }
    }

    /* A message that quotes invalid bytes still gives valid JSON text. */
    error_set(&e, ERR_VALIDATION_FAILED, "%s is not a known field", "bad\xff");
    reply_error(&r, &e);
    char *msg = error_message_of(&r);
    ok(msg && utf8_valid(buf_str(&r.body), r.body.len),
       "reply_error: message with an invalid byte still gives a valid UTF-8 JSON body (%s)",
       buf_str(&r.body));
    free(msg);

    reply_free(&r);
}

/* A long value comes out whole: it used to be cut at 511 bytes. */
static void test_reply_header(void)
{
    static const size_t lengths[] = {0, 1, 511, 512, 513, 2000, 70000};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        struct reply r;
        reply_init(&r);
        char *value = malloc(lengths[i] + 1);
        if (!value)
            abort();
        memset(value, 'v', lengths[i]);
        value[lengths[i]] = '\0';
        reply_header(&r, "Location", "/api/v1/orders/%s", value);
        struct buf want = BUF_INIT;
        buf_printf(&want, "Location: /api/v1/orders/%s\r\n", value);
        ok(!buf_failed(&r.headers) && r.headers.len == want.len
               && strcmp(buf_str(&r.headers), buf_str(&want)) == 0,
           "reply_header: a %zu-byte value comes out whole (%zu bytes of header)", lengths[i],
           r.headers.len);
        buf_free(&want);
        free(value);
        reply_free(&r);
    }

    struct reply r;
    reply_init(&r);
    reply_header(&r, "ETag", "\"%lld\"", 42LL);
    reply_header(&r, "Allow", "%s", "GET, OPTIONS");
    is_str(buf_str(&r.headers), "ETag: \"42\"\r\nAllow: GET, OPTIONS\r\n",
           "reply_header: lines follow each other, each ending in CRLF");
    reply_free(&r);
}

/* ------------------------------------------------------------ hand-over */

#define HANDOVER_REQUEST_ID 258     /* two bytes, both non-zero */

/* A listening Unix socket for libfcgi, at path (64 bytes) in a new
 * directory made from the template dir. Returns its fd, or -1 after a
 * failed test result. Undo with remove_listener(). */
static int listen_in_tempdir(char *dir, char *path)
{
    if (!mkdtemp(dir)) {
        ok(0, "a temporary directory for the listening socket");
        return -1;
    }
    snprintf(path, 64, "%s/sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4) != 0
        || FCGX_Init() != 0) {
        ok(0, "a listening socket for libfcgi");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void remove_listener(int fd, const char *dir, const char *path)
{
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* A web server's connection to the responder's socket, or -1. */
static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One FastCGI record of a web server: type, request id, content. */
static void web_server_record(struct buf *out, int type, const void *data, size_t len)
{
    unsigned char h[FCGI_HEADER_LEN] = {FCGI_VERSION_1, (unsigned char)type,
                                        HANDOVER_REQUEST_ID >> 8, HANDOVER_REQUEST_ID & 0xff,
                                        (unsigned char)(len >> 8), (unsigned char)len, 0, 0};
    buf_append(out, h, sizeof h);
    buf_append(out, data, len);
}

struct web_server {
    const char *path;
    struct buf got;         /* what the responder's side wrote back */
    bool sent;
};

/* A web server's side of one request: connects, sends BEGIN_REQUEST,
 * params and an empty stdin, then reads until the responder closes. */
static void *web_server_main(void *arg)
{
    struct web_server *ws = arg;
    int fd = connect_to(ws->path);
    if (fd < 0)
        return NULL;
    struct buf out = BUF_INIT;
    unsigned char begin[8] = {0, FCGI_RESPONDER, 0, 0, 0, 0, 0, 0};
    web_server_record(&out, FCGI_BEGIN_REQUEST, begin, sizeof begin);
    static const unsigned char params[] = "\016\003REQUEST_METHODGET\013\025REQUEST_URI"
                                          "/api/v1/stream/events";
    web_server_record(&out, FCGI_PARAMS, params, sizeof params - 1);
    web_server_record(&out, FCGI_PARAMS, "", 0);
    web_server_record(&out, FCGI_STDIN, "", 0);
    ws->sent = write(fd, out.data, out.len) == (ssize_t)out.len;
    buf_free(&out);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_append(&ws->got, chunk, (size_t)n);
    close(fd);
    return NULL;
}

/* The descriptor taken from an accepted request is that request's
 * connection: records written to it reach the web server, with the
 * request's id, and finishing the request afterwards does not close it.
 * Reading ipcFd from another offset (a libfcgi that changed the layout of
 * FCGX_Request) fails here. */
static void test_take_connection(void)
{
    char dir[] = "/tmp/http_test.XXXXXX", path[64];
    int listen_fd = listen_in_tempdir(dir, path);
    if (listen_fd < 0)
        return;
    FCGX_Request req;
    FCGX_InitRequest(&req, listen_fd, 0);
    struct web_server ws = {.path = path, .got = BUF_INIT};
    pthread_t t;
    pthread_create(&t, NULL, web_server_main, &ws);
    ok(FCGX_Accept_r(&req) == 0, "libfcgi accepted the request");
    is_str(FCGX_GetParam("REQUEST_URI", req.envp), "/api/v1/stream/events", "and read its params");

    int request_id = -1;
    int fd = http_take_connection(&req, &request_id);
    is_int(request_id, HANDOVER_REQUEST_ID, "the request id is the web server's");
    ok(req.envp == NULL, "the request has no params any more");
    FCGX_Finish_r(&req);
    ok(fcntl(fd, F_GETFD) != -1, "finishing the request left the connection open");
    struct buf out = BUF_INIT;
    fcgi_stdout(&out, request_id, "data: taken\n\n", 13);
    fcgi_end_request(&out, request_id);
    ok(write(fd, out.data, out.len) == (ssize_t)out.len, "the taken descriptor takes records");
    close(fd);
    pthread_join(t, NULL);
    ok(ws.sent, "the web server sent its request");
    ok(ws.got.len == out.len && memcmp(ws.got.data, out.data, out.len) == 0,
       "the web server got exactly those records (%zu of %zu bytes)", ws.got.len, out.len);
    buf_free(&out);
    buf_free(&ws.got);
    FCGX_Free(&req, 1);
    remove_listener(listen_fd, dir, path);
}

/* ------------------------------------------------------------ http_finish */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reads one record whole; returns its type, or -1 at EOF (*eof_errno is 0
 * for an orderly end) or on error. */
static int read_record(int fd, int *eof_errno)
{
    unsigned char h[FCGI_HEADER_LEN], body[65536 + 255];
    size_t got = 0;
    while (got < sizeof h) {
        ssize_t n = read(fd, h + got, sizeof h - got);
        if (n <= 0) {
            *eof_errno = n == 0 ? 0 : errno;
            return -1;
        }
        got += (size_t)n;
    }
    size_t len = ((size_t)h[4] << 8 | h[5]) + h[6];
    for (got = 0; got < len;) {
        ssize_t n = read(fd, body + got, len - got);
        if (n <= 0) {
            *eof_errno = n == 0 ? 0 : errno;
            return -1;
        }
        got += (size_t)n;
    }
    return h[1];
}

struct finishing_server {
    const char *path;
    bool keep;              /* FCGI_KEEP_CONN, and a second request after the first */
    int requests_answered;
    int eof_errno;          /* how the connection ended: 0 for an orderly close */
    bool eof;
};

/* Sends a request with a body the responder never reads, reads its answer
 * to the end record; with keep, sends a second request on the same
 * connection, then closes. Without, reads until the responder closes,
 * holding its own end open for 600 ms after that. */
static void *finishing_server_main(void *arg)
{
    struct finishing_server *ws = arg;
    int fd = connect_to(ws->path);
    if (fd < 0)
        return NULL;
    for (int i = 0; i < (ws->keep ? 2 : 1); i++) {
        struct buf out = BUF_INIT;
        unsigned char begin[8] = {0, FCGI_RESPONDER, ws->keep ? FCGI_KEEP_CONN : 0, 0, 0, 0, 0, 0};
        web_server_record(&out, FCGI_BEGIN_REQUEST, begin, sizeof begin);
        static const unsigned char params[] = "\016\004REQUEST_METHODPOST\016\001CONTENT_LENGTH5";
        web_server_record(&out, FCGI_PARAMS, params, sizeof params - 1);
        web_server_record(&out, FCGI_PARAMS, "", 0);
        bool sent = write(fd, out.data, out.len) == (ssize_t)out.len;
        /* The body comes later, as from a client that sends it after its
         * headers: still in the socket, not in libfcgi's buffer, when the
         * responder has answered. */
        struct timespec later = {0, 100 * 1000000L};
        nanosleep(&later, NULL);
        buf_reset(&out);
        web_server_record(&out, FCGI_STDIN, "hello", 5);
        web_server_record(&out, FCGI_STDIN, "", 0);
        sent = sent && write(fd, out.data, out.len) == (ssize_t)out.len;
        buf_free(&out);
        if (!sent)
            break;
        int type;
        while ((type = read_record(fd, &ws->eof_errno)) >= 0 && type != FCGI_END_REQUEST)
            ;
        if (type != FCGI_END_REQUEST)
            break;
        ws->requests_answered++;
    }
    if (!ws->keep) {
        ws->eof = read_record(fd, &ws->eof_errno) < 0;
        struct timespec hold = {0, 600 * 1000000L};
        nanosleep(&hold, NULL);
    }
    close(fd);      /* a kept connection ends when the web server closes it */
    return NULL;
}

/* Accepts a request, answers it without reading its body, and times
 * http_finish. */
static long long answer_one(FCGX_Request *req)
{
    struct reply r;
    reply_init(&r);
    r.status = 204;
    reply_send(&r, req->out);
    reply_free(&r);
    long long t0 = now_ms();
    http_finish(req);
    return now_ms() - t0;
}

static void test_finish(bool keep)
{
    char dir[] = "/tmp/http_test.XXXXXX", path[64];
    int listen_fd = listen_in_tempdir(dir, path);
    if (listen_fd < 0)
        return;
    const char *how = keep ? "kept connection" : "connection not kept";
    FCGX_Request req;
    FCGX_InitRequest(&req, listen_fd, 0);
    struct finishing_server ws = {.path = path, .keep = keep};
    pthread_t t;
    pthread_create(&t, NULL, finishing_server_main, &ws);
    ok(FCGX_Accept_r(&req) == 0, "%s: libfcgi accepted the request", how);
    int first_fd = req.ipcFd;
    long long ms = answer_one(&req);
    if (keep) {
        ok(FCGX_Accept_r(&req) == 0 && req.ipcFd == first_fd,
           "%s: the next request came on the same connection", how);
        is_str(FCGX_GetParam("REQUEST_METHOD", req.envp), "POST", "%s: its params were read whole",
               how);
        answer_one(&req);
    } else {
        ok(ms < 300, "%s: http_finish closed at once, without waiting for the web server to "
                     "close its end (%lld ms)", how, ms);
    }
    pthread_join(t, NULL);
    is_int(ws.requests_answered, keep ? 2 : 1, "%s: the web server got every answer", how);
    if (!keep)
        ok(ws.eof && ws.eof_errno == 0,
           "%s: then an orderly end of the connection, not a reset for unread input (%s)", how,
           ws.eof_errno ? strerror(ws.eof_errno) : "EOF");
    FCGX_Free(&req, 1);
    remove_listener(listen_fd, dir, path);
}

int main(void)
{
    test_etag();
    test_is_json();
    test_reply_error();
    test_reply_header();
    test_take_connection();
    test_finish(false);
    test_finish(true);
    return done_testing();
}
