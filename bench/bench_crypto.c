
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * The crypto of one hit: a signature check (snapcache_sign_verify on a
 * parsed URL) and snapcache_cache_ident (the account tag, the device tag
 * and the identity digest, three HMAC-SHA256 under the store secret), in
 * ns and in OpenSSL allocations a hit, against the floor measured in the
 * same run: the same work on a pre-keyed HMAC made of two SHA-256 states
 * copied by assignment, as sign/ and cache/ did before EVP_MAC.  The
 * floor must get the library's verdict and tags, or the bench stops.
 *
 * Then one HMAC of a message as long as a signed one, each way EVP_MAC
 * offers, against the same floor: hmac/snapcache_hmac.h (a context from
 * the key's pool, restarted with EVP_MAC_init(ctx, NULL, 0, NULL)), a
 * kept context restarted so without the pool, a copy of the keyed
 * context a MAC (EVP_MAC_CTX_dup), and the one-shot HMAC().
 *
 * A loop of hits keeps OpenSSL's code and data in the caches, which a
 * server does not: between two hits it runs the kernel's network stack
 * and the rest of nginx.  So the hits are timed cold too, one at a time
 * after COLD_BYTES are copied (L1 and L2 evicted), less the cost of the
 * timing itself.
 *
 * Each figure is the best of ROUNDS short rounds, the rounds of all the
 * ways interleaved: on a machine that others load too, some rounds of
 * each run undisturbed, and no figure alone bears the load.
 *
 * usage: bench_crypto [iterations a round]          (default 50000)
 */

/* the floor is the former code, on the SHA256_* calls OpenSSL 3 keeps
   behind this switch; the libraries no longer use them */
#define OPENSSL_API_COMPAT  10101

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "cache/snapcache_cache.h"
#include "hmac/snapcache_hmac.h"
#include "sign/snapcache_sign.h"


#define NOW     1700000000
#define ROUNDS  31
#define COLD_BYTES       (2 << 20)
#define COLD_ITERATIONS  400
#define KEY_HEX "2b7e151628aed2a6abf7158809cf4f3c"                            \
                "2b7e151628aed2a6abf7158809cf4f3c"


typedef struct {
    SHA256_CTX  inner;           /* after key ^ ipad */
    SHA256_CTX  outer;           /* after key ^ opad */
} floor_key_t;


typedef struct {
    const char  *name;
    void       (*run)(void);
    double       best_ns;
    double       allocs;
} way_t;


static _Atomic long          allocs;

static snapcache_sign_key_t  sign_key;
static snapcache_url_t       url;
static snapcache_cache_t    *cache;
static floor_key_t           sign_floor, store_floor;
static snapcache_hmac_t     *pooled;
static EVP_MAC_CTX          *kept;
static char                  target[512];       /* url points into it */
static char                  msg[SNAPCACHE_MESSAGE_MAX];
static size_t                msg_len;
static unsigned char         sink[32];
static int                   failures;
static unsigned char        *cold_src, *cold_dst;


static void *
count_malloc(size_t n, const char *file, int line)
{
    allocs++;
    return malloc(n);
}


static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
    allocs += p == NULL;
    return realloc(p, n);
}


static void
count_free(void *p, const char *file, int line)
{
    free(p);
}


static void
floor_prekey(floor_key_t *k, const unsigned char *key, size_t len)
{
    size_t         i;
    unsigned char  ipad[64], opad[64];

    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));

    for (i = 0; i < len; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }

    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, ipad, sizeof(ipad));
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, opad, sizeof(opad));
}


static void
floor_hmac(const floor_key_t *k, const void *m, size_t len,
    unsigned char out[32])
{
    SHA256_CTX     c;
    unsigned char  inner[32];

    c = k->inner;
    SHA256_Update(&c, m, len);
    SHA256_Final(inner, &c);

    c = k->outer;
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(out, &c);

    OPENSSL_cleanse(&c, sizeof(c));
    OPENSSL_cleanse(inner, sizeof(inner));
}


