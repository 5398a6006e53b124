
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * sign/: the URL parser, the verifier, the key loader and the test
 * vectors published in docs/signing.md.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hmac/snapcache_hmac.h"
#include "sign/snapcache_sign.h"
#include "t/unit/tap.h"


#define NOW  1700000000


static snapcache_sign_key_t  test_key;

/* OpenSSL's allocations: how many were made, and how many are live */
static _Atomic long          allocs_made, allocs_live;


static void *
count_malloc(size_t n, const char *file, int line)
{
    void  *p;

    p = malloc(n);

    if (p != NULL) {
        allocs_made++;
        allocs_live++;
    }

    return p;
}


static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
    void  *q;

    if (n == 0) {
        allocs_live -= p != NULL;
        free(p);
        return NULL;
    }

    q = realloc(p, n);

    if (q != NULL && p == NULL) {
        allocs_made++;
        allocs_live++;
    }

    return q;
}


static void
count_free(void *p, const char *file, int line)
{
    allocs_live -= p != NULL;
    free(p);
}


static snapcache_str_t
str(const char *s)
{
    snapcache_str_t  r;

    r.data = s;
    r.len = strlen(s);

    return r;
}


/* Parses a "path?query" target as the module would. */
static int
parse(const char *target, snapcache_url_t *url)
{
    const char  *q;

    q = strchr(target, '?');

    if (q == NULL) {
        return snapcache_url_parse(target, strlen(target), NULL, 0, url);
    }

    return snapcache_url_parse(target, (size_t) (q - target), q + 1,
                               strlen(q + 1), url);
}


static int
verify_target(const char *target, int64_t now, int64_t lifetime)
{
    int              rc;
    snapcache_url_t  url;

    rc = parse(target, &url);
    if (rc != SNAPCACHE_URL_OK) {
        return 100 + rc;
    }

    return snapcache_sign_verify(&url, &test_key, 1, now, lifetime);
}


static void
test_vectors(void)
{
    int                    n, fields;
    char                   line[1024], key_hex[256], kid[80], exp[32];
    char                   acct[80], dev[80], snap[80], max[80], scope[16];
    char                   sig[80], target[1024], err[128];
    char                   msg[SNAPCACHE_MESSAGE_MAX], b64[64];
    FILE                  *f;
    size_t                 len;
    unsigned char          mac[SNAPCACHE_SIG_LEN];
    snapcache_url_t        url;
    snapcache_sign_key_t   key;

    f = fopen("docs/signing.md", "r");
    ok(f != NULL, "docs/signing.md is readable from the repo root");
    if (f == NULL) {
        return;
    }

    n = 0;

    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "<!-- vectors -->", 16) == 0) {
            break;
        }
    }

    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "<!-- /vectors -->", 17) == 0) {
            break;
        }

        fields = sscanf(line, "%255s %79s %31s %79s %79s %79s %79s %15s %79s",
                        key_hex, kid, exp, acct, dev, snap, max, scope, sig);
        if (fields != 9) {
            continue;
        }

        n++;

        if (strcmp(max, "-") == 0) {
            max[0] = '\0';
        }

        if (snapcache_sign_key_parse(&key, kid, key_hex, strlen(key_hex),
                                     err, sizeof(err))
            != 0)
        {
            ok(0, "vector %d: key parses (%s)", n, err);
            continue;
        }

        len = snapcache_sign_message(msg, sizeof(msg), str(kid), str(exp),
                  str(acct), str(dev),
                  str(strcmp(scope, "device") == 0 ? "*" : snap), str(max));
        snapcache_sign_hmac(&key, msg, len, mac);
        snapcache_b64url_encode(mac, sizeof(mac), b64);
        is_str(b64, sig, "vector %d: signature matches the published one", n);

        snprintf(target, sizeof(target), "%s/%s/%s?exp=%s&kid=%s%s%s%s&sig=%s",
                 acct, dev, snap, exp, kid, max[0] ? "&max=" : "", max,
                 strcmp(scope, "device") == 0 ? "&scope=device" : "", sig);

        is_int(parse(target, &url), SNAPCACHE_URL_OK,
               "vector %d: its URL parses", n);
        is_int(snapcache_sign_verify(&url, &key, 1, atoll(exp) - 60, 0),
               SNAPCACHE_SIGN_OK, "vector %d: its URL verifies", n);

        snapcache_sign_key_free(&key);
    }

    fclose(f);

    ok(n >= 6, "found %d vectors in docs/signing.md", n);
}


