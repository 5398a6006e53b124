
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The read-only walks: iterate, for inspect's listing, and verify,
 * which tells a damaged file from a healthy one by walking every tree.
 */

#include <string.h>

#include "cache/snapcache_cache_int.h"


/* The whole check of a record as it lies in the map, body included. */
static int
record_state(const MDB_val *v, int64_t now, snapcache_record_t *hdr)
{
    int                   rc;
    const unsigned char  *body;

    rc = snapcache_record_decode(v->mv_data, v->mv_size, hdr, &body);
    if (rc != SNAPCACHE_CACHE_OK) {
        return rc;
    }

    if (snapcache_cache_checksum(body, hdr->body_len) != hdr->checksum) {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    return hdr->expires <= now ? SNAPCACHE_CACHE_EXPIRED : SNAPCACHE_CACHE_OK;
}


int
snapcache_cache_iterate(snapcache_cache_t *cache,
    const unsigned char *prefix, size_t prefix_len, int64_t now,
    snapcache_visit_pt visit, void *ctx)
{
    int                  rc, check;
    MDB_txn             *txn;
    MDB_val              k, v;
    MDB_cursor          *cur;
    snapcache_record_t   hdr;

    rc = mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return snapcache_rows_rc(rc);
    }

    rc = mdb_cursor_open(txn, cache->records, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return snapcache_rows_rc(rc);
    }

    k.mv_data = (void *) prefix;
    k.mv_size = prefix_len;

    rc = mdb_cursor_get(cur, &k, &v, prefix_len ? MDB_SET_RANGE : MDB_FIRST);

    while (rc == 0) {
        if (k.mv_size < prefix_len
            || memcmp(k.mv_data, prefix, prefix_len) != 0)
        {
            break;
        }

        check = record_state(&v, now, &hdr);

        if (visit(ctx, k.mv_data, k.mv_size, &hdr, check) != 0) {
            break;
        }

        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    /* the end of the records, or a cursor that failed on the way */
    return rc == MDB_NOTFOUND ? SNAPCACHE_CACHE_OK : snapcache_rows_rc(rc);
}


/* Walks one tree entry by entry; its count must be the one LMDB keeps. */
static int
walk_tree(MDB_txn *txn, MDB_dbi dbi, uint64_t *walked)
{
    int          rc;
    MDB_val      k, v;
    MDB_stat     st;
    MDB_cursor  *cur;

    *walked = 0;

    rc = mdb_stat(txn, dbi, &st);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        (*walked)++;
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        return rc;
    }

    return *walked == st.ms_entries ? 0 : MDB_CORRUPTED;
}


int
snapcache_cache_verify(snapcache_cache_t *cache, uint64_t *records)
{
    int        i, rc;
    MDB_dbi    dbis[4];
    MDB_txn   *txn;
    uint64_t   walked;

    *records = 0;

    rc = mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return snapcache_rows_rc(rc);
    }

    dbis[0] = cache->records;
    dbis[1] = cache->by_age;
    dbis[2] = cache->by_exp;
    dbis[3] = cache->meta;

    for (i = 0; i < 4; i++) {
        rc = walk_tree(txn, dbis[i], &walked);

        if (i == 0) {
            *records = walked;
        }

        if (rc != 0) {
            break;
        }
    }

    mdb_txn_abort(txn);

    return snapcache_rows_rc(rc);
}
