
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the one header of the nginx glue in ngx_module/.
 *
 * The types every file shares, then each file's exported functions,
 * grouped by the file that defines them.  Everything else is static.
 * docs/architecture.md draws the rooms; calls go one way only:
 *
 *   modules  _module.c (clients), _admin_module.c, _peer_module.c: the
 *            directives, configurations and hooks of the three
 *            location kinds; conf-time helpers in _ladder.c, _auth.c,
 *            _store.c, _shm.c, _origin_conf.c
 *   entries  _handler.c (a client's request: the gate), _peer_module.c
 *            (a peer's), _admin_module.c (an admin's); each creates the
 *            request's ctx and says how its answer is sent
 *   serving  _link.c (the rung) -> _hit.c (a lookup, through
 *            _memory.c, the memory tier) -> _fill.c (a miss)
 *            -> _origin.c (the origin subrequest), _task.c (the thread
 *            pool's work); _purge.c for the admin API
 *   below    _reply.c (responses), _cors.c (CORS headers), _watch.c
 *            (delivery), _shm.c (the zone, the purge ledger), _metrics.c
 *            (counting), _expose.c (showing it), _variables.c (what
 *            logs read), _store.c
 *
 * Request code writes its ctx; the variables' get handlers read it.
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
#include "adapt/snapcache_adapt.h"


#define NGX_HTTP_SNAPCACHE_LOCKS       1024
#define NGX_HTTP_SNAPCACHE_GENS        4096
#define NGX_HTTP_SNAPCACHE_MAX_RUNGS   16

/* what an origin location fetches from: origin_use's bits */
#define NGX_HTTP_SNAPCACHE_ORIGIN_PEERS  0x01
#define NGX_HTTP_SNAPCACHE_ORIGIN_CLOUD  0x02

/* metrics: distinct variant names, and buckets of one histogram */
#define NGX_HTTP_SNAPCACHE_LABELS      32
#define NGX_HTTP_SNAPCACHE_BUCKETS     16

/* metrics: distinct kids, HTTP statuses 100 to 599, their classes */
#define NGX_HTTP_SNAPCACHE_KIDS        32
#define NGX_HTTP_SNAPCACHE_CODES       500
#define NGX_HTTP_SNAPCACHE_NCLASSES    5

/* how long a refused fill or a full lock table makes health say so */
#define NGX_HTTP_SNAPCACHE_HEALTH_WINDOW  5

/* snapcache_transcode_nice idle: the pool's threads run SCHED_IDLE */
#define NGX_HTTP_SNAPCACHE_NICE_IDLE   20

/*
 * The body a memory tier's entry sends with sendfile() from its pages
 * rather than copy into the socket: below it, one writev() of header
 * and body costs less than the copy it saves.
 */
#define NGX_HTTP_SNAPCACHE_SENDFILE_MIN  (64 * 1024)

/* a strong ETag: "<crc32c, 8 hex>-<length, hex>" */
#define NGX_HTTP_SNAPCACHE_ETAG_LEN    (sizeof("\"-\"") + 8 + NGX_INT64_LEN)

/* a token's SHA-256, the form every token is kept in */
#define NGX_HTTP_SNAPCACHE_DIGEST_LEN  32


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


/* What the access log sees as $snapcache_status; NONE: not yet known. */
typedef enum {
    NGX_HTTP_SNAPCACHE_NONE = 0,
    NGX_HTTP_SNAPCACHE_HIT,
    NGX_HTTP_SNAPCACHE_MISS,
    NGX_HTTP_SNAPCACHE_STALE,
    NGX_HTTP_SNAPCACHE_BYPASS,
    NGX_HTTP_SNAPCACHE_DENIED,
    NGX_HTTP_SNAPCACHE_ERROR,
    NGX_HTTP_SNAPCACHE_NSTATUS
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


/*
 * The histograms: the unlabelled ones in metrics.hists[], then the
 * bounds of the labelled ones (ngx_http_snapcache_hist_bounds()).
 */
typedef enum {
    NGX_HTTP_SNAPCACHE_HIST_FILL = 0,
    NGX_HTTP_SNAPCACHE_HIST_PURGE,
    NGX_HTTP_SNAPCACHE_HIST_ORIGIN,
    NGX_HTTP_SNAPCACHE_NHISTS,
    NGX_HTTP_SNAPCACHE_HIST_REQUEST = NGX_HTTP_SNAPCACHE_NHISTS,
    NGX_HTTP_SNAPCACHE_HIST_TRANSCODE
} ngx_http_snapcache_hist_e;


/*
 * Why the gate denied a request (403): snapcache_denied_total's reason,
 * indexed as SNAPCACHE_SIGN_KEY .. SNAPCACHE_SIGN_LIFETIME, less one.
 */
#define NGX_HTTP_SNAPCACHE_NDENY  4

/* Why an entry left the memory tier: its evictions' reason label. */
typedef enum {
    NGX_HTTP_SNAPCACHE_MEM_SIZE = 0,     /* room for a newer one */
    NGX_HTTP_SNAPCACHE_MEM_PURGED,       /* its generations moved */
    NGX_HTTP_SNAPCACHE_MEM_EXPIRED,
    NGX_HTTP_SNAPCACHE_MEM_NREASONS
} ngx_http_snapcache_mem_reason_e;


/*
 * The memory tier's counters, summed over every worker; each worker's
 * tier is its own, so its gauges sit in its worker slot.
 */
typedef struct {
    ngx_atomic_t               hits;
    ngx_atomic_t               misses;
    ngx_atomic_t               admissions;
    ngx_atomic_t               evictions[NGX_HTTP_SNAPCACHE_MEM_NREASONS];
} ngx_http_snapcache_mem_metrics_t;


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


/*
 * A worker's own numbers, in its slot (ngx_process_slot) of the zone:
 * claimed with its pid at its start, so that a slot a killed worker
 * left is taken over, and read only while that pid lives.
 */
typedef struct {
    ngx_atomic_t               pid;
    ngx_atomic_t               fills;        /* in flight */
    ngx_atomic_t               memory_bytes; /* its memory tier holds */
    ngx_atomic_t               memory_entries;
} ngx_http_snapcache_worker_slot_t;


/* What /metrics prints, summed over every worker. */
typedef struct {
    ngx_atomic_t               requests[NGX_HTTP_SNAPCACHE_NSTATUS];
    ngx_atomic_t               codes[NGX_HTTP_SNAPCACHE_CODES];
    ngx_http_snapcache_hist_t  request_time[NGX_HTTP_SNAPCACHE_NSTATUS]
                                   [NGX_HTTP_SNAPCACHE_NCLASSES];
    ngx_atomic_t               origin_codes[NGX_HTTP_SNAPCACHE_CODES + 1];
    ngx_atomic_t               origin_unusable;  /* 200s, not originals */
    ngx_atomic_t               denied[NGX_HTTP_SNAPCACHE_KIDS + 1]
                                     [NGX_HTTP_SNAPCACHE_NDENY];
    ngx_atomic_t               verified[NGX_HTTP_SNAPCACHE_KIDS + 1];
    ngx_http_snapcache_label_t kids[NGX_HTTP_SNAPCACHE_KIDS];
    ngx_atomic_t               refused_at;   /* a fill or purge, last */
    ngx_atomic_t               lock_full_at; /* no fill lock to be had */
    ngx_atomic_t               store_damaged;
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
    ngx_http_snapcache_hist_t  transcode[NGX_HTTP_SNAPCACHE_LABELS]
                                        [SNAPCACHE_FORMAT_NCODES];
    ngx_http_snapcache_label_t labels[NGX_HTTP_SNAPCACHE_LABELS];
    ngx_http_snapcache_worker_slot_t  workers[NGX_MAX_PROCESSES];
    ngx_http_snapcache_mem_metrics_t  memory;
} ngx_http_snapcache_metrics_t;


typedef struct {
    uint64_t                   hash;
    uint64_t                   fill_id;
    ngx_pid_t                  pid;
    ngx_msec_t                 deadline;
    ngx_uint_t                 state;
    ngx_uint_t                 status;
} ngx_http_snapcache_lock_t;


/*
 * The purge generations, and when each bucket was last purged.  They
 * live in the store's ledger file, which every nginx on that store
 * maps, the old and the new master of a binary upgrade alike; in the
 * zone only without a store.
 */
typedef struct {
    ngx_atomic_t               gen_all;
    ngx_atomic_t               purged_all;   /* when a purge last bumped */
    ngx_atomic_t               gens[NGX_HTTP_SNAPCACHE_GENS];
    ngx_atomic_t               purged[NGX_HTTP_SNAPCACHE_GENS];
} ngx_http_snapcache_gens_t;


typedef struct {
    ngx_http_snapcache_gens_t  gens;
    ngx_atomic_t               stats[NGX_HTTP_SNAPCACHE_NSTATS];
    uint64_t                   next_fill_id;
    ngx_http_snapcache_lock_t  locks[NGX_HTTP_SNAPCACHE_LOCKS];
    ngx_http_snapcache_links_t *links;       /* per-client link history */
    ngx_http_snapcache_metrics_t  metrics;
    time_t                     epoch;        /* when the zone was made */
    ngx_pid_t                  upgraded_from;  /* a binary upgrade's old
                                                  master, or 0 */
    ngx_atomic_t               not_before;   /* snapcache_cold_start's
                                                time, once a worker has
                                                decided it */
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
    ngx_uint_t                 used;         /* some location serves */
    ngx_flag_t                 cold_start;   /* records from before the
                                                start are not served */
    ngx_uint_t                 fills;        /* this worker's in flight */
    ngx_http_snapcache_gens_t *gens;         /* the ledger's, or the
                                                zone's */
    void                      *ledger;       /* this worker's mapping */
    ngx_array_t               *kids;         /* every location's kids,
                                                ngx_str_t: the labels of
                                                snapcache_denied_total */
    size_t                     memory_size;  /* each worker's memory
                                                tier; 0: none */
} ngx_http_snapcache_main_conf_t;


/*
 * A snapcache location's configuration, and the settings a peer
 * endpoint and an admin location share with it (keys, origin, store
 * limits, thread pool), which their own modules read from here.
 */
typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 peer_endpoint;   /* set by the peer module */
    ngx_str_t                  prefix;
    ngx_array_t               *keys;         /* snapcache_sign_key_t */
    time_t                     max_lifetime;
    ngx_str_t                  origin;
    ngx_flag_t                 origin_peers; /* "peers": the cluster's
                                                peer endpoints, sent the
                                                cluster token */
    ngx_uint_t                 origin_use;   /* as whose origin this
                                                location serves */
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
    ngx_uint_t                 max_fills;    /* a worker's, in flight */

    ngx_flag_t                 adapt;
    ngx_msec_t                 adapt_budget;
    ngx_flag_t                 memory;       /* uses the memory tier */

    ngx_array_t               *cors_origins;    /* ngx_str_t */

    ngx_array_t               *cluster_tokens;  /* SHA-256 digests */
    ngx_str_t                  cluster_bearer;  /* "Bearer <hex>" of the
                                                   first token, sent */
} ngx_http_snapcache_loc_conf_t;


/* A request's target, verified: ids point into r->unparsed_uri. */
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
    unsigned                         original_only:1;
    unsigned                         from_kept:1;
} ngx_http_snapcache_task_t;


/* A body ready to go out: what a hit, a fill or a stale copy answers. */
typedef struct {
    u_char                          *body;
    size_t                           len;
    ngx_uint_t                       format;
    time_t                           expires;
    uint32_t                         checksum;     /* of the body */
    ngx_str_t                        etag;         /* made already, or
                                                      empty */
    ngx_file_t                      *file;         /* the body is also */
    off_t                            file_pos;     /* there, or NULL */
    unsigned                         in_pool:1;    /* lives as long as
                                                      r->pool */
} ngx_http_snapcache_image_t;


/*
 * What the metrics' renderer is handed by its caller, the admin API:
 * figures of the rooms above it, which it does not call.
 */
typedef struct {
    ngx_uint_t                       links_used;
    ngx_uint_t                       links_capacity;
} ngx_http_snapcache_figures_t;


/* How an entry answers with an image: a client's and a peer's differ. */
typedef ngx_int_t (*ngx_http_snapcache_answer_pt)(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_image_t *image,
    ngx_http_snapcache_status_e status);

/* How an origin fetch ended: NGX_HTTP_OK with the body, or a status. */
typedef void (*ngx_http_snapcache_fetched_pt)(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status);


struct ngx_http_snapcache_ctx_s {
    ngx_http_request_t              *request;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_http_snapcache_req_t         req;

    /* set by the entry: how this request is answered and filled */
    ngx_http_snapcache_answer_pt     answer;
    uint64_t                         lock_salt;    /* a lock of its own */

    snapcache_ident_t                ident;
    ngx_uint_t                       variant;
    ngx_uint_t                       format;
    ngx_http_snapcache_image_t       memory;       /* the last lookup's hit
                                                      from the memory tier;
                                                      body NULL if none */

    /* what the variables and the log phase read */
    ngx_uint_t                       status;       /* _status_e */
    ngx_uint_t                       adapt_reason;
    uint32_t                         link_kbps;    /* 0: unknown */
    uint32_t                         link_rtt_ms;
    uint32_t                         link_queued;  /* bytes still on their
                                                      way to the client */
    uint32_t                         pace_kbps;    /* held down: the pace,
                                                      0 for none */
    const char                      *deny_reason;  /* the gate's refusal */
    uint64_t                         miss_start;   /* usec, monotonic: */
    uint64_t                         miss_end;     /* the miss's answer */
    uint64_t                         origin_start; /* this fetch's */

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

    unsigned                         verified:1;   /* the signature, or a
                                                      peer's token */
    unsigned                         parsed:1;     /* req.url is the
                                                      target, canonical */
    unsigned                         preflight:1;  /* a CORS preflight */
    unsigned                         chosen:1;     /* req.variant is the
                                                      rung served */
    unsigned                         adapted:1;    /* link_* are set */
    unsigned                         keep_original:1;  /* fills keep it */
    unsigned                         original_only:1;  /* a fill answers
                                                          the original */
    unsigned                         fresh:1;      /* from the cloud, not
                                                      a kept copy */
    unsigned                         from_peer:1;  /* a peer asks: its
                                                      Authorization is
                                                      the cluster's */
    unsigned                         lock_held:1;
    unsigned                         counted:1;    /* in the admission */
    unsigned                         no_store:1;
    unsigned                         has_stale:1;
    unsigned                         origin_complete:1;
    unsigned                         origin_finished:1;
    unsigned                         origin_too_big:1;
    unsigned                         origin_in_file:1;
    unsigned                         client_known:1;
};


extern ngx_module_t  ngx_http_snapcache_module;
extern ngx_module_t  ngx_http_snapcache_peer_module;
extern ngx_module_t  ngx_http_snapcache_admin_module;


/*
 * The zone's accessors that every hit takes, inline: a counter, and the
 * purge generations, kept per hash bucket of the account and device
 * tags (two ids sharing a bucket only cost an extra discarded fill,
 * never a missed purge).
 */
static ngx_inline void
ngx_http_snapcache_stat_add(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t counter, ngx_atomic_int_t n)
{
    if (smcf->sh && counter < NGX_HTTP_SNAPCACHE_NSTATS) {
        ngx_atomic_fetch_add(&smcf->sh->stats[counter], n);
    }
}


static ngx_inline ngx_uint_t
ngx_http_snapcache_gen_slot(const u_char *tag)
{
    uint32_t  h;

    ngx_memcpy(&h, tag, sizeof(uint32_t));

    return h % NGX_HTTP_SNAPCACHE_GENS;
}


/* The purge generations: the store's ledger once mapped, else the zone's. */
static ngx_inline ngx_http_snapcache_gens_t *
ngx_http_snapcache_gens(ngx_http_snapcache_main_conf_t *smcf)
{
    return smcf->gens ? smcf->gens : &smcf->sh->gens;
}


static ngx_inline void
ngx_http_snapcache_gen_read(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag,
    ngx_http_snapcache_gen_t *gen)
{
    ngx_http_snapcache_gens_t  *g;

    g = ngx_http_snapcache_gens(smcf);

    gen->all = g->gen_all;
    gen->account = g->gens[ngx_http_snapcache_gen_slot(acct_tag)];
    gen->device = g->gens[ngx_http_snapcache_gen_slot(dev_tag)];
    ngx_memory_barrier();
}


static ngx_inline ngx_int_t
ngx_http_snapcache_gen_changed(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag,
    ngx_http_snapcache_gen_t *since)
{
    ngx_http_snapcache_gen_t  now;

    ngx_http_snapcache_gen_read(smcf, acct_tag, dev_tag, &now);

    return now.all != since->all || now.account != since->account
           || now.device != since->device;
}


/* A response header, as every answer adds them. */
static ngx_inline ngx_table_elt_t *
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


/* ngx_http_snapcache_module.c: what every location kind checks */
ngx_int_t ngx_http_snapcache_resolve_pool(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf);
ngx_http_core_loc_conf_t *ngx_http_snapcache_prefix_location(ngx_conf_t *cf,
    ngx_uint_t slash);
ngx_int_t ngx_http_snapcache_check_origin_uri(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf, const char *kind,
    const char *which);

/* ngx_http_snapcache_cors.c */
char *ngx_http_snapcache_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_snapcache_cors(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);

/* ngx_http_snapcache_ladder.c */
char *ngx_http_snapcache_variant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_snapcache_merge_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);

