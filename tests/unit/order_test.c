/* Unit tests of src/order.c: the field rules of SPEC section 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/order.h"
#include "tap.h"

#define ITEM "{\"sku\":\"BK-001\",\"name\":\"Notebook\",\"qty\":2,\"unitPriceCents\":1299}"
#define ITEM_JSON "[" ITEM "]"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s) {
        fputs("out of memory\n", stderr);
        exit(99);
    }
    return s;
}

/* n copies of s */
static char *repeat(const char *s, size_t n)
{
    size_t len = strlen(s);
    char *out = malloc(len * n + 1);
    if (!out)
        exit(99);
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * len, s, len);
    out[len * n] = '\0';
    return out;
}

static bool input_is_empty(const struct order_input *in)
{
    return in->fields == 0 && !in->customer && !in->items_json && !in->note
           && in->currency[0] == '\0';
}

/* The body must be refused with kind, and the message must name needle. */
static void refused_len(const char *body, size_t len, bool create, enum error_kind kind,
                        const char *needle, const char *desc)
{
    struct order_input in;
    struct error err = {ERR_NONE, ""};
    int rc = order_input_parse(body, len, create, &in, &err);
    bool pass = ok(rc == -1 && err.kind == kind && strstr(err.message, needle)
                   && input_is_empty(&in),
                   "%s %s: refused as %s naming '%s'", create ? "create" : "patch", desc,
                   error_code(kind), needle);
    if (!pass)
        diag("  rc=%d kind=%s message='%s'", rc, error_code(err.kind), err.message);
    if (rc == 0)
        order_input_free(&in);
}

static void refused(const char *body, bool create, enum error_kind kind, const char *needle,
                    const char *desc)
{
    refused_len(body, strlen(body), create, kind, needle, desc);
}

/* Parses a body that must be accepted; the caller frees *in. */
static bool accepted(const char *body, bool create, struct order_input *in, const char *desc)
{
    struct error err = {ERR_NONE, ""};
    int rc = order_input_parse(body, strlen(body), create, in, &err);
    bool pass = ok(rc == 0, "%s %s: accepted", create ? "create" : "patch", desc);
    if (!pass)
        diag("  kind=%s message='%s'", error_code(err.kind), err.message);
    return pass;
}

/* A create body with one item whose field `name` holds the raw JSON `value`. */
static char *item_body(const char *name, const char *value)
{
    const char *names[] = {"sku", "name", "qty", "unitPriceCents"};
    const char *values[] = {"\"A-1\"", "\"Pen\"", "1", "100"};
    char *item = strdup("");
    for (int i = 0; i < 4; i++) {
        char *next = fmt("%s%s\"%s\":%s", item, i ? "," : "", names[i],
                         strcmp(names[i], name) ? values[i] : value);
        free(item);
        item = next;
    }
    char *body = fmt("{\"customer\":\"Ada\",\"items\":[{%s}]}", item);
    free(item);
    return body;
}

static void item_refused(const char *name, const char *value, const char *needle)
{
    char *body = item_body(name, value);
    char *desc = fmt("item %s %s", name, value);
    refused(body, true, ERR_VALIDATION_FAILED, needle, desc);
    free(desc);
    free(body);
}

static void item_accepted(const char *name, const char *value, const char *expect_json)
{
    struct order_input in;
    char *body = item_body(name, value);
    char *desc = fmt("item %s %s", name, value);
    if (accepted(body, true, &in, desc)) {
        is_str(in.items_json, expect_json, "item %s %s: items_json", name, value);
        order_input_free(&in);
    }
    free(desc);
    free(body);
}

