
/*
 * snapcache: types shared by the nginx glue in ngx_module/.
 */


#ifndef _NGX_HTTP_SNAPCACHE_H_INCLUDED_
#define _NGX_HTTP_SNAPCACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sign/snapcache_sign.h"


#define NGX_HTTP_SNAPCACHE_LOCKS       1024
#define NGX_HTTP_SNAPCACHE_GENS        4096
#define NGX_HTTP_SNAPCACHE_MAX_RUNGS   16


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 width;
    ngx_uint_t                 quality;
    ngx_uint_t                 formats;      /* SNAPCACHE_FORMAT_BIT()s */
    ngx_uint_t                 id;           /* the key's variant */
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
    NGX_HTTP_SNAPCACHE_NSTATS
} ngx_http_snapcache_stat_e;


typedef enum {
    NGX_HTTP_SNAPCACHE_LOCK_FREE = 0,
    NGX_HTTP_SNAPCACHE_LOCK_FILLING,
    NGX_HTTP_SNAPCACHE_LOCK_DONE,
    NGX_HTTP_SNAPCACHE_LOCK_FAILED,
    NGX_HTTP_SNAPCACHE_LOCK_GONE
} ngx_http_snapcache_lock_state_e;


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
    ngx_event_t                reader_check;
    ngx_uint_t                 used;         /* some location has snapcache */
} ngx_http_snapcache_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  prefix;
    ngx_array_t               *keys;         /* snapcache_sign_key_t */
    time_t                     max_lifetime;
    ngx_str_t                  origin;
    ngx_array_t               *variants;     /* the ladder, small first */
    ngx_str_t                  default_variant;
    ngx_uint_t                 default_index;

    time_t                     ttl;
    time_t                     ttl_min;
    time_t                     ttl_max;
    ngx_flag_t                 keep_original;
    size_t                     max_original_size;
    ngx_uint_t                 max_pixels;
    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;
    ngx_msec_t                 lock_timeout;
    ngx_msec_t                 fill_timeout;
} ngx_http_snapcache_loc_conf_t;


/* A verified request: ids point into r->unparsed_uri. */
typedef struct {
    snapcache_url_t                url;
    ngx_http_snapcache_variant_t  *variant;
    ngx_uint_t                     variant_index;
} ngx_http_snapcache_req_t;


extern ngx_module_t  ngx_http_snapcache_module;


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
void ngx_http_snapcache_stat_add(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t counter, ngx_atomic_int_t n);


#endif /* _NGX_HTTP_SNAPCACHE_H_INCLUDED_ */
