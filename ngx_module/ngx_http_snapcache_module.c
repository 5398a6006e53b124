
/*
 * snapcache: signed camera snapshots for display clients.
 *
 * This file holds the directives and the request gate: strict parsing of
 * the raw request line and the signature check, which run before every
 * response.  A request that is not verified never reaches the origin.
 */


#include "ngx_module/ngx_http_snapcache_serve.h"
#include "adapt/snapcache_adapt.h"


#define NGX_HTTP_SNAPCACHE_JPEG_WEBP                                          \
    (SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)                              \
     | SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP))


static ngx_int_t ngx_http_snapcache_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_redact_request_line(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_split_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_str_t *path, ngx_str_t *query,
    ngx_uint_t *has_query);
static ngx_int_t ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr);
static ngx_table_elt_t *ngx_http_snapcache_find_header(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_http_snapcache_forward_to_origin(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr);
static ngx_int_t ngx_http_snapcache_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);

static ngx_int_t ngx_http_snapcache_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_snapcache_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_snapcache_unset_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_stats_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_snapcache_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_snapcache_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_snapcache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_sign_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static char *ngx_http_snapcache_merge_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static ngx_int_t ngx_http_snapcache_variant_id(ngx_conf_t *cf,
    ngx_http_snapcache_variant_t *v);
static char *ngx_http_snapcache_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_snapcache_variant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_snapcache_init_process(ngx_cycle_t *cycle);
static void ngx_http_snapcache_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_snapcache_init_module(ngx_cycle_t *cycle);


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
      NULL },

    { ngx_string("snapcache_ttl_min"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, ttl_min),
      NULL },

    { ngx_string("snapcache_ttl_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, ttl_max),
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
      NULL },

    { ngx_string("snapcache_max_pixels"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, max_pixels),
      NULL },

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
      NULL },

    { ngx_string("snapcache_fill_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_snapcache_loc_conf_t, fill_timeout),
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
    ngx_http_snapcache_init_module,        /* init module */
    ngx_http_snapcache_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_snapcache_exit_process,       /* exit process */
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


/* The default ladder: thumb 320/q50, sd 640/q65, hd 1280/q75, full 1920/q85 */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_default_variants[] = {
    { ngx_string("thumb"), 320, 50,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0 },
    { ngx_string("sd"), 640, 65,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0 },
    { ngx_string("hd"), 1280, 75,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0 },
    { ngx_string("full"), 1920, 85,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0 }
};


static ngx_int_t
ngx_http_snapcache_handler(ngx_http_request_t *r)
{
    int                             rc;
    ngx_int_t                       nrc;
    ngx_str_t                       path, query;
    ngx_uint_t                      has_query;
    ngx_http_snapcache_req_t        *sr;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

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

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (smcf->store_path.len == 0) {
        return ngx_http_snapcache_forward_to_origin(r, slcf, sr);
    }

    return ngx_http_snapcache_serve(r, slcf, sr);
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
 * The rest of the choice is adapt/'s, which never sees an id.
 */
static ngx_int_t
ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr)
{
    ngx_int_t                      max, v;
    ngx_table_elt_t               *h;
    snapcache_adapt_choice_t       choice;
    snapcache_adapt_request_t      req;
    ngx_http_snapcache_variant_t  *variants;

    variants = slcf->variants->elts;
    max = SNAPCACHE_ADAPT_NONE;
    v = SNAPCACHE_ADAPT_NONE;

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
        if (v == NGX_ERROR
            || (max != SNAPCACHE_ADAPT_NONE && v > max))
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "snapcache: rejected request: %s",
                          v == NGX_ERROR ? "unknown variant in v"
                                         : "v is above the signed max");
            return NGX_ERROR;
        }
    }

    h = ngx_http_snapcache_find_header(r, "Save-Data");

    req.nvariants = (unsigned) slcf->variants->nelts;
    req.explicit_v = (int) v;
    req.max = (int) max;
    req.def = (int) slcf->default_index;
    req.save_data = h && h->value.len == 2
                    && ngx_strncasecmp(h->value.data, (u_char *) "on", 2)
                       == 0;

    if (snapcache_adapt_choose(&req, &choice) != 0) {
        return NGX_ERROR;
    }

    sr->variant_index = choice.index;
    sr->variant = &variants[choice.index];

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_snapcache_find_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
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
 * $snapcache_status and $snapcache_variant are kept in the indexed
 * variables themselves rather than in the module ctx, because an
 * internal redirect clears every ctx.
 */
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


static ngx_int_t
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


static ngx_int_t
ngx_http_snapcache_init(ngx_conf_t *cf)
{
    return ngx_http_snapcache_init_filters(cf);
}


static ngx_int_t
ngx_http_snapcache_init_module(ngx_cycle_t *cycle)
{
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_snapcache_module);
    if (smcf == NULL) {
        return NGX_OK;
    }

    return ngx_http_snapcache_prepare_store(cycle, smcf);
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
    conf->variants = NGX_CONF_UNSET_PTR;
    conf->ttl = NGX_CONF_UNSET;
    conf->ttl_min = NGX_CONF_UNSET;
    conf->ttl_max = NGX_CONF_UNSET;
    conf->keep_original = NGX_CONF_UNSET;
    conf->max_original_size = NGX_CONF_UNSET_SIZE;
    conf->max_pixels = NGX_CONF_UNSET_UINT;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->fill_timeout = NGX_CONF_UNSET_MSEC;

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
    ngx_conf_merge_ptr_value(conf->variants, prev->variants, NULL);
    ngx_conf_merge_str_value(conf->default_variant, prev->default_variant,
                             "");
    ngx_conf_merge_sec_value(conf->ttl, prev->ttl, 60);
    ngx_conf_merge_sec_value(conf->ttl_min, prev->ttl_min, 1);
    ngx_conf_merge_sec_value(conf->ttl_max, prev->ttl_max, 86400);
    ngx_conf_merge_value(conf->keep_original, prev->keep_original, 1);
    ngx_conf_merge_size_value(conf->max_original_size,
                              prev->max_original_size, 8 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_pixels, prev->max_pixels,
                              40000000);
    ngx_conf_merge_str_value(conf->thread_pool_name, prev->thread_pool_name,
                             "default");
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 5000);
    ngx_conf_merge_msec_value(conf->fill_timeout, prev->fill_timeout, 10000);

    if (ngx_http_snapcache_merge_ladder(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
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

    if (smcf->shm_zone == NULL) {
        if (ngx_http_snapcache_zone_add(cf, smcf, &name, 1024 * 1024)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
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
