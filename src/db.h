/* Opening the SQLite database the way every part of the service needs it,
 * bringing its schema up to date, and turning SQLite failures into API
 * errors. Each thread opens its own connection. */
#ifndef ORDERS_DB_H
#define ORDERS_DB_H

#include <sqlite3.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

/* Process-wide settings of SQLite, made before the first connection.
 * Returns 0, or -1 when SQLite was already in use. */
int db_configure(void);

/* Opens cfg->db_path (creating it when create is set) with WAL, the
 * configured synchronous mode and busy timeout, and the SQL function
 * orders_text(x): x, or a BLOB x as TEXT (its bytes when they are UTF-8
 * without NUL, else its hex digits), for the columns of rows written by
 * hand that JSON functions would refuse. Returns NULL with one line in err
 * on failure. Close with sqlite3_close(). */
sqlite3 *db_open(const struct config *cfg, int create, char *err, size_t errlen);

/* Applies the embedded migrations the file lacks, each in one IMMEDIATE
 * transaction, so that processes starting at once wait for each other.
 * Refuses a file whose schema is newer than this binary knows. */
int db_migrate(sqlite3 *db, char *err, size_t errlen);

/* Fills err from a failed SQLite call (rc) and returns -1: busy and locked
 * become 503 unavailable, a full disk 507, everything else 500. */
int db_error(sqlite3 *db, int rc, struct error *err);

/* Runs a statement that returns no rows and resets it. Returns the SQLite
 * result code (SQLITE_DONE on success). */
int db_step_done(sqlite3_stmt *stmt);

#endif
