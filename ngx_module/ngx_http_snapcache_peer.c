
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the peer endpoint.  In a cluster every node is the same:
 * each verifies, adapts, serves and transcodes for its own clients, and
 * on a miss asks the account's owner node for the original, through an
 * origin location that hashes $snapcache_account over the nodes
 * (nginx's own consistent hash).  A location with snapcache_peer is
 * where the owner answers:
 *
 *   GET <location>A/D/S      the original of (A, D, S)
 *
 * only to callers that present a snapcache_cluster_token (and that the
 * location's allow/deny lets in), from the kept original when the store
 * has it (a remembered 404 answers 404), else by one fill per snapshot
 * across the workers that fetches it from this location's own
 * snapcache_origin, the camera cloud, checks every byte of it on the
 * thread pool, keeps it and answers with it.  So an original costs one
 * camera-cloud fetch per cluster.  The ids are read from the raw request
 * line as strictly as a client's, and a refused request fetches
 * nothing.
 */


#include "ngx_module/ngx_http_snapcache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


static ngx_int_t ngx_http_snapcache_peer_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, snapcache_url_t *url);
static ngx_uint_t ngx_http_snapcache_peer_header(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_http_snapcache_peer_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);


/* What a peer's fill is for: the original, under its own key. */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_peer_variant = {
    ngx_string("original"), 0, 0, 0, SNAPCACHE_VARIANT_ORIGINAL, 0
};


ngx_int_t
ngx_http_snapcache_peer_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_table_elt_t                 *h;
    snapcache_record_t               rec;
    ngx_pool_cleanup_t              *cln;
    ngx_http_snapcache_req_t        *sreq;
    ngx_http_snapcache_ctx_t        *ctx;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    /* the token first: a caller without one learns nothing else */
    if (ngx_http_snapcache_bearer_auth(r, slcf->cluster_tokens, "peer")
        != NGX_OK)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer");

        return ngx_http_snapcache_peer_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                              "unauthorized");
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "GET, HEAD");

        return ngx_http_snapcache_peer_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                              "method");
    }

    sreq = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_req_t));
    if (sreq == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_snapcache_peer_target(r, slcf, &sreq->url) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: peer: rejected request: not "
                      "\"%Vaccount/device/snapshot\" with valid ids",
                      &slcf->prefix);
        return ngx_http_snapcache_peer_refuse(r, NGX_HTTP_BAD_REQUEST,
                                              "malformed");
    }

    if (smcf->store == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: the store is not open in this worker, "
                      "see the error at worker start");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    sreq->variant = &ngx_http_snapcache_peer_variant;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->slcf = slcf;
    ctx->smcf = smcf;
    ctx->sreq = sreq;
    ctx->peer = 1;
    ctx->variant = SNAPCACHE_VARIANT_ORIGINAL;
    ctx->format = SNAPCACHE_FORMAT_ANY;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_snapcache_fill_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_snapcache_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (snapcache_cache_ident(smcf->store, sreq->url.account.data,
                              sreq->url.account.len, sreq->url.device.data,
                              sreq->url.device.len, sreq->url.snapshot.data,
                              sreq->url.snapshot.len, &ctx->ident)
        != SNAPCACHE_CACHE_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_snapcache_set_account(r, &sreq->url.account);
    ngx_http_snapcache_set_variant(r, &ngx_http_snapcache_peer_variant.name);

    /*
     * The asking node purged this scope a moment ago, and this node may
     * not have yet: neither the kept copy nor a fill that began before
     * this request will do, only a fetch that begins now.
     */
    ctx->fresh = ngx_http_snapcache_peer_header(r, "X-Snapcache-Fresh");

    if (!ctx->fresh) {
        rc = ngx_http_snapcache_lookup(r, ctx, SNAPCACHE_VARIANT_ORIGINAL,
                                       SNAPCACHE_FORMAT_ANY, &rec);

        if (rc == SNAPCACHE_CACHE_HIT) {
            return ngx_http_snapcache_send_record(r, ctx, &rec,
                                                  NGX_HTTP_SNAPCACHE_HIT);
        }
    }

    return ngx_http_snapcache_fill(r, ctx);
}


/*
 * "<location>A/D/S" from the raw request line, exactly: three ids of
 * the URL grammar and nothing else, so no escape, dot segment, doubled
 * or trailing slash, parameter or query gets through.
 */
static ngx_int_t
ngx_http_snapcache_peer_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, snapcache_url_t *url)
{
    u_char           *p, *end, *slash;
    ngx_uint_t        i;
    snapcache_str_t  *ids[3];

    ids[0] = &url->account;
    ids[1] = &url->device;
    ids[2] = &url->snapshot;

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    if (r->unparsed_uri.len < slcf->prefix.len
        || ngx_strncmp(p, slcf->prefix.data, slcf->prefix.len) != 0)
    {
        return NGX_DECLINED;
    }

    p += slcf->prefix.len;

    for (i = 0; i < 3; i++) {
        slash = (i < 2) ? ngx_strlchr(p, end, '/') : end;

        if (slash == NULL
            || !snapcache_id_valid((const char *) p, slash - p))
        {
            return NGX_DECLINED;
        }

        ids[i]->data = (const char *) p;
        ids[i]->len = slash - p;

        p = slash + 1;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_snapcache_peer_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return 1;
        }
    }
}


/*
 * The answer to a peer: the original's bytes, its type, and its
 * remaining lifetime as max-age, which the asking node keeps it for
 * (within its own snapcache_ttl_min and snapcache_ttl_max).  A
 * remembered 404 is a 404.
 */
ngx_int_t
ngx_http_snapcache_peer_send(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *body, size_t len,
    ngx_uint_t format, time_t expires, ngx_http_snapcache_status_e status)
{
    u_char           *p;
    time_t            age;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    const char       *mime;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    if (format == SNAPCACHE_FORMAT_ABSENT) {
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
        return ngx_http_snapcache_peer_refuse(r, NGX_HTTP_NOT_FOUND,
                                              "not found");
    }

    mime = snapcache_format_mime(format);
    if (mime == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_snapcache_set_status(r, status);

    age = expires - ngx_time();
    if (age < 0 || status == NGX_HTTP_SNAPCACHE_STALE) {
        age = 0;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) mime;
    r->headers_out.content_type.len = ngx_strlen(mime);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, sizeof("private, max-age=") + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "private, max-age=%T", age) - p;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Snapcache");
    h->value = *ngx_http_snapcache_status_name(status);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len) {
        if (ctx->body_in_pool) {
            b->start = body;

        } else {
            /* a fill's original dies with its task: keep a copy */
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

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_snapcache_peer_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
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
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


