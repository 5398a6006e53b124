
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the one header of the nginx glue in ngx_module/.
 *
 * The types every file shares, then each file's exported functions,
 * grouped by the file that defines them.  Everything else is static.
 * Calls go one way: module -> store, variables, shm, origin, admin,
 * metrics, peer; handler -> hit, fill, link; peer -> hit, fill, admin;
 * fill -> hit, origin, shm; hit -> link, peer; admin -> metrics, shm;
 * shm -> link (the history table is made with the zone); handler, hit
 * and fill record into metrics.  Nothing calls into the directives file.
 */


#ifndef _NGX_HTTP_SNAPCACHE_H_INCLUDED_
#define _NGX_HTTP_SNAPCACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sign/snapcache_sign.h"
#include "cache/snapcache_cache.h"
#include "transcode/snapcache_transcode.h"
#include "format/snapcache_format.h"


#define NGX_HTTP_SNAPCACHE_LOCKS       1024
#define NGX_HTTP_SNAPCACHE_GENS        4096
#define NGX_HTTP_SNAPCACHE_MAX_RUNGS   16

/* metrics: distinct variant names, and buckets of one histogram */
#define NGX_HTTP_SNAPCACHE_LABELS      32
#define NGX_HTTP_SNAPCACHE_BUCKETS     16


typedef struct ngx_http_snapcache_ctx_s   ngx_http_snapcache_ctx_t;
typedef struct ngx_http_snapcache_links_s ngx_http_snapcache_links_t;


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 width;
    ngx_uint_t                 quality;
    ngx_uint_t                 formats;      /* SNAPCACHE_FORMAT_BIT()s */
    ngx_uint_t                 id;           /* the key's variant */
    double                     weight;       /* snapcache_adapt_weight() */
} ngx_http_snapcache_variant_t;


/* What the access log sees as $snapcache_status. */
typedef enum {
    NGX_HTTP_SNAPCACHE_HIT = 0,
    NGX_HTTP_SNAPCACHE_MISS,
    NGX_HTTP_SNAPCACHE_STALE,
    NGX_HTTP_SNAPCACHE_BYPASS,
    NGX_HTTP_SNAPCACHE_DENIED,
    NGX_HTTP_SNAPCACHE_ERROR
} ngx_http_snapcache_status_e;


/* Counters in the zone; $snapcache_stats prints them by these names. */
typedef enum {
    NGX_HTTP_SNAPCACHE_ST_HITS = 0,
    NGX_HTTP_SNAPCACHE_ST_MISSES,
    NGX_HTTP_SNAPCACHE_ST_STALE,
    NGX_HTTP_SNAPCACHE_ST_DENIED,
    NGX_HTTP_SNAPCACHE_ST_ERRORS,
    NGX_HTTP_SNAPCACHE_ST_FILLS,
    NGX_HTTP_SNAPCACHE_ST_ORIGIN_FETCHES,
    NGX_HTTP_SNAPCACHE_ST_TRANSCODES,
    NGX_HTTP_SNAPCACHE_ST_STORED,
    NGX_HTTP_SNAPCACHE_ST_NOT_STORED,
    NGX_HTTP_SNAPCACHE_ST_COALESCED,
    NGX_HTTP_SNAPCACHE_ST_LOCK_TIMEOUTS,
    NGX_HTTP_SNAPCACHE_ST_CORRUPT,
    NGX_HTTP_SNAPCACHE_ST_NEGATIVE,
    NGX_HTTP_SNAPCACHE_NSTATS
} ngx_http_snapcache_stat_e;


typedef enum {
    NGX_HTTP_SNAPCACHE_LOCK_FREE = 0,
    NGX_HTTP_SNAPCACHE_LOCK_FILLING,
    NGX_HTTP_SNAPCACHE_LOCK_DONE,
    NGX_HTTP_SNAPCACHE_LOCK_FAILED,
    NGX_HTTP_SNAPCACHE_LOCK_GONE
} ngx_http_snapcache_lock_state_e;


/*
 * Why the variant was chosen, snapcache_served_total's reason label: the
 * adaptation's reasons (snapcache_adapt_reason_e).
 */
#define NGX_HTTP_SNAPCACHE_NREASONS  8


