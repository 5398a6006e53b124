
/*
 * snapcache: types shared by the nginx glue in ngx_module/.
 */


#ifndef _NGX_HTTP_SNAPCACHE_H_INCLUDED_
#define _NGX_HTTP_SNAPCACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sign/snapcache_sign.h"


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 width;
    ngx_uint_t                 quality;
} ngx_http_snapcache_variant_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  prefix;
    ngx_array_t               *keys;         /* snapcache_sign_key_t */
    time_t                     max_lifetime;
    ngx_str_t                  origin;
    ngx_array_t               *variants;     /* the ladder, small first */
    ngx_str_t                  default_variant;
} ngx_http_snapcache_loc_conf_t;


/* What the access log sees as $snapcache_status. */
typedef enum {
    NGX_HTTP_SNAPCACHE_HIT = 0,
    NGX_HTTP_SNAPCACHE_MISS,
    NGX_HTTP_SNAPCACHE_STALE,
    NGX_HTTP_SNAPCACHE_BYPASS,
    NGX_HTTP_SNAPCACHE_DENIED,
    NGX_HTTP_SNAPCACHE_ERROR
} ngx_http_snapcache_status_e;


/* A verified request: ids point into r->unparsed_uri. */
typedef struct {
    snapcache_url_t                url;
    ngx_http_snapcache_variant_t  *variant;
    ngx_uint_t                     variant_index;
} ngx_http_snapcache_req_t;


extern ngx_module_t  ngx_http_snapcache_module;


#endif /* _NGX_HTTP_SNAPCACHE_H_INCLUDED_ */
