
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the fill.  One fill per snapshot across all workers (a
 * lock in the shared zone; the others wait on it) gets the original
 * from a kept original record or from the origin, transcodes it and
 * stores it on the thread pool, and answers.  libvips and LMDB writes
 * run on the pool only, never on the event loop.
 */


#include <sys/syscall.h>

#include "ngx_module/ngx_http_snapcache.h"


#define NGX_HTTP_SNAPCACHE_WAIT_MSEC  10

/* fills thrown away for a purge before a request gets a 503 */
#define NGX_HTTP_SNAPCACHE_PURGE_RETRIES  3

/*
 * A peer's fill of an original takes a lock of its own: a node that
 * owns the account answers its own fills' origin requests, and would
 * otherwise wait on itself.
 */
#define NGX_HTTP_SNAPCACHE_PEER_LOCK      0x9e3779b97f4a7c15ULL

/* the size the original task decodes to, to check every byte of it */
#define NGX_HTTP_SNAPCACHE_CHECK_WIDTH    16


/*
 * nginx 1.22's struct ngx_thread_pool_s, which ngx_thread_pool.h keeps
 * opaque, so that a fill can see a full queue before it fetches an
 * original it could not transcode.  The module loads only into the nginx
 * it was built against, and each use checks that the copy names the
 * pool it should; if not, the check is skipped and the post still
 * refuses a full queue.
 */
static ngx_uint_t  ngx_http_snapcache_fills;


typedef struct {
    ngx_thread_mutex_t         mtx;
    void                      *queue_first;
    void                      *queue_last;
    ngx_int_t                  waiting;
    ngx_thread_cond_t          cond;
    ngx_log_t                 *log;
    ngx_str_t                  name;
    ngx_uint_t                 threads;
    ngx_int_t                  max_queue;
} ngx_http_snapcache_thread_pool_t;


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
static void ngx_http_snapcache_negative_handler(void *data, ngx_log_t *log);
static void ngx_http_snapcache_negative_done(ngx_event_t *ev);
static ngx_uint_t ngx_http_snapcache_pool_busy(
    ngx_http_snapcache_loc_conf_t *slcf);
static ngx_int_t ngx_http_snapcache_pool_full(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_uncount(ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    const snapcache_record_t *kept);
static void ngx_http_snapcache_rungs_below(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_task_t *t);
static void ngx_http_snapcache_thread_nice(ngx_int_t nice);
static void ngx_http_snapcache_task_handler(void *data, ngx_log_t *log);
static void ngx_http_snapcache_original_task(ngx_http_snapcache_task_t *t);
static int ngx_http_snapcache_store_check(void *data);
static void ngx_http_snapcache_task_done(ngx_event_t *ev);
static ngx_uint_t ngx_http_snapcache_task_purged(
    ngx_http_snapcache_task_t *t);
static void ngx_http_snapcache_task_account(ngx_http_snapcache_task_t *t,
    ngx_uint_t purged);
static ngx_int_t ngx_http_snapcache_refill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_task_timeout(ngx_event_t *ev);
static void ngx_http_snapcache_task_free(ngx_http_snapcache_task_t *t);
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
    ngx_int_t  rc;

    ctx->lock_hash = ngx_http_snapcache_hash(ctx->ident.digest,
                                             sizeof(ctx->ident.digest));

    if (ctx->peer) {
        ctx->lock_hash ^= NGX_HTTP_SNAPCACHE_PEER_LOCK;
    }

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
        /* a fresh copy for a peer: never from a fill that began earlier */
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
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
        break;

    default:
        /* DONE, or the fill is gone: the record may be there now */
        rc = ngx_http_snapcache_lookup(r, ctx, ctx->variant, ctx->format,
                                       &rec);

        if (rc == SNAPCACHE_CACHE_HIT) {
            ngx_http_snapcache_stat_add(ctx->smcf,
                                        NGX_HTTP_SNAPCACHE_ST_HITS, 1);
            rc = ngx_http_snapcache_send_record(r, ctx, &rec,
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

    /* a fetch whose result the pool could not take is wasted */
    if (!ctx->counted) {
        if (ngx_http_snapcache_pool_busy(ctx->slcf)) {
            return ngx_http_snapcache_pool_full(r, ctx);
        }

        ctx->counted = 1;
        ngx_http_snapcache_fills++;
    }

    ngx_http_snapcache_gen_read(ctx->smcf, ctx->ident.acct_tag,
                                ctx->ident.dev_tag, &ctx->gen);

    if (ctx->fill_start == 0) {
        ctx->fill_start = ngx_http_snapcache_usec();
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_FILLS, 1);

    if ((ctx->slcf->keep_original || ctx->slcf->negative_ttl || ctx->peer)
        && !ctx->fresh)
    {
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

        if (rc == SNAPCACHE_CACHE_HIT
            && (ctx->slcf->keep_original || ctx->peer))
        {
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
        rc = ngx_http_snapcache_send_record(r, ctx, &ctx->stale,
                                            NGX_HTTP_SNAPCACHE_STALE);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_ERRORS, 1);
    ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);

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
    ngx_pool_t                 *pool;
    ngx_thread_task_t          *task;
    ngx_http_snapcache_task_t  *t;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_http_snapcache_task_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NGX_DECLINED;
    }

    t = task->ctx;
    t->task = task;
    t->pool = pool;
    t->request = r;
    t->smcf = ctx->smcf;
    t->log = ngx_cycle->log;
    t->ident = ctx->ident;
    t->gen = ctx->gen;
    t->expires = ngx_time() + ctx->slcf->negative_ttl;

    task->handler = ngx_http_snapcache_negative_handler;
    task->event.data = t;
    task->event.handler = ngx_http_snapcache_negative_done;

    if (ngx_thread_task_post(ctx->slcf->thread_pool, task) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_DECLINED;
    }

    ctx->task = t;

    return NGX_DONE;
}


static void
ngx_http_snapcache_negative_handler(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_task_t *t = data;

    snapcache_put_t  item;

    ngx_memzero(&item, sizeof(snapcache_put_t));

    snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                        SNAPCACHE_FORMAT_ANY, &item.key);
    item.ident = &t->ident;
    item.variant = SNAPCACHE_VARIANT_ORIGINAL;
    item.format = SNAPCACHE_FORMAT_ABSENT;
    item.expires = t->expires;

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, &item, 1,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);
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
    ngx_destroy_pool(t->pool);

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


