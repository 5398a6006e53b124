
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache keyed HMAC-SHA256 on OpenSSL 3's EVP_MAC: the signing keys
 * of sign/ and the store secret of cache/ both use it.  Header only, so
 * that each library compiles its own copy and neither links the other.
 *
 * The key is set once, on a template context.  A MAC never runs on the
 * template: it takes a copy of it from a small pool and restarts it
 * with EVP_MAC_init(ctx, NULL, 0, NULL), which keeps the key (no key
 * schedule, no EVP_MAC_fetch, no copy per MAC), then gives it back.
 * The pool is a handful of atomic slots, so that the threads of one
 * process (nginx's event loop and its thread pool) can MAC with one key
 * at once without a lock; a thread that finds every slot empty works on
 * a copy of its own, freed afterwards.  The copies belong to the key, so
 * that snapcache_hmac_free wipes all of them with it: a thread-local
 * copy would outlive a key freed by another thread.
 *
 * Nothing may MAC with a key while or after it is freed.
 */

#ifndef SNAPCACHE_HMAC_H
#define SNAPCACHE_HMAC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>


#define SNAPCACHE_HMAC_LEN    32

/* a worker's event loop and its thread-pool threads, at most, at once */
#define SNAPCACHE_HMAC_POOL   8


typedef struct snapcache_hmac_s  snapcache_hmac_t;

struct snapcache_hmac_s {
    EVP_MAC_CTX                *keyed;
    _Atomic(EVP_MAC_CTX *)      spare[SNAPCACHE_HMAC_POOL];
};


static inline void
snapcache_hmac_free(snapcache_hmac_t *h)
{
    int  i;

    if (h == NULL) {
        return;
    }

    /* OpenSSL wipes a freed HMAC context's key and digest states */
    for (i = 0; i < SNAPCACHE_HMAC_POOL; i++) {
        EVP_MAC_CTX_free(atomic_load(&h->spare[i]));
    }

    EVP_MAC_CTX_free(h->keyed);
    free(h);
}


/* A key of any length (HMAC hashes one longer than the block first). */
static inline snapcache_hmac_t *
snapcache_hmac_new(const unsigned char *key, size_t len)
{
    int                i;
    EVP_MAC           *mac;
    OSSL_PARAM         params[2];
    snapcache_hmac_t  *h;

    h = malloc(sizeof(snapcache_hmac_t));
    if (h == NULL) {
        return NULL;
    }

    for (i = 0; i < SNAPCACHE_HMAC_POOL; i++) {
        atomic_init(&h->spare[i], NULL);
    }

    /* the context holds its own reference to the method */
    mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    h->keyed = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (h->keyed == NULL
        || EVP_MAC_init(h->keyed, key, len, params) != 1
        || EVP_MAC_CTX_get_mac_size(h->keyed) != SNAPCACHE_HMAC_LEN)
    {
        snapcache_hmac_free(h);
        return NULL;
    }

    return h;
}


static inline EVP_MAC_CTX *
snapcache_hmac_take(snapcache_hmac_t *h)
{
    int           i;
    EVP_MAC_CTX  *ctx;

    for (i = 0; i < SNAPCACHE_HMAC_POOL; i++) {
        if (atomic_load_explicit(&h->spare[i], memory_order_relaxed) == NULL)
        {
            continue;
        }

        ctx = atomic_exchange_explicit(&h->spare[i], NULL,
                                       memory_order_acquire);
        if (ctx != NULL) {
            return ctx;
        }
    }

    /* a key's first MAC, or more threads at once than the pool holds */
    return EVP_MAC_CTX_dup(h->keyed);
}


static inline void
snapcache_hmac_give(snapcache_hmac_t *h, EVP_MAC_CTX *ctx)
{
    int           i;
    EVP_MAC_CTX  *empty;

    for (i = 0; i < SNAPCACHE_HMAC_POOL; i++) {
        empty = NULL;

        if (atomic_compare_exchange_strong_explicit(&h->spare[i], &empty, ctx,
                                                    memory_order_release,
                                                    memory_order_relaxed))
        {
            return;
        }
    }

    EVP_MAC_CTX_free(ctx);
}


/* 0, or -1 with out wiped. */
static inline int
snapcache_hmac(snapcache_hmac_t *h, const void *msg, size_t len,
    unsigned char out[SNAPCACHE_HMAC_LEN])
{
    int           ok;
    size_t        n;
    EVP_MAC_CTX  *ctx;

    ctx = snapcache_hmac_take(h);

    ok = ctx != NULL
         && EVP_MAC_init(ctx, NULL, 0, NULL) == 1
         && EVP_MAC_update(ctx, msg, len) == 1
         && EVP_MAC_final(ctx, out, &n, SNAPCACHE_HMAC_LEN) == 1
         && n == SNAPCACHE_HMAC_LEN;

    if (ctx != NULL) {
        /* a context that failed may be in any state: not kept */
        if (ok) {
            snapcache_hmac_give(h, ctx);

        } else {
            EVP_MAC_CTX_free(ctx);
        }
    }

    if (!ok) {
        OPENSSL_cleanse(out, SNAPCACHE_HMAC_LEN);
        return -1;
    }

    return 0;
}

#endif /* SNAPCACHE_HMAC_H */
