
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The transcode benchmark's in-process half: for each variant, images
 * per second single-threaded through snapcache_transcode(), and through
 * the bare libvips calls it is built on (JPEG shrink-on-load, thumbnail,
 * save), which is the limit: the same decoder, resampler and encoder
 * with nothing around them (no probe, no checks).  Both run in this
 * process with the settings snapcache_transcode_init() made,
 * alternately, best of ROUNDS each.  The originals are landscape JPEG
 * photographs, so the limit picks its shrink from the width alone.
 *
 * usage: bench_transcode file...
 *   prints one line per variant: "<width> <format> <ours/s> <limit/s>"
 * usage: bench_transcode -t threads width quality file...
 *   prints the limit's images/s with that many threads (JPEG), for the
 *   misses of bench_serve.sh
 * usage: bench_transcode -r file...
 *   all four rungs of the default ladder (JPEG) for each original, in one
 *   snapcache_transcode_rungs() call against four snapcache_transcode()
 *   calls: "<rungs/s> <singles/s>" in snapshots per second
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vips/vips.h>

#include "transcode/snapcache_transcode.h"


#define ROUNDS      5
#define QUALITY     80
#define MAX_BYTES   (32 * 1024 * 1024)
#define MAX_PIXELS  (40 * 1000 * 1000)


typedef struct {
    int          nfiles;
    void       **bufs;
    size_t      *lens;
    int         *widths;        /* read before timing, for the limit */
} originals_t;


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static double
run_ours(const originals_t *o, const snapcache_variant_spec_t *spec)
{
    int                        i, rc;
    double                     t0;
    snapcache_transcode_out_t  out;

    t0 = now_s();

    for (i = 0; i < o->nfiles; i++) {
        rc = snapcache_transcode(o->bufs[i], o->lens[i], spec, MAX_BYTES,
                                 MAX_PIXELS, &out);
        if (rc != SNAPCACHE_TRANSCODE_OK) {
            fprintf(stderr, "bench_transcode: %s\n",
                    snapcache_transcode_strerror(rc));
            exit(1);
        }

        snapcache_transcode_free(out.data);
    }

    return o->nfiles / (now_s() - t0);
}


static void
spec_of(snapcache_variant_spec_t *spec, int width, int quality, int format)
{
    memset(spec, 0, sizeof(snapcache_variant_spec_t));
    spec->width = width;
    spec->quality = quality;
    spec->format = format;
    spec->progressive_min_width = 1000;
}


/* libjpeg's largest scale that keeps the width: what ours picks. */
static int
shrink_for(int width, int target)
{
    int  s;

    for (s = 8; s > 1 && width / s < target; s /= 2) {
        /* void */
    }

    return s;
}


/*
 * The limit, for one original: the libvips calls ours is built on, and
 * nothing else (no probe, no checks), for the same output: JPEG
 * shrink-on-load, thumbnail, save.
 */
static void
limit_one(const originals_t *o, int i, const snapcache_variant_spec_t *spec)
{
    int         rc;
    void       *buf;
    size_t      len;
    VipsImage  *in, *img;

    if (vips_jpegload_buffer(o->bufs[i], o->lens[i], &in, "shrink",
                             shrink_for(o->widths[i], spec->width),
                             "access", VIPS_ACCESS_SEQUENTIAL, NULL)
        != 0
        || vips_thumbnail_image(in, &img, spec->width,
                                "height", VIPS_MAX_COORD, NULL) != 0)
    {
        fprintf(stderr, "bench_transcode: %s\n", vips_error_buffer());
        exit(1);
    }

    g_object_unref(in);

    if (spec->format == SNAPCACHE_FORMAT_WEBP) {
        rc = vips_webpsave_buffer(img, &buf, &len, "Q", spec->quality,
                                  "strip", TRUE, NULL);
    } else {
        rc = vips_jpegsave_buffer(img, &buf, &len, "Q", spec->quality,
                                  "strip", TRUE, "optimize_coding", TRUE,
                                  "interlace",
                                  spec->width >= spec->progressive_min_width,
                                  NULL);
    }

    if (rc != 0) {
        fprintf(stderr, "bench_transcode: %s\n", vips_error_buffer());
        exit(1);
    }

    g_free(buf);
    g_object_unref(img);
}


static double
run_limit(const originals_t *o, const snapcache_variant_spec_t *spec)
{
    int     i;
    double  t0;

    t0 = now_s();

    for (i = 0; i < o->nfiles; i++) {
        limit_one(o, i, spec);
    }

    return o->nfiles / (now_s() - t0);
}


typedef struct {
    const originals_t               *o;
    const snapcache_variant_spec_t  *spec;
    int                              start;
    int                              step;
} limit_job_t;


static void *
limit_thread(void *arg)
{
    int           r, i;
    limit_job_t  *job;

    job = arg;

    for (r = 0; r < ROUNDS; r++) {
        for (i = job->start; i < job->o->nfiles; i += job->step) {
            limit_one(job->o, i, job->spec);
        }
    }

    return NULL;
}


