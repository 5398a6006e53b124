
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * transcode/: the libvips variant pipeline.  Sizes per input format and
 * variant, no upscale, progressive JPEG, EXIF orientation, metadata
 * stripped, truncated, oversized and disallowed inputs, zero and random
 * bytes, clean state after every failure, determinism, and isolation
 * (a reused input buffer, two threads at once) with owner-marker
 * images.  Every input is generated here.  With SNAPCACHE_FUZZ_SEEDS set
 * to a directory, the small inputs are also written there as the seed
 * corpus of fuzz/fuzz_transcode.
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "transcode/snapcache_transcode.h"
#include "t/lib/owner_marker.h"
#include "t/unit/tap.h"


#define MB          (1024 * 1024)
#define MAX_BYTES   (32 * MB)
#define MAX_PIXELS  (40 * 1000 * 1000)
#define ROUNDS      500


typedef struct {
    unsigned char  *data;
    size_t          len;
} blob_t;


static uint64_t  rng_state = 0x2545f4914f6cdd1dull;
static blob_t    small_jpeg;


static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;

    return rng_state;
}


/* ------------------------------------------------------------ inputs */

/* Gradients with noise: photo-like enough that encoders work for it. */
static VipsImage *
photo_like(int width, int height, unsigned seed)
{
    int             x, y;
    size_t          size;
    uint64_t        s;
    VipsImage      *img;
    unsigned char  *px, *p;

    size = (size_t) width * height * 3;
    px = malloc(size);
    if (px == NULL) {
        return NULL;
    }

    s = 0x9e3779b97f4a7c15ull * (seed + 1);
    p = px;

    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;

            p[0] = (unsigned char) (x * 255 / width + (s & 31));
            p[1] = (unsigned char) (y * 255 / height + ((s >> 8) & 31));
            p[2] = (unsigned char) ((x + y + seed * 40) & 0xff);
            p += 3;
        }
    }

    img = vips_image_new_from_memory_copy(px, size, width, height, 3,
                                          VIPS_FORMAT_UCHAR);
    free(px);

    return img;
}


static int
save(VipsImage *img, int format, int strip, blob_t *out)
{
    void    *buf;
    size_t   len;
    int      rc;

    switch (format) {
    case SNAPCACHE_FORMAT_PNG:
        rc = vips_pngsave_buffer(img, &buf, &len, "strip", strip,
                                 "compression", 1, NULL);
        break;
    case SNAPCACHE_FORMAT_WEBP:
        rc = vips_webpsave_buffer(img, &buf, &len, "Q", 85, "strip", strip,
                                  NULL);
        break;
    default:
        rc = vips_jpegsave_buffer(img, &buf, &len, "Q", 85, "strip", strip,
                                  NULL);
    }

    if (rc != 0) {
        diag("save: %s", vips_error_buffer());
        vips_error_clear();
        return -1;
    }

    out->data = buf;
    out->len = len;

    return 0;
}


static int
make_photo(int width, int height, int format, unsigned seed, blob_t *out)
{
    int         rc;
    VipsImage  *img;

    img = photo_like(width, height, seed);
    if (img == NULL) {
        return -1;
    }

    rc = save(img, format, 1, out);
    g_object_unref(img);

    return rc;
}


static void
blob_free(blob_t *b)
{
    g_free(b->data);
    b->data = NULL;
    b->len = 0;
}


static const char *
format_name(int format)
{
    const char  *name;

    name = snapcache_format_name((unsigned) format);

    return name ? name : "?";
}


static void
seed_write(const char *name, unsigned char variant, const void *data,
    size_t len)
{
    char           path[4096];
    FILE          *f;
    const char    *dir;

    dir = getenv("SNAPCACHE_FUZZ_SEEDS");
    if (dir == NULL || len > 64 * 1024) {
        return;
    }

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "wb");
    if (f == NULL) {
        return;
    }

    fputc(variant, f);
    fwrite(data, 1, len, f);
    fclose(f);
}


/* ------------------------------------------------------------ outputs */

static int
run(const blob_t *in, int width, int format, int progressive_min,
    snapcache_transcode_out_t *out)
{
    snapcache_variant_spec_t  spec;

    memset(&spec, 0, sizeof(spec));
    spec.width = width;
    spec.quality = 80;
    spec.format = format;
    spec.progressive_min_width = progressive_min;

    return snapcache_transcode(in->data, in->len, &spec, MAX_BYTES,
                               MAX_PIXELS, out);
}


/* The output's own magic bytes say what it is. */
static int
magic_is(const snapcache_transcode_out_t *out, int format)
{
    const unsigned char  *p;

    p = out->data;

    switch (format) {
    case SNAPCACHE_FORMAT_JPEG:
        return out->len > 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff;
    case SNAPCACHE_FORMAT_WEBP:
        return out->len > 12 && memcmp(p, "RIFF", 4) == 0
               && memcmp(p + 8, "WEBP", 4) == 0;
    case SNAPCACHE_FORMAT_AVIF:
        return out->len > 12 && memcmp(p + 4, "ftypavif", 8) == 0;
    default:
        return 0;
    }
}


