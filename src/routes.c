#include "routes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cursor.h"
#include "http.h"
#include "clock.h"
#include "hub.h"
#include "metrics.h"
#include "order.h"
#include "sha256.h"
#include "sse.h"
#include "uri.h"
#include "writes.h"

#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 200
#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX 1000
#define IDEMPOTENCY_KEY_MAX 255
#define CORS_MAX_AGE_S 600

enum method { M_GET, M_POST, M_PATCH, M_DELETE, M_OPTIONS, M_COUNT };
_Static_assert((int)M_COUNT == (int)MM_OTHER && (int)M_OPTIONS == (int)MM_OPTIONS,
               "the metrics' method label is enum method, M_COUNT being any other");

static const char *const method_names[M_COUNT] = {
    [M_GET] = "GET", [M_POST] = "POST", [M_PATCH] = "PATCH",
    [M_DELETE] = "DELETE", [M_OPTIONS] = "OPTIONS",
};

/* One request on its way through the API. */
struct call {
    struct worker *w;
    FCGX_Request *req;
    enum method method;
    const char *query;
    char id[ORDER_ID_MAX];          /* the {id} of /orders/{id} */
    bool cors_allowed;              /* the Origin may read the answer */
    bool handed_over;               /* the stream hub owns the connection now */
    struct reply reply;
    struct error err;
};

typedef int handler_fn(struct call *c);

static handler_fn list_orders, create_order, get_order, patch_order, delete_order,
    list_events, serve_stream, health, metrics;

/* The routing table. A path ending in '/' takes one more segment: the id.
 * Each route is counted under its pattern's label (metrics.h). */
static const struct route {
    const char *path;
    const char *allow;
    enum metrics_route label;
    handler_fn *handlers[M_COUNT];
} routes[] = {
    {"/orders", "GET, POST, OPTIONS", MR_ORDERS, {[M_GET] = list_orders, [M_POST] = create_order}},
    {"/orders/", "GET, PATCH, DELETE, OPTIONS", MR_ORDER,
     {[M_GET] = get_order, [M_PATCH] = patch_order, [M_DELETE] = delete_order}},
    {"/events", "GET, OPTIONS", MR_EVENTS, {[M_GET] = list_events}},
    {"/stream/events", "GET, OPTIONS", MR_STREAM, {[M_GET] = serve_stream}},
    {"/health", "GET, OPTIONS", MR_HEALTH, {[M_GET] = health}},
    {"/metrics", "GET, OPTIONS", MR_METRICS, {[M_GET] = metrics}},
};

static const char *param(struct call *c, const char *name)
{
    return FCGX_GetParam(name, c->req->envp);
}

/* ord_ and at least five digits: anything else cannot name an order, and is
 * refused before it reaches SQL or a header. */
static bool valid_order_id(const char *id)
{
    if (strncmp(id, "ord_", 4) != 0)
        return false;
    size_t digits = strspn(id + 4, "0123456789");
    return digits >= 5 && id[4 + digits] == '\0' && strlen(id) < ORDER_ID_MAX;
}

/* Finds the route for path; for an item route, decodes and checks the id. */
static const struct route *match_route(const char *path, int len, struct call *c)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        size_t plen = strlen(r->path);
        if ((size_t)len < plen || memcmp(path, r->path, plen) != 0)
            continue;
        if (r->path[plen - 1] != '/') {
            if ((size_t)len == plen)
                return r;
            continue;
        }
        const char *seg = path + plen;
        size_t seg_len = (size_t)len - plen;
        if (seg_len == 0 || memchr(seg, '/', seg_len))
            continue;
        char *id = uri_decode(seg, seg_len, 0);
        bool ok = id && valid_order_id(id);
        if (ok)
            snprintf(c->id, sizeof c->id, "%s", id);
        free(id);
        return ok ? r : NULL;
    }
    return NULL;
}

