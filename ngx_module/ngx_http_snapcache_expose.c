
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the counters shown.  The zone's metrics as Prometheus text
 * (GET <admin>/metrics, format 0.0.4, base units) and as JSON
 * (GET <admin>/stats).  A plain counter or gauge of the zone is one
 * line of ngx_http_snapcache_scalars[]; labelled families have a
 * function each.  Nothing here counts.
 */


#include <nginx.h>

#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


#ifndef SNAPCACHE_VERSION
#define SNAPCACHE_VERSION  "unknown"
#endif


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


/* A counter or gauge without labels: an ngx_atomic_t of the metrics. */
typedef struct {
    const char    *name;
    const char    *type;
    const char    *help;
    size_t         offset;
} ngx_http_snapcache_scalar_t;


typedef struct {
    const char    *name;
    const char    *help;
} ngx_http_snapcache_hist_def_t;


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
static void ngx_http_snapcache_text_requests(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m);
static void ngx_http_snapcache_text_gate(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m);
static void ngx_http_snapcache_text_fills(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf);
static void ngx_http_snapcache_text_variants(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m);
static void ngx_http_snapcache_text_purges(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m);
static void ngx_http_snapcache_text_zone(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf, ngx_http_snapcache_figures_t *fig);
static void ngx_http_snapcache_text_memory(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf);
static void ngx_http_snapcache_text_store(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf);


static ngx_http_snapcache_hist_def_t  ngx_http_snapcache_hists[] = {
    { "snapcache_fill_duration_seconds",
      "Time from a fill's start (origin fetch or kept original) to its "
      "answer." },
    { "snapcache_purge_duration_seconds",
      "Time from a purge request's generation bump to its durable end." },
    { "snapcache_origin_fetch_duration_seconds",
      "Time from an origin subrequest's start to its end, whatever it "
      "answered." }
};


#define ngx_http_snapcache_m(field)                                          \
    offsetof(ngx_http_snapcache_metrics_t, field)