/* How a fill ended: snapcache_fills_total's result label. */
typedef enum {
    NGX_HTTP_SNAPCACHE_FILL_STORED = 0,
    NGX_HTTP_SNAPCACHE_FILL_UNCACHED,
    NGX_HTTP_SNAPCACHE_FILL_PURGED,
    NGX_HTTP_SNAPCACHE_FILL_FAILED,
    NGX_HTTP_SNAPCACHE_FILL_REJECTED,
    NGX_HTTP_SNAPCACHE_NFILL_RESULTS
} ngx_http_snapcache_fill_result_e;


typedef enum {
    NGX_HTTP_SNAPCACHE_SCOPE_NONE = 0,
    NGX_HTTP_SNAPCACHE_SCOPE_ACCOUNT,
    NGX_HTTP_SNAPCACHE_SCOPE_DEVICE,
    NGX_HTTP_SNAPCACHE_SCOPE_SNAPSHOT,
    NGX_HTTP_SNAPCACHE_NSCOPES
} ngx_http_snapcache_scope_e;


typedef enum {
    NGX_HTTP_SNAPCACHE_PURGE_OK = 0,
    NGX_HTTP_SNAPCACHE_PURGE_FAILED,
    NGX_HTTP_SNAPCACHE_PURGE_BAD_REQUEST,
    NGX_HTTP_SNAPCACHE_PURGE_UNAUTHORIZED,
    NGX_HTTP_SNAPCACHE_NPURGE_RESULTS
} ngx_http_snapcache_purge_result_e;


typedef enum {
    NGX_HTTP_SNAPCACHE_HIST_FILL = 0,
    NGX_HTTP_SNAPCACHE_HIST_PURGE,
    NGX_HTTP_SNAPCACHE_NHISTS
} ngx_http_snapcache_hist_e;


/* Bucket counts (not cumulative), their count, and the sum in usec. */
typedef struct {
    ngx_atomic_t               buckets[NGX_HTTP_SNAPCACHE_BUCKETS];
    ngx_atomic_t               count;
    ngx_atomic_t               sum_usec;
} ngx_http_snapcache_hist_t;


/* A variant name, claimed once in the zone: a label's slot. */
typedef struct {
    ngx_atomic_t               len;
    u_char                     name[SNAPCACHE_ID_MAX];
} ngx_http_snapcache_label_t;


/* What /metrics prints, summed over every worker. */
typedef struct {
    ngx_atomic_t               requests[NGX_HTTP_SNAPCACHE_ERROR + 1];
    ngx_atomic_t               fills[NGX_HTTP_SNAPCACHE_NFILL_RESULTS];
    ngx_atomic_t               served[NGX_HTTP_SNAPCACHE_LABELS]
                                     [NGX_HTTP_SNAPCACHE_NREASONS];
    ngx_atomic_t               sent_bytes;
    ngx_atomic_t               evictions;
    ngx_atomic_t               bad_foreign;
    ngx_atomic_t               bad_corrupt;
    ngx_atomic_t               purge_requests[NGX_HTTP_SNAPCACHE_NSCOPES]
                                   [NGX_HTTP_SNAPCACHE_NPURGE_RESULTS];
    ngx_atomic_t               purged_records;
    ngx_atomic_t               purge_generation;
    ngx_atomic_t               pool_rejections;
    ngx_http_snapcache_hist_t  hists[NGX_HTTP_SNAPCACHE_NHISTS];
    ngx_http_snapcache_hist_t  transcode[NGX_HTTP_SNAPCACHE_LABELS];
    ngx_http_snapcache_label_t labels[NGX_HTTP_SNAPCACHE_LABELS];
} ngx_http_snapcache_metrics_t;


typedef struct {
    uint64_t                   hash;
    uint64_t                   fill_id;
    ngx_pid_t                  pid;
    ngx_msec_t                 deadline;
    ngx_uint_t                 state;
    ngx_uint_t                 status;
} ngx_http_snapcache_lock_t;