static void
test_parse_paths(void)
{
    size_t            i;
    snapcache_url_t   url;
    char              long_id[80];
    const char       *q = "?exp=1&kid=k&sig=AAAA";

    static const struct {
        const char  *path;
        int          rc;
    } cases[] = {
        { "a/b/c", SNAPCACHE_URL_OK },
        { "A_b-9/d.e/s.1", SNAPCACHE_URL_OK },
        { "a/b/c/", SNAPCACHE_URL_TRAILING_SLASH },
        { "a/b/c/d", SNAPCACHE_URL_SEGMENTS },
        { "a/b", SNAPCACHE_URL_SEGMENTS },
        { "", SNAPCACHE_URL_EMPTY_SEGMENT },
        { "a//c", SNAPCACHE_URL_EMPTY_SEGMENT },
        { "a/b//c", SNAPCACHE_URL_EMPTY_SEGMENT },
        { "/a/b/c", SNAPCACHE_URL_EMPTY_SEGMENT },
        { "a/b//", SNAPCACHE_URL_EMPTY_SEGMENT },
        { "a/b%2Fc/d", SNAPCACHE_URL_ESCAPE },
        { "a/%62/c", SNAPCACHE_URL_ESCAPE },
        { "a/../c", SNAPCACHE_URL_DOT_SEGMENT },
        { "a/./c", SNAPCACHE_URL_DOT_SEGMENT },
        { "a/b/..", SNAPCACHE_URL_DOT_SEGMENT },
        { "a/b/c;x", SNAPCACHE_URL_PATH_PARAM },
        { "a;x/b/c", SNAPCACHE_URL_PATH_PARAM },
        { "a/.b/c", SNAPCACHE_URL_BAD_ID },
        { "a/b*/c", SNAPCACHE_URL_BAD_ID },
        { "a/b c/d", SNAPCACHE_URL_BAD_ID },
        { "a/caf\xc3\xa9/d", SNAPCACHE_URL_BAD_ID },
        { "a/b\n/c", SNAPCACHE_URL_BAD_ID },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char  target[256];

        snprintf(target, sizeof(target), "%s%s", cases[i].path, q);
        is_int(parse(target, &url), cases[i].rc, "path '%s': %s",
               cases[i].path, snapcache_url_strerror(cases[i].rc));
    }

    memset(long_id, 'x', 64);
    long_id[64] = '\0';
    ok(snapcache_id_valid(long_id, 64), "a 64-character id is valid");
    long_id[64] = 'x';
    long_id[65] = '\0';
    ok(!snapcache_id_valid(long_id, 65), "a 65-character id is not");
    ok(!snapcache_id_valid("", 0), "an empty id is not");
    ok(snapcache_id_valid("-x", 2) && snapcache_id_valid("_", 1),
       "ids may start with - or _");
}


