/* libFuzzer target: order_input_parse() on arbitrary request bodies.
 *
 * The input is the body of a POST (for_create) and of a PATCH (not
 * for_create). Besides the sanitizers, it checks what src/order.h promises:
 *
 *  - the error kind is invalid_json, validation_failed or internal_error,
 *    and *in holds nothing after an error;
 *  - SPEC section 2's classes, judged by a reference RFC 8259 reader: a
 *    body that is not JSON is never accepted nor 422 (it is 400
 *    invalid_json), and one JSON object in valid UTF-8 is never 400;
 *  - on success: items_json (when set) is valid JSON per json-c, an array of
 *    1-100 items {sku,name,qty,unitPriceCents} in that order, compact, and
 *    total_cents is the sum of qty x unitPriceCents; customer and note are
 *    valid UTF-8 without NUL, customer is trimmed and 1-200 code points,
 *    note 0-1000; currency is three upper-case letters; the fields bits
 *    match what is set, and a create has everything;
 *  - a create is a patch plus defaults: the patch parse accepts whatever the
 *    create parse accepts, with the same values;
 *  - the normalised order, written back as a body, parses to the same order
 *    (what the service stores can be sent again).
 *
 * Any violation calls abort() after printing what broke. */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "order.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_order: invariant failed: %s: ", #cond);     \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

static bool is_trim_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_zeroed(const struct order_input *in)
{
    static const struct order_input zero;
    return memcmp(in, &zero, sizeof zero) == 0;
}

/* A reference RFC 8259 reader, for the classification of bodies:
 * returns 1 for one JSON object (with surrounding whitespace) nested at most
 * `max_depth` deep, 0 for anything that is not JSON text, -1 for JSON that
 * is nested deeper (json-c's depth limit: not judged here). Bytes >= 0x80
 * in strings pass (UTF-8 is checked on its own). */
struct rfc {
    const char *s;
    size_t len, i;
    int depth, max_depth;
    bool too_deep;
};

static void rfc_ws(struct rfc *r)
{
    while (r->i < r->len && is_trim_space(r->s[r->i]))
        r->i++;
}

static bool rfc_lit(struct rfc *r, const char *w)
{
    size_t n = strlen(w);
    if (r->len - r->i < n || memcmp(r->s + r->i, w, n) != 0)
        return false;
    r->i += n;
    return true;
}

static bool rfc_digit(const struct rfc *r)
{
    return r->i < r->len && r->s[r->i] >= '0' && r->s[r->i] <= '9';
}

static bool rfc_number(struct rfc *r)
{
    if (r->i < r->len && r->s[r->i] == '-')
        r->i++;
    if (!rfc_digit(r))
        return false;
    if (r->s[r->i] == '0') {        /* no leading zeros */
        r->i++;
        if (rfc_digit(r))
            return false;
    } else {
        while (rfc_digit(r))
            r->i++;
    }
    if (r->i < r->len && r->s[r->i] == '.') {
        r->i++;
        if (!rfc_digit(r))
            return false;
        while (rfc_digit(r))
            r->i++;
    }
    if (r->i < r->len && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
        r->i++;
        if (r->i < r->len && (r->s[r->i] == '+' || r->s[r->i] == '-'))
            r->i++;
        if (!rfc_digit(r))
            return false;
        while (rfc_digit(r))
            r->i++;
    }
    return true;
}

static bool rfc_string(struct rfc *r)
{
    if (r->i >= r->len || r->s[r->i] != '"')
        return false;
    r->i++;
    while (r->i < r->len) {
        unsigned char c = (unsigned char)r->s[r->i++];
        if (c == '"')
            return true;
        if (c < 0x20)                   /* RFC 8259: control characters escaped */
            return false;
        if (c != '\\')
            continue;
        if (r->i >= r->len)
            return false;
        c = (unsigned char)r->s[r->i++];
        if (c == 'u') {
            for (int k = 0; k < 4; k++, r->i++)
                if (r->i >= r->len || !strchr("0123456789abcdefABCDEF", r->s[r->i])
                    || !r->s[r->i])
                    return false;
        } else if (!strchr("\"\\/bfnrt", c) || !c) {
            return false;
        }
    }
    return false;
}

static bool rfc_value(struct rfc *r);

static bool rfc_container(struct rfc *r, char open, char close)
{
    if (++r->depth > r->max_depth)
        r->too_deep = true;
    r->i++;     /* open */
    (void)open;
    rfc_ws(r);
    if (r->i < r->len && r->s[r->i] == close) {
        r->i++;
        r->depth--;
        return true;
    }
    for (;;) {
        if (close == '}') {
            if (!rfc_string(r))
                return false;
            rfc_ws(r);
            if (r->i >= r->len || r->s[r->i] != ':')
                return false;
            r->i++;
            rfc_ws(r);
        }
        if (!rfc_value(r))
            return false;
        rfc_ws(r);
        if (r->i >= r->len)
            return false;
        if (r->s[r->i] == close) {
            r->i++;
            r->depth--;
            return true;
        }
        if (r->s[r->i] != ',')
            return false;
        r->i++;
        rfc_ws(r);
    }
}