typedef struct {
    ngx_atomic_t               gen_all;
    ngx_atomic_t               gens[NGX_HTTP_SNAPCACHE_GENS];
    ngx_atomic_t               stats[NGX_HTTP_SNAPCACHE_NSTATS];
    uint64_t                   next_fill_id;
    ngx_http_snapcache_lock_t  locks[NGX_HTTP_SNAPCACHE_LOCKS];
    ngx_http_snapcache_links_t *links;       /* per-client link history */
    ngx_http_snapcache_metrics_t  metrics;
    time_t                     epoch;        /* when the zone was made */
    ngx_atomic_t               purged_all;   /* when a purge last bumped */
    ngx_atomic_t               purged[NGX_HTTP_SNAPCACHE_GENS];
} ngx_http_snapcache_shctx_t;


typedef struct {
    ngx_atomic_uint_t          all;
    ngx_atomic_uint_t          account;
    ngx_atomic_uint_t          device;
} ngx_http_snapcache_gen_t;


typedef struct {
    ngx_str_t                  store_path;
    size_t                     store_size;
    ngx_uint_t                 store_high;
    ngx_uint_t                 store_low;

    ngx_shm_zone_t            *shm_zone;
    ngx_slab_pool_t           *shpool;
    ngx_http_snapcache_shctx_t *sh;

    void                      *store;        /* snapcache_cache_t */
    ngx_event_t                reader_check; /* or, while the store is
                                                not open, the retry */
    ngx_uint_t                 open_failures;
    ngx_uint_t                 used;         /* some location has snapcache */
    ngx_flag_t                 cold_start;   /* records from before the
                                                start are not served */
} ngx_http_snapcache_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  prefix;
    ngx_array_t               *keys;         /* snapcache_sign_key_t */
    time_t                     max_lifetime;
    ngx_str_t                  origin;
    ngx_array_t               *origin_pass_headers;  /* ngx_str_t */
    ngx_array_t               *variants;     /* the ladder, small first */
    ngx_str_t                  default_variant;
    ngx_uint_t                 default_index;

    time_t                     ttl;
    time_t                     ttl_min;
    time_t                     ttl_max;
    time_t                     negative_ttl;
    ngx_flag_t                 keep_original;
    ngx_flag_t                 fill_below;
    ngx_int_t                  transcode_nice;
    size_t                     max_original_size;
    ngx_uint_t                 max_pixels;
    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;
    ngx_msec_t                 lock_timeout;
    ngx_msec_t                 fill_timeout;

    ngx_flag_t                 adapt;
    ngx_msec_t                 adapt_budget;
    ngx_flag_t                 admin;
    ngx_array_t               *admin_tokens; /* SHA-256 digests, 32 bytes */

    ngx_flag_t                 peer;
    ngx_array_t               *cluster_tokens;  /* SHA-256 digests */
    ngx_str_t                  cluster_bearer;  /* "Bearer <hex>" of the
                                                   first token, sent */
} ngx_http_snapcache_loc_conf_t;


/* A verified request: ids point into r->unparsed_uri. */
typedef struct {
    snapcache_url_t                url;
    ngx_http_snapcache_variant_t  *variant;
    ngx_uint_t                     variant_index;  /* the ceiling, then
                                                      the chosen rung */
    /* the client's hints, found in one pass over its headers */
    ngx_table_elt_t               *ect;
    ngx_table_elt_t               *downlink;
    ngx_table_elt_t               *rtt;
    unsigned                       save_data:1;    /* it lowered the
                                                      ceiling */
} ngx_http_snapcache_req_t;


/* A rung a fill makes besides the one asked for. */
typedef struct {
    ngx_uint_t                       variant;      /* the key's */
    ngx_uint_t                       format;
    ngx_uint_t                       width;
    ngx_uint_t                       quality;
} ngx_http_snapcache_rung_t;


