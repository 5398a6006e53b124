
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * cache/: the LMDB store.  Round trips, key separation, variants named
 * by what they are, identity and integrity checks on planted records,
 * negative records, records of the older layout, expiry, purge scopes,
 * a map filled three times over, a lowered size, a damaged file, a
 * read-only open that changes nothing, precommit, readers and a writer
 * killed by SIGKILL.  Records planted or damaged "by hand" are written
 * with LMDB directly, with the store closed, as another process would.
 */

#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>

#include "cache/snapcache_cache.h"
#include "t/unit/tap.h"


#define NOW        1700000000
#define LATER      (NOW + 3600)
#define MB         (1024 * 1024)
#define TAG_MAX    200


typedef struct {
    const char  *account;
    const char  *device;
    const char  *snapshot;
} owner_t;


static char      *store_dir;
static size_t     store_map;
static uint64_t   rng_state;


/* ------------------------------------------------------------ helpers */

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;

    return rng_state;
}


static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}


static void
store_remove(void)
{
    if (store_dir) {
        nftw(store_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(store_dir);
        store_dir = NULL;
    }
}


/* A fresh empty store directory under /tmp. */
static void
store_new(size_t map_size)
{
    char  tmpl[] = "/tmp/snapcache-test-XXXXXX";

    store_remove();

    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        exit(1);
    }

    store_dir = strdup(tmpl);
    store_map = map_size;
}


static snapcache_cache_t *
store_open_wm(unsigned high, unsigned low)
{
    char                     err[512];
    snapcache_cache_t       *cache;
    snapcache_cache_conf_t   conf;

    memset(&conf, 0, sizeof(conf));
    conf.path = store_dir;
    conf.map_size = store_map;
    conf.high_pct = high;
    conf.low_pct = low;

    if (snapcache_cache_open(&conf, &cache, err, sizeof(err))
        != SNAPCACHE_CACHE_OK)
    {
        diag("open: %s", err);
        return NULL;
    }

    return cache;
}


static snapcache_cache_t *
store_open(void)
{
    return store_open_wm(0, 0);
}


static double
seconds(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}


static void *
alloc_malloc(void *ctx, size_t size)
{
    return malloc(size ? size : 1);
}


static void
ident_of(snapcache_cache_t *cache, const owner_t *o, snapcache_ident_t *id)
{
    if (snapcache_cache_ident(cache, o->account, strlen(o->account),
                              o->device, strlen(o->device), o->snapshot,
                              strlen(o->snapshot), id)
        != SNAPCACHE_CACHE_OK)
    {
        diag("ident %s/%s/%s failed", o->account, o->device, o->snapshot);
        exit(1);
    }
}


static uint64_t
fnv(const void *data, size_t len)
{
    size_t               i;
    uint64_t             h;
    const unsigned char *p;

    p = data;
    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }

    return h | 1;
}


/*
 * A body that names its own key: "account/device/snapshot/v/f/seq\n",
 * then bytes from a generator seeded by that line, so that any byte of
 * it tells whose it is.
 */
static size_t
body_make(unsigned char *buf, size_t len, const owner_t *o, unsigned v,
    unsigned f, unsigned long seq)
{
    int       n;
    size_t    i;
    uint64_t  s;

    n = snprintf((char *) buf, len, "%s/%s/%s/%u/%u/%lu\n", o->account,
                 o->device, o->snapshot, v, f, seq);

    if (n < 0 || (size_t) n >= len) {
        diag("body_make: %zu bytes is too short", len);
        exit(1);
    }

    s = fnv(buf, (size_t) n) ^ len;

    for (i = (size_t) n; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        buf[i] = (unsigned char) (s >> 24);
    }

    return len;
}


/* Checks that a body is one that body_make made for this key. */
static int
body_check(const unsigned char *buf, size_t len, const owner_t *o,
    unsigned v, unsigned f)
{
    int            n;
    char           want[TAG_MAX];
    size_t         i;
    uint64_t       s;
    const char    *nl;

    n = snprintf(want, sizeof(want), "%s/%s/%s/%u/%u/", o->account,
                 o->device, o->snapshot, v, f);

    if (len < (size_t) n || memcmp(buf, want, (size_t) n) != 0) {
        return 0;
    }

    nl = memchr(buf, '\n', len < TAG_MAX ? len : TAG_MAX);
    if (nl == NULL) {
        return 0;
    }

    n = (int) ((const unsigned char *) nl - buf) + 1;
    s = fnv(buf, (size_t) n) ^ len;

    for (i = (size_t) n; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;

        if (buf[i] != (unsigned char) (s >> 24)) {
            return 0;
        }
    }

    return 1;
}


static void
item_fill(snapcache_put_t *it, const snapcache_ident_t *id, unsigned v,
    unsigned f, const void *body, size_t len, int64_t expires)
{
    memset(it, 0, sizeof(snapcache_put_t));
    snapcache_cache_key(id, v, f, &it->key);
    it->ident = id;
    it->variant = v;
    it->format = f;
    it->width = 640 + v;
    it->height = 480 + f;
    it->expires = expires;
    it->body = body;
    it->body_len = len;
}


static int
put_one(snapcache_cache_t *cache, const snapcache_ident_t *id, unsigned v,
    unsigned f, const void *body, size_t len, int64_t now, int64_t expires)
{
    snapcache_put_t  it;

    item_fill(&it, id, v, f, body, len, expires);

    return snapcache_cache_put_batch(cache, &it, 1, now, NULL, NULL);
}


static int
get_one(snapcache_cache_t *cache, const snapcache_ident_t *id, unsigned v,
    unsigned f, int64_t now, unsigned flags, snapcache_record_t *rec)
{
    snapcache_key_t  key;

    memset(rec, 0, sizeof(snapcache_record_t));
    snapcache_cache_key(id, v, f, &key);

    return snapcache_cache_get(cache, &key, id, now, flags, rec,
                               alloc_malloc, NULL);
}


static uint64_t
records_under(snapcache_cache_t *cache, const unsigned char *prefix,
    size_t len);


/* ------------------------------------------------------------ raw LMDB */

typedef struct {
    MDB_env  *env;
    MDB_txn  *txn;
    MDB_dbi   records;
    MDB_dbi   by_age;
    MDB_dbi   by_exp;
} raw_t;


/* The store's LMDB environment, opened directly; the store is closed. */
static int
raw_begin(raw_t *raw, unsigned flags)
{
    int  rc;

    rc = mdb_env_create(&raw->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(raw->env, 4);
    }

    if (rc == 0) {
        rc = mdb_env_set_mapsize(raw->env, store_map);
    }

    if (rc == 0) {
        rc = mdb_env_open(raw->env, store_dir, MDB_NOTLS, 0600);
    }

    if (rc == 0) {
        rc = mdb_txn_begin(raw->env, NULL, flags, &raw->txn);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(raw->txn, "records", 0, &raw->records);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(raw->txn, "by_age", 0, &raw->by_age);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(raw->txn, "by_exp", 0, &raw->by_exp);
    }

    if (rc != 0) {
        diag("raw LMDB: %s", mdb_strerror(rc));
    }

    return rc;
}


static int
raw_end(raw_t *raw)
{
    int  rc;

    rc = mdb_txn_commit(raw->txn);
    mdb_env_close(raw->env);

    return rc;
}


/* Flips one byte of the stored value of a key, by hand. */
static int
raw_flip(const snapcache_key_t *key, size_t at)
{
    int             rc;
    raw_t           raw;
    MDB_val         k, v, nv;
    unsigned char  *copy;

    if (raw_begin(&raw, 0) != 0) {
        return -1;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = mdb_get(raw.txn, raw.records, &k, &v);
    if (rc != 0 || at >= v.mv_size) {
        mdb_txn_abort(raw.txn);
        mdb_env_close(raw.env);
        return -1;
    }

    copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at] ^= 0x20;

    nv.mv_data = copy;
    nv.mv_size = v.mv_size;
    rc = mdb_put(raw.txn, raw.records, &k, &nv, 0);
    free(copy);

    if (rc != 0) {
        mdb_txn_abort(raw.txn);
        mdb_env_close(raw.env);
        return -1;
    }

    return raw_end(&raw);
}


