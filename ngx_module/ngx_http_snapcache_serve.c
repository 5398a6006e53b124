
/*
 * snapcache: the serving path.  A verified request is answered from the
 * LMDB store when the exact key is there (HIT); otherwise one fill per
 * snapshot, across all workers, fetches the original (from a kept
 * original record or from the origin location), transcodes it on the
 * thread pool, stores it there and answers (MISS).  Everything sent is a
 * copy in the request pool, never a pointer into the map.
 */


#include "ngx_module/ngx_http_snapcache_serve.h"


#define NGX_HTTP_SNAPCACHE_WAIT_MSEC  10


static ngx_int_t ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec);
static ngx_int_t ngx_http_snapcache_try_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static void ngx_http_snapcache_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_snapcache_start_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_fetch_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_filter_origin_headers(
    ngx_http_request_t *r, ngx_http_request_t *sr);
static ngx_int_t ngx_http_snapcache_origin_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static void ngx_http_snapcache_origin_resume(ngx_http_request_t *r);
static ngx_uint_t ngx_http_snapcache_check_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    ngx_uint_t store_original);
static void ngx_http_snapcache_task_handler(void *data, ngx_log_t *log);
static void ngx_http_snapcache_task_done(ngx_event_t *ev);
static void ngx_http_snapcache_task_timeout(ngx_event_t *ev);
static void ngx_http_snapcache_task_free(ngx_http_snapcache_task_t *t);
static void ngx_http_snapcache_fill_failed(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status);
static void ngx_http_snapcache_cleanup(void *data);
static ngx_int_t ngx_http_snapcache_send_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status);
static ngx_int_t ngx_http_snapcache_send_body(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *body, size_t len,
    ngx_uint_t format, time_t expires, uint32_t etag_sum,
    ngx_http_snapcache_status_e status);
static ngx_table_elt_t *ngx_http_snapcache_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
static void *ngx_http_snapcache_pool_alloc(void *data, size_t size);
static uint64_t ngx_http_snapcache_hash(const u_char *p, size_t len);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* The entry point for a verified request. */
ngx_int_t
ngx_http_snapcache_serve(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sreq)
{
    ngx_int_t                        rc;
    snapcache_record_t               rec;
    ngx_pool_cleanup_t              *cln;
    ngx_http_snapcache_ctx_t        *ctx;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (smcf->store == NULL) {
        /* fail closed: no store, no answer, and say why */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: the store is not open in this worker, "
                      "see the error at worker start");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->slcf = slcf;
    ctx->smcf = smcf;
    ctx->sreq = sreq;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_snapcache_cleanup;
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

    ctx->lock_hash = ngx_http_snapcache_hash(ctx->ident.digest,
                                             sizeof(ctx->ident.digest));
    ctx->variant_byte = sreq->variant->id;
    ctx->format = ngx_http_snapcache_format(r, sreq->variant);

    ngx_http_snapcache_set_variant(r, &sreq->variant->name);

    rc = ngx_http_snapcache_lookup(r, ctx, ctx->variant_byte, ctx->format,
                                   &rec);

    if (rc == SNAPCACHE_CACHE_HIT) {
        ngx_http_snapcache_stat_add(smcf, NGX_HTTP_SNAPCACHE_ST_HITS, 1);
        return ngx_http_snapcache_send_record(r, ctx, &rec,
                                              NGX_HTTP_SNAPCACHE_HIT);
    }

    ngx_http_snapcache_stat_add(smcf, NGX_HTTP_SNAPCACHE_ST_MISSES, 1);

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
 * Exact-key lookup; the record is copied into the request pool inside
 * the read transaction.  An expired record is kept aside as the STALE
 * fallback and reported as a miss.
 */
static ngx_int_t
ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec)
{
    int               rc;
    snapcache_key_t   key;

    snapcache_cache_key(&ctx->ident, variant, format, &key);

    rc = snapcache_cache_get(ctx->smcf->store, &key, &ctx->ident,
                             (int64_t) ngx_time(),
                             SNAPCACHE_GET_STALE | SNAPCACHE_GET_KEEP_BAD, rec,
                             ngx_http_snapcache_pool_alloc, r->pool);

    switch (rc) {

    case SNAPCACHE_CACHE_HIT:
        return rc;

    case SNAPCACHE_CACHE_EXPIRED:
        if (variant == ctx->variant_byte && format == ctx->format) {
            ctx->stale = *rec;
            ctx->has_stale = 1;
        }

        return rc;

    case SNAPCACHE_CACHE_FOREIGN:
    case SNAPCACHE_CACHE_CORRUPT:
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_CORRUPT,
                                    1);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: %s record, treated as a miss; "
                      "the fill replaces it",
                      snapcache_cache_strerror(rc));
        return rc;

    case SNAPCACHE_CACHE_DAMAGED:
        ngx_http_snapcache_store_damaged(ctx->smcf, r->connection->log);
        return rc;

    default:
        return rc;
    }
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
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
        break;

    default:
        /* DONE, or the fill is gone: the record may be there now */
        rc = ngx_http_snapcache_lookup(r, ctx, ctx->variant_byte, ctx->format,
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

    ngx_http_snapcache_gen_read(ctx->smcf, ctx->ident.acct_tag,
                                ctx->ident.dev_tag, &ctx->gen);

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_FILLS, 1);

    if (ctx->slcf->keep_original) {
        rc = ngx_http_snapcache_lookup(r, ctx, SNAPCACHE_VARIANT_ORIGINAL,
                                       SNAPCACHE_FORMAT_ANY, &orig);

        if (rc == SNAPCACHE_CACHE_HIT) {
            ctx->origin_expires = orig.expires;
            return ngx_http_snapcache_post_task(r, ctx, orig.body,
                                                orig.body_len, 0);
        }
    }

    return ngx_http_snapcache_fetch_origin(r, ctx);
}


