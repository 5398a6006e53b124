
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the admin API.  A location with snapcache_admin answers
 *
 *   POST <location>/purge    {"account": A[, "device": D[, "snapshot": S]]}
 *                            or {"purge": [scope, ...]}, up to 256 scopes
 *   GET  <location>/stats    JSON
 *   GET  <location>/metrics  Prometheus text
 *
 * to callers presenting "Authorization: Bearer <token>", one of the
 * snapcache_admin_token files, compared in constant time.
 *
 * A purge is final once it answers.  It bumps the purge generation of
 * each scope's account or device in the shared zone first, so that every
 * fill already running in any worker finds out and throws its body away;
 * then it deletes by key prefix on the thread pool, in chunks, and it
 * answers once a sync that began after its deletes has returned: the
 * removal survives a crash of the machine.  Purges whose deletes end
 * while a sync runs share the next one (a group commit), so a sync costs
 * one fdatasync however many purges it makes durable.  A fill's store
 * transaction checks the generations before it commits, and the purge's
 * deletes cannot interleave with it, so nothing a fill from before the
 * purge made stays in the store.
 */


#include "ngx_module/ngx_http_snapcache.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_HTTP_SNAPCACHE_ADMIN_BODY_MAX  (64 * 1024)
#define NGX_HTTP_SNAPCACHE_ADMIN_SCOPES    256

/* a sync the thread pool had no room for is posted again after this */
#define NGX_HTTP_SNAPCACHE_SYNC_RETRY      10


typedef enum {
    NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN = 0,
    NGX_HTTP_SNAPCACHE_ADMIN_PURGE,
    NGX_HTTP_SNAPCACHE_ADMIN_STATS,
    NGX_HTTP_SNAPCACHE_ADMIN_METRICS
} ngx_http_snapcache_endpoint_e;


/* One scope of a purge; the ids are C strings in the purge's pool. */
typedef struct {
    ngx_uint_t                       kind;      /* ngx_http_snapcache_scope_e */
    char                            *account;
    char                            *device;    /* NULL for an account */
    char                            *snapshot;  /* NULL unless a snapshot */
    uint64_t                         records;
    int                              rc;
} ngx_http_snapcache_scope_t;


/*
 * A purge's thread task.  It lives in a pool of its own, so that it
 * finishes, and counts, even when the client has gone away.
 */
typedef struct {
    ngx_thread_task_t               *task;
    ngx_pool_t                      *pool;
    ngx_http_request_t              *request;   /* NULL once detached */
    ngx_pool_cleanup_t              *cleanup;   /* in the request's pool */
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_thread_pool_t               *thread_pool;
    ngx_queue_t                      queue;     /* waiting for a sync */
    ngx_http_snapcache_scope_t      *scopes;
    ngx_uint_t                       nscopes;
    ngx_atomic_uint_t                generation;
    int                              sync_rc;
    uint64_t                         start;     /* usec, before the bump */
    uint64_t                         end;       /* usec, once durable */
} ngx_http_snapcache_purge_t;


/*
 * This worker's group commit: the purges whose deletes are done wait in
 * "waiting"; one sync task at a time takes them all ("in_sync") and
 * answers them when it returns.
 */
typedef struct {
    ngx_queue_t                      waiting;
    ngx_queue_t                      in_sync;
    ngx_thread_task_t               *task;
    ngx_event_t                      retry;
    ngx_http_snapcache_main_conf_t  *smcf;
    int                              rc;
    unsigned                         running:1;
    unsigned                         ready:1;
} ngx_http_snapcache_sync_t;


static ngx_uint_t ngx_http_snapcache_admin_endpoint(ngx_http_request_t *r);
static void ngx_http_snapcache_cleanse(void *data);
static ngx_int_t ngx_http_snapcache_admin_get(ngx_http_request_t *r,
    ngx_uint_t endpoint);
