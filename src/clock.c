#include "clock.h"

#include <time.h>

static long long ns_of(clockid_t which)
{
    struct timespec ts;
    clock_gettime(which, &ts);
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long long clock_monotonic_ns(void)
{
    return ns_of(CLOCK_MONOTONIC);
}

long long clock_monotonic_ms(void)
{
    return ns_of(CLOCK_MONOTONIC) / 1000000;
}

long long clock_wall_ms(void)
{
    return ns_of(CLOCK_REALTIME) / 1000000;
}
