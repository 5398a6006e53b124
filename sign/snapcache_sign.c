
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache signed URLs, scheme v1.  See snapcache_sign.h and
 * docs/signing.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "hmac/snapcache_hmac.h"
#include "sign/snapcache_sign.h"


_Static_assert(SNAPCACHE_SIG_LEN == SNAPCACHE_HMAC_LEN,
               "a signature is a whole HMAC-SHA256");


#define SNAPCACHE_SIGN_PREFIX  "snapcache1\n"


static const char  b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/*
 * Each ASCII character's value in that alphabet, -1 for the others: a
 * signature's characters are looked up twice on every request.
 */
static const signed char  b64url_values[128] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
};


static int
b64url_value(unsigned char c)
{
    return c < 128 ? b64url_values[c] : -1;
}


/* an id's characters are the URL-safe base64 alphabet's and '.' */
static int
id_char(unsigned char c)
{
    return b64url_value(c) >= 0 || c == '.';
}


int
snapcache_id_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > SNAPCACHE_ID_MAX || s[0] == '.') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!id_char((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


/* Names the most specific reason a path segment is not an id. */
static int
segment_error(const char *s, size_t len)
{
    size_t  i;

    if (len == 0) {
        return SNAPCACHE_URL_EMPTY_SEGMENT;
    }

    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
    {
        return SNAPCACHE_URL_DOT_SEGMENT;
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            return SNAPCACHE_URL_ESCAPE;
        }

        if (s[i] == ';') {
            return SNAPCACHE_URL_PATH_PARAM;
        }
    }

    return snapcache_id_valid(s, len) ? SNAPCACHE_URL_OK
                                      : SNAPCACHE_URL_BAD_ID;
}


static int
parse_path(const char *path, size_t len, snapcache_url_t *url)
{
    int               rc;
    size_t            i, start, n;
    snapcache_str_t  *seg[3];

    seg[0] = &url->account;
    seg[1] = &url->device;
    seg[2] = &url->snapshot;

    if (len > 0 && path[len - 1] == '/') {
        for (i = 0; i + 1 < len; i++) {
            if (path[i] == '/' && path[i + 1] == '/') {
                return SNAPCACHE_URL_EMPTY_SEGMENT;
            }
        }

        return SNAPCACHE_URL_TRAILING_SLASH;
    }

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && path[i] != '/') {
            continue;
        }

        rc = segment_error(path + start, i - start);
        if (rc != SNAPCACHE_URL_OK) {
            return rc;
        }

        if (n == 3) {
            return SNAPCACHE_URL_SEGMENTS;
        }

        seg[n]->data = path + start;
        seg[n]->len = i - start;
        n++;
        start = i + 1;
    }

    return n == 3 ? SNAPCACHE_URL_OK : SNAPCACHE_URL_SEGMENTS;
}


/* Canonical decimal: no sign, no leading zero, fits in int64_t. */
static int
parse_exp(snapcache_str_t s, int64_t *out)
{
    size_t   i;
    int64_t  v;

    if (s.len == 0 || s.len > 18 || (s.len > 1 && s.data[0] == '0')) {
        return -1;
    }

    v = 0;

    for (i = 0; i < s.len; i++) {
        if (s.data[i] < '0' || s.data[i] > '9') {
            return -1;
        }

        v = v * 10 + (s.data[i] - '0');
    }

    *out = v;
    return 0;
}


static int
sig_chars_valid(snapcache_str_t s)
{
    size_t  i;

    if (s.len == 0 || s.len > 2 * SNAPCACHE_SIG_B64_LEN) {
        return 0;
    }

    /* '=' is let through so that a padded signature is refused by the
     * verifier as "signature", which tells a client what it got wrong */

    for (i = 0; i < s.len; i++) {
        if (b64url_value((unsigned char) s.data[i]) < 0 && s.data[i] != '=') {
            return 0;
        }
    }

    return 1;
}