static void
test_parse_queries(void)
{
    size_t           i;
    snapcache_url_t  url;

    static const struct {
        const char  *query;
        int          rc;
    } cases[] = {
        { "exp=1&kid=k&sig=AAAA", SNAPCACHE_URL_OK },
        { "sig=AAAA&kid=k&exp=1", SNAPCACHE_URL_OK },
        { "exp=1&kid=k&sig=AAAA&max=sd&v=thumb&scope=device",
          SNAPCACHE_URL_OK },
        { "exp=1&kid=k", SNAPCACHE_URL_PARAM_MISSING },
        { "exp=1&sig=AAAA", SNAPCACHE_URL_PARAM_MISSING },
        { "kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_MISSING },
        { "exp=1&exp=1&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&sig=AAAA&sig=AAAA", SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&sig=AAAA&v=a&v=a", SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&sig=AAAA&max=a&max=a", SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&sig=AAAA&scope=device&scope=device",
          SNAPCACHE_URL_PARAM_REPEATED },
        { "exp=1&kid=k&sig=AAAA&foo=1", SNAPCACHE_URL_PARAM_UNKNOWN },
        { "exp=1&kid=k&sig=AAAA&EXP=1", SNAPCACHE_URL_PARAM_UNKNOWN },
        { "exp=1&kid=k&sig=AAAA&", SNAPCACHE_URL_PARAM_INVALID },
        { "&exp=1&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=AAAA&v", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=AAAA&=x", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=01&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=-1&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1x&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=&kid=k&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=9999999999999999999&kid=k&sig=AAAA",
          SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k*&sig=AAAA", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=AA+A", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=AAAA&scope=account", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=k&sig=AAAA&v=", SNAPCACHE_URL_PARAM_INVALID },
        { "exp=1&kid=%6b&sig=AAAA", SNAPCACHE_URL_ESCAPE },
        { "", SNAPCACHE_URL_PARAM_INVALID },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_int(snapcache_url_parse("a/b/c", 5, cases[i].query,
                                   strlen(cases[i].query), &url),
               cases[i].rc, "query '%s': %s", cases[i].query,
               snapcache_url_strerror(cases[i].rc));
    }

    is_int(snapcache_url_parse("a/b/c", 5, NULL, 0, &url),
           SNAPCACHE_URL_PARAM_MISSING, "no query at all");

    parse("a/b/c?exp=1&kid=k&sig=AAAA&max=sd&v=thumb&scope=device", &url);
    ok(url.device_scope == 1 && url.exp_value == 1
       && url.max.len == 2 && memcmp(url.max.data, "sd", 2) == 0
       && url.v.len == 5 && memcmp(url.v.data, "thumb", 5) == 0,
       "parsed fields are reported");
}


/*
 * Every byte, as a character of a signature and of an id: exactly the
 * URL-safe alphabet decodes, each to its place in it, and ids take that
 * alphabet and '.'.
 */
static void
test_base64_every_byte(void)
{
    int            c, v, bad_sig, bad_id;
    char           in[4], id[2];
    size_t         n;
    const char    *at;
    unsigned char  buf[8];

    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    bad_sig = 0;
    bad_id = 0;

    for (c = 1; c < 256; c++) {
        at = strchr(alphabet, c);

        /* "AA?A": the character's six bits are bits 6 to 11 of 24 */
        in[0] = 'A';
        in[1] = 'A';
        in[2] = (char) c;
        in[3] = 'A';

        if (snapcache_b64url_decode(in, 4, buf, sizeof(buf), &n) == 0) {
            v = ((buf[1] & 0x0f) << 2) | (buf[2] >> 6);

            if (at == NULL || n != 3 || v != at - alphabet) {
                diag("byte %d decoded to %d", c, v);
                bad_sig++;
            }

        } else if (at != NULL) {
            diag("byte %d did not decode", c);
            bad_sig++;
        }

        id[0] = 'a';
        id[1] = (char) c;

        if (snapcache_id_valid(id, 2) != (at != NULL || c == '.')) {
            diag("byte %d as an id character", c);
            bad_id++;
        }
    }

    is_int(bad_sig, 0, "base64url: each of 255 bytes decodes as the "
           "alphabet says");
    is_int(bad_id, 0, "ids: each of 255 bytes is an id character as the "
           "alphabet and '.' say");
}


/*
 * The plain six-bits-at-a-time decoder, as the reference for the one
 * that decodes a group of four at a time: same bytes, same refusals.
 */
static int
b64url_reference(const char *in, size_t len, unsigned char *out,
    size_t *out_len)
{
    size_t       i, n, bits;
    uint32_t     acc;
    const char  *at;

    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    if (len % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        at = in[i] ? strchr(alphabet, in[i]) : NULL;
        if (at == NULL) {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) (at - alphabet);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    if (acc != 0) {
        return -1;
    }

    *out_len = n;
    return 0;
}


/*
 * Every string of two and three characters from the alphabet and '=',
 * after a full group and alone: the tails, where the trailing bits must
 * be zero.
 */
static void
test_base64_tails(void)
{
    int            a, b, c, k, rc, ref, bad;
    char           in[8];
    size_t         len, n, rn;
    unsigned char  buf[8], rbuf[8];

    static const char  chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=";

    bad = 0;

    for (k = 0; k < 2; k++) {
        for (a = 0; chars[a]; a++) {
            for (b = 0; chars[b]; b++) {
                for (c = -1; c < (int) sizeof(chars) - 1; c++) {
                    len = 0;

                    if (k) {
                        memcpy(in, "QUJD", 4);
                        len = 4;
                    }

                    in[len++] = chars[a];
                    in[len++] = chars[b];

                    if (c >= 0) {
                        in[len++] = chars[c];
                    }

                    rc = snapcache_b64url_decode(in, len, buf, sizeof(buf),
                                                 &n);
                    ref = b64url_reference(in, len, rbuf, &rn);

                    if (rc != ref
                        || (rc == 0 && (n != rn || memcmp(buf, rbuf, n))))
                    {
                        if (bad++ < 5) {
                            diag("\"%.*s\": %d against %d", (int) len, in,
                                 rc, ref);
                        }
                    }
                }
            }
        }
    }

    is_int(bad, 0, "base64url: every tail of two and three characters "
           "decodes as the six-bit reference does");
}


static void
test_base64(void)
{
    char           out[64];
    size_t         n, i;
    unsigned char  buf[64], in[32];

    for (i = 0; i < sizeof(in); i++) {
        in[i] = (unsigned char) (i * 37 + 11);
    }

    for (i = 0; i <= sizeof(in); i++) {
        snapcache_b64url_encode(in, i, out);
        ok(snapcache_b64url_decode(out, strlen(out), buf, sizeof(buf), &n) == 0
           && n == i && memcmp(buf, in, i) == 0,
           "base64url round trip of %zu bytes", i);
    }

    snapcache_b64url_encode((const unsigned char *) "\xfb\xff", 2, out);
    is_str(out, "-_8", "the URL-safe alphabet is used, no padding");

    ok(snapcache_b64url_decode("AB", 2, buf, sizeof(buf), &n) != 0,
       "non-zero trailing bits are refused");
    ok(snapcache_b64url_decode("AA", 2, buf, sizeof(buf), &n) == 0 && n == 1,
       "zero trailing bits decode");
    ok(snapcache_b64url_decode("AA==", 4, buf, sizeof(buf), &n) != 0,
       "padding is refused");
    ok(snapcache_b64url_decode("A+/A", 4, buf, sizeof(buf), &n) != 0,
       "the standard alphabet is refused");
    ok(snapcache_b64url_decode("A", 1, buf, sizeof(buf), &n) != 0,
       "an impossible length is refused");
    ok(snapcache_b64url_decode("AAAAAAAA", 8, buf, 5, &n) != 0,
       "output that does not fit is refused");

    test_base64_every_byte();
    test_base64_tails();
}


static void
test_keys(void)
{
    int                    wr;
    char                   err[256], path[] = "/tmp/snapcache-keyXXXXXX";
    char                   hex[200];
    FILE                  *f;
    int                    fd;
    snapcache_sign_key_t   key;

    memset(hex, 'a', 64);
    hex[64] = '\0';
    ok(snapcache_sign_key_parse(&key, "k", hex, 64, err, sizeof(err)) == 0
       && key.key_len == 32 && key.key[0] == 0xaa && key.hmac != NULL,
       "32 bytes of hex is a key, with its HMAC context");
    snapcache_sign_key_free(&key);

    ok(snapcache_sign_key_parse(&key, "k", hex, 62, err, sizeof(err)) != 0,
       "31 bytes is too short: %s", err);
    ok(strstr(err, "31 bytes") != NULL, "the error says how short");
    ok(strstr(err, "aaaa") == NULL, "the error never shows key material");
    ok(key.hmac == NULL && key.key_len == 0 && key.key[0] == 0,
       "and the refused key is left empty");

    hex[10] = 'g';
    ok(snapcache_sign_key_parse(&key, "k", hex, 64, err, sizeof(err)) != 0,
       "non-hex is refused");
    ok(key.key[0] == 0, "with no decoded byte left behind");
    hex[10] = 'a';

    memcpy(hex + 64, "\n", 2);
    ok(snapcache_sign_key_parse(&key, "k", hex, 65, err, sizeof(err)) == 0,
       "a trailing newline is allowed");
    snapcache_sign_key_free(&key);

    memcpy(hex + 64, "\r\n", 3);
    ok(snapcache_sign_key_parse(&key, "k", hex, 66, err, sizeof(err)) == 0,
       "and a trailing CRLF");
    snapcache_sign_key_free(&key);

    memcpy(hex + 64, "\naa", 4);
    ok(snapcache_sign_key_parse(&key, "k", hex, 67, err, sizeof(err)) != 0,
       "a second line is refused");

    ok(snapcache_sign_key_parse(&key, "bad kid", hex, 64, err, sizeof(err))
       != 0, "an invalid key id is refused");

    fd = mkstemp(path);
    f = fdopen(fd, "w");
    memset(hex, 'b', 96);
    hex[96] = '\0';
    fprintf(f, "%s\n", hex);
    fclose(f);

    chmod(path, 0600);
    ok(snapcache_sign_key_load(&key, "k2", path, &wr, err, sizeof(err)) == 0
       && key.key_len == 48 && !wr && key.hmac != NULL,
       "a 48-byte 0600 key file loads");
    snapcache_sign_key_free(&key);

    chmod(path, 0644);
    ok(snapcache_sign_key_load(&key, "k2", path, &wr, err, sizeof(err)) == 0
       && wr, "a world-readable key file is reported as such");
    snapcache_sign_key_free(&key);

    ok(snapcache_sign_key_load(&key, "bad kid", path, &wr, err, sizeof(err))
       != 0 && key.hmac == NULL, "load refuses an invalid key id too");

    unlink(path);
    ok(snapcache_sign_key_load(&key, "k2", path, &wr, err, sizeof(err)) != 0
       && strstr(err, "cannot open") != NULL, "a missing file: %s", err);

    ok(snapcache_sign_key_load(&key, "k2", "/tmp", &wr, err, sizeof(err))
       != 0, "a directory is not a key file");
}


/* Writes s to a fresh 0600 file; returns its path (static). */
static const char *
secret_file(const char *s)
{
    int          fd;
    static char  path[64];

    strcpy(path, "/tmp/snapcache-secretXXXXXX");
    fd = mkstemp(path);

    if (fd == -1 || write(fd, s, strlen(s)) != (ssize_t) strlen(s)) {
        diag("cannot write %s", path);
        exit(1);
    }

    close(fd);

    return path;
}


/* "abab..." of n bytes, then tail, into buf */
static char *
ab_line(char *buf, size_t n, const char *tail)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        memcpy(buf + 2 * i, "ab", 2);
    }

    strcpy(buf + 2 * n, tail);

    return buf;
}


