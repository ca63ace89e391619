/* Unit tests of src/uri.c: percent-decoding, query parameters, routing. */
#include <stdlib.h>
#include <string.h>

#include "../../src/uri.h"
#include "tap.h"

static void decodes(const char *in, int plus, const char *want)
{
    char *got = uri_decode(in, strlen(in), plus);
    is_str(got, want, "uri_decode(\"%s\", plus_is_space=%d)", in, plus);
    free(got);
}

static void decode_refused(const char *in, size_t len, const char *desc)
{
    char *got = uri_decode(in, len, 1);
    ok(got == NULL, "uri_decode refuses %s", desc);
    if (got)
        diag("  got '%s'", got);
    free(got);
}

static void param(const char *query, const char *name, int want_rc, const char *want)
{
    char *value = (char *)"untouched";
    int rc = uri_query_param(query, name, &value);
    is_int(rc, want_rc, "uri_query_param(\"%s\", \"%s\") returns %d", query, name, want_rc);
    if (want_rc == 1) {
        is_str(value, want, "uri_query_param(\"%s\", \"%s\") value", query, name);
        if (rc == 1)
            free(value);
    } else if (rc == 1) {
        free(value);
    }
}

static void route(const char *uri, int want_len, const char *want_path, const char *want_query)
{
    const char *path = NULL, *query = NULL;
    int n = uri_route(uri, &path, &query);
    is_int(n, want_len, "uri_route(\"%s\") length", uri);
    if (want_len >= 0 && n == want_len && path) {
        char got[256];
        snprintf(got, sizeof got, "%.*s", n, path);
        is_str(got, want_path, "uri_route(\"%s\") path", uri);
    }
    if (want_query)
        is_str(query, want_query, "uri_route(\"%s\") query", uri);
}

int main(void)
{
    /* uri_decode */
    decodes("", 1, "");
    decodes("abc", 1, "abc");
    decodes("%41", 0, "A");
    decodes("%41%42c", 1, "ABc");
    decodes("%4a%4A", 1, "JJ");
    decodes("a+b", 1, "a b");
    decodes("a+b", 0, "a+b");
    decodes("%2B", 1, "+");
    decodes("%20", 0, " ");
    decodes("ord%2F1", 1, "ord/1");
    decodes("%25", 1, "%");
    decodes("%2541", 1, "%41");
    decodes("%C3%A9", 1, "\xc3\xa9");
    decodes("%ff", 1, "\xff");
    decodes("x%41", 1, "xA");
    {
        /* len bounds the input: the escape past len is not read. */
        char *got = uri_decode("ab%41", 2, 1);
        is_str(got, "ab", "uri_decode stops at len");
        free(got);
        got = uri_decode("a%41zz", 3, 1);
        ok(got == NULL, "uri_decode refuses an escape cut by len");
        free(got);
    }
    decode_refused("%", 1, "a lone %");
    decode_refused("%4", 2, "%4");
    decode_refused("a%4", 3, "%4 at the end");
    decode_refused("%G1", 3, "%G1");
    decode_refused("%1G", 3, "%1G");
    decode_refused("%%41", 4, "%%41");
    decode_refused("% 1", 3, "% 1");
    decode_refused("%00", 3, "%00");
    decode_refused("a%00b", 5, "%00 in the middle");
    decode_refused("a\0b", 3, "a raw NUL byte");
    decode_refused("%-1", 3, "%-1");

    /* uri_query_param */
    param("", "status", 0, NULL);
    param("status=paid", "status", 1, "paid");
    param("a=1&b=2", "a", 1, "1");
    param("a=1&b=2", "b", 1, "2");
    param("a=1&b=2", "c", 0, NULL);
    param("a=1&a=2", "a", 1, "1");
    param("b=9&a=1&a=2", "a", 1, "1");
    param("limit=", "limit", 1, "");
    param("limit", "limit", 1, "");
    param("limit&x=1", "limit", 1, "");
    param("ids=ord_00001%2Cord_00007", "ids", 1, "ord_00001,ord_00007");
    param("q=a+b%20c", "q", 1, "a b c");
    param("x=a=b", "x", 1, "a=b");
    param("statuses=paid&status=shipped", "status", 1, "shipped");
    param("stat=paid&status=shipped", "status", 1, "shipped");
    param("status=shipped", "stat", 0, NULL);
    param("xstatus=1", "status", 0, NULL);
    param("statusx=1&status=2", "status", 1, "2");
    param("&&status=1&", "status", 1, "1");
    param("a=1&", "b", 0, NULL);
    param("cursor=%4", "cursor", -1, NULL);
    param("cursor=%G1", "cursor", -1, NULL);
    param("cursor=a%00", "cursor", -1, NULL);
    param("a=%4&b=2", "b", 1, "2");
    param("a=%G1&a=2", "a", -1, NULL);

    /* uri_route */
    route("/api/v1/orders", 7, "/orders", "");
    route("/api/v1/orders/ord_00042", 17, "/orders/ord_00042", "");
    route("/api/v1/orders?status=paid&limit=2", 7, "/orders", "status=paid&limit=2");
    route("/api/v1/orders?", 7, "/orders", "");
    route("/api/v1/", 1, "/", "");
    route("/x/api/v1/orders", 7, "/orders", "");
    route("/cgi-bin/orders.fcgi/api/v1/health?x=1", 7, "/health", "x=1");
    route("/orders", -1, NULL, NULL);
    route("/", -1, NULL, NULL);
    route("", -1, NULL, NULL);
    route("/api/v1", -1, NULL, NULL);
    route("/api/v1?x=1", -1, NULL, NULL);
    route("/api/v2/orders", -1, NULL, NULL);
    route("/api/v10/orders", -1, NULL, NULL);
    route("/orders?next=/api/v1/orders", -1, NULL, NULL);

    return done_testing();
}
