
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the origin fetch.  A subrequest to the snapcache_origin
 * location, built from the verified ids only; this module's filters
 * collect its status, headers and body into one buffer, bounded by the
 * size limit, and nothing of it reaches the client.  The module is an
 * HTTP_AUX_FILTER, so its body filter sits after the copy filter, and
 * filter_need_in_memory makes nginx read a body that the proxy
 * buffered to a temp file back into memory.
 */


#include "ngx_module/ngx_http_snapcache.h"


/*
 * How long after a purge of an account or device this node's fills ask
 * the owner for a fresh copy from the camera cloud: longer than a purge
 * takes to reach every node.
 */
#define NGX_HTTP_SNAPCACHE_FRESH_SECONDS  60


static ngx_int_t ngx_http_snapcache_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_snapcache_origin_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_snapcache_origin_resume(ngx_http_request_t *r);
static ngx_uint_t ngx_http_snapcache_check_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static time_t ngx_http_snapcache_max_age(ngx_http_request_t *r);
static time_t ngx_http_snapcache_ttl(ngx_http_snapcache_loc_conf_t *slcf,
    time_t max_age);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* The filters that collect an origin subrequest's answer. */
ngx_int_t
ngx_http_snapcache_origin_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_snapcache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_snapcache_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_snapcache_fetch_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_fetched_pt fetched)
{
    u_char                      *p;
    ngx_str_t                    uri;
    ngx_table_elt_t             *h;
    ngx_http_request_t          *sr;
    snapcache_url_t             *url;
    ngx_http_post_subrequest_t  *ps;
    ngx_http_snapcache_ctx_t    *sctx;

    url = &ctx->req.url;

    uri.len = ctx->slcf->origin.len + 3 + url->account.len + url->device.len
              + url->snapshot.len;

    uri.data = ngx_pnalloc(r->pool, uri.len);
    if (uri.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(uri.data, ctx->slcf->origin.data, ctx->slcf->origin.len);
    *p++ = '/';
    p = ngx_cpymem(p, url->account.data, url->account.len);
    *p++ = '/';
    p = ngx_cpymem(p, url->device.data, url->device.len);
    *p++ = '/';
    ngx_memcpy(p, url->snapshot.data, url->snapshot.len);

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ps->handler = ngx_http_snapcache_origin_done;
    ps->data = ctx;

    if (ngx_http_subrequest(r, &uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_snapcache_origin_headers(r, sr, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * This node purged the scope a moment ago; the owner may not have
     * had that purge yet, and its kept copy, or a fill it began before,
     * may be from before it.  The camera cloud changed before the purge
     * was sent, so a fetch that begins now is not.
     */
    if (ctx->slcf->origin_peers
        && ngx_http_snapcache_purged_within(ctx->smcf, ctx->ident.acct_tag,
                                            ctx->ident.dev_tag,
                                            NGX_HTTP_SNAPCACHE_FRESH_SECONDS))
    {
        h = ngx_list_push(&sr->headers_in.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "X-Snapcache-Fresh");
        ngx_str_set(&h->value, "1");
        h->lowcase_key = (u_char *) "x-snapcache-fresh";
    }

    /* the subrequest's ctx marks it for our filters to collect */
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_ctx_t));
    if (sctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sctx->origin = ctx;
    ngx_http_set_ctx(sr, sctx, ngx_http_snapcache_module);

    /* a body the proxy buffered to a temp file is read back for us */
    sr->filter_need_in_memory = 1;

    ctx->sr = sr;
    ctx->fetched = fetched;
    ctx->origin_len = 0;
    ctx->origin_status = 0;
    ctx->origin_start = ngx_http_snapcache_usec();

    ngx_http_snapcache_stat_add(ctx->smcf,
                                NGX_HTTP_SNAPCACHE_ST_ORIGIN_FETCHES, 1);

    return NGX_DONE;
}


/*
 * The origin request carries only what this module decides: the
 * verified ids in its URI, the image formats we decode, and the client
 * headers the operator named in snapcache_origin_pass_header (none by
 * default).  Nothing else of the client's request travels on: no
 * X-Original-URL for a framework to honour, no credentials, no
 * conditions or ranges, and no body or Content-Length.  dst may be the
 * request whose headers src are (an internal redirect without a store).
 * A snapcache location whose snapcache_origin is marked "peers" fetches
 * from the cluster's peers and presents the cluster token; no other
 * origin ever gets it, and a peer endpoint's own fetches (from the
 * camera cloud) never carry it, nor a peer's Authorization.
 */
ngx_int_t
ngx_http_snapcache_origin_headers(ngx_http_request_t *r,
    ngx_http_request_t *dst, ngx_http_snapcache_ctx_t *ctx)
{
    ngx_str_t                      *name;
    ngx_uint_t                      i, n;
    ngx_list_t                      src;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h, *nh;
    ngx_http_snapcache_loc_conf_t  *slcf;

    slcf = ctx->slcf;

    src = r->headers_in.headers;

    ngx_memzero(&dst->headers_in, sizeof(ngx_http_headers_in_t));

    if (ngx_list_init(&dst->headers_in.headers, r->pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    dst->headers_in.content_length_n = -1;
    dst->headers_in.keep_alive_n = -1;
    dst->request_body = NULL;

    nh = ngx_list_push(&dst->headers_in.headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    nh->hash = 1;
    ngx_str_set(&nh->key, "Accept");
    ngx_str_set(&nh->value, "image/jpeg, image/png, image/webp");
    nh->lowcase_key = (u_char *) "accept";

    if (slcf->origin_peers) {
        nh = ngx_list_push(&dst->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        nh->hash = 1;
        ngx_str_set(&nh->key, "Authorization");
        nh->value = slcf->cluster_bearer;
        nh->lowcase_key = (u_char *) "authorization";
    }

    if (slcf->origin_pass_headers == NULL) {
        return NGX_OK;
    }

    name = slcf->origin_pass_headers->elts;

    for (n = 0; n < slcf->origin_pass_headers->nelts; n++) {

        part = &src.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len != name[n].len
                || ngx_strncasecmp(h[i].key.data, name[n].data,
                                   name[n].len) != 0
                || (ctx->from_peer
                    && h[i].key.len == sizeof("Authorization") - 1
                    && ngx_strncasecmp(h[i].key.data,
                                       (u_char *) "Authorization",
                                       h[i].key.len) == 0))
            {
                continue;
            }

            nh = ngx_list_push(&dst->headers_in.headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }
    }

    return NGX_OK;
}


/* Collects the origin's status and headers; nothing reaches the client. */
static ngx_int_t
ngx_http_snapcache_header_filter(ngx_http_request_t *r)
{
    ngx_http_snapcache_ctx_t  *sctx, *ctx;

    sctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    if (r == r->main || sctx == NULL || sctx->origin == NULL) {
        return ngx_http_next_header_filter(r);
    }

    ctx = sctx->origin;

    ctx->origin_status = r->headers_out.status;
    ctx->origin_clen = r->headers_out.content_length_n;
    ctx->origin_max_age = ngx_http_snapcache_max_age(r);

    if (ctx->origin_status == NGX_HTTP_OK
        && ctx->origin_clen > (off_t) ctx->slcf->max_original_size)
    {
        ctx->origin_too_big = 1;
    }

    r->header_sent = 1;

    return NGX_OK;
}


/* Copies the origin's body into one buffer, bounded by the size limit. */
static ngx_int_t
ngx_http_snapcache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                     n;
    u_char                    *p;
    ngx_chain_t               *cl;
    ngx_http_snapcache_ctx_t  *sctx, *ctx;

    sctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    if (r == r->main || sctx == NULL || sctx->origin == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = sctx->origin;

    for (cl = in; cl; cl = cl->next) {

        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            ctx->origin_complete = 1;
        }

        if (ngx_buf_special(cl->buf) || ctx->origin_too_big
            || ctx->origin_status != NGX_HTTP_OK)
        {
            cl->buf->pos = cl->buf->last;
            continue;
        }

        if (!ngx_buf_in_memory(cl->buf)) {
            /* the copy filter should have read it: refuse, never guess */
            ctx->origin_in_file = 1;
            cl->buf->file_pos = cl->buf->file_last;
            continue;
        }

        n = cl->buf->last - cl->buf->pos;

        if (ctx->origin_len + n > ctx->slcf->max_original_size) {
            ctx->origin_too_big = 1;
            cl->buf->pos = cl->buf->last;
            continue;
        }

        if (ctx->origin_len + n > ctx->origin_cap) {
            size_t  cap;

            cap = ngx_max(ctx->origin_cap * 2, 64 * 1024);

            if (ctx->origin_clen > 0
                && (size_t) ctx->origin_clen >= ctx->origin_len + n)
            {
                cap = ngx_max(cap, (size_t) ctx->origin_clen);
            }

            cap = ngx_max(cap, ctx->origin_len + n);
            cap = ngx_min(cap, ctx->slcf->max_original_size);

            p = ngx_palloc(ctx->request->pool, cap);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (ctx->origin_len) {
                ngx_memcpy(p, ctx->origin_buf, ctx->origin_len);
            }

            ctx->origin_buf = p;
            ctx->origin_cap = cap;
        }

        ngx_memcpy(ctx->origin_buf + ctx->origin_len, cl->buf->pos, n);
        ctx->origin_len += n;
        cl->buf->pos = cl->buf->last;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_origin_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_snapcache_ctx_t *ctx = data;

    ctx->origin_rc = rc;
    ctx->origin_finished = 1;

    ctx->request->write_event_handler = ngx_http_snapcache_origin_resume;

    return rc;
}


static void
ngx_http_snapcache_origin_resume(ngx_http_request_t *r)
{
    ngx_uint_t                 status;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    r->write_event_handler = ngx_http_request_empty_handler;

    status = ngx_http_snapcache_check_origin(r, ctx);

    ngx_http_snapcache_count_origin(ctx->smcf, ctx->origin_status,
                                    status == NGX_HTTP_OK, ctx->origin_start);

    if (status == NGX_HTTP_OK) {
        ctx->origin_expires = ngx_time()
                              + ngx_http_snapcache_ttl(ctx->slcf,
                                                       ctx->origin_max_age);
    }

    ctx->fetched(r, ctx, status);
}


/*
 * Only a complete 200 within the size limit is an original; a 404 is
 * passed on, a timeout is a 504, anything else a 502.  The reason is
 * logged, ids are not.
 */
static ngx_uint_t
ngx_http_snapcache_check_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    const char  *why;
    ngx_uint_t   status, level;

    status = NGX_HTTP_BAD_GATEWAY;

    if (ctx->origin_status == NGX_HTTP_NOT_FOUND) {
        why = "the origin answered 404";
        status = NGX_HTTP_NOT_FOUND;

    } else if (ctx->origin_status == NGX_HTTP_GATEWAY_TIME_OUT) {
        why = "the origin timed out";
        status = NGX_HTTP_GATEWAY_TIME_OUT;

    } else if (ctx->origin_status != NGX_HTTP_OK) {
        why = "the origin answered with a status other than 200";

    } else if (ctx->origin_too_big) {
        why = "the original exceeds snapcache_max_original_size";

    } else if (ctx->origin_in_file) {
        why = "the origin body could not be read into memory";

    } else if (ctx->origin_rc != NGX_OK || !ctx->origin_complete
               || r->connection->error)
    {
        why = "the origin response is incomplete";

    } else if (ctx->origin_clen >= 0
               && (off_t) ctx->origin_len != ctx->origin_clen)
    {
        why = "the origin body is shorter than its Content-Length";

    } else if (ctx->origin_len == 0) {
        why = "the origin body is empty";

    } else {
        return NGX_HTTP_OK;
    }

    level = (status == NGX_HTTP_NOT_FOUND) ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, r->connection->log, 0,
                  "snapcache: fill failed: %s (status %ui), nothing cached",
                  why, ctx->origin_status);

    return status;
}


/* The origin's Cache-Control max-age, or -1 when it sent none. */
static time_t
ngx_http_snapcache_max_age(ngx_http_request_t *r)
{
    u_char           *p, *last;
    time_t            n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return -1;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               h[i].key.len) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        if (ngx_strlcasestrn(p, last, (u_char *) "no-store", 8 - 1)
            || ngx_strlcasestrn(p, last, (u_char *) "no-cache", 8 - 1))
        {
            return 0;
        }

        p = ngx_strlcasestrn(p, last, (u_char *) "max-age=", 8 - 1);
        if (p == NULL) {
            continue;
        }

        p += 8;
        n = 0;

        while (p < last && *p >= '0' && *p <= '9' && n < 100000000) {
            n = n * 10 + (*p++ - '0');
        }

        return n;
    }
}


static time_t
ngx_http_snapcache_ttl(ngx_http_snapcache_loc_conf_t *slcf, time_t max_age)
{
    time_t  ttl;

    ttl = max_age >= 0 ? max_age : slcf->ttl;

    return ngx_max(slcf->ttl_min, ngx_min(ttl, slcf->ttl_max));
}
