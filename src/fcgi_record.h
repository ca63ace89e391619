/* FastCGI records (spec sections 3.3 and 5.5), for the streams that the hub
 * writes itself after libfcgi has accepted them. Pure logic. */
#ifndef ORDERS_FCGI_RECORD_H
#define ORDERS_FCGI_RECORD_H

#include <stddef.h>

#include "buf.h"

/* Appends len bytes of response as FCGI_STDOUT records (as many as needed:
 * one record carries at most 65535 bytes). */
void fcgi_stdout(struct buf *out, int request_id, const void *data, size_t len);

/* Appends the end of a response: an empty FCGI_STDOUT record and an
 * FCGI_END_REQUEST record with status 0, FCGI_REQUEST_COMPLETE. */
void fcgi_end_request(struct buf *out, int request_id);

#endif