static int
set_param(const char *name, size_t name_len, const char *val, size_t val_len,
    snapcache_url_t *url, int *scope_seen)
{
    snapcache_str_t  *dst;

#define PARAM_IS(lit)  (name_len == sizeof(lit) - 1                          \
                        && memcmp(name, lit, sizeof(lit) - 1) == 0)

    if (PARAM_IS("exp")) {
        dst = &url->exp;

    } else if (PARAM_IS("kid")) {
        dst = &url->kid;

    } else if (PARAM_IS("sig")) {
        dst = &url->sig;

    } else if (PARAM_IS("max")) {
        dst = &url->max;

    } else if (PARAM_IS("v")) {
        dst = &url->v;

    } else if (PARAM_IS("scope")) {
        if (*scope_seen) {
            return SNAPCACHE_URL_PARAM_REPEATED;
        }

        *scope_seen = 1;

        if (val_len != sizeof("device") - 1
            || memcmp(val, "device", val_len) != 0)
        {
            return SNAPCACHE_URL_PARAM_INVALID;
        }

        url->device_scope = 1;
        return SNAPCACHE_URL_OK;

    } else {
        return SNAPCACHE_URL_PARAM_UNKNOWN;
    }

#undef PARAM_IS

    if (dst->data != NULL) {
        return SNAPCACHE_URL_PARAM_REPEATED;
    }

    dst->data = val;
    dst->len = val_len;

    return SNAPCACHE_URL_OK;
}


static int
parse_query(const char *q, size_t len, snapcache_url_t *url)
{
    int          rc, scope_seen;
    size_t       i, start, eq;
    const char  *p;

    if (q == NULL) {
        return SNAPCACHE_URL_PARAM_MISSING;
    }

    scope_seen = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && q[i] != '&') {
            if (q[i] == '%') {
                return SNAPCACHE_URL_ESCAPE;
            }

            continue;
        }

        p = q + start;

        for (eq = 0; eq < i - start && p[eq] != '='; eq++) {
            /* void */
        }

        if (eq == 0 || eq == i - start) {
            /* "&&", a trailing '&', "=x" or a name without a value */
            return SNAPCACHE_URL_PARAM_INVALID;
        }

        rc = set_param(p, eq, p + eq + 1, i - start - eq - 1, url,
                       &scope_seen);
        if (rc != SNAPCACHE_URL_OK) {
            return rc;
        }

        start = i + 1;
    }

    if (url->exp.data == NULL || url->kid.data == NULL
        || url->sig.data == NULL)
    {
        return SNAPCACHE_URL_PARAM_MISSING;
    }

    if (parse_exp(url->exp, &url->exp_value) != 0
        || !snapcache_id_valid(url->kid.data, url->kid.len)
        || !sig_chars_valid(url->sig)
        || (url->max.data && !snapcache_id_valid(url->max.data, url->max.len))
        || (url->v.data && !snapcache_id_valid(url->v.data, url->v.len)))
    {
        return SNAPCACHE_URL_PARAM_INVALID;
    }

    return SNAPCACHE_URL_OK;
}


int
snapcache_url_parse(const char *path, size_t path_len, const char *query,
    size_t query_len, snapcache_url_t *url)
{
    int  rc;

    memset(url, 0, sizeof(snapcache_url_t));

    rc = parse_path(path, path_len, url);
    if (rc != SNAPCACHE_URL_OK) {
        return rc;
    }

    rc = parse_query(query, query_len, url);
    if (rc != SNAPCACHE_URL_OK) {
        return rc;
    }

    if (url->max.data == NULL) {
        url->max.data = "";
    }

    if (url->v.data == NULL) {
        url->v.data = "";
    }

    return SNAPCACHE_URL_OK;
}


