/* What the threads of one responder process share, and what each REST
 * worker thread owns. */
#ifndef ORDERS_SERVICE_H
#define ORDERS_SERVICE_H

#include "auth.h"
#include "config.h"
#include "store.h"

struct hub;
struct metrics;
struct writes;

struct service {
    const struct config *cfg;
    struct auth *auth;          /* NULL when writes are open */
    struct hub *hub;            /* the stream hub of this process */
    struct store *writer;       /* the connection the group commit writes with */
    struct writes *writes;      /* every write of the API goes through it */
    struct metrics *metrics;    /* this process's slot in the shared counters */
};

struct worker {
    struct service *svc;
    struct store *store;        /* this thread's own connection */
};

#endif
