
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: CORS, for a dashboard on another origin that reads
 * snapshots with fetch() and wants to see X-Snapcache and its siblings.
 * snapcache_cors_origin lists the origins allowed; a request from one of
 * them gets Access-Control-Allow-Origin naming it and the headers it may
 * read, and its preflight (OPTIONS) a 204.  Any other origin gets
 * nothing: no grant, and a preflight answered 405 as before.  Every
 * answer of such a location carries Vary: Origin, so that a browser's
 * cache never hands one origin's answer to another.  No credentials are
 * ever allowed: a signed URL needs none.
 */


#include "ngx_module/ngx_http_snapcache.h"


static ngx_table_elt_t *ngx_http_snapcache_cors_header(ngx_http_request_t *r,
    const char *name);
static ngx_str_t *ngx_http_snapcache_cors_listed(ngx_array_t *origins,
    ngx_str_t *origin);
static ngx_int_t ngx_http_snapcache_cors_preflight(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);


/*
 * snapcache_cors_origin <origin> ...: each "scheme://host[:port]" as a
 * browser sends it in Origin, nothing more.  Repeatable; a level that
 * names none inherits its parent's.
 */
char *
ngx_http_snapcache_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    u_char      *p, *host, *last;
    ngx_str_t   *value, *o;
    ngx_uint_t   i;

    if (slcf->cors_origins == NGX_CONF_UNSET_PTR) {
        slcf->cors_origins = ngx_array_create(cf->pool, 4,
                                              sizeof(ngx_str_t));
        if (slcf->cors_origins == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        p = value[i].data;
        last = p + value[i].len;

        if (value[i].len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7)
                                == 0)
        {
            host = p + 7;

        } else if (value[i].len > 8
                   && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
        {
            host = p + 8;

        } else {
            goto invalid;
        }

        for (p = host; p < last; p++) {
            *p = ngx_tolower(*p);

            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
                  || *p == '.' || *p == '-' || *p == ':' || *p == '['
                  || *p == ']'))
            {
                goto invalid;
            }
        }

        for (p = value[i].data; p < host; p++) {
            *p = ngx_tolower(*p);
        }

        o = ngx_array_push(slcf->cors_origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid origin \"%V\": an origin is "
                       "\"http://host[:port]\" or \"https://host[:port]\", "
                       "without a path; \"*\" and \"null\" are not allowed",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * Before the gate, on every request of a snapcache location: the CORS
 * headers for a listed origin, which every answer then carries (an
 * image, a 4xx or a 5xx alike, so that the dashboard can read why).
 * NGX_DECLINED to go on; a preflight is answered here.
 */
ngx_int_t
ngx_http_snapcache_cors(ngx_http_request_t *r, ngx_http_snapcache_ctx_t *ctx)
{
    ngx_str_t         v, *listed;
    ngx_table_elt_t  *origin;

    if (ctx->slcf->cors_origins == NULL) {
        return NGX_DECLINED;
    }

    ngx_str_set(&v, "Origin");

    if (ngx_http_snapcache_add_header(r, "Vary", &v) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    origin = ngx_http_snapcache_cors_header(r, "Origin");
    if (origin == NULL) {
        return NGX_DECLINED;
    }

    listed = ngx_http_snapcache_cors_listed(ctx->slcf->cors_origins,
                                            &origin->value);
    if (listed == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_snapcache_add_header(r, "Access-Control-Allow-Origin",
                                      listed)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_snapcache_cors_preflight(r, ctx);
    }

    ngx_str_set(&v, "X-Snapcache, X-Snapcache-Variant, X-Snapcache-Adapt");

    if (ngx_http_snapcache_add_header(r, "Access-Control-Expose-Headers", &v)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_table_elt_t *
ngx_http_snapcache_cors_header(ngx_http_request_t *r, const char *name)
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


/* The listed origin a request's Origin names, in any case; or NULL. */
static ngx_str_t *
ngx_http_snapcache_cors_listed(ngx_array_t *origins, ngx_str_t *origin)
{
    ngx_str_t   *o;
    ngx_uint_t   i;

    o = origins->elts;

    for (i = 0; i < origins->nelts; i++) {
        if (o[i].len == origin->len
            && ngx_strncasecmp(o[i].data, origin->data, origin->len) == 0)
        {
            return &o[i];
        }
    }

    return NULL;
}


/*
 * A preflight from a listed origin for GET or HEAD: 204 with what the
 * display may send.  Any other OPTIONS goes on to the gate, which
 * answers 405.
 */
static ngx_int_t
ngx_http_snapcache_cors_preflight(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_int_t         rc;
    ngx_str_t         v;
    ngx_table_elt_t  *method;

    method = ngx_http_snapcache_cors_header(r,
                                            "Access-Control-Request-Method");

    if (method == NULL
        || !((method->value.len == 3
              && ngx_strncmp(method->value.data, "GET", 3) == 0)
             || (method->value.len == 4
                 && ngx_strncmp(method->value.data, "HEAD", 4) == 0)))
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_set(&v, "GET, HEAD");

    if (ngx_http_snapcache_add_header(r, "Access-Control-Allow-Methods", &v)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "If-None-Match, Save-Data, ECT, Downlink, RTT");

    if (ngx_http_snapcache_add_header(r, "Access-Control-Allow-Headers", &v)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "600");

    if (ngx_http_snapcache_add_header(r, "Access-Control-Max-Age", &v)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->preflight = 1;

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}
