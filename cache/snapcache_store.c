
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The environment, get and put.  See snapcache_cache.h and
 * docs/cache.md.
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


_Static_assert(SNAPCACHE_FORMAT_ABSENT <= 0xff, "the format is one byte");


static const char  *damaged_advice =
    "the store file is damaged: stop nginx, move the store directory "
    "away and start nginx, which makes a new empty store";


/* ------------------------------------------------------------ results */

/* The one place where LMDB's codes become the interface's. */
int
snapcache_store_rc(int rc)
{
    switch (rc) {
    case 0:
        return SNAPCACHE_CACHE_OK;
    case MDB_NOTFOUND:
        return SNAPCACHE_CACHE_MISS;
    case SNAPCACHE_MDB_ABORTED:
        return SNAPCACHE_CACHE_ABORTED;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return SNAPCACHE_CACHE_FULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_BAD_TXN:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
    case MDB_PANIC:
        return SNAPCACHE_CACHE_DAMAGED;
    case ENOMEM:
        return SNAPCACHE_CACHE_NOMEM;
    default:
        return SNAPCACHE_CACHE_ERROR;
    }
}


const char *
snapcache_cache_strerror(int rc)
{
    switch (rc) {
    case SNAPCACHE_CACHE_OK:
        return "ok";
    case SNAPCACHE_CACHE_MISS:
        return "miss";
    case SNAPCACHE_CACHE_EXPIRED:
        return "expired";
    case SNAPCACHE_CACHE_FOREIGN:
        return "foreign (identity digest mismatch)";
    case SNAPCACHE_CACHE_CORRUPT:
        return "corrupt (header, body checksum or key mismatch)";
    case SNAPCACHE_CACHE_OUTDATED:
        return "outdated (an older record layout, never read)";
    case SNAPCACHE_CACHE_FULL:
        return "map full after eviction";
    case SNAPCACHE_CACHE_ABORTED:
        return "aborted by the precommit check";
    case SNAPCACHE_CACHE_SKIPPED:
        return "not stored by choice";
    case SNAPCACHE_CACHE_DAMAGED:
        return "the store file is damaged";
    case SNAPCACHE_CACHE_NOMEM:
        return "out of memory";
    default:
        return "store error";
    }
}


/* ------------------------------------------------------------ open */

static int
fail(char *err, size_t err_size, const char *what, const char *path, int rc)
{
    if (snapcache_store_rc(rc) == SNAPCACHE_CACHE_DAMAGED) {
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
    return snapcache_store_rc(mdb_reader_check(cache->env, cleared));
}


/* ------------------------------------------------------------ get */

/*
 * A read transaction: with SNAPCACHE_GET_LOOP the cache's own, renewed
 * (it keeps its reader slot and its memory between reads); otherwise a
 * new one.  read_end resets or aborts it.
 */
static int
read_begin(snapcache_cache_t *cache, unsigned flags, MDB_txn **txn)
{
    int  rc;

    if (!(flags & SNAPCACHE_GET_LOOP)) {
        return mdb_txn_begin(cache->env, NULL, MDB_RDONLY, txn);
    }

    if (cache->loop_txn) {
        rc = mdb_txn_renew(cache->loop_txn);
        if (rc == 0) {
            *txn = cache->loop_txn;
            return 0;
        }

        mdb_txn_abort(cache->loop_txn);
        cache->loop_txn = NULL;
    }

    rc = mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &cache->loop_txn);
    if (rc != 0) {
        cache->loop_txn = NULL;
        return rc;
    }

    *txn = cache->loop_txn;

    return 0;
}


static void
read_end(snapcache_cache_t *cache, MDB_txn *txn)
{
    if (txn == cache->loop_txn) {
        mdb_txn_reset(txn);
        return;
    }

    mdb_txn_abort(txn);
}

/* The variant and format a key names: its last five bytes. */
static int
key_names(const unsigned char *key, size_t len, uint32_t *variant,
    unsigned *format)
{
    const unsigned char  *p;

    if (len < SNAPCACHE_VARIANT_LEN + 1) {
        return -1;
    }

    p = key + len - SNAPCACHE_VARIANT_LEN - 1;

    *variant = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
               | (uint32_t) p[2] << 8 | p[3];
    *format = p[4];

    return 0;
}


