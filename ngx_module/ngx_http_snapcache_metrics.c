
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: metrics.  Counters and fixed-bucket histograms live in the
 * shared zone, so every worker adds to the same numbers and a scrape
 * served by any worker sees them all.  This file records them, counts
 * each request of a snapcache location in the log phase, and renders
 * them as Prometheus text (GET <admin>/metrics) and as JSON
 * (GET <admin>/stats).
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


_Static_assert(NGX_HTTP_SNAPCACHE_NREASONS == SNAPCACHE_ADAPT_NREASONS,
               "a served_total counter for each adaptation reason");


/* Room a single rendered line may need; a new buffer is started below. */
#define NGX_HTTP_SNAPCACHE_LINE_MAX   1024
#define NGX_HTTP_SNAPCACHE_OUT_CHUNK  16384


typedef struct {
    ngx_pool_t    *pool;
    ngx_chain_t   *first;
    ngx_chain_t  **last;
    ngx_buf_t     *b;
    off_t          len;
    ngx_uint_t     failed;
} ngx_http_snapcache_out_t;


typedef struct {
    const char    *name;
    const char    *help;
    const uint64_t *bounds;       /* upper bounds in usec, 0-terminated */
} ngx_http_snapcache_hist_def_t;


static ngx_int_t ngx_http_snapcache_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_label(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *name);
static void ngx_http_snapcache_hist_add(ngx_http_snapcache_hist_t *h,
    const uint64_t *bounds, uint64_t usec);
static void ngx_http_snapcache_out(ngx_http_snapcache_out_t *w,
    const char *fmt, ...);
static void ngx_http_snapcache_out_family(ngx_http_snapcache_out_t *w,
    const char *name, const char *type, const char *help);
static u_char *ngx_http_snapcache_seconds(u_char *buf, uint64_t usec);
static void ngx_http_snapcache_out_hist(ngx_http_snapcache_out_t *w,
    const char *name, const char *labels, ngx_http_snapcache_hist_t *h,
    const uint64_t *bounds);
static ngx_int_t ngx_http_snapcache_out_done(ngx_http_snapcache_out_t *w,
    ngx_chain_t **out, off_t *len);


static uint64_t   ngx_http_snapcache_evictions_seen;


/* Fills include the origin fetch: 5 ms to 10 s. */
static const uint64_t  ngx_http_snapcache_fill_bounds[] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000, 0
};

static const uint64_t  ngx_http_snapcache_transcode_bounds[] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 0
};

/* A purge answers once its deletes are on disk: 1 ms to 5 s. */
static const uint64_t  ngx_http_snapcache_purge_bounds[] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 0
};


static ngx_http_snapcache_hist_def_t  ngx_http_snapcache_hists[] = {
    { "snapcache_fill_duration_seconds",
      "Time from a fill's start (origin fetch or kept original) to its "
      "answer.",
      ngx_http_snapcache_fill_bounds },
    { "snapcache_purge_duration_seconds",
      "Time from a purge request's generation bump to its durable end.",
      ngx_http_snapcache_purge_bounds }
};


/* Label values, indexed as the enums in ngx_http_snapcache.h. */
static const char  *ngx_http_snapcache_status_labels[] = {
    "none", "hit", "miss", "stale", "bypass", "denied", "error"
};

static const char  *ngx_http_snapcache_fill_labels[] = {
    "stored", "uncached", "purged", "failed", "rejected"
};

static const char  *ngx_http_snapcache_scope_labels[] = {
    "none", "account", "device", "snapshot"
};

static const char  *ngx_http_snapcache_purge_labels[] = {
    "ok", "failed", "bad_request", "unauthorized"
};


ngx_int_t
ngx_http_snapcache_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_snapcache_log_handler;

    return NGX_OK;
}


uint64_t
ngx_http_snapcache_usec(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/*
 * Every request whose ctx says how it ended, and every request of a
 * snapcache location that ended before it could (an allocation failed),
 * counts once by that status, with the bytes sent.
 */
static ngx_int_t
ngx_http_snapcache_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                       status;
    ngx_http_snapcache_ctx_t        *ctx;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (smcf == NULL || smcf->sh == NULL) {
        return NGX_OK;
    }

    ctx = ngx_http_snapcache_get_ctx(r);
    status = ctx ? ctx->status : NGX_HTTP_SNAPCACHE_NONE;

    if (status == NGX_HTTP_SNAPCACHE_NONE) {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);

        if (slcf == NULL || !slcf->enable) {
            return NGX_OK;
        }

        status = NGX_HTTP_SNAPCACHE_ERROR;
    }

    ngx_atomic_fetch_add(&smcf->sh->metrics.requests[status], 1);
    ngx_atomic_fetch_add(&smcf->sh->metrics.sent_bytes,
                         (ngx_atomic_int_t) r->connection->sent);

    return NGX_OK;
}


