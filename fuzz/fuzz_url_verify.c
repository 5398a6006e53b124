
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * libFuzzer target: the raw-URL parser and the verifier.  The input is a
 * request target after the location prefix, "account/device/snapshot?query".
 * Whatever the input, parsing must not read out of bounds, and a URL
 * must never verify unless it carries the exact signature of its fields.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sign/snapcache_sign.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          rc;
    char                        *buf, *q, err[128], target[1024];
    size_t                       n;
    snapcache_url_t              url;
    static snapcache_sign_key_t  key;
    static int                   ready;

    if (!ready) {
        snapcache_sign_key_parse(&key, "k1",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            64, err, sizeof(err));
        ready = 1;
    }

    /* an exact-size heap copy, so ASan sees any over-read */
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);
    q = memchr(buf, '?', size);

    if (q) {
        rc = snapcache_url_parse(buf, (size_t) (q - buf), q + 1,
                                 size - (size_t) (q - buf) - 1, &url);
    } else {
        rc = snapcache_url_parse(buf, size, NULL, 0, &url);
    }

    if (rc == SNAPCACHE_URL_OK) {
        rc = snapcache_sign_verify(&url, &key, 1, 1700000000, 3600);

        if (rc == SNAPCACHE_SIGN_OK) {
            char  acct[80], dev[80], snap[80], max[80];

            /* a verified URL must be the one we would mint ourselves */
            memcpy(acct, url.account.data, url.account.len);
            acct[url.account.len] = '\0';
            memcpy(dev, url.device.data, url.device.len);
            dev[url.device.len] = '\0';
            memcpy(snap, url.device_scope ? "*" : url.snapshot.data,
                   url.device_scope ? 1 : url.snapshot.len);
            snap[url.device_scope ? 1 : url.snapshot.len] = '\0';
            memcpy(max, url.max.data, url.max.len);
            max[url.max.len] = '\0';

            n = snapcache_sign_mint(&key, acct, dev, snap, url.exp_value,
                                    max, target, sizeof(target));
            if (n == 0 || strstr(target, "sig=") == NULL
                || strncmp(strstr(target, "sig=") + 4, url.sig.data,
                           SNAPCACHE_SIG_B64_LEN) != 0)
            {
                abort();
            }
        }
    }

    free(buf);

    return 0;
}