/* snapcache_sign_verify's steps, one key, on the floor's HMAC */
static int
floor_verify(const snapcache_url_t *u)
{
    char             m[SNAPCACHE_MESSAGE_MAX];
    size_t           len, sig_len;
    unsigned char    sig[SNAPCACHE_SIG_B64_LEN], mac[32];
    snapcache_str_t  snapshot;

    if (u->kid.len != sign_key.kid_len
        || memcmp(u->kid.data, sign_key.kid, u->kid.len) != 0)
    {
        return SNAPCACHE_SIGN_KEY;
    }

    if (u->sig.len != SNAPCACHE_SIG_B64_LEN
        || snapcache_b64url_decode(u->sig.data, u->sig.len, sig, sizeof(sig),
                                   &sig_len) != 0
        || sig_len != SNAPCACHE_SIG_LEN)
    {
        return SNAPCACHE_SIGN_SIGNATURE;
    }

    snapshot = u->snapshot;
    if (u->device_scope) {
        snapshot.data = SNAPCACHE_DEVICE_GRANT;
        snapshot.len = 1;
    }

    len = snapcache_sign_message(m, sizeof(m), u->kid, u->exp, u->account,
                                 u->device, snapshot, u->max);
    floor_hmac(&sign_floor, m, len, mac);

    if (len == 0 || CRYPTO_memcmp(mac, sig, SNAPCACHE_SIG_LEN) != 0) {
        return SNAPCACHE_SIGN_SIGNATURE;
    }

    return NOW > u->exp_value ? SNAPCACHE_SIGN_EXPIRED : SNAPCACHE_SIGN_OK;
}


/* HMAC(secret, domain | len | id [| len | id ...]), as cache/ tags */
static void
floor_tag(char domain, const snapcache_str_t *ids, int n,
    unsigned char out[32])
{
    int            i;
    size_t         j, len;
    unsigned char  m[1 + 3 * (1 + SNAPCACHE_CACHE_ID_MAX)];

    m[0] = (unsigned char) domain;
    len = 1;

    for (i = 0; i < n; i++) {
        for (j = 0; j < ids[i].len; j++) {
            if (ids[i].data[j] == '\0' || ids[i].data[j] == '/') {
                failures++;
            }
        }

        m[len++] = (unsigned char) ids[i].len;
        memcpy(m + len, ids[i].data, ids[i].len);
        len += ids[i].len;
    }

    floor_hmac(&store_floor, m, len, out);
}


static void
floor_ident(const snapcache_url_t *u, snapcache_ident_t *id)
{
    unsigned char    mac[32];
    snapcache_str_t  ids[3];

    ids[0] = u->account;
    ids[1] = u->device;
    ids[2] = u->snapshot;

    floor_tag('A', ids, 1, mac);
    memcpy(id->acct_tag, mac, SNAPCACHE_TAG_LEN);
    floor_tag('D', ids, 2, mac);
    memcpy(id->dev_tag, mac, SNAPCACHE_TAG_LEN);
    OPENSSL_cleanse(mac, sizeof(mac));
    floor_tag('I', ids, 3, id->digest);

    memcpy(id->prefix, id->acct_tag, SNAPCACHE_TAG_LEN);
    memcpy(id->prefix + SNAPCACHE_TAG_LEN, id->dev_tag, SNAPCACHE_TAG_LEN);
    memcpy(id->prefix + 2 * SNAPCACHE_TAG_LEN, u->snapshot.data,
           u->snapshot.len);
    id->prefix[2 * SNAPCACHE_TAG_LEN + u->snapshot.len] = 0x00;
    id->prefix_len = 2 * SNAPCACHE_TAG_LEN + u->snapshot.len + 1;
}


static int
library_ident(snapcache_ident_t *id)
{
    return snapcache_cache_ident(cache, url.account.data, url.account.len,
                                 url.device.data, url.device.len,
                                 url.snapshot.data, url.snapshot.len, id);
}


static void
hit_library(void)
{
    snapcache_ident_t  id;

    failures += snapcache_sign_verify(&url, &sign_key, 1, NOW, 0)
                != SNAPCACHE_SIGN_OK;
    failures += library_ident(&id) != SNAPCACHE_CACHE_OK;
    sink[0] ^= id.digest[0];
}


static void
hit_floor(void)
{
    snapcache_ident_t  id;

    failures += floor_verify(&url) != SNAPCACHE_SIGN_OK;
    floor_ident(&url, &id);
    sink[0] ^= id.digest[0];
}


static void
mac_floor(void)
{
    floor_hmac(&sign_floor, msg, msg_len, sink);
}


static void
mac_pooled(void)
{
    failures += snapcache_hmac(pooled, msg, msg_len, sink) != 0;
}


static void
mac_kept(void)
{
    size_t  n;

    failures += EVP_MAC_init(kept, NULL, 0, NULL) != 1
                || EVP_MAC_update(kept, (unsigned char *) msg, msg_len) != 1
                || EVP_MAC_final(kept, sink, &n, sizeof(sink)) != 1;
}


static void
mac_dup(void)
{
    size_t        n;
    EVP_MAC_CTX  *ctx;

    ctx = EVP_MAC_CTX_dup(pooled->keyed);
    failures += ctx == NULL
                || EVP_MAC_update(ctx, (unsigned char *) msg, msg_len) != 1
                || EVP_MAC_final(ctx, sink, &n, sizeof(sink)) != 1;
    EVP_MAC_CTX_free(ctx);
}


