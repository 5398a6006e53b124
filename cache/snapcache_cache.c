/*
 * snapcache LMDB store.  See snapcache_cache.h and docs/cache.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cache/snapcache_cache.h"


#define SECRET_LEN         32
#define RECORD_MAGIC       "SNP1"
#define RECORD_VERSION     1
#define PURGE_CHUNK        1000
#define INDEX_KEY_MAX      (8 + SNAPCACHE_CACHE_KEY_MAX)


struct snapcache_cache_s {
    MDB_env        *env;
    MDB_dbi         meta;
    MDB_dbi         records;
    MDB_dbi         by_age;         /* created(8, BE) | key */
    MDB_dbi         by_exp;         /* expires(8, BE) | key */
    size_t          map_size;
    unsigned        page_size;
    unsigned        high_pct;
    unsigned        low_pct;
    uint64_t        evictions;
    uint64_t        deleted_bad;    /* foreign or corrupt, deleted by get */
    int64_t         last_sync;

    /* HMAC-SHA256 under the store secret, pads absorbed once */
    EVP_MD_CTX     *hmac_inner;
    EVP_MD_CTX     *hmac_outer;
};


/* ------------------------------------------------------------ CRC32C */

static uint32_t  crc32c_table[8][256];
static int       crc32c_ready;


static void
crc32c_init(void)
{
    int       k;
    uint32_t  i, c, j;

    for (i = 0; i < 256; i++) {
        c = i;

        for (j = 0; j < 8; j++) {
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78 : c >> 1;
        }

        crc32c_table[0][i] = c;
    }

    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            c = crc32c_table[k - 1][i];
            crc32c_table[k][i] = (c >> 8) ^ crc32c_table[0][c & 0xff];
        }
    }

    __atomic_store_n(&crc32c_ready, 1, __ATOMIC_RELEASE);
}


static uint32_t
crc32c_soft(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t  v;

    if (!__atomic_load_n(&crc32c_ready, __ATOMIC_ACQUIRE)) {
        crc32c_init();
    }

    while (len >= 8) {
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc32c_table[7][v & 0xff]
              ^ crc32c_table[6][(v >> 8) & 0xff]
              ^ crc32c_table[5][(v >> 16) & 0xff]
              ^ crc32c_table[4][(v >> 24) & 0xff]
              ^ crc32c_table[3][(v >> 32) & 0xff]
              ^ crc32c_table[2][(v >> 40) & 0xff]
              ^ crc32c_table[1][(v >> 48) & 0xff]
              ^ crc32c_table[0][v >> 56];
        p += 8;
        len -= 8;
    }

    while (len--) {
        crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
    }

    return crc;
}


#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#define CRC32C_HW      1
#define CRC32C_LONG    8192
#define CRC32C_SHORT   256

/*
 * The crc32 instruction has a latency of three cycles and a throughput
 * of one, so one stream runs at a third of its speed.  Three streams over
 * adjacent blocks run at full speed, and their registers are joined with
 * these tables, which move a register past a block of zeros.
 */
static uint32_t  crc32c_long[4][256];
static uint32_t  crc32c_short[4][256];
static int       crc32c_hw_ready;


__attribute__((target("sse4.2")))
static uint32_t
crc32c_zeros(uint32_t crc, size_t len)
{
    uint64_t  c;

    c = crc;

    while (len >= 8) {
        c = __builtin_ia32_crc32di(c, 0);
        len -= 8;
    }

    return (uint32_t) c;
}


__attribute__((target("sse4.2")))
static void
crc32c_zeros_table(uint32_t table[4][256], size_t len)
{
    int       k, b, bit;
    uint32_t  basis[32], v;

    for (bit = 0; bit < 32; bit++) {
        basis[bit] = crc32c_zeros((uint32_t) 1 << bit, len);
    }

    for (k = 0; k < 4; k++) {
        for (b = 0; b < 256; b++) {
            v = 0;

            for (bit = 0; bit < 8; bit++) {
                if (b & (1 << bit)) {
                    v ^= basis[8 * k + bit];
                }
            }

            table[k][b] = v;
        }
    }
}


static void
crc32c_hw_init(void)
{
    crc32c_zeros_table(crc32c_long, CRC32C_LONG);
    crc32c_zeros_table(crc32c_short, CRC32C_SHORT);

    __atomic_store_n(&crc32c_hw_ready, 1, __ATOMIC_RELEASE);
}


static uint32_t
crc32c_shift(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff]
           ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}


/*
 * One pass of three streams over 3 * block bytes.  With dst, each word
 * is stored where it was checksummed from the register, so the sum is
 * the copy's, read once from the map.
 */
__attribute__((target("sse4.2"), always_inline))
static inline uint32_t
crc32c_hw_blocks(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t block, uint32_t table[4][256])
{
    size_t    i;
    uint64_t  c0, c1, c2, v0, v1, v2;

    c0 = crc;
    c1 = 0;
    c2 = 0;

    for (i = 0; i < block; i += 8) {
        memcpy(&v0, src + i, 8);
        memcpy(&v1, src + block + i, 8);
        memcpy(&v2, src + 2 * block + i, 8);

        if (dst) {
            memcpy(dst + i, &v0, 8);
            memcpy(dst + block + i, &v1, 8);
            memcpy(dst + 2 * block + i, &v2, 8);
        }

        c0 = __builtin_ia32_crc32di(c0, v0);
        c1 = __builtin_ia32_crc32di(c1, v1);
        c2 = __builtin_ia32_crc32di(c2, v2);
    }

    crc = crc32c_shift(table, (uint32_t) c0) ^ (uint32_t) c1;

    return crc32c_shift(table, crc) ^ (uint32_t) c2;
}