/* ngx_http_snapcache_auth.c */
char *ngx_http_snapcache_sign_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_snapcache_token_load(ngx_conf_t *cf, ngx_str_t *path,
    const char *role, ngx_array_t **tokens, ngx_str_t *bearer);
ngx_int_t ngx_http_snapcache_bearer_auth(ngx_http_request_t *r,
    ngx_array_t *tokens, const char *role);
ngx_int_t ngx_http_snapcache_note_kids(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf, ngx_array_t *keys);

/* ngx_http_snapcache_handler.c */
ngx_int_t ngx_http_snapcache_handler(ngx_http_request_t *r);

/* ngx_http_snapcache_ctx.c */
ngx_http_snapcache_ctx_t *ngx_http_snapcache_ctx_create(
    ngx_http_request_t *r, ngx_http_snapcache_loc_conf_t *slcf);
ngx_http_snapcache_ctx_t *ngx_http_snapcache_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_snapcache_ident(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);

/* ngx_http_snapcache_hit.c */
ngx_int_t ngx_http_snapcache_lookup(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t variant, ngx_uint_t format,
    snapcache_record_t *rec);
ngx_int_t ngx_http_snapcache_answer_record(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, snapcache_record_t *rec,
    ngx_http_snapcache_status_e status);
ngx_int_t ngx_http_snapcache_answer_client(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_image_t *image,
    ngx_http_snapcache_status_e status);
