
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache transcode, on libvips.  See snapcache_transcode.h.
 */

#include <string.h>

#include <vips/vips.h>
#include <vips/vector.h>
#include <webp/mux.h>

#include "transcode/snapcache_transcode.h"


static unsigned  transcode_formats;


static const char  *allowed_loaders[] = {
    "VipsForeignLoadJpegBuffer",
    "VipsForeignLoadPngBuffer",
    "VipsForeignLoadWebpBuffer",
    NULL
};


/* The format a loader reads; ANY for none of the allowed ones. */
static int
loader_format(const char *name)
{
    if (name == NULL) {
        return SNAPCACHE_FORMAT_ANY;
    }

    if (strcmp(name, "VipsForeignLoadJpegBuffer") == 0) {
        return SNAPCACHE_FORMAT_JPEG;
    }

    if (strcmp(name, "VipsForeignLoadPngBuffer") == 0) {
        return SNAPCACHE_FORMAT_PNG;
    }

    if (strcmp(name, "VipsForeignLoadWebpBuffer") == 0) {
        return SNAPCACHE_FORMAT_WEBP;
    }

    return SNAPCACHE_FORMAT_ANY;
}


/* AVIF needs heifsave and an AV1 encoder in libheif: try a tiny one. */
static int
avif_works(void)
{
    int         ok;
    void       *buf;
    size_t      len;
    VipsImage  *img;

    if (vips_type_find("VipsOperation", "heifsave_buffer") == 0) {
        return 0;
    }

    if (vips_black(&img, 16, 16, "bands", 3, NULL) != 0) {
        vips_error_clear();
        return 0;
    }

    ok = vips_heifsave_buffer(img, &buf, &len, "compression",
                              VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL) == 0;
    if (ok) {
        g_free(buf);
    }

    g_object_unref(img);
    vips_error_clear();

    return ok;
}


int
snapcache_transcode_init(char *err, size_t err_size)
{
    int  i;

    if (VIPS_INIT("snapcache") != 0) {
        snprintf(err, err_size, "libvips failed to start: %s",
                 vips_error_buffer());
        vips_error_clear();
        return -1;
    }

    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(1);

    /*
     * liborc's generated code is freed racily when several threads
     * transcode at once (a SEGV in orc_code_free, and heap corruption,
     * seen in the two-thread test); nginx's thread pool does exactly
     * that.  The plain C paths are correct under concurrency.
     */
    vips_vector_set_enabled(FALSE);

    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);

    for (i = 0; allowed_loaders[i]; i++) {
        vips_operation_block_set(allowed_loaders[i], FALSE);
    }

    transcode_formats = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)
                        | SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP);

    if (avif_works()) {
        transcode_formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF);
    }

    return 0;
}


unsigned
snapcache_transcode_formats(void)
{
    return transcode_formats;
}


/* libvips reports through a per-thread buffer: read it, then clear it. */
static int
vips_failure(int fallback)
{
    int          rc;
    const char  *msg;

    msg = vips_error_buffer();
    rc = fallback;

    if (strstr(msg, "truncat") || strstr(msg, "remature")
        || strstr(msg, "nexpected end") || strstr(msg, "ot enough data"))
    {
        rc = SNAPCACHE_TRANSCODE_TRUNCATED;
    }

    vips_error_clear();

    return rc;
}


/* The probe, and the EXIF orientation the header carries (1 if none). */
static int
header_read(const void *data, size_t len, size_t max_bytes,
    unsigned long max_pixels, snapcache_probe_t *probe, int *orientation)
{
    int          format;
    const char  *loader;
    VipsImage   *img;

    memset(probe, 0, sizeof(snapcache_probe_t));
    *orientation = 1;

    if (len > max_bytes) {
        return SNAPCACHE_TRANSCODE_TOO_LARGE;
    }

    if (data == NULL || len < 8) {
        return SNAPCACHE_TRANSCODE_UNSUPPORTED;
    }

    loader = vips_foreign_find_load_buffer(data, len);
    format = loader_format(loader);
    vips_error_clear();

    if (format == SNAPCACHE_FORMAT_ANY) {
        return SNAPCACHE_TRANSCODE_UNSUPPORTED;
    }

    /* a header read: no pixel is decoded here */
    img = vips_image_new_from_buffer(data, len, "", "access",
                                     VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                     VIPS_FAIL_ON_TRUNCATED, NULL);
    if (img == NULL) {
        return vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
    }

    probe->format = format;
    probe->width = vips_image_get_width(img);
    probe->height = vips_image_get_height(img);
    *orientation = vips_image_get_orientation(img);
    g_object_unref(img);

    if (probe->width <= 0 || probe->height <= 0) {
        return SNAPCACHE_TRANSCODE_CORRUPT;
    }

    if ((unsigned long) probe->width * (unsigned long) probe->height
        > max_pixels)
    {
        return SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS;
    }

    return SNAPCACHE_TRANSCODE_OK;
}