/* Decodes an output and compares its size with what was reported. */
static int
decodes_to(const snapcache_transcode_out_t *out, int width, int height)
{
    int         ok;
    VipsImage  *img;

    if (out->format == SNAPCACHE_FORMAT_AVIF) {
        /* heifload is blocked in this process: trust the header only */
        return out->width == width && out->height == height;
    }

    img = vips_image_new_from_buffer(out->data, out->len, "", NULL);
    if (img == NULL) {
        diag("output does not decode: %s", vips_error_buffer());
        vips_error_clear();
        return 0;
    }

    ok = vips_image_get_width(img) == width
         && vips_image_get_height(img) == height
         && out->width == width && out->height == height;

    if (!ok) {
        diag("decoded %dx%d, reported %dx%d, expected %dx%d",
             vips_image_get_width(img), vips_image_get_height(img),
             out->width, out->height, width, height);
    }

    g_object_unref(img);

    return ok;
}


static int
has_bytes(const snapcache_transcode_out_t *out, const char *s)
{
    return memmem(out->data, out->len, s, strlen(s)) != NULL;
}


static int
has_marker(const void *data, size_t len, int marker)
{
    size_t               i;
    const unsigned char  *p;

    p = data;

    for (i = 0; i + 1 < len; i++) {
        if (p[i] == 0xff && p[i + 1] == marker) {
            return 1;
        }

        if (p[i] == 0xff && p[i + 1] == 0xda) {
            /* start of scan: no frame header comes after it */
            return 0;
        }
    }

    return 0;
}


/* After a failure, the same thread must still transcode correctly. */
static void
good_after(const char *what)
{
    int                        rc;
    snapcache_transcode_out_t  out;

    rc = run(&small_jpeg, 100, SNAPCACHE_FORMAT_JPEG, 0, &out);
    ok(rc == SNAPCACHE_TRANSCODE_OK && decodes_to(&out, 100, 75),
       "after %s: the next transcode in this thread is right", what);
    snapcache_transcode_free(out.data);
}


/* ------------------------------------------------------------ tests */

static void
test_sizes(void)
{
    int                        i, j, k, rc, h, bad;
    int                        fmts[3] = { SNAPCACHE_FORMAT_JPEG,
                                           SNAPCACHE_FORMAT_PNG,
                                           SNAPCACHE_FORMAT_WEBP };
    int                        outs[3] = { SNAPCACHE_FORMAT_JPEG,
                                           SNAPCACHE_FORMAT_WEBP,
                                           SNAPCACHE_FORMAT_AVIF };
    int                        widths[3] = { 320, 640, 1280 };
    blob_t                     in;
    snapcache_probe_t          probe;
    snapcache_transcode_out_t  out;

    for (i = 0; i < 3; i++) {
        if (make_photo(1920, 1080, fmts[i], i, &in) != 0) {
            ok(0, "made a 1920x1080 %s", format_name(fmts[i]));
            continue;
        }

        rc = snapcache_transcode_probe(in.data, in.len, MAX_BYTES,
                                       MAX_PIXELS, &probe);
        ok(rc == SNAPCACHE_TRANSCODE_OK && probe.format == fmts[i]
           && probe.width == 1920 && probe.height == 1080,
           "probe of a 1920x1080 %s", format_name(fmts[i]));

        bad = 0;

        for (j = 0; j < 3; j++) {
            for (k = 0; k < 3; k++) {
                if (outs[k] == SNAPCACHE_FORMAT_AVIF
                    && (widths[j] != 320
                        || !(snapcache_transcode_formats()
                             & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF))))
                {
                    continue;
                }

                h = (1080 * widths[j] + 960) / 1920;
                rc = run(&in, widths[j], outs[k], 0, &out);

                if (rc != SNAPCACHE_TRANSCODE_OK || out.format != outs[k]
                    || out.source.format != fmts[i]
                    || out.source.width != 1920 || out.source.height != 1080
                    || !magic_is(&out, outs[k])
                    || !decodes_to(&out, widths[j], h))
                {
                    diag("%s -> %d %s: %s", format_name(fmts[i]), widths[j],
                         format_name(outs[k]),
                         snapcache_transcode_strerror(rc));
                    bad++;
                }

                snapcache_transcode_free(out.data);
            }
        }

        is_int(bad, 0, "%s input: every width and output format has the "
               "right size and magic, and names its source", format_name(fmts[i]));
        blob_free(&in);
    }

    /* a small input is never enlarged */
    for (i = 0; i < 3; i++) {
        make_photo(200, 150, fmts[i], 7, &in);
        rc = run(&in, 640, SNAPCACHE_FORMAT_JPEG, 0, &out);
        ok(rc == SNAPCACHE_TRANSCODE_OK && decodes_to(&out, 200, 150),
           "a 200x150 %s asked for 640 stays 200x150",
           format_name(fmts[i]));
        snapcache_transcode_free(out.data);
        seed_write(format_name(fmts[i]), 40, in.data, in.len);
        blob_free(&in);
    }
}


