
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: secrets.  Signing keys and bearer tokens are read by the
 * master at configuration time, so that their files can stay readable
 * by root only; a bearer token presented by a caller (an admin tool, a
 * peer node) is checked here, in constant time, for the admin API and
 * the peer endpoint alike.  Nothing here is ever logged.
 */


#include "ngx_module/ngx_http_snapcache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


static void ngx_http_snapcache_free_keys(void *data);
static void ngx_http_snapcache_cleanse(void *data);


/* snapcache_sign_key <kid> <file> */
char *
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


/*
 * A token file (snapcache_admin_token, snapcache_cluster_token): read
 * like a signing key.  Only the token's SHA-256 is kept, pushed to
 * *tokens, to check callers against; a node that presents the cluster
 * token (bearer != NULL, for the first one) also keeps "Bearer <hex>"
 * for its origin requests, wiped when the configuration goes.
 */
char *
ngx_http_snapcache_token_load(ngx_conf_t *cf, ngx_str_t *path,
    const char *role, ngx_array_t **tokens, ngx_str_t *bearer)
{
    u_char                *p, *digest;
    int                    world_readable;
    char                   err[256];
    unsigned int           mdlen;
    ngx_str_t             *keep, full;
    ngx_pool_cleanup_t    *cln;
    snapcache_secret_t     key;

    full = *path;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (*tokens == NGX_CONF_UNSET_PTR || *tokens == NULL) {
        *tokens = ngx_array_create(cf->pool, 2,
                                   NGX_HTTP_SNAPCACHE_DIGEST_LEN);
        if (*tokens == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    digest = ngx_array_push(*tokens);
    if (digest == NULL) {
        return NGX_CONF_ERROR;
    }

    /* plain bytes: a token keys no HMAC */
    if (snapcache_secret_load(&key, (const char *) full.data, "token",
                              &world_readable, err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s %s", role, err);
        return NGX_CONF_ERROR;
    }

    if (EVP_Digest(key.data, key.len, digest, &mdlen, EVP_sha256(), NULL)
        != 1)
    {
        OPENSSL_cleanse(&key, sizeof(key));
        return NGX_CONF_ERROR;
    }

    if (bearer && bearer->len == 0) {
        cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_str_t));
        p = ngx_pnalloc(cf->pool, sizeof("Bearer ") - 1 + 2 * key.len);

        if (cln == NULL || p == NULL) {
            OPENSSL_cleanse(&key, sizeof(key));
            return NGX_CONF_ERROR;
        }

        bearer->data = p;
        p = ngx_cpymem(p, "Bearer ", sizeof("Bearer ") - 1);
        p = ngx_hex_dump(p, key.data, key.len);
        bearer->len = p - bearer->data;

        keep = cln->data;
        *keep = *bearer;
        cln->handler = ngx_http_snapcache_cleanse;
    }

    OPENSSL_cleanse(&key, sizeof(key));

    if (world_readable) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "%s token file \"%V\" is readable by everyone; "
                           "it should be readable by root only", role,
                           &full);
    }

    return NGX_CONF_OK;
}


static void
ngx_http_snapcache_cleanse(void *data)
{
    ngx_str_t *s = data;

    OPENSSL_cleanse(s->data, s->len);
}


/*
 * "Authorization: Bearer <hex>".  The SHA-256 of what was presented is
 * compared with that of every configured token (digests, 32 bytes
 * each), all of them, with CRYPTO_memcmp: the time taken says nothing
 * about a token's bytes or length, nor which one matched.  The token is
 * never logged.
 */
ngx_int_t
ngx_http_snapcache_bearer_auth(ngx_http_request_t *r, ngx_array_t *tokens,
    const char *role)
{
    u_char           *p, *end, *digests;
    u_char            token[SNAPCACHE_KEY_MAX];
    u_char            md[NGX_HTTP_SNAPCACHE_DIGEST_LEN];
    size_t            len;
    ngx_int_t         valid;
    ngx_uint_t        i, match;
    unsigned int      mdlen;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h == NULL || h->value.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "snapcache: %s: refused, no bearer token", role);
        return NGX_DECLINED;
    }

    p = h->value.data + sizeof("Bearer ") - 1;
    end = h->value.data + h->value.len;

    while (p < end && *p == ' ') {
        p++;
    }

    while (end > p && end[-1] == ' ') {
        end--;
    }

    len = end - p;

    valid = (len >= 2 * SNAPCACHE_KEY_MIN && len <= 2 * SNAPCACHE_KEY_MAX
             && len % 2 == 0
             && snapcache_hex_decode((const char *) p, len, token,
                                     sizeof(token)) == 0);

    if (valid) {
        len /= 2;
        p = token;
    }

    match = 0;

    if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        valid = 0;
    }

    OPENSSL_cleanse(token, sizeof(token));

    if (tokens) {
        digests = tokens->elts;

        for (i = 0; i < tokens->nelts; i++) {
            match |= (CRYPTO_memcmp(md,
                                    digests + NGX_HTTP_SNAPCACHE_DIGEST_LEN * i,
                                    NGX_HTTP_SNAPCACHE_DIGEST_LEN)
                      == 0);
        }
    }

    OPENSSL_cleanse(md, sizeof(md));

    if (valid && match) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "snapcache: %s: refused, wrong bearer token", role);

    return NGX_DECLINED;
}


/*
 * Every kid some snapcache location verifies with, once: the only kid
 * labels the metrics show, so that their number is the configuration's.
 */
ngx_int_t
ngx_http_snapcache_note_kids(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf, ngx_array_t *keys)
{
    ngx_str_t             *kid;
    ngx_uint_t             i, j;
    snapcache_sign_key_t  *key;

    if (smcf->kids == NULL) {
        smcf->kids = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (smcf->kids == NULL) {
            return NGX_ERROR;
        }
    }

    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        kid = smcf->kids->elts;

        for (j = 0; j < smcf->kids->nelts; j++) {
            if (kid[j].len == key[i].kid_len
                && ngx_memcmp(kid[j].data, key[i].kid, kid[j].len) == 0)
            {
                break;
            }
        }

        if (j < smcf->kids->nelts) {
            continue;
        }

        kid = ngx_array_push(smcf->kids);
        if (kid == NULL) {
            return NGX_ERROR;
        }

        kid->len = key[i].kid_len;
        kid->data = (u_char *) key[i].kid;
    }

    return NGX_OK;
}
