
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: what the logs see.  The $snapcache_* variables for access
 * logs, and the redaction of signatures from the request line.  Each
 * variable reads what the request wrote into its ctx, when a log or a
 * header asks for it; the request code never pushes values here.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


static ngx_int_t ngx_http_snapcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_variant_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_account_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_link_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_kid_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_deny_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_fill_ms_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_stats_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_snapcache_request_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_snapcache_variable_str(ngx_http_variable_value_t *v,
    u_char *data, size_t len);
static ngx_int_t ngx_http_snapcache_redact_phase(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_redact(ngx_pool_t *pool, ngx_str_t *line,
    ngx_str_t *out);
static ngx_uint_t ngx_http_snapcache_is_sig(u_char *p, u_char *last);


/* indexed as ngx_http_snapcache_status_e; NONE is never shown */
static ngx_str_t  ngx_http_snapcache_status_names[] = {
    ngx_null_string,
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
    ngx_string("corrupt"),
    ngx_string("negative")
};


static ngx_http_variable_t  ngx_http_snapcache_vars[] = {

    { ngx_string("snapcache_status"), NULL,
      ngx_http_snapcache_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_variant"), NULL,
      ngx_http_snapcache_variant_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* the verified account: the cluster's shard key */
    { ngx_string("snapcache_account"), NULL,
      ngx_http_snapcache_account_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_link_kbps"), NULL,
      ngx_http_snapcache_link_variable,
      offsetof(ngx_http_snapcache_ctx_t, link_kbps),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_link_rtt"), NULL,
      ngx_http_snapcache_link_variable,
      offsetof(ngx_http_snapcache_ctx_t, link_rtt_ms),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_link_queued"), NULL,
      ngx_http_snapcache_link_variable,
      offsetof(ngx_http_snapcache_ctx_t, link_queued),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_adapt_reason"), NULL,
      ngx_http_snapcache_reason_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* the URL's kid once it parsed, verified or not: it is no secret */
    { ngx_string("snapcache_kid"), NULL,
      ngx_http_snapcache_kid_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_deny_reason"), NULL,
      ngx_http_snapcache_deny_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_fill_ms"), NULL,
      ngx_http_snapcache_fill_ms_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_stats"), NULL,
      ngx_http_snapcache_stats_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("snapcache_request"), NULL,
      ngx_http_snapcache_request_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_snapcache_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_snapcache_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_str_t *
ngx_http_snapcache_status_name(ngx_uint_t status)
{
    return &ngx_http_snapcache_status_names[status];
}


static void
ngx_http_snapcache_variable_str(ngx_http_variable_value_t *v, u_char *data,
    size_t len)
{
    v->data = data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
}


/*
 * The main request's ctx: a subrequest to the origin (whose upstream
 * may hash $snapcache_account) sees what its parent verified.
 */
static ngx_int_t
ngx_http_snapcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *name;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || ctx->status == NGX_HTTP_SNAPCACHE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = ngx_http_snapcache_status_name(ctx->status);
    ngx_http_snapcache_variable_str(v, name->data, name->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_variant_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || !ctx->chosen) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_snapcache_variable_str(v, ctx->req.variant->name.data,
                                    ctx->req.variant->name.len);

    return NGX_OK;
}


/*
 * $snapcache_account: only once the signature (or, on a peer endpoint,
 * the peer's token) is checked, never before, so that it only ever
 * holds an account the request was verified for.
 */
static ngx_int_t
ngx_http_snapcache_account_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || !ctx->verified) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_snapcache_variable_str(v, (u_char *) ctx->req.url.account.data,
                                    ctx->req.url.account.len);

    return NGX_OK;
}


/*
 * $snapcache_link_kbps, $snapcache_link_rtt and $snapcache_link_queued;
 * unset when the link is unknown.
 */
static ngx_int_t
ngx_http_snapcache_link_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    uint32_t                   n;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || !ctx->adapted || ctx->link_kbps == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    n = *(uint32_t *) ((u_char *) ctx + data);

    p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_snapcache_variable_str(v, p, ngx_sprintf(p, "%uD", n) - p);

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char                *name;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || !ctx->adapted) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = snapcache_adapt_reason_name(ctx->adapt_reason);
    ngx_http_snapcache_variable_str(v, (u_char *) name, ngx_strlen(name));

    return NGX_OK;
}


/*
 * $snapcache_kid: the kid a URL in canonical form names, whether or not
 * it verified, so that a log shows which key a refused URL claimed (a
 * retired one, say).  A kid is a key's name, not its bytes; the
 * parser has held it to the id grammar.
 */
static ngx_int_t
ngx_http_snapcache_kid_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || !ctx->parsed || ctx->req.url.kid.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_snapcache_variable_str(v, (u_char *) ctx->req.url.kid.data,
                                    ctx->req.url.kid.len);

    return NGX_OK;
}


