
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: signed camera snapshots for display clients.
 *
 * This file holds the directives, the configuration's create and merge
 * functions and the module's hooks.  The request entry and the gate are
 * in ngx_http_snapcache_handler.c.
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
static char *ngx_http_snapcache_sign_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_snapcache_free_keys(void *data);
static ngx_int_t ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static char *ngx_http_snapcache_merge_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static ngx_int_t ngx_http_snapcache_variant_id(ngx_conf_t *cf,
    ngx_http_snapcache_variant_t *v);
static char *ngx_http_snapcache_merge_admin(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static char *ngx_http_snapcache_origin_pass_header(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_snapcache_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_variant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_admin_token(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_snapcache_merge_peer(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static char *ngx_http_snapcache_peer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
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

static ngx_conf_num_bounds_t  ngx_http_snapcache_nice_bounds = {
    ngx_conf_check_num_bounds, 0, 19
};

static ngx_conf_num_bounds_t  ngx_http_snapcache_max_pixels_bounds = {
    ngx_conf_check_num_bounds, 1, 0x7fffffff
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
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, origin),
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
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, transcode_nice),
      &ngx_http_snapcache_nice_bounds },

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

    { ngx_string("snapcache_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_admin_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_snapcache_admin_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("snapcache_peer"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache_peer,
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


#define NGX_HTTP_SNAPCACHE_JPEG_WEBP                                          \
    (SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)                              \
     | SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP))


/* The default ladder: thumb 320/q50, sd 640/q65, hd 1280/q75, full 1920/q85 */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_default_variants[] = {
    { ngx_string("thumb"), 320, 50,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("sd"), 640, 65,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("hd"), 1280, 75,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("full"), 1920, 85,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 }
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
        || ngx_http_snapcache_origin_init(cf) != NGX_OK)
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
    if (smcf == NULL || !smcf->used || smcf->store_path.len == 0) {
        return NGX_OK;
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
    conf->adapt = NGX_CONF_UNSET;
    conf->adapt_budget = NGX_CONF_UNSET_MSEC;
    conf->admin = NGX_CONF_UNSET;
    conf->admin_tokens = NGX_CONF_UNSET_PTR;
    conf->peer = NGX_CONF_UNSET;
    conf->cluster_tokens = NGX_CONF_UNSET_PTR;

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
    ngx_conf_merge_str_value(conf->origin, prev->origin, "");
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
    ngx_conf_merge_value(conf->adapt, prev->adapt, 1);
    ngx_conf_merge_msec_value(conf->adapt_budget, prev->adapt_budget, 1000);

    if (ngx_http_snapcache_merge_ladder(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* not inherited: a nested location is not an admin location */
    if (conf->admin == NGX_CONF_UNSET) {
        conf->admin = 0;
    }

    ngx_conf_merge_ptr_value(conf->admin_tokens, prev->admin_tokens, NULL);

    /* the tokens and the one sent are declared together */
    if (conf->cluster_tokens == NGX_CONF_UNSET_PTR) {
        conf->cluster_tokens = prev->cluster_tokens == NGX_CONF_UNSET_PTR
                               ? NULL : prev->cluster_tokens;
        conf->cluster_bearer = prev->cluster_bearer;
    }

    if (conf->peer == NGX_CONF_UNSET) {
        conf->peer = 0;
    }

    if (conf->admin) {
        return ngx_http_snapcache_merge_admin(cf, conf);
    }

    if (conf->ttl_min > conf->ttl_max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_ttl_min\" is above "
                           "\"snapcache_ttl_max\"");
        return NGX_CONF_ERROR;
    }

    if (conf->peer) {
        return ngx_http_snapcache_merge_peer(cf, conf);
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);
    smcf->used = 1;

    conf->thread_pool = ngx_thread_pool_add(cf, &conf->thread_pool_name);
    if (conf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    if (conf->keys == NULL || conf->keys->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache\" requires at least one "
                           "\"snapcache_sign_key\"");
        return NGX_CONF_ERROR;
    }

    if (conf->origin.len == 0 || conf->origin.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache\" requires \"snapcache_origin\" "
                           "naming a location that starts with \"/\"");
        return NGX_CONF_ERROR;
    }

    if (conf->origin.data[conf->origin.len - 1] == '/') {
        conf->origin.len--;
    }

    return NGX_CONF_OK;
}


/*
 * An admin location needs a token: allow/deny alone is not enough, and
 * a location that answered anyone would purge for anyone.
 */
static char *
ngx_http_snapcache_merge_admin(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    if (conf->enable == 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_admin\" and \"snapcache\" cannot "
                           "share a location");
        return NGX_CONF_ERROR;
    }

    if (conf->admin_tokens == NULL || conf->admin_tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_admin\" requires at least one "
                           "\"snapcache_admin_token\"");
        return NGX_CONF_ERROR;
    }

    /* purges run on the thread pool */
    conf->thread_pool = ngx_thread_pool_add(cf, &conf->thread_pool_name);
    if (conf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    /* a purge body, up to its 64k cap, is read in memory, not to a file */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->client_body_buffer_size < 64 * 1024) {
        clcf->client_body_buffer_size = 64 * 1024;
    }

    return NGX_CONF_OK;
}