static int
secret_refused(const char *path, const char *why, char *err, size_t size)
{
    snapcache_secret_t  secret;

    memset(&secret, 0xee, sizeof(secret));

    return snapcache_secret_load(&secret, path, "key", NULL, err, size) != 0
           && strstr(err, why) != NULL
           && secret.len == 0 && secret.data[0] == 0;
}


/*
 * The secret loader, alone: what bearer tokens are read with.  It keys
 * no HMAC, so it allocates nothing.
 */
static void
test_secrets(void)
{
    int                  wr;
    char                 err[256], hex[300], fifo[64];
    long                 made;
    size_t               i;
    const char          *path;
    snapcache_secret_t   secret;

    for (i = 0; i < 40; i++) {
        sprintf(hex + 2 * i, "%02X", (unsigned) (i * 7 + 1) & 0xff);
    }

    strcat(hex, "\n");
    path = secret_file(hex);

    made = allocs_made;
    ok(snapcache_secret_load(&secret, path, "key", &wr, err, sizeof(err)) == 0
       && secret.len == 40 && secret.data[0] == 1 && secret.data[39] == 0x12
       && !wr, "a secret of 40 bytes, in upper case hex, loads");
    is_int(allocs_made - made, 0, "and allocates nothing from OpenSSL");
    OPENSSL_cleanse(&secret, sizeof(secret));
    unlink(path);

    path = secret_file(ab_line(hex, 32, ""));
    chmod(path, 0604);
    ok(snapcache_secret_load(&secret, path, "key", &wr, err, sizeof(err)) == 0
       && secret.len == 32 && wr,
       "32 bytes with no newline load, world-readable is said");
    OPENSSL_cleanse(&secret, sizeof(secret));
    unlink(path);

    path = secret_file(ab_line(hex, 31, "\n"));
    ok(secret_refused(path, "31 bytes, at least 32", err, sizeof(err)),
       "31 bytes are refused: %s", err);
    ok(strstr(err, "abab") == NULL, "the reason shows no key material");
    unlink(path);

    ab_line(hex, 32, "\n");
    hex[63] = 'X';
    path = secret_file(hex);
    ok(secret_refused(path, "not hex", err, sizeof(err)),
       "a non-hex digit is refused: %s", err);
    unlink(path);

    path = secret_file(ab_line(hex, 31, "a\n"));
    ok(secret_refused(path, "not hex on one line", err, sizeof(err)),
       "an odd number of digits is refused: %s", err);
    unlink(path);

    ab_line(hex, 33, "\n");
    hex[32] = ' ';
    path = secret_file(hex);
    ok(secret_refused(path, "hex on one line", err, sizeof(err)),
       "a space inside is refused: %s", err);
    unlink(path);

    memset(hex, 'c', 2 * SNAPCACHE_KEY_MAX + 2);
    hex[2 * SNAPCACHE_KEY_MAX + 2] = '\0';
    path = secret_file(hex);
    ok(secret_refused(path, "longer than 64 bytes", err, sizeof(err)),
       "65 bytes are refused: %s", err);
    unlink(path);

    memset(hex, 'c', sizeof(hex) - 1);
    hex[sizeof(hex) - 1] = '\0';
    path = secret_file(hex);
    ok(secret_refused(path, "is too long", err, sizeof(err)),
       "a file longer than any secret is refused: %s", err);
    unlink(path);

    path = secret_file("");
    ok(secret_refused(path, "0 bytes", err, sizeof(err)),
       "an empty file is refused: %s", err);
    unlink(path);

    ok(secret_refused("/tmp", "is not a regular file", err, sizeof(err)),
       "a directory is refused: %s", err);
    ok(secret_refused("/dev/zero", "is not a regular file", err, sizeof(err)),
       "a character device is refused: %s", err);

    /* a FIFO with no writer: refused at once, not waited on */
    strcpy(fifo, "/tmp/snapcache-fifoXXXXXX");

    if (mkdtemp(fifo) != NULL) {
        strcat(fifo, "/f");

        if (mkfifo(fifo, 0600) == 0) {
            ok(secret_refused(fifo, "is not a regular file", err,
                              sizeof(err)),
               "a FIFO is refused: %s", err);
            unlink(fifo);

        } else {
            ok(0, "mkfifo %s", fifo);
        }

        *strrchr(fifo, '/') = '\0';
        rmdir(fifo);
    }

    ok(secret_refused("/nonexistent/secret", "cannot open key file", err,
                      sizeof(err)),
       "a missing file is refused: %s", err);
}