/* Whether a key is in the records database, read by hand. */
static int
raw_has(const snapcache_key_t *key)
{
    int      rc;
    raw_t    raw;
    MDB_val  k, v;

    if (raw_begin(&raw, MDB_RDONLY) != 0) {
        return -1;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;
    rc = mdb_get(raw.txn, raw.records, &k, &v);

    mdb_txn_abort(raw.txn);
    mdb_env_close(raw.env);

    return rc == 0;
}


/* Writes a well-formed record of one owner under another's key. */
static int
raw_plant(const snapcache_key_t *key, const snapcache_put_t *it)
{
    int             rc;
    raw_t           raw;
    size_t          len;
    MDB_val         k, v;
    unsigned char  *enc;

    len = SNAPCACHE_RECORD_HEADER_LEN + it->body_len;
    enc = malloc(len);
    if (enc == NULL || snapcache_record_encode(it, NOW, enc, len) != len) {
        free(enc);
        return -1;
    }

    rc = raw_begin(&raw, 0);
    if (rc == 0) {
        k.mv_data = (void *) key->data;
        k.mv_size = key->len;
        v.mv_data = enc;
        v.mv_size = len;
        rc = mdb_put(raw.txn, raw.records, &k, &v, 0);
        if (rc == 0) {
            rc = raw_end(&raw);

        } else {
            mdb_txn_abort(raw.txn);
            mdb_env_close(raw.env);
        }
    }

    free(enc);

    return rc;
}


/* ------------------------------------------------------------ tests */

static void
test_round_trip(void)
{
    int                  rc;
    unsigned char        body[5000];
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_put_t      it;
    owner_t              o = { "acct1", "cam", "snap-2024" };

    store_new(8 * MB);
    cache = store_open();
    ok(cache != NULL, "open a new store");
    if (cache == NULL) {
        return;
    }

    ident_of(cache, &o, &id);
    body_make(body, sizeof(body), &o, 7, SNAPCACHE_FORMAT_WEBP, 1);

    item_fill(&it, &id, 7, SNAPCACHE_FORMAT_WEBP, body, sizeof(body), LATER);
    it.width = 1234567;
    it.height = 7654321;

    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_OK, "put");

    memset(&rec, 0xee, sizeof(rec));
    rc = get_one(cache, &id, 7, SNAPCACHE_FORMAT_WEBP, NOW + 1, 0, &rec);

    is_int(rc, SNAPCACHE_CACHE_HIT, "get hits");
    is_int(rec.created, NOW, "created is put's now");
    is_int(rec.expires, LATER, "expires");
    is_int(rec.variant, 7, "variant");
    is_int(rec.format, SNAPCACHE_FORMAT_WEBP, "format");
    is_int(rec.width, 1234567, "width");
    is_int(rec.height, 7654321, "height");
    is_int(rec.body_len, sizeof(body), "body length");
    ok(rec.body && memcmp(rec.body, body, sizeof(body)) == 0,
       "body bytes");
    is_int(rec.checksum, snapcache_cache_checksum(body, sizeof(body)),
           "checksum is CRC32C of the body");
    ok(memcmp(rec.digest, id.digest, SNAPCACHE_DIGEST_LEN) == 0,
       "digest is the owner's");
    ok(rec.body != (void *) body, "body is a copy");
    free(rec.body);

    /* a standard CRC32C check value, so the checksum is the one we say */
    is_int(snapcache_cache_checksum("123456789", 9), 0xe3069283,
           "CRC32C check value");

    /* an empty body and another rung/format stay separate */
    is_int(put_one(cache, &id, 8, SNAPCACHE_FORMAT_JPEG, "", 0, NOW, LATER),
           SNAPCACHE_CACHE_OK, "put an empty body");
    rc = get_one(cache, &id, 8, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec);
    is_int(rc, SNAPCACHE_CACHE_HIT, "empty body hits");
    is_int(rec.body_len, 0, "empty body has length 0");
    free(rec.body);

    /* an overwrite replaces the record and its created time */
    body_make(body, 3000, &o, 7, SNAPCACHE_FORMAT_WEBP, 2);
    is_int(put_one(cache, &id, 7, SNAPCACHE_FORMAT_WEBP, body, 3000,
                   NOW + 50, LATER + 50),
           SNAPCACHE_CACHE_OK, "overwrite");
    rc = get_one(cache, &id, 7, SNAPCACHE_FORMAT_WEBP, NOW + 60, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.body_len == 3000
       && rec.created == NOW + 50 && rec.expires == LATER + 50
       && memcmp(rec.body, body, 3000) == 0, "overwrite is what get sees");
    free(rec.body);

    is_int(get_one(cache, &id, 9, SNAPCACHE_FORMAT_WEBP, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "another rung misses");

    /* both records survive a close and reopen, with the same secret */
    snapcache_cache_close(cache);
    cache = store_open();
    ident_of(cache, &o, &id);
    rc = get_one(cache, &id, 7, SNAPCACHE_FORMAT_WEBP, NOW + 60, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.body_len == 3000
       && memcmp(rec.body, body, 3000) == 0, "hit after reopen");
    free(rec.body);

    snapcache_cache_close(cache);
}


#define NVARIANTS  (7 * 6 * 3)
#define NFORMATS   SNAPCACHE_FORMAT_ABSENT


static void
test_keys(void)
{
    int                 same, v, f, w, q, p, nv;
    size_t              plen1, plen2;
    uint32_t            vs[NVARIANTS];
    snapcache_key_t     k1, k2, kv[NVARIANTS], kf[NFORMATS];
    snapcache_ident_t   a, b, c, d;
    snapcache_cache_t  *cache;
    unsigned char       p1[SNAPCACHE_CACHE_KEY_MAX];
    unsigned char       p2[SNAPCACHE_CACHE_KEY_MAX];
    owner_t             o1 = { "ab", "c", "s" };
    owner_t             o2 = { "a", "bc", "s" };
    owner_t             o3 = { "ab", "cs", "" };
    owner_t             o4 = { "abc", "s", "x" };

    static const unsigned  widths[] = { 1, 16, 320, 640, 1920, 8192, 65535 };
    static const unsigned  qualities[] = { 1, 50, 65, 85, 100, 255 };

    store_new(4 * MB);
    cache = store_open();

    ident_of(cache, &o1, &a);
    ident_of(cache, &o2, &b);

    snapcache_cache_key(&a, 1, 1, &k1);
    snapcache_cache_key(&b, 1, 1, &k2);

    ok(k1.len != k2.len || memcmp(k1.data, k2.data, k1.len) != 0,
       "keys of ab/c and a/bc differ");
    ok(memcmp(a.acct_tag, b.acct_tag, SNAPCACHE_TAG_LEN) != 0,
       "account tags of ab and a differ");
    ok(memcmp(a.dev_tag, b.dev_tag, SNAPCACHE_TAG_LEN) != 0,
       "device tags of ab/c and a/bc differ");
    ok(memcmp(a.digest, b.digest, SNAPCACHE_DIGEST_LEN) != 0,
       "digests of ab/c/s and a/bc/s differ");

    /* device c under account ab, as a prefix, is what ident said */
    snapcache_cache_prefix(cache, "ab", "c", p1, &plen1);
    snapcache_cache_prefix(cache, "a", "bc", p2, &plen2);
    ok(plen1 == 2 * SNAPCACHE_TAG_LEN
       && memcmp(p1, a.prefix, plen1) == 0
       && memcmp(p2, b.prefix, plen2) == 0
       && memcmp(p1, p2, plen1) != 0, "device prefixes match ident, differ");

    /* the same ids through the snapshot boundary: ab/cs/"" is invalid */
    is_int(snapcache_cache_ident(cache, o3.account, 2, o3.device, 2,
                                 o3.snapshot, 0, &c),
           SNAPCACHE_CACHE_ERROR, "an empty snapshot id is refused");
    is_int(snapcache_cache_ident(cache, "a/b", 3, "c", 1, "s", 1, &c),
           SNAPCACHE_CACHE_ERROR, "an id with '/' is refused");
    ident_of(cache, &o4, &d);
    ok(memcmp(a.digest, d.digest, SNAPCACHE_DIGEST_LEN) != 0,
       "digests of ab/c/s and abc/s/x differ");

    /* rungs named by what they are, and every format byte but ABSENT */
    nv = 0;

    for (w = 0; w < (int) (sizeof(widths) / sizeof(widths[0])); w++) {
        for (q = 0; q < (int) (sizeof(qualities) / sizeof(qualities[0]));
             q++)
        {
            for (p = 1; p <= 3; p++) {
                vs[nv++] = snapcache_cache_variant(widths[w], qualities[q],
                                                   (unsigned) p);
            }
        }
    }

    for (v = 0; v < nv; v++) {
        snapcache_cache_key(&a, vs[v], SNAPCACHE_FORMAT_JPEG, &kv[v]);
    }

    for (f = 0; f < NFORMATS; f++) {
        snapcache_cache_key(&a, vs[1], (unsigned) f, &kf[f]);
    }

    same = 0;

    for (v = 0; v < nv; v++) {
        same += vs[v] == 0;

        for (f = v + 1; f < nv; f++) {
            same += kv[v].len == kv[f].len
                    && memcmp(kv[v].data, kv[f].data, kv[v].len) == 0;
        }
    }

    for (v = 0; v < NFORMATS; v++) {
        for (f = v + 1; f < NFORMATS; f++) {
            same += kf[v].len == kf[f].len
                    && memcmp(kf[v].data, kf[f].data, kf[v].len) == 0;
        }
    }

    is_int(same, 0, "%d rungs and %d format bytes: all keys distinct", nv,
           NFORMATS);

    /* and the store keeps them apart */
    {
        int                 bad;
        unsigned char       body[64];
        snapcache_put_t     items[NVARIANTS + NFORMATS];
        snapcache_record_t  rec;

        memset(body, 'x', sizeof(body));

        for (v = 0; v < nv; v++) {
            item_fill(&items[v], &a, vs[v], SNAPCACHE_FORMAT_JPEG, body,
                      (size_t) v % 64, LATER);
        }

        for (f = 0; f < NFORMATS; f++) {
            item_fill(&items[nv + f], &a, vs[1], (unsigned) f, body,
                      (size_t) (f + 7) % 64, LATER);
        }

        /* (vs[1], JPEG) is in both lists: the second one wins */
        is_int(snapcache_cache_put_batch(cache, items,
                                         (size_t) (nv + NFORMATS), NOW,
                                         NULL, NULL),
               SNAPCACHE_CACHE_OK, "put %d keys in one batch",
               nv + NFORMATS);

        bad = 0;

        for (v = 0; v < nv; v++) {
            if (get_one(cache, &a, vs[v], SNAPCACHE_FORMAT_JPEG, NOW, 0,
                        &rec) != SNAPCACHE_CACHE_HIT
                || rec.variant != vs[v]
                || rec.format != SNAPCACHE_FORMAT_JPEG
                || rec.body_len != (v == 1 ? (size_t) (SNAPCACHE_FORMAT_JPEG
                                                       + 7) % 64
                                           : (size_t) v % 64))
            {
                bad++;
            }

            free(rec.body);
        }

        for (f = 0; f < NFORMATS; f++) {
            if (get_one(cache, &a, vs[1], (unsigned) f, NOW, 0, &rec)
                    != SNAPCACHE_CACHE_HIT
                || rec.variant != vs[1]
                || (f != SNAPCACHE_FORMAT_ANY && rec.format != (unsigned) f)
                || rec.body_len != (size_t) (f + 7) % 64)
            {
                bad++;
            }

            free(rec.body);
        }

        is_int(bad, 0, "each variant and format reads back its own record");
        is_int(get_one(cache, &b, vs[1], 1, NOW, 0, &rec),
               SNAPCACHE_CACHE_MISS, "a/bc/s sees nothing of ab/c/s");
    }

    snapcache_cache_close(cache);
}


static void
test_foreign_and_corrupt(void)
{
    int                       rc, bad;
    size_t                    len;
    unsigned char             body[3000], *enc;
    snapcache_key_t           key;
    snapcache_put_t           it;
    snapcache_ident_t         ia, ib;
    snapcache_cache_t        *cache;
    snapcache_record_t        rec;
    snapcache_cache_stats_t   st;
    owner_t                   oa = { "alice", "door", "s1" };
    owner_t                   ob = { "bob", "door", "s1" };

    store_new(4 * MB);
    cache = store_open();
    ident_of(cache, &oa, &ia);
    ident_of(cache, &ob, &ib);

    body_make(body, sizeof(body), &oa, 2, 1, 1);
    is_int(put_one(cache, &ia, 2, 1, body, sizeof(body), NOW, LATER),
           SNAPCACHE_CACHE_OK, "put alice's record");
    snapcache_cache_close(cache);

    /* bob's record, well formed and checksummed, under alice's key */
    body_make(body, sizeof(body), &ob, 3, 1, 1);
    item_fill(&it, &ib, 3, 1, body, sizeof(body), LATER);
    snapcache_cache_key(&ia, 3, 1, &key);

    enc = malloc(SNAPCACHE_RECORD_HEADER_LEN + sizeof(body));
    len = snapcache_record_encode(&it, NOW, enc,
                                  SNAPCACHE_RECORD_HEADER_LEN + sizeof(body));
    is_int(len, SNAPCACHE_RECORD_HEADER_LEN + sizeof(body), "encode");
    is_int(snapcache_record_encode(&it, NOW, enc, len - 1), 0,
           "encode refuses a short buffer");
    free(enc);

    is_int(raw_plant(&key, &it), 0, "planted bob's record under alice's key");

    cache = store_open();

    rc = get_one(cache, &ia, 3, 1, NOW, 0, &rec);
    is_int(rc, SNAPCACHE_CACHE_FOREIGN, "get under alice's key is FOREIGN");
    ok(rec.body == NULL, "nothing copied out of a foreign record");
    snapcache_cache_close(cache);

    is_int(raw_has(&key), 0, "get deleted the foreign record");

    cache = store_open();
    is_int(get_one(cache, &ia, 3, 1, NOW, 0, &rec), SNAPCACHE_CACHE_MISS,
           "then a plain miss");
    snapcache_cache_close(cache);

    /* KEEP_BAD: reported, left for the next put of the key */
    is_int(raw_plant(&key, &it), 0, "planted it again");
    cache = store_open();
    is_int(get_one(cache, &ia, 3, 1, NOW, SNAPCACHE_GET_KEEP_BAD, &rec),
           SNAPCACHE_CACHE_FOREIGN, "with KEEP_BAD: still FOREIGN");
    ok(rec.body == NULL, "nothing copied");
    snapcache_cache_close(cache);
    is_int(raw_has(&key), 1, "and the record is left in place");

    cache = store_open();
    body_make(body, sizeof(body), &oa, 3, 1, 3);
    is_int(put_one(cache, &ia, 3, 1, body, sizeof(body), NOW, LATER),
           SNAPCACHE_CACHE_OK, "the fill's put of the key");
    rc = get_one(cache, &ia, 3, 1, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &oa, 3, 1),
       "replaces it: alice's own record hits");
    free(rec.body);
    snapcache_cache_close(cache);

    /* a kept original: its key says FORMAT_ANY, its record what it is */
    {
        snapcache_put_t  orig;

        cache = store_open();
        body_make(body, sizeof(body), &oa, 0, SNAPCACHE_FORMAT_ANY, 5);
        item_fill(&orig, &ia, SNAPCACHE_VARIANT_ORIGINAL,
                  SNAPCACHE_FORMAT_ANY, body, sizeof(body), LATER);
        orig.format = SNAPCACHE_FORMAT_PNG;
        is_int(snapcache_cache_put_batch(cache, &orig, 1, NOW, NULL, NULL),
               SNAPCACHE_CACHE_OK, "put a kept original (a PNG)");
        rc = get_one(cache, &ia, SNAPCACHE_VARIANT_ORIGINAL,
                     SNAPCACHE_FORMAT_ANY, NOW, 0, &rec);
        ok(rc == SNAPCACHE_CACHE_HIT && rec.format == SNAPCACHE_FORMAT_PNG
           && body_check(rec.body, rec.body_len, &oa, 0,
                         SNAPCACHE_FORMAT_ANY),
           "its key (FORMAT_ANY) hits, and the record says PNG");
        free(rec.body);
        snapcache_cache_close(cache);
    }

    /* alice's own record, but of another variant, under this key */
    {
        snapcache_put_t  own;

        body_make(body, sizeof(body), &oa, 2, 1, 4);
        item_fill(&own, &ia, 2, 1, body, sizeof(body), LATER);
        is_int(raw_plant(&key, &own), 0,
               "planted alice's variant 2 under her variant 3 key");
        cache = store_open();
        rc = get_one(cache, &ia, 3, 1, NOW, 0, &rec);
        is_int(rc, SNAPCACHE_CACHE_CORRUPT,
               "a record of another variant than its key: CORRUPT");
        free(rec.body);
        snapcache_cache_close(cache);
    }

    body_make(body, sizeof(body), &ob, 3, 1, 1);
    is_int(raw_plant(&key, &it), 0, "planted it once more");
    cache = store_open();
    rc = get_one(cache, &ia, 3, 1, LATER + 10, SNAPCACHE_GET_STALE, &rec);
    is_int(rc, SNAPCACHE_CACHE_FOREIGN, "FOREIGN even when stale is asked");
    ok(rec.body == NULL, "nothing copied with GET_STALE either");
    ok(snapcache_cache_stats(cache, &st) == SNAPCACHE_CACHE_OK
       && st.deleted_bad == 1, "stats count the deleted record");

    rc = get_one(cache, &ia, 2, 1, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &oa, 2, 1),
       "alice's own record still hits");
    free(rec.body);

    snapcache_cache_close(cache);

    /* one flipped body byte */
    snapcache_cache_key(&ia, 2, 1, &key);
    is_int(raw_flip(&key, SNAPCACHE_RECORD_HEADER_LEN + 1500), 0,
           "flipped a body byte");
    cache = store_open();
    is_int(get_one(cache, &ia, 2, 1, NOW, 0, &rec), SNAPCACHE_CACHE_CORRUPT,
           "flipped body byte: CORRUPT");
    free(rec.body);
    is_int(get_one(cache, &ia, 2, 1, NOW, 0, &rec), SNAPCACHE_CACHE_MISS,
           "and deleted: the next get is a miss");
    snapcache_cache_close(cache);

    /* every header byte, one at a time (the reserved ones too) */
    bad = 0;
    body_make(body, sizeof(body), &oa, 2, 1, 2);

    for (len = 0; len < SNAPCACHE_RECORD_HEADER_LEN; len++) {
        cache = store_open();
        put_one(cache, &ia, 2, 1, body, sizeof(body), NOW, LATER);
        snapcache_cache_close(cache);

        raw_flip(&key, len);

        cache = store_open();
        rc = get_one(cache, &ia, 2, 1, NOW, SNAPCACHE_GET_STALE, &rec);
        free(rec.body);
        snapcache_cache_close(cache);

        if (rc != SNAPCACHE_CACHE_CORRUPT || raw_has(&key) != 0) {
            diag("header byte %zu flipped: %s, %s", len,
                 snapcache_cache_strerror(rc),
                 raw_has(&key) ? "kept" : "deleted");
            bad++;
        }
    }

    is_int(bad, 0, "each flipped header byte: CORRUPT, and deleted");

    cache = store_open();
    put_one(cache, &ia, 2, 1, body, sizeof(body), NOW, LATER);
    rc = get_one(cache, &ia, 2, 1, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &oa, 2, 1),
       "stored again: a hit");
    free(rec.body);
    snapcache_cache_close(cache);

    /* a truncated value */
    {
        raw_t    r;
        MDB_val  tk, tv;

        rc = raw_begin(&r, 0);
        if (rc == 0) {
            tk.mv_data = key.data;
            tk.mv_size = key.len;
            rc = mdb_get(r.txn, r.records, &tk, &tv);
        }

        if (rc == 0) {
            enc = malloc(tv.mv_size);
            memcpy(enc, tv.mv_data, tv.mv_size);
            tv.mv_data = enc;
            tv.mv_size -= 1;
            rc = mdb_put(r.txn, r.records, &tk, &tv, 0);
            free(enc);
            rc = rc ? rc : raw_end(&r);
        }

        is_int(rc, 0, "truncated a record by one byte");
        cache = store_open();
        is_int(get_one(cache, &ia, 2, 1, NOW, 0, &rec),
               SNAPCACHE_CACHE_CORRUPT, "truncated record: CORRUPT");
        free(rec.body);
        snapcache_cache_close(cache);
    }
}