static void
test_formats_and_variants(void)
{
    int                        i, rc, distinct;
    const char                *m[SNAPCACHE_TRANSCODE_ERROR + 1];
    snapcache_variant_spec_t   spec;
    snapcache_transcode_out_t  out;

    ok((snapcache_transcode_formats()
        & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG))
       && (snapcache_transcode_formats()
           & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP)),
       "JPEG and WebP output are reported");

    if (!(snapcache_transcode_formats()
          & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF)))
    {
        is_int(run(&small_jpeg, 100, SNAPCACHE_FORMAT_AVIF, 0, &out),
               SNAPCACHE_TRANSCODE_ENCODER_MISSING,
               "AVIF without an encoder: ENCODER_MISSING");
    } else {
        diag("AVIF output is supported by this build");
    }

    memset(&spec, 0, sizeof(spec));
    spec.width = 100;
    spec.quality = 80;
    spec.format = SNAPCACHE_FORMAT_PNG;
    is_int(snapcache_transcode(small_jpeg.data, small_jpeg.len, &spec,
                               MAX_BYTES, MAX_PIXELS, &out),
           SNAPCACHE_TRANSCODE_BAD_VARIANT, "PNG output: BAD_VARIANT");
    spec.format = SNAPCACHE_FORMAT_JPEG;
    spec.quality = 0;
    is_int(snapcache_transcode(small_jpeg.data, small_jpeg.len, &spec,
                               MAX_BYTES, MAX_PIXELS, &out),
           SNAPCACHE_TRANSCODE_BAD_VARIANT, "quality 0: BAD_VARIANT");
    spec.quality = 101;
    is_int(snapcache_transcode(small_jpeg.data, small_jpeg.len, &spec,
                               MAX_BYTES, MAX_PIXELS, &out),
           SNAPCACHE_TRANSCODE_BAD_VARIANT, "quality 101: BAD_VARIANT");
    spec.quality = 80;
    spec.width = 0;
    is_int(snapcache_transcode(small_jpeg.data, small_jpeg.len, &spec,
                               MAX_BYTES, MAX_PIXELS, &out),
           SNAPCACHE_TRANSCODE_BAD_VARIANT, "width 0: BAD_VARIANT");

    /* every code has its own message */
    distinct = 1;

    for (i = 0; i <= SNAPCACHE_TRANSCODE_ERROR; i++) {
        m[i] = snapcache_transcode_strerror(i);

        if (m[i] == NULL || m[i][0] == '\0') {
            distinct = 0;
            continue;
        }

        for (rc = 0; rc < i; rc++) {
            if (m[rc] && strcmp(m[rc], m[i]) == 0) {
                distinct = 0;
            }
        }
    }

    ok(distinct, "every result code has a distinct message");
}


static void
test_progressive(void)
{
    int                        rc;
    blob_t                     in;
    snapcache_transcode_out_t  out;

    make_photo(1280, 720, SNAPCACHE_FORMAT_JPEG, 3, &in);

    rc = run(&in, 640, SNAPCACHE_FORMAT_JPEG, 500, &out);
    ok(rc == SNAPCACHE_TRANSCODE_OK && has_marker(out.data, out.len, 0xc2)
       && !has_marker(out.data, out.len, 0xc0),
       "640 wide, progressive from 500: progressive (SOF2)");
    snapcache_transcode_free(out.data);

    rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 500, &out);
    ok(rc == SNAPCACHE_TRANSCODE_OK && has_marker(out.data, out.len, 0xc0)
       && !has_marker(out.data, out.len, 0xc2),
       "320 wide, progressive from 500: baseline (SOF0)");
    snapcache_transcode_free(out.data);

    blob_free(&in);
}


/* Red on the stored left, blue on the stored right; orientation 6. */
static void
test_orientation(void)
{
    int                        rc;
    double                    *top, *bottom;
    int                        n;
    blob_t                     in;
    VipsImage                 *img, *red, *blue, *both, *out_img;
    snapcache_transcode_out_t  out;
    double                     r[3] = { 230, 20, 20 }, b[3] = { 20, 20, 230 };

    vips_black(&red, 200, 200, "bands", 3, NULL);
    vips_linear(red, &img, (double[]) { 1, 1, 1 }, r, 3, NULL);
    g_object_unref(red);
    vips_cast_uchar(img, &red, NULL);
    g_object_unref(img);

    vips_black(&blue, 200, 200, "bands", 3, NULL);
    vips_linear(blue, &img, (double[]) { 1, 1, 1 }, b, 3, NULL);
    g_object_unref(blue);
    vips_cast_uchar(img, &blue, NULL);
    g_object_unref(img);

    vips_join(red, blue, &both, VIPS_DIRECTION_HORIZONTAL, NULL);
    g_object_unref(red);
    g_object_unref(blue);

    vips_copy(both, &img, NULL);
    g_object_unref(both);
    vips_image_set_int(img, VIPS_META_ORIENTATION, 6);

    rc = save(img, SNAPCACHE_FORMAT_JPEG, 0, &in);
    g_object_unref(img);
    ok(rc == 0 && memmem(in.data, in.len, "Exif", 4) != NULL,
       "made a 400x200 JPEG with EXIF orientation 6");
    seed_write("rotated", 20, in.data, in.len);

    rc = run(&in, 100, SNAPCACHE_FORMAT_JPEG, 0, &out);
    ok(rc == SNAPCACHE_TRANSCODE_OK && decodes_to(&out, 100, 200),
       "orientation 6: a 100-wide variant is 100x200, portrait");

    out_img = vips_image_new_from_buffer(out.data, out.len, "", NULL);
    top = NULL;
    bottom = NULL;

    if (out_img != NULL) {
        vips_getpoint(out_img, &top, &n, 50, 20, NULL);
        vips_getpoint(out_img, &bottom, &n, 50, 180, NULL);
        g_object_unref(out_img);
    }

    ok(top && bottom && top[0] > 150 && top[2] < 100
       && bottom[2] > 150 && bottom[0] < 100,
       "the stored left (red) is now the top, the right (blue) the bottom");

    g_free(top);
    g_free(bottom);
    snapcache_transcode_free(out.data);
    blob_free(&in);
}


