#include "uri.h"

#include <stdlib.h>
#include <string.h>

#define API_PREFIX "/api/v1/"

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *uri_decode(const char *s, size_t len, int plus_is_space)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '\0') {
            free(out);
            return NULL;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

int uri_query_param(const char *query, const char *name, char **value)
{
    size_t name_len = strlen(name);
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            *value = uri_decode(v, (size_t)(p + len - v), 1);
            return *value ? 1 : -1;
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return 0;
}

int uri_route(const char *request_uri, const char **path, const char **query)
{
    const char *q = strchr(request_uri, '?');
    size_t path_len = q ? (size_t)(q - request_uri) : strlen(request_uri);
    *query = q ? q + 1 : "";

    /* Any mount point works: the API begins at the first "/api/v1/". */
    const char *start = NULL;
    for (const char *p = request_uri; p + sizeof API_PREFIX - 1 <= request_uri + path_len; p++) {
        if (memcmp(p, API_PREFIX, sizeof API_PREFIX - 1) == 0) {
            start = p;
            break;
        }
    }
    if (!start)
        return -1;
    *path = start + sizeof API_PREFIX - 2;      /* keep the slash before the route */
    return (int)(request_uri + path_len - *path);
}