static void
test_hex(void)
{
    unsigned char  out[8];

    memset(out, 0xee, sizeof(out));
    ok(snapcache_hex_decode("", 0, out, 0) == 0 && out[0] == 0xee,
       "hex: nothing decodes to nothing");

    ok(snapcache_hex_decode("09afAF", 6, out, 3) == 0
       && out[0] == 0x09 && out[1] == 0xaf && out[2] == 0xaf,
       "hex: digits and both cases, exactly filling out");

    ok(snapcache_hex_decode("0123456789abcdef", 16, out, 8) == 0
       && out[0] == 0x01 && out[7] == 0xef, "hex: every digit");

    ok(snapcache_hex_decode("0a0", 3, out, sizeof(out)) != 0,
       "hex: an odd length is refused");
    ok(snapcache_hex_decode("0a0b", 4, out, 1) != 0,
       "hex: output that does not fit is refused");
    ok(snapcache_hex_decode("0a0b", 2, out, 1) == 0 && out[0] == 0x0a,
       "hex: only len characters are read");

    /* the neighbours of the digit ranges, in ASCII and with bit 5 set */
    ok(snapcache_hex_decode("/0", 2, out, 1) != 0, "hex: '/' is refused");
    ok(snapcache_hex_decode("0:", 2, out, 1) != 0, "hex: ':' is refused");
    ok(snapcache_hex_decode("@0", 2, out, 1) != 0, "hex: '@' is refused");
    ok(snapcache_hex_decode("0`", 2, out, 1) != 0, "hex: '`' is refused");
    ok(snapcache_hex_decode("g0", 2, out, 1) != 0, "hex: 'g' is refused");
    ok(snapcache_hex_decode("0G", 2, out, 1) != 0, "hex: 'G' is refused");
    ok(snapcache_hex_decode("\x10" "0", 2, out, 1) != 0,
       "hex: a control character is refused");
    ok(snapcache_hex_decode("\xc1" "0", 2, out, 1) != 0,
       "hex: a byte above 0x7f is refused");
    ok(snapcache_hex_decode("0\0", 2, out, 1) != 0,
       "hex: a NUL inside is refused");
    ok(snapcache_hex_decode(" a", 2, out, 1) != 0, "hex: a space is refused");
    ok(snapcache_hex_decode("+a", 2, out, 1) != 0, "hex: a sign is refused");

    memset(out, 0xee, sizeof(out));
    ok(snapcache_hex_decode("1122334z", 8, out, sizeof(out)) != 0
       && out[0] == 0 && out[1] == 0 && out[2] == 0,
       "hex: a late bad digit leaves no decoded byte behind");
}