static void test_valid_create(void)
{
    struct order_input in;

    /* Minimal body: defaults filled, customer trimmed, items canonical. */
    const char *body =
        "{ \"customer\" : \" \\t Ada Lovelace \\n\\r \",\n"
        "  \"items\": [ {\"unitPriceCents\": 1299, \"qty\": 2, \"name\": \"Notebook\","
        " \"sku\": \"BK-001\"} ] }\n";
    if (accepted(body, true, &in, "minimal")) {
        is_int(in.fields, FIELD_CUSTOMER | FIELD_ITEMS | FIELD_CURRENCY | FIELD_STATUS | FIELD_NOTE,
               "minimal: every field set after defaults");
        is_str(in.customer, "Ada Lovelace", "minimal: customer trimmed");
        is_str(in.items_json, ITEM_JSON, "minimal: items re-serialised in SPEC key order");
        is_str(in.currency, "EUR", "minimal: currency defaults to EUR");
        is_int(in.status, STATUS_PENDING, "minimal: status defaults to pending");
        is_str(in.note, "", "minimal: note defaults to \"\"");
        order_input_free(&in);
        ok(input_is_empty(&in), "order_input_free clears the input");
    }

    /* Every field given. */
    body = "{\"customer\":\"Grace\",\"items\":[" ITEM ","
           "{\"qty\":10000,\"sku\":\"X/2\",\"unitPriceCents\":0,\"name\":\"Caf\\u00e9 \\\"\\u20ac\\\"\\n\"}],"
           "\"currency\":\"USD\",\"status\":\"paid\",\"note\":\"leave at door\"}";
    if (accepted(body, true, &in, "all fields")) {
        is_str(in.customer, "Grace", "all fields: customer");
        is_str(in.items_json,
               "[" ITEM ",{\"sku\":\"X/2\",\"name\":\"Caf\xc3\xa9 \\\"\xe2\x82\xac\\\"\\n\","
               "\"qty\":10000,\"unitPriceCents\":0}]",
               "all fields: two items, compact, UTF-8 kept raw, slash unescaped");
        is_str(in.currency, "USD", "all fields: currency");
        is_int(in.status, STATUS_PAID, "all fields: status");
        is_str(in.note, "leave at door", "all fields: note");
        order_input_free(&in);
    }

    /* Limits that are just inside. */
    body = "{\"customer\":\"A\",\"items\":[{\"sku\":\"S\",\"name\":\"N\",\"qty\":1,"
           "\"unitPriceCents\":100000000}],\"note\":\"\"}";
    if (accepted(body, true, &in, "qty 1, unitPriceCents 100000000, empty note")) {
        is_str(in.items_json,
               "[{\"sku\":\"S\",\"name\":\"N\",\"qty\":1,\"unitPriceCents\":100000000}]",
               "limits: items_json");
        is_str(in.note, "", "limits: empty note kept");
        order_input_free(&in);
    }

    /* 100 items is the maximum. */
    char *items = repeat(ITEM ",", 100);
    items[strlen(items) - 1] = '\0';
    char *b = fmt("{\"customer\":\"A\",\"items\":[%s]}", items);
    char *want = fmt("[%s]", items);
    if (accepted(b, true, &in, "100 items")) {
        is_str(in.items_json, want, "100 items: all kept");
        order_input_free(&in);
    }
    free(want);
    free(b);
    free(items);

    /* A surrogate pair is one character. */
    body = "{\"customer\":\"\\ud83d\\ude00\",\"items\":" ITEM_JSON "}";
    if (accepted(body, true, &in, "customer as an escaped surrogate pair")) {
        is_str(in.customer, "\xf0\x9f\x98\x80", "surrogate pair decoded to U+1F600");
        order_input_free(&in);
    }
}

