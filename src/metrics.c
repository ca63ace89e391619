#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define METRICS_MAGIC "ordmetr"     /* 7 characters and the NUL: 8 bytes */
#define METRICS_VERSION 1

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free to be shared");

static const char *const method_names[MM_COUNT] = {
    "GET", "POST", "PATCH", "DELETE", "OPTIONS", "other",
};

static const char *const route_names[MR_COUNT] = {
    [MR_ORDERS] = "/orders", [MR_ORDER] = "/orders/{id}", [MR_EVENTS] = "/events",
    [MR_STREAM] = "/stream/events", [MR_HEALTH] = "/health", [MR_METRICS] = "/metrics",
    [MR_UNMATCHED] = "unmatched",
};

static const char *const close_names[MC_COUNT] = {
    [MC_CLIENT_GONE] = "client_gone", [MC_WRITE_TIMEOUT] = "write_timeout",
    [MC_TOO_FAR_BEHIND] = "too_far_behind", [MC_MAX_LIFE] = "max_life",
    [MC_SHUTDOWN] = "shutdown", [MC_ERROR] = "error",
};

/* Every status the API answers with (SPEC section 2), then "other". */
static const int statuses[] = {200, 201, 204, 304, 400, 401, 404, 405, 409,
                               412, 413, 415, 422, 500, 503, 507};
#define NSTATUS (int)(sizeof statuses / sizeof statuses[0] + 1)

