
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
 *   snapcache inspect <store dir> [--account A [--device D]] [--json]
 *
 * Exits 0 when all is well, 1 when records fail their checks (get never
 * serves them, and the next fill of their key replaces them), 2 on a
 * usage error or a store that cannot be opened, 3 when the LMDB file
 * itself is damaged.  With --json, stdout is one JSON object, written as
 * the walk goes (a store may hold millions of records), and complete
 * even when the walk finds the file damaged.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cache/snapcache_cache.h"
#include "tools/snapcache_cli.h"


#define INSPECT_BAD       SNAPCACHE_EXIT_FAILED
#define INSPECT_USAGE     SNAPCACHE_EXIT_USAGE
#define INSPECT_DAMAGED   SNAPCACHE_EXIT_DAMAGED


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
    int                   json;
} inspect_t;


static char *
hex(const unsigned char *p, size_t n, char *out)
{
    static const char  digits[] = "0123456789abcdef";
    char              *o;

    for (o = out; n--; p++) {
        *o++ = digits[*p >> 4];
        *o++ = digits[*p & 0x0f];
    }

    *o = '\0';

    return out;
}


/*
 * The snapshot id between the tags and the 0x00 before the variant: 4
 * bytes of variant and 1 of format now, 1 and 1 in the older layout.
 */
static size_t
snapshot_of(const unsigned char *key, size_t len, int outdated,
    const char **snapshot)
{
    size_t  tail;

    tail = outdated ? 3 : SNAPCACHE_VARIANT_LEN + 2;

    if (len < 2 * SNAPCACHE_TAG_LEN + tail + 1
        || key[len - tail] != 0x00)
    {
        *snapshot = NULL;
        return 0;
    }

    *snapshot = (const char *) key + 2 * SNAPCACHE_TAG_LEN;

    return len - tail - 2 * SNAPCACHE_TAG_LEN;
}


static void
variant_name(const snapcache_record_t *hdr, int check, char *out,
    size_t size)
{
    if (check == SNAPCACHE_CACHE_OUTDATED) {
        snprintf(out, size, "v%u", (unsigned) hdr->variant);

    } else if (hdr->variant == SNAPCACHE_VARIANT_ORIGINAL) {
        snprintf(out, size, "original");

    } else {
        snprintf(out, size, "w%u-q%u-p%u",
                 SNAPCACHE_VARIANT_WIDTH(hdr->variant),
                 SNAPCACHE_VARIANT_QUALITY(hdr->variant),
                 SNAPCACHE_VARIANT_PIPELINE(hdr->variant));
    }
}


/* One record as a JSON object on its own line, after a comma but the first */
static void
print_record_json(inspect_t *in, const char *acct, const char *dev,
    const char *snap, size_t snap_len, const snapcache_record_t *hdr,
    int check, int header_ok)
{
    char         variant[48];
    json_t      *o;
    const char  *format;

    o = json_pack("{s:s, s:s}", "account_tag", acct, "device_tag", dev);
    if (o == NULL) {
        return;
    }

    json_object_set_new(o, "snapshot", snap ? json_stringn(snap, snap_len)
                                            : json_null());

    if (header_ok) {
        variant_name(hdr, check, variant, sizeof(variant));
        format = snapcache_format_name(hdr->format);

        json_object_set_new(o, "variant", json_string(variant));
        json_object_set_new(o, "format", format ? json_string(format)
                                                : json_null());
        json_object_set_new(o, "width", json_integer(hdr->width));
        json_object_set_new(o, "height", json_integer(hdr->height));
        json_object_set_new(o, "bytes", json_integer((json_int_t)
                                                     hdr->body_len));
        json_object_set_new(o, "expires_in",
                            json_integer(hdr->expires - in->now));
    }

    json_object_set_new(o, "check", json_string(
                            check == SNAPCACHE_CACHE_OK
                            ? "ok" : header_ok ? snapcache_cache_strerror(check)
                                               : "corrupt header"));

    printf("%s\n    ", in->listed > 1 ? "," : "");
    json_dumpf(o, stdout, JSON_COMPACT);
    json_decref(o);
}


