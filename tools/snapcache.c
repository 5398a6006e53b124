
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the command-line tool.  sign mints URLs; inspect reads a
 * store offline (tools/snapcache_inspect.c); purge and stats call the
 * admin API of every node given (tools/snapcache_admin.c).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sign/snapcache_sign.h"
#include "tools/snapcache_cli.h"


static void
usage(void)
{
    fprintf(stderr,
        "usage: snapcache <command> [options]\n"
        "\n"
        "  sign --key-file F --kid K --account A --device D\n"
        "       --snapshot S|'*' (--ttl 10m | --exp UNIX) [--max V]\n"
        "       [--base URL]\n"
        "      prints a signed URL; snapshot '*' mints a device grant\n"
        "  inspect <store dir> [--account A --device D]\n"
        "      lists and checks the records of an LMDB store\n"
        "  purge --node URL [--node URL ...] --token-file F\n"
        "        (--account A [--device D [--snapshot S]] | --stdin)\n"
        "        [--timeout SECONDS]\n"
        "      purges on every node at once; one line per node; exits 1\n"
        "      if any node failed; --stdin reads \"A [D [S]]\" lines\n"
        "  stats --node URL [--node URL ...] --token-file F"
        " [--timeout SECONDS]\n"
        "      a table of every node's main counters\n");
}


/* "90", "90s", "10m", "2h", "1d": the nginx time units a ttl needs */
static int
parse_ttl(const char *s, int64_t *out)
{
    char       *end;
    long long   v;

    errno = 0;
    v = strtoll(s, &end, 10);

    if (errno != 0 || end == s || v <= 0) {
        return -1;
    }

    switch (*end) {
    case '\0':
    case 's':
        break;
    case 'm':
        v *= 60;
        break;
    case 'h':
        v *= 3600;
        break;
    case 'd':
        v *= 86400;
        break;
    default:
        return -1;
    }

    if (*end != '\0' && end[1] != '\0') {
        return -1;
    }

    *out = v;
    return 0;
}


static const char *
arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "snapcache: %s needs a value\n", argv[*i]);
        exit(2);
    }

    return argv[++*i];
}


static int
cmd_sign(int argc, char **argv)
{
    int                    i;
    char                   err[256], url[1024];
    int64_t                ttl, exp;
    const char            *key_file, *kid, *account, *device, *snapshot;
    const char            *max, *base, *ttl_s, *exp_s;
    size_t                 n;
    snapcache_sign_key_t   key;

    key_file = kid = account = device = snapshot = max = ttl_s = exp_s = NULL;
    base = "http://127.0.0.1:8080/snap/";

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key-file") == 0) {
            key_file = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--kid") == 0) {
            kid = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--account") == 0) {
            account = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--device") == 0) {
            device = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--snapshot") == 0) {
            snapshot = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--max") == 0) {
            max = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--ttl") == 0) {
            ttl_s = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--exp") == 0) {
            exp_s = arg_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--base") == 0) {
            base = arg_value(argc, argv, &i);
        } else {
            fprintf(stderr, "snapcache sign: unknown option %s\n", argv[i]);
            usage();
            return 2;
        }
    }

    if (key_file == NULL || kid == NULL || account == NULL || device == NULL
        || snapshot == NULL || (ttl_s == NULL && exp_s == NULL))
    {
        usage();
        return 2;
    }

    if (exp_s != NULL) {
        if (parse_ttl(exp_s, &exp) != 0 || strspn(exp_s, "0123456789")
                                           != strlen(exp_s))
        {
            fprintf(stderr, "snapcache sign: --exp wants unix seconds\n");
            return 2;
        }

    } else {
        if (parse_ttl(ttl_s, &ttl) != 0) {
            fprintf(stderr, "snapcache sign: bad --ttl \"%s\"\n", ttl_s);
            return 2;
        }

        exp = (int64_t) time(NULL) + ttl;
    }

    if (snapcache_sign_key_load(&key, kid, key_file, NULL, err, sizeof(err))
        != 0)
    {
        fprintf(stderr, "snapcache sign: %s\n", err);
        return 1;
    }

    n = snapcache_sign_mint(&key, account, device, snapshot, exp, max, url,
                            sizeof(url));
    snapcache_sign_key_free(&key);

    if (n == 0) {
        fprintf(stderr, "snapcache sign: ids must match "
                "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}\n");
        return 2;
    }

    printf("%s%s\n", base, url);

    return 0;
}


int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }

    if (strcmp(argv[1], "sign") == 0) {
        return cmd_sign(argc - 1, argv + 1);
    }

    if (strcmp(argv[1], "inspect") == 0) {
        return snapcache_cmd_inspect(argc - 1, argv + 1);
    }

    if (strcmp(argv[1], "purge") == 0) {
        return snapcache_cmd_purge(argc - 1, argv + 1);
    }

    if (strcmp(argv[1], "stats") == 0) {
        return snapcache_cmd_stats(argc - 1, argv + 1);
    }

    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage();
        return 0;
    }

    fprintf(stderr, "snapcache: unknown command \"%s\"\n", argv[1]);
    usage();

    return 2;
}
