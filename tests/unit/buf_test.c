/* Unit tests of src/buf.c: growth, NUL termination, printf, and the sticky
 * failure that lets callers check once at the end. */
#include <string.h>

#include "../../src/buf.h"
#include "tap.h"

static void test_growth(void)
{
    struct buf b = BUF_INIT;
    is_str(buf_str(&b), "", "an empty buffer reads as \"\"");
    for (int i = 0; i < 10000; i++)
        buf_append(&b, "abc", 3);
    is_int((long long)b.len, 30000, "30000 bytes appended");
    ok(b.cap > b.len && b.data[b.len] == '\0', "always NUL-terminated");
    ok(memcmp(b.data + 29997, "abc", 3) == 0, "the last piece is where it belongs");
    buf_append(&b, "x\0y", 3);
    is_int((long long)b.len, 30003, "bytes with a NUL in them count whole");
    buf_reset(&b);
    ok(b.len == 0 && b.data && b.cap > 0, "reset keeps the memory");
    is_str(buf_str(&b), "", "and reads as empty");
    buf_printf(&b, "%s=%d;", "n", 42);
    buf_printf(&b, "%05.1f", 3.14159);
    is_str(buf_str(&b), "n=42;003.1", "printf appends");
    buf_free(&b);
    ok(!b.data && !b.len && !b.cap, "freed");
}

static void test_sticky_failure(void)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "kept");
    b.failed = true;            /* as after a failed realloc */
    buf_puts(&b, " lost");
    buf_printf(&b, "%d", 7);
    buf_append(&b, "z", 1);
    ok(buf_failed(&b), "a failure sticks");
    is_str(buf_str(&b), "kept", "appends after it do nothing");
    buf_reset(&b);
    ok(!buf_failed(&b), "reset clears it");
    buf_free(&b);
}

int main(void)
{
    test_growth();
    test_sticky_failure();
    return done_testing();
}
