
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

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sign/snapcache_sign.h"
#include "t/unit/tap.h"


#define NOW  1700000000


static snapcache_sign_key_t  test_key;


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
       && key.key_len == 32 && key.key[0] == 0xaa,
       "32 bytes of hex is a key");

    ok(snapcache_sign_key_parse(&key, "k", hex, 62, err, sizeof(err)) != 0,
       "31 bytes is too short: %s", err);
    ok(strstr(err, "31 bytes") != NULL, "the error says how short");
    ok(strstr(err, "aaaa") == NULL, "the error never shows key material");

    hex[10] = 'g';
    ok(snapcache_sign_key_parse(&key, "k", hex, 64, err, sizeof(err)) != 0,
       "non-hex is refused");
    hex[10] = 'a';

    memcpy(hex + 64, "\n", 2);
    ok(snapcache_sign_key_parse(&key, "k", hex, 65, err, sizeof(err)) == 0,
       "a trailing newline is allowed");

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
       && key.key_len == 48 && !wr, "a 48-byte 0600 key file loads");

    chmod(path, 0644);
    ok(snapcache_sign_key_load(&key, "k2", path, &wr, err, sizeof(err)) == 0
       && wr, "a world-readable key file is reported as such");

    unlink(path);
    ok(snapcache_sign_key_load(&key, "k2", path, &wr, err, sizeof(err)) != 0
       && strstr(err, "cannot open") != NULL, "a missing file: %s", err);

    ok(snapcache_sign_key_load(&key, "k2", "/tmp", &wr, err, sizeof(err))
       != 0, "a directory is not a key file");
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
 * The prepared HMAC states give the same MAC as HMAC() for any key length
 * and message, from several threads at once, and a key without prepared
 * states (zeroed, or freed and parsed again) still signs correctly.
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
        bare.inner = NULL;
        bare.outer = NULL;

        if (!hmac_matches(&bare, raw, (size_t) klen, msg, (size_t) len)) {
            bad++;
        }

        snapcache_sign_key_free(&key);
    }

    ok(bad == 0, "prepared HMAC states match HMAC() for 2000 keys of 32-64 "
       "bytes and messages of 0-299 bytes (%d differ)", bad);

    ok(key.inner == NULL && key.key_len == 0 && key.key[0] == 0,
       "freeing a key wipes it");
}


static void *
hmac_worker(void *arg)
{
    int           i, *bad = arg;
    char          msg[64];
    unsigned int  n;
    unsigned char want[SNAPCACHE_SIG_LEN], got[SNAPCACHE_SIG_LEN];

    for (i = 0; i < 20000; i++) {
        n = (unsigned int) snprintf(msg, sizeof(msg),
                                    "snapcache1\nkid1\n%d\na\nb\nc\n", i);
        HMAC(EVP_sha256(), test_key.key, (int) test_key.key_len,
             (const unsigned char *) msg, n, want, NULL);
        snapcache_sign_hmac(&test_key, msg, n, got);

        if (memcmp(want, got, sizeof(got)) != 0) {
            (*bad)++;
        }
    }

    return NULL;
}


static void
test_hmac_threads(void)
{
    int        i, bad[4];
    pthread_t  th[4];

    for (i = 0; i < 4; i++) {
        bad[i] = 0;
        pthread_create(&th[i], NULL, hmac_worker, &bad[i]);
    }

    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }

    ok(bad[0] + bad[1] + bad[2] + bad[3] == 0,
       "4 threads x 20000 signatures with one key: all right");
}


int
main(void)
{
    char  err[128];

    snapcache_sign_key_parse(&test_key, "kid1",
        "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c",
        64, err, sizeof(err));

    test_vectors();
    test_parse_paths();
    test_parse_queries();
    test_base64();
    test_keys();
    test_verify();
    test_field_separation();
    test_prekeyed_hmac();
    test_hmac_threads();

    snapcache_sign_key_free(&test_key);

    return done_testing();
}