/* The limit with n threads, for bench_serve.sh's misses. */
static void
limit_threads(const originals_t *o, int n, int width, int quality)
{
    int                       i;
    double                    t0;
    pthread_t                 tid[16];
    limit_job_t               jobs[16];
    snapcache_variant_spec_t  spec;

    spec_of(&spec, width, quality, SNAPCACHE_FORMAT_JPEG);

    n = n < 1 ? 1 : n > 16 ? 16 : n;
    t0 = now_s();

    for (i = 0; i < n; i++) {
        jobs[i].o = o;
        jobs[i].spec = &spec;
        jobs[i].start = i;
        jobs[i].step = n;
        pthread_create(&tid[i], NULL, limit_thread, &jobs[i]);
    }

    for (i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
    }

    printf("%.1f\n", o->nfiles * ROUNDS / (now_s() - t0));
}


static void
bench(const originals_t *o, int width, int format)
{
    int                       r;
    double                    ours, limit, t;
    snapcache_variant_spec_t  spec;

    spec_of(&spec, width, QUALITY, format);

    ours = 0;
    limit = 0;

    for (r = 0; r < ROUNDS; r++) {
        t = run_ours(o, &spec);
        ours = t > ours ? t : ours;

        t = run_limit(o, &spec);
        limit = t > limit ? t : limit;
    }

    printf("%d %s %.1f %.1f\n", width,
           snapcache_format_name((unsigned) format), ours, limit);
    fflush(stdout);
}


/* The default ladder, all four rungs of each original, both ways. */
static void
bench_rungs(const originals_t *o)
{
    int                        i, k, r, rcs[4];
    double                     t0, multi, single, best_m, best_s;
    snapcache_variant_spec_t   specs[4];
    snapcache_transcode_out_t  outs[4];

    static const int  widths[4] = { 320, 640, 1280, 1920 };
    static const int  quality[4] = { 50, 65, 75, 85 };

    for (k = 0; k < 4; k++) {
        spec_of(&specs[k], widths[k], quality[k], SNAPCACHE_FORMAT_JPEG);
    }

    best_m = 0;
    best_s = 0;

    for (r = 0; r < ROUNDS; r++) {
        t0 = now_s();

        for (i = 0; i < o->nfiles; i++) {
            if (snapcache_transcode_rungs(o->bufs[i], o->lens[i], specs, 4,
                                          MAX_BYTES, MAX_PIXELS, outs, rcs)
                != SNAPCACHE_TRANSCODE_OK)
            {
                exit(1);
            }

            for (k = 0; k < 4; k++) {
                snapcache_transcode_free(outs[k].data);
            }
        }

        multi = o->nfiles / (now_s() - t0);
        t0 = now_s();

        for (i = 0; i < o->nfiles; i++) {
            for (k = 0; k < 4; k++) {
                if (snapcache_transcode(o->bufs[i], o->lens[i], &specs[k],
                                        MAX_BYTES, MAX_PIXELS, &outs[k])
                    != SNAPCACHE_TRANSCODE_OK)
                {
                    exit(1);
                }

                snapcache_transcode_free(outs[k].data);
            }
        }

        single = o->nfiles / (now_s() - t0);

        best_m = multi > best_m ? multi : best_m;
        best_s = single > best_s ? single : best_s;
    }

    printf("%.2f %.2f\n", best_m, best_s);
}


int
main(int argc, char **argv)
{
    int                i, first;
    char               err[256];
    gsize              len;
    gchar             *data;
    originals_t        o;
    snapcache_probe_t  probe;

    first = 1;

    if (argc > 4 && strcmp(argv[1], "-t") == 0) {
        first = 5;

    } else if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        first = 2;
    }

    if (argc <= first) {
        fprintf(stderr, "usage: bench_transcode file...\n"
                "       bench_transcode -t threads width quality file...\n"
                "       bench_transcode -r file...\n");
        return 1;
    }

    if (snapcache_transcode_init(err, sizeof(err)) != SNAPCACHE_TRANSCODE_OK) {
        fprintf(stderr, "bench_transcode: %s\n", err);
        return 1;
    }

    o.nfiles = argc - first;
    o.bufs = calloc(o.nfiles, sizeof(void *));
    o.lens = calloc(o.nfiles, sizeof(size_t));
    o.widths = calloc(o.nfiles, sizeof(int));
    if (o.bufs == NULL || o.lens == NULL || o.widths == NULL) {
        return 1;
    }

    for (i = 0; i < o.nfiles; i++) {
        if (!g_file_get_contents(argv[first + i], &data, &len, NULL)) {
            fprintf(stderr, "bench_transcode: cannot read %s\n",
                    argv[first + i]);
            return 1;
        }

        if (snapcache_transcode_probe(data, len, MAX_BYTES, MAX_PIXELS,
                                      &probe) != SNAPCACHE_TRANSCODE_OK
            || probe.format != SNAPCACHE_FORMAT_JPEG)
        {
            fprintf(stderr, "bench_transcode: %s is not a usable JPEG\n",
                    argv[first + i]);
            return 1;
        }

        o.bufs[i] = data;
        o.lens[i] = len;
        o.widths[i] = probe.width;
    }

    if (first == 5) {
        limit_threads(&o, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
        return 0;
    }

    if (first == 2) {
        bench_rungs(&o);
        return 0;
    }

    bench(&o, 320, SNAPCACHE_FORMAT_JPEG);
    bench(&o, 640, SNAPCACHE_FORMAT_JPEG);
    bench(&o, 1280, SNAPCACHE_FORMAT_JPEG);
    bench(&o, 320, SNAPCACHE_FORMAT_WEBP);

    return 0;
}
