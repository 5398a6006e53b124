
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: every origin checked at configuration time.  nginx -t
 * fails when a snapcache or snapcache_peer location's origin is not an
 * internal location of its server, or when the cluster token could
 * reach the camera cloud.
 *
 * nginx has no call that finds the location a URI maps to without a
 * request, so the walk over the static location tree and the regular
 * expressions that ngx_http_core_find_location() does is done here
 * again, over structures that ngx_http_core_module.h declares.  That
 * walk was checked against nginx 1.22; another release must be checked
 * again before this file is allowed to build.
 */


#include "ngx_module/ngx_http_snapcache.h"


#if (nginx_version < 1022000 || nginx_version >= 1023000)
#error "snapcache follows nginx 1.22's location lookup: check this nginx's"
#error "ngx_http_core_find_location() against it, then allow it here"
#endif


static ngx_int_t ngx_http_snapcache_check_locations(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *srv, ngx_http_core_loc_conf_t *pclcf);
static ngx_int_t ngx_http_snapcache_check_tree(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *srv, ngx_http_location_tree_node_t *node);
static ngx_int_t ngx_http_snapcache_check_origin_location(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *srv, ngx_http_core_loc_conf_t *clcf);
static ngx_int_t ngx_http_snapcache_mark_origin(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_flag_t peer,
    ngx_http_core_loc_conf_t *clcf, ngx_http_core_loc_conf_t *olcf);
static ngx_http_core_loc_conf_t *ngx_http_snapcache_find_location(
    ngx_http_core_loc_conf_t *pclcf, ngx_str_t *uri);


