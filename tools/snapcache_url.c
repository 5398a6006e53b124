
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache sign and snapcache verify: signed URLs, through sign/'s own
 * parser and verifier, so that verify's verdict is the module's.
 *
 * verify says which of the module's checks a URL fails, in the order the
 * module runs them: the canonical form (400 malformed), the kid (403
 * key), the signature (403 signature), then the expiry and the lifetime
 * cap (403 expired).  It never prints the signature or a key: a reason
 * names the check, the kid and the times, nothing else of the URL.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sign/snapcache_sign.h"
#include "tools/snapcache_cli.h"


#define SIGN_BASE        "http://127.0.0.1:8080/snap/"
#define VERIFY_PREFIX    "/snap/"


typedef struct {
    const char  *check;         /* "ok", "form", "kid", ... */
    char         reason[256];
    int          status;        /* what nginx answers; 0 when it verifies */
    const char  *body;          /* the one-word body of that answer */
    int          parsed;        /* url below is filled in */
} verdict_t;


/* "kid=FILE", as --key gives it: the key, loaded as sign/ loads it. */
static int
load_key_spec(snapcache_cli_t *cli, const char *spec,
    snapcache_sign_key_t *key)
{
    char         err[512], kid[SNAPCACHE_ID_MAX + 1];
    size_t       n;
    const char  *eq;

    eq = strchr(spec, '=');

    if (eq == NULL || eq == spec || eq[1] == '\0'
        || (n = (size_t) (eq - spec)) > SNAPCACHE_ID_MAX)
    {
        snapcache_cli_error(cli, "--key wants KID=FILE, not \"%s\"", spec);
        return -1;
    }

    memcpy(kid, spec, n);
    kid[n] = '\0';

    if (snapcache_sign_key_load(key, kid, eq + 1, NULL, err, sizeof(err))
        != 0)
    {
        snapcache_cli_error(cli, "--key %s: %s", kid, err);
        return -1;
    }

    return 0;
}


int
snapcache_cmd_sign(snapcache_cli_t *cli)
{
    char                   err[512], url[1024];
    size_t                 n;
    int64_t                ttl, exp;
    const char            *p;
    snapcache_sign_key_t   key;

    if (cli->nkeys > 0
        ? cli->nkeys > 1 || cli->key_file != NULL || cli->kid != NULL
        : cli->key_file == NULL || cli->kid == NULL)
    {
        snapcache_cli_error(cli, "give the key once: --key KID=FILE, or "
                            "--key-file FILE and --kid KID");
        return SNAPCACHE_EXIT_USAGE;
    }

    if (cli->account == NULL || cli->device == NULL
        || cli->snapshot == NULL)
    {
        snapcache_cli_error(cli, "--account, --device and --snapshot are "
                            "needed");
        return SNAPCACHE_EXIT_USAGE;
    }

    if ((cli->ttl == NULL) == (cli->exp == NULL)) {
        snapcache_cli_error(cli, "give one of --ttl and --exp");
        return SNAPCACHE_EXIT_USAGE;
    }

    if (cli->exp != NULL) {
        for (p = cli->exp; *p >= '0' && *p <= '9'; p++) { /* void */ }

        if (*p != '\0' || snapcache_cli_parse_time(cli->exp, &exp) != 0) {
            snapcache_cli_error(cli, "--exp wants unix seconds");
            return SNAPCACHE_EXIT_USAGE;
        }

    } else {
        if (snapcache_cli_parse_time(cli->ttl, &ttl) != 0 || ttl == 0) {
            snapcache_cli_error(cli, "bad --ttl \"%s\" (e.g. 90s, 10m, 2h)",
                                cli->ttl);
            return SNAPCACHE_EXIT_USAGE;
        }

        exp = (int64_t) time(NULL) + ttl;
    }

    if (cli->nkeys > 0) {
        if (load_key_spec(cli, cli->keys[0], &key) != 0) {
            return SNAPCACHE_EXIT_USAGE;
        }

    } else if (snapcache_sign_key_load(&key, cli->kid, cli->key_file, NULL,
                                       err, sizeof(err))
               != 0)
    {
        snapcache_cli_error(cli, "%s", err);
        return SNAPCACHE_EXIT_USAGE;
    }

    n = snapcache_sign_mint(&key, cli->account, cli->device, cli->snapshot,
                            exp, cli->max, url, sizeof(url));
    snapcache_sign_key_free(&key);

    if (n == 0) {
        snapcache_cli_error(cli, "ids must match "
                            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}");
        return SNAPCACHE_EXIT_USAGE;
    }

    printf("%s%s\n", cli->base ? cli->base : SIGN_BASE, url);

    return SNAPCACHE_EXIT_OK;
}


