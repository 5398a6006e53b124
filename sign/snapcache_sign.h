
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache signed URLs, scheme v1: the whole interface of sign/.
 *
 * A request path is /<prefix>/<account>/<device>/<snapshot>?<query>;
 * the query carries exp, kid, sig and optionally max, v and scope.
 * The signed message is
 *
 *     "snapcache1\n" kid "\n" exp "\n" account "\n" device "\n"
 *     snapshot "\n" max
 *
 * with snapshot "*" for a device grant (scope=device) and max empty when
 * absent; the signature is HMAC-SHA256, all 32 bytes, base64url without
 * padding.  See docs/signing.md.
 *
 * Plain C11 plus OpenSSL; no nginx header, so the parser and verifier
 * can be unit-tested and fuzzed alone.
 */

#ifndef SNAPCACHE_SIGN_H
#define SNAPCACHE_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define SNAPCACHE_ID_MAX          64
#define SNAPCACHE_SIG_LEN         32
#define SNAPCACHE_SIG_B64_LEN     43
#define SNAPCACHE_KEY_MIN         32
#define SNAPCACHE_KEY_MAX         64
#define SNAPCACHE_MESSAGE_MAX     512
#define SNAPCACHE_DEVICE_GRANT    "*"


typedef struct {
    const char  *data;
    size_t       len;
} snapcache_str_t;


/* A parsed request; every string points into the caller's buffers. */
typedef struct {
    snapcache_str_t  account;
    snapcache_str_t  device;
    snapcache_str_t  snapshot;

    snapcache_str_t  exp;
    snapcache_str_t  kid;
    snapcache_str_t  sig;
    snapcache_str_t  max;        /* len 0 when absent */
    snapcache_str_t  v;          /* len 0 when absent */

    int64_t          exp_value;
    int              device_scope;
} snapcache_url_t;


typedef enum {
    SNAPCACHE_URL_OK = 0,
    SNAPCACHE_URL_SEGMENTS,          /* not exactly three segments */
    SNAPCACHE_URL_EMPTY_SEGMENT,     /* "//" */
    SNAPCACHE_URL_TRAILING_SLASH,
    SNAPCACHE_URL_ESCAPE,            /* "%xx" anywhere */
    SNAPCACHE_URL_DOT_SEGMENT,       /* "." or ".." */
    SNAPCACHE_URL_PATH_PARAM,        /* ";x" */
    SNAPCACHE_URL_BAD_ID,            /* not [A-Za-z0-9_-][A-Za-z0-9._-]{0,63} */
    SNAPCACHE_URL_PARAM_UNKNOWN,
    SNAPCACHE_URL_PARAM_REPEATED,
    SNAPCACHE_URL_PARAM_MISSING,
    SNAPCACHE_URL_PARAM_INVALID
} snapcache_url_rc_e;


typedef enum {
    SNAPCACHE_SIGN_OK = 0,
    SNAPCACHE_SIGN_KEY,              /* unknown kid */
    SNAPCACHE_SIGN_SIGNATURE,        /* bad encoding, length or HMAC */
    SNAPCACHE_SIGN_EXPIRED,          /* now > exp */
    SNAPCACHE_SIGN_LIFETIME          /* exp - now > maximum lifetime */
} snapcache_sign_rc_e;


/*
 * A verification key.  parse and load also key an HMAC context once (see
 * hmac/snapcache_hmac.h), so that a signature costs no key schedule; free
 * releases it and wipes the key.
 */
typedef struct {
    char           kid[SNAPCACHE_ID_MAX + 1];
    size_t         kid_len;
    unsigned char  key[SNAPCACHE_KEY_MAX];
    size_t         key_len;
    void          *hmac;         /* snapcache_hmac_t, keyed with key */
} snapcache_sign_key_t;


/* A secret read from a file: a signing key's bytes, or a bearer token. */
typedef struct {
    unsigned char  data[SNAPCACHE_KEY_MAX];
    size_t         len;
} snapcache_secret_t;


