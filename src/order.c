#include "order.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUSTOMER_MAX 200
#define ITEMS_MAX 100
#define SKU_MAX 64
#define NAME_MAX_CHARS 200
#define QTY_MAX 10000
#define PRICE_MAX 100000000
#define NOTE_MAX 1000
#define JSON_DEPTH_MAX 16

static const char *const status_names[] = {
    [STATUS_PENDING] = "pending",
    [STATUS_PAID] = "paid",
    [STATUS_SHIPPED] = "shipped",
    [STATUS_DELIVERED] = "delivered",
    [STATUS_CANCELLED] = "cancelled",
};

const char *order_status_name(enum order_status s)
{
    return status_names[s];
}

int order_status_parse(const char *name, enum order_status *out)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (enum order_status)i;
            return 0;
        }
    }
    return -1;
}

bool order_transition_allowed(enum order_status from, enum order_status to)
{
    switch (from) {
    case STATUS_PENDING:
        return to == STATUS_PAID || to == STATUS_CANCELLED;
    case STATUS_PAID:
        return to == STATUS_SHIPPED || to == STATUS_CANCELLED;
    case STATUS_SHIPPED:
        return to == STATUS_DELIVERED;
    case STATUS_DELIVERED:
    case STATUS_CANCELLED:
        return false;
    }
    return false;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past
 * U+10FFFF, and no NUL, which JSON text may not carry raw. */
bool utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        unsigned cp;
        if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

size_t utf8_count(const char *str, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)str[i] & 0xC0) != 0x80;
    return n;
}

/* Checks that a JSON value is a string of min..max code points, without NUL
 * or broken UTF-8 (json-c lets "\u0000" and lone surrogates through). */
static int check_string(json_object *v, const char *field, size_t min, size_t max,
                        const char **out, size_t *out_len, struct error *err)
{
    if (!json_object_is_type(v, json_type_string))
        return error_set(err, ERR_VALIDATION_FAILED, "%s must be a string", field);
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len || !utf8_valid(s, len))
        return error_set(err, ERR_VALIDATION_FAILED,
                         "%s must be valid UTF-8 without NUL characters", field);
    size_t chars = utf8_count(s, len);
    if (chars < min || chars > max)
        return error_set(err, ERR_VALIDATION_FAILED,
                         "%s must be %zu to %zu characters long", field, min, max);
    *out = s;
    *out_len = len;
    return 0;
}

