
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the fill, on the event loop.  One fill per snapshot across
 * all workers (a lock in the shared zone; the others wait on it) gets
 * the original from a kept original record or from the origin, hands it
 * to the thread pool (ngx_http_snapcache_task.c), and answers with what
 * comes back, through the entry's answer: a client's rung, or a peer's
 * original.  Nothing here decodes an image or writes to the store.
 */


#include "ngx_module/ngx_http_snapcache.h"


#define NGX_HTTP_SNAPCACHE_WAIT_MSEC  10

/* fills thrown away for a purge before a request gets a 503 */
#define NGX_HTTP_SNAPCACHE_PURGE_RETRIES  3


static ngx_int_t ngx_http_snapcache_try_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_snapcache_start_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_origin_fetched(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status);
static void ngx_http_snapcache_fill_failed(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_snapcache_store_negative(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_negative_done(ngx_event_t *ev);
static ngx_int_t ngx_http_snapcache_pool_full(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t admission);
static void ngx_http_snapcache_uncount(ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    const snapcache_record_t *kept);
static void ngx_http_snapcache_rungs_below(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_task_t *t);
static void ngx_http_snapcache_task_done(ngx_event_t *ev);
static ngx_uint_t ngx_http_snapcache_task_purged(
    ngx_http_snapcache_task_t *t);
static void ngx_http_snapcache_task_account(ngx_http_snapcache_task_t *t,
    ngx_uint_t purged);
static ngx_int_t ngx_http_snapcache_refill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_task_timeout(ngx_event_t *ev);
static void ngx_http_snapcache_fill_cleanup(void *data);
static ngx_uint_t ngx_http_snapcache_still_valid(
    ngx_http_snapcache_main_conf_t *smcf, snapcache_ident_t *ident,
    ngx_http_snapcache_gen_t *gen, ngx_uint_t variant, ngx_uint_t format,
    int64_t created, uint32_t checksum);
static uint64_t ngx_http_snapcache_hash(const u_char *p, size_t len);


/*
 * A miss: the request waits, off the event loop's hands, for a fill of
 * its own or for the one another request started.
 */
ngx_int_t
ngx_http_snapcache_fill(ngx_http_request_t *r, ngx_http_snapcache_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_pool_cleanup_t  *cln;

    ctx->miss_start = ngx_http_snapcache_usec();

    ctx->lock_hash = ngx_http_snapcache_hash(ctx->ident.digest,
                                             sizeof(ctx->ident.digest))
                     ^ ctx->lock_salt;

    /* a request that goes away first detaches its fill */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_snapcache_fill_cleanup;
    cln->data = ctx;

    /* a client that goes away is noticed while we wait or fill */
    r->read_event_handler = ngx_http_test_reading;

    r->main->count++;

    rc = ngx_http_snapcache_try_fill(r, ctx);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    return NGX_DONE;
}


/*
 * Takes the fill lock for this snapshot, or waits on the fill that holds
 * it.  Returns NGX_DONE while something is in flight, or a status to
 * finalize with.
 */
static ngx_int_t
ngx_http_snapcache_try_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->fresh) {
        /* a fresh copy: never from a fill that began earlier */
        return ngx_http_snapcache_start_fill(r, ctx);
    }

    rc = ngx_http_snapcache_lock_acquire(ctx->smcf, ctx->lock_hash,
                                         ctx->slcf->fill_timeout
                                         + ctx->slcf->lock_timeout,
                                         &ctx->fill_id);

    if (rc == NGX_BUSY) {
        if (ctx->wait_deadline == 0) {
            ctx->wait_deadline = ngx_current_msec + ctx->slcf->lock_timeout;
            ngx_http_snapcache_stat_add(ctx->smcf,
                                        NGX_HTTP_SNAPCACHE_ST_COALESCED, 1);
        }

        ctx->wait_event.handler = ngx_http_snapcache_wait_handler;
        ctx->wait_event.data = r;
        ctx->wait_event.log = r->connection->log;

        ngx_add_timer(&ctx->wait_event, NGX_HTTP_SNAPCACHE_WAIT_MSEC);

        return NGX_DONE;
    }

    ctx->lock_held = (rc == NGX_OK);

    return ngx_http_snapcache_start_fill(r, ctx);
}


