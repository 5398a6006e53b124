
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: what runs on the thread pool.  A fill's task decodes the
 * original once, makes the rung asked for (and those below it the store
 * lacks), and stores them in one write transaction; a peer's task
 * checks every byte of an original and keeps it; a negative task
 * remembers a 404.  libvips and LMDB writes happen here only, never on
 * the event loop.  The event loop's side is ngx_http_snapcache_fill.c.
 */


#include "ngx_module/ngx_http_snapcache.h"

/* after nginx's headers, which define _GNU_SOURCE: SCHED_IDLE */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>


/* the size the original task decodes to, to check every byte of it */
#define NGX_HTTP_SNAPCACHE_CHECK_WIDTH    16


static void ngx_http_snapcache_thread_nice(ngx_int_t nice);
static void ngx_http_snapcache_task_original(ngx_http_snapcache_task_t *t);
static int ngx_http_snapcache_store_check(void *data);


/* snapcache_transcode_nice <0-19> | idle: idle is SCHED_IDLE */
char *
ngx_http_snapcache_transcode_nice(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (slcf->transcode_nice != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "idle") == 0) {
        slcf->transcode_nice = NGX_HTTP_SNAPCACHE_NICE_IDLE;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n > 19) {
        return "takes a nice value from 0 to 19, or \"idle\"";
    }

    slcf->transcode_nice = n;

    return NGX_CONF_OK;
}


/*
 * A task owns a pool of its own, so that it outlives a request whose
 * client went away: the fill still completes for the waiters, and the
 * task frees everything when it ends.
 */
ngx_http_snapcache_task_t *
ngx_http_snapcache_task_create(ngx_event_handler_pt done)
{
    ngx_pool_t                 *pool;
    ngx_thread_task_t          *task;
    ngx_http_snapcache_task_t  *t;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_http_snapcache_task_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    t = task->ctx;
    t->task = task;
    t->pool = pool;
    t->log = ngx_cycle->log;

    task->event.data = t;
    task->event.handler = done;

    return t;
}


void
ngx_http_snapcache_task_free(ngx_http_snapcache_task_t *t)
{
    /* a peer's fill answers with the original, in the task's pool */
    if (t->out && t->out != t->orig) {
        snapcache_transcode_free(t->out);
    }

    t->out = NULL;

    ngx_destroy_pool(t->pool);
}


/*
 * Transcodes yield to the event loop: a pool thread lowers its own
 * priority once (Linux threads have their own nice value), so that hits
 * stay fast while misses keep the pool busy.  "idle" goes further: a
 * SCHED_IDLE thread runs only when no normal thread of the machine
 * wants the CPU, and a waking event loop preempts it at once, where a
 * niced thread keeps the CPU to the end of its slice.  Neither needs a
 * privilege to set; a thread raised back from idle to a nice value may
 * not get a value lower than the one it had.
 */
static void
ngx_http_snapcache_tid_nice(pid_t tid, ngx_int_t nice)
{
    struct sched_param  sp;

    ngx_memzero(&sp, sizeof(struct sched_param));

    if (nice == NGX_HTTP_SNAPCACHE_NICE_IDLE) {
        (void) sched_setscheduler(tid, SCHED_IDLE, &sp);
        return;
    }

    if (sched_getscheduler(tid) == SCHED_IDLE) {
        (void) sched_setscheduler(tid, SCHED_OTHER, &sp);
    }

    (void) setpriority(PRIO_PROCESS, (id_t) tid, (int) nice);
}


/* The threads of this process, from /proc/self/stat; 0 if unknown. */
static ngx_uint_t
ngx_http_snapcache_thread_count(void)
{
    int         fd, i;
    u_char      buf[1024], *p, *last;
    ssize_t     n;
    ngx_uint_t  count;

    fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return 0;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);

    if (n <= 0) {
        return 0;
    }

    last = buf + n;

    /* the name in parentheses may hold anything: fields follow its end */
    for (p = last; p > buf && p[-1] != ')'; p--) {
        /* void */
    }

    /*
     * num_threads is the 20th field: i is the field the last space
     * began, and p is at the space that begins the 3rd
     */
    for (i = 2; i < 20 && p < last; p++) {
        if (*p == ' ') {
            i++;
        }
    }

    for (count = 0; p < last && *p >= '0' && *p <= '9'; p++) {
        count = count * 10 + (*p - '0');
    }

    return count;
}


/*
 * libvips runs a pipeline on worker threads of its own, which it keeps
 * and reuses, and a thread starts with the priority of the thread that
 * made it: those made by the event loop (at start, when the encoders
 * are probed) would transcode at the event loop's priority, and they
 * do most of a transcode's work.  So a fill also gives the priority to
 * every thread of the process that libvips named, found in
 * /proc/self/task: again only when the value changes or the process
 * has threads it had not when it last looked, as threads made later by
 * a pool thread or a reniced one inherit it.  The threads are shared by
 * the pool's threads: with values that differ between locations, they
 * keep the latest fill's.
 */