/*
 * The zone's slot of a variant name, claimed the first time it is seen.
 * Slots are claimed in order and never given back, so a reader scans
 * without the lock; NGX_ERROR when all are taken.
 */
static ngx_int_t
ngx_http_snapcache_label(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *name)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i, len;
    ngx_http_snapcache_label_t  *l;

    if (name == NULL || name->len == 0 || name->len > SNAPCACHE_ID_MAX) {
        return NGX_ERROR;
    }

    l = smcf->sh->metrics.labels;

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS; i++) {
        len = l[i].len;

        if (len == 0) {
            break;
        }

        if (len == name->len && ngx_memcmp(l[i].name, name->data, len) == 0)
        {
            return (ngx_int_t) i;
        }
    }

    rc = NGX_ERROR;

    ngx_shmtx_lock(&smcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS; i++) {
        len = l[i].len;

        if (len == name->len && ngx_memcmp(l[i].name, name->data, len) == 0)
        {
            rc = (ngx_int_t) i;
            break;
        }

        if (len == 0) {
            ngx_memcpy(l[i].name, name->data, name->len);
            ngx_memory_barrier();
            l[i].len = name->len;
            rc = (ngx_int_t) i;
            break;
        }
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);

    return rc;
}


static void
ngx_http_snapcache_hist_add(ngx_http_snapcache_hist_t *h,
    const uint64_t *bounds, uint64_t usec)
{
    ngx_uint_t  i;

    for (i = 0; bounds[i] && usec > bounds[i]; i++) {
        /* void */
    }

    ngx_atomic_fetch_add(&h->buckets[i], 1);
    ngx_atomic_fetch_add(&h->count, 1);
    ngx_atomic_fetch_add(&h->sum_usec, (ngx_atomic_int_t) usec);
}


/* A fill's end; start is 0 for a fill that was refused before it began. */
void
ngx_http_snapcache_count_fill(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t result, uint64_t start)
{
    uint64_t  now;

    if (smcf->sh == NULL || result >= NGX_HTTP_SNAPCACHE_NFILL_RESULTS) {
        return;
    }

    ngx_atomic_fetch_add(&smcf->sh->metrics.fills[result], 1);

    if (start) {
        now = ngx_http_snapcache_usec();
        ngx_http_snapcache_hist_add(
            &smcf->sh->metrics.hists[NGX_HTTP_SNAPCACHE_HIST_FILL],
            ngx_http_snapcache_fill_bounds, now > start ? now - start : 0);
    }
}


void
ngx_http_snapcache_count_served(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t reason)
{
    ngx_int_t  i;

    if (smcf->sh == NULL || reason >= NGX_HTTP_SNAPCACHE_NREASONS) {
        return;
    }

    i = ngx_http_snapcache_label(smcf, variant);
    if (i == NGX_ERROR) {
        return;
    }

    ngx_atomic_fetch_add(&smcf->sh->metrics.served[i][reason], 1);
}


void
ngx_http_snapcache_count_transcode(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, uint64_t usec)
{
    ngx_int_t  i;

    if (smcf->sh == NULL) {
        return;
    }

    i = ngx_http_snapcache_label(smcf, variant);
    if (i == NGX_ERROR) {
        return;
    }

    ngx_http_snapcache_hist_add(&smcf->sh->metrics.transcode[i],
                                ngx_http_snapcache_transcode_bounds, usec);
}


void
ngx_http_snapcache_count_bad(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t foreign)
{
    if (smcf->sh) {
        ngx_atomic_fetch_add(foreign ? &smcf->sh->metrics.bad_foreign
                                     : &smcf->sh->metrics.bad_corrupt, 1);
    }
}


void
ngx_http_snapcache_count_rejected(ngx_http_snapcache_main_conf_t *smcf)
{
    if (smcf->sh) {
        ngx_atomic_fetch_add(&smcf->sh->metrics.pool_rejections, 1);
    }
}


