
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Owner markers: test images that carry their (account, device,
 * snapshot) as large colour blocks, and the decoder that reads the owner
 * back from whatever variant was served.  This is the oracle for the
 * identity invariant (docs/architecture.md).
 *
 * The image is a 16 x 9 grid.  The four corners are a fixed sync
 * pattern; the other 140 cells hold 40 bits of a hash of each id and a
 * 20-bit check over those 120 bits.  A cell is light for 1 and dark for
 * 0, each field in its own colour, with noise inside so that encoders
 * see photo-like texture.  Grey, blank, random or mixed images fail the
 * sync, the light/dark threshold or the check, and decode to nothing.
 */

#ifndef SNAPCACHE_OWNER_MARKER_H
#define SNAPCACHE_OWNER_MARKER_H

#include <stddef.h>
#include <stdint.h>


#define SNAPCACHE_MARKER_OK           0
#define SNAPCACHE_MARKER_MISMATCH     1
#define SNAPCACHE_MARKER_UNDECODABLE  2

#define SNAPCACHE_MARKER_JPEG         1
#define SNAPCACHE_MARKER_PNG          2
#define SNAPCACHE_MARKER_WEBP         3


typedef struct {
    uint64_t  account;            /* 40-bit hashes of the ids */
    uint64_t  device;
    uint64_t  snapshot;
} snapcache_marker_t;


/* The marker an owner should carry. */
void snapcache_marker_of(const char *account, const char *device,
    const char *snapshot, snapcache_marker_t *m);

/* Renders an owner's image; *out is g_malloc'ed (free with g_free). */
int snapcache_marker_render(const char *account, const char *device,
    const char *snapshot, int width, int height, int format, int quality,
    void **out, size_t *out_len);

/*
 * The same image as a JPEG with a clock on it, for a live camera: six
 * digits (hhmmss) drawn as seven-segment strokes along the grid lines,
 * where the decoder never looks, so the marker reads back unchanged.
 * Needs at least 20 pixels a cell (320 x 180).
 */
int snapcache_marker_render_clock(const char *account, const char *device,
    const char *snapshot, int width, int height, const char *hhmmss,
    int quality, void **out, size_t *out_len);

/* Reads the marker from an encoded image; -1 when undecodable. */
int snapcache_marker_decode(const void *data, size_t len,
    snapcache_marker_t *m);

/*
 * OK, MISMATCH (why names the ids that differ) or UNDECODABLE.
 */
int snapcache_marker_check(const void *data, size_t len,
    const char *account, const char *device, const char *snapshot,
    char *why, size_t why_size);

/*
 * Stamps an owner's marker on a photograph (any format libvips reads),
 * cropped to width x height: each cell keeps the photograph's detail
 * around the marker's colour, so the bytes are those of a photograph's
 * JPEG of that quality and the owner still decodes from every variant.
 */
int snapcache_marker_stamp(const void *photo, size_t photo_len,
    const char *account, const char *device, const char *snapshot,
    int width, int height, int quality, void **out, size_t *out_len);

#endif /* SNAPCACHE_OWNER_MARKER_H */
