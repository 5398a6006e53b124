
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Eviction (expired records first, then the oldest, found through the
 * by_exp and by_age indexes) and purge by key prefix.  Both delete in
 * chunks, one write transaction each, so that other writers get their
 * turn between them.
 */

#include <string.h>

#include "cache/snapcache_cache_int.h"


/*
 * Eviction runs inside a fill's put, on a pool thread, and holds the
 * writer lock for a chunk: small enough that the next fill's put is not
 * kept waiting long, large enough to make room for a batch at once.
 */
#define EVICT_CHUNK   256

/* Purge answers an admin; about a thousand deletes per transaction. */
#define PURGE_CHUNK   1000


/*
 * One chunk of eviction: expired records first, then the oldest, until
 * usage is at or below target pages.  Returns MDB_NOTFOUND when it
 * deleted nothing: nothing left to delete, or usage already low.
 * Records of any layout go: an outdated one is found like any other, by
 * its index entries, and it is the oldest.
 */
static int
evict_chunk(snapcache_cache_t *cache, int64_t now, uint64_t target,
    uint64_t *deleted)
{
    int          rc, pass, n;
    MDB_txn     *txn;
    MDB_val      ik, iv, k;
    uint64_t     used;
    MDB_cursor  *cur;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    n = 0;

    for (pass = 0; pass < 2 && n < EVICT_CHUNK; pass++) {
        rc = mdb_cursor_open(txn, pass == 0 ? cache->by_exp : cache->by_age,
                             &cur);
        if (rc != 0) {
            goto failed;
        }

        while (n < EVICT_CHUNK) {
            rc = snapcache_rows_used_pages(cache, txn, &used);
            if (rc != 0 || used <= target) {
                break;
            }

            rc = mdb_cursor_get(cur, &ik, &iv, MDB_FIRST);
            if (rc != 0) {
                break;
            }

            if (ik.mv_size <= 8) {
                rc = mdb_cursor_del(cur, 0);
                if (rc != 0) {
                    break;
                }

                continue;
            }

            if (pass == 0 && (int64_t) snapcache_get_be64(ik.mv_data) > now) {
                break;
            }

            k.mv_data = (unsigned char *) ik.mv_data + 8;
            k.mv_size = ik.mv_size - 8;

            /* the record deletes its index entries; drop a dangling one */
            rc = snapcache_rows_delete(cache, txn, &k);

            if (rc == MDB_NOTFOUND) {
                rc = mdb_cursor_del(cur, 0);
                if (rc != 0) {
                    break;
                }

                continue;
            }

            if (rc != 0) {
                break;
            }

            n++;
        }

        mdb_cursor_close(cur);

        if (rc != 0 && rc != MDB_NOTFOUND) {
            goto failed;
        }
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return rc;
    }

    *deleted += (uint64_t) n;
    __atomic_add_fetch(&cache->evictions, (uint64_t) n, __ATOMIC_RELAXED);

    return n > 0 ? 0 : MDB_NOTFOUND;

failed:

    mdb_txn_abort(txn);

    return rc;
}


/*
 * LMDB reuses a page only once the transaction that freed it is older
 * than the oldest snapshot still visible, and the last committed one
 * always is: so the pages eviction frees become usable only after one
 * more commit.  This is that commit.
 */
