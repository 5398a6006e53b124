
/*
 * snapcache: the store's lifecycle in nginx and the small helpers of the
 * serving path.  The LMDB environment is opened in each worker, never in
 * the master (LMDB forbids use after fork); libvips starts there too.
 */


#include "ngx_module/ngx_http_snapcache_serve.h"
#include "adapt/snapcache_adapt.h"


#define NGX_HTTP_SNAPCACHE_READER_CHECK  5000


static void ngx_http_snapcache_reader_check(ngx_event_t *ev);


/*
 * In the master, as root: create the store directory and hand it and
 * its files to the worker user, as nginx does for its temp paths, so
 * that workers can open the store after dropping privileges.
 */
ngx_int_t
ngx_http_snapcache_prepare_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf)
{
    u_char            path[NGX_MAX_PATH];
    ngx_uint_t        i;
    ngx_core_conf_t  *ccf;

    static const char  *files[] = { "", "/data.mdb", "/lock.mdb", NULL };

    if (smcf->store_path.len == 0
        || smcf->store_path.len + sizeof("/lock.mdb") > NGX_MAX_PATH)
    {
        return NGX_OK;
    }

    ngx_memcpy(path, smcf->store_path.data, smcf->store_path.len);
    path[smcf->store_path.len] = '\0';

    if (ngx_create_dir(path, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "snapcache: cannot create the store directory \"%s\"",
                      path);
        return NGX_ERROR;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() != 0 || ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    for (i = 0; files[i]; i++) {
        ngx_sprintf(path, "%V%s%Z", &smcf->store_path, files[i]);

        if (chown((const char *) path, ccf->user, (gid_t) -1) == -1
            && ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "snapcache: cannot give \"%s\" to the worker "
                          "user (uid %d)", path, (int) ccf->user);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_snapcache_open_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf)
{
    int                     rc;
    char                    err[512];
    u_char                  path[NGX_MAX_PATH];
    snapcache_cache_conf_t  conf;

    if (snapcache_transcode_init(err, sizeof(err)) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "snapcache: libvips: %s", err);
        return NGX_ERROR;
    }

    if (smcf->store_path.len == 0
        || smcf->store_path.len >= NGX_MAX_PATH)
    {
        return NGX_OK;
    }

    ngx_memcpy(path, smcf->store_path.data, smcf->store_path.len);
    path[smcf->store_path.len] = '\0';

    ngx_memzero(&conf, sizeof(conf));
    conf.path = (const char *) path;
    conf.map_size = smcf->store_size;
    conf.high_pct = (unsigned) smcf->store_high;
    conf.low_pct = (unsigned) smcf->store_low;

    rc = snapcache_cache_open(&conf, (snapcache_cache_t **) &smcf->store,
                              err, sizeof(err));
    if (rc != SNAPCACHE_CACHE_OK) {
        /* requests then fail closed with 503; the reason is here */
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "snapcache: cannot open the store \"%s\" as uid %d: "
                      "%s", path, (int) geteuid(), err);
        smcf->store = NULL;
        return NGX_OK;
    }

    smcf->reader_check.handler = ngx_http_snapcache_reader_check;
    smcf->reader_check.data = smcf;
    smcf->reader_check.log = cycle->log;
    smcf->reader_check.cancelable = 1;

    ngx_add_timer(&smcf->reader_check, NGX_HTTP_SNAPCACHE_READER_CHECK);

    return NGX_OK;
}


void
ngx_http_snapcache_close_store(ngx_http_snapcache_main_conf_t *smcf)
{
    if (smcf->reader_check.timer_set) {
        ngx_del_timer(&smcf->reader_check);
    }

    if (smcf->store) {
        snapcache_cache_close(smcf->store);
        smcf->store = NULL;
    }
}


/*
 * A worker killed inside a read transaction leaves its reader slot
 * behind, and a stale slot stops LMDB from reusing pages: clear them.
 */
