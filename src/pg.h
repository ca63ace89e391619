/* Connections to PostgreSQL the way every part of the service needs them,
 * and PostgreSQL's errors as API errors (what db.h is for SQLite).
 *
 * A link is opened from ORDERS_DB, a libpq URI (libpq's PG* environment
 * variables fill in what it leaves out), and reopened whenever it is lost:
 * while the server does not answer, a call fails at once with 503
 * unavailable and a new attempt is made at most every backoff interval
 * (100 ms, doubling to 5 s). The process logs one line when the server
 * stops answering and one when it answers again. The first connection of
 * the process that reaches the server brings its schema up to date. */
#ifndef ORDERS_PG_H
#define ORDERS_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "error.h"

struct pg_link {
    const struct config *cfg;
    PGconn *conn;               /* NULL while there is none */
    bool renewed;               /* a new connection, not yet seen by the owner */
    long long retry_at_ms;      /* clock_monotonic_ms: no attempt before it */
    long backoff_ms;
};

/* A link that connects on its first use. */
void pg_link_init(struct pg_link *link, const struct config *cfg);
void pg_link_close(struct pg_link *link);

/* Returns 0 with link->conn connected, or -1 with err 503 unavailable. A
 * new connection sets link->renewed, for the owner to prepare its
 * statements on. */
int pg_link_ready(struct pg_link *link, struct error *err);

/* True when the connection is gone. One the server closed while it sat
 * idle (a restart, an idle timeout) looks alive until a statement fails on
 * it: a statement outside any transaction is then run again on a new
 * connection, once. */
bool pg_link_lost(const struct pg_link *link);

/* Fills err from a failed call (res may be NULL: no result at all) and
 * returns -1. A lost connection is closed (the next pg_link_ready opens
 * another) and becomes 503 unavailable, as do a lock or statement timeout
 * and the server's shortage of anything but disk; a full disk becomes 507;
 * a deadlock or serialization failure ERR_WRITE_CONFLICT, which writes.c
 * runs again; anything else (a constraint refused, as with SQLite) 500,
 * logged. */
int pg_error(struct pg_link *link, const PGresult *res, struct error *err);

/* Appends JSON text to out without the whitespace between its tokens. A
 * json column keeps its text as written, spaces and line breaks included
 * (a patch written by hand with psql); the API's JSON is compact. */
void pg_append_compact_json(struct buf *out, const char *json, size_t len);

/* Applies the migrations of sql/pg/ the database lacks, under an advisory
 * lock so that hosts starting at once migrate once. At start (at_start), a
 * server that does not answer is logged and left to the first connection.
 * Returns 0, or -1 with one line in err. */
int pg_migrate(const struct config *cfg, bool at_start, char *err, size_t errlen);

#endif