static void
test_expiry(void)
{
    int                  rc;
    unsigned char        body[2000];
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    owner_t              o = { "acct", "dev", "old" };

    store_new(4 * MB);
    cache = store_open();
    ident_of(cache, &o, &id);
    body_make(body, sizeof(body), &o, 1, 1, 1);
    put_one(cache, &id, 1, 1, body, sizeof(body), NOW, NOW + 100);

    rc = get_one(cache, &id, 1, 1, NOW + 99, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.body != NULL,
       "hit one second before expiry");
    free(rec.body);

    rc = get_one(cache, &id, 1, 1, NOW + 100, 0, &rec);
    is_int(rc, SNAPCACHE_CACHE_EXPIRED, "EXPIRED at the expiry time");
    ok(rec.body == NULL, "no body copied without GET_STALE");

    rc = get_one(cache, &id, 1, 1, NOW + 5000, SNAPCACHE_GET_STALE, &rec);
    is_int(rc, SNAPCACHE_CACHE_EXPIRED, "EXPIRED with GET_STALE");
    ok(rec.body != NULL && rec.body_len == sizeof(body)
       && memcmp(rec.body, body, sizeof(body)) == 0
       && rec.expires == NOW + 100, "GET_STALE copies the whole body");
    free(rec.body);

    snapcache_cache_close(cache);
}


typedef struct {
    uint64_t  records;
    uint64_t  bad;
} count_t;


static int
count_visit(void *ctx, const unsigned char *key, size_t key_len,
    const snapcache_record_t *hdr, int check)
{
    count_t  *c = ctx;

    c->records++;

    if (check != SNAPCACHE_CACHE_OK && check != SNAPCACHE_CACHE_EXPIRED) {
        c->bad++;
    }

    return 0;
}


static uint64_t
records_under(snapcache_cache_t *cache, const unsigned char *prefix,
    size_t len)
{
    count_t  c;

    memset(&c, 0, sizeof(c));
    snapcache_cache_iterate(cache, prefix, len, NOW, count_visit, &c);

    return c.records;
}


/* Puts n records for one snapshot: n variants of format JPEG. */
static void
put_snapshot(snapcache_cache_t *cache, const owner_t *o, unsigned n)
{
    unsigned            i;
    unsigned char       body[100];
    snapcache_put_t    *items;
    snapcache_ident_t   id;

    ident_of(cache, o, &id);
    items = calloc(n, sizeof(snapcache_put_t));

    for (i = 0; i < n; i++) {
        item_fill(&items[i], &id, i, SNAPCACHE_FORMAT_JPEG, body, 100, LATER);
    }

    body_make(body, sizeof(body), o, 0, 0, 0);

    if (snapcache_cache_put_batch(cache, items, n, NOW, NULL, NULL)
        != SNAPCACHE_CACHE_OK)
    {
        diag("put_snapshot %s/%s/%s failed", o->account, o->device,
             o->snapshot);
    }

    free(items);
}


static void
test_purge(void)
{
    int                  i;
    char                 snap[32];
    uint64_t             count, before;
    snapcache_cache_t   *cache;
    snapcache_cache_stats_t  st;
    owner_t              o;
    unsigned char        p[SNAPCACHE_CACHE_KEY_MAX];
    size_t               plen;

    /* n records each; names chosen so that one is a prefix of another */
    static const struct {
        owner_t   o;
        unsigned  n;
    } set[] = {
        { { "a",  "cam",  "s1" },  3 },
        { { "a",  "cam",  "s10" }, 4 },
        { { "a",  "cam1", "s1" },  5 },
        { { "a",  "cam1", "s10" }, 6 },
        { { "ab", "cam",  "s1" },  7 },
        { { "ab", "cam1", "s1" },  8 },
    };

    store_new(64 * MB);
    cache = store_open();

    for (i = 0; i < (int) (sizeof(set) / sizeof(set[0])); i++) {
        put_snapshot(cache, &set[i].o, set[i].n);
    }

    is_int(records_under(cache, NULL, 0), 33, "33 records stored");

    is_int(snapcache_cache_purge(cache, "a", "cam", "s1", &count),
           SNAPCACHE_CACHE_OK, "purge snapshot a/cam/s1");
    is_int(count, 3, "3 records purged");
    snapcache_cache_prefix(cache, "a", "cam", p, &plen);
    is_int(records_under(cache, p, plen), 4, "a/cam/s10 intact");
    is_int(records_under(cache, NULL, 0), 30, "30 left in the store");

    is_int(snapcache_cache_purge(cache, "a", "cam", "s1", &count),
           SNAPCACHE_CACHE_OK, "purge it again");
    is_int(count, 0, "nothing purged the second time");

    is_int(snapcache_cache_purge(cache, "a", "cam", NULL, &count),
           SNAPCACHE_CACHE_OK, "purge device a/cam");
    is_int(count, 4, "4 records purged");
    snapcache_cache_prefix(cache, "a", "cam1", p, &plen);
    is_int(records_under(cache, p, plen), 11, "a/cam1 intact");
    snapcache_cache_prefix(cache, "ab", "cam", p, &plen);
    is_int(records_under(cache, p, plen), 7, "ab/cam intact");
    is_int(records_under(cache, NULL, 0), 26, "26 left in the store");

    is_int(snapcache_cache_purge(cache, "a", NULL, NULL, &count),
           SNAPCACHE_CACHE_OK, "purge account a");
    is_int(count, 11, "11 records purged");
    snapcache_cache_prefix(cache, "ab", NULL, p, &plen);
    is_int(records_under(cache, p, plen), 15, "account ab intact");
    is_int(records_under(cache, NULL, 0), 15, "15 left in the store");

    {
        snapcache_ident_t   id;
        snapcache_record_t  rec;

        o = set[5].o;
        ident_of(cache, &o, &id);
        i = get_one(cache, &id, 7, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec);
        ok(i == SNAPCACHE_CACHE_HIT && body_check(rec.body, rec.body_len,
                                                  &o, 0, 0),
           "a record of ab/cam1 still reads back whole");
        free(rec.body);
    }

    is_int(snapcache_cache_purge(cache, "a", NULL, "s1", &count),
           SNAPCACHE_CACHE_ERROR, "snapshot purge without a device fails");
    is_int(snapcache_cache_purge(cache, "a/b", NULL, NULL, &count),
           SNAPCACHE_CACHE_ERROR, "purge of an invalid account fails");

    /* more than one chunk: 2500 records of one device, many snapshots */
    o.account = "big";
    o.device = "cam";

    for (i = 0; i < 250; i++) {
        snprintf(snap, sizeof(snap), "snap%d", i);
        o.snapshot = snap;
        put_snapshot(cache, &o, 10);
    }

    o.device = "cam0";
    o.snapshot = "snap0";
    put_snapshot(cache, &o, 9);

    before = records_under(cache, NULL, 0);
    is_int(before, 15 + 2500 + 9, "2509 more records stored");

    is_int(snapcache_cache_purge(cache, "big", "cam", NULL, &count),
           SNAPCACHE_CACHE_OK, "purge 2500 records of big/cam");
    is_int(count, 2500, "exactly 2500 purged, across chunks");
    snapcache_cache_prefix(cache, "big", "cam0", p, &plen);
    is_int(records_under(cache, p, plen), 9, "big/cam0 intact");
    is_int(records_under(cache, NULL, 0), 15 + 9, "24 left in the store");

    snapcache_cache_stats(cache, &st);
    is_int(st.entries, 24, "stats count 24 entries");

    /* the same deletes without the sync, then one sync for several */
    is_int(snapcache_cache_purge_nosync(cache, "big", "cam0", "snap0",
                                        &count),
           SNAPCACHE_CACHE_OK, "purge_nosync of big/cam0/snap0");
    is_int(count, 9, "9 records purged");
    is_int(snapcache_cache_purge_nosync(cache, "ab", "cam", NULL, &count),
           SNAPCACHE_CACHE_OK, "purge_nosync of ab/cam");
    is_int(count, 7, "7 records purged");
    is_int(snapcache_cache_sync(cache), SNAPCACHE_CACHE_OK,
           "one sync for both");
    is_int(records_under(cache, NULL, 0), 8, "8 left in the store");
    is_int(snapcache_cache_purge_nosync(cache, "a", NULL, "s1", &count),
           SNAPCACHE_CACHE_ERROR, "purge_nosync checks its scope too");

    snapcache_cache_close(cache);
}


static int
precommit_no(void *ctx)
{
    (*(int *) ctx)++;
    return 1;
}


static int
precommit_yes(void *ctx)
{
    (*(int *) ctx)++;
    return 0;
}


static void
test_precommit(void)
{
    int                  called;
    unsigned char        body[500];
    snapcache_put_t      items[3];
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_stats_t  st;
    owner_t              o = { "acct", "dev", "snap" };

    store_new(4 * MB);
    cache = store_open();
    ident_of(cache, &o, &id);
    body_make(body, sizeof(body), &o, 0, 0, 0);

    item_fill(&items[0], &id, 0, 0, body, sizeof(body), LATER);
    item_fill(&items[1], &id, 1, 1, body, 100, LATER);
    item_fill(&items[2], &id, 2, 1, body, 200, LATER);

    called = 0;
    is_int(snapcache_cache_put_batch(cache, items, 3, NOW, precommit_no,
                                     &called),
           SNAPCACHE_CACHE_ABORTED, "precommit says no: ABORTED");
    ok(called >= 1, "precommit was called");
    is_int(get_one(cache, &id, 0, 0, NOW, 0, &rec), SNAPCACHE_CACHE_MISS,
           "nothing stored: first item misses");
    is_int(get_one(cache, &id, 2, 1, NOW, 0, &rec), SNAPCACHE_CACHE_MISS,
           "nothing stored: last item misses");
    snapcache_cache_stats(cache, &st);
    is_int(st.entries, 0, "no entries");

    called = 0;
    is_int(snapcache_cache_put_batch(cache, items, 3, NOW, precommit_yes,
                                     &called),
           SNAPCACHE_CACHE_OK, "precommit says yes: OK");
    is_int(called, 1, "precommit called once");
    snapcache_cache_stats(cache, &st);
    is_int(st.entries, 3, "three entries");

    /* an aborted overwrite leaves the old record */
    item_fill(&items[0], &id, 0, 0, body, 10, LATER);
    is_int(snapcache_cache_put_batch(cache, items, 1, NOW, precommit_no,
                                     &called),
           SNAPCACHE_CACHE_ABORTED, "aborted overwrite");
    is_int(get_one(cache, &id, 0, 0, NOW, 0, &rec), SNAPCACHE_CACHE_HIT,
           "old record still there");
    is_int(rec.body_len, sizeof(body), "with its old length");
    free(rec.body);

    snapcache_cache_close(cache);
}


/* ------------------------------------------------------------ full map */

static void
test_fill(void)
{
    int                  rc, prev, full, bad_rc, two_full, over, n, i;
    char                 snaps[8][32];
    owner_t              os[8];
    size_t               total, len[8];
    uint64_t             batches;
    unsigned char       *bodies[8];
    snapcache_put_t      items[8];
    snapcache_ident_t    ids[8];
    snapcache_cache_t   *cache;
    snapcache_cache_stats_t  st;
    count_t              c;
    static const char   *accts[] = { "a1", "a2", "a3" };
    static const char   *devs[] = { "front", "back", "garage", "attic" };

    store_new(8 * MB);
    cache = store_open_wm(90, 75);

    for (i = 0; i < 8; i++) {
        bodies[i] = malloc(200 * 1024);
    }

    total = 0;
    batches = 0;
    full = bad_rc = two_full = over = 0;
    rc = SNAPCACHE_CACHE_OK;

    while (total < 3 * store_map) {
        n = 1 + (int) (rnd() % 8);

        for (i = 0; i < n; i++) {
            os[i].account = accts[rnd() % 3];
            os[i].device = devs[rnd() % 4];
            snprintf(snaps[i], sizeof(snaps[i]), "s%llu",
                     (unsigned long long) (rnd() % 100000));
            os[i].snapshot = snaps[i];

            /* mostly small, sometimes 100 KB or more */
            len[i] = rnd() % 8 == 0 ? 64 * 1024 + rnd() % (136 * 1024)
                                    : 100 + rnd() % (30 * 1024);

            body_make(bodies[i], len[i], &os[i], (unsigned) i, 1, batches);
            ident_of(cache, &os[i], &ids[i]);
            item_fill(&items[i], &ids[i], (unsigned) i, 1, bodies[i], len[i],
                      rnd() % 4 == 0 ? NOW - 1 : LATER);
            total += len[i];
        }

        prev = rc;
        rc = snapcache_cache_put_batch(cache, items, (size_t) n, NOW, NULL,
                                       NULL);

        if (prev == SNAPCACHE_CACHE_FULL && rc != SNAPCACHE_CACHE_OK) {
            two_full++;
        }

        if (rc == SNAPCACHE_CACHE_FULL) {
            full++;

        } else if (rc != SNAPCACHE_CACHE_OK) {
            if (bad_rc++ == 0) {
                diag("batch %llu: %s", (unsigned long long) batches,
                     snapcache_cache_strerror(rc));
            }
        }

        snapcache_cache_stats(cache, &st);

        if (st.used_pages * 100 > st.total_pages * 90) {
            if (over++ == 0) {
                diag("batch %llu: %llu of %llu pages used",
                     (unsigned long long) batches,
                     (unsigned long long) st.used_pages,
                     (unsigned long long) st.total_pages);
            }
        }

        batches++;
    }

    diag("%llu batches, %zu body bytes into an 8 MB map, %d FULL, "
         "%llu evicted", (unsigned long long) batches, total, full,
         (unsigned long long) st.evictions);

    is_int(bad_rc, 0, "no batch failed with anything but OK or FULL");
    is_int(two_full, 0, "a FULL batch is always followed by an OK one");
    ok(full * 20 <= (int) batches, "FULL is rare (%d of %llu)", full,
       (unsigned long long) batches);
    is_int(over, 0, "usage is under the high watermark after every batch");
    ok(st.evictions > 0, "records were evicted");

    memset(&c, 0, sizeof(c));
    snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &c);
    ok(c.records > 0 && c.records == st.entries,
       "iterate sees every entry (%llu)", (unsigned long long) c.records);
    is_int(c.bad, 0, "every record left verifies");

    for (i = 0; i < 8; i++) {
        free(bodies[i]);
    }

    snapcache_cache_close(cache);
}