static ngx_int_t ngx_http_snapcache_admin_start_purge(ngx_http_request_t *r);
static void ngx_http_snapcache_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_admin_read_body(ngx_http_request_t *r,
    u_char **body, size_t *len);
static const char *ngx_http_snapcache_parse_purge(
    ngx_http_snapcache_purge_t *p, u_char *body, size_t len);
static const char *ngx_http_snapcache_parse_scope(
    ngx_http_snapcache_purge_t *p, json_t *obj,
    ngx_http_snapcache_scope_t *scope);
static char *ngx_http_snapcache_json_id(ngx_pool_t *pool, json_t *v);
static ngx_int_t ngx_http_snapcache_admin_purge(ngx_http_request_t *r,
    ngx_http_snapcache_purge_t *p);
static void ngx_http_snapcache_purge_handler(void *data, ngx_log_t *log);
static void ngx_http_snapcache_purge_done(ngx_event_t *ev);
static void ngx_http_snapcache_purge_cleanup(void *data);
static void ngx_http_snapcache_sync_start(ngx_log_t *log);
static void ngx_http_snapcache_sync_retry(ngx_event_t *ev);
static void ngx_http_snapcache_sync_handler(void *data, ngx_log_t *log);
static void ngx_http_snapcache_sync_done(ngx_event_t *ev);
static void ngx_http_snapcache_purge_finish(ngx_http_snapcache_purge_t *t,
    ngx_log_t *log);
static ngx_int_t ngx_http_snapcache_purge_answer(ngx_http_request_t *r,
    ngx_http_snapcache_purge_t *p);
static ngx_int_t ngx_http_snapcache_admin_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *error);
static ngx_int_t ngx_http_snapcache_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_chain_t *out, off_t len);


static ngx_http_snapcache_sync_t  ngx_http_snapcache_sync;


ngx_int_t
ngx_http_snapcache_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_uint_t                       endpoint;
    ngx_table_elt_t                 *h;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    endpoint = ngx_http_snapcache_admin_endpoint(r);

    if (ngx_http_snapcache_bearer_auth(r, slcf->admin_tokens, "admin")
        != NGX_OK)
    {
        if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_PURGE) {
            ngx_http_snapcache_count_purge(smcf, NGX_HTTP_SNAPCACHE_SCOPE_NONE,
                                        NGX_HTTP_SNAPCACHE_PURGE_UNAUTHORIZED,
                                        0);
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer");

        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                               "unauthorized");
    }

    switch (endpoint) {

    case NGX_HTTP_SNAPCACHE_ADMIN_PURGE:

        if (r->method != NGX_HTTP_POST) {
            break;
        }

        rc = ngx_http_snapcache_admin_start_purge(r);

        if (rc != NGX_DONE) {
            ngx_http_snapcache_count_purge(smcf, NGX_HTTP_SNAPCACHE_SCOPE_NONE,
                                        NGX_HTTP_SNAPCACHE_PURGE_BAD_REQUEST,
                                        0);
        }

        return rc;

    case NGX_HTTP_SNAPCACHE_ADMIN_STATS:
    case NGX_HTTP_SNAPCACHE_ADMIN_METRICS:

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            break;
        }

        return ngx_http_snapcache_admin_get(r, endpoint);

    default:
        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_NOT_FOUND,
                                               "no such admin endpoint");
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");

    if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_PURGE) {
        ngx_str_set(&h->value, "POST");

    } else {
        ngx_str_set(&h->value, "GET, HEAD");
    }

    return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed");
}


/* The path after the location's name, with one '/' between them. */
static ngx_uint_t
ngx_http_snapcache_admin_endpoint(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     len;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->uri.len < clcf->name.len) {
        return NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN;
    }

    p = r->uri.data + clcf->name.len;
    len = r->uri.len - clcf->name.len;

    if ((clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/')
        && len && *p == '/')
    {
        p++;
        len--;
    }

    if (len == 5 && ngx_strncmp(p, "purge", 5) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_PURGE;
    }

    if (len == 5 && ngx_strncmp(p, "stats", 5) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_STATS;
    }

    if (len == 7 && ngx_strncmp(p, "metrics", 7) == 0) {
        return NGX_HTTP_SNAPCACHE_ADMIN_METRICS;
    }

    return NGX_HTTP_SNAPCACHE_ADMIN_UNKNOWN;
}


