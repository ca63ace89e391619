/* A cursor is base64url("o1." seq "." check): the version prefix lets the
 * format change later, and the check digit turns most edited or truncated
 * cursors into a clear 400 instead of a silently different page. */
#include "cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static unsigned check_digit(long long seq)
{
    unsigned long long x = (unsigned long long)seq * 0x9E3779B97F4A7C15ULL;
    return (unsigned)(x >> 59) % 10;
}

static void base64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

/* Returns the decoded length, or -1 on a character or length that base64url
 * without padding cannot produce. */
static int base64url_decode(const char *in, unsigned char *out, size_t outcap)
{
    size_t len = strlen(in), o = 0;
    if (len % 4 == 1)
        return -1;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(b64url, in[i]);
        if (!p || !in[i])
            return -1;
        v = (v << 6) | (unsigned)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outcap)
                return -1;
            out[o++] = (unsigned char)(v >> bits);
            v &= (1u << bits) - 1;
        }
    }
    if (v != 0)     /* leftover bits must be zero, or the text was altered */
        return -1;
    return (int)o;
}

void cursor_encode(long long seq, char out[CURSOR_MAX])
{
    char plain[32];
    int n = snprintf(plain, sizeof plain, "o1.%lld.%u", seq, check_digit(seq));
    base64url_encode((const unsigned char *)plain, (size_t)n, out);
}

int cursor_decode(const char *s, long long *seq)
{
    unsigned char plain[32];
    if (strlen(s) >= CURSOR_MAX)
        return -1;
    int n = base64url_decode(s, plain, sizeof plain - 1);
    if (n < 0)
        return -1;
    plain[n] = '\0';
    const char *p = (const char *)plain;
    if (strlen(p) != (size_t)n)
        return -1;
    if (strncmp(p, "o1.", 3) != 0)
        return -1;
    p += 3;
    if (*p < '1' || *p > '9')
        return -1;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (*end != '.' || v <= 0 || v == __LONG_LONG_MAX__)
        return -1;
    if (end[1] != (char)('0' + check_digit(v)) || end[2] != '\0')
        return -1;
    *seq = v;
    return 0;
}