static void
ngx_http_snapcache_wait_handler(ngx_event_t *ev)
{
    ngx_int_t                  rc;
    ngx_uint_t                 state, status;
    ngx_connection_t          *c;
    snapcache_record_t         rec;
    ngx_http_request_t        *r;
    ngx_http_snapcache_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    status = 0;
    state = ngx_http_snapcache_lock_state(ctx->smcf, ctx->lock_hash,
                                          ctx->fill_id, &status);

    switch (state) {

    case NGX_HTTP_SNAPCACHE_LOCK_FILLING:

        if ((ngx_msec_int_t) (ngx_current_msec - ctx->wait_deadline) < 0) {
            ngx_add_timer(&ctx->wait_event, NGX_HTTP_SNAPCACHE_WAIT_MSEC);
            return;
        }

        /* the fill overran snapcache_lock_timeout: fill, but never store */
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "snapcache: lock timeout, filling without storing");
        ngx_http_snapcache_stat_add(ctx->smcf,
                                    NGX_HTTP_SNAPCACHE_ST_LOCK_TIMEOUTS, 1);
        ctx->no_store = 1;
        rc = ngx_http_snapcache_start_fill(r, ctx);
        break;

    case NGX_HTTP_SNAPCACHE_LOCK_FAILED:
        rc = status ? (ngx_int_t) status : NGX_HTTP_BAD_GATEWAY;
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS,
                                    1);
        ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
        break;

    default:
        /* DONE, or the fill is gone: the record may be there now */
        rc = ngx_http_snapcache_lookup(r, ctx, ctx->variant, ctx->format,
                                       &rec);

        /* a miss in $snapcache_stats already: counted once */
        if (rc == SNAPCACHE_CACHE_HIT) {
            rc = ngx_http_snapcache_answer_record(r, ctx, &rec,
                                                  NGX_HTTP_SNAPCACHE_HIT);
            break;
        }

        rc = ngx_http_snapcache_try_fill(r, ctx);
        break;
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * The fill proper: the kept original when there is one, else the origin.
 * Purge generations are read first, so that a purge during the fill
 * throws the result away at store time.
 */
static ngx_int_t
ngx_http_snapcache_start_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_int_t           rc;
    snapcache_record_t  orig;

    /*
     * Admission: a fill starts only while this worker's fills, from
     * their start to their task's end, are fewer than snapcache_max_fills,
     * so that a burst of misses gets 503s at once rather than origin
     * fetches whose results the pool could not take.
     */
    if (!ctx->counted) {
        if (ctx->smcf->fills >= ctx->slcf->max_fills) {
            return ngx_http_snapcache_pool_full(r, ctx, 1);
        }

        ctx->counted = 1;
        ngx_http_snapcache_fills_change(ctx->smcf, 1);
    }

    ngx_http_snapcache_gen_read(ctx->smcf, ctx->ident.acct_tag,
                                ctx->ident.dev_tag, &ctx->gen);

    if (ctx->fill_start == 0) {
        ctx->fill_start = ngx_http_snapcache_usec();
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_FILLS, 1);

    if ((ctx->keep_original || ctx->slcf->negative_ttl) && !ctx->fresh) {
        rc = ngx_http_snapcache_lookup(r, ctx, SNAPCACHE_VARIANT_ORIGINAL,
                                       SNAPCACHE_FORMAT_ANY, &orig);

        if (rc == SNAPCACHE_CACHE_HIT
            && orig.format == SNAPCACHE_FORMAT_ABSENT)
        {
            /* the origin said 404 a moment ago: it is not asked again */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "snapcache: fill failed: the origin answered 404 "
                          "within snapcache_negative_ttl, not asked again");
            ngx_http_snapcache_stat_add(ctx->smcf,
                                        NGX_HTTP_SNAPCACHE_ST_NEGATIVE, 1);
            ngx_http_snapcache_count_fill(ctx->smcf,
                                          NGX_HTTP_SNAPCACHE_FILL_FAILED,
                                          ctx->fill_start);
            ngx_http_snapcache_fill_failed(r, ctx, NGX_HTTP_NOT_FOUND);
            return NGX_DONE;
        }

        if (rc == SNAPCACHE_CACHE_HIT && ctx->keep_original) {
            ctx->origin_expires = orig.expires;
            return ngx_http_snapcache_post_task(r, ctx, orig.body,
                                                orig.body_len, &orig);
        }
    }

    return ngx_http_snapcache_fetch_origin(r, ctx,
                                           ngx_http_snapcache_origin_fetched);
}