static void
test_metadata(void)
{
    int                        i, rc, bad;
    blob_t                     in;
    VipsImage                 *img, *copy, *o;
    snapcache_transcode_out_t  out;
    static const char          xmp[] =
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf="
        "\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description "
        "xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" xmp:Label=\"XMPSECRET\"/>"
        "</rdf:RDF></x:xmpmeta>";
    int                        outs[3] = { SNAPCACHE_FORMAT_JPEG,
                                           SNAPCACHE_FORMAT_WEBP,
                                           SNAPCACHE_FORMAT_AVIF };

    img = photo_like(640, 480, 11);
    vips_copy(img, &copy, NULL);
    g_object_unref(img);

    vips_image_set_string(copy, "exif-ifd0-Make", "SnapTestCamMake");
    vips_image_set_string(copy, "exif-ifd3-GPSLatitudeRef", "N");
    vips_image_set_string(copy, "exif-ifd3-GPSLatitude", "52/1 31/1 12/1");
    vips_image_set_blob_copy(copy, VIPS_META_XMP_NAME, xmp, sizeof(xmp) - 1);

    rc = save(copy, SNAPCACHE_FORMAT_JPEG, 0, &in);
    g_object_unref(copy);

    /* the input really carries them, or the test would prove nothing */
    o = rc == 0 ? vips_image_new_from_buffer(in.data, in.len, "", NULL)
                : NULL;
    ok(o && memmem(in.data, in.len, "SnapTestCamMake", 15)
       && memmem(in.data, in.len, "XMPSECRET", 9)
       && vips_image_get_typeof(o, "exif-ifd3-GPSLatitudeRef") != 0,
       "the input carries EXIF (Make), GPS and XMP");
    if (o) {
        g_object_unref(o);
    }

    bad = 0;

    for (i = 0; i < 3; i++) {
        if (outs[i] == SNAPCACHE_FORMAT_AVIF
            && !(snapcache_transcode_formats()
                 & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF)))
        {
            continue;
        }

        rc = run(&in, 320, outs[i], 0, &out);
        if (rc != SNAPCACHE_TRANSCODE_OK) {
            bad++;
            continue;
        }

        if (has_bytes(&out, "Exif") || has_bytes(&out, "SnapTestCamMake")
            || has_bytes(&out, "XMPSECRET") || has_bytes(&out, "ns.adobe")
            || has_bytes(&out, "GPS"))
        {
            diag("%s output keeps metadata bytes", format_name(outs[i]));
            bad++;
        }

        if (outs[i] != SNAPCACHE_FORMAT_AVIF) {
            o = vips_image_new_from_buffer(out.data, out.len, "", NULL);

            if (o == NULL
                || vips_image_get_typeof(o, VIPS_META_EXIF_NAME) != 0
                || vips_image_get_typeof(o, VIPS_META_XMP_NAME) != 0
                || vips_image_get_typeof(o, "exif-ifd3-GPSLatitudeRef") != 0
                || vips_image_get_orientation(o) != 1)
            {
                diag("%s output has metadata fields", format_name(outs[i]));
                bad++;
            }

            if (o) {
                g_object_unref(o);
            }
        }

        snapcache_transcode_free(out.data);
    }

    is_int(bad, 0, "no EXIF, GPS or XMP in any output format");
    blob_free(&in);
}


static void
test_truncated(void)
{
    int                        i, rc;
    int                        fmts[3] = { SNAPCACHE_FORMAT_JPEG,
                                           SNAPCACHE_FORMAT_PNG,
                                           SNAPCACHE_FORMAT_WEBP };
    blob_t                     in;
    snapcache_transcode_out_t  out;

    make_photo(1280, 720, SNAPCACHE_FORMAT_JPEG, 5, &in);
    rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &out);
    ok(rc == SNAPCACHE_TRANSCODE_OK, "the whole JPEG transcodes");
    snapcache_transcode_free(out.data);

    in.len /= 2;
    memset(&out, 0, sizeof(out));
    rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &out);
    is_int(rc, SNAPCACHE_TRANSCODE_TRUNCATED, "a JPEG cut at 50%%: TRUNCATED");
    ok(out.data == NULL, "and no output");
    good_after("a truncated JPEG");
    blob_free(&in);

    make_photo(64, 48, SNAPCACHE_FORMAT_JPEG, 5, &in);
    seed_write("truncated", 9, in.data, in.len / 2);
    blob_free(&in);

    for (i = 1; i < 3; i++) {
        make_photo(640, 360, fmts[i], 6, &in);
        in.len /= 2;
        rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &out);
        ok(rc == SNAPCACHE_TRANSCODE_TRUNCATED
           || rc == SNAPCACHE_TRANSCODE_CORRUPT,
           "a %s cut at 50%% is rejected (%s)", format_name(fmts[i]),
           snapcache_transcode_strerror(rc));
        good_after("a truncated input");
        blob_free(&in);
    }
}


