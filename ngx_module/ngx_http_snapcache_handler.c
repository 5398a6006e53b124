
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: a client's request, and the gate.  The target is parsed
 * strictly from the raw request line and the signature is checked
 * before every response; a request that is not verified never reaches
 * the store or the origin.  A verified one gets its rung from the link
 * (ngx_http_snapcache_link.c), then is answered from the store
 * (ngx_http_snapcache_hit.c) or by a fill (ngx_http_snapcache_fill.c).
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


static ngx_int_t ngx_http_snapcache_split_target(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_str_t *path, ngx_str_t *query,
    ngx_uint_t *has_query);
static ngx_int_t ngx_http_snapcache_find_variant(
    ngx_http_snapcache_loc_conf_t *slcf, snapcache_str_t name);
static ngx_int_t ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr);
static ngx_table_elt_t *ngx_http_snapcache_client_hints(ngx_http_request_t *r,
    ngx_http_snapcache_req_t *sr);
static ngx_int_t ngx_http_snapcache_serve(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_forward_to_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx);
static ngx_int_t ngx_http_snapcache_refuse(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status, const char *reason);


ngx_int_t
ngx_http_snapcache_handler(ngx_http_request_t *r)
{
    int                              rc;
    ngx_str_t                        path, query;
    ngx_uint_t                       has_query;
    ngx_http_snapcache_req_t        *sr;
    ngx_http_snapcache_ctx_t        *ctx;
    ngx_http_snapcache_loc_conf_t   *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);

    ctx = ngx_http_snapcache_ctx_create(r, slcf);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->answer = ngx_http_snapcache_answer_client;
    sr = &ctx->req;

    /* snapcache_cors_origin: its headers, or the preflight's answer */
    rc = ngx_http_snapcache_cors(r, ctx);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: method not allowed");
        return ngx_http_snapcache_refuse(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                         "method");
    }

    if (ngx_http_snapcache_split_target(r, slcf, &path, &query, &has_query)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: rejected request: target outside \"%V\"",
                      &slcf->prefix);
        return ngx_http_snapcache_refuse(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "malformed");
    }

    rc = snapcache_url_parse((const char *) path.data, path.len,
                             has_query ? (const char *) query.data : NULL,
                             query.len, &sr->url);

    if (rc != SNAPCACHE_URL_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: rejected request: %s",
                      snapcache_url_strerror(rc));
        return ngx_http_snapcache_refuse(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "malformed");
    }

    /* the kid is known, verified or not ($snapcache_kid) */
    ctx->parsed = 1;

    rc = snapcache_sign_verify(&sr->url, slcf->keys->elts, slcf->keys->nelts,
                               (int64_t) ngx_time(),
                               (int64_t) slcf->max_lifetime);

    ngx_http_snapcache_count_gate(ctx->smcf, &sr->url.kid, rc);

    if (rc != SNAPCACHE_SIGN_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: denied: %s%s, kid \"%*s\"",
                      snapcache_sign_reason(rc),
                      rc == SNAPCACHE_SIGN_LIFETIME
                          ? " (exp beyond snapcache_url_max_lifetime)" : "",
                      sr->url.kid.len, sr->url.kid.data);
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_DENIED,
                                    1);
        ctx->status = NGX_HTTP_SNAPCACHE_DENIED;
        ctx->deny_reason = (rc == SNAPCACHE_SIGN_LIFETIME)
                           ? "lifetime" : snapcache_sign_reason(rc);
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_FORBIDDEN,
                                              snapcache_sign_reason(rc));
    }

    /* verified: the shard key of a cluster's origin location is known */
    ctx->verified = 1;

    if (ngx_http_snapcache_check_variants(r, slcf, sr) != NGX_OK) {
        return ngx_http_snapcache_refuse(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "variant");
    }

    if (ctx->smcf->store_path.len == 0) {
        return ngx_http_snapcache_forward_to_origin(r, ctx);
    }

    return ngx_http_snapcache_serve(r, ctx);
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
 * This sets the ceiling; the rest of the choice is adapt/'s, which
 * never sees an id (ngx_http_snapcache_link.c).
 */