int
snapcache_transcode_probe(const void *data, size_t len, size_t max_bytes,
    unsigned long max_pixels, snapcache_probe_t *probe)
{
    int  orientation;

    return header_read(data, len, max_bytes, max_pixels, probe,
                       &orientation);
}


/*
 * libjpeg can decode at 1/2, 1/4 or 1/8 scale for little more than the
 * entropy decoding.  vips_thumbnail in libvips 8.14 keeps a factor of two
 * in hand for its own filter, which triples the pixels it then resizes;
 * we take the largest scale that still leaves at least the target width
 * (the height, if the image is turned a quarter by its orientation).
 */
static int
jpeg_shrink(const snapcache_probe_t *probe, int orientation, int width)
{
    int  w, s;

    w = orientation >= 5 && orientation <= 8 ? probe->height : probe->width;

    for (s = 8; s > 1; s /= 2) {
        if (w / s >= width) {
            return s;
        }
    }

    return 1;
}


/*
 * Decodes with truncation as an error (never a grey-filled picture),
 * shrinking on load; then auto-rotates and resizes to the width, never
 * up.
 */
static int
thumbnail(const void *data, size_t len, const snapcache_probe_t *probe,
    int orientation, int width, VipsImage **out)
{
    int         rc;
    VipsImage  *in;

    if (probe->format != SNAPCACHE_FORMAT_JPEG) {
        return vips_thumbnail_buffer((void *) data, len, out, width,
                                     "height", VIPS_MAX_COORD,
                                     "size", VIPS_SIZE_DOWN,
                                     "option_string", "fail_on=truncated",
                                     NULL);
    }

    if (vips_jpegload_buffer((void *) data, len, &in,
                             "shrink", jpeg_shrink(probe, orientation, width),
                             "access", VIPS_ACCESS_SEQUENTIAL,
                             "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL)
        != 0)
    {
        return -1;
    }

    rc = vips_thumbnail_image(in, out, width, "height", VIPS_MAX_COORD,
                              "size", VIPS_SIZE_DOWN, NULL);
    g_object_unref(in);

    return rc;
}


/*
 * The encoders' strip option is not enough: in libvips 8.14 webpsave
 * still writes EXIF and XMP.  So every metadata field (EXIF, GPS, XMP,
 * IPTC, ICC, orientation) leaves the image before any encoder sees it.
 */
static int
strip_metadata(VipsImage **img)
{
    int          i;
    gchar      **fields;
    VipsImage   *t;

    if (vips_copy(*img, &t, NULL) != 0) {
        return -1;
    }

    fields = vips_image_get_fields(t);

    for (i = 0; fields[i]; i++) {
        /* the header's own fields are not in the table: a no-op */
        vips_image_remove(t, fields[i]);
    }

    g_strfreev(fields);
    g_object_unref(*img);
    *img = t;

    return 0;
}


/* sRGB, no alpha for JPEG, no metadata: what every display decodes alike. */
static int
normalise(VipsImage **img, int format)
{
    VipsImage  *t;

    if (strip_metadata(img) != 0) {
        return -1;
    }

    if (vips_image_get_interpretation(*img) != VIPS_INTERPRETATION_sRGB) {
        if (vips_colourspace(*img, &t, VIPS_INTERPRETATION_sRGB, NULL) != 0) {
            return -1;
        }

        g_object_unref(*img);
        *img = t;
    }

    if (format == SNAPCACHE_FORMAT_JPEG && vips_image_hasalpha(*img)) {
        VipsArrayDouble  *white;
        double            w[] = { 255.0 };

        white = vips_array_double_new(w, 1);

        if (vips_flatten(*img, &t, "background", white, NULL) != 0) {
            vips_area_unref(VIPS_AREA(white));
            return -1;
        }

        vips_area_unref(VIPS_AREA(white));
        g_object_unref(*img);
        *img = t;
    }

    return 0;
}


/*
 * webpsave in libvips 8.14 writes an EXIF chunk even with strip and no
 * metadata left (it rebuilds one from the resolution), so the container
 * is rebuilt here without EXIF, XMP and ICC chunks.
 */
static int
webp_strip(void **buf, size_t *len)
{
    int            i, rc;
    void          *copy;
    WebPMux       *mux;
    WebPData       in, out;
    const char    *chunks[] = { "EXIF", "XMP ", "ICCP", NULL };

    in.bytes = *buf;
    in.size = *len;

    mux = WebPMuxCreate(&in, 0);
    if (mux == NULL) {
        return -1;
    }

    for (i = 0; chunks[i]; i++) {
        rc = WebPMuxDeleteChunk(mux, chunks[i]);
        if (rc != WEBP_MUX_OK && rc != WEBP_MUX_NOT_FOUND) {
            WebPMuxDelete(mux);
            return -1;
        }
    }

    WebPDataInit(&out);
    rc = WebPMuxAssemble(mux, &out);
    WebPMuxDelete(mux);

    if (rc != WEBP_MUX_OK) {
        return -1;
    }

    /* the caller frees with g_free */
    copy = g_memdup2(out.bytes, out.size);

    g_free(*buf);
    *buf = copy;
    *len = out.size;

    WebPDataClear(&out);

    return 0;
}


static int
encode(VipsImage *img, const snapcache_variant_spec_t *spec, void **buf,
    size_t *len)
{
    int  progressive;

    switch (spec->format) {

    case SNAPCACHE_FORMAT_JPEG:
        progressive = vips_image_get_width(img)
                      >= (spec->progressive_min_width > 0
                          ? spec->progressive_min_width : 1000);

        return vips_jpegsave_buffer(img, buf, len, "Q", spec->quality,
                                    "strip", TRUE, "interlace", progressive,
                                    "optimize_coding", TRUE, NULL);

    case SNAPCACHE_FORMAT_WEBP:
        if (vips_webpsave_buffer(img, buf, len, "Q", spec->quality,
                                 "strip", TRUE, NULL)
            != 0)
        {
            return -1;
        }

        if (webp_strip(buf, len) != 0) {
            g_free(*buf);
            *buf = NULL;
            vips_error("snapcache", "cannot strip the WebP container");
            return -1;
        }

        return 0;

    default:
        return vips_heifsave_buffer(img, buf, len, "Q", spec->quality,
                                    "compression",
                                    VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
                                    "strip", TRUE, NULL);
    }
}


static int
spec_check(const snapcache_variant_spec_t *spec)
{
    if (spec->width <= 0 || spec->quality < 1 || spec->quality > 100
        || (spec->format != SNAPCACHE_FORMAT_JPEG
            && spec->format != SNAPCACHE_FORMAT_WEBP
            && spec->format != SNAPCACHE_FORMAT_AVIF))
    {
        return SNAPCACHE_TRANSCODE_BAD_VARIANT;
    }

    if (!(transcode_formats & SNAPCACHE_FORMAT_BIT(spec->format))) {
        return SNAPCACHE_TRANSCODE_ENCODER_MISSING;
    }

    return SNAPCACHE_TRANSCODE_OK;
}


/* The rest of a rung once it has its pixels: normalise and encode. */
static int
finish(VipsImage *img, const snapcache_variant_spec_t *spec,
    const snapcache_probe_t *probe, snapcache_transcode_out_t *out)
{
    void    *buf;
    size_t   n;

    if (normalise(&img, spec->format) != 0) {
        g_object_unref(img);
        return vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
    }

    if (encode(img, spec, &buf, &n) != 0) {
        g_object_unref(img);
        return vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
    }

    out->data = buf;
    out->len = n;
    out->width = vips_image_get_width(img);
    out->height = vips_image_get_height(img);
    out->format = spec->format;
    out->source = *probe;

    g_object_unref(img);
    vips_error_clear();

    return SNAPCACHE_TRANSCODE_OK;
}


int
snapcache_transcode(const void *data, size_t len,
    const snapcache_variant_spec_t *spec, size_t max_bytes,
    unsigned long max_pixels, snapcache_transcode_out_t *out)
{
    int                rc, orientation;
    VipsImage         *img;
    snapcache_probe_t  probe;

    memset(out, 0, sizeof(snapcache_transcode_out_t));

    rc = spec_check(spec);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        return rc;
    }

    rc = header_read(data, len, max_bytes, max_pixels, &probe, &orientation);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        return rc;
    }

    if (thumbnail(data, len, &probe, orientation, spec->width, &img) != 0) {
        return vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
    }

    return finish(img, spec, &probe, out);
}


