/*
 * snapdamage: damages a live store by hand, with LMDB directly, as a bug
 * or a bad disk would, for the end-to-end tests of what the module does
 * with records that fail their checks.
 *
 *   snapdamage <store dir> flip <offset>  flips one byte of every record
 *   snapdamage <store dir> rotate         gives every record the value of
 *                                         the next one, in key order
 *
 * Prints the number of records changed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>


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


int
main(int argc, char **argv)
{
    int          rc, flip;
    size_t       n, cap, i, at;
    pair_t      *all;
    MDB_env     *env;
    MDB_txn     *txn;
    MDB_dbi      dbi;
    MDB_val      k, v, nv;
    MDB_cursor  *cur;

    flip = argc == 4 && strcmp(argv[2], "flip") == 0;

    if (!flip && !(argc == 3 && strcmp(argv[2], "rotate") == 0)) {
        fprintf(stderr, "usage: snapdamage <store dir> flip <offset>\n"
                        "       snapdamage <store dir> rotate\n");
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

    return 0;
}
