
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Owner markers.  See owner_marker.h.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <vips/vips.h>

#include "t/lib/owner_marker.h"


#define COLS        16
#define ROWS        9
#define FIELD_BITS  40
#define CHECK_BITS  20
#define DATA_CELLS  (COLS * ROWS - 4)
#define DEC_W       (COLS * 10)
#define DEC_H       (ROWS * 10)
#define LIGHT_MIN   140.0
#define DARK_MAX    95.0


static const unsigned char  light[4][3] = {
    { 250, 205, 140 }, { 160, 225, 250 }, { 215, 250, 160 }, { 240, 240, 240 }
};

static const unsigned char  dark[4][3] = {
    { 70, 25, 20 }, { 15, 40, 75 }, { 25, 65, 20 }, { 20, 20, 20 }
};


static uint64_t
hash40(char domain, const char *s)
{
    int            i;
    char           buf[80];
    unsigned int   n;
    uint64_t       v;
    unsigned char  md[EVP_MAX_MD_SIZE];

    snprintf(buf, sizeof(buf), "%c%s", domain, s);
    EVP_Digest(buf, strlen(buf), md, &n, EVP_sha256(), NULL);

    v = 0;

    for (i = 0; i < 5; i++) {
        v = v << 8 | md[i];
    }

    return v;
}


void
snapcache_marker_of(const char *account, const char *device,
    const char *snapshot, snapcache_marker_t *m)
{
    m->account = hash40('A', account);
    m->device = hash40('D', device);
    m->snapshot = hash40('S', snapshot);
}


static uint32_t
check_of(const snapcache_marker_t *m)
{
    int            i;
    unsigned int   n;
    unsigned char  buf[15], md[EVP_MAX_MD_SIZE];

    for (i = 0; i < 5; i++) {
        buf[i] = (unsigned char) (m->account >> (32 - 8 * i));
        buf[5 + i] = (unsigned char) (m->device >> (32 - 8 * i));
        buf[10 + i] = (unsigned char) (m->snapshot >> (32 - 8 * i));
    }

    EVP_Digest(buf, sizeof(buf), md, &n, EVP_sha256(), NULL);

    return ((uint32_t) md[0] << 12 | (uint32_t) md[1] << 4 | md[2] >> 4)
           & ((1u << CHECK_BITS) - 1);
}


static int
is_corner(int col, int row)
{
    return (col == 0 || col == COLS - 1) && (row == 0 || row == ROWS - 1);
}


/* The sync pattern: top-left and bottom-right light, the others dark. */
static int
corner_bit(int col, int row)
{
    return (col == 0) == (row == 0);
}


/* Lays the 140 data bits out row by row, skipping the corners. */
static void
cell_bits(const snapcache_marker_t *m, int bits[COLS * ROWS],
    int field[COLS * ROWS])
{
    int       i, k, col, row, f;
    uint32_t  check;
    uint64_t  v;

    check = check_of(m);
    k = 0;

    for (row = 0; row < ROWS; row++) {
        for (col = 0; col < COLS; col++) {
            i = row * COLS + col;

            if (is_corner(col, row)) {
                bits[i] = corner_bit(col, row);
                field[i] = 3;
                continue;
            }

            f = k / FIELD_BITS;

            if (f < 3) {
                v = f == 0 ? m->account : f == 1 ? m->device : m->snapshot;
                bits[i] = (v >> (FIELD_BITS - 1 - k % FIELD_BITS)) & 1;

            } else {
                bits[i] = (check >> (CHECK_BITS - 1 - (k - 3 * FIELD_BITS)))
                          & 1;
                f = 3;
            }

            field[i] = f;
            k++;
        }
    }
}