static uint32_t
crc32_png(const unsigned char *p, size_t len)
{
    int       k;
    size_t    i;
    uint32_t  c;

    c = 0xffffffff;

    for (i = 0; i < len; i++) {
        c ^= p[i];

        for (k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320 & (0 - (c & 1)));
        }
    }

    return c ^ 0xffffffff;
}


static size_t
png_chunk(unsigned char *out, const char *type, const unsigned char *data,
    uint32_t len)
{
    uint32_t  crc;

    out[0] = (unsigned char) (len >> 24);
    out[1] = (unsigned char) (len >> 16);
    out[2] = (unsigned char) (len >> 8);
    out[3] = (unsigned char) len;
    memcpy(out + 4, type, 4);
    memcpy(out + 8, data, len);
    crc = crc32_png(out + 4, len + 4);
    out[8 + len] = (unsigned char) (crc >> 24);
    out[9 + len] = (unsigned char) (crc >> 16);
    out[10 + len] = (unsigned char) (crc >> 8);
    out[11 + len] = (unsigned char) crc;

    return 12 + len;
}


static long
status_kb(const char *field)
{
    char   line[256];
    long   v;
    FILE  *f;

    v = -1;
    f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return -1;
    }

    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field) + 1, NULL, 10);
        }
    }

    fclose(f);

    return v;
}


/* A PNG that declares 20000 x 20000 RGB, 1.2 GB decoded, in 80 bytes. */
static void
test_huge_png(void)
{
    int                        rc, rc2;
    long                       before, peak;
    FILE                      *f;
    size_t                     len;
    unsigned char              png[256];
    snapcache_probe_t          probe;
    snapcache_transcode_out_t  out;
    static const unsigned char ihdr[13] = { 0, 0, 0x4e, 0x20, 0, 0, 0x4e,
                                            0x20, 8, 2, 0, 0, 0 };
    static const unsigned char idat[8] = { 0x78, 0x9c, 0x03, 0x00, 0x00,
                                           0x00, 0x00, 0x01 };

    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    len = 8;
    len += png_chunk(png + len, "IHDR", ihdr, sizeof(ihdr));
    len += png_chunk(png + len, "IDAT", idat, sizeof(idat));
    len += png_chunk(png + len, "IEND", NULL, 0);

    /* resets VmHWM, so the peak below is this test's own */
    f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }

    before = status_kb("VmRSS:");

    rc = snapcache_transcode_probe(png, len, MAX_BYTES, MAX_PIXELS, &probe);
    rc2 = snapcache_transcode(png, len,
                              &(snapcache_variant_spec_t) { 320, 80,
                                  SNAPCACHE_FORMAT_JPEG, 0 },
                              MAX_BYTES, MAX_PIXELS, &out);

    peak = status_kb("VmHWM:");

    is_int(rc, SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS,
           "probe of a PNG declaring 20000x20000: TOO_MANY_PIXELS");
    is_int(rc2, SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS,
           "transcode refuses it the same way");
    diag("RSS %ld KB before, peak %ld KB after; decoded it would be "
         "%ld KB", before, peak, 20000L * 20000 * 3 / 1024);
    ok(before > 0 && peak > 0 && peak - before < 64 * 1024,
       "peak RSS grew by less than 64 MB (decoded: 1.2 GB)");
    good_after("a huge PNG");

    seed_write("huge_png", 30, png, len);

    is_int(snapcache_transcode_probe(small_jpeg.data, small_jpeg.len,
                                     small_jpeg.len - 1, MAX_PIXELS, &probe),
           SNAPCACHE_TRANSCODE_TOO_LARGE, "one byte over max_bytes: TOO_LARGE");
    is_int(snapcache_transcode_probe(small_jpeg.data, small_jpeg.len,
                                     MAX_BYTES, 100 * 75 - 1, &probe),
           SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS,
           "one pixel over max_pixels: TOO_MANY_PIXELS");
}


static void
reject(const char *what, const void *data, size_t len, int want)
{
    int                        rc, rc2;
    snapcache_probe_t          probe;
    snapcache_transcode_out_t  out;

    rc = snapcache_transcode_probe(data, len, MAX_BYTES, MAX_PIXELS, &probe);

    memset(&out, 0, sizeof(out));
    rc2 = snapcache_transcode(data, len,
                              &(snapcache_variant_spec_t) { 320, 80,
                                  SNAPCACHE_FORMAT_JPEG, 0 },
                              MAX_BYTES, MAX_PIXELS, &out);

    if (want >= 0) {
        ok(rc == want && rc2 == want && out.data == NULL,
           "%s: %s (probe %s, transcode %s)", what,
           snapcache_transcode_strerror(want),
           snapcache_transcode_strerror(rc),
           snapcache_transcode_strerror(rc2));
    } else {
        ok(rc != SNAPCACHE_TRANSCODE_OK && rc2 != SNAPCACHE_TRANSCODE_OK
           && out.data == NULL, "%s: rejected (%s)", what,
           snapcache_transcode_strerror(rc2));
    }

    good_after(what);
}


