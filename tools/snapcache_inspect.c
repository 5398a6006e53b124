/*
 * snapcache inspect: lists the records of a store offline, with tags
 * rather than ids, and checks every header and body checksum.
 *
 *   snapcache inspect <store dir> [--account A [--device D]]
 */

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/snapcache_cache.h"
#include "tools/snapcache_cli.h"


typedef struct {
    uint64_t  records;
    uint64_t  bad;
    uint64_t  expired;
    uint64_t  bytes;
} inspect_t;


static const char *
format_name(unsigned f)
{
    static const char  *names[] = { "orig", "jpeg", "png", "webp", "avif" };

    return f < 5 ? names[f] : "?";
}


static void
hex(const unsigned char *p, size_t n)
{
    while (n--) {
        printf("%02x", *p++);
    }
}


static int
visit(void *ctx, const unsigned char *key, size_t key_len,
    const snapcache_record_t *hdr, int check)
{
    inspect_t  *in = ctx;

    in->records++;

    if (check == SNAPCACHE_CACHE_EXPIRED) {
        in->expired++;

    } else if (check != SNAPCACHE_CACHE_OK) {
        in->bad++;
    }

    hex(key, SNAPCACHE_TAG_LEN);
    printf(" ");
    hex(key + SNAPCACHE_TAG_LEN, SNAPCACHE_TAG_LEN);

    if (check == SNAPCACHE_CACHE_CORRUPT && hdr->body_len == 0) {
        printf(" - - - corrupt header\n");
        return 0;
    }

    in->bytes += hdr->body_len;

    printf(" v%u %s %ux%u %zu bytes expires %+lld s %s\n", hdr->variant,
           format_name(hdr->format), hdr->width, hdr->height, hdr->body_len,
           (long long) (hdr->expires - (int64_t) time(NULL)),
           check == SNAPCACHE_CACHE_OK ? "ok"
                                       : snapcache_cache_strerror(check));

    (void) key_len;

    return 0;
}


int
snapcache_cmd_inspect(int argc, char **argv)
{
    int                      i;
    char                     err[512];
    size_t                   plen;
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
        return 2;
    }

    /* inspect reads a store; it must not create one */
    snprintf(err, sizeof(err), "%s/data.mdb", dir);

    if (access(err, R_OK) != 0) {
        fprintf(stderr, "snapcache inspect: no store in \"%s\"\n", dir);
        return 1;
    }

    memset(&conf, 0, sizeof(conf));
    conf.path = dir;
    conf.map_size = 1024 * 1024;

    if (snapcache_cache_open(&conf, &cache, err, sizeof(err))
        != SNAPCACHE_CACHE_OK)
    {
        fprintf(stderr, "snapcache inspect: %s\n", err);
        return 1;
    }

    plen = 0;

    if (account
        && snapcache_cache_prefix(cache, account, device, prefix, &plen)
           != SNAPCACHE_CACHE_OK)
    {
        fprintf(stderr, "snapcache inspect: invalid id\n");
        snapcache_cache_close(cache);
        return 2;
    }

    memset(&in, 0, sizeof(in));
    printf("# acct_tag dev_tag variant format size bytes expiry check\n");
    snapcache_cache_iterate(cache, prefix, plen, (int64_t) time(NULL), visit,
                            &in);
    snapcache_cache_stats(cache, &st);
    snapcache_cache_close(cache);

    printf("# records %llu (%llu expired, %llu failing checks), "
           "body bytes %llu\n", (unsigned long long) in.records,
           (unsigned long long) in.expired, (unsigned long long) in.bad,
           (unsigned long long) in.bytes);
    printf("# store: %llu entries, %llu of %llu pages used (%llu%%), "
           "page %u bytes\n", (unsigned long long) st.entries,
           (unsigned long long) st.used_pages,
           (unsigned long long) st.total_pages,
           (unsigned long long) (st.total_pages
                                 ? st.used_pages * 100 / st.total_pages : 0),
           st.page_size);

    return in.bad ? 1 : 0;
}