/*
 * Admission: a fill starts only while this worker's fills, from their
 * start to their task's end, are fewer than the pool's threads and
 * queue together, so a burst of misses gets 503s at once rather than
 * origin fetches whose results the pool would refuse.
 */
static ngx_uint_t
ngx_http_snapcache_pool_busy(ngx_http_snapcache_loc_conf_t *slcf)
{
    ngx_http_snapcache_thread_pool_t  *tp;

    tp = (ngx_http_snapcache_thread_pool_t *) slcf->thread_pool;

    if (tp->name.len != slcf->thread_pool_name.len
        || tp->name.data == NULL
        || ngx_strncmp(tp->name.data, slcf->thread_pool_name.data,
                       tp->name.len) != 0)
    {
        return 0;
    }

    return ngx_http_snapcache_fills
           >= tp->threads + (ngx_uint_t) ngx_max(tp->max_queue, 0);
}


static void
ngx_http_snapcache_uncount(ngx_http_snapcache_ctx_t *ctx)
{
    if (ctx->counted) {
        ctx->counted = 0;
        ngx_http_snapcache_fills--;
    }
}


/* 503 now, and the same for the requests waiting on this fill. */
static ngx_int_t
ngx_http_snapcache_pool_full(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_http_snapcache_uncount(ctx);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "snapcache: thread pool \"%V\" queue is full, "
                  "answering 503", &ctx->slcf->thread_pool_name);

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
    ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


/*
 * The thread task owns a pool of its own, so that it outlives a request
 * whose client went away: the fill still completes for the waiters,
 * and the task frees everything when it ends.
 */
