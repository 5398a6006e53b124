
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: responses, for every entry alike.  An image (its type,
 * length and private lifetime; each entry adds its own headers), a
 * one-word error in text for clients and peers, a JSON error for the
 * admin API, and the buffers record bodies are copied into.  Nothing
 * here decides what to answer, only how it goes out.
 */


#include "ngx_module/ngx_http_snapcache.h"


static ngx_uint_t ngx_http_snapcache_can_sendfile(ngx_http_request_t *r);
static void ngx_http_snapcache_body_free(void *data);


/*
 * The headers every image answer has: 200, its type and length, and
 * Cache-Control private with its remaining lifetime (0 for a stale
 * copy), never public: a shared cache must not keep one household's
 * camera for another.
 */
ngx_int_t
ngx_http_snapcache_reply_image(ngx_http_request_t *r,
    ngx_http_snapcache_image_t *image, ngx_http_snapcache_status_e status)
{
    u_char      *p;
    time_t       age;
    ngx_str_t    v;
    const char  *mime;

    mime = snapcache_format_mime(image->format);
    if (mime == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    age = image->expires - ngx_time();
    if (age < 0 || status == NGX_HTTP_SNAPCACHE_STALE) {
        age = 0;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = image->len;
    r->headers_out.content_type.data = (u_char *) mime;
    r->headers_out.content_type.len = ngx_strlen(mime);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    p = ngx_pnalloc(r->pool, sizeof("private, max-age=") + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "private, max-age=%T", age) - p;

    if (ngx_http_snapcache_add_header(r, "Cache-Control", &v) == NULL
        || ngx_http_snapcache_add_header(r, "X-Snapcache",
                                      ngx_http_snapcache_status_name(status))
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * A plain connection that sends files with sendfile(), for a request no
 * filter needs in memory: a body that is also in a file (the memory
 * tier's) goes from the file's pages, with no copy.  TLS (without kernel
 * TLS) and HTTP/2 send it from memory.
 */
static ngx_uint_t
ngx_http_snapcache_can_sendfile(ngx_http_request_t *r)
{
    if (!r->connection->sendfile || r->main_filter_need_in_memory
        || r->filter_need_in_memory || r->connection->ssl)
    {
        return 0;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    return 1;
}


/*
 * The header, then the body.  A body that is not in the request's pool
 * (a fill's output dies with its task) is copied there first; nothing
 * sent ever points into the store's map.  A body that is also in a file
 * and large enough for sendfile() to beat a copy goes from the file.
 */
ngx_int_t
ngx_http_snapcache_reply_body(ngx_http_request_t *r,
    ngx_http_snapcache_image_t *image)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (image->len) {
        if (image->in_pool) {
            b->start = image->body;

        } else {
            b->start = ngx_pnalloc(r->pool, image->len);
            if (b->start == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(b->start, image->body, image->len);
        }

        b->pos = b->start;
        b->last = b->start + image->len;
        b->end = b->last;
        b->memory = 1;

        if (image->file && image->len >= NGX_HTTP_SNAPCACHE_SENDFILE_MIN
            && ngx_http_snapcache_can_sendfile(r))
        {
            /* the same bytes in a file: sendfile() sends its pages */
            b->in_file = 1;
            b->file = image->file;
            b->file_pos = image->file_pos;
            b->file_last = image->file_pos + image->len;
        }
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A strong ETag of the exact bytes, from their checksum and length:
 * stable across refills, and the same from the store as from the memory
 * tier.  p has room for NGX_HTTP_SNAPCACHE_ETAG_LEN.
 */
u_char *
ngx_http_snapcache_etag(u_char *p, uint32_t checksum, size_t len)
{
    return ngx_sprintf(p, "\"%08xD-%xz\"", checksum, len);
}


/*
 * "reason\n" in text: the one word a client or a peer is told (the body
 * never echoes what it sent).  A 405 says what is allowed, a 401 how to
 * authenticate.
 */
ngx_int_t
ngx_http_snapcache_reply_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     v;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    len = ngx_strlen(reason);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, reason, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&v, "GET, HEAD");

        if (ngx_http_snapcache_add_header(r, "Allow", &v) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_str_set(&v, "Bearer");

        if (ngx_http_snapcache_add_header(r, "WWW-Authenticate", &v) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_snapcache_reply_send(r, status, "text/plain", &out,
                                         len + 1);
}


/* {"error": "..."}: the reason is ours, never an echo of the input. */
ngx_int_t
ngx_http_snapcache_reply_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     v;
    ngx_chain_t   out;

    if (!r->request_body) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    b = ngx_create_temp_buf(r->pool, 2 * ngx_strlen(error)
                                     + sizeof("{\"error\":\"\"}\n"));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"error\":\"", sizeof("{\"error\":\"") - 1);

    for ( /* void */ ; *error; error++) {
        if (*error == '"' || *error == '\\') {
            *p++ = '\\';
        }

        *p++ = *error;
    }

    b->last = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_str_set(&v, "Bearer");

        if (ngx_http_snapcache_add_header(r, "WWW-Authenticate", &v) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_snapcache_reply_send(r, status, "application/json", &out,
                                         b->last - b->pos);
}


/* A status, a type and a body that is not an image: never cached. */
ngx_int_t
ngx_http_snapcache_reply_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_chain_t *out, off_t len)
{
    ngx_int_t  rc;
    ngx_str_t  v;

    ngx_str_set(&v, "no-store");

    if (ngx_http_snapcache_add_header(r, "Cache-Control", &v) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    ngx_http_clear_last_modified(r);
    ngx_http_clear_accept_ranges(r);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * Record bodies are copied out of the map into buffers that this worker
 * keeps for the next request once the request's pool goes (after its
 * last byte was sent), rather than a malloc() and free() per hit.  They
 * come in power-of-two classes from 4k to 4m, a few of each, and at
 * most NGX_HTTP_SNAPCACHE_BODY_KEEP bytes are kept.
 */

#define NGX_HTTP_SNAPCACHE_BODY_MIN     12        /* 4k */
#define NGX_HTTP_SNAPCACHE_BODY_CLASSES 11        /* to 4m */
#define NGX_HTTP_SNAPCACHE_BODY_PER     8
#define NGX_HTTP_SNAPCACHE_BODY_KEEP    (16 * 1024 * 1024)


typedef struct ngx_http_snapcache_body_s  ngx_http_snapcache_body_t;

struct ngx_http_snapcache_body_s {
    ngx_http_snapcache_body_t  *next;
    ngx_uint_t                  cls;
};


static ngx_http_snapcache_body_t  *ngx_http_snapcache_bodies[
                                       NGX_HTTP_SNAPCACHE_BODY_CLASSES];
static ngx_uint_t  ngx_http_snapcache_bodies_n[
                       NGX_HTTP_SNAPCACHE_BODY_CLASSES];
static size_t      ngx_http_snapcache_bodies_kept;


/* cache/'s snapcache_alloc_pt, with the request's pool as data */
void *
ngx_http_snapcache_body_alloc(void *data, size_t size)
{
    ngx_pool_t *pool = data;

    ngx_uint_t                  cls;
    ngx_pool_cleanup_t         *cln;
    ngx_http_snapcache_body_t  *b;

    for (cls = 0; cls < NGX_HTTP_SNAPCACHE_BODY_CLASSES; cls++) {
        if (size + sizeof(ngx_http_snapcache_body_t)
            <= (size_t) 1 << (NGX_HTTP_SNAPCACHE_BODY_MIN + cls))
        {
            break;
        }
    }

    if (cls == NGX_HTTP_SNAPCACHE_BODY_CLASSES) {
        return ngx_pnalloc(pool, size ? size : 1);
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    b = ngx_http_snapcache_bodies[cls];

    if (b) {
        ngx_http_snapcache_bodies[cls] = b->next;
        ngx_http_snapcache_bodies_n[cls]--;
        ngx_http_snapcache_bodies_kept -=
            (size_t) 1 << (NGX_HTTP_SNAPCACHE_BODY_MIN + cls);

    } else {
        b = ngx_alloc((size_t) 1 << (NGX_HTTP_SNAPCACHE_BODY_MIN + cls),
                      pool->log);
        if (b == NULL) {
            return NULL;
        }

        b->cls = cls;
    }

    cln->handler = ngx_http_snapcache_body_free;
    cln->data = b;

    return (u_char *) b + sizeof(ngx_http_snapcache_body_t);
}


static void
ngx_http_snapcache_body_free(void *data)
{
    ngx_http_snapcache_body_t *b = data;

    size_t  size;

    size = (size_t) 1 << (NGX_HTTP_SNAPCACHE_BODY_MIN + b->cls);

    if (ngx_http_snapcache_bodies_n[b->cls] >= NGX_HTTP_SNAPCACHE_BODY_PER
        || ngx_http_snapcache_bodies_kept + size
           > NGX_HTTP_SNAPCACHE_BODY_KEEP)
    {
        ngx_free(b);
        return;
    }

    b->next = ngx_http_snapcache_bodies[b->cls];
    ngx_http_snapcache_bodies[b->cls] = b;
    ngx_http_snapcache_bodies_n[b->cls]++;
    ngx_http_snapcache_bodies_kept += size;
}


/*
 * The kept bodies, at a worker's exit: nginx unloads the module as it
 * exits, and the lists' heads with it, so that they would be lost, not
 * kept.
 */
void
ngx_http_snapcache_free_bodies(void)
{
    ngx_uint_t                  cls;
    ngx_http_snapcache_body_t  *b;

    for (cls = 0; cls < NGX_HTTP_SNAPCACHE_BODY_CLASSES; cls++) {
        while (ngx_http_snapcache_bodies[cls]) {
            b = ngx_http_snapcache_bodies[cls];
            ngx_http_snapcache_bodies[cls] = b->next;
            ngx_free(b);
        }

        ngx_http_snapcache_bodies_n[cls] = 0;
    }

    ngx_http_snapcache_bodies_kept = 0;
}