static void
test_verify(void)
{
    int                    rc;
    char                   target[512], bad[512], *sig;
    size_t                 i, len, n;
    snapcache_url_t        url;
    snapcache_sign_key_t   keys[2];
    static const char      alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    len = snapcache_sign_mint(&test_key, "acct", "dev", "snap", NOW + 300,
                              NULL, target, sizeof(target));
    ok(len > 0, "mint: %s", target);
    is_int(verify_target(target, NOW, 3600), SNAPCACHE_SIGN_OK,
           "a minted URL verifies");

    sig = strstr(target, "sig=") + 4;
    n = 0;

    for (i = 0; i < SNAPCACHE_SIG_B64_LEN; i++) {
        const char  *c;

        strcpy(bad, target);

        for (c = alphabet; *c; c++) {
            if (*c == sig[i]) {
                continue;
            }

            bad[sig - target + i] = *c;

            rc = verify_target(bad, NOW, 3600);
            if (rc != SNAPCACHE_SIGN_SIGNATURE) {
                diag("sig[%zu] = '%c' gave %d", i, *c, rc);
                n++;
            }
        }
    }

    is_int(n, 0, "every other character at every signature position fails");

    is_int(verify_target(target, NOW + 301, 3600), SNAPCACHE_SIGN_EXPIRED,
           "now > exp is expired");
    is_int(verify_target(target, NOW + 300, 3600), SNAPCACHE_SIGN_OK,
           "now == exp is still valid");
    is_int(verify_target(target, NOW, 299), SNAPCACHE_SIGN_LIFETIME,
           "exp - now above the maximum lifetime is refused");
    is_str(snapcache_sign_reason(SNAPCACHE_SIGN_LIFETIME), "expired",
           "and reported as expired");
    is_int(verify_target(target, NOW, 0), SNAPCACHE_SIGN_OK,
           "lifetime 0 means unbounded");

    strcpy(bad, target);
    memcpy(strstr(bad, "kid=") + 4, "zz", 2);
    rc = parse(bad, &url);
    is_int(snapcache_sign_verify(&url, &test_key, 1, NOW, 0),
           SNAPCACHE_SIGN_KEY, "an unknown kid is reported as key");

    /* rotation: the URL verifies while its key is anywhere in the set */
    keys[0] = test_key;
    snapcache_sign_key_parse(&keys[1], "other",
        "0101010101010101010101010101010101010101010101010101010101010101",
        64, bad, sizeof(bad));
    parse(target, &url);
    is_int(snapcache_sign_verify(&url, &keys[1], 1, NOW, 0),
           SNAPCACHE_SIGN_KEY, "a set without its kid refuses it");
    is_int(snapcache_sign_verify(&url, keys, 2, NOW, 0), SNAPCACHE_SIGN_OK,
           "a set with its kid accepts it");

    /* a signature made with another key under this kid */
    strcpy(keys[1].kid, test_key.kid);
    keys[1].kid_len = test_key.kid_len;
    is_int(snapcache_sign_verify(&url, &keys[1], 1, NOW, 0),
           SNAPCACHE_SIGN_SIGNATURE, "the same kid with another key fails");
    snapcache_sign_key_free(&keys[1]);

    /* device grant */
    len = snapcache_sign_mint(&test_key, "acct", "dev", "*", NOW + 300, "sd",
                              target, sizeof(target));
    ok(len > 0 && strstr(target, "scope=device") != NULL
       && strncmp(target, "acct/dev/latest?", 16) == 0,
       "a device grant is minted: %s", target);
    is_int(verify_target(target, NOW, 0), SNAPCACHE_SIGN_OK,
           "it verifies for latest");

    strcpy(bad, target);
    memcpy(strstr(bad, "latest"), "other1", 6);
    is_int(verify_target(bad, NOW, 0), SNAPCACHE_SIGN_OK,
           "and for any other snapshot");

    strcpy(bad, target);
    memcpy(strstr(bad, "dev/"), "deV/", 4);
    is_int(verify_target(bad, NOW, 0), SNAPCACHE_SIGN_SIGNATURE,
           "but not for another device");

    ok(snapcache_sign_mint(&test_key, "acct", "dev", "s/x", NOW, NULL,
                           target, sizeof(target)) == 0,
       "mint refuses an invalid id");
    ok(snapcache_sign_mint(&test_key, "acct", "dev", "s", NOW, NULL,
                           target, 20) == 0,
       "mint refuses a buffer that is too small");
}


