/*
 * sse-load: load generator for Server-Sent Events fan-out.
 *
 * One process, one epoll loop, non-blocking sockets to 127.0.0.1 over plain
 * HTTP/1.1. It
 *   1. opens N event streams at a bounded rate and waits until every one is
 *      ready (orders: its `connected` event arrived; nchan: 200 + headers),
 *   2. holds them idle for --idle-seconds (so that memory can be sampled),
 *   3. publishes M changes at a fixed rate R over a small pool of keep-alive
 *      connections, never waiting for a response before the next send is due
 *      (requests are pipelined when every connection is busy); the pool is
 *      connected before the streams and kept open with a cheap GET when idle,
 *      so publishing never depends on the server accepting a new connection,
 *   4. waits until every stream has every change (or the drain timeout), and
 *   5. reports delivered/expected, duplicates, out-of-order deliveries,
 *      fan-out latency (publish send -> receipt on a stream) p50/p90/p99/max,
 *      connect time, and CPU seconds / RSS of the watched server processes.
 *
 * Each change carries the note "bench <seq> <send time ns>"; a stream event is
 * matched to its publish by that text in its data line.
 *
 * Modes:
 *   -P orders  PATCH /api/v1/orders/ord_%05d {"note":"bench <seq> <ns>"}
 *              GET /api/v1/stream/events
 *   -P nchan   POST /pub?id=orders  body: bench <seq> <ns>
 *              GET /sub/orders  (Accept: text/event-stream)
 *
 * Several hosts: -p PORT1,PORT2 opens stream i on port i % 2, connects
 * publisher connection j to port j % 2 and sends change k through a
 * connection to port k % 2, so that the writes alternate between the hosts.
 *
 * Build: cc -O2 -Wall -Wextra -std=c11 -o bench/sse-load bench/sse-load.c
 * Part of the orders benchmarks; see bench/README.md, "Stream benchmark".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ utils */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sse-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static bool quiet;
static int64_t t_program;       /* for the times in progress messages */
static void note(const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sse-load: [%7.3f s] ", t_program ? (double)(now_ns() - t_program) / 1e9 : 0.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* A growable byte buffer, used only while something is incomplete. */
struct gbuf {
    char *p;
    uint32_t len, cap;
};

static void gbuf_add(struct gbuf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            die("out of memory");
        b->p = q;
        b->cap = (uint32_t)cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += (uint32_t)n;
}

static void gbuf_free(struct gbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct_u32(const uint32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static double pct_i64(const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1];
}

/* ---------------------------------------------------------------- options */

enum mode { MODE_ORDERS, MODE_NCHAN };

#define MAX_PORTS 8
static struct {
    int port;                   /* the first of ports[] */
    int ports[MAX_PORTS];
    int nports;
    const char *host;
    int streams;
    int events;
    double rate;
    double drain_timeout_s;
    double connect_timeout_s;
    double idle_s;
    double connect_rate;
    int connect_inflight;
    int pub_conns;
    int orders;
    int first_order;
    enum mode mode;
    const char *sub_path;
    const char *pub_path;
    const char *label;
    const char *keepalive_path;
    double connect_stall_s;
    const char *events_out;
} opt = {
    .port = 0,
    .host = "127.0.0.1",
    .streams = 100,
    .events = 100,
    .rate = 10,
    .drain_timeout_s = 15,
    .connect_timeout_s = 120,
    .idle_s = 0,
    .connect_rate = 2000,
    .connect_inflight = 256,
    .pub_conns = 4,
    .orders = 300,
    .first_order = 1,
    .mode = MODE_ORDERS,
    .connect_stall_s = 10,
};

/* Processes whose CPU and RSS are sampled: -W label=pid[,pid...] */
#define MAX_WATCH 8
#define MAX_WATCH_PIDS 16
struct watch {
    char label[32];
    int pids[MAX_WATCH_PIDS];
    int npids;
    bool tree;                  /* LABEL=tree:PID: PID and its children, see watch_ticks */
    bool gone;                  /* a pid vanished during the run */
    long long ticks_before, ticks_ready, ticks_end;
    long rss_before, rss_ready, rss_idle, rss_end, rss_max;
};
static struct watch watches[MAX_WATCH];
static int nwatch;
static long clk_tck;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sse-load -p PORT [options]\n"
        "  -p PORT[,PORT...]  server port(s) on 127.0.0.1 (required); with several, stream i\n"
        "                     goes to port i %% K, publisher connection j to port j %% K,\n"
        "                     change k through a connection to port k %% K\n"
        "  -n N               streams to open (default 100)\n"
        "  -m M               events to publish (default 100)\n"
        "  -r R               publish rate, events/s (default 10)\n"
        "  -t S               drain timeout: seconds to wait after the last publish (default 15)\n"
        "  -P MODE            orders | nchan (default orders)\n"
        "  -S PATH            stream path (orders: /api/v1/stream/events; nchan: /sub/orders)\n"
        "  -U PATH            publish path; orders: printf template with one %%d for the\n"
        "                     order number (default /api/v1/orders/ord_%%05d); nchan: /pub?id=orders\n"
        "  -W LABEL=PID[,PID] sample CPU (utime+stime) and VmRSS of these processes (repeatable)\n"
        "  -W LABEL=tree:PID  CPU of PID, of its children now and of those that ended (its\n"
        "                     cutime+cstime), e.g. a PostgreSQL postmaster; RSS not sampled\n"
        "  -c N               publisher keep-alive connections (default 4)\n"
        "  -L LABEL           label printed in the result line\n"
        "  -q                 no progress messages on stderr\n"
        "  --idle-seconds S   hold the streams idle S seconds before publishing (default 0)\n"
        "  --connect-rate R   new stream connections per second (default 2000)\n"
        "  --connect-inflight N  at most N streams connecting but not ready (default 256)\n"
        "  --connect-timeout S   give up on streams not ready after S seconds (default 120)\n"
        "  --connect-stall S  stop opening streams when none got ready or failed for S seconds (default 10)\n"
        "  --events-out FILE  write one line per published change: seq, send time (ms after the\n"
        "                     first), response time, streams reached, mean and max latency (ms)\n"
        "  --keepalive-path P GET P on a publisher connection idle for 2 s, so that the server\n"
        "                     keeps it open (orders: /api/v1/health; nchan: none; \"\" turns it off)\n"
        "  --orders K         orders mode: PATCH orders first..first+K-1 round-robin (default 300)\n"
        "  --first-order F    first order number (default 1)\n"
        "Output: one line starting with RESULT (key=value pairs), then a readable block.\n");
}

static void add_watch(const char *arg)
{
    if (nwatch == MAX_WATCH)
        die("too many -W options");
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof watches[0].label)
        die("-W wants LABEL=PID[,PID...], got '%s'", arg);
    struct watch *w = &watches[nwatch++];
    memcpy(w->label, arg, (size_t)(eq - arg));
    w->label[eq - arg] = 0;
    const char *p = eq + 1;
    if (strncmp(p, "tree:", 5) == 0) {
        w->tree = true;
        p += 5;
    }
    while (*p) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p || pid <= 0)
            die("-W %s: bad pid list", arg);
        if (w->npids == MAX_WATCH_PIDS)
            die("-W %s: too many pids", arg);
        w->pids[w->npids++] = (int)pid;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            die("-W %s: bad pid list", arg);
    }
    if (!w->npids)
        die("-W %s: no pid", arg);
    if (w->tree && w->npids != 1)
        die("-W %s: tree: takes one pid", arg);
}

/* ------------------------------------------------------------- /proc */

/* utime + stime of pid; with children, also cutime + cstime (the children
 * it has waited for). */