static int check_integer(json_object *v, const char *field, int64_t min, int64_t max,
                         int64_t *out, struct error *err)
{
    /* json-c gives 2.0 and 1e3 the double type: only integer literals pass. */
    if (!json_object_is_type(v, json_type_int))
        return error_set(err, ERR_VALIDATION_FAILED, "%s must be an integer", field);
    int64_t n = json_object_get_int64(v);
    /* Values past int64 saturate; the range check below refuses them. */
    if (n < min || n > max)
        return error_set(err, ERR_VALIDATION_FAILED,
                         "%s must be an integer from %lld to %lld", field,
                         (long long)min, (long long)max);
    *out = n;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int parse_customer(json_object *v, struct order_input *in, struct error *err)
{
    if (!json_object_is_type(v, json_type_string))
        return error_set(err, ERR_VALIDATION_FAILED, "customer must be a string");
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    while (len && is_space(*s))
        s++, len--;
    while (len && is_space(s[len - 1]))
        len--;
    if (memchr(s, '\0', len) || !utf8_valid(s, len))
        return error_set(err, ERR_VALIDATION_FAILED,
                         "customer must be valid UTF-8 without NUL characters");
    size_t chars = utf8_count(s, len);
    if (chars < 1 || chars > CUSTOMER_MAX)
        return error_set(err, ERR_VALIDATION_FAILED,
                         "customer must be 1 to %d characters long after trimming", CUSTOMER_MAX);
    in->customer = strndup(s, len);
    if (!in->customer)
        return error_set(err, ERR_INTERNAL, "out of memory");
    return 0;
}

/* Validates one item and appends its canonical form to items. */
static int parse_item(json_object *item, size_t index, json_object *items,
                      long long *total, struct error *err)
{
    char field[48];
    if (!json_object_is_type(item, json_type_object))
        return error_set(err, ERR_VALIDATION_FAILED, "items[%zu] must be an object", index);

    json_object_object_foreach(item, key, val) {
        (void)val;
        if (strcmp(key, "sku") && strcmp(key, "name") && strcmp(key, "qty")
            && strcmp(key, "unitPriceCents"))
            return error_set(err, ERR_VALIDATION_FAILED, "items[%zu].%.40s is not a known field",
                             index, key);
    }

    json_object *sku, *name, *qty, *price;
    const char *sku_s, *name_s;
    size_t sku_len, name_len;
    int64_t qty_n, price_n;

    snprintf(field, sizeof field, "items[%zu].sku", index);
    if (!json_object_object_get_ex(item, "sku", &sku))
        return error_set(err, ERR_VALIDATION_FAILED, "%s is required", field);
    if (check_string(sku, field, 1, SKU_MAX, &sku_s, &sku_len, err))
        return -1;
    snprintf(field, sizeof field, "items[%zu].name", index);
    if (!json_object_object_get_ex(item, "name", &name))
        return error_set(err, ERR_VALIDATION_FAILED, "%s is required", field);
    if (check_string(name, field, 1, NAME_MAX_CHARS, &name_s, &name_len, err))
        return -1;
    snprintf(field, sizeof field, "items[%zu].qty", index);
    if (!json_object_object_get_ex(item, "qty", &qty))
        return error_set(err, ERR_VALIDATION_FAILED, "%s is required", field);
    if (check_integer(qty, field, 1, QTY_MAX, &qty_n, err))
        return -1;
    snprintf(field, sizeof field, "items[%zu].unitPriceCents", index);
    if (!json_object_object_get_ex(item, "unitPriceCents", &price))
        return error_set(err, ERR_VALIDATION_FAILED, "%s is required", field);
    if (check_integer(price, field, 0, PRICE_MAX, &price_n, err))
        return -1;

    *total += qty_n * price_n;      /* at most 100 × 10^4 × 10^8: no overflow */
    json_object *out = json_object_new_object();
    if (!out)
        return error_set(err, ERR_INTERNAL, "out of memory");
    if (json_object_object_add(out, "sku", json_object_new_string_len(sku_s, (int)sku_len))
        || json_object_object_add(out, "name", json_object_new_string_len(name_s, (int)name_len))
        || json_object_object_add(out, "qty", json_object_new_int64(qty_n))
        || json_object_object_add(out, "unitPriceCents", json_object_new_int64(price_n))
        || json_object_array_add(items, out)) {
        json_object_put(out);
        return error_set(err, ERR_INTERNAL, "out of memory");
    }
    return 0;
}

static int parse_items(json_object *v, struct order_input *in, struct error *err)
{
    if (!json_object_is_type(v, json_type_array))
        return error_set(err, ERR_VALIDATION_FAILED, "items must be an array");
    size_t n = json_object_array_length(v);
    if (n < 1 || n > ITEMS_MAX)
        return error_set(err, ERR_VALIDATION_FAILED, "items must hold 1 to %d items", ITEMS_MAX);
    json_object *items = json_object_new_array_ext((int)n);
    if (!items)
        return error_set(err, ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (parse_item(json_object_array_get_idx(v, i), i, items, &in->total_cents, err)) {
            json_object_put(items);
            return -1;
        }
    }
    const char *text = json_object_to_json_string_ext(
        items, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    in->items_json = text ? strdup(text) : NULL;
    json_object_put(items);
    if (!in->items_json)
        return error_set(err, ERR_INTERNAL, "out of memory");
    return 0;
}

static int parse_currency(json_object *v, struct order_input *in, struct error *err)
{
    const char *s;
    size_t len;
    if (check_string(v, "currency", 3, 3, &s, &len, err))
        return -1;
    for (size_t i = 0; i < 3; i++)
        if (len != 3 || s[i] < 'A' || s[i] > 'Z')
            return error_set(err, ERR_VALIDATION_FAILED,
                             "currency must be three upper-case letters");
    memcpy(in->currency, s, 4);
    return 0;
}

static int parse_status(json_object *v, struct order_input *in, struct error *err)
{
    if (!json_object_is_type(v, json_type_string)
        || strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)
        || order_status_parse(json_object_get_string(v), &in->status))
        return error_set(err, ERR_VALIDATION_FAILED,
                         "status must be one of pending, paid, shipped, delivered, cancelled");
    return 0;
}

static int parse_note(json_object *v, struct order_input *in, struct error *err)
{
    const char *s;
    size_t len;
    if (check_string(v, "note", 0, NOTE_MAX, &s, &len, err))
        return -1;
    in->note = strndup(s, len);
    if (!in->note)
        return error_set(err, ERR_INTERNAL, "out of memory");
    return 0;
}

static const struct {
    const char *name;
    enum order_field bit;
    int (*parse)(json_object *v, struct order_input *in, struct error *err);
} writable_fields[] = {
    {"customer", FIELD_CUSTOMER, parse_customer},
    {"items", FIELD_ITEMS, parse_items},
    {"currency", FIELD_CURRENCY, parse_currency},
    {"status", FIELD_STATUS, parse_status},
    {"note", FIELD_NOTE, parse_note},
};

static const char *const read_only_fields[] = {
    "id", "totalCents", "createdAt", "updatedAt", "version",
};

static int parse_fields(json_object *obj, struct order_input *in, struct error *err)
{
    json_object_object_foreach(obj, key, val) {
        size_t i;
        for (i = 0; i < sizeof writable_fields / sizeof writable_fields[0]; i++)
            if (strcmp(key, writable_fields[i].name) == 0)
                break;
        if (i == sizeof writable_fields / sizeof writable_fields[0]) {
            for (size_t k = 0; k < sizeof read_only_fields / sizeof read_only_fields[0]; k++)
                if (strcmp(key, read_only_fields[k]) == 0)
                    return error_set(err, ERR_VALIDATION_FAILED, "%s is read-only", key);
            return error_set(err, ERR_VALIDATION_FAILED, "%.64s is not a known field", key);
        }
        if (writable_fields[i].parse(val, in, err))
            return -1;
        in->fields |= writable_fields[i].bit;
    }
    return 0;
}

static int fill_defaults(struct order_input *in, struct error *err)
{
    if (!(in->fields & FIELD_CUSTOMER))
        return error_set(err, ERR_VALIDATION_FAILED, "customer is required");
    if (!(in->fields & FIELD_ITEMS))
        return error_set(err, ERR_VALIDATION_FAILED, "items is required");
    if (!(in->fields & FIELD_CURRENCY))
        memcpy(in->currency, "EUR", 4);
    if (!(in->fields & FIELD_STATUS))
        in->status = STATUS_PENDING;
    if (!(in->fields & FIELD_NOTE) && !(in->note = strdup("")))
        return error_set(err, ERR_INTERNAL, "out of memory");
    in->fields |= FIELD_CURRENCY | FIELD_STATUS | FIELD_NOTE;
    return 0;
}

/* json-c cuts object keys at an escaped NUL ("a\u0000b" reads as "a"), so
 * that such a key would pass for another. Finds a key holding \u0000 and
 * copies the part before it into name; NUL in values is caught by the
 * checks of each field, which know its name. */
static bool key_has_nul(const char *body, size_t len, char *name, size_t name_cap)
{
    size_t i = 0;
    while (i < len) {
        if (body[i++] != '"')
            continue;
        size_t start = i, nul_at = 0;
        bool nul = false;
        while (i < len && body[i] != '"') {
            if (body[i] == '\\' && i + 1 < len) {
                if (!nul && body[i + 1] == 'u' && i + 5 < len && memcmp(body + i + 2, "0000", 4) == 0) {
                    nul = true;
                    nul_at = i;
                }
                i++;
            }
            i++;
        }
        i++;
        while (i < len && is_space(body[i]))
            i++;
        if (nul && i < len && body[i] == ':') {
            snprintf(name, name_cap, "%.*s", (int)(nul_at - start), body + start);
            return true;
        }
    }
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Skips one JSON number at body[*i] (RFC 8259 section 6). */
static bool skip_number(const char *body, size_t len, size_t *i)
{
    size_t p = *i;
    if (p < len && body[p] == '-')
        p++;
    if (p < len && body[p] == '0') {
        if (++p < len && is_digit(body[p]))
            return false;       /* no leading zeros */
    } else if (p < len && is_digit(body[p]))
        while (p < len && is_digit(body[p]))
            p++;
    else
        return false;
    if (p < len && body[p] == '.') {
        if (++p >= len || !is_digit(body[p]))
            return false;
        while (p < len && is_digit(body[p]))
            p++;
    }
    if (p < len && (body[p] == 'e' || body[p] == 'E')) {
        p++;
        if (p < len && (body[p] == '+' || body[p] == '-'))
            p++;
        if (p >= len || !is_digit(body[p]))
            return false;
        while (p < len && is_digit(body[p]))
            p++;
    }
    *i = p;
    return true;
}

/* json-c's strict mode still reads NaN, Infinity, "1.", "00" and raw
 * control characters in strings. This checks the tokens against RFC 8259
 * before json-c sees them: numbers by the grammar, words only true, false
 * and null, strings without unescaped control characters. */
static bool json_tokens_strict(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len) {
        char c = body[i];
        if (c == '"') {
            for (i++; i < len && body[i] != '"'; i++) {
                if ((unsigned char)body[i] < 0x20)
                    return false;       /* control characters must be escaped */
                if (body[i] == '\\')
                    i++;
            }
            i++;
        } else if (c == '-' || is_digit(c)) {
            if (!skip_number(body, len, &i))
                return false;
        } else if (c == 't' || c == 'f' || c == 'n') {
            const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
            size_t n = strlen(word);
            if (i + n > len || memcmp(body + i, word, n) != 0)
                return false;
            i += n;
        } else if (strchr("{}[],: \t\r\n", c)) {
            i++;
        } else {
            return false;
        }
    }
    return true;
}

/* Parses the whole body as one JSON object, refusing trailing bytes. */
static json_object *parse_object(const char *body, size_t len, struct error *err)
{
    if (len == 0) {
        error_set(err, ERR_INVALID_JSON, "the request body is empty");
        return NULL;
    }
    if (memchr(body, '\0', len)) {
        error_set(err, ERR_INVALID_JSON, "the request body holds a NUL byte, which JSON text "
                                         "may not carry");
        return NULL;
    }
    if (!utf8_valid(body, len)) {
        error_set(err, ERR_INVALID_JSON, "the request body is not valid UTF-8");
        return NULL;
    }
    if (!json_tokens_strict(body, len)) {
        error_set(err, ERR_INVALID_JSON, "the request body is not JSON: a malformed number or word");
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH_MAX);
    if (!tok) {
        error_set(err, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    /* Passing the terminating NUL tells json-c that the input ends here, so
     * that a bare number at the end is finished instead of "continued". */
    json_object *obj = json_tokener_parse_ex(tok, body, (int)len + 1);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);

    if (jerr == json_tokener_continue) {
        error_set(err, ERR_INVALID_JSON, "the request body is incomplete JSON");
        return NULL;
    }
    if (jerr != json_tokener_success) {
        error_set(err, ERR_INVALID_JSON, "the request body is not JSON: %s",
                  json_tokener_error_desc(jerr));
        return NULL;
    }
    if (end > len)
        end = len;
    while (end < len && is_space(body[end]))
        end++;
    if (end != len) {
        json_object_put(obj);
        error_set(err, ERR_INVALID_JSON, "the request body has bytes after the JSON value");
        return NULL;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        error_set(err, ERR_INVALID_JSON, "the request body must be a JSON object");
        return NULL;
    }
    char key[48];
    if (key_has_nul(body, len, key, sizeof key)) {
        json_object_put(obj);
        error_set(err, ERR_VALIDATION_FAILED, "field name %s\\u0000… must not contain NUL", key);
        return NULL;
    }
    return obj;
}

int order_input_parse(const char *body, size_t len, bool for_create,
                      struct order_input *in, struct error *err)
{
    memset(in, 0, sizeof *in);
    json_object *obj = parse_object(body, len, err);
    if (!obj)
        return -1;
    int rc = parse_fields(obj, in, err);
    json_object_put(obj);
    if (rc == 0 && for_create)
        rc = fill_defaults(in, err);
    if (rc != 0)
        order_input_free(in);
    return rc;
}

void order_input_free(struct order_input *in)
{
    free(in->customer);
    free(in->items_json);
    free(in->note);
    memset(in, 0, sizeof *in);
}
