/* The shared metrics file: slots claimed per process, counts summed over
 * processes, kept when a process exits cleanly or is SIGKILLed, gauges of
 * live processes only, a foreign layout started afresh, the exposition
 * text. Processes are fork()ed children, each with its own mapping. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "tap.h"

static char path[256];

static struct metrics *open_or_die(void)
{
    char err[256];
    struct metrics *m = metrics_open(path, 0600, err, sizeof err);
    if (!m) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    return m;
}

static struct metrics_totals totals(struct metrics *m)
{
    struct metrics_totals t;
    if (metrics_totals(m, &t) != 0) {
        printf("Bail out! metrics_totals failed\n");
        exit(1);
    }
    return t;
}

/* A child that opens its own mapping, counts, reports through the pipe,
 * then either closes cleanly or waits to be killed. */
static pid_t child(bool clean, int *ready_fd)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct metrics *m = open_or_die();
        metrics_add(m, MX_EVENTS_DELIVERED, 5);
        metrics_stream_opened(m);
        metrics_request(m, MM_POST, MR_ORDERS, 201, 2000000);
        if (clean) {
            metrics_stream_closed(m, MC_SHUTDOWN);
            metrics_close(m);
        }
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        if (clean)
            _exit(0);
        for (;;)
            pause();
    }
    close(p[1]);
    *ready_fd = p[0];
    char c;
    if (pid < 0 || read(p[0], &c, 1) != 1)
        exit(1);
    return pid;
}

int main(void)
{
    snprintf(path, sizeof path, "%s/orders-metrics-test.%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    unlink(path);
    struct metrics *m = open_or_die();
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "the file is created with the mode given");

    struct metrics_totals t = totals(m);
    is_int(t.processes, 1, "one process holds a slot");
    is_int((long long)t.requests, 0, "nothing counted yet");

    metrics_add(m, MX_EVENTS_DELIVERED, 3);
    metrics_request(m, MM_GET, MR_ORDER, 404, 1000);
    metrics_request(m, MM_OTHER, MR_UNMATCHED, 999, 20000000000LL);

    int fd;
    pid_t killed = child(false, &fd);
    t = totals(m);
    is_int(t.processes, 2, "a second process claims a second slot");
    is_int((long long)t.counter[MX_EVENTS_DELIVERED], 8, "counts of both processes are summed");
    is_int(t.streams_open, 1, "the other process's open stream shows");
    is_int((long long)t.requests, 3, "requests of both processes");

    kill(killed, SIGKILL);
    waitpid(killed, NULL, 0);
    close(fd);
    t = totals(m);
    is_int(t.processes, 1, "a SIGKILLed process no longer counts as a process");
    is_int((long long)t.counter[MX_EVENTS_DELIVERED], 8, "its counts are kept");
    is_int(t.streams_open, 0, "its open stream is gone from the gauge");
    is_int((long long)t.counter[MX_STREAMS_OPENED], 1, "streams opened stays");

    pid_t clean = child(true, &fd);
    waitpid(clean, NULL, 0);
    close(fd);
    t = totals(m);
    is_int(t.processes, 1, "a process that closed its metrics frees its slot");
    is_int((long long)t.counter[MX_EVENTS_DELIVERED], 13, "and its counts are kept");
    is_int((long long)t.closed[MC_SHUTDOWN], 1, "its closed stream is counted by reason");
    is_int(t.streams_open, 0, "streams open is back to 0");
    is_int((long long)t.requests, 4, "every request is kept");

    /* Every slot taken: the next one counts privately, and says so. */
    struct metrics *extra[METRICS_SLOTS];
    for (int i = 0; i < METRICS_SLOTS - 1; i++)
        extra[i] = open_or_die();
    t = totals(m);
    is_int(t.processes, METRICS_SLOTS, "every slot can be claimed");
    struct metrics *over = open_or_die();
    metrics_add(over, MX_EVENTS_DELIVERED, 100);
    t = totals(m);
    is_int(t.processes, METRICS_SLOTS, "one more mapping does not get a slot");
    is_int((long long)t.counter[MX_EVENTS_DELIVERED], 13, "and its counts are not shown");
    metrics_close(over);
    for (int i = 0; i < METRICS_SLOTS - 1; i++)
        metrics_close(extra[i]);
    is_int(totals(m).processes, 1, "closing frees the slots");

    struct metrics_db db = {.head_id = 42, .oldest_id = 7};
    struct buf out = BUF_INIT;
    ok(metrics_render(m, &db, &out) == 0, "render");
    const char *text = buf_str(&out);
    ok(strstr(text, "orders_processes 1\n") != NULL, "orders_processes");
    ok(strstr(text, "orders_events_delivered_total 13\n") != NULL, "events delivered");
    ok(strstr(text, "orders_event_log_head_id 42\n") && strstr(text, "orders_event_log_oldest_id 7\n"),
       "event log bounds");
    ok(strstr(text, "orders_http_requests_total{method=\"GET\",route=\"/orders/{id}\",status=\"404\"} 1\n")
           != NULL, "a request by method, route pattern and status");
    ok(strstr(text, "orders_http_requests_total{method=\"other\",route=\"unmatched\",status=\"other\"} 1\n")
           != NULL, "an unknown method and status");
    ok(strstr(text, "orders_http_request_duration_seconds_bucket{route=\"/orders\",le=\"0.001\"} 0\n")
           && strstr(text, "orders_http_request_duration_seconds_bucket{route=\"/orders\",le=\"0.0025\"} 2\n")
           && strstr(text, "orders_http_request_duration_seconds_count{route=\"/orders\"} 2\n"),
       "cumulative buckets");
    ok(strstr(text, "orders_http_request_duration_seconds_bucket{route=\"unmatched\",le=\"10\"} 0\n")
           && strstr(text, "orders_http_request_duration_seconds_bucket{route=\"unmatched\",le=\"+Inf\"} 1\n")
           && strstr(text, "orders_http_request_duration_seconds_sum{route=\"unmatched\"} 20.000000000\n"),
       "a request past the last bucket and its sum");
    ok(strstr(text, "orders_streams_closed_total{reason=\"client_gone\"} 0\n") != NULL,
       "every close reason is shown");
    buf_free(&out);
    metrics_close(m);

    /* A file of another layout (or garbage) starts again from zero. */
    int f = open(path, O_WRONLY);
    ok(f >= 0 && pwrite(f, "garbage!", 8, 0) == 8, "spoil the header");
    close(f);
    m = open_or_die();
    t = totals(m);
    is_int((long long)t.counter[MX_EVENTS_DELIVERED], 0, "a foreign layout starts afresh");
    is_int(t.processes, 1, "with this process in it");
    metrics_close(m);
    metrics_close(NULL);
    metrics_add(NULL, MX_EVENTS_DELIVERED, 1);
    ok(1, "a NULL metrics counts nothing and does not crash");
    unlink(path);
    return done_testing();
}