static ngx_int_t
ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    const snapcache_record_t *kept)
{
    ngx_pool_t                  *pool;
    ngx_thread_task_t           *task;
    ngx_http_snapcache_task_t   *t;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_http_snapcache_task_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = task->ctx;
    t->task = task;
    t->pool = pool;
    t->request = r;
    t->smcf = ctx->smcf;
    t->log = ngx_cycle->log;

    t->orig = ngx_pnalloc(pool, len);
    if (t->orig == NULL) {
        ngx_destroy_pool(pool);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(t->orig, orig, len);
    t->orig_len = len;
    t->store_original = kept == NULL
                        && (ctx->slcf->keep_original || ctx->peer);

    if (kept) {
        t->from_kept = 1;
        t->kept_created = kept->created;
        t->kept_checksum = kept->checksum;
    }

    t->original_only = ctx->peer;
    t->no_store = ctx->no_store;
    t->ident = ctx->ident;
    t->gen = ctx->gen;
    t->variant = ctx->variant;
    t->variant_name = ctx->sreq->variant->name;
    t->fill_start = ctx->fill_start;
    t->width = ctx->sreq->variant->width;
    t->quality = ctx->sreq->variant->quality;
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

    task->handler = ngx_http_snapcache_task_handler;
    task->event.data = t;
    task->event.handler = ngx_http_snapcache_task_done;

    t->timer.handler = ngx_http_snapcache_task_timeout;
    t->timer.data = t;
    t->timer.log = ngx_cycle->log;

    if (ngx_thread_task_post(ctx->slcf->thread_pool, task) != NGX_OK) {
        ctx->lock_held = t->lock_held;
        ctx->counted = t->counted;
        ngx_destroy_pool(pool);

        return ngx_http_snapcache_pool_full(r, ctx);
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

    for (i = 0; i < ctx->sreq->variant_index; i++) {

        if (v[i].width >= ctx->sreq->variant->width) {
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


/*
 * Transcodes yield to the event loop: a pool thread lowers its own
 * priority once (Linux threads have their own nice value), so that hits
 * stay fast while misses keep the pool busy.
 */
static void
ngx_http_snapcache_thread_nice(ngx_int_t nice)
{
    static _Thread_local ngx_int_t  set = -1;

    if (set == nice) {
        return;
    }

    set = nice;

    (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), (int) nice);
}


/*
 * On a pool thread: probe, transcode, and store.  libvips and LMDB
 * writes happen here only, never on the event loop.
 */
static void
ngx_http_snapcache_task_handler(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_task_t *t = data;

    int                        rc, n, rcs[NGX_HTTP_SNAPCACHE_MAX_RUNGS];
    uint64_t                   start;
    ngx_uint_t                 i, nspecs;
    snapcache_put_t            items[NGX_HTTP_SNAPCACHE_MAX_RUNGS + 1];
    snapcache_variant_spec_t   specs[NGX_HTTP_SNAPCACHE_MAX_RUNGS];
    snapcache_transcode_out_t  outs[NGX_HTTP_SNAPCACHE_MAX_RUNGS], *out;

    ngx_http_snapcache_thread_nice(t->nice);

    if (t->original_only) {
        ngx_http_snapcache_original_task(t);
        return;
    }

    ngx_memzero(specs, sizeof(specs));
    specs[0].width = (int) t->width;
    specs[0].quality = (int) t->quality;
    specs[0].format = (int) t->format;

    nspecs = 1;

    for (i = 0; i < t->nbelow && nspecs < NGX_HTTP_SNAPCACHE_MAX_RUNGS; i++) {
        specs[nspecs].width = (int) t->below[i].width;
        specs[nspecs].quality = (int) t->below[i].quality;
        specs[nspecs].format = (int) t->below[i].format;
        nspecs++;
    }

    start = ngx_http_snapcache_usec();

    if (nspecs == 1) {
        rc = snapcache_transcode(t->orig, t->orig_len, &specs[0],
                                 t->max_bytes, t->max_pixels, &outs[0]);
        rcs[0] = rc;

    } else {
        rc = snapcache_transcode_rungs(t->orig, t->orig_len, specs, nspecs,
                                       t->max_bytes, t->max_pixels, outs,
                                       rcs);
        if (rc == SNAPCACHE_TRANSCODE_OK) {
            rc = rcs[0];
        }
    }

    t->transcode_usec = ngx_http_snapcache_usec() - start;

    if (rc != SNAPCACHE_TRANSCODE_OK) {
        t->error = rc;
        goto free_below;
    }

    out = &outs[0];

    t->transcoded = 1;
    t->out = out->data;
    t->out_len = out->len;
    t->out_width = out->width;
    t->out_height = out->height;
    t->out_checksum = snapcache_cache_checksum(out->data, out->len);

    if (t->no_store) {
        t->store_rc = SNAPCACHE_CACHE_SKIPPED;
        goto free_below;
    }

    n = 0;

    if (t->store_original) {
        snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                            SNAPCACHE_FORMAT_ANY, &items[n].key);
        items[n].ident = &t->ident;
        items[n].variant = SNAPCACHE_VARIANT_ORIGINAL;
        items[n].format = out->source.format;
        items[n].width = out->source.width;
        items[n].height = out->source.height;
        items[n].expires = t->expires;
        items[n].body = t->orig;
        items[n].body_len = t->orig_len;
        n++;
    }

    for (i = 0; i < nspecs; i++) {

        if (rcs[i] != SNAPCACHE_TRANSCODE_OK) {
            continue;
        }

        items[n].variant = i ? t->below[i - 1].variant : t->variant;
        items[n].format = (unsigned) specs[i].format;
        snapcache_cache_key(&t->ident, items[n].variant, items[n].format,
                            &items[n].key);
        items[n].ident = &t->ident;
        items[n].width = outs[i].width;
        items[n].height = outs[i].height;
        items[n].expires = t->expires;
        items[n].body = outs[i].data;
        items[n].body_len = outs[i].len;
        n++;
    }

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, items, n,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);

free_below:

    /* the rung asked for is t->out, freed with the task */
    for (i = 1; i < nspecs; i++) {
        snapcache_transcode_free(outs[i].data);
    }
}


/*
 * On a pool thread, for a peer: the original itself is the answer.  It
 * is decoded once, at a tiny size but every byte of it, with the same
 * limits and fail_on=truncated, so that an original that is truncated,
 * corrupt or not an image we decode is never kept or handed to a peer.
 * Then it is kept.
 */
static void
ngx_http_snapcache_original_task(ngx_http_snapcache_task_t *t)
{
    int                        rc;
    snapcache_put_t            item;
    snapcache_variant_spec_t   spec;
    snapcache_transcode_out_t  out;

    ngx_memzero(&spec, sizeof(spec));
    spec.width = NGX_HTTP_SNAPCACHE_CHECK_WIDTH;
    spec.quality = 1;
    spec.format = SNAPCACHE_FORMAT_JPEG;

    rc = snapcache_transcode(t->orig, t->orig_len, &spec, t->max_bytes,
                             t->max_pixels, &out);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        t->error = rc;
        return;
    }

    snapcache_transcode_free(out.data);

    t->transcoded = 1;
    t->out = t->orig;
    t->out_len = t->orig_len;
    t->format = out.source.format;
    t->out_checksum = snapcache_cache_checksum(t->orig, t->orig_len);

    if (!t->store_original || t->no_store) {
        t->store_rc = SNAPCACHE_CACHE_SKIPPED;
        return;
    }

    ngx_memzero(&item, sizeof(snapcache_put_t));

    snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                        SNAPCACHE_FORMAT_ANY, &item.key);
    item.ident = &t->ident;
    item.variant = SNAPCACHE_VARIANT_ORIGINAL;
    item.format = out.source.format;
    item.width = out.source.width;
    item.height = out.source.height;
    item.expires = t->expires;
    item.body = t->orig;
    item.body_len = t->orig_len;

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, &item, 1,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);
}