void ngx_http_snapcache_free_bodies(void);
ngx_uint_t ngx_http_snapcache_format(ngx_http_request_t *r,
    ngx_http_snapcache_variant_t *variant);

/* ngx_http_snapcache_memory.c */
char *ngx_http_snapcache_memory_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_snapcache_memory_init(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_memory_exit(void);
ngx_int_t ngx_http_snapcache_memory_get(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, const snapcache_key_t *key,
    const snapcache_ident_t *ident, snapcache_record_t *rec,
    ngx_http_snapcache_image_t *image);
void ngx_http_snapcache_memory_admit(ngx_http_snapcache_main_conf_t *smcf,
    const snapcache_key_t *key, const snapcache_ident_t *ident,
    const snapcache_record_t *rec, const ngx_http_snapcache_gen_t *gen);

/* ngx_http_snapcache_fill.c */
ngx_int_t ngx_http_snapcache_fill(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);

/* ngx_http_snapcache_task.c: what runs on the thread pool */
char *ngx_http_snapcache_transcode_nice(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_snapcache_task_t *ngx_http_snapcache_task_create(
    ngx_event_handler_pt done);
void ngx_http_snapcache_task_fill(void *data, ngx_log_t *log);
void ngx_http_snapcache_task_negative(void *data, ngx_log_t *log);
void ngx_http_snapcache_task_free(ngx_http_snapcache_task_t *t);

/* ngx_http_snapcache_origin.c */
ngx_int_t ngx_http_snapcache_origin_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_snapcache_fetch_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_fetched_pt fetched);
ngx_int_t ngx_http_snapcache_origin_headers(ngx_http_request_t *r,
    ngx_http_request_t *dst, ngx_http_snapcache_ctx_t *ctx);

/* ngx_http_snapcache_origin_conf.c */
ngx_int_t ngx_http_snapcache_check_origins(ngx_conf_t *cf);

/* ngx_http_snapcache_reply.c */
ngx_int_t ngx_http_snapcache_reply_image(ngx_http_request_t *r,
    ngx_http_snapcache_image_t *image, ngx_http_snapcache_status_e status);
ngx_int_t ngx_http_snapcache_reply_body(ngx_http_request_t *r,
    ngx_http_snapcache_image_t *image);
ngx_int_t ngx_http_snapcache_reply_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);
ngx_int_t ngx_http_snapcache_reply_json_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error);
ngx_int_t ngx_http_snapcache_reply_send(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_chain_t *out, off_t len);
void *ngx_http_snapcache_body_alloc(void *data, size_t size);
u_char *ngx_http_snapcache_etag(u_char *p, uint32_t checksum, size_t len);