const char *
snapcache_url_strerror(int rc)
{
    switch (rc) {
    case SNAPCACHE_URL_OK:
        return "ok";
    case SNAPCACHE_URL_SEGMENTS:
        return "path is not account/device/snapshot";
    case SNAPCACHE_URL_EMPTY_SEGMENT:
        return "empty path segment";
    case SNAPCACHE_URL_TRAILING_SLASH:
        return "trailing slash";
    case SNAPCACHE_URL_ESCAPE:
        return "percent-escape";
    case SNAPCACHE_URL_DOT_SEGMENT:
        return "dot segment";
    case SNAPCACHE_URL_PATH_PARAM:
        return "path parameter";
    case SNAPCACHE_URL_BAD_ID:
        return "invalid id";
    case SNAPCACHE_URL_PARAM_UNKNOWN:
        return "unknown query parameter";
    case SNAPCACHE_URL_PARAM_REPEATED:
        return "repeated query parameter";
    case SNAPCACHE_URL_PARAM_MISSING:
        return "missing query parameter";
    case SNAPCACHE_URL_PARAM_INVALID:
        return "invalid query parameter";
    default:
        return "unknown error";
    }
}


static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


int
snapcache_hex_decode(const char *hex, size_t len, unsigned char *out,
    size_t out_size)
{
    int     hi, lo;
    size_t  i;

    if (len % 2 != 0 || len / 2 > out_size) {
        return -1;
    }

    for (i = 0; i < len / 2; i++) {
        hi = hex_value((unsigned char) hex[2 * i]);
        lo = hex_value((unsigned char) hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(out, len / 2);
            return -1;
        }

        out[i] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}


/* A secret's hex line; the reasons name a key, as a token is one too. */
static int
secret_parse(snapcache_secret_t *secret, const char *what, const char *hex,
    size_t hex_len, char *err, size_t err_size)
{
    secret->len = 0;

    if (hex_len > 0 && hex[hex_len - 1] == '\n') {
        hex_len--;
    }

    if (hex_len > 0 && hex[hex_len - 1] == '\r') {
        hex_len--;
    }

    if (hex_len > 2 * SNAPCACHE_KEY_MAX) {
        snprintf(err, err_size, "%s is longer than %d bytes", what,
                 SNAPCACHE_KEY_MAX);
        return -1;
    }

    if (hex_len % 2 != 0
        || snapcache_hex_decode(hex, hex_len, secret->data,
                                sizeof(secret->data))
           != 0)
    {
        snprintf(err, err_size, "%s is not hex on one line", what);
        return -1;
    }

    if (hex_len / 2 < SNAPCACHE_KEY_MIN) {
        OPENSSL_cleanse(secret, sizeof(snapcache_secret_t));
        snprintf(err, err_size, "%s is %zu bytes, at least %d are required",
                 what, hex_len / 2, SNAPCACHE_KEY_MIN);
        return -1;
    }

    secret->len = hex_len / 2;

    return 0;
}


int
snapcache_secret_load(snapcache_secret_t *secret, const char *path,
    const char *what, int *world_readable, char *err, size_t err_size)
{
    int          fd, rc;
    char         buf[4 * SNAPCACHE_KEY_MAX], why[128];
    size_t       n;
    ssize_t      got;
    struct stat  st;

    memset(secret, 0, sizeof(snapcache_secret_t));

    /* O_NONBLOCK: a FIFO planted as the file must not hang startup */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, err_size, "cannot open %s file \"%s\": %s", what,
                 path, strerror(errno));
        return -1;
    }

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, err_size, "%s file \"%s\" is not a regular file",
                 what, path);
        return -1;
    }

    if (world_readable) {
        *world_readable = (st.st_mode & S_IROTH) != 0;
    }

    n = 0;

    while (n < sizeof(buf)) {
        got = read(fd, buf + n, sizeof(buf) - n);
        if (got < 0 && errno == EINTR) {
            continue;
        }

        if (got <= 0) {
            break;
        }

        n += (size_t) got;
    }

    close(fd);

    if (n == sizeof(buf)) {
        snprintf(err, err_size, "%s file \"%s\" is too long", what, path);
        OPENSSL_cleanse(buf, sizeof(buf));
        return -1;
    }

    rc = secret_parse(secret, what, buf, n, why, sizeof(why));
    OPENSSL_cleanse(buf, sizeof(buf));

    if (rc != 0) {
        snprintf(err, err_size, "%s file \"%s\": %s", what, path, why);
    }

    return rc;
}