static ngx_int_t
ngx_http_snapcache_fetch_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    u_char                      *p;
    ngx_str_t                    uri;
    ngx_http_request_t          *sr;
    snapcache_url_t             *url;
    ngx_http_post_subrequest_t  *ps;
    ngx_http_snapcache_ctx_t    *sctx;

    url = &ctx->sreq->url;

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

    if (ngx_http_snapcache_filter_origin_headers(r, sr) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the subrequest's ctx marks it for our filters to collect */
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_ctx_t));
    if (sctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sctx->origin = ctx;
    ngx_http_set_ctx(sr, sctx, ngx_http_snapcache_module);

    ctx->sr = sr;
    ctx->origin_len = 0;
    ctx->origin_status = 0;

    ngx_http_snapcache_stat_add(ctx->smcf,
                                NGX_HTTP_SNAPCACHE_ST_ORIGIN_FETCHES, 1);

    return NGX_DONE;
}


/*
 * The origin sees the verified ids in its URI and nothing of the
 * client's credentials or conditions: Range, If-*, Cookie and
 * Authorization are dropped, so the answer is a whole, fresh original.
 */
static ngx_int_t
ngx_http_snapcache_filter_origin_headers(ngx_http_request_t *r,
    ngx_http_request_t *sr)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    static const char  *dropped[] = {
        "range", "if-range", "if-match", "if-none-match",
        "if-modified-since", "if-unmodified-since", "cookie",
        "authorization", "proxy-authorization", "accept-encoding", NULL
    };

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
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

        if (ngx_http_snapcache_header_dropped(&h[i], dropped)) {
            continue;
        }

        nh = ngx_list_push(&sr->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    sr->headers_in.range = NULL;
    sr->headers_in.if_range = NULL;
    sr->headers_in.if_match = NULL;
    sr->headers_in.if_none_match = NULL;
    sr->headers_in.if_modified_since = NULL;
    sr->headers_in.if_unmodified_since = NULL;
    sr->headers_in.authorization = NULL;
    sr->headers_in.cookies.nelts = 0;
#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    sr->headers_in.accept_encoding = NULL;
#endif

    return NGX_OK;
}


