
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The store benchmark: at each size (default 10k and 1M records of
 * 25 KB), batched put in records/s, get (with its copy and checks) in
 * ns/op, purge of one device's 10k records in ms, and the floor: a raw
 * mdb_get with no copy, in its own read transaction per lookup as get
 * has, over the same keys, measured in the same run.
 *
 * Lookups go to a random sample of distinct keys, warmed once, so both
 * sides read from the page cache and their mapped pages, as a worker's
 * long-lived environment does: with 1M records the map (about 29 GB)
 * is larger than this machine's memory, and a cold read would measure
 * the disk.  The cold first pass is printed too.
 *
 * usage: bench_store [dir] [records...]       (env BENCH_LOOKUPS)
 */

#define _GNU_SOURCE

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "cache/snapcache_cache.h"


#define VALUE_LEN     (25 * 1024)
#define PER_DEVICE    10000
#define DEVICES       10            /* per account */
#define BATCH         32
#define NOW           1700000000
#define ROUNDS        3
#define VARIANT       snapcache_cache_variant(320, 50, 1)


typedef struct {
    snapcache_ident_t  ident;
    snapcache_key_t    key;
} lookup_t;


static const char     *dir;
static unsigned char  *noise;
static unsigned char   getbuf[VALUE_LEN + 4096];
static uint64_t        rng = 0x9e3779b97f4a7c15ull;


static uint64_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;

    return rng;
}


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static void
fail(const char *what, int rc)
{
    fprintf(stderr, "bench_store: %s: %s\n", what,
            snapcache_cache_strerror(rc));
    exit(1);
}


static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}


static void
names_of(uint64_t i, char *acct, char *dev, char *snap)
{
    uint64_t  d;

    d = i / PER_DEVICE;
    sprintf(acct, "account-%llu", (unsigned long long) (d / DEVICES));
    sprintf(dev, "device-%llu", (unsigned long long) (d % DEVICES));
    sprintf(snap, "snap-%llu", (unsigned long long) (i % PER_DEVICE));
}


static void
ident_of(snapcache_cache_t *cache, uint64_t i, snapcache_ident_t *ident)
{
    char  acct[32], dev[32], snap[32];

    names_of(i, acct, dev, snap);
    snapcache_cache_ident(cache, acct, strlen(acct), dev, strlen(dev),
                          snap, strlen(snap), ident);
}


static void *
alloc_static(void *ctx, size_t size)
{
    return size <= sizeof(getbuf) ? getbuf : NULL;
}


static snapcache_cache_t *
store_open(size_t map)
{
    int                      rc;
    char                     err[256];
    snapcache_cache_t       *cache;
    snapcache_cache_conf_t   conf;

    memset(&conf, 0, sizeof(conf));
    conf.path = dir;
    conf.map_size = map;

    rc = snapcache_cache_open(&conf, &cache, err, sizeof(err));
    if (rc != SNAPCACHE_CACHE_OK) {
        fprintf(stderr, "bench_store: open %s: %s\n", dir, err);
        exit(1);
    }

    return cache;
}


/* Stores n records in batches; every value differs in its first bytes. */
static double
fill(snapcache_cache_t *cache, uint64_t n)
{
    int                 rc;
    double              t0, busy;
    uint64_t            i, j, b;
    snapcache_put_t     items[BATCH];
    snapcache_ident_t   idents[BATCH];

    busy = 0;

    for (i = 0; i < n; i += b) {
        b = n - i < BATCH ? n - i : BATCH;

        for (j = 0; j < b; j++) {
            ident_of(cache, i + j, &idents[j]);
            memset(&items[j], 0, sizeof(snapcache_put_t));
            snapcache_cache_key(&idents[j], VARIANT, SNAPCACHE_FORMAT_JPEG,
                                &items[j].key);
            items[j].ident = &idents[j];
            items[j].variant = VARIANT;
            items[j].format = SNAPCACHE_FORMAT_JPEG;
            items[j].width = 320;
            items[j].height = 180;
            items[j].expires = NOW + 86400;
            items[j].body = noise + (i + j) % 4096;
            items[j].body_len = VALUE_LEN;
        }

        t0 = now_s();
        rc = snapcache_cache_put_batch(cache, items, b, NOW, NULL, NULL);
        busy += now_s() - t0;

        if (rc != SNAPCACHE_CACHE_OK) {
            fail("put", rc);
        }

        if (n >= 100000 && (i / BATCH) % 3125 == 0) {
            fprintf(stderr, "\r  filling: %llu of %llu",
                    (unsigned long long) i, (unsigned long long) n);
        }
    }

    if (n >= 100000) {
        fprintf(stderr, "\r%40s\r", "");
    }

    return busy;
}


