
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * libFuzzer target: the record decoder, which reads whatever bytes the
 * map holds.  Random bytes rarely carry a valid header checksum, so an
 * input whose first byte is odd is "repaired" first (magic, version,
 * lengths and header checksum made right) and the fields behind the
 * checksum get fuzzed too.  Whatever the input, decode must not read
 * past it; an accepted record must describe exactly the bytes it came
 * in, survive a re-encode unchanged, and the table-free CRC32C below
 * must agree with the library's.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/snapcache_cache.h"


#define HDR  SNAPCACHE_RECORD_HEADER_LEN


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
put_le(unsigned char *p, uint64_t v, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


/* Bit-at-a-time CRC32C (Castagnoli, reflected), the reference. */
static uint32_t
crc32c_reference(const unsigned char *p, size_t len)
{
    int       k;
    size_t    i;
    uint32_t  crc;

    crc = 0xffffffff;

    for (i = 0; i < len; i++) {
        crc ^= p[i];

        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78 & (0 - (crc & 1)));
        }
    }

    return crc ^ 0xffffffff;
}


/*
 * Makes the header one decode accepts.  A negative record is only ever
 * of the original's variant and empty, so one that is not is left as an
 * image's; buf[29] chooses whether the body checksum is made right too.
 */
static void
repair(unsigned char *buf, size_t size)
{
    memcpy(buf, "SNP1", 4);
    put_le(buf + 4, 2, 2);
    put_le(buf + 6, HDR, 2);
    put_le(buf + 40, size - HDR, 4);

    if (buf[28] == SNAPCACHE_FORMAT_ABSENT) {
        if (size == HDR) {
            put_le(buf + 24, SNAPCACHE_VARIANT_ORIGINAL, 4);

        } else {
            buf[28] = SNAPCACHE_FORMAT_JPEG;
        }
    }

    if (buf[29] & 1) {
        put_le(buf + 44, snapcache_cache_checksum(buf + HDR, size - HDR), 4);
    }

    put_le(buf + 80, snapcache_cache_checksum(buf, 80), 4);
}


static void
check_accepted(const unsigned char *buf, size_t size,
    const snapcache_record_t *hdr, const unsigned char *body)
{
    size_t               len;
    unsigned char       *enc;
    snapcache_put_t      it;
    snapcache_ident_t    ident;
    snapcache_record_t   again;
    const unsigned char *body2;

    if (body != buf + HDR || hdr->body_len != size - HDR) {
        abort();
    }

    /* the whole body is readable: ASan checks the bounds */
    if (snapcache_cache_checksum(body, hdr->body_len)
        != crc32c_reference(body, hdr->body_len))
    {
        abort();
    }

    memset(&ident, 0, sizeof(ident));
    memcpy(ident.digest, hdr->digest, SNAPCACHE_DIGEST_LEN);

    memset(&it, 0, sizeof(it));
    it.ident = &ident;
    it.variant = hdr->variant;
    it.format = hdr->format;
    it.width = hdr->width;
    it.height = hdr->height;
    it.expires = hdr->expires;
    it.body = body;
    it.body_len = hdr->body_len;

    enc = malloc(size);
    if (enc == NULL) {
        return;
    }

    len = snapcache_record_encode(&it, hdr->created, enc, size);

    if (len != size
        || snapcache_record_decode(enc, len, &again, &body2)
           != SNAPCACHE_CACHE_OK
        || again.created != hdr->created || again.expires != hdr->expires
        || again.variant != hdr->variant || again.format != hdr->format
        || again.width != hdr->width || again.height != hdr->height
        || again.body_len != hdr->body_len
        || memcmp(again.digest, hdr->digest, SNAPCACHE_DIGEST_LEN) != 0
        || memcmp(body2, body, hdr->body_len) != 0
        || again.checksum != crc32c_reference(body, hdr->body_len))
    {
        abort();
    }

    free(enc);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   rc;
    unsigned char        *buf;
    snapcache_record_t    hdr;
    const unsigned char  *body;

    if (size == 0) {
        return 0;
    }

    /* an exact-size heap copy, so ASan sees any over-read */
    size--;
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 1, size);

    if ((data[0] & 1) && size >= HDR) {
        repair(buf, size);
    }

    body = NULL;
    rc = snapcache_record_decode(buf, size, &hdr, &body);

    if (rc == SNAPCACHE_CACHE_OK) {
        check_accepted(buf, size, &hdr, body);

    } else if (rc == SNAPCACHE_CACHE_OUTDATED) {
        /* an older layout's record: decoded for reports, bounds kept */
        if (body == NULL || body + hdr.body_len != buf + size) {
            abort();
        }

    } else if (rc != SNAPCACHE_CACHE_CORRUPT) {
        abort();
    }

    if ((data[0] & 1) && size >= HDR && rc != SNAPCACHE_CACHE_OK) {
        /* a repaired header is always accepted */
        abort();
    }

    free(buf);

    return 0;
}
