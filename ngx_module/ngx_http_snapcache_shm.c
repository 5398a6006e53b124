
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the shared-memory zone.  It holds what every worker must
 * agree on: fill locks (so that concurrent misses for one key wait on a
 * single fill), purge generations (so that a fill that started before a
 * purge is thrown away), and the stats counters.  The zone itself is
 * made with the configuration (ngx_http_snapcache_module.c).
 */


#include <sys/file.h>
#include <sys/mman.h>

#include "ngx_module/ngx_http_snapcache.h"


static ngx_http_snapcache_lock_t *ngx_http_snapcache_lock_find(
    ngx_http_snapcache_shctx_t *sh, uint64_t hash, ngx_uint_t claim);


/*
 * The ledger: a file in the store directory that holds the purge
 * generations, mapped shared by every worker of every nginx that opens
 * the store.  A binary upgrade (USR2) starts a master with a zone of its
 * own while the old one still serves; through the ledger a purge that
 * either takes moves the generations both see, as the store they share
 * has the deletes.  It also says which master ran the store last and
 * since when, so that the new master of an upgrade need not start cold.
 */
#define NGX_HTTP_SNAPCACHE_LEDGER        "purge-generations"
#define NGX_HTTP_SNAPCACHE_LEDGER_MAGIC  0x31736e6567706e73ULL  /* snpgens1 */

typedef struct {
    uint64_t                   magic;
    uint64_t                   size;
    ngx_atomic_t               epoch;        /* not_before of the run */
    ngx_atomic_t               master;       /* that run's master pid */
    ngx_http_snapcache_gens_t  gens;
} ngx_http_snapcache_ledger_t;


static void ngx_http_snapcache_ledger_epoch(
    ngx_http_snapcache_main_conf_t *smcf, ngx_http_snapcache_ledger_t *l);


/*
 * A fill whose worker was killed never releases its lock: treat it as
 * expired at once rather than at its deadline.
 */
static ngx_uint_t
ngx_http_snapcache_lock_live(ngx_http_snapcache_lock_t *lk)
{
    if ((ngx_msec_int_t) (lk->deadline - ngx_current_msec) <= 0) {
        return 0;
    }

    if (lk->pid != ngx_pid && kill(lk->pid, 0) == -1 && ngx_errno == NGX_ESRCH)
    {
        return 0;
    }

    return 1;
}


/* Open addressing over a fixed table; hash 0 marks a free slot. */
static ngx_http_snapcache_lock_t *
ngx_http_snapcache_lock_find(ngx_http_snapcache_shctx_t *sh, uint64_t hash,
    ngx_uint_t claim)
{
    ngx_uint_t                  i, n;
    ngx_http_snapcache_lock_t  *lk, *reuse;

    reuse = NULL;

    for (n = 0; n < NGX_HTTP_SNAPCACHE_LOCKS; n++) {
        i = (ngx_uint_t) ((hash + n) % NGX_HTTP_SNAPCACHE_LOCKS);
        lk = &sh->locks[i];

        if (lk->hash == hash) {
            return lk;
        }

        if (reuse == NULL
            && (lk->hash == 0
                || lk->state != NGX_HTTP_SNAPCACHE_LOCK_FILLING
                || !ngx_http_snapcache_lock_live(lk)))
        {
            reuse = lk;
        }

        if (lk->hash == 0) {
            break;
        }
    }

    if (!claim || reuse == NULL) {
        return NULL;
    }

    ngx_memzero(reuse, sizeof(ngx_http_snapcache_lock_t));
    reuse->hash = hash;

    return reuse;
}


/*
 * Returns NGX_OK when the caller now owns the fill for this key,
 * NGX_BUSY when another fill is running (*fill_id names it, to wait
 * on), and NGX_DECLINED when the table is full of live fills, in which
 * case the caller fills without coordination.
 */
ngx_int_t
ngx_http_snapcache_lock_acquire(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, ngx_msec_t hold, uint64_t *fill_id)
{
    ngx_int_t                   rc;
    ngx_http_snapcache_lock_t  *lk;

    if (hash == 0) {
        hash = 1;
    }

    ngx_shmtx_lock(&smcf->shpool->mutex);

    lk = ngx_http_snapcache_lock_find(smcf->sh, hash, 1);

    if (lk == NULL) {
        rc = NGX_DECLINED;
        ngx_http_snapcache_count_lock_full(smcf);

    } else if (lk->state == NGX_HTTP_SNAPCACHE_LOCK_FILLING
               && ngx_http_snapcache_lock_live(lk))
    {
        *fill_id = lk->fill_id;
        rc = NGX_BUSY;

    } else {
        lk->state = NGX_HTTP_SNAPCACHE_LOCK_FILLING;
        lk->fill_id = ++smcf->sh->next_fill_id;
        lk->pid = ngx_pid;
        lk->deadline = ngx_current_msec + hold;
        lk->status = 0;
        *fill_id = lk->fill_id;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);

    return rc;
}


