
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the command-line tool.  This file holds the commands' table,
 * their usage, and the one option parser they all share (getopt_long over
 * one table of options, each command allowing its own subset), so that
 * every command spells, checks and documents an option the same way.
 *
 * sign and verify are in tools/snapcache_url.c, inspect in
 * tools/snapcache_inspect.c, purge, stats and health in
 * tools/snapcache_admin.c.
 */

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/snapcache_cli.h"


enum {
    OPT_JSON = 256,
    OPT_KEY_FILE,
    OPT_KID,
    OPT_KEY,
    OPT_ACCOUNT,
    OPT_DEVICE,
    OPT_SNAPSHOT,
    OPT_MAX,
    OPT_BASE,
    OPT_TTL,
    OPT_EXP,
    OPT_PREFIX,
    OPT_MAX_LIFETIME,
    OPT_NODE,
    OPT_TOKEN_FILE,
    OPT_ADMIN_PATH,
    OPT_PATH,
    OPT_TIMEOUT,
    OPT_RETRIES,
    OPT_STDIN,
    OPT_CACERT
};

#define OPT(o)  (1u << ((o) - OPT_JSON))

#define OPTS_NODES  (OPT(OPT_NODE) | OPT(OPT_TIMEOUT) | OPT(OPT_RETRIES)     \
                     | OPT(OPT_JSON) | OPT(OPT_CACERT))
#define OPTS_ADMIN  (OPTS_NODES | OPT(OPT_TOKEN_FILE) | OPT(OPT_ADMIN_PATH))


static const struct option  cli_options[] = {
    { "help",         no_argument,       NULL, 'h' },
    { "version",      no_argument,       NULL, 'V' },
    { "json",         no_argument,       NULL, OPT_JSON },
    { "key-file",     required_argument, NULL, OPT_KEY_FILE },
    { "kid",          required_argument, NULL, OPT_KID },
    { "key",          required_argument, NULL, OPT_KEY },
    { "account",      required_argument, NULL, OPT_ACCOUNT },
    { "device",       required_argument, NULL, OPT_DEVICE },
    { "snapshot",     required_argument, NULL, OPT_SNAPSHOT },
    { "max",          required_argument, NULL, OPT_MAX },
    { "base",         required_argument, NULL, OPT_BASE },
    { "ttl",          required_argument, NULL, OPT_TTL },
    { "exp",          required_argument, NULL, OPT_EXP },
    { "prefix",       required_argument, NULL, OPT_PREFIX },
    { "max-lifetime", required_argument, NULL, OPT_MAX_LIFETIME },
    { "node",         required_argument, NULL, OPT_NODE },
    { "token-file",   required_argument, NULL, OPT_TOKEN_FILE },
    { "admin-path",   required_argument, NULL, OPT_ADMIN_PATH },
    { "path",         required_argument, NULL, OPT_PATH },
    { "timeout",      required_argument, NULL, OPT_TIMEOUT },
    { "retries",      required_argument, NULL, OPT_RETRIES },
    { "stdin",        no_argument,       NULL, OPT_STDIN },
    { "cacert",       required_argument, NULL, OPT_CACERT },
    { NULL, 0, NULL, 0 }
};


typedef struct {
    const char  *name;
    const char  *summary;
    const char  *usage;
    unsigned     options;
    size_t       nargs;         /* positional arguments it needs */
    unsigned     nodes:1;       /* reads SNAPCACHE_NODES */
    unsigned     token:1;       /* reads SNAPCACHE_TOKEN_FILE */
    int          retries;       /* --retries by default */
    int        (*run)(snapcache_cli_t *cli);
} cli_command_t;


#define USAGE_NODES                                                          \
    "  --node URL         a node; repeat for every node (default: the\n"    \
    "                     list in SNAPCACHE_NODES, comma- or space-\n"     \
    "                     separated; flags win over it)\n"                 \
    "  --timeout SECONDS  for each request (default 10)\n"                  \
    "  --cacert FILE      trust the CAs in FILE (PEM) for https:// nodes,\n"\
    "                     instead of the system's (default:\n"           \
    "                     SNAPCACHE_CACERT)\n"

#define USAGE_ADMIN                                                          \
    USAGE_NODES                                                              \
    "  --token-file FILE  the admin bearer token, hex on one line\n"       \
    "                     (default: SNAPCACHE_TOKEN_FILE)\n"               \
    "  --admin-path PATH  the admin location on a node URL that has no\n"  \
    "                     path (default /snapcache-admin)\n"               \
    "  --retries N        tries again a node that failed to answer or\n"   \
    "                     answered 5xx, N times, 0.2 s then 0.4 s ...\n"   \
    "                     later (default 2)\n"

