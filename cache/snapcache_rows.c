
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * A record and its two index entries, written and deleted together
 * inside a caller's write transaction; the pages the store uses; and the
 * one mapping of LMDB's codes to the interface's.  Everything above
 * (open, get and put, eviction and purge, the walks) calls down to
 * these, and nothing here calls up.
 */

#include <errno.h>
#include <string.h>

#include "cache/snapcache_cache_int.h"


/* ------------------------------------------------------------ results */

/* The one place where LMDB's codes become the interface's. */
int
snapcache_rows_rc(int rc)
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


/* ------------------------------------------------------------ rows */

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
snapcache_rows_delete(snapcache_cache_t *cache, MDB_txn *txn,
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


/*
 * Writes one record of put's batch, in place of any record under its
 * key, with its two index entries: created now, and its expiry.
 */
int
snapcache_rows_put(snapcache_cache_t *cache, MDB_txn *txn,
    const snapcache_put_t *it, int64_t now)
{
    int             rc;
    MDB_val         k, v, ik, empty;
    unsigned char  *p, ibuf[SNAPCACHE_INDEX_KEY_MAX];

    k.mv_data = (void *) it->key.data;
    k.mv_size = it->key.len;

    rc = snapcache_rows_delete(cache, txn, &k);
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
snapcache_rows_used_pages(snapcache_cache_t *cache, MDB_txn *txn,
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
