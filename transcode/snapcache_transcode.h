
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache transcode: the whole interface of transcode/.
 *
 * Turns an untrusted original (JPEG, PNG or WebP, in memory) into one
 * variant: auto-rotated, shrunk on load to the variant's width (never
 * enlarged), converted to sRGB, stripped of all metadata, and encoded as
 * JPEG, WebP or AVIF.  The same input and variant give the same bytes.
 *
 * Call snapcache_transcode_init() once per process; then probe and
 * transcode are safe from any thread.  Plain C11 plus libvips; no nginx
 * header.
 */

#ifndef SNAPCACHE_TRANSCODE_H
#define SNAPCACHE_TRANSCODE_H

#include <stddef.h>

#include "format/snapcache_format.h"


/*
 * The version of the pipeline's output.  Bump it whenever the same
 * input and spec would give different bytes (another libvips step,
 * option or encoder setting): it is part of every variant's cache key,
 * so records made by an older pipeline are never served again.
 */
#define SNAPCACHE_TRANSCODE_PIPELINE  1


#define SNAPCACHE_TRANSCODE_RUNGS  16


typedef enum {
    SNAPCACHE_TRANSCODE_OK = 0,
    SNAPCACHE_TRANSCODE_TOO_LARGE,         /* more bytes than max_bytes */
    SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS,   /* header beyond max_pixels */
    SNAPCACHE_TRANSCODE_UNSUPPORTED,       /* not JPEG, PNG or WebP */
    SNAPCACHE_TRANSCODE_TRUNCATED,
    SNAPCACHE_TRANSCODE_CORRUPT,
    SNAPCACHE_TRANSCODE_ENCODER_MISSING,   /* e.g. AVIF in this build */
    SNAPCACHE_TRANSCODE_BAD_VARIANT,
    SNAPCACHE_TRANSCODE_ERROR
} snapcache_transcode_rc_e;


typedef struct {
    int  format;                  /* snapcache_format_e */
    int  width;
    int  height;
} snapcache_probe_t;


typedef struct {
    int  width;                   /* target width; never upscaled */
    int  quality;                 /* 1..100 */
    int  format;                  /* SNAPCACHE_FORMAT_JPEG, WEBP, AVIF */
    int  progressive_min_width;   /* JPEG at least this wide is
                                     progressive; 0 means 1000 */
} snapcache_variant_spec_t;


typedef struct {
    unsigned char      *data;     /* free with snapcache_transcode_free */
    size_t              len;
    int                 width;
    int                 height;
    int                 format;
    snapcache_probe_t   source;   /* the original's, so no second probe */
} snapcache_transcode_out_t;


/*
 * Once per process, after fork: starts libvips with its operation cache
 * off (it would hand one user's pixels to the next), one thread per
 * call, untrusted operations blocked and only the JPEG, PNG and WebP
 * buffer loaders allowed.
 */
int snapcache_transcode_init(char *err, size_t err_size);

/* The output formats this build can encode, as SNAPCACHE_FORMAT_BIT bits. */
unsigned snapcache_transcode_formats(void);

/* Reads the header only: format and size, within the limits. */
int snapcache_transcode_probe(const void *data, size_t len, size_t max_bytes,
    unsigned long max_pixels, snapcache_probe_t *probe);

/* data must stay alive until this returns: libvips decodes lazily. */
int snapcache_transcode(const void *data, size_t len,
    const snapcache_variant_spec_t *spec, size_t max_bytes,
    unsigned long max_pixels, snapcache_transcode_out_t *out);

/*
 * Up to SNAPCACHE_TRANSCODE_RUNGS rungs of one original: outs[i] and
 * rcs[i] are what snapcache_transcode() would give for specs[i], byte for
 * byte, for less work.  Returns the header's result (then every rcs[i]
 * is that too), else OK with a result per rung.
 */
int snapcache_transcode_rungs(const void *data, size_t len,
    const snapcache_variant_spec_t *specs, size_t n, size_t max_bytes,
    unsigned long max_pixels, snapcache_transcode_out_t *outs, int *rcs);

void snapcache_transcode_free(void *data);
const char *snapcache_transcode_strerror(int rc);

#endif /* SNAPCACHE_TRANSCODE_H */