/*
 * "Authorization: Bearer <hex>".  The SHA-256 of what was presented is
 * compared with that of every configured token (digests, 32 bytes
 * each), all of them, with CRYPTO_memcmp: the time taken says nothing
 * about a token's bytes or length, nor which one matched.  The token is
 * never logged.  The admin API and the peer endpoint share it.
 */
ngx_int_t
ngx_http_snapcache_bearer_auth(ngx_http_request_t *r, ngx_array_t *tokens,
    const char *role)
{
    u_char           *p, *end, *digests;
    u_char            token[SNAPCACHE_KEY_MAX], md[32];
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
            match |= (CRYPTO_memcmp(md, digests + 32 * i, 32) == 0);
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
 * snapcache_admin_token and snapcache_cluster_token <file>: read by the
 * master at configuration time, like the signing keys, so that the file
 * can stay 0600 root.  Only the token's SHA-256 is kept, to check
 * callers against; a node that presents a cluster token (bearer !=
 * NULL) also keeps "Bearer <hex>" for its origin requests, wiped when
 * the configuration goes.
 */
char *
ngx_http_snapcache_token_load(ngx_conf_t *cf, ngx_str_t *path,
    const char *role, u_char *digest, ngx_str_t *bearer)
{
    u_char                *p;
    int                    world_readable;
    char                   err[256];
    unsigned int           mdlen;
    ngx_str_t             *keep;
    ngx_pool_cleanup_t    *cln;
    snapcache_secret_t     key;

    if (snapcache_secret_load(&key, (const char *) path->data,
                              &world_readable, err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s token: %s", role, err);
        return NGX_CONF_ERROR;
    }

    if (EVP_Digest(key.data, key.len, digest, &mdlen, EVP_sha256(), NULL)
        != 1)
    {
        OPENSSL_cleanse(&key, sizeof(key));
        return NGX_CONF_ERROR;
    }

    if (bearer) {
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
                           "it should be readable by root only", role, path);
    }

    return NGX_CONF_OK;
}


static void
ngx_http_snapcache_cleanse(void *data)
{
    ngx_str_t *s = data;

    OPENSSL_cleanse(s->data, s->len);
}


static ngx_int_t
ngx_http_snapcache_admin_get(ngx_http_request_t *r, ngx_uint_t endpoint)
{
    off_t                            len;
    ngx_int_t                        rc;
    ngx_chain_t                     *out;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (endpoint == NGX_HTTP_SNAPCACHE_ADMIN_METRICS) {
        if (ngx_http_snapcache_metrics_text(r, smcf, &out, &len) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_snapcache_admin_send(r, NGX_HTTP_OK,
                                     "text/plain; version=0.0.4; charset=utf-8",
                                     out, len);
    }

    if (ngx_http_snapcache_stats_json(r, smcf, &out, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_snapcache_admin_send(r, NGX_HTTP_OK, "application/json",
                                         out, len);
}


/* A JSON body, within a small cap; anything else is refused unread. */
static ngx_int_t
ngx_http_snapcache_admin_start_purge(ngx_http_request_t *r)
{
    u_char     *p, *end;
    ngx_int_t   rc;
    ngx_str_t  *type;

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

    if (type) {
        p = type->data;
        end = ngx_strlchr(p, p + type->len, ';');
        end = end ? end : p + type->len;

        while (end > p && end[-1] == ' ') {
            end--;
        }
    }

    if (type == NULL
        || end - p != (ssize_t) sizeof("application/json") - 1
        || ngx_strncasecmp(p, (u_char *) "application/json",
                           sizeof("application/json") - 1) != 0)
    {
        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_BAD_REQUEST,
                               "the body must be application/json");
    }

    if (r->headers_in.content_length_n > NGX_HTTP_SNAPCACHE_ADMIN_BODY_MAX) {
        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_BAD_REQUEST,
                               "the body is larger than 64k");
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_snapcache_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_snapcache_admin_body(ngx_http_request_t *r)
{
    u_char                          *body;
    size_t                           len;
    ngx_int_t                        rc;
    const char                      *error;
    ngx_pool_t                      *pool;
    ngx_http_snapcache_purge_t      *p;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_snapcache_module);

    if (ngx_http_snapcache_admin_read_body(r, &body, &len) != NGX_OK) {
        error = "the body is larger than 64k or unreadable";
        goto refused;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_pcalloc(pool, sizeof(ngx_http_snapcache_purge_t));
    if (p == NULL) {
        ngx_destroy_pool(pool);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p->pool = pool;
    p->smcf = smcf;

    error = ngx_http_snapcache_parse_purge(p, body, len);

    if (error) {
        ngx_destroy_pool(pool);
        goto refused;
    }

    rc = ngx_http_snapcache_admin_purge(r, p);

    if (rc != NGX_DONE) {
        ngx_destroy_pool(pool);
        ngx_http_finalize_request(r, rc);
    }

    return;

refused:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "snapcache: admin: purge refused: %s", error);

    ngx_http_snapcache_count_purge(smcf, NGX_HTTP_SNAPCACHE_SCOPE_NONE,
                                   NGX_HTTP_SNAPCACHE_PURGE_BAD_REQUEST, 0);

    ngx_http_finalize_request(r,
        ngx_http_snapcache_admin_refuse(r, NGX_HTTP_BAD_REQUEST, error));
}


/* The whole body in one buffer; a part nginx wrote to a file is read. */
static ngx_int_t
ngx_http_snapcache_admin_read_body(ngx_http_request_t *r, u_char **body,
    size_t *len)
{
    u_char       *p;
    size_t        n, total;
    ssize_t       got;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    total = 0;

    if (r->request_body == NULL) {
        *body = (u_char *) "";
        *len = 0;
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        total += b->in_file ? (size_t) (b->file_last - b->file_pos)
                            : (size_t) (b->last - b->pos);

        if (total > NGX_HTTP_SNAPCACHE_ADMIN_BODY_MAX) {
            return NGX_ERROR;
        }
    }

    p = ngx_pnalloc(r->pool, total + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *body = p;
    *len = total;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = (size_t) (b->file_last - b->file_pos);
            got = ngx_read_file(b->file, p, n, b->file_pos);

            if (got != (ssize_t) n) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    return NGX_OK;
}


/*
 * Validates the whole request before anything is purged: a request that
 * gets an error has changed nothing.  Returns the error, or NULL.
 */
static const char *
ngx_http_snapcache_parse_purge(ngx_http_snapcache_purge_t *p, u_char *body,
    size_t len)
{
    json_t        *root, *list;
    size_t         i, n;
    const char    *error;
    json_error_t   jerr;

    root = json_loadb((const char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        return "the body is not well-formed JSON";
    }

    if (!json_is_object(root)) {
        json_decref(root);
        return "the body must be a JSON object";
    }

    list = json_object_get(root, "purge");

    if (list == NULL) {
        p->nscopes = 1;
        p->scopes = ngx_pcalloc(p->pool, sizeof(ngx_http_snapcache_scope_t));
        if (p->scopes == NULL) {
            json_decref(root);
            return "out of memory";
        }

        error = ngx_http_snapcache_parse_scope(p, root, &p->scopes[0]);
        json_decref(root);

        return error;
    }

    error = NULL;

    if (json_object_size(root) != 1) {
        error = "unknown field next to \"purge\"";

    } else if (!json_is_array(list)) {
        error = "\"purge\" must be a list of scopes";

    } else if (json_array_size(list) == 0) {
        error = "\"purge\" is an empty list";

    } else if (json_array_size(list) > NGX_HTTP_SNAPCACHE_ADMIN_SCOPES) {
        error = "more than 256 scopes";
    }

    if (error) {
        json_decref(root);
        return error;
    }

    n = json_array_size(list);

    p->nscopes = n;
    p->scopes = ngx_pcalloc(p->pool, n * sizeof(ngx_http_snapcache_scope_t));
    if (p->scopes == NULL) {
        json_decref(root);
        return "out of memory";
    }

    for (i = 0; i < n; i++) {
        error = ngx_http_snapcache_parse_scope(p, json_array_get(list, i),
                                               &p->scopes[i]);
        if (error) {
            break;
        }
    }

    json_decref(root);

    return error;
}


/* {"account": A[, "device": D[, "snapshot": S]]}, and nothing else. */
static const char *
ngx_http_snapcache_parse_scope(ngx_http_snapcache_purge_t *p, json_t *obj,
    ngx_http_snapcache_scope_t *scope)
{
    json_t      *v;
    const char  *key;

    if (!json_is_object(obj)) {
        return "a scope must be a JSON object";
    }

    if (json_object_size(obj) == 0) {
        return "an empty scope";
    }

    json_object_foreach(obj, key, v) {

        if (ngx_strcmp(key, "account") == 0) {
            scope->account = ngx_http_snapcache_json_id(p->pool, v);
            if (scope->account == NULL) {
                return "\"account\" is not an id";
            }

        } else if (ngx_strcmp(key, "device") == 0) {
            scope->device = ngx_http_snapcache_json_id(p->pool, v);
            if (scope->device == NULL) {
                return "\"device\" is not an id";
            }

        } else if (ngx_strcmp(key, "snapshot") == 0) {
            scope->snapshot = ngx_http_snapcache_json_id(p->pool, v);
            if (scope->snapshot == NULL) {
                return "\"snapshot\" is not an id";
            }

        } else {
            return "unknown field in a scope";
        }
    }

    if (scope->account == NULL) {
        return "a scope needs \"account\"";
    }

    if (scope->snapshot && scope->device == NULL) {
        return "\"snapshot\" needs \"device\"";
    }

    scope->kind = scope->snapshot ? NGX_HTTP_SNAPCACHE_SCOPE_SNAPSHOT
                  : scope->device ? NGX_HTTP_SNAPCACHE_SCOPE_DEVICE
                  : NGX_HTTP_SNAPCACHE_SCOPE_ACCOUNT;

    return NULL;
}


/* A string in the URL's id grammar, copied as a C string; else NULL. */
static char *
ngx_http_snapcache_json_id(ngx_pool_t *pool, json_t *v)
{
    char        *id;
    size_t       len;
    const char  *s;

    if (!json_is_string(v)) {
        return NULL;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    if (!snapcache_id_valid(s, len)) {
        return NULL;
    }

    id = ngx_pnalloc(pool, len + 1);
    if (id == NULL) {
        return NULL;
    }

    ngx_memcpy(id, s, len);
    id[len] = '\0';

    return id;
}


/*
 * The generations first, in the zone, where every worker's fills see
 * them at once; then the deletes, on the thread pool.  A snapshot's
 * purge bumps its device's generation: coarser (other fills of that
 * device start again), never a missed purge.
 */
static ngx_int_t
ngx_http_snapcache_admin_purge(ngx_http_request_t *r,
    ngx_http_snapcache_purge_t *p)
{
    size_t                           len;
    u_char                           prefix[SNAPCACHE_CACHE_KEY_MAX];
    ngx_uint_t                       i;
    ngx_thread_task_t               *task;
    ngx_pool_cleanup_t              *cln;
    ngx_http_snapcache_scope_t      *s;
    ngx_http_snapcache_purge_t      *t;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_snapcache_module);
    smcf = p->smcf;

    if (smcf->store == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: admin: purge refused: the store is not "
                      "open in this worker");

        for (i = 0; i < p->nscopes; i++) {
            ngx_http_snapcache_count_purge(smcf, p->scopes[i].kind,
                                           NGX_HTTP_SNAPCACHE_PURGE_FAILED, 0);
        }

        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the store is not open");
    }

    task = ngx_thread_task_alloc(p->pool, 0);
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = p;
    t->task = task;
    t->request = r;
    t->thread_pool = slcf->thread_pool;
    t->start = ngx_http_snapcache_usec();

    for (i = 0; i < t->nscopes; i++) {
        s = &t->scopes[i];

        if (snapcache_cache_prefix(smcf->store, s->account, s->device, prefix,
                                   &len)
            != SNAPCACHE_CACHE_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_snapcache_gen_bump(smcf, prefix,
                                    s->device ? prefix + SNAPCACHE_TAG_LEN
                                              : NULL);
    }

    t->generation = ngx_atomic_fetch_add(&smcf->sh->metrics.purge_generation,
                                         1) + 1;

    task->ctx = t;
    task->handler = ngx_http_snapcache_purge_handler;
    task->event.data = t;
    task->event.handler = ngx_http_snapcache_purge_done;

    if (ngx_thread_task_post(slcf->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "snapcache: admin: thread pool \"%V\" queue is full, "
                      "purge answered 503", &slcf->thread_pool_name);

        ngx_http_snapcache_count_rejected(smcf);

        for (i = 0; i < t->nscopes; i++) {
            ngx_http_snapcache_count_purge(smcf, t->scopes[i].kind,
                                           NGX_HTTP_SNAPCACHE_PURGE_FAILED, 0);
        }

        cln->handler = NULL;

        return ngx_http_snapcache_admin_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the thread pool is full");
    }

    cln->handler = ngx_http_snapcache_purge_cleanup;
    cln->data = t;
    t->cleanup = cln;

    return NGX_DONE;
}


/* On a pool thread: the deletes, in chunks; the sync comes after. */
static void
ngx_http_snapcache_purge_handler(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_purge_t *t = data;

    ngx_uint_t                   i;
    ngx_http_snapcache_scope_t  *s;

    for (i = 0; i < t->nscopes; i++) {
        s = &t->scopes[i];
        s->rc = snapcache_cache_purge_nosync(t->smcf->store, s->account,
                                             s->device, s->snapshot,
                                             &s->records);
    }
}


/*
 * The deletes are committed.  A purge that removed something waits for
 * the next sync; one that found nothing has nothing to make durable.
 */
static void
ngx_http_snapcache_purge_done(ngx_event_t *ev)
{
    ngx_http_snapcache_purge_t *t = ev->data;

    ngx_uint_t                  i;
    ngx_http_snapcache_sync_t  *sy;

    sy = &ngx_http_snapcache_sync;

    if (!sy->ready) {
        ngx_queue_init(&sy->waiting);
        ngx_queue_init(&sy->in_sync);
        sy->ready = 1;
    }

    for (i = 0; i < t->nscopes; i++) {
        if (t->scopes[i].records) {
            ngx_queue_insert_tail(&sy->waiting, &t->queue);
            ngx_http_snapcache_sync_start(ev->log);
            return;
        }
    }

    t->sync_rc = SNAPCACHE_CACHE_OK;
    t->end = ngx_http_snapcache_usec();

    ngx_http_snapcache_purge_finish(t, ev->log);
}


/*
 * One sync at a time per worker, for every purge waiting when it
 * begins; purges that finish their deletes meanwhile wait for the next.
 */
static void
ngx_http_snapcache_sync_start(ngx_log_t *log)
{
    ngx_queue_t                 *q;
    ngx_thread_task_t           *task;
    ngx_http_snapcache_sync_t   *sy;
    ngx_http_snapcache_purge_t  *t;

    sy = &ngx_http_snapcache_sync;

    if (sy->running || ngx_queue_empty(&sy->waiting)) {
        return;
    }

    if (sy->task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool, 0);
        if (task == NULL) {
            goto retry;
        }

        task->ctx = sy;
        task->handler = ngx_http_snapcache_sync_handler;
        task->event.data = sy;
        task->event.handler = ngx_http_snapcache_sync_done;
        sy->task = task;
    }

    q = ngx_queue_head(&sy->waiting);
    t = ngx_queue_data(q, ngx_http_snapcache_purge_t, queue);
    sy->smcf = t->smcf;

    if (ngx_thread_task_post(t->thread_pool, sy->task) != NGX_OK) {
        goto retry;
    }

    /* everything waiting now is covered by this sync */
    ngx_queue_add(&sy->in_sync, &sy->waiting);
    ngx_queue_init(&sy->waiting);
    sy->running = 1;

    return;

retry:

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "snapcache: admin: no room in the thread pool for a "
                  "purge's sync, trying again in %d ms",
                  NGX_HTTP_SNAPCACHE_SYNC_RETRY);

    sy->retry.handler = ngx_http_snapcache_sync_retry;
    sy->retry.log = ngx_cycle->log;

    if (!sy->retry.timer_set) {
        ngx_add_timer(&sy->retry, NGX_HTTP_SNAPCACHE_SYNC_RETRY);
    }
}


static void
ngx_http_snapcache_sync_retry(ngx_event_t *ev)
{
    ngx_http_snapcache_sync_start(ev->log);
}


static void
ngx_http_snapcache_sync_handler(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_sync_t *sy = data;

    sy->rc = snapcache_cache_sync(sy->smcf->store);
}


static void
ngx_http_snapcache_sync_done(ngx_event_t *ev)
{
    ngx_http_snapcache_sync_t *sy = ev->data;

    uint64_t                     now;
    ngx_queue_t                 *q;
    ngx_http_snapcache_purge_t  *t;

    sy->running = 0;
    now = ngx_http_snapcache_usec();

    if (sy->rc != SNAPCACHE_CACHE_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "snapcache: admin: the store's sync failed: %s",
                      snapcache_cache_strerror(sy->rc));
    }

    while (!ngx_queue_empty(&sy->in_sync)) {
        q = ngx_queue_head(&sy->in_sync);
        ngx_queue_remove(q);

        t = ngx_queue_data(q, ngx_http_snapcache_purge_t, queue);
        t->sync_rc = sy->rc;
        t->end = now;

        ngx_http_snapcache_purge_finish(t, ev->log);
    }

    ngx_http_snapcache_sync_start(ev->log);
}


/* Counts the purge, answers it if its client is still there, frees it. */
static void
ngx_http_snapcache_purge_finish(ngx_http_snapcache_purge_t *t,
    ngx_log_t *log)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i, damaged;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_snapcache_scope_t  *s;

    damaged = 0;

    for (i = 0; i < t->nscopes; i++) {
        s = &t->scopes[i];

        /* deletes that may not be on disk are not a purge done */
        if (s->rc == SNAPCACHE_CACHE_OK && s->records
            && t->sync_rc != SNAPCACHE_CACHE_OK)
        {
            s->rc = t->sync_rc;
        }

        ngx_http_snapcache_count_purge(t->smcf, s->kind,
                                       s->rc == SNAPCACHE_CACHE_OK
                                       ? NGX_HTTP_SNAPCACHE_PURGE_OK
                                       : NGX_HTTP_SNAPCACHE_PURGE_FAILED,
                                       s->records);

        if (s->rc == SNAPCACHE_CACHE_DAMAGED) {
            damaged = 1;

        } else if (s->rc != SNAPCACHE_CACHE_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "snapcache: admin: purge failed: %s",
                          snapcache_cache_strerror(s->rc));
        }
    }

    if (damaged) {
        ngx_http_snapcache_store_damaged(t->smcf, log);
    }

    ngx_http_snapcache_observe_purge(t->smcf, t->end - t->start);

    r = t->request;

    if (r == NULL) {
        ngx_destroy_pool(t->pool);
        return;
    }

    /* the request outlives the purge's pool now */
    t->cleanup->handler = NULL;
    t->request = NULL;
    c = r->connection;

    rc = ngx_http_snapcache_purge_answer(r, t);

    ngx_destroy_pool(t->pool);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* Request pool cleanup: a purge outlives its client; detach it. */
static void
ngx_http_snapcache_purge_cleanup(void *data)
{
    ngx_http_snapcache_purge_t *t = data;

    t->request = NULL;
}


/*
 * What was removed per scope ("records": 0 when nothing matched), the
 * node's purge generation and the time from the bump to the sync.
 */
static ngx_int_t
ngx_http_snapcache_purge_answer(ngx_http_request_t *r,
    ngx_http_snapcache_purge_t *p)
{
    u_char                      *q;
    size_t                       size;
    uint64_t                     total, usec;
    ngx_buf_t                   *b;
    ngx_uint_t                   i, failed;
    ngx_chain_t                 *out;
    ngx_http_snapcache_scope_t  *s;

    size = sizeof("{\"purged\":[],\"records\":,\"generation\":,"
                  "\"seconds\":.,\"error\":\"some scopes failed\"}\n")
           + 3 * NGX_INT64_LEN + 8
           + p->nscopes * (sizeof("{\"account\":\"\",\"device\":\"\","
                                  "\"snapshot\":\"\",\"records\":},")
                           + 3 * SNAPCACHE_ID_MAX + NGX_INT64_LEN
                           + sizeof(",\"error\":\"\"") + 64);

    b = ngx_create_temp_buf(r->pool, size);
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_cpymem(b->last, "{\"purged\":[", sizeof("{\"purged\":[") - 1);

    total = 0;
    failed = 0;

    for (i = 0; i < p->nscopes; i++) {
        s = &p->scopes[i];

        q = ngx_sprintf(q, "%s{\"account\":\"%s\"", i ? "," : "", s->account);

        if (s->device) {
            q = ngx_sprintf(q, ",\"device\":\"%s\"", s->device);
        }

        if (s->snapshot) {
            q = ngx_sprintf(q, ",\"snapshot\":\"%s\"", s->snapshot);
        }

        if (s->rc == SNAPCACHE_CACHE_OK) {
            q = ngx_sprintf(q, ",\"records\":%uL}", s->records);
            total += s->records;

        } else {
            q = ngx_sprintf(q, ",\"records\":%uL,\"error\":\"%s\"}",
                            s->records, snapcache_cache_strerror(s->rc));
            total += s->records;
            failed = 1;
        }
    }

    usec = p->end - p->start;

    q = ngx_sprintf(q, "],\"records\":%uL,\"generation\":%uA,"
                    "\"seconds\":%uL.%06uL%s}\n",
                    total, p->generation, usec / 1000000, usec % 1000000,
                    failed ? ",\"error\":\"some scopes failed\"" : "");

    b->last = q;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    return ngx_http_snapcache_admin_send(r, failed
                                            ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                            : NGX_HTTP_OK,
                                         "application/json", out,
                                         b->last - b->pos);
}


/* {"error": "..."}: the reason is ours, never an echo of the input. */
static ngx_int_t
ngx_http_snapcache_admin_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *error)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *out;

    if (!r->request_body) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    b = ngx_create_temp_buf(r->pool, 2 * ngx_strlen(error)
                                     + sizeof("{\"error\":\"\"}\n"));
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"error\":\"", sizeof("{\"error\":\"") - 1);

    for ( /* void */ ; *error; error++) {
        if (*error == '"' || *error == '\\') {
            *p++ = '\\';
        }

        *p++ = *error;
    }

    b->last = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    return ngx_http_snapcache_admin_send(r, status, "application/json", out,
                                         b->last - b->pos);
}


static ngx_int_t
ngx_http_snapcache_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_chain_t *out, off_t len)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    ngx_http_clear_last_modified(r);
    ngx_http_clear_accept_ranges(r);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}
