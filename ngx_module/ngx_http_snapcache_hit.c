
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: a lookup, and a client's answer.  A lookup copies the
 * record out of the map into the request pool inside its read
 * transaction, and checks it; everything sent is that copy, a memory
 * tier's entry made of such a copy, or a fill's output, never a pointer
 * into the map.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


/*
 * Exact-key lookup: a rung from the memory tier when it holds one this
 * request may have (ngx_http_snapcache_memory.c), else from the store,
 * where the record is copied into the request pool inside the read
 * transaction and checked, and then offered to the tier with the purge
 * generations read before that read.  An expired record is kept aside
 * as the STALE fallback and reported as a miss, with those generations:
 * a purge that begins later rules it out.  A record from before a cold
 * start (ngx_http_snapcache_not_before()) is a miss, stale fallback
 * included.
 */
ngx_int_t
ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec)
{
    int                       rc;
    ngx_uint_t                tier;
    snapcache_key_t           key;
    ngx_http_snapcache_gen_t  gen;

    snapcache_cache_key(&ctx->ident, variant, format, &key);

    ctx->memory.body = NULL;

    tier = ctx->slcf->memory && variant != SNAPCACHE_VARIANT_ORIGINAL;

    if (tier
        && ngx_http_snapcache_memory_get(r, ctx->smcf, &key, &ctx->ident, rec,
                                         &ctx->memory)
           == NGX_OK)
    {
        return SNAPCACHE_CACHE_HIT;
    }

    /* before the read: what the memory tier checks its entry against */
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
        if (tier) {
            ngx_http_snapcache_memory_admit(ctx->smcf, &key, &ctx->ident, rec,
                                            &gen);
        }

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


/*
 * A record the lookup copied into the request pool, or the memory
 * tier's entry it found, answered.
 */
ngx_int_t
ngx_http_snapcache_answer_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status)
{
    ngx_http_snapcache_image_t  image;

    if (rec->body != NULL && rec->body == ctx->memory.body) {
        /* the memory tier's entry: its ETag is made, its pages in a file */
        return ctx->answer(r, ctx, &ctx->memory, status);
    }

    ngx_memzero(&image, sizeof(ngx_http_snapcache_image_t));
    image.body = rec->body;
    image.len = rec->body_len;
    image.format = rec->format;
    image.expires = rec->expires;
    image.checksum = rec->checksum;
    image.in_pool = 1;

    return ctx->answer(r, ctx, &image, status);
}


/*
 * A client's answer: the image with a strong ETag, Vary, the rung and
 * why it was chosen, and its delivery watched for the client's link.
 */
ngx_int_t
ngx_http_snapcache_answer_client(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_image_t *image,
    ngx_http_snapcache_status_e status)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_str_t         v;
    ngx_table_elt_t  *etag;

    ctx->status = status;
    ctx->miss_end = ctx->miss_start ? ngx_http_snapcache_usec() : 0;
    ngx_http_snapcache_count_served(ctx->smcf, &ctx->req.variant->name,
                                    ctx->adapt_reason);

    rc = ngx_http_snapcache_reply_image(r, image, status);
    if (rc != NGX_OK) {
        return rc;
    }

    /* checksum and length of the exact bytes: stable across refills */
    if (image->etag.len) {
        v = image->etag;

    } else {
        p = ngx_pnalloc(r->pool, NGX_HTTP_SNAPCACHE_ETAG_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v.data = p;
        v.len = ngx_http_snapcache_etag(p, image->checksum, image->len) - p;
    }

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
        || ngx_http_snapcache_add_header(r, "X-Snapcache-Variant",
                                         &ctx->req.variant->name)
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

    ngx_http_snapcache_watch_sending(r, ctx);

    rc = ngx_http_snapcache_reply_body(r, image);

    if (rc != NGX_ERROR && !r->header_only) {
        ngx_http_snapcache_watch_sent(r, ctx, image->len);
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
