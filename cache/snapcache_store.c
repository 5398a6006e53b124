
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Get and put, and stats.  A record is written and deleted in
 * snapcache_rows.c, the environment opened in snapcache_env.c.  See
 * snapcache_cache.h and docs/cache.md.
 */

#include <string.h>

#include "cache/snapcache_cache_int.h"


_Static_assert(SNAPCACHE_FORMAT_ABSENT <= 0xff, "the format is one byte");


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

    if (snapcache_rows_delete(cache, txn, &k) != 0) {
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
        return snapcache_rows_rc(rc);
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = mdb_get(txn, cache->records, &k, &v);
    if (rc != 0) {
        read_end(cache, txn);
        return snapcache_rows_rc(rc);
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

    above = snapcache_rows_used_pages(cache, txn, &used) == 0
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
        rc = snapcache_rows_put(cache, txn, &items[i], now);
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

    return snapcache_rows_rc(rc);
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
        return snapcache_rows_rc(rc);
    }

    rc = mdb_stat(txn, cache->records, &st);
    if (rc == 0) {
        s->entries = st.ms_entries;
        rc = snapcache_rows_used_pages(cache, txn, &s->used_pages);
    }

    mdb_txn_abort(txn);

    s->page_size = cache->page_size;
    s->total_pages = cache->total_pages;
    s->evictions = __atomic_load_n(&cache->evictions, __ATOMIC_RELAXED);
    s->deleted_bad = __atomic_load_n(&cache->deleted_bad, __ATOMIC_RELAXED);

    return snapcache_rows_rc(rc);
}


int
snapcache_cache_extent(snapcache_cache_t *cache, uint64_t *pages)
{
    int          rc;
    MDB_envinfo  info;

    rc = mdb_env_info(cache->env, &info);
    if (rc != 0) {
        return snapcache_rows_rc(rc);
    }

    *pages = (uint64_t) info.me_last_pgno + 1;

    return SNAPCACHE_CACHE_OK;
}