static ngx_http_snapcache_scalar_t  ngx_http_snapcache_scalars[] = {

    { "snapcache_sent_bytes_total", "counter",
      "Bytes sent, headers and body, in answer to the requests counted in "
      "snapcache_requests_total.", ngx_http_snapcache_m(sent_bytes) },

    { "snapcache_purged_records_total", "counter",
      "Records purges removed from the store.",
      ngx_http_snapcache_m(purged_records) },

    { "snapcache_purges_begun_total", "counter",
      "Purge requests this node began since its zone was made; a purge "
      "answers with this count as its generation.",
      ngx_http_snapcache_m(purge_generation) },

    { "snapcache_evictions_total", "counter",
      "Records evicted to keep the store under its high watermark.",
      ngx_http_snapcache_m(evictions) },

    { "snapcache_thread_pool_rejections_total", "counter",
      "Fills and purges refused because the thread pool or "
      "snapcache_max_fills had no room.",
      ngx_http_snapcache_m(pool_rejections) },

    { NULL, NULL, NULL, 0 }
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

/* SNAPCACHE_SIGN_KEY .. SNAPCACHE_SIGN_LIFETIME; a "key" names no kid */
#define NGX_HTTP_SNAPCACHE_DENY_KEY  (SNAPCACHE_SIGN_KEY - SNAPCACHE_SIGN_KEY)

static const char  *ngx_http_snapcache_mem_labels[] = {
    "size", "purged", "expired"
};

static const char  *ngx_http_snapcache_deny_labels[] = {
    "key", "signature", "expired", "lifetime"
};

/* the statuses shown even before they happen; others once they do */
static const ngx_uint_t  ngx_http_snapcache_usual_codes[] = {
    200, 304, 400, 403, 404, 405, 500, 502, 503, 504, 0
};


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
    ngx_http_snapcache_main_conf_t *smcf, ngx_http_snapcache_figures_t *fig,
    ngx_chain_t **out, off_t *len)
{
    ngx_http_snapcache_out_t       w;
    ngx_http_snapcache_scalar_t   *s;
    ngx_http_snapcache_metrics_t  *m;

    ngx_memzero(&w, sizeof(ngx_http_snapcache_out_t));
    w.pool = r->pool;
    w.last = &w.first;

    m = &smcf->sh->metrics;

    ngx_http_snapcache_count_store(smcf);

    ngx_http_snapcache_out_family(&w, "snapcache_build_info", "gauge",
        "The snapcache module's version and the nginx it was built for.");
    ngx_http_snapcache_out(&w, "snapcache_build_info{version=\"%s\","
                           "nginx=\"%s\"} 1\n", SNAPCACHE_VERSION,
                           NGINX_VERSION);

    ngx_http_snapcache_out_family(&w, "snapcache_zone_start_time_seconds",
        "gauge", "When the shared zone was made (nginx's start; a reload "
        "keeps it), in seconds since the epoch.");
    ngx_http_snapcache_out(&w, "snapcache_zone_start_time_seconds %T\n",
                           smcf->sh->epoch);

    ngx_http_snapcache_out_family(&w, "snapcache_cold_start_time_seconds",
        "gauge", "With snapcache_cold_start on, records stored at or "
        "before this time are not read (the start of nginx, or of the "
        "master a binary upgrade came from); 0 when off.");
    ngx_http_snapcache_out(&w, "snapcache_cold_start_time_seconds %T\n",
                           ngx_http_snapcache_not_before(smcf));

    ngx_http_snapcache_text_requests(&w, m);
    ngx_http_snapcache_text_gate(&w, m);
    ngx_http_snapcache_text_fills(&w, smcf);
    ngx_http_snapcache_text_variants(&w, m);
    ngx_http_snapcache_text_purges(&w, m);

    for (s = ngx_http_snapcache_scalars; s->name; s++) {
        ngx_http_snapcache_out_family(&w, s->name, s->type, s->help);
        ngx_http_snapcache_out(&w, "%s %uA\n", s->name,
                               *(ngx_atomic_t *) ((u_char *) m + s->offset));
    }

    ngx_http_snapcache_out_family(&w, "snapcache_bad_record_reads_total",
        "counter", "Reads that found a record of another owner (foreign) "
        "or a damaged one (corrupt): never served, a miss; the fill that "
        "follows overwrites it.");
    ngx_http_snapcache_out(&w, "snapcache_bad_record_reads_total"
                           "{kind=\"foreign\"} %uA\n"
                           "snapcache_bad_record_reads_total"
                           "{kind=\"corrupt\"} %uA\n",
                           m->bad_foreign, m->bad_corrupt);

    ngx_http_snapcache_out_family(&w, "snapcache_coalesced_total", "counter",
        "Misses that waited on another request's fill.");
    ngx_http_snapcache_out(&w, "snapcache_coalesced_total %uA\n",
                           smcf->sh->stats[NGX_HTTP_SNAPCACHE_ST_COALESCED]);

    ngx_http_snapcache_out_family(&w, "snapcache_lock_timeouts_total",
        "counter", "Waiters that gave up on a fill and filled uncached.");
    ngx_http_snapcache_out(&w, "snapcache_lock_timeouts_total %uA\n",
                           smcf->sh->stats[NGX_HTTP_SNAPCACHE_ST_LOCK_TIMEOUTS]);

    ngx_http_snapcache_text_zone(&w, smcf, fig);
    ngx_http_snapcache_text_memory(&w, smcf);
    ngx_http_snapcache_text_store(&w, smcf);

    return ngx_http_snapcache_out_done(&w, out, len);
}


/* Requests by cache status, their time by status and class, HTTP codes. */
static void
ngx_http_snapcache_text_requests(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m)
{
    u_char             labels[64];
    ngx_uint_t         i, c, code, usual;
    const ngx_uint_t  *u;

    ngx_http_snapcache_out_family(w, "snapcache_requests_total", "counter",
        "Requests answered by snapcache locations and peer endpoints, each "
        "once when it ends, by its $snapcache_status.");

    for (i = NGX_HTTP_SNAPCACHE_HIT; i <= NGX_HTTP_SNAPCACHE_ERROR; i++) {
        ngx_http_snapcache_out(w, "snapcache_requests_total{status=\"%s\"} "
                               "%uA\n", ngx_http_snapcache_status_labels[i],
                               m->requests[i]);
    }

    ngx_http_snapcache_out_family(w, "snapcache_request_duration_seconds",
        "histogram", "Time from a request's first byte to its end, as "
        "$request_time, by $snapcache_status and HTTP status class.");

    for (i = NGX_HTTP_SNAPCACHE_HIT; i <= NGX_HTTP_SNAPCACHE_ERROR; i++) {
        for (c = 2; c <= NGX_HTTP_SNAPCACHE_NCLASSES; c++) {
            ngx_sprintf(labels, "status=\"%s\",class=\"%uixx\"%Z",
                        ngx_http_snapcache_status_labels[i], c);
            ngx_http_snapcache_out_hist(w,
                "snapcache_request_duration_seconds", (char *) labels,
                &m->request_time[i][c - 1],
                ngx_http_snapcache_hist_bounds(
                    NGX_HTTP_SNAPCACHE_HIST_REQUEST));
        }
    }

    ngx_http_snapcache_out_family(w, "snapcache_responses_total", "counter",
        "Those requests, and CORS preflights, by the HTTP status they were "
        "answered with.");

    for (code = 100; code < 100 + NGX_HTTP_SNAPCACHE_CODES; code++) {
        usual = 0;

        for (u = ngx_http_snapcache_usual_codes; *u; u++) {
            if (*u == code) {
                usual = 1;
            }
        }

        if (usual || m->codes[code - 100]) {
            ngx_http_snapcache_out(w, "snapcache_responses_total"
                                   "{code=\"%ui\"} %uA\n", code,
                                   m->codes[code - 100]);
        }
    }
}


