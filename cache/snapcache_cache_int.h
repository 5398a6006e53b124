
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * What the files of cache/ share.  Private: nothing outside cache/
 * includes this; snapcache_cache.h is the interface.
 *
 *   snapcache_crc32c.c   CRC32C, and the copy that checksums as it goes
 *   snapcache_record.c   the record codec
 *   snapcache_keys.c     HMAC tags, identity digests, keys and variants
 *   snapcache_rows.c     a record and its two index entries, pages in
 *                        use, LMDB's codes made the interface's
 *   snapcache_env.c      the environment: open, close, readers
 *   snapcache_evict.c    eviction and purge
 *   snapcache_store.c    get and put (evicting first), stats
 *   snapcache_walk.c     iterate and verify, the read-only walks
 *
 * A file calls only files above it in this list, so that there is no
 * cycle between them: what several files use inside a transaction is in
 * snapcache_rows.c, above all of its callers.
 *
 * Internal functions speak LMDB's error codes (0, MDB_*, errno values);
 * each public function converts once, with snapcache_rows_rc(), as it
 * returns.
 */

#ifndef SNAPCACHE_CACHE_INT_H
#define SNAPCACHE_CACHE_INT_H

#include <lmdb.h>
#include <openssl/evp.h>

#include "cache/snapcache_cache.h"


#define SNAPCACHE_SECRET_LEN      32
#define SNAPCACHE_INDEX_KEY_MAX   (8 + SNAPCACHE_CACHE_KEY_MAX)

/* LMDB's own limit on a key: any key in the file fits (0.9 default) */
#define SNAPCACHE_RAW_KEY_MAX     511

/* put's precommit said no; not an LMDB code */
#define SNAPCACHE_MDB_ABORTED     (-1)


_Static_assert(SNAPCACHE_CACHE_KEY_MAX <= SNAPCACHE_RAW_KEY_MAX,
               "a key fits LMDB's key size");


struct snapcache_cache_s {
    MDB_env        *env;
    MDB_dbi         meta;
    MDB_dbi         records;
    MDB_dbi         by_age;         /* created(8, BE) | key */
    MDB_dbi         by_exp;         /* expires(8, BE) | key */

    /* what the watermarks are of: the configured size, not the map's */
    uint64_t        total_pages;
    unsigned        page_size;
    unsigned        high_pct;
    unsigned        low_pct;
    unsigned        read_only;

    uint64_t        evictions;
    uint64_t        deleted_bad;    /* foreign or corrupt, deleted by get */
    int64_t         last_sync;

    /* the read transaction of SNAPCACHE_GET_LOOP's one thread, kept
       reset between reads: no allocation and no reader-slot lock each */
    MDB_txn        *loop_txn;

    /* put's write transaction while its precommit check runs: there is
       one writer at a time, LMDB's lock sees to that */
    MDB_txn        *put_txn;

    /* HMAC-SHA256 keyed once with the store secret: a snapcache_hmac_t,
       which the event loop and the thread pool MAC with at once */
    void           *hmac;

    /* this opening's own number, which the identity memo belongs to */
    uint64_t        serial;
};


static inline uint64_t
snapcache_get_be64(const unsigned char *p)
{
    int       i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }

    return v;
}


/* snapcache_crc32c.c */
uint32_t snapcache_crc32c_copy(void *dst, const void *src, size_t len);

/* snapcache_record.c */
void snapcache_record_header(unsigned char *h, const snapcache_put_t *item,
    int64_t now, uint32_t body_crc);
int snapcache_record_times(const void *data, size_t len, int64_t *created,
    int64_t *expires);

/* snapcache_keys.c */
int snapcache_keys_prepare(snapcache_cache_t *cache,
    const unsigned char *secret, size_t len);
void snapcache_keys_free(snapcache_cache_t *cache);

/* snapcache_rows.c */
int snapcache_rows_rc(int mdb_rc);
int snapcache_rows_delete(snapcache_cache_t *cache, MDB_txn *txn,
    const MDB_val *key);
int snapcache_rows_put(snapcache_cache_t *cache, MDB_txn *txn,
    const snapcache_put_t *it, int64_t now);
int snapcache_rows_used_pages(snapcache_cache_t *cache, MDB_txn *txn,
    uint64_t *used);

/* snapcache_evict.c */
int snapcache_evict_to(snapcache_cache_t *cache, int64_t now,
    uint64_t target, uint64_t *evicted);

#endif /* SNAPCACHE_CACHE_INT_H */