/* ngx_http_snapcache_purge.c */
ngx_int_t ngx_http_snapcache_purge(ngx_http_request_t *r);

/* ngx_http_snapcache_shm.c */
ngx_int_t ngx_http_snapcache_lock_acquire(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, ngx_msec_t hold, uint64_t *fill_id);
void ngx_http_snapcache_lock_release(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t state, ngx_uint_t status);
ngx_uint_t ngx_http_snapcache_lock_state(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t *status);
void ngx_http_snapcache_gen_bump(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag);
ngx_uint_t ngx_http_snapcache_purged_within(
    ngx_http_snapcache_main_conf_t *smcf, const u_char *acct_tag,
    const u_char *dev_tag, time_t seconds);
time_t ngx_http_snapcache_not_before(ngx_http_snapcache_main_conf_t *smcf);
ngx_int_t ngx_http_snapcache_ledger_attach(
    ngx_http_snapcache_main_conf_t *smcf, ngx_log_t *log, u_char *dir);
void ngx_http_snapcache_ledger_detach(ngx_http_snapcache_main_conf_t *smcf);
ngx_uint_t ngx_http_snapcache_locks_in_use(
    ngx_http_snapcache_main_conf_t *smcf);

/* ngx_http_snapcache_link.c */
ngx_http_snapcache_links_t *ngx_http_snapcache_links_create(
    ngx_slab_pool_t *shpool, size_t zone_size, ngx_log_t *log);
