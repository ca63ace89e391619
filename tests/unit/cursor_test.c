/* Unit tests of src/cursor.c: opaque keyset cursors for the order list. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../src/cursor.h"
#include "tap.h"

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding, as a client forging a cursor would write it */
static void b64(const char *in, char *out)
{
    size_t len = strlen(in), o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)(unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)(unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

static void round_trip(long long seq)
{
    char c[CURSOR_MAX];
    memset(c, 'Z', sizeof c);
    cursor_encode(seq, c);
    size_t len = strnlen(c, sizeof c);
    ok(len > 0 && len < CURSOR_MAX, "cursor of %lld is NUL-terminated within CURSOR_MAX", seq);
    ok(strspn(c, b64url) == len, "cursor of %lld (%s) uses only URL-safe characters", seq, c);
    long long got = -1;
    int rc = cursor_decode(c, &got);
    is_int(rc, 0, "cursor of %lld decodes", seq);
    is_int(got, seq, "cursor of %lld round-trips", seq);
}

static void refused(const char *s, const char *desc)
{
    long long seq = 12345;
    int rc = cursor_decode(s, &seq);
    ok(rc == -1 && seq == 12345, "refused: %s", desc);
    if (rc != -1 || seq != 12345)
        diag("  cursor '%s': rc=%d seq=%lld", s, rc, seq);
}

/* Every single-character edit of a genuine cursor must fail or keep its seq,
 * unless the edit happens to spell the genuine cursor of another seq, which
 * no check can tell from a real one; those must be rare. */
static void tampering(long long seq)
{
    char c[CURSOR_MAX];
    cursor_encode(seq, c);
    size_t len = strlen(c);
    int tried = 0, failed = 0, same = 0, other = 0, silent = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (const char *a = b64url; *a; a++) {
            if (*a == c[pos])
                continue;
            char t[CURSOR_MAX];
            memcpy(t, c, len + 1);
            t[pos] = *a;
            long long got = 0;
            tried++;
            if (cursor_decode(t, &got) != 0) {
                failed++;
                continue;
            }
            if (got == seq) {
                same++;
                continue;
            }
            char canon[CURSOR_MAX];
            cursor_encode(got, canon);
            if (strcmp(canon, t) == 0) {
                other++;         /* a genuine cursor of another order */
            } else {
                silent++;
                diag("  edit of %s at %zu to '%s' decoded to %lld", c, pos, t, got);
            }
        }
    }
    is_int(silent, 0,
           "seq %lld: no edited cursor decodes to another seq unless it is that seq's own cursor",
           seq);
    ok(failed * 100 >= tried * 95,
       "seq %lld: %d of %d single-character edits refused (want >= 95%%; %d kept the seq, %d "
       "spelled another genuine cursor)",
       seq, failed, tried, same, other);

    /* Dropping or adding a character. */
    char t[CURSOR_MAX + 1];
    int bad = 0;
    for (size_t pos = 0; pos < len; pos++) {
        memcpy(t, c, pos);
        memcpy(t + pos, c + pos + 1, len - pos);
        long long got = 0;
        if (cursor_decode(t, &got) == 0 && got != seq) {
            char canon[CURSOR_MAX];
            cursor_encode(got, canon);
            bad += strcmp(canon, t) != 0;
        }
    }
    is_int(bad, 0, "seq %lld: a cursor missing a character is refused or genuine", seq);
    memcpy(t, c, len + 1);
    t[len - 1] = '\0';
    refused(t, "cursor with its last character cut");
    memcpy(t, c, len);
    strcpy(t + len, "A");
    refused(t, "cursor with a character appended");
}

int main(void)
{
    round_trip(1);
    round_trip(2);
    round_trip(9);
    round_trip(10);
    round_trip(42);
    round_trip(99999);
    round_trip(1000000000000LL);
    round_trip(INT64_MAX - 1);

    char a[CURSOR_MAX], b[CURSOR_MAX];
    cursor_encode(42, a);
    cursor_encode(42, b);
    is_str(a, b, "encoding is deterministic");
    cursor_encode(43, b);
    ok(strcmp(a, b) != 0, "42 and 43 have different cursors");

    refused("", "empty string");
    refused("xyz", "xyz");
    refused("garbage!", "garbage with a character outside base64url");
    refused("not a cursor", "text with spaces");
    refused("AAAA", "base64 of zero bytes");
    refused("../../etc/passwd", "path");
    refused("bzEuNDIuNw==", "standard base64 with '=' padding");

    /* Padding and alphabet: a genuine cursor dressed up the standard way. */
    char c[CURSOR_MAX + 8];
    cursor_encode(42, c);
    size_t len = strlen(c);
    strcpy(c + len, "=");
    refused(c, "genuine cursor with '=' appended");
    strcpy(c + len, "==");
    refused(c, "genuine cursor with '==' appended");
    cursor_encode(1000000000000LL, c);
    for (char *p = c; *p; p++)
        if (*p == '-' || *p == '_')
            *p = *p == '-' ? '+' : '/';
    if (strpbrk(c, "+/"))
        refused(c, "cursor in the standard base64 alphabet");

    /* Length limits. */
    char longest[64];
    memset(longest, 'A', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    refused(longest, "63 characters");
    longest[CURSOR_MAX - 1] = '\0';
    refused(longest, "CURSOR_MAX - 1 characters of A");
    char huge[4096];
    memset(huge, 'b', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    refused(huge, "4095 characters");

    /* Forged plaintexts: whatever check digit is tried, seq 0, negative,
     * non-canonical and overflowing numbers are refused. */
    static const char *const forged[] = {
        "o1.0.%d", "o1.-1.%d", "o1.-42.%d", "o1.00.%d", "o1.042.%d", "o1.+42.%d",
        "o1. 42.%d", "o1.42 .%d", "o1.9223372036854775807.%d",
        "o1.9223372036854775808.%d", "o1.99999999999999999999.%d",
        "o1.-9223372036854775808.%d", "o2.42.%d", "O1.42.%d", "o1.42.%d0", "o1.42.%d.",
        "o1.42.%d\n", "o1.4x2.%d", "o1.42..%d",
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        int accepted = 0;
        for (int d = 0; d < 10; d++) {
            char plain[64], enc[128];
            snprintf(plain, sizeof plain, forged[i], d);
            b64(plain, enc);
            long long seq = 0;
            if (cursor_decode(enc, &seq) == 0) {
                accepted++;
                diag("  '%s' (%s) decoded to %lld", plain, enc, seq);
            }
        }
        char desc[80];
        snprintf(desc, sizeof desc, forged[i], 0);
        is_int(accepted, 0, "forged '%s' refused for every check digit", desc);
    }

    /* The right plaintext with the wrong check digit. */
    {
        int accepted = 0;
        for (int d = 0; d < 10; d++) {
            char plain[32], enc[64];
            snprintf(plain, sizeof plain, "o1.42.%d", d);
            b64(plain, enc);
            long long seq = 0;
            accepted += cursor_decode(enc, &seq) == 0;
        }
        is_int(accepted, 1, "of the ten check digits for seq 42 exactly one is accepted");
    }

    tampering(1);
    tampering(42);
    tampering(123456789);
    tampering(1000000000000LL);
    tampering(INT64_MAX - 1);

    return done_testing();
}