/* The origin fetch ended: fail, or transcode and store its body. */
static void
ngx_http_snapcache_origin_fetched(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status)
{
    ngx_int_t  rc;

    if (status != NGX_HTTP_OK) {
        ngx_http_snapcache_count_fill(ctx->smcf,
                                      NGX_HTTP_SNAPCACHE_FILL_FAILED,
                                      ctx->fill_start);
    }

    if (status == NGX_HTTP_NOT_FOUND && ctx->slcf->negative_ttl
        && ngx_http_snapcache_store_negative(r, ctx) == NGX_DONE)
    {
        /* the 404 is answered once it is remembered */
        return;
    }

    if (status != NGX_HTTP_OK) {
        ngx_http_snapcache_fill_failed(r, ctx, status);
        return;
    }

    rc = ngx_http_snapcache_post_task(r, ctx, ctx->origin_buf,
                                      ctx->origin_len, NULL);
    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Ends a failed fill: waiters get the same status, the client gets it
 * too, unless a stale copy of this very key can stand in: only if it is
 * still in the store, unchanged, and no purge of its account or device
 * moved the generations since it was read.
 */
static void
ngx_http_snapcache_fill_failed(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status)
{
    ngx_int_t  rc;

    ngx_http_snapcache_uncount(ctx);

    if (ctx->lock_held) {
        ngx_http_snapcache_lock_release(ctx->smcf, ctx->lock_hash,
                                        ctx->fill_id,
                                        NGX_HTTP_SNAPCACHE_LOCK_FAILED,
                                        status);
        ctx->lock_held = 0;
    }

    if (ctx->has_stale && status != NGX_HTTP_NOT_FOUND
        && ngx_http_snapcache_still_valid(ctx->smcf, &ctx->ident,
                                          &ctx->stale_gen, ctx->variant,
                                          ctx->format, ctx->stale.created,
                                          ctx->stale.checksum))
    {
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_STALE, 1);
        rc = ngx_http_snapcache_answer_record(r, ctx, &ctx->stale,
                                              NGX_HTTP_SNAPCACHE_STALE);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS, 1);
    ctx->status = NGX_HTTP_SNAPCACHE_ERROR;

    ngx_http_finalize_request(r, status);
}


/*
 * Remembers the origin's 404 for snapcache_negative_ttl, under the
 * snapshot's original key, so that made-up snapshot ids under a device
 * grant cannot turn the cache into an origin amplifier.  It is written
 * on the thread pool like any record, unless a purge came in meanwhile,
 * and the 404 is answered when it is written, so that the next request
 * finds it.  If the pool is busy it is simply not remembered.
 */
static ngx_int_t
ngx_http_snapcache_store_negative(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_http_snapcache_task_t  *t;

    t = ngx_http_snapcache_task_create(ngx_http_snapcache_negative_done);
    if (t == NULL) {
        return NGX_DECLINED;
    }

    t->request = r;
    t->smcf = ctx->smcf;
    t->ident = ctx->ident;
    t->gen = ctx->gen;
    t->expires = ngx_time() + ctx->slcf->negative_ttl;
    t->task->handler = ngx_http_snapcache_task_negative;

    if (ngx_thread_task_post(ctx->slcf->thread_pool, t->task) != NGX_OK) {
        ngx_http_snapcache_task_free(t);
        return NGX_DECLINED;
    }

    ctx->task = t;

    return NGX_DONE;
}


static void
ngx_http_snapcache_negative_done(ngx_event_t *ev)
{
    ngx_http_snapcache_task_t *t = ev->data;

    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_snapcache_ctx_t  *ctx;

    if (t->store_rc == SNAPCACHE_CACHE_DAMAGED) {
        ngx_http_snapcache_store_damaged(t->smcf, t->log);
    }

    r = t->request;
    ngx_http_snapcache_task_free(t);

    if (r == NULL) {
        /* the client went away meanwhile */
        return;
    }

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);
    ctx->task = NULL;

    ngx_http_snapcache_fill_failed(r, ctx, NGX_HTTP_NOT_FOUND);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_snapcache_uncount(ngx_http_snapcache_ctx_t *ctx)
{
    if (ctx->counted) {
        ctx->counted = 0;
        ngx_http_snapcache_fills_change(ctx->smcf, -1);
    }
}


/*
 * 503 now, and the same for the requests waiting on this fill: refused
 * by the admission (before any origin fetch) or by a full queue.
 */