static void
mac_oneshot(void)
{
    failures += HMAC(EVP_sha256(), sign_key.key, (int) sign_key.key_len,
                     (unsigned char *) msg, msg_len, sink, NULL) == NULL;
}


static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}


static void
nothing(void)
{
}


/* One run of a way, alone, after the caches were filled with other data. */
static double
cold_run(void (*run)(void), long i)
{
    double  t;

    memcpy(cold_dst, cold_src, COLD_BYTES);
    cold_src[i % COLD_BYTES]++;

    t = now_ns();
    run();

    return now_ns() - t;
}


static void
measure(way_t *ways, int n, long iterations, int cold)
{
    int     r, w;
    long    i, a;
    double  t, ns, timing;

    for (w = 0; w < n; w++) {
        ways[w].best_ns = 1e30;

        /* the pools fill and the caches warm before anything counts */
        for (i = 0; i < 1000; i++) {
            ways[w].run();
        }
    }

    /* what timing one run alone costs, taken off every cold figure */
    timing = 1e30;

    for (r = 0; cold && r < ROUNDS; r++) {
        for (ns = 0, i = 0; i < iterations; i++) {
            ns += cold_run(nothing, i);
        }

        timing = ns / (double) iterations < timing
                 ? ns / (double) iterations : timing;
    }

    for (r = 0; r < ROUNDS; r++) {
        for (w = 0; w < n; w++) {
            a = allocs;
            t = now_ns();

            for (ns = 0, i = 0; i < iterations; i++) {
                if (cold) {
                    ns += cold_run(ways[w].run, i);

                } else {
                    ways[w].run();
                }
            }

            ns = cold ? ns / (double) iterations - timing
                      : (now_ns() - t) / (double) iterations;

            if (ns < ways[w].best_ns) {
                ways[w].best_ns = ns;
            }

            ways[w].allocs = (double) (allocs - a) / (double) iterations;
        }
    }
}


static void
report(const char *title, way_t *ways, int n)
{
    int  w;

    printf("%s\n", title);

    for (w = 0; w < n; w++) {
        printf("  %-48s %7.0f ns  %5.1f allocs  x%.2f\n", ways[w].name,
               ways[w].best_ns, ways[w].allocs,
               ways[w].best_ns / ways[n - 1].best_ns);
    }
}


/* The store's secret, read raw with the store closed, for the floor. */
static int
store_secret(const char *dir, unsigned char *secret, size_t *len)
{
    int       rc;
    MDB_env  *env;
    MDB_txn  *txn;
    MDB_dbi   meta;
    MDB_val   k, v;

    rc = mdb_env_create(&env);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_env_set_maxdbs(env, 4);
    if (rc == 0) {
        rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
    }

    if (rc == 0) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    }

    if (rc == 0) {
        k.mv_data = "secret";
        k.mv_size = 6;

        rc = mdb_dbi_open(txn, "meta", 0, &meta);
        if (rc == 0) {
            rc = mdb_get(txn, meta, &k, &v);
        }

        if (rc == 0 && v.mv_size <= 64) {
            memcpy(secret, v.mv_data, v.mv_size);
            *len = v.mv_size;
        }

        mdb_txn_abort(txn);
    }

    mdb_env_close(env);

    return rc;
}


