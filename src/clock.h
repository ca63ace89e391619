/* The two clocks the service reads: monotonic milliseconds for deadlines
 * and intervals (immune to the wall clock being set), and wall-clock
 * milliseconds for what clients see (event ts, pings, key expiry). */
#ifndef ORDERS_CLOCK_H
#define ORDERS_CLOCK_H

long long clock_monotonic_ms(void);
long long clock_monotonic_ns(void);    /* for request durations */
long long clock_wall_ms(void);

#endif
