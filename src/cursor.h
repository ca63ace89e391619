/* Keyset cursors for the order list. A cursor names the position after the
 * last order of a page (its seq); it is opaque to clients, and a cursor that
 * was not made here is refused rather than guessed at. Pure logic. */
#ifndef ORDERS_CURSOR_H
#define ORDERS_CURSOR_H

#define CURSOR_MAX 40   /* bytes of an encoded cursor, with its NUL */

/* Writes the cursor for the position after seq (seq > 0). */
void cursor_encode(long long seq, char out[CURSOR_MAX]);
/* Returns 0 and sets *seq when s is a cursor made by cursor_encode. */
int cursor_decode(const char *s, long long *seq);

#endif
