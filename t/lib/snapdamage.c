
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapdamage: damages a store by hand, as a bug or a bad disk would, for
 * the end-to-end tests of what the module and `snapcache inspect` do
 * with records that fail their checks and with a damaged LMDB file.
 *
 *   snapdamage <store dir> flip <offset>  flips one byte of every record
 *   snapdamage <store dir> rotate         gives every record the value of
 *                                         the next one, in key order
 *   snapdamage <store dir> branches       zeroes every B-tree branch page
 *                                         of data.mdb (nginx stopped)
 *   snapdamage <store dir> hold           takes LMDB's writer lock, says
 *                                         "held", and keeps it, writing
 *                                         nothing, until SIGTERM or SIGINT:
 *                                         a writer stuck on a slow disk
 *
 * flip and rotate go through LMDB; branches writes the file directly.
 * Prints the number of records, or pages, changed.
 */

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>


/* LMDB 0.9's page header: pgno(8), pad(2), flags(2), lower/upper or pages */
#define PAGE_FLAGS      10
#define PAGE_PAGES      12
#define P_BRANCH        0x01
#define P_OVERFLOW      0x04
#define P_META          0x08

/* the meta page: its header (16), magic, version, address, mapsize, psize */
#define META_PSIZE      40


typedef struct {
    MDB_val  key;
    MDB_val  value;
} pair_t;


static void
die(const char *what, int rc)
{
    fprintf(stderr, "snapdamage: %s: %s\n", what, mdb_strerror(rc));
    exit(1);
}


static void *
dup_val(const MDB_val *v)
{
    void  *p;

    p = malloc(v->mv_size ? v->mv_size : 1);
    if (p == NULL) {
        exit(1);
    }

    memcpy(p, v->mv_data, v->mv_size);

    return p;
}


static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


/*
 * Walks data.mdb page by page, stepping over overflow runs, and zeroes
 * each page whose header says branch: the inner pages of every tree
 * (and stale copies among the free pages, which nothing reads).
 */
static int
zero_branches(const char *dir)
{
    int             fd, n;
    char            path[4096];
    off_t           at, size;
    uint32_t        psize, run;
    unsigned char  *page;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);

    fd = open(path, O_RDWR);
    if (fd == -1) {
        perror(path);
        exit(1);
    }

    page = malloc(65536);
    if (page == NULL || pread(fd, page, 64, 0) != 64) {
        exit(1);
    }

    psize = le32(page + META_PSIZE);
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0) {
        fprintf(stderr, "snapdamage: no LMDB meta page in %s\n", path);
        exit(1);
    }

    size = lseek(fd, 0, SEEK_END);
    n = 0;

    for (at = 2 * (off_t) psize; at + psize <= size; at += psize) {
        if (pread(fd, page, psize, at) != (ssize_t) psize) {
            exit(1);
        }

        if (page[PAGE_FLAGS] & P_OVERFLOW) {
            run = le32(page + PAGE_PAGES);
            at += (off_t) (run > 1 ? run - 1 : 0) * psize;
            continue;
        }

        if ((page[PAGE_FLAGS] & (P_BRANCH | P_META)) == P_BRANCH) {
            memset(page, 0, psize);

            if (pwrite(fd, page, psize, at) != (ssize_t) psize) {
                exit(1);
            }

            n++;
        }
    }

    close(fd);
    free(page);

    return n;
}


int
main(int argc, char **argv)
{
    int          rc, flip, sig;
    size_t       n, cap, i, at;
    sigset_t     sigs;
    pair_t      *all;
    MDB_env     *env;
    MDB_txn     *txn;
    MDB_dbi      dbi;
    MDB_val      k, v, nv;
    MDB_cursor  *cur;

    if (argc == 3 && strcmp(argv[2], "branches") == 0) {
        printf("%d\n", zero_branches(argv[1]));
        return 0;
    }

    if (argc == 3 && strcmp(argv[2], "hold") == 0) {
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigprocmask(SIG_BLOCK, &sigs, NULL);

        rc = mdb_env_create(&env);
        rc = rc ? rc : mdb_env_set_maxdbs(env, 4);
        rc = rc ? rc : mdb_env_open(env, argv[1], MDB_NOTLS, 0600);
        rc = rc ? rc : mdb_txn_begin(env, NULL, 0, &txn);
        if (rc != 0) {
            die(argv[1], rc);
        }

        printf("held\n");
        fflush(stdout);

        sigwait(&sigs, &sig);

        mdb_txn_abort(txn);
        mdb_env_close(env);

        return 0;
    }

    flip = argc == 4 && strcmp(argv[2], "flip") == 0;

    if (!flip && !(argc == 3 && strcmp(argv[2], "rotate") == 0)) {
        fprintf(stderr, "usage: snapdamage <store dir> flip <offset>\n"
                        "       snapdamage <store dir> rotate\n"
                        "       snapdamage <store dir> branches\n"
                        "       snapdamage <store dir> hold\n");
        return 2;
    }

    at = flip ? strtoul(argv[3], NULL, 10) : 0;

    /* the map size recorded in the file is used when it is larger */
    rc = mdb_env_create(&env);
    rc = rc ? rc : mdb_env_set_maxdbs(env, 4);
    rc = rc ? rc : mdb_env_open(env, argv[1], MDB_NOTLS, 0600);
    rc = rc ? rc : mdb_txn_begin(env, NULL, 0, &txn);
    rc = rc ? rc : mdb_dbi_open(txn, "records", 0, &dbi);
    rc = rc ? rc : mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        die(argv[1], rc);
    }

    n = 0;
    cap = 64;
    all = malloc(cap * sizeof(pair_t));

    while (all && mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST)
           == 0)
    {
        if (n == cap) {
            cap *= 2;
            all = realloc(all, cap * sizeof(pair_t));
            if (all == NULL) {
                break;
            }
        }

        all[n].key = k;
        all[n].key.mv_data = dup_val(&k);
        all[n].value = v;
        all[n].value.mv_data = dup_val(&v);
        n++;
    }

    mdb_cursor_close(cur);

    if (all == NULL) {
        return 1;
    }

    for (i = 0; i < n; i++) {
        nv = flip ? all[i].value : all[(i + 1) % n].value;

        if (flip && at < nv.mv_size) {
            ((unsigned char *) nv.mv_data)[at] ^= 0x20;
        }

        rc = mdb_put(txn, dbi, &all[i].key, &nv, 0);
        if (rc != 0) {
            die("put", rc);
        }
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        die("commit", rc);
    }

    mdb_env_close(env);
    printf("%zu\n", n);

    for (i = 0; i < n; i++) {
        free(all[i].key.mv_data);
        free(all[i].value.mv_data);
    }

    free(all);

    return 0;
}