static snapcache_cache_t *
store_open(const char *dir)
{
    char                     err[256];
    snapcache_cache_t       *c;
    snapcache_cache_conf_t   conf;

    memset(&conf, 0, sizeof(conf));
    conf.path = dir;
    conf.map_size = 8 << 20;

    if (snapcache_cache_open(&conf, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_crypto: %s\n", err);
        exit(1);
    }

    return c;
}


static void
remove_store(const char *dir)
{
    char  path[256];

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}


static void
setup(char *dir)
{
    char               err[256];
    const char        *q;
    size_t             secret_len;
    unsigned char      secret[64], raw[32];
    snapcache_ident_t  want, got;

    if (mkdtemp(dir) == NULL) {
        perror("bench_crypto: mkdtemp");
        exit(1);
    }

    snapcache_cache_close(store_open(dir));

    secret_len = 0;
    if (store_secret(dir, secret, &secret_len) != 0 || secret_len == 0) {
        fprintf(stderr, "bench_crypto: cannot read the store secret\n");
        exit(1);
    }

    cache = store_open(dir);
    floor_prekey(&store_floor, secret, secret_len);
    OPENSSL_cleanse(secret, sizeof(secret));

    if (snapcache_sign_key_parse(&sign_key, "kid1", KEY_HEX,
                                 sizeof(KEY_HEX) - 1, err, sizeof(err))
        != 0
        || snapcache_hex_decode(KEY_HEX, sizeof(KEY_HEX) - 1, raw,
                                sizeof(raw)) != 0)
    {
        fprintf(stderr, "bench_crypto: %s\n", err);
        exit(1);
    }

    floor_prekey(&sign_floor, raw, sizeof(raw));

    /* a typical hit: camera ids of a few words, a rung cap */
    snapcache_sign_mint(&sign_key, "account-000123", "front-door-cam",
                        "20260114T101502Z", NOW + 300, "hd", target,
                        sizeof(target));
    q = strchr(target, '?');

    if (snapcache_url_parse(target, (size_t) (q - target), q + 1,
                            strlen(q + 1), &url) != SNAPCACHE_URL_OK)
    {
        fprintf(stderr, "bench_crypto: cannot parse %s\n", target);
        exit(1);
    }

    msg_len = snapcache_sign_message(msg, sizeof(msg), url.kid, url.exp,
                                     url.account, url.device, url.snapshot,
                                     url.max);

    pooled = snapcache_hmac_new(raw, sizeof(raw));
    kept = pooled ? EVP_MAC_CTX_dup(pooled->keyed) : NULL;
    OPENSSL_cleanse(raw, sizeof(raw));

    if (kept == NULL) {
        fprintf(stderr, "bench_crypto: cannot key EVP_MAC\n");
        exit(1);
    }

    /* the floor does the library's work, or its figure means nothing */
    floor_ident(&url, &want);

    if (floor_verify(&url) != SNAPCACHE_SIGN_OK
        || library_ident(&got) != SNAPCACHE_CACHE_OK
        || memcmp(want.prefix, got.prefix, got.prefix_len) != 0
        || memcmp(want.digest, got.digest, SNAPCACHE_DIGEST_LEN) != 0)
    {
        fprintf(stderr, "bench_crypto: the floor does not compute what the "
                "library does\n");
        exit(1);
    }
}


int
main(int argc, char **argv)
{
    long   iterations;
    char   dir[] = "/tmp/snapcache-bench-crypto-XXXXXX";
    way_t  hits[] = {
        { "snapcache_sign_verify + snapcache_cache_ident", hit_library, 0, 0 },
        { "floor: the same on SHA256_CTX copies", hit_floor, 0, 0 },
    };
    way_t  cold[] = {
        { "snapcache_sign_verify + snapcache_cache_ident", hit_library, 0, 0 },
        { "floor: the same on SHA256_CTX copies", hit_floor, 0, 0 },
    };
    way_t  macs[] = {
        { "hmac/snapcache_hmac.h: pooled context, re-init", mac_pooled,
          0, 0 },
        { "EVP_MAC: one kept context, re-init", mac_kept, 0, 0 },
        { "EVP_MAC: EVP_MAC_CTX_dup of the keyed context", mac_dup, 0, 0 },
        { "HMAC(): one-shot, keyed each time", mac_oneshot, 0, 0 },
        { "floor: SHA256_CTX copies", mac_floor, 0, 0 },
    };

    /* counts what OpenSSL allocates; refused once it has allocated */
    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free)) {
        fprintf(stderr, "bench_crypto: cannot count allocations\n");
        return 1;
    }

    iterations = argc > 1 ? atol(argv[1]) : 50000;
    if (iterations <= 0) {
        fprintf(stderr, "usage: bench_crypto [iterations a round]\n");
        return 2;
    }

    cold_src = calloc(1, COLD_BYTES);
    cold_dst = malloc(COLD_BYTES);
    if (cold_src == NULL || cold_dst == NULL) {
        fprintf(stderr, "bench_crypto: out of memory\n");
        return 1;
    }

    setup(dir);

    measure(hits, 2, iterations, 0);
    measure(cold, 2, COLD_ITERATIONS, 1);
    measure(macs, 5, iterations, 0);

    printf("best of %d rounds of %ld; allocs: OpenSSL's, a hit or a MAC;"
           " x: against the floor\n", ROUNDS, iterations);
    report("the crypto of a hit: a signature and three store tags", hits, 2);
    printf("  ratio %.3f (library / floor)\n",
           hits[0].best_ns / hits[1].best_ns);
    report("the same, each hit cold (2 MB copied before it)", cold, 2);
    printf("  ratio %.3f (library / floor), best of %d rounds of %d\n",
           cold[0].best_ns / cold[1].best_ns, ROUNDS, COLD_ITERATIONS);
    report("one HMAC-SHA256 of a signed message's length", macs, 5);
    printf("  (the message: %zu bytes)\n", msg_len);

    snapcache_cache_close(cache);
    snapcache_sign_key_free(&sign_key);
    snapcache_hmac_free(pooled);
    EVP_MAC_CTX_free(kept);
    remove_store(dir);
    free(cold_src);
    free(cold_dst);

    if (failures) {
        fprintf(stderr, "bench_crypto: %d operations failed\n", failures);
        return 1;
    }

    return 0;
}
