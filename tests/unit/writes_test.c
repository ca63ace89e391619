/* Unit tests of src/writes.c, the group commit, against a real SQLite
 * database file and real threads; the cases are in writes_cases.h, shared
 * with writes_pg_test.c. The write lock is held by a second store of the
 * same file, as the pruner would hold it. */
#include <sqlite3.h>

#include "../../src/db.h"
#include "writes_cases.h"

static struct store *holder;
static sqlite3 *peek;       /* reads what was committed */

static long long query_int(const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(peek, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void hold_lock(void)
{
    struct error err;
    if (store_write_begin(holder, clock_monotonic_ms() + 5000, &err) != 0) {
        diag("cannot take the write lock: %s", err.message);
        exit(2);
    }
}

static void release_lock(void)
{
    store_write_rollback(holder);
}

int main(void)
{
    char tdir[256], path[300], err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/writes_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tdir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof path, "%s/t.db", tdir);
    memset(&cfg, 0, sizeof cfg);
    cfg.db_path = path;
    cfg.busy_timeout_ms = 300;
    cfg.threads = 2 * WRITERS;
    sqlite3 *db = db_open(&cfg, 1, err, sizeof err);
    if (!db || db_migrate(db, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    sqlite3_close(db);
    struct store *writer = store_open(&cfg, err, sizeof err);
    holder = store_open(&cfg, err, sizeof err);
    peek = db_open(&cfg, 0, err, sizeof err);
    writes = writer && holder && peek ? writes_new(writer, &cfg, NULL) : NULL;
    if (!writes) {
        fprintf(stderr, "setup failed: %s\n", err);
        return 2;
    }

    run_write_cases();

    writes_free(writes);
    store_close(holder);
    store_close(writer);
    sqlite3_close(peek);
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tdir);
    if (system(cmd) != 0)
        diag("could not remove %s", tdir);
    return done_testing();
}