/* $snapcache_deny_reason: why the gate refused: the body's one word. */
static ngx_int_t
ngx_http_snapcache_deny_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || ctx->deny_reason == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_snapcache_variable_str(v, (u_char *) ctx->deny_reason,
                                    ngx_strlen(ctx->deny_reason));

    return NGX_OK;
}


/*
 * $snapcache_fill_ms: how long a miss took, from its lookup to its
 * answer (its own fill, or the wait on another request's), in
 * milliseconds to the microsecond; for an answer that is not an image,
 * to the log phase.  Unset for a hit and for a refusal.
 */
static ngx_int_t
ngx_http_snapcache_fill_ms_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    uint64_t                   end, usec;
    ngx_http_snapcache_ctx_t  *ctx;

    ctx = ngx_http_snapcache_get_ctx(r->main);

    if (ctx == NULL || ctx->miss_start == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    end = ctx->miss_end ? ctx->miss_end : ngx_http_snapcache_usec();
    usec = end > ctx->miss_start ? end - ctx->miss_start : 0;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 5);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_snapcache_variable_str(v, p,
                                    ngx_sprintf(p, "%uL.%03uL", usec / 1000,
                                                usec % 1000)
                                    - p);

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


/*
 * nginx writes r->request_line into the error log lines of a request
 * and into $request.  A signature is a bearer token until it expires,
 * so the request line of every request is redacted as soon as nginx
 * hands the request to the phases.  r->unparsed_uri and r->args, which
 * the gate and other modules read, are left intact.
 */
ngx_int_t
ngx_http_snapcache_redact_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_snapcache_redact_phase;

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_redact_phase(ngx_http_request_t *r)
{
    if (ngx_http_snapcache_redact(r->pool, &r->request_line,
                                  &r->request_line)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * $snapcache_request: the request line with signatures redacted, also
 * for the requests nginx refuses before any module sees them (a bad
 * Host, a lowercase method, a 414), whose $request is the raw line.
 */
static ngx_int_t
ngx_http_snapcache_request_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  line;

    if (r->request_line.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ngx_http_snapcache_redact(r->pool, &r->request_line, &line)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    v->data = line.data;
    v->len = line.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * Every parameter whose name is "sig", in any case and however
 * percent-encoded, after a '?', '&' or ';' anywhere in the line, keeps
 * its name and loses its value: "sig=x".  A line cut short (a 414) is
 * handled the same way.  A line with no such parameter is returned as
 * it is, with no copy: this runs for every request, and the copy is
 * made only once a value to cut is found, in spans rather than bytes.
 */
static ngx_int_t
ngx_http_snapcache_redact(ngx_pool_t *pool, ngx_str_t *line, ngx_str_t *out)
{
    u_char  *p, *q, *end, *from, *dst, *buf;

    p = line->data;
    end = p + line->len;

    buf = NULL;
    dst = NULL;
    from = p;

    for ( /* void */ ; p < end; p++) {

        if (*p != '?' && *p != '&' && *p != ';') {
            continue;
        }

        for (q = p + 1;
             q < end && *q != '=' && *q != '&' && *q != ';' && *q != ' ';
             q++)
        {
            /* void */
        }

        if (q == end || *q != '=' || !ngx_http_snapcache_is_sig(p + 1, q)) {
            continue;
        }

        if (buf == NULL) {
            /*
             * "x" is longer than an empty value: each "&sig=" of five
             * bytes or more can grow the line by one
             */
            buf = ngx_pnalloc(pool, line->len + line->len / 5 + 1);
            if (buf == NULL) {
                return NGX_ERROR;
            }

            dst = buf;
        }

        dst = ngx_cpymem(dst, from, q + 1 - from);
        *dst++ = 'x';

        for (p = q + 1;
             p < end && *p != '&' && *p != ';' && *p != ' ' && *p != '#';
             p++)
        {
            /* void */
        }

        from = p;

        /* the loop's p++ would step over a separator that ends the value */
        p--;
    }

    if (buf == NULL) {
        *out = *line;
        return NGX_OK;
    }

    dst = ngx_cpymem(dst, from, end - from);

    out->data = buf;
    out->len = dst - buf;

    return NGX_OK;
}


/* Is [p, last) the name "sig", after percent-decoding, in any case? */
static ngx_uint_t
ngx_http_snapcache_is_sig(u_char *p, u_char *last)
{
    u_char      c, name[3];
    ngx_uint_t  n;

    n = 0;

    while (p < last) {

        if (n == 3) {
            return 0;
        }

        c = *p++;

        if (c == '%') {
            if (last - p < 2
                || snapcache_hex_decode((const char *) p, 2, &c, 1) != 0)
            {
                return 0;
            }

            p += 2;
        }

        name[n++] = ngx_tolower(c);
    }

    return n == 3 && name[0] == 's' && name[1] == 'i' && name[2] == 'g';
}
