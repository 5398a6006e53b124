
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache inspect: lists the records of a store offline, with tags
 * rather than ids, and checks every header and body checksum, then
 * every tree of the LMDB file.  It opens the store read-only and never
 * creates or writes anything.
 *
 *   snapcache inspect <store dir> [--account A [--device D]]
 *
 * Exits 0 when all is well, 1 when records fail their checks (get never
 * serves them, and the next fill of their key replaces them), 2 on a
 * usage error or a store that cannot be opened, 3 when the LMDB file
 * itself is damaged.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/snapcache_cache.h"
#include "tools/snapcache_cli.h"


#define INSPECT_BAD       1
#define INSPECT_USAGE     2
#define INSPECT_DAMAGED   3


typedef struct {
    const unsigned char  *prefix;
    size_t                prefix_len;
    uint64_t              walked;
    uint64_t              listed;
    uint64_t              bad;
    uint64_t              expired;
    uint64_t              outdated;
    uint64_t              bytes;
    int64_t               now;
} inspect_t;


static void
hex(const unsigned char *p, size_t n)
{
    while (n--) {
        printf("%02x", *p++);
    }
}


/*
 * The snapshot id between the tags and the 0x00 before the variant: 4
 * bytes of variant and 1 of format now, 1 and 1 in the older layout.
 */
static void
print_snapshot(const unsigned char *key, size_t len, int outdated)
{
    size_t  tail, n;

    tail = outdated ? 3 : SNAPCACHE_VARIANT_LEN + 2;

    if (len < 2 * SNAPCACHE_TAG_LEN + tail + 1
        || key[len - tail] != 0x00)
    {
        printf(" ?");
        return;
    }

    n = len - tail - 2 * SNAPCACHE_TAG_LEN;
    printf(" %.*s", (int) n, (const char *) key + 2 * SNAPCACHE_TAG_LEN);
}


static void
print_variant(const snapcache_record_t *hdr, int check)
{
    const char  *name;

    if (check == SNAPCACHE_CACHE_OUTDATED) {
        printf(" v%u", (unsigned) hdr->variant);

    } else if (hdr->variant == SNAPCACHE_VARIANT_ORIGINAL) {
        printf(" original");

    } else {
        printf(" w%u-q%u-p%u", SNAPCACHE_VARIANT_WIDTH(hdr->variant),
               SNAPCACHE_VARIANT_QUALITY(hdr->variant),
               SNAPCACHE_VARIANT_PIPELINE(hdr->variant));
    }

    name = snapcache_format_name(hdr->format);
    printf(" %s", name ? name : "?");
}


static int
visit(void *ctx, const unsigned char *key, size_t key_len,
    const snapcache_record_t *hdr, int check)
{
    inspect_t  *in = ctx;

    /* the whole store is walked, so that its count can be checked */
    in->walked++;

    if (key_len < in->prefix_len
        || memcmp(key, in->prefix, in->prefix_len) != 0)
    {
        return 0;
    }

    in->listed++;

    switch (check) {
    case SNAPCACHE_CACHE_OK:
        break;
    case SNAPCACHE_CACHE_EXPIRED:
        in->expired++;
        break;
    case SNAPCACHE_CACHE_OUTDATED:
        in->outdated++;
        break;
    default:
        in->bad++;
    }

    hex(key, key_len < SNAPCACHE_TAG_LEN ? key_len : SNAPCACHE_TAG_LEN);
    printf(" ");

    if (key_len >= 2 * SNAPCACHE_TAG_LEN) {
        hex(key + SNAPCACHE_TAG_LEN, SNAPCACHE_TAG_LEN);
    }

    print_snapshot(key, key_len, check == SNAPCACHE_CACHE_OUTDATED);

    if (check == SNAPCACHE_CACHE_CORRUPT && hdr->created == 0
        && hdr->body_len == 0)
    {
        printf(" - - - - corrupt header\n");
        return 0;
    }

    in->bytes += hdr->body_len;

    print_variant(hdr, check);
    printf(" %ux%u %zu bytes expires %+lld s %s\n", hdr->width, hdr->height,
           hdr->body_len, (long long) (hdr->expires - in->now),
           check == SNAPCACHE_CACHE_OK ? "ok"
                                       : snapcache_cache_strerror(check));

    return 0;
}


