
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: signed camera snapshots for display clients.
 *
 * This file holds the module of snapcache locations: its directives, the
 * configuration's create and merge functions and the module's hooks.
 * The settings a peer endpoint and an admin location share with it are
 * here too; their own directives are in ngx_http_snapcache_peer_module.c
 * and ngx_http_snapcache_admin_module.c.  The request entry and the gate
 * are in ngx_http_snapcache_handler.c.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


static ngx_int_t ngx_http_snapcache_init(ngx_conf_t *cf);
static char *ngx_http_snapcache_check_sec(ngx_conf_t *cf, void *post,
    void *data);
static void *ngx_http_snapcache_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_snapcache_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_snapcache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_snapcache_zone_add(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf, ngx_str_t *name, size_t size);
static ngx_int_t ngx_http_snapcache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_snapcache_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_origin_pass_header(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_snapcache_cluster_token(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_snapcache_init_process(ngx_cycle_t *cycle);
static void ngx_http_snapcache_exit_process(ngx_cycle_t *cycle);


/*
 * Numbers that would make every request fail are refused at startup:
 * a zero pixel or size limit refuses every original, a zero timeout
 * fails every fill.
 */
static ngx_conf_num_bounds_t  ngx_http_snapcache_positive_sec = {
    ngx_http_snapcache_check_sec, 1, 10 * 365 * 86400
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_any_sec = {
    ngx_http_snapcache_check_sec, 0, 10 * 365 * 86400
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_positive_msec = {
    ngx_conf_check_num_bounds, 1, 24 * 3600 * 1000
};

/* below 10ms nothing but a loopback fits; above a minute is no budget */
static ngx_conf_num_bounds_t  ngx_http_snapcache_budget_msec = {
    ngx_conf_check_num_bounds, 10, 60 * 1000
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_original_size_bounds = {
    ngx_conf_check_num_bounds, 1024, 1024 * 1024 * 1024
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_max_pixels_bounds = {
    ngx_conf_check_num_bounds, 1, 0x7fffffff
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_max_fills_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


static ngx_command_t  ngx_http_snapcache_commands[] = {

    { ngx_string("snapcache"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_sign_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_snapcache_sign_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_url_max_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, max_lifetime),
      &ngx_http_snapcache_any_sec },

    { ngx_string("snapcache_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_snapcache_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_origin_pass_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_snapcache_origin_pass_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_snapcache_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_variant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_snapcache_variant,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_default_variant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, default_variant),
      NULL },

    { ngx_string("snapcache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, ttl),
      &ngx_http_snapcache_positive_sec },

    { ngx_string("snapcache_ttl_min"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, ttl_min),
      &ngx_http_snapcache_any_sec },

    { ngx_string("snapcache_ttl_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, ttl_max),
      &ngx_http_snapcache_positive_sec },

    { ngx_string("snapcache_negative_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, negative_ttl),
      &ngx_http_snapcache_any_sec },

    { ngx_string("snapcache_fill_below"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, fill_below),
      NULL },

    { ngx_string("snapcache_transcode_nice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_transcode_nice,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_keep_original"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, keep_original),
      NULL },

    { ngx_string("snapcache_max_original_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, max_original_size),
      &ngx_http_snapcache_original_size_bounds },

    { ngx_string("snapcache_max_pixels"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, max_pixels),
      &ngx_http_snapcache_max_pixels_bounds },

    { ngx_string("snapcache_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, thread_pool_name),
      NULL },

    { ngx_string("snapcache_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, lock_timeout),
      &ngx_http_snapcache_positive_msec },

    { ngx_string("snapcache_fill_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, fill_timeout),
      &ngx_http_snapcache_positive_msec },

    { ngx_string("snapcache_adapt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, adapt),
      NULL },

    { ngx_string("snapcache_adapt_budget"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, adapt_budget),
      &ngx_http_snapcache_budget_msec },

    { ngx_string("snapcache_cors_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_snapcache_cors_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_cluster_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_cluster_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_cold_start"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_snapcache_main_conf_t, cold_start),
      NULL },

    { ngx_string("snapcache_memory_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_memory_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_max_fills"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, max_fills),
      &ngx_http_snapcache_max_fills_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_snapcache_module_ctx = {
    ngx_http_snapcache_add_variables,      /* preconfiguration */
    ngx_http_snapcache_init,               /* postconfiguration */

    ngx_http_snapcache_create_main_conf,   /* create main configuration */
    ngx_http_snapcache_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_snapcache_create_loc_conf,    /* create location configuration */
    ngx_http_snapcache_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_snapcache_module = {
    NGX_MODULE_V1,
    &ngx_http_snapcache_module_ctx,        /* module context */
    ngx_http_snapcache_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_snapcache_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_snapcache_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* ngx_conf_check_num_bounds() for a time_t, whose size may differ. */
static char *
ngx_http_snapcache_check_sec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t *bounds = post;
    time_t *sp = data;

    if (*sp < bounds->low || *sp > bounds->high) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "value must be between %i and %i seconds",
                           bounds->low, bounds->high);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_snapcache_init(ngx_conf_t *cf)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    if (ngx_http_snapcache_redact_init(cf) != NGX_OK
        || ngx_http_snapcache_metrics_init(cf) != NGX_OK
        || ngx_http_snapcache_origin_filter_init(cf) != NGX_OK
        || ngx_http_snapcache_check_origins(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Here and not in init_module: a failed init_module makes the master
     * exit, leaving its workers behind, while a refusal here only
     * rejects the new configuration.
     */
    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);

    return ngx_http_snapcache_prepare_store(cf, smcf);
}


static ngx_int_t
ngx_http_snapcache_init_process(ngx_cycle_t *cycle)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_snapcache_module);
    if (smcf == NULL) {
        return NGX_OK;
    }

    ngx_http_snapcache_metrics_worker(cycle, smcf, 1);

    if (!smcf->used || smcf->store_path.len == 0) {
        return NGX_OK;
    }

    if (ngx_http_snapcache_memory_init(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_snapcache_open_store(cycle, smcf);
}


static void
ngx_http_snapcache_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    ngx_http_snapcache_free_bodies();

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_snapcache_module);
    if (smcf == NULL) {
        return;
    }

    ngx_http_snapcache_metrics_worker(cycle, smcf, 0);
    ngx_http_snapcache_memory_exit();
    ngx_http_snapcache_close_store(smcf);
}


static void *
ngx_http_snapcache_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_snapcache_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_snapcache_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->prefix = { 0, NULL };
     *     conf->origin = { 0, NULL };
     *     conf->default_variant = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->keys = NGX_CONF_UNSET_PTR;
    conf->max_lifetime = NGX_CONF_UNSET;
    conf->origin_pass_headers = NGX_CONF_UNSET_PTR;
    conf->variants = NGX_CONF_UNSET_PTR;
    conf->ttl = NGX_CONF_UNSET;
    conf->ttl_min = NGX_CONF_UNSET;
    conf->ttl_max = NGX_CONF_UNSET;
    conf->negative_ttl = NGX_CONF_UNSET;
    conf->keep_original = NGX_CONF_UNSET;
    conf->fill_below = NGX_CONF_UNSET;
    conf->transcode_nice = NGX_CONF_UNSET;
    conf->max_original_size = NGX_CONF_UNSET_SIZE;
    conf->max_pixels = NGX_CONF_UNSET_UINT;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->fill_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_fills = NGX_CONF_UNSET_UINT;
    conf->adapt = NGX_CONF_UNSET;
    conf->adapt_budget = NGX_CONF_UNSET_MSEC;
    conf->cors_origins = NGX_CONF_UNSET_PTR;
    conf->cluster_tokens = NGX_CONF_UNSET_PTR;
    conf->memory = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_snapcache_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_snapcache_loc_conf_t *prev = parent;
    ngx_http_snapcache_loc_conf_t *conf = child;

    ngx_http_snapcache_main_conf_t  *smcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_sec_value(conf->max_lifetime, prev->max_lifetime, 3600);

    /* the uri and whether it is the peers go together */
    if (conf->origin.data == NULL) {
        conf->origin = prev->origin;
        conf->origin_peers = prev->origin_peers;
    }

    if (conf->origin.data == NULL) {
        ngx_str_set(&conf->origin, "");
    }

    ngx_conf_merge_ptr_value(conf->origin_pass_headers,
                             prev->origin_pass_headers, NULL);
    ngx_conf_merge_ptr_value(conf->variants, prev->variants, NULL);
    ngx_conf_merge_str_value(conf->default_variant, prev->default_variant,
                             "");
    ngx_conf_merge_sec_value(conf->ttl, prev->ttl, 60);
    ngx_conf_merge_sec_value(conf->ttl_min, prev->ttl_min, 1);
    ngx_conf_merge_sec_value(conf->ttl_max, prev->ttl_max, 86400);
    ngx_conf_merge_sec_value(conf->negative_ttl, prev->negative_ttl, 10);
    ngx_conf_merge_value(conf->keep_original, prev->keep_original, 1);
    ngx_conf_merge_value(conf->fill_below, prev->fill_below, 1);
    ngx_conf_merge_value(conf->transcode_nice, prev->transcode_nice, 10);
    ngx_conf_merge_size_value(conf->max_original_size,
                              prev->max_original_size, 8 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_pixels, prev->max_pixels,
                              40000000);
    ngx_conf_merge_str_value(conf->thread_pool_name, prev->thread_pool_name,
                             "default");
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 5000);
    ngx_conf_merge_msec_value(conf->fill_timeout, prev->fill_timeout, 10000);
    ngx_conf_merge_uint_value(conf->max_fills, prev->max_fills, 256);
    ngx_conf_merge_value(conf->adapt, prev->adapt, 1);
    ngx_conf_merge_msec_value(conf->adapt_budget, prev->adapt_budget, 1000);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);
    ngx_conf_merge_value(conf->memory, prev->memory, 1);

    if (ngx_http_snapcache_merge_ladder(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the tokens and the one sent are declared together */
    if (conf->cluster_tokens == NGX_CONF_UNSET_PTR) {
        conf->cluster_tokens = prev->cluster_tokens == NGX_CONF_UNSET_PTR
                               ? NULL : prev->cluster_tokens;
        conf->cluster_bearer = prev->cluster_bearer;
    }

    if (conf->ttl_min > conf->ttl_max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_ttl_min\" is above "
                           "\"snapcache_ttl_max\"");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);
    smcf->used = 1;

    if (ngx_http_snapcache_resolve_pool(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->keys == NULL || conf->keys->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache\" requires at least one "
                           "\"snapcache_sign_key\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_snapcache_note_kids(cf, smcf, conf->keys) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_snapcache_check_origin_uri(cf, conf, "snapcache",
                                            "a location that starts with "
                                            "\"/\"")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->origin_peers && conf->cluster_bearer.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_origin %V peers\" requires a "
                           "\"snapcache_cluster_token\" to present to the "
                           "peers", &conf->origin);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The thread pool a location's fills or purges run on.  Only locations
 * that use one add it: nginx starts the threads of every pool it knows.
 */
ngx_int_t
ngx_http_snapcache_resolve_pool(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf)
{
    if (slcf->thread_pool) {
        return NGX_OK;
    }

    slcf->thread_pool = ngx_thread_pool_add(cf, &slcf->thread_pool_name);

    return slcf->thread_pool ? NGX_OK : NGX_ERROR;
}


/*
 * The location a handler directive stands in, if it is a plain prefix
 * location (ending in '/' when slash is set): the handlers read their
 * target from the raw request line after the location's name.  NULL
 * when it is not.
 */
ngx_http_core_loc_conf_t *
ngx_http_snapcache_prefix_location(ngx_conf_t *cf, ngx_uint_t slash)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->name.len == 0
        || (slash && clcf->name.data[clcf->name.len - 1] != '/'))
    {
        return NULL;
    }

    return clcf;
}


/*
 * An origin for a location kind ("snapcache", "snapcache_peer"): it must
 * name a location; a trailing '/' is dropped, since the ids follow one.
 */
ngx_int_t
ngx_http_snapcache_check_origin_uri(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf, const char *kind,
    const char *which)
{
    if (slcf->origin.len == 0 || slcf->origin.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" requires \"snapcache_origin\" naming %s",
                           kind, which);
        return NGX_ERROR;
    }

    if (slcf->origin.data[slcf->origin.len - 1] == '/') {
        slcf->origin.len--;
    }

    return NGX_OK;
}


static char *
ngx_http_snapcache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_snapcache_prefix_location(cf, 1);
    if (clcf == NULL) {
        return "must be used in a prefix location ending with \"/\", "
               "such as \"location /snap/ { snapcache; }\"";
    }

    slcf->enable = 1;
    slcf->prefix = clcf->name;
    clcf->handler = ngx_http_snapcache_handler;

    return NGX_CONF_OK;
}


static void *
ngx_http_snapcache_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_snapcache_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->store_path = { 0, NULL };
     *     smcf->shm_zone = NULL;
     *     smcf->store = NULL;
     *     smcf->used = 0;
     */

    smcf->store_size = NGX_CONF_UNSET_SIZE;
    smcf->cold_start = NGX_CONF_UNSET;
    smcf->memory_size = NGX_CONF_UNSET_SIZE;

    return smcf;
}


/*
 * Without snapcache_zone, a default zone is made so that fills are
 * still coalesced across workers and purges still reach every worker.
 */
static char *
ngx_http_snapcache_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_snapcache_main_conf_t *smcf = conf;

    ngx_str_t  name = ngx_string("snapcache");

    ngx_conf_init_value(smcf->cold_start, 0);
    ngx_conf_init_size_value(smcf->memory_size, 0);

    if (smcf->shm_zone == NULL) {
        if (ngx_http_snapcache_zone_add(cf, smcf, &name, 1024 * 1024)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* snapcache_zone <name>:<size> */
static char *
ngx_http_snapcache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_main_conf_t *smcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (smcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');
    if (p == NULL || p == value[1].data) {
        return "must be \"name:size\"";
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);
    if (size == NGX_ERROR) {
        return "has an invalid size";
    }

    if (ngx_http_snapcache_zone_add(cf, smcf, &name, (size_t) size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_snapcache_zone_add(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf, ngx_str_t *name, size_t size)
{
    size_t  min;

    min = 8 * ngx_pagesize + sizeof(ngx_http_snapcache_shctx_t);

    if (size < min) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, at least %uzk is "
                           "needed", name, min >> 10);
        return NGX_ERROR;
    }

    smcf->shm_zone = ngx_shared_memory_add(cf, name, size,
                                           &ngx_http_snapcache_module);
    if (smcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (smcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NGX_ERROR;
    }

    smcf->shm_zone->init = ngx_http_snapcache_init_zone;
    smcf->shm_zone->data = smcf;

    return NGX_OK;
}


/*
 * On reload the new cycle keeps the old zone's contents: generations
 * and in-flight fill locks must survive, or a purge could be forgotten.
 */
static ngx_int_t
ngx_http_snapcache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_snapcache_main_conf_t *osmcf = data;

    ngx_slab_pool_t                 *shpool;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = shm_zone->data;

    if (osmcf) {
        smcf->sh = osmcf->sh;
        smcf->shpool = osmcf->shpool;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        smcf->shpool = shpool;
        smcf->sh = shpool->data;
        return NGX_OK;
    }

    smcf->shpool = shpool;

    smcf->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_snapcache_shctx_t));
    if (smcf->sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = smcf->sh;

    /*
     * A reload keeps the zone, a restart makes it: see snapcache_cold_start.
     * A binary upgrade makes one too, beside the old master's.
     */
    smcf->sh->epoch = time(NULL);
    smcf->sh->upgraded_from = ngx_inherited ? ngx_parent : 0;

    smcf->sh->links = ngx_http_snapcache_links_create(shpool,
                                                      shm_zone->shm.size,
                                                      shm_zone->shm.log);

    shpool->log_ctx = ngx_slab_alloc(shpool,
                                     sizeof(" in snapcache zone \"\"")
                                     + shm_zone->shm.name.len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in snapcache zone \"%V\"%Z",
                &shm_zone->shm.name);

    return NGX_OK;
}


/*
 * snapcache_origin <uri> [peers]: "peers" says that the origin location
 * proxies to the cluster's peer endpoints, and is the only place the
 * cluster token is ever sent.  A token inherited from the http level
 * never travels to an origin that is not marked so.
 */
static char *
ngx_http_snapcache_origin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_str_t  *value;

    if (slcf->origin.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty uri";
    }

    slcf->origin = value[1];
    slcf->origin_peers = 0;

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "peers") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", the only one is "
                               "\"peers\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        slcf->origin_peers = 1;
    }

    return NGX_CONF_OK;
}


/*
 * snapcache_origin_pass_header <name> ...: client headers the origin may
 * see.  Those that frame the request or ask for part of the image, or a
 * conditional answer, are refused: the fill needs a whole, fresh image.
 */
static char *
ngx_http_snapcache_origin_pass_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    u_char       c;
    ngx_str_t   *value, *name;
    ngx_uint_t   i, j;

    static const char  *refused[] = {
        "host", "connection", "keep-alive", "upgrade", "te", "trailer",
        "content-length", "transfer-encoding", "expect", "range",
        "if-range", "if-match", "if-none-match", "if-modified-since",
        "if-unmodified-since", "accept", "accept-encoding", NULL
    };

    if (slcf->origin_pass_headers == NGX_CONF_UNSET_PTR) {
        slcf->origin_pass_headers = ngx_array_create(cf->pool, 4,
                                                     sizeof(ngx_str_t));
        if (slcf->origin_pass_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        for (j = 0; j < value[i].len; j++) {
            c = ngx_tolower(value[i].data[j]);

            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                  || c == '-' || c == '_'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid header name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        for (j = 0; refused[j]; j++) {
            if (value[i].len == ngx_strlen(refused[j])
                && ngx_strncasecmp(value[i].data, (u_char *) refused[j],
                                   value[i].len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" cannot be passed to the origin: "
                                   "the module sets it or a fill needs a "
                                   "whole image", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (value[i].len == 0) {
            return "has an empty header name";
        }

        name = ngx_array_push(slcf->origin_pass_headers);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * snapcache_cluster_token <file>: repeatable, for rotation.  A peer
 * endpoint accepts every one; a snapcache location whose origin is
 * marked "peers" presents the first one of its level to it.
 */
static char *
ngx_http_snapcache_cluster_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    /* only the first is ever sent, so only its bytes are kept */
    return ngx_http_snapcache_token_load(cf, &value[1], "cluster",
                                         &slcf->cluster_tokens,
                                         &slcf->cluster_bearer);
}
