/*
 * cache/: the LMDB store.  Round trips, key separation, identity and
 * integrity checks on planted records, expiry, purge scopes, a map
 * filled three times over, precommit, readers and a writer killed by
 * SIGKILL.  Records planted or damaged "by hand" are written with LMDB
 * directly, with the store closed, as another process would.
 */

#define _GNU_SOURCE

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


static void
test_keys(void)
{
    int                 same, v, f;
    size_t              plen1, plen2;
    snapcache_key_t     k1, k2, kv[256], kf[256];
    snapcache_ident_t   a, b, c, d;
    snapcache_cache_t  *cache;
    unsigned char       p1[SNAPCACHE_CACHE_KEY_MAX];
    unsigned char       p2[SNAPCACHE_CACHE_KEY_MAX];
    owner_t             o1 = { "ab", "c", "s" };
    owner_t             o2 = { "a", "bc", "s" };
    owner_t             o3 = { "ab", "cs", "" };
    owner_t             o4 = { "abc", "s", "x" };

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

    /* every variant byte, every format byte: 256 distinct keys each */
    same = 0;

    for (v = 0; v < 256; v++) {
        snapcache_cache_key(&a, (unsigned) v, SNAPCACHE_FORMAT_JPEG, &kv[v]);
        snapcache_cache_key(&a, 1, (unsigned) v, &kf[v]);
    }

    for (v = 0; v < 256; v++) {
        for (f = v + 1; f < 256; f++) {
            same += kv[v].len == kv[f].len
                    && memcmp(kv[v].data, kv[f].data, kv[v].len) == 0;
            same += kf[v].len == kf[f].len
                    && memcmp(kf[v].data, kf[f].data, kf[v].len) == 0;
        }
    }

    is_int(same, 0, "all 256 variant and 256 format keys are distinct");

    /* and the store keeps them apart */
    {
        int              bad;
        unsigned char    body[64];
        snapcache_put_t  items[2 * 256];
        snapcache_record_t  rec;

        for (v = 0; v < 256; v++) {
            item_fill(&items[v], &a, (unsigned) v, SNAPCACHE_FORMAT_JPEG,
                      body, (size_t) v % 64, LATER);
            item_fill(&items[256 + v], &a, 1, (unsigned) v, body,
                      (size_t) (v + 7) % 64, LATER);
        }

        memset(body, 'x', sizeof(body));

        /* (1, JPEG) is in both lists: the second one wins */
        is_int(snapcache_cache_put_batch(cache, items, 512, NOW, NULL, NULL),
               SNAPCACHE_CACHE_OK, "put 511 distinct keys in one batch");

        bad = 0;

        for (v = 0; v < 256; v++) {
            if (get_one(cache, &a, (unsigned) v, SNAPCACHE_FORMAT_JPEG, NOW,
                        0, &rec) != SNAPCACHE_CACHE_HIT
                || rec.variant != (unsigned) v
                || rec.format != SNAPCACHE_FORMAT_JPEG
                || rec.body_len != (v == 1 ? (size_t) (SNAPCACHE_FORMAT_JPEG
                                                       + 7) % 64
                                           : (size_t) v % 64))
            {
                bad++;
            }

            free(rec.body);

            if (get_one(cache, &a, 1, (unsigned) v, NOW, 0, &rec)
                    != SNAPCACHE_CACHE_HIT
                || rec.variant != 1 || rec.format != (unsigned) v
                || rec.body_len != (size_t) (v + 7) % 64)
            {
                bad++;
            }

            free(rec.body);
        }

        is_int(bad, 0, "each variant and format reads back its own record");
        is_int(get_one(cache, &b, 1, 1, NOW, 0, &rec), SNAPCACHE_CACHE_MISS,
               "a/bc/s sees nothing of ab/c/s");
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


int
main(void)
{
    const char  *seed;

    seed = getenv("SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t) time(NULL);
    rng_state = rng_state ? rng_state : 1;
    diag("SEED=%llu", (unsigned long long) rng_state);

    test_round_trip();
    test_keys();
    test_foreign_and_corrupt();
    test_expiry();
    test_purge();
    test_precommit();
    test_fill();
    test_processes();
    test_killed_writer();

    store_remove();

    return done_testing();
}