static int
damaged(const char *dir, const char *what)
{
    fprintf(stderr, "snapcache inspect: the store in \"%s\" is damaged (%s).\n"
            "  Stop nginx, move the store directory away and start nginx: "
            "it makes a new,\n  empty store, and fills it again from the "
            "origin.\n", dir, what);

    return INSPECT_DAMAGED;
}


int
snapcache_cmd_inspect(int argc, char **argv)
{
    int                      i, rc;
    char                     err[512], what[128];
    size_t                   plen;
    uint64_t                 verified;
    inspect_t                in;
    const char              *dir, *account, *device;
    unsigned char            prefix[SNAPCACHE_CACHE_KEY_MAX];
    snapcache_cache_t       *cache;
    snapcache_cache_conf_t   conf;
    snapcache_cache_stats_t  st;

    dir = account = device = NULL;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--account") == 0 && i + 1 < argc) {
            account = argv[++i];
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else if (dir == NULL && argv[i][0] != '-') {
            dir = argv[i];
        } else {
            dir = NULL;
            break;
        }
    }

    if (dir == NULL || (device && !account)) {
        fprintf(stderr, "usage: snapcache inspect <store dir> "
                "[--account A [--device D]]\n");
        return INSPECT_USAGE;
    }

    memset(&conf, 0, sizeof(conf));
    conf.path = dir;
    conf.read_only = 1;

    rc = snapcache_cache_open(&conf, &cache, err, sizeof(err));
    if (rc == SNAPCACHE_CACHE_DAMAGED) {
        return damaged(dir, "it cannot be opened");
    }

    if (rc != SNAPCACHE_CACHE_OK) {
        fprintf(stderr, "snapcache inspect: %s\n", err);
        return INSPECT_USAGE;
    }

    plen = 0;

    if (account
        && snapcache_cache_prefix(cache, account, device, prefix, &plen)
           != SNAPCACHE_CACHE_OK)
    {
        fprintf(stderr, "snapcache inspect: invalid id\n");
        snapcache_cache_close(cache);
        return INSPECT_USAGE;
    }

    memset(&in, 0, sizeof(in));
    in.prefix = prefix;
    in.prefix_len = plen;
    in.now = (int64_t) time(NULL);

    printf("# acct_tag dev_tag snapshot variant format size bytes expiry "
           "check\n");

    what[0] = '\0';

    rc = snapcache_cache_iterate(cache, NULL, 0, in.now, visit, &in);
    if (rc != SNAPCACHE_CACHE_OK) {
        snprintf(what, sizeof(what), "the walk of the records failed "
                 "after %llu: %s", (unsigned long long) in.walked,
                 snapcache_cache_strerror(rc));
    }

    if (what[0] == '\0') {
        rc = snapcache_cache_stats(cache, &st);

        if (rc != SNAPCACHE_CACHE_OK) {
            snprintf(what, sizeof(what), "no stats: %s",
                     snapcache_cache_strerror(rc));

        } else if (in.walked != st.entries) {
            snprintf(what, sizeof(what), "%llu records walked, LMDB counts "
                     "%llu", (unsigned long long) in.walked,
                     (unsigned long long) st.entries);
        }
    }

    if (what[0] == '\0') {
        rc = snapcache_cache_verify(cache, &verified);

        if (rc != SNAPCACHE_CACHE_OK) {
            snprintf(what, sizeof(what), "a tree of the file does not walk "
                     "whole: %s", snapcache_cache_strerror(rc));
        }
    }

    snapcache_cache_close(cache);

    if (what[0] != '\0') {
        return damaged(dir, what);
    }

    printf("# records %llu (%llu expired, %llu of an older layout, %llu "
           "failing checks), body bytes %llu\n",
           (unsigned long long) in.listed, (unsigned long long) in.expired,
           (unsigned long long) in.outdated, (unsigned long long) in.bad,
           (unsigned long long) in.bytes);
    printf("# store: %llu entries, %llu of %llu pages used (%llu%%), "
           "page %u bytes\n", (unsigned long long) st.entries,
           (unsigned long long) st.used_pages,
           (unsigned long long) st.total_pages,
           (unsigned long long) (st.total_pages
                                 ? st.used_pages * 100 / st.total_pages : 0),
           st.page_size);

    return in.bad ? INSPECT_BAD : 0;
}
