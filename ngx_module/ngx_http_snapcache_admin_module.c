
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the admin API, a module of its own.  A location with
 * snapcache_admin answers
 *
 *   POST <location>/purge    a purge (ngx_http_snapcache_purge.c)
 *   GET  <location>/stats    JSON
 *   GET  <location>/metrics  Prometheus text (ngx_http_snapcache_metrics.c)
 *
 * to callers presenting "Authorization: Bearer <token>", one of the
 * snapcache_admin_token files, compared in constant time; on top of
 * that, restrict it with allow and deny.  Purges run on the location's
 * snapcache_thread_pool, a setting of ngx_http_snapcache_module.
 *
 * A location with snapcache_health answers a balancer, without a token:
 * 200 "ok", or 503 and the one word of what stops this node serving
 * (store, zone, pool).  It tells nothing a client could not see.
 */


#include "ngx_module/ngx_http_snapcache.h"


typedef enum {
    NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN = 0,
    NGX_HTTP_SNAPCACHE_ADMIN_PURGE,
    NGX_HTTP_SNAPCACHE_ADMIN_STATS,
    NGX_HTTP_SNAPCACHE_ADMIN_METRICS
} ngx_http_snapcache_endpoint_e;


typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 health;
    ngx_array_t               *tokens;       /* SHA-256 digests */
} ngx_http_snapcache_admin_loc_conf_t;


static ngx_int_t ngx_http_snapcache_admin_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_health_handler(ngx_http_request_t *r);
static const char *ngx_http_snapcache_health_reason(
    ngx_http_snapcache_main_conf_t *smcf);
static char *ngx_http_snapcache_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_uint_t ngx_http_snapcache_admin_endpoint(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_admin_get(ngx_http_request_t *r,
    ngx_uint_t endpoint);
static ngx_int_t ngx_http_snapcache_admin_not_allowed(ngx_http_request_t *r,
    ngx_uint_t endpoint);
static void *ngx_http_snapcache_admin_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_admin_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_snapcache_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_admin_token(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_snapcache_admin_commands[] = {

    { ngx_string("snapcache_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_admin_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_admin_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_snapcache_admin_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_snapcache_admin_create_loc_conf,
    ngx_http_snapcache_admin_merge_loc_conf
};


ngx_module_t  ngx_http_snapcache_admin_module = {
    NGX_MODULE_V1,
    &ngx_http_snapcache_admin_module_ctx,  /* module context */
    ngx_http_snapcache_admin_commands,     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_snapcache_admin_handler(ngx_http_request_t *r)
{
    ngx_uint_t                            endpoint;
    ngx_http_snapcache_main_conf_t       *smcf;
    ngx_http_snapcache_admin_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_admin_module);

    endpoint = ngx_http_snapcache_admin_endpoint(r);

    if (ngx_http_snapcache_bearer_auth(r, alcf->tokens, "admin") != NGX_OK) {

        if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_PURGE) {
            smcf = ngx_http_get_module_main_conf(r,
                                                 ngx_http_snapcache_module);
            ngx_http_snapcache_count_purge(smcf, NGX_HTTP_SNAPCACHE_SCOPE_NONE,
                                        NGX_HTTP_SNAPCACHE_PURGE_UNAUTHORIZED,
                                        0);
        }

        return ngx_http_snapcache_reply_json_error(r, NGX_HTTP_UNAUTHORIZED,
                                                   "unauthorized");
    }

    switch (endpoint) {

    case NGX_HTTP_SNAPCACHE_ADMIN_PURGE:

        if (r->method != NGX_HTTP_POST) {
            return ngx_http_snapcache_admin_not_allowed(r, endpoint);
        }

        return ngx_http_snapcache_purge(r);

    case NGX_HTTP_SNAPCACHE_ADMIN_STATS:
    case NGX_HTTP_SNAPCACHE_ADMIN_METRICS:

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_snapcache_admin_not_allowed(r, endpoint);
        }

        return ngx_http_snapcache_admin_get(r, endpoint);

    default:
        return ngx_http_snapcache_reply_json_error(r, NGX_HTTP_NOT_FOUND,
                                                   "no such admin endpoint");
    }
}


/* The path after the location's name, with one '/' between them. */
static ngx_uint_t
ngx_http_snapcache_admin_endpoint(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     len;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->uri.len < clcf->name.len) {
        return NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN;
    }

    p = r->uri.data + clcf->name.len;
    len = r->uri.len - clcf->name.len;

    if ((clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/')
        && len && *p == '/')
    {
        p++;
        len--;
    }

    if (len == 5 && ngx_strncmp(p, "purge", 5) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_PURGE;
    }

    if (len == 5 && ngx_strncmp(p, "stats", 5) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_STATS;
    }

    if (len == 7 && ngx_strncmp(p, "metrics", 7) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_METRICS;
    }

    return NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN;
}


static ngx_int_t
ngx_http_snapcache_admin_get(ngx_http_request_t *r, ngx_uint_t endpoint)
{
    off_t                            len;
    ngx_int_t                        rc;
    ngx_chain_t                     *out;
    ngx_http_snapcache_figures_t     fig;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_METRICS) {
        ngx_memzero(&fig, sizeof(ngx_http_snapcache_figures_t));
        ngx_http_snapcache_links_usage(smcf, &fig.links_used,
                                       &fig.links_capacity);

        if (ngx_http_snapcache_metrics_text(r, smcf, &fig, &out, &len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_snapcache_reply_send(r, NGX_HTTP_OK,
                                     "text/plain; version=0.0.4; charset=utf-8",
                                     out, len);
    }

    if (ngx_http_snapcache_stats_json(r, smcf, &out, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_snapcache_reply_send(r, NGX_HTTP_OK, "application/json",
                                         out, len);
}


static ngx_int_t
ngx_http_snapcache_admin_not_allowed(ngx_http_request_t *r,
    ngx_uint_t endpoint)
{
    ngx_str_t  allow;

    if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_PURGE) {
        ngx_str_set(&allow, "POST");

    } else {
        ngx_str_set(&allow, "GET, HEAD");
    }

    if (ngx_http_snapcache_add_header(r, "Allow", &allow) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_snapcache_reply_json_error(r, NGX_HTTP_NOT_ALLOWED,
                                               "method not allowed");
}


static void *
ngx_http_snapcache_admin_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_snapcache_admin_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_snapcache_admin_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->health = NGX_CONF_UNSET;
    conf->tokens = NGX_CONF_UNSET_PTR;

    return conf;
}


/*
 * An admin location needs a token: allow/deny alone is not enough, and
 * a location that answered anyone would purge for anyone.  The snapcache
 * module's configuration of this location is merged by now.
 */
static char *
ngx_http_snapcache_admin_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_snapcache_admin_loc_conf_t *prev = parent;
    ngx_http_snapcache_admin_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_snapcache_loc_conf_t  *slcf;

    ngx_conf_merge_ptr_value(conf->tokens, prev->tokens, NULL);

    slcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_snapcache_module);

    if (conf->health == 1
        && (conf->enable == 1 || slcf->enable == 1 || slcf->peer_endpoint))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_health\" needs a location of its "
                           "own");
        return NGX_CONF_ERROR;
    }

    if (conf->health != 1) {
        conf->health = 0;
    }

    /* not inherited: a nested location is not an admin location */
    if (conf->enable != 1) {
        conf->enable = 0;
        return NGX_CONF_OK;
    }

    if (slcf->enable == 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_admin\" and \"snapcache\" cannot "
                           "share a location");
        return NGX_CONF_ERROR;
    }

    if (conf->tokens == NULL || conf->tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_admin\" requires at least one "
                           "\"snapcache_admin_token\"");
        return NGX_CONF_ERROR;
    }

    /* a purge body, up to its 64k cap, is read in memory, not to a file */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->client_body_buffer_size < 64 * 1024) {
        clcf->client_body_buffer_size = 64 * 1024;
    }

    /* purges run on the thread pool */
    return ngx_http_snapcache_resolve_pool(cf, slcf) == NGX_OK
           ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* snapcache_admin: the purge, stats and metrics API in this location. */
