
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


#include "ngx_module/ngx_http_snapcache.h"


static ngx_http_snapcache_lock_t *ngx_http_snapcache_lock_find(
    ngx_http_snapcache_shctx_t *sh, uint64_t hash, ngx_uint_t claim);


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
    ngx_uint_t                   slot;
    ngx_http_snapcache_shctx_t  *sh;

    sh = smcf->sh;

    /* the clock, not nginx's cached time, which may lag behind it */
    if (acct_tag == NULL) {
        sh->purged_all = (ngx_atomic_uint_t) time(NULL);
        ngx_atomic_fetch_add(&sh->gen_all, 1);

    } else {
        slot = ngx_http_snapcache_gen_slot(dev_tag ? dev_tag : acct_tag);
        sh->purged[slot] = (ngx_atomic_uint_t) time(NULL);
        ngx_atomic_fetch_add(&sh->gens[slot], 1);
    }

    ngx_memory_barrier();
}


/*
 * With snapcache_cold_start, a record stored in the second nginx started
 * or before is not to be read: purges sent while it was down never
 * reached it.
 */
time_t
ngx_http_snapcache_not_before(ngx_http_snapcache_main_conf_t *smcf)
{
    return smcf->cold_start ? smcf->sh->epoch : 0;
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
    time_t                       since;
    ngx_http_snapcache_shctx_t  *sh;

    sh = smcf->sh;
    since = ngx_time() - seconds;

    return (time_t) sh->purged_all >= since
           || (time_t) sh->purged[ngx_http_snapcache_gen_slot(acct_tag)]
              >= since
           || (time_t) sh->purged[ngx_http_snapcache_gen_slot(dev_tag)]
              >= since;
}


