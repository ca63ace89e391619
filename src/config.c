/* Settings come from the environment because that is what every way of
 * starting a FastCGI responder (lighttpd bin-environment, FcgidInitialEnv,
 * spawn-fcgi) can pass. Each value is checked here, at start, so that a typo
 * stops the process with one clear line instead of misbehaving later. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct long_setting {
    const char *name;
    size_t offset;          /* of the long in struct config */
    long def, min, max;
};

#define SETTING(name, field, def, min, max) \
    { name, offsetof(struct config, field), def, min, max }

static const struct long_setting long_settings[] = {
    SETTING("ORDERS_POLL_MS", poll_ms, 50, 1, 60000),
    SETTING("ORDERS_PING_S", ping_s, 15, 1, 86400),
    SETTING("ORDERS_RETRY_MS", retry_ms, 1000, 0, 86400000),
    SETTING("ORDERS_RETAIN_EVENTS", retain_events, 100000, 1, 1000000000000L),
    SETTING("ORDERS_WRITE_TIMEOUT_S", write_timeout_s, 30, 1, 86400),
    SETTING("ORDERS_STREAM_MAX_S", stream_max_s, 3600, 1, 7 * 86400),
    SETTING("ORDERS_MAX_BODY", max_body, 65536, 64, 64L * 1024 * 1024),
    SETTING("ORDERS_MAX_STREAMS", max_streams, -1, 0, 1000000),
    SETTING("ORDERS_THREADS", threads, 8, 1, 256),
    SETTING("ORDERS_BUSY_TIMEOUT_MS", busy_timeout_ms, 5000, 0, 600000),
    SETTING("ORDERS_MAX_PAGES", max_pages, 0, 0, 2147483647L),
};

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Splits a comma list into a NULL-terminated array of trimmed strings. */
static char **split_origins(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += (*p == ',');
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s) {
            out[k] = strndup(s, (size_t)(e - s));
            if (!out[k])
                break;
            k++;
        }
        p = comma ? comma + 1 : p + len;
    }
    return out;
}

bool config_has_postgresql(void)
{
#ifdef HAVE_POSTGRESQL
    return true;
#else
    return false;
#endif
}

/* libpq's URI forms; anything else is a SQLite file name. */
static bool is_postgresql_uri(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}

/* ORDERS_METRICS_FILE, where every process of one host shares its counters
 * (metrics.h), or its default: beside a SQLite file, since its processes
 * are those that share that file; for PostgreSQL, whose processes may be on
 * several hosts, a file per user on this host (under systemd's PrivateTmp,
 * per service). Returns a string to free, or NULL when out of memory. */
static char *metrics_path(enum backend backend, const char *db)
{
    const char *set = getenv("ORDERS_METRICS_FILE");
    if (set && *set)
        return strdup(set);
    char *path = NULL;
    int n;
    if (backend == BACKEND_SQLITE) {
        n = asprintf(&path, "%s-metrics", db);
    } else {
        const char *tmp = getenv("TMPDIR");
        n = asprintf(&path, "%s/orders-%u.metrics", tmp && *tmp ? tmp : "/tmp",
                     (unsigned)getuid());
    }
    return n < 0 ? NULL : path;
}

int config_load(struct config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);

    for (size_t i = 0; i < sizeof long_settings / sizeof long_settings[0]; i++) {
        const struct long_setting *s = &long_settings[i];
        long *field = (long *)((char *)cfg + s->offset);
        const char *v = getenv(s->name);
        if (!v || !*v) {
            *field = s->def;
            continue;
        }
        if (parse_long(v, field) != 0 || *field < s->min || *field > s->max) {
            snprintf(err, errlen, "%s must be an integer from %ld to %ld, not '%s'",
                     s->name, s->min, s->max, v);
            return -1;
        }
    }
    const char *db = getenv("ORDERS_DB");
    if (!db || !*db) {
        snprintf(err, errlen, "ORDERS_DB must name the SQLite database file "
                 "or be a postgresql:// URI");
        return -1;
    }
    cfg->backend = is_postgresql_uri(db) ? BACKEND_POSTGRESQL : BACKEND_SQLITE;
    if (cfg->backend == BACKEND_POSTGRESQL && !config_has_postgresql()) {
        snprintf(err, errlen, "ORDERS_DB is a PostgreSQL URI, but this orders.fcgi was built "
                 "without PostgreSQL (configure --without-postgresql)");
        return -1;
    }

    const char *sync = getenv("ORDERS_SYNC");
    if (!sync || !*sync || strcmp(sync, "normal") == 0) {
        cfg->sync = SYNC_NORMAL;
    } else if (strcmp(sync, "full") == 0) {
        cfg->sync = SYNC_FULL;
    } else {
        snprintf(err, errlen, "ORDERS_SYNC must be 'normal' or 'full', not '%s'", sync);
        return -1;
    }

    const char *rt = getenv("ORDERS_READ_TOKENS");
    if (!rt || !*rt || strcmp(rt, "0") == 0) {
        cfg->read_tokens = false;
    } else if (strcmp(rt, "1") == 0) {
        cfg->read_tokens = true;
    } else {
        snprintf(err, errlen, "ORDERS_READ_TOKENS must be 0 or 1, not '%s'", rt);
        return -1;
    }

    const char *tokens = getenv("ORDERS_TOKENS_FILE");
    if (cfg->read_tokens && (!tokens || !*tokens)) {
        snprintf(err, errlen, "ORDERS_READ_TOKENS=1 needs ORDERS_TOKENS_FILE");
        return -1;
    }

    cfg->db_path = strdup(db);
    cfg->metrics_path = metrics_path(cfg->backend, db);
    cfg->tokens_file = (tokens && *tokens) ? dup_or_null(tokens) : NULL;

    const char *cors = getenv("ORDERS_CORS_ORIGINS");
    if (cors && *cors) {
        if (strcmp(cors, "*") == 0)
            cfg->cors_any = true;
        else
            cfg->cors_origins = split_origins(cors);
    }
    if (!cfg->db_path || !cfg->metrics_path || (tokens && *tokens && !cfg->tokens_file)
        || (cors && *cors && !cfg->cors_any && !cfg->cors_origins)) {
        config_free(cfg);
        snprintf(err, errlen, "out of memory reading the settings");
        return -1;
    }
    return 0;
}

void config_free(struct config *cfg)
{
    free(cfg->db_path);
    free(cfg->metrics_path);
    free(cfg->tokens_file);
    if (cfg->cors_origins) {
        for (char **o = cfg->cors_origins; *o; o++)
            free(*o);
        free(cfg->cors_origins);
    }
    memset(cfg, 0, sizeof *cfg);
}
