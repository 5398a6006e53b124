
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The record codec: an 84-byte header (docs/cache.md has the table),
 * then the body.  Integers are little-endian.  A record of the older,
 * 80-byte layout (version 1, a one-byte variant) is still decoded, as
 * OUTDATED, so that inspect can show it and eviction can find its index
 * entries; get never serves one.
 */

#include <string.h>

#include "cache/snapcache_cache_int.h"


#define RECORD_MAGIC       "SNP1"
#define RECORD_VERSION     2

#define V1_VERSION         1
#define V1_HEADER_LEN      80


static void
put_u16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
}


static void
put_u32(unsigned char *p, uint32_t v)
{
    int  i;

    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


static void
put_u64(unsigned char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


static unsigned
get_u16(const unsigned char *p)
{
    return (unsigned) p[0] | (unsigned) p[1] << 8;
}


static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


static uint64_t
get_u64(const unsigned char *p)
{
    int       i;
    uint64_t  v;

    v = 0;

    for (i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }

    return v;
}


void
snapcache_record_header(unsigned char *h, const snapcache_put_t *item,
    int64_t now, uint32_t body_crc)
{
    memcpy(h, RECORD_MAGIC, 4);
    put_u16(h + 4, RECORD_VERSION);
    put_u16(h + 6, SNAPCACHE_RECORD_HEADER_LEN);
    put_u64(h + 8, (uint64_t) now);
    put_u64(h + 16, (uint64_t) item->expires);
    put_u32(h + 24, item->variant);
    h[28] = (unsigned char) item->format;
    memset(h + 29, 0, 3);
    put_u32(h + 32, item->width);
    put_u32(h + 36, item->height);
    put_u32(h + 40, (uint32_t) item->body_len);
    put_u32(h + 44, body_crc);
    memcpy(h + 48, item->ident->digest, SNAPCACHE_DIGEST_LEN);
    put_u32(h + 80, snapcache_cache_checksum(h, 80));
}


size_t
snapcache_record_encode(const snapcache_put_t *item, int64_t now,
    unsigned char *out, size_t out_size)
{
    size_t  len;

    len = SNAPCACHE_RECORD_HEADER_LEN + item->body_len;

    if (len > out_size || item->body_len > UINT32_MAX || item->format > 0xff
        || (item->format == SNAPCACHE_FORMAT_ABSENT
            && (item->variant != SNAPCACHE_VARIANT_ORIGINAL
                || item->body_len != 0)))
    {
        return 0;
    }

    snapcache_record_header(out, item, now,
                            snapcache_cache_checksum(item->body,
                                                     item->body_len));
    memcpy(out + SNAPCACHE_RECORD_HEADER_LEN, item->body, item->body_len);

    return len;
}


/* The 80-byte header of version 1, for what inspect and eviction need. */
static int
decode_v1(const unsigned char *h, size_t len, snapcache_record_t *hdr)
{
    if (len < V1_HEADER_LEN
        || get_u16(h + 6) != V1_HEADER_LEN
        || get_u32(h + 76) != snapcache_cache_checksum(h, 76)
        || get_u32(h + 36) != len - V1_HEADER_LEN)
    {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    hdr->created = (int64_t) get_u64(h + 8);
    hdr->expires = (int64_t) get_u64(h + 16);
    hdr->variant = h[24];
    hdr->format = h[25];
    hdr->width = get_u32(h + 28);
    hdr->height = get_u32(h + 32);
    hdr->body_len = get_u32(h + 36);
    hdr->checksum = get_u32(h + 40);
    memcpy(hdr->digest, h + 44, SNAPCACHE_DIGEST_LEN);

    return SNAPCACHE_CACHE_OUTDATED;
}


/*
 * Checks a record's header: magic, version, length, and the header's own
 * checksum; a negative record must have the original's variant and no
 * body.  The body checksum is left to the caller, who checks it on its
 * copy.
 */
int
snapcache_record_decode(const void *data, size_t len,
    snapcache_record_t *hdr, const unsigned char **body)
{
    int                   rc;
    const unsigned char  *h;

    h = data;

    memset(hdr, 0, sizeof(snapcache_record_t));

    if (len < 8 || memcmp(h, RECORD_MAGIC, 4) != 0) {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    if (get_u16(h + 4) == V1_VERSION) {
        rc = decode_v1(h, len, hdr);

        if (rc == SNAPCACHE_CACHE_OUTDATED && body) {
            *body = h + V1_HEADER_LEN;
        }

        return rc;
    }

    if (get_u16(h + 4) != RECORD_VERSION
        || len < SNAPCACHE_RECORD_HEADER_LEN
        || get_u16(h + 6) != SNAPCACHE_RECORD_HEADER_LEN
        || get_u32(h + 80) != snapcache_cache_checksum(h, 80)
        || get_u32(h + 40) != len - SNAPCACHE_RECORD_HEADER_LEN)
    {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    hdr->created = (int64_t) get_u64(h + 8);
    hdr->expires = (int64_t) get_u64(h + 16);
    hdr->variant = get_u32(h + 24);
    hdr->format = h[28];
    hdr->width = get_u32(h + 32);
    hdr->height = get_u32(h + 36);
    hdr->body_len = get_u32(h + 40);
    hdr->checksum = get_u32(h + 44);
    memcpy(hdr->digest, h + 48, SNAPCACHE_DIGEST_LEN);

    if (hdr->format == SNAPCACHE_FORMAT_ABSENT
        && (hdr->variant != SNAPCACHE_VARIANT_ORIGINAL || hdr->body_len != 0))
    {
        memset(hdr, 0, sizeof(snapcache_record_t));
        return SNAPCACHE_CACHE_CORRUPT;
    }

    if (body) {
        *body = h + SNAPCACHE_RECORD_HEADER_LEN;
    }

    return SNAPCACHE_CACHE_OK;
}


/*
 * The times a record's index entries are keyed by, from a sound header
 * of either layout; -1 when the header cannot be trusted.
 */
int
snapcache_record_times(const void *data, size_t len, int64_t *created,
    int64_t *expires)
{
    int                 rc;
    snapcache_record_t  hdr;

    rc = snapcache_record_decode(data, len, &hdr, NULL);

    if (rc != SNAPCACHE_CACHE_OK && rc != SNAPCACHE_CACHE_OUTDATED) {
        return -1;
    }

    *created = hdr.created;
    *expires = hdr.expires;

    return 0;
}