#define USAGE_EXIT                                                           \
    "\nExit status: 0 ok, 1 failed (see above), 2 usage error.\n"


static const cli_command_t  cli_commands[] = {

    { "sign", "mint a signed URL",
      "usage: snapcache sign (--key KID=FILE | --key-file FILE --kid KID)\n"
      "                      --account A --device D --snapshot S|'*'\n"
      "                      (--ttl TIME | --exp UNIX) [--max VARIANT]\n"
      "                      [--base URL]\n"
      "\n"
      "Prints a signed URL. Snapshot '*' mints a device grant, valid for\n"
      "every snapshot of the device.\n"
      "\n"
      "  --key KID=FILE     the signing key's id and its file (hex on one\n"
      "                     line, as snapcache_sign_key reads it)\n"
      "  --key-file FILE, --kid KID   the same, in two options\n"
      "  --ttl TIME         valid for TIME from now: 90s, 10m, 2h, 1d\n"
      "  --exp UNIX         valid until that second\n"
      "  --max VARIANT      the best variant the URL grants\n"
      "  --base URL         put before the path (default\n"
      "                     http://127.0.0.1:8080/snap/)\n"
      "\nExit status: 0 ok, 2 usage error or a key that cannot be read.\n",
      OPT(OPT_KEY) | OPT(OPT_KEY_FILE) | OPT(OPT_KID) | OPT(OPT_ACCOUNT)
      | OPT(OPT_DEVICE) | OPT(OPT_SNAPSHOT) | OPT(OPT_MAX) | OPT(OPT_BASE)
      | OPT(OPT_TTL) | OPT(OPT_EXP),
      0, 0, 0, 0, snapcache_cmd_sign },

    { "verify", "say whether nginx would serve a URL, and which check fails",
      "usage: snapcache verify URL --key KID=FILE [--key KID=FILE ...]\n"
      "                        [--max-lifetime TIME] [--prefix PATH]"
      " [--json]\n"
      "\n"
      "Runs a URL through the module's checks, in the module's order: its\n"
      "form (400 malformed), its kid (403 key), its signature (403\n"
      "signature), its expiry and the lifetime cap (403 expired). Prints\n"
      "one line: \"ok: ...\" or the check that fails and why. The URL may\n"
      "be http://host/snap/A/D/S?..., /snap/A/D/S?... or A/D/S?...; quote\n"
      "it for the shell. Nothing of the signature or the keys is printed.\n"
      "\n"
      "  --key KID=FILE     a key the location has; repeat for each\n"
      "  --max-lifetime TIME  snapcache_url_max_lifetime (default 1h;\n"
      "                     0: no cap)\n"
      "  --prefix PATH      the snapcache location (default /snap/)\n"
      "  --json             one JSON object\n"
      "\nExit status: 0 it verifies, 1 it does not, 2 usage error.\n",
      OPT(OPT_KEY) | OPT(OPT_MAX_LIFETIME) | OPT(OPT_PREFIX) | OPT(OPT_JSON),
      1, 0, 0, 0, snapcache_cmd_verify },

    { "inspect", "list and check an LMDB store, offline and read-only",
      "usage: snapcache inspect STORE-DIR [--account A [--device D]]"
      " [--json]\n"
      "\n"
      "Lists the records of a store (by tag), checks every header and body\n"
      "checksum, then every tree of the LMDB file. It opens the store\n"
      "read-only and writes nothing.\n"
      "\n"
      "  --account A, --device D   only the records of that account or\n"
      "                     device\n"
      "  --json             one JSON object: the records, the summary\n"
      "\nExit status: 0 ok, 1 records fail their checks, 2 usage error or\n"
      "no store, 3 the LMDB file is damaged.\n",
      OPT(OPT_ACCOUNT) | OPT(OPT_DEVICE) | OPT(OPT_JSON),
      1, 0, 0, 0, snapcache_cmd_inspect },

    { "purge", "purge an account, device or snapshot on every node",
      "usage: snapcache purge [--node URL ...] [--token-file FILE]\n"
      "                       (--account A [--device D [--snapshot S]]"
      " | --stdin)\n"
      "                       [--timeout SECONDS] [--retries N] [--json]\n"
      "                       [--cacert FILE]\n"
      "\n"
      "Sends the purge to every node at once and prints one line per node:\n"
      "what it removed and its generation, or its error.\n"
      "\n"
      "  --stdin            scopes from stdin, one a line: \"A [D [S]]\"\n"
      "                     (spaces or '/', '#' comments), 256 a request\n"
      USAGE_ADMIN
      "  --json             one JSON object: per node, per scope\n"
      "\nExit status: 0 every node purged, 1 a node failed after its\n"
      "retries, 2 usage error.\n",
      OPTS_ADMIN | OPT(OPT_ACCOUNT) | OPT(OPT_DEVICE) | OPT(OPT_SNAPSHOT)
      | OPT(OPT_STDIN),
      0, 1, 1, SNAPCACHE_CLI_RETRIES, snapcache_cmd_purge },

    { "stats", "print every node's counters",
      "usage: snapcache stats [--node URL ...] [--token-file FILE]\n"
      "                       [--timeout SECONDS] [--retries N] [--json]\n"
      "                       [--cacert FILE]\n"
      "\n"
      "A table of each node's hits, misses, stale answers, errors, fills,\n"
      "purges, records and bytes in use.\n"
      "\n"
      USAGE_ADMIN
      "  --json             one JSON object: each node's whole answer\n"
      "\nExit status: 0 every node answered, 1 a node failed, 2 usage"
      " error.\n",
      OPTS_ADMIN, 0, 1, 1, SNAPCACHE_CLI_RETRIES, snapcache_cmd_stats },

    { "health", "ask every node's health location",
      "usage: snapcache health [--node URL ...] [--path PATH]\n"
      "                        [--timeout SECONDS] [--retries N] [--json]\n"
      "                        [--cacert FILE]\n"
      "\n"
      "GETs PATH on every node's address (a node URL's own path is\n"
      "replaced) and prints \"ok\" or the reason per node: the one word\n"
      "of a 503 (store, zone, pool), or the error. No token is sent.\n"
      "\n"
      USAGE_NODES
      "  --path PATH        the health location (default /health)\n"
      "  --retries N        tries again a node that did not answer, N\n"
      "                     times (default 0)\n"
      "  --json             one JSON object\n"
      "\nExit status: 0 every node is ok, 1 a node is not, 2 usage error.\n",
      OPTS_NODES | OPT(OPT_PATH), 0, 1, 0, 0, snapcache_cmd_health },
};