static void
test_field_separation(void)
{
    char             a[SNAPCACHE_MESSAGE_MAX], b[SNAPCACHE_MESSAGE_MAX];
    size_t           la, lb;
    unsigned char    ma[SNAPCACHE_SIG_LEN], mb[SNAPCACHE_SIG_LEN];

    la = snapcache_sign_message(a, sizeof(a), str("k"), str("1"), str("ab"),
                                str("c"), str("x"), str(""));
    lb = snapcache_sign_message(b, sizeof(b), str("k"), str("1"), str("a"),
                                str("bc"), str("x"), str(""));

    ok(la == lb && memcmp(a, b, la) != 0,
       "ab/c and a/bc give different messages");

    snapcache_sign_hmac(&test_key, a, la, ma);
    snapcache_sign_hmac(&test_key, b, lb, mb);
    ok(memcmp(ma, mb, sizeof(ma)) != 0, "and different signatures");

    ok(snapcache_sign_message(a, 20, str("k"), str("1"), str("ab"), str("c"),
                              str("x"), str("")) == 0,
       "a message that does not fit is refused");
}


/* A reference HMAC: OpenSSL's one-shot call, with no prepared state. */
static int
hmac_matches(const snapcache_sign_key_t *key, const unsigned char *raw,
    size_t raw_len, const char *msg, size_t len)
{
    unsigned int   n;
    unsigned char  want[SNAPCACHE_SIG_LEN], got[SNAPCACHE_SIG_LEN];

    HMAC(EVP_sha256(), raw, (int) raw_len, (const unsigned char *) msg, len,
         want, &n);
    snapcache_sign_hmac(key, msg, len, got);

    return n == SNAPCACHE_SIG_LEN && memcmp(want, got, n) == 0;
}


/*
 * The keyed EVP_MAC context gives the same MAC as HMAC() for any key
 * length and message, from several threads at once, and a key without
 * one (filled in by hand) still signs correctly.
 */
static void
test_prekeyed_hmac(void)
{
    int                    i, j, bad, len, klen;
    char                   hex[2 * 64 + 1], msg[300], err[128];
    unsigned char          raw[64];
    snapcache_sign_key_t   key, bare;

    bad = 0;
    srand(7);

    for (i = 0; i < 2000; i++) {
        klen = 32 + rand() % 33;

        for (j = 0; j < klen; j++) {
            raw[j] = (unsigned char) rand();
            sprintf(hex + 2 * j, "%02x", raw[j]);
        }

        len = rand() % (int) sizeof(msg);
        for (j = 0; j < len; j++) {
            msg[j] = (char) rand();
        }

        if (snapcache_sign_key_parse(&key, "k", hex, (size_t) (2 * klen),
                                     err, sizeof(err))
            != 0)
        {
            bad++;
            continue;
        }

        if (!hmac_matches(&key, raw, (size_t) klen, msg, (size_t) len)) {
            bad++;
        }

        bare = key;
        bare.hmac = NULL;

        if (!hmac_matches(&bare, raw, (size_t) klen, msg, (size_t) len)) {
            bad++;
        }

        snapcache_sign_key_free(&key);
    }

    ok(bad == 0, "the keyed EVP_MAC matches HMAC() for 2000 keys of 32-64 "
       "bytes and messages of 0-299 bytes (%d differ)", bad);

    ok(key.hmac == NULL && key.key_len == 0 && key.key[0] == 0,
       "freeing a key wipes it");
}


typedef struct {
    snapcache_sign_key_t  *key;
    int                    bad;
} hmac_job_t;


static void *
hmac_worker(void *arg)
{
    hmac_job_t    *job = arg;
    int            i;
    char           msg[64];
    unsigned int   n;
    unsigned char  want[SNAPCACHE_SIG_LEN], got[SNAPCACHE_SIG_LEN];

    for (i = 0; i < 20000; i++) {
        n = (unsigned int) snprintf(msg, sizeof(msg),
                                    "snapcache1\nkid1\n%d\na\nb\nc\n", i);
        HMAC(EVP_sha256(), job->key->key, (int) job->key->key_len,
             (const unsigned char *) msg, n, want, NULL);
        snapcache_sign_hmac(job->key, msg, n, got);

        if (memcmp(want, got, sizeof(got)) != 0) {
            job->bad++;
        }
    }

    return NULL;
}