/*
 * The part of the target after the location's prefix, as the module
 * takes it from the request line: http://host is dropped, and a path
 * that does not start with the prefix never reaches the module's parser.
 */
static const char *
after_prefix(const char *target, const char *prefix)
{
    const char  *p;

    if (strncmp(target, "http://", 7) == 0
        || strncmp(target, "https://", 8) == 0)
    {
        p = strstr(target, "://") + 3;
        p += strcspn(p, "/?#");

        if (*p != '/') {
            return NULL;
        }

        target = p;
    }

    if (target[0] != '/') {
        return target;                  /* already relative to the prefix */
    }

    if (strncmp(target, prefix, strlen(prefix)) != 0) {
        return NULL;
    }

    return target + strlen(prefix);
}


static void
judge(verdict_t *v, snapcache_url_t *url, const char *rest,
    const snapcache_sign_key_t *keys, size_t nkeys, int64_t now,
    int64_t max_lifetime, const char *prefix)
{
    int            rc;
    size_t         n;
    const char    *q;
    unsigned char  sig[SNAPCACHE_SIG_B64_LEN];

    v->status = 400;
    v->body = "malformed";
    v->check = "form";

    if (rest == NULL) {
        snprintf(v->reason, sizeof(v->reason), "the path is not under %s, "
                 "the location that --prefix names", prefix);
        return;
    }

    q = strchr(rest, '?');

    rc = snapcache_url_parse(rest, q ? (size_t) (q - rest) : strlen(rest),
                             q ? q + 1 : NULL, q ? strlen(q + 1) : 0, url);

    if (rc != SNAPCACHE_URL_OK) {
        snprintf(v->reason, sizeof(v->reason), "%s",
                 snapcache_url_strerror(rc));
        return;
    }

    v->parsed = 1;

    rc = snapcache_sign_verify(url, keys, nkeys, now, max_lifetime);

    v->status = 403;
    v->body = snapcache_sign_reason(rc);

    switch (rc) {
    case SNAPCACHE_SIGN_OK:
        v->check = "ok";
        v->status = 0;
        v->body = NULL;
        snprintf(v->reason, sizeof(v->reason), "%s %.*s/%.*s%s%.*s, kid "
                 "\"%.*s\", expires in %lld s",
                 url->device_scope ? "a device grant for" : "the snapshot",
                 (int) url->account.len, url->account.data,
                 (int) url->device.len, url->device.data,
                 url->device_scope ? "" : "/",
                 url->device_scope ? 0 : (int) url->snapshot.len,
                 url->snapshot.data, (int) url->kid.len, url->kid.data,
                 (long long) (url->exp_value - now));
        break;

    case SNAPCACHE_SIGN_KEY:
        v->check = "kid";
        snprintf(v->reason, sizeof(v->reason), "no key \"%.*s\" among the "
                 "keys given", (int) url->kid.len, url->kid.data);
        break;

    case SNAPCACHE_SIGN_EXPIRED:
        v->check = "expired";
        snprintf(v->reason, sizeof(v->reason), "exp %lld was %lld s ago",
                 (long long) url->exp_value,
                 (long long) (now - url->exp_value));
        break;

    case SNAPCACHE_SIGN_LIFETIME:
        v->check = "lifetime";
        snprintf(v->reason, sizeof(v->reason), "exp %lld is %lld s ahead, "
                 "beyond the lifetime cap of %lld s",
                 (long long) url->exp_value,
                 (long long) (url->exp_value - now),
                 (long long) max_lifetime);
        break;

    default:
        v->check = "signature";

        if (url->sig.len != SNAPCACHE_SIG_B64_LEN
            || snapcache_b64url_decode(url->sig.data, url->sig.len, sig,
                                       sizeof(sig), &n) != 0
            || n != SNAPCACHE_SIG_LEN)
        {
            snprintf(v->reason, sizeof(v->reason), "sig is not %d "
                     "characters of unpadded base64url",
                     SNAPCACHE_SIG_B64_LEN);

        } else {
            snprintf(v->reason, sizeof(v->reason), "it does not match key "
                     "\"%.*s\": another key, or a field changed after "
                     "signing", (int) url->kid.len, url->kid.data);
        }
    }
}


