
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache purge, stats and health: one request (or, for a purge read
 * from stdin, one request per 256 scopes) to every node at once, with
 * libcurl's multi interface, each request with a timeout.
 *
 * A node that did not answer, or answered 5xx, is asked again after a
 * short backoff, up to --retries times; purges are idempotent, so a
 * purge that took effect before its answer was lost is harmless to send
 * again.  A 4xx is the node's final word (a wrong token stays wrong) and
 * is not retried; neither is a health location's 503, which is the
 * answer asked for.
 *
 * A node URL is the node's base (http://10.0.1.11:8443), to which purge
 * and stats add --admin-path, or an admin location itself
 * (http://10.0.1.11:8443/snapcache-admin); health asks --path on the
 * node's address whatever path its URL has.
 *
 * The admin token is read from its file as the bytes it holds (hex on
 * one line, checked as the module checks it), sent only in the
 * Authorization header, wiped from memory when done, never printed.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "sign/snapcache_sign.h"
#include "tools/snapcache_cli.h"


#define ADMIN_BATCH          256
#define ADMIN_RESP_MAX       (1024 * 1024)
#define ADMIN_URL_MAX        1024
#define ADMIN_PATH           "/snapcache-admin"
#define HEALTH_PATH          "/health"
#define BACKOFF_MS           200
#define BACKOFF_MAX_MS       2000


typedef enum {
    RUN_PURGE,
    RUN_STATS,
    RUN_HEALTH
} run_kind_e;


typedef enum {
    ANSWER_OK,
    ANSWER_RETRY,                       /* no answer, or 5xx */
    ANSWER_FAIL
} answer_e;


typedef struct {
    const char          *url;            /* as given */
    char                 endpoint[ADMIN_URL_MAX];
    CURL                *easy;
    char                *resp;
    size_t               resp_len;
    char                 error[CURL_ERROR_SIZE + 64];
    long                 status;         /* of the last answer; 0: none */
    size_t               batch;          /* the body being sent */
    int                  tries;          /* of that body */
    int                  retries;        /* over all its bodies */
    int                  waiting;        /* for retry_at */
    int                  failed;
    int                  done;
    double               retry_at;
    double               start;
    double               msec;
    uint64_t             records;
    json_int_t           generation;
    json_t              *purged;         /* purge: every scope's answer */
    json_t              *stats;          /* stats: the node's answer */
    char                 health[32];     /* health: "ok" or the reason */
} admin_node_t;


typedef struct {
    run_kind_e           kind;
    admin_node_t        *nodes;
    size_t               nnodes;
    char               **bodies;         /* purge: one per batch */
    size_t               nbodies;
    struct curl_slist   *headers;
    long                 timeout_ms;
    const char          *cacert;         /* CAs for https:// nodes */
    int                  retries;
} admin_run_t;


static double
now_ms(void)
{
    struct timespec  t;

    clock_gettime(CLOCK_MONOTONIC, &t);

    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}


/*
 * "Authorization: Bearer <hex>" from the token file, read as the module
 * reads it (snapcache_secret_load: a regular file, opened without
 * blocking, hex of 32 to 64 bytes on one line), and wiped once libcurl
 * has its copy.
 */
static int
auth_header(snapcache_cli_t *cli, struct curl_slist **list)
{
    char                line[sizeof("Authorization: Bearer ")
                             + 2 * SNAPCACHE_KEY_MAX];
    char                err[256];
    size_t              i, n;
    struct curl_slist  *l;
    snapcache_secret_t  key;

    if (snapcache_secret_load(&key, cli->token_file, "token", NULL, err,
                              sizeof(err))
        != 0)
    {
        snapcache_cli_error(cli, "%s", err);
        return -1;
    }

    n = (size_t) snprintf(line, sizeof(line), "Authorization: Bearer ");

    for (i = 0; i < key.len; i++) {
        n += (size_t) snprintf(line + n, sizeof(line) - n, "%02x",
                               key.data[i]);
    }

    OPENSSL_cleanse(&key, sizeof(key));

    l = curl_slist_append(*list, line);
    OPENSSL_cleanse(line, sizeof(line));

    if (l == NULL) {
        snapcache_cli_error(cli, "out of memory");
        return -1;
    }

    *list = l;

    return 0;
}


/* libcurl keeps its copies of the headers: the token's is wiped too. */
static void
free_headers(struct curl_slist *list)
{
    struct curl_slist  *l;

    for (l = list; l; l = l->next) {
        OPENSSL_cleanse(l->data, strlen(l->data));
    }

    curl_slist_free_all(list);
}


/* "A", "A D" or "A D S": one scope, as a JSON object. */
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


static int
add_body(admin_run_t *run, json_t *body)
{
    char  **p, *s;

    s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    if (s == NULL) {
        return -1;
    }

    p = realloc(run->bodies, (run->nbodies + 1) * sizeof(char *));
    if (p == NULL) {
        free(s);
        return -1;
    }

    run->bodies = p;
    run->bodies[run->nbodies++] = s;

    return 0;
}


/* Scopes from stdin, one a line, in bodies of up to 256 scopes each. */
static int
read_batches(snapcache_cli_t *cli, admin_run_t *run)
{
    char     line[512], *f[4], *save, *p, *got;
    size_t   lineno, n, nscopes;
    json_t  *list, *scope;

    list = NULL;
    nscopes = 0;
    lineno = 0;

    for ( ;; ) {
        got = fgets(line, sizeof(line), stdin);

        if (got != NULL) {
            lineno++;

            if (strchr(line, '\n') == NULL && !feof(stdin)) {
                snapcache_cli_error(cli, "stdin line %zu is too long",
                                    lineno);
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
                snapcache_cli_error(cli, "stdin line %zu is not \"account "
                                    "[device [snapshot]]\" of valid ids",
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
            if (add_body(run, json_pack("{s:o}", "purge", list)) != 0) {
                snapcache_cli_error(cli, "out of memory");
                return -1;
            }

            list = NULL;
        }

        if (got == NULL) {
            break;
        }
    }

    if (nscopes == 0) {
        snapcache_cli_error(cli, "no scope on stdin");
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


/* Sets up and starts the node's request: its next purge body, or a GET. */
static void
node_start(admin_run_t *run, CURLM *multi, admin_node_t *node)
{
    CURL  *e;

    e = node->easy;

    free(node->resp);
    node->resp = NULL;
    node->resp_len = 0;
    node->error[0] = '\0';
    node->status = 0;
    node->tries++;

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, node->endpoint);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, run->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, run->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, run->timeout_ms);

    if (run->cacert) {
        curl_easy_setopt(e, CURLOPT_CAINFO, run->cacert);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }

    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, node);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, node->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, node);

    if (run->kind == RUN_PURGE) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, run->bodies[node->batch]);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                         (long) strlen(run->bodies[node->batch]));
    }

    curl_multi_add_handle(multi, e);
}