static long long proc_ticks2(int pid, bool children, bool *ok)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        *ok = false;
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) {
        *ok = false;
        return 0;
    }
    /* after ") ": field 3 (state) ... utime is field 14, stime 15 */
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15)
            st = strtoull(tok, NULL, 10);
        else if (field == 16)
            cut = strtoull(tok, NULL, 10);
        else if (field == 17) {
            cst = strtoull(tok, NULL, 10);
            break;
        }
    }
    return (long long)(ut + st + (children ? cut + cst : 0));
}

static long long proc_ticks(int pid, bool *ok)
{
    return proc_ticks2(pid, false, ok);
}

/* A process tree's CPU: the root with its ended children, plus the children
 * it has now (from /proc/PID/task/PID/children; a PostgreSQL postmaster is
 * single-threaded), each with theirs. */
static long long tree_ticks(int pid, bool *ok)
{
    long long t = proc_ticks2(pid, true, ok);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return t;
    int kid;
    while (fscanf(f, "%d", &kid) == 1) {
        bool kok = true;        /* a child that just ended is in the root's cutime soon */
        t += proc_ticks2(kid, true, &kok);
    }
    fclose(f);
    return t;
}

static long proc_rss_kb(int pid, bool *ok)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        *ok = false;
        return 0;
    }
    long kb = 0;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            found = true;
            break;
        }
    }
    fclose(f);
    if (!found)
        *ok = false;
    return kb;
}

static long long watch_ticks(struct watch *w)
{
    long long t = 0;
    for (int i = 0; i < w->npids; i++) {
        bool ok = true;
        t += w->tree ? tree_ticks(w->pids[i], &ok) : proc_ticks(w->pids[i], &ok);
        if (!ok)
            w->gone = true;
    }
    return t;
}

static long watch_rss(struct watch *w)
{
    long kb = 0;
    if (w->tree)
        return 0;
    for (int i = 0; i < w->npids; i++) {
        bool ok = true;
        kb += proc_rss_kb(w->pids[i], &ok);
        if (!ok)
            w->gone = true;
    }
    if (kb > w->rss_max)
        w->rss_max = kb;
    return kb;
}

/* Busy ticks of the whole machine (all CPUs) from /proc/stat. */
static long long machine_busy_ticks(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return 0;
    return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);   /* all but idle and iowait */
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec
           + (double)ru.ru_stime.tv_usec / 1e6;
}

static void sample_rss_all(void)
{
    for (int i = 0; i < nwatch; i++)
        watch_rss(&watches[i]);
}

/* ------------------------------------------------------------ connections */

enum kind { K_STREAM = 1, K_PUB = 2 };

/* HTTP response reader shared by streams and publishers: status line and
 * headers, then a body that is chunked, sized, or runs until EOF. */
enum rstate { R_HEAD, R_BODY_CHUNKED, R_BODY_SIZED, R_BODY_EOF };
enum cstate { C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_TRAILER_LF };

struct resp {
    uint8_t state;              /* enum rstate */
    uint8_t cstate;             /* enum cstate, chunked body */
    bool trailer_empty;         /* the trailer line being read is empty so far */
    bool close_after;           /* Connection: close */
    int status;
    uint64_t remaining;         /* sized body or current chunk */
    struct gbuf head;           /* the header block until it is complete */
};

struct stream {
    uint8_t kind;               /* K_STREAM; first member, as in struct pub */
    uint8_t phase;              /* S_* */
    bool ready;
    bool last_cr;               /* the previous body byte was CR (CRLF split) */
    int fd;
    int idx;
    struct resp r;
    struct gbuf line;           /* an SSE line split across reads */
    char ev_name[16];           /* the current event's name (truncated) */
    int32_t pend_seq;           /* "bench <seq>" seen in the current event's data */
    int64_t pend_ns;
    int32_t last_seq;
    bool pend_has_id;           /* the current event has an id: line */
    int64_t pend_id_hi, pend_id_lo;     /* "43" or Nchan's "1795792247:0" */
    int64_t last_id_hi, last_id_lo;
    uint32_t delivered, dups, ooo, inversions;
    uint8_t *seen;              /* bitmap of delivered seqs */
    int64_t t_start, t_ready;
};

enum sphase { S_IDLE, S_CONNECTING, S_OPEN, S_CLOSED, S_FAILED };

#define PUB_QUEUE 256
struct pub {
    uint8_t kind;               /* K_PUB */
    bool connected;
    bool dead;
    int fd;
    int idx;
    int host;                   /* index into opt.ports */
    struct resp r;
    struct gbuf out;            /* request bytes not yet written */
    uint32_t out_sent;
    int q[PUB_QUEUE];           /* seqs awaiting a response, FIFO */
    int qhead, qlen;
    bool want_out;
    int64_t last_send;          /* for keep-alive requests */
};

static int epfd;
static struct sockaddr_in server_addr[MAX_PORTS];
static struct stream *streams;
static struct pub *pubs;
static char *stream_request[MAX_PORTS];
static size_t stream_request_len[MAX_PORTS];

/* run state */
static int64_t *send_ns;        /* per seq: when its request was written, 0 = not yet */
static int64_t *due_ns;
static int64_t *resp_ns;        /* per seq: when its response arrived */
static int *resp_status;
static int64_t *ev_last;        /* per seq: latest receipt over all streams */
static uint32_t *ev_count;      /* per seq: streams that got it */
static double *ev_sum_ms;       /* per seq: sum of its latencies */
static uint32_t *lat_us;        /* every first delivery's latency */
static size_t nlat;
static uint64_t delivered_total, dups_total, ooo_total, inversions_total, foreign_total, mismatch_total;
static int ready_count, failed_count, dropped_count, connecting_count, started_count;
static int status_counts[600];
static int fail_errno_count, fail_eof_count;
static int pub_errors, pub_non2xx, pub_reconnects;
static int next_seq;
static int64_t max_lag_ns;

static void ep_add(int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl ADD: %s", strerror(errno));
}

static void ep_mod(int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        die("epoll_ctl MOD: %s", strerror(errno));
}

/* Non-blocking connect to the server on opt.ports[host]. Returns the fd or -1 (errno set). */
static int open_socket(int host)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&server_addr[host], sizeof server_addr[host]) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------- HTTP reading */

/* Feeds bytes of a response. Header bytes are consumed here; body bytes are
 * passed to on_body. Returns 1 when a complete response ended (a sized or
 * chunked body finished), 0 when more is needed, -1 on a malformed response.
 * *used tells how much of data was consumed (stops after a complete response
 * so that pipelined responses are parsed one by one). */
typedef void (*body_fn)(void *ctx, const char *p, size_t n);

static int parse_head(struct resp *r)
{
    /* r->head holds "HTTP/1.1 200 OK\r\n...\r\n\r\n" */
    char *h = r->head.p;
    size_t n = r->head.len;
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0)
        return -1;
    r->status = atoi(h + 9);
    bool chunked = false, sized = false;
    uint64_t clen = 0;
    r->close_after = h[7] == '0';
    char *line = memchr(h, '\n', n);
    while (line && (size_t)(line + 1 - h) < n) {
        line++;
        char *end = memchr(line, '\n', n - (size_t)(line - h));
        if (!end)
            break;
        size_t len = (size_t)(end - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (len == 0)
            break;
        if (len > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            if (memmem(line + 18, len - 18, "chunked", 7) || memmem(line + 18, len - 18, "Chunked", 7))
                chunked = true;
        } else if (len > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            sized = true;
            clen = strtoull(line + 15, NULL, 10);
        } else if (len > 11 && strncasecmp(line, "connection:", 11) == 0) {
            if (memmem(line + 11, len - 11, "close", 5))
                r->close_after = true;
            else if (memmem(line + 11, len - 11, "keep-alive", 10))
                r->close_after = false;
        }
        line = end;
    }
    if (chunked) {
        r->state = R_BODY_CHUNKED;
        r->cstate = C_SIZE;
        r->remaining = 0;
    } else if (sized || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) {
        r->state = R_BODY_SIZED;
        r->remaining = sized ? clen : 0;
    } else {
        r->state = R_BODY_EOF;
    }
    return 0;
}

