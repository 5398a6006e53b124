
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapfill: makes a store of small records through cache/, for the
 * tests of `snapcache inspect` that need a store without nginx.
 *
 *   snapfill <store dir> <n> [outdated <k>]
 *
 * Creates the directory if need be and stores n records (owners
 * acct-<i%3>/cam-<i%5>/s<i>, a 320-px JPEG rung, bodies of 100-400
 * bytes); then, with outdated, plants k records of the older layout (a
 * one-byte variant in the key, an 80-byte header), as a store written
 * before the layout changed holds them.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>

#include "cache/snapcache_cache.h"


#define MAP_SIZE  (64 * 1024 * 1024)


static void
die(const char *what, const char *why)
{
    fprintf(stderr, "snapfill: %s: %s\n", what, why);
    exit(1);
}


static void
put_le(unsigned char *p, uint64_t v, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


static void
put_be64(unsigned char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char) (v >> (56 - 8 * i));
    }
}


/* A version-1 record: variant and format one byte each, 80-byte header. */
static size_t
v1_record(unsigned char *out, const snapcache_ident_t *id, int64_t now,
    const unsigned char *body, size_t len)
{
    memset(out, 0, 80);
    memcpy(out, "SNP1", 4);
    put_le(out + 4, 1, 2);
    put_le(out + 6, 80, 2);
    put_le(out + 8, (uint64_t) now, 8);
    put_le(out + 16, (uint64_t) (now + 3600), 8);
    out[24] = 1;
    out[25] = SNAPCACHE_FORMAT_JPEG;
    put_le(out + 28, 320, 4);
    put_le(out + 32, 180, 4);
    put_le(out + 36, len, 4);
    put_le(out + 40, snapcache_cache_checksum(body, len), 4);
    memcpy(out + 44, id->digest, SNAPCACHE_DIGEST_LEN);
    put_le(out + 76, snapcache_cache_checksum(out, 76), 4);
    memcpy(out + 80, body, len);

    return 80 + len;
}


/* Written with LMDB directly, with the store closed, as the old code did. */
static void
plant_outdated(const char *dir, snapcache_ident_t *ids, int k, int64_t now)
{
    int             i, rc;
    MDB_env        *env;
    MDB_txn        *txn;
    MDB_dbi         records, by_age, by_exp;
    MDB_val         key, val, ik, empty;
    unsigned char   kbuf[SNAPCACHE_CACHE_KEY_MAX], ibuf[8 + sizeof(kbuf)];
    unsigned char   rec[80 + 64], body[64];

    rc = mdb_env_create(&env);
    rc = rc ? rc : mdb_env_set_maxdbs(env, 4);
    rc = rc ? rc : mdb_env_open(env, dir, MDB_NOTLS, 0600);
    rc = rc ? rc : mdb_txn_begin(env, NULL, 0, &txn);
    rc = rc ? rc : mdb_dbi_open(txn, "records", 0, &records);
    rc = rc ? rc : mdb_dbi_open(txn, "by_age", 0, &by_age);
    rc = rc ? rc : mdb_dbi_open(txn, "by_exp", 0, &by_exp);
    if (rc != 0) {
        die(dir, mdb_strerror(rc));
    }

    empty.mv_data = "";
    empty.mv_size = 0;

    for (i = 0; i < k; i++) {
        memset(body, 'o' + i % 8, sizeof(body));
        memcpy(kbuf, ids[i].prefix, ids[i].prefix_len);
        kbuf[ids[i].prefix_len] = 1;
        kbuf[ids[i].prefix_len + 1] = SNAPCACHE_FORMAT_JPEG;

        key.mv_data = kbuf;
        key.mv_size = ids[i].prefix_len + 2;
        val.mv_data = rec;
        val.mv_size = v1_record(rec, &ids[i], now - 86400, body,
                                sizeof(body));

        /* both index entries, as version 1 wrote them */
        memcpy(ibuf + 8, kbuf, key.mv_size);
        ik.mv_data = ibuf;
        ik.mv_size = 8 + key.mv_size;

        rc = mdb_put(txn, records, &key, &val, 0);
        put_be64(ibuf, (uint64_t) (now - 86400));
        rc = rc ? rc : mdb_put(txn, by_age, &ik, &empty, 0);
        put_be64(ibuf, (uint64_t) (now - 86400 + 3600));
        rc = rc ? rc : mdb_put(txn, by_exp, &ik, &empty, 0);
        if (rc != 0) {
            die("put", mdb_strerror(rc));
        }
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        die("commit", mdb_strerror(rc));
    }

    mdb_env_close(env);
}


int
main(int argc, char **argv)
{
    int                      i, n, k;
    char                     err[512], acct[16], dev[16], snap[16];
    size_t                   len;
    int64_t                  now;
    unsigned char            body[400];
    snapcache_put_t          it;
    snapcache_cache_t       *cache;
    snapcache_ident_t       *ids;
    snapcache_cache_conf_t   conf;

    k = 0;

    if (argc == 5 && strcmp(argv[3], "outdated") == 0) {
        k = atoi(argv[4]);

    } else if (argc != 3) {
        fprintf(stderr, "usage: snapfill <store dir> <n> [outdated <k>]\n");
        return 2;
    }

    n = atoi(argv[2]);
    if (n < 0 || k < 0 || k > n) {
        die("counts", "want 0 <= k <= n");
    }

    if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
        die(argv[1], strerror(errno));
    }

    memset(&conf, 0, sizeof(conf));
    conf.path = argv[1];
    conf.map_size = MAP_SIZE;

    if (snapcache_cache_open(&conf, &cache, err, sizeof(err))
        != SNAPCACHE_CACHE_OK)
    {
        die(argv[1], err);
    }

    ids = calloc((size_t) n + 1, sizeof(snapcache_ident_t));
    if (ids == NULL) {
        die("memory", "out of memory");
    }

    now = (int64_t) time(NULL);

    for (i = 0; i < n; i++) {
        snprintf(acct, sizeof(acct), "acct-%d", i % 3);
        snprintf(dev, sizeof(dev), "cam-%d", i % 5);
        snprintf(snap, sizeof(snap), "s%d", i);

        if (snapcache_cache_ident(cache, acct, strlen(acct), dev,
                                  strlen(dev), snap, strlen(snap), &ids[i])
            != SNAPCACHE_CACHE_OK)
        {
            die("ident", snap);
        }

        len = 100 + (size_t) (i * 37) % 300;
        memset(body, 'a' + i % 26, len);

        memset(&it, 0, sizeof(it));
        it.variant = snapcache_cache_variant(320, 50, 1);
        it.format = SNAPCACHE_FORMAT_JPEG;
        snapcache_cache_key(&ids[i], it.variant, it.format, &it.key);
        it.ident = &ids[i];
        it.width = 320;
        it.height = 180;
        it.expires = now + 3600;
        it.body = body;
        it.body_len = len;

        if (snapcache_cache_put_batch(cache, &it, 1, now, NULL, NULL)
            != SNAPCACHE_CACHE_OK)
        {
            die("put", snap);
        }
    }

    snapcache_cache_close(cache);

    if (k > 0) {
        plant_outdated(argv[1], ids, k, now);
    }

    free(ids);
    printf("%d\n", n + k);

    return 0;
}