__attribute__((target("sse4.2"), always_inline))
static inline uint32_t
crc32c_hw_run(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t len)
{
    uint64_t  v, c;

    if (!__atomic_load_n(&crc32c_hw_ready, __ATOMIC_ACQUIRE)) {
        crc32c_hw_init();
    }

    while (len >= 3 * CRC32C_LONG) {
        crc = crc32c_hw_blocks(crc, dst, src, CRC32C_LONG, crc32c_long);
        src += 3 * CRC32C_LONG;
        dst = dst ? dst + 3 * CRC32C_LONG : NULL;
        len -= 3 * CRC32C_LONG;
    }

    while (len >= 3 * CRC32C_SHORT) {
        crc = crc32c_hw_blocks(crc, dst, src, CRC32C_SHORT, crc32c_short);
        src += 3 * CRC32C_SHORT;
        dst = dst ? dst + 3 * CRC32C_SHORT : NULL;
        len -= 3 * CRC32C_SHORT;
    }

    c = crc;

    while (len >= 8) {
        memcpy(&v, src, 8);
        if (dst) {
            memcpy(dst, &v, 8);
            dst += 8;
        }

        c = __builtin_ia32_crc32di(c, v);
        src += 8;
        len -= 8;
    }

    crc = (uint32_t) c;

    while (len--) {
        if (dst) {
            *dst++ = *src;
        }

        crc = __builtin_ia32_crc32qi(crc, *src++);
    }

    return crc;
}


__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    return crc32c_hw_run(crc, NULL, p, len);
}


__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw_copy(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t len)
{
    return crc32c_hw_run(crc, dst, src, len);
}

#endif


/* CRC32C (Castagnoli), with SSE4.2 when the CPU has it. */
uint32_t
snapcache_cache_checksum(const void *data, size_t len)
{
    uint32_t  crc;

    crc = 0xffffffff;

#ifdef CRC32C_HW
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hw(crc, data, len) ^ 0xffffffff;
    }
#endif

    return crc32c_soft(crc, data, len) ^ 0xffffffff;
}


/*
 * Copies len bytes and returns the CRC32C of what was written, reading
 * the source once: get's copy out of the map and its check in one pass.
 */
static uint32_t
copy_checksum(void *dst, const void *src, size_t len)
{
#ifdef CRC32C_HW
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hw_copy(0xffffffff, dst, src, len) ^ 0xffffffff;
    }
#endif

    memcpy(dst, src, len);

    return snapcache_cache_checksum(dst, len);
}


/* ------------------------------------------------------------ records */

static void
put_u16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
}


static void
put_u32(unsigned char *p, uint32_t v)
{
    int  i;

    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


static void
put_u64(unsigned char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}


static unsigned
get_u16(const unsigned char *p)
{
    return (unsigned) p[0] | (unsigned) p[1] << 8;
}


static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


static uint64_t
get_u64(const unsigned char *p)
{
    int       i;
    uint64_t  v;

    v = 0;

    for (i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }

    return v;
}


static uint64_t
get_be64(const unsigned char *p)
{
    int       i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }

    return v;
}


static void
encode_header(unsigned char *h, const snapcache_put_t *item, int64_t now,
    uint32_t body_crc)
{
    memcpy(h, RECORD_MAGIC, 4);
    put_u16(h + 4, RECORD_VERSION);
    put_u16(h + 6, SNAPCACHE_RECORD_HEADER_LEN);
    put_u64(h + 8, (uint64_t) now);
    put_u64(h + 16, (uint64_t) item->expires);
    h[24] = (unsigned char) item->variant;
    h[25] = (unsigned char) item->format;
    put_u16(h + 26, 0);
    put_u32(h + 28, item->width);
    put_u32(h + 32, item->height);
    put_u32(h + 36, (uint32_t) item->body_len);
    put_u32(h + 40, body_crc);
    memcpy(h + 44, item->ident->digest, SNAPCACHE_DIGEST_LEN);
    put_u32(h + 76, snapcache_cache_checksum(h, 76));
}


size_t
snapcache_record_encode(const snapcache_put_t *item, int64_t now,
    unsigned char *out, size_t out_size)
{
    size_t  len;

    len = SNAPCACHE_RECORD_HEADER_LEN + item->body_len;

    if (len > out_size || item->body_len > UINT32_MAX) {
        return 0;
    }

    encode_header(out, item, now,
                  snapcache_cache_checksum(item->body, item->body_len));
    memcpy(out + SNAPCACHE_RECORD_HEADER_LEN, item->body, item->body_len);

    return len;
}


/*
 * Checks a record's header: magic, version, length, and the header's own
 * checksum.  The body checksum is left to the caller, who checks it on
 * its copy.
 */