static int resp_feed(struct resp *r, const char *data, size_t n, size_t *used, body_fn fn, void *ctx)
{
    size_t i = 0;
    while (i < n) {
        if (r->state == R_HEAD) {
            /* look for the end of the header block, which may straddle reads */
            size_t start = i;
            bool done = false;
            for (; i < n; i++) {
                char c = data[i];
                gbuf_add(&r->head, &c, 1);
                size_t L = r->head.len;
                if (c == '\n' && ((L >= 2 && r->head.p[L - 2] == '\n')
                                  || (L >= 4 && memcmp(r->head.p + L - 4, "\r\n\r\n", 4) == 0))) {
                    i++;
                    done = true;
                    break;
                }
                if (L > 65536)
                    return -1;
            }
            (void)start;
            if (!done)
                break;
            if (parse_head(r) != 0)
                return -1;
            gbuf_free(&r->head);
            if (r->state == R_BODY_SIZED && r->remaining == 0) {
                *used = i;
                r->state = R_HEAD;
                return 1;
            }
            continue;
        }
        if (r->state == R_BODY_EOF) {
            fn(ctx, data + i, n - i);
            i = n;
            break;
        }
        if (r->state == R_BODY_SIZED) {
            size_t take = n - i;
            if (take > r->remaining)
                take = (size_t)r->remaining;
            fn(ctx, data + i, take);
            i += take;
            r->remaining -= take;
            if (r->remaining == 0) {
                *used = i;
                r->state = R_HEAD;
                return 1;
            }
            continue;
        }
        /* chunked */
        char c = data[i];
        switch (r->cstate) {
        case C_SIZE:
            if (c >= '0' && c <= '9')
                r->remaining = r->remaining * 16 + (uint64_t)(c - '0');
            else if (c >= 'a' && c <= 'f')
                r->remaining = r->remaining * 16 + (uint64_t)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                r->remaining = r->remaining * 16 + (uint64_t)(c - 'A' + 10);
            else if (c == ';' || c == ' ' || c == '\t')
                r->cstate = C_EXT;
            else if (c == '\r')
                r->cstate = C_SIZE_LF;
            else if (c == '\n')
                goto size_done;
            else
                return -1;
            i++;
            break;
        case C_EXT:
            if (c == '\r')
                r->cstate = C_SIZE_LF;
            else if (c == '\n')
                goto size_done;
            i++;
            break;
        case C_SIZE_LF:
            if (c != '\n')
                return -1;
        size_done:
            i++;
            if (r->remaining == 0) {
                r->cstate = C_TRAILER;
                r->trailer_empty = true;
            } else {
                r->cstate = C_DATA;
            }
            break;
        case C_DATA: {
            size_t take = n - i;
            if (take > r->remaining)
                take = (size_t)r->remaining;
            fn(ctx, data + i, take);
            i += take;
            r->remaining -= take;
            if (r->remaining == 0)
                r->cstate = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (c == '\r') {
                r->cstate = C_DATA_LF;
                i++;
            } else if (c == '\n') {
                r->cstate = C_SIZE;
                r->remaining = 0;
                i++;
            } else {
                return -1;
            }
            break;
        case C_DATA_LF:
            if (c != '\n')
                return -1;
            i++;
            r->cstate = C_SIZE;
            r->remaining = 0;
            break;
        case C_TRAILER:
            if (c == '\r') {
                r->cstate = C_TRAILER_LF;
            } else if (c == '\n') {
                goto trailer_line;
            } else {
                r->trailer_empty = false;
            }
            i++;
            break;
        case C_TRAILER_LF:
            if (c != '\n')
                return -1;
        trailer_line:
            i++;
            if (r->trailer_empty) {
                *used = i;
                r->state = R_HEAD;
                return 1;
            }
            r->cstate = C_TRAILER;
            r->trailer_empty = true;
            break;
        }
    }
    *used = i;
    return 0;
}

/* --------------------------------------------------------------- streams */

static int64_t t_now;           /* time of the current read */

static void deliver(struct stream *s, int32_t seq, int64_t ns)
{
    if (seq < 0 || seq >= opt.events || !send_ns[seq]) {
        foreign_total++;        /* not from this run (or not sent yet?) */
        return;
    }
    if (ns != send_ns[seq])
        mismatch_total++;
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (s->seen[seq >> 3] & bit) {
        s->dups++;
        dups_total++;
        return;
    }
    s->seen[seq >> 3] |= bit;
    /* the server's order: event ids must strictly increase on a stream */
    if (s->pend_has_id) {
        if (s->last_id_hi >= 0 && (s->pend_id_hi < s->last_id_hi
                                   || (s->pend_id_hi == s->last_id_hi && s->pend_id_lo <= s->last_id_lo))) {
            s->ooo++;
            ooo_total++;
        }
        s->last_id_hi = s->pend_id_hi;
        s->last_id_lo = s->pend_id_lo;
    }
    s->delivered++;
    delivered_total++;
    if (seq < s->last_seq) {       /* publish order: concurrent publishes commit in any order */
        s->inversions++;
        inversions_total++;
    }
    s->last_seq = seq;
    int64_t lat = t_now - send_ns[seq];
    if (lat < 0)
        lat = 0;
    lat_us[nlat++] = (uint32_t)(lat / 1000 > UINT32_MAX ? UINT32_MAX : lat / 1000);
    ev_count[seq]++;
    ev_sum_ms[seq] += (double)lat / 1e6;
    if (t_now > ev_last[seq])
        ev_last[seq] = t_now;
}

static void mark_ready(struct stream *s)
{
    if (s->ready)
        return;
    s->ready = true;
    s->t_ready = t_now;
    ready_count++;
    connecting_count--;
}

/* Parses "bench <seq> <ns>" anywhere in a data value. */
static void scan_data(struct stream *s, const char *v, size_t n)
{
    const char *p = memmem(v, n, "bench ", 6);
    if (!p)
        return;
    const char *end = v + n;
    p += 6;
    int64_t seq = 0, ns = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9')
        seq = seq * 10 + (*q++ - '0');
    if (q == p || q >= end || *q != ' ')
        return;
    const char *r = ++q;
    while (q < end && *q >= '0' && *q <= '9')
        ns = ns * 10 + (*q++ - '0');
    if (q == r)
        return;
    s->pend_seq = seq > INT32_MAX ? INT32_MAX : (int32_t)seq;
    s->pend_ns = ns;
}

static void sse_line(struct stream *s, const char *l, size_t n)
{
    if (n == 0) {               /* dispatch */
        if (strcmp(s->ev_name, "connected") == 0 && opt.mode == MODE_ORDERS)
            mark_ready(s);
        if (s->pend_seq >= 0)
            deliver(s, s->pend_seq, s->pend_ns);
        s->ev_name[0] = 0;
        s->pend_seq = -1;
        s->pend_has_id = false;
        return;
    }
    if (l[0] == ':')
        return;                 /* comment */
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (flen == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = vlen < sizeof s->ev_name - 1 ? vlen : sizeof s->ev_name - 1;
        memcpy(s->ev_name, v, k);
        s->ev_name[k] = 0;
    } else if (flen == 4 && memcmp(l, "data", 4) == 0) {
        scan_data(s, v, vlen);
    } else if (flen == 2 && memcmp(l, "id", 2) == 0) {
        int64_t hi = 0, lo = 0;
        size_t k = 0;
        while (k < vlen && v[k] >= '0' && v[k] <= '9')
            hi = hi * 10 + (v[k++] - '0');
        if (k < vlen && v[k] == ':')
            for (k++; k < vlen && v[k] >= '0' && v[k] <= '9'; k++)
                lo = lo * 10 + (v[k] - '0');
        s->pend_has_id = true;
        s->pend_id_hi = hi;
        s->pend_id_lo = lo;
    }
}

/* SSE body bytes: split into lines (LF, CRLF or CR), keep a partial line. */
static void sse_body(void *ctx, const char *p, size_t n)
{
    struct stream *s = ctx;
    size_t i = 0;
    if (s->last_cr && n && p[0] == '\n')
        i = 1;                  /* the LF of a CRLF split across reads */
    s->last_cr = false;
    size_t start = i;
    for (; i < n; i++) {
        char c = p[i];
        if (c != '\n' && c != '\r')
            continue;
        if (s->line.len) {
            gbuf_add(&s->line, p + start, i - start);
            sse_line(s, s->line.p, s->line.len);
            s->line.len = 0;
        } else {
            sse_line(s, p + start, i - start);
        }
        if (c == '\r') {
            if (i + 1 < n && p[i + 1] == '\n')
                i++;
            else if (i + 1 == n)
                s->last_cr = true;
        }
        start = i + 1;
    }
    if (start < n)
        gbuf_add(&s->line, p + start, n - start);
    if (s->line.len == 0 && s->line.cap > 4096)
        gbuf_free(&s->line);
}

static void stream_close(struct stream *s, bool failed)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    gbuf_free(&s->r.head);
    gbuf_free(&s->line);
    if (s->phase == S_CONNECTING || s->phase == S_OPEN) {
        if (s->ready) {
            dropped_count++;
        } else {
            connecting_count--;
            failed_count++;
        }
    }
    s->phase = failed && !s->ready ? S_FAILED : S_CLOSED;
}