/* What the gate verified and denied, by the kids the configuration has. */
static void
ngx_http_snapcache_text_gate(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m)
{
    ngx_uint_t                   i, j, n;
    ngx_http_snapcache_label_t  *l;

    l = m->kids;

    for (n = 0; n < NGX_HTTP_SNAPCACHE_KIDS && l[n].len; n++) {
        /* void */
    }

    ngx_http_snapcache_out_family(w, "snapcache_verified_total", "counter",
        "Requests whose signature verified and was in time, by the kid "
        "that signed them.");

    for (i = 0; i < n; i++) {
        ngx_http_snapcache_out(w, "snapcache_verified_total{kid=\"%*s\"} "
                               "%uA\n", (size_t) l[i].len, l[i].name,
                               m->verified[i]);
    }

    if (m->verified[NGX_HTTP_SNAPCACHE_KIDS]) {
        ngx_http_snapcache_out(w, "snapcache_verified_total{kid=\"\"} %uA\n",
                               m->verified[NGX_HTTP_SNAPCACHE_KIDS]);
    }

    ngx_http_snapcache_out_family(w, "snapcache_denied_total", "counter",
        "Requests the gate answered 403, by why and by the configured kid "
        "they named (none for an unknown kid).");

    for (j = 0; j < NGX_HTTP_SNAPCACHE_NDENY; j++) {
        for (i = 0; i < n; i++) {
            if (j == NGX_HTTP_SNAPCACHE_DENY_KEY) {
                continue;
            }

            ngx_http_snapcache_out(w, "snapcache_denied_total{reason=\"%s\","
                                   "kid=\"%*s\"} %uA\n",
                                   ngx_http_snapcache_deny_labels[j],
                                   (size_t) l[i].len, l[i].name,
                                   m->denied[i][j]);
        }

        if (j == NGX_HTTP_SNAPCACHE_DENY_KEY
            || m->denied[NGX_HTTP_SNAPCACHE_KIDS][j])
        {
            ngx_http_snapcache_out(w, "snapcache_denied_total{reason=\"%s\","
                                   "kid=\"\"} %uA\n",
                                   ngx_http_snapcache_deny_labels[j],
                                   m->denied[NGX_HTTP_SNAPCACHE_KIDS][j]);
        }
    }
}