/* Upper bounds of the duration histogram's buckets, in seconds and in ns. */
static const char *const bucket_names[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                           "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                           "1",      "2.5",   "5",      "10"};
static const long long bucket_ns[] = {500000,     1000000,    2500000,    5000000,
                                      10000000,   25000000,   50000000,   100000000,
                                      250000000,  500000000,  1000000000, 2500000000,
                                      5000000000, 10000000000};
#define NBUCKET (int)(sizeof bucket_ns / sizeof bucket_ns[0])
_Static_assert(sizeof bucket_names / sizeof bucket_names[0] == NBUCKET, "one name a bucket");

/* A slot's counters, one flat array: requests by method, route and status;
 * durations by route and bucket (the last one past 10 s), their sums in ns;
 * the plain counters; the streams closed by reason. */
#define V_REQUESTS 0
#define V_BUCKETS (V_REQUESTS + MM_COUNT * MR_COUNT * NSTATUS)
#define V_SUM_NS (V_BUCKETS + MR_COUNT * (NBUCKET + 1))
#define V_COUNTER (V_SUM_NS + MR_COUNT)
#define V_CLOSED (V_COUNTER + MX_COUNT)
#define NVALUES (V_CLOSED + MC_COUNT)

struct slot {
    _Atomic uint64_t pid;           /* 0: free */
    _Atomic uint64_t start;         /* the owner's start time (/proc stat), 0 unknown */
    _Atomic int64_t streams_open;   /* a gauge: not folded */
    uint64_t reserved;
    _Atomic uint64_t v[NVALUES];
};

struct shared {
    char magic[8];
    uint32_t version;
    uint32_t slots;
    uint64_t slot_size;
    uint64_t values;
    struct slot retired;            /* the counts of processes gone */
    struct slot slot[METRICS_SLOTS];
};

struct metrics {
    int fd;
    struct shared *map;
    struct slot *mine;              /* in map, or own memory when every slot was taken */
    bool private_slot;
    pthread_mutex_t lock;           /* flock does not exclude this process's threads */
};

static bool header_ok(const struct shared *s)
{
    return memcmp(s->magic, METRICS_MAGIC, sizeof s->magic) == 0 && s->version == METRICS_VERSION
           && s->slots == METRICS_SLOTS && s->slot_size == sizeof(struct slot)
           && s->values == NVALUES;
}

/* A process's start time in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), which tells a reused pid apart; 0 when unknown. */
static uint64_t start_time(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');  /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static bool owner_alive(const struct slot *s)
{
    pid_t pid = (pid_t)atomic_load(&s->pid);
    if (pid <= 0)
        return false;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return false;
    uint64_t recorded = atomic_load(&s->start), now = start_time(pid);
    return !(recorded && now && recorded != now);
}

static void fold(struct shared *sh, struct slot *s)
{
    for (int i = 0; i < NVALUES; i++)
        atomic_fetch_add(&sh->retired.v[i], atomic_exchange(&s->v[i], 0));
    atomic_store(&s->streams_open, 0);
    atomic_store(&s->start, 0);
    atomic_store(&s->pid, 0);
}

/* Folds the slots of processes that are gone. Under the lock. */
static void reap(struct shared *sh)
{
    for (int i = 0; i < METRICS_SLOTS; i++)
        if (atomic_load(&sh->slot[i].pid) && !owner_alive(&sh->slot[i]))
            fold(sh, &sh->slot[i]);
}

static int lock(struct metrics *m)
{
    pthread_mutex_lock(&m->lock);
    int rc;
    while ((rc = flock(m->fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0)
        pthread_mutex_unlock(&m->lock);
    return rc;
}

static void unlock(struct metrics *m)
{
    if (flock(m->fd, LOCK_UN) != 0)
        fprintf(stderr, "orders: unlocking the metrics file failed: %s\n", strerror(errno));
    pthread_mutex_unlock(&m->lock);
}

/* Under the lock: sizes and initialises a new or foreign file, then maps it. */
static int map_file(struct metrics *m, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(m->fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat the metrics file: %s", strerror(errno));
        return -1;
    }
    bool fresh = st.st_size != (off_t)sizeof(struct shared);
    if (fresh && ftruncate(m->fd, (off_t)sizeof(struct shared)) != 0) {
        snprintf(err, errlen, "cannot size the metrics file: %s", strerror(errno));
        return -1;
    }
    void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the metrics file: %s", strerror(errno));
        return -1;
    }
    m->map = p;
    if (!header_ok(m->map)) {
        if (!fresh || st.st_size != 0)
            fputs("orders: the metrics file had another layout; its counts start again\n",
                  stderr);
        memset(m->map, 0, sizeof(struct shared));
        memcpy(m->map->magic, METRICS_MAGIC, sizeof m->map->magic);
        m->map->version = METRICS_VERSION;
        m->map->slots = METRICS_SLOTS;
        m->map->slot_size = sizeof(struct slot);
        m->map->values = NVALUES;
    }
    return 0;
}

static void claim(struct metrics *m)
{
    struct shared *sh = m->map;
    reap(sh);
    for (int i = 0; i < METRICS_SLOTS; i++) {
        struct slot *s = &sh->slot[i];
        if (atomic_load(&s->pid) == 0) {
            atomic_store(&s->streams_open, 0);
            atomic_store(&s->start, start_time(getpid()));
            atomic_store(&s->pid, (uint64_t)getpid());
            m->mine = s;
            return;
        }
    }
}

struct metrics *metrics_open(const char *path, unsigned mode, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m || pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        snprintf(err, errlen, "out of memory opening the metrics file");
        return NULL;
    }
    m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (m->fd < 0) {
        snprintf(err, errlen, "cannot open the metrics file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (lock(m) != 0) {
        snprintf(err, errlen, "cannot lock the metrics file %s: %s", path, strerror(errno));
        goto fail;
    }
    int rc = map_file(m, err, errlen);
    if (rc == 0)
        claim(m);
    unlock(m);
    if (rc != 0)
        goto fail;
    if (!m->mine) {
        fprintf(stderr, "orders: all %d metrics slots are taken: this process's counts are "
                        "not shown\n", METRICS_SLOTS);
        m->mine = calloc(1, sizeof *m->mine);
        m->private_slot = true;
        if (!m->mine) {
            snprintf(err, errlen, "out of memory opening the metrics file");
            goto fail;
        }
    }
    return m;
fail:
    if (m->map)
        munmap(m->map, sizeof(struct shared));
    if (m->fd >= 0)
        close(m->fd);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return NULL;
}

void metrics_close(struct metrics *m)
{
    if (!m)
        return;
    if (m->private_slot) {
        free(m->mine);
    } else if (lock(m) == 0) {
        fold(m->map, m->mine);
        unlock(m);
    }   /* else the next scrape folds it, as for a killed process */
    if (munmap(m->map, sizeof(struct shared)) != 0)
        fprintf(stderr, "orders: unmapping the metrics file failed: %s\n", strerror(errno));
    close(m->fd);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void add(struct metrics *m, int index, uint64_t n)
{
    atomic_fetch_add_explicit(&m->mine->v[index], n, memory_order_relaxed);
}

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n)
{
    if (m)
        add(m, V_COUNTER + (int)c, n);
}

void metrics_stream_opened(struct metrics *m)
{
    if (!m)
        return;
    atomic_fetch_add_explicit(&m->mine->streams_open, 1, memory_order_relaxed);
    add(m, V_COUNTER + MX_STREAMS_OPENED, 1);
}

void metrics_stream_closed(struct metrics *m, enum metrics_close_reason why)
{
    if (!m)
        return;
    atomic_fetch_sub_explicit(&m->mine->streams_open, 1, memory_order_relaxed);
    add(m, V_CLOSED + (int)why, 1);
}

static int status_index(int status)
{
    for (int i = 0; i < NSTATUS - 1; i++)
        if (statuses[i] == status)
            return i;
    return NSTATUS - 1;
}

void metrics_request(struct metrics *m, enum metrics_method method, enum metrics_route route,
                     int status, long long duration_ns)
{
    if (!m)
        return;
    if (duration_ns < 0)
        duration_ns = 0;
    add(m, V_REQUESTS + ((int)method * MR_COUNT + (int)route) * NSTATUS + status_index(status), 1);
    int b = 0;
    while (b < NBUCKET && duration_ns > bucket_ns[b])
        b++;
    add(m, V_BUCKETS + (int)route * (NBUCKET + 1) + b, 1);
    add(m, V_SUM_NS + (int)route, (uint64_t)duration_ns);
}

/* Under the lock: folds the dead, then sums retired + live into v. */
static int sum(struct metrics *m, uint64_t *v, int64_t *streams_open, long *processes)
{
    if (lock(m) != 0)
        return -1;
    struct shared *sh = m->map;
    reap(sh);
    *streams_open = 0;
    *processes = 0;
    for (int i = 0; i < NVALUES; i++)
        v[i] = atomic_load(&sh->retired.v[i]);
    for (int s = 0; s < METRICS_SLOTS; s++) {
        struct slot *sl = &sh->slot[s];
        if (!atomic_load(&sl->pid))
            continue;
        (*processes)++;
        *streams_open += atomic_load(&sl->streams_open);
        for (int i = 0; i < NVALUES; i++)
            v[i] += atomic_load_explicit(&sl->v[i], memory_order_relaxed);
    }
    unlock(m);
    return 0;
}

int metrics_totals(struct metrics *m, struct metrics_totals *t)
{
    uint64_t *v = calloc(NVALUES, sizeof *v);
    if (!v || sum(m, v, &t->streams_open, &t->processes) != 0) {
        free(v);
        return -1;
    }
    memcpy(t->counter, v + V_COUNTER, sizeof t->counter);
    memcpy(t->closed, v + V_CLOSED, sizeof t->closed);
    t->requests = 0;
    for (int i = V_REQUESTS; i < V_BUCKETS; i++)
        t->requests += v[i];
    free(v);
    return 0;
}

static void head(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void status_label(struct buf *out, int i)
{
    if (i < NSTATUS - 1)
        buf_printf(out, "%d", statuses[i]);
    else
        buf_puts(out, "other");
}

static void render_requests(struct buf *out, const uint64_t *v)
{
    head(out, "orders_http_requests_total", "counter",
         "Requests answered, by method, route pattern and status.");
    for (int me = 0; me < MM_COUNT; me++)
        for (int r = 0; r < MR_COUNT; r++)
            for (int s = 0; s < NSTATUS; s++) {
                uint64_t n = v[V_REQUESTS + (me * MR_COUNT + r) * NSTATUS + s];
                if (!n)
                    continue;
                buf_printf(out, "orders_http_requests_total{method=\"%s\",route=\"%s\",status=\"",
                           method_names[me], route_names[r]);
                status_label(out, s);
                buf_printf(out, "\"} %llu\n", (unsigned long long)n);
            }
    head(out, "orders_http_request_duration_seconds", "histogram",
         "Time from a request's arrival in the responder to its answer, by route pattern.");
    for (int r = 0; r < MR_COUNT; r++) {
        const uint64_t *b = v + V_BUCKETS + r * (NBUCKET + 1);
        uint64_t cumulative = 0;
        for (int i = 0; i <= NBUCKET; i++)
            cumulative += b[i];
        if (!cumulative)
            continue;
        cumulative = 0;
        for (int i = 0; i < NBUCKET; i++) {
            cumulative += b[i];
            buf_printf(out,
                       "orders_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                       route_names[r], bucket_names[i], (unsigned long long)cumulative);
        }
        cumulative += b[NBUCKET];
        buf_printf(out, "orders_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                        "orders_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
                        "orders_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                   route_names[r], (unsigned long long)cumulative, route_names[r],
                   (double)v[V_SUM_NS + r] / 1e9, route_names[r], (unsigned long long)cumulative);
    }
}

static void counter(struct buf *out, const char *name, const char *help, uint64_t n)
{
    head(out, name, "counter", help);
    buf_printf(out, "%s %llu\n", name, (unsigned long long)n);
}

static void gauge(struct buf *out, const char *name, const char *help, long long n)
{
    head(out, name, "gauge", help);
    buf_printf(out, "%s %lld\n", name, n);
}

int metrics_render(struct metrics *m, const struct metrics_db *db, struct buf *out)
{
    uint64_t *v = calloc(NVALUES, sizeof *v);
    int64_t streams_open;
    long processes;
    if (!v || sum(m, v, &streams_open, &processes) != 0) {
        free(v);
        return -1;
    }
    const uint64_t *c = v + V_COUNTER;
    gauge(out, "orders_processes", "Responder processes serving this database.", processes);
    gauge(out, "orders_streams_open", "Event streams open now, in every process.", streams_open);
    counter(out, "orders_streams_opened_total", "Event streams opened.", c[MX_STREAMS_OPENED]);
    head(out, "orders_streams_closed_total", "counter", "Event streams closed, by reason.");
    for (int i = 0; i < MC_COUNT; i++)
        buf_printf(out, "orders_streams_closed_total{reason=\"%s\"} %llu\n", close_names[i],
                   (unsigned long long)v[V_CLOSED + i]);
    counter(out, "orders_events_delivered_total",
            "Log events queued to a stream (one per event and stream), live or replayed.",
            c[MX_EVENTS_DELIVERED]);
    counter(out, "orders_replayed_events_total",
            "Of the events delivered, those a stream read from the table rather than the "
            "shared window.",
            c[MX_EVENTS_REPLAYED]);
    gauge(out, "orders_event_log_head_id", "Newest event id given out.", db->head_id);
    gauge(out, "orders_event_log_oldest_id", "Oldest event id kept in the log (0: empty).",
          db->oldest_id);
    counter(out, "orders_db_lock_timeouts_total",
            "Writes refused with 503 for want of the database lock.", c[MX_DB_LOCK_TIMEOUTS]);
    counter(out, "orders_write_groups_total", "Group commits that answered a write 2xx.",
            c[MX_WRITE_GROUPS]);
    counter(out, "orders_writes_committed_total", "Writes answered 2xx by a group commit.",
            c[MX_WRITES_COMMITTED]);
    render_requests(out, v);
    free(v);
    return 0;
}