static void
ngx_http_snapcache_vips_nice(ngx_int_t nice)
{
    int              fd;
    DIR             *dir;
    pid_t            tid, self;
    u_char           path[64], name[32];
    ssize_t          n;
    ngx_uint_t       count;
    struct dirent   *de;

    static pthread_mutex_t  lock = PTHREAD_MUTEX_INITIALIZER;
    static ngx_int_t        done_nice = -1;
    static ngx_uint_t       done_count;

    count = ngx_http_snapcache_thread_count();

    (void) pthread_mutex_lock(&lock);

    if (done_nice == nice && done_count == count && count != 0) {
        (void) pthread_mutex_unlock(&lock);
        return;
    }

    dir = opendir("/proc/self/task");
    if (dir == NULL) {
        (void) pthread_mutex_unlock(&lock);
        return;
    }

    self = getpid();

    while ((de = readdir(dir)) != NULL) {

        tid = (pid_t) ngx_atoi((u_char *) de->d_name,
                               ngx_strlen(de->d_name));

        /* the event loop is the process's first thread */
        if (tid <= 0 || tid == self) {
            continue;
        }

        ngx_sprintf(path, "/proc/self/task/%P/comm%Z", (ngx_pid_t) tid);

        fd = open((char *) path, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        n = read(fd, name, sizeof(name));
        (void) close(fd);

        if (n == sizeof("libvips worker\n") - 1
            && ngx_strncmp(name, "libvips worker\n", n) == 0)
        {
            ngx_http_snapcache_tid_nice(tid, nice);
        }
    }

    (void) closedir(dir);

    done_nice = nice;
    done_count = count;

    (void) pthread_mutex_unlock(&lock);
}


static void
ngx_http_snapcache_thread_nice(ngx_int_t nice)
{
    static _Thread_local ngx_int_t  set = -1;

    if (set != nice) {
        ngx_http_snapcache_tid_nice((pid_t) syscall(SYS_gettid), nice);
        set = nice;
    }

    ngx_http_snapcache_vips_nice(nice);
}


/* On a pool thread: probe, transcode, and store. */
void
ngx_http_snapcache_task_fill(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_task_t *t = data;

    int                        rc, n, rcs[NGX_HTTP_SNAPCACHE_MAX_RUNGS];
    uint64_t                   start;
    ngx_uint_t                 i, nspecs;
    snapcache_put_t            items[NGX_HTTP_SNAPCACHE_MAX_RUNGS + 1];
    snapcache_variant_spec_t   specs[NGX_HTTP_SNAPCACHE_MAX_RUNGS];
    snapcache_transcode_out_t  outs[NGX_HTTP_SNAPCACHE_MAX_RUNGS], *out;

    ngx_http_snapcache_thread_nice(t->nice);

    if (t->original_only) {
        ngx_http_snapcache_task_original(t);
        return;
    }

    ngx_memzero(specs, sizeof(specs));
    specs[0].width = (int) t->width;
    specs[0].quality = (int) t->quality;
    specs[0].format = (int) t->format;

    nspecs = 1;

    for (i = 0; i < t->nbelow && nspecs < NGX_HTTP_SNAPCACHE_MAX_RUNGS; i++) {
        specs[nspecs].width = (int) t->below[i].width;
        specs[nspecs].quality = (int) t->below[i].quality;
        specs[nspecs].format = (int) t->below[i].format;
        nspecs++;
    }

    start = ngx_http_snapcache_usec();

    if (nspecs == 1) {
        rc = snapcache_transcode(t->orig, t->orig_len, &specs[0],
                                 t->max_bytes, t->max_pixels, &outs[0]);
        rcs[0] = rc;

    } else {
        rc = snapcache_transcode_rungs(t->orig, t->orig_len, specs, nspecs,
                                       t->max_bytes, t->max_pixels, outs,
                                       rcs);
        if (rc == SNAPCACHE_TRANSCODE_OK) {
            rc = rcs[0];
        }
    }

    t->transcode_usec = ngx_http_snapcache_usec() - start;

    if (rc != SNAPCACHE_TRANSCODE_OK) {
        t->error = rc;
        goto free_below;
    }

    out = &outs[0];

    t->transcoded = 1;
    t->out = out->data;
    t->out_len = out->len;
    t->out_width = out->width;
    t->out_height = out->height;
    t->out_checksum = snapcache_cache_checksum(out->data, out->len);

    if (t->no_store) {
        t->store_rc = SNAPCACHE_CACHE_SKIPPED;
        goto free_below;
    }

    n = 0;

    if (t->store_original) {
        snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                            SNAPCACHE_FORMAT_ANY, &items[n].key);
        items[n].ident = &t->ident;
        items[n].variant = SNAPCACHE_VARIANT_ORIGINAL;
        items[n].format = out->source.format;
        items[n].width = out->source.width;
        items[n].height = out->source.height;
        items[n].expires = t->expires;
        items[n].body = t->orig;
        items[n].body_len = t->orig_len;
        n++;
    }

    for (i = 0; i < nspecs; i++) {

        if (rcs[i] != SNAPCACHE_TRANSCODE_OK) {
            continue;
        }

        items[n].variant = i ? t->below[i - 1].variant : t->variant;
        items[n].format = (unsigned) specs[i].format;
        snapcache_cache_key(&t->ident, items[n].variant, items[n].format,
                            &items[n].key);
        items[n].ident = &t->ident;
        items[n].width = outs[i].width;
        items[n].height = outs[i].height;
        items[n].expires = t->expires;
        items[n].body = outs[i].data;
        items[n].body_len = outs[i].len;
        n++;
    }

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, items, n,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);