/* A health location's body: its first word, printable, or "". */
static void
health_word(const admin_node_t *node, char *out, size_t size)
{
    size_t       n;
    const char  *p;

    p = node->resp ? node->resp : "";
    n = strcspn(p, " \t\r\n");

    if (n >= size) {
        n = size - 1;
    }

    memcpy(out, p, n);
    out[n] = '\0';

    for (p = out; *p; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            out[0] = '\0';
            return;
        }
    }
}


static answer_e
health_answer(admin_node_t *node)
{
    health_word(node, node->health, sizeof(node->health));

    if (node->status == 200 && strcmp(node->health, "ok") == 0) {
        return ANSWER_OK;
    }

    if (node->status == 503 && node->health[0] != '\0') {
        snprintf(node->error, sizeof(node->error), "%s (HTTP 503)",
                 node->health);
        return ANSWER_FAIL;
    }

    node->health[0] = '\0';
    snprintf(node->error, sizeof(node->error), "HTTP %ld%s", node->status,
             node->status == 200 ? " without \"ok\"" : "");

    /* whatever a node answered is its health: only silence is retried */
    return ANSWER_FAIL;
}


static answer_e
purge_answer(admin_node_t *node, json_t *j)
{
    json_t  *v;

    v = json_object_get(j, "records");
    if (!json_is_integer(v)) {
        snprintf(node->error, sizeof(node->error), "HTTP 200 without "
                 "\"records\"");
        return ANSWER_FAIL;
    }

    node->records += (uint64_t) json_integer_value(v);

    v = json_object_get(j, "generation");
    if (json_is_integer(v)) {
        node->generation = json_integer_value(v);
    }

    v = json_object_get(j, "purged");
    if (json_is_array(v)) {
        if (node->purged == NULL) {
            node->purged = json_array();
        }

        json_array_extend(node->purged, v);
    }

    return ANSWER_OK;
}


