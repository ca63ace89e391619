/* Errors as values. Every module that can refuse a request fills a struct
 * error and returns -1; routes.c turns it into the one JSON error response
 * (http.c:reply_error), so codes and statuses live in a single table. */
#ifndef ORDERS_ERROR_H
#define ORDERS_ERROR_H

enum error_kind {
    ERR_NONE = 0,
    ERR_INVALID_JSON,
    ERR_INVALID_PARAMETER,
    ERR_INVALID_LAST_EVENT_ID,
    ERR_UNAUTHORIZED,
    ERR_NOT_FOUND,
    ERR_METHOD_NOT_ALLOWED,
    ERR_INVALID_TRANSITION,
    ERR_IDEMPOTENCY_KEY_REUSED,
    ERR_PRECONDITION_FAILED,
    ERR_PAYLOAD_TOO_LARGE,
    ERR_UNSUPPORTED_MEDIA_TYPE,
    ERR_VALIDATION_FAILED,
    ERR_UNAVAILABLE,
    ERR_WRITE_CONFLICT,     /* a deadlock or serialization failure: run the write again */
    ERR_INSUFFICIENT_STORAGE,
    ERR_INTERNAL,
};

struct error {
    enum error_kind kind;
    char message[240];
};

/* Sets *err and returns -1, so that callers can `return error_set(...)`. */
int error_set(struct error *err, enum error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int error_status(enum error_kind kind);      /* HTTP status */
const char *error_code(enum error_kind kind); /* the SPEC's "code" */

#endif
