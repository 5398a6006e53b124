
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapmark: makes owner-marked test images and checks served ones.
 *
 *   snapmark gen --account A --device D --snapshot S [--width 1920]
 *                [--height 1080] [--format jpeg|png|webp] [--quality 90]
 *                [--clock HHMMSS] [--photo PHOTO] -o FILE
 *                (with --photo: the marker stamped on that photograph,
 *                as JPEG)
 *   snapmark live --dir DIR [--every 2] [--width 1920] [--height 1080]
 *                 [--quality 90] ACCOUNT/DEVICE...
 *                                   a live camera per ACCOUNT/DEVICE: writes
 *                                   DIR/ACCOUNT/DEVICE/latest (the owner's
 *                                   marker for snapshot "latest", with the
 *                                   time on it) every SECONDS, until
 *                                   SIGINT, SIGTERM or SIGHUP, or until its
 *                                   parent exits
 *   snapmark check FILE A D S       exit 0 ok, 1 mismatch, 2 undecodable
 *   snapmark check-list LISTFILE    lines "FILE A D S"; exit 1 if any fails
 *   snapmark which-list LISTFILE    lines "FILE A D S0 [S1 ...]": prints,
 *                                   per line, the index of the snapshot
 *                                   whose marker FILE carries, "none" when
 *                                   it carries none of them (or another
 *                                   owner's), or "undecodable"
 *   snapmark info FILE              format, width and height
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <vips/vips.h>

#include "t/lib/owner_marker.h"


static int
usage(void)
{
    fprintf(stderr,
        "usage: snapmark gen --account A --device D --snapshot S\n"
        "                    [--width W] [--height H] [--format F]\n"
        "                    [--quality Q] [--clock HHMMSS]\n"
        "                    [--photo PHOTO] -o FILE\n"
        "       snapmark live --dir DIR [--every SECONDS] [--width W]\n"
        "                     [--height H] [--quality Q] ACCOUNT/DEVICE...\n"
        "       snapmark check FILE ACCOUNT DEVICE SNAPSHOT\n"
        "       snapmark check-list LISTFILE\n"
        "       snapmark which-list LISTFILE\n"
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
    const char  *a, *d, *s, *out, *clock, *photo;

    a = d = s = out = clock = photo = NULL;
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
        } else if (strcmp(argv[i], "--clock") == 0) {
            clock = argv[i + 1];
        } else if (strcmp(argv[i], "--photo") == 0) {
            photo = argv[i + 1];
        } else if (strcmp(argv[i], "-o") == 0) {
            out = argv[i + 1];
        } else {
            return usage();
        }
    }

    if (i != argc || !a || !d || !s || !out
        || ((clock || photo) && format != SNAPCACHE_MARKER_JPEG)
        || (clock && photo))
    {
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

    } else if (clock) {
        rc = snapcache_marker_render_clock(a, d, s, width, height, clock,
                                           quality, &buf, &len);

    } else {
        rc = snapcache_marker_render(a, d, s, width, height, format,
                                     quality, &buf, &len);
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


/*
 * Decodes each file once and compares it with each candidate owner: the
 * soak's check, where a device's snapshot changes with every purge.
 */
static int
cmd_which_list(const char *list)
{
    int                  n, i, found;
    char                *f, *a, *d, *s, *save;
    char                 line[8192];
    gsize                len;
    gchar               *buf;
    FILE                *in;
    snapcache_marker_t   got, want;

    in = fopen(list, "r");
    if (in == NULL) {
        perror(list);
        return 2;
    }

    while (fgets(line, sizeof(line), in)) {
        line[strcspn(line, "\n")] = '\0';

        f = strtok_r(line, " ", &save);
        a = strtok_r(NULL, " ", &save);
        d = strtok_r(NULL, " ", &save);

        if (f == NULL || a == NULL || d == NULL) {
            continue;
        }

        if (!g_file_get_contents(f, &buf, &len, NULL)) {
            printf("undecodable %s\n", f);
            continue;
        }

        n = snapcache_marker_decode(buf, len, &got);
        g_free(buf);

        if (n != 0) {
            printf("undecodable %s\n", f);
            continue;
        }

        found = -1;

        for (i = 0; (s = strtok_r(NULL, " ", &save)) != NULL; i++) {
            snapcache_marker_of(a, d, s, &want);

            if (found < 0 && got.account == want.account
                && got.device == want.device
                && got.snapshot == want.snapshot)
            {
                found = i;
            }
        }

        if (found < 0) {
            printf("none %s\n", f);

        } else {
            printf("%d %s\n", found, f);
        }
    }

    fclose(in);

    return 0;
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

static volatile sig_atomic_t  live_stop;


static void
live_signal(int signo)
{
    live_stop = 1;
}


/*
 * Replaces DIR/A/D/latest in one rename, so that the origin never serves
 * half a file; the temporary name starts with a dot, which no snapshot id
 * can, so it is never reachable through snapcache.  0644 whatever the
 * umask: nginx's workers read it as another user.
 */
static int
live_write(const char *dir, const char *camera, const char *hhmmss, int width,
    int height, int quality)
{
    int      fd, rc;
    char     account[80], tmp[4096], path[4096];
    void    *buf;
    size_t   len, off;
    ssize_t  n;

    if (snprintf(account, sizeof(account), "%.*s",
                 (int) (strchr(camera, '/') - camera), camera)
        >= (int) sizeof(account))
    {
        return -1;
    }

    if (snapcache_marker_render_clock(account, strchr(camera, '/') + 1,
                                      "latest", width, height, hhmmss,
                                      quality, &buf, &len)
        != 0)
    {
        fprintf(stderr, "snapmark live: cannot render %s: %s\n", camera,
                vips_error_buffer());
        vips_error_clear();
        return -1;
    }

    snprintf(tmp, sizeof(tmp), "%s/%s/.latest.tmp", dir, camera);
    snprintf(path, sizeof(path), "%s/%s/latest", dir, camera);

    rc = -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0644);

    if (fd != -1) {
        for (off = 0; off < len; off += (size_t) n) {
            n = write(fd, (char *) buf + off, len - off);

            if (n == -1 && errno == EINTR) {
                n = 0;
                continue;
            }

            if (n <= 0) {
                break;
            }
        }

        if (off == len && fchmod(fd, 0644) == 0 && close(fd) == 0) {
            fd = -1;
            rc = rename(tmp, path);
        }

        if (fd != -1) {
            close(fd);
        }

        if (rc != 0) {
            unlink(tmp);
        }
    }

    if (rc != 0) {
        fprintf(stderr, "snapmark live: cannot write %s: %s\n", path,
                strerror(errno));
    }

    g_free(buf);

    return rc;
}


/* Sleeps to the next multiple of every seconds; a signal cuts it short. */
static void
live_sleep(int every)
{
    struct timespec  now, left;

    clock_gettime(CLOCK_REALTIME, &now);

    left.tv_sec = every - 1 - now.tv_sec % every;
    left.tv_nsec = 999999999 - now.tv_nsec;

    nanosleep(&left, NULL);
}


static int
cmd_live(int argc, char **argv)
{
    int               i, c, first, every, width, height, quality;
    char              hhmmss[8];
    pid_t             parent;
    time_t            now;
    struct tm         tm;
    const char       *dir, *slash;
    struct sigaction  sa;

    dir = NULL;
    every = 2;
    width = 1920;
    height = 1080;
    quality = 90;

    for (i = 2; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--every") == 0) {
            every = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--width") == 0) {
            width = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--height") == 0) {
            height = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--quality") == 0) {
            quality = atoi(argv[i + 1]);
        } else {
            return usage();
        }
    }

    first = i;

    if (dir == NULL || every < 1 || first == argc) {
        return usage();
    }

    for (c = first; c < argc; c++) {
        slash = strchr(argv[c], '/');

        if (slash == NULL || slash == argv[c] || slash[1] == '\0'
            || strchr(slash + 1, '/') || strstr(argv[c], ".."))
        {
            fprintf(stderr, "snapmark live: \"%s\" is not ACCOUNT/DEVICE\n",
                    argv[c]);
            return 2;
        }
    }

    /* never outlive the demo that started us */
    parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = live_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    while (!live_stop && getppid() == parent) {
        now = time(NULL);
        localtime_r(&now, &tm);
        strftime(hhmmss, sizeof(hhmmss), "%H%M%S", &tm);

        for (c = first; c < argc && !live_stop; c++) {
            (void) live_write(dir, argv[c], hhmmss, width, height, quality);
        }

        if (!live_stop) {
            live_sleep(every);
        }
    }

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

    if (strcmp(argv[1], "live") == 0) {
        return cmd_live(argc, argv);
    }

    if (strcmp(argv[1], "check") == 0 && argc == 6) {
        return check_file(argv[2], argv[3], argv[4], argv[5]);
    }

    if (strcmp(argv[1], "check-list") == 0 && argc == 3) {
        return cmd_check_list(argv[2]);
    }

    if (strcmp(argv[1], "which-list") == 0 && argc == 3) {
        return cmd_which_list(argv[2]);
    }

    if (strcmp(argv[1], "info") == 0 && argc == 3) {
        return cmd_info(argv[2]);
    }

    return usage();
}
