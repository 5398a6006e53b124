
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: a request's ctx.  Every request an entry takes gets one
 * first, refused or not: the request writes into it as it goes, and the
 * log phase and the variables read it.  An internal redirect clears
 * every module's ctx; a pool cleanup that holds it finds it again, as
 * the realip module finds its own.
 */


#include "ngx_module/ngx_http_snapcache.h"


static void ngx_http_snapcache_ctx_cleanup(void *data);


ngx_http_snapcache_ctx_t *
ngx_http_snapcache_ctx_create(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->slcf = slcf;
    ctx->smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);
    ctx->keep_original = slcf->keep_original;

    cln->handler = ngx_http_snapcache_ctx_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_snapcache_module);

    return ctx;
}


ngx_http_snapcache_ctx_t *
ngx_http_snapcache_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_snapcache_ctx_cleanup) {
                ctx = cln->data;
                break;
            }
        }
    }

    return ctx;
}


/* Only a mark for ngx_http_snapcache_get_ctx(): the ctx is in the pool. */
static void
ngx_http_snapcache_ctx_cleanup(void *data)
{
}


/* The identity of the verified ids: the store's keyed tags and digest. */
ngx_int_t
ngx_http_snapcache_ident(ngx_http_request_t *r, ngx_http_snapcache_ctx_t *ctx)
{
    snapcache_url_t  *url;

    url = &ctx->req.url;

    if (snapcache_cache_ident(ctx->smcf->store, url->account.data,
                              url->account.len, url->device.data,
                              url->device.len, url->snapshot.data,
                              url->snapshot.len, &ctx->ident)
        != SNAPCACHE_CACHE_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
