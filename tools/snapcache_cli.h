
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache CLI: what the commands share.  tools/snapcache.c parses every
 * command's options, in one place, into a snapcache_cli_t; each command
 * takes that and returns its exit status.
 */

#ifndef SNAPCACHE_CLI_H
#define SNAPCACHE_CLI_H

#include <stddef.h>
#include <stdint.h>


/* the Makefile defines it from debian/changelog, the one place it lives */
#ifndef SNAPCACHE_VERSION
#error "SNAPCACHE_VERSION is not defined: build the CLI with make"
#endif


/* Exit statuses, the same for every command (docs/admin.md, snapcache(1)) */
#define SNAPCACHE_EXIT_OK        0
#define SNAPCACHE_EXIT_FAILED    1   /* a node, a URL or a record failed */
#define SNAPCACHE_EXIT_USAGE     2   /* bad options, or a file they name */
#define SNAPCACHE_EXIT_DAMAGED   3   /* inspect: the LMDB file is damaged */


#define SNAPCACHE_CLI_TIMEOUT_MS     10000
#define SNAPCACHE_CLI_RETRIES        2
#define SNAPCACHE_CLI_MAX_LIFETIME   3600    /* snapcache_url_max_lifetime */


typedef struct {
    const char   *command;

    /* positional arguments: inspect's store, verify's URL */
    char        **args;
    size_t        nargs;

    int           json;
    int           from_stdin;

    /* sign, verify, purge, inspect */
    const char   *key_file;
    const char   *kid;
    const char   *account;
    const char   *device;
    const char   *snapshot;
    const char   *max;
    const char   *base;
    const char   *ttl;
    const char   *exp;
    const char   *prefix;
    int64_t       max_lifetime;

    /* --key kid=FILE, repeated */
    const char  **keys;
    size_t        nkeys;

    /* purge, stats, health; from the flags, else SNAPCACHE_NODES */
    char        **nodes;
    size_t        nnodes;
    char         *nodes_env;           /* the copy that nodes point into */
    const char   *token_file;          /* else SNAPCACHE_TOKEN_FILE */
    const char   *admin_path;
    const char   *health_path;
    long          timeout_ms;
    const char   *cacert;              /* else SNAPCACHE_CACERT */
    int           retries;
    int           retries_set;
} snapcache_cli_t;


int snapcache_cmd_sign(snapcache_cli_t *cli);
int snapcache_cmd_verify(snapcache_cli_t *cli);
int snapcache_cmd_inspect(snapcache_cli_t *cli);
int snapcache_cmd_purge(snapcache_cli_t *cli);
int snapcache_cmd_stats(snapcache_cli_t *cli);
int snapcache_cmd_health(snapcache_cli_t *cli);

/*
 * "90", "90s", "10m", "1h30m", "1d": seconds, as nginx reads a time
 * (units s, m, h, d, w).  Returns -1 on anything else.
 */
int snapcache_cli_parse_time(const char *s, int64_t *out);

/* Prints "snapcache <command>: <message>" on stderr. */
void snapcache_cli_error(const snapcache_cli_t *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* SNAPCACHE_CLI_H */
