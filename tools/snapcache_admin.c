
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache purge and snapcache stats: the admin API of every node, in
 * parallel (libcurl's multi interface), each request with a timeout.
 *
 *   snapcache purge --node URL [--node URL ...] --token-file F
 *                   (--account A [--device D [--snapshot S]] | --stdin)
 *                   [--timeout SECONDS]
 *   snapcache stats --node URL [--node URL ...] --token-file F
 *                   [--timeout SECONDS]
 *
 * URL is a node's admin location, e.g. http://10.0.0.5:8081/snapcache-admin.
 * purge prints one line per node (its result, the records it removed and
 * the time taken) and exits 1 when any node failed; scopes read from
 * stdin, one per line ("A", "A D" or "A D S"), go 256 to a request.
 * stats prints a table of the main counters, one row per node.  The
 * token is read from its file and sent only in the Authorization header;
 * it is never printed.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "sign/snapcache_sign.h"
#include "tools/snapcache_cli.h"


#define ADMIN_BATCH       256
#define ADMIN_RESP_MAX    (1024 * 1024)
#define ADMIN_USAGE       2


typedef struct {
    const char          *url;
    char                 endpoint[1024];
    CURL                *easy;
    char                *resp;
    size_t               resp_len;
    char                 error[CURL_ERROR_SIZE + 64];
    size_t               batch;          /* the next body to send */
    int                  failed;
    int                  done;
    struct timespec      start;
    double               msec;
    uint64_t             records;
    json_int_t           generation;
    json_t              *stats;          /* stats: the node's answer */
} admin_node_t;


typedef struct {
    admin_node_t        *nodes;
    size_t               nnodes;
    char               **bodies;         /* purge: one per batch */
    size_t               nbodies;
    struct curl_slist   *headers;
    long                 timeout_ms;
    int                  purge;
} admin_run_t;


static const char *
arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "snapcache: %s needs a value\n", argv[*i]);
        exit(ADMIN_USAGE);
    }

    return argv[++*i];
}


static double
msec_since(const struct timespec *t)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    return (now.tv_sec - t->tv_sec) * 1e3 + (now.tv_nsec - t->tv_nsec) / 1e6;
}


/*
 * "Authorization: Bearer <hex>" from a token file: read as the signing
 * keys are (a regular file, opened without blocking, hex of at least 32
 * bytes), and wiped from memory once libcurl has its copy.
 */
static struct curl_slist *
auth_header(const char *path, struct curl_slist *list)
{
    char                   err[256], line[32 + 2 * SNAPCACHE_KEY_MAX];
    size_t                 i, n;
    struct curl_slist     *l;
    snapcache_secret_t     key;

    if (snapcache_secret_load(&key, path, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "snapcache: --token-file: %s\n", err);
        return NULL;
    }

    n = (size_t) snprintf(line, sizeof(line), "Authorization: Bearer ");

    for (i = 0; i < key.len; i++) {
        n += (size_t) snprintf(line + n, sizeof(line) - n, "%02x",
                               key.data[i]);
    }

    OPENSSL_cleanse(&key, sizeof(key));

    l = curl_slist_append(list, line);
    OPENSSL_cleanse(line, sizeof(line));

    return l;
}


/* "A", "A D" or "A D S" (or with '/'): one scope, as a JSON object. */
static json_t *
scope_json(const char *account, const char *device, const char *snapshot)
{
    json_t  *o;

    if (account == NULL || !snapcache_id_valid(account, strlen(account))
        || (device && !snapcache_id_valid(device, strlen(device)))
        || (snapshot && !snapcache_id_valid(snapshot, strlen(snapshot)))
        || (snapshot && device == NULL))
    {
        return NULL;
    }

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    json_object_set_new(o, "account", json_string(account));

    if (device) {
        json_object_set_new(o, "device", json_string(device));
    }

    if (snapshot) {
        json_object_set_new(o, "snapshot", json_string(snapshot));
    }

    return o;
}