/* Distinct random records, with their idents computed outside timing. */
static lookup_t *
sample(snapcache_cache_t *cache, uint64_t n, uint64_t m)
{
    uint64_t   i, j, *idx, t;
    lookup_t  *l;

    idx = malloc(n * sizeof(uint64_t));
    l = malloc(m * sizeof(lookup_t));
    if (idx == NULL || l == NULL) {
        fail("sample", SNAPCACHE_CACHE_NOMEM);
    }

    for (i = 0; i < n; i++) {
        idx[i] = i;
    }

    for (i = 0; i < m; i++) {
        j = i + rnd() % (n - i);
        t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;

        ident_of(cache, idx[i], &l[i].ident);
        snapcache_cache_key(&l[i].ident, VARIANT, SNAPCACHE_FORMAT_JPEG,
                            &l[i].key);
    }

    free(idx);

    return l;
}


static double
time_get(snapcache_cache_t *cache, const lookup_t *l, uint64_t m)
{
    int                 rc;
    double              t0;
    uint64_t            i;
    snapcache_record_t  rec;

    t0 = now_s();

    for (i = 0; i < m; i++) {
        rc = snapcache_cache_get(cache, &l[i].key, &l[i].ident, NOW, 0,
                                 &rec, alloc_static, NULL);
        if (rc != SNAPCACHE_CACHE_HIT) {
            fail("get", rc);
        }
    }

    return (now_s() - t0) / (double) m;
}


/*
 * The floor: LMDB's own lookup, no copy, one read transaction each, in
 * an environment of its own (the store is closed meanwhile): one warm
 * pass, then the best of ROUNDS.  With copy, a plain memcpy of the value
 * too: what any get that copies out must pay, before any check.
 */
static double
time_raw(size_t map, const lookup_t *l, uint64_t m, int copy)
{
    int       r, rc;
    double    t0, t, best;
    MDB_dbi   dbi;
    MDB_env  *env;
    MDB_txn  *txn;
    MDB_val   k, v;
    uint64_t  i;

    rc = mdb_env_create(&env);
    rc = rc ? rc : mdb_env_set_maxdbs(env, 4);
    rc = rc ? rc : mdb_env_set_mapsize(env, map);
    rc = rc ? rc : mdb_env_open(env, dir,
                                MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0600);
    rc = rc ? rc : mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    rc = rc ? rc : mdb_dbi_open(txn, "records", 0, &dbi);

    if (rc != 0) {
        fprintf(stderr, "bench_store: raw LMDB: %s\n", mdb_strerror(rc));
        exit(1);
    }

    /* committed, not aborted: an aborted open closes the handle */
    mdb_txn_commit(txn);

    best = 1e30;

    for (r = 0; r <= ROUNDS; r++) {
        t0 = now_s();

        for (i = 0; i < m; i++) {
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);

            k.mv_data = (void *) l[i].key.data;
            k.mv_size = l[i].key.len;

            rc = mdb_get(txn, dbi, &k, &v);
            if (rc != 0 || v.mv_size > sizeof(getbuf)) {
                fprintf(stderr, "bench_store: raw get: %s\n",
                        mdb_strerror(rc));
                exit(1);
            }

            if (copy) {
                memcpy(getbuf, v.mv_data, v.mv_size);
            }

            mdb_txn_abort(txn);
        }

        t = (now_s() - t0) / (double) m;

        if (r > 0 && t < best) {
            best = t;
        }
    }

    mdb_env_close(env);

    return best;
}


