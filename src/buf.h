/* A growable byte buffer, always NUL-terminated so that it can be handed to
 * C string functions. Allocation failure is sticky: once an append fails the
 * buffer is marked, later appends do nothing, and buf_failed() reports it, so
 * callers check once at the end instead of after every append. */
#ifndef ORDERS_BUF_H
#define ORDERS_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;     /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    bool failed;
};

#define BUF_INIT { NULL, 0, 0, false }

void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_reset(struct buf *b);          /* keeps the memory */
void buf_free(struct buf *b);
bool buf_failed(const struct buf *b);
/* The contents as a C string ("" when empty); valid until the next append. */
const char *buf_str(const struct buf *b);

#endif