/*
 * Tells waiters of one fill how it ended.  status is 0 when the record
 * was stored (waiters look it up again) or the HTTP status a failed fill
 * answered with (waiters answer the same).
 */
void
ngx_http_snapcache_lock_release(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t state, ngx_uint_t status)
{
    ngx_http_snapcache_lock_t  *lk;

    if (hash == 0) {
        hash = 1;
    }

    ngx_shmtx_lock(&smcf->shpool->mutex);

    lk = ngx_http_snapcache_lock_find(smcf->sh, hash, 0);

    if (lk && lk->fill_id == fill_id) {
        lk->state = state;
        lk->status = status;
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);
}


/*
 * What a waiter sees of the fill it waits on: FILLING, DONE, FAILED
 * (with *status), or GONE when the entry was taken over by a newer fill
 * or its owner overran the lock, so the waiter should try to fill.
 */
ngx_uint_t
ngx_http_snapcache_lock_state(ngx_http_snapcache_main_conf_t *smcf,
    uint64_t hash, uint64_t fill_id, ngx_uint_t *status)
{
    ngx_uint_t                  state;
    ngx_http_snapcache_lock_t  *lk;

    if (hash == 0) {
        hash = 1;
    }

    ngx_shmtx_lock(&smcf->shpool->mutex);

    lk = ngx_http_snapcache_lock_find(smcf->sh, hash, 0);

    if (lk == NULL || lk->fill_id != fill_id) {
        state = NGX_HTTP_SNAPCACHE_LOCK_GONE;

    } else if (lk->state == NGX_HTTP_SNAPCACHE_LOCK_FILLING
               && !ngx_http_snapcache_lock_live(lk))
    {
        state = NGX_HTTP_SNAPCACHE_LOCK_GONE;

    } else {
        state = lk->state;
        *status = lk->status;
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);

    return state;
}


/*
 * Purge bumps before it deletes; see ngx_http_snapcache_store_task().
 * It also notes when, for ngx_http_snapcache_purged_within().
 */
void
ngx_http_snapcache_gen_bump(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag)
{
    ngx_uint_t                  slot;
    ngx_http_snapcache_gens_t  *g;

    g = ngx_http_snapcache_gens(smcf);

    /* the clock, not nginx's cached time, which may lag behind it */
    if (acct_tag == NULL) {
        g->purged_all = (ngx_atomic_uint_t) time(NULL);
        ngx_atomic_fetch_add(&g->gen_all, 1);

    } else {
        slot = ngx_http_snapcache_gen_slot(dev_tag ? dev_tag : acct_tag);
        g->purged[slot] = (ngx_atomic_uint_t) time(NULL);
        ngx_atomic_fetch_add(&g->gens[slot], 1);
    }

    ngx_memory_barrier();
}


/*
 * With snapcache_cold_start, a record stored in the second nginx started
 * or before is not to be read: purges sent while it was down never
 * reached it.  After a binary upgrade it is the old master's time, for
 * nginx was never down (ngx_http_snapcache_ledger_attach()).
 */
time_t
ngx_http_snapcache_not_before(ngx_http_snapcache_main_conf_t *smcf)
{
    time_t  t;

    if (!smcf->cold_start) {
        return 0;
    }

    t = (time_t) smcf->sh->not_before;

    return t ? t : smcf->sh->epoch;
}


/*
 * Was this account or device (its bucket) purged on this node within
 * the last seconds?  In a cluster, the owner of its originals may not
 * have had that purge yet, so a fill asks it for a fresh copy.
 */
ngx_uint_t
ngx_http_snapcache_purged_within(ngx_http_snapcache_main_conf_t *smcf,
    const u_char *acct_tag, const u_char *dev_tag, time_t seconds)
{
    time_t                      since;
    ngx_http_snapcache_gens_t  *g;

    g = ngx_http_snapcache_gens(smcf);
    since = ngx_time() - seconds;

    return (time_t) g->purged_all >= since
           || (time_t) g->purged[ngx_http_snapcache_gen_slot(acct_tag)]
              >= since
           || (time_t) g->purged[ngx_http_snapcache_gen_slot(dev_tag)]
              >= since;
}