static ngx_int_t
ngx_http_snapcache_pool_full(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t admission)
{
    ngx_http_snapcache_uncount(ctx);

    if (admission) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: %ui fills in flight in this worker, "
                      "\"snapcache_max_fills\" is reached, answering 503",
                      ctx->smcf->fills);

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: thread pool \"%V\" queue is full, "
                      "answering 503", &ctx->slcf->thread_pool_name);
    }

    ngx_http_snapcache_count_rejected(ctx->smcf);
    ngx_http_snapcache_count_fill(ctx->smcf, NGX_HTTP_SNAPCACHE_FILL_REJECTED,
                                  0);

    if (ctx->lock_held) {
        ngx_http_snapcache_lock_release(ctx->smcf, ctx->lock_hash,
                                        ctx->fill_id,
                                        NGX_HTTP_SNAPCACHE_LOCK_FAILED,
                                        NGX_HTTP_SERVICE_UNAVAILABLE);
        ctx->lock_held = 0;
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS, 1);
    ctx->status = NGX_HTTP_SNAPCACHE_ERROR;

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


/*
 * The original is copied into the task's own pool: the task outlives
 * the request if its client goes away, and owns the fill lock and the
 * admission from here on.
 */
static ngx_int_t
ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    const snapcache_record_t *kept)
{
    ngx_http_snapcache_task_t  *t;

    t = ngx_http_snapcache_task_create(ngx_http_snapcache_task_done);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->orig = ngx_pnalloc(t->pool, len);
    if (t->orig == NULL) {
        ngx_http_snapcache_task_free(t);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(t->orig, orig, len);
    t->orig_len = len;

    t->request = r;
    t->smcf = ctx->smcf;
    t->store_original = kept == NULL && ctx->keep_original;

    if (kept) {
        t->from_kept = 1;
        t->kept_created = kept->created;
        t->kept_checksum = kept->checksum;
    }

    t->original_only = ctx->original_only;
    t->no_store = ctx->no_store;
    t->ident = ctx->ident;
    t->gen = ctx->gen;
    t->variant = ctx->variant;
    t->variant_name = ctx->req.variant->name;
    t->fill_start = ctx->fill_start;
    t->width = ctx->req.variant->width;
    t->quality = ctx->req.variant->quality;
    t->format = ctx->format;
    t->expires = ctx->origin_expires;
    t->max_bytes = ctx->slcf->max_original_size;
    t->max_pixels = ctx->slcf->max_pixels;

    if (ctx->lock_held) {
        t->lock_held = 1;
        t->lock_hash = ctx->lock_hash;
        t->fill_id = ctx->fill_id;
        ctx->lock_held = 0;
    }

    t->counted = ctx->counted;
    ctx->counted = 0;

    t->nice = ctx->slcf->transcode_nice;

    if (ctx->slcf->fill_below && !t->no_store && !t->original_only) {
        ngx_http_snapcache_rungs_below(r, ctx, t);
    }

    t->task->handler = ngx_http_snapcache_task_fill;

    t->timer.handler = ngx_http_snapcache_task_timeout;
    t->timer.data = t;
    t->timer.log = ngx_cycle->log;

    if (ngx_thread_task_post(ctx->slcf->thread_pool, t->task) != NGX_OK) {
        ctx->lock_held = t->lock_held;
        ctx->counted = t->counted;
        ngx_http_snapcache_task_free(t);

        return ngx_http_snapcache_pool_full(r, ctx, 0);
    }

    ngx_add_timer(&t->timer, ctx->slcf->fill_timeout);

    ctx->task = t;

    return NGX_DONE;
}


/*
 * The rungs below the one asked for that the store lacks, in the format
 * each would be served in: made from the same decode in the same task,
 * so that a step down on a weak link finds them.
 */
static void
ngx_http_snapcache_rungs_below(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_task_t *t)
{
    time_t                         now;
    ngx_uint_t                     i, format;
    snapcache_key_t                key;
    ngx_http_snapcache_rung_t     *rung;
    ngx_http_snapcache_variant_t  *v;

    v = ctx->slcf->variants->elts;
    now = ngx_time();

    for (i = 0; i < ctx->req.variant_index; i++) {

        if (v[i].width >= ctx->req.variant->width) {
            continue;
        }

        format = ngx_http_snapcache_format(r, &v[i]);
        snapcache_cache_key(&ctx->ident, v[i].id, format, &key);

        if (snapcache_cache_fresh(ctx->smcf->store, &key, &ctx->ident,
                                  (int64_t) now, SNAPCACHE_GET_LOOP))
        {
            continue;
        }

        rung = &t->below[t->nbelow++];
        rung->variant = v[i].id;
        rung->format = format;
        rung->width = v[i].width;
        rung->quality = v[i].quality;
    }
}


static void
ngx_http_snapcache_task_done(ngx_event_t *ev)
{
    ngx_http_snapcache_task_t *t = ev->data;

    ngx_int_t                   rc;
    ngx_uint_t                  status, purged;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_snapcache_ctx_t   *ctx;
    ngx_http_snapcache_image_t  image;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    purged = ngx_http_snapcache_task_purged(t);

    ngx_http_snapcache_task_account(t, purged);

    if (t->counted) {
        t->counted = 0;
        ngx_http_snapcache_fills_change(t->smcf, -1);
    }

    status = 0;

    if (!t->transcoded) {
        status = NGX_HTTP_BAD_GATEWAY;
        ngx_log_error(NGX_LOG_ERR, t->log, 0,
                      "snapcache: fill failed: the original is not a "
                      "usable image: %s, nothing cached",
                      snapcache_transcode_strerror(t->error));
    }

    if (t->lock_held) {
        ngx_http_snapcache_lock_release(t->smcf, t->lock_hash, t->fill_id,
                                        status ? NGX_HTTP_SNAPCACHE_LOCK_FAILED
                                               : NGX_HTTP_SNAPCACHE_LOCK_DONE,
                                        status);
        t->lock_held = 0;
    }

    r = t->request;

    if (r == NULL) {
        /* the client went away or the fill timed out: just clean up */
        ngx_http_snapcache_task_free(t);
        return;
    }

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);
    ctx->task = NULL;

    if (status) {
        ngx_http_snapcache_task_free(t);
        ngx_http_snapcache_fill_failed(r, ctx, status);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (purged) {
        ngx_http_snapcache_task_free(t);

        rc = ngx_http_snapcache_refill(r, ctx);
        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_memzero(&image, sizeof(ngx_http_snapcache_image_t));
    image.body = t->out;
    image.len = t->out_len;
    image.format = t->format;
    image.expires = t->expires;
    image.checksum = t->out_checksum;
    image.in_pool = 0;

    rc = ctx->answer(r, ctx, &image, NGX_HTTP_SNAPCACHE_MISS);

    ngx_http_snapcache_task_free(t);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * A purge of this account or device began after the fill read the
 * generations, or, for a body made of the kept original, that original
 * is gone or replaced: the body is from before the purge, which may have
 * answered by now.  Whether or not the store check caught it, whether
 * or not it was stored, it is never served.
 */
static ngx_uint_t
ngx_http_snapcache_task_purged(ngx_http_snapcache_task_t *t)
{
    if (!t->transcoded) {
        return 0;
    }

    if (t->store_rc == SNAPCACHE_CACHE_ABORTED) {
        return 1;
    }

    if (t->from_kept) {
        return !ngx_http_snapcache_still_valid(t->smcf, &t->ident, &t->gen,
                                               SNAPCACHE_VARIANT_ORIGINAL,
                                               SNAPCACHE_FORMAT_ANY,
                                               t->kept_created,
                                               t->kept_checksum);
    }

    return ngx_http_snapcache_gen_changed(t->smcf, t->ident.acct_tag,
                                          t->ident.dev_tag, &t->gen);
}


static void
ngx_http_snapcache_task_account(ngx_http_snapcache_task_t *t,
    ngx_uint_t purged)
{
    ngx_uint_t  level, result;

    if (t->transcoded && !t->original_only) {
        ngx_http_snapcache_stat_add(t->smcf,
                                    NGX_HTTP_SNAPCACHE_ST_TRANSCODES, 1);
        ngx_http_snapcache_count_transcode(t->smcf, &t->variant_name,
                                           t->format, t->transcode_usec);
    }

    result = !t->transcoded ? NGX_HTTP_SNAPCACHE_FILL_FAILED
             : purged ? NGX_HTTP_SNAPCACHE_FILL_PURGED
             : (!t->no_store && t->store_rc == SNAPCACHE_CACHE_OK)
               ? NGX_HTTP_SNAPCACHE_FILL_STORED
             : NGX_HTTP_SNAPCACHE_FILL_UNCACHED;

    ngx_http_snapcache_count_fill(t->smcf, result, t->fill_start);

    if (!t->transcoded || t->no_store) {
        return;
    }

    ngx_http_snapcache_count_store(t->smcf);

    if (t->store_rc == SNAPCACHE_CACHE_OK) {
        ngx_http_snapcache_stat_add(t->smcf, NGX_HTTP_SNAPCACHE_ST_STORED, 1);
        return;
    }

    ngx_http_snapcache_stat_add(t->smcf, NGX_HTTP_SNAPCACHE_ST_NOT_STORED, 1);

    if (t->store_rc == SNAPCACHE_CACHE_DAMAGED) {
        ngx_http_snapcache_store_damaged(t->smcf, t->log);
    }

    level = (t->store_rc == SNAPCACHE_CACHE_ABORTED) ? NGX_LOG_INFO
                                                     : NGX_LOG_WARN;

    ngx_log_error(level, t->log, 0, "snapcache: fill served uncached: %s",
                  t->store_rc == SNAPCACHE_CACHE_ABORTED
                  ? "a purge happened during the fill"
                  : snapcache_cache_strerror(t->store_rc));
}


/*
 * The fill's body came from before a purge: the request starts over,
 * from the lock, and fetches the original again.  A device purged over
 * and over gets a 503 after a few rounds rather than a loop.
 */
static ngx_int_t
ngx_http_snapcache_refill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    if (++ctx->purge_retries > NGX_HTTP_SNAPCACHE_PURGE_RETRIES) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: %ui purges came in during this request's "
                      "fills, answering 503", ctx->purge_retries - 1);
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS,
                                    1);
        ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "snapcache: a purge came in during the fill, its result "
                  "is thrown away and the fill starts again");

    ctx->wait_deadline = 0;
    ctx->origin_complete = 0;
    ctx->origin_finished = 0;
    ctx->origin_too_big = 0;
    ctx->origin_in_file = 0;

    return ngx_http_snapcache_try_fill(r, ctx);
}