/* The owner's cells, with noise, as packed RGB; g_free it. */
static unsigned char *
render_pixels(const snapcache_marker_t *m, int width, int height)
{
    int                   x, y, i, noise, c, v;
    int                   bits[COLS * ROWS], field[COLS * ROWS];
    uint32_t              seed;
    unsigned char        *px, *p;
    const unsigned char  *col;

    cell_bits(m, bits, field);

    px = g_malloc((size_t) width * height * 3);
    seed = (uint32_t) (m->account ^ m->device ^ m->snapshot) | 1;

    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            i = (y * ROWS / height) * COLS + x * COLS / width;
            col = bits[i] ? light[field[i]] : dark[field[i]];

            seed = seed * 1664525 + 1013904223;
            noise = (int) (seed >> 24) % 29 - 14;

            p = px + ((size_t) y * width + x) * 3;

            for (c = 0; c < 3; c++) {
                v = col[c] + noise;
                p[c] = (unsigned char) (v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }

    return px;
}


static int
encode_pixels(unsigned char *px, int width, int height, int format,
    int quality, void **out, size_t *out_len)
{
    int         rc;
    VipsImage  *img;

    img = vips_image_new_from_memory(px, (size_t) width * height * 3, width,
                                     height, 3, VIPS_FORMAT_UCHAR);
    if (img == NULL) {
        return -1;
    }

    switch (format) {
    case SNAPCACHE_MARKER_PNG:
        rc = vips_pngsave_buffer(img, out, out_len, "compression", 6, NULL);
        break;
    case SNAPCACHE_MARKER_WEBP:
        rc = vips_webpsave_buffer(img, out, out_len, "Q", quality, NULL);
        break;
    default:
        rc = vips_jpegsave_buffer(img, out, out_len, "Q", quality, NULL);
        break;
    }

    g_object_unref(img);

    return rc == 0 ? 0 : -1;
}


/* Where a cell's centre lies in an image of width x height. */
static void
cell_centre(int col, int row, int width, int height, int *x0, int *x1,
    int *y0, int *y1)
{
    /* the decoder reads pixels 2..7 of each cell's 10 in its reduction */
    *x0 = (col * 10 + 2) * width / DEC_W;
    *x1 = (col * 10 + 8) * width / DEC_W;
    *y0 = (row * 10 + 2) * height / DEC_H;
    *y1 = (row * 10 + 8) * height / DEC_H;
}


int
snapcache_marker_stamp(const void *photo, size_t photo_len,
    const char *account, const char *device, const char *snapshot,
    int width, int height, int quality, void **out, size_t *out_len)
{
    int                  x, y, i, c, v, col, row, x0, x1, y0, y1, rc;
    int                  bits[COLS * ROWS], field[COLS * ROWS];
    double               sum[COLS * ROWS][3], mean[3];
    size_t               n;
    VipsImage           *img, *t;
    unsigned char       *px, *dst, *p, *q;
    const unsigned char *colour;
    snapcache_marker_t   m;

    if (width < COLS * 4 || height < ROWS * 4) {
        return -1;
    }

    if (vips_thumbnail_buffer((void *) photo, photo_len, &img, width,
                              "height", height, "crop",
                              VIPS_INTERESTING_CENTRE, NULL)
        != 0)
    {
        return -1;
    }

    if (vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, NULL) != 0) {
        g_object_unref(img);
        return -1;
    }

    g_object_unref(img);

    if (vips_extract_band(t, &img, 0, "n", 3, NULL) != 0) {
        g_object_unref(t);
        return -1;
    }

    g_object_unref(t);

    if (vips_image_get_width(img) != width
        || vips_image_get_height(img) != height)
    {
        g_object_unref(img);
        return -1;
    }

    px = vips_image_write_to_memory(img, &n);
    g_object_unref(img);

    if (px == NULL || n != (size_t) width * height * 3) {
        g_free(px);
        return -1;
    }

    snapcache_marker_of(account, device, snapshot, &m);
    cell_bits(&m, bits, field);

    /* the photograph's mean over each cell's centre, per channel */
    memset(sum, 0, sizeof(sum));

    for (row = 0; row < ROWS; row++) {
        for (col = 0; col < COLS; col++) {
            i = row * COLS + col;
            cell_centre(col, row, width, height, &x0, &x1, &y0, &y1);

            for (y = y0; y < y1; y++) {
                for (x = x0; x < x1; x++) {
                    p = px + ((size_t) y * width + x) * 3;

                    for (c = 0; c < 3; c++) {
                        sum[i][c] += p[c];
                    }
                }
            }

            for (c = 0; c < 3; c++) {
                sum[i][c] /= (double) (x1 - x0) * (y1 - y0);
            }
        }
    }

    /*
     * Each cell is its marker colour plus the photograph's detail around
     * that mean, so the decoder reads the marker while encoders see the
     * texture, and so the bytes, of a real photograph.
     */
    dst = g_malloc((size_t) width * height * 3);

    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            i = (y * ROWS / height) * COLS + x * COLS / width;
            colour = bits[i] ? light[field[i]] : dark[field[i]];
            p = px + ((size_t) y * width + x) * 3;
            q = dst + ((size_t) y * width + x) * 3;

            for (c = 0; c < 3; c++) {
                mean[c] = sum[i][c];
                v = colour[c] + (int) (0.6 * (p[c] - mean[c]));
                q[c] = (unsigned char) (v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }

    g_free(px);

    img = vips_image_new_from_memory(dst, (size_t) width * height * 3, width,
                                     height, 3, VIPS_FORMAT_UCHAR);
    if (img == NULL) {
        g_free(dst);
        return -1;
    }

    rc = vips_jpegsave_buffer(img, out, out_len, "Q", quality, NULL);

    g_object_unref(img);
    g_free(dst);

    return rc == 0 ? 0 : -1;
}


int
snapcache_marker_render(const char *account, const char *device,
    const char *snapshot, int width, int height, int format, int quality,
    void **out, size_t *out_len)
{
    int                 rc;
    unsigned char      *px;
    snapcache_marker_t  m;

    if (width < COLS * 4 || height < ROWS * 4) {
        return -1;
    }

    snapcache_marker_of(account, device, snapshot, &m);

    px = render_pixels(&m, width, height);
    rc = encode_pixels(px, width, height, format, quality, out, out_len);
    g_free(px);

    return rc;
}


/*
 * Fills a rectangle between grid lines (x0, y0) and (x1, y1), widened by
 * a tenth of a cell on each side: the decoder reads only the middle of
 * each cell, so strokes along the grid lines leave the marker intact.
 */
static void
stroke(unsigned char *px, int width, int height, int x0, int y0, int x1,
    int y1)
{
    int             x, y, hx, hy, left, right, top, bottom;
    unsigned char  *p;

    hx = width / COLS / 10;
    hy = height / ROWS / 10;

    left = x0 * width / COLS - hx;
    right = x1 * width / COLS + hx;
    top = y0 * height / ROWS - hy;
    bottom = y1 * height / ROWS + hy;

    for (y = top < 0 ? 0 : top; y < bottom && y < height; y++) {
        for (x = left < 0 ? 0 : left; x < right && x < width; x++) {
            p = px + ((size_t) y * width + x) * 3;
            p[0] = 235;
            p[1] = 20;
            p[2] = 225;
        }
    }
}


/*
 * A seven-segment digit drawn on the grid lines: one cell wide, two
 * tall, its top-left corner on grid line (col, row).
 */
static void
draw_digit(unsigned char *px, int width, int height, int col, int row,
    int digit)
{
    int                   s;
    static const uint8_t  segments[10] = {
        0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f
    };
    static const int      seg[7][4] = {
        { 0, 0, 1, 0 },                    /* a: top */
        { 1, 0, 1, 1 },                    /* b: upper right */
        { 1, 1, 1, 2 },                    /* c: lower right */
        { 0, 2, 1, 2 },                    /* d: bottom */
        { 0, 1, 0, 2 },                    /* e: lower left */
        { 0, 0, 0, 1 },                    /* f: upper left */
        { 0, 1, 1, 1 }                     /* g: middle */
    };

    for (s = 0; s < 7; s++) {
        if (segments[digit] & (1 << s)) {
            stroke(px, width, height, col + seg[s][0], row + seg[s][1],
                   col + seg[s][2], row + seg[s][3]);
        }
    }
}


int
snapcache_marker_render_clock(const char *account, const char *device,
    const char *snapshot, int width, int height, const char *hhmmss,
    int quality, void **out, size_t *out_len)
{
    int                 i, rc;
    unsigned char      *px;
    snapcache_marker_t  m;
    static const int    col[6] = { 1, 3, 6, 8, 11, 13 };

    if (width < COLS * 20 || height < ROWS * 20 || strlen(hhmmss) != 6
        || strspn(hhmmss, "0123456789") != 6)
    {
        return -1;
    }

    snapcache_marker_of(account, device, snapshot, &m);

    px = render_pixels(&m, width, height);

    for (i = 0; i < 6; i++) {
        draw_digit(px, width, height, col[i], 3, hhmmss[i] - '0');
    }

    rc = encode_pixels(px, width, height, SNAPCACHE_MARKER_JPEG, quality,
                       out, out_len);
    g_free(px);

    return rc;
}


/* Mean luma of a cell's centre in the 160 x 90 reduction. */
static double
cell_luma(const unsigned char *px, int col, int row)
{
    int                   x, y;
    double                sum;
    const unsigned char  *p;

    sum = 0;

    for (y = row * 10 + 2; y < row * 10 + 8; y++) {
        for (x = col * 10 + 2; x < col * 10 + 8; x++) {
            p = px + ((size_t) y * DEC_W + x) * 3;
            sum += 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        }
    }

    return sum / 36;
}


/* Shrink-on-load straight to one 10 x 10 block per cell, sRGB, 3 bands. */
static int
reduce(const void *data, size_t len, unsigned char **px)
{
    int         w, h;
    double      aspect;
    size_t      n;
    VipsImage  *img, *t;

    img = vips_image_new_from_buffer(data, len, "", NULL);
    if (img == NULL) {
        vips_error_clear();
        return -1;
    }

    w = vips_image_get_width(img);
    h = vips_image_get_height(img);
    g_object_unref(img);

    aspect = (double) w / h;

    if (aspect < 16.0 / 9 * 0.97 || aspect > 16.0 / 9 * 1.03) {
        return -1;
    }

    if (vips_thumbnail_buffer((void *) data, len, &img, DEC_W, "height",
                              DEC_H, "size", VIPS_SIZE_FORCE, "no_rotate",
                              TRUE, NULL)
        != 0)
    {
        vips_error_clear();
        return -1;
    }

    if (vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, NULL) != 0) {
        g_object_unref(img);
        vips_error_clear();
        return -1;
    }

    g_object_unref(img);
    img = t;

    if (vips_extract_band(img, &t, 0, "n", 3, NULL) != 0) {
        g_object_unref(img);
        vips_error_clear();
        return -1;
    }

    g_object_unref(img);
    img = t;

    if (vips_image_get_width(img) != DEC_W
        || vips_image_get_height(img) != DEC_H)
    {
        g_object_unref(img);
        return -1;
    }

    *px = vips_image_write_to_memory(img, &n);
    g_object_unref(img);

    if (*px == NULL || n != (size_t) DEC_W * DEC_H * 3) {
        g_free(*px);
        vips_error_clear();
        return -1;
    }

    return 0;
}