/*
 * Eviction runs inside cache/'s put and is counted per process there;
 * each worker adds what its own process evicted since it last looked.
 */
void
ngx_http_snapcache_count_store(ngx_http_snapcache_main_conf_t *smcf)
{
    snapcache_cache_stats_t  st;

    if (smcf->sh == NULL || smcf->store == NULL
        || snapcache_cache_stats(smcf->store, &st) != SNAPCACHE_CACHE_OK)
    {
        return;
    }

    if (st.evictions > ngx_http_snapcache_evictions_seen) {
        ngx_atomic_fetch_add(&smcf->sh->metrics.evictions,
                             (ngx_atomic_int_t)
                             (st.evictions
                              - ngx_http_snapcache_evictions_seen));
        ngx_http_snapcache_evictions_seen = st.evictions;
    }
}


void
ngx_http_snapcache_count_purge(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t scope, ngx_uint_t result, uint64_t records)
{
    if (smcf->sh == NULL || scope >= NGX_HTTP_SNAPCACHE_NSCOPES
        || result >= NGX_HTTP_SNAPCACHE_NPURGE_RESULTS)
    {
        return;
    }

    ngx_atomic_fetch_add(&smcf->sh->metrics.purge_requests[scope][result], 1);

    if (records) {
        ngx_atomic_fetch_add(&smcf->sh->metrics.purged_records,
                             (ngx_atomic_int_t) records);
    }
}


void
ngx_http_snapcache_observe_purge(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t usec)
{
    if (smcf->sh) {
        ngx_http_snapcache_hist_add(
            &smcf->sh->metrics.hists[NGX_HTTP_SNAPCACHE_HIST_PURGE],
            ngx_http_snapcache_purge_bounds, usec);
    }
}


