/*
 * The in-process libvips limit for bench_serve.sh: N threads each run
 * thumbnail + JPEG save over the given files, in memory, with the same
 * settings snapcache uses.  Prints images per second.
 *
 * usage: bench_limit <width> <quality> file...
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vips/vips.h>


#define THREADS  2
#define ROUNDS   3


typedef struct {
    int      width;
    int      quality;
    int      nfiles;
    void   **bufs;
    size_t  *lens;
    int      start;
} job_t;


static void *
run(void *arg)
{
    int         r, i;
    void       *out;
    size_t      out_len;
    job_t      *job;
    VipsImage  *img;

    job = arg;

    for (r = 0; r < ROUNDS; r++) {
        for (i = job->start; i < job->nfiles; i += THREADS) {
            if (vips_thumbnail_buffer(job->bufs[i], job->lens[i], &img,
                                      job->width, NULL) != 0)
            {
                return (void *) 1;
            }

            if (vips_jpegsave_buffer(img, &out, &out_len, "Q", job->quality,
                                     "strip", TRUE, NULL) != 0)
            {
                g_object_unref(img);
                return (void *) 1;
            }

            g_free(out);
            g_object_unref(img);
        }
    }

    return NULL;
}


int
main(int argc, char **argv)
{
    int              i, n;
    job_t            jobs[THREADS];
    double           secs;
    gsize            len;
    gchar           *buf;
    pthread_t        tid[THREADS];
    struct timespec  t0, t1;

    if (argc < 4 || VIPS_INIT(argv[0])) {
        fprintf(stderr, "usage: bench_limit <width> <quality> file...\n");
        return 2;
    }

    vips_cache_set_max(0);
    vips_concurrency_set(1);

    n = argc - 3;
    jobs[0].bufs = calloc(n, sizeof(void *));
    jobs[0].lens = calloc(n, sizeof(size_t));

    for (i = 0; i < n; i++) {
        if (!g_file_get_contents(argv[i + 3], &buf, &len, NULL)) {
            return 1;
        }

        jobs[0].bufs[i] = buf;
        jobs[0].lens[i] = len;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < THREADS; i++) {
        jobs[i] = jobs[0];
        jobs[i].width = atoi(argv[1]);
        jobs[i].quality = atoi(argv[2]);
        jobs[i].nfiles = n;
        jobs[i].start = i;
        pthread_create(&tid[i], NULL, run, &jobs[i]);
    }

    for (i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.1f\n", n * ROUNDS / secs);

    return 0;
}
