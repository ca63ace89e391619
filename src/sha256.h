/* SHA-256 (FIPS 180-4), for token hashes and idempotency fingerprints. */
#ifndef ORDERS_SHA256_H
#define ORDERS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);
/* Writes the 64 lower-case hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char out[2 * SHA256_LEN + 1]);

#endif
