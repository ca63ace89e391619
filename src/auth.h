/* Bearer tokens from ORDERS_TOKENS_FILE: one token per line, or
 * "sha256:<64 hex digits>" for a token's hash; blank lines and '#' comments
 * are ignored. The file is re-read when it changes, without a restart. */
#ifndef ORDERS_AUTH_H
#define ORDERS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct auth;

/* Loads the tokens file. Returns NULL with one line in err when the file
 * cannot be read or holds a malformed hash. Free with auth_free(). */
struct auth *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth *a);

/* True when token is one of the file's tokens. The comparison takes the same
 * time whichever token matches, or none. Thread-safe. */
bool auth_token_valid(struct auth *a, const char *token);

/* The token of an "Authorization: Bearer <token>" header, or NULL. Points
 * into header. */
const char *auth_bearer_token(const char *header);

#endif
