#include "clock.h"

#include <time.h>

static long long ms_of(clockid_t which)
{
    struct timespec ts;
    clock_gettime(which, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long clock_monotonic_ms(void)
{
    return ms_of(CLOCK_MONOTONIC);
}

long long clock_wall_ms(void)
{
    return ms_of(CLOCK_REALTIME);
}