static void
ngx_http_snapcache_reader_check(ngx_event_t *ev)
{
    int                              cleared;
    ngx_http_snapcache_main_conf_t  *smcf;

    smcf = ev->data;

    if (smcf->store == NULL) {
        return;
    }

    cleared = 0;

    if (snapcache_cache_reader_check(smcf->store, &cleared)
        == SNAPCACHE_CACHE_OK
        && cleared > 0)
    {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "snapcache: cleared %d stale LMDB reader slots",
                      cleared);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_SNAPCACHE_READER_CHECK);
    }
}


/*
 * AVIF, then WebP, when the client accepts it, the variant enables it
 * and this build can encode it; JPEG otherwise.
 */
ngx_uint_t
ngx_http_snapcache_format(ngx_http_request_t *r,
    ngx_http_snapcache_variant_t *variant)
{
    unsigned          allowed;
    ngx_table_elt_t  *accept;

    accept = r->headers_in.accept;

    allowed = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)
              | (variant->formats & snapcache_transcode_formats());

    return snapcache_adapt_format(accept ? (const char *) accept->value.data
                                         : NULL,
                                  accept ? accept->value.len : 0, allowed);
}


/*
 * A damaged LMDB file fails every get and put: said once per worker,
 * loudly, with what to do; requests go on as uncached misses.
 */
void
ngx_http_snapcache_store_damaged(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log)
{
    static ngx_uint_t  logged;

    if (logged) {
        return;
    }

    logged = 1;

    ngx_log_error(NGX_LOG_CRIT, log, 0,
                  "snapcache: the store \"%V\" is damaged, every request is "
                  "served from the origin, uncached: stop nginx, move the "
                  "store directory away and start nginx, which makes a new "
                  "empty store", &smcf->store_path);
}


/* The origin's Cache-Control max-age, or -1 when it sent none. */
time_t
ngx_http_snapcache_max_age(ngx_http_request_t *r)
{
    u_char           *p, *last;
    time_t            n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return -1;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               h[i].key.len) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        if (ngx_strlcasestrn(p, last, (u_char *) "no-store", 8 - 1)
            || ngx_strlcasestrn(p, last, (u_char *) "no-cache", 8 - 1))
        {
            return 0;
        }

        p = ngx_strlcasestrn(p, last, (u_char *) "max-age=", 8 - 1);
        if (p == NULL) {
            continue;
        }

        p += 8;
        n = 0;

        while (p < last && *p >= '0' && *p <= '9' && n < 100000000) {
            n = n * 10 + (*p++ - '0');
        }

        return n;
    }
}


time_t
ngx_http_snapcache_ttl(ngx_http_snapcache_loc_conf_t *slcf, time_t max_age)
{
    time_t  ttl;

    ttl = max_age >= 0 ? max_age : slcf->ttl;

    return ngx_max(slcf->ttl_min, ngx_min(ttl, slcf->ttl_max));
}


void
ngx_http_snapcache_task_account(ngx_http_snapcache_task_t *t)
{
    ngx_uint_t  level;

    if (t->transcoded) {
        ngx_http_snapcache_stat_add(t->smcf,
                                    NGX_HTTP_SNAPCACHE_ST_TRANSCODES, 1);
    }

    if (!t->transcoded || t->no_store) {
        return;
    }

    if (t->store_rc == SNAPCACHE_CACHE_OK) {
        ngx_http_snapcache_stat_add(t->smcf, NGX_HTTP_SNAPCACHE_ST_STORED, 1);
        return;
    }

    ngx_http_snapcache_stat_add(t->smcf, NGX_HTTP_SNAPCACHE_ST_NOT_STORED, 1);

    if (t->store_rc == SNAPCACHE_CACHE_DAMAGED) {
        ngx_http_snapcache_store_damaged(t->smcf, t->log);
    }

    level = (t->store_rc == SNAPCACHE_CACHE_ABORTED) ? NGX_LOG_INFO
                                                     : NGX_LOG_WARN;

    ngx_log_error(level, t->log, 0, "snapcache: fill served uncached: %s",
                  t->store_rc == SNAPCACHE_CACHE_ABORTED
                  ? "a purge happened during the fill"
                  : snapcache_cache_strerror(t->store_rc));
}