/* A fill's thread task; it lives in a pool of its own. */
typedef struct {
    ngx_thread_task_t               *task;
    ngx_pool_t                      *pool;
    ngx_http_request_t              *request;    /* NULL once detached */
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_log_t                       *log;
    ngx_event_t                      timer;

    u_char                          *orig;
    size_t                           orig_len;
    int64_t                          kept_created; /* when orig is the */
    uint32_t                         kept_checksum;/* kept original */
    snapcache_ident_t                ident;
    ngx_http_snapcache_gen_t         gen;
    ngx_uint_t                       variant;      /* the key's */
    ngx_str_t                        variant_name;
    ngx_uint_t                       width;
    ngx_uint_t                       quality;
    ngx_uint_t                       format;
    time_t                           expires;
    size_t                           max_bytes;
    ngx_uint_t                       max_pixels;

    uint64_t                         lock_hash;
    uint64_t                         fill_id;
    uint64_t                         fill_start;   /* usec, monotonic */
    uint64_t                         transcode_usec;

    /* the rungs below, made from the same decode and stored with it */
    ngx_http_snapcache_rung_t        below[NGX_HTTP_SNAPCACHE_MAX_RUNGS];
    ngx_uint_t                       nbelow;
    ngx_int_t                        nice;

    int                              error;
    int                              store_rc;
    u_char                          *out;
    size_t                           out_len;
    int                              out_width;
    int                              out_height;
    uint32_t                         out_checksum;

    unsigned                         store_original:1;
    unsigned                         no_store:1;
    unsigned                         lock_held:1;
    unsigned                         counted:1;    /* in the admission */
    unsigned                         transcoded:1;
    unsigned                         original_only:1;  /* a peer's fill */
    unsigned                         from_kept:1;
} ngx_http_snapcache_task_t;


/* How an origin fetch ended: NGX_HTTP_OK with the body, or a status. */
typedef void (*ngx_http_snapcache_fetched_pt)(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status);


struct ngx_http_snapcache_ctx_s {
    ngx_http_request_t              *request;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_http_snapcache_req_t        *sreq;

    snapcache_ident_t                ident;
    ngx_uint_t                       variant;
    ngx_uint_t                       format;

    snapcache_record_t               stale;
    ngx_http_snapcache_gen_t         stale_gen;    /* read before it */

    uint64_t                         lock_hash;
    uint64_t                         fill_id;
    ngx_msec_t                       wait_deadline;
    ngx_event_t                      wait_event;
    ngx_http_snapcache_gen_t         gen;
    ngx_http_snapcache_task_t       *task;
    uint64_t                         fill_start;   /* usec, monotonic */
    ngx_uint_t                       purge_retries;

    /* the link: keyed hashes of this client and this device */
    uint64_t                         client[2];
    uint64_t                         device[2];
    ngx_uint_t                       adapt_reason;

    /* set on the origin subrequest's own ctx: where to collect */
    ngx_http_snapcache_ctx_t        *origin;
    ngx_http_request_t              *sr;
    ngx_http_snapcache_fetched_pt    fetched;
    ngx_int_t                        origin_rc;
    ngx_uint_t                       origin_status;
    off_t                            origin_clen;
    time_t                           origin_max_age;
    time_t                           origin_expires;
    u_char                          *origin_buf;
    size_t                           origin_len;
    size_t                           origin_cap;

    unsigned                         lock_held:1;
    unsigned                         counted:1;    /* in the admission */
    unsigned                         no_store:1;
    unsigned                         has_stale:1;
    unsigned                         body_in_pool:1;
    unsigned                         origin_complete:1;
    unsigned                         origin_finished:1;
    unsigned                         origin_too_big:1;
    unsigned                         origin_in_file:1;
    unsigned                         client_known:1;
    unsigned                         peer:1;       /* answers a peer with
                                                      the original */
    unsigned                         fresh:1;      /* from the cloud, not
                                                      a kept copy */
};


extern ngx_module_t  ngx_http_snapcache_module;


/* ngx_http_snapcache_variables.c */
ngx_int_t ngx_http_snapcache_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_snapcache_redact_init(ngx_conf_t *cf);
void ngx_http_snapcache_set_status(ngx_http_request_t *r,
    ngx_http_snapcache_status_e status);
void ngx_http_snapcache_set_variant(ngx_http_request_t *r, ngx_str_t *name);
void ngx_http_snapcache_set_account(ngx_http_request_t *r,
    snapcache_str_t *account);
void ngx_http_snapcache_set_link(ngx_http_request_t *r, ngx_uint_t kbps,
    ngx_uint_t rtt_ms, const char *reason);
ngx_str_t *ngx_http_snapcache_status_name(ngx_http_snapcache_status_e status);

/* ngx_http_snapcache_handler.c */
ngx_int_t ngx_http_snapcache_handler(ngx_http_request_t *r);