/* The node's answer to one request. */
static answer_e
node_answer(admin_run_t *run, admin_node_t *node, CURLcode code)
{
    json_t       *j, *v;
    answer_e      a;
    const char   *why;
    json_error_t  jerr;

    if (code != CURLE_OK) {
        if (node->error[0] == '\0') {
            snprintf(node->error, sizeof(node->error), "%s",
                     curl_easy_strerror(code));
        }

        return ANSWER_RETRY;
    }

    curl_easy_getinfo(node->easy, CURLINFO_RESPONSE_CODE, &node->status);

    if (run->kind == RUN_HEALTH) {
        return health_answer(node);
    }

    j = node->resp ? json_loads(node->resp, 0, &jerr) : NULL;

    if (node->status != 200) {
        v = json_is_object(j) ? json_object_get(j, "error") : NULL;
        why = json_is_string(v) ? json_string_value(v) : "no JSON error";
        snprintf(node->error, sizeof(node->error), "HTTP %ld: %.200s",
                 node->status, why);
        json_decref(j);

        return node->status >= 500 ? ANSWER_RETRY : ANSWER_FAIL;
    }

    if (!json_is_object(j)) {
        snprintf(node->error, sizeof(node->error), "HTTP 200 without a "
                 "JSON object");
        json_decref(j);
        return ANSWER_FAIL;
    }

    if (run->kind == RUN_STATS) {
        json_decref(node->stats);
        node->stats = j;
        return ANSWER_OK;
    }

    a = purge_answer(node, j);
    json_decref(j);

    return a;
}


static double
backoff_ms(int tries)
{
    double  ms;

    ms = BACKOFF_MS;

    while (--tries > 0 && ms < BACKOFF_MAX_MS) {
        ms *= 2;
    }

    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}


/* What one finished transfer means for its node. */
static void
node_finished(admin_run_t *run, CURLM *multi, admin_node_t *node,
    CURLcode code)
{
    answer_e  a;

    curl_multi_remove_handle(multi, node->easy);

    a = node_answer(run, node, code);

    if (a == ANSWER_OK) {
        if (run->kind == RUN_PURGE && ++node->batch < run->nbodies) {
            node->tries = 0;
            node_start(run, multi, node);
            return;
        }

    } else if (a == ANSWER_RETRY && node->tries <= run->retries) {
        node->waiting = 1;
        node->retry_at = now_ms() + backoff_ms(node->tries);
        return;

    } else {
        node->failed = 1;
    }

    node->done = 1;
    node->msec = now_ms() - node->start;
}


/* Starts the retries that are due; the time to the next one, or -1. */
static double
start_retries(admin_run_t *run, CURLM *multi)
{
    size_t         i;
    double         now, next;
    admin_node_t  *node;

    now = now_ms();
    next = -1;

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];

        if (!node->waiting) {
            continue;
        }

        if (node->retry_at <= now) {
            node->waiting = 0;
            node->retries++;
            node_start(run, multi, node);

        } else if (next < 0 || node->retry_at - now < next) {
            next = node->retry_at - now;
        }
    }

    return next;
}


/* Every node at once; each sends its bodies one after the other. */
static void
run_all(admin_run_t *run)
{
    int            running, left;
    size_t         i, active;
    double         next;
    CURLM         *multi;
    CURLMsg       *msg;
    admin_node_t  *node;

    multi = curl_multi_init();
    active = 0;

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];
        node->easy = curl_easy_init();
        node->start = now_ms();

        if (multi == NULL || node->easy == NULL) {
            snprintf(node->error, sizeof(node->error), "out of memory");
            node->failed = 1;
            node->done = 1;
            continue;
        }

        node_start(run, multi, node);
        active++;
    }

    while (active > 0) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            break;
        }

        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                              (char **) &node);
            node_finished(run, multi, node, msg->data.result);

            if (node->done) {
                active--;
            }
        }

        next = start_retries(run, multi);

        if (active == 0) {
            break;
        }

        if (curl_multi_poll(multi, NULL, 0,
                            next >= 0 && next < 100 ? (int) next + 1 : 100,
                            NULL)
            != CURLM_OK)
        {
            break;
        }
    }

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];

        if (!node->done) {
            snprintf(node->error, sizeof(node->error), "not answered");
            node->failed = 1;
            node->msec = now_ms() - node->start;
        }

        if (node->easy) {
            if (multi) {
                curl_multi_remove_handle(multi, node->easy);
            }

            curl_easy_cleanup(node->easy);
        }

        free(node->resp);
        node->resp = NULL;
    }

    if (multi) {
        curl_multi_cleanup(multi);
    }
}


/*
 * Each node's endpoint.  Health: --path on the node's scheme and
 * address.  Admin: the node URL's own path if it has one, else
 * --admin-path; then "/purge" or "/stats".
 */