ngx_uint_t
ngx_http_snapcache_header_dropped(ngx_table_elt_t *h, const char **names)
{
    for ( /* void */ ; *names; names++) {
        if (h->key.len == ngx_strlen(*names)
            && ngx_strncasecmp(h->key.data, (u_char *) *names, h->key.len)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* Collects the origin's status and headers; nothing reaches the client. */
ngx_int_t
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
ngx_int_t
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

        if (cl->buf->in_file && !ngx_buf_in_memory(cl->buf)) {
            /* buffered to a temp file by the proxy: refuse, never guess */
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
    ngx_int_t                  rc;
    ngx_uint_t                 status;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_snapcache_module);

    r->write_event_handler = ngx_http_request_empty_handler;

    status = ngx_http_snapcache_check_origin(r, ctx);

    if (status != NGX_HTTP_OK) {
        ngx_http_snapcache_fill_failed(r, ctx, status);
        return;
    }

    ctx->origin_expires = ngx_time()
                          + ngx_http_snapcache_ttl(ctx->slcf,
                                                   ctx->origin_max_age);

    rc = ngx_http_snapcache_post_task(r, ctx, ctx->origin_buf,
                                      ctx->origin_len, 1);
    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
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
        why = "the origin response was buffered to disk; raise "
              "proxy_buffers or set proxy_max_temp_file_size 0 in the "
              "origin location";

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


/*
 * Ends a failed fill: waiters get the same status, the client gets it
 * too, unless a stale copy of this very key can stand in.
 */
static void
ngx_http_snapcache_fill_failed(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status)
{
    ngx_int_t  rc;

    if (ctx->lock_held) {
        ngx_http_snapcache_lock_release(ctx->smcf, ctx->lock_hash,
                                        ctx->fill_id,
                                        NGX_HTTP_SNAPCACHE_LOCK_FAILED,
                                        status);
        ctx->lock_held = 0;
    }

    if (ctx->has_stale && status != NGX_HTTP_NOT_FOUND) {
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
 * The thread task owns a pool of its own, so that it outlives a request
 * whose client went away: the fill still completes for the waiters,
 * and the task frees everything when it ends.
 */
static ngx_int_t
ngx_http_snapcache_post_task(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *orig, size_t len,
    ngx_uint_t store_original)
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
    t->store_original = store_original && ctx->slcf->keep_original;
    t->no_store = ctx->no_store;
    t->ident = ctx->ident;
    t->gen = ctx->gen;
    t->variant_byte = ctx->variant_byte;
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

    task->handler = ngx_http_snapcache_task_handler;
    task->event.data = t;
    task->event.handler = ngx_http_snapcache_task_done;

    t->timer.handler = ngx_http_snapcache_task_timeout;
    t->timer.data = t;
    t->timer.log = ngx_cycle->log;

    if (ngx_thread_task_post(ctx->slcf->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: thread pool \"%V\" queue is full, "
                      "answering 503", &ctx->slcf->thread_pool_name);

        if (t->lock_held) {
            ngx_http_snapcache_lock_release(ctx->smcf, t->lock_hash,
                                            t->fill_id,
                                            NGX_HTTP_SNAPCACHE_LOCK_FREE, 0);
        }

        ngx_destroy_pool(pool);
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);

        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_add_timer(&t->timer, ctx->slcf->fill_timeout);

    ctx->task = t;

    return NGX_DONE;
}


/*
 * On a pool thread: probe, transcode, and store.  libvips and LMDB
 * writes happen here only, never on the event loop.
 */
static void
ngx_http_snapcache_task_handler(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_task_t *t = data;

    int                        rc, n;
    snapcache_put_t            items[2];
    snapcache_variant_spec_t   spec;
    snapcache_transcode_out_t  out;

    ngx_memzero(&spec, sizeof(spec));
    spec.width = (int) t->width;
    spec.quality = (int) t->quality;
    spec.format = (int) t->format;

    rc = snapcache_transcode(t->orig, t->orig_len, &spec, t->max_bytes,
                             t->max_pixels, &out);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        t->error = rc;
        return;
    }

    t->transcoded = 1;
    t->out = out.data;
    t->out_len = out.len;
    t->out_width = out.width;
    t->out_height = out.height;
    t->out_checksum = snapcache_cache_checksum(out.data, out.len);

    if (t->no_store) {
        t->store_rc = SNAPCACHE_CACHE_SKIPPED;
        return;
    }

    n = 0;

    if (t->store_original) {
        snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                            SNAPCACHE_FORMAT_ANY, &items[n].key);
        items[n].ident = &t->ident;
        items[n].variant = SNAPCACHE_VARIANT_ORIGINAL;
        items[n].format = out.source.format;
        items[n].width = out.source.width;
        items[n].height = out.source.height;
        items[n].expires = t->expires;
        items[n].body = t->orig;
        items[n].body_len = t->orig_len;
        n++;
    }

    snapcache_cache_key(&t->ident, t->variant_byte, t->format, &items[n].key);
    items[n].ident = &t->ident;
    items[n].variant = t->variant_byte;
    items[n].format = t->format;
    items[n].width = out.width;
    items[n].height = out.height;
    items[n].expires = t->expires;
    items[n].body = out.data;
    items[n].body_len = out.len;
    n++;

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, items, n,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);
}


/*
 * Runs inside the write transaction, just before commit.  Purge bumps
 * the generation before it deletes, and deletes in write transactions
 * that cannot start until this one commits: so either we see the bump
 * and abort, or the purge's delete comes after our commit and removes
 * what we stored.
 */
int
ngx_http_snapcache_store_check(void *data)
{
    ngx_http_snapcache_task_t *t = data;

    return ngx_http_snapcache_gen_changed(t->smcf, t->ident.acct_tag,
                                          t->ident.dev_tag, &t->gen)
           ? -1 : 0;
}


static void
ngx_http_snapcache_task_done(ngx_event_t *ev)
{
    ngx_http_snapcache_task_t *t = ev->data;

    ngx_int_t                  rc;
    ngx_uint_t                 status;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_snapcache_ctx_t  *ctx;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    ngx_http_snapcache_task_account(t);

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

    rc = ngx_http_snapcache_send_body(r, ctx, t->out, t->out_len, t->format,
                                      t->expires, t->out_checksum,
                                      NGX_HTTP_SNAPCACHE_MISS);

    ngx_http_snapcache_task_free(t);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
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
    if (t->out) {
        snapcache_transcode_free(t->out);
        t->out = NULL;
    }

    ngx_destroy_pool(t->pool);
}


/* Request pool cleanup: detach a running task, drop a lock we hold. */
static void
ngx_http_snapcache_cleanup(void *data)
{
    ngx_http_snapcache_ctx_t *ctx = data;

    if (ctx->wait_event.timer_set) {
        ngx_del_timer(&ctx->wait_event);
    }

    if (ctx->task) {
        ctx->task->request = NULL;
        ctx->task = NULL;
    }

    if (ctx->lock_held) {
        ngx_http_snapcache_lock_release(ctx->smcf, ctx->lock_hash,
                                        ctx->fill_id,
                                        NGX_HTTP_SNAPCACHE_LOCK_FREE, 0);
        ctx->lock_held = 0;
    }
}


/* A record's body was copied into the request pool by the lookup. */
static ngx_int_t
ngx_http_snapcache_send_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status)
{
    ctx->body_in_pool = 1;

    return ngx_http_snapcache_send_body(r, ctx, rec->body, rec->body_len,
                                        rec->format, rec->expires,
                                        rec->checksum, status);
}


static ngx_int_t
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
    ngx_chain_t       out;
    const char       *mime;
    ngx_table_elt_t  *etag;

    ngx_http_snapcache_set_status(r, status);

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

    ngx_str_set(&v, "Accept, Save-Data");
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

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
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


static void *
ngx_http_snapcache_pool_alloc(void *data, size_t size)
{
    return ngx_pnalloc((ngx_pool_t *) data, size ? size : 1);
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


ngx_int_t
ngx_http_snapcache_init_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_snapcache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_snapcache_body_filter;

    return NGX_OK;
}