/*
 * Several rungs of one original in one call, each byte for byte what
 * snapcache_transcode() makes of it alone, so that a rung's bytes (and
 * its ETag) never depend on how it was filled.  The header is read once,
 * and a JPEG is decoded once per shrink-on-load scale that the rungs
 * need: a 1920-wide original decoded at full scale serves both 1920 and
 * 1280, for instance.  Other formats take the single-rung path per rung.
 */
int
snapcache_transcode_rungs(const void *data, size_t len,
    const snapcache_variant_spec_t *specs, size_t n, size_t max_bytes,
    unsigned long max_pixels, snapcache_transcode_out_t *outs, int *rcs)
{
    int                rc, orientation, scale, done[SNAPCACHE_TRANSCODE_RUNGS];
    size_t             i, j;
    VipsImage         *in, *mem, *img;
    snapcache_probe_t  probe;

    if (n == 0 || n > SNAPCACHE_TRANSCODE_RUNGS) {
        return SNAPCACHE_TRANSCODE_BAD_VARIANT;
    }

    for (i = 0; i < n; i++) {
        memset(&outs[i], 0, sizeof(snapcache_transcode_out_t));
        rcs[i] = spec_check(&specs[i]);
        done[i] = rcs[i] != SNAPCACHE_TRANSCODE_OK;
    }

    rc = header_read(data, len, max_bytes, max_pixels, &probe, &orientation);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        for (i = 0; i < n; i++) {
            rcs[i] = rc;
        }

        return rc;
    }

    for (i = 0; i < n; i++) {

        if (done[i]) {
            continue;
        }

        if (probe.format != SNAPCACHE_FORMAT_JPEG) {
            if (thumbnail(data, len, &probe, orientation, specs[i].width,
                          &img)
                != 0)
            {
                rcs[i] = vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);

            } else {
                rcs[i] = finish(img, &specs[i], &probe, &outs[i]);
            }

            done[i] = 1;
            continue;
        }

        scale = jpeg_shrink(&probe, orientation, specs[i].width);

        if (vips_jpegload_buffer((void *) data, len, &in, "shrink", scale,
                                 "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL)
            != 0)
        {
            rc = vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
            mem = NULL;

        } else {
            /* decode now, once, for every rung of this scale */
            mem = vips_image_copy_memory(in);
            g_object_unref(in);
            rc = mem ? SNAPCACHE_TRANSCODE_OK
                     : vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
        }

        for (j = i; j < n; j++) {

            if (done[j]
                || jpeg_shrink(&probe, orientation, specs[j].width) != scale)
            {
                continue;
            }

            done[j] = 1;

            if (mem == NULL) {
                rcs[j] = rc;
                continue;
            }

            if (vips_thumbnail_image(mem, &img, specs[j].width,
                                     "height", VIPS_MAX_COORD,
                                     "size", VIPS_SIZE_DOWN, NULL)
                != 0)
            {
                rcs[j] = vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
                continue;
            }

            rcs[j] = finish(img, &specs[j], &probe, &outs[j]);
        }

        if (mem) {
            g_object_unref(mem);
        }
    }

    return SNAPCACHE_TRANSCODE_OK;
}


void
snapcache_transcode_free(void *data)
{
    g_free(data);
}


const char *
snapcache_transcode_strerror(int rc)
{
    switch (rc) {
    case SNAPCACHE_TRANSCODE_OK:
        return "ok";
    case SNAPCACHE_TRANSCODE_TOO_LARGE:
        return "too large";
    case SNAPCACHE_TRANSCODE_TOO_MANY_PIXELS:
        return "too many pixels";
    case SNAPCACHE_TRANSCODE_UNSUPPORTED:
        return "unsupported format";
    case SNAPCACHE_TRANSCODE_TRUNCATED:
        return "truncated";
    case SNAPCACHE_TRANSCODE_CORRUPT:
        return "corrupt";
    case SNAPCACHE_TRANSCODE_ENCODER_MISSING:
        return "encoder missing";
    case SNAPCACHE_TRANSCODE_BAD_VARIANT:
        return "invalid variant";
    default:
        return "transcode error";
    }
}
