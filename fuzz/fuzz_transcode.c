
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * libFuzzer target: probe and transcode on small untrusted inputs.  The
 * first byte picks the variant (width and output format); the rest is
 * the original.  Limits are small so that each run stays fast.
 * Whatever the input: no crash, a known result code with a message, an
 * output that never exceeds the variant's width or the input's size,
 * and transcode never accepting what probe refused.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transcode/snapcache_transcode.h"


#define MAX_BYTES   (256 * 1024)
#define MAX_PIXELS  (1024 * 1024)


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char  err[256];

    if (snapcache_transcode_init(err, sizeof(err))
        != SNAPCACHE_TRANSCODE_OK)
    {
        abort();
    }

    return 0;
}


static void
check_rc(int rc)
{
    const char  *msg;

    if (rc < SNAPCACHE_TRANSCODE_OK || rc > SNAPCACHE_TRANSCODE_ERROR) {
        abort();
    }

    msg = snapcache_transcode_strerror(rc);
    if (msg == NULL || msg[0] == '\0') {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        prc, trc;
    unsigned char             *buf;
    snapcache_probe_t          probe;
    snapcache_variant_spec_t   spec;
    snapcache_transcode_out_t  out;
    static const int           formats[] = { SNAPCACHE_FORMAT_JPEG,
                                             SNAPCACHE_FORMAT_WEBP };

    if (size < 1) {
        return 0;
    }

    memset(&spec, 0, sizeof(spec));
    spec.width = 8 + (data[0] & 0x7f);
    spec.quality = 60;
    spec.format = formats[data[0] >> 7];
    spec.progressive_min_width = 64;

    /* an exact-size heap copy, so ASan sees any over-read */
    size--;
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 1, size);

    prc = snapcache_transcode_probe(buf, size, MAX_BYTES, MAX_PIXELS, &probe);
    check_rc(prc);

    memset(&out, 0, sizeof(out));
    trc = snapcache_transcode(buf, size, &spec, MAX_BYTES, MAX_PIXELS, &out);
    check_rc(trc);

    if (trc == SNAPCACHE_TRANSCODE_OK) {
        if (prc != SNAPCACHE_TRANSCODE_OK
            || out.data == NULL || out.len == 0
            || out.width < 1 || out.width > spec.width
            || out.width > (probe.width > probe.height ? probe.width
                                                       : probe.height)
            || out.height < 1
            || out.format != spec.format
            || memcmp(&out.source, &probe, sizeof(probe)) != 0)
        {
            abort();
        }

        snapcache_transcode_free(out.data);

    } else if (out.data != NULL) {
        abort();
    }

    free(buf);

    return 0;
}