/* Scopes from stdin, one a line, in bodies of up to 256 scopes each. */
static int
read_batches(admin_run_t *run)
{
    char     line[512], *f[4], *save, *p, *got;
    size_t   lineno, n, nscopes;
    json_t  *list, *scope, *body;

    list = NULL;
    nscopes = 0;
    lineno = 0;

    for ( ;; ) {
        got = fgets(line, sizeof(line), stdin);

        if (got != NULL) {
            lineno++;

            if (strchr(line, '\n') == NULL && !feof(stdin)) {
                fprintf(stderr, "snapcache purge: stdin line %zu is too "
                        "long\n", lineno);
                json_decref(list);
                return -1;
            }

            n = 0;
            f[0] = f[1] = f[2] = f[3] = NULL;

            for (p = strtok_r(line, " \t\r\n/", &save); p && n < 4;
                 p = strtok_r(NULL, " \t\r\n/", &save))
            {
                f[n++] = p;
            }

            if (n == 0 || f[0][0] == '#') {
                continue;
            }

            scope = (n <= 3) ? scope_json(f[0], f[1], f[2]) : NULL;

            if (scope == NULL) {
                fprintf(stderr, "snapcache purge: stdin line %zu is not "
                        "\"account [device [snapshot]]\" of valid ids\n",
                        lineno);
                json_decref(list);
                return -1;
            }

            if (list == NULL) {
                list = json_array();
            }

            json_array_append_new(list, scope);
            nscopes++;
        }

        if (list != NULL
            && (got == NULL || json_array_size(list) == ADMIN_BATCH))
        {
            body = json_pack("{s:o}", "purge", list);
            list = NULL;

            run->bodies = realloc(run->bodies,
                                  (run->nbodies + 1) * sizeof(char *));
            if (run->bodies == NULL || body == NULL) {
                return -1;
            }

            run->bodies[run->nbodies++] = json_dumps(body, JSON_COMPACT);
            json_decref(body);
        }

        if (got == NULL) {
            break;
        }
    }

    if (nscopes == 0) {
        fprintf(stderr, "snapcache purge: no scope on stdin\n");
        return -1;
    }

    return 0;
}


static size_t
collect_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    char          *p;
    size_t         n;
    admin_node_t  *node = ctx;

    n = size * nmemb;

    if (node->resp_len + n > ADMIN_RESP_MAX) {
        return 0;
    }

    p = realloc(node->resp, node->resp_len + n + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + node->resp_len, data, n);
    node->resp = p;
    node->resp_len += n;
    node->resp[node->resp_len] = '\0';

    return n;
}


/* Sets up the node's next request: the next purge body, or the stats. */
static int
node_request(admin_run_t *run, admin_node_t *node)
{
    CURL  *e;

    e = node->easy;

    free(node->resp);
    node->resp = NULL;
    node->resp_len = 0;
    node->error[0] = '\0';

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, node->endpoint);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, run->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, run->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, run->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, node);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, node->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, node);

    if (run->purge) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, run->bodies[node->batch]);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                         (long) strlen(run->bodies[node->batch]));
    }

    return 0;
}


/* The node's answer to one request; 0 when it was a success. */
static int
node_answer(admin_run_t *run, admin_node_t *node, CURLcode code)
{
    long          status;
    json_t       *j, *v;
    const char   *why;
    json_error_t  jerr;

    if (code != CURLE_OK) {
        if (node->error[0] == '\0') {
            snprintf(node->error, sizeof(node->error), "%s",
                     curl_easy_strerror(code));
        }

        return -1;
    }

    status = 0;
    curl_easy_getinfo(node->easy, CURLINFO_RESPONSE_CODE, &status);

    j = node->resp ? json_loads(node->resp, 0, &jerr) : NULL;

    if (status != 200) {
        v = j ? json_object_get(j, "error") : NULL;
        why = json_is_string(v) ? json_string_value(v) : "no JSON error";
        snprintf(node->error, sizeof(node->error), "HTTP %ld: %.200s",
                 status, why);
        json_decref(j);
        return -1;
    }

    if (!json_is_object(j)) {
        snprintf(node->error, sizeof(node->error), "HTTP 200 without a "
                 "JSON object");
        json_decref(j);
        return -1;
    }

    if (!run->purge) {
        node->stats = j;
        return 0;
    }

    v = json_object_get(j, "records");
    if (!json_is_integer(v)) {
        snprintf(node->error, sizeof(node->error), "HTTP 200 without "
                 "\"records\"");
        json_decref(j);
        return -1;
    }

    node->records += (uint64_t) json_integer_value(v);

    v = json_object_get(j, "generation");
    if (json_is_integer(v)) {
        node->generation = json_integer_value(v);
    }

    json_decref(j);

    return 0;
}


