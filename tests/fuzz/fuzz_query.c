/* libFuzzer target: REQUEST_URI handling (src/uri.h) and list cursors
 * (src/cursor.h).
 *
 * The input, up to its first NUL, is a REQUEST_URI; what follows a NUL, if
 * anything, is one more query parameter name to look up. Checked, besides
 * the sanitizers:
 *
 *  - uri_route() finds the first "/api/v1/" of the path part (before '?'),
 *    returns the route from its last slash up to the query, and points
 *    *query just after the first '?' (or at "");
 *  - uri_query_param() agrees with a reference reading of the query for the
 *    service's parameter names (first occurrence wins, '+' is a space);
 *  - uri_decode() of the raw bytes, with and without '+' as space, agrees
 *    with a reference decoder (bad escape, %00 and raw NUL refused);
 *  - cursor_decode() of the URI, of its cursor= value and of the query:
 *    a decoded seq is positive, re-encodes with cursor_encode() to the very
 *    same text, and that text decodes to the same seq;
 *  - cursor_encode()/cursor_decode() round trip for a seq taken from the
 *    input bytes.
 *
 * Any violation calls abort() after printing what broke. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "uri.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_query: invariant failed: %s: ", #cond);     \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

static const char *const names[] = {
    "status", "limit", "cursor", "after", "lastEventId", "types", "ids", "access_token",
    "s", "cursor=",
};

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reference percent-decoder; returns the length or -1, *out malloc'd. */
static long ref_decode(const char *s, size_t len, bool plus, char **out)
{
    char *o = malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3 || hex((unsigned char)s[i + 1]) < 0
                || hex((unsigned char)s[i + 2]) < 0) {
                free(o);
                return -1;
            }
            c = (unsigned char)(hex((unsigned char)s[i + 1]) * 16 + hex((unsigned char)s[i + 2]));
            if (c == 0) {
                free(o);
                return -1;
            }
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        } else if (c == 0) {
            free(o);
            return -1;
        }
        o[n++] = (char)c;
    }
    o[n] = '\0';
    *out = o;
    return (long)n;
}

static void check_decode(const char *s, size_t len, bool plus)
{
    char *want = NULL;
    long want_len = ref_decode(s, len, plus, &want);
    char *got = uri_decode(s, len, plus);
    if (want_len < 0) {
        CHECK(got == NULL, "uri_decode accepted what the reference refuses (plus=%d): %s",
              plus, got);
    } else {
        CHECK(got != NULL, "uri_decode refused a good escape (plus=%d)", plus);
        CHECK(strlen(got) == (size_t)want_len && memcmp(got, want, (size_t)want_len) == 0,
              "uri_decode differs from the reference (plus=%d): [%s] vs [%s]", plus, got, want);
    }
    free(got);
    free(want);
}

/* Reference lookup: 1 with a decoded copy, 0 when absent, -1 when bad. */
static int ref_param(const char *query, const char *name, char **value)
{
    size_t name_len = strlen(name);
    const char *p = query;
    for (;;) {
        const char *end = strchr(p, '&');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *key_end = eq ? eq : end;
        if (p < end && (size_t)(key_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : end;
            return ref_decode(v, (size_t)(end - v), true, value) < 0 ? -1 : 1;
        }
        if (!*end)
            return 0;
        p = end + 1;
    }
}

static void check_param(const char *query, const char *name)
{
    char *got = (char *)0x1, *want = NULL;
    int rc = uri_query_param(query, name, &got);
    int want_rc = ref_param(query, name, &want);
    CHECK(rc == want_rc, "uri_query_param(%s, %s) = %d, reference %d", query, name, rc, want_rc);
    if (rc == 1) {
        CHECK(got && strcmp(got, want) == 0, "value of %s: [%s] vs [%s]", name, got, want);
        free(got);
    }
    free(want);
}

static void check_cursor(const char *s)
{
    long long seq = 0;
    if (cursor_decode(s, &seq) != 0)
        return;
    CHECK(seq > 0, "cursor %s decodes to %lld", s, seq);
    char again[CURSOR_MAX];
    cursor_encode(seq, again);
    CHECK(strcmp(again, s) == 0, "cursor %s decodes to %lld, which encodes as %s", s, seq, again);
    long long seq2 = -1;
    CHECK(cursor_decode(again, &seq2) == 0 && seq2 == seq, "re-encoded cursor %s: %lld vs %lld",
          again, seq2, seq);
}

static void check_route(const char *uri)
{
    const char *path = NULL, *query = NULL;
    int len = uri_route(uri, &path, &query);
    const char *q = strchr(uri, '?');
    size_t path_part = q ? (size_t)(q - uri) : strlen(uri);
    CHECK(q ? query == q + 1 : query && *query == '\0', "query set wrongly");
    const char *first = memmem(uri, path_part, "/api/v1/", 8);
    if (!first) {
        CHECK(len == -1, "uri_route found a route (%d) without /api/v1/", len);
        return;
    }
    CHECK(len >= 0, "uri_route missed /api/v1/ at %td", first - uri);
    CHECK(path == first + 7, "route starts at %td, /api/v1/ at %td", path - uri, first - uri);
    CHECK(path + len == uri + path_part, "route length %d", len);
    CHECK(path[0] == '/', "route does not start with '/'");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    char *buf = malloc(size + 2);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = '\0';
    const char *uri = buf;
    size_t uri_len = strlen(uri);
    const char *extra_name = uri_len < size ? buf + uri_len + 1 : NULL;

    /* The raw bytes, NULs and all, as one escaped string. */
    check_decode((const char *)data, size, false);
    check_decode((const char *)data, size, true);

    check_route(uri);
    const char *path, *query;
    uri_route(uri, &path, &query);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        check_param(query, names[i]);
        check_param(uri, names[i]);
    }
    if (extra_name && *extra_name) {
        check_param(query, extra_name);
        check_param(uri, extra_name);
    }

    /* Cursors as routes.c reads them, and raw. */
    check_cursor(uri);
    check_cursor(query);
    char *cursor = NULL;
    if (uri_query_param(query, "cursor", &cursor) > 0) {
        check_cursor(cursor);
        free(cursor);
    }

    /* Encode/decode round trip for a seq from the input. */
    if (size >= 8) {
        uint64_t raw;
        memcpy(&raw, data, 8);
        long long seq = (long long)(raw >> 1);     /* 0 .. LLONG_MAX */
        if (seq > 0 && seq < __LONG_LONG_MAX__) {
            char enc[CURSOR_MAX];
            cursor_encode(seq, enc);
            long long back = -1;
            CHECK(strlen(enc) < CURSOR_MAX, "encoded cursor too long");
            CHECK(cursor_decode(enc, &back) == 0 && back == seq,
                  "cursor_encode(%lld) = %s decodes to %lld", seq, enc, back);
        }
    }

    free(buf);
    return 0;
}