static int
visit(void *ctx, const unsigned char *key, size_t key_len,
    const snapcache_record_t *hdr, int check)
{
    int          header_ok;
    char         acct[2 * SNAPCACHE_TAG_LEN + 1];
    char         dev[2 * SNAPCACHE_TAG_LEN + 1];
    char         variant[48];
    size_t       snap_len;
    inspect_t   *in = ctx;
    const char  *snap, *format;

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

    hex(key, key_len < SNAPCACHE_TAG_LEN ? key_len : SNAPCACHE_TAG_LEN, acct);
    hex(key + SNAPCACHE_TAG_LEN,
        key_len >= 2 * SNAPCACHE_TAG_LEN ? SNAPCACHE_TAG_LEN : 0, dev);

    snap_len = snapshot_of(key, key_len, check == SNAPCACHE_CACHE_OUTDATED,
                           &snap);

    header_ok = !(check == SNAPCACHE_CACHE_CORRUPT && hdr->created == 0
                  && hdr->body_len == 0);

    if (header_ok) {
        in->bytes += hdr->body_len;
    }

    if (in->json) {
        print_record_json(in, acct, dev, snap, snap_len, hdr, check,
                          header_ok);
        return 0;
    }

    printf("%s %s %.*s", acct, dev, snap ? (int) snap_len : 1,
           snap ? snap : "?");

    if (!header_ok) {
        printf(" - - - - corrupt header\n");
        return 0;
    }

    variant_name(hdr, check, variant, sizeof(variant));
    format = snapcache_format_name(hdr->format);

    printf(" %s %s %ux%u %zu bytes expires %+lld s %s\n", variant,
           format ? format : "?", hdr->width, hdr->height, hdr->body_len,
           (long long) (hdr->expires - in->now),
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


static void
print_head(const inspect_t *in, const char *dir)
{
    json_t  *d;

    if (!in->json) {
        printf("# acct_tag dev_tag snapshot variant format size bytes expiry "
               "check\n");
        return;
    }

    d = json_string(dir);
    printf("{\"store\": ");
    json_dumpf(d, stdout, JSON_ENCODE_ANY);
    printf(",\n \"records\": [");
    json_decref(d);
}


/* The end of the JSON object: the summary, or what is damaged. */
static void
print_tail_json(const inspect_t *in, const char *what,
    const snapcache_cache_stats_t *st)
{
    json_t  *o;

    printf("%s],\n \"summary\": ", in->listed ? "\n " : "");

    o = json_pack("{s:I, s:I, s:I, s:I, s:I}",
                  "records", (json_int_t) in->listed,
                  "expired", (json_int_t) in->expired,
                  "outdated", (json_int_t) in->outdated,
                  "failing", (json_int_t) in->bad,
                  "body_bytes", (json_int_t) in->bytes);
    json_dumpf(o, stdout, JSON_COMPACT);
    json_decref(o);

    if (what != NULL) {
        o = json_string(what);
        printf(",\n \"damaged\": ");
        json_dumpf(o, stdout, JSON_ENCODE_ANY);
        json_decref(o);

    } else {
        o = json_pack("{s:I, s:I, s:I, s:i}",
                      "entries", (json_int_t) st->entries,
                      "used_pages", (json_int_t) st->used_pages,
                      "total_pages", (json_int_t) st->total_pages,
                      "page_size", (int) st->page_size);
        printf(",\n \"lmdb\": ");
        json_dumpf(o, stdout, JSON_COMPACT);
        json_decref(o);
        printf(",\n \"damaged\": null");
    }

    printf("}\n");
}


static void
print_tail_text(const inspect_t *in, const snapcache_cache_stats_t *st)
{
    printf("# records %llu (%llu expired, %llu of an older layout, %llu "
           "failing checks), body bytes %llu\n",
           (unsigned long long) in->listed, (unsigned long long) in->expired,
           (unsigned long long) in->outdated, (unsigned long long) in->bad,
           (unsigned long long) in->bytes);
    printf("# store: %llu entries, %llu of %llu pages used (%llu%%), "
           "page %u bytes\n", (unsigned long long) st->entries,
           (unsigned long long) st->used_pages,
           (unsigned long long) st->total_pages,
           (unsigned long long) (st->total_pages
                                 ? st->used_pages * 100 / st->total_pages
                                 : 0),
           st->page_size);
}


/* The walk, the count and the trees; what is damaged, or "" */
static void
check_store(snapcache_cache_t *cache, inspect_t *in,
    snapcache_cache_stats_t *st, char *what, size_t size)
{
    int       rc;
    uint64_t  verified;

    what[0] = '\0';

    rc = snapcache_cache_iterate(cache, NULL, 0, in->now, visit, in);
    if (rc != SNAPCACHE_CACHE_OK) {
        snprintf(what, size, "the walk of the records failed after %llu: %s",
                 (unsigned long long) in->walked,
                 snapcache_cache_strerror(rc));
        return;
    }

    rc = snapcache_cache_stats(cache, st);

    if (rc != SNAPCACHE_CACHE_OK) {
        snprintf(what, size, "no stats: %s", snapcache_cache_strerror(rc));
        return;
    }

    if (in->walked != st->entries) {
        snprintf(what, size, "%llu records walked, LMDB counts %llu",
                 (unsigned long long) in->walked,
                 (unsigned long long) st->entries);
        return;
    }

    rc = snapcache_cache_verify(cache, &verified);

    if (rc != SNAPCACHE_CACHE_OK) {
        snprintf(what, size, "a tree of the file does not walk whole: %s",
                 snapcache_cache_strerror(rc));
    }
}


int
snapcache_cmd_inspect(snapcache_cli_t *cli)
{
    int                      rc;
    char                     err[512], what[128];
    size_t                   plen;
    inspect_t                in;
    const char              *dir;
    unsigned char            prefix[SNAPCACHE_CACHE_KEY_MAX];
    snapcache_cache_t       *cache;
    snapcache_cache_conf_t   conf;
    snapcache_cache_stats_t  st;

    dir = cli->args[0];

    if (cli->device && !cli->account) {
        snapcache_cli_error(cli, "--device needs --account");
        return INSPECT_USAGE;
    }

    memset(&in, 0, sizeof(in));
    in.json = cli->json;
    in.now = (int64_t) time(NULL);

    memset(&conf, 0, sizeof(conf));
    conf.path = dir;
    conf.read_only = 1;

    rc = snapcache_cache_open(&conf, &cache, err, sizeof(err));
    if (rc == SNAPCACHE_CACHE_DAMAGED) {
        if (in.json) {
            print_head(&in, dir);
            print_tail_json(&in, "it cannot be opened", NULL);
        }

        return damaged(dir, "it cannot be opened");
    }

    if (rc != SNAPCACHE_CACHE_OK) {
        snapcache_cli_error(cli, "%s", err);
        return INSPECT_USAGE;
    }

    plen = 0;

    if (cli->account
        && snapcache_cache_prefix(cache, cli->account, cli->device, prefix,
                                  &plen)
           != SNAPCACHE_CACHE_OK)
    {
        snapcache_cli_error(cli, "invalid id");
        snapcache_cache_close(cache);
        return INSPECT_USAGE;
    }

    in.prefix = prefix;
    in.prefix_len = plen;

    print_head(&in, dir);
    check_store(cache, &in, &st, what, sizeof(what));
    snapcache_cache_close(cache);

    if (in.json) {
        print_tail_json(&in, what[0] ? what : NULL, &st);
    }

    if (what[0] != '\0') {
        return damaged(dir, what);
    }

    if (!in.json) {
        print_tail_text(&in, &st);
    }

    return in.bad ? INSPECT_BAD : SNAPCACHE_EXIT_OK;
}