/* Fill locks a live fill holds now: the lock table's occupancy. */
ngx_uint_t
ngx_http_snapcache_locks_in_use(ngx_http_snapcache_main_conf_t *smcf)
{
    ngx_uint_t                  i, n;
    ngx_http_snapcache_lock_t  *lk;

    n = 0;

    ngx_shmtx_lock(&smcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_SNAPCACHE_LOCKS; i++) {
        lk = &smcf->sh->locks[i];

        if (lk->hash && lk->state == NGX_HTTP_SNAPCACHE_LOCK_FILLING
            && ngx_http_snapcache_lock_live(lk))
        {
            n++;
        }
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);

    return n;
}


/*
 * Maps the ledger of the store in dir, creating it the first time, as
 * the worker user (the directory is that user's, like LMDB's files).
 * It is the first worker of a master to map it that decides since when
 * records are read: since the old master's time when this master is a
 * binary upgrade of the one that ran the store (nginx was never down,
 * and every purge since went through the ledger and the shared store),
 * since this zone's start otherwise.
 */
ngx_int_t
ngx_http_snapcache_ledger_attach(ngx_http_snapcache_main_conf_t *smcf,
    ngx_log_t *log, u_char *dir)
{
    int                           fd;
    u_char                        path[NGX_MAX_PATH];
    struct stat                   st;
    ngx_http_snapcache_ledger_t  *l;

    if (ngx_snprintf(path, NGX_MAX_PATH - 1, "%s/%s%Z", dir,
                     NGX_HTTP_SNAPCACHE_LEDGER)
        == path + NGX_MAX_PATH - 1)
    {
        return NGX_ERROR;
    }

    fd = open((char *) path, O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC, 0600);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot open the ledger \"%s\"", path);
        return NGX_ERROR;
    }

    if (flock(fd, LOCK_EX) == -1 || fstat(fd, &st) == -1
        || !S_ISREG(st.st_mode) || st.st_nlink != 1
        || st.st_uid != geteuid())
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: the ledger \"%s\" is not a regular file "
                      "of the worker user, or cannot be locked", path);
        close(fd);
        return NGX_ERROR;
    }

    if ((size_t) st.st_size != sizeof(ngx_http_snapcache_ledger_t)
        && (ftruncate(fd, 0) == -1
            || ftruncate(fd, sizeof(ngx_http_snapcache_ledger_t)) == -1))
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot size the ledger \"%s\"", path);
        close(fd);
        return NGX_ERROR;
    }

    l = mmap(NULL, sizeof(ngx_http_snapcache_ledger_t),
             PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);

    if (l == MAP_FAILED) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "snapcache: cannot map the ledger \"%s\"", path);
        close(fd);
        return NGX_ERROR;
    }

    if (l->magic != NGX_HTTP_SNAPCACHE_LEDGER_MAGIC
        || l->size != sizeof(ngx_http_snapcache_ledger_t))
    {
        /* new, or of another layout: generations start over with it */
        ngx_memzero(l, sizeof(ngx_http_snapcache_ledger_t));
        l->size = sizeof(ngx_http_snapcache_ledger_t);
        l->magic = NGX_HTTP_SNAPCACHE_LEDGER_MAGIC;
    }

    ngx_http_snapcache_ledger_epoch(smcf, l);

    (void) flock(fd, LOCK_UN);
    close(fd);

    smcf->ledger = l;
    smcf->gens = &l->gens;

    return NGX_OK;
}


/* Under the ledger's lock. */
static void
ngx_http_snapcache_ledger_epoch(ngx_http_snapcache_main_conf_t *smcf,
    ngx_http_snapcache_ledger_t *l)
{
    time_t                       epoch;
    ngx_pid_t                    master;
    ngx_http_snapcache_shctx_t  *sh;

    sh = smcf->sh;
    master = getppid();

    if (sh->not_before == 0) {
        epoch = sh->epoch;

        if (sh->upgraded_from && l->master == (ngx_atomic_uint_t)
                                               sh->upgraded_from
            && l->epoch && (time_t) l->epoch <= sh->epoch)
        {
            epoch = (time_t) l->epoch;
        }

        sh->not_before = (ngx_atomic_uint_t) epoch;
    }

    l->epoch = sh->not_before;
    l->master = (ngx_atomic_uint_t) master;
}


void
ngx_http_snapcache_ledger_detach(ngx_http_snapcache_main_conf_t *smcf)
{
    if (smcf->ledger) {
        smcf->gens = NULL;
        munmap(smcf->ledger, sizeof(ngx_http_snapcache_ledger_t));
        smcf->ledger = NULL;
    }
}
