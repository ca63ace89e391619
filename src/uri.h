/* Taking apart REQUEST_URI: the path the service routes on and the query
 * parameters. Pure logic, unit-tested. */
#ifndef ORDERS_URI_H
#define ORDERS_URI_H

#include <stddef.h>

/* The value of one hexadecimal digit, or -1. */
int hex_value(char c);

/* Percent-decodes len bytes of s into a new string (with '+' as space when
 * plus_is_space). Returns NULL on a bad escape or a %00, and on no memory.
 * The caller frees the result. */
char *uri_decode(const char *s, size_t len, int plus_is_space);

/* Looks for the first parameter called name in a query string (the part
 * after '?', without it). Returns 1 and a decoded copy in *value (caller
 * frees), 0 when absent, -1 when its value is badly encoded. */
int uri_query_param(const char *query, const char *name, char **value);

/* Finds the route path in a REQUEST_URI: the part after "/api/v1", up to the
 * query. Returns its length and points *path at it, or -1 when the URI does
 * not hold the API prefix. *query is set to the query string or "". */
int uri_route(const char *request_uri, const char **path, const char **query);

#endif
