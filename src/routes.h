/* The REST API of SPEC section 2: routing a request on the path of
 * REQUEST_URI, checking method, token and CORS, calling its handler, and
 * answering with the handler's result or its one JSON error. */
#ifndef ORDERS_ROUTES_H
#define ORDERS_ROUTES_H

#include <fcgiapp.h>

#include "service.h"

/* Serves one accepted request completely (the stream route keeps it open
 * until the stream ends). */
void routes_handle(struct worker *w, FCGX_Request *req);

#endif