static bool rfc_value(struct rfc *r)
{
    if (r->i >= r->len || r->depth > 64)
        return false;
    switch (r->s[r->i]) {
    case '{':
        return rfc_container(r, '{', '}');
    case '[':
        return rfc_container(r, '[', ']');
    case '"':
        return rfc_string(r);
    case 't':
        return rfc_lit(r, "true");
    case 'f':
        return rfc_lit(r, "false");
    case 'n':
        return rfc_lit(r, "null");
    default:
        return rfc_number(r);
    }
}

static int rfc_object(const char *s, size_t len, int max_depth)
{
    struct rfc r = {s, len, 0, 0, max_depth, false, false};
    rfc_ws(&r);
    if (r.i >= len || s[r.i] != '{' || !rfc_value(&r))
        return r.depth > 64 ? -1 : 0;
    rfc_ws(&r);
    if (r.i != len)
        return 0;
    return r.too_deep ? -1 : 1;
}

static void check_items(const char *items_json, long long total_cents)
{
    enum json_tokener_error jerr;
    json_object *arr = json_tokener_parse_verbose(items_json, &jerr);
    CHECK(arr && jerr == json_tokener_success, "items_json is not JSON: %s", items_json);
    CHECK(json_object_is_type(arr, json_type_array), "items_json is not an array: %s",
          items_json);
    size_t n = json_object_array_length(arr);
    CHECK(n >= 1 && n <= 100, "items_json holds %zu items", n);
    static const char *const keys[] = {"sku", "name", "qty", "unitPriceCents"};
    long long sum = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        CHECK(json_object_is_type(item, json_type_object), "items[%zu] not an object", i);
        CHECK(json_object_object_length(item) == 4, "items[%zu] has %d keys", i,
              json_object_object_length(item));
        size_t k = 0;
        json_object_object_foreach(item, key, val) {
            CHECK(strcmp(key, keys[k]) == 0, "items[%zu] key %zu is %s", i, k, key);
            if (k < 2) {
                CHECK(json_object_is_type(val, json_type_string), "items[%zu].%s", i, key);
                const char *s = json_object_get_string(val);
                size_t len = (size_t)json_object_get_string_len(val);
                CHECK(strlen(s) == len && utf8_valid(s, len), "items[%zu].%s UTF-8", i, key);
                size_t cps = utf8_count(s, len);
                CHECK(cps >= 1 && cps <= (k == 0 ? 64u : 200u), "items[%zu].%s has %zu chars",
                      i, key, cps);
            } else {
                CHECK(json_object_is_type(val, json_type_int), "items[%zu].%s", i, key);
            }
            k++;
        }
        int64_t qty = json_object_get_int64(json_object_object_get(item, "qty"));
        int64_t price = json_object_get_int64(json_object_object_get(item, "unitPriceCents"));
        CHECK(qty >= 1 && qty <= 10000, "items[%zu].qty = %lld", i, (long long)qty);
        CHECK(price >= 0 && price <= 100000000, "items[%zu].unitPriceCents = %lld", i,
              (long long)price);
        sum += qty * price;
    }
    CHECK(sum == total_cents, "total_cents %lld, items sum to %lld", total_cents, sum);
    /* Compact and canonical: json-c writes it back byte for byte. */
    const char *again = json_object_to_json_string_ext(
        arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    CHECK(strcmp(again, items_json) == 0, "items_json not canonical: %s vs %s", items_json,
          again);
    json_object_put(arr);
}

static void check_success(const struct order_input *in, bool for_create)
{
    CHECK((in->fields & ~31u) == 0, "fields = %#x", in->fields);
    CHECK(!!(in->fields & FIELD_CUSTOMER) == !!in->customer, "customer bit vs pointer");
    CHECK(!!(in->fields & FIELD_ITEMS) == !!in->items_json, "items bit vs pointer");
    CHECK(!!(in->fields & FIELD_NOTE) == !!in->note, "note bit vs pointer");
    if (for_create)
        CHECK(in->fields == 31u, "a create lacks fields: %#x", in->fields);

    if (in->customer) {
        size_t len = strlen(in->customer);
        CHECK(utf8_valid(in->customer, len), "customer is not valid UTF-8");
        size_t cps = utf8_count(in->customer, len);
        CHECK(cps >= 1 && cps <= 200, "customer has %zu chars", cps);
        CHECK(!is_trim_space(in->customer[0]) && !is_trim_space(in->customer[len - 1]),
              "customer not trimmed: [%s]", in->customer);
    }
    if (in->note) {
        size_t len = strlen(in->note);
        CHECK(utf8_valid(in->note, len), "note is not valid UTF-8");
        CHECK(utf8_count(in->note, len) <= 1000, "note too long");
    }
    if (in->items_json)
        check_items(in->items_json, in->total_cents);
    else
        CHECK(in->total_cents == 0, "total_cents %lld without items", in->total_cents);
    if (in->fields & FIELD_CURRENCY) {
        CHECK(in->currency[3] == '\0', "currency not terminated");
        for (int i = 0; i < 3; i++)
            CHECK(in->currency[i] >= 'A' && in->currency[i] <= 'Z', "currency %.3s",
                  in->currency);
    }
    if (in->fields & FIELD_STATUS) {
        CHECK(in->status >= STATUS_PENDING && in->status <= STATUS_CANCELLED, "status %d",
              (int)in->status);
        enum order_status back;
        CHECK(order_status_parse(order_status_name(in->status), &back) == 0
                  && back == in->status, "status name round trip");
    }
}