static void test_valid_patch(void)
{
    struct order_input in;
    if (accepted("{}", false, &in, "{}")) {
        is_int(in.fields, 0, "patch {}: no field set");
        ok(!in.customer && !in.items_json && !in.note, "patch {}: nothing allocated");
        order_input_free(&in);
    }
    if (accepted("{\"status\":\"shipped\"}", false, &in, "status only")) {
        is_int(in.fields, FIELD_STATUS, "patch status: only the status bit");
        is_int(in.status, STATUS_SHIPPED, "patch status: shipped");
        ok(!in.customer && !in.items_json && !in.note, "patch status: no defaults filled");
        is_str(in.currency, "", "patch status: currency left empty");
        order_input_free(&in);
    }
    if (accepted("{\"note\":\"x\",\"currency\":\"GBP\"}", false, &in, "note and currency")) {
        is_int(in.fields, FIELD_NOTE | FIELD_CURRENCY, "patch note+currency: bits");
        is_str(in.note, "x", "patch note+currency: note");
        is_str(in.currency, "GBP", "patch note+currency: currency");
        order_input_free(&in);
    }
    if (accepted("{\"customer\":\" Bob \"}", false, &in, "customer only")) {
        is_int(in.fields, FIELD_CUSTOMER, "patch customer: bit");
        is_str(in.customer, "Bob", "patch customer: trimmed");
        order_input_free(&in);
    }
    if (accepted("{\"items\":" ITEM_JSON "}", false, &in, "items only")) {
        is_int(in.fields, FIELD_ITEMS, "patch items: bit");
        is_str(in.items_json, ITEM_JSON, "patch items: canonical");
        order_input_free(&in);
    }
}

static void test_invalid_json(void)
{
    refused_len("", 0, true, ERR_INVALID_JSON, "body", "empty body");
    refused_len("", 0, false, ERR_INVALID_JSON, "body", "empty body");
    refused("   \n", true, ERR_INVALID_JSON, "body", "whitespace only");
    refused("[1]", true, ERR_INVALID_JSON, "object", "[1]");
    refused("{\"note\":NaN}", false, ERR_INVALID_JSON, "JSON", "NaN value");
    refused("{\"note\":Infinity}", false, ERR_INVALID_JSON, "JSON", "Infinity value");
    refused("{\"note\":-Infinity}", false, ERR_INVALID_JSON, "JSON", "-Infinity value");
    refused("{\"note\":nul}", false, ERR_INVALID_JSON, "JSON", "misspelt null");
    refused("{\"items\":[{\"qty\":1.}]}", false, ERR_INVALID_JSON, "JSON", "number 1.");
    refused("{\"items\":[{\"qty\":01}]}", false, ERR_INVALID_JSON, "JSON", "number 01");
    refused("{\"items\":[{\"qty\":1e}]}", false, ERR_INVALID_JSON, "JSON", "number 1e");
    refused("{\"items\":[{\"qty\":-}]}", false, ERR_INVALID_JSON, "JSON", "number -");
    refused("{\"items\":[{\"qty\":.5}]}", false, ERR_INVALID_JSON, "JSON", "number .5");
    refused("{\"items\":[{\"qty\":+1}]}", false, ERR_INVALID_JSON, "JSON", "number +1");
    refused("{\"note\":'x'}", false, ERR_INVALID_JSON, "JSON", "single quotes");
    refused("{\"items\":[{\"qty\":00}]}", false, ERR_INVALID_JSON, "JSON", "number 00");
    refused("{\"items\":[{\"qty\":-01}]}", false, ERR_INVALID_JSON, "JSON", "number -01");
    refused("{\"note\":\"a\tb\"}", false, ERR_INVALID_JSON, "JSON", "raw TAB in a string");
    refused("{\"note\":\"a\x01b\"}", false, ERR_INVALID_JSON, "JSON", "raw 0x01 in a string");
    refused("{\"a\\u0000\":", false, ERR_INVALID_JSON, "JSON", "NUL key in a body that is not JSON");
    {
        struct order_input in;
        if (accepted("{\"note\":\"NaN\\\" Infinity\"}", false, &in, "NaN after an escaped quote is text")) {
            is_str(in.note, "NaN\" Infinity", "the note keeps the words");
            order_input_free(&in);
        }
    }
    refused("\"s\"", true, ERR_INVALID_JSON, "object", "\"s\"");
    refused("123", true, ERR_INVALID_JSON, "object", "123");
    refused("null", false, ERR_INVALID_JSON, "object", "null");
    refused("{", true, ERR_INVALID_JSON, "body", "unfinished object");
    refused("{\"customer\":\"Ada\"", true, ERR_INVALID_JSON, "body", "unfinished object");
    refused("{}x", false, ERR_INVALID_JSON, "body", "trailing garbage x");
    refused("{} {}", false, ERR_INVALID_JSON, "body", "two objects");
    refused("{}]", false, ERR_INVALID_JSON, "body", "trailing ]");
    refused("{\"a\":1,}", false, ERR_INVALID_JSON, "body", "trailing comma");
    refused("{'note':'x'}", false, ERR_INVALID_JSON, "body", "single quotes");
    refused("{\"customer\":\"\xff\"}", false, ERR_INVALID_JSON, "UTF-8", "byte 0xff");
    refused("{\"customer\":\"\xc3\"}", false, ERR_INVALID_JSON, "UTF-8", "truncated sequence");
    refused("{\"customer\":\"\xc0\xaf\"}", false, ERR_INVALID_JSON, "UTF-8", "overlong '/'");
    refused("{\"customer\":\"\xed\xa0\x80\"}", false, ERR_INVALID_JSON, "UTF-8", "raw surrogate");

    static const char nul_body[] = "{\"customer\":\"Ad\0a\",\"items\":" ITEM_JSON "}";
    refused_len(nul_body, sizeof nul_body - 1, true, ERR_INVALID_JSON, "NUL byte",
                "raw NUL inside a string");
    static const char nul_end[] = "{}\0";
    refused_len(nul_end, sizeof nul_end - 1, false, ERR_INVALID_JSON, "NUL byte",
                "raw NUL after the object");

    /* Nesting bombs: closed, unclosed, and deep enough to hurt a recursive parser. */
    size_t depths[] = {20, 1000, 100000};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        char *open = repeat("[", depths[i]), *close = repeat("]", depths[i]);
        char *b = fmt("{\"note\":%s%s}", open, close);
        char *desc = fmt("nesting bomb of %zu arrays", depths[i]);
        refused(b, false, ERR_INVALID_JSON, "body", desc);
        free(b);
        free(desc);
        b = fmt("{\"note\":%s", open);
        desc = fmt("unclosed nesting bomb of %zu arrays", depths[i]);
        refused(b, false, ERR_INVALID_JSON, "body", desc);
        free(b);
        free(desc);
        free(open);
        free(close);
    }
    char *objs = repeat("{\"a\":", 5000), *ends = repeat("}", 5000);
    char *b = fmt("%s1%s", objs, ends);
    refused(b, false, ERR_INVALID_JSON, "body", "nesting bomb of 5000 objects");
    free(b);
    free(objs);
    free(ends);
}