/*
 * A task that overruns snapcache_fill_timeout cannot be cancelled: the
 * thread still owns its memory.  The client gets a 504 now and the task
 * is detached; it cleans up after itself when it ends.
 */
static void
ngx_http_snapcache_task_timeout(ngx_event_t *ev)
{
    ngx_http_snapcache_task_t *t = ev->data;

    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_snapcache_ctx_t  *ctx;

    r = t->request;
    if (r == NULL) {
        return;
    }

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "snapcache: fill timed out after %M ms, answering 504",
                  ctx->slcf->fill_timeout);

    t->request = NULL;
    ctx->task = NULL;

    ngx_http_snapcache_stat_add(t->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS, 1);
    ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
    ngx_http_finalize_request(r, NGX_HTTP_GATEWAY_TIME_OUT);
    ngx_http_run_posted_requests(c);
}


/* The request goes away: detach a running task, drop a lock we hold. */
static void
ngx_http_snapcache_fill_cleanup(void *data)
{
    ngx_http_snapcache_ctx_t *ctx = data;

    if (ctx->wait_event.timer_set) {
        ngx_del_timer(&ctx->wait_event);
    }

    if (ctx->task) {
        ctx->task->request = NULL;
        ctx->task = NULL;
    }

    ngx_http_snapcache_uncount(ctx);

    if (ctx->lock_held) {
        ngx_http_snapcache_lock_release(ctx->smcf, ctx->lock_hash,
                                        ctx->fill_id,
                                        NGX_HTTP_SNAPCACHE_LOCK_FREE, 0);
        ctx->lock_held = 0;
    }
}


