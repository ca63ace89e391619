/* libFuzzer target: the SSE helpers of src/sse.h.
 *
 * The input is split at its first NUL or newline: the part before is a
 * types= value (and a Last-Event-ID), the part after (up to a further NUL)
 * an ids= value (and another position). Checked, besides the sanitizers:
 *
 *  - sse_parse_position() accepts exactly the non-empty all-digit strings,
 *    with their value, LLONG_MAX past the range;
 *  - sse_filter_parse() accepts exactly the lists of known types and at most
 *    SSE_IDS_MAX non-empty ids, fills the filter with them (empty items
 *    skipped), leaves it empty on an error with invalid_parameter, and
 *    sse_filter_match() agrees with that filter; sse_filter_free() clears it;
 *  - sse_event() framing: whatever name and data hold, the event is
 *    "id: N" (when N >= 0), "event: NAME", "data: DATA" with CR and LF made
 *    spaces, then one blank line, and there is no blank line (by the SSE
 *    rule: CRLF, LF or CR end a line) before that terminating one.
 *
 * Any violation calls abort() after printing what broke. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "sse.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_sse: invariant failed: %s: ", #cond);       \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

static const char *const known_types[] = {"order.created", "order.updated", "order.deleted"};

/* ---- positions ---------------------------------------------------------- */

static void check_position(const char *s)
{
    long long pos = -7;
    int rc = sse_parse_position(s, &pos);
    bool digits = *s != '\0';
    long long want = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            digits = false;
            break;
        }
        int d = *p - '0';
        want = want > (LLONG_MAX - d) / 10 ? LLONG_MAX : want * 10 + d;
    }
    if (!digits) {
        CHECK(rc == -1, "position [%s] accepted as %lld", s, pos);
        return;
    }
    CHECK(rc == 0, "position [%s] refused", s);
    CHECK(pos == want, "position [%s] = %lld, want %lld", s, pos, want);
}

/* ---- filters ------------------------------------------------------------ */

struct list {
    char *items[SSE_IDS_MAX + 2];
    size_t count;           /* non-empty items, up to SSE_IDS_MAX + 1 kept */
    size_t total;
};

static void split(const char *s, struct list *l)
{
    memset(l, 0, sizeof *l);
    if (!s)
        return;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len) {
            if (l->count < SSE_IDS_MAX + 1)
                l->items[l->count++] = strndup(p, len);
            l->total++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
}

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
}

static unsigned type_bit(const char *s)
{
    for (unsigned i = 0; i < 3; i++)
        if (strcmp(s, known_types[i]) == 0)
            return 1u << i;
    return 0;
}

static void check_filter(const char *types, const char *ids)
{
    struct list tl, il;
    split(types, &tl);
    split(ids, &il);
    unsigned bits = 0;
    bool types_ok = true;
    for (size_t i = 0; i < tl.count; i++) {
        unsigned b = type_bit(tl.items[i]);
        types_ok = types_ok && b;
        bits |= b;
    }
    bool ids_ok = il.total <= SSE_IDS_MAX;

    struct sse_filter f;
    struct error err = {0};
    memset(&f, 0x5a, sizeof f);
    int rc = sse_filter_parse(types, ids, &f, &err);
    if (!types_ok || !ids_ok) {
        CHECK(rc == -1, "filter types=[%s] ids=(%zu items) accepted", types ? types : "(null)",
              il.total);
        CHECK(err.kind == ERR_INVALID_PARAMETER, "error kind %d", (int)err.kind);
        CHECK(f.ids == NULL && f.id_count == 0, "filter not empty after an error");
        sse_filter_free(&f);
        goto out;
    }
    CHECK(rc == 0, "filter types=[%s] ids=[%s] refused: %s", types ? types : "(null)",
          ids ? ids : "(null)", err.message);
    CHECK(f.types == bits, "types bits %#x, want %#x", f.types, bits);
    CHECK(f.id_count == il.count, "%zu ids, want %zu", f.id_count, il.count);
    CHECK(!f.ids == !il.count, "ids pointer vs count");
    for (size_t i = 0; i < il.count; i++)
        CHECK(strcmp(f.ids[i], il.items[i]) == 0, "id %zu: [%s] vs [%s]", i, f.ids[i],
              il.items[i]);

    /* Match against what the filter says it holds. */
    const char *try_types[] = {"order.created", "order.updated", "order.deleted", "order.x", "",
                               "connected", types ? types : "order.created"};
    const char *try_ids[8] = {"ord_00001", "", ids ? ids : "ord_00002"};
    size_t n_ids = 3;
    for (size_t i = 0; i < il.count && n_ids < 8; i++)
        try_ids[n_ids++] = il.items[i];
    for (size_t t = 0; t < sizeof try_types / sizeof try_types[0]; t++) {
        for (size_t k = 0; k < n_ids; k++) {
            bool want_type = bits == 0 || (type_bit(try_types[t]) & bits);
            bool want_id = il.count == 0;
            for (size_t i = 0; i < il.count && !want_id; i++)
                want_id = strcmp(il.items[i], try_ids[k]) == 0;
            bool got = sse_filter_match(&f, try_types[t], try_ids[k]);
            CHECK(got == (want_type && want_id), "match(%s, %s) = %d", try_types[t], try_ids[k],
                  got);
        }
    }
    sse_filter_free(&f);
    CHECK(f.ids == NULL && f.id_count == 0 && f.types == 0, "filter not cleared by free");
out:
    list_free(&tl);
    list_free(&il);
}

