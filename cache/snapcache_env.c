
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The environment: open (read-write, or read-only for the tools), the
 * store secret, close, and clearing dead readers' slots.  See
 * snapcache_cache.h and docs/cache.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cache/snapcache_cache_int.h"


static const char  *damaged_advice =
    "the store file is damaged: stop nginx, move the store directory "
    "away and start nginx, which makes a new empty store";


/* ------------------------------------------------------------ open */

static int
fail(char *err, size_t err_size, const char *what, const char *path, int rc)
{
    if (snapcache_rows_rc(rc) == SNAPCACHE_CACHE_DAMAGED) {
        snprintf(err, err_size, "%s \"%s\": %s; %s", what, path,
                 mdb_strerror(rc), damaged_advice);
        return SNAPCACHE_CACHE_DAMAGED;
    }

    snprintf(err, err_size, "%s \"%s\": %s", what, path, mdb_strerror(rc));

    return rc == ENOMEM ? SNAPCACHE_CACHE_NOMEM : SNAPCACHE_CACHE_ERROR;
}


static int
open_dbis(snapcache_cache_t *cache, MDB_txn *txn, unsigned flags)
{
    int  rc;

    rc = mdb_dbi_open(txn, "meta", flags, &cache->meta);

    if (rc == 0) {
        rc = mdb_dbi_open(txn, "records", flags, &cache->records);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(txn, "by_age", flags, &cache->by_age);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(txn, "by_exp", flags, &cache->by_exp);
    }

    return rc;
}


/*
 * The store secret keys every tag and digest; it is made once, in the
 * first write transaction that finds none, so concurrent first opens
 * agree on one.  A read-only open only reads it.
 */
static int
load_secret(snapcache_cache_t *cache, unsigned char *secret)
{
    int       rc;
    MDB_txn  *txn;
    MDB_val   k, v;

    rc = mdb_txn_begin(cache->env, NULL, cache->read_only ? MDB_RDONLY : 0,
                       &txn);
    if (rc != 0) {
        return rc;
    }

    rc = open_dbis(cache, txn, cache->read_only ? 0 : MDB_CREATE);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    k.mv_data = "secret";
    k.mv_size = 6;

    rc = mdb_get(txn, cache->meta, &k, &v);

    if (rc == 0 && v.mv_size == SNAPCACHE_SECRET_LEN) {
        memcpy(secret, v.mv_data, SNAPCACHE_SECRET_LEN);

        /* commit, not abort: an aborted txn closes the dbi handles */
        return mdb_txn_commit(txn);
    }

    if (cache->read_only || (rc != 0 && rc != MDB_NOTFOUND)) {
        mdb_txn_abort(txn);
        return rc != 0 ? rc : MDB_INVALID;
    }

    if (RAND_bytes(secret, SNAPCACHE_SECRET_LEN) != 1) {
        mdb_txn_abort(txn);
        return EIO;
    }

    v.mv_data = secret;
    v.mv_size = SNAPCACHE_SECRET_LEN;

    rc = mdb_put(txn, cache->meta, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    return mdb_txn_commit(txn);
}


/* A sparse data file turns a full disk into SIGBUS: allocate it now. */
static int
preallocate(const char *dir, size_t size, char *err, size_t err_size)
{
    int          fd, rc;
    char         path[4096];
    struct stat  st;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);

    fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1) {
        return fail(err, err_size, "cannot open", path, errno);
    }

    if (fstat(fd, &st) == 0 && (size_t) st.st_size >= size
        && (size_t) st.st_blocks * 512 >= size)
    {
        close(fd);
        return SNAPCACHE_CACHE_OK;
    }

    rc = posix_fallocate(fd, 0, (off_t) size);
    close(fd);

    if (rc != 0) {
        snprintf(err, err_size, "cannot preallocate %zu bytes for \"%s\": "
                 "%s", size, path, strerror(rc));
        return SNAPCACHE_CACHE_ERROR;
    }

    return SNAPCACHE_CACHE_OK;
}


/*
 * LMDB never maps less than the pages the file already uses, and a map
 * that ends at the last used page leaves no page for eviction's own
 * copy-on-write: after size= was lowered, every write, eviction's
 * deletes included, failed with MDB_MAP_FULL.  So the map is never
 * smaller than the data file; the configured size is the budget the
 * watermarks are of, and eviction brings the store down to it.  Every
 * process of the store computes the same map from the same file.
 */
static size_t
map_size_for(const char *dir, size_t configured)
{
    char         path[4096];
    struct stat  st;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);

    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)
        && (size_t) st.st_size > configured)
    {
        return (size_t) st.st_size;
    }

    return configured;
}


/*
 * Whether another process has the environment open: each holds a lock
 * on the first byte of lock.mdb while it does.  Only asked by a
 * read-only open, which must not be made in a process that has the
 * store open (closing any descriptor of lock.mdb would drop its locks).
 */
static int
store_in_use(const char *dir)
{
    int           fd, busy;
    char          path[4096];
    struct flock  fl;

    snprintf(path, sizeof(path), "%s/lock.mdb", dir);

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1) {
        return 0;
    }

    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;

    busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);

    return busy;
}


/*
 * Read-only: the store must exist, and nothing is created or written.
 * Offline, MDB_NOLOCK keeps even the lock file as it is; while nginx
 * has the store open, the read takes a reader slot in lock.mdb, as LMDB
 * requires for a consistent snapshot next to a writer.
 */