/* ------------------------------------------------------- processes */

#define MP_OWNERS   200
#define MP_BODY     (6 * 1024)
#define MP_READERS  4


typedef struct {
    volatile int       stop;
    volatile uint64_t  reads[MP_READERS];
    volatile uint64_t  hits[MP_READERS];
    volatile uint64_t  bad[MP_READERS];
} shared_t;


static void
mp_owner(int i, owner_t *o, char *snap, size_t size)
{
    static const char  *accts[] = { "a", "ab", "abc" };
    static const char  *devs[] = { "cam", "cam1", "cam10", "c" };

    snprintf(snap, size, "s%d", i);
    o->account = accts[i % 3];
    o->device = devs[(i / 3) % 4];
    o->snapshot = snap;
}


/* Reads random keys until told to stop; checks every byte it gets. */
static void
mp_reader(int slot, shared_t *sh, int ready)
{
    int                  i, rc;
    char                 snap[32];
    owner_t              o;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;

    rng_state ^= (uint64_t) getpid() << 20;

    cache = store_open();
    if (cache == NULL || write(ready, "o", 1) != 1) {
        sh->bad[slot]++;
        _exit(1);
    }

    while (!sh->stop) {
        i = (int) (rnd() % MP_OWNERS);
        mp_owner(i, &o, snap, sizeof(snap));
        ident_of(cache, &o, &id);

        rc = get_one(cache, &id, 1, 1, NOW, 0, &rec);
        sh->reads[slot]++;

        if (rc == SNAPCACHE_CACHE_HIT) {
            sh->hits[slot]++;

            if (rec.checksum != snapcache_cache_checksum(rec.body,
                                                         rec.body_len)
                || !body_check(rec.body, rec.body_len, &o, 1, 1))
            {
                sh->bad[slot]++;
            }

        } else if (rc != SNAPCACHE_CACHE_MISS) {
            sh->bad[slot]++;
        }

        free(rec.body);
    }

    snapcache_cache_close(cache);
    _exit(0);
}


/* Overwrites random keys: a batch count per command, a byte back. */
static void
mp_writer(int cmd_fd, int ack_fd, int ready)
{
    int                  i, j, rc;
    char                 snaps[8][32], res;
    owner_t              os[8];
    uint32_t             batches;
    unsigned long        seq;
    unsigned char       *body;
    snapcache_put_t      items[8];
    snapcache_ident_t    ids[8];
    snapcache_cache_t   *cache;

    rng_state ^= (uint64_t) getpid() << 20;
    body = malloc(8 * MP_BODY);
    seq = 1000;

    cache = store_open();
    if (cache == NULL || write(ready, "o", 1) != 1) {
        _exit(1);
    }

    while (read(cmd_fd, &batches, sizeof(batches)) == sizeof(batches)) {
        res = 'k';

        for (j = 0; j < (int) batches; j++) {
            for (i = 0; i < 8; i++) {
                mp_owner((int) (rnd() % MP_OWNERS), &os[i], snaps[i],
                         sizeof(snaps[i]));
                ident_of(cache, &os[i], &ids[i]);
                body_make(body + i * MP_BODY, MP_BODY, &os[i], 1, 1, seq++);
                item_fill(&items[i], &ids[i], 1, 1, body + i * MP_BODY,
                          MP_BODY, LATER);
            }

            rc = snapcache_cache_put_batch(cache, items, 8, NOW, NULL, NULL);
            if (rc != SNAPCACHE_CACHE_OK) {
                res = rc == SNAPCACHE_CACHE_FULL ? 'f' : 'e';
            }
        }

        if (write(ack_fd, &res, 1) != 1) {
            break;
        }
    }

    snapcache_cache_close(cache);
    free(body);
    _exit(0);
}


/* Sits in a read transaction of its own, for ever: to be SIGKILLed. */
static void
mp_stuck_reader(int fd)
{
    raw_t  raw;
    char   c;

    c = raw_begin(&raw, MDB_RDONLY) == 0 ? 'r' : 'x';

    if (write(fd, &c, 1) != 1) {
        _exit(1);
    }

    for ( ;; ) {
        pause();
    }
}


static char
mp_write(int cmd_fd, int ack_fd, uint32_t batches)
{
    char  c;

    if (write(cmd_fd, &batches, sizeof(batches)) != sizeof(batches)
        || read(ack_fd, &c, 1) != 1)
    {
        return '?';
    }

    return c;
}


static void
test_processes(void)
{
    int                  i, cmd[2], ack[2], sp[2], rd[2], status, cleared;
    int                  bad;
    int                  rc;
    char                 c, snap[32];
    pid_t                readers[MP_READERS], writer, stuck;
    owner_t              o;
    uint64_t             e0, e1, e2, e3, reads, hits, bad_reads;
    uint64_t             written_pages;
    double               start;
    shared_t            *sh;
    unsigned char       *body;
    snapcache_put_t      it;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;

    /* 200 keys of 6 KB in a 64 MB map: rewrites are all that grows it */
    store_new(64 * MB);
    cache = store_open();
    body = malloc(MP_BODY);

    for (i = 0; i < MP_OWNERS; i++) {
        mp_owner(i, &o, snap, sizeof(snap));
        ident_of(cache, &o, &id);
        body_make(body, MP_BODY, &o, 1, 1, 0);
        item_fill(&it, &id, 1, 1, body, MP_BODY, LATER);
        snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL);
    }

    free(body);
    snapcache_cache_close(cache);

    sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof(shared_t));

    if (pipe(cmd) != 0 || pipe(ack) != 0 || pipe(sp) != 0 || pipe(rd) != 0) {
        perror("pipe");
        exit(1);
    }

    fflush(stdout);
    start = seconds();

    for (i = 0; i < MP_READERS; i++) {
        readers[i] = fork();
        if (readers[i] == 0) {
            mp_reader(i, sh, rd[1]);
        }
    }

    writer = fork();
    if (writer == 0) {
        close(cmd[1]);
        close(ack[0]);
        mp_writer(cmd[0], ack[1], rd[1]);
    }

    close(cmd[0]);
    close(ack[1]);

    /*
     * Every store is open before the stale slot exists: an open clears
     * the slots of dead processes, and that would hide the test's point.
     */
    bad = 0;

    for (i = 0; i < MP_READERS + 1; i++) {
        bad += read(rd[0], &c, 1) != 1;
    }

    is_int(bad, 0, "%d readers and a writer have the store open",
           MP_READERS);

    stuck = fork();
    if (stuck == 0) {
        mp_stuck_reader(sp[1]);
    }

    c = 0;
    ok(read(sp[0], &c, 1) == 1 && c == 'r',
       "a reader is inside a read transaction");

    /* open while it lives: open's own reader check must find it alive */
    cache = store_open_wm(95, 90);

    kill(stuck, SIGKILL);
    waitpid(stuck, &status, 0);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
       "and was SIGKILLed there");

    snapcache_cache_extent(cache, &e0);
    c = mp_write(cmd[1], ack[0], 150);
    snapcache_cache_extent(cache, &e1);

    /* 150 batches of 8 x 6 KB (2 pages each) */
    written_pages = 150 * 8 * 2;

    is_int(c, 'k', "1200 rewrites behind the stale slot: all stored");
    ok(e1 - e0 >= written_pages / 2,
       "behind the stale slot the data file grows: %llu -> %llu pages",
       (unsigned long long) e0, (unsigned long long) e1);

    cleared = 0;
    rc = snapcache_cache_reader_check(cache, &cleared);
    is_int(rc, SNAPCACHE_CACHE_OK, "reader_check");
    ok(cleared >= 1, "reader_check cleared the stale slot (%d)", cleared);

    /* one round to let the freed pages age past every live reader */
    c = mp_write(cmd[1], ack[0], 20);
    snapcache_cache_extent(cache, &e2);
    c = c == 'k' ? mp_write(cmd[1], ack[0], 300) : c;
    snapcache_cache_extent(cache, &e3);

    is_int(c, 'k', "2400 more rewrites: all stored");
    ok(e3 - e2 < written_pages / 10,
       "after reader_check the file stops growing: %llu -> %llu pages "
       "over twice the writes", (unsigned long long) e2,
       (unsigned long long) e3);

    /* the readers go on against a busy writer for about 3 s in all */
    while (c == 'k' && seconds() - start < 3.0) {
        c = mp_write(cmd[1], ack[0], 20);
    }

    is_int(c, 'k', "rewrites while the readers read: all stored");

    sh->stop = 1;
    close(cmd[1]);

    bad = 0;

    for (i = 0; i < MP_READERS; i++) {
        waitpid(readers[i], &status, 0);
        bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }

    waitpid(writer, &status, 0);
    bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    close(ack[0]);
    close(sp[0]);
    close(sp[1]);
    close(rd[0]);
    close(rd[1]);

    is_int(bad, 0, "readers and the writer exited cleanly");

    reads = hits = bad_reads = 0;

    for (i = 0; i < MP_READERS; i++) {
        reads += sh->reads[i];
        hits += sh->hits[i];
        bad_reads += sh->bad[i];
    }

    diag("%llu reads, %llu hits by %d readers",
         (unsigned long long) reads, (unsigned long long) hits, MP_READERS);
    ok(hits > 0 && hits == reads, "every read was a hit (%llu of %llu)",
       (unsigned long long) hits, (unsigned long long) reads);
    is_int(bad_reads, 0, "every read verified: checksum and own key");

    munmap(sh, sizeof(shared_t));
    snapcache_cache_close(cache);
}


#define KW_OWNERS  64
#define KW_BODY    (40 * 1024)


/* Rewrites big batches for ever; told it has started by a byte. */
static void
kw_writer(int fd)
{
    int                  i;
    char                 snaps[32][32];
    size_t               len;
    owner_t              os[32];
    unsigned long        seq;
    unsigned char       *body;
    snapcache_put_t      items[32];
    snapcache_ident_t    ids[32];
    snapcache_cache_t   *cache;

    rng_state ^= (uint64_t) getpid() << 20;
    body = malloc(32 * KW_BODY);
    seq = 0;

    cache = store_open();
    if (cache == NULL) {
        _exit(1);
    }

    if (write(fd, "s", 1) != 1) {
        _exit(1);
    }

    for ( ;; ) {
        for (i = 0; i < 32; i++) {
            mp_owner((int) (rnd() % KW_OWNERS), &os[i], snaps[i],
                     sizeof(snaps[i]));
            ident_of(cache, &os[i], &ids[i]);
            len = KW_BODY - rnd() % 4096;
            body_make(body + i * KW_BODY, len, &os[i], 2, 3, seq++);
            item_fill(&items[i], &ids[i], 2, 3, body + i * KW_BODY, len,
                      LATER);
        }

        snapcache_cache_put_batch(cache, items, 32, NOW, NULL, NULL);
    }
}


static void
test_killed_writer(void)
{
    int                  round, i, rc, fd[2], status, bad, hits;
    char                 c, snap[32];
    pid_t                pid;
    owner_t              o;
    count_t              cnt;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_stats_t  st;

    store_new(16 * MB);

    for (round = 0; round < 4; round++) {
        if (pipe(fd) != 0) {
            perror("pipe");
            exit(1);
        }

        fflush(stdout);

        pid = fork();
        if (pid == 0) {
            close(fd[0]);
            kw_writer(fd[1]);
        }

        close(fd[1]);
        c = 0;

        if (read(fd[0], &c, 1) != 1 || c != 's') {
            diag("writer did not start");
        }

        close(fd[0]);

        /* somewhere inside a batch, most likely */
        usleep((useconds_t) (50000 + rnd() % 400000));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);

        cache = store_open();
        ok(cache != NULL, "round %d: open after the writer was SIGKILLed",
           round);
        if (cache == NULL) {
            return;
        }

        memset(&cnt, 0, sizeof(cnt));
        rc = snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &cnt);
        snapcache_cache_stats(cache, &st);

        ok(rc == SNAPCACHE_CACHE_OK && cnt.bad == 0 && cnt.records > 0
           && cnt.records == st.entries,
           "round %d: %llu records, every one verifies", round,
           (unsigned long long) cnt.records);

        bad = hits = 0;

        for (i = 0; i < KW_OWNERS; i++) {
            mp_owner(i, &o, snap, sizeof(snap));
            ident_of(cache, &o, &id);
            rc = get_one(cache, &id, 2, 3, NOW, 0, &rec);

            if (rc == SNAPCACHE_CACHE_HIT) {
                hits++;
                bad += !body_check(rec.body, rec.body_len, &o, 2, 3);

            } else if (rc != SNAPCACHE_CACHE_MISS) {
                bad++;
            }

            free(rec.body);
        }

        ok(bad == 0 && hits > 0,
           "round %d: %d keys hit, each body is its own key's", round,
           hits);

        snapcache_cache_close(cache);
    }
}