static int
set_endpoints(snapcache_cli_t *cli, admin_run_t *run)
{
    int            n;
    size_t         i, len, host, plen;
    const char    *v, *path;
    admin_node_t  *node;

    for (i = 0; i < run->nnodes; i++) {
        node = &run->nodes[i];
        v = node->url;

        if (strncmp(v, "http://", 7) == 0) {
            host = 7;

        } else if (strncmp(v, "https://", 8) == 0) {
            host = 8;

        } else {
            snapcache_cli_error(cli, "--node wants an http:// or https:// "
                                "URL, not \"%s\"", v);
            return -1;
        }

        n = (int) strcspn(v + host, "/?#");
        host += (size_t) n;

        if (n == 0 || v[host] == '?' || v[host] == '#') {
            snapcache_cli_error(cli, "--node \"%s\": no host, or a query",
                                v);
            return -1;
        }

        /* the node's base, or its admin location, without trailing '/' */
        for (len = strlen(v); len > host && v[len - 1] == '/'; len--) {
            /* void */
        }

        if (run->kind == RUN_HEALTH) {
            len = host;
            path = cli->health_path ? cli->health_path : HEALTH_PATH;
            plen = strlen(path);

        } else if (len > host) {
            path = "";
            plen = 0;

        } else {
            path = cli->admin_path ? cli->admin_path : ADMIN_PATH;
            for (plen = strlen(path); plen > 0 && path[plen - 1] == '/';
                 plen--)
            {
                /* void */
            }
        }

        n = snprintf(node->endpoint, sizeof(node->endpoint), "%.*s%s%.*s%s",
                     (int) len, v, plen > 0 && path[0] != '/' ? "/" : "",
                     (int) plen, path,
                     run->kind == RUN_PURGE ? "/purge"
                     : run->kind == RUN_STATS ? "/stats" : "");

        if (n < 0 || (size_t) n >= sizeof(node->endpoint)) {
            snapcache_cli_error(cli, "--node \"%.64s...\" is too long", v);
            return -1;
        }
    }

    return 0;
}


/* --------------------------------------------------------------- output */


static void
print_text(const admin_run_t *run, const admin_node_t *n)
{
    if (n->failed) {
        printf("%s failed: %s", n->url, n->error);

        if (run->kind == RUN_PURGE && n->batch > 0) {
            printf(" done=%zu/%zu records=%llu", n->batch, run->nbodies,
                   (unsigned long long) n->records);
        }

        if (run->kind != RUN_HEALTH) {
            printf(" retries=%d time=%.1fms", n->retries, n->msec);
        }

        putchar('\n');
        return;
    }

    switch (run->kind) {

    case RUN_HEALTH:
        printf("%s ok\n", n->url);
        break;

    case RUN_PURGE:
        printf("%s ok records=%llu generation=%lld", n->url,
               (unsigned long long) n->records, (long long) n->generation);

        if (n->retries > 0) {
            printf(" retries=%d", n->retries);
        }

        printf(" time=%.1fms\n", n->msec);
        break;

    case RUN_STATS:

#define STAT(o, k)                                                            \
        (long long) json_integer_value(json_object_get(                       \
                                           json_object_get(n->stats, o), k))

        printf("%-40s %10lld %10lld %8lld %8lld %10lld %8lld %10lld %12lld\n",
               n->url, STAT("counters", "hits"), STAT("counters", "misses"),
               STAT("counters", "stale"), STAT("counters", "errors"),
               STAT("counters", "fills"), STAT("purge", "ok"),
               STAT("store", "records"), STAT("store", "used_bytes"));

#undef STAT
        break;
    }
}


static json_t *
node_json(const admin_run_t *run, const admin_node_t *n)
{
    json_t  *o;

    o = json_pack("{s:s, s:s, s:b, s:i, s:f}", "node", n->url, "url",
                  n->endpoint, "ok", !n->failed, "retries", n->retries,
                  "seconds", n->msec / 1e3);
    if (o == NULL) {
        return NULL;
    }

    json_object_set_new(o, "status", n->status ? json_integer(n->status)
                                               : json_null());

    if (n->failed) {
        json_object_set_new(o, "error", json_string(n->error));
    }

    switch (run->kind) {

    case RUN_HEALTH:
        json_object_set_new(o, "health", n->health[0]
                                         ? json_string(n->health)
                                         : json_null());
        break;

    case RUN_PURGE:
        json_object_set_new(o, "records", json_integer((json_int_t)
                                                       n->records));
        json_object_set_new(o, "generation", n->batch > 0
                                             ? json_integer(n->generation)
                                             : json_null());
        json_object_set(o, "purged", n->purged ? n->purged : json_null());
        json_object_set_new(o, "requests", json_pack("{s:I, s:I}", "done",
                            (json_int_t) n->batch, "of",
                            (json_int_t) run->nbodies));
        break;

    case RUN_STATS:
        json_object_set(o, "stats", n->stats ? n->stats : json_null());
        break;
    }

    return o;
}