/* Fills, in flight and ended, and the origin fetches they made. */
static void
ngx_http_snapcache_text_fills(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf)
{
    ngx_uint_t                     i, code;
    ngx_atomic_uint_t              n;
    const char                    *result;
    ngx_http_snapcache_metrics_t  *m;

    m = &smcf->sh->metrics;

    ngx_http_snapcache_out_family(w, "snapcache_fills_total", "counter",
        "Fills by how they ended: stored, served uncached, thrown away "
        "for a purge, failed, or refused for want of room.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NFILL_RESULTS; i++) {
        ngx_http_snapcache_out(w, "snapcache_fills_total{result=\"%s\"} "
                               "%uA\n", ngx_http_snapcache_fill_labels[i],
                               m->fills[i]);
    }

    ngx_http_snapcache_out_family(w, "snapcache_fills_in_flight", "gauge",
        "Fills running now, in every worker: from their start to their "
        "thread task's end.");
    ngx_http_snapcache_out(w, "snapcache_fills_in_flight %ui\n",
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        fills)));

    ngx_http_snapcache_out_family(w, "snapcache_origin_fetches_total",
        "counter", "Origin subrequests ended, by the status the origin "
        "location answered and what the fill made of it: an original, a "
        "200 that was not one (short, too large), not_found, or error.");

    for (code = 0; code <= NGX_HTTP_SNAPCACHE_CODES; code++) {
        n = m->origin_codes[code];

        if (code == NGX_HTTP_OK - 100 + 1) {
            ngx_http_snapcache_out(w, "snapcache_origin_fetches_total"
                                   "{code=\"200\",result=\"original\"} %uA\n"
                                   "snapcache_origin_fetches_total"
                                   "{code=\"200\",result=\"unusable\"} %uA\n",
                                   n - m->origin_unusable,
                                   m->origin_unusable);
            continue;
        }

        if (n == 0 && code != NGX_HTTP_NOT_FOUND - 100 + 1) {
            continue;
        }

        result = (code == NGX_HTTP_NOT_FOUND - 100 + 1) ? "not_found"
                                                         : "error";

        if (code == 0) {
            ngx_http_snapcache_out(w, "snapcache_origin_fetches_total"
                                   "{code=\"none\",result=\"error\"} %uA\n",
                                   n);

        } else {
            ngx_http_snapcache_out(w, "snapcache_origin_fetches_total"
                                   "{code=\"%ui\",result=\"%s\"} %uA\n",
                                   code + 100 - 1, result, n);
        }
    }

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NHISTS; i++) {
        if (i == NGX_HTTP_SNAPCACHE_HIST_PURGE) {
            continue;
        }

        ngx_http_snapcache_out_family(w, ngx_http_snapcache_hists[i].name,
                                      "histogram",
                                      ngx_http_snapcache_hists[i].help);
        ngx_http_snapcache_out_hist(w, ngx_http_snapcache_hists[i].name, "",
                                    &m->hists[i],
                                    ngx_http_snapcache_hist_bounds(i));
    }
}


/* Transcodes by rung and format; images served by rung and reason. */
static void
ngx_http_snapcache_text_variants(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m)
{
    u_char                       labels[128];
    ngx_uint_t                   i, j, f;
    ngx_http_snapcache_label_t  *l;

    l = m->labels;

    ngx_http_snapcache_out_family(w, "snapcache_transcode_duration_seconds",
        "histogram", "Time libvips took for a fill, on the thread pool: "
        "the rung asked for, in its format, and the rungs below made "
        "from the same decode.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS && l[i].len; i++) {
        for (f = SNAPCACHE_FORMAT_JPEG; f < SNAPCACHE_FORMAT_NCODES; f++) {
            if (f != SNAPCACHE_FORMAT_JPEG && m->transcode[i][f].count == 0)
            {
                continue;
            }

            ngx_sprintf(labels, "variant=\"%*s\",format=\"%s\"%Z",
                        (size_t) l[i].len, l[i].name,
                        snapcache_format_name(f));
            ngx_http_snapcache_out_hist(w,
                "snapcache_transcode_duration_seconds", (char *) labels,
                &m->transcode[i][f],
                ngx_http_snapcache_hist_bounds(
                    NGX_HTTP_SNAPCACHE_HIST_TRANSCODE));
        }
    }

    ngx_http_snapcache_out_family(w, "snapcache_served_total", "counter",
        "Images served (hit, miss or stale), by variant and by why that "
        "variant was chosen ($snapcache_adapt_reason).");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LABELS && l[i].len; i++) {
        for (j = 0; j < NGX_HTTP_SNAPCACHE_NREASONS; j++) {
            ngx_http_snapcache_out(w, "snapcache_served_total{variant="
                                   "\"%*s\",reason=\"%s\"} %uA\n",
                                   (size_t) l[i].len, l[i].name,
                                   snapcache_adapt_reason_name(j),
                                   m->served[i][j]);
        }
    }
}


static void
ngx_http_snapcache_text_purges(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_metrics_t *m)
{
    ngx_uint_t  i, j;

    ngx_http_snapcache_out_family(w, "snapcache_purge_requests_total",
        "counter", "Purge scopes by kind and result; refused requests "
        "count once with scope \"none\".");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NSCOPES; i++) {
        for (j = 0; j < NGX_HTTP_SNAPCACHE_NPURGE_RESULTS; j++) {
            ngx_http_snapcache_out(w, "snapcache_purge_requests_total{scope="
                                   "\"%s\",result=\"%s\"} %uA\n",
                                   ngx_http_snapcache_scope_labels[i],
                                   ngx_http_snapcache_purge_labels[j],
                                   m->purge_requests[i][j]);
        }
    }

    ngx_http_snapcache_out_family(w,
        ngx_http_snapcache_hists[NGX_HTTP_SNAPCACHE_HIST_PURGE].name,
        "histogram",
        ngx_http_snapcache_hists[NGX_HTTP_SNAPCACHE_HIST_PURGE].help);
    ngx_http_snapcache_out_hist(w,
        ngx_http_snapcache_hists[NGX_HTTP_SNAPCACHE_HIST_PURGE].name, "",
        &m->hists[NGX_HTTP_SNAPCACHE_HIST_PURGE],
        ngx_http_snapcache_hist_bounds(NGX_HTTP_SNAPCACHE_HIST_PURGE));
}