static json_t *
str_json(snapcache_str_t s)
{
    return json_stringn(s.data, s.len);
}


static void
print_json(const verdict_t *v, const snapcache_url_t *url, int64_t now)
{
    json_t  *o;

    o = json_pack("{s:b, s:s, s:s}", "ok", v->status == 0, "check",
                  v->check, "reason", v->reason);
    if (o == NULL) {
        return;
    }

    if (v->status != 0) {
        json_object_set_new(o, "status", json_integer(v->status));
        json_object_set_new(o, "body", json_string(v->body));
    }

    if (v->parsed) {
        json_object_set_new(o, "account", str_json(url->account));
        json_object_set_new(o, "device", str_json(url->device));
        json_object_set_new(o, "snapshot", str_json(url->snapshot));
        json_object_set_new(o, "scope", json_string(url->device_scope
                                                    ? "device" : "snapshot"));
        json_object_set_new(o, "kid", str_json(url->kid));
        json_object_set_new(o, "exp", json_integer(url->exp_value));
        json_object_set_new(o, "expires_in",
                            json_integer(url->exp_value - now));

        if (url->max.len) {
            json_object_set_new(o, "max", str_json(url->max));
        }

        if (url->v.len) {
            json_object_set_new(o, "v", str_json(url->v));
        }
    }

    json_dumpf(o, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(o);
}


int
snapcache_cmd_verify(snapcache_cli_t *cli)
{
    int                    rc;
    size_t                 i, nkeys;
    int64_t                now;
    verdict_t              v;
    const char            *prefix;
    snapcache_url_t        url;
    snapcache_sign_key_t  *keys;

    if (cli->nkeys == 0) {
        snapcache_cli_error(cli, "give the location's keys: --key KID=FILE, "
                            "once per key");
        return SNAPCACHE_EXIT_USAGE;
    }

    keys = calloc(cli->nkeys, sizeof(snapcache_sign_key_t));
    if (keys == NULL) {
        snapcache_cli_error(cli, "out of memory");
        return SNAPCACHE_EXIT_FAILED;
    }

    rc = SNAPCACHE_EXIT_USAGE;

    for (nkeys = 0; nkeys < cli->nkeys; nkeys++) {
        if (load_key_spec(cli, cli->keys[nkeys], &keys[nkeys]) != 0) {
            goto done;
        }
    }

    prefix = cli->prefix ? cli->prefix : VERIFY_PREFIX;
    now = (int64_t) time(NULL);

    memset(&v, 0, sizeof(v));
    memset(&url, 0, sizeof(url));

    judge(&v, &url, after_prefix(cli->args[0], prefix), keys, nkeys, now,
          cli->max_lifetime, prefix);

    if (cli->json) {
        print_json(&v, &url, now);

    } else if (v.status == 0) {
        printf("ok: %s\n", v.reason);

    } else {
        printf("%s: %s (nginx answers %d %s)\n", v.check, v.reason,
               v.status, v.body);
    }

    rc = v.status == 0 ? SNAPCACHE_EXIT_OK : SNAPCACHE_EXIT_FAILED;

done:

    for (i = 0; i < nkeys; i++) {
        snapcache_sign_key_free(&keys[i]);
    }

    free(keys);

    return rc;
}
