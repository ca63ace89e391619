/* Unit tests for src/sse.c (event framing, positions, filters) and
 * src/fcgi_record.c (FastCGI record framing). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/buf.h"
#include "../../src/fcgi_record.h"
#include "../../src/sse.h"
#include "tap.h"

static void test_event_framing(void)
{
    struct buf b = BUF_INIT;
    sse_event(&b, 43, "order.updated", "{\"a\":1}");
    is_str(buf_str(&b), "id: 43\nevent: order.updated\ndata: {\"a\":1}\n\n", "event with id");
    buf_reset(&b);
    sse_event(&b, -1, "ping", "{\"ts\":5}");
    is_str(buf_str(&b), "event: ping\ndata: {\"ts\":5}\n\n", "event without id");
    buf_reset(&b);
    sse_event(&b, 1, "bad\nname", "two\r\nlines");
    is_str(buf_str(&b), "id: 1\nevent: bad name\ndata: two  lines\n\n",
           "CR and LF cannot break the framing");
    buf_free(&b);
}

static void position(const char *s, int want_rc, long long want)
{
    long long pos = -7;
    int rc = sse_parse_position(s, &pos);
    if (want_rc == 0)
        ok(rc == 0 && pos == want, "position '%s' is %lld (got rc %d, %lld)", s, want, rc, pos);
    else
        ok(rc != 0, "position '%s' is refused", s);
}

static void test_positions(void)
{
    position("0", 0, 0);
    position("42", 0, 42);
    position("007", 0, 7);
    position("9223372036854775807", 0, LLONG_MAX);
    position("99999999999999999999999", 0, LLONG_MAX);
    position("", -1, 0);
    position("-1", -1, 0);
    position("+1", -1, 0);
    position(" 1", -1, 0);
    position("1 ", -1, 0);
    position("1.0", -1, 0);
    position("abc", -1, 0);
    position("0x10", -1, 0);
}

static void test_filters(void)
{
    struct sse_filter f;
    struct error err;
    ok(sse_filter_parse(NULL, NULL, &f, &err) == 0, "no filter parses");
    ok(sse_filter_match(&f, "order.created", "ord_00001"), "no filter lets everything pass");
    sse_filter_free(&f);

    ok(sse_filter_parse("order.created,order.deleted", NULL, &f, &err) == 0, "types parse");
    ok(sse_filter_match(&f, "order.created", "ord_00001"), "a listed type passes");
    ok(!sse_filter_match(&f, "order.updated", "ord_00001"), "another type does not");
    sse_filter_free(&f);

    ok(sse_filter_parse(NULL, "ord_00001,,ord_00007", &f, &err) == 0, "ids parse, empty items skipped");
    is_int((int)f.id_count, 2, "two ids");
    ok(sse_filter_match(&f, "order.updated", "ord_00007"), "a listed id passes");
    ok(!sse_filter_match(&f, "order.updated", "ord_00002"), "another id does not");
    ok(!sse_filter_match(&f, "order.updated", "ord_0000"), "a prefix of an id does not");
    sse_filter_free(&f);

    ok(sse_filter_parse("order.updated", "ord_00001", &f, &err) == 0, "both parse");
    ok(sse_filter_match(&f, "order.updated", "ord_00001"), "both match");
    ok(!sse_filter_match(&f, "order.created", "ord_00001"), "type must match too");
    ok(!sse_filter_match(&f, "order.updated", "ord_00002"), "id must match too");
    sse_filter_free(&f);

    ok(sse_filter_parse("order.shipped", NULL, &f, &err) != 0 && err.kind == ERR_INVALID_PARAMETER
           && strstr(err.message, "types"),
       "an unknown type is invalid_parameter naming types");
    ok(sse_filter_parse("order.created,", NULL, &f, &err) == 0, "a trailing comma is fine");
    sse_filter_free(&f);

    struct buf many = BUF_INIT;
    for (int i = 0; i <= SSE_IDS_MAX; i++)
        buf_printf(&many, "%sord_%05d", i ? "," : "", i);
    ok(sse_filter_parse(NULL, buf_str(&many), &f, &err) != 0 && err.kind == ERR_INVALID_PARAMETER,
       "more than %d ids are refused", SSE_IDS_MAX);
    buf_free(&many);
}

static void test_fcgi_records(void)
{
    struct buf b = BUF_INIT;
    fcgi_stdout(&b, 1, "hello", 5);
    is_int((int)b.len, 13, "one record: 8-byte header and 5 bytes");
    const unsigned char *h = (const unsigned char *)b.data;
    ok(h[0] == 1 && h[1] == 6 && h[2] == 0 && h[3] == 1 && h[4] == 0 && h[5] == 5 && h[6] == 0,
       "header: version 1, FCGI_STDOUT, request 1, length 5, no padding");
    ok(memcmp(b.data + 8, "hello", 5) == 0, "content follows the header");

    buf_reset(&b);
    size_t big = 70000;
    char *data = malloc(big);
    memset(data, 'x', big);
    fcgi_stdout(&b, 258, data, big);
    free(data);
    is_int((int)b.len, (int)(big + 16), "70000 bytes take two records");
    h = (const unsigned char *)b.data;
    ok(h[2] == 1 && h[3] == 2 && h[4] == 0xff && h[5] == 0xff, "first record: request 258, 65535 bytes");
    h = (const unsigned char *)b.data + 8 + 65535;
    ok(h[1] == 6 && h[4] == 0x11 && h[5] == 0x71, "second record: the remaining 4465 bytes");

    buf_reset(&b);
    fcgi_stdout(&b, 1, "", 0);
    is_int((int)b.len, 0, "no bytes, no record (an empty one would end the stream)");

    fcgi_end_request(&b, 1);
    is_int((int)b.len, 24, "end: empty STDOUT record and END_REQUEST with its 8-byte body");
    h = (const unsigned char *)b.data;
    ok(h[1] == 6 && h[5] == 0 && h[9] == 3 && h[13] == 8 && h[16 + 4] == 0,
       "FCGI_STDOUT, then FCGI_END_REQUEST, app status 0, FCGI_REQUEST_COMPLETE");
    buf_free(&b);
}

int main(void)
{
    test_event_framing();
    test_positions();
    test_filters();
    test_fcgi_records();
    return done_testing();
}
