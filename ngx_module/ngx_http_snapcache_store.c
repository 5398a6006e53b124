
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the store's lifecycle in nginx.  The master prepares the
 * store directory; the LMDB environment is opened in each worker, never
 * in the master (LMDB forbids use after fork); libvips starts there too.
 */


#include "ngx_module/ngx_http_snapcache.h"


#define NGX_HTTP_SNAPCACHE_READER_CHECK  5000
#define NGX_HTTP_SNAPCACHE_OPEN_RETRY    1000


static void ngx_http_snapcache_worker_user(ngx_conf_t *cf, ngx_uid_t *user,
    ngx_gid_t *group);
static ngx_int_t ngx_http_snapcache_check_parents(ngx_log_t *log,
    u_char *path);
static ngx_int_t ngx_http_snapcache_check_owner(ngx_log_t *log,
    ngx_file_info_t *fi, ngx_uid_t user, u_char *path, const char *name);
static ngx_int_t ngx_http_snapcache_store_file(ngx_log_t *log, int dirfd,
    u_char *path, const char *name, ngx_uid_t user, ngx_uint_t change);
static ngx_int_t ngx_http_snapcache_worker_reaches(ngx_log_t *log,
    u_char *path, ngx_uid_t user, ngx_gid_t group);
static void ngx_http_snapcache_try_open(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log);
static void ngx_http_snapcache_reader_check(ngx_event_t *ev);




/* snapcache_store <path> size=<size> [high=90%] [low=75%] */
char *
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


/*
 * In the master, as root, while the configuration is read (at every
 * start, reload and "nginx -t"), so that a refusal rejects the
 * configuration and a running nginx keeps its old one: make
 * the store directory and give it and LMDB's two files to the worker
 * user, so that workers can open the store after dropping privileges.
 * The directory may be writable by the worker user, so nothing in it is
 * trusted: every change goes through descriptors opened without
 * following links, and anything unexpected stops the configuration
 * before a single file is changed.
 */
ngx_int_t
ngx_http_snapcache_prepare_store(ngx_conf_t *cf,
    ngx_http_snapcache_main_conf_t *smcf)
{
    int               fd;
    u_char            path[NGX_MAX_PATH];
    ngx_int_t         rc;
    ngx_err_t         err;
    ngx_uid_t         user;
    ngx_gid_t         group;
    ngx_log_t        *log;
    ngx_uint_t        i;
    ngx_file_info_t   fi;

    static const char  *files[] = { "data.mdb", "lock.mdb", NULL };

    if (smcf->store_path.len == 0) {
        return NGX_OK;
    }

    log = cf->log;

    if (smcf->store_path.len + 1 > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "snapcache: the store path \"%V\" is too long",
                      &smcf->store_path);
        return NGX_ERROR;
    }

    ngx_memcpy(path, smcf->store_path.data, smcf->store_path.len);
    path[smcf->store_path.len] = '\0';

    ngx_http_snapcache_worker_user(cf, &user, &group);

    if (ngx_http_snapcache_check_parents(log, path) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mkdir((const char *) path, 0700) == -1 && ngx_errno != NGX_EEXIST) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot create the store directory \"%s\"",
                      path);
        return NGX_ERROR;
    }

    fd = open((const char *) path, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);

    if (fd == -1) {
        err = ngx_errno;

        if (lstat((const char *) path, &fi) == 0 && S_ISLNK(fi.st_mode)) {
            err = ELOOP;
        }

        ngx_log_error(NGX_LOG_EMERG, log, err,
                      "snapcache: the store \"%s\" %s", path,
                      err == ELOOP
                      ? "is a symbolic link; give the real directory"
                      : err == ENOTDIR ? "is not a directory"
                                       : "cannot be opened");
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (fstat(fd, &fi) == -1) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: fstat() \"%s\" failed", path);
        goto done;
    }

    if (geteuid() != 0 || user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        /* the workers run as we do: they can use what we can */
        if (faccessat(fd, ".", R_OK|W_OK|X_OK, AT_EACCESS) == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "snapcache: the store directory \"%s\" is not "
                          "writable", path);
            goto done;
        }

        rc = NGX_OK;
        goto done;
    }

    if (ngx_http_snapcache_check_owner(log, &fi, user, path, "")
        != NGX_OK)
    {
        goto done;
    }

    if (fi.st_mode & (S_IWGRP|S_IWOTH)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "snapcache: the store directory \"%s\" is writable "
                      "by group or others; make it 0700", path);
        goto done;
    }

    /* check every file first, so that a refusal changes nothing */
    for (i = 0; files[i]; i++) {
        if (ngx_http_snapcache_store_file(log, fd, path, files[i],
                                          user, 0)
            != NGX_OK)
        {
            goto done;
        }
    }

    for (i = 0; files[i]; i++) {
        if (ngx_http_snapcache_store_file(log, fd, path, files[i],
                                          user, 1)
            != NGX_OK)
        {
            goto done;
        }
    }

    if (fi.st_uid != user
        && fchown(fd, user, (gid_t) -1) == -1)
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot give the store directory \"%s\" "
                      "to the worker user (uid %d)", path, (int) user);
        goto done;
    }

    if ((fi.st_mode & S_IRWXU) != S_IRWXU
        && fchmod(fd, (fi.st_mode & 07777) | S_IRWXU) == -1)
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: fchmod() \"%s\" failed", path);
        goto done;
    }

    rc = ngx_http_snapcache_worker_reaches(log, path, user,
                                           group);