/* Parses a decimal query parameter. Returns 0 (value or default set), or -1
 * with err set when it is present and not an integer from min to max. */
static int int_param(struct call *c, const char *name, long long def, long long min,
                     long long max, long long *out)
{
    char *v = NULL;
    int found = uri_query_param(c->query, name, &v);
    if (found == 0) {
        *out = def;
        return 0;
    }
    int rc = -1;
    if (found > 0 && v[0] && strlen(v) <= 18 && strspn(v, "0123456789") == strlen(v)) {
        *out = strtoll(v, NULL, 10);
        rc = (*out >= min && *out <= max) ? 0 : -1;
    }
    free(v);
    if (rc)
        return error_set(&c->err, ERR_INVALID_PARAMETER, "%s must be an integer from %lld to %lld",
                         name, min, max);
    return 0;
}

static void set_json(struct call *c, int status)
{
    c->reply.status = status;
    c->reply.content_type = "application/json";
}

static int list_orders(struct call *c)
{
    long long limit;
    if (int_param(c, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX, &limit))
        return -1;

    char *status = NULL, *cursor = NULL;
    long long after_seq = 0;
    int rc = -1;
    enum order_status st;
    if (uri_query_param(c->query, "status", &status) < 0
        || (status && order_status_parse(status, &st) != 0)) {
        error_set(&c->err, ERR_INVALID_PARAMETER,
                  "status must be one of pending, paid, shipped, delivered, cancelled");
    } else if (uri_query_param(c->query, "cursor", &cursor) < 0
               || (cursor && cursor_decode(cursor, &after_seq) != 0)) {
        error_set(&c->err, ERR_INVALID_PARAMETER, "cursor is not one this service gave out");
    } else {
        rc = store_list(c->w->store, status, after_seq, (int)limit, &c->reply.body, &c->err);
    }
    free(status);
    free(cursor);
    if (rc == 0)
        set_json(c, 200);
    return rc;
}

static int get_order(struct call *c)
{
    struct order_doc doc;
    if (store_get(c->w->store, c->id, &doc, &c->reply.body, &c->err))
        return -1;
    reply_header(&c->reply, "ETag", "\"%lld\"", doc.version);
    const char *inm = param(c, "HTTP_IF_NONE_MATCH");
    if (inm && http_etag_matches(inm, doc.version, true)) {
        c->reply.status = 304;
        buf_reset(&c->reply.body);
        return 0;
    }
    set_json(c, 200);
    return 0;
}

/* Reads and parses a JSON body. The body is read before anything is
 * refused: mod_fcgid sends all of it before it looks at the answer. */
static int read_order_input(struct call *c, bool for_create, struct buf *body,
                            struct order_input *in)
{
    if (http_read_body(c->req, c->w->svc->cfg->max_body, body, &c->err))
        return -1;
    if (!http_is_json(param(c, "CONTENT_TYPE"), !for_create))
        return error_set(&c->err, ERR_UNSUPPORTED_MEDIA_TYPE,
                         for_create ? "Content-Type must be application/json"
                                    : "Content-Type must be application/json or "
                                      "application/merge-patch+json");
    return order_input_parse(body->data ? body->data : "", body->len, for_create, in, &c->err);
}