/* ------------------------------------------------------------ variants */

static void
test_variants(void)
{
    int                  bad, i, rc;
    unsigned             w, q, p;
    uint32_t             d, thumb, sd, thumb2, thumb_q;
    unsigned char        body[2000];
    snapcache_key_t      ka, kb, key;
    snapcache_put_t      it;
    snapcache_ident_t    ia, ib;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    owner_t              oa = { "alice", "door", "s1" };
    owner_t              ob = { "alice", "door", "s10" };

    is_int(snapcache_cache_variant(320, 50, 1), 320u << 16 | 50u << 8 | 1,
           "variant: width 16 bits | quality 8 | pipeline 8");
    ok(snapcache_cache_variant(0, 50, 1) == 0
       && snapcache_cache_variant(65536, 50, 1) == 0
       && snapcache_cache_variant(320, 0, 1) == 0
       && snapcache_cache_variant(320, 256, 1) == 0
       && snapcache_cache_variant(320, 50, 0) == 0
       && snapcache_cache_variant(320, 50, 256) == 0,
       "a value out of range gives 0, which no rung has");

    /* every width a ladder may have, every quality, two pipelines */
    bad = 0;

    for (w = 1; w <= 8192; w++) {
        for (q = 1; q <= 100; q++) {
            for (p = 1; p <= 2; p++) {
                d = snapcache_cache_variant(w, q, p);
                bad += d == SNAPCACHE_VARIANT_ORIGINAL
                       || SNAPCACHE_VARIANT_WIDTH(d) != w
                       || SNAPCACHE_VARIANT_QUALITY(d) != q
                       || SNAPCACHE_VARIANT_PIPELINE(d) != p;
            }
        }
    }

    is_int(bad, 0, "1.6M descriptors: never 0, each decodes to its own "
           "width, quality and pipeline (so no two are equal)");

    thumb = snapcache_cache_variant(320, 50, 1);
    sd = snapcache_cache_variant(640, 65, 1);
    thumb2 = snapcache_cache_variant(320, 50, 2);
    thumb_q = snapcache_cache_variant(320, 51, 1);

    store_new(4 * MB);
    cache = store_open();
    ident_of(cache, &oa, &ia);
    ident_of(cache, &ob, &ib);

    /* keys of random distinct (snapshot, descriptor, format) differ */
    bad = 0;

    for (i = 0; i < 100000; i++) {
        uint32_t  da, db;
        unsigned  fa, fb;

        da = snapcache_cache_variant(1 + rnd() % 8192, 1 + rnd() % 100,
                                     1 + rnd() % 3);
        db = rnd() % 2 ? da : snapcache_cache_variant(1 + rnd() % 8192,
                                                      1 + rnd() % 100,
                                                      1 + rnd() % 3);
        fa = (unsigned) (rnd() % 5);
        fb = (unsigned) (rnd() % 5);

        snapcache_cache_key(&ia, da, fa, &ka);
        snapcache_cache_key(rnd() % 2 ? &ia : &ib, db, fb, &kb);

        if (ka.len == kb.len && memcmp(ka.data, kb.data, ka.len) == 0
            && (da != db || fa != fb || kb.len != ia.prefix_len + 5))
        {
            bad++;
        }
    }

    is_int(bad, 0, "two different descriptors never share a key");

    /* a changed ladder: the thumb stored, then sd and a new pipeline read */
    body_make(body, sizeof(body), &oa, thumb, SNAPCACHE_FORMAT_JPEG, 1);
    is_int(put_one(cache, &ia, thumb, SNAPCACHE_FORMAT_JPEG, body,
                   sizeof(body), NOW, LATER),
           SNAPCACHE_CACHE_OK, "put the 320/q50 rung");
    is_int(get_one(cache, &ia, sd, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "the 640/q65 rung misses");
    is_int(get_one(cache, &ia, thumb2, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "the same rung of pipeline 2 misses");
    is_int(get_one(cache, &ia, thumb_q, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "320/q51 misses");
    rc = get_one(cache, &ia, thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.variant == thumb
       && body_check(rec.body, rec.body_len, &oa, thumb,
                     SNAPCACHE_FORMAT_JPEG),
       "320/q50 itself hits, and its record names its descriptor");
    free(rec.body);
    snapcache_cache_close(cache);

    /* descriptor A's record planted under the key of descriptor B */
    item_fill(&it, &ia, thumb, SNAPCACHE_FORMAT_JPEG, body, sizeof(body),
              LATER);
    bad = 0;

    for (i = 0; i < 3; i++) {
        d = i == 0 ? sd : i == 1 ? thumb2 : thumb_q;
        snapcache_cache_key(&ia, d, SNAPCACHE_FORMAT_JPEG, &key);

        if (raw_plant(&key, &it) != 0) {
            bad++;
            continue;
        }

        cache = store_open();
        rc = get_one(cache, &ia, d, SNAPCACHE_FORMAT_JPEG, NOW,
                     SNAPCACHE_GET_STALE, &rec);
        free(rec.body);
        snapcache_cache_close(cache);

        if (rc != SNAPCACHE_CACHE_CORRUPT || raw_has(&key) != 0) {
            diag("320/q50 under %08x: %s", (unsigned) d,
                 snapcache_cache_strerror(rc));
            bad++;
        }
    }

    is_int(bad, 0, "320/q50's record under the keys of 640/q65, of "
           "pipeline 2 and of q51: refused (CORRUPT) and deleted");

    /* a put whose record could never be read back under its key */
    cache = store_open();
    item_fill(&it, &ia, thumb, SNAPCACHE_FORMAT_JPEG, body, 100, LATER);
    it.variant = sd;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_ERROR, "put refuses a record of another "
           "variant than its key");
    item_fill(&it, &ia, thumb, SNAPCACHE_FORMAT_JPEG, body, 100, LATER);
    it.format = SNAPCACHE_FORMAT_WEBP;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_ERROR, "and one of another format");
    snapcache_cache_close(cache);
}


/* ------------------------------------------------------- negative */

static void
test_absent(void)
{
    int                  rc;
    size_t               len;
    uint64_t             count;
    uint32_t             thumb;
    unsigned char        body[3000], enc[SNAPCACHE_RECORD_HEADER_LEN + 64];
    snapcache_key_t      key;
    snapcache_put_t      it, items[2];
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec, hdr;
    owner_t              o = { "acct", "cam", "made-up-7" };

    thumb = snapcache_cache_variant(320, 50, 1);

    store_new(4 * MB);
    cache = store_open();
    ident_of(cache, &o, &id);

    item_fill(&it, &id, SNAPCACHE_VARIANT_ORIGINAL, SNAPCACHE_FORMAT_ANY,
              NULL, 0, NOW + 30);
    it.format = SNAPCACHE_FORMAT_ABSENT;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_OK, "put a negative record under the "
           "original's key");

    rc = get_one(cache, &id, SNAPCACHE_VARIANT_ORIGINAL,
                 SNAPCACHE_FORMAT_ANY, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.format == SNAPCACHE_FORMAT_ABSENT
       && rec.body_len == 0 && rec.variant == SNAPCACHE_VARIANT_ORIGINAL
       && rec.expires == NOW + 30
       && memcmp(rec.digest, id.digest, SNAPCACHE_DIGEST_LEN) == 0,
       "get: a HIT, format ABSENT, body_len 0, the owner's digest");
    free(rec.body);

    is_int(get_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "a rung of the snapshot still misses");
    is_int(get_one(cache, &id, SNAPCACHE_VARIANT_ORIGINAL,
                   SNAPCACHE_FORMAT_ANY, NOW + 30, 0, &rec),
           SNAPCACHE_CACHE_EXPIRED, "it expires like any record");
    ok(strcmp(snapcache_format_name(SNAPCACHE_FORMAT_ABSENT), "absent") == 0
       && snapcache_format_mime(SNAPCACHE_FORMAT_ABSENT) == NULL,
       "named \"absent\", with no Content-Type");

    /* what a negative record cannot be */
    it.body = body;
    it.body_len = 10;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_ERROR, "put refuses one with a body");
    is_int(snapcache_record_encode(&it, NOW, enc, sizeof(enc)), 0,
           "encode refuses it too");

    item_fill(&it, &id, thumb, SNAPCACHE_FORMAT_ABSENT, NULL, 0, LATER);
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_ERROR, "put refuses one of a rung's variant");

    item_fill(&it, &id, thumb, SNAPCACHE_FORMAT_JPEG, NULL, 0, LATER);
    it.format = SNAPCACHE_FORMAT_ABSENT;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_ERROR, "put refuses one under a rung's key");

    /* a header that says ABSENT over a body does not decode */
    body_make(body, 64, &o, 0, SNAPCACHE_FORMAT_PNG, 1);
    item_fill(&it, &id, SNAPCACHE_VARIANT_ORIGINAL, SNAPCACHE_FORMAT_ANY,
              body, 64, LATER);
    it.format = SNAPCACHE_FORMAT_PNG;
    len = snapcache_record_encode(&it, NOW, enc, sizeof(enc));
    enc[28] = SNAPCACHE_FORMAT_ABSENT;
    enc[80] = (unsigned char) snapcache_cache_checksum(enc, 80);
    enc[81] = (unsigned char) (snapcache_cache_checksum(enc, 80) >> 8);
    enc[82] = (unsigned char) (snapcache_cache_checksum(enc, 80) >> 16);
    enc[83] = (unsigned char) (snapcache_cache_checksum(enc, 80) >> 24);
    is_int(snapcache_record_decode(enc, len, &hdr, NULL),
           SNAPCACHE_CACHE_CORRUPT, "a checksummed ABSENT header over a "
           "body: CORRUPT");

    /* a kept original replaces it, and it replaces the original */
    body_make(body, sizeof(body), &o, 0, SNAPCACHE_FORMAT_ANY, 2);
    item_fill(&it, &id, SNAPCACHE_VARIANT_ORIGINAL, SNAPCACHE_FORMAT_ANY,
              body, sizeof(body), LATER);
    it.format = SNAPCACHE_FORMAT_PNG;
    is_int(snapcache_cache_put_batch(cache, &it, 1, NOW, NULL, NULL),
           SNAPCACHE_CACHE_OK, "put a kept original of the snapshot");
    rc = get_one(cache, &id, SNAPCACHE_VARIANT_ORIGINAL,
                 SNAPCACHE_FORMAT_ANY, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.format == SNAPCACHE_FORMAT_PNG
       && rec.body_len == sizeof(body), "the original replaced it");
    free(rec.body);

    item_fill(&items[0], &id, SNAPCACHE_VARIANT_ORIGINAL,
              SNAPCACHE_FORMAT_ANY, NULL, 0, LATER);
    items[0].format = SNAPCACHE_FORMAT_ABSENT;
    item_fill(&items[1], &id, thumb, SNAPCACHE_FORMAT_JPEG, body, 100,
              LATER);
    is_int(snapcache_cache_put_batch(cache, items, 2, NOW, NULL, NULL),
           SNAPCACHE_CACHE_OK, "a negative record (and a rung) in a batch");
    rc = get_one(cache, &id, SNAPCACHE_VARIANT_ORIGINAL,
                 SNAPCACHE_FORMAT_ANY, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.format == SNAPCACHE_FORMAT_ABSENT
       && rec.body_len == 0, "and it replaced the original");
    free(rec.body);

    is_int(snapcache_cache_purge(cache, o.account, o.device, o.snapshot,
                                 &count),
           SNAPCACHE_CACHE_OK, "purge the snapshot");
    is_int(count, 2, "the negative record and the rung are purged");
    is_int(get_one(cache, &id, SNAPCACHE_VARIANT_ORIGINAL,
                   SNAPCACHE_FORMAT_ANY, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "then a miss");
    snapcache_cache_close(cache);

    /* a negative record planted under a rung's key */
    item_fill(&it, &id, SNAPCACHE_VARIANT_ORIGINAL, SNAPCACHE_FORMAT_ANY,
              NULL, 0, LATER);
    it.format = SNAPCACHE_FORMAT_ABSENT;
    snapcache_cache_key(&id, thumb, SNAPCACHE_FORMAT_JPEG, &key);
    is_int(raw_plant(&key, &it), 0, "planted one under the thumb's key");
    cache = store_open();
    is_int(get_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_CORRUPT, "get there: CORRUPT, never a hit");
    snapcache_cache_close(cache);
}


/* ------------------------------------------------------- old layout */

static void
put_be64(unsigned char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char) (v >> (56 - 8 * i));
    }
}