/* ngx_http_snapcache_hit.c */
ngx_int_t ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec);
ngx_int_t ngx_http_snapcache_send_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status);
ngx_int_t ngx_http_snapcache_send_body(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *body, size_t len,
    ngx_uint_t format, time_t expires, uint32_t etag_sum,
    ngx_http_snapcache_status_e status);
void ngx_http_snapcache_free_bodies(void);
ngx_uint_t ngx_http_snapcache_format(ngx_http_request_t *r,
    ngx_http_snapcache_variant_t *variant);

/* ngx_http_snapcache_fill.c */
ngx_int_t ngx_http_snapcache_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
void ngx_http_snapcache_fill_cleanup(void *data);

/* ngx_http_snapcache_origin.c */
ngx_int_t ngx_http_snapcache_origin_init(ngx_conf_t *cf);
ngx_int_t ngx_http_snapcache_fetch_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_fetched_pt fetched);
ngx_int_t ngx_http_snapcache_origin_headers(ngx_http_request_t *r,
    ngx_http_request_t *dst, ngx_http_snapcache_loc_conf_t *slcf);

/* ngx_http_snapcache_shm.c */
ngx_int_t ngx_http_snapcache_zone_add(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf, ngx_str_t *name, size_t size);
ngx_int_t ngx_http_snapcache_lock_acquire(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, ngx_msec_t hold, uint64_t *fill_id);
void ngx_http_snapcache_lock_release(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t state, ngx_uint_t status);
ngx_uint_t ngx_http_snapcache_lock_state(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t *status);
void ngx_http_snapcache_gen_read(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag,
    ngx_http_snapcache_gen_t *gen);
ngx_int_t ngx_http_snapcache_gen_changed(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag,
    ngx_http_snapcache_gen_t *since);
void ngx_http_snapcache_gen_bump(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag);
ngx_uint_t ngx_http_snapcache_purged_within(
    ngx_http_snapcache_main_conf_t *smcf, const u_char *acct_tag,
    const u_char *dev_tag, time_t seconds);
time_t ngx_http_snapcache_not_before(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_stat_add(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t counter, ngx_atomic_int_t n);

/* ngx_http_snapcache_link.c */
ngx_http_snapcache_links_t *ngx_http_snapcache_links_create(
    ngx_slab_pool_t *shpool, size_t zone_size, ngx_log_t *log);
void ngx_http_snapcache_link_choose(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
void ngx_http_snapcache_link_sending(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
void ngx_http_snapcache_link_sent(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, size_t len);

/* ngx_http_snapcache_admin.c */
ngx_int_t ngx_http_snapcache_admin_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_snapcache_bearer_auth(ngx_http_request_t *r,
    ngx_array_t *tokens, const char *role);
char *ngx_http_snapcache_token_load(ngx_conf_t *cf, ngx_str_t *path,
    const char *role, u_char *digest, ngx_str_t *bearer);

/* ngx_http_snapcache_peer.c */
ngx_int_t ngx_http_snapcache_peer_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_snapcache_peer_send(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, u_char *body, size_t len,
    ngx_uint_t format, time_t expires, ngx_http_snapcache_status_e status);

/* ngx_http_snapcache_metrics.c */
ngx_int_t ngx_http_snapcache_metrics_init(ngx_conf_t *cf);
uint64_t ngx_http_snapcache_usec(void);
void ngx_http_snapcache_count_fill(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t result, uint64_t start);
void ngx_http_snapcache_count_served(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t reason);
void ngx_http_snapcache_count_transcode(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, uint64_t usec);
void ngx_http_snapcache_count_bad(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t foreign);
void ngx_http_snapcache_count_rejected(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_count_store(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_count_purge(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t scope, ngx_uint_t result, uint64_t records);
void ngx_http_snapcache_observe_purge(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t usec);
ngx_int_t ngx_http_snapcache_metrics_text(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_chain_t **out, off_t *len);
ngx_int_t ngx_http_snapcache_stats_json(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_chain_t **out, off_t *len);

/* ngx_http_snapcache_store.c */
ngx_int_t ngx_http_snapcache_prepare_store(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf);
ngx_int_t ngx_http_snapcache_open_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_close_store(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_store_damaged(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log);


#endif /* _NGX_HTTP_SNAPCACHE_H_INCLUDED_ */