/* Every node at once; each sends its batches one after the other. */
static void
run_all(admin_run_t *run)
{
    int            still, left;
    size_t         i;
    CURLM         *multi;
    CURLMsg       *msg;
    admin_node_t  *node;

    multi = curl_multi_init();

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];
        node->easy = curl_easy_init();
        clock_gettime(CLOCK_MONOTONIC, &node->start);

        if (multi == NULL || node->easy == NULL) {
            snprintf(node->error, sizeof(node->error), "out of memory");
            node->failed = 1;
            node->done = 1;
            continue;
        }

        node_request(run, node);
        curl_multi_add_handle(multi, node->easy);
    }

    still = multi ? 1 : 0;

    while (still) {
        if (curl_multi_perform(multi, &still) != CURLM_OK) {
            break;
        }

        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                              (char **) &node);
            curl_multi_remove_handle(multi, node->easy);

            if (node_answer(run, node, msg->data.result) != 0) {
                node->failed = 1;

            } else if (run->purge && ++node->batch < run->nbodies) {
                node_request(run, node);
                curl_multi_add_handle(multi, node->easy);
                still = 1;
                continue;
            }

            node->done = 1;
            node->msec = msec_since(&node->start);
        }

        if (still && curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK)
        {
            break;
        }
    }

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];

        if (!node->done) {
            snprintf(node->error, sizeof(node->error), "not answered");
            node->failed = 1;
            node->msec = msec_since(&node->start);
        }

        if (node->easy) {
            curl_easy_cleanup(node->easy);
        }

        free(node->resp);
    }

    if (multi) {
        curl_multi_cleanup(multi);
    }
}


static void
usage_admin(void)
{
    fprintf(stderr,
        "usage: snapcache purge --node URL [--node URL ...] --token-file F\n"
        "                       (--account A [--device D [--snapshot S]]"
        " | --stdin)\n"
        "                       [--timeout SECONDS]\n"
        "       snapcache stats --node URL [--node URL ...] --token-file F\n"
        "                       [--timeout SECONDS]\n");
}


/* The options both commands share, and purge's scope. */
static int
parse_args(int argc, char **argv, admin_run_t *run, const char **token,
    const char **scope, int *from_stdin)
{
    int          i;
    char        *end;
    double       secs;
    const char  *v;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--node") == 0) {
            v = arg_value(argc, argv, &i);
            run->nodes = realloc(run->nodes,
                                 (run->nnodes + 1) * sizeof(admin_node_t));
            if (run->nodes == NULL) {
                return -1;
            }

            memset(&run->nodes[run->nnodes], 0, sizeof(admin_node_t));
            run->nodes[run->nnodes++].url = v;

        } else if (strcmp(argv[i], "--token-file") == 0) {
            *token = arg_value(argc, argv, &i);

        } else if (strcmp(argv[i], "--timeout") == 0) {
            v = arg_value(argc, argv, &i);
            errno = 0;
            secs = strtod(v, &end);
            if (errno || *end || !(secs > 0) || secs > 3600) {
                fprintf(stderr, "snapcache: bad --timeout \"%s\"\n", v);
                return -1;
            }

            run->timeout_ms = (long) (secs * 1000);

        } else if (run->purge && strcmp(argv[i], "--account") == 0) {
            scope[0] = arg_value(argc, argv, &i);

        } else if (run->purge && strcmp(argv[i], "--device") == 0) {
            scope[1] = arg_value(argc, argv, &i);

        } else if (run->purge && strcmp(argv[i], "--snapshot") == 0) {
            scope[2] = arg_value(argc, argv, &i);

        } else if (run->purge && strcmp(argv[i], "--stdin") == 0) {
            *from_stdin = 1;

        } else {
            fprintf(stderr, "snapcache %s: unknown option %s\n", argv[0],
                    argv[i]);
            return -1;
        }
    }

    if (run->nnodes == 0 || *token == NULL) {
        return -1;
    }

    for (i = 0; i < (int) run->nnodes; i++) {
        v = run->nodes[i].url;

        if (strlen(v) + sizeof("/metrics") > sizeof(run->nodes[i].endpoint)
            || (strncmp(v, "http://", 7) != 0
                && strncmp(v, "https://", 8) != 0))
        {
            fprintf(stderr, "snapcache %s: --node wants an http:// or "
                    "https:// URL of an admin location\n", argv[0]);
            return -1;
        }

        snprintf(run->nodes[i].endpoint, sizeof(run->nodes[i].endpoint),
                 "%.*s/%s", (int) (strlen(v) - (v[strlen(v) - 1] == '/')), v,
                 run->purge ? "purge" : "stats");
    }

    return 0;
}