static int create_order(struct call *c)
{
    struct buf body = BUF_INIT;
    struct order_input in;
    const char *key = param(c, "HTTP_IDEMPOTENCY_KEY");
    int rc = read_order_input(c, true, &body, &in);
    if (rc == 0 && key) {
        size_t len = strlen(key);
        bool printable = len > 0 && len <= IDEMPOTENCY_KEY_MAX;
        for (size_t i = 0; printable && i < len; i++)
            printable = key[i] >= 0x21 && key[i] <= 0x7e;
        if (!printable) {
            rc = error_set(&c->err, ERR_INVALID_PARAMETER,
                           "Idempotency-Key must be 1 to %d visible ASCII characters",
                           IDEMPOTENCY_KEY_MAX);
            order_input_free(&in);
        }
    }
    if (rc == 0) {
        char body_sha[2 * SHA256_LEN + 1];
        sha256_hex(buf_str(&body), body.len, body_sha);
        struct order_doc doc;
        struct write_request wr = {.kind = WRITE_CREATE, .in = &in, .idempotency_key = key,
                                   .body_sha256 = body_sha, .doc = &doc, .out = &c->reply.body,
                                   .err = &c->err};
        rc = writes_apply(c->w->svc->writes, &wr);
        order_input_free(&in);
        if (rc == 0) {
            if (!doc.replayed)
                hub_notify(c->w->svc->hub);
            set_json(c, 201);
            reply_header(&c->reply, "Location", "/api/v1/orders/%s", doc.id);
            reply_header(&c->reply, "ETag", "\"%lld\"", doc.version);
            if (doc.replayed)
                reply_header(&c->reply, "Idempotent-Replayed", "true");
        }
    }
    buf_free(&body);
    return rc;
}

static int patch_order(struct call *c)
{
    struct buf body = BUF_INIT;
    struct order_input in;
    int rc = read_order_input(c, false, &body, &in);
    buf_free(&body);
    if (rc)
        return -1;
    struct order_doc doc;
    struct write_request wr = {.kind = WRITE_PATCH, .id = c->id, .in = &in,
                               .if_match = param(c, "HTTP_IF_MATCH"), .doc = &doc,
                               .out = &c->reply.body, .err = &c->err};
    rc = writes_apply(c->w->svc->writes, &wr);
    order_input_free(&in);
    if (rc)
        return -1;
    hub_notify(c->w->svc->hub);
    set_json(c, 200);
    reply_header(&c->reply, "ETag", "\"%lld\"", doc.version);
    return 0;
}

static int delete_order(struct call *c)
{
    struct buf body = BUF_INIT;
    int rc = http_read_body(c->req, c->w->svc->cfg->max_body, &body, &c->err);
    buf_free(&body);
    struct write_request wr = {.kind = WRITE_DELETE, .id = c->id,
                               .if_match = param(c, "HTTP_IF_MATCH"), .err = &c->err};
    if (rc || writes_apply(c->w->svc->writes, &wr))
        return -1;
    hub_notify(c->w->svc->hub);
    c->reply.status = 204;
    return 0;
}

static int list_events(struct call *c)
{
    long long after, limit;
    if (int_param(c, "after", 0, 0, INT64_MAX / 2, &after)
        || int_param(c, "limit", EVENTS_LIMIT_DEFAULT, 1, EVENTS_LIMIT_MAX, &limit))
        return -1;
    if (store_events(c->w->store, after, (int)limit, &c->reply.body, &c->err))
        return -1;
    set_json(c, 200);
    return 0;
}

static int health(struct call *c)
{
    long long head;
    const char *backend = store_backend_name(c->w->store);
    if (store_head(c->w->store, &head, &c->err))
        return error_set(&c->err, ERR_UNAVAILABLE, "the database (%s) does not answer", backend);
    buf_printf(&c->reply.body, "{\"status\":\"ok\",\"lastEventId\":%lld,\"streams\":%ld,"
               "\"backend\":\"%s\",\"database\":\"reachable\"}", head,
               hub_stream_count(c->w->svc->hub), backend);
    set_json(c, 200);
    return 0;
}

/* Prometheus text exposition of every process's counters, plus the event
 * log's bounds as this thread's connection sees them. */