/* The zone: its bytes, the fill locks and the link history it holds. */
static void
ngx_http_snapcache_text_zone(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf, ngx_http_snapcache_figures_t *fig)
{
    size_t            size, free;
    ngx_slab_pool_t  *shpool;

    shpool = smcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    size = smcf->shm_zone->shm.size;
    free = shpool->pfree * ngx_pagesize;
    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_snapcache_out_family(w, "snapcache_zone_size_bytes", "gauge",
        "The shared zone's size (snapcache_zone).");
    ngx_http_snapcache_out(w, "snapcache_zone_size_bytes %uz\n", size);

    ngx_http_snapcache_out_family(w, "snapcache_zone_free_bytes", "gauge",
        "Pages of the shared zone no table holds.");
    ngx_http_snapcache_out(w, "snapcache_zone_free_bytes %uz\n", free);

    ngx_http_snapcache_out_family(w, "snapcache_fill_locks", "gauge",
        "Fill locks held by live fills; at the capacity, misses fill "
        "without coalescing.");
    ngx_http_snapcache_out(w, "snapcache_fill_locks %ui\n",
                           ngx_http_snapcache_locks_in_use(smcf));

    ngx_http_snapcache_out_family(w, "snapcache_fill_locks_capacity",
        "gauge", "Fill locks the zone has room for.");
    ngx_http_snapcache_out(w, "snapcache_fill_locks_capacity %d\n",
                           NGX_HTTP_SNAPCACHE_LOCKS);

    ngx_http_snapcache_out_family(w, "snapcache_link_history_entries",
        "gauge", "Clients and devices the link history holds; at the "
        "capacity, the least recently seen are forgotten first.");
    ngx_http_snapcache_out(w, "snapcache_link_history_entries %ui\n",
                           fig->links_used);

    ngx_http_snapcache_out_family(w, "snapcache_link_history_capacity",
        "gauge", "Entries the link history has room for in the zone.");
    ngx_http_snapcache_out(w, "snapcache_link_history_capacity %ui\n",
                           fig->links_capacity);
}


/*
 * The memory tiers: counters summed in the zone, gauges summed over the
 * slots of the live workers, each of which keeps its own tier.
 */
static void
ngx_http_snapcache_text_memory(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf)
{
    ngx_uint_t                         i;
    ngx_http_snapcache_mem_metrics_t  *mm;

    mm = &smcf->sh->metrics.memory;

    ngx_http_snapcache_out_family(w, "snapcache_memory_lookups_total",
        "counter", "Lookups in a worker's memory tier: hit (served from "
        "it) or miss.");
    ngx_http_snapcache_out(w, "snapcache_memory_lookups_total"
                           "{result=\"hit\"} %uA\n"
                           "snapcache_memory_lookups_total"
                           "{result=\"miss\"} %uA\n",
                           mm->hits, mm->misses);

    ngx_http_snapcache_out_family(w, "snapcache_memory_admissions_total",
        "counter", "Records read from the store, verified, and kept in a "
        "memory tier.");
    ngx_http_snapcache_out(w, "snapcache_memory_admissions_total %uA\n",
                           mm->admissions);

    ngx_http_snapcache_out_family(w, "snapcache_memory_evictions_total",
        "counter", "Entries that left a memory tier, by why: size (room "
        "for a newer one), purged, expired.");

    for (i = 0; i < NGX_HTTP_SNAPCACHE_MEM_NREASONS; i++) {
        ngx_http_snapcache_out(w, "snapcache_memory_evictions_total"
                               "{reason=\"%s\"} %uA\n",
                               ngx_http_snapcache_mem_labels[i],
                               mm->evictions[i]);
    }

    ngx_http_snapcache_out_family(w, "snapcache_memory_bytes", "gauge",
        "Bytes the memory tiers of all live workers hold.");
    ngx_http_snapcache_out(w, "snapcache_memory_bytes %ui\n",
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        memory_bytes)));

    ngx_http_snapcache_out_family(w, "snapcache_memory_entries", "gauge",
        "Entries the memory tiers of all live workers hold.");
    ngx_http_snapcache_out(w, "snapcache_memory_entries %ui\n",
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        memory_entries)));
}