int
snapcache_marker_decode(const void *data, size_t len, snapcache_marker_t *m)
{
    int             col, row, k, bit, f;
    double          luma;
    uint32_t        check;
    uint64_t        v[4];
    unsigned char  *px;

    if (reduce(data, len, &px) != 0) {
        return -1;
    }

    v[0] = v[1] = v[2] = v[3] = 0;
    k = 0;

    for (row = 0; row < ROWS; row++) {
        for (col = 0; col < COLS; col++) {
            luma = cell_luma(px, col, row);

            if (luma >= LIGHT_MIN) {
                bit = 1;

            } else if (luma <= DARK_MAX) {
                bit = 0;

            } else {
                g_free(px);
                return -1;
            }

            if (is_corner(col, row)) {
                if (bit != corner_bit(col, row)) {
                    g_free(px);
                    return -1;
                }

                continue;
            }

            f = k < 3 * FIELD_BITS ? k / FIELD_BITS : 3;
            v[f] = v[f] << 1 | (uint64_t) bit;
            k++;
        }
    }

    g_free(px);

    m->account = v[0];
    m->device = v[1];
    m->snapshot = v[2];
    check = (uint32_t) v[3];

    return check == check_of(m) ? 0 : -1;
}


int
snapcache_marker_check(const void *data, size_t len, const char *account,
    const char *device, const char *snapshot, char *why, size_t why_size)
{
    snapcache_marker_t  got, want;

    if (snapcache_marker_decode(data, len, &got) != 0) {
        snprintf(why, why_size, "undecodable");
        return SNAPCACHE_MARKER_UNDECODABLE;
    }

    snapcache_marker_of(account, device, snapshot, &want);

    if (got.account == want.account && got.device == want.device
        && got.snapshot == want.snapshot)
    {
        snprintf(why, why_size, "ok");
        return SNAPCACHE_MARKER_OK;
    }

    snprintf(why, why_size, "mismatch:%s%s%s",
             got.account != want.account ? " account" : "",
             got.device != want.device ? " device" : "",
             got.snapshot != want.snapshot ? " snapshot" : "");

    return SNAPCACHE_MARKER_MISMATCH;
}