/*
 * Runs inside the write transaction, just before commit.  Purge bumps
 * the generation before it deletes, and deletes in write transactions
 * that cannot start until this one commits: so either we see the bump
 * and abort, or the purge's delete comes after our commit and removes
 * what we stored.  A fill that began between a purge's bump and its
 * delete read the generations after the bump, so they cannot tell; if
 * it was made from the kept original, that original must still be
 * there, unchanged: the purge's delete, committed before us, removed
 * it.
 */
static int
ngx_http_snapcache_store_check(void *data)
{
    ngx_http_snapcache_task_t *t = data;

    snapcache_key_t  key;

    if (ngx_http_snapcache_gen_changed(t->smcf, t->ident.acct_tag,
                                       t->ident.dev_tag, &t->gen))
    {
        return -1;
    }

    if (t->from_kept) {
        snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                            SNAPCACHE_FORMAT_ANY, &key);

        if (!snapcache_cache_unchanged(t->smcf->store, &key,
                                       t->kept_created, t->kept_checksum))
        {
            return -1;
        }
    }

    return 0;
}


static void
ngx_http_snapcache_task_done(ngx_event_t *ev)
{
    ngx_http_snapcache_task_t *t = ev->data;

    ngx_int_t                  rc;
    ngx_uint_t                 status, purged;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_snapcache_ctx_t  *ctx;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    purged = ngx_http_snapcache_task_purged(t);

    ngx_http_snapcache_task_account(t, purged);

    if (t->counted) {
        t->counted = 0;
        ngx_http_snapcache_fills--;
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

    rc = ngx_http_snapcache_send_body(r, ctx, t->out, t->out_len, t->format,
                                      t->expires, t->out_checksum,
                                      NGX_HTTP_SNAPCACHE_MISS);

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
                                           t->transcode_usec);
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
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
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
    ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
    ngx_http_finalize_request(r, NGX_HTTP_GATEWAY_TIME_OUT);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_snapcache_task_free(ngx_http_snapcache_task_t *t)
{
    /* a peer's fill answers with the original, in the task's pool */
    if (t->out && t->out != t->orig) {
        snapcache_transcode_free(t->out);
    }

    t->out = NULL;

    ngx_destroy_pool(t->pool);
}


/* Request pool cleanup: detach a running task, drop a lock we hold. */
void
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
