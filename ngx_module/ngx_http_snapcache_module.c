
/*
 * snapcache: signed camera snapshots for display clients.
 *
 * This file holds the directives and the request gate: strict parsing of
 * the raw request line and the signature check, which run before every
 * response.  A request that is not verified never reaches the origin.
 */


#include "ngx_module/ngx_http_snapcache.h"


static ngx_int_t ngx_http_snapcache_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_redact_request_line(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_split_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_str_t *path, ngx_str_t *query,
    ngx_uint_t *has_query);
static ngx_int_t ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr);
static ngx_int_t ngx_http_snapcache_forward_to_origin(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr);
static ngx_int_t ngx_http_snapcache_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);
static void ngx_http_snapcache_set_status(ngx_http_request_t *r,
    ngx_http_snapcache_status_e status);

static ngx_int_t ngx_http_snapcache_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_snapcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_snapcache_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_snapcache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_sign_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);


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
      NULL },

    { ngx_string("snapcache_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, origin),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_snapcache_module_ctx = {
    ngx_http_snapcache_add_variables,      /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

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
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_snapcache_status_names[] = {
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("STALE"),
    ngx_string("BYPASS"),
    ngx_string("DENIED"),
    ngx_string("ERROR")
};


static ngx_str_t  ngx_http_snapcache_status_var = ngx_string("snapcache_status");
static ngx_int_t  ngx_http_snapcache_status_index;


/* The default ladder: thumb 320/q50, sd 640/q65, hd 1280/q75, full 1920/q85 */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_default_variants[] = {
    { ngx_string("thumb"), 320, 50 },
    { ngx_string("sd"), 640, 65 },
    { ngx_string("hd"), 1280, 75 },
    { ngx_string("full"), 1920, 85 }
};


static ngx_int_t
ngx_http_snapcache_handler(ngx_http_request_t *r)
{
    int                             rc;
    ngx_int_t                       nrc;
    ngx_str_t                       path, query;
    ngx_uint_t                      has_query;
    ngx_http_snapcache_req_t       *sr;
    ngx_http_snapcache_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);

    if (ngx_http_snapcache_redact_request_line(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: method not allowed");
        return ngx_http_snapcache_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method");
    }

    if (ngx_http_snapcache_split_target(r, slcf, &path, &query, &has_query)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: rejected request: target outside \"%V\"",
                      &slcf->prefix);
        return ngx_http_snapcache_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "malformed");
    }

    sr = ngx_pcalloc(r->pool, sizeof(ngx_http_snapcache_req_t));
    if (sr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = snapcache_url_parse((const char *) path.data, path.len,
                             has_query ? (const char *) query.data : NULL,
                             query.len, &sr->url);

    if (rc != SNAPCACHE_URL_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: rejected request: %s",
                      snapcache_url_strerror(rc));
        return ngx_http_snapcache_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "malformed");
    }

    rc = snapcache_sign_verify(&sr->url, slcf->keys->elts, slcf->keys->nelts,
                               (int64_t) ngx_time(),
                               (int64_t) slcf->max_lifetime);

    if (rc != SNAPCACHE_SIGN_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: denied: %s%s, kid \"%*s\"",
                      snapcache_sign_reason(rc),
                      rc == SNAPCACHE_SIGN_LIFETIME
                          ? " (exp beyond snapcache_url_max_lifetime)" : "",
                      sr->url.kid.len, sr->url.kid.data);
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_DENIED);
        return ngx_http_snapcache_send_error(r, NGX_HTTP_FORBIDDEN,
                                             snapcache_sign_reason(rc));
    }

    nrc = ngx_http_snapcache_check_variants(r, slcf, sr);
    if (nrc != NGX_OK) {
        return ngx_http_snapcache_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "variant");
    }

    return ngx_http_snapcache_forward_to_origin(r, slcf, sr);
}


/*
 * nginx writes r->request_line into every error log line of the request
 * and into $request in the access log.  A signature is a bearer token
 * until exp, so every "sig=" value in it is replaced before anything can
 * be logged.  r->unparsed_uri, which the parser reads, is left intact.
 */
static ngx_int_t
ngx_http_snapcache_redact_request_line(ngx_http_request_t *r)
{
    u_char  *p, *q, *end, *dst, *line;

    p = r->request_line.data;
    end = p + r->request_line.len;

    q = ngx_strlchr(p, end, '?');
    if (q == NULL) {
        return NGX_OK;
    }

    line = ngx_pnalloc(r->pool, r->request_line.len);
    if (line == NULL) {
        return NGX_ERROR;
    }

    dst = ngx_cpymem(line, p, q - p);
    p = q;

    while (p < end) {
        *dst++ = *p;

        if ((*p == '?' || *p == '&') && end - p > 4
            && ngx_strncmp(p + 1, "sig=", 4) == 0)
        {
            dst = ngx_cpymem(dst, "sig=", 4);
            *dst++ = 'x';

            for (p += 5; p < end && *p != '&' && *p != ' '; p++) {
                /* void */
            }

            continue;
        }

        p++;
    }

    r->request_line.data = line;
    r->request_line.len = dst - line;

    return NGX_OK;
}


/*
 * Takes the path and query from the raw request line, not from r->uri,
 * which nginx has already decoded and normalised: a request is answered
 * only if its bytes on the wire are canonical.
 */