static int
admin_main(int argc, char **argv, int purge)
{
    int           rc, from_stdin;
    size_t        i;
    json_t       *scope;
    const char   *token, *ids[3];
    admin_run_t   run;

    memset(&run, 0, sizeof(run));
    run.purge = purge;
    run.timeout_ms = 10000;
    token = NULL;
    ids[0] = ids[1] = ids[2] = NULL;
    from_stdin = 0;

    if (parse_args(argc, argv, &run, &token, ids, &from_stdin) != 0
        || (purge && (ids[0] != NULL) == from_stdin))
    {
        usage_admin();
        free(run.nodes);
        return ADMIN_USAGE;
    }

    /* every way out frees what was made, so that a run is leak-clean */
    rc = ADMIN_USAGE;

    if (purge && from_stdin) {
        if (read_batches(&run) != 0) {
            goto done;
        }

    } else if (purge) {
        scope = scope_json(ids[0], ids[1], ids[2]);
        if (scope == NULL) {
            fprintf(stderr, "snapcache purge: ids must match "
                    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}, and --snapshot "
                    "needs --device\n");
            goto done;
        }

        run.bodies = malloc(sizeof(char *));
        if (run.bodies == NULL) {
            json_decref(scope);
            rc = 1;
            goto done;
        }

        run.bodies[0] = json_dumps(scope, JSON_COMPACT);
        run.nbodies = 1;
        json_decref(scope);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "snapcache: libcurl failed to start\n");
        rc = 1;
        goto done;
    }

    run.headers = auth_header(token, NULL);
    if (run.headers == NULL) {
        goto curl_done;
    }

    run.headers = curl_slist_append(run.headers,
                                    "Content-Type: application/json");
    run.headers = curl_slist_append(run.headers, "Expect:");

    run_all(&run);

    rc = 0;

    if (!purge) {
        printf("%-40s %10s %10s %8s %8s %10s %8s %10s %12s\n", "node",
               "hits", "misses", "stale", "errors", "fills", "purges",
               "records", "used_bytes");
    }

    for (i = 0; i < run.nnodes; i++) {
        admin_node_t  *n = &run.nodes[i];

        if (n->failed) {
            rc = 1;
            printf("%s failed: %s time=%.1fms\n", n->url, n->error, n->msec);
            continue;
        }

        if (purge) {
            printf("%s ok records=%llu generation=%lld time=%.1fms\n",
                   n->url, (unsigned long long) n->records,
                   (long long) n->generation, n->msec);
            continue;
        }

#define STAT(o, k)                                                            \
        (long long) json_integer_value(json_object_get(                       \
                                           json_object_get(n->stats, o), k))

        printf("%-40s %10lld %10lld %8lld %8lld %10lld %8lld %10lld %12lld\n",
               n->url, STAT("counters", "hits"), STAT("counters", "misses"),
               STAT("counters", "stale"), STAT("counters", "errors"),
               STAT("counters", "fills"), STAT("purge", "ok"),
               STAT("store", "records"), STAT("store", "used_bytes"));

#undef STAT

        json_decref(n->stats);
    }

    curl_slist_free_all(run.headers);

curl_done:

    curl_global_cleanup();

done:

    for (i = 0; i < run.nbodies; i++) {
        free(run.bodies[i]);
    }

    free(run.bodies);
    free(run.nodes);

    return rc;
}


int
snapcache_cmd_purge(int argc, char **argv)
{
    return admin_main(argc, argv, 1);
}


int
snapcache_cmd_stats(int argc, char **argv)
{
    return admin_main(argc, argv, 0);
}