static void
ngx_http_snapcache_text_store(ngx_http_snapcache_out_t *w,
    ngx_http_snapcache_main_conf_t *smcf)
{
    ngx_uint_t               n;
    snapcache_cache_stats_t  st;

    if (smcf->store == NULL
        || snapcache_cache_stats(smcf->store, &st) != SNAPCACHE_CACHE_OK)
    {
        return;
    }

    n = st.page_size;

    ngx_http_snapcache_out_family(w, "snapcache_store_records", "gauge",
        "Records in the store.");
    ngx_http_snapcache_out(w, "snapcache_store_records %uL\n", st.entries);

    ngx_http_snapcache_out_family(w, "snapcache_store_used_bytes", "gauge",
        "Bytes of the store in use.");
    ngx_http_snapcache_out(w, "snapcache_store_used_bytes %uL\n",
                           st.used_pages * n);

    ngx_http_snapcache_out_family(w, "snapcache_store_size_bytes", "gauge",
        "The store's configured size.");
    ngx_http_snapcache_out(w, "snapcache_store_size_bytes %uL\n",
                           st.total_pages * n);
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
    u_char                            *p, *end, *eq, *sp;
    ngx_str_t                          name = ngx_string("snapcache_stats");
    ngx_uint_t                         i, key, first;
    ngx_atomic_uint_t                  ok, failed, refused, evicted;
    ngx_http_snapcache_out_t           w;
    snapcache_cache_stats_t            st;
    ngx_http_variable_value_t         *vv;
    ngx_http_snapcache_metrics_t      *m;
    ngx_http_snapcache_mem_metrics_t  *mm;

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

    ngx_http_snapcache_out(&w, ",\"in_flight\":%ui",
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        fills)));

    ok = 0;
    failed = 0;

    for (i = NGX_HTTP_SNAPCACHE_SCOPE_ACCOUNT; i < NGX_HTTP_SNAPCACHE_NSCOPES;
         i++)
    {
        ok += m->purge_requests[i][NGX_HTTP_SNAPCACHE_PURGE_OK];
        failed += m->purge_requests[i][NGX_HTTP_SNAPCACHE_PURGE_FAILED];
    }

    refused = m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_NONE]
                               [NGX_HTTP_SNAPCACHE_PURGE_BAD_REQUEST]
              + m->purge_requests[NGX_HTTP_SNAPCACHE_SCOPE_NONE]
                                 [NGX_HTTP_SNAPCACHE_PURGE_UNAUTHORIZED];

    ngx_http_snapcache_out(&w, "},\"purge\":{\"ok\":%uA,\"failed\":%uA,"
                           "\"refused\":%uA,\"records\":%uA,"
                           "\"generation\":%uA}",
                           ok, failed, refused, m->purged_records,
                           m->purge_generation);

    ngx_http_snapcache_out(&w, ",\"requests\":{");

    for (i = NGX_HTTP_SNAPCACHE_HIT; i <= NGX_HTTP_SNAPCACHE_ERROR; i++) {
        ngx_http_snapcache_out(&w, "%s\"%s\":%uA",
                               i > NGX_HTTP_SNAPCACHE_HIT ? "," : "",
                               ngx_http_snapcache_status_labels[i],
                               m->requests[i]);
    }

    ngx_http_snapcache_out(&w, "},\"sent_bytes\":%uA,\"evictions\":%uA,"
                           "\"thread_pool_rejections\":%uA,"
                           "\"zone_start\":%T",
                           m->sent_bytes, m->evictions, m->pool_rejections,
                           smcf->sh->epoch);

    mm = &m->memory;
    evicted = 0;

    for (i = 0; i < NGX_HTTP_SNAPCACHE_MEM_NREASONS; i++) {
        evicted += mm->evictions[i];
    }

    ngx_http_snapcache_out(&w, ",\"memory\":{\"hits\":%uA,\"misses\":%uA,"
                           "\"admissions\":%uA,\"evictions\":%uA,"
                           "\"bytes\":%ui,\"entries\":%ui}",
                           mm->hits, mm->misses, mm->admissions, evicted,
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        memory_bytes)),
                           ngx_http_snapcache_workers_sum(smcf,
                               offsetof(ngx_http_snapcache_worker_slot_t,
                                        memory_entries)));

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