static void
put_le(unsigned char *p, uint64_t v, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


/*
 * Writes a record of the layout before variants were descriptors: a
 * one-byte variant and format in the key and an 80-byte header, with
 * its two index entries, as that code did.  key_new puts it under a key
 * of today's layout instead (and no index entry).
 */
static int
plant_v1(const snapcache_ident_t *id, const owner_t *o, int64_t created,
    const snapcache_key_t *key_new)
{
    int             rc;
    raw_t           raw;
    MDB_val         k, v, ik, empty;
    unsigned char   kbuf[SNAPCACHE_CACHE_KEY_MAX], ibuf[8 + sizeof(kbuf)];
    unsigned char   rec[80 + 500];

    body_make(rec + 80, 500, o, 1, SNAPCACHE_FORMAT_JPEG, 9);

    memset(rec, 0, 80);
    memcpy(rec, "SNP1", 4);
    put_le(rec + 4, 1, 2);
    put_le(rec + 6, 80, 2);
    put_le(rec + 8, (uint64_t) created, 8);
    put_le(rec + 16, (uint64_t) LATER, 8);
    rec[24] = 1;
    rec[25] = SNAPCACHE_FORMAT_JPEG;
    put_le(rec + 28, 320, 4);
    put_le(rec + 32, 180, 4);
    put_le(rec + 36, 500, 4);
    put_le(rec + 40, snapcache_cache_checksum(rec + 80, 500), 4);
    memcpy(rec + 44, id->digest, SNAPCACHE_DIGEST_LEN);
    put_le(rec + 76, snapcache_cache_checksum(rec, 76), 4);

    if (key_new) {
        memcpy(kbuf, key_new->data, key_new->len);
        k.mv_size = key_new->len;

    } else {
        memcpy(kbuf, id->prefix, id->prefix_len);
        kbuf[id->prefix_len] = 1;
        kbuf[id->prefix_len + 1] = SNAPCACHE_FORMAT_JPEG;
        k.mv_size = id->prefix_len + 2;
    }

    k.mv_data = kbuf;
    v.mv_data = rec;
    v.mv_size = sizeof(rec);
    empty.mv_data = "";
    empty.mv_size = 0;
    memcpy(ibuf + 8, kbuf, k.mv_size);
    ik.mv_data = ibuf;
    ik.mv_size = 8 + k.mv_size;

    if (raw_begin(&raw, 0) != 0) {
        return -1;
    }

    rc = mdb_put(raw.txn, raw.records, &k, &v, 0);

    if (rc == 0 && key_new == NULL) {
        put_be64(ibuf, (uint64_t) created);
        rc = mdb_put(raw.txn, raw.by_age, &ik, &empty, 0);
        put_be64(ibuf, (uint64_t) LATER);
        rc = rc ? rc : mdb_put(raw.txn, raw.by_exp, &ik, &empty, 0);
    }

    if (rc != 0) {
        mdb_txn_abort(raw.txn);
        mdb_env_close(raw.env);
        return rc;
    }

    return raw_end(&raw);
}


typedef struct {
    uint64_t  ok;
    uint64_t  outdated;
    uint64_t  other;
    uint64_t  v1_fields;
} layout_t;


static int
layout_visit(void *ctx, const unsigned char *key, size_t key_len,
    const snapcache_record_t *hdr, int check)
{
    layout_t  *l = ctx;

    if (check == SNAPCACHE_CACHE_OK) {
        l->ok++;

    } else if (check == SNAPCACHE_CACHE_OUTDATED) {
        l->outdated++;
        l->v1_fields += hdr->variant == 1
                        && hdr->format == SNAPCACHE_FORMAT_JPEG
                        && hdr->width == 320 && hdr->body_len == 500;

    } else {
        l->other++;
    }

    return 0;
}


static void
test_outdated(void)
{
    int                  i, rc, bad;
    char                 snaps[40][16];
    uint32_t             thumb;
    uint64_t             count, records;
    layout_t             l;
    owner_t              ox[20], oy[20], o;
    unsigned char       *body;
    snapcache_key_t      key;
    snapcache_ident_t    idx[20], idy[20], id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_stats_t  st;

    thumb = snapcache_cache_variant(320, 50, 1);
    body = malloc(30 * 1024);

    store_new(8 * MB);
    cache = store_open();

    for (i = 0; i < 20; i++) {
        snprintf(snaps[i], sizeof(snaps[i]), "s%d", i);
        snprintf(snaps[20 + i], sizeof(snaps[i]), "t%d", i);
        ox[i].account = "x";
        ox[i].device = "cam";
        ox[i].snapshot = snaps[i];
        oy[i].account = "y";
        oy[i].device = "cam";
        oy[i].snapshot = snaps[20 + i];
        ident_of(cache, &ox[i], &idx[i]);
        ident_of(cache, &oy[i], &idy[i]);
        body_make(body, 1000, &ox[i], thumb, SNAPCACHE_FORMAT_JPEG, 1);
        put_one(cache, &idx[i], thumb, SNAPCACHE_FORMAT_JPEG, body, 1000,
                NOW, LATER);
    }

    snapcache_cache_close(cache);

    /* the same store, written to by the code before the layout changed */
    bad = 0;

    for (i = 0; i < 20; i++) {
        bad += plant_v1(&idy[i], &oy[i], NOW - 1000, NULL) != 0;
    }

    for (i = 0; i < 5; i++) {
        bad += plant_v1(&idx[i], &ox[i], NOW - 1000, NULL) != 0;
    }

    is_int(bad, 0, "planted 25 records of the older layout");

    cache = store_open();

    rc = get_one(cache, &idx[0], thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &ox[0], thumb,
                     SNAPCACHE_FORMAT_JPEG),
       "today's record next to an outdated one of its snapshot: a hit");
    free(rec.body);
    is_int(get_one(cache, &idy[0], 1, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "an outdated record is never looked up");

    memset(&l, 0, sizeof(l));
    rc = snapcache_cache_iterate(cache, NULL, 0, NOW, layout_visit, &l);
    ok(rc == SNAPCACHE_CACHE_OK && l.ok == 20 && l.outdated == 25
       && l.other == 0, "iterate: 20 ok, 25 OUTDATED (%llu, %llu, %llu)",
       (unsigned long long) l.ok, (unsigned long long) l.outdated,
       (unsigned long long) l.other);
    is_int(l.v1_fields, 25, "with their old headers decoded");
    ok(snapcache_cache_verify(cache, &records) == SNAPCACHE_CACHE_OK
       && records == 45, "verify: a sound file of 45 records");

    is_int(snapcache_cache_purge(cache, "x", "cam", NULL, &count),
           SNAPCACHE_CACHE_OK, "purge device x/cam");
    is_int(count, 25, "its 20 records and 5 outdated ones");
    is_int(snapcache_cache_purge(cache, "y", "cam", "t3", &count),
           SNAPCACHE_CACHE_OK, "purge snapshot y/cam/t3");
    is_int(count, 1, "its outdated record");
    snapcache_cache_close(cache);

    /* an old-layout value under a key of today's layout */
    snapcache_cache_key(&idy[1], 1, SNAPCACHE_FORMAT_JPEG, &key);
    is_int(plant_v1(&idy[1], &oy[1], NOW, &key), 0,
           "planted an outdated value under today's key");
    cache = store_open();
    is_int(get_one(cache, &idy[1], 1, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_CORRUPT, "get: CORRUPT, not served");
    is_int(get_one(cache, &idy[1], 1, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "and deleted");

    /* the map fills: the outdated records are the oldest, and go first */
    o.account = "z";
    o.device = "cam";

    for (i = 0; i < 400; i++) {
        snprintf(snaps[0], sizeof(snaps[0]), "u%d", i);
        o.snapshot = snaps[0];
        ident_of(cache, &o, &id);
        body_make(body, 30 * 1024, &o, thumb, SNAPCACHE_FORMAT_JPEG, 2);
        rc = put_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, body,
                     30 * 1024, NOW + 1 + i, LATER);
        bad += rc != SNAPCACHE_CACHE_OK;
    }

    snapcache_cache_stats(cache, &st);
    is_int(bad, 0, "400 puts of 30 KB into the 8 MB map: all stored");
    ok(st.evictions > 0, "with evictions (%llu)",
       (unsigned long long) st.evictions);

    memset(&l, 0, sizeof(l));
    rc = snapcache_cache_iterate(cache, NULL, 0, NOW, layout_visit, &l);
    ok(rc == SNAPCACHE_CACHE_OK && l.outdated == 0 && l.other == 0
       && l.ok == st.entries, "the outdated records were evicted first, "
       "every record left verifies (%llu)", (unsigned long long) l.ok);
    ok(snapcache_cache_verify(cache, &records) == SNAPCACHE_CACHE_OK,
       "and the file walks whole");

    snapcache_cache_close(cache);
    free(body);
}


/* ------------------------------------------------------- resize */

static void
test_resize(void)
{
    int                  i, rc, bad;
    char                 snap[32];
    size_t               len;
    uint32_t             thumb;
    uint64_t             records;
    owner_t              o;
    count_t              c;
    unsigned char       *body;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_stats_t  st;

    thumb = snapcache_cache_variant(640, 65, 1);
    body = malloc(300 * 1024);
    o.account = "acct";
    o.device = "cam";
    o.snapshot = snap;

    /* 75 snapshots, an original of 200-300 KB and a rung each */
    store_new(256 * MB);
    cache = store_open();
    bad = 0;

    for (i = 0; i < 75; i++) {
        snapcache_put_t  items[2];

        snprintf(snap, sizeof(snap), "s%d", i);
        ident_of(cache, &o, &id);
        len = 200 * 1024 + (size_t) (rnd() % (100 * 1024));
        body_make(body, len, &o, 0, SNAPCACHE_FORMAT_ANY, 1);
        item_fill(&items[0], &id, SNAPCACHE_VARIANT_ORIGINAL,
                  SNAPCACHE_FORMAT_ANY, body, len, LATER);
        items[0].format = SNAPCACHE_FORMAT_JPEG;
        item_fill(&items[1], &id, thumb, SNAPCACHE_FORMAT_JPEG, body,
                  len / 8, LATER);
        bad += snapcache_cache_put_batch(cache, items, 2, NOW + i, NULL,
                                         NULL)
               != SNAPCACHE_CACHE_OK;
    }

    snapcache_cache_stats(cache, &st);
    is_int(bad, 0, "75 snapshots stored at size=256m");
    diag("at 256m: %llu entries, %llu of %llu pages",
         (unsigned long long) st.entries, (unsigned long long) st.used_pages,
         (unsigned long long) st.total_pages);
    snapcache_cache_close(cache);

    /* the size lowered to 4m: the file keeps its pages, the budget not */
    store_map = 4 * MB;
    cache = store_open();
    ok(cache != NULL, "reopened at size=4m");
    if (cache == NULL) {
        free(body);
        return;
    }

    snapcache_cache_stats(cache, &st);
    is_int(st.total_pages, 4 * MB / st.page_size,
           "usage is reported against the new size");
    ok(st.used_pages > st.total_pages, "and is over it (%llu of %llu)",
       (unsigned long long) st.used_pages,
       (unsigned long long) st.total_pages);

    snprintf(snap, sizeof(snap), "new0");
    ident_of(cache, &o, &id);
    body_make(body, 60 * 1024, &o, thumb, SNAPCACHE_FORMAT_JPEG, 2);
    is_int(put_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, body, 60 * 1024,
                   NOW + 100, LATER),
           SNAPCACHE_CACHE_OK, "the next put is stored");

    snapcache_cache_stats(cache, &st);
    ok(st.evictions > 0 && st.used_pages <= st.total_pages * 90 / 100,
       "after evicting down to the new size: %llu evicted, %llu of %llu "
       "pages", (unsigned long long) st.evictions,
       (unsigned long long) st.used_pages,
       (unsigned long long) st.total_pages);

    rc = get_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, NOW + 100, 0,
                 &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &o, thumb,
                     SNAPCACHE_FORMAT_JPEG), "and it hits");
    free(rec.body);

    /* fills go on being stored, within the new size */
    bad = 0;

    for (i = 1; i < 100; i++) {
        snprintf(snap, sizeof(snap), "new%d", i);
        ident_of(cache, &o, &id);
        body_make(body, 60 * 1024, &o, thumb, SNAPCACHE_FORMAT_JPEG, 3);
        rc = put_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, body,
                     60 * 1024, NOW + 100 + i, LATER);
        snapcache_cache_stats(cache, &st);
        bad += rc != SNAPCACHE_CACHE_OK
               || st.used_pages > st.total_pages * 90 / 100;
    }

    is_int(bad, 0, "99 more puts: each stored, usage under the high "
           "watermark of the new size after each");

    memset(&c, 0, sizeof(c));
    rc = snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &c);
    ok(rc == SNAPCACHE_CACHE_OK && c.bad == 0 && c.records == st.entries,
       "consistent: %llu records, every one verifies",
       (unsigned long long) c.records);
    is_int(snapcache_cache_verify(cache, &records), SNAPCACHE_CACHE_OK,
           "and the file walks whole");
    snapcache_cache_close(cache);

    cache = store_open();
    snapcache_cache_stats(cache, &st);
    ok(st.used_pages <= st.total_pages * 90 / 100,
       "reopened at 4m: still within it");
    snapcache_cache_close(cache);

    free(body);
}


/* ------------------------------------------------------- damage */

/*
 * Zeroes every B-tree branch page of data.mdb, found by walking the
 * file's pages: LMDB's page header has its flags at offset 10, branch
 * 0x01, overflow 0x04 (then the run's length at 12), meta 0x08.
 */
static int
zero_branch_pages(unsigned page_size)
{
    int             fd, n;
    char            path[512];
    off_t           at, size;
    uint32_t        run;
    unsigned char  *page;

    snprintf(path, sizeof(path), "%s/data.mdb", store_dir);

    fd = open(path, O_RDWR);
    page = malloc(page_size);
    if (fd == -1 || page == NULL) {
        return -1;
    }

    size = lseek(fd, 0, SEEK_END);
    n = 0;

    for (at = 2 * (off_t) page_size; at + page_size <= size;
         at += page_size)
    {
        if (pread(fd, page, page_size, at) != (ssize_t) page_size) {
            break;
        }

        if (page[10] & 0x04) {
            run = (uint32_t) page[12] | (uint32_t) page[13] << 8
                  | (uint32_t) page[14] << 16 | (uint32_t) page[15] << 24;
            at += (off_t) (run > 1 ? run - 1 : 0) * page_size;
            continue;
        }

        if ((page[10] & 0x09) == 0x01) {
            memset(page, 0, page_size);
            n += pwrite(fd, page, page_size, at) == (ssize_t) page_size;
        }
    }

    close(fd);
    free(page);

    return n;
}


