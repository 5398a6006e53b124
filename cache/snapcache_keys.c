
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Keys: the account and device tags and the identity digest, HMAC-SHA256
 * under the store secret of length-prefixed ids, and the variant that
 * names a rung by what it is.  Every buffer that held key material or an
 * HMAC output is wiped before it is left, on error paths too.
 */

#include <stdatomic.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cache/snapcache_cache_int.h"
#include "hmac/snapcache_hmac.h"


/*
 * The identities a thread worked out last.  A display polls one
 * snapshot over and over, so the three MACs of its identity are taken
 * once, not on every hit.  Each thread has its own memo (no lock,
 * nothing shared between the event loop and the pool), an entry belongs
 * to one opening of one store (its serial: a store closed and opened
 * again, even at the same address, finds nothing), and an entry is
 * found by its exact ids, compared in full, never by their hash alone.
 */
#define SNAPCACHE_IDENT_MEMO  64

typedef struct {
    uint64_t           serial;      /* 0: empty */
    unsigned char      lens[3];
    char               ids[3][SNAPCACHE_CACHE_ID_MAX];
    snapcache_ident_t  ident;
} ident_memo_t;

static _Thread_local ident_memo_t  ident_memo[SNAPCACHE_IDENT_MEMO];

static atomic_uint_fast64_t  keys_serial;


/* The secret keys an HMAC context once; the MACs never re-key. */
int
snapcache_keys_prepare(snapcache_cache_t *cache, const unsigned char *secret,
    size_t len)
{
    cache->hmac = snapcache_hmac_new(secret, len);
    cache->serial = atomic_fetch_add(&keys_serial, 1) + 1;

    return cache->hmac ? 0 : -1;
}


/* The contexts derive from the secret: wiped as they go. */
void
snapcache_keys_free(snapcache_cache_t *cache)
{
    snapcache_hmac_free(cache->hmac);
    cache->hmac = NULL;
}


static int
id_valid(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL || len == 0 || len > SNAPCACHE_CACHE_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || s[i] == '/') {
            return 0;
        }
    }

    return 1;
}


/* tag  = HMAC(secret, domain | len | id [| len | id ...]) */
static int
tag_of(snapcache_cache_t *cache, char domain, const char **ids,
    const size_t *lens, int n, unsigned char out[32])
{
    int            i;
    size_t         len;
    unsigned char  msg[1 + 3 * (1 + SNAPCACHE_CACHE_ID_MAX)];

    msg[0] = (unsigned char) domain;
    len = 1;

    for (i = 0; i < n; i++) {
        if (!id_valid(ids[i], lens[i])) {
            return -1;
        }

        msg[len++] = (unsigned char) lens[i];
        memcpy(msg + len, ids[i], lens[i]);
        len += lens[i];
    }

    return snapcache_hmac(cache->hmac, msg, len, out);
}


static ident_memo_t *
ident_slot(const char **ids, const size_t *lens)
{
    int       i;
    size_t    j;
    uint32_t  h;

    h = 2166136261u;

    for (i = 0; i < 3; i++) {
        for (j = 0; j < lens[i]; j++) {
            h = (h ^ (unsigned char) ids[i][j]) * 16777619u;
        }

        h = (h ^ 0xff) * 16777619u;
    }

    return &ident_memo[h % SNAPCACHE_IDENT_MEMO];
}


static int
ident_memo_is(const ident_memo_t *m, uint64_t serial, const char **ids,
    const size_t *lens)
{
    int  i;

    if (m->serial != serial) {
        return 0;
    }

    for (i = 0; i < 3; i++) {
        if (m->lens[i] != lens[i] || memcmp(m->ids[i], ids[i], lens[i]) != 0)
        {
            return 0;
        }
    }

    return 1;
}