/* ---- events ------------------------------------------------------------- */

/* Length of the line terminator at p (CRLF, LF or CR), 0 when none. */
static size_t eol(const char *p, const char *end)
{
    if (p < end && *p == '\r')
        return p + 1 < end && p[1] == '\n' ? 2 : 1;
    if (p < end && *p == '\n')
        return 1;
    return 0;
}

/* Takes the next line from *p; returns false at the end without a
 * terminator (a line the client would never see). */
static bool next_line(const char **p, const char *end, const char **line, size_t *len)
{
    const char *s = *p;
    while (s < end && !eol(s, end))
        s++;
    if (s == end)
        return false;
    *line = *p;
    *len = (size_t)(s - *p);
    *p = s + eol(s, end);
    return true;
}

static bool line_is(const char *line, size_t len, const char *field, const char *value)
{
    size_t fl = strlen(field), vl = strlen(value);
    if (len != fl + vl || memcmp(line, field, fl) != 0)
        return false;
    for (size_t i = 0; i < vl; i++) {
        char want = value[i] == '\r' || value[i] == '\n' ? ' ' : value[i];
        if (line[fl + i] != want)
            return false;
    }
    return true;
}

static void check_event(struct buf *b, long long id, const char *name, const char *data)
{
    size_t start = b->len;
    sse_event(b, id, name, data);
    if (buf_failed(b))
        return;
    const char *p = b->data + start, *end = b->data + b->len;
    const char *line;
    size_t len;
    char idline[32];
    snprintf(idline, sizeof idline, "%lld", id);
    int blank_at = -1, n = 0;
    /* Blank lines anywhere before the end would end the event early. */
    for (const char *q = p; next_line(&q, end, &line, &len); n++)
        if (len == 0 && blank_at < 0)
            blank_at = n;
    int want_lines = id >= 0 ? 4 : 3;
    CHECK(blank_at == want_lines - 1, "blank line at line %d of the event, want %d; name [%s]",
          blank_at, want_lines - 1, name);
    CHECK(n == want_lines, "%d lines, want %d", n, want_lines);
    CHECK(end - p >= 2 && end[-1] == '\n' && end[-2] == '\n', "event does not end with \\n\\n");
    if (id >= 0) {
        CHECK(next_line(&p, end, &line, &len) && line_is(line, len, "id: ", idline),
              "id line");
    }
    CHECK(next_line(&p, end, &line, &len) && line_is(line, len, "event: ", name), "event line");
    CHECK(next_line(&p, end, &line, &len) && line_is(line, len, "data: ", data), "data line");
    CHECK(next_line(&p, end, &line, &len) && len == 0 && p == end, "terminating blank line");
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

    /* types: up to the first NUL or newline; ids: after it. */
    size_t cut = 0;
    while (cut < size && buf[cut] != '\0' && buf[cut] != '\n')
        cut++;
    bool has_ids = cut < size;
    buf[cut] = '\0';
    const char *types = buf, *ids = buf + cut + 1;      /* "" when nothing follows */

    check_position(types);
    check_position(ids);

    check_filter(types, has_ids ? ids : NULL);
    check_filter(NULL, ids);
    check_filter(types, NULL);
    check_filter(NULL, NULL);

    long long pos = -1;
    if (sse_parse_position(types, &pos) != 0)
        pos = -1;
    long long id2 = -1;
    if (size >= 8) {
        memcpy(&id2, data + size - 8, 8);
    }
    struct buf out = BUF_INIT;
    check_event(&out, pos, types, ids);
    check_event(&out, id2, ids, types);
    check_event(&out, -1, "ping", ids);
    buf_free(&out);

    free(buf);
    return 0;
}