static void test_validation(void)
{
    /* Required on create only. */
    refused("{\"items\":" ITEM_JSON "}", true, ERR_VALIDATION_FAILED, "customer",
            "missing customer");
    refused("{\"customer\":\"Ada\"}", true, ERR_VALIDATION_FAILED, "items", "missing items");
    refused("{}", true, ERR_VALIDATION_FAILED, "customer", "{}");

    /* customer */
    struct order_input in;
    char *c200 = repeat("\xc3\xa9", 199), *b;
    char *c = fmt("%s\xf0\x9f\x98\x80", c200);          /* 199 x U+00E9 + U+1F600 */
    b = fmt("{\"customer\":\"  %s\\t\",\"items\":" ITEM_JSON "}", c);
    if (accepted(b, true, &in, "customer of 200 multibyte characters (plus spaces)")) {
        is_str(in.customer, c, "customer of 200 characters kept whole, trimmed");
        order_input_free(&in);
    }
    free(b);
    b = fmt("{\"customer\":\"%s\xc3\xa9\",\"items\":" ITEM_JSON "}", c);
    refused(b, true, ERR_VALIDATION_FAILED, "customer", "customer of 201 multibyte characters");
    free(b);
    free(c);
    free(c200);
    char *a201 = repeat("a", 201);
    b = fmt("{\"customer\":\"%s\"}", a201);
    refused(b, false, ERR_VALIDATION_FAILED, "customer", "customer of 201 ASCII characters");
    free(b);
    free(a201);
    refused("{\"customer\":\" \\t\\n\\r \",\"items\":" ITEM_JSON "}", true,
            ERR_VALIDATION_FAILED, "customer", "whitespace-only customer");
    refused("{\"customer\":\"\"}", false, ERR_VALIDATION_FAILED, "customer", "empty customer");
    refused("{\"customer\":42}", false, ERR_VALIDATION_FAILED, "customer", "customer number");
    refused("{\"customer\":null}", false, ERR_VALIDATION_FAILED, "customer", "customer null");
    refused("{\"customer\":\"A\\u0000B\",\"items\":" ITEM_JSON "}", true,
            ERR_VALIDATION_FAILED, "customer", "customer with \\u0000");

    /* items */
    refused("{\"customer\":\"Ada\",\"items\":[]}", true, ERR_VALIDATION_FAILED, "items", "0 items");
    char *items = repeat(ITEM ",", 101);
    items[strlen(items) - 1] = '\0';
    b = fmt("{\"customer\":\"A\",\"items\":[%s]}", items);
    refused(b, true, ERR_VALIDATION_FAILED, "items", "101 items");
    free(b);
    free(items);
    refused("{\"items\":{}}", false, ERR_VALIDATION_FAILED, "items", "items an object");
    refused("{\"items\":null}", false, ERR_VALIDATION_FAILED, "items", "items null");
    refused("{\"items\":[1]}", false, ERR_VALIDATION_FAILED, "items[0]", "item a number");
    refused("{\"items\":[" ITEM ",\"x\"]}", false, ERR_VALIDATION_FAILED, "items[1]",
            "second item a string");
    refused("{\"items\":[" ITEM ",{\"sku\":\"A\",\"name\":\"B\",\"qty\":0,\"unitPriceCents\":1}]}",
            false, ERR_VALIDATION_FAILED, "items[1].qty", "second item qty 0");

    item_refused("qty", "0", "items[0].qty");
    item_refused("qty", "10001", "items[0].qty");
    item_refused("qty", "-1", "items[0].qty");
    item_refused("qty", "2.5", "items[0].qty");
    item_refused("qty", "2.0", "items[0].qty");
    item_refused("qty", "1e3", "items[0].qty");
    item_refused("qty", "\"2\"", "items[0].qty");
    item_refused("qty", "null", "items[0].qty");
    item_refused("qty", "true", "items[0].qty");
    item_refused("qty", "99999999999999999999", "items[0].qty");
    item_refused("qty", "-99999999999999999999", "items[0].qty");
    item_refused("qty", "4294967297", "items[0].qty");          /* 2^32 + 1 */
    item_accepted("qty", "10000",
                  "[{\"sku\":\"A-1\",\"name\":\"Pen\",\"qty\":10000,\"unitPriceCents\":100}]");
    item_accepted("unitPriceCents", "0",
                  "[{\"sku\":\"A-1\",\"name\":\"Pen\",\"qty\":1,\"unitPriceCents\":0}]");
    item_refused("unitPriceCents", "100000001", "items[0].unitPriceCents");
    item_refused("unitPriceCents", "-1", "items[0].unitPriceCents");
    item_refused("unitPriceCents", "1.5", "items[0].unitPriceCents");
    item_refused("unitPriceCents", "18446744073709551615", "items[0].unitPriceCents");

    char *s64 = repeat("s", 64), *s65 = repeat("s", 65);
    char *v = fmt("\"%s\"", s64), *want;
    want = fmt("[{\"sku\":\"%s\",\"name\":\"Pen\",\"qty\":1,\"unitPriceCents\":100}]", s64);
    item_accepted("sku", v, want);
    free(v);
    free(want);
    v = fmt("\"%s\"", s65);
    item_refused("sku", v, "items[0].sku");
    free(v);
    free(s64);
    free(s65);
    item_refused("sku", "\"\"", "items[0].sku");
    item_refused("sku", "7", "items[0].sku");
    item_refused("sku", "\"A\\u0000B\"", "items[0].sku");

    char *n200 = repeat("\xe2\x82\xac", 200), *n201 = repeat("n", 201);
    v = fmt("\"%s\"", n200);
    want = fmt("[{\"sku\":\"A-1\",\"name\":\"%s\",\"qty\":1,\"unitPriceCents\":100}]", n200);
    item_accepted("name", v, want);
    free(v);
    free(want);
    v = fmt("\"%s\"", n201);
    item_refused("name", v, "items[0].name");
    free(v);
    free(n200);
    free(n201);
    item_refused("name", "\"\"", "items[0].name");

    refused("{\"items\":[{\"sku\":\"A\",\"name\":\"B\",\"qty\":1,\"unitPriceCents\":1,\"color\":\"red\"}]}",
            false, ERR_VALIDATION_FAILED, "color", "unknown item field");
    refused("{\"items\":[{\"sku\":\"A\",\"name\":\"B\",\"qty\":1,\"unitPriceCents\":1,\"qty\\u0000x\":5}]}",
            false, ERR_VALIDATION_FAILED, "qty", "item field name with \\u0000 (named by the key before the NUL)");
    refused("{\"items\":[{\"sku\":\"A\",\"name\":\"B\",\"qty\":1}]}", false,
            ERR_VALIDATION_FAILED, "items[0].unitPriceCents", "item without unitPriceCents");
    refused("{\"items\":[{\"name\":\"B\",\"qty\":1,\"unitPriceCents\":1}]}", false,
            ERR_VALIDATION_FAILED, "items[0].sku", "item without sku");
    refused("{\"items\":[{\"sku\":\"A\",\"qty\":1,\"unitPriceCents\":1}]}", false,
            ERR_VALIDATION_FAILED, "items[0].name", "item without name");
    refused("{\"items\":[{\"sku\":\"A\",\"name\":\"B\",\"unitPriceCents\":1}]}", false,
            ERR_VALIDATION_FAILED, "items[0].qty", "item without qty");

    /* currency */
    refused("{\"currency\":\"eur\"}", false, ERR_VALIDATION_FAILED, "currency", "currency eur");
    refused("{\"currency\":\"EURO\"}", false, ERR_VALIDATION_FAILED, "currency", "currency EURO");
    refused("{\"currency\":\"EU\"}", false, ERR_VALIDATION_FAILED, "currency", "currency EU");
    refused("{\"currency\":\"E1R\"}", false, ERR_VALIDATION_FAILED, "currency", "currency E1R");
    refused("{\"currency\":\"\xc3\x89UR\"}", false, ERR_VALIDATION_FAILED, "currency",
            "currency with a non-ASCII letter");
    refused("{\"currency\":\"EU\\u0000\"}", false, ERR_VALIDATION_FAILED, "currency",
            "currency with \\u0000");
    refused("{\"currency\":978}", false, ERR_VALIDATION_FAILED, "currency", "currency number");

    /* status */
    refused("{\"status\":\"lost\"}", false, ERR_VALIDATION_FAILED, "status", "status lost");
    refused("{\"status\":\"PAID\"}", false, ERR_VALIDATION_FAILED, "status", "status PAID");
    refused("{\"status\":\"\"}", false, ERR_VALIDATION_FAILED, "status", "status empty");
    refused("{\"status\":1}", false, ERR_VALIDATION_FAILED, "status", "status number");
    refused("{\"status\":\"paid\\u0000x\"}", false, ERR_VALIDATION_FAILED, "status",
            "status \"paid\\u0000x\"");

    /* note */
    char *n1000 = repeat("\xe2\x82\xac", 1000), *n1001 = repeat("x", 1001);
    b = fmt("{\"note\":\"%s\"}", n1000);
    if (accepted(b, false, &in, "note of 1000 multibyte characters")) {
        is_str(in.note, n1000, "note of 1000 characters kept");
        order_input_free(&in);
    }
    free(b);
    b = fmt("{\"note\":\"%s\"}", n1001);
    refused(b, false, ERR_VALIDATION_FAILED, "note", "note of 1001 characters");
    free(b);
    b = fmt("{\"note\":\"%s\xe2\x82\xac\"}", n1000);
    refused(b, false, ERR_VALIDATION_FAILED, "note", "note of 1001 multibyte characters");
    free(b);
    free(n1000);
    free(n1001);
    refused("{\"note\":null}", false, ERR_VALIDATION_FAILED, "note", "note null");
    refused("{\"note\":\"a\\u0000\"}", false, ERR_VALIDATION_FAILED, "note", "note with \\u0000");

    /* unknown and read-only fields, on create and on patch */
    refused("{\"customer\":\"Ada\",\"items\":" ITEM_JSON ",\"colour\":\"red\"}", true,
            ERR_VALIDATION_FAILED, "colour", "unknown field");
    refused("{\"Customer\":\"Ada\"}", false, ERR_VALIDATION_FAILED, "Customer",
            "field name in the wrong case");
    refused("{\"note\\u0000junk\":\"x\"}", false, ERR_VALIDATION_FAILED, "note",
            "field name \"note\\u0000junk\"");
    const char *read_only[] = {"id", "totalCents", "createdAt", "updatedAt", "version"};
    for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
        char *desc = fmt("read-only %s", read_only[i]);
        b = fmt("{\"customer\":\"Ada\",\"items\":" ITEM_JSON ",\"%s\":1}", read_only[i]);
        refused(b, true, ERR_VALIDATION_FAILED, read_only[i], desc);
        free(b);
        b = fmt("{\"%s\":\"x\"}", read_only[i]);
        refused(b, false, ERR_VALIDATION_FAILED, read_only[i], desc);
        free(b);
        free(desc);
    }

    /* Deep but within the parser's limit: a plain unknown field. */
    refused("{\"x\":[[[[[[1]]]]]]}", false, ERR_VALIDATION_FAILED, "x",
            "unknown field holding shallow nesting");
}