/*
 * The rule for a body that was read from the store earlier and is about
 * to be served now (a stale fallback, a fill made of the kept original):
 * the record it came from is still there, unchanged, and no purge of
 * its scope moved the generations since they were read before it.  A
 * purge moves them again once its deletes are committed, before it
 * answers, so nothing read before those deletes passes once the purge
 * has answered.
 */
static ngx_uint_t
ngx_http_snapcache_still_valid(ngx_http_snapcache_main_conf_t *smcf,
    snapcache_ident_t *ident, ngx_http_snapcache_gen_t *gen,
    ngx_uint_t variant, ngx_uint_t format, int64_t created,
    uint32_t checksum)
{
    snapcache_key_t  key;

    if (ngx_http_snapcache_gen_changed(smcf, ident->acct_tag,
                                       ident->dev_tag, gen))
    {
        return 0;
    }

    snapcache_cache_key(ident, variant, format, &key);

    return snapcache_cache_still(smcf->store, &key, created, checksum,
                                 SNAPCACHE_GET_LOOP);
}


/* FNV-1a: the lock table only needs spread, not secrecy. */
static uint64_t
ngx_http_snapcache_hash(const u_char *p, size_t len)
{
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    while (len--) {
        h ^= *p++;
        h *= 0x100000001b3ULL;
    }

    return h;
}
