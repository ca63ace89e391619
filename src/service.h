/* What the threads of one responder process share, and what each REST
 * worker thread owns. */
#ifndef ORDERS_SERVICE_H
#define ORDERS_SERVICE_H

#include "auth.h"
#include "config.h"
#include "store.h"

struct hub;

struct service {
    const struct config *cfg;
    struct auth *auth;          /* NULL when writes are open */
    struct hub *hub;            /* the stream hub of this process */
    struct store *writer;       /* the one connection all threads write with */
};

struct worker {
    struct service *svc;
    struct store *store;        /* this thread's own connection */
};

#endif
