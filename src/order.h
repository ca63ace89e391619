/* The rules of SPEC section 1: what a create or a patch body may hold, and
 * which status changes are allowed. Pure logic, no database, unit-tested. */
#ifndef ORDERS_ORDER_H
#define ORDERS_ORDER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum order_status {
    STATUS_PENDING,
    STATUS_PAID,
    STATUS_SHIPPED,
    STATUS_DELIVERED,
    STATUS_CANCELLED,
};

enum order_field {
    FIELD_CUSTOMER = 1 << 0,
    FIELD_ITEMS = 1 << 1,
    FIELD_CURRENCY = 1 << 2,
    FIELD_STATUS = 1 << 3,
    FIELD_NOTE = 1 << 4,
};

/* The fields a request body set, validated and normalised. */
struct order_input {
    unsigned fields;            /* enum order_field bits present in the body */
    char *customer;             /* trimmed; owned */
    char *items_json;           /* compact JSON array, keys in SPEC order; owned */
    long long total_cents;      /* sum of qty × unitPriceCents over items_json */
    char currency[4];
    enum order_status status;
    char *note;                 /* owned */
};

/* Parses and validates a request body; body[len] must be NUL. With for_create the required fields
 * must be there and the defaults are filled in. On error returns -1 with
 * err set (invalid_json or validation_failed) and *in holding nothing. */
int order_input_parse(const char *body, size_t len, bool for_create,
                      struct order_input *in, struct error *err);
void order_input_free(struct order_input *in);

const char *order_status_name(enum order_status s);
/* Returns 0 and sets *out when name is one of the five statuses. */
int order_status_parse(const char *name, enum order_status *out);
/* Forward only: pending → paid → shipped → delivered; pending|paid → cancelled. */
bool order_transition_allowed(enum order_status from, enum order_status to);

/* UTF-8 helpers shared with the request parsers. */
bool utf8_valid(const char *s, size_t len);
size_t utf8_count(const char *s, size_t len);   /* code points of valid UTF-8 */

#endif