/* Appends one formatted piece; a new buffer when the room runs short. */
static void
ngx_http_snapcache_out(ngx_http_snapcache_out_t *w, const char *fmt, ...)
{
    u_char       *p;
    va_list       args;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (w->failed) {
        return;
    }

    if (w->b == NULL || w->b->end - w->b->last < NGX_HTTP_SNAPCACHE_LINE_MAX)
    {
        b = ngx_create_temp_buf(w->pool, NGX_HTTP_SNAPCACHE_OUT_CHUNK);
        cl = ngx_alloc_chain_link(w->pool);

        if (b == NULL || cl == NULL) {
            w->failed = 1;
            return;
        }

        cl->buf = b;
        cl->next = NULL;
        *w->last = cl;
        w->last = &cl->next;
        w->b = b;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(w->b->last, w->b->end, fmt, args);
    va_end(args);

    w->len += p - w->b->last;
    w->b->last = p;
}


static void
ngx_http_snapcache_out_family(ngx_http_snapcache_out_t *w, const char *name,
    const char *type, const char *help)
{
    ngx_http_snapcache_out(w, "# HELP %s %s\n# TYPE %s %s\n",
                           name, help, name, type);
}


/* usec as seconds without trailing zeros, "0.0025" or "10", in buf. */
static u_char *
ngx_http_snapcache_seconds(u_char *buf, uint64_t usec)
{
    u_char  *p;

    p = ngx_sprintf(buf, "%uL.%06uL", usec / 1000000, usec % 1000000);

    while (p[-1] == '0') {
        p--;
    }

    if (p[-1] == '.') {
        p--;
    }

    *p = '\0';

    return buf;
}


/* Cumulative buckets; _count is their total, so the two always agree. */
static void
ngx_http_snapcache_out_hist(ngx_http_snapcache_out_t *w, const char *name,
    const char *labels, ngx_http_snapcache_hist_t *h, const uint64_t *bounds)
{
    u_char      le[NGX_INT64_LEN + 8];
    uint64_t    total, sum;
    ngx_uint_t  i;

    total = 0;

    for (i = 0; bounds[i]; i++) {
        total += h->buckets[i];
        ngx_http_snapcache_out(w, "%s_bucket{%s%sle=\"%s\"} %uL\n",
                               name, labels, labels[0] ? "," : "",
                               ngx_http_snapcache_seconds(le, bounds[i]),
                               total);
    }

    total += h->buckets[i];
    sum = h->sum_usec;

    ngx_http_snapcache_out(w, "%s_bucket{%s%sle=\"+Inf\"} %uL\n",
                           name, labels, labels[0] ? "," : "", total);

    if (labels[0]) {
        ngx_http_snapcache_out(w, "%s_sum{%s} %uL.%06uL\n"
                               "%s_count{%s} %uL\n",
                               name, labels, sum / 1000000, sum % 1000000,
                               name, labels, total);
    } else {
        ngx_http_snapcache_out(w, "%s_sum %uL.%06uL\n%s_count %uL\n",
                               name, sum / 1000000, sum % 1000000,
                               name, total);
    }
}


static ngx_int_t
ngx_http_snapcache_out_done(ngx_http_snapcache_out_t *w, ngx_chain_t **out,
    off_t *len)
{
    if (w->failed || w->first == NULL) {
        return NGX_ERROR;
    }

    w->b->last_buf = 1;
    w->b->last_in_chain = 1;

    *out = w->first;
    *len = w->len;

    return NGX_OK;
}


/* The Prometheus text exposition format, version 0.0.4. */
ngx_int_t
ngx_http_snapcache_metrics_text(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_chain_t **out, off_t *len)
{
    u_char                        labels[128];
    ngx_uint_t                    i, j, n;
    ngx_atomic_t                 *stats;
    ngx_http_snapcache_out_t      w;
    snapcache_cache_stats_t       st;
    ngx_http_snapcache_label_t   *l;
    ngx_http_snapcache_metrics_t *m;

    ngx_memzero(&w, sizeof(ngx_http_snapcache_out_t));
    w.pool = r->pool;
    w.last = &w.first;

    m = &smcf->sh->metrics;
    stats = smcf->sh->stats;
    l = m->labels;

    ngx_http_snapcache_count_store(smcf);

    ngx_http_snapcache_out_family(&w, "snapcache_requests_total", "counter",
        "Requests answered by snapcache locations, by cache status.");

    for (i = NGX_HTTP_SNAPCACHE_HIT; i <= NGX_HTTP_SNAPCACHE_ERROR; i++) {
        ngx_http_snapcache_out(&w, "snapcache_requests_total{status=\"%s\"} "
                               "%uA\n", ngx_http_snapcache_status_labels[i],
                               m->requests[i]);
    }

    ngx_http_snapcache_out_family(&w, "snapcache_sent_bytes_total", "counter",
        "Bytes sent, headers and body, in answer to those requests.");
    ngx_http_snapcache_out(&w, "snapcache_sent_bytes_total %uA\n",
                           m->sent_bytes);

    ngx_http_snapcache_out_family(&w, "snapcache_fills_total", "counter",
        "Fills by how they ended: stored, served uncached, thrown away "
        "for a purge, failed, or refused by a full thread pool.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NFILL_RESULTS; i++) {
        ngx_http_snapcache_out(&w, "snapcache_fills_total{result=\"%s\"} "
                               "%uA\n", ngx_http_snapcache_fill_labels[i],
                               m->fills[i]);
    }

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NHISTS; i++) {
        ngx_http_snapcache_out_family(&w, ngx_http_snapcache_hists[i].name,
                                      "histogram",
                                      ngx_http_snapcache_hists[i].help);
        ngx_http_snapcache_out_hist(&w, ngx_http_snapcache_hists[i].name, "",
                                    &m->hists[i],
                                    ngx_http_snapcache_hists[i].bounds);
    }

    ngx_http_snapcache_out_family(&w, "snapcache_transcode_duration_seconds",
        "histogram", "Time libvips took to make one variant, on the thread "
        "pool.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS && l[i].len; i++) {
        ngx_sprintf(labels, "variant=\"%*s\"%Z", (size_t) l[i].len,
                    l[i].name);
        ngx_http_snapcache_out_hist(&w,
                                    "snapcache_transcode_duration_seconds",
                                    (char *) labels, &m->transcode[i],
                                    ngx_http_snapcache_transcode_bounds);
    }

    ngx_http_snapcache_out_family(&w, "snapcache_served_total", "counter",
        "Images served (hit, miss or stale), by variant and by why that "
        "variant was chosen.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS && l[i].len; i++) {
        for (j = 0; j < NGX_HTTP_SNAPCACHE_NREASONS; j++) {
            ngx_http_snapcache_out(&w, "snapcache_served_total{variant="
                                   "\"%*s\",reason=\"%s\"} %uA\n",
                                   (size_t) l[i].len, l[i].name,
                                   snapcache_adapt_reason_name(j),
                                   m->served[i][j]);
        }
    }

    ngx_http_snapcache_out_family(&w, "snapcache_purge_requests_total",
        "counter", "Purge scopes by kind and result; refused requests "
        "count once with scope \"none\".");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NSCOPES; i++) {
        for (j = 0; j < NGX_HTTP_SNAPCACHE_NPURGE_RESULTS; j++) {
            ngx_http_snapcache_out(&w, "snapcache_purge_requests_total{scope="
                                   "\"%s\",result=\"%s\"} %uA\n",
                                   ngx_http_snapcache_scope_labels[i],
                                   ngx_http_snapcache_purge_labels[j],
                                   m->purge_requests[i][j]);
        }
    }

    ngx_http_snapcache_out_family(&w, "snapcache_purged_records_total",
        "counter", "Records purges removed from the store.");
    ngx_http_snapcache_out(&w, "snapcache_purged_records_total %uA\n",
                           m->purged_records);

    ngx_http_snapcache_out_family(&w, "snapcache_purge_generation", "gauge",
        "Purges this node has begun since its zone was created.");
    ngx_http_snapcache_out(&w, "snapcache_purge_generation %uA\n",
                           m->purge_generation);

    ngx_http_snapcache_out_family(&w, "snapcache_evictions_total", "counter",
        "Records evicted to keep the store under its high watermark.");
    ngx_http_snapcache_out(&w, "snapcache_evictions_total %uA\n",
                           m->evictions);

    ngx_http_snapcache_out_family(&w, "snapcache_bad_records_deleted_total",
        "counter", "Reads that found a record of another owner (foreign) "
        "or a damaged one (corrupt); the fill that follows replaces it.");
    ngx_http_snapcache_out(&w, "snapcache_bad_records_deleted_total"
                           "{kind=\"foreign\"} %uA\n"
                           "snapcache_bad_records_deleted_total"
                           "{kind=\"corrupt\"} %uA\n",
                           m->bad_foreign, m->bad_corrupt);

    ngx_http_snapcache_out_family(&w, "snapcache_thread_pool_rejections_total",
        "counter", "Fills and purges refused because the thread pool was "
        "full.");
    ngx_http_snapcache_out(&w, "snapcache_thread_pool_rejections_total %uA\n",
                           m->pool_rejections);

    ngx_http_snapcache_out_family(&w, "snapcache_origin_fetches_total",
        "counter", "Requests made to the origin location.");
    ngx_http_snapcache_out(&w, "snapcache_origin_fetches_total %uA\n",
                           stats[NGX_HTTP_SNAPCACHE_ST_ORIGIN_FETCHES]);

    ngx_http_snapcache_out_family(&w, "snapcache_coalesced_total", "counter",
        "Misses that waited on another request's fill.");
    ngx_http_snapcache_out(&w, "snapcache_coalesced_total %uA\n",
                           stats[NGX_HTTP_SNAPCACHE_ST_COALESCED]);

    ngx_http_snapcache_out_family(&w, "snapcache_lock_timeouts_total",
        "counter", "Waiters that gave up on a fill and filled uncached.");
    ngx_http_snapcache_out(&w, "snapcache_lock_timeouts_total %uA\n",
                           stats[NGX_HTTP_SNAPCACHE_ST_LOCK_TIMEOUTS]);

    if (smcf->store
        && snapcache_cache_stats(smcf->store, &st) == SNAPCACHE_CACHE_OK)
    {
        n = st.page_size;

        ngx_http_snapcache_out_family(&w, "snapcache_store_records", "gauge",
            "Records in the store.");
        ngx_http_snapcache_out(&w, "snapcache_store_records %uL\n",
                               st.entries);

        ngx_http_snapcache_out_family(&w, "snapcache_store_used_bytes",
            "gauge", "Bytes of the store in use.");
        ngx_http_snapcache_out(&w, "snapcache_store_used_bytes %uL\n",
                               st.used_pages * n);

        ngx_http_snapcache_out_family(&w, "snapcache_store_size_bytes",
            "gauge", "The store's configured size.");
        ngx_http_snapcache_out(&w, "snapcache_store_size_bytes %uL\n",
                               st.total_pages * n);
    }

    return ngx_http_snapcache_out_done(&w, out, len);
}


