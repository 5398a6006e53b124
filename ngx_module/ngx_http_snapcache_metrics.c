
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: metrics, counted.  Counters and fixed-bucket histograms
 * live in the shared zone, so every worker adds to the same numbers and
 * a scrape served by any worker sees them all; what a worker alone
 * knows (its fills in flight) sits in its own slot of the zone.  This
 * file records them and counts each request once, in the log phase,
 * when its status is final.  ngx_http_snapcache_expose.c renders them.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


_Static_assert(NGX_HTTP_SNAPCACHE_NREASONS == SNAPCACHE_ADAPT_NREASONS,
               "a served_total counter for each adaptation reason");
_Static_assert(SNAPCACHE_SIGN_LIFETIME - SNAPCACHE_SIGN_KEY + 1
               == NGX_HTTP_SNAPCACHE_NDENY,
               "a denied_total counter for each of the gate's refusals");


static ngx_int_t ngx_http_snapcache_log_handler(ngx_http_request_t *r);
static uint64_t ngx_http_snapcache_request_usec(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_label(ngx_http_snapcache_main_conf_t *smcf,
    ngx_http_snapcache_label_t *l, const u_char *name, size_t len,
    ngx_uint_t claim);
static void ngx_http_snapcache_hist_add(ngx_http_snapcache_hist_t *h,
    const uint64_t *bounds, uint64_t usec);


static uint64_t   ngx_http_snapcache_evictions_seen;


/* Requests, from their first byte read to their log: 1 ms to 10 s. */
static const uint64_t  ngx_http_snapcache_request_bounds[] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 10000000, 0
};

/* Fills and origin fetches: 5 ms to 10 s. */
static const uint64_t  ngx_http_snapcache_fill_bounds[] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000, 0
};

/* Transcodes, AVIF's included: 1 ms to 10 s. */
static const uint64_t  ngx_http_snapcache_transcode_bounds[] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 10000000, 0
};

/* A purge answers once its deletes are on disk: 1 ms to 5 s. */
static const uint64_t  ngx_http_snapcache_purge_bounds[] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 0
};


/* indexed as ngx_http_snapcache_hist_e */
static const uint64_t  *ngx_http_snapcache_bounds[] = {
    ngx_http_snapcache_fill_bounds,
    ngx_http_snapcache_purge_bounds,
    ngx_http_snapcache_fill_bounds,
    ngx_http_snapcache_request_bounds,
    ngx_http_snapcache_transcode_bounds
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


const uint64_t *
ngx_http_snapcache_hist_bounds(ngx_uint_t hist)
{
    return ngx_http_snapcache_bounds[hist];
}


/*
 * Each request whose ctx says how it ended, and each request of a
 * snapcache location that ended before it could (an allocation failed),
 * counts once, here, by that status: the requests, the bytes sent, the
 * HTTP status and the time taken.  A CORS preflight counts by its HTTP
 * status alone: it asked for no image.
 */
static ngx_int_t
ngx_http_snapcache_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                       status, code;
    ngx_http_snapcache_ctx_t        *ctx;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_http_snapcache_metrics_t    *m;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (smcf == NULL || smcf->sh == NULL) {
        return NGX_OK;
    }

    ctx = ngx_http_snapcache_get_ctx(r);
    status = ctx ? ctx->status : NGX_HTTP_SNAPCACHE_NONE;

    if (status == NGX_HTTP_SNAPCACHE_NONE && !(ctx && ctx->preflight)) {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);

        if (slcf == NULL || !slcf->enable) {
            return NGX_OK;
        }

        status = NGX_HTTP_SNAPCACHE_ERROR;
    }

    m = &smcf->sh->metrics;

    /* as $status says it */
    code = r->err_status ? r->err_status : r->headers_out.status;

    if (code >= 100 && code < 100 + NGX_HTTP_SNAPCACHE_CODES) {
        ngx_atomic_fetch_add(&m->codes[code - 100], 1);
    }

    if (status == NGX_HTTP_SNAPCACHE_NONE) {
        return NGX_OK;
    }

    ngx_atomic_fetch_add(&m->requests[status], 1);
    ngx_atomic_fetch_add(&m->sent_bytes,
                         (ngx_atomic_int_t) r->connection->sent);

    if (code >= 100 && code < 100 + NGX_HTTP_SNAPCACHE_CODES) {
        ngx_http_snapcache_hist_add(&m->request_time[status][code / 100 - 1],
                                    ngx_http_snapcache_request_bounds,
                                    ngx_http_snapcache_request_usec(r));
    }

    return NGX_OK;
}