/*
 * Whether a record may stand under a key: of its variant, and of its
 * format unless the key is a kept original's (format ANY), whose record
 * says what it is (or that the snapshot is ABSENT).
 */
static int
key_matches(const snapcache_key_t *key, uint32_t variant, unsigned format)
{
    unsigned  kf;
    uint32_t  kv;

    return key_names(key->data, key->len, &kv, &kf) == 0 && variant == kv
           && (kf == SNAPCACHE_FORMAT_ANY || format == kf);
}


/*
 * The check get makes, on a value inside a transaction: a sound header
 * of this layout, the owner's identity digest, and the variant and
 * format its key names (one owner's original under the key of its
 * thumbnail is no hit either).  The checksum is left to the caller, who
 * runs it on its own copy.
 */
static int
record_check(const snapcache_key_t *key, const MDB_val *v,
    const snapcache_ident_t *ident, snapcache_record_t *rec,
    const unsigned char **body)
{
    int  rc;

    rc = snapcache_record_decode(v->mv_data, v->mv_size, rec, body);
    if (rc != SNAPCACHE_CACHE_OK) {
        /* an old layout's key is never looked up: this one was planted */
        return SNAPCACHE_CACHE_CORRUPT;
    }

    if (memcmp(rec->digest, ident->digest, SNAPCACHE_DIGEST_LEN) != 0) {
        return SNAPCACHE_CACHE_FOREIGN;
    }

    if (!key_matches(key, rec->variant, rec->format)) {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    return SNAPCACHE_CACHE_OK;
}


/*
 * Deletes a record get found foreign or corrupt.  A fill may have
 * replaced it since the read, so the check runs again under the write
 * lock, and a good record is left alone.
 */
static void
delete_if_bad(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident)
{
    int                   rc;
    MDB_txn              *txn;
    MDB_val               k, v;
    snapcache_record_t    hdr;
    const unsigned char  *body;

    if (cache->read_only || mdb_txn_begin(cache->env, NULL, 0, &txn) != 0) {
        return;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    if (mdb_get(txn, cache->records, &k, &v) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    rc = record_check(key, &v, ident, &hdr, &body);

    if (rc == SNAPCACHE_CACHE_OK
        && snapcache_cache_checksum(body, hdr.body_len) == hdr.checksum)
    {
        mdb_txn_abort(txn);
        return;
    }

    if (snapcache_store_delete(cache, txn, &k) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    if (mdb_txn_commit(txn) == 0) {
        __atomic_add_fetch(&cache->deleted_bad, 1, __ATOMIC_RELAXED);
    }
}


int
snapcache_cache_get(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident, int64_t now, unsigned flags,
    snapcache_record_t *rec, snapcache_alloc_pt alloc, void *alloc_ctx)
{
    int                   rc, expired;
    MDB_txn              *txn;
    MDB_val               k, v;
    uint32_t              crc;
    const unsigned char  *body;

    rc = read_begin(cache, flags, &txn);
    if (rc != 0) {
        return snapcache_store_rc(rc);
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = mdb_get(txn, cache->records, &k, &v);
    if (rc != 0) {
        read_end(cache, txn);
        return snapcache_store_rc(rc);
    }

    rc = record_check(key, &v, ident, rec, &body);
    if (rc != SNAPCACHE_CACHE_OK) {
        read_end(cache, txn);

        if (!(flags & SNAPCACHE_GET_KEEP_BAD)) {
            delete_if_bad(cache, key, ident);
        }

        return rc;
    }

    expired = rec->expires <= now;

    if (expired && !(flags & SNAPCACHE_GET_STALE)) {
        read_end(cache, txn);
        return SNAPCACHE_CACHE_EXPIRED;
    }

    rec->body = alloc(alloc_ctx, rec->body_len ? rec->body_len : 1);
    if (rec->body == NULL) {
        read_end(cache, txn);
        return SNAPCACHE_CACHE_NOMEM;
    }

    /* the only read of the map's bytes: into caller memory, then done */
    crc = snapcache_crc32c_copy(rec->body, body, rec->body_len);
    read_end(cache, txn);

    if (crc != rec->checksum) {
        if (!(flags & SNAPCACHE_GET_KEEP_BAD)) {
            delete_if_bad(cache, key, ident);
        }

        return SNAPCACHE_CACHE_CORRUPT;
    }

    return expired ? SNAPCACHE_CACHE_EXPIRED : SNAPCACHE_CACHE_HIT;
}


/*
 * Whether a fresh, well-formed record of this owner is under the key: its
 * header only, no body copied or summed.  For deciding what a fill still
 * has to make, never for serving.
 */
int
snapcache_cache_fresh(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident, int64_t now, unsigned flags)
{
    int                   rc;
    MDB_txn              *txn;
    MDB_val               k, v;
    snapcache_record_t    rec;
    const unsigned char  *body;

    if (read_begin(cache, flags, &txn) != 0) {
        return 0;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = mdb_get(txn, cache->records, &k, &v) == 0
         && record_check(key, &v, ident, &rec, &body) == SNAPCACHE_CACHE_OK
         && rec.expires > now;

    read_end(cache, txn);

    return rc;
}


/* ------------------------------------------------------------ writes */

static size_t
index_key(unsigned char *out, int64_t when, const void *key, size_t len)
{
    int  i;

    for (i = 0; i < 8; i++) {
        out[i] = (unsigned char) ((uint64_t) when >> (56 - 8 * i));
    }

    memcpy(out + 8, key, len);

    return 8 + len;
}


/*
 * Deletes a record and its two index entries, for a record of either
 * layout; any key LMDB holds is accepted, so that nothing in the file
 * is beyond purge.  The key is copied first: callers pass keys that
 * point into a page of an index (eviction), and deleting from that
 * index shifts the page under the pointer.  MDB_NOTFOUND when there is
 * no such record.
 */
int
snapcache_store_delete(snapcache_cache_t *cache, MDB_txn *txn,
    const MDB_val *key)
{
    int            rc;
    int64_t        created, expires;
    MDB_val        k, v, ik;
    unsigned char  kbuf[SNAPCACHE_RAW_KEY_MAX];
    unsigned char  ibuf[8 + SNAPCACHE_RAW_KEY_MAX];

    if (key->mv_size == 0 || key->mv_size > sizeof(kbuf)) {
        return MDB_NOTFOUND;
    }

    memcpy(kbuf, key->mv_data, key->mv_size);
    k.mv_data = kbuf;
    k.mv_size = key->mv_size;

    rc = mdb_get(txn, cache->records, &k, &v);
    if (rc != 0) {
        return rc;
    }

    if (snapcache_record_times(v.mv_data, v.mv_size, &created, &expires)
        == 0)
    {
        ik.mv_data = ibuf;
        ik.mv_size = index_key(ibuf, created, kbuf, k.mv_size);
        rc = mdb_del(txn, cache->by_age, &ik, NULL);

        if (rc == 0 || rc == MDB_NOTFOUND) {
            ik.mv_size = index_key(ibuf, expires, kbuf, k.mv_size);
            rc = mdb_del(txn, cache->by_exp, &ik, NULL);
        }

        if (rc != 0 && rc != MDB_NOTFOUND) {
            return rc;
        }
    }

    /* a header beyond trust leaves its index entries: eviction drops them */
    return mdb_del(txn, cache->records, &k, NULL);
}


static int
put_record(snapcache_cache_t *cache, MDB_txn *txn, const snapcache_put_t *it,
    int64_t now)
{
    int             rc;
    MDB_val         k, v, ik, empty;
    unsigned char  *p, ibuf[SNAPCACHE_INDEX_KEY_MAX];

    k.mv_data = (void *) it->key.data;
    k.mv_size = it->key.len;

    rc = snapcache_store_delete(cache, txn, &k);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }

    v.mv_size = SNAPCACHE_RECORD_HEADER_LEN + it->body_len;

    rc = mdb_put(txn, cache->records, &k, &v, MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }

    p = v.mv_data;
    snapcache_record_header(p, it, now,
                            snapcache_crc32c_copy(
                                p + SNAPCACHE_RECORD_HEADER_LEN, it->body,
                                it->body_len));

    empty.mv_data = "";
    empty.mv_size = 0;
    ik.mv_data = ibuf;

    ik.mv_size = index_key(ibuf, now, k.mv_data, k.mv_size);
    rc = mdb_put(txn, cache->by_age, &ik, &empty, 0);
    if (rc != 0) {
        return rc;
    }

    ik.mv_size = index_key(ibuf, it->expires, k.mv_data, k.mv_size);

    return mdb_put(txn, cache->by_exp, &ik, &empty, 0);
}


/* Pages in use: the four trees, the free list's own pages, the metas. */
int
snapcache_store_used_pages(snapcache_cache_t *cache, MDB_txn *txn,
    uint64_t *used)
{
    int        i, rc;
    MDB_dbi    dbis[5];
    MDB_stat   st;

    dbis[0] = cache->meta;
    dbis[1] = cache->records;
    dbis[2] = cache->by_age;
    dbis[3] = cache->by_exp;
    dbis[4] = 0;                       /* the free list */

    *used = 2;                         /* the two meta pages */

    for (i = 0; i < 5; i++) {
        rc = mdb_stat(txn, dbis[i], &st);
        if (rc != 0) {
            return rc;
        }

        *used += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }

    return 0;
}


/* Whether usage plus need pages would cross the high watermark. */
static int
usage_above_high(snapcache_cache_t *cache, uint64_t need)
{
    int        above;
    MDB_txn   *txn;
    uint64_t   used;

    if (mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn) != 0) {
        return 0;
    }

    above = snapcache_store_used_pages(cache, txn, &used) == 0
            && used + need > cache->total_pages * cache->high_pct / 100;

    mdb_txn_abort(txn);

    return above;
}


static int
put_once(snapcache_cache_t *cache, const snapcache_put_t *items, size_t n,
    int64_t now, snapcache_precommit_pt precommit, void *precommit_ctx)
{
    int       rc;
    size_t    i;
    MDB_txn  *txn;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    for (i = 0; i < n; i++) {
        rc = put_record(cache, txn, &items[i], now);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return rc;
        }
    }

    if (precommit) {
        cache->put_txn = txn;
        rc = precommit(precommit_ctx);
        cache->put_txn = NULL;

        if (rc != 0) {
            mdb_txn_abort(txn);
            return SNAPCACHE_MDB_ABORTED;
        }
    }

    return mdb_txn_commit(txn);
}


/* Is the record under key the one created then with that checksum? */
static int
record_is(MDB_txn *txn, snapcache_cache_t *cache, const snapcache_key_t *key,
    int64_t created, uint32_t checksum)
{
    MDB_val             k, v;
    snapcache_record_t  hdr;

    k.mv_size = key->len;
    k.mv_data = (void *) key->data;

    if (mdb_get(txn, cache->records, &k, &v) != 0
        || snapcache_record_decode(v.mv_data, v.mv_size, &hdr, NULL)
           != SNAPCACHE_CACHE_OK)
    {
        return 0;
    }

    return hdr.created == created && hdr.checksum == checksum;
}


int
snapcache_cache_unchanged(snapcache_cache_t *cache,
    const snapcache_key_t *key, int64_t created, uint32_t checksum)
{
    if (cache->put_txn == NULL) {
        return 0;
    }

    return record_is(cache->put_txn, cache, key, created, checksum);
}


int
snapcache_cache_still(snapcache_cache_t *cache, const snapcache_key_t *key,
    int64_t created, uint32_t checksum, unsigned flags)
{
    int       rc;
    MDB_txn  *txn;

    if (read_begin(cache, flags, &txn) != 0) {
        return 0;
    }

    rc = record_is(txn, cache, key, created, checksum);

    read_end(cache, txn);

    return rc;
}


/* At most one fsync a second, by whichever writer thread gets there. */
static void
sync_now(snapcache_cache_t *cache, int64_t now)
{
    int64_t  last;

    last = __atomic_load_n(&cache->last_sync, __ATOMIC_RELAXED);

    if (now != last
        && __atomic_compare_exchange_n(&cache->last_sync, &last, now, 0,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    {
        mdb_env_sync(cache->env, 1);
    }
}


/*
 * A record must be one that get would serve under its key: a put that
 * could never be read back is a caller's bug, refused here.
 */
static int
item_valid(const snapcache_put_t *it)
{
    if (it->ident == NULL || it->key.len > SNAPCACHE_CACHE_KEY_MAX
        || it->body_len > UINT32_MAX || it->format > 0xff
        || !key_matches(&it->key, it->variant, it->format))
    {
        return 0;
    }

    return it->format != SNAPCACHE_FORMAT_ABSENT
           || (it->variant == SNAPCACHE_VARIANT_ORIGINAL
               && it->body_len == 0);
}


int
snapcache_cache_put_batch(snapcache_cache_t *cache,
    const snapcache_put_t *items, size_t n, int64_t now,
    snapcache_precommit_pt precommit, void *precommit_ctx)
{
    int       rc, dead;
    size_t    i, bytes;
    uint64_t  evicted, need, target, low, high, pages;

    if (cache->read_only) {
        return SNAPCACHE_CACHE_ERROR;
    }

    pages = 0;

    for (i = 0, bytes = 0; i < n; i++) {
        if (!item_valid(&items[i])) {
            return SNAPCACHE_CACHE_ERROR;
        }

        bytes += SNAPCACHE_RECORD_HEADER_LEN + items[i].body_len;

        /* its overflow pages (16 bytes of page header), one for indexes */
        pages += (SNAPCACHE_RECORD_HEADER_LEN + items[i].body_len + 16
                  + cache->page_size - 1) / cache->page_size + 1;
    }

    evicted = 0;
    low = cache->total_pages * cache->low_pct / 100;
    high = cache->total_pages * cache->high_pct / 100;

    /* branch pages, the free list's own pages */
    pages += 8;

    if (pages > high) {
        /* it would never fit the configured size */
        return SNAPCACHE_CACHE_FULL;
    }

    /* evict before the batch would take usage over the high watermark */
    if (usage_above_high(cache, pages)) {
        target = high - pages;
        snapcache_evict_to(cache, now, low < target ? low : target,
                           &evicted);
    }

    rc = put_once(cache, items, n, now, precommit, precommit_ctx);

    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
        /* a dead reader's slot pins every page freed since: clear it */
        mdb_reader_check(cache->env, &dead);

        /* make room for this batch below the low watermark, then retry */
        need = bytes / cache->page_size + 4 * n + 16;
        target = low > 2 * need ? low - 2 * need : 0;

        /*
         * Large values need contiguous pages; in a map that is small
         * next to them, free space is too fragmented to rely on.
         */
        if (need * 20 > cache->total_pages) {
            target /= 2;
        }

        snapcache_evict_to(cache, now, target, &evicted);

        rc = put_once(cache, items, n, now, precommit, precommit_ctx);

        if (rc == MDB_MAP_FULL && target > 0) {
            /* still fragmented: one last, deeper eviction */
            snapcache_evict_to(cache, now, target / 4, &evicted);
            rc = put_once(cache, items, n, now, precommit, precommit_ctx);
        }
    }

    if (rc == 0) {
        sync_now(cache, now);
    }

    return snapcache_store_rc(rc);
}


/* ------------------------------------------------------------ stats */

int
snapcache_cache_stats(snapcache_cache_t *cache, snapcache_cache_stats_t *s)
{
    int        rc;
    MDB_txn   *txn;
    MDB_stat   st;

    memset(s, 0, sizeof(snapcache_cache_stats_t));

    rc = mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return snapcache_store_rc(rc);
    }

    rc = mdb_stat(txn, cache->records, &st);
    if (rc == 0) {
        s->entries = st.ms_entries;
        rc = snapcache_store_used_pages(cache, txn, &s->used_pages);
    }

    mdb_txn_abort(txn);

    s->page_size = cache->page_size;
    s->total_pages = cache->total_pages;
    s->evictions = __atomic_load_n(&cache->evictions, __ATOMIC_RELAXED);
    s->deleted_bad = __atomic_load_n(&cache->deleted_bad, __ATOMIC_RELAXED);

    return snapcache_store_rc(rc);
}


int
snapcache_cache_extent(snapcache_cache_t *cache, uint64_t *pages)
{
    int          rc;
    MDB_envinfo  info;

    rc = mdb_env_info(cache->env, &info);
    if (rc != 0) {
        return snapcache_store_rc(rc);
    }

    *pages = (uint64_t) info.me_last_pgno + 1;

    return SNAPCACHE_CACHE_OK;
}
