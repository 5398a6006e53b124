
/*
 * snapcache: the $snapcache_* variables for access logs.
 *
 * $snapcache_status and $snapcache_variant are kept in the indexed
 * variables themselves rather than in the module ctx, because an
 * internal redirect clears every ctx.
 */


#include "ngx_module/ngx_http_snapcache.h"


static void ngx_http_snapcache_set_indexed(ngx_http_request_t *r,
    ngx_int_t index, ngx_str_t *value);
static ngx_int_t ngx_http_snapcache_unset_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_stats_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_snapcache_status_names[] = {
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("STALE"),
    ngx_string("BYPASS"),
    ngx_string("DENIED"),
    ngx_string("ERROR")
};


static ngx_str_t  ngx_http_snapcache_stat_names[] = {
    ngx_string("hits"),
    ngx_string("misses"),
    ngx_string("stale"),
    ngx_string("denied"),
    ngx_string("errors"),
    ngx_string("fills"),
    ngx_string("origin_fetches"),
    ngx_string("transcodes"),
    ngx_string("stored"),
    ngx_string("not_stored"),
    ngx_string("coalesced"),
    ngx_string("lock_timeouts"),
    ngx_string("corrupt")
};


static ngx_str_t  ngx_http_snapcache_status_var =
    ngx_string("snapcache_status");
static ngx_str_t  ngx_http_snapcache_variant_var =
    ngx_string("snapcache_variant");
static ngx_str_t  ngx_http_snapcache_stats_var = ngx_string("snapcache_stats");
static ngx_int_t  ngx_http_snapcache_status_index;
static ngx_int_t  ngx_http_snapcache_variant_index;


ngx_int_t
ngx_http_snapcache_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_snapcache_status_var,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_snapcache_unset_variable;

    var = ngx_http_add_variable(cf, &ngx_http_snapcache_variant_var,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_snapcache_unset_variable;

    var = ngx_http_add_variable(cf, &ngx_http_snapcache_stats_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_snapcache_stats_variable;

    ngx_http_snapcache_status_index =
        ngx_http_get_variable_index(cf, &ngx_http_snapcache_status_var);
    if (ngx_http_snapcache_status_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_http_snapcache_variant_index =
        ngx_http_get_variable_index(cf, &ngx_http_snapcache_variant_var);
    if (ngx_http_snapcache_variant_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_snapcache_set_indexed(ngx_http_request_t *r, ngx_int_t index,
    ngx_str_t *value)
{
    ngx_http_variable_value_t  *vv;

    vv = &r->variables[index];

    vv->data = value->data;
    vv->len = value->len;
    vv->valid = 1;
    vv->no_cacheable = 0;
    vv->not_found = 0;
}


void
ngx_http_snapcache_set_status(ngx_http_request_t *r,
    ngx_http_snapcache_status_e status)
{
    ngx_http_snapcache_set_indexed(r, ngx_http_snapcache_status_index,
                                   &ngx_http_snapcache_status_names[status]);
}


void
ngx_http_snapcache_set_variant(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_http_snapcache_set_indexed(r, ngx_http_snapcache_variant_index, name);
}


ngx_str_t *
ngx_http_snapcache_status_name(ngx_http_snapcache_status_e status)
{
    return &ngx_http_snapcache_status_names[status];
}


static ngx_int_t
ngx_http_snapcache_unset_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;
    return NGX_OK;
}


/* "hits=N misses=N ...": the zone's counters, for tests and debugging. */
static ngx_int_t
ngx_http_snapcache_stats_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                          *p;
    ngx_uint_t                       i;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (smcf == NULL || smcf->sh == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_SNAPCACHE_NSTATS
                             * (sizeof("lock_timeouts= ") + NGX_ATOMIC_T_LEN));
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (i = 0; i < NGX_HTTP_SNAPCACHE_NSTATS; i++) {
        p = ngx_sprintf(p, "%s%V=%uA", i ? " " : "",
                        &ngx_http_snapcache_stat_names[i],
                        smcf->sh->stats[i]);
    }

    v->len = p - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