static void stream_start(struct stream *s)
{
    s->t_start = now_ns();
    s->pend_seq = -1;
    s->last_seq = -1;
    started_count++;
    connecting_count++;
    s->fd = open_socket(s->idx % opt.nports);
    if (s->fd < 0) {
        fail_errno_count++;
        s->phase = S_CONNECTING;
        stream_close(s, true);
        return;
    }
    s->phase = S_CONNECTING;
    ep_add(s->fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, s);
}

static void stream_io(struct stream *s, uint32_t events)
{
    static char rbuf[65536];
    if (s->phase == S_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail_errno_count++;
            stream_close(s, true);
            return;
        }
        int h = s->idx % opt.nports;
        ssize_t w = write(s->fd, stream_request[h], stream_request_len[h]);
        if (w != (ssize_t)stream_request_len[h]) {   /* a few hundred bytes fit a fresh socket */
            fail_errno_count++;
            stream_close(s, true);
            return;
        }
        s->phase = S_OPEN;
        ep_mod(s->fd, EPOLLIN | EPOLLRDHUP, s);
        return;
    }
    if (s->phase != S_OPEN)
        return;
    ssize_t n = read(s->fd, rbuf, sizeof rbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (!s->ready)
            fail_eof_count++;
        stream_close(s, true);
        return;
    }
    t_now = now_ns();
    size_t off = 0;
    while (off < (size_t)n) {
        bool in_head = s->r.state == R_HEAD;
        size_t used = 0;
        int rc = resp_feed(&s->r, rbuf + off, (size_t)n - off, &used, sse_body, s);
        off += used;
        if (rc < 0) {
            stream_close(s, true);
            return;
        }
        if (in_head && s->r.state != R_HEAD) {
            /* the header block just completed */
            int st = s->r.status;
            status_counts[st >= 0 && st < 600 ? st : 0]++;
            if (st != 200) {
                stream_close(s, true);
                return;
            }
            if (opt.mode == MODE_NCHAN)
                mark_ready(s);
        }
        if (rc == 1) {          /* the stream's response ended */
            stream_close(s, false);
            return;
        }
        if (used == 0)
            break;
    }
}

/* ------------------------------------------------------------ publishers */

static void pub_open(struct pub *p)
{
    p->fd = open_socket(p->host);
    if (p->fd < 0)
        die("cannot connect a publisher to port %d: %s", opt.ports[p->host], strerror(errno));
    p->connected = false;
    p->dead = false;
    p->want_out = true;
    memset(&p->r, 0, sizeof p->r);
    ep_add(p->fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, p);
}

static void pub_flush(struct pub *p)
{
    while (p->out_sent < p->out.len) {
        ssize_t w = write(p->fd, p->out.p + p->out_sent, p->out.len - p->out_sent);
        if (w > 0) {
            p->out_sent += (uint32_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!p->want_out) {
                ep_mod(p->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, p);
                p->want_out = true;
            }
            return;
        }
        p->dead = true;
        return;
    }
    p->out.len = 0;
    p->out_sent = 0;
    if (p->want_out) {
        ep_mod(p->fd, EPOLLIN | EPOLLRDHUP, p);
        p->want_out = false;
    }
}

static void pub_reset(struct pub *p, const char *why)
{
    note("publisher connection %d: %s, %d requests outstanding; reconnecting", p->idx, why, p->qlen);
    /* the connection is gone: what it still owed is an error; open a new one */
    while (p->qlen) {
        int seq = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % PUB_QUEUE;
        p->qlen--;
        if (seq >= 0) {
            resp_status[seq] = -1;
            pub_errors++;
        }
    }
    close(p->fd);
    gbuf_free(&p->r.head);
    p->out.len = 0;
    p->out_sent = 0;
    pub_reconnects++;
    pub_open(p);
}

static void pub_body(void *ctx, const char *data, size_t n)
{
    (void)ctx;
    (void)data;
    (void)n;
}