static void
run(uint64_t n, uint64_t m)
{
    int                       r;
    double                    put_s, cold, get_ns, raw_ns, copy_ns, t, t0;
    size_t                    map;
    uint64_t                  purged;
    lookup_t                 *l;
    snapcache_cache_t        *cache;
    snapcache_cache_stats_t   st;
    char                      acct[32], dev[32], snap[32];

    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(dir, 0700);

    /* values take 7 pages each; the rest is trees and headroom */
    map = (size_t) n * 7 * 4096 * 4 / 3 + (size_t) 256 * 1024 * 1024;
    m = m < n ? m : n;

    cache = store_open(map);

    put_s = fill(cache, n);
    snapcache_cache_stats(cache, &st);

    printf("records %llu x %d bytes, map %.1f GB, %llu of %llu pages used\n",
           (unsigned long long) st.entries, VALUE_LEN, map / 1e9,
           (unsigned long long) st.used_pages,
           (unsigned long long) st.total_pages);
    printf("  put (batches of %d)        %10.0f records/s  %8.0f MB/s\n",
           BATCH, n / put_s, n * (double) VALUE_LEN / put_s / 1e6);

    l = sample(cache, n, m);

    /*
     * The store stays open, as in a worker: after the first pass the
     * pages are mapped, and each side is timed warm.
     */
    cold = time_get(cache, l, m);
    get_ns = 1e30;

    for (r = 0; r < ROUNDS; r++) {
        t = time_get(cache, l, m);
        get_ns = t < get_ns ? t : get_ns;
    }

    snapcache_cache_close(cache);
    raw_ns = time_raw(map, l, m, 0);
    copy_ns = time_raw(map, l, m, 1) * 1e9;
    cache = store_open(map);

    get_ns *= 1e9;
    raw_ns *= 1e9;

    printf("  get, cold first pass      %10.0f ns/op  %10.0f ops/s"
           "  (%llu distinct keys)\n", cold * 1e9, 1 / cold,
           (unsigned long long) m);
    printf("  get, copy + checks        %10.0f ns/op  %10.0f ops/s\n",
           get_ns, 1e9 / get_ns);
    printf("  floor: raw mdb_get        %10.0f ns/op  %10.0f ops/s\n",
           raw_ns, 1e9 / raw_ns);
    printf("  get / floor               %10.2fx\n", get_ns / raw_ns);
    printf("  raw mdb_get + memcpy      %10.0f ns/op  %10.0f ops/s"
           "  (no checks)\n", copy_ns, 1e9 / copy_ns);
    printf("  get / (mdb_get + memcpy)  %10.2fx\n", get_ns / copy_ns);

    names_of(n - 1, acct, dev, snap);

    t0 = now_s();
    r = snapcache_cache_purge(cache, acct, dev, NULL, &purged);
    t = now_s() - t0;

    if (r != SNAPCACHE_CACHE_OK || purged != PER_DEVICE) {
        fprintf(stderr, "bench_store: purge: %s, %llu records\n",
                snapcache_cache_strerror(r), (unsigned long long) purged);
        exit(1);
    }

    printf("  purge one device          %10.1f ms     (%llu records)\n",
           t * 1e3, (unsigned long long) purged);

    free(l);
    snapcache_cache_close(cache);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}


int
main(int argc, char **argv)
{
    int          i;
    uint64_t     m;
    const char  *e;

    dir = argc > 1 ? argv[1] : "build/bench-store";

    e = getenv("BENCH_LOOKUPS");
    m = e ? strtoull(e, NULL, 10) : 200000;

    noise = malloc(VALUE_LEN + 4096);
    if (noise == NULL) {
        return 1;
    }

    for (i = 0; i < VALUE_LEN + 4096; i++) {
        noise[i] = (unsigned char) (rnd() >> 32);
    }

    if (argc > 2) {
        for (i = 2; i < argc; i++) {
            run(strtoull(argv[i], NULL, 10), m);
        }

    } else {
        run(10000, m);
        run(1000000, m);
    }

    return 0;
}