static void test_status(void)
{
    static const char *const names[] = {"pending", "paid", "shipped", "delivered", "cancelled"};
    for (int s = STATUS_PENDING; s <= STATUS_CANCELLED; s++) {
        is_str(order_status_name((enum order_status)s), names[s], "order_status_name(%d)", s);
        enum order_status out = (enum order_status)-1;
        ok(order_status_parse(names[s], &out) == 0 && out == (enum order_status)s,
           "order_status_parse(\"%s\")", names[s]);
    }
    const char *bad[] = {"", "Paid", "PENDING", "paid ", " paid", "pai", "paidx", "canceled",
                         "unknown"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum order_status out = STATUS_SHIPPED;
        ok(order_status_parse(bad[i], &out) == -1 && out == STATUS_SHIPPED,
           "order_status_parse(\"%s\") refused, *out untouched", bad[i]);
    }

    bool allowed[5][5] = {{false}};
    allowed[STATUS_PENDING][STATUS_PAID] = true;
    allowed[STATUS_PAID][STATUS_SHIPPED] = true;
    allowed[STATUS_SHIPPED][STATUS_DELIVERED] = true;
    allowed[STATUS_PENDING][STATUS_CANCELLED] = true;
    allowed[STATUS_PAID][STATUS_CANCELLED] = true;
    for (int f = 0; f < 5; f++)
        for (int t = 0; t < 5; t++)
            is_int(order_transition_allowed((enum order_status)f, (enum order_status)t),
                   allowed[f][t], "transition %s -> %s %s", names[f], names[t],
                   allowed[f][t] ? "allowed" : "refused");
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
        bool valid;
        size_t count;
        const char *desc;
    } cases[] = {
#define C(str, v, n, d) {str, sizeof str - 1, v, n, d}
        C("", true, 0, "empty"),
        C("abc", true, 3, "ASCII"),
        C("\x7f", true, 1, "DEL"),
        C("\xc2\x80", true, 1, "U+0080, smallest 2-byte"),
        C("caf\xc3\xa9", true, 4, "caf\xc3\xa9"),
        C("\xdf\xbf", true, 1, "U+07FF, largest 2-byte"),
        C("\xe0\xa0\x80", true, 1, "U+0800, smallest 3-byte"),
        C("\xe2\x82\xac", true, 1, "euro sign"),
        C("\xed\x9f\xbf", true, 1, "U+D7FF, just below the surrogates"),
        C("\xee\x80\x80", true, 1, "U+E000, just above the surrogates"),
        C("\xef\xbf\xbf", true, 1, "U+FFFF"),
        C("\xf0\x90\x80\x80", true, 1, "U+10000, smallest 4-byte"),
        C("\xf0\x9f\x98\x80", true, 1, "U+1F600"),
        C("\xf4\x8f\xbf\xbf", true, 1, "U+10FFFF, the largest"),
        C("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", true, 5, "mixed lengths"),
        C("a\0b", false, 0, "NUL byte"),
        C("\0", false, 0, "lone NUL"),
        C("\x80", false, 0, "lone continuation byte"),
        C("a\xbf", false, 0, "continuation byte after ASCII"),
        C("\xc0\x80", false, 0, "overlong NUL (C0 80)"),
        C("\xc0\xaf", false, 0, "overlong '/' (C0 AF)"),
        C("\xc1\xbf", false, 0, "overlong U+007F (C1 BF)"),
        C("\xe0\x80\x80", false, 0, "overlong 3-byte NUL"),
        C("\xe0\x9f\xbf", false, 0, "overlong U+07FF in 3 bytes"),
        C("\xf0\x80\x80\x80", false, 0, "overlong 4-byte NUL"),
        C("\xf0\x8f\xbf\xbf", false, 0, "overlong U+FFFF in 4 bytes"),
        C("\xed\xa0\x80", false, 0, "surrogate U+D800"),
        C("\xed\xbf\xbf", false, 0, "surrogate U+DFFF"),
        C("\xed\xa0\xbd\xed\xb8\x80", false, 0, "CESU-8 surrogate pair"),
        C("\xf4\x90\x80\x80", false, 0, "U+110000"),
        C("\xf7\xbf\xbf\xbf", false, 0, "U+1FFFFF"),
        C("\xf8\x88\x80\x80\x80", false, 0, "5-byte form"),
        C("\xfc\x84\x80\x80\x80\x80", false, 0, "6-byte form"),
        C("\xfe", false, 0, "byte FE"),
        C("\xff", false, 0, "byte FF"),
        C("\xc3", false, 0, "truncated 2-byte"),
        C("\xe2\x82", false, 0, "truncated 3-byte"),
        C("\xe2", false, 0, "3-byte lead alone"),
        C("\xf0\x9f\x98", false, 0, "truncated 4-byte"),
        C("ab\xf0\x9f", false, 0, "truncated 4-byte at the end"),
        C("\xc3(", false, 0, "2-byte lead then ASCII"),
        C("\xe2\x28\xa1", false, 0, "3-byte with a bad second byte"),
        C("\xe2\x82\x28", false, 0, "3-byte with a bad third byte"),
        C("\xf0\x9f\x98\x28", false, 0, "4-byte with a bad fourth byte"),
#undef C
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_int(utf8_valid(cases[i].s, cases[i].len), cases[i].valid, "utf8_valid %s: %s",
               cases[i].desc, cases[i].valid ? "valid" : "invalid");
        if (cases[i].valid)
            is_int(utf8_count(cases[i].s, cases[i].len), cases[i].count, "utf8_count %s",
                   cases[i].desc);
    }
    /* len bounds the check: a valid prefix of an invalid buffer is valid. */
    ok(utf8_valid("ab\xff", 2), "utf8_valid only looks at len bytes");
    ok(!utf8_valid("\xe2\x82\xac", 2), "utf8_valid: euro cut by len is invalid");
    is_int(utf8_count("\xe2\x82\xac\xe2\x82\xac", 3), 1, "utf8_count only counts len bytes");
}

int main(void)
{
    test_valid_create();
    test_valid_patch();
    test_invalid_json();
    test_validation();
    test_status();
    test_utf8();
    return done_testing();
}