/*
 * Parses the part of the raw request target after the location prefix:
 * path is "account/device/snapshot", query is what follows '?' (NULL when
 * there was no '?').  Nothing is decoded or normalised: anything that is
 * not already canonical is an error.
 */
int snapcache_url_parse(const char *path, size_t path_len,
    const char *query, size_t query_len, snapcache_url_t *url);
const char *snapcache_url_strerror(int rc);

/* 1 if s is a valid account, device, snapshot, kid or variant id. */
int snapcache_id_valid(const char *s, size_t len);

/*
 * Decodes len hex digits, in either case, into the len / 2 bytes of out.
 * -1 if len is odd, if out_size is below len / 2 or if a character is
 * not a hex digit, with no decoded byte left in out.
 */
int snapcache_hex_decode(const char *hex, size_t len, unsigned char *out,
    size_t out_size);

/*
 * A secret file, for a signing key or a bearer token: a regular file
 * (opened without blocking, so that a FIFO cannot hang the caller), hex
 * on one line (a trailing newline is allowed), SNAPCACHE_KEY_MIN to
 * SNAPCACHE_KEY_MAX bytes.  what ("key", "token") names it in the
 * reasons.  On failure err receives a reason that never
 * contains key material, and the secret is wiped; on success the caller
 * wipes it with OPENSSL_cleanse once done with it.  *world_readable (if
 * not NULL) is set when the file mode lets anyone read it, so that the
 * caller can warn.
 */
int snapcache_secret_load(snapcache_secret_t *secret, const char *path,
    const char *what, int *world_readable, char *err, size_t err_size);

/*
 * A signing key: parse takes the hex line itself, load reads it from a
 * secret file as snapcache_secret_load does.
 */
int snapcache_sign_key_parse(snapcache_sign_key_t *key, const char *kid,
    const char *hex, size_t hex_len, char *err, size_t err_size);
int snapcache_sign_key_load(snapcache_sign_key_t *key, const char *kid,
    const char *path, int *world_readable, char *err, size_t err_size);
void snapcache_sign_key_free(snapcache_sign_key_t *key);

/* Writes the canonical message; returns its length, 0 if it does not fit. */
size_t snapcache_sign_message(char *buf, size_t size, snapcache_str_t kid,
    snapcache_str_t exp, snapcache_str_t account, snapcache_str_t device,
    snapcache_str_t snapshot, snapcache_str_t max);

/* HMAC-SHA256; safe from several threads at once with one key. */
void snapcache_sign_hmac(const snapcache_sign_key_t *key, const char *msg,
    size_t len, unsigned char out[SNAPCACHE_SIG_LEN]);

/* Unpadded base64url.  decode rejects padding, non-alphabet characters and
 * non-zero trailing bits, so that each value has exactly one spelling. */
size_t snapcache_b64url_encode(const unsigned char *in, size_t len,
    char *out);
int snapcache_b64url_decode(const char *in, size_t len, unsigned char *out,
    size_t out_size, size_t *out_len);

/*
 * Checks kid, then the signature, then the time window, in that order, so
 * that "expired" is only ever said of a genuine URL.  max_lifetime <= 0
 * disables the lifetime bound.
 */
int snapcache_sign_verify(const snapcache_url_t *url,
    const snapcache_sign_key_t *keys, size_t nkeys, int64_t now,
    int64_t max_lifetime);

/* The one-word reason for a 403 body: "key", "signature" or "expired". */
const char *snapcache_sign_reason(int rc);

/*
 * Mints "account/device/snapshot?exp=..&kid=..[&max=..][&scope=device]
 * &sig=.." into out.  snapshot "*" mints a device grant for the snapshot
 * id "latest" in the path.  Returns the length, 0 on invalid input or if
 * out is too small.
 */
size_t snapcache_sign_mint(const snapcache_sign_key_t *key,
    const char *account, const char *device, const char *snapshot,
    int64_t exp, const char *max, char *out, size_t out_size);

#endif /* SNAPCACHE_SIGN_H */
