/* Tokens are kept only as SHA-256 digests: raw tokens from the file are
 * hashed on load, so a raw entry and a "sha256:" entry are checked the same
 * way, and comparing fixed-size digests in constant time leaks neither the
 * tokens nor their lengths. */
#include "auth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "sha256.h"
#include "uri.h"

#define RECHECK_NS 1000000000LL     /* stat the file at most once a second */

struct digest_set {
    uint8_t (*digests)[SHA256_LEN];
    size_t count;
};

struct auth {
    char *path;
    pthread_mutex_t lock;
    struct digest_set set;          /* guarded by lock */
    struct stat seen;               /* the file as last loaded */
    long long next_check_ns;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int parse_hash(const char *hex, size_t len, uint8_t out[SHA256_LEN])
{
    if (len != 2 * SHA256_LEN)
        return -1;
    for (size_t i = 0; i < SHA256_LEN; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int add_digest(struct digest_set *set, const uint8_t d[SHA256_LEN])
{
    uint8_t (*grown)[SHA256_LEN] = realloc(set->digests, (set->count + 1) * sizeof *grown);
    if (!grown)
        return -1;
    set->digests = grown;
    memcpy(set->digests[set->count++], d, SHA256_LEN);
    return 0;
}

/* Reads path into *set. On error writes a line into err and returns -1. */
static int read_tokens(const char *path, struct digest_set *set, struct stat *st,
                       char *err, size_t errlen)
{
    memset(set, 0, sizeof *set);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "ORDERS_TOKENS_FILE %s cannot be read", path);
        return -1;
    }
    if (fstat(fileno(f), st) != 0) {
        fclose(f);
        snprintf(err, errlen, "ORDERS_TOKENS_FILE %s cannot be read", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = line, *e = line + n;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (s == e || *s == '#')
            continue;
        uint8_t d[SHA256_LEN];
        if ((size_t)(e - s) >= 7 && strncmp(s, "sha256:", 7) == 0) {
            if (parse_hash(s + 7, (size_t)(e - s - 7), d) != 0) {
                snprintf(err, errlen, "ORDERS_TOKENS_FILE %s line %d: sha256: needs 64 hex digits",
                         path, lineno);
                rc = -1;
                break;
            }
        } else {
            sha256(s, (size_t)(e - s), d);
        }
        if (add_digest(set, d) != 0) {
            snprintf(err, errlen, "out of memory reading ORDERS_TOKENS_FILE");
            rc = -1;
        }
    }
    free(line);
    fclose(f);
    if (rc != 0) {
        free(set->digests);
        memset(set, 0, sizeof *set);
    }
    return rc;
}

struct auth *auth_load(const char *path, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        snprintf(err, errlen, "out of memory reading ORDERS_TOKENS_FILE");
        return NULL;
    }
    if (read_tokens(path, &a->set, &a->seen, err, errlen) != 0) {
        free(a->path);
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    a->next_check_ns = now_ns() + RECHECK_NS;
    return a;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    free(a->set.digests);
    free(a->path);
    free(a);
}

/* Called with the lock held. A file that vanished or went bad keeps the old
 * tokens: an operator's half-written edit must not lock everybody out, nor
 * open the API. */
static void reload_if_changed(struct auth *a)
{
    long long now = now_ns();
    if (now < a->next_check_ns)
        return;
    a->next_check_ns = now + RECHECK_NS;
    struct stat st;
    if (stat(a->path, &st) != 0)
        return;
    if (st.st_mtim.tv_sec == a->seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == a->seen.st_mtim.tv_nsec
        && st.st_size == a->seen.st_size && st.st_ino == a->seen.st_ino)
        return;
    struct digest_set fresh;
    char err[256];
    if (read_tokens(a->path, &fresh, &st, err, sizeof err) != 0) {
        fprintf(stderr, "orders: keeping the previous tokens: %s\n", err);
        return;
    }
    free(a->set.digests);
    a->set = fresh;
    a->seen = st;
}

bool auth_token_valid(struct auth *a, const char *token)
{
    uint8_t d[SHA256_LEN];
    sha256(token, strlen(token), d);
    unsigned match = 0;
    pthread_mutex_lock(&a->lock);
    reload_if_changed(a);
    for (size_t i = 0; i < a->set.count; i++) {
        unsigned diff = 0;
        for (size_t k = 0; k < SHA256_LEN; k++)
            diff |= a->set.digests[i][k] ^ d[k];
        match |= (diff == 0);
    }
    pthread_mutex_unlock(&a->lock);
    return match != 0;
}

const char *auth_bearer_token(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    header += 7;
    while (*header == ' ')
        header++;
    return *header ? header : NULL;
}
