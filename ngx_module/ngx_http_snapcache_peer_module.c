
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the peer endpoint, a module of its own.  In a cluster every
 * node is the same: each verifies, adapts, serves and transcodes for its
 * own clients, and on a miss asks the account's owner node for the
 * original, through an origin location that hashes $snapcache_account
 * over the nodes (nginx's own consistent hash).  A location with
 * snapcache_peer is where the owner answers:
 *
 *   GET <location>A/D/S      the original of (A, D, S)
 *
 * only to callers that present a snapcache_cluster_token (and that the
 * location's allow/deny lets in), from the kept original when the store
 * has it (a remembered 404 answers 404), else by one fill per snapshot
 * across the workers that fetches it from this location's own
 * snapcache_origin, the camera cloud, checks every byte of it on the
 * thread pool, keeps it and answers with it.  So an original costs one
 * camera-cloud fetch per cluster.  The ids are read from the raw request
 * line as strictly as a client's, and a refused request fetches
 * nothing.  The location's other settings (origin, store limits, thread
 * pool, tokens) are ngx_http_snapcache_module's.
 */


#include "ngx_module/ngx_http_snapcache.h"


/*
 * A peer's fill of an original takes a lock of its own: a node that
 * owns the account answers its own fills' origin requests, and would
 * otherwise wait on itself.
 */
#define NGX_HTTP_SNAPCACHE_PEER_LOCK  0x9e3779b97f4a7c15ULL


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  prefix;
} ngx_http_snapcache_peer_loc_conf_t;


static ngx_int_t ngx_http_snapcache_peer_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_peer_target(ngx_http_request_t *r,
    ngx_str_t *prefix, snapcache_url_t *url);
static ngx_uint_t ngx_http_snapcache_peer_header(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_http_snapcache_peer_answer(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_image_t *image,
    ngx_http_snapcache_status_e status);
static void *ngx_http_snapcache_peer_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_snapcache_peer_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_snapcache_peer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_snapcache_peer_commands[] = {

    { ngx_string("snapcache_peer"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_snapcache_peer,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_snapcache_peer_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_snapcache_peer_create_loc_conf,
    ngx_http_snapcache_peer_merge_loc_conf
};


ngx_module_t  ngx_http_snapcache_peer_module = {
    NGX_MODULE_V1,
    &ngx_http_snapcache_peer_module_ctx,   /* module context */
    ngx_http_snapcache_peer_commands,      /* module directives */
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


/* What a peer's fill is for: the original, under its own key. */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_peer_variant = {
    ngx_string("original"), 0, 0, 0, SNAPCACHE_VARIANT_ORIGINAL, 0
};


static ngx_int_t
ngx_http_snapcache_peer_handler(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    snapcache_record_t                   rec;
    ngx_http_snapcache_ctx_t            *ctx;
    ngx_http_snapcache_loc_conf_t       *slcf;
    ngx_http_snapcache_peer_loc_conf_t  *plcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_peer_module);

    ctx = ngx_http_snapcache_ctx_create(r, slcf);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the token first: a caller without one learns nothing else */
    if (ngx_http_snapcache_bearer_auth(r, slcf->cluster_tokens, "peer")
        != NGX_OK)
    {
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_UNAUTHORIZED,
                                              "unauthorized");
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "method");
    }

    if (ngx_http_snapcache_peer_target(r, &plcf->prefix, &ctx->req.url)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "snapcache: peer: rejected request: not "
                      "\"%Vaccount/device/snapshot\" with valid ids",
                      &plcf->prefix);
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_BAD_REQUEST,
                                              "malformed");
    }

    if (ctx->smcf->store == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: the store is not open in this worker, "
                      "see the error at worker start");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ctx->verified = 1;
    ctx->chosen = 1;
    ctx->from_peer = 1;
    ctx->answer = ngx_http_snapcache_peer_answer;
    ctx->lock_salt = NGX_HTTP_SNAPCACHE_PEER_LOCK;
    ctx->keep_original = 1;
    ctx->original_only = 1;
    ctx->req.variant = &ngx_http_snapcache_peer_variant;
    ctx->variant = SNAPCACHE_VARIANT_ORIGINAL;
    ctx->format = SNAPCACHE_FORMAT_ANY;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_snapcache_ident(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The asking node purged this scope a moment ago, and this node may
     * not have yet: neither the kept copy nor a fill that began before
     * this request will do, only a fetch that begins now.
     */
    ctx->fresh = ngx_http_snapcache_peer_header(r, "X-Snapcache-Fresh");

    if (!ctx->fresh) {
        rc = ngx_http_snapcache_lookup(r, ctx, SNAPCACHE_VARIANT_ORIGINAL,
                                       SNAPCACHE_FORMAT_ANY, &rec);

        if (rc == SNAPCACHE_CACHE_HIT) {
            return ngx_http_snapcache_answer_record(r, ctx, &rec,
                                                    NGX_HTTP_SNAPCACHE_HIT);
        }
    }

    return ngx_http_snapcache_fill(r, ctx);
}