static int
print_results(const admin_run_t *run, int json)
{
    int            rc;
    size_t         i;
    json_t        *all, *list;

    rc = SNAPCACHE_EXIT_OK;

    for (i = 0; i < run->nnodes; i++) {
        if (run->nodes[i].failed) {
            rc = SNAPCACHE_EXIT_FAILED;
        }
    }

    if (json) {
        list = json_array();

        for (i = 0; i < run->nnodes; i++) {
            json_array_append_new(list, node_json(run, &run->nodes[i]));
        }

        all = json_pack("{s:b, s:o}", "ok", rc == SNAPCACHE_EXIT_OK,
                        "nodes", list);
        json_dumpf(all, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        putchar('\n');
        json_decref(all);

        return rc;
    }

    if (run->kind == RUN_STATS) {
        printf("%-40s %10s %10s %8s %8s %10s %8s %10s %12s\n", "node",
               "hits", "misses", "stale", "errors", "fills", "purges",
               "records", "used_bytes");
    }

    for (i = 0; i < run->nnodes; i++) {
        print_text(run, &run->nodes[i]);
    }

    return rc;
}


/* ----------------------------------------------------------------- main */


static int
purge_bodies(snapcache_cli_t *cli, admin_run_t *run)
{
    json_t  *scope;

    if ((cli->account != NULL) == (cli->from_stdin != 0)) {
        snapcache_cli_error(cli, "give a scope (--account A [--device D "
                            "[--snapshot S]]) or --stdin");
        return -1;
    }

    if (cli->from_stdin) {
        if (cli->device || cli->snapshot) {
            snapcache_cli_error(cli, "--stdin takes no --device or "
                                "--snapshot");
            return -1;
        }

        return read_batches(cli, run);
    }

    scope = scope_json(cli->account, cli->device, cli->snapshot);
    if (scope == NULL) {
        snapcache_cli_error(cli, "ids must match "
                            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}, and "
                            "--snapshot needs --device");
        return -1;
    }

    if (add_body(run, scope) != 0) {
        snapcache_cli_error(cli, "out of memory");
        return -1;
    }

    return 0;
}


static int
admin_main(snapcache_cli_t *cli, run_kind_e kind)
{
    int           rc, curl;
    size_t        i;
    admin_run_t   run;

    memset(&run, 0, sizeof(run));
    run.kind = kind;
    run.timeout_ms = cli->timeout_ms;
    run.retries = cli->retries;
    run.cacert = cli->cacert ? cli->cacert : getenv("SNAPCACHE_CACERT");

    if (run.cacert && run.cacert[0] == '\0') {
        run.cacert = NULL;
    }
    curl = 0;
    rc = SNAPCACHE_EXIT_USAGE;

    run.nnodes = cli->nnodes;
    run.nodes = calloc(run.nnodes, sizeof(admin_node_t));
    if (run.nodes == NULL) {
        goto done;
    }

    for (i = 0; i < run.nnodes; i++) {
        run.nodes[i].url = cli->nodes[i];
    }

    if (set_endpoints(cli, &run) != 0) {
        goto done;
    }

    if (kind == RUN_PURGE && purge_bodies(cli, &run) != 0) {
        goto done;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snapcache_cli_error(cli, "libcurl failed to start");
        rc = SNAPCACHE_EXIT_FAILED;
        goto done;
    }

    curl = 1;

    if (kind != RUN_HEALTH) {
        if (auth_header(cli, &run.headers) != 0) {
            goto done;
        }

        run.headers = curl_slist_append(run.headers,
                                        "Content-Type: application/json");
        run.headers = curl_slist_append(run.headers, "Expect:");
    }

    run_all(&run);

    rc = print_results(&run, cli->json);

done:

    free_headers(run.headers);

    if (curl) {
        curl_global_cleanup();
    }

    for (i = 0; run.nodes && i < run.nnodes; i++) {
        json_decref(run.nodes[i].purged);
        json_decref(run.nodes[i].stats);
    }

    for (i = 0; i < run.nbodies; i++) {
        free(run.bodies[i]);
    }

    free(run.bodies);
    free(run.nodes);

    return rc;
}


int
snapcache_cmd_purge(snapcache_cli_t *cli)
{
    return admin_main(cli, RUN_PURGE);
}


int
snapcache_cmd_stats(snapcache_cli_t *cli)
{
    return admin_main(cli, RUN_STATS);
}


int
snapcache_cmd_health(snapcache_cli_t *cli)
{
    return admin_main(cli, RUN_HEALTH);
}