ngx_int_t
ngx_http_snapcache_check_origins(ngx_conf_t *cf)
{
    ngx_uint_t                   s;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_core_srv_conf_t   **cscfp;
    ngx_http_core_main_conf_t   *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        clcf = cscfp[s]->ctx->loc_conf[ngx_http_core_module.ctx_index];

        if (ngx_http_snapcache_check_locations(cf, clcf, clcf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Every snapcache or snapcache_peer location's origin must resolve, in
 * its server, to an internal location: otherwise each fill would fail
 * at run time, or, worse, anyone could fetch originals with no
 * signature at all.
 */
static ngx_int_t
ngx_http_snapcache_check_locations(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *srv, ngx_http_core_loc_conf_t *pclcf)
{
#if (NGX_PCRE)
    ngx_http_core_loc_conf_t  **clcfp;

    if (pclcf->regex_locations) {
        for (clcfp = pclcf->regex_locations; *clcfp; clcfp++) {
            if (ngx_http_snapcache_check_origin_location(cf, srv, *clcfp)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }
#endif

    return ngx_http_snapcache_check_tree(cf, srv, pclcf->static_locations);
}


/* The prefix locations of one level are in a tree by then, not a list. */
static ngx_int_t
ngx_http_snapcache_check_tree(ngx_conf_t *cf, ngx_http_core_loc_conf_t *srv,
    ngx_http_location_tree_node_t *node)
{
    if (node == NULL) {
        return NGX_OK;
    }

    if (node->exact
        && ngx_http_snapcache_check_origin_location(cf, srv, node->exact)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (node->inclusive
        && ngx_http_snapcache_check_origin_location(cf, srv, node->inclusive)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_snapcache_check_tree(cf, srv, node->left) != NGX_OK
        || ngx_http_snapcache_check_tree(cf, srv, node->right) != NGX_OK
        || ngx_http_snapcache_check_tree(cf, srv, node->tree) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_check_origin_location(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *srv, ngx_http_core_loc_conf_t *clcf)
{
    u_char                         *p;
    ngx_str_t                       uri;
    ngx_flag_t                      peer;
    ngx_http_core_loc_conf_t       *olcf;
    ngx_http_snapcache_loc_conf_t  *slcf;

    slcf = clcf->loc_conf[ngx_http_snapcache_module.ctx_index];
    peer = slcf->peer_endpoint;

    if (slcf->enable == 1 || peer) {

        /* any ids will do: the location is chosen by the prefix */
        uri.len = slcf->origin.len + sizeof("/a/d/s") - 1;
        uri.data = ngx_pnalloc(cf->temp_pool, uri.len);
        if (uri.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(uri.data, slcf->origin.data, slcf->origin.len);
        ngx_memcpy(p, "/a/d/s", sizeof("/a/d/s") - 1);

        olcf = ngx_http_snapcache_find_location(srv, &uri);

        if (olcf == NULL || olcf == srv) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"snapcache_origin %V\" of location \"%V\" "
                               "matches no location in its server; add "
                               "\"location %V/ { internal; proxy_pass ...; }\"",
                               &slcf->origin, &clcf->name, &slcf->origin);
            return NGX_ERROR;
        }

        if (!olcf->internal) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"snapcache_origin %V\" of location \"%V\" "
                               "is served by location \"%V\", which is not "
                               "\"internal\": anyone could fetch originals "
                               "without a signature", &slcf->origin,
                               &clcf->name, &olcf->name);
            return NGX_ERROR;
        }

        if (olcf == clcf) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"snapcache_origin %V\" points back at the "
                               "snapcache location \"%V\"", &slcf->origin,
                               &clcf->name);
            return NGX_ERROR;
        }

        if (ngx_http_snapcache_mark_origin(cf, slcf, peer, clcf, olcf)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_snapcache_check_locations(cf, srv, clcf);
}


/*
 * The cluster token goes only to a location marked "peers", which
 * proxies to the peer endpoints.  A location that is also where a peer
 * endpoint fetches from the camera cloud would carry the token to the
 * cloud, and a peer endpoint would ask the peers for what it owns.
 */
static ngx_int_t
ngx_http_snapcache_mark_origin(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *slcf, ngx_flag_t peer,
    ngx_http_core_loc_conf_t *clcf, ngx_http_core_loc_conf_t *olcf)
{
    ngx_uint_t                      use;
    ngx_http_snapcache_loc_conf_t  *oslcf;

    oslcf = olcf->loc_conf[ngx_http_snapcache_module.ctx_index];

    use = peer ? NGX_HTTP_SNAPCACHE_ORIGIN_CLOUD
          : slcf->origin_peers ? NGX_HTTP_SNAPCACHE_ORIGIN_PEERS
          : 0;

    oslcf->origin_use |= use;

    if ((oslcf->origin_use & NGX_HTTP_SNAPCACHE_ORIGIN_CLOUD)
        && (oslcf->origin_use & NGX_HTTP_SNAPCACHE_ORIGIN_PEERS))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "location \"%V\" is both the peers' origin "
                           "(\"snapcache_origin ... peers\") and a peer "
                           "endpoint's camera cloud, as the origin of "
                           "\"%V\": it would send the cluster token to "
                           "the cloud; give each its own location",
                           &olcf->name, &clcf->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The location nginx would choose for uri, below pclcf: the same walk
 * as ngx_http_core_find_location(), which needs a request.  NULL when
 * nothing matches.
 */
static ngx_http_core_loc_conf_t *
ngx_http_snapcache_find_location(ngx_http_core_loc_conf_t *pclcf,
    ngx_str_t *uri)
{
    u_char                          *p;
    size_t                           len, n;
    ngx_int_t                        rc;
    ngx_uint_t                       exact;
    ngx_http_core_loc_conf_t        *found, *nested;
    ngx_http_location_tree_node_t   *node;
#if (NGX_PCRE)
    ngx_http_core_loc_conf_t       **clcfp;
#endif

    p = uri->data;
    len = uri->len;
    node = pclcf->static_locations;
    found = NULL;
    exact = 0;

    while (node) {
        n = (len <= (size_t) node->len) ? len : node->len;

        rc = ngx_filename_cmp(p, node->name, n);

        if (rc != 0) {
            node = (rc < 0) ? node->left : node->right;
            continue;
        }

        if (len > (size_t) node->len) {
            if (node->inclusive) {
                found = node->inclusive;
                node = node->tree;
                p += n;
                len -= n;
                continue;
            }

            node = node->right;
            continue;
        }

        if (len == (size_t) node->len) {
            if (node->exact) {
                found = node->exact;
                exact = 1;

            } else {
                found = node->inclusive;
            }

            break;
        }

        node = node->left;
    }

    if (exact) {
        return found;
    }

    if (found) {
        nested = ngx_http_snapcache_find_location(found, uri);
        if (nested) {
            return nested;
        }
    }

#if (NGX_PCRE)
    if ((found == NULL || !found->noregex) && pclcf->regex_locations) {
        for (clcfp = pclcf->regex_locations; *clcfp; clcfp++) {
            if (ngx_regex_exec((*clcfp)->regex->regex, uri, NULL, 0) >= 0) {
                nested = ngx_http_snapcache_find_location(*clcfp, uri);
                return nested ? nested : *clcfp;
            }
        }
    }
#endif

    return found;
}