/*
 * "<location>A/D/S" from the raw request line, exactly: three ids of
 * the URL grammar and nothing else, so no escape, dot segment, doubled
 * or trailing slash, parameter or query gets through.
 */
static ngx_int_t
ngx_http_snapcache_peer_target(ngx_http_request_t *r, ngx_str_t *prefix,
    snapcache_url_t *url)
{
    u_char           *p, *end, *slash;
    ngx_uint_t        i;
    snapcache_str_t  *ids[3];

    ids[0] = &url->account;
    ids[1] = &url->device;
    ids[2] = &url->snapshot;

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    if (r->unparsed_uri.len < prefix->len
        || ngx_strncmp(p, prefix->data, prefix->len) != 0)
    {
        return NGX_DECLINED;
    }

    p += prefix->len;

    for (i = 0; i < 3; i++) {
        slash = (i < 2) ? ngx_strlchr(p, end, '/') : end;

        if (slash == NULL
            || !snapcache_id_valid((const char *) p, slash - p))
        {
            return NGX_DECLINED;
        }

        ids[i]->data = (const char *) p;
        ids[i]->len = slash - p;

        p = slash + 1;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_snapcache_peer_header(ngx_http_request_t *r, const char *name)
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
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return 1;
        }
    }
}


/*
 * The answer to a peer: the original's bytes, its type, and its
 * remaining lifetime as max-age, which the asking node keeps it for
 * (within its own snapcache_ttl_min and snapcache_ttl_max).  A
 * remembered 404 is a 404.
 */
static ngx_int_t
ngx_http_snapcache_peer_answer(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, ngx_http_snapcache_image_t *image,
    ngx_http_snapcache_status_e status)
{
    ngx_int_t  rc;

    if (image->format == SNAPCACHE_FORMAT_ABSENT) {
        ctx->status = NGX_HTTP_SNAPCACHE_ERROR;
        return ngx_http_snapcache_reply_error(r, NGX_HTTP_NOT_FOUND,
                                              "not found");
    }

    ctx->status = status;

    rc = ngx_http_snapcache_reply_image(r, image, status);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_snapcache_reply_body(r, image);
}


static void *
ngx_http_snapcache_peer_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_snapcache_peer_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_snapcache_peer_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->prefix = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


/*
 * A peer endpoint answers originals to the cluster's nodes: only to
 * those that present a token, from its store, fetching from its own
 * origin (the camera cloud).  A node that keeps its records across a
 * restart may hold what purges sent while it was down did not remove,
 * and would hand it to every node: nginx -t says so.  The snapcache
 * module's configuration of this location is merged by now.
 */
static char *
ngx_http_snapcache_peer_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_snapcache_peer_loc_conf_t *conf = child;

    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

    /* not inherited: a nested location is not a peer endpoint */
    if (conf->enable != 1) {
        conf->enable = 0;
        return NGX_CONF_OK;
    }

    slcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_snapcache_module);
    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);

    if (slcf->enable == 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" and \"snapcache\" cannot "
                           "share a location");
        return NGX_CONF_ERROR;
    }

    if (slcf->cluster_tokens == NULL || slcf->cluster_tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapcache_peer\" requires at least one "
                           "\"snapcache_cluster_token\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_snapcache_check_origin_uri(cf, slcf, "snapcache_peer",
                                            "the location of the camera "
                                            "cloud")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (slcf->origin_peers) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the origin of \"snapcache_peer\" is the camera "
                           "cloud, not the peers: \"snapcache_origin %V\" "
                           "without \"peers\"", &slcf->origin);
        return NGX_CONF_ERROR;
    }

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

    /* what the origin check needs to know of this location */
    slcf->peer_endpoint = 1;

    return ngx_http_snapcache_resolve_pool(cf, slcf) == NGX_OK
           ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/*
 * snapcache_peer: the location answers the cluster's nodes with the
 * originals of the accounts this node owns.  Like snapcache, it reads
 * its ids from the raw request line after the location's name.
 */
static char *
ngx_http_snapcache_peer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_peer_loc_conf_t *plcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_snapcache_prefix_location(cf, 1);
    if (clcf == NULL) {
        return "must be used in a prefix location ending with \"/\", "
               "such as \"location /_peer/ { snapcache_peer; }\"";
    }

    plcf->enable = 1;
    plcf->prefix = clcf->name;
    clcf->handler = ngx_http_snapcache_peer_handler;

    return NGX_CONF_OK;
}
