/*
 * snapmark: makes owner-marked test images and checks served ones.
 *
 *   snapmark gen --account A --device D --snapshot S [--width 1920]
 *                [--height 1080] [--format jpeg|png|webp] [--quality 90]
 *                [--photo PHOTO] -o FILE
 *                (with --photo: the marker stamped on that photograph,
 *                as JPEG)
 *   snapmark check FILE A D S       exit 0 ok, 1 mismatch, 2 undecodable
 *   snapmark check-list LISTFILE    lines "FILE A D S"; exit 1 if any fails
 *   snapmark info FILE              format, width and height
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "t/lib/owner_marker.h"


static int
usage(void)
{
    fprintf(stderr,
        "usage: snapmark gen --account A --device D --snapshot S\n"
        "                    [--width W] [--height H] [--format F]\n"
        "                    [--quality Q] [--photo PHOTO] -o FILE\n"
        "       snapmark check FILE ACCOUNT DEVICE SNAPSHOT\n"
        "       snapmark check-list LISTFILE\n"
        "       snapmark info FILE\n");
    return 2;
}


static int
cmd_gen(int argc, char **argv)
{
    int          i, rc, width, height, format, quality;
    void        *buf;
    size_t       len;
    gsize        photo_len;
    gchar       *photo_buf;
    const char  *a, *d, *s, *out, *photo;

    a = d = s = out = photo = NULL;
    width = 1920;
    height = 1080;
    format = SNAPCACHE_MARKER_JPEG;
    quality = 90;

    for (i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--account") == 0) {
            a = argv[i + 1];
        } else if (strcmp(argv[i], "--device") == 0) {
            d = argv[i + 1];
        } else if (strcmp(argv[i], "--snapshot") == 0) {
            s = argv[i + 1];
        } else if (strcmp(argv[i], "--width") == 0) {
            width = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--height") == 0) {
            height = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--quality") == 0) {
            quality = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--format") == 0) {
            format = strcmp(argv[i + 1], "png") == 0
                     ? SNAPCACHE_MARKER_PNG
                     : strcmp(argv[i + 1], "webp") == 0
                       ? SNAPCACHE_MARKER_WEBP : SNAPCACHE_MARKER_JPEG;
        } else if (strcmp(argv[i], "-o") == 0) {
            out = argv[i + 1];
        } else if (strcmp(argv[i], "--photo") == 0) {
            photo = argv[i + 1];
        } else {
            return usage();
        }
    }

    if (i != argc || !a || !d || !s || !out) {
        return usage();
    }

    if (photo) {
        if (!g_file_get_contents(photo, &photo_buf, &photo_len, NULL)) {
            fprintf(stderr, "snapmark: cannot read %s\n", photo);
            return 1;
        }

        rc = snapcache_marker_stamp(photo_buf, photo_len, a, d, s, width,
                                    height, quality, &buf, &len);
        g_free(photo_buf);

    } else {
        rc = snapcache_marker_render(a, d, s, width, height, format, quality,
                                     &buf, &len);
    }

    if (rc != 0) {
        fprintf(stderr, "snapmark: cannot render: %s\n", vips_error_buffer());
        return 1;
    }

    if (!g_file_set_contents(out, buf, (gssize) len, NULL)) {
        fprintf(stderr, "snapmark: cannot write %s\n", out);
        g_free(buf);
        return 1;
    }

    g_free(buf);

    return 0;
}


static int
check_file(const char *file, const char *a, const char *d, const char *s)
{
    int     rc;
    char    why[64];
    gsize   len;
    gchar  *buf;

    if (!g_file_get_contents(file, &buf, &len, NULL)) {
        printf("undecodable %s (cannot read)\n", file);
        return SNAPCACHE_MARKER_UNDECODABLE;
    }

    rc = snapcache_marker_check(buf, len, a, d, s, why, sizeof(why));
    g_free(buf);

    printf("%s %s %s %s %s\n", rc == SNAPCACHE_MARKER_OK ? "ok" : why, file,
           a, d, s);

    return rc;
}


static int
cmd_check_list(const char *list)
{
    int    n, bad, rc;
    char   line[4096], f[4096], a[80], d[80], s[80];
    FILE  *in;

    in = fopen(list, "r");
    if (in == NULL) {
        perror(list);
        return 2;
    }

    n = bad = 0;

    while (fgets(line, sizeof(line), in)) {
        if (sscanf(line, "%4095s %79s %79s %79s", f, a, d, s) != 4) {
            continue;
        }

        n++;
        rc = check_file(f, a, d, s);
        bad += rc != SNAPCACHE_MARKER_OK;
    }

    fclose(in);

    printf("summary: %d checked, %d ok, %d not ok\n", n, n - bad, bad);

    return bad ? 1 : 0;
}


static int
cmd_info(const char *file)
{
    const char  *loader;
    VipsImage   *img;

    loader = vips_foreign_find_load(file);
    img = vips_image_new_from_file(file, NULL);

    if (img == NULL || loader == NULL) {
        fprintf(stderr, "snapmark: cannot read %s\n", file);
        return 1;
    }

    printf("format=%s width=%d height=%d\n",
           strstr(loader, "Jpeg") ? "jpeg" : strstr(loader, "Png") ? "png"
           : strstr(loader, "Webp") ? "webp" : loader,
           vips_image_get_width(img), vips_image_get_height(img));

    g_object_unref(img);

    return 0;
}


int
main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0]) != 0 || argc < 2) {
        return usage();
    }

    vips_cache_set_max(0);

    if (strcmp(argv[1], "gen") == 0) {
        return cmd_gen(argc, argv);
    }

    if (strcmp(argv[1], "check") == 0 && argc == 6) {
        return check_file(argv[2], argv[3], argv[4], argv[5]);
    }

    if (strcmp(argv[1], "check-list") == 0 && argc == 3) {
        return cmd_check_list(argv[2]);
    }

    if (strcmp(argv[1], "info") == 0 && argc == 3) {
        return cmd_info(argv[2]);
    }

    return usage();
}