int
snapcache_record_decode(const void *data, size_t len,
    snapcache_record_t *hdr, const unsigned char **body)
{
    const unsigned char  *h;

    h = data;

    memset(hdr, 0, sizeof(snapcache_record_t));

    if (len < SNAPCACHE_RECORD_HEADER_LEN
        || memcmp(h, RECORD_MAGIC, 4) != 0
        || get_u16(h + 4) != RECORD_VERSION
        || get_u16(h + 6) != SNAPCACHE_RECORD_HEADER_LEN
        || get_u32(h + 76) != snapcache_cache_checksum(h, 76)
        || get_u32(h + 36) != len - SNAPCACHE_RECORD_HEADER_LEN)
    {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    memset(hdr, 0, sizeof(snapcache_record_t));

    hdr->created = (int64_t) get_u64(h + 8);
    hdr->expires = (int64_t) get_u64(h + 16);
    hdr->variant = h[24];
    hdr->format = h[25];
    hdr->width = get_u32(h + 28);
    hdr->height = get_u32(h + 32);
    hdr->body_len = get_u32(h + 36);
    hdr->checksum = get_u32(h + 40);
    memcpy(hdr->digest, h + 44, SNAPCACHE_DIGEST_LEN);

    if (body) {
        *body = h + SNAPCACHE_RECORD_HEADER_LEN;
    }

    return SNAPCACHE_CACHE_OK;
}


/* ------------------------------------------------------------ HMAC */

static int
hmac_prepare(snapcache_cache_t *cache, const unsigned char *secret,
    size_t len)
{
    size_t         i;
    unsigned char  ipad[64], opad[64];

    cache->hmac_inner = EVP_MD_CTX_new();
    cache->hmac_outer = EVP_MD_CTX_new();

    if (cache->hmac_inner == NULL || cache->hmac_outer == NULL
        || len > sizeof(ipad))
    {
        return -1;
    }

    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));

    for (i = 0; i < len; i++) {
        ipad[i] ^= secret[i];
        opad[i] ^= secret[i];
    }

    if (EVP_DigestInit_ex(cache->hmac_inner, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(cache->hmac_inner, ipad, sizeof(ipad)) != 1
        || EVP_DigestInit_ex(cache->hmac_outer, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(cache->hmac_outer, opad, sizeof(opad)) != 1)
    {
        return -1;
    }

    OPENSSL_cleanse(ipad, sizeof(ipad));
    OPENSSL_cleanse(opad, sizeof(opad));

    return 0;
}


/*
 * HMAC-SHA256 from the prepared pad states: two context copies instead
 * of re-keying per call.  The templates are only read, so threads may
 * call this at once.
 */
static int
hmac(snapcache_cache_t *cache, const unsigned char *msg, size_t len,
    unsigned char out[32])
{
    int            rc;
    unsigned int   n;
    EVP_MD_CTX    *ctx;
    unsigned char  inner[32];

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    rc = EVP_MD_CTX_copy_ex(ctx, cache->hmac_inner) == 1
         && EVP_DigestUpdate(ctx, msg, len) == 1
         && EVP_DigestFinal_ex(ctx, inner, &n) == 1
         && EVP_MD_CTX_copy_ex(ctx, cache->hmac_outer) == 1
         && EVP_DigestUpdate(ctx, inner, sizeof(inner)) == 1
         && EVP_DigestFinal_ex(ctx, out, &n) == 1;

    EVP_MD_CTX_free(ctx);

    return rc ? 0 : -1;
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

    return hmac(cache, msg, len, out);
}


int
snapcache_cache_ident(snapcache_cache_t *cache, const char *account,
    size_t account_len, const char *device, size_t device_len,
    const char *snapshot, size_t snapshot_len, snapcache_ident_t *ident)
{
    const char     *ids[3];
    size_t          lens[3];
    unsigned char   mac[32];

    ids[0] = account;
    ids[1] = device;
    ids[2] = snapshot;
    lens[0] = account_len;
    lens[1] = device_len;
    lens[2] = snapshot_len;

    if (tag_of(cache, 'A', ids, lens, 1, mac) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    memcpy(ident->acct_tag, mac, SNAPCACHE_TAG_LEN);

    if (tag_of(cache, 'D', ids, lens, 2, mac) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    memcpy(ident->dev_tag, mac, SNAPCACHE_TAG_LEN);

    if (tag_of(cache, 'I', ids, lens, 3, ident->digest) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    memcpy(ident->prefix, ident->acct_tag, SNAPCACHE_TAG_LEN);
    memcpy(ident->prefix + SNAPCACHE_TAG_LEN, ident->dev_tag,
           SNAPCACHE_TAG_LEN);
    memcpy(ident->prefix + 2 * SNAPCACHE_TAG_LEN, snapshot, snapshot_len);
    ident->prefix[2 * SNAPCACHE_TAG_LEN + snapshot_len] = 0x00;
    ident->prefix_len = 2 * SNAPCACHE_TAG_LEN + snapshot_len + 1;

    return SNAPCACHE_CACHE_OK;
}


void
snapcache_cache_key(const snapcache_ident_t *ident, unsigned variant,
    unsigned format, snapcache_key_t *key)
{
    memcpy(key->data, ident->prefix, ident->prefix_len);
    key->data[ident->prefix_len] = (unsigned char) variant;
    key->data[ident->prefix_len + 1] = (unsigned char) format;
    key->len = ident->prefix_len + 2;
}


int
snapcache_cache_prefix(snapcache_cache_t *cache, const char *account,
    const char *device, unsigned char *out, size_t *out_len)
{
    const char     *ids[2];
    size_t          lens[2];
    unsigned char   mac[32];

    ids[0] = account;
    ids[1] = device;
    lens[0] = account ? strlen(account) : 0;
    lens[1] = device ? strlen(device) : 0;

    if (tag_of(cache, 'A', ids, lens, 1, mac) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    memcpy(out, mac, SNAPCACHE_TAG_LEN);
    *out_len = SNAPCACHE_TAG_LEN;

    if (device == NULL) {
        return SNAPCACHE_CACHE_OK;
    }

    if (tag_of(cache, 'D', ids, lens, 2, mac) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    memcpy(out + SNAPCACHE_TAG_LEN, mac, SNAPCACHE_TAG_LEN);
    *out_len = 2 * SNAPCACHE_TAG_LEN;

    return SNAPCACHE_CACHE_OK;
}


/* ------------------------------------------------------------ open */

static int
fail(char *err, size_t err_size, const char *what, const char *path, int rc)
{
    snprintf(err, err_size, "%s \"%s\": %s", what, path, mdb_strerror(rc));
    return SNAPCACHE_CACHE_ERROR;
}


/*
 * The store secret keys every tag and digest; it is made once, in the
 * first write transaction that finds none, so concurrent first opens
 * agree on one.
 */
static int
load_secret(snapcache_cache_t *cache, unsigned char *secret)
{
    int       rc;
    MDB_txn  *txn;
    MDB_val   k, v;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &cache->meta);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "records", MDB_CREATE, &cache->records);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(txn, "by_age", MDB_CREATE, &cache->by_age);
    }

    if (rc == 0) {
        rc = mdb_dbi_open(txn, "by_exp", MDB_CREATE, &cache->by_exp);
    }

    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    k.mv_data = "secret";
    k.mv_size = 6;

    rc = mdb_get(txn, cache->meta, &k, &v);

    if (rc == 0 && v.mv_size == SECRET_LEN) {
        memcpy(secret, v.mv_data, SECRET_LEN);

        /* commit, not abort: an aborted txn closes the dbi handles */
        return mdb_txn_commit(txn);
    }

    if (RAND_bytes(secret, SECRET_LEN) != 1) {
        mdb_txn_abort(txn);
        return EIO;
    }

    v.mv_data = secret;
    v.mv_size = SECRET_LEN;

    rc = mdb_put(txn, cache->meta, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    return mdb_txn_commit(txn);
}


/* A sparse data file turns a full disk into SIGBUS: allocate it now. */
static int
preallocate(const char *dir, size_t size, char *err, size_t err_size)
{
    int          fd, rc;
    char         path[4096];
    struct stat  st;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);

    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd == -1) {
        return fail(err, err_size, "cannot open", path, errno);
    }

    if (fstat(fd, &st) == 0 && (size_t) st.st_size >= size
        && (size_t) st.st_blocks * 512 >= size)
    {
        close(fd);
        return SNAPCACHE_CACHE_OK;
    }

    rc = posix_fallocate(fd, 0, (off_t) size);
    close(fd);

    if (rc != 0) {
        snprintf(err, err_size, "cannot preallocate %zu bytes for \"%s\": "
                 "%s", size, path, strerror(rc));
        return SNAPCACHE_CACHE_ERROR;
    }

    return SNAPCACHE_CACHE_OK;
}


int
snapcache_cache_open(const snapcache_cache_conf_t *conf,
    snapcache_cache_t **out, char *err, size_t err_size)
{
    int                 rc, dead;
    MDB_envinfo         info;
    MDB_stat            st;
    unsigned char       secret[SECRET_LEN];
    snapcache_cache_t  *cache;

    *out = NULL;

    if (access(conf->path, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "the store directory \"%s\" is not writable "
                 "by uid %d: %s", conf->path, (int) geteuid(),
                 strerror(errno));
        return SNAPCACHE_CACHE_ERROR;
    }

    cache = calloc(1, sizeof(snapcache_cache_t));
    if (cache == NULL) {
        snprintf(err, err_size, "out of memory");
        return SNAPCACHE_CACHE_NOMEM;
    }

    cache->high_pct = conf->high_pct ? conf->high_pct : 90;
    cache->low_pct = conf->low_pct ? conf->low_pct : 75;

    if (cache->low_pct >= cache->high_pct || cache->high_pct > 100) {
        free(cache);
        snprintf(err, err_size, "watermarks must be low < high <= 100");
        return SNAPCACHE_CACHE_ERROR;
    }

    rc = mdb_env_create(&cache->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(cache->env, 4);
    }

    if (rc == 0) {
        rc = mdb_env_set_mapsize(cache->env, conf->map_size);
    }

    if (rc == 0) {
        rc = mdb_env_set_maxreaders(cache->env, 256);
    }

    if (rc == 0) {
        /*
         * MDB_NOSYNC: a commit per fill must not wait for the disk.  A
         * crashed worker loses nothing (the pages are in the page cache);
         * the writers sync at most once a second (sync_now) to bound
         * what a crash of the machine can take back.
         */
        rc = mdb_env_open(cache->env, conf->path,
                          MDB_NOTLS | MDB_NORDAHEAD | MDB_NOSYNC, 0600);
    }

    if (rc != 0) {
        fail(err, err_size, "cannot open LMDB environment", conf->path, rc);
        goto failed;
    }

    mdb_reader_check(cache->env, &dead);

    mdb_env_info(cache->env, &info);
    mdb_env_stat(cache->env, &st);
    cache->map_size = info.me_mapsize;
    cache->page_size = st.ms_psize;

    if (preallocate(conf->path, cache->map_size, err, err_size)
        != SNAPCACHE_CACHE_OK)
    {
        goto failed;
    }

    rc = load_secret(cache, secret);
    if (rc != 0) {
        fail(err, err_size, "cannot read the store secret in", conf->path,
             rc);
        goto failed;
    }

    if (hmac_prepare(cache, secret, sizeof(secret)) != 0) {
        OPENSSL_cleanse(secret, sizeof(secret));
        snprintf(err, err_size, "cannot set up HMAC-SHA256");
        goto failed;
    }

    OPENSSL_cleanse(secret, sizeof(secret));

    *out = cache;

    return SNAPCACHE_CACHE_OK;

failed:

    snapcache_cache_close(cache);

    return SNAPCACHE_CACHE_ERROR;
}


void
snapcache_cache_close(snapcache_cache_t *cache)
{
    if (cache == NULL) {
        return;
    }

    if (cache->env) {
        mdb_env_close(cache->env);
    }

    EVP_MD_CTX_free(cache->hmac_inner);
    EVP_MD_CTX_free(cache->hmac_outer);
    free(cache);
}


int
snapcache_cache_reader_check(snapcache_cache_t *cache, int *cleared)
{
    return mdb_reader_check(cache->env, cleared) == 0
           ? SNAPCACHE_CACHE_OK : SNAPCACHE_CACHE_ERROR;
}


/* ------------------------------------------------------------ get */

static int delete_record(snapcache_cache_t *cache, MDB_txn *txn,
    const MDB_val *key);


/*
 * The check get makes, on a value inside a transaction: a sound header,
 * the owner's identity digest, and the variant and format its key names
 * (one owner's original under the key of its thumbnail is no hit either).
 * The checksum is left to the caller, who runs it on its own copy.
 */
static int
record_check(const snapcache_key_t *key, const MDB_val *v,
    const snapcache_ident_t *ident, snapcache_record_t *rec,
    const unsigned char **body)
{
    int  rc;

    rc = snapcache_record_decode(v->mv_data, v->mv_size, rec, body);
    if (rc != SNAPCACHE_CACHE_OK) {
        return rc;
    }

    if (memcmp(rec->digest, ident->digest, SNAPCACHE_DIGEST_LEN) != 0) {
        return SNAPCACHE_CACHE_FOREIGN;
    }

    /* a kept original's key says FORMAT_ANY; its record, what it is */
    if (key->len < 2 || rec->variant != key->data[key->len - 2]
        || (key->data[key->len - 1] != SNAPCACHE_FORMAT_ANY
            && rec->format != key->data[key->len - 1]))
    {
        return SNAPCACHE_CACHE_CORRUPT;
    }

    return SNAPCACHE_CACHE_OK;
}


/*
 * Deletes a record get found foreign or corrupt.  A fill may have
 * replaced it since the read, so the check runs again under the write
 * lock, and a good record is left alone.
 */
static void
delete_if_bad(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident)
{
    int                   rc;
    MDB_txn              *txn;
    MDB_val               k, v;
    snapcache_record_t    hdr;
    const unsigned char  *body;

    if (mdb_txn_begin(cache->env, NULL, 0, &txn) != 0) {
        return;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    if (mdb_get(txn, cache->records, &k, &v) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    rc = record_check(key, &v, ident, &hdr, &body);

    if (rc == SNAPCACHE_CACHE_OK
        && snapcache_cache_checksum(body, hdr.body_len) == hdr.checksum)
    {
        mdb_txn_abort(txn);
        return;
    }

    if (delete_record(cache, txn, &k) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    if (mdb_txn_commit(txn) == 0) {
        __atomic_add_fetch(&cache->deleted_bad, 1, __ATOMIC_RELAXED);
    }
}


int
snapcache_cache_get(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident, int64_t now, unsigned flags,
    snapcache_record_t *rec, snapcache_alloc_pt alloc, void *alloc_ctx)
{
    int                   rc, expired;
    MDB_txn              *txn;
    MDB_val               k, v;
    uint32_t              crc;
    const unsigned char  *body;

    if (mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = mdb_get(txn, cache->records, &k, &v);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? SNAPCACHE_CACHE_MISS
                                  : SNAPCACHE_CACHE_ERROR;
    }

    rc = record_check(key, &v, ident, rec, &body);
    if (rc != SNAPCACHE_CACHE_OK) {
        mdb_txn_abort(txn);

        if (!(flags & SNAPCACHE_GET_KEEP_BAD)) {
            delete_if_bad(cache, key, ident);
        }

        return rc;
    }

    expired = rec->expires <= now;

    if (expired && !(flags & SNAPCACHE_GET_STALE)) {
        mdb_txn_abort(txn);
        return SNAPCACHE_CACHE_EXPIRED;
    }

    rec->body = alloc(alloc_ctx, rec->body_len ? rec->body_len : 1);
    if (rec->body == NULL) {
        mdb_txn_abort(txn);
        return SNAPCACHE_CACHE_NOMEM;
    }

    /* the only read of the map's bytes: into caller memory, then done */
    crc = copy_checksum(rec->body, body, rec->body_len);
    mdb_txn_abort(txn);

    if (crc != rec->checksum) {
        if (!(flags & SNAPCACHE_GET_KEEP_BAD)) {
            delete_if_bad(cache, key, ident);
        }

        return SNAPCACHE_CACHE_CORRUPT;
    }

    return expired ? SNAPCACHE_CACHE_EXPIRED : SNAPCACHE_CACHE_HIT;
}


/* ------------------------------------------------------------ writes */

static size_t
index_key(unsigned char *out, int64_t when, const void *key, size_t len)
{
    int  i;

    for (i = 0; i < 8; i++) {
        out[i] = (unsigned char) ((uint64_t) when >> (56 - 8 * i));
    }

    memcpy(out + 8, key, len);

    return 8 + len;
}


/*
 * Deletes a record and its two index entries.  The key is copied first:
 * callers pass keys that point into a page of an index (eviction), and
 * deleting from that index shifts the page under the pointer.
 */
static int
delete_record(snapcache_cache_t *cache, MDB_txn *txn, const MDB_val *key)
{
    int                 rc;
    MDB_val             k, v, ik;
    unsigned char       kbuf[SNAPCACHE_CACHE_KEY_MAX];
    unsigned char       ibuf[INDEX_KEY_MAX];
    snapcache_record_t  hdr;

    if (key->mv_size == 0 || key->mv_size > sizeof(kbuf)) {
        return MDB_NOTFOUND;
    }

    memcpy(kbuf, key->mv_data, key->mv_size);
    k.mv_data = kbuf;
    k.mv_size = key->mv_size;

    rc = mdb_get(txn, cache->records, &k, &v);
    if (rc != 0) {
        return rc;
    }

    if (snapcache_record_decode(v.mv_data, v.mv_size, &hdr, NULL)
        == SNAPCACHE_CACHE_OK)
    {
        ik.mv_data = ibuf;
        ik.mv_size = index_key(ibuf, hdr.created, kbuf, k.mv_size);
        mdb_del(txn, cache->by_age, &ik, NULL);

        ik.mv_size = index_key(ibuf, hdr.expires, kbuf, k.mv_size);
        mdb_del(txn, cache->by_exp, &ik, NULL);
    }

    return mdb_del(txn, cache->records, &k, NULL);
}


static int
put_record(snapcache_cache_t *cache, MDB_txn *txn, const snapcache_put_t *it,
    int64_t now)
{
    int             rc;
    MDB_val         k, v, ik, empty;
    unsigned char  *p, ibuf[INDEX_KEY_MAX];

    k.mv_data = (void *) it->key.data;
    k.mv_size = it->key.len;

    rc = delete_record(cache, txn, &k);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }

    v.mv_size = SNAPCACHE_RECORD_HEADER_LEN + it->body_len;

    rc = mdb_put(txn, cache->records, &k, &v, MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }

    p = v.mv_data;
    encode_header(p, it, now,
                  copy_checksum(p + SNAPCACHE_RECORD_HEADER_LEN, it->body,
                                it->body_len));

    empty.mv_data = "";
    empty.mv_size = 0;
    ik.mv_data = ibuf;

    ik.mv_size = index_key(ibuf, now, k.mv_data, k.mv_size);
    rc = mdb_put(txn, cache->by_age, &ik, &empty, 0);
    if (rc != 0) {
        return rc;
    }

    ik.mv_size = index_key(ibuf, it->expires, k.mv_data, k.mv_size);

    return mdb_put(txn, cache->by_exp, &ik, &empty, 0);
}


static uint64_t
used_pages(snapcache_cache_t *cache, MDB_txn *txn)
{
    int        i;
    MDB_dbi    dbis[5];
    MDB_stat   st;
    uint64_t   used;

    dbis[0] = cache->meta;
    dbis[1] = cache->records;
    dbis[2] = cache->by_age;
    dbis[3] = cache->by_exp;
    dbis[4] = 0;                       /* the free list's own pages */

    used = 2;                          /* the two meta pages */

    for (i = 0; i < 5; i++) {
        if (mdb_stat(txn, dbis[i], &st) == 0) {
            used += st.ms_branch_pages + st.ms_leaf_pages
                    + st.ms_overflow_pages;
        }
    }

    return used;
}


static uint64_t
total_pages(snapcache_cache_t *cache)
{
    return cache->map_size / cache->page_size;
}


/*
 * One chunk of eviction: expired records first, then the oldest, until
 * usage is at or below target pages.  Returns how many it deleted; 0
 * when there is nothing left to delete or usage is already low.
 */
static int
evict_chunk(snapcache_cache_t *cache, int64_t now, uint64_t target,
    uint64_t *deleted)
{
    int          rc, pass, n;
    MDB_txn     *txn;
    MDB_val      ik, iv, k;
    MDB_cursor  *cur;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    n = 0;

    for (pass = 0; pass < 2 && n < PURGE_CHUNK; pass++) {
        rc = mdb_cursor_open(txn, pass == 0 ? cache->by_exp : cache->by_age,
                             &cur);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return rc;
        }

        while (n < PURGE_CHUNK && used_pages(cache, txn) > target) {
            rc = mdb_cursor_get(cur, &ik, &iv, MDB_FIRST);
            if (rc != 0) {
                break;
            }

            if (pass == 0 && (int64_t) get_be64(ik.mv_data) > now) {
                break;
            }

            k.mv_data = (unsigned char *) ik.mv_data + 8;
            k.mv_size = ik.mv_size - 8;

            /* the record deletes its index entries; drop a dangling one */
            if (delete_record(cache, txn, &k) != 0) {
                mdb_cursor_del(cur, 0);
                continue;
            }

            n++;
        }

        mdb_cursor_close(cur);
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return rc;
    }

    *deleted += (uint64_t) n;
    __atomic_add_fetch(&cache->evictions, (uint64_t) n, __ATOMIC_RELAXED);

    return n > 0 ? 0 : MDB_NOTFOUND;
}


/*
 * LMDB reuses a page only once the transaction that freed it is older
 * than the oldest snapshot still visible, and the last committed one
 * always is: so the pages eviction frees become usable only after one
 * more commit.  This is that commit.
 */
static void
advance_txn(snapcache_cache_t *cache)
{
    MDB_txn  *txn;
    MDB_val   k, v;
    uint64_t  tick;

    if (mdb_txn_begin(cache->env, NULL, 0, &txn) != 0) {
        return;
    }

    tick = 0;
    k.mv_data = "tick";
    k.mv_size = 4;

    if (mdb_get(txn, cache->meta, &k, &v) == 0 && v.mv_size == sizeof(tick))
    {
        memcpy(&tick, v.mv_data, sizeof(tick));
    }

    tick++;
    v.mv_data = &tick;
    v.mv_size = sizeof(tick);

    if (mdb_put(txn, cache->meta, &k, &v, 0) != 0) {
        mdb_txn_abort(txn);
        return;
    }

    mdb_txn_commit(txn);
}


static int
evict_to(snapcache_cache_t *cache, int64_t now, uint64_t target,
    uint64_t *evicted)
{
    int       rc;
    uint64_t  before;

    before = *evicted;

    do {
        rc = evict_chunk(cache, now, target, evicted);
    } while (rc == 0);

    if (*evicted != before) {
        advance_txn(cache);
    }

    return rc == MDB_NOTFOUND ? 0 : rc;
}


int
snapcache_cache_evict(snapcache_cache_t *cache, int64_t now,
    uint64_t *evicted)
{
    uint64_t  n;

    n = 0;

    if (evict_to(cache, now, total_pages(cache) * cache->low_pct / 100, &n)
        != 0)
    {
        return SNAPCACHE_CACHE_ERROR;
    }

    if (evicted) {
        *evicted = n;
    }

    return SNAPCACHE_CACHE_OK;
}


/* Whether usage plus need pages would cross the high watermark. */
static int
usage_above_high(snapcache_cache_t *cache, uint64_t need)
{
    int       above;
    MDB_txn  *txn;

    if (mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn) != 0) {
        return 0;
    }

    above = used_pages(cache, txn) + need
            > total_pages(cache) * cache->high_pct / 100;

    mdb_txn_abort(txn);

    return above;
}


static int
put_once(snapcache_cache_t *cache, const snapcache_put_t *items, size_t n,
    int64_t now, snapcache_precommit_pt precommit, void *precommit_ctx)
{
    int       rc;
    size_t    i;
    MDB_txn  *txn;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    for (i = 0; i < n; i++) {
        rc = put_record(cache, txn, &items[i], now);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return rc;
        }
    }

    if (precommit && precommit(precommit_ctx) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }

    return mdb_txn_commit(txn);
}


/* At most one fsync a second, by whichever writer thread gets there. */
static void
sync_now(snapcache_cache_t *cache, int64_t now)
{
    int64_t  last;

    last = __atomic_load_n(&cache->last_sync, __ATOMIC_RELAXED);

    if (now != last
        && __atomic_compare_exchange_n(&cache->last_sync, &last, now, 0,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    {
        mdb_env_sync(cache->env, 1);
    }
}


int
snapcache_cache_put_batch(snapcache_cache_t *cache,
    const snapcache_put_t *items, size_t n, int64_t now,
    snapcache_precommit_pt precommit, void *precommit_ctx)
{
    int       rc, dead;
    size_t    i, bytes;
    uint64_t  evicted, need, target, low, high, pages;

    pages = 0;

    for (i = 0, bytes = 0; i < n; i++) {
        if (items[i].key.len == 0 || items[i].key.len > SNAPCACHE_CACHE_KEY_MAX
            || items[i].body_len > UINT32_MAX)
        {
            return SNAPCACHE_CACHE_ERROR;
        }

        bytes += SNAPCACHE_RECORD_HEADER_LEN + items[i].body_len;

        /* its overflow pages (16 bytes of page header), one for indexes */
        pages += (SNAPCACHE_RECORD_HEADER_LEN + items[i].body_len + 16
                  + cache->page_size - 1) / cache->page_size + 1;
    }

    evicted = 0;
    low = total_pages(cache) * cache->low_pct / 100;
    high = total_pages(cache) * cache->high_pct / 100;

    /* branch pages, the free list's own pages */
    pages += 8;

    /* evict before the batch would take usage over the high watermark */
    if (usage_above_high(cache, pages)) {
        target = high > pages ? high - pages : 0;
        evict_to(cache, now, low < target ? low : target, &evicted);
    }

    rc = put_once(cache, items, n, now, precommit, precommit_ctx);

    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
        /* a dead reader's slot pins every page freed since: clear it */
        mdb_reader_check(cache->env, &dead);

        /* make room for this batch below the low watermark, then retry */
        need = bytes / cache->page_size + 4 * n + 16;
        target = low > 2 * need ? low - 2 * need : 0;

        /*
         * Large values need contiguous pages; in a map that is small
         * next to them, free space is too fragmented to rely on.
         */
        if (need * 20 > total_pages(cache)) {
            target /= 2;
        }

        evict_to(cache, now, target, &evicted);

        rc = put_once(cache, items, n, now, precommit, precommit_ctx);

        if (rc == MDB_MAP_FULL && target > 0) {
            /* still fragmented: one last, deeper eviction */
            evict_to(cache, now, target / 4, &evicted);
            rc = put_once(cache, items, n, now, precommit, precommit_ctx);
        }
    }

    if (rc == 0) {
        sync_now(cache, now);
    }

    switch (rc) {
    case 0:
        return SNAPCACHE_CACHE_OK;
    case -1:
        return SNAPCACHE_CACHE_ABORTED;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return SNAPCACHE_CACHE_FULL;
    default:
        return SNAPCACHE_CACHE_ERROR;
    }
}


int
snapcache_cache_delete(snapcache_cache_t *cache, const snapcache_key_t *key)
{
    int       rc;
    MDB_txn  *txn;
    MDB_val   k;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    k.mv_data = (void *) key->data;
    k.mv_size = key->len;

    rc = delete_record(cache, txn, &k);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return SNAPCACHE_CACHE_ERROR;
    }

    return mdb_txn_commit(txn) == 0 ? SNAPCACHE_CACHE_OK
                                    : SNAPCACHE_CACHE_ERROR;
}


/*
 * Deletes up to one chunk of records under prefix, in its own write
 * transaction, so that readers and other writers get their turn.
 */
static int
purge_chunk(snapcache_cache_t *cache, const unsigned char *prefix,
    size_t len, uint64_t *count, int *more)
{
    int           rc, n;
    MDB_txn      *txn;
    MDB_val       k, v;
    MDB_cursor   *cur;
    unsigned char kbuf[SNAPCACHE_CACHE_KEY_MAX];

    *more = 0;

    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_cursor_open(txn, cache->records, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    n = 0;

    for ( ;; ) {
        k.mv_data = (void *) prefix;
        k.mv_size = len;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || k.mv_size < len || memcmp(k.mv_data, prefix, len) != 0
            || k.mv_size > sizeof(kbuf))
        {
            break;
        }

        if (n == PURGE_CHUNK) {
            *more = 1;
            break;
        }

        /* copy the key: delete_record's writes may move the page */
        memcpy(kbuf, k.mv_data, k.mv_size);
        k.mv_data = kbuf;

        rc = delete_record(cache, txn, &k);
        if (rc != 0) {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            return rc;
        }

        n++;
    }

    mdb_cursor_close(cur);

    rc = mdb_txn_commit(txn);
    if (rc == 0) {
        *count += (uint64_t) n;
    }

    return rc;
}


int
snapcache_cache_purge(snapcache_cache_t *cache, const char *account,
    const char *device, const char *snapshot, uint64_t *count)
{
    int                 more;
    size_t              len;
    snapcache_ident_t   ident;
    unsigned char       prefix[SNAPCACHE_CACHE_KEY_MAX];

    *count = 0;

    if (snapshot != NULL) {
        if (device == NULL
            || snapcache_cache_ident(cache, account, strlen(account), device,
                                     strlen(device), snapshot,
                                     strlen(snapshot), &ident)
               != SNAPCACHE_CACHE_OK)
        {
            return SNAPCACHE_CACHE_ERROR;
        }

        memcpy(prefix, ident.prefix, ident.prefix_len);
        len = ident.prefix_len;

    } else if (snapcache_cache_prefix(cache, account, device, prefix, &len)
               != SNAPCACHE_CACHE_OK)
    {
        return SNAPCACHE_CACHE_ERROR;
    }

    do {
        if (purge_chunk(cache, prefix, len, count, &more) != 0) {
            return SNAPCACHE_CACHE_ERROR;
        }
    } while (more);

    return SNAPCACHE_CACHE_OK;
}


int
snapcache_cache_stats(snapcache_cache_t *cache, snapcache_cache_stats_t *s)
{
    MDB_txn   *txn;
    MDB_stat   st;

    memset(s, 0, sizeof(snapcache_cache_stats_t));

    if (mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    if (mdb_stat(txn, cache->records, &st) == 0) {
        s->entries = st.ms_entries;
    }

    s->used_pages = used_pages(cache, txn);
    mdb_txn_abort(txn);

    s->page_size = cache->page_size;
    s->total_pages = total_pages(cache);
    s->bytes = s->used_pages * cache->page_size;
    s->evictions = __atomic_load_n(&cache->evictions, __ATOMIC_RELAXED);
    s->deleted_bad = __atomic_load_n(&cache->deleted_bad, __ATOMIC_RELAXED);

    return SNAPCACHE_CACHE_OK;
}


int
snapcache_cache_extent(snapcache_cache_t *cache, uint64_t *pages)
{
    MDB_envinfo  info;

    if (mdb_env_info(cache->env, &info) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    *pages = (uint64_t) info.me_last_pgno + 1;

    return SNAPCACHE_CACHE_OK;
}


int
snapcache_cache_iterate(snapcache_cache_t *cache,
    const unsigned char *prefix, size_t prefix_len, int64_t now,
    snapcache_visit_pt visit, void *ctx)
{
    int                   rc, check, stop;
    MDB_txn              *txn;
    MDB_val               k, v;
    MDB_cursor           *cur;
    snapcache_record_t    hdr;
    const unsigned char  *body;

    if (mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &txn) != 0) {
        return SNAPCACHE_CACHE_ERROR;
    }

    if (mdb_cursor_open(txn, cache->records, &cur) != 0) {
        mdb_txn_abort(txn);
        return SNAPCACHE_CACHE_ERROR;
    }

    k.mv_data = (void *) prefix;
    k.mv_size = prefix_len;

    rc = mdb_cursor_get(cur, &k, &v, prefix_len ? MDB_SET_RANGE : MDB_FIRST);
    stop = 0;

    while (rc == 0 && !stop) {
        if (k.mv_size < prefix_len
            || memcmp(k.mv_data, prefix, prefix_len) != 0)
        {
            break;
        }

        check = snapcache_record_decode(v.mv_data, v.mv_size, &hdr, &body);

        if (check == SNAPCACHE_CACHE_OK
            && snapcache_cache_checksum(body, hdr.body_len) != hdr.checksum)
        {
            check = SNAPCACHE_CACHE_CORRUPT;
        }

        if (check == SNAPCACHE_CACHE_OK && hdr.expires <= now) {
            check = SNAPCACHE_CACHE_EXPIRED;
        }

        stop = visit(ctx, k.mv_data, k.mv_size, &hdr, check);

        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    return SNAPCACHE_CACHE_OK;
}


const char *
snapcache_cache_strerror(int rc)
{
    switch (rc) {
    case SNAPCACHE_CACHE_OK:
        return "ok";
    case SNAPCACHE_CACHE_MISS:
        return "miss";
    case SNAPCACHE_CACHE_EXPIRED:
        return "expired";
    case SNAPCACHE_CACHE_FOREIGN:
        return "foreign (identity digest mismatch)";
    case SNAPCACHE_CACHE_CORRUPT:
        return "corrupt (header, body checksum or key mismatch)";
    case SNAPCACHE_CACHE_FULL:
        return "map full after eviction";
    case SNAPCACHE_CACHE_ABORTED:
        return "aborted by the precommit check";
    case SNAPCACHE_CACHE_SKIPPED:
        return "not stored by choice";
    case SNAPCACHE_CACHE_NOMEM:
        return "out of memory";
    default:
        return "store error";
    }
}
