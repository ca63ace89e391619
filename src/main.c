/* orders.fcgi: the FastCGI responder. It takes its listening socket on fd 0
 * from whoever started it (lighttpd bin-path, mod_fcgid, spawn-fcgi), or on
 * fd 3 from systemd socket activation (LISTEN_FDS, see systemd_listen_fd), and
 * serves it with a pool of threads, each with its own FCGX_Request and its
 * own SQLite connection, because libfcgi serves one request per thread. */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "hub.h"
#include "metrics.h"
#include "routes.h"
#include "service.h"
#include "store.h"
#include "writes.h"

#define PRUNE_INTERVAL_MS 1000
#define CHECKPOINT_INTERVAL_MS 200
#define STOP_DEADLINE_MS 4500   /* web servers wait about 5 s before SIGKILL */
#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000
#define STREAMS_UNLIMITED 10000 /* ORDERS_MAX_STREAMS when the file limit is infinite */
#define FD_MARGIN 16            /* SQLite's temporary files, the sanitizers' own */

/* Every worker blocks in accept() on the shared socket and the kernel hands
 * each connection to one of them: no lock is taken around accept().
 *
 * Stopping: the threads blocked in accept() must be woken. A signal will not
 * do: one that lands in libfcgi's poll() just after an accept() sends it
 * round a loop on a closed descriptor. So those threads are cancelled.
 * Workers run with cancellation disabled, except inside FCGX_Accept_r,
 * whose cancellation points are accept(), poll() and read(), and in the
 * pause before retrying a failed accept.
 *
 * A failed accept (EMFILE, ENFILE, ENOMEM …) is retried after a pause that
 * doubles from ACCEPT_BACKOFF_MIN_MS to ACCEPT_BACKOFF_MAX_MS: the process
 * stays alive, so the web server would never start another one, and it
 * serves again as soon as descriptors are free. libfcgi turns SIGUSR1 into
 * "every later accept fails" (os_unix.c: OS_SigusrHandler sets
 * shutdownPending), which retrying cannot get out of: SIGUSR1 stays
 * blocked in every thread.
 *
 * Kept connections: when the web server sets FCGI_KEEP_CONN (nginx with
 * fastcgi_keep_conn on and an upstream keepalive, Apache mod_proxy_fcgi),
 * FCGX_Finish_r leaves the connection open and the worker's next
 * FCGX_Accept_r reads the next request from it instead of accepting: the
 * thread stays with that connection, blocked in read() while it is idle,
 * until the web server closes it. So every idle connection the web server
 * keeps holds one of ORDERS_THREADS, and its keepalive connections (nginx:
 * keepalive N per worker process, times worker_processes) must stay below
 * ORDERS_THREADS, or idle connections hold every thread and a request on a
 * new connection waits unserved in the listen queue. Such a read is a
 * cancellation point inside FCGX_Accept_r like accept(), so a stop cancels
 * those threads too. A stream request is handed to the hub with its
 * connection, kept or not, and the hub closes it when the stream ends; the
 * thread goes back to accepting. */
struct worker_thread {
    struct worker *w;
    pthread_t thread;
    FCGX_Request req;
    int accepted;           /* FCGX_Accept_r's result; in memory across cancellation setup */
    bool in_accept;         /* guarded by state_lock */
};

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static bool stopping;
static int workers_running;
static bool accept_failing;     /* logged once for all workers, until one accepts again */

static void set_in_accept(struct worker_thread *t, bool on)
{
    pthread_mutex_lock(&state_lock);
    t->in_accept = on;
    pthread_mutex_unlock(&state_lock);
}

static bool is_stopping(void)
{
    pthread_mutex_lock(&state_lock);
    bool s = stopping;
    pthread_mutex_unlock(&state_lock);
    return s;
}

static void die(const char *msg)
{
    fprintf(stderr, "orders: %s\n", msg);
    exit(1);
}

static void free_worker(struct worker *w)
{
    store_close(w->store);
    free(w);
}

static void leave_accept(void *arg)
{
    set_in_accept(arg, false);
}

/* Runs when a worker ends, by returning or by being cancelled in accept. */
static void end_worker(void *arg)
{
    struct worker_thread *t = arg;
    FCGX_Free(&t->req, 1);
    free_worker(t->w);
    pthread_mutex_lock(&state_lock);
    workers_running--;
    pthread_mutex_unlock(&state_lock);
}