static char *
ngx_http_snapcache_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_admin_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_snapcache_prefix_location(cf, 0);
    if (clcf == NULL) {
        return "must be used in a prefix location, such as "
               "\"location /snapcache-admin/ { snapcache_admin; }\"";
    }

    alcf->enable = 1;
    clcf->handler = ngx_http_snapcache_admin_handler;

    return NGX_CONF_OK;
}


/* snapcache_admin_token <file>: repeatable, for rotation. */
static char *
ngx_http_snapcache_admin_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_admin_loc_conf_t *alcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    return ngx_http_snapcache_token_load(cf, &value[1], "admin",
                                         &alcf->tokens, NULL);
}


/*
 * snapcache_health: in any location, "location = /health" for one.  It
 * needs no token: what it says, a balancer needs, and nothing in it is
 * secret.
 */
static char *
ngx_http_snapcache_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_admin_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->health != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    alcf->health = 1;
    clcf->handler = ngx_http_snapcache_health_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_snapcache_health_handler(ngx_http_request_t *r)
{
    const char                      *reason;
    ngx_http_snapcache_main_conf_t  *smcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "method");
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    reason = ngx_http_snapcache_health_reason(smcf);

    if (reason) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: health: %s", reason);
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              reason);
    }

    return ngx_http_snapcache_reply_error(r, NGX_HTTP_OK, "ok");
}


/*
 * What stops this node serving, the first of: the store is not open in
 * this worker (its requests answer 503) or LMDB found it damaged (every
 * fill goes to the origin, uncached); the zone is missing, or its fill
 * locks were all held lately (misses fill uncoalesced, a fetch each);
 * fills or purges were refused lately for want of room
 * (snapcache_max_fills or the thread pool's queue).  NULL: ok.
 */
static const char *
ngx_http_snapcache_health_reason(ngx_http_snapcache_main_conf_t *smcf)
{
    time_t                         since;
    ngx_http_snapcache_metrics_t  *m;

    if (smcf == NULL || smcf->sh == NULL) {
        return "zone";
    }

    m = &smcf->sh->metrics;

    if (smcf->store_path.len
        && (smcf->store == NULL || m->store_damaged))
    {
        return "store";
    }

    since = ngx_time() - NGX_HTTP_SNAPCACHE_HEALTH_WINDOW;

    if (m->lock_full_at && (time_t) m->lock_full_at > since) {
        return "zone";
    }

    if (m->refused_at && (time_t) m->refused_at > since) {
        return "pool";
    }

    return NULL;
}
