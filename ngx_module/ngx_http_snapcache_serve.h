
/*
 * snapcache: the serving path's request and task state.
 */


#ifndef _NGX_HTTP_SNAPCACHE_SERVE_H_INCLUDED_
#define _NGX_HTTP_SNAPCACHE_SERVE_H_INCLUDED_


#include "ngx_module/ngx_http_snapcache.h"
#include "cache/snapcache_cache.h"
#include "transcode/snapcache_transcode.h"


typedef struct ngx_http_snapcache_ctx_s   ngx_http_snapcache_ctx_t;


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
    snapcache_ident_t                ident;
    ngx_http_snapcache_gen_t         gen;
    ngx_uint_t                       variant_byte;
    ngx_uint_t                       width;
    ngx_uint_t                       quality;
    ngx_uint_t                       format;
    time_t                           expires;
    size_t                           max_bytes;
    ngx_uint_t                       max_pixels;

    uint64_t                         lock_hash;
    uint64_t                         fill_id;

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
    unsigned                         transcoded:1;
} ngx_http_snapcache_task_t;


struct ngx_http_snapcache_ctx_s {
    ngx_http_request_t              *request;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_http_snapcache_req_t        *sreq;

    snapcache_ident_t                ident;
    ngx_uint_t                       variant_byte;
    ngx_uint_t                       format;

    snapcache_record_t               stale;

    uint64_t                         lock_hash;
    uint64_t                         fill_id;
    ngx_msec_t                       wait_deadline;
    ngx_event_t                      wait_event;
    ngx_http_snapcache_gen_t         gen;
    ngx_http_snapcache_task_t       *task;

    /* set on the origin subrequest's own ctx: where to collect */
    ngx_http_snapcache_ctx_t        *origin;
    ngx_http_request_t              *sr;
    ngx_int_t                        origin_rc;
    ngx_uint_t                       origin_status;
    off_t                            origin_clen;
    time_t                           origin_max_age;
    time_t                           origin_expires;
    u_char                          *origin_buf;
    size_t                           origin_len;
    size_t                           origin_cap;

    unsigned                         lock_held:1;
    unsigned                         no_store:1;
    unsigned                         has_stale:1;
    unsigned                         body_in_pool:1;
    unsigned                         origin_complete:1;
    unsigned                         origin_finished:1;
    unsigned                         origin_too_big:1;
    unsigned                         origin_in_file:1;
};


ngx_int_t ngx_http_snapcache_serve(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sreq);
ngx_int_t ngx_http_snapcache_init_filters(ngx_conf_t *cf);
ngx_int_t ngx_http_snapcache_header_filter(ngx_http_request_t *r);
ngx_int_t ngx_http_snapcache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
ngx_uint_t ngx_http_snapcache_header_dropped(ngx_table_elt_t *h,
    const char **names);
int ngx_http_snapcache_store_check(void *data);

ngx_uint_t ngx_http_snapcache_format(ngx_http_request_t *r,
    ngx_http_snapcache_variant_t *variant);
time_t ngx_http_snapcache_max_age(ngx_http_request_t *r);
time_t ngx_http_snapcache_ttl(ngx_http_snapcache_loc_conf_t *slcf,
    time_t max_age);
void ngx_http_snapcache_task_account(ngx_http_snapcache_task_t *t);
void ngx_http_snapcache_store_damaged(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log);

ngx_int_t ngx_http_snapcache_prepare_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf);
ngx_int_t ngx_http_snapcache_open_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf);
void ngx_http_snapcache_close_store(ngx_http_snapcache_main_conf_t *smcf);

void ngx_http_snapcache_set_status(ngx_http_request_t *r,
    ngx_http_snapcache_status_e status);
void ngx_http_snapcache_set_variant(ngx_http_request_t *r, ngx_str_t *name);
ngx_str_t *ngx_http_snapcache_status_name(ngx_http_snapcache_status_e status);


#endif /* _NGX_HTTP_SNAPCACHE_SERVE_H_INCLUDED_ */