done:

    close(fd);

    return rc;
}


/*
 * Each directory above the store must be one that only root (or the
 * user nginx runs as) can change: otherwise the worker user could move
 * the store away and put a link to any directory in its place between
 * two starts.  World-writable directories with the sticky bit, like
 * /tmp, are fine: nobody else can rename our entries there.
 */
static ngx_int_t
ngx_http_snapcache_check_parents(ngx_log_t *log, u_char *path)
{
    u_char           *p, save;
    ngx_file_info_t   fi;

    for (p = path + 1; *p; p++) {

        if (*p != '/') {
            continue;
        }

        save = *p;
        *p = '\0';

        if (stat((const char *) path, &fi) == -1) {
            /* mkdir() below reports a missing parent */
            *p = save;
            return NGX_OK;
        }

        if ((fi.st_uid != 0 && fi.st_uid != geteuid())
            || ((fi.st_mode & (S_IWGRP|S_IWOTH))
                && !(fi.st_mode & S_ISVTX)))
        {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "snapcache: \"%s\", above the store, can be "
                          "changed by uid %d or by a group or others; "
                          "the store must sit in directories only root "
                          "can change", path, (int) fi.st_uid);
            *p = save;
            return NGX_ERROR;
        }

        *p = save;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_check_owner(ngx_log_t *log, ngx_file_info_t *fi,
    ngx_uid_t user, u_char *path, const char *name)
{
    if (fi->st_uid == 0 || fi->st_uid == user) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "snapcache: \"%s%s%s\" belongs to uid %d, neither root "
                  "nor the worker user (uid %d); refusing to use it",
                  path, name[0] ? "/" : "", name, (int) fi->st_uid,
                  (int) user);

    return NGX_ERROR;
}


/*
 * One of LMDB's files: absent, or a regular file with one link that
 * belongs to root or the worker user.  O_PATH opens nothing (a FIFO or
 * a device is never opened) and O_NOFOLLOW gives the link itself, so
 * the file checked is the file changed.
 */
static ngx_int_t
ngx_http_snapcache_store_file(ngx_log_t *log, int dirfd, u_char *path,
    const char *name, ngx_uid_t user, ngx_uint_t change)
{
    int              fd;
    ngx_int_t        rc;
    const char      *why;
    ngx_file_info_t  fi;

    fd = openat(dirfd, name, O_PATH|O_NOFOLLOW|O_CLOEXEC);

    if (fd == -1) {
        if (ngx_errno == NGX_ENOENT) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot open \"%s/%s\"", path, name);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    why = NULL;

    if (fstat(fd, &fi) == -1) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: fstat() \"%s/%s\" failed", path, name);
        goto done;
    }

    if (S_ISLNK(fi.st_mode)) {
        why = "is a symbolic link";

    } else if (!S_ISREG(fi.st_mode)) {
        why = "is not a regular file";

    } else if (fi.st_nlink != 1) {
        why = "has other hard links";
    }

    if (why) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "snapcache: \"%s/%s\" %s; refusing to use the store "
                      "(move the directory away to start a new one)",
                      path, name, why);
        goto done;
    }

    if (ngx_http_snapcache_check_owner(log, &fi, user, path, name)
        != NGX_OK)
    {
        goto done;
    }

    if (change && fi.st_uid != user
        && fchownat(fd, "", user, (gid_t) -1, AT_EMPTY_PATH) == -1)
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot give \"%s/%s\" to the worker "
                      "user (uid %d)", path, name, (int) user);
        goto done;
    }

    rc = NGX_OK;

done:

    close(fd);

    return rc;
}


/*
 * The worker user must be able to reach the store through every
 * directory above it (search permission), or every request would fail
 * at run time: say so now.  Supplementary groups are not considered.
 */
static ngx_int_t
ngx_http_snapcache_worker_reaches(ngx_log_t *log, u_char *path,
    ngx_uid_t user, ngx_gid_t group)
{
    u_char           *p, save;
    ngx_uint_t        mode;
    ngx_file_info_t   fi;

    for (p = path + 1; /* void */; p++) {

        if (*p != '/' && *p != '\0') {
            continue;
        }

        save = *p;
        *p = '\0';

        if (stat((const char *) path, &fi) == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "snapcache: stat() \"%s\" failed", path);
            *p = save;
            return NGX_ERROR;
        }

        if (fi.st_uid == user) {
            mode = (fi.st_mode >> 6) & 7;

        } else if (fi.st_gid == group) {
            mode = (fi.st_mode >> 3) & 7;

        } else {
            mode = fi.st_mode & 7;
        }

        if (!(mode & 1) || (save == '\0' && (mode & 3) != 3)) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "snapcache: the worker user (uid %d) cannot %s "
                          "\"%s\", so every request would fail; fix the "
                          "permissions or the \"user\" directive",
                          (int) user, save == '\0' ? "write to" : "search",
                          path);
            *p = save;
            return NGX_ERROR;
        }

        *p = save;

        if (save == '\0') {
            return NGX_OK;
        }
    }
}