/* The key id, the bytes and the keyed HMAC context, once per key. */
static int
key_set(snapcache_sign_key_t *key, const char *kid,
    const snapcache_secret_t *secret, char *err, size_t err_size)
{
    if (!snapcache_id_valid(kid, strlen(kid))) {
        snprintf(err, err_size, "invalid key id");
        return -1;
    }

    memcpy(key->key, secret->data, secret->len);
    key->key_len = secret->len;
    memcpy(key->kid, kid, strlen(kid));
    key->kid_len = strlen(kid);

    key->hmac = snapcache_hmac_new(key->key, key->key_len);

    if (key->hmac == NULL) {
        snapcache_sign_key_free(key);
        snprintf(err, err_size, "cannot prepare the key's HMAC state");
        return -1;
    }

    return 0;
}


int
snapcache_sign_key_parse(snapcache_sign_key_t *key, const char *kid,
    const char *hex, size_t hex_len, char *err, size_t err_size)
{
    int                 rc;
    snapcache_secret_t  secret;

    memset(key, 0, sizeof(snapcache_sign_key_t));

    rc = secret_parse(&secret, "key", hex, hex_len, err, err_size) == 0
         && key_set(key, kid, &secret, err, err_size) == 0
         ? 0 : -1;

    OPENSSL_cleanse(&secret, sizeof(secret));

    return rc;
}


int
snapcache_sign_key_load(snapcache_sign_key_t *key, const char *kid,
    const char *path, int *world_readable, char *err, size_t err_size)
{
    int                 rc;
    snapcache_secret_t  secret;

    memset(key, 0, sizeof(snapcache_sign_key_t));

    rc = snapcache_secret_load(&secret, path, "key", world_readable, err,
                               err_size)
         == 0
         && key_set(key, kid, &secret, err, err_size) == 0
         ? 0 : -1;

    OPENSSL_cleanse(&secret, sizeof(secret));

    return rc;
}


void
snapcache_sign_key_free(snapcache_sign_key_t *key)
{
    snapcache_hmac_free(key->hmac);
    OPENSSL_cleanse(key, sizeof(snapcache_sign_key_t));
}


static char *
put_field(char *p, char *end, snapcache_str_t s, int newline)
{
    if (p == NULL || (size_t) (end - p) < s.len + (newline ? 1 : 0)) {
        return NULL;
    }

    memcpy(p, s.data, s.len);
    p += s.len;

    if (newline) {
        *p++ = '\n';
    }

    return p;
}


size_t
snapcache_sign_message(char *buf, size_t size, snapcache_str_t kid,
    snapcache_str_t exp, snapcache_str_t account, snapcache_str_t device,
    snapcache_str_t snapshot, snapcache_str_t max)
{
    char             *p, *end;
    snapcache_str_t   prefix;

    prefix.data = SNAPCACHE_SIGN_PREFIX;
    prefix.len = sizeof(SNAPCACHE_SIGN_PREFIX) - 1;

    p = buf;
    end = buf + size;

    p = put_field(p, end, prefix, 0);
    p = put_field(p, end, kid, 1);
    p = put_field(p, end, exp, 1);
    p = put_field(p, end, account, 1);
    p = put_field(p, end, device, 1);
    p = put_field(p, end, snapshot, 1);
    p = put_field(p, end, max, 0);

    return p ? (size_t) (p - buf) : 0;
}


/*
 * Safe from several threads at once with one key: each MAC runs on a
 * context of its own (see hmac/snapcache_hmac.h).
 */
void
snapcache_sign_hmac(const snapcache_sign_key_t *key, const char *msg,
    size_t len, unsigned char out[SNAPCACHE_SIG_LEN])
{
    int           ok;
    unsigned int  out_len;

    if (key->hmac) {
        ok = snapcache_hmac(key->hmac, msg, len, out) == 0;

    } else {
        /* a key filled in by hand rather than parsed or loaded */
        ok = HMAC(EVP_sha256(), key->key, (int) key->key_len,
                  (const unsigned char *) msg, len, out, &out_len) != NULL
             && out_len == SNAPCACHE_SIG_LEN;
    }

    if (!ok) {
        /*
         * An HMAC that cannot be computed must never verify: fill the
         * output with fresh random bytes rather than a fixed value.
         */
        if (RAND_bytes(out, SNAPCACHE_SIG_LEN) != 1) {
            abort();
        }
    }
}


