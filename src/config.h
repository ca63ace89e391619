/* The responder's settings, read once from the environment at start. */
#ifndef ORDERS_CONFIG_H
#define ORDERS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum sync_mode { SYNC_NORMAL, SYNC_FULL };

/* Where the orders and their event log live (store.h). */
enum backend { BACKEND_SQLITE, BACKEND_POSTGRESQL };

struct config {
    char *db_path;            /* ORDERS_DB: a SQLite file, or a PostgreSQL URI */
    enum backend backend;     /* told by ORDERS_DB's form */
    char *metrics_path;       /* ORDERS_METRICS_FILE, or its default */
    long poll_ms;             /* ORDERS_POLL_MS */
    long ping_s;              /* ORDERS_PING_S */
    long retry_ms;            /* ORDERS_RETRY_MS */
    long retain_events;       /* ORDERS_RETAIN_EVENTS */
    long write_timeout_s;     /* ORDERS_WRITE_TIMEOUT_S */
    long stream_max_s;        /* ORDERS_STREAM_MAX_S */
    long max_body;            /* ORDERS_MAX_BODY */
    long max_streams;         /* ORDERS_MAX_STREAMS; -1 until main.c fits it to the file limit */
    long threads;             /* ORDERS_THREADS: REST worker threads */
    long busy_timeout_ms;     /* ORDERS_BUSY_TIMEOUT_MS */
    long max_pages;           /* ORDERS_MAX_PAGES: cap on the file's size in pages, 0 = none */
    char *tokens_file;        /* ORDERS_TOKENS_FILE, NULL when writes are open */
    bool read_tokens;         /* ORDERS_READ_TOKENS */
    char **cors_origins;      /* ORDERS_CORS_ORIGINS split on ',', NULL-terminated; NULL when unset */
    bool cors_any;            /* ORDERS_CORS_ORIGINS=* */
    enum sync_mode sync;      /* ORDERS_SYNC */
};

/* Fills *cfg from the environment. On a bad value returns -1 and writes one
 * line naming the variable into err; cfg then holds nothing to free. The
 * strings in cfg are owned by it: release them with config_free(). */
int config_load(struct config *cfg, char *err, size_t errlen);

/* True when this binary was built with PostgreSQL (configure's default). */
bool config_has_postgresql(void);
void config_free(struct config *cfg);

#endif
