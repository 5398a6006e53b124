/*
 * snapcache transcode, on libvips.  See snapcache_transcode.h.
 */

#include <string.h>

#include <vips/vips.h>

#include "transcode/snapcache_transcode.h"


static unsigned  transcode_formats;


static const char  *allowed_loaders[] = {
    "VipsForeignLoadJpegBuffer",
    "VipsForeignLoadPngBuffer",
    "VipsForeignLoadWebpBuffer",
    NULL
};


static int
loader_format(const char *name)
{
    if (name == NULL) {
        return 0;
    }

    if (strcmp(name, "VipsForeignLoadJpegBuffer") == 0) {
        return SNAPCACHE_TRANSCODE_JPEG;
    }

    if (strcmp(name, "VipsForeignLoadPngBuffer") == 0) {
        return SNAPCACHE_TRANSCODE_PNG;
    }

    if (strcmp(name, "VipsForeignLoadWebpBuffer") == 0) {
        return SNAPCACHE_TRANSCODE_WEBP;
    }

    return 0;
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

    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);

    for (i = 0; allowed_loaders[i]; i++) {
        vips_operation_block_set(allowed_loaders[i], FALSE);
    }

    transcode_formats = 1u << SNAPCACHE_TRANSCODE_JPEG
                        | 1u << SNAPCACHE_TRANSCODE_WEBP;

    if (avif_works()) {
        transcode_formats |= 1u << SNAPCACHE_TRANSCODE_AVIF;
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


int
snapcache_transcode_probe(const void *data, size_t len, size_t max_bytes,
    unsigned long max_pixels, snapcache_probe_t *probe)
{
    int          format;
    const char  *loader;
    VipsImage   *img;

    memset(probe, 0, sizeof(snapcache_probe_t));

    if (len > max_bytes) {
        return SNAPCACHE_TRANSCODE_TOO_LARGE;
    }

    if (data == NULL || len < 8) {
        return SNAPCACHE_TRANSCODE_UNSUPPORTED;
    }

    loader = vips_foreign_find_load_buffer(data, len);
    format = loader_format(loader);
    vips_error_clear();

    if (format == 0) {
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


/* sRGB, and no alpha for JPEG: what every display decodes alike. */
static int
normalise(VipsImage **img, int format)
{
    VipsImage  *t;

    if (vips_image_get_interpretation(*img) != VIPS_INTERPRETATION_sRGB) {
        if (vips_colourspace(*img, &t, VIPS_INTERPRETATION_sRGB, NULL) != 0) {
            return -1;
        }

        g_object_unref(*img);
        *img = t;
    }

    if (format == SNAPCACHE_TRANSCODE_JPEG && vips_image_hasalpha(*img)) {
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


static int
encode(VipsImage *img, const snapcache_variant_spec_t *spec, void **buf,
    size_t *len)
{
    int  progressive;

    switch (spec->format) {

    case SNAPCACHE_TRANSCODE_JPEG:
        progressive = vips_image_get_width(img)
                      >= (spec->progressive_min_width > 0
                          ? spec->progressive_min_width : 1000);

        return vips_jpegsave_buffer(img, buf, len, "Q", spec->quality,
                                    "strip", TRUE, "interlace", progressive,
                                    "optimize_coding", TRUE, NULL);

    case SNAPCACHE_TRANSCODE_WEBP:
        return vips_webpsave_buffer(img, buf, len, "Q", spec->quality,
                                    "strip", TRUE, NULL);

    default:
        return vips_heifsave_buffer(img, buf, len, "Q", spec->quality,
                                    "compression",
                                    VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
                                    "strip", TRUE, NULL);
    }
}


int
snapcache_transcode(const void *data, size_t len,
    const snapcache_variant_spec_t *spec, size_t max_bytes,
    unsigned long max_pixels, snapcache_transcode_out_t *out)
{
    int                rc;
    void              *buf;
    size_t             n;
    VipsImage         *img;
    snapcache_probe_t  probe;

    memset(out, 0, sizeof(snapcache_transcode_out_t));

    if (spec->width <= 0 || spec->quality < 1 || spec->quality > 100
        || (spec->format != SNAPCACHE_TRANSCODE_JPEG
            && spec->format != SNAPCACHE_TRANSCODE_WEBP
            && spec->format != SNAPCACHE_TRANSCODE_AVIF))
    {
        return SNAPCACHE_TRANSCODE_BAD_VARIANT;
    }

    if (!(transcode_formats & (1u << spec->format))) {
        return SNAPCACHE_TRANSCODE_ENCODER_MISSING;
    }

    rc = snapcache_transcode_probe(data, len, max_bytes, max_pixels, &probe);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        return rc;
    }

    /*
     * Shrink-on-load to the width, never up; orientation is applied;
     * a truncated input is an error, not a grey-filled picture.
     */
    if (vips_thumbnail_buffer((void *) data, len, &img, spec->width,
                              "height", VIPS_MAX_COORD,
                              "size", VIPS_SIZE_DOWN,
                              "option_string", "fail_on=truncated",
                              NULL)
        != 0)
    {
        return vips_failure(SNAPCACHE_TRANSCODE_CORRUPT);
    }

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

    g_object_unref(img);
    vips_error_clear();

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