static ngx_int_t
ngx_http_snapcache_split_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_str_t *path, ngx_str_t *query,
    ngx_uint_t *has_query)
{
    u_char  *p, *q, *end;

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    if (r->unparsed_uri.len < slcf->prefix.len
        || ngx_strncmp(p, slcf->prefix.data, slcf->prefix.len) != 0)
    {
        return NGX_DECLINED;
    }

    p += slcf->prefix.len;

    q = ngx_strlchr(p, end, '?');

    path->data = p;
    path->len = (q ? q : end) - p;

    *has_query = (q != NULL);
    query->data = q ? q + 1 : end;
    query->len = q ? (size_t) (end - q - 1) : 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_find_variant(ngx_http_snapcache_loc_conf_t *slcf,
    snapcache_str_t name)
{
    ngx_uint_t                     i;
    ngx_http_snapcache_variant_t  *v;

    v = slcf->variants->elts;

    for (i = 0; i < slcf->variants->nelts; i++) {
        if (v[i].name.len == name.len
            && ngx_strncmp(v[i].name.data, name.data, name.len) == 0)
        {
            return (ngx_int_t) i;
        }
    }

    return NGX_ERROR;
}


/*
 * max= names the best variant the URL grants; v= may only pick at or
 * below it.  A name off the ladder, or v above max, is refused rather
 * than clamped: we never serve something other than what was asked.
 */
static ngx_int_t
ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr)
{
    ngx_int_t                      max, v, def;
    snapcache_str_t                def_name;
    ngx_http_snapcache_variant_t  *variants;

    variants = slcf->variants->elts;
    max = (ngx_int_t) slcf->variants->nelts - 1;

    if (sr->url.max.len) {
        max = ngx_http_snapcache_find_variant(slcf, sr->url.max);
        if (max == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "snapcache: rejected request: unknown variant "
                          "in max");
            return NGX_ERROR;
        }
    }

    if (sr->url.v.len) {
        v = ngx_http_snapcache_find_variant(slcf, sr->url.v);
        if (v == NGX_ERROR || v > max) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "snapcache: rejected request: %s",
                          v == NGX_ERROR ? "unknown variant in v"
                                         : "v is above the signed max");
            return NGX_ERROR;
        }

    } else {
        def_name.data = (const char *) slcf->default_variant.data;
        def_name.len = slcf->default_variant.len;

        def = ngx_http_snapcache_find_variant(slcf, def_name);
        v = ngx_min(def, max);
    }

    sr->variant_index = (ngx_uint_t) v;
    sr->variant = &variants[v];

    return NGX_OK;
}


/*
 * Until the cache serves variants itself, a verified request is answered
 * by the origin location.  The target is rebuilt from the verified ids
 * only; the client's query never travels on.
 */
static ngx_int_t
ngx_http_snapcache_forward_to_origin(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr)
{
    u_char     *p;
    ngx_str_t   uri, args;

    uri.len = slcf->origin.len + 1 + sr->url.account.len + 1
              + sr->url.device.len + 1 + sr->url.snapshot.len;

    uri.data = ngx_pnalloc(r->pool, uri.len);
    if (uri.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(uri.data, slcf->origin.data, slcf->origin.len);
    *p++ = '/';
    p = ngx_cpymem(p, sr->url.account.data, sr->url.account.len);
    *p++ = '/';
    p = ngx_cpymem(p, sr->url.device.data, sr->url.device.len);
    *p++ = '/';
    ngx_memcpy(p, sr->url.snapshot.data, sr->url.snapshot.len);

    ngx_str_null(&args);

    ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_BYPASS);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_internal_redirect(r, &uri, &args);
}


static ngx_int_t
ngx_http_snapcache_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (status != NGX_HTTP_FORBIDDEN) {
        ngx_http_snapcache_set_status(r, NGX_HTTP_SNAPCACHE_ERROR);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    len = ngx_strlen(reason);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, reason, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_table_elt_t  *allow;

        allow = ngx_list_push(&r->headers_out.headers);
        if (allow == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        allow->hash = 1;
        ngx_str_set(&allow->key, "Allow");
        ngx_str_set(&allow->value, "GET, HEAD");
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The status is kept in the indexed variable itself rather than in the
 * module ctx, because an internal redirect clears every ctx.
 */
static void
ngx_http_snapcache_set_status(ngx_http_request_t *r,
    ngx_http_snapcache_status_e status)
{
    ngx_http_variable_value_t  *vv;

    vv = &r->variables[ngx_http_snapcache_status_index];

    vv->data = ngx_http_snapcache_status_names[status].data;
    vv->len = ngx_http_snapcache_status_names[status].len;
    vv->valid = 1;
    vv->no_cacheable = 0;
    vv->not_found = 0;
}


static ngx_int_t
ngx_http_snapcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;
    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_add_variables(ngx_conf_t *cf)
{
    ngx_int_t             index;
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_snapcache_status_var,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_snapcache_status_variable;

    index = ngx_http_get_variable_index(cf, &ngx_http_snapcache_status_var);
    if (index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_http_snapcache_status_index = index;

    return NGX_OK;
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
    conf->variants = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_snapcache_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_snapcache_loc_conf_t *prev = parent;
    ngx_http_snapcache_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_sec_value(conf->max_lifetime, prev->max_lifetime, 3600);
    ngx_conf_merge_str_value(conf->origin, prev->origin, "");
    ngx_conf_merge_ptr_value(conf->variants, prev->variants, NULL);
    ngx_conf_merge_str_value(conf->default_variant, prev->default_variant,
                             "");

    if (conf->variants == NULL) {
        if (ngx_http_snapcache_default_ladder(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->default_variant.len == 0) {
        /* the second-largest rung: good on most links, never the largest */
        ngx_http_snapcache_variant_t  *v = conf->variants->elts;

        conf->default_variant =
            v[conf->variants->nelts > 1 ? conf->variants->nelts - 2 : 0].name;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
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