static bool same_string(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Fields the body set in both parses have the same values. */
static void check_same(const struct order_input *a, const struct order_input *b, unsigned fields,
                       const char *what)
{
    if (fields & FIELD_CUSTOMER)
        CHECK(same_string(a->customer, b->customer), "%s: customer differs", what);
    if (fields & FIELD_ITEMS) {
        CHECK(same_string(a->items_json, b->items_json), "%s: items differ", what);
        CHECK(a->total_cents == b->total_cents, "%s: total differs", what);
    }
    if (fields & FIELD_CURRENCY)
        CHECK(memcmp(a->currency, b->currency, 4) == 0, "%s: currency differs", what);
    if (fields & FIELD_STATUS)
        CHECK(a->status == b->status, "%s: status differs", what);
    if (fields & FIELD_NOTE)
        CHECK(same_string(a->note, b->note), "%s: note differs", what);
}

/* Writes the normalised create back as a body and parses it again. */
static void check_round_trip(const struct order_input *in)
{
    json_object *obj = json_object_new_object();
    json_object *items = json_tokener_parse(in->items_json);
    if (!obj || !items) {
        json_object_put(obj);
        json_object_put(items);
        return;
    }
    json_object_object_add(obj, "customer", json_object_new_string(in->customer));
    json_object_object_add(obj, "items", items);
    json_object_object_add(obj, "currency", json_object_new_string(in->currency));
    json_object_object_add(obj, "status", json_object_new_string(order_status_name(in->status)));
    json_object_object_add(obj, "note", json_object_new_string(in->note));
    const char *text = json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(text);
    char *body = malloc(len + 1);
    memcpy(body, text, len + 1);
    json_object_put(obj);

    struct order_input again;
    struct error err = {0};
    int rc = order_input_parse(body, len, true, &again, &err);
    CHECK(rc == 0, "normalised order refused (%s): %s", err.message, body);
    check_same(in, &again, 31u, "round trip");
    order_input_free(&again);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    /* order_input_parse() wants body[len] == '\0'. */
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';

    /* 1: one RFC 8259 object; 0: not JSON text; -1: too deep to judge. */
    int json_class = rfc_object(body, size, 15);
    struct order_input in[2];       /* [0] patch, [1] create */
    struct error err[2];
    int rc[2];
    for (int create = 0; create < 2; create++) {
        memset(&err[create], 0, sizeof err[create]);
        rc[create] = order_input_parse(body, size, create, &in[create], &err[create]);
        if (rc[create] == 0) {
            check_success(&in[create], create);
        } else {
            CHECK(rc[create] == -1, "rc = %d", rc[create]);
            CHECK(is_zeroed(&in[create]), "*in not empty after an error");
            CHECK(memchr(err[create].message, '\0', sizeof err[create].message) != NULL,
                  "message not terminated");
            enum error_kind k = err[create].kind;
            CHECK(k == ERR_INVALID_JSON || k == ERR_VALIDATION_FAILED || k == ERR_INTERNAL,
                  "error kind %d (%s)", (int)k, err[create].message);
            if (k == ERR_VALIDATION_FAILED)
                CHECK(json_class != 0,
                      "validation_failed (422) for a body that is not JSON: %s",
                      err[create].message);
            if (k == ERR_INVALID_JSON && json_class == 1)
                CHECK(!utf8_valid(body, size),
                      "invalid_json (400) for a JSON object in valid UTF-8: %s",
                      err[create].message);
        }
        if (rc[create] == 0)
            CHECK(json_class != 0, "accepted a body that is not JSON");
    }

    /* A create is a patch plus required fields and defaults. */
    if (rc[1] == 0)
        CHECK(rc[0] == 0, "create accepted, patch refused: %s", err[0].message);
    if (rc[0] == 0 && (in[0].fields & (FIELD_CUSTOMER | FIELD_ITEMS))
                          == (FIELD_CUSTOMER | FIELD_ITEMS))
        CHECK(rc[1] == 0 || err[1].kind == ERR_INTERNAL, "patch accepted, create refused: %s",
              err[1].message);
    if (rc[0] == 0 && rc[1] == 0) {
        check_same(&in[0], &in[1], in[0].fields, "patch vs create");
        check_round_trip(&in[1]);
    }
    /* A patch refused is refused as a create too, for the same reason. */
    if (rc[0] != 0 && err[0].kind != ERR_INTERNAL && err[1].kind != ERR_INTERNAL)
        CHECK(err[0].kind == err[1].kind && strcmp(err[0].message, err[1].message) == 0,
              "patch error %d (%s), create error %d (%s)", (int)err[0].kind, err[0].message,
              (int)err[1].kind, err[1].message);

    order_input_free(&in[0]);
    order_input_free(&in[1]);
    free(body);
    return 0;
}