static ngx_int_t
ngx_http_snapcache_check_variants(ngx_http_request_t *r,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_http_snapcache_req_t *sr)
{
    ngx_int_t                      max, v;
    ngx_table_elt_t               *h;
    snapcache_adapt_request_t      req;
    snapcache_adapt_ceiling_t      ceiling;
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

    h = ngx_http_snapcache_client_hints(r, sr);

    req.nvariants = (unsigned) slcf->variants->nelts;
    req.explicit_v = (int) v;
    req.max = (int) max;
    req.def = (int) slcf->default_index;
    req.save_data = h && h->value.len == 2
                    && ngx_strncasecmp(h->value.data, (u_char *) "on", 2)
                       == 0;

    if (snapcache_adapt_ceiling(&req, &ceiling) != 0) {
        return NGX_ERROR;
    }

    /* the ceiling: the link may choose below it once the client is known */
    sr->variant_index = ceiling.index;
    sr->variant = &variants[ceiling.index];
    sr->save_data = ceiling.save_data;

    return NGX_OK;
}


/*
 * Save-Data and the client hints, in one pass over the request's
 * headers: the hit path reads the list once.
 */
static ngx_table_elt_t *
ngx_http_snapcache_client_hints(ngx_http_request_t *r,
    ngx_http_snapcache_req_t *sr)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *save_data;

    save_data = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return save_data;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        switch (h[i].key.len) {

        case 3:
            if (ngx_strncasecmp(h[i].key.data, (u_char *) "ECT", 3) == 0) {
                sr->ect = &h[i];

            } else if (ngx_strncasecmp(h[i].key.data, (u_char *) "RTT", 3)
                       == 0)
            {
                sr->rtt = &h[i];
            }

            break;

        case 8:
            if (ngx_strncasecmp(h[i].key.data, (u_char *) "Downlink", 8)
                == 0)
            {
                sr->downlink = &h[i];
            }

            break;

        case 9:
            if (ngx_strncasecmp(h[i].key.data, (u_char *) "Save-Data", 9)
                == 0)
            {
                save_data = &h[i];
            }

            break;
        }
    }
}


/*
 * A verified request: the rung from the client's link, then the exact
 * key from the store when it is there, else a fill.
 */
static ngx_int_t
ngx_http_snapcache_serve(ngx_http_request_t *r, ngx_http_snapcache_ctx_t *ctx)
{
    ngx_int_t           rc;
    snapcache_record_t  rec;

    if (ctx->smcf->store == NULL) {
        /* fail closed: no store, no answer, and say why */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: the store is not open in this worker, "
                      "see the error at worker start");
        ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_snapcache_ident(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* at or below the ceiling, from this client's link, as seen now */
    ngx_http_snapcache_watch_check(r);
    ngx_http_snapcache_link_choose(r, ctx);

    ctx->variant = ctx->req.variant->id;
    ctx->format = ngx_http_snapcache_format(r, ctx->req.variant);
    ctx->chosen = 1;

    rc = ngx_http_snapcache_lookup(r, ctx, ctx->variant, ctx->format, &rec);

    if (rc == SNAPCACHE_CACHE_HIT) {
        ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_HITS, 1);
        return ngx_http_snapcache_answer_record(r, ctx, &rec,
                                                NGX_HTTP_SNAPCACHE_HIT);
    }

    ngx_http_snapcache_stat_add(ctx->smcf, NGX_HTTP_SNAPCACHE_ST_MISSES, 1);

    return ngx_http_snapcache_fill(r, ctx);
}


/*
 * Without a store, a verified request is answered by the origin
 * location.  The target is rebuilt from the verified ids only; the
 * client's query and headers never travel on (so $http_* variables in
 * the access log are empty for these requests).
 */
static ngx_int_t
ngx_http_snapcache_forward_to_origin(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    u_char           *p;
    ngx_str_t         uri, args;
    snapcache_url_t  *url;

    url = &ctx->req.url;

    uri.len = ctx->slcf->origin.len + 1 + url->account.len + 1
              + url->device.len + 1 + url->snapshot.len;

    uri.data = ngx_pnalloc(r->pool, uri.len);
    if (uri.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(uri.data, ctx->slcf->origin.data, ctx->slcf->origin.len);
    *p++ = '/';
    p = ngx_cpymem(p, url->account.data, url->account.len);
    *p++ = '/';
    p = ngx_cpymem(p, url->device.data, url->device.len);
    *p++ = '/';
    ngx_memcpy(p, url->snapshot.data, url->snapshot.len);

    ngx_str_null(&args);

    ctx->status = NGX_HTTP_SNAPCACHE_BYPASS;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the origin gets the same headers as a fill's subrequest would */
    if (ngx_http_snapcache_origin_headers(r, r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_internal_redirect(r, &uri, &args);
}


static ngx_int_t
ngx_http_snapcache_refuse(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_uint_t status, const char *reason)
{
    ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
    ctx->deny_reason = reason;

    return ngx_http_snapcache_reply_error(r, status, reason);
}