static int
open_read_only(snapcache_cache_t *cache, const snapcache_cache_conf_t *conf,
    char *err, size_t err_size)
{
    int          rc;
    char         path[4096];
    unsigned     flags;
    struct stat  st;

    snprintf(path, sizeof(path), "%s/data.mdb", conf->path);

    if (lstat(path, &st) != 0) {
        snprintf(err, err_size, "no store in \"%s\": %s", conf->path,
                 strerror(errno));
        return SNAPCACHE_CACHE_ERROR;
    }

    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "no store in \"%s\": data.mdb is not a "
                 "regular file", conf->path);
        return SNAPCACHE_CACHE_ERROR;
    }

    flags = MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD;

    if (!store_in_use(conf->path)) {
        flags |= MDB_NOLOCK;
    }

    rc = mdb_env_create(&cache->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(cache->env, 4);
    }

    if (rc == 0) {
        rc = mdb_env_open(cache->env, conf->path, flags, 0600);
    }

    if (rc != 0) {
        return fail(err, err_size, "cannot open LMDB environment",
                    conf->path, rc);
    }

    return SNAPCACHE_CACHE_OK;
}


static int
open_read_write(snapcache_cache_t *cache, const snapcache_cache_conf_t *conf,
    char *err, size_t err_size)
{
    int           rc, dead;
    MDB_envinfo   info;

    if (access(conf->path, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "the store directory \"%s\" is not writable "
                 "by uid %d: %s", conf->path, (int) geteuid(),
                 strerror(errno));
        return SNAPCACHE_CACHE_ERROR;
    }

    rc = mdb_env_create(&cache->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(cache->env, 4);
    }

    if (rc == 0) {
        rc = mdb_env_set_mapsize(cache->env,
                                 map_size_for(conf->path, conf->map_size));
    }

    if (rc == 0) {
        rc = mdb_env_set_maxreaders(cache->env, 256);
    }

    if (rc == 0) {
        /*
         * MDB_NOSYNC: a commit per fill must not wait for the disk.  A
         * crashed worker loses nothing (the pages are in the page cache);
         * the writers sync at most once a second (sync_now) to bound
         * what a crash of the machine can take back, and purge syncs.
         */
        rc = mdb_env_open(cache->env, conf->path,
                          MDB_NOTLS | MDB_NORDAHEAD | MDB_NOSYNC, 0600);
    }

    if (rc != 0) {
        return fail(err, err_size, "cannot open LMDB environment",
                    conf->path, rc);
    }

    mdb_reader_check(cache->env, &dead);

    rc = mdb_env_info(cache->env, &info);
    if (rc != 0) {
        return fail(err, err_size, "cannot read the environment of",
                    conf->path, rc);
    }

    return preallocate(conf->path, info.me_mapsize, err, err_size);
}


int
snapcache_cache_open(const snapcache_cache_conf_t *conf,
    snapcache_cache_t **out, char *err, size_t err_size)
{
    int                 rc;
    MDB_stat            st;
    MDB_envinfo         info;
    unsigned char       secret[SNAPCACHE_SECRET_LEN];
    snapcache_cache_t  *cache;

    *out = NULL;

    cache = calloc(1, sizeof(snapcache_cache_t));
    if (cache == NULL) {
        snprintf(err, err_size, "out of memory");
        return SNAPCACHE_CACHE_NOMEM;
    }

    cache->read_only = conf->read_only != 0;
    cache->high_pct = conf->high_pct ? conf->high_pct : 90;
    cache->low_pct = conf->low_pct ? conf->low_pct : 75;

    if (cache->low_pct >= cache->high_pct || cache->high_pct > 100) {
        free(cache);
        snprintf(err, err_size, "watermarks must be low < high <= 100");
        return SNAPCACHE_CACHE_ERROR;
    }

    if (!cache->read_only && conf->map_size == 0) {
        free(cache);
        snprintf(err, err_size, "a store needs a map size");
        return SNAPCACHE_CACHE_ERROR;
    }

    rc = cache->read_only ? open_read_only(cache, conf, err, err_size)
                          : open_read_write(cache, conf, err, err_size);
    if (rc != SNAPCACHE_CACHE_OK) {
        goto failed;
    }

    if (mdb_env_stat(cache->env, &st) != 0
        || mdb_env_info(cache->env, &info) != 0)
    {
        rc = fail(err, err_size, "cannot read the environment of",
                  conf->path, EIO);
        goto failed;
    }

    cache->page_size = st.ms_psize;
    cache->total_pages = (cache->read_only ? info.me_mapsize
                                           : conf->map_size)
                         / cache->page_size;

    rc = load_secret(cache, secret);
    if (rc != 0) {
        OPENSSL_cleanse(secret, sizeof(secret));
        rc = fail(err, err_size, "cannot read the store secret in",
                  conf->path, rc);
        goto failed;
    }

    rc = snapcache_keys_prepare(cache, secret, sizeof(secret));
    OPENSSL_cleanse(secret, sizeof(secret));

    if (rc != 0) {
        snprintf(err, err_size, "cannot set up HMAC-SHA256");
        rc = SNAPCACHE_CACHE_ERROR;
        goto failed;
    }

    *out = cache;

    return SNAPCACHE_CACHE_OK;

failed:

    snapcache_cache_close(cache);

    return rc;
}


void
snapcache_cache_close(snapcache_cache_t *cache)
{
    if (cache == NULL) {
        return;
    }

    if (cache->loop_txn) {
        mdb_txn_abort(cache->loop_txn);
    }

    if (cache->env) {
        mdb_env_close(cache->env);
    }

    snapcache_keys_free(cache);
    free(cache);
}


int
snapcache_cache_reader_check(snapcache_cache_t *cache, int *cleared)
{
    return snapcache_rows_rc(mdb_reader_check(cache->env, cleared));
}