static void
test_disallowed(void)
{
    int                   fd;
    char                  path[] = "/tmp/snapcache-test-XXXXXX.v";
    void                 *gif;
    gchar                *v;
    gsize                 vlen;
    size_t                gif_len;
    VipsImage            *img;
    static const char     svg[] =
        "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\"640\" height=\"480\"><rect width=\"640\" height=\"480\" "
        "fill=\"red\"/></svg>\n";
    static const unsigned char  tiny_gif[] = {
        'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0xff, 0xff,
        0xff, 0, 0, 0, '!', 0xf9, 4, 1, 0, 0, 0, 0, ',', 0, 0, 0, 0, 1, 0,
        1, 0, 0, 2, 2, 'D', 1, 0, ';' };

    reject("an SVG named .jpg", svg, sizeof(svg) - 1,
           SNAPCACHE_TRANSCODE_UNSUPPORTED);
    seed_write("svg", 40, svg, sizeof(svg) - 1);

    /* the libvips native format, through a temp file */
    img = photo_like(64, 48, 2);
    fd = mkstemps(path, 2);
    v = NULL;
    vlen = 0;

    if (fd >= 0 && img && vips_image_write_to_file(img, path, NULL) == 0) {
        g_file_get_contents(path, &v, &vlen, NULL);
    }

    if (fd >= 0) {
        close(fd);
        unlink(path);
    }

    ok(v && vlen > 64, "made a .v file");
    reject("a VIPS .v file named .jpg", v, vlen,
           SNAPCACHE_TRANSCODE_UNSUPPORTED);
    g_free(v);

    /* a GIF, by libvips if it can write one, else a minimal GIF89a */
    gif = NULL;
    gif_len = 0;
    if (vips_type_find("VipsOperation", "gifsave_buffer") != 0) {
        if (vips_gifsave_buffer(img, &gif, &gif_len, NULL) != 0) {
            gif = NULL;
            vips_error_clear();
        }
    }

    if (gif) {
        reject("a GIF named .jpg", gif, gif_len,
               SNAPCACHE_TRANSCODE_UNSUPPORTED);
        g_free(gif);
    }

    reject("a GIF89a named .jpg", tiny_gif, sizeof(tiny_gif),
           SNAPCACHE_TRANSCODE_UNSUPPORTED);
    seed_write("gif", 40, tiny_gif, sizeof(tiny_gif));

    if (img) {
        g_object_unref(img);
    }
}


static void
test_garbage(void)
{
    int                  i;
    char                 what[64];
    size_t               len, j;
    unsigned char       *buf;
    static const size_t  lens[] = { 1, 7, 8, 100, 4096, 65536 };

    buf = calloc(1, 65536 + 16);

    reject("zero bytes", buf, 0, -1);
    reject("4096 zero bytes", buf, 4096, -1);
    seed_write("zeros", 0, buf, 512);

    for (i = 0; i < 24; i++) {
        len = lens[i % 6];

        for (j = 0; j < len; j++) {
            buf[j] = (unsigned char) rnd();
        }

        /* half of them look like a JPEG or a PNG to the sniffers */
        if (i % 4 == 1 && len > 3) {
            memcpy(buf, "\xff\xd8\xff", 3);
        } else if (i % 4 == 3 && len > 8) {
            memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
        }

        snprintf(what, sizeof(what), "random bytes #%d (%zu)", i, len);
        reject(what, buf, len, -1);
    }

    free(buf);
}


typedef struct {
    const blob_t               *in;
    int                         format;
    snapcache_transcode_out_t   out;
    int                         rc;
} det_job_t;


static void *
det_thread(void *arg)
{
    det_job_t  *job;

    job = arg;
    job->rc = run(job->in, 320, job->format, 0, &job->out);

    return NULL;
}


static void
test_deterministic(void)
{
    int                        i, rc, same;
    int                        outs[2] = { SNAPCACHE_FORMAT_JPEG,
                                           SNAPCACHE_FORMAT_WEBP };
    blob_t                     in;
    pthread_t                  tid;
    det_job_t                  job;
    snapcache_transcode_out_t  a, b;

    make_photo(1280, 720, SNAPCACHE_FORMAT_JPEG, 9, &in);

    for (i = 0; i < 2; i++) {
        rc = run(&in, 320, outs[i], 0, &a);
        rc |= run(&in, 320, outs[i], 0, &b);

        job.in = &in;
        job.format = outs[i];
        pthread_create(&tid, NULL, det_thread, &job);
        pthread_join(tid, NULL);

        same = rc == 0 && job.rc == 0 && a.len == b.len
               && a.len == job.out.len
               && memcmp(a.data, b.data, a.len) == 0
               && memcmp(a.data, job.out.data, a.len) == 0;

        ok(same, "%s: the same input and variant give the same bytes, "
           "in this thread and another", format_name(outs[i]));

        snapcache_transcode_free(a.data);
        snapcache_transcode_free(b.data);
        snapcache_transcode_free(job.out.data);
    }

    blob_free(&in);
}