/*
 * A peer endpoint answers originals to the cluster's nodes: only to
 * those that present a token, from its store, fetching from its own
 * origin (the camera cloud).  A node that keeps its records across a
 * restart may hold what purges sent while it was down did not remove,
 * and would hand it to every node: nginx -t says so.
 */
static char *
ngx_http_snapcache_merge_peer(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    if (conf->enable == 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" and \"snapcache\" cannot "
                           "share a location");
        return NGX_CONF_ERROR;
    }

    if (conf->cluster_tokens == NULL || conf->cluster_tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" requires at least one "
                           "\"snapcache_cluster_token\"");
        return NGX_CONF_ERROR;
    }

    if (conf->origin.len == 0 || conf->origin.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" requires \"snapcache_origin\" "
                           "naming the location of the camera cloud");
        return NGX_CONF_ERROR;
    }

    if (conf->origin.data[conf->origin.len - 1] == '/') {
        conf->origin.len--;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);

    if (smcf->store_path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" requires \"snapcache_store\": "
                           "the owner keeps the originals it answers");
        return NGX_CONF_ERROR;
    }

    if (!smcf->cold_start) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"snapcache_peer\" without \"snapcache_cold_start "
                           "on\": after a restart this node serves, to its "
                           "clients and its peers, records that purges sent "
                           "while it was down did not remove");
    }

    smcf->used = 1;

    conf->thread_pool = ngx_thread_pool_add(cf, &conf->thread_pool_name);
    if (conf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The ladder is kept smallest first, so that "at or below max" is an
 * index comparison; the default variant resolves to an index once here.
 */
static char *
ngx_http_snapcache_merge_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_uint_t                     i, j;
    ngx_http_snapcache_variant_t  *v, tmp;

    if (conf->variants == NULL) {
        if (ngx_http_snapcache_default_ladder(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    v = conf->variants->elts;

    for (i = 0; i < conf->variants->nelts; i++) {
        if (ngx_http_snapcache_variant_id(cf, &v[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < conf->variants->nelts; i++) {
        for (j = i; j > 0 && v[j - 1].width > v[j].width; j--) {
            tmp = v[j];
            v[j] = v[j - 1];
            v[j - 1] = tmp;
        }
    }

    if (conf->default_variant.len == 0) {
        /*
         * The second-largest rung: good on most links, never the largest.
         * Only the index is set, so that a nested ladder gets its own.
         */
        conf->default_index = conf->variants->nelts > 1
                              ? conf->variants->nelts - 2 : 0;
        return NGX_CONF_OK;
    }

    for (i = 0; i < conf->variants->nelts; i++) {
        if (v[i].name.len == conf->default_variant.len
            && ngx_strncmp(v[i].name.data, conf->default_variant.data,
                           v[i].name.len) == 0)
        {
            conf->default_index = i;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"snapcache_default_variant\" \"%V\" is not in "
                       "the ladder", &conf->default_variant);

    return NGX_CONF_ERROR;
}


/*
 * A rung's key names it by what it is: width, quality and the version of
 * the transcode pipeline, so that a record made for another rung, by
 * another configuration or an older pipeline, is never read for it.
 */
static ngx_int_t
ngx_http_snapcache_variant_id(ngx_conf_t *cf, ngx_http_snapcache_variant_t *v)
{
    v->id = snapcache_cache_variant(v->width, v->quality,
                                    SNAPCACHE_TRANSCODE_PIPELINE);
    v->weight = snapcache_adapt_weight((uint32_t) v->width,
                                       (uint32_t) v->quality);

    if (v->id == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variant \"%V\" cannot be keyed", &v->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_uint_t                     i, n;
    ngx_http_snapcache_variant_t  *v;

    n = sizeof(ngx_http_snapcache_default_variants)
        / sizeof(ngx_http_snapcache_variant_t);

    conf->variants = ngx_array_create(cf->pool, n,
                                      sizeof(ngx_http_snapcache_variant_t));
    if (conf->variants == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        v = ngx_array_push(conf->variants);
        if (v == NULL) {
            return NGX_ERROR;
        }

        *v = ngx_http_snapcache_default_variants[i];
    }

    return NGX_OK;
}


/*
 * The handler reads its ids from the raw request line after the location
 * name, so it only makes sense in a plain prefix location ending in '/'.
 */
static char *
ngx_http_snapcache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->name.len == 0
        || clcf->name.data[clcf->name.len - 1] != '/')
    {
        return "must be used in a prefix location ending with \"/\", "
               "such as \"location /snap/ { snapcache; }\"";
    }

    slcf->enable = 1;
    slcf->prefix = clcf->name;
    clcf->handler = ngx_http_snapcache_handler;

    return NGX_CONF_OK;
}


/*
 * Key files are read here, in the master at configuration time, so that
 * they can stay readable by root only.
 */
static char *
ngx_http_snapcache_sign_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    int                    world_readable;
    char                   err[256];
    ngx_str_t             *value, path;
    ngx_uint_t             i;
    ngx_pool_cleanup_t    *cln;
    snapcache_sign_key_t  *key, *keys;

    value = cf->args->elts;

    if (!snapcache_id_valid((const char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key id \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (slcf->keys == NGX_CONF_UNSET_PTR) {
        slcf->keys = ngx_array_create(cf->pool, 2,
                                      sizeof(snapcache_sign_key_t));
        if (slcf->keys == NULL) {
            return NGX_CONF_ERROR;
        }

        /* the keys and their HMAC states go with the configuration */
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_snapcache_free_keys;
        cln->data = slcf->keys;
    }

    keys = slcf->keys->elts;

    for (i = 0; i < slcf->keys->nelts; i++) {
        if (keys[i].kid_len == value[1].len
            && ngx_strncmp(keys[i].kid, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate key id \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    path = value[2];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key = ngx_array_push(slcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    if (snapcache_sign_key_load(key, (const char *) value[1].data,
                                (const char *) path.data, &world_readable,
                                err, sizeof(err))
        != 0)
    {
        slcf->keys->nelts--;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", err);
        return NGX_CONF_ERROR;
    }

    if (world_readable) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "key file \"%V\" is readable by everyone; "
                           "it should be readable by root and nginx only",
                           &path);
    }

    return NGX_CONF_OK;
}


static void
ngx_http_snapcache_free_keys(void *data)
{
    ngx_array_t *keys = data;

    ngx_uint_t             i;
    snapcache_sign_key_t  *key;

    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        snapcache_sign_key_free(&key[i]);
    }
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

    if (smcf->shm_zone == NULL) {
        if (ngx_http_snapcache_zone_add(cf, smcf, &name, 1024 * 1024)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
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


/* snapcache_store <path> size=<size> [high=90%] [low=75%] */
static char *
ngx_http_snapcache_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_main_conf_t *smcf = conf;

    off_t        off;
    ngx_str_t   *value, s;
    ngx_int_t    n;
    ngx_uint_t   i;

    if (smcf->store_path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    smcf->store_path = value[1];

    if (ngx_conf_full_name(cf->cycle, &smcf->store_path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    smcf->store_high = 90;
    smcf->store_low = 75;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "size=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            /* ngx_parse_offset(), unlike ngx_parse_size(), knows "g" */
            off = ngx_parse_offset(&s);
            if (off == NGX_ERROR || off < 1024 * 1024
                || (uint64_t) off > (uint64_t) NGX_MAX_SIZE_T_VALUE)
            {
                goto invalid;
            }

            smcf->store_size = (size_t) off;

            continue;
        }

        if (ngx_strncmp(value[i].data, "high=", 5) == 0
            || ngx_strncmp(value[i].data, "low=", 4) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            if (s.len < 2 || s.data[s.len - 1] != '%') {
                goto invalid;
            }

            n = ngx_atoi(s.data, s.len - 1);
            if (n == NGX_ERROR || n < 1 || n > 99) {
                goto invalid;
            }

            if (value[i].data[0] == 'h') {
                smcf->store_high = n;

            } else {
                smcf->store_low = n;
            }

            continue;
        }

        goto invalid;
    }

    if (smcf->store_size == NGX_CONF_UNSET_SIZE) {
        return "needs size=, the LMDB map size, e.g. size=1g";
    }

    if (smcf->store_low >= smcf->store_high) {
        return "needs low= below high=";
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
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
ngx_http_snapcache_parse_formats(ngx_str_t *list, ngx_uint_t *formats)
{
    u_char  *p, *end, *comma;
    size_t   len;

    *formats = 0;
    p = list->data;
    end = p + list->len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        len = (comma ? comma : end) - p;

        if (len == 4 && ngx_strncmp(p, "jpeg", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG);

        } else if (len == 4 && ngx_strncmp(p, "webp", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP);

        } else if (len == 4 && ngx_strncmp(p, "avif", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF);

        } else {
            return NGX_ERROR;
        }

        p += len + 1;
    }

    /* JPEG is what every client decodes: it is always available */
    *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG);

    return NGX_OK;
}


/* snapcache_variant <name> width=<px> quality=<1-100> [formats=jpeg,webp] */
static char *
ngx_http_snapcache_variant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_str_t                     *value, s;
    ngx_int_t                      n;
    ngx_uint_t                     i;
    ngx_http_snapcache_variant_t  *v, *vs;

    value = cf->args->elts;

    if (!snapcache_id_valid((const char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variant name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (slcf->variants == NGX_CONF_UNSET_PTR) {
        slcf->variants = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_snapcache_variant_t));
        if (slcf->variants == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    vs = slcf->variants->elts;

    for (i = 0; i < slcf->variants->nelts; i++) {
        if (vs[i].name.len == value[1].len
            && ngx_strncmp(vs[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate variant \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (slcf->variants->nelts >= NGX_HTTP_SNAPCACHE_MAX_RUNGS) {
        return "is repeated too often: a ladder has at most 16 variants";
    }

    v = ngx_array_push(slcf->variants);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    v->name = value[1];
    v->width = 0;
    v->quality = 0;
    v->formats = NGX_HTTP_SNAPCACHE_JPEG_WEBP;
    v->id = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "width=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n == NGX_ERROR || n < 16 || n > 8192) {
                goto invalid;
            }

            v->width = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "quality=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR || n < 1 || n > 100) {
                goto invalid;
            }

            v->quality = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "formats=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            if (ngx_http_snapcache_parse_formats(&s, &v->formats) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (v->width == 0 || v->quality == 0) {
        return "needs width= and quality=";
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* snapcache_admin: the purge, stats and metrics API in this location. */
static char *
ngx_http_snapcache_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->admin != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->name.len == 0)
    {
        return "must be used in a prefix location, such as "
               "\"location /snapcache-admin/ { snapcache_admin; }\"";
    }

    slcf->admin = 1;
    clcf->handler = ngx_http_snapcache_admin_handler;

    return NGX_CONF_OK;
}


/* snapcache_admin_token <file>: repeatable, for rotation. */
static char *
ngx_http_snapcache_admin_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    u_char     *digest;
    ngx_str_t  *value, path;

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (slcf->admin_tokens == NGX_CONF_UNSET_PTR) {
        slcf->admin_tokens = ngx_array_create(cf->pool, 2, 32);
        if (slcf->admin_tokens == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    digest = ngx_array_push(slcf->admin_tokens);
    if (digest == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_snapcache_token_load(cf, &path, "admin", digest, NULL);
}


/*
 * snapcache_peer: the location answers the cluster's nodes with the
 * originals of the accounts this node owns.  Like snapcache, it reads
 * its ids from the raw request line after the location's name.
 */
static char *
ngx_http_snapcache_peer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->peer != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->name.len == 0
        || clcf->name.data[clcf->name.len - 1] != '/')
    {
        return "must be used in a prefix location ending with \"/\", "
               "such as \"location /_peer/ { snapcache_peer; }\"";
    }

    slcf->peer = 1;
    slcf->prefix = clcf->name;
    clcf->handler = ngx_http_snapcache_peer_handler;

    return NGX_CONF_OK;
}


/*
 * snapcache_cluster_token <file>: repeatable, for rotation.  A peer
 * endpoint accepts every one; a snapcache location presents the first
 * one of its level to its origin, the peers.
 */
static char *
ngx_http_snapcache_cluster_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    u_char     *digest;
    ngx_str_t  *value, path;

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (slcf->cluster_tokens == NGX_CONF_UNSET_PTR) {
        slcf->cluster_tokens = ngx_array_create(cf->pool, 2, 32);
        if (slcf->cluster_tokens == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    digest = ngx_array_push(slcf->cluster_tokens);
    if (digest == NULL) {
        return NGX_CONF_ERROR;
    }

    /* only the first is ever sent, so only its bytes are kept */
    return ngx_http_snapcache_token_load(cf, &path, "cluster", digest,
                                         slcf->cluster_bearer.len
                                         ? NULL : &slcf->cluster_bearer);
}