#define CLI_NCOMMANDS  (sizeof(cli_commands) / sizeof(cli_commands[0]))


static void
usage_all(FILE *f)
{
    size_t  i;

    fprintf(f, "usage: snapcache <command> [options]\n"
            "       snapcache <command> --help\n"
            "       snapcache --version\n"
            "\ncommands:\n");

    for (i = 0; i < CLI_NCOMMANDS; i++) {
        fprintf(f, "  %-9s %s\n", cli_commands[i].name,
                cli_commands[i].summary);
    }

    fprintf(f, "\nenvironment:\n"
            "  SNAPCACHE_NODES       node URLs, comma- or space-separated,"
            " when no --node\n"
            "  SNAPCACHE_TOKEN_FILE  the admin token's file, when no "
            "--token-file\n"
            "\nExit status: 0 ok, 1 a node, URL or record failed, 2 usage "
            "error,\n3 inspect: the LMDB file is damaged. See snapcache(1).\n");
}


static void
usage_command(const cli_command_t *c, FILE *f)
{
    fputs(c->usage, f);
}


void
snapcache_cli_error(const snapcache_cli_t *cli, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "snapcache %s: ", cli->command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


int
snapcache_cli_parse_time(const char *s, int64_t *out)
{
    char       *end;
    int64_t     total, unit;
    long long   v;

    total = 0;

    if (*s == '\0') {
        return -1;
    }

    while (*s != '\0') {
        if (*s < '0' || *s > '9') {
            return -1;
        }

        errno = 0;
        v = strtoll(s, &end, 10);

        if (errno != 0 || v < 0) {
            return -1;
        }

        switch (*end) {
        case '\0':
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            return -1;
        }

        if (v > (INT64_MAX - total) / unit) {
            return -1;
        }

        total += v * unit;
        s = (*end == '\0') ? end : end + 1;
    }

    *out = total;

    return 0;
}


static int
add_node(snapcache_cli_t *cli, char *url)
{
    char  **p;

    p = realloc(cli->nodes, (cli->nnodes + 1) * sizeof(char *));
    if (p == NULL) {
        return -1;
    }

    cli->nodes = p;
    cli->nodes[cli->nnodes++] = url;

    return 0;
}


static int
add_key(snapcache_cli_t *cli, const char *spec)
{
    const char  **p;

    p = realloc(cli->keys, (cli->nkeys + 1) * sizeof(char *));
    if (p == NULL) {
        return -1;
    }

    cli->keys = p;
    cli->keys[cli->nkeys++] = spec;

    return 0;
}


/* SNAPCACHE_NODES and SNAPCACHE_TOKEN_FILE, where no flag gave them. */
static int
read_environment(snapcache_cli_t *cli, const cli_command_t *c)
{
    char        *p, *save;
    const char  *v;

    if (c->nodes && cli->nnodes == 0) {
        v = getenv("SNAPCACHE_NODES");

        if (v != NULL) {
            cli->nodes_env = strdup(v);
            if (cli->nodes_env == NULL) {
                return -1;
            }

            for (p = strtok_r(cli->nodes_env, ", \t\n", &save); p;
                 p = strtok_r(NULL, ", \t\n", &save))
            {
                if (add_node(cli, p) != 0) {
                    return -1;
                }
            }
        }
    }

    if (c->token && cli->token_file == NULL) {
        v = getenv("SNAPCACHE_TOKEN_FILE");

        if (v != NULL && v[0] != '\0') {
            cli->token_file = v;
        }
    }

    return 0;
}


/* The values the commands share are checked here, once. */
static int
option_value(snapcache_cli_t *cli, int opt, char *v)
{
    char       *end;
    long        n;
    double      secs;

    switch (opt) {
    case OPT_KEY_FILE:    cli->key_file = v;     break;
    case OPT_KID:         cli->kid = v;          break;
    case OPT_ACCOUNT:     cli->account = v;      break;
    case OPT_DEVICE:      cli->device = v;       break;
    case OPT_SNAPSHOT:    cli->snapshot = v;     break;
    case OPT_MAX:         cli->max = v;          break;
    case OPT_BASE:        cli->base = v;         break;
    case OPT_TTL:         cli->ttl = v;          break;
    case OPT_EXP:         cli->exp = v;          break;
    case OPT_TOKEN_FILE:  cli->token_file = v;   break;
    case OPT_ADMIN_PATH:  cli->admin_path = v;   break;
    case OPT_PATH:        cli->health_path = v;  break;
    case OPT_CACERT:      cli->cacert = v;       break;
    case OPT_JSON:        cli->json = 1;         break;
    case OPT_STDIN:       cli->from_stdin = 1;   break;

    case OPT_KEY:
        return add_key(cli, v);

    case OPT_NODE:
        return add_node(cli, v);

    case OPT_PREFIX:
        if (v[0] != '/' || v[strlen(v) - 1] != '/') {
            snapcache_cli_error(cli, "--prefix wants the location's path, "
                                "starting and ending with '/'");
            return -1;
        }

        cli->prefix = v;
        break;

    case OPT_MAX_LIFETIME:
        if (snapcache_cli_parse_time(v, &cli->max_lifetime) != 0) {
            snapcache_cli_error(cli, "bad --max-lifetime \"%s\" (e.g. 1h, "
                                "90m, 0)", v);
            return -1;
        }

        break;

    case OPT_TIMEOUT:
        errno = 0;
        secs = strtod(v, &end);

        if (errno != 0 || end == v || *end != '\0' || !(secs > 0)
            || secs > 3600)
        {
            snapcache_cli_error(cli, "bad --timeout \"%s\" (seconds, more "
                                "than 0, at most 3600)", v);
            return -1;
        }

        cli->timeout_ms = (long) (secs * 1000);
        if (cli->timeout_ms < 1) {
            cli->timeout_ms = 1;
        }

        break;

    case OPT_RETRIES:
        errno = 0;
        n = strtol(v, &end, 10);

        if (errno != 0 || end == v || *end != '\0' || n < 0 || n > 10) {
            snapcache_cli_error(cli, "bad --retries \"%s\" (0 to 10)", v);
            return -1;
        }

        cli->retries = (int) n;
        cli->retries_set = 1;
        break;

    default:
        return -1;
    }

    return 0;
}


static const char *
option_name(int opt)
{
    size_t  i;

    for (i = 0; cli_options[i].name; i++) {
        if (cli_options[i].val == opt) {
            return cli_options[i].name;
        }
    }

    return "?";
}


/*
 * Every command's options: returns -1 to go on, else the exit status
 * (help, version and usage errors end here).
 */
static int
parse_options(const cli_command_t *c, int argc, char **argv,
    snapcache_cli_t *cli)
{
    int  opt;

    opterr = 0;
    optind = 1;

    while ((opt = getopt_long(argc, argv, ":hV", cli_options, NULL)) != -1)
    {
        switch (opt) {
        case 'h':
            usage_command(c, stdout);
            return SNAPCACHE_EXIT_OK;

        case 'V':
            printf("snapcache %s\n", SNAPCACHE_VERSION);
            return SNAPCACHE_EXIT_OK;

        case ':':
            snapcache_cli_error(cli, "%s needs a value", argv[optind - 1]);
            usage_command(c, stderr);
            return SNAPCACHE_EXIT_USAGE;

        case '?':
            /* unknown, ambiguous, or a value given to a flag */
            snapcache_cli_error(cli, "unknown option %s", argv[optind - 1]);
            usage_command(c, stderr);
            return SNAPCACHE_EXIT_USAGE;

        default:
            if (!(c->options & OPT(opt))) {
                snapcache_cli_error(cli, "--%s is not an option of %s",
                                    option_name(opt), c->name);
                usage_command(c, stderr);
                return SNAPCACHE_EXIT_USAGE;
            }

            if (option_value(cli, opt, optarg) != 0) {
                return SNAPCACHE_EXIT_USAGE;
            }
        }
    }

    cli->args = argv + optind;
    cli->nargs = (size_t) (argc - optind);

    if (cli->nargs != c->nargs) {
        if (cli->nargs > c->nargs) {
            snapcache_cli_error(cli, "unexpected argument \"%s\"",
                                cli->args[c->nargs]);

        } else {
            snapcache_cli_error(cli, "missing argument");
        }

        usage_command(c, stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    if (read_environment(cli, c) != 0) {
        snapcache_cli_error(cli, "out of memory");
        return SNAPCACHE_EXIT_FAILED;
    }

    if (c->nodes && cli->nnodes == 0) {
        snapcache_cli_error(cli, "no node: give --node URL, or set "
                            "SNAPCACHE_NODES");
        usage_command(c, stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    if (c->token && cli->token_file == NULL) {
        snapcache_cli_error(cli, "no token: give --token-file FILE, or set "
                            "SNAPCACHE_TOKEN_FILE");
        usage_command(c, stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    if (!cli->retries_set) {
        cli->retries = c->retries;
    }

    return -1;
}


static const cli_command_t *
find_command(const char *name)
{
    size_t  i;

    for (i = 0; i < CLI_NCOMMANDS; i++) {
        if (strcmp(cli_commands[i].name, name) == 0) {
            return &cli_commands[i];
        }
    }

    return NULL;
}


int
main(int argc, char **argv)
{
    int                   rc;
    const char           *name;
    snapcache_cli_t       cli;
    const cli_command_t  *c;

    if (argc < 2) {
        usage_all(stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    name = argv[1];

    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        usage_all(stdout);
        return SNAPCACHE_EXIT_OK;
    }

    if (strcmp(name, "-V") == 0 || strcmp(name, "--version") == 0) {
        printf("snapcache %s\n", SNAPCACHE_VERSION);
        return SNAPCACHE_EXIT_OK;
    }

    if (strcmp(name, "help") == 0) {
        if (argc == 2) {
            usage_all(stdout);
            return SNAPCACHE_EXIT_OK;
        }

        c = find_command(argv[2]);
        if (c != NULL && argc == 3) {
            usage_command(c, stdout);
            return SNAPCACHE_EXIT_OK;
        }

        fprintf(stderr, "snapcache: no command \"%s\"\n", argv[2]);
        usage_all(stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    c = find_command(name);

    if (c == NULL) {
        if (name[0] == '-') {
            fprintf(stderr, "snapcache: unknown option %s\n", name);
        } else {
            fprintf(stderr, "snapcache: unknown command \"%s\"\n", name);
        }

        usage_all(stderr);
        return SNAPCACHE_EXIT_USAGE;
    }

    memset(&cli, 0, sizeof(cli));
    cli.command = c->name;
    cli.timeout_ms = SNAPCACHE_CLI_TIMEOUT_MS;
    cli.max_lifetime = SNAPCACHE_CLI_MAX_LIFETIME;

    rc = parse_options(c, argc - 1, argv + 1, &cli);

    if (rc < 0) {
        rc = c->run(&cli);
    }

    free(cli.nodes);
    free(cli.nodes_env);
    free(cli.keys);

    return rc;
}