size_t
snapcache_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    char      *p;
    size_t     i;
    uint32_t   v;

    p = out;

    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *p++ = b64url_alphabet[(v >> 18) & 63];
        *p++ = b64url_alphabet[(v >> 12) & 63];
        *p++ = b64url_alphabet[(v >> 6) & 63];
        *p++ = b64url_alphabet[v & 63];
    }

    if (len - i == 1) {
        v = (uint32_t) in[i] << 16;
        *p++ = b64url_alphabet[(v >> 18) & 63];
        *p++ = b64url_alphabet[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        *p++ = b64url_alphabet[(v >> 18) & 63];
        *p++ = b64url_alphabet[(v >> 12) & 63];
        *p++ = b64url_alphabet[(v >> 6) & 63];
    }

    *p = '\0';

    return (size_t) (p - out);
}


int
snapcache_b64url_decode(const char *in, size_t len, unsigned char *out,
    size_t out_size, size_t *out_len)
{
    int                   a, b, c, d;
    size_t                i, n, left;
    uint32_t              v;
    const unsigned char  *u;

    if (len % 4 == 1 || len * 6 / 8 > out_size) {
        return -1;
    }

    u = (const unsigned char *) in;
    n = 0;

    /*
     * four characters make three bytes: a signature is decoded on every
     * request, so a group at a time, with one test of all four
     */
    for (i = 0; i + 4 <= len; i += 4) {
        a = b64url_value(u[i]);
        b = b64url_value(u[i + 1]);
        c = b64url_value(u[i + 2]);
        d = b64url_value(u[i + 3]);

        if ((a | b | c | d) < 0) {
            return -1;
        }

        v = (uint32_t) a << 18 | (uint32_t) b << 12 | (uint32_t) c << 6
            | (uint32_t) d;

        out[n++] = (unsigned char) (v >> 16);
        out[n++] = (unsigned char) (v >> 8);
        out[n++] = (unsigned char) v;
    }

    left = len - i;

    if (left > 0) {
        a = b64url_value(u[i]);
        b = b64url_value(u[i + 1]);
        c = left == 3 ? b64url_value(u[i + 2]) : 0;

        if ((a | b | c) < 0) {
            return -1;
        }

        v = (uint32_t) a << 18 | (uint32_t) b << 12 | (uint32_t) c << 6;

        /* non-zero trailing bits: a second spelling of the same bytes */
        if ((left == 2 && (v & 0xffff)) || (left == 3 && (v & 0xff))) {
            return -1;
        }

        out[n++] = (unsigned char) (v >> 16);

        if (left == 3) {
            out[n++] = (unsigned char) (v >> 8);
        }
    }

    *out_len = n;
    return 0;
}


static const snapcache_sign_key_t *
find_key(const snapcache_sign_key_t *keys, size_t nkeys, snapcache_str_t kid)
{
    size_t  i;

    for (i = 0; i < nkeys; i++) {
        if (keys[i].kid_len == kid.len
            && memcmp(keys[i].kid, kid.data, kid.len) == 0)
        {
            return &keys[i];
        }
    }

    return NULL;
}


