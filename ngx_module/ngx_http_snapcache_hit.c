
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: serving a record.  A lookup copies the record out of the
 * map into the request pool inside its read transaction, and checks it;
 * everything sent is that copy (or a fill's output), never a pointer
 * into the map.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


static ngx_table_elt_t *ngx_http_snapcache_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
static void *ngx_http_snapcache_body_alloc(void *data, size_t size);
static void ngx_http_snapcache_body_free(void *data);




/*
 * Exact-key lookup; the record is copied into the request pool inside
 * the read transaction.  An expired record is kept aside as the STALE
 * fallback and reported as a miss, with the purge generations read
 * before it: a purge that begins later rules it out.  A record from
 * before a cold start (ngx_http_snapcache_not_before()) is a miss,
 * stale fallback included.
 */
ngx_int_t
ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec)
{
    int                       rc;
    snapcache_key_t           key;
    ngx_http_snapcache_gen_t  gen;

    snapcache_cache_key(&ctx->ident, variant, format, &key);

    ngx_http_snapcache_gen_read(ctx->smcf, ctx->ident.acct_tag,
                                ctx->ident.dev_tag, &gen);

    rc = snapcache_cache_get(ctx->smcf->store, &key, &ctx->ident,
                             (int64_t) ngx_time(),
                             SNAPCACHE_GET_STALE | SNAPCACHE_GET_KEEP_BAD
                             | SNAPCACHE_GET_LOOP, rec,
                             ngx_http_snapcache_body_alloc, r->pool);

    if ((rc == SNAPCACHE_CACHE_HIT || rc == SNAPCACHE_CACHE_EXPIRED)
        && rec->created
           <= (int64_t) ngx_http_snapcache_not_before(ctx->smcf))
    {
        return SNAPCACHE_CACHE_MISS;
    }

    switch (rc) {

    case SNAPCACHE_CACHE_HIT:
        return rc;

    case SNAPCACHE_CACHE_EXPIRED:
        if (variant == ctx->variant && format == ctx->format) {
            ctx->stale = *rec;
            ctx->stale_gen = gen;
            ctx->has_stale = 1;
        }

        return rc;

    case SNAPCACHE_CACHE_DAMAGED:
        ngx_http_snapcache_store_damaged(ctx->smcf, r->connection->log);
        return rc;

    case SNAPCACHE_CACHE_FOREIGN:
    case SNAPCACHE_CACHE_CORRUPT:
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_CORRUPT,
                                    1);
        ngx_http_snapcache_count_bad(ctx->smcf,
                                     rc == SNAPCACHE_CACHE_FOREIGN);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: %s record, treated as a miss; "
                      "the fill replaces it",
                      snapcache_cache_strerror(rc));
        return rc;

    default:
        return rc;
    }
}


/* A record's body was copied into the request pool by the lookup. */
ngx_int_t
ngx_http_snapcache_send_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status)
{
    ctx->body_in_pool = 1;

    return ngx_http_snapcache_send_body(r, ctx, rec->body, rec->body_len,
                                        rec->format, rec->expires,
                                        rec->checksum, status);
}


ngx_int_t
ngx_http_snapcache_send_body(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *body, size_t len,
    ngx_uint_t format, time_t expires, uint32_t etag_sum,
    ngx_http_snapcache_status_e status)
{
    u_char           *p;
    time_t            age;
    ngx_int_t         rc;
    ngx_str_t         v;
    ngx_buf_t        *b;
    const char       *mime;
    ngx_chain_t       out;
    ngx_table_elt_t  *etag;

    if (ctx->peer) {
        return ngx_http_snapcache_peer_send(r, ctx, body, len, format,
                                            expires, status);
    }

    ngx_http_snapcache_set_status(r, status);
    ngx_http_snapcache_count_served(ctx->smcf, &ctx->sreq->variant->name,
                                    ctx->adapt_reason);

    mime = snapcache_format_mime(format);
    if (mime == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    age = expires - ngx_time();
    if (age < 0 || status == NGX_HTTP_SNAPCACHE_STALE) {
        age = 0;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) mime;
    r->headers_out.content_type.len = ngx_strlen(mime);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    p = ngx_pnalloc(r->pool, sizeof("private, max-age=") + NGX_TIME_T_LEN
                             + sizeof("\"-\"") + 2 * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "private, max-age=%T", age) - p;

    if (ngx_http_snapcache_add_header(r, "Cache-Control", &v) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* checksum and length of the exact bytes: stable across refills */
    p += v.len;
    v.data = p;
    v.len = ngx_sprintf(p, "\"%08xD-%xz\"", etag_sum, len) - p;

    etag = ngx_http_snapcache_add_header(r, "ETag", &v);
    if (etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.etag = etag;

    /* with adaptation, hints can change the rung; the link is private */
    if (ctx->slcf->adapt) {
        ngx_str_set(&v, "Accept, Save-Data, ECT, Downlink, RTT");

    } else {
        ngx_str_set(&v, "Accept, Save-Data");
    }

    if (ngx_http_snapcache_add_header(r, "Vary", &v) == NULL
        || ngx_http_snapcache_add_header(r, "X-Snapcache",
                                      ngx_http_snapcache_status_name(status))
           == NULL
        || ngx_http_snapcache_add_header(r, "X-Snapcache-Variant",
                                         &ctx->sreq->variant->name)
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->slcf->adapt) {
        v.data = (u_char *) snapcache_adapt_reason_name(ctx->adapt_reason);
        v.len = ngx_strlen(v.data);

        if (ngx_http_snapcache_add_header(r, "X-Snapcache-Adapt", &v) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len) {
        if (ctx->body_in_pool) {
            b->start = body;

        } else {
            /* the task's output dies with the task: keep a copy */
            b->start = ngx_pnalloc(r->pool, len);
            if (b->start == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(b->start, body, len);
        }

        b->pos = b->start;
        b->last = b->start + len;
        b->end = b->last;
        b->memory = 1;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    ngx_http_snapcache_link_sending(r, ctx);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    if (rc != NGX_ERROR) {
        ngx_http_snapcache_link_sent(r, ctx, len);
    }

    return rc;
}


/*
 * AVIF, then WebP, when the client accepts it, the variant enables it
 * and this build can encode it; JPEG otherwise.
 */
ngx_uint_t
ngx_http_snapcache_format(ngx_http_request_t *r,
    ngx_http_snapcache_variant_t *variant)
{
    unsigned          allowed;
    ngx_table_elt_t  *accept;

    accept = r->headers_in.accept;

    allowed = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)
              | (variant->formats & snapcache_transcode_formats());

    return snapcache_adapt_format(accept ? (const char *) accept->value.data
                                         : NULL,
                                  accept ? accept->value.len : 0, allowed);
}


static ngx_table_elt_t *
ngx_http_snapcache_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return h;
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


static void *
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