/* One line when accepting starts failing, one when it works again: not
 * one per retry of each worker. */
static void note_accept(bool failed, int rc)
{
    pthread_mutex_lock(&state_lock);
    bool changed = accept_failing != failed;
    accept_failing = failed;
    pthread_mutex_unlock(&state_lock);
    if (changed && failed)
        fprintf(stderr, "orders: accepting a connection failed: %s; retrying\n",
                rc > -4096 ? strerror(-rc) : "libfcgi error");
    else if (changed)
        fputs("orders: accepting connections again\n", stderr);
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);   /* a cancellation point; EINTR only shortens the pause */
}

/* The FastCGI listening socket: fd 0 as a web server or spawn-fcgi passes
 * it, or the one systemd passes by socket activation (set in main). */
static int listen_fd = 0;

/* Socket activation, the protocol of sd_listen_fds(3), without libsystemd:
 * when LISTEN_PID is our pid, LISTEN_FDS sockets start at fd 3
 * (SD_LISTEN_FDS_START). We serve one socket, so more than one is refused.
 * The variables are removed either way, as sd_listen_fds(1) does, so that
 * nothing we start inherits them; the fd is made close-on-exec. Returns the
 * fd, or -1 when systemd passed nothing (then fd 0 is used as before).
 * Runs before any thread starts: setenv/unsetenv are not thread-safe. */
static int systemd_listen_fd(void)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    int fd = -1;
    if (pid_s && fds_s) {
        char *end;
        errno = 0;
        long long pid = strtoll(pid_s, &end, 10);
        bool ours = errno == 0 && end != pid_s && *end == '\0' && pid == (long long)getpid();
        if (ours) {
            errno = 0;
            long n = strtol(fds_s, &end, 10);
            if (errno != 0 || end == fds_s || *end != '\0' || n < 0)
                die("LISTEN_FDS is not a number of sockets");
            if (n > 1)
                die("LISTEN_FDS: systemd passed more than one socket; orders.fcgi serves exactly "
                    "one (one ListenStream= in orders.socket)");
            if (n == 1) {
                fd = 3;    /* SD_LISTEN_FDS_START */
                struct stat st;
                if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
                    die("LISTEN_FDS: fd 3 from systemd is not a socket");
                int flags = fcntl(fd, F_GETFD);
                if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
                    die("LISTEN_FDS: cannot mark fd 3 close-on-exec");
            }
        }
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return fd;
}

static void *worker_main(void *arg)
{
    struct worker_thread *t = arg;
    long backoff_ms = 0;    /* 0 while accepting works */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    if (FCGX_InitRequest(&t->req, listen_fd, 0) != 0)
        die("cannot set up a FastCGI request");
    pthread_cleanup_push(end_worker, t);
    for (;;) {
        t->accepted = -1;
        pthread_mutex_lock(&state_lock);
        bool go = !stopping;
        t->in_accept = go;
        pthread_mutex_unlock(&state_lock);
        if (!go)
            break;
        pthread_cleanup_push(leave_accept, t);
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        if (backoff_ms)
            pause_ms(backoff_ms);
        t->accepted = FCGX_Accept_r(&t->req);
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_cleanup_pop(1);
        if (t->accepted < 0) {
            if (!backoff_ms)
                note_accept(true, t->accepted);
            backoff_ms = backoff_ms ? 2 * backoff_ms : ACCEPT_BACKOFF_MIN_MS;
            if (backoff_ms > ACCEPT_BACKOFF_MAX_MS)
                backoff_ms = ACCEPT_BACKOFF_MAX_MS;
            continue;
        }
        if (backoff_ms) {
            note_accept(false, 0);
            backoff_ms = 0;
        }
        routes_handle(t->w, &t->req);
        http_finish(&t->req);
    }
    pthread_cleanup_pop(1);
    return NULL;
}

/* Keeps the event log at ORDERS_RETAIN_EVENTS and checkpoints the WAL, in
 * the background, so that no request pays for either. */