int
snapcache_sign_verify(const snapcache_url_t *url,
    const snapcache_sign_key_t *keys, size_t nkeys, int64_t now,
    int64_t max_lifetime)
{
    char                         msg[SNAPCACHE_MESSAGE_MAX];
    size_t                       msg_len, sig_len;
    unsigned char                sig[SNAPCACHE_SIG_B64_LEN];
    unsigned char                mac[SNAPCACHE_SIG_LEN];
    snapcache_str_t              snapshot;
    const snapcache_sign_key_t  *key;

    key = find_key(keys, nkeys, url->kid);
    if (key == NULL) {
        return SNAPCACHE_SIGN_KEY;
    }

    if (url->sig.len != SNAPCACHE_SIG_B64_LEN
        || snapcache_b64url_decode(url->sig.data, url->sig.len, sig,
                                   sizeof(sig), &sig_len) != 0
        || sig_len != SNAPCACHE_SIG_LEN)
    {
        return SNAPCACHE_SIGN_SIGNATURE;
    }

    if (url->device_scope) {
        snapshot.data = SNAPCACHE_DEVICE_GRANT;
        snapshot.len = sizeof(SNAPCACHE_DEVICE_GRANT) - 1;

    } else {
        snapshot = url->snapshot;
    }

    msg_len = snapcache_sign_message(msg, sizeof(msg), url->kid, url->exp,
                                     url->account, url->device, snapshot,
                                     url->max);
    if (msg_len == 0) {
        return SNAPCACHE_SIGN_SIGNATURE;
    }

    snapcache_sign_hmac(key, msg, msg_len, mac);

    if (CRYPTO_memcmp(mac, sig, SNAPCACHE_SIG_LEN) != 0) {
        return SNAPCACHE_SIGN_SIGNATURE;
    }

    if (now > url->exp_value) {
        return SNAPCACHE_SIGN_EXPIRED;
    }

    if (max_lifetime > 0 && url->exp_value - now > max_lifetime) {
        return SNAPCACHE_SIGN_LIFETIME;
    }

    return SNAPCACHE_SIGN_OK;
}


const char *
snapcache_sign_reason(int rc)
{
    switch (rc) {
    case SNAPCACHE_SIGN_OK:
        return "ok";
    case SNAPCACHE_SIGN_KEY:
        return "key";
    case SNAPCACHE_SIGN_EXPIRED:
    case SNAPCACHE_SIGN_LIFETIME:
        return "expired";
    default:
        return "signature";
    }
}


size_t
snapcache_sign_mint(const snapcache_sign_key_t *key, const char *account,
    const char *device, const char *snapshot, int64_t exp, const char *max,
    char *out, size_t out_size)
{
    int              n, grant;
    char             exp_buf[24], msg[SNAPCACHE_MESSAGE_MAX];
    char             sig_b64[SNAPCACHE_SIG_B64_LEN + 1];
    size_t           msg_len;
    unsigned char    mac[SNAPCACHE_SIG_LEN];
    snapcache_str_t  kid_s, exp_s, acct_s, dev_s, snap_s, max_s;

    grant = strcmp(snapshot, SNAPCACHE_DEVICE_GRANT) == 0;

    if (max == NULL) {
        max = "";
    }

    if (exp < 0
        || !snapcache_id_valid(account, strlen(account))
        || !snapcache_id_valid(device, strlen(device))
        || (!grant && !snapcache_id_valid(snapshot, strlen(snapshot)))
        || (max[0] != '\0' && !snapcache_id_valid(max, strlen(max))))
    {
        return 0;
    }

    snprintf(exp_buf, sizeof(exp_buf), "%lld", (long long) exp);

    kid_s.data = key->kid;
    kid_s.len = key->kid_len;
    exp_s.data = exp_buf;
    exp_s.len = strlen(exp_buf);
    acct_s.data = account;
    acct_s.len = strlen(account);
    dev_s.data = device;
    dev_s.len = strlen(device);
    snap_s.data = snapshot;
    snap_s.len = strlen(snapshot);
    max_s.data = max;
    max_s.len = strlen(max);

    msg_len = snapcache_sign_message(msg, sizeof(msg), kid_s, exp_s, acct_s,
                                     dev_s, snap_s, max_s);
    if (msg_len == 0) {
        return 0;
    }

    snapcache_sign_hmac(key, msg, msg_len, mac);
    snapcache_b64url_encode(mac, sizeof(mac), sig_b64);

    n = snprintf(out, out_size, "%s/%s/%s?exp=%s&kid=%s%s%s%s&sig=%s",
                 account, device, grant ? "latest" : snapshot, exp_buf,
                 key->kid, max[0] ? "&max=" : "", max,
                 grant ? "&scope=device" : "", sig_b64);

    if (n < 0 || (size_t) n >= out_size) {
        return 0;
    }

    return (size_t) n;
}