/*
 * The user workers will run as.  The "user" directive normally comes
 * before http{}; if it is absent (or comes later), nginx's own default
 * applies, which is what a root master then uses.
 */
static void
ngx_http_snapcache_worker_user(ngx_conf_t *cf, ngx_uid_t *user,
    ngx_gid_t *group)
{
    struct group     *grp;
    struct passwd    *pwd;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    *user = ccf->user;
    *group = ccf->group;

    if (*user != (ngx_uid_t) NGX_CONF_UNSET_UINT || geteuid() != 0) {
        return;
    }

    pwd = getpwnam(NGX_USER);
    grp = getgrnam(NGX_GROUP);

    if (pwd && grp) {
        *user = pwd->pw_uid;
        *group = grp->gr_gid;
    }
}


ngx_int_t
ngx_http_snapcache_open_store(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf)
{
    char  err[512];

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

    smcf->reader_check.handler = ngx_http_snapcache_reader_check;
    smcf->reader_check.data = smcf;
    smcf->reader_check.log = cycle->log;
    smcf->reader_check.cancelable = 1;

    /*
     * A worker that cannot open the store answers 503 rather than
     * anything unverified, and tries again on its timer: a worker
     * respawned while the store was unreachable (descriptors exhausted,
     * a file moved away by hand) comes back once it is reachable.
     */
    ngx_http_snapcache_try_open(smcf, cycle->log);

    ngx_add_timer(&smcf->reader_check,
                  smcf->store ? NGX_HTTP_SNAPCACHE_READER_CHECK
                              : NGX_HTTP_SNAPCACHE_OPEN_RETRY);

    return NGX_OK;
}


static void
ngx_http_snapcache_try_open(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log)
{
    int                     rc;
    char                    err[512];
    u_char                  path[NGX_MAX_PATH];
    ngx_uint_t              level;
    snapcache_cache_conf_t  conf;

    ngx_memcpy(path, smcf->store_path.data, smcf->store_path.len);
    path[smcf->store_path.len] = '\0';

    ngx_memzero(&conf, sizeof(conf));
    conf.path = (const char *) path;
    conf.map_size = smcf->store_size;
    conf.high_pct = (unsigned) smcf->store_high;
    conf.low_pct = (unsigned) smcf->store_low;

    rc = snapcache_cache_open(&conf, (snapcache_cache_t **) &smcf->store,
                              err, sizeof(err));

    /* no purge may reach this worker's fills but through the ledger */
    if (rc == SNAPCACHE_CACHE_OK
        && ngx_http_snapcache_ledger_attach(smcf, log, path) != NGX_OK)
    {
        snapcache_cache_close(smcf->store);
        ngx_cpystrn((u_char *) err, (u_char *) "the purge ledger cannot be "
                    "used", sizeof(err));
        rc = SNAPCACHE_CACHE_ERROR;
    }

    if (rc == SNAPCACHE_CACHE_OK) {
        if (smcf->open_failures) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "snapcache: the store \"%s\" is open, after %ui "
                          "failed attempts", path, smcf->open_failures);
            smcf->open_failures = 0;
        }

        return;
    }

    smcf->store = NULL;

    /* the first failure loudly, then once a minute, not every second */
    level = (smcf->open_failures == 0) ? NGX_LOG_EMERG
            : (smcf->open_failures % 60 == 0) ? NGX_LOG_ERR : 0;

    if (level) {
        ngx_log_error(level, log, 0,
                      "snapcache: cannot open the store \"%s\" as uid %d: "
                      "%s; answering 503 and trying again every %d ms",
                      path, (int) geteuid(), err,
                      NGX_HTTP_SNAPCACHE_OPEN_RETRY);
    }

    smcf->open_failures++;
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

    ngx_http_snapcache_ledger_detach(smcf);
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
        ngx_http_snapcache_try_open(smcf, ev->log);

        if (!ngx_exiting) {
            ngx_add_timer(ev, smcf->store ? NGX_HTTP_SNAPCACHE_READER_CHECK
                                          : NGX_HTTP_SNAPCACHE_OPEN_RETRY);
        }

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
 * A store LMDB cannot walk is said once per worker, with what to do;
 * requests meanwhile are filled from the origin and not stored.
 */
void
ngx_http_snapcache_store_damaged(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log)
{
    static ngx_uint_t  logged;

    if (smcf->sh) {
        /* for snapcache_health, in every worker: the file is the same */
        smcf->sh->metrics.store_damaged = 1;
    }

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