static void *pruner_main(void *arg)
{
    struct worker *w = arg;
    while (!is_stopping()) {
        struct error err;
        /* A database that is busy or does not answer is tried again in
         * a second; the store logs an outage once itself. */
        if (store_prune(w->store, w->svc->cfg->retain_events, &err) < 0
            && err.kind != ERR_UNAVAILABLE)
            fprintf(stderr, "orders: pruning the event log failed: %s\n", err.message);
        for (int slept = 0; slept < PRUNE_INTERVAL_MS && !is_stopping();
             slept += CHECKPOINT_INTERVAL_MS) {
            if (store_checkpoint(w->store, &err) != 0)
                fprintf(stderr, "orders: checkpoint failed: %s\n", err.message);
            usleep(CHECKPOINT_INTERVAL_MS * 1000);
        }
    }
    free_worker(w);
    return NULL;
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    if (pthread_create(t, NULL, fn, arg) != 0)
        die("cannot start a thread");
}

static struct worker *new_worker(struct service *svc)
{
    char err[256];
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        die("out of memory");
    w->svc = svc;
    w->store = store_open(svc->cfg, err, sizeof err);
    if (!w->store)
        die(err);
    return w;
}

/* The counters every process of this host shares (metrics.h): beside a
 * SQLite file with its permissions, since whoever may read the database may
 * read them; for PostgreSQL, private to the service's user. */
static struct metrics *open_metrics(const struct config *cfg)
{
    char err[512];
    mode_t mode = 0600;
    struct stat st;
    if (cfg->backend == BACKEND_SQLITE) {
        if (stat(cfg->db_path, &st) != 0)
            die("cannot stat ORDERS_DB after migrating it");
        mode = st.st_mode & 0666;
    }
    struct metrics *m = metrics_open(cfg->metrics_path, mode, err, sizeof err);
    if (!m)
        die(err);
    return m;
}

/* Descriptors the process holds besides its streams' sockets: each SQLite
 * connection (one per worker, the group commit's writer, the pruner's, the hub's)
 * has the database and its WAL open, and the -shm once per process; the
 * hub's epoll and eventfd; the metrics file; stdin (the listening socket),
 * stdout and stderr; one connection per worker while it serves a request. */
static long reserved_fds(const struct config *cfg)
{
    long connections = cfg->threads + 3;
    return 2 * connections + 1 + 2 + 1 + 3 + cfg->threads + FD_MARGIN;
}

/* Each open stream holds one descriptor, its socket. ORDERS_MAX_STREAMS,
 * or its default, is fitted to what RLIMIT_NOFILE leaves after the rest, so
 * that the stream over the limit gets 503 rather than the process running
 * out of descriptors: then no worker could accept any request at all. */
static void fit_max_streams(struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        if (cfg->max_streams < 0)
            cfg->max_streams = STREAMS_UNLIMITED;
        return;
    }
    long room = (long)rl.rlim_cur - reserved_fds(cfg);
    if (room < 0)
        room = 0;
    if (cfg->max_streams < 0) {
        cfg->max_streams = room;
    } else if (cfg->max_streams > room) {
        fprintf(stderr, "orders: ORDERS_MAX_STREAMS lowered from %ld to %ld: the file limit is "
                "%ld descriptors, %ld of them for threads and SQLite\n", cfg->max_streams, room,
                (long)rl.rlim_cur, reserved_fds(cfg));
        cfg->max_streams = room;
    }
}

/* SIGTERM (lighttpd restart, apachectl graceful, mod_fcgid reaping) and
 * SIGINT: stop accepting, let the requests in flight finish, end every
 * stream after a complete event, and exit within STOP_DEADLINE_MS. */
static bool wait_and_stop(const sigset_t *stop_signals, struct hub *hub,
                          struct worker_thread *workers, long count)
{
    int sig;
    while (sigwait(stop_signals, &sig) != 0)
        ;
    long long deadline = clock_monotonic_ms() + STOP_DEADLINE_MS;
    pthread_mutex_lock(&state_lock);
    stopping = true;
    pthread_mutex_unlock(&state_lock);
    hub_stop(hub);
    for (;;) {
        pthread_mutex_lock(&state_lock);
        int running = workers_running;
        for (long i = 0; i < count; i++) {
            if (workers[i].in_accept) {
                pthread_cancel(workers[i].thread);
                workers[i].in_accept = false;   /* once is enough */
            }
        }
        pthread_mutex_unlock(&state_lock);
        if (running == 0 || clock_monotonic_ms() >= deadline)
            break;
        usleep(20 * 1000);
    }
    return hub_wait(hub, deadline - clock_monotonic_ms()) == 0 && clock_monotonic_ms() < deadline;
}