static void
test_damaged(void)
{
    int                  i, n, bad, rc;
    char                 snap[32];
    uint32_t             thumb;
    uint64_t             count, records;
    owner_t              o;
    count_t              c;
    unsigned char        body[200];
    snapcache_put_t      items[50];
    snapcache_ident_t    ids[50];
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_conf_t   conf;
    snapcache_cache_stats_t  st;
    char                 err[512];

    thumb = snapcache_cache_variant(320, 50, 1);
    o.account = "d";
    o.device = "cam";
    o.snapshot = snap;

    store_new(16 * MB);
    cache = store_open();
    bad = 0;

    /* 400 small records: every tree is more than one page deep */
    for (n = 0; n < 8; n++) {
        for (i = 0; i < 50; i++) {
            snprintf(snap, sizeof(snap), "s%d", n * 50 + i);
            ident_of(cache, &o, &ids[i]);
            item_fill(&items[i], &ids[i], thumb, SNAPCACHE_FORMAT_JPEG,
                      body, sizeof(body), LATER);
        }

        memset(body, 'a' + n, sizeof(body));
        bad += snapcache_cache_put_batch(cache, items, 50, NOW, NULL, NULL)
               != SNAPCACHE_CACHE_OK;
    }

    snapcache_cache_stats(cache, &st);
    is_int(bad, 0, "400 records stored");
    snapcache_cache_close(cache);

    n = zero_branch_pages(st.page_size);
    ok(n >= 1, "zeroed the branch pages of data.mdb (%d)", n);

    cache = store_open();
    ok(cache != NULL, "the store still opens (its main tree is one leaf)");
    if (cache == NULL) {
        return;
    }

    snprintf(snap, sizeof(snap), "s7");
    ident_of(cache, &o, &ids[0]);
    is_int(get_one(cache, &ids[0], thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0,
                   &rec),
           SNAPCACHE_CACHE_DAMAGED, "get: DAMAGED, not a miss");

    memset(&c, 0, sizeof(c));
    rc = snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &c);
    is_int(rc, SNAPCACHE_CACHE_DAMAGED, "iterate reports DAMAGED (after %llu "
           "records), not a silent stop", (unsigned long long) c.records);
    is_int(snapcache_cache_verify(cache, &records), SNAPCACHE_CACHE_DAMAGED,
           "verify: DAMAGED");
    is_int(put_one(cache, &ids[0], thumb, SNAPCACHE_FORMAT_JPEG, body, 100,
                   NOW, LATER),
           SNAPCACHE_CACHE_DAMAGED, "put: DAMAGED");
    is_int(snapcache_cache_purge(cache, "d", "cam", NULL, &count),
           SNAPCACHE_CACHE_DAMAGED, "purge: DAMAGED");
    ok(strstr(snapcache_cache_strerror(SNAPCACHE_CACHE_DAMAGED),
              "the store file is damaged") != NULL,
       "strerror: \"the store file is damaged\"");

    /* and again, with each call, for a caller that retries */
    bad = 0;

    for (i = 0; i < 50; i++) {
        snprintf(snap, sizeof(snap), "s%d", i * 8);
        ident_of(cache, &o, &ids[0]);
        bad += get_one(cache, &ids[0], thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0,
                       &rec) != SNAPCACHE_CACHE_DAMAGED;
    }

    is_int(bad, 0, "50 more gets: each DAMAGED");
    snapcache_cache_close(cache);

    memset(&conf, 0, sizeof(conf));
    conf.path = store_dir;
    conf.read_only = 1;
    ok(snapcache_cache_open(&conf, &cache, err, sizeof(err))
       == SNAPCACHE_CACHE_OK, "a read-only open works");
    is_int(snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &c),
           SNAPCACHE_CACHE_DAMAGED, "and its walk says DAMAGED");
    snapcache_cache_close(cache);

    /* a file that is not LMDB at all */
    {
        int   fd;
        char  path[512];

        snprintf(path, sizeof(path), "%s/data.mdb", store_dir);
        fd = open(path, O_WRONLY);
        memset(body, 0x5a, sizeof(body));
        ok(fd != -1 && pwrite(fd, body, sizeof(body), 0) == sizeof(body)
           && pwrite(fd, body, sizeof(body), st.page_size) == sizeof(body),
           "overwrote both meta pages");
        close(fd);
    }

    is_int(snapcache_cache_open(&conf, &cache, err, sizeof(err)),
           SNAPCACHE_CACHE_DAMAGED, "open: DAMAGED (%s)", err);
    ok(strstr(err, "move the store directory away") != NULL,
       "and the message says what to do");
}


/* ------------------------------------------------------- read-only */

typedef struct {
    uint64_t         hash;
    off_t            size;
    struct timespec  mtime;
    int              exists;
} file_state_t;


static void
file_state(const char *name, file_state_t *fs)
{
    int             fd;
    char            path[512];
    ssize_t         n;
    struct stat     st;
    unsigned char   buf[65536];

    memset(fs, 0, sizeof(file_state_t));
    snprintf(path, sizeof(path), "%s/%s", store_dir, name);

    if (lstat(path, &st) != 0) {
        return;
    }

    fs->exists = 1;
    fs->size = st.st_size;
    fs->mtime = st.st_mtim;
    fs->hash = 0xcbf29ce484222325ULL;

    fd = open(path, O_RDONLY);

    while (fd != -1 && (n = read(fd, buf, sizeof(buf))) > 0) {
        fs->hash ^= fnv(buf, (size_t) n);
        fs->hash *= 0x100000001b3ULL;
    }

    if (fd != -1) {
        close(fd);
    }
}


static int
file_same(const file_state_t *a, const file_state_t *b)
{
    return a->exists == b->exists && a->hash == b->hash
           && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec
           && a->mtime.tv_nsec == b->mtime.tv_nsec;
}


static int
dir_entries(void)
{
    int             n;
    DIR            *d;
    struct dirent  *e;

    n = 0;
    d = opendir(store_dir);

    while (d && (e = readdir(d)) != NULL) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }

    if (d) {
        closedir(d);
    }

    return n;
}


/* Sets both files' times far in the past: any write would move them. */
static void
files_age(void)
{
    char             path[512];
    struct timespec  ts[2];

    ts[0].tv_sec = ts[1].tv_sec = 1000000000;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;

    snprintf(path, sizeof(path), "%s/data.mdb", store_dir);
    utimensat(AT_FDCWD, path, ts, 0);
    snprintf(path, sizeof(path), "%s/lock.mdb", store_dir);
    utimensat(AT_FDCWD, path, ts, 0);
}


static snapcache_cache_t *
store_open_ro(char *err, size_t err_size)
{
    snapcache_cache_t       *cache;
    snapcache_cache_conf_t   conf;

    memset(&conf, 0, sizeof(conf));
    conf.path = store_dir;
    conf.read_only = 1;

    if (snapcache_cache_open(&conf, &cache, err, err_size)
        != SNAPCACHE_CACHE_OK)
    {
        return NULL;
    }

    return cache;
}


static void
test_read_only(void)
{
    int                  i, rc, go[2], ready[2], status;
    char                 c, err[512], snap[32];
    pid_t                pid;
    uint32_t             thumb;
    uint64_t             records, count;
    owner_t              o;
    count_t              cnt;
    file_state_t         d0, l0, d1, l1;
    unsigned char        body[3000];
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    snapcache_cache_stats_t  st;

    thumb = snapcache_cache_variant(320, 50, 1);
    o.account = "ro";
    o.device = "cam";
    o.snapshot = snap;

    store_new(8 * MB);
    cache = store_open();

    for (i = 0; i < 50; i++) {
        snprintf(snap, sizeof(snap), "s%d", i);
        ident_of(cache, &o, &id);
        body_make(body, sizeof(body), &o, thumb, SNAPCACHE_FORMAT_JPEG, 1);
        put_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, body, sizeof(body),
                NOW, i < 10 ? NOW - 1 : LATER);
    }

    snapcache_cache_close(cache);

    files_age();
    file_state("data.mdb", &d0);
    file_state("lock.mdb", &l0);
    ok(d0.exists && l0.exists && dir_entries() == 2,
       "a store of 50 records: data.mdb and lock.mdb");

    cache = store_open_ro(err, sizeof(err));
    ok(cache != NULL, "open it read-only");
    if (cache == NULL) {
        diag("%s", err);
        return;
    }

    snprintf(snap, sizeof(snap), "s20");
    ident_of(cache, &o, &id);
    rc = get_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0, &rec);
    ok(rc == SNAPCACHE_CACHE_HIT
       && body_check(rec.body, rec.body_len, &o, thumb,
                     SNAPCACHE_FORMAT_JPEG), "get hits");
    free(rec.body);

    memset(&cnt, 0, sizeof(cnt));
    rc = snapcache_cache_iterate(cache, NULL, 0, NOW, count_visit, &cnt);
    ok(rc == SNAPCACHE_CACHE_OK && cnt.records == 50 && cnt.bad == 0,
       "iterate walks all 50");
    ok(snapcache_cache_verify(cache, &records) == SNAPCACHE_CACHE_OK
       && records == 50, "verify: sound");
    ok(snapcache_cache_stats(cache, &st) == SNAPCACHE_CACHE_OK
       && st.entries == 50 && st.total_pages * st.page_size == 8 * MB,
       "stats: 50 entries, the file's map size");
    is_int(put_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, body, 10, NOW,
                   LATER),
           SNAPCACHE_CACHE_ERROR, "put: refused");
    is_int(snapcache_cache_purge(cache, "ro", NULL, NULL, &count),
           SNAPCACHE_CACHE_ERROR, "purge: refused");
    is_int(snapcache_cache_purge_nosync(cache, "ro", NULL, NULL, &count),
           SNAPCACHE_CACHE_ERROR, "purge_nosync: refused");
    is_int(snapcache_cache_sync(cache), SNAPCACHE_CACHE_ERROR,
           "sync: refused");

    /* expired records, a record planted wrong: get would delete them */
    snprintf(snap, sizeof(snap), "s3");
    ident_of(cache, &o, &id);
    is_int(get_one(cache, &id, thumb, SNAPCACHE_FORMAT_WEBP, NOW, 0, &rec),
           SNAPCACHE_CACHE_MISS, "a miss");
    snapcache_cache_close(cache);

    file_state("data.mdb", &d1);
    file_state("lock.mdb", &l1);
    ok(file_same(&d0, &d1), "data.mdb: the same bytes, the same mtime");
    ok(file_same(&l0, &l1), "lock.mdb: the same bytes, the same mtime");
    is_int(dir_entries(), 2, "no file created");

    /* while another process has the store open for writing */
    if (pipe(go) != 0 || pipe(ready) != 0) {
        perror("pipe");
        exit(1);
    }

    fflush(stdout);

    pid = fork();
    if (pid == 0) {
        cache = store_open();
        c = cache ? 'o' : 'x';

        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) {
            _exit(1);
        }

        snapcache_cache_close(cache);
        _exit(0);
    }

    c = 0;
    ok(read(ready[0], &c, 1) == 1 && c == 'o',
       "another process has the store open");

    files_age();
    file_state("data.mdb", &d0);

    snprintf(snap, sizeof(snap), "s30");
    cache = store_open_ro(err, sizeof(err));

    if (cache) {
        ident_of(cache, &o, &id);
    }

    rc = cache ? get_one(cache, &id, thumb, SNAPCACHE_FORMAT_JPEG, NOW, 0,
                         &rec)
               : -1;
    ok(rc == SNAPCACHE_CACHE_HIT, "a read-only open next to it reads");
    if (rc != SNAPCACHE_CACHE_HIT) {
        diag("%s: %s", cache ? "get" : err,
             cache ? snapcache_cache_strerror(rc) : "");
    }

    free(rec.body);
    snapcache_cache_close(cache);

    file_state("data.mdb", &d1);
    ok(file_same(&d0, &d1), "and leaves data.mdb as it was");

    if (write(go[1], "q", 1) != 1) {
        perror("write");
    }

    waitpid(pid, &status, 0);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);

    /* an empty directory: no store, and none made */
    store_new(8 * MB);
    cache = store_open_ro(err, sizeof(err));
    ok(cache == NULL && strstr(err, "no store") != NULL,
       "read-only in an empty directory fails: %s", err);
    is_int(dir_entries(), 0, "and creates nothing there");
    snapcache_cache_close(cache);
}


/* Bit-at-a-time CRC32C (Castagnoli, reflected): the reference. */
static uint32_t
crc32c_bits(const unsigned char *p, size_t len)
{
    int       k;
    uint32_t  crc;

    crc = 0xffffffff;

    while (len--) {
        crc ^= *p++;

        for (k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78 : crc >> 1;
        }
    }

    return crc ^ 0xffffffff;
}


/*
 * The fast checksum, which joins three streams over blocks of several
 * sizes, and get's copy that sums while it copies, agree with the
 * reference at every length around each block boundary and at odd
 * alignments.
 */
