#include "db.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "migrations.h"
#include "order.h"

static int exec_pragma(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "ORDERS_DB %s: %s (%s)", sqlite3_db_filename(db, "main"),
                 sqlite3_errmsg(db), sql);
        return -1;
    }
    return 0;
}

/* orders_text(x): x itself, unless it is a BLOB. The service writes none,
 * but a row written by hand with sqlite3 may hold one, and json_object()
 * refuses BLOBs: one such row in events would stop every read of the log
 * at it, in every process. A BLOB becomes its bytes as TEXT when they are
 * UTF-8 without NUL, otherwise its hex digits (as hex() writes them), so
 * that what goes out is always valid JSON text. */
static void text_function(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    assert(argc == 1);
    sqlite3_value *v = argv[0];
    if (sqlite3_value_type(v) != SQLITE_BLOB) {
        sqlite3_result_value(ctx, v);
        return;
    }
    const unsigned char *p = sqlite3_value_blob(v);
    int n = sqlite3_value_bytes(v);
    if (n == 0) {
        sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
        return;
    }
    if (!p) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (utf8_valid((const char *)p, (size_t)n)) {
        sqlite3_result_text(ctx, (const char *)p, n, SQLITE_TRANSIENT);
        return;
    }
    static const char digits[] = "0123456789ABCDEF";
    char *hex = sqlite3_malloc64(2 * (sqlite3_uint64)n);
    if (!hex) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    for (int i = 0; i < n; i++) {
        hex[2 * i] = digits[p[i] >> 4];
        hex[2 * i + 1] = digits[p[i] & 15];
    }
    sqlite3_result_text64(ctx, hex, 2 * (sqlite3_uint64)n, sqlite3_free, SQLITE_UTF8);
}

int db_configure(void)
{
    /* Memory statistics take one process-wide mutex around every allocation
     * of every connection: with a thread per request, that mutex is where
     * the threads meet. Nothing here reads the statistics. */
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK ? 0 : -1;
}

sqlite3 *db_open(const struct config *cfg, int create, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(cfg->db_path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ORDERS_DB %s: %s", cfg->db_path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    if (sqlite3_db_readonly(db, "main") == 1) {
        snprintf(err, errlen, "ORDERS_DB %s is read-only", cfg->db_path);
        sqlite3_close(db);
        return NULL;
    }
    if (sqlite3_create_function_v2(db, "orders_text", 1,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                   text_function, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot define orders_text(): %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA busy_timeout = %ld", cfg->busy_timeout_ms);
    if (exec_pragma(db, sql, err, errlen)
        || exec_pragma(db, cfg->sync == SYNC_FULL ? "PRAGMA synchronous = FULL"
                                                  : "PRAGMA synchronous = NORMAL", err, errlen)
        || exec_pragma(db, "PRAGMA recursive_triggers = OFF", err, errlen)
        /* Reads through the map cost no system call, and a connection whose
         * page cache another connection's commit made stale refills fast. */
        || exec_pragma(db, "PRAGMA mmap_size = 268435456", err, errlen)
        /* Checkpoints run in the background (store_checkpoint), not in the
         * request that happens to cross the WAL's threshold. */
        || exec_pragma(db, "PRAGMA wal_autocheckpoint = 0", err, errlen)) {
        sqlite3_close(db);
        return NULL;
    }
    if (cfg->max_pages > 0) {
        /* A size cap makes a full disk something an operator can choose
         * (and a test can cause): writes past it fail with SQLITE_FULL. */
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %ld", cfg->max_pages);
        if (exec_pragma(db, sql, err, errlen)) {
            sqlite3_close(db);
            return NULL;
        }
    }
    return db;
}

static int read_user_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int apply(sqlite3 *db, const struct migration *m, char *err, size_t errlen)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
    char *msg = NULL;
    int rc = sqlite3_exec(db, m->sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "migration %s failed: %s", m->name, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int db_migrate(sqlite3 *db, char *err, size_t errlen)
{
    const int latest = migrations[migrations_count - 1].version;
    int version = 0;
    int rc = read_user_version(db, &version);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "ORDERS_DB is not a usable SQLite database: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (version > latest) {
        snprintf(err, errlen, "ORDERS_DB %s has schema version %d, newer than this responder's %d",
                 sqlite3_db_filename(db, "main"), version, latest);
        return -1;
    }
    /* WAL is a property of the file, set before the first table. A file in
     * rollback-journal mode already at the latest version (a copy restored
     * from VACUUM INTO) gets it here too: a no-op on a WAL file. */
    if (exec_pragma(db, "PRAGMA journal_mode = WAL", err, errlen))
        return -1;
    if (version == latest)
        return 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot lock ORDERS_DB to migrate it: %s", sqlite3_errmsg(db));
        return -1;
    }
    /* Another process may have migrated while we waited for the lock. */
    if (read_user_version(db, &version) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read ORDERS_DB: %s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    for (int i = 0; i < migrations_count; i++) {
        if (migrations[i].version <= version)
            continue;
        if (apply(db, &migrations[i], err, errlen)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot commit the migration: %s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int db_error(sqlite3 *db, int rc, struct error *err)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return error_set(err, ERR_UNAVAILABLE, "the database is busy, try again");
    case SQLITE_FULL:
        return error_set(err, ERR_INSUFFICIENT_STORAGE, "the database is full");
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return error_set(err, ERR_UNAVAILABLE, "the database is unavailable: %s",
                         sqlite3_errstr(rc));
    default:
        fprintf(stderr, "orders: sqlite error %d: %s\n", rc, sqlite3_errmsg(db));
        return error_set(err, ERR_INTERNAL, "internal database error");
    }
}

int db_step_done(sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc;
}