/* On standard output when asked for (--help), on standard error otherwise. */
static void usage(FILE *to)
{
    fputs("usage: orders.fcgi [--migrate | --help]\n"
          "  Started by a FastCGI web server (or spawn-fcgi) with the listening\n"
          "  socket on fd 0, or by systemd socket activation (LISTEN_FDS=1, fd 3);\n"
          "  settings come from ORDERS_* environment variables.\n"
          "  --migrate  create or upgrade the database ORDERS_DB names, then exit\n"
          "  --help     print this and exit; see orders.fcgi(8)\n",
          to);
}

int main(int argc, char **argv)
{
    bool migrate_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--migrate") == 0) {
            migrate_only = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    static struct config cfg;
    char err[256];
    if (config_load(&cfg, err, sizeof err) != 0)
        die(err);
    if (sqlite3_threadsafe() == 0)
        die("SQLite was built without thread support");
    if (db_configure() != 0)
        die("cannot configure SQLite before its first use");
    if (store_migrate(&cfg, !migrate_only, err, sizeof err) != 0)
        die(err);
    if (migrate_only)
        return 0;

    static struct service svc;
    svc.cfg = &cfg;
    if (cfg.tokens_file && !(svc.auth = auth_load(cfg.tokens_file, err, sizeof err)))
        die(err);

    int activated = systemd_listen_fd();
    if (FCGX_Init() != 0)
        die("cannot initialise libfcgi");
    if (activated >= 0)
        listen_fd = activated;
    else if (FCGX_IsCGI())
        die("fd 0 is not a FastCGI listening socket: start orders.fcgi from a web server "
            "(lighttpd bin-path, mod_fcgid), spawn-fcgi or systemd socket activation");

    /* A vanished client shows as a failed write, not as a signal. */
    signal(SIGPIPE, SIG_IGN);
    /* Only the main thread takes the stop signals, in sigwait(). SIGUSR1
     * stays blocked everywhere (see the top of this file); the threads
     * inherit the mask, so it is set before the first one starts. */
    sigset_t stop_signals, blocked;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    blocked = stop_signals;
    sigaddset(&blocked, SIGUSR1);
    if (pthread_sigmask(SIG_BLOCK, &blocked, NULL) != 0)
        die("cannot block the stop signals and SIGUSR1");
    fit_max_streams(&cfg);

    svc.metrics = open_metrics(&cfg);
    if (!(svc.hub = hub_start(&cfg, svc.metrics, err, sizeof err)))
        die(err);
    if (!(svc.writer = store_open(&cfg, err, sizeof err)))
        die(err);
    if (!(svc.writes = writes_new(svc.writer, &cfg, svc.metrics)))
        die("out of memory");
    pthread_t pruner;
    start_thread(&pruner, pruner_main, new_worker(&svc));
    struct worker_thread *workers = calloc((size_t)cfg.threads, sizeof *workers);
    if (!workers)
        die("out of memory");
    workers_running = (int)cfg.threads;
    for (long i = 0; i < cfg.threads; i++)
        workers[i].w = new_worker(&svc);
    for (long i = 0; i < cfg.threads; i++)
        start_thread(&workers[i].thread, worker_main, &workers[i]);
    /* After a clean stop every thread has ended: free what they shared, so
     * that LeakSanitizer sees nothing, and fold this process's counts into
     * the retired ones. Otherwise exit with them running: the next scrape
     * folds the counts, as for a killed process. */
    if (wait_and_stop(&stop_signals, svc.hub, workers, cfg.threads)) {
        for (long i = 0; i < cfg.threads; i++)
            pthread_join(workers[i].thread, NULL);
        pthread_join(pruner, NULL);
        hub_free(svc.hub);
        writes_free(svc.writes);
        store_close(svc.writer);
        metrics_close(svc.metrics);
        auth_free(svc.auth);
        free(workers);
        config_free(&cfg);
    }
    return 0;
}