static int metrics(struct call *c)
{
    struct metrics_db db;
    if (store_head(c->w->store, &db.head_id, &c->err)
        || store_oldest(c->w->store, &db.oldest_id, &c->err))
        return -1;
    if (metrics_render(c->w->svc->metrics, &db, &c->reply.body) != 0)
        return error_set(&c->err, ERR_INTERNAL, "the metrics file cannot be locked");
    if (buf_failed(&c->reply.body))
        return error_set(&c->err, ERR_INTERNAL, "out of memory");
    c->reply.status = 200;
    c->reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

/* True when Accept-Encoding lists gzip without q=0. */
static bool accepts_gzip(const char *accept)
{
    for (const char *p = accept; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        if (len >= 4 && strncasecmp(p, "gzip", 4) == 0 && (len == 4 || p[4] == ';' || p[4] == ' ')) {
            const char *q = memchr(p, '=', len);
            return !q || strtod(q + 1, NULL) > 0;
        }
        p += len;
    }
    return false;
}

/* The client's position: the Last-Event-ID header, else the lastEventId
 * parameter (a new EventSource cannot set headers), else the head. */
static int stream_position(struct call *c, long long *position)
{
    const char *header = param(c, "HTTP_LAST_EVENT_ID");
    char *query = NULL;
    int found = header && *header ? 1 : uri_query_param(c->query, "lastEventId", &query);
    const char *value = header && *header ? header : query;
    int rc = 0;
    *position = -1;
    if (found != 0 && (found < 0 || sse_parse_position(value, position) != 0))
        rc = error_set(&c->err, ERR_INVALID_LAST_EVENT_ID,
                       "Last-Event-ID must be a non-negative integer");
    free(query);
    return rc;
}

static int serve_stream(struct call *c)
{
    struct stream_request sr = {.headers = BUF_INIT};
    /* Refused here, so that the hub never has request input to read. */
    const char *length = param(c, "CONTENT_LENGTH");
    if (length && *length && strcmp(length, "0") != 0)
        return error_set(&c->err, ERR_PAYLOAD_TOO_LARGE, "the stream takes no request body");
    if (stream_position(c, &sr.position))
        return -1;
    char *types = NULL, *ids = NULL;
    int rc;
    if (uri_query_param(c->query, "types", &types) < 0 || uri_query_param(c->query, "ids", &ids) < 0)
        rc = error_set(&c->err, ERR_INVALID_PARAMETER, "types and ids must be comma lists");
    else
        rc = sse_filter_parse(types, ids, &sr.filter, &c->err);
    free(types);
    free(ids);
    if (rc)
        return -1;
    sr.gzip = accepts_gzip(param(c, "HTTP_ACCEPT_ENCODING"));
    buf_append(&sr.headers, buf_str(&c->reply.headers), c->reply.headers.len);
    rc = hub_adopt(c->w->svc->hub, c->req, &sr, &c->err);
    sse_filter_free(&sr.filter);
    buf_free(&sr.headers);
    if (rc == 0)
        c->handed_over = true;      /* and the request has no params any more */
    return rc;
}

static bool origin_allowed(const struct config *cfg, const char *origin)
{
    if (!origin)
        return false;
    if (cfg->cors_any)
        return true;
    for (char **o = cfg->cors_origins; o && *o; o++)
        if (strcmp(*o, origin) == 0)
            return true;
    return false;
}

/* Adds the CORS headers when the request's Origin is allowed; the Origin
 * is echoed only after it matched a configured one, never as sent. */
static void add_cors(struct call *c)
{
    const struct config *cfg = c->w->svc->cfg;
    if (!cfg->cors_any && !cfg->cors_origins)
        return;
    const char *origin = param(c, "HTTP_ORIGIN");
    reply_header(&c->reply, "Vary", "Origin");
    if (!origin_allowed(cfg, origin))
        return;
    c->cors_allowed = true;
    if (cfg->cors_any)
        reply_header(&c->reply, "Access-Control-Allow-Origin", "*");
    else
        reply_header(&c->reply, "Access-Control-Allow-Origin", "%s", origin);
    reply_header(&c->reply, "Access-Control-Expose-Headers", "ETag, Location, Retry-After");
}

static int preflight(struct call *c, const struct route *r)
{
    c->reply.status = 204;
    reply_header(&c->reply, "Allow", "%s", r->allow);
    if (c->cors_allowed) {
        reply_header(&c->reply, "Access-Control-Allow-Methods", "%s", r->allow);
        reply_header(&c->reply, "Access-Control-Allow-Headers",
                     "Authorization, Content-Type, If-Match, If-None-Match, "
                     "Idempotency-Key, Last-Event-ID");
        reply_header(&c->reply, "Access-Control-Max-Age", "%d", CORS_MAX_AGE_S);
    }
    return 0;
}

/* Writes need a token when a tokens file is set; reads only with
 * ORDERS_READ_TOKENS=1. The stream may carry it in the query, since an
 * EventSource cannot set headers. */
static int authorize(struct call *c, bool is_stream)
{
    const struct service *svc = c->w->svc;
    if (!svc->auth || (c->method == M_GET && !svc->cfg->read_tokens))
        return 0;
    const char *token = auth_bearer_token(param(c, "HTTP_AUTHORIZATION"));
    char *query_token = NULL;
    if (!token && is_stream && uri_query_param(c->query, "access_token", &query_token) > 0)
        token = query_token;
    bool ok = token && auth_token_valid(svc->auth, token);
    free(query_token);
    if (!ok)
        return error_set(&c->err, ERR_UNAUTHORIZED, "a valid bearer token is required");
    return 0;
}

static enum method parse_method(const char *m)
{
    for (int i = 0; i < M_COUNT; i++)
        if (m && strcmp(m, method_names[i]) == 0)
            return (enum method)i;
    return M_COUNT;
}

static int dispatch(struct call *c, const struct route **matched)
{
    const char *uri = param(c, "REQUEST_URI");
    const char *path;
    int len = uri ? uri_route(uri, &path, &c->query) : -1;
    const struct route *r = len >= 0 ? match_route(path, len, c) : NULL;
    *matched = r;
    c->method = parse_method(param(c, "REQUEST_METHOD"));
    if (!r)
        return error_set(&c->err, ERR_NOT_FOUND, "no such resource");
    add_cors(c);
    if (c->method == M_OPTIONS)
        return preflight(c, r);
    if (c->method == M_COUNT || !r->handlers[c->method])
        return error_set(&c->err, ERR_METHOD_NOT_ALLOWED, "this resource allows %s", r->allow);
    if (authorize(c, r->handlers[c->method] == serve_stream))
        return -1;
    return r->handlers[c->method](c);
}

void routes_handle(struct worker *w, FCGX_Request *req)
{
    long long started_ns = clock_monotonic_ns();
    struct call c = {.w = w, .req = req, .query = "", .method = M_COUNT};
    reply_init(&c.reply);
    const struct route *r = NULL;
    if (dispatch(&c, &r) != 0) {
        reply_error(&c.reply, &c.err);
        switch (c.err.kind) {
        case ERR_METHOD_NOT_ALLOWED:
            reply_header(&c.reply, "Allow", "%s", r->allow);
            break;
        case ERR_UNAUTHORIZED:
            reply_header(&c.reply, "WWW-Authenticate", "Bearer realm=\"orders\"");
            break;
        case ERR_UNAVAILABLE:
        case ERR_WRITE_CONFLICT:
        case ERR_INSUFFICIENT_STORAGE:
            reply_header(&c.reply, "Retry-After", "1");
            break;
        default:
            break;
        }
    }
    /* A failed send means the web server dropped the request: there is
     * nobody left to tell, and the next FCGX_Accept_r cleans up. */
    if (!c.handed_over)
        (void)reply_send(&c.reply, req->out);
    /* A stream handed over counts as 200: its headers go out from the hub. */
    metrics_request(w->svc->metrics, (enum metrics_method)c.method, r ? r->label : MR_UNMATCHED,
                    c.handed_over ? 200 : c.reply.status, clock_monotonic_ns() - started_ns);
    reply_free(&c.reply);
}