int
snapcache_cache_ident(snapcache_cache_t *cache, const char *account,
    size_t account_len, const char *device, size_t device_len,
    const char *snapshot, size_t snapshot_len, snapcache_ident_t *ident)
{
    int             i;
    const char     *ids[3];
    size_t          lens[3];
    unsigned char   mac[32];
    ident_memo_t   *m;

    ids[0] = account;
    ids[1] = device;
    ids[2] = snapshot;
    lens[0] = account_len;
    lens[1] = device_len;
    lens[2] = snapshot_len;

    for (i = 0; i < 3; i++) {
        if (!id_valid(ids[i], lens[i])) {
            return SNAPCACHE_CACHE_ERROR;
        }
    }

    m = ident_slot(ids, lens);

    if (ident_memo_is(m, cache->serial, ids, lens)) {
        *ident = m->ident;
        return SNAPCACHE_CACHE_OK;
    }

    if (tag_of(cache, 'A', ids, lens, 1, mac) != 0) {
        goto failed;
    }

    memcpy(ident->acct_tag, mac, SNAPCACHE_TAG_LEN);

    if (tag_of(cache, 'D', ids, lens, 2, mac) != 0) {
        goto failed;
    }

    memcpy(ident->dev_tag, mac, SNAPCACHE_TAG_LEN);
    OPENSSL_cleanse(mac, sizeof(mac));

    if (tag_of(cache, 'I', ids, lens, 3, ident->digest) != 0) {
        goto failed;
    }

    memcpy(ident->prefix, ident->acct_tag, SNAPCACHE_TAG_LEN);
    memcpy(ident->prefix + SNAPCACHE_TAG_LEN, ident->dev_tag,
           SNAPCACHE_TAG_LEN);
    memcpy(ident->prefix + 2 * SNAPCACHE_TAG_LEN, snapshot, snapshot_len);
    ident->prefix[2 * SNAPCACHE_TAG_LEN + snapshot_len] = 0x00;
    ident->prefix_len = 2 * SNAPCACHE_TAG_LEN + snapshot_len + 1;

    m->serial = cache->serial;

    for (i = 0; i < 3; i++) {
        m->lens[i] = (unsigned char) lens[i];
        memcpy(m->ids[i], ids[i], lens[i]);
    }

    m->ident = *ident;

    return SNAPCACHE_CACHE_OK;

failed:

    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(ident, sizeof(snapcache_ident_t));

    return SNAPCACHE_CACHE_ERROR;
}


uint32_t
snapcache_cache_variant(unsigned width, unsigned quality, unsigned pipeline)
{
    if (width == 0 || width > 0xffff || quality == 0 || quality > 0xff
        || pipeline == 0 || pipeline > 0xff)
    {
        return 0;
    }

    return (uint32_t) width << 16 | (uint32_t) quality << 8 | pipeline;
}


void
snapcache_cache_key(const snapcache_ident_t *ident, uint32_t variant,
    unsigned format, snapcache_key_t *key)
{
    unsigned char  *p;

    p = key->data;

    memcpy(p, ident->prefix, ident->prefix_len);
    p += ident->prefix_len;

    /* big-endian, so that a prefix scan sees one rung's keys together */
    p[0] = (unsigned char) (variant >> 24);
    p[1] = (unsigned char) (variant >> 16);
    p[2] = (unsigned char) (variant >> 8);
    p[3] = (unsigned char) variant;
    p[4] = (unsigned char) format;

    key->len = ident->prefix_len + SNAPCACHE_VARIANT_LEN + 1;
}


int
snapcache_cache_prefix(snapcache_cache_t *cache, const char *account,
    const char *device, unsigned char *out, size_t *out_len)
{
    int             rc;
    const char     *ids[2];
    size_t          lens[2];
    unsigned char   mac[32];

    ids[0] = account;
    ids[1] = device;
    lens[0] = account ? strlen(account) : 0;
    lens[1] = device ? strlen(device) : 0;

    rc = SNAPCACHE_CACHE_ERROR;

    if (tag_of(cache, 'A', ids, lens, 1, mac) != 0) {
        goto done;
    }

    memcpy(out, mac, SNAPCACHE_TAG_LEN);
    *out_len = SNAPCACHE_TAG_LEN;

    if (device != NULL) {
        if (tag_of(cache, 'D', ids, lens, 2, mac) != 0) {
            goto done;
        }

        memcpy(out + SNAPCACHE_TAG_LEN, mac, SNAPCACHE_TAG_LEN);
        *out_len = 2 * SNAPCACHE_TAG_LEN;
    }

    rc = SNAPCACHE_CACHE_OK;

done:

    OPENSSL_cleanse(mac, sizeof(mac));

    if (rc != SNAPCACHE_CACHE_OK) {
        OPENSSL_cleanse(out, 2 * SNAPCACHE_TAG_LEN);
        *out_len = 0;
    }

    return rc;
}