/* ------------------------------------------------------------ isolation */

static int
owner_is(const snapcache_transcode_out_t *out, const char *account,
    const char *device, const char *snapshot)
{
    char  why[256];

    return snapcache_marker_check(out->data, out->len, account, device,
                                  snapshot, why, sizeof(why))
           == SNAPCACHE_MARKER_OK;
}


/* One buffer, owner A's bytes, then owner B's bytes in the same place. */
static void
test_reused_buffer(void)
{
    int                        rc;
    void                      *a, *b;
    size_t                     alen, blen;
    unsigned char             *buf;
    blob_t                     in;
    snapcache_transcode_out_t  oa, ob;

    rc = snapcache_marker_render("alice", "door", "s1", 1280, 720,
                                 SNAPCACHE_MARKER_JPEG, 85, &a, &alen);
    rc |= snapcache_marker_render("bob", "door", "s1", 1280, 720,
                                  SNAPCACHE_MARKER_JPEG, 85, &b, &blen);
    ok(rc == 0, "rendered owner images for alice and bob");
    if (rc != 0) {
        return;
    }

    buf = malloc(alen > blen ? alen : blen);

    memcpy(buf, a, alen);
    in.data = buf;
    in.len = alen;
    rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &oa);

    memcpy(buf, b, blen);
    in.len = blen;
    rc |= run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &ob);

    ok(rc == 0 && owner_is(&oa, "alice", "door", "s1"),
       "first decode of the buffer shows alice");
    ok(owner_is(&ob, "bob", "door", "s1"),
       "the same buffer overwritten with bob's image shows bob");
    ok(!owner_is(&ob, "alice", "door", "s1"),
       "and never alice");

    seed_write("owner", 20, buf, blen);

    snapcache_transcode_free(oa.data);
    snapcache_transcode_free(ob.data);
    free(buf);
    g_free(a);
    g_free(b);
}


typedef struct {
    const char  *account;
    const char  *device;
    const char  *snapshot;
    void        *data;
    size_t       len;
} owner_img_t;


typedef struct {
    owner_img_t  *owners;
    int           n;
    int           failed;
    int           done;
} iso_job_t;


static void *
iso_thread(void *arg)
{
    int                        i, rc;
    blob_t                     in;
    iso_job_t                 *job;
    owner_img_t               *o;
    snapcache_transcode_out_t  out;

    job = arg;

    for (i = 0; i < ROUNDS; i++) {
        o = &job->owners[i % job->n];
        in.data = o->data;
        in.len = o->len;

        rc = run(&in, 320, SNAPCACHE_FORMAT_JPEG, 0, &out);

        if (rc != SNAPCACHE_TRANSCODE_OK
            || !owner_is(&out, o->account, o->device, o->snapshot))
        {
            job->failed++;
        }

        job->done++;
        snapcache_transcode_free(out.data);
    }

    return NULL;
}


static void
test_two_threads(void)
{
    int          i, rc;
    pthread_t    tid[2];
    iso_job_t    jobs[2];
    owner_img_t  owners[4] = {
        { "acct-a", "cam-1", "snap-1", NULL, 0 },
        { "acct-a", "cam-2", "snap-1", NULL, 0 },
        { "acct-b", "cam-1", "snap-1", NULL, 0 },
        { "acct-b", "cam-1", "snap-2", NULL, 0 },
    };

    rc = 0;

    for (i = 0; i < 4; i++) {
        rc |= snapcache_marker_render(owners[i].account, owners[i].device,
                                      owners[i].snapshot, 640, 360,
                                      SNAPCACHE_MARKER_JPEG, 85,
                                      &owners[i].data, &owners[i].len);
    }

    ok(rc == 0, "rendered four owners' images");

    /* thread 0 has account a's devices, thread 1 account b's */
    for (i = 0; i < 2; i++) {
        jobs[i].owners = &owners[2 * i];
        jobs[i].n = 2;
        jobs[i].failed = 0;
        jobs[i].done = 0;
        pthread_create(&tid[i], NULL, iso_thread, &jobs[i]);
    }

    for (i = 0; i < 2; i++) {
        pthread_join(tid[i], NULL);
    }

    ok(jobs[0].done == ROUNDS && jobs[1].done == ROUNDS
       && jobs[0].failed == 0 && jobs[1].failed == 0,
       "two threads x %d transcodes: every output shows its own owner "
       "(%d and %d wrong)", ROUNDS, jobs[0].failed, jobs[1].failed);

    for (i = 0; i < 4; i++) {
        g_free(owners[i].data);
    }
}


/*
 * Several rungs in one call give each rung's bytes exactly as a call of
 * its own does, for JPEG (shared decodes per scale), PNG and WebP, also
 * for an EXIF-rotated JPEG; one bad rung spoils only itself, and a
 * truncated original fails every rung.
 */
