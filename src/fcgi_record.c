#include "fcgi_record.h"

#include <fastcgi.h>

#define RECORD_MAX 65535

static void header(struct buf *out, int type, int request_id, size_t len)
{
    unsigned char h[FCGI_HEADER_LEN] = {
        FCGI_VERSION_1, (unsigned char)type,
        (unsigned char)(request_id >> 8), (unsigned char)request_id,
        (unsigned char)(len >> 8), (unsigned char)len,
        0, 0,
    };
    buf_append(out, h, sizeof h);
}

void fcgi_stdout(struct buf *out, int request_id, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        size_t n = len > RECORD_MAX ? RECORD_MAX : len;
        header(out, FCGI_STDOUT, request_id, n);
        buf_append(out, p, n);
        p += n;
        len -= n;
    }
}

void fcgi_end_request(struct buf *out, int request_id)
{
    header(out, FCGI_STDOUT, request_id, 0);
    header(out, FCGI_END_REQUEST, request_id, 8);
    static const unsigned char body[8] = {0, 0, 0, 0, FCGI_REQUEST_COMPLETE, 0, 0, 0};
    buf_append(out, body, sizeof body);
}
