#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    int status;
    const char *code;
} error_table[] = {
    [ERR_NONE] = {200, "ok"},
    [ERR_INVALID_JSON] = {400, "invalid_json"},
    [ERR_INVALID_PARAMETER] = {400, "invalid_parameter"},
    [ERR_INVALID_LAST_EVENT_ID] = {400, "invalid_last_event_id"},
    [ERR_UNAUTHORIZED] = {401, "unauthorized"},
    [ERR_NOT_FOUND] = {404, "not_found"},
    [ERR_METHOD_NOT_ALLOWED] = {405, "method_not_allowed"},
    [ERR_INVALID_TRANSITION] = {409, "invalid_transition"},
    [ERR_IDEMPOTENCY_KEY_REUSED] = {409, "idempotency_key_reused"},
    [ERR_PRECONDITION_FAILED] = {412, "precondition_failed"},
    [ERR_PAYLOAD_TOO_LARGE] = {413, "payload_too_large"},
    [ERR_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported_media_type"},
    [ERR_VALIDATION_FAILED] = {422, "validation_failed"},
    [ERR_UNAVAILABLE] = {503, "unavailable"},
    [ERR_WRITE_CONFLICT] = {503, "unavailable"},
    [ERR_INSUFFICIENT_STORAGE] = {507, "insufficient_storage"},
    [ERR_INTERNAL] = {500, "internal_error"},
};

int error_set(struct error *err, enum error_kind kind, const char *fmt, ...)
{
    va_list ap;
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

int error_status(enum error_kind kind)
{
    return error_table[kind].status;
}

const char *error_code(enum error_kind kind)
{
    return error_table[kind].code;
}