/*
 * More threads at once than a key's pool of contexts holds: those that
 * find it empty work on copies of their own.  Every context goes when
 * the key does.
 */
#define HMAC_THREADS  (SNAPCACHE_HMAC_POOL + 4)

static void
test_hmac_threads(void)
{
    int                   i, bad;
    long                  live;
    char                  err[128];
    pthread_t             th[HMAC_THREADS];
    hmac_job_t            job[HMAC_THREADS];
    snapcache_sign_key_t  key;

    live = allocs_live;

    snapcache_sign_key_parse(&key, "kid1",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        64, err, sizeof(err));

    for (i = 0; i < HMAC_THREADS; i++) {
        job[i].key = &key;
        job[i].bad = 0;
        pthread_create(&th[i], NULL, hmac_worker, &job[i]);
    }

    bad = 0;

    for (i = 0; i < HMAC_THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += job[i].bad;
    }

    ok(bad == 0, "%d threads x 20000 signatures with one key: all right",
       HMAC_THREADS);

    snapcache_sign_key_free(&key);
    is_int(allocs_live - live, 0,
           "the key's contexts, pooled or not, are all freed with it");
}


/*
 * The pool itself, driven by hand: a context taken from it allocates
 * nothing, one given back to a full pool is freed, and every MAC from
 * any of them is HMAC()'s, for keys longer than the block too.
 */
static void
test_hmac_pool(void)
{
    int                i, bad;
    long               live, made;
    unsigned int       n;
    unsigned char      key[100], want[32], got[32];
    EVP_MAC_CTX       *ctx[SNAPCACHE_HMAC_POOL + 2];
    snapcache_hmac_t  *h;

    for (i = 0; i < (int) sizeof(key); i++) {
        key[i] = (unsigned char) (i * 13);
    }

    live = allocs_live;
    bad = 0;

    h = snapcache_hmac_new(key, sizeof(key));
    ok(h != NULL, "a 100-byte key is keyed");
    if (h == NULL) {
        return;
    }

    for (i = 0; i < SNAPCACHE_HMAC_POOL + 2; i++) {
        ctx[i] = snapcache_hmac_take(h);
        bad += ctx[i] == NULL;
    }

    for (i = 0; i < SNAPCACHE_HMAC_POOL + 2; i++) {
        snapcache_hmac_give(h, ctx[i]);
    }

    made = allocs_made;
    ctx[0] = snapcache_hmac_take(h);
    is_int(allocs_made - made, 0, "a pooled context is taken without "
           "allocating");
    snapcache_hmac_give(h, ctx[0]);

    HMAC(EVP_sha256(), key, (int) sizeof(key), (const unsigned char *) "m", 1,
         want, &n);

    for (i = 0; i < SNAPCACHE_HMAC_POOL + 2; i++) {
        bad += snapcache_hmac(h, "m", 1, got) != 0
               || memcmp(want, got, sizeof(got)) != 0;
    }

    ok(bad == 0, "every context of the pool gives HMAC()'s MAC");

    snapcache_hmac_free(h);
    is_int(allocs_live - live, 0, "the %d contexts beyond the pool's %d "
           "were freed when given back, the rest with the key", 2,
           SNAPCACHE_HMAC_POOL);
}


/*
 * A verification allocates nothing that outlives it: the contexts it
 * takes go back to the key's pool, and go with the key.
 */
static void
test_hmac_allocs(void)
{
    int                   i, bad;
    long                  live, pooled;
    char                  err[128], target[512];
    snapcache_url_t       url;
    snapcache_sign_key_t  key;

    live = allocs_live;

    snapcache_sign_key_parse(&key, "kid1",
        "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c",
        64, err, sizeof(err));
    snapcache_sign_mint(&key, "acct", "dev", "snap", NOW + 60, NULL, target,
                        sizeof(target));
    parse(target, &url);

    bad = snapcache_sign_verify(&url, &key, 1, NOW, 0) != SNAPCACHE_SIGN_OK;
    pooled = allocs_live;

    for (i = 0; i < 1000; i++) {
        bad += snapcache_sign_verify(&url, &key, 1, NOW, 0)
               != SNAPCACHE_SIGN_OK;
    }

    ok(bad == 0, "1000 verifications with one key");
    is_int(allocs_live - pooled, 0, "leave nothing allocated behind");

    snapcache_sign_key_free(&key);
    is_int(allocs_live - live, 0, "and the key's free returns all it took");
}


int
main(void)
{
    char  err[128];

    /* before OpenSSL's first allocation, or it refuses */
    ok(CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free),
       "OpenSSL's allocations are counted");

    snapcache_sign_key_parse(&test_key, "kid1",
        "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c",
        64, err, sizeof(err));

    test_vectors();
    test_parse_paths();
    test_parse_queries();
    test_base64();
    test_keys();
    test_secrets();
    test_hex();
    test_verify();
    test_field_separation();
    test_prekeyed_hmac();
    test_hmac_threads();
    test_hmac_pool();
    test_hmac_allocs();

    snapcache_sign_key_free(&test_key);

    return done_testing();
}