/* As $request_time measures: from the request's first byte, read. */
static uint64_t
ngx_http_snapcache_request_usec(ngx_http_request_t *r)
{
    int64_t         usec;
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    usec = ((int64_t) tv.tv_sec - (int64_t) r->start_sec) * 1000000
           + (int64_t) tv.tv_usec - (int64_t) r->start_msec * 1000;

    return usec > 0 ? (uint64_t) usec : 0;
}


/*
 * The slot of a label (a variant name, a kid) in one of the zone's
 * tables, claimed the first time it is seen when claim is set.  Slots
 * are claimed in order and never given back, so a reader scans without
 * the lock; NGX_ERROR when it is not there, or all are taken.
 */
static ngx_int_t
ngx_http_snapcache_label(ngx_http_snapcache_main_conf_t *smcf,
    ngx_http_snapcache_label_t *l, const u_char *name, size_t len,
    ngx_uint_t claim)
{
    ngx_int_t   rc;
    ngx_uint_t  i, n;

    if (len == 0 || len > SNAPCACHE_ID_MAX) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS; i++) {
        n = l[i].len;

        if (n == 0) {
            break;
        }

        if (n == len && ngx_memcmp(l[i].name, name, len) == 0) {
            return (ngx_int_t) i;
        }
    }

    if (!claim) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    ngx_shmtx_lock(&smcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS; i++) {
        n = l[i].len;

        if (n == len && ngx_memcmp(l[i].name, name, len) == 0) {
            rc = (ngx_int_t) i;
            break;
        }

        if (n == 0) {
            ngx_memcpy(l[i].name, name, len);
            ngx_memory_barrier();
            l[i].len = len;
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


/*
 * A worker's start (start set) or end.  It claims its process slot and
 * the labels of the kids its configuration has, so that
 * snapcache_denied_total and snapcache_verified_total show every
 * configured kid from the first scrape, and only those.  Workers of
 * the previous configuration may still run beside it after a reload:
 * they keep their own slots until they exit.
 */
void
ngx_http_snapcache_metrics_worker(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf, ngx_uint_t start)
{
    ngx_str_t                         *kid;
    ngx_uint_t                         i;
    ngx_http_snapcache_metrics_t      *m;
    ngx_http_snapcache_worker_slot_t  *w;

    if (smcf->sh == NULL || ngx_process_slot < 0
        || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    m = &smcf->sh->metrics;
    w = &m->workers[ngx_process_slot];

    if (!start) {
        if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
            w->fills = 0;
            w->memory_bytes = 0;
            w->memory_entries = 0;
            ngx_memory_barrier();
            w->pid = 0;
        }

        return;
    }

    w->pid = 0;
    ngx_memory_barrier();
    w->fills = 0;
    w->memory_bytes = 0;
    w->memory_entries = 0;
    ngx_memory_barrier();
    w->pid = (ngx_atomic_uint_t) ngx_pid;

    if (smcf->kids == NULL) {
        return;
    }

    kid = smcf->kids->elts;

    for (i = 0; i < smcf->kids->nelts; i++) {
        if (ngx_http_snapcache_label(smcf, m->kids, kid[i].data, kid[i].len,
                                     1)
            == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "snapcache: more than %d kids since the zone "
                          "was made, \"%V\" is counted without its label",
                          NGX_HTTP_SNAPCACHE_KIDS, &kid[i]);
        }
    }
}


/* This worker's fills in flight moved by n: its own count and its slot. */
void
ngx_http_snapcache_fills_change(ngx_http_snapcache_main_conf_t *smcf,
    ngx_int_t n)
{
    ngx_http_snapcache_worker_slot_t  *w;

    smcf->fills += n;

    if (smcf->sh == NULL || ngx_process_slot < 0
        || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    w = &smcf->sh->metrics.workers[ngx_process_slot];

    if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
        w->fills = smcf->fills;
    }
}


/*
 * A worker slot's field summed over the node: the slots of the workers
 * that live, those of the previous configuration that still finish their
 * requests included.  A killed worker's slot is left out until it is
 * taken again.
 */
ngx_uint_t
ngx_http_snapcache_workers_sum(ngx_http_snapcache_main_conf_t *smcf,
    size_t field)
{
    ngx_pid_t                          pid;
    ngx_uint_t                         i, n;
    ngx_http_snapcache_worker_slot_t  *w;

    w = smcf->sh->metrics.workers;
    n = 0;

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        pid = (ngx_pid_t) w[i].pid;

        if (pid == 0) {
            continue;
        }

        if (pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH) {
            n += *(ngx_atomic_t *) ((u_char *) &w[i] + field);
        }
    }

    return n;
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


/*
 * An origin fetch's end: the status the origin location answered
 * (the proxy's own 502 or 504 when the origin failed), whether it was
 * a usable original, and the time from its start.
 */
void
ngx_http_snapcache_count_origin(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t code, ngx_uint_t usable, uint64_t start)
{
    uint64_t                       now;
    ngx_http_snapcache_metrics_t  *m;

    if (smcf->sh == NULL) {
        return;
    }

    m = &smcf->sh->metrics;

    if (code >= 100 && code < 100 + NGX_HTTP_SNAPCACHE_CODES) {
        ngx_atomic_fetch_add(&m->origin_codes[code - 100 + 1], 1);

    } else {
        ngx_atomic_fetch_add(&m->origin_codes[0], 1);
    }

    if (code == NGX_HTTP_OK && !usable) {
        ngx_atomic_fetch_add(&m->origin_unusable, 1);
    }

    if (start) {
        now = ngx_http_snapcache_usec();
        ngx_http_snapcache_hist_add(&m->hists[NGX_HTTP_SNAPCACHE_HIST_ORIGIN],
                                    ngx_http_snapcache_fill_bounds,
                                    now > start ? now - start : 0);
    }
}


/*
 * The gate's verdict on a URL that parsed: verified, or denied, by the
 * kid it named.  A kid no location configures (a denial for "key") is
 * counted without one, so the labels are the configuration's.
 */
void
ngx_http_snapcache_count_gate(ngx_http_snapcache_main_conf_t *smcf,
    snapcache_str_t *kid, int rc)
{
    ngx_int_t                      i;
    ngx_http_snapcache_metrics_t  *m;

    if (smcf->sh == NULL || rc < SNAPCACHE_SIGN_OK
        || rc > SNAPCACHE_SIGN_LIFETIME)
    {
        return;
    }

    m = &smcf->sh->metrics;

    i = NGX_ERROR;

    if (rc != SNAPCACHE_SIGN_KEY) {
        i = ngx_http_snapcache_label(smcf, m->kids, (const u_char *) kid->data,
                                     kid->len, 0);
    }

    if (i == NGX_ERROR) {
        i = NGX_HTTP_SNAPCACHE_KIDS;
    }

    if (rc == SNAPCACHE_SIGN_OK) {
        ngx_atomic_fetch_add(&m->verified[i], 1);

    } else {
        ngx_atomic_fetch_add(&m->denied[i][rc - SNAPCACHE_SIGN_KEY], 1);
    }
}


void
ngx_http_snapcache_count_served(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t reason)
{
    ngx_int_t  i;

    if (smcf->sh == NULL || reason >= NGX_HTTP_SNAPCACHE_NREASONS
        || variant == NULL)
    {
        return;
    }

    i = ngx_http_snapcache_label(smcf, smcf->sh->metrics.labels,
                                 variant->data, variant->len, 1);
    if (i == NGX_ERROR) {
        return;
    }

    ngx_atomic_fetch_add(&smcf->sh->metrics.served[i][reason], 1);
}


/* A fill's transcode: the rung asked for, in its format, and those below. */
void
ngx_http_snapcache_count_transcode(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t format, uint64_t usec)
{
    ngx_int_t  i;

    if (smcf->sh == NULL || variant == NULL
        || format >= SNAPCACHE_FORMAT_NCODES)
    {
        return;
    }

    i = ngx_http_snapcache_label(smcf, smcf->sh->metrics.labels,
                                 variant->data, variant->len, 1);
    if (i == NGX_ERROR) {
        return;
    }

    ngx_http_snapcache_hist_add(&smcf->sh->metrics.transcode[i][format],
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


/* A fill or a purge the thread pool or snapcache_max_fills refused. */
void
ngx_http_snapcache_count_rejected(ngx_http_snapcache_main_conf_t *smcf)
{
    if (smcf->sh) {
        ngx_atomic_fetch_add(&smcf->sh->metrics.pool_rejections, 1);
        smcf->sh->metrics.refused_at = (ngx_atomic_uint_t) ngx_time();
    }
}


/* Every fill lock was held by a live fill: this one runs uncoordinated. */
void
ngx_http_snapcache_count_lock_full(ngx_http_snapcache_main_conf_t *smcf)
{
    if (smcf->sh) {
        smcf->sh->metrics.lock_full_at = (ngx_atomic_uint_t) ngx_time();
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