static void
test_checksum_sizes(void)
{
    int                  rc;
    size_t               i, len, bad, bad_get, off;
    unsigned char       *buf;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    snapcache_record_t   rec;
    owner_t              o = { "acct-crc", "cam", "s" };

    static const size_t  edges[] = {
        256, 512, 1024, 2048, 4096, 8192
    };

    buf = malloc(200 * 1024);
    if (buf == NULL) {
        ok(0, "memory for the checksum test");
        return;
    }

    for (i = 0; i < 200 * 1024; i++) {
        buf[i] = (unsigned char) (i * 131 + (i >> 7));
    }

    bad = 0;

    for (len = 0; len < 4000; len++) {
        off = len % 7;
        if (snapcache_cache_checksum(buf + off, len)
            != crc32c_bits(buf + off, len))
        {
            bad++;
        }
    }

    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        for (len = 3 * edges[i] - 9; len <= 3 * edges[i] + 9; len++) {
            if (snapcache_cache_checksum(buf + 3, len)
                != crc32c_bits(buf + 3, len))
            {
                bad++;
            }
        }
    }

    for (len = 4000; len < 200 * 1024; len += 997) {
        if (snapcache_cache_checksum(buf, len) != crc32c_bits(buf, len)) {
            bad++;
        }
    }

    is_int(bad, 0, "CRC32C matches the bit-at-a-time reference at every "
           "length to 4000 and around each block size");

    store_new(16 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open a store for the copy check");
        free(buf);
        return;
    }

    ident_of(cache, &o, &id);
    bad_get = 0;

    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        len = 3 * edges[i] + 8 * (i + 1) + i;

        rc = put_one(cache, &id, 7, SNAPCACHE_FORMAT_JPEG, buf + i, len,
                     NOW, LATER);
        if (rc != SNAPCACHE_CACHE_OK) {
            bad_get++;
            continue;
        }

        memset(&rec, 0, sizeof(rec));
        rc = get_one(cache, &id, 7, SNAPCACHE_FORMAT_JPEG, NOW + 1, 0, &rec);
        if (rc != SNAPCACHE_CACHE_HIT || rec.body_len != len
            || memcmp(rec.body, buf + i, len) != 0
            || rec.checksum != crc32c_bits(buf + i, len))
        {
            bad_get++;
        }

        free(rec.body);
    }

    is_int(bad_get, 0, "get's fused copy and checksum are right around "
           "each block size");

    snapcache_cache_close(cache);
    free(buf);
}


/* fresh(): a header-only look, for what a fill still has to make. */
static void
test_fresh(void)
{
    int                  rc;
    snapcache_record_t   rec;
    snapcache_key_t      key;
    snapcache_ident_t    id, other;
    snapcache_cache_t   *cache;
    owner_t              o = { "acct-f", "cam", "s1" };
    owner_t              p = { "acct-g", "cam", "s1" };

    store_new(8 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open a store for fresh()");
        return;
    }

    ident_of(cache, &o, &id);
    ident_of(cache, &p, &other);
    snapcache_cache_key(&id, 7, SNAPCACHE_FORMAT_JPEG, &key);

    ok(!snapcache_cache_fresh(cache, &key, &id, NOW, 0), "fresh: nothing yet");

    put_one(cache, &id, 7, SNAPCACHE_FORMAT_JPEG, "abc", 3, NOW, LATER);

    ok(snapcache_cache_fresh(cache, &key, &id, NOW, 0), "fresh: a record");
    ok(!snapcache_cache_fresh(cache, &key, &other, NOW, SNAPCACHE_GET_LOOP),
       "fresh: not for another owner");
    ok(!snapcache_cache_fresh(cache, &key, &id, LATER, SNAPCACHE_GET_LOOP),
       "fresh: not once it expired");

    snapcache_cache_key(&id, 8, SNAPCACHE_FORMAT_JPEG, &key);
    ok(!snapcache_cache_fresh(cache, &key, &id, NOW, 0),
       "fresh: not another rung");

    /* the loop's reused read transaction sees every later commit */
    put_one(cache, &id, 8, SNAPCACHE_FORMAT_JPEG, "abcd", 4, NOW, LATER);
    ok(snapcache_cache_fresh(cache, &key, &id, NOW, SNAPCACHE_GET_LOOP),
       "a reused read transaction sees a record written after its last "
       "read");

    memset(&rec, 0, sizeof(rec));
    put_one(cache, &id, 8, SNAPCACHE_FORMAT_JPEG, "efghi", 5, NOW, LATER);
    snapcache_cache_key(&id, 8, SNAPCACHE_FORMAT_JPEG, &key);
    rc = snapcache_cache_get(cache, &key, &id, NOW, SNAPCACHE_GET_LOOP, &rec,
                             alloc_malloc, NULL);
    ok(rc == SNAPCACHE_CACHE_HIT && rec.body_len == 5
       && memcmp(rec.body, "efghi", 5) == 0,
       "and get through it reads the newest value");
    free(rec.body);

    /* closed with the loop's transaction reset: it goes with the store */
    snapcache_cache_close(cache);
}


/*
 * The tags and the identity digest are what docs/cache.md says, checked
 * against OpenSSL's one-shot HMAC() under the secret read from the raw
 * store: HMAC-SHA256(secret, 'A' | len | account) and so on.
 */
static void
test_tags_reference(void)
{
    int                  rc;
    MDB_dbi              meta;
    MDB_val              k, v;
    raw_t                raw;
    unsigned int         n;
    unsigned char        secret[64], mac[32], msg[200];
    size_t               slen, len;
    snapcache_ident_t    id;
    snapcache_cache_t   *cache;
    owner_t              o = { "acct-ref", "cam-9", "snap-x" };

    store_new(8 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open a store for the tag reference");
        return;
    }

    ident_of(cache, &o, &id);
    snapcache_cache_close(cache);

    slen = 0;
    rc = raw_begin(&raw, MDB_RDONLY);
    if (rc == 0) {
        rc = mdb_dbi_open(raw.txn, "meta", 0, &meta);
    }

    if (rc == 0) {
        k.mv_data = "secret";
        k.mv_size = 6;
        rc = mdb_get(raw.txn, meta, &k, &v);
    }

    if (rc == 0 && v.mv_size <= sizeof(secret)) {
        memcpy(secret, v.mv_data, v.mv_size);
        slen = v.mv_size;
    }

    mdb_txn_abort(raw.txn);
    mdb_env_close(raw.env);

    ok(slen > 0, "the store secret, read raw");

    msg[0] = 'A';
    msg[1] = (unsigned char) strlen(o.account);
    memcpy(msg + 2, o.account, strlen(o.account));
    len = 2 + strlen(o.account);
    HMAC(EVP_sha256(), secret, (int) slen, msg, len, mac, &n);
    ok(memcmp(mac, id.acct_tag, SNAPCACHE_TAG_LEN) == 0,
       "acct_tag = HMAC-SHA256(secret, 'A' | len | account)");

    msg[0] = 'D';
    msg[len] = (unsigned char) strlen(o.device);
    memcpy(msg + len + 1, o.device, strlen(o.device));
    len += 1 + strlen(o.device);
    HMAC(EVP_sha256(), secret, (int) slen, msg, len, mac, &n);
    ok(memcmp(mac, id.dev_tag, SNAPCACHE_TAG_LEN) == 0,
       "dev_tag = HMAC-SHA256(secret, 'D' | len | account | len | device)");

    msg[0] = 'I';
    msg[len] = (unsigned char) strlen(o.snapshot);
    memcpy(msg + len + 1, o.snapshot, strlen(o.snapshot));
    len += 1 + strlen(o.snapshot);
    HMAC(EVP_sha256(), secret, (int) slen, msg, len, mac, &n);
    ok(memcmp(mac, id.digest, SNAPCACHE_DIGEST_LEN) == 0,
       "digest = HMAC-SHA256(secret, 'I' | the three length-prefixed ids)");
}


#define TAG_OWNERS   32
#define TAG_THREADS  12


typedef struct {
    snapcache_cache_t        *cache;
    const snapcache_ident_t  *want;
    int                       bad;
} tag_job_t;


static void
tag_owner(int i, char *acct, char *dev, char *snap)
{
    sprintf(acct, "acct-%d", i % 5);
    sprintf(dev, "cam-%d", i);
    sprintf(snap, "snap-%d", i * 3);
}


static void *
tag_worker(void *arg)
{
    tag_job_t          *job = arg;
    int                 i, o;
    char                acct[32], dev[32], snap[32];
    snapcache_ident_t   id;

    for (i = 0; i < 5000; i++) {
        o = i % TAG_OWNERS;
        tag_owner(o, acct, dev, snap);

        if (snapcache_cache_ident(job->cache, acct, strlen(acct), dev,
                                  strlen(dev), snap, strlen(snap), &id)
            != SNAPCACHE_CACHE_OK
            || memcmp(id.prefix, job->want[o].prefix, id.prefix_len) != 0
            || memcmp(id.digest, job->want[o].digest, SNAPCACHE_DIGEST_LEN)
               != 0)
        {
            job->bad++;
        }
    }

    return NULL;
}


/*
 * The store's tags are computed by the event loop and the thread pool at
 * once, with one store secret: more threads than its HMAC keeps contexts
 * for each get the tags one thread alone gets.
 */
static void
test_tags_threads(void)
{
    int                 i, bad;
    char                acct[32], dev[32], snap[32];
    pthread_t           th[TAG_THREADS];
    tag_job_t           job[TAG_THREADS];
    snapcache_ident_t   want[TAG_OWNERS];
    snapcache_cache_t  *cache;

    store_new(8 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open a store for the threaded tags");
        return;
    }

    for (i = 0; i < TAG_OWNERS; i++) {
        tag_owner(i, acct, dev, snap);
        snapcache_cache_ident(cache, acct, strlen(acct), dev, strlen(dev),
                              snap, strlen(snap), &want[i]);
    }

    for (i = 0; i < TAG_THREADS; i++) {
        job[i].cache = cache;
        job[i].want = want;
        job[i].bad = 0;
        pthread_create(&th[i], NULL, tag_worker, &job[i]);
    }

    bad = 0;

    for (i = 0; i < TAG_THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += job[i].bad;
    }

    ok(bad == 0, "%d threads x 5000 identities with one store secret: all "
       "as one thread computes them (%d differ)", TAG_THREADS, bad);

    snapcache_cache_close(cache);
}


static int
ident_same(const snapcache_ident_t *a, const snapcache_ident_t *b)
{
    return memcmp(a->acct_tag, b->acct_tag, SNAPCACHE_TAG_LEN) == 0
           && memcmp(a->dev_tag, b->dev_tag, SNAPCACHE_TAG_LEN) == 0
           && memcmp(a->digest, b->digest, SNAPCACHE_DIGEST_LEN) == 0
           && a->prefix_len == b->prefix_len
           && memcmp(a->prefix, b->prefix, a->prefix_len) == 0;
}


/*
 * A thread keeps the identities it worked out last, so that a snapshot
 * polled over and over costs its three MACs once.  What it keeps is
 * found by the exact ids, and belongs to one opening of one store: a
 * store made again at the same path (a new secret, maybe the same
 * address) never gets another's tags, and ids that only differ in where
 * one ends and the next begins never share one.
 */
static void
test_ident_memo(void)
{
    int                 i, bad;
    char                acct[32], dev[32], snap[32];
    snapcache_ident_t   a, b, first[500], again;
    snapcache_cache_t  *cache;
    owner_t             o = { "acct-memo", "cam-1", "latest" };

    store_new(8 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open a store for the memo");
        return;
    }

    ident_of(cache, &o, &a);
    ident_of(cache, &o, &b);
    ok(ident_same(&a, &b), "an identity asked twice is the same");

    is_int(snapcache_cache_ident(cache, "ab", 2, "c", 1, "s", 1, &a),
           SNAPCACHE_CACHE_OK, "ident ab/c/s");
    is_int(snapcache_cache_ident(cache, "a", 1, "bc", 2, "s", 1, &b),
           SNAPCACHE_CACHE_OK, "ident a/bc/s");
    ok(memcmp(a.digest, b.digest, SNAPCACHE_DIGEST_LEN) != 0
       && memcmp(a.acct_tag, b.acct_tag, SNAPCACHE_TAG_LEN) != 0,
       "ids that split differently have their own identities");

    /* more owners than the memo holds: every answer stays right */
    for (i = 0; i < 500; i++) {
        tag_owner(i, acct, dev, snap);
        snapcache_cache_ident(cache, acct, strlen(acct), dev, strlen(dev),
                              snap, strlen(snap), &first[i]);
    }

    bad = 0;

    for (i = 499; i >= 0; i--) {
        tag_owner(i, acct, dev, snap);
        if (snapcache_cache_ident(cache, acct, strlen(acct), dev,
                                  strlen(dev), snap, strlen(snap), &again)
            != SNAPCACHE_CACHE_OK
            || !ident_same(&again, &first[i]))
        {
            bad++;
        }
    }

    ok(bad == 0, "500 owners asked again in reverse, each its own identity "
       "(%d differ)", bad);

    ident_of(cache, &o, &a);
    snapcache_cache_close(cache);

    /* a new store at the same path: a new secret, other tags */
    store_new(8 * MB);
    cache = store_open();
    if (cache == NULL) {
        ok(0, "open the second store for the memo");
        return;
    }

    ident_of(cache, &o, &b);
    ok(memcmp(a.acct_tag, b.acct_tag, SNAPCACHE_TAG_LEN) != 0
       && memcmp(a.digest, b.digest, SNAPCACHE_DIGEST_LEN) != 0,
       "a store made again never answers with the old store's identity");

    snapcache_cache_close(cache);
}


int
main(void)
{
    const char  *seed;

    seed = getenv("SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t) time(NULL);
    rng_state = rng_state ? rng_state : 1;
    diag("SEED=%llu", (unsigned long long) rng_state);

    test_round_trip();
    test_checksum_sizes();
    test_fresh();
    test_tags_reference();
    test_tags_threads();
    test_ident_memo();
    test_keys();
    test_variants();
    test_foreign_and_corrupt();
    test_absent();
    test_outdated();
    test_expiry();
    test_purge();
    test_precommit();
    test_fill();
    test_resize();
    test_damaged();
    test_read_only();
    test_processes();
    test_killed_writer();

    store_remove();

    return done_testing();
}