void ngx_http_snapcache_link_choose(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
void ngx_http_snapcache_link_record(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t client[2], snapcache_adapt_sample_t *s,
    ngx_msec_t started, uint64_t bytes, ngx_uint_t responses);
void ngx_http_snapcache_link_size(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t device[2], uint32_t variant, size_t body_len);
void ngx_http_snapcache_link_queue(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t client[2], int64_t bytes, ngx_int_t responses);
void ngx_http_snapcache_links_usage(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t *used, ngx_uint_t *capacity);

/* ngx_http_snapcache_watch.c */
void ngx_http_snapcache_watch_check(ngx_http_request_t *r);
void ngx_http_snapcache_watch_sending(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
void ngx_http_snapcache_watch_sent(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, size_t len);

/* ngx_http_snapcache_variables.c */
ngx_int_t ngx_http_snapcache_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_snapcache_redact_init(ngx_conf_t *cf);
ngx_str_t *ngx_http_snapcache_status_name(ngx_uint_t status);

/* ngx_http_snapcache_metrics.c: counting */
ngx_int_t ngx_http_snapcache_metrics_init(ngx_conf_t *cf);
uint64_t ngx_http_snapcache_usec(void);
const uint64_t *ngx_http_snapcache_hist_bounds(ngx_uint_t hist);
ngx_uint_t ngx_http_snapcache_workers_sum(
    ngx_http_snapcache_main_conf_t *smcf, size_t field);
void ngx_http_snapcache_count_fill(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t result, uint64_t start);
void ngx_http_snapcache_count_served(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t reason);
void ngx_http_snapcache_count_transcode(ngx_http_snapcache_main_conf_t *smcf,
    ngx_str_t *variant, ngx_uint_t format, uint64_t usec);
void ngx_http_snapcache_count_origin(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t code, ngx_uint_t usable, uint64_t start);
void ngx_http_snapcache_count_gate(ngx_http_snapcache_main_conf_t *smcf,
    snapcache_str_t *kid, int rc);
void ngx_http_snapcache_fills_change(ngx_http_snapcache_main_conf_t *smcf,
    ngx_int_t n);
void ngx_http_snapcache_count_lock_full(
    ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_metrics_worker(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf, ngx_uint_t start);
void ngx_http_snapcache_count_bad(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t foreign);
void ngx_http_snapcache_count_rejected(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_count_store(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_count_purge(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t scope, ngx_uint_t result, uint64_t records);
void ngx_http_snapcache_observe_purge(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t usec);

/* ngx_http_snapcache_expose.c: Prometheus text and the stats JSON */
ngx_int_t ngx_http_snapcache_metrics_text(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_http_snapcache_figures_t *fig,
    ngx_chain_t **out, off_t *len);
ngx_int_t ngx_http_snapcache_stats_json(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, ngx_chain_t **out, off_t *len);

/* ngx_http_snapcache_store.c */
char *ngx_http_snapcache_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_snapcache_prepare_store(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf);
ngx_int_t ngx_http_snapcache_open_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_close_store(ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_store_damaged(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log);


#endif /* _NGX_HTTP_SNAPCACHE_H_INCLUDED_ */
