/* Unit tests of src/eventlog.c against a real database file: a read that
 * fails after PRAGMA data_version moved is retried at the next poll
 * without another commit, and rows written by hand with BLOBs are read
 * as text instead of stopping the log.
 *
 * The failure is a real I/O error as SQLite sees one: the responder's
 * connection is opened through a VFS that wraps the default one and, while
 * armed, fails every read of a file (xRead; xFetch declines, so that
 * memory-mapped pages are read too). Another process holding a lock cannot
 * do this: in WAL mode readers never wait for writers, and every
 * connection of a running responder holds a SHARED lock on the file, so
 * nobody can take the EXCLUSIVE lock that would block them. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/db.h"
#include "../../src/eventlog.h"
#include "tap.h"

/* ---- a VFS whose reads fail on demand */

struct faulty_file {
    sqlite3_file base;
    sqlite3_file *real;     /* the wrapped file, right after this struct */
};

static sqlite3_vfs *real_vfs;
static bool reads_fail;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct faulty_file *)f)->real;
}

static int f_close(sqlite3_file *f)
{
    return real_of(f)->pMethods->xClose(real_of(f));
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    if (reads_fail)
        return SQLITE_IOERR_READ;
    return real_of(f)->pMethods->xRead(real_of(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xWrite(real_of(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int f_sync(sqlite3_file *f, int flags)
{
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int f_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int f_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int f_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int f_check_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int f_file_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int f_sector_size(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int f_device(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int f_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, pp);
}

static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int f_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    if (reads_fail) {
        *pp = NULL;     /* "not mapped": SQLite falls back to xRead */
        return SQLITE_OK;
    }
    return real_of(f)->pMethods->xFetch(real_of(f), off, n, pp);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

static const sqlite3_io_methods faulty_methods = {
    3, f_close, f_read, f_write, f_truncate, f_sync, f_file_size, f_lock, f_unlock,
    f_check_reserved, f_file_control, f_sector_size, f_device, f_shm_map, f_shm_lock,
    f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int faulty_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                       int *out_flags)
{
    (void)vfs;
    struct faulty_file *ff = (struct faulty_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set. */
    f->pMethods = rc == SQLITE_OK && ff->real->pMethods ? &faulty_methods : NULL;
    return rc;
}

/* Makes the faulty VFS the default, so that db_open() uses it. */
static void install_faulty_vfs(void)
{
    static sqlite3_vfs vfs;
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 3)
        abort();
    vfs = *real_vfs;
    vfs.zName = "faulty";
    vfs.szOsFile = (int)sizeof(struct faulty_file) + real_vfs->szOsFile;
    vfs.xOpen = faulty_open;
    if (sqlite3_vfs_register(&vfs, 1) != SQLITE_OK)
        abort();
}

/* ---- the tests */

struct seen {
    int n;
    long long ids[16];
    char data[16][256];
    char type[16][32];
    char order_id[16][32];
};

static void collect(void *arg, const struct event *ev)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->ids[s->n] = ev->id;
        snprintf(s->data[s->n], sizeof s->data[0], "%s", ev->data);
        snprintf(s->type[s->n], sizeof s->type[0], "%s", ev->type);
        snprintf(s->order_id[s->n], sizeof s->order_id[0], "%s", ev->order_id);
    }
    s->n++;
}

/* Another connection (the real VFS, as another process would) commits. */
static void commit_by_hand(sqlite3 *other, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(other, sql, NULL, NULL, &msg) != SQLITE_OK) {
        diag("%s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        abort();
    }
}

static bool changed_now(struct eventlog *log)
{
    bool changed = false;
    if (eventlog_changed(log, &changed) != 0)
        abort();
    return changed;
}

static void test_failed_read_is_retried(struct eventlog *log, sqlite3 *other)
{
    struct seen s = {0};
    ok(changed_now(log), "a first look reports a change");
    is_int(eventlog_read(log, 0, INT64_MAX, 100, collect, &s), 0, "the log starts empty");
    ok(!changed_now(log), "nothing changed since");

    commit_by_hand(other, "INSERT INTO orders (customer, items) VALUES ('A', '[]'), ('B', '[]')");
    ok(changed_now(log), "a commit by another connection is a change");
    reads_fail = true;
    memset(&s, 0, sizeof s);
    is_int(eventlog_read(log, 0, INT64_MAX, 100, collect, &s), -1,
           "the read fails while the file cannot be read (I/O error)");
    reads_fail = false;
    ok(changed_now(log), "after the failed read the change is reported again, with no commit");
    memset(&s, 0, sizeof s);
    is_int(eventlog_read(log, 0, INT64_MAX, 100, collect, &s), 2, "the retried read gets both events");
    ok(s.ids[0] == 1 && s.ids[1] == 2, "ids 1 and 2 (got %lld, %lld)", s.ids[0], s.ids[1]);
    ok(!changed_now(log), "once read, no change is reported");

    long long head, pruned;
    commit_by_hand(other, "INSERT INTO orders (customer, items) VALUES ('C', '[]')");
    ok(changed_now(log), "another commit");
    reads_fail = true;
    is_int(eventlog_bounds(log, &head, &pruned), -1, "reading the bounds fails");
    reads_fail = false;
    ok(changed_now(log), "after the failed bounds the change is reported again");
    is_int(eventlog_bounds(log, &head, &pruned), 0, "the bounds are read");
    is_int(head, 3, "head 3");
    memset(&s, 0, sizeof s);
    is_int(eventlog_read(log, 2, INT64_MAX, 100, collect, &s), 1, "the third event is read");
    ok(!changed_now(log), "no change once read");
}

static void test_blob_rows(struct eventlog *log, sqlite3 *other)
{
    commit_by_hand(other,
                   "INSERT INTO events (type, order_id, patch, ts) VALUES "
                   "(CAST('order.updated' AS BLOB), 'ord_00001', '{\"note\":\"t\"}', 10), "
                   "('order.updated', x'6F72645FFF', '{}', 11), "
                   "('order.updated', 'ord_00001', CAST('{\"note\":\"p\"}' AS BLOB), 12), "
                   "('order.updated', 'ord_00001', x'00FF', 13), "
                   "('order.deleted', 'ord_00001', '{}', x'3134'), "
                   "('order.deleted', 'ord_00002', '{}', 15)");
    ok(changed_now(log), "rows written by hand are a change");
    struct seen s = {0};
    is_int(eventlog_read(log, 3, INT64_MAX, 100, collect, &s), 6,
           "every row with a BLOB is read, and the row after them");
    static const char *const want[] = {
        "{\"type\":\"order.updated\",\"id\":\"ord_00001\",\"patch\":{\"note\":\"t\"},\"ts\":10}",
        "{\"type\":\"order.updated\",\"id\":\"6F72645FFF\",\"patch\":{},\"ts\":11}",
        "{\"type\":\"order.updated\",\"id\":\"ord_00001\",\"patch\":{\"note\":\"p\"},\"ts\":12}",
        "{\"type\":\"order.updated\",\"id\":\"ord_00001\",\"patch\":\"00FF\",\"ts\":13}",
        "{\"type\":\"order.deleted\",\"id\":\"ord_00001\",\"patch\":{},\"ts\":\"14\"}",
        "{\"type\":\"order.deleted\",\"id\":\"ord_00002\",\"patch\":{},\"ts\":15}",
    };
    static const char *const what[] = {
        "a UTF-8 BLOB type as its text", "a BLOB order_id that is not UTF-8 as hex digits",
        "a BLOB patch holding JSON as that JSON", "a BLOB patch with NUL as hex digits",
        "a BLOB ts as text", "the row after them",
    };
    for (int i = 0; i < 6 && i < s.n; i++) {
        is_int(s.ids[i], 4 + i, "id %d", 4 + i);
        is_str(s.data[i], want[i], "%s", what[i]);
    }
    is_str(s.type[0], "order.updated", "the BLOB type is matched as its text by filters");
    is_str(s.order_id[1], "6F72645FFF", "the BLOB order_id is handed on as hex digits");
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/eventlog_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/orders.db", dir);

    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.db_path = path;
    cfg.busy_timeout_ms = 1000;
    cfg.threads = 1;
    char err[256];
    sqlite3 *db = db_open(&cfg, 1, err, sizeof err);
    if (!db || db_migrate(db, err, sizeof err) != 0) {
        diag("%s", err);
        return 1;
    }
    sqlite3_close(db);

    install_faulty_vfs();
    struct eventlog *log = eventlog_open(&cfg, err, sizeof err);
    sqlite3 *other = NULL;
    if (!log || sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, real_vfs->zName) != SQLITE_OK) {
        diag("%s", log ? sqlite3_errmsg(other) : err);
        return 1;
    }
    test_failed_read_is_retried(log, other);
    test_blob_rows(log, other);
    eventlog_close(log);
    sqlite3_close(other);

    char files[3][640];
    snprintf(files[0], sizeof files[0], "%s", path);
    snprintf(files[1], sizeof files[1], "%s-wal", path);
    snprintf(files[2], sizeof files[2], "%s-shm", path);
    for (int i = 0; i < 3; i++)
        unlink(files[i]);
    rmdir(dir);
    return done_testing();
}