static void
test_rungs(void)
{
    int                        i, k, rc, rcs[5], fmts[3], bad;
    blob_t                     in;
    snapcache_transcode_out_t  outs[5], one;
    snapcache_variant_spec_t   specs[5] = {
        { 1920, 85, SNAPCACHE_FORMAT_JPEG, 0 },
        { 1280, 75, SNAPCACHE_FORMAT_JPEG, 0 },
        { 640, 65, SNAPCACHE_FORMAT_WEBP, 0 },
        { 320, 50, SNAPCACHE_FORMAT_JPEG, 0 },
        { 480, 60, SNAPCACHE_FORMAT_JPEG, 0 }
    };

    fmts[0] = SNAPCACHE_FORMAT_JPEG;
    fmts[1] = SNAPCACHE_FORMAT_PNG;
    fmts[2] = SNAPCACHE_FORMAT_WEBP;

    for (k = 0; k < 3; k++) {
        if (make_photo(1920, 1080, fmts[k], 21 + k, &in) != 0) {
            ok(0, "make a %s original", format_name(fmts[k]));
            continue;
        }

        rc = snapcache_transcode_rungs(in.data, in.len, specs, 5, MAX_BYTES,
                                       MAX_PIXELS, outs, rcs);
        bad = rc != SNAPCACHE_TRANSCODE_OK;

        for (i = 0; i < 5; i++) {
            if (snapcache_transcode(in.data, in.len, &specs[i], MAX_BYTES,
                                    MAX_PIXELS, &one)
                != SNAPCACHE_TRANSCODE_OK
                || rcs[i] != SNAPCACHE_TRANSCODE_OK
                || one.len != outs[i].len
                || memcmp(one.data, outs[i].data, one.len) != 0
                || one.width != outs[i].width)
            {
                bad++;
            }

            snapcache_transcode_free(one.data);
            snapcache_transcode_free(outs[i].data);
        }

        is_int(bad, 0, "%s: five rungs in one call are byte for byte the "
               "single-rung outputs", format_name(fmts[k]));
        blob_free(&in);
    }

    /* a turned JPEG: the scale follows the height */
    make_photo(1080, 1920, SNAPCACHE_FORMAT_JPEG, 31, &in);
    rc = snapcache_transcode_rungs(in.data, in.len, specs + 2, 3, MAX_BYTES,
                                   MAX_PIXELS, outs, rcs);
    bad = rc != SNAPCACHE_TRANSCODE_OK;

    for (i = 0; i < 3; i++) {
        if (snapcache_transcode(in.data, in.len, &specs[2 + i], MAX_BYTES,
                                MAX_PIXELS, &one)
            != SNAPCACHE_TRANSCODE_OK
            || one.len != outs[i].len
            || memcmp(one.data, outs[i].data, one.len) != 0)
        {
            bad++;
        }

        snapcache_transcode_free(one.data);
        snapcache_transcode_free(outs[i].data);
    }

    is_int(bad, 0, "a portrait JPEG: the same bytes too");

    /* one bad rung */
    specs[1].quality = 0;
    rc = snapcache_transcode_rungs(in.data, in.len, specs, 4, MAX_BYTES,
                                   MAX_PIXELS, outs, rcs);
    ok(rc == SNAPCACHE_TRANSCODE_OK
       && rcs[1] == SNAPCACHE_TRANSCODE_BAD_VARIANT && outs[1].data == NULL
       && rcs[0] == SNAPCACHE_TRANSCODE_OK && rcs[2] == SNAPCACHE_TRANSCODE_OK
       && rcs[3] == SNAPCACHE_TRANSCODE_OK,
       "a bad rung fails alone");

    for (i = 0; i < 4; i++) {
        snapcache_transcode_free(outs[i].data);
    }

    specs[1].quality = 75;

    /* a truncated original fails every rung, with nothing made */
    in.len /= 2;
    rc = snapcache_transcode_rungs(in.data, in.len, specs, 4, MAX_BYTES,
                                   MAX_PIXELS, outs, rcs);
    bad = 0;

    for (i = 0; i < 4; i++) {
        if (rcs[i] != SNAPCACHE_TRANSCODE_TRUNCATED || outs[i].data != NULL) {
            bad++;
        }

        snapcache_transcode_free(outs[i].data);
    }

    ok(rc == SNAPCACHE_TRANSCODE_OK && bad == 0,
       "a JPEG cut at 50%%: every rung TRUNCATED, no output");
    good_after("a truncated original in several rungs");
    blob_free(&in);

    ok(snapcache_transcode_rungs(small_jpeg.data, small_jpeg.len, specs, 0,
                                 MAX_BYTES, MAX_PIXELS, outs, rcs)
       == SNAPCACHE_TRANSCODE_BAD_VARIANT, "no rung at all is refused");
}


int
main(void)
{
    char  err[256];

    if (snapcache_transcode_init(err, sizeof(err)) != 0) {
        ok(0, "init: %s", err);
        return done_testing();
    }

    ok(1, "init");

    if (make_photo(100, 75, SNAPCACHE_FORMAT_JPEG, 1, &small_jpeg) != 0) {
        ok(0, "made the small reference JPEG");
        return done_testing();
    }

    seed_write("small", 40, small_jpeg.data, small_jpeg.len);

    test_formats_and_variants();
    test_sizes();
    test_progressive();
    test_orientation();
    test_metadata();
    test_truncated();
    test_rungs();
    test_huge_png();
    test_disallowed();
    test_garbage();
    test_deterministic();
    test_reused_buffer();
    test_two_threads();

    blob_free(&small_jpeg);

    return done_testing();
}