static void pub_io(struct pub *p, uint32_t events)
{
    static char rbuf[65536];
    if (!p->connected) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err)
            die("publisher connection to port %d failed: %s", opt.ports[p->host], strerror(err));
        p->connected = true;
        pub_flush(p);
        if (p->dead)
            pub_reset(p, "write failed");
        return;
    }
    if (events & EPOLLOUT) {
        pub_flush(p);
        if (p->dead) {
            pub_reset(p, "write failed");
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t n = read(p->fd, rbuf, sizeof rbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        pub_reset(p, n == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    int64_t t = now_ns();
    size_t off = 0;
    while (off < (size_t)n) {
        size_t used = 0;
        int rc = resp_feed(&p->r, rbuf + off, (size_t)n - off, &used, pub_body, p);
        off += used;
        if (rc < 0) {
            pub_reset(p, "malformed response");
            return;
        }
        if (rc == 1) {
            if (p->qlen) {
                int seq = p->q[p->qhead];
                p->qhead = (p->qhead + 1) % PUB_QUEUE;
                p->qlen--;
                if (seq >= 0) {
                    resp_ns[seq] = t;
                    resp_status[seq] = p->r.status;
                    if (p->r.status < 200 || p->r.status > 299)
                        pub_non2xx++;
                }
            }
            if (p->r.close_after) {
                pub_reset(p, "the response said Connection: close");
                return;
            }
        }
        if (used == 0)
            break;
    }
}

static void publish(int seq, int64_t due)
{
    /* a connection to host seq % K: an idle one if there is one, else the least busy one */
    struct pub *best = NULL;
    for (int i = 0; i < opt.pub_conns; i++) {
        struct pub *p = &pubs[i];
        if (p->dead || p->qlen >= PUB_QUEUE || p->host != seq % opt.nports)
            continue;
        if (!best || p->qlen < best->qlen || (p->connected && !best->connected && p->qlen == best->qlen))
            best = p;
        if (best->qlen == 0 && best->connected)
            break;
    }
    if (!best)
        die("every publisher connection has %d requests outstanding", PUB_QUEUE);
    char path[512], body[256], req[1024];
    int64_t t = now_ns();
    int blen, rlen;
    if (opt.mode == MODE_ORDERS) {
        snprintf(path, sizeof path, opt.pub_path, opt.first_order + seq % opt.orders);
        blen = snprintf(body, sizeof body, "{\"note\":\"bench %d %" PRId64 "\"}", seq, t);
        rlen = snprintf(req, sizeof req,
                        "PATCH %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n%s", path, opt.host, opt.ports[best->host], blen, body);
    } else {
        blen = snprintf(body, sizeof body, "bench %d %" PRId64, seq, t);
        rlen = snprintf(req, sizeof req,
                        "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %d\r\n\r\n%s", opt.pub_path, opt.host, opt.ports[best->host], blen, body);
    }
    send_ns[seq] = t;
    best->last_send = t;
    if (t - due > max_lag_ns)
        max_lag_ns = t - due;
    best->q[(best->qhead + best->qlen) % PUB_QUEUE] = seq;
    best->qlen++;
    gbuf_add(&best->out, req, (size_t)rlen);
    if (best->connected) {
        pub_flush(best);
        if (best->dead)
            pub_reset(best, "write failed");
    }
}

/* ------------------------------------------------------------------ loop */

/* A publisher connection that sent nothing for 2 s asks for
 * --keepalive-path, so that the server does not close it as idle (lighttpd
 * does after 5 s) and a reconnect is never needed. */
static void pub_keepalive(void)
{
    if (!*opt.keepalive_path || !pubs)
        return;
    int64_t t = now_ns();
    char req[512];
    for (int i = 0; i < opt.pub_conns; i++) {
        struct pub *p = &pubs[i];
        if (!p->connected || p->dead || p->qlen || t - p->last_send < 2000000000LL)
            continue;
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", opt.keepalive_path, opt.host,
                         opt.ports[p->host]);
        p->last_send = t;
        p->q[(p->qhead + p->qlen) % PUB_QUEUE] = -1;
        p->qlen++;
        gbuf_add(&p->out, req, (size_t)n);
        pub_flush(p);
        if (p->dead)
            pub_reset(p, "write failed");
    }
}

/* While publishing, sends whatever is due; called between batches of reads
 * so that a burst of stream data does not delay a publish. */
static bool publishing;
static void pump_publish(void)
{
    if (!publishing)
        return;
    int64_t t = now_ns();
    while (next_seq < opt.events && t >= due_ns[next_seq]) {
        publish(next_seq, due_ns[next_seq]);
        next_seq++;
        t = now_ns();
    }
}

static void handle_events(int timeout_ms)
{
    static struct epoll_event evs[1024];
    int n = epoll_wait(epfd, evs, 1024, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        uint8_t kind = *(uint8_t *)evs[i].data.ptr;
        if (kind == K_STREAM)
            stream_io(evs[i].data.ptr, evs[i].events);
        else
            pub_io(evs[i].data.ptr, evs[i].events);
        if ((i & 31) == 31)
            pump_publish();
    }
}

static int ms_until(int64_t t)
{
    int64_t d = t - now_ns();
    if (d <= 0)
        return 0;
    d = (d + 999999) / 1000000;
    return d > 1000 ? 1000 : (int)d;
}

static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Samples RSS of the watched processes every 100 ms. */
static int64_t next_sample;
static void maybe_sample(void)
{
    if (!nwatch)
        return;
    int64_t t = now_ns();
    if (t >= next_sample) {
        sample_rss_all();
        next_sample = t + 100000000;
    }
}

/* --------------------------------------------------------------- report */

static double ms(double us)
{
    return us / 1000.0;
}

int main(int argc, char **argv)
{
    enum { O_IDLE = 1000, O_CRATE, O_CINFL, O_CTMO, O_ORDERS, O_FIRST, O_HELP, O_STALL, O_KEEP, O_EVOUT };
    static const struct option lopts[] = {
        {"idle-seconds", required_argument, NULL, O_IDLE},
        {"connect-rate", required_argument, NULL, O_CRATE},
        {"connect-inflight", required_argument, NULL, O_CINFL},
        {"connect-timeout", required_argument, NULL, O_CTMO},
        {"orders", required_argument, NULL, O_ORDERS},
        {"first-order", required_argument, NULL, O_FIRST},
        {"help", no_argument, NULL, O_HELP},
        {"connect-stall", required_argument, NULL, O_STALL},
        {"keepalive-path", required_argument, NULL, O_KEEP},
        {"events-out", required_argument, NULL, O_EVOUT},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "p:n:m:r:t:P:S:U:W:c:L:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            char *q = optarg, *end;
            opt.nports = 0;
            for (;;) {
                long v = strtol(q, &end, 10);
                if (end == q || v <= 0 || v > 65535 || opt.nports == MAX_PORTS)
                    die("-p wants PORT[,PORT...] (at most %d ports)", MAX_PORTS);
                opt.ports[opt.nports++] = (int)v;
                if (*end == ',')
                    q = end + 1;
                else if (*end)
                    die("-p wants PORT[,PORT...]");
                else
                    break;
            }
            opt.port = opt.ports[0];
            break;
        }
        case 'n': opt.streams = atoi(optarg); break;
        case 'm': opt.events = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 't': opt.drain_timeout_s = atof(optarg); break;
        case 'P':
            if (strcmp(optarg, "orders") == 0)
                opt.mode = MODE_ORDERS;
            else if (strcmp(optarg, "nchan") == 0)
                opt.mode = MODE_NCHAN;
            else
                die("-P wants orders or nchan");
            break;
        case 'S': opt.sub_path = optarg; break;
        case 'U': opt.pub_path = optarg; break;
        case 'W': add_watch(optarg); break;
        case 'c': opt.pub_conns = atoi(optarg); break;
        case 'L': opt.label = optarg; break;
        case 'q': quiet = true; break;
        case O_IDLE: opt.idle_s = atof(optarg); break;
        case O_CRATE: opt.connect_rate = atof(optarg); break;
        case O_CINFL: opt.connect_inflight = atoi(optarg); break;
        case O_CTMO: opt.connect_timeout_s = atof(optarg); break;
        case O_ORDERS: opt.orders = atoi(optarg); break;
        case O_FIRST: opt.first_order = atoi(optarg); break;
        case O_STALL: opt.connect_stall_s = atof(optarg); break;
        case O_KEEP: opt.keepalive_path = optarg; break;
        case O_EVOUT: opt.events_out = optarg; break;
        case 'h': case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt.nports < 1)
        die("-p PORT is required (1-65535)");
    if (opt.pub_conns < opt.nports)
        die("-c %d: at least one publisher connection per port (%d)", opt.pub_conns, opt.nports);
    if (opt.streams < 1 || opt.events < 1 || opt.rate <= 0 || opt.pub_conns < 1 || opt.pub_conns > 64
        || opt.orders < 1 || opt.connect_rate <= 0 || opt.connect_inflight < 1 || opt.idle_s < 0
        || opt.drain_timeout_s <= 0 || opt.connect_timeout_s <= 0)
        die("bad numeric option (see --help)");
    if (!opt.sub_path)
        opt.sub_path = opt.mode == MODE_ORDERS ? "/api/v1/stream/events" : "/sub/orders";
    if (!opt.pub_path)
        opt.pub_path = opt.mode == MODE_ORDERS ? "/api/v1/orders/ord_%05d" : "/pub?id=orders";
    if (opt.mode == MODE_ORDERS) {
        /* the template takes exactly one integer */
        const char *pc = strchr(opt.pub_path, '%');
        if (!pc || strchr(pc + 1, '%') || !strpbrk(pc, "d"))
            die("-U for orders mode needs exactly one %%d (e.g. /api/v1/orders/ord_%%05d)");
    }
    if (!opt.label)
        opt.label = opt.mode == MODE_ORDERS ? "orders" : "nchan";
    if (!opt.keepalive_path)
        opt.keepalive_path = opt.mode == MODE_ORDERS ? "/api/v1/health" : "";
    clk_tck = sysconf(_SC_CLK_TCK);
    t_program = now_ns();

    /* file limit: one fd per stream, plus publishers and slack */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)opt.streams + (rlim_t)opt.pub_conns + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < want)
            die("file limit %llu is below the %llu needed for %d streams (ulimit -n)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want, opt.streams);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    for (int h = 0; h < opt.nports; h++) {
        server_addr[h].sin_family = AF_INET;
        server_addr[h].sin_port = htons((uint16_t)opt.ports[h]);
        if (inet_pton(AF_INET, opt.host, &server_addr[h].sin_addr) != 1)
            die("bad host");
        char reqbuf[1024];
        int rl2 = snprintf(reqbuf, sizeof reqbuf,
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\nAccept-Encoding: identity\r\n\r\n",
                           opt.sub_path, opt.host, opt.ports[h]);
        stream_request[h] = strdup(reqbuf);
        stream_request_len[h] = (size_t)rl2;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));

    int N = opt.streams, M = opt.events;
    streams = xcalloc((size_t)N, sizeof *streams);
    size_t bitmap = ((size_t)M + 7) / 8;
    uint8_t *bits = xcalloc((size_t)N, bitmap);
    for (int i = 0; i < N; i++) {
        streams[i].kind = K_STREAM;
        streams[i].fd = -1;
        streams[i].idx = i;
        streams[i].seen = bits + (size_t)i * bitmap;
        streams[i].pend_seq = -1;
        streams[i].last_seq = -1;
        streams[i].last_id_hi = -1;
    }
    send_ns = xcalloc((size_t)M, sizeof *send_ns);
    due_ns = xcalloc((size_t)M, sizeof *due_ns);
    resp_ns = xcalloc((size_t)M, sizeof *resp_ns);
    resp_status = xcalloc((size_t)M, sizeof *resp_status);
    ev_last = xcalloc((size_t)M, sizeof *ev_last);
    ev_count = xcalloc((size_t)M, sizeof *ev_count);
    ev_sum_ms = xcalloc((size_t)M, sizeof *ev_sum_ms);
    lat_us = xmalloc((size_t)N * (size_t)M * sizeof *lat_us);

    /* ---- baseline of the watched processes */
    for (int i = 0; i < nwatch; i++) {
        watches[i].ticks_before = watch_ticks(&watches[i]);
        watches[i].rss_before = watch_rss(&watches[i]);
    }

    /* ---- 0. publishers: connected before the streams, kept open with
     * keep-alive requests, so that publishing does not depend on the server
     * accepting new connections when it holds every stream. */
    pubs = xcalloc((size_t)opt.pub_conns, sizeof *pubs);
    for (int i = 0; i < opt.pub_conns; i++) {
        pubs[i].kind = K_PUB;
        pubs[i].idx = i;
        pubs[i].host = i % opt.nports;
        pub_open(&pubs[i]);
    }
    {
        int64_t end = now_ns() + 5000000000LL;
        for (;;) {
            int up = 0;
            for (int i = 0; i < opt.pub_conns; i++)
                up += pubs[i].connected;
            if (up == opt.pub_conns || now_ns() > end || interrupted)
                break;
            handle_events(10);
        }
    }
    for (int i = 0; i < opt.pub_conns; i++)
        pubs[i].last_send = 0;  /* a first keep-alive request right away */
    pub_keepalive();

    /* ---- 1. connect */
    note("%s: opening %d streams to 127.0.0.1:%d%s (%.0f/s, %d in flight)", opt.label, N, opt.port,
         opt.sub_path, opt.connect_rate, opt.connect_inflight);
    int64_t t_conn0 = now_ns();
    int64_t conn_deadline = t_conn0 + (int64_t)(opt.connect_timeout_s * 1e9);
    int next_stream = 0;
    int64_t last_progress = t_conn0, last_change = t_conn0;
    int last_settled = 0;
    bool stalled = false;
    while (!interrupted) {
        int64_t t = now_ns();
        while (next_stream < N && connecting_count < opt.connect_inflight
               && t >= t_conn0 + (int64_t)((double)next_stream * 1e9 / opt.connect_rate)) {
            stream_start(&streams[next_stream++]);
        }
        if (next_stream == N && connecting_count == 0)
            break;
        if (t >= conn_deadline)
            break;
        if (ready_count + failed_count != last_settled) {
            last_settled = ready_count + failed_count;
            last_change = t;
        } else if (t - last_change > (int64_t)(opt.connect_stall_s * 1e9)) {
            stalled = true;
            note("%s: no stream got ready for %.0f s: giving up at %d ready", opt.label, opt.connect_stall_s,
                 ready_count);
            break;
        }
        if (t - last_progress > 5000000000LL) {
            note("%s: %d ready, %d connecting, %d failed", opt.label, ready_count, connecting_count, failed_count);
            last_progress = t;
        }
        int64_t next_due = next_stream < N ? t_conn0 + (int64_t)((double)next_stream * 1e9 / opt.connect_rate)
                                           : t + 100000000;
        int tmo = connecting_count >= opt.connect_inflight ? 100 : ms_until(next_due);
        if (tmo > 100)
            tmo = 100;
        handle_events(tmo);
        maybe_sample();
        pub_keepalive();
    }
    int64_t t_conn1 = now_ns();
    /* streams still not ready at the deadline count as failed */
    int timed_out = 0;
    for (int i = 0; i < N; i++) {
        if ((streams[i].phase == S_CONNECTING || streams[i].phase == S_OPEN) && !streams[i].ready) {
            timed_out++;
            stream_close(&streams[i], true);
        }
    }
    if (next_stream < N) {
        failed_count += N - next_stream;   /* never started */
        timed_out += N - next_stream;
    }
    note("%s: %d/%d streams ready in %.2f s (%d failed)", opt.label, ready_count, N,
         (double)(t_conn1 - t_conn0) / 1e9, failed_count);
    for (int i = 0; i < nwatch; i++) {
        watches[i].ticks_ready = watch_ticks(&watches[i]);
        watches[i].rss_ready = watch_rss(&watches[i]);
    }
    long long busy0 = machine_busy_ticks();
    double self0 = self_cpu_s();
    int64_t t_busy0 = now_ns();

    /* ---- 2. idle */
    if (opt.idle_s > 0) {
        note("%s: holding %d streams idle for %.1f s", opt.label, ready_count, opt.idle_s);
        int64_t end = now_ns() + (int64_t)(opt.idle_s * 1e9);
        while (!interrupted && now_ns() < end) {
            handle_events(ms_until(end) > 100 ? 100 : ms_until(end));
            maybe_sample();
            pub_keepalive();
        }
    }
    for (int i = 0; i < nwatch; i++)
        watches[i].rss_idle = watch_rss(&watches[i]);
    fprintf(stderr, "READY streams=%d\n", ready_count);
    fflush(stderr);

    /* ---- 3. publish */
    {   /* wait until the publishers have sent their first keep-alive round */
        int64_t end = now_ns() + 5000000000LL;
        while (!interrupted && now_ns() < end) {
            bool idle = true;
            for (int i = 0; i < opt.pub_conns; i++)
                if (pubs[i].qlen || !pubs[i].connected)
                    idle = false;
            if (idle)
                break;
            handle_events(10);
        }
    }
    note("%s: publishing %d events at %.1f/s over %d connections", opt.label, M, opt.rate, opt.pub_conns);
    int64_t t_pub0 = now_ns() + 1000000;
    for (int i = 0; i < M; i++)
        due_ns[i] = t_pub0 + (int64_t)((double)i * 1e9 / opt.rate);
    next_seq = 0;
    int64_t t_last_pub = 0, drain_deadline = 0;
    uint64_t expected_live = (uint64_t)ready_count * (uint64_t)M;
    publishing = true;
    while (!interrupted) {
        pump_publish();
        int64_t t = now_ns();
        if (next_seq == M && !t_last_pub) {
            t_last_pub = t;
            drain_deadline = t + (int64_t)(opt.drain_timeout_s * 1e9);
        }
        if (next_seq == M) {
            bool pubs_done = true;
            for (int i = 0; i < opt.pub_conns; i++)
                if (pubs[i].qlen)
                    pubs_done = false;
            if ((delivered_total >= expected_live && pubs_done) || t >= drain_deadline)
                break;
        }
        int tmo = next_seq < M ? ms_until(due_ns[next_seq]) : 50;
        if (tmo > 50)
            tmo = 50;
        handle_events(tmo);
        maybe_sample();
        pub_keepalive();
    }
    int64_t t_end = now_ns();
    long long busy1 = machine_busy_ticks();
    double self1 = self_cpu_s();
    for (int i = 0; i < nwatch; i++) {
        watches[i].ticks_end = watch_ticks(&watches[i]);
        watches[i].rss_end = watch_rss(&watches[i]);
    }
    for (int i = 0; i < opt.pub_conns; i++)     /* still owed a response: errors */
        for (int k = 0; k < pubs[i].qlen; k++)
            if (pubs[i].q[(pubs[i].qhead + k) % PUB_QUEUE] >= 0)
                pub_errors++;

    /* ---- 4. report */
    double gen_cpu = self_cpu_s();
    /* CPU used on the machine from the start of the idle period to the end
     * by processes other than the watched ones and this one: another load
     * running at the same time makes the numbers unreliable. */
    double window_s = (double)(t_end - t_busy0) / 1e9;
    double machine_s = (double)(busy1 - busy0) / (double)clk_tck;
    double watched_s = 0;
    for (int i = 0; i < nwatch; i++)
        watched_s += (double)(watches[i].ticks_end - watches[i].ticks_ready) / (double)clk_tck;
    double foreign_s = machine_s - watched_s - (self1 - self0);
    if (foreign_s < 0)
        foreign_s = 0;

    qsort(lat_us, nlat, sizeof *lat_us, cmp_u32);
    double p50 = pct_u32(lat_us, nlat, 50), p90 = pct_u32(lat_us, nlat, 90),
           p99 = pct_u32(lat_us, nlat, 99), pmax = nlat ? lat_us[nlat - 1] : 0;

    int64_t *ct = xcalloc((size_t)N, sizeof *ct);
    size_t nct = 0;
    for (int i = 0; i < N; i++)
        if (streams[i].ready)
            ct[nct++] = streams[i].t_ready - streams[i].t_start;
    qsort(ct, nct, sizeof *ct, cmp_i64);
    double c50 = pct_i64(ct, nct, 50) / 1e6, c99 = pct_i64(ct, nct, 99) / 1e6,
           cmax = nct ? (double)ct[nct - 1] / 1e6 : 0;

    /* fan-out completion per event: last receipt - send (events that reached someone) */
    int64_t *fo = xcalloc((size_t)M, sizeof *fo);
    size_t nfo = 0;
    for (int i = 0; i < M; i++)
        if (send_ns[i] && ev_count[i])
            fo[nfo++] = ev_last[i] - send_ns[i];
    /* growth: median completion in the last quarter vs the first quarter */
    double growth_ms = 0, growth_rate = 0;
    if (nfo >= 8) {
        size_t q = nfo / 4;
        int64_t *a = xmalloc(q * sizeof *a), *b = xmalloc(q * sizeof *b);
        memcpy(a, fo, q * sizeof *a);
        memcpy(b, fo + nfo - q, q * sizeof *b);
        qsort(a, q, sizeof *a, cmp_i64);
        qsort(b, q, sizeof *b, cmp_i64);
        growth_ms = ((double)b[q / 2] - (double)a[q / 2]) / 1e6;
        double span_ms = (double)(nfo - q) / opt.rate * 1000.0;
        growth_rate = span_ms > 0 ? growth_ms / span_ms : 0;
        free(a);
        free(b);
    }
    int64_t *fos = xmalloc((nfo ? nfo : 1) * sizeof *fos);
    memcpy(fos, fo, nfo * sizeof *fos);
    qsort(fos, nfo, sizeof *fos, cmp_i64);
    double fo50 = pct_i64(fos, nfo, 50) / 1e6, fo99 = pct_i64(fos, nfo, 99) / 1e6,
           fomax = nfo ? (double)fos[nfo - 1] / 1e6 : 0;

    /* publish response times */
    int64_t *rt = xcalloc((size_t)M, sizeof *rt);
    size_t nrt = 0;
    for (int i = 0; i < M; i++)
        if (resp_ns[i] && send_ns[i])
            rt[nrt++] = resp_ns[i] - send_ns[i];
    qsort(rt, nrt, sizeof *rt, cmp_i64);
    double r50 = pct_i64(rt, nrt, 50) / 1e6, r99 = pct_i64(rt, nrt, 99) / 1e6,
           rmax = nrt ? (double)rt[nrt - 1] / 1e6 : 0;

    uint64_t expected = (uint64_t)N * (uint64_t)M;
    int published = next_seq;
    double pub_span = published > 1 ? (double)(send_ns[published - 1] - send_ns[0]) / 1e9 : 0;
    double achieved_rate = pub_span > 0 ? (double)(published - 1) / pub_span : 0;
    bool generator_late = (double)max_lag_ns / 1e6 > 1000.0 / opt.rate && max_lag_ns > 20000000;
    bool growing = growth_rate > 0.05 && growth_ms > 100;
    bool complete = delivered_total == expected && published == M;
    const char *keepup = complete && !growing ? "yes" : "no";
    char reason[256] = "";
    if (published < M)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%sinterrupted", *reason ? "," : "");
    if (ready_count < N)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%s%s", *reason ? "," : "",
                 stalled ? "connect_stalled" : "streams_not_ready");
    if (delivered_total < expected)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%smissing", *reason ? "," : "");
    if (dropped_count)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%sdropped", *reason ? "," : "");
    if (growing)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%slatency_growing", *reason ? "," : "");
    if (pub_errors || pub_non2xx)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%spublish_errors", *reason ? "," : "");
    if (dups_total)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%sduplicates", *reason ? "," : "");
    if (ooo_total)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%sout_of_order", *reason ? "," : "");
    if (generator_late)
        snprintf(reason + strlen(reason), sizeof reason - strlen(reason), "%sgenerator_late", *reason ? "," : "");
    if (!*reason)
        strcpy(reason, "-");

    printf("RESULT label=%s mode=%s n=%d m=%d rate=%g ready=%d failed=%d dropped=%d"
           " published=%d pub_errors=%d pub_non2xx=%d pub_reconnects=%d delivered=%" PRIu64 " expected=%" PRIu64
           " dups=%" PRIu64 " ooo=%" PRIu64 " inversions=%" PRIu64 " foreign=%" PRIu64 " mismatch=%" PRIu64
           " lat_p50_ms=%.2f lat_p90_ms=%.2f lat_p99_ms=%.2f lat_max_ms=%.2f"
           " fanout_p50_ms=%.2f fanout_p99_ms=%.2f fanout_max_ms=%.2f growth_ms=%.1f"
           " connect_p50_ms=%.2f connect_p99_ms=%.2f connect_max_ms=%.2f connect_total_s=%.2f"
           " pub_resp_p50_ms=%.2f pub_resp_p99_ms=%.2f pub_resp_max_ms=%.2f pub_lag_max_ms=%.2f"
           " pub_rate=%.2f publish_s=%.2f drain_s=%.2f gen_cpu_s=%.2f window_s=%.2f machine_cpu_s=%.2f"
           " foreign_cpu_s=%.2f keepup=%s reason=%s",
           opt.label, opt.mode == MODE_ORDERS ? "orders" : "nchan", N, M, opt.rate, ready_count, failed_count,
           dropped_count, published, pub_errors, pub_non2xx, pub_reconnects, delivered_total, expected, dups_total, ooo_total,
           inversions_total, foreign_total, mismatch_total, ms(p50), ms(p90), ms(p99), ms(pmax), fo50, fo99, fomax, growth_ms,
           c50, c99, cmax, (double)(t_conn1 - t_conn0) / 1e9, r50, r99, rmax, (double)max_lag_ns / 1e6,
           achieved_rate, pub_span, t_last_pub ? (double)(t_end - t_last_pub) / 1e9 : 0, gen_cpu, window_s,
           machine_s, foreign_s, keepup, reason);
    for (int i = 0; i < nwatch; i++) {
        struct watch *w = &watches[i];
        double cpu_conn = (double)(w->ticks_ready - w->ticks_before) / (double)clk_tck;
        double cpu_pub = (double)(w->ticks_end - w->ticks_ready) / (double)clk_tck;
        double idle_per = ready_count ? (double)(w->rss_idle - w->rss_before) / ready_count : 0;
        printf(" %s_cpu_s=%.2f %s_cpu_connect_s=%.2f %s_cpu_publish_s=%.2f %s_rss_before_kb=%ld"
               " %s_rss_idle_kb=%ld %s_rss_end_kb=%ld %s_rss_max_kb=%ld %s_kib_per_idle_stream=%.2f %s_gone=%d",
               w->label, cpu_conn + cpu_pub, w->label, cpu_conn, w->label, cpu_pub, w->label, w->rss_before,
               w->label, w->rss_idle, w->label, w->rss_end, w->label, w->rss_max, w->label, idle_per, w->label,
               w->gone ? 1 : 0);
    }
    printf("\n");

    printf("\n%s: %d streams x %d events at %g/s (port %d, %s)\n", opt.label, N, M, opt.rate, opt.port,
           opt.mode == MODE_ORDERS ? "orders: PATCH + /api/v1/stream/events" : "nchan: POST /pub + /sub");
    printf("  streams      %d ready, %d failed (%d timed out, %d connect errors, %d closed before ready),"
           " %d closed by the server during the run\n",
           ready_count, failed_count, timed_out, fail_errno_count, fail_eof_count, dropped_count);
    for (int st = 1; st < 600; st++)
        if (status_counts[st] && st != 200)
            printf("  status       %d x HTTP %d on a stream request\n", status_counts[st], st);
    printf("  connect      p50 %.1f ms, p99 %.1f ms, max %.1f ms; all ready after %.2f s\n", c50, c99, cmax,
           (double)(t_conn1 - t_conn0) / 1e9);
    printf("  publish      %d/%d sent over %.2f s (%.2f/s), latest send %.1f ms behind schedule;"
           " responses p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d errors (no response), %d non-2xx;"
           " %d publisher connections closed by the server and reopened\n",
           published, M, pub_span, achieved_rate, (double)max_lag_ns / 1e6, r50, r99, rmax, pub_errors, pub_non2xx,
           pub_reconnects);
    printf("  delivered    %" PRIu64 "/%" PRIu64 " (%.3f %%), %" PRIu64 " duplicates, %" PRIu64
           " out of order (by event id), %" PRIu64 " unmatched\n",
           delivered_total, expected, expected ? 100.0 * (double)delivered_total / (double)expected : 0,
           dups_total, ooo_total, foreign_total);
    printf("               %" PRIu64 " arrivals before an earlier-sent publish (concurrent publishes commit"
           " in any order: not an error)\n", inversions_total);
    printf("  latency      publish -> receipt p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n", ms(p50),
           ms(p90), ms(p99), ms(pmax));
    printf("  fan-out      publish -> last stream p50 %.1f ms, p99 %.1f ms, max %.1f ms;"
           " first->last quarter median %+.1f ms\n", fo50, fo99, fomax, growth_ms);
    printf("  drain        %.2f s after the last publish\n", t_last_pub ? (double)(t_end - t_last_pub) / 1e9 : 0);
    for (int i = 0; i < nwatch; i++) {
        struct watch *w = &watches[i];
        printf("  %-12s CPU %.2f s (connect %.2f, idle+publish %.2f); RSS %ld kB before, %ld idle, %ld end,"
               " max %ld; %.2f KiB per idle stream%s\n",
               w->label, (double)(w->ticks_end - w->ticks_before) / (double)clk_tck,
               (double)(w->ticks_ready - w->ticks_before) / (double)clk_tck,
               (double)(w->ticks_end - w->ticks_ready) / (double)clk_tck, w->rss_before, w->rss_idle, w->rss_end,
               w->rss_max, ready_count ? (double)(w->rss_idle - w->rss_before) / ready_count : 0,
               w->gone ? " (A PROCESS VANISHED)" : "");
    }
    printf("  generator    CPU %.2f s\n", gen_cpu);
    printf("  machine      %.2f CPU s used in the %.1f s from idle to the end, %.2f s of it by other processes%s\n",
           machine_s, window_s, foreign_s, foreign_s > 0.1 * window_s ? " (ANOTHER LOAD RAN AT THE SAME TIME)" : "");
    printf("  keeps up     %s%s%s\n", keepup, strcmp(reason, "-") ? " — " : "", strcmp(reason, "-") ? reason : "");

    if (opt.events_out) {
        FILE *f = fopen(opt.events_out, "w");
        if (!f)
            die("cannot write %s: %s", opt.events_out, strerror(errno));
        fprintf(f, "seq\tsend_ms\tresponse_ms\tstatus\tstreams\tmean_ms\tmax_ms\n");
        for (int i = 0; i < M; i++) {
            if (!send_ns[i])
                continue;
            fprintf(f, "%d\t%.3f\t%.3f\t%d\t%u\t%.3f\t%.3f\n", i, (double)(send_ns[i] - send_ns[0]) / 1e6,
                    resp_ns[i] ? (double)(resp_ns[i] - send_ns[i]) / 1e6 : -1.0, resp_status[i], ev_count[i],
                    ev_count[i] ? ev_sum_ms[i] / ev_count[i] : -1.0,
                    ev_count[i] ? (double)(ev_last[i] - send_ns[i]) / 1e6 : -1.0);
        }
        fclose(f);
    }

    /* close everything (the servers see EOF and free the streams) */
    for (int i = 0; i < N; i++)
        if (streams[i].fd >= 0)
            close(streams[i].fd);
    for (int i = 0; i < opt.pub_conns; i++)
        if (pubs[i].fd >= 0)
            close(pubs[i].fd);
    return interrupted ? 130 : 0;
}
