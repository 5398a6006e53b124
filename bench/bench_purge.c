
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * bench_purge: fills a store for bench/bench_purge.sh, through cache/,
 * before nginx opens it.
 *
 *   bench_purge <store dir> <map size MB> <account> <device> <n>
 *               <body bytes> <width> <quality>
 *
 * Stores n records of one device, snapshots s1..s<n>, as JPEG records of
 * the rung width/quality (the key nginx looks up for that rung), with
 * bodies of the given size, in batches of 64, expiring in a day.  The
 * bodies are not images: a hit serves a record's bytes without decoding
 * them.  Prints the time taken.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/snapcache_cache.h"
#include "transcode/snapcache_transcode.h"


#define BATCH  64


int
main(int argc, char **argv)
{
    int                      rc;
    char                     err[256], snap[32];
    size_t                   i, j, n, body_len;
    uint32_t                 variant;
    unsigned char           *body;
    struct timespec          t0, t1;
    snapcache_cache_t       *cache;
    snapcache_put_t          items[BATCH];
    snapcache_ident_t        ids[BATCH];
    snapcache_cache_conf_t   conf;

    if (argc != 9) {
        fprintf(stderr, "usage: bench_purge <store dir> <map MB> <account> "
                "<device> <n> <body bytes> <width> <quality>\n");
        return 2;
    }

    n = strtoul(argv[5], NULL, 10);
    body_len = strtoul(argv[6], NULL, 10);
    variant = snapcache_cache_variant((unsigned) atoi(argv[7]),
                                      (unsigned) atoi(argv[8]),
                                      SNAPCACHE_TRANSCODE_PIPELINE);

    body = malloc(body_len);
    if (body == NULL || variant == 0) {
        fprintf(stderr, "bench_purge: bad arguments\n");
        return 2;
    }

    for (i = 0; i < body_len; i++) {
        body[i] = (unsigned char) (i * 131 + 7);
    }

    memset(&conf, 0, sizeof(conf));
    conf.path = argv[1];
    conf.map_size = strtoul(argv[2], NULL, 10) << 20;

    if (snapcache_cache_open(&conf, &cache, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_purge: %s\n", err);
        return 1;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < n; i += BATCH) {
        for (j = 0; j < BATCH && i + j < n; j++) {
            snprintf(snap, sizeof(snap), "s%zu", i + j + 1);

            rc = snapcache_cache_ident(cache, argv[3], strlen(argv[3]),
                                       argv[4], strlen(argv[4]), snap,
                                       strlen(snap), &ids[j]);
            if (rc != SNAPCACHE_CACHE_OK) {
                fprintf(stderr, "bench_purge: bad ids\n");
                return 1;
            }

            memset(&items[j], 0, sizeof(snapcache_put_t));
            snapcache_cache_key(&ids[j], variant, SNAPCACHE_FORMAT_JPEG,
                                &items[j].key);
            items[j].ident = &ids[j];
            items[j].variant = variant;
            items[j].format = SNAPCACHE_FORMAT_JPEG;
            items[j].width = 320;
            items[j].height = 180;
            items[j].expires = (int64_t) time(NULL) + 86400;
            items[j].body = body;
            items[j].body_len = body_len;
        }

        rc = snapcache_cache_put_batch(cache, items, j, (int64_t) time(NULL),
                                       NULL, NULL);
        if (rc != SNAPCACHE_CACHE_OK) {
            fprintf(stderr, "bench_purge: put: %s\n",
                    snapcache_cache_strerror(rc));
            return 1;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    snapcache_cache_close(cache);
    free(body);

    printf("%.2f\n", (t1.tv_sec - t0.tv_sec)
                     + (t1.tv_nsec - t0.tv_nsec) / 1e9);

    return 0;
}