static void
advance_txn(snapcache_cache_t *cache)
{
    MDB_txn  *txn;
    MDB_val   k, v;
    uint64_t  tick;

    if (mdb_txn_begin(cache->env, NULL, 0, &txn) != 0) {
        return;
    }

    tick = 0;
    k.mv_data = "tick";
    k.mv_size = 4;

    if (mdb_get(txn, cache->meta, &k, &v) == 0 && v.mv_size == sizeof(tick))
    {
        memcpy(&tick, v.mv_data, sizeof(tick));
    }

    tick++;
    v.mv_data = &tick;
    v.mv_size = sizeof(tick);

    if (mdb_put(txn, cache->meta, &k, &v, 0) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    mdb_txn_commit(txn);
}


/* Evicts, chunk by chunk, until usage is at or below target pages. */
int
snapcache_evict_to(snapcache_cache_t *cache, int64_t now, uint64_t target,
    uint64_t *evicted)
{
    int       rc;
    uint64_t  before;

    before = *evicted;

    do {
        rc = evict_chunk(cache, now, target, evicted);
    } while (rc == 0);

    if (*evicted != before) {
        advance_txn(cache);
    }

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/*
 * Deletes up to one chunk of records under prefix, in its own write
 * transaction.  Keys of any layout under the prefix go, since the
 * tags and the snapshot lead every layout's keys.
 */
static int
purge_chunk(snapcache_cache_t *cache, const unsigned char *prefix,
    size_t len, uint64_t *count, int *more)
{
    int            rc, n;
    MDB_txn       *txn;
    MDB_val        k, v;
    MDB_cursor    *cur;
    unsigned char  kbuf[SNAPCACHE_RAW_KEY_MAX];

    *more = 0;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_cursor_open(txn, cache->records, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    n = 0;

    for ( ;; ) {
        k.mv_data = (void *) prefix;
        k.mv_size = len;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || k.mv_size < len
            || memcmp(k.mv_data, prefix, len) != 0)
        {
            break;
        }

        if (n == PURGE_CHUNK) {
            *more = 1;
            break;
        }

        /* copy the key: the delete's writes may move the page */
        memcpy(kbuf, k.mv_data, k.mv_size);
        k.mv_data = kbuf;

        rc = snapcache_rows_delete(cache, txn, &k);
        if (rc != 0) {
            break;
        }

        n++;
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return rc;
    }

    rc = mdb_txn_commit(txn);
    if (rc == 0) {
        *count += (uint64_t) n;
    }

    return rc;
}


static int
purge_prefix(snapcache_cache_t *cache, const char *account,
    const char *device, const char *snapshot, uint64_t *count, int sync)
{
    int                 rc, more;
    size_t              len;
    snapcache_ident_t   ident;
    unsigned char       prefix[SNAPCACHE_CACHE_KEY_MAX];

    *count = 0;

    if (cache->read_only) {
        return SNAPCACHE_CACHE_ERROR;
    }

    if (snapshot != NULL) {
        if (account == NULL || device == NULL
            || snapcache_cache_ident(cache, account, strlen(account), device,
                                     strlen(device), snapshot,
                                     strlen(snapshot), &ident)
               != SNAPCACHE_CACHE_OK)
        {
            return SNAPCACHE_CACHE_ERROR;
        }

        memcpy(prefix, ident.prefix, ident.prefix_len);
        len = ident.prefix_len;

    } else if (snapcache_cache_prefix(cache, account, device, prefix, &len)
               != SNAPCACHE_CACHE_OK)
    {
        return SNAPCACHE_CACHE_ERROR;
    }

    do {
        rc = purge_chunk(cache, prefix, len, count, &more);
    } while (rc == 0 && more);

    /* the env runs with MDB_NOSYNC: a purge is durable when it answers */
    if (sync && *count > 0) {
        rc = rc ? rc : mdb_env_sync(cache->env, 1);
    }

    return snapcache_rows_rc(rc);
}


int
snapcache_cache_purge(snapcache_cache_t *cache, const char *account,
    const char *device, const char *snapshot, uint64_t *count)
{
    return purge_prefix(cache, account, device, snapshot, count, 1);
}


int
snapcache_cache_purge_nosync(snapcache_cache_t *cache, const char *account,
    const char *device, const char *snapshot, uint64_t *count)
{
    return purge_prefix(cache, account, device, snapshot, count, 0);
}


int
snapcache_cache_sync(snapcache_cache_t *cache)
{
    if (cache->read_only) {
        return SNAPCACHE_CACHE_ERROR;
    }

    return snapcache_rows_rc(mdb_env_sync(cache->env, 1));
}