free_below:

    /* the rung asked for is t->out, freed with the task */
    for (i = 1; i < nspecs; i++) {
        snapcache_transcode_free(outs[i].data);
    }
}


/*
 * For a peer: the original itself is the answer.  It is decoded once,
 * at a tiny size but every byte of it, with the same limits and
 * fail_on=truncated, so that an original that is truncated, corrupt or
 * not an image we decode is never kept or handed to a peer.  Then it is
 * kept.
 */
static void
ngx_http_snapcache_task_original(ngx_http_snapcache_task_t *t)
{
    int                        rc;
    snapcache_put_t            item;
    snapcache_variant_spec_t   spec;
    snapcache_transcode_out_t  out;

    ngx_memzero(&spec, sizeof(spec));
    spec.width = NGX_HTTP_SNAPCACHE_CHECK_WIDTH;
    spec.quality = 1;
    spec.format = SNAPCACHE_FORMAT_JPEG;

    rc = snapcache_transcode(t->orig, t->orig_len, &spec, t->max_bytes,
                             t->max_pixels, &out);
    if (rc != SNAPCACHE_TRANSCODE_OK) {
        t->error = rc;
        return;
    }

    snapcache_transcode_free(out.data);

    t->transcoded = 1;
    t->out = t->orig;
    t->out_len = t->orig_len;
    t->format = out.source.format;
    t->out_checksum = snapcache_cache_checksum(t->orig, t->orig_len);

    if (!t->store_original || t->no_store) {
        t->store_rc = SNAPCACHE_CACHE_SKIPPED;
        return;
    }

    ngx_memzero(&item, sizeof(snapcache_put_t));

    snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                        SNAPCACHE_FORMAT_ANY, &item.key);
    item.ident = &t->ident;
    item.variant = SNAPCACHE_VARIANT_ORIGINAL;
    item.format = out.source.format;
    item.width = out.source.width;
    item.height = out.source.height;
    item.expires = t->expires;
    item.body = t->orig;
    item.body_len = t->orig_len;

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, &item, 1,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);
}


/* On a pool thread: the origin's 404, remembered under the original's key. */
void
ngx_http_snapcache_task_negative(void *data, ngx_log_t *log)
{
    ngx_http_snapcache_task_t *t = data;

    snapcache_put_t  item;

    ngx_memzero(&item, sizeof(snapcache_put_t));

    snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                        SNAPCACHE_FORMAT_ANY, &item.key);
    item.ident = &t->ident;
    item.variant = SNAPCACHE_VARIANT_ORIGINAL;
    item.format = SNAPCACHE_FORMAT_ABSENT;
    item.expires = t->expires;

    t->store_rc = snapcache_cache_put_batch(t->smcf->store, &item, 1,
                                            (int64_t) time(NULL),
                                            ngx_http_snapcache_store_check, t);
}


/*
 * Runs inside the write transaction, just before commit.  Purge bumps
 * the generation before it deletes, and deletes in write transactions
 * that cannot start until this one commits: so either we see the bump
 * and abort, or the purge's delete comes after our commit and removes
 * what we stored.  A fill that began between a purge's bump and its
 * delete read the generations after the bump, so they cannot tell; if
 * it was made from the kept original, that original must still be
 * there, unchanged: the purge's delete, committed before us, removed
 * it.
 */
static int
ngx_http_snapcache_store_check(void *data)
{
    ngx_http_snapcache_task_t *t = data;

    snapcache_key_t  key;

    if (ngx_http_snapcache_gen_changed(t->smcf, t->ident.acct_tag,
                                       t->ident.dev_tag, &t->gen))
    {
        return -1;
    }

    if (t->from_kept) {
        snapcache_cache_key(&t->ident, SNAPCACHE_VARIANT_ORIGINAL,
                            SNAPCACHE_FORMAT_ANY, &key);

        if (!snapcache_cache_unchanged(t->smcf->store, &key,
                                       t->kept_created, t->kept_checksum))
        {
            return -1;
        }
    }

    return 0;
}