/*
 * The zone's counters ($snapcache_stats, read through the variable so
 * that a counter added there appears here too), fills, purges and the
 * store's use.
 */
ngx_int_t
ngx_http_snapcache_stats_json(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_chain_t **out, off_t *len)
{
    u_char                        *p, *end, *eq, *sp;
    ngx_str_t                      name = ngx_string("snapcache_stats");
    ngx_uint_t                     i, key, first;
    ngx_http_snapcache_out_t       w;
    snapcache_cache_stats_t        st;
    ngx_http_variable_value_t     *vv;
    ngx_http_snapcache_metrics_t  *m;

    ngx_memzero(&w, sizeof(ngx_http_snapcache_out_t));
    w.pool = r->pool;
    w.last = &w.first;

    m = &smcf->sh->metrics;

    ngx_http_snapcache_count_store(smcf);

    ngx_http_snapcache_out(&w, "{\"counters\":{");

    key = ngx_hash_key(name.data, name.len);
    vv = ngx_http_get_variable(r, &name, key);

    if (vv && !vv->not_found) {
        p = vv->data;
        end = p + vv->len;
        first = 1;

        while (p < end) {
            sp = ngx_strlchr(p, end, ' ');
            sp = sp ? sp : end;
            eq = ngx_strlchr(p, sp, '=');

            if (eq) {
                ngx_http_snapcache_out(&w, "%s\"%*s\":%*s", first ? "" : ",",
                                       (size_t) (eq - p), p,
                                       (size_t) (sp - eq - 1), eq + 1);
                first = 0;
            }

            p = sp + 1;
        }
    }

    ngx_http_snapcache_out(&w, "},\"fills\":{");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NFILL_RESULTS; i++) {
        ngx_http_snapcache_out(&w, "%s\"%s\":%uA", i ? "," : "",
                               ngx_http_snapcache_fill_labels[i],
                               m->fills[i]);
    }

    ngx_http_snapcache_out(&w, "},\"purge\":{\"ok\":%uA,\"failed\":%uA,"
                           "\"refused\":%uA,\"records\":%uA,"
                           "\"generation\":%uA}",
                           m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_ACCOUNT]
                                            [NGX_HTTP_SNAPCACHE_PURGE_OK]
                           + m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_DEVICE]
                                              [NGX_HTTP_SNAPCACHE_PURGE_OK]
                           + m->purge_requests
                                 [NGX_HTTP_SNAPCACHE_SCOPE_SNAPSHOT]
                                 [NGX_HTTP_SNAPCACHE_PURGE_OK],
                           m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_ACCOUNT]
                                            [NGX_HTTP_SNAPCACHE_PURGE_FAILED]
                           + m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_DEVICE]
                                              [NGX_HTTP_SNAPCACHE_PURGE_FAILED]
                           + m->purge_requests
                                 [NGX_HTTP_SNAPCACHE_SCOPE_SNAPSHOT]
                                 [NGX_HTTP_SNAPCACHE_PURGE_FAILED],
                           m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_NONE]
                                 [NGX_HTTP_SNAPCACHE_PURGE_BAD_REQUEST]
                           + m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_NONE]
                                 [NGX_HTTP_SNAPCACHE_PURGE_UNAUTHORIZED],
                           m->purged_records, m->purge_generation);

    ngx_http_snapcache_out(&w, ",\"requests\":{");

    for (i = NGX_HTTP_SNAPCACHE_HIT; i <= NGX_HTTP_SNAPCACHE_ERROR; i++) {
        ngx_http_snapcache_out(&w, "%s\"%s\":%uA",
                               i > NGX_HTTP_SNAPCACHE_HIT ? "," : "",
                               ngx_http_snapcache_status_labels[i],
                               m->requests[i]);
    }

    ngx_http_snapcache_out(&w, "},\"sent_bytes\":%uA,\"evictions\":%uA,"
                           "\"thread_pool_rejections\":%uA",
                           m->sent_bytes, m->evictions, m->pool_rejections);

    if (smcf->store
        && snapcache_cache_stats(smcf->store, &st) == SNAPCACHE_CACHE_OK)
    {
        ngx_http_snapcache_out(&w, ",\"store\":{\"open\":true,"
                               "\"records\":%uL,\"used_bytes\":%uL,"
                               "\"size_bytes\":%uL}}\n",
                               st.entries, st.used_pages * st.page_size,
                               st.total_pages * st.page_size);
    } else {
        ngx_http_snapcache_out(&w, ",\"store\":{\"open\":false}}\n");
    }

    return ngx_http_snapcache_out_done(&w, out, len);
}
