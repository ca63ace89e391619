/* A tiny header-only TAP producer for the unit tests.
 *
 *   plan(n);                 optional: announce n tests up front
 *   ok(cond, fmt, ...);      one test; returns cond
 *   is_int(got, want, fmt, ...);
 *   is_str(got, want, fmt, ...);   NULL is allowed on either side
 *   diag(fmt, ...);          a "# ..." line
 *   return done_testing();   prints the plan if none was given and returns
 *                            the exit status: non-zero when a test failed or
 *                            the count differs from the plan
 *
 * Everything goes to stdout so that diagnostics stay next to their test. */
#ifndef ORDERS_TAP_H
#define ORDERS_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static struct {
    int run;
    int failed;
    int planned;        /* -1: no plan yet */
} tap_state = {0, 0, -1};

static inline void plan(int n)
{
    tap_state.planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    fputs("# ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static inline bool tap_vresult(bool pass, const char *fmt, va_list ap)
{
    tap_state.run++;
    if (!pass)
        tap_state.failed++;
    printf("%s %d - ", pass ? "ok" : "not ok", tap_state.run);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    return pass;
}

static inline bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("  failed at %s:%d", file, line);
    return pass;
}

static inline bool tap_is_int(long long got, long long want, const char *file, int line,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline bool tap_is_int(long long got, long long want, const char *file, int line,
                              const char *fmt, ...)
{
    bool pass = got == want;
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("  failed at %s:%d: got %lld expected %lld", file, line, got, want);
    return pass;
}

static inline bool tap_is_str(const char *got, const char *want, const char *file, int line,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline bool tap_is_str(const char *got, const char *want, const char *file, int line,
                              const char *fmt, ...)
{
    bool pass = (got && want) ? strcmp(got, want) == 0 : got == want;
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass) {
        diag("  failed at %s:%d", file, line);
        diag("       got: %s%s%s", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
        diag("  expected: %s%s%s", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    }
    return pass;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) \
    tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

static inline int done_testing(void)
{
    if (tap_state.planned < 0)
        printf("1..%d\n", tap_state.run);
    else if (tap_state.planned != tap_state.run)
        diag("planned %d tests but ran %d", tap_state.planned, tap_state.run);
    if (tap_state.failed)
        diag("failed %d of %d tests", tap_state.failed, tap_state.run);
    fflush(stdout);
    if (tap_state.failed)
        return 1;
    return tap_state.planned >= 0 && tap_state.planned != tap_state.run ? 1 : 0;
}

#endif
