
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache LMDB store: the whole interface of cache/.
 *
 * Keys are
 *   acct_tag(16) | dev_tag(16) | snapshot | 0x00 | variant(4) | format(1)
 * where the tags are HMAC-SHA256 of length-prefixed ids under a store
 * secret generated at first open, and the variant names a rung by what
 * it is (width, quality, pipeline version), never by its place in a
 * ladder.  A record is a header, then the body; the header holds the
 * full 32-byte identity digest of (account, device, snapshot), checked
 * on every read, the variant and format its key names, and a CRC32C of
 * the body.  docs/cache.md has the byte layout.
 *
 * Thread safety: one snapcache_cache_t per process, opened after fork.
 * Every call runs its own transaction (MDB_NOTLS), so any thread may call
 * any function at the same time; writers serialise on LMDB's writer lock.
 * get writes only to delete a foreign or corrupt record.  Plain C11
 * plus LMDB and OpenSSL; no nginx header.
 */

#ifndef SNAPCACHE_CACHE_H
#define SNAPCACHE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "format/snapcache_format.h"


#define SNAPCACHE_TAG_LEN            16
#define SNAPCACHE_DIGEST_LEN         32
#define SNAPCACHE_CACHE_ID_MAX       64
#define SNAPCACHE_VARIANT_LEN        4
#define SNAPCACHE_CACHE_KEY_MAX      (2 * SNAPCACHE_TAG_LEN                   \
                                      + SNAPCACHE_CACHE_ID_MAX + 1           \
                                      + SNAPCACHE_VARIANT_LEN + 1)
#define SNAPCACHE_RECORD_HEADER_LEN  84

/*
 * The variant of a kept original (and of a negative record).  A rung's
 * variant is snapcache_cache_variant(width, quality, pipeline), never 0.
 */
#define SNAPCACHE_VARIANT_ORIGINAL   0

#define SNAPCACHE_VARIANT_WIDTH(v)     ((unsigned) ((v) >> 16))
#define SNAPCACHE_VARIANT_QUALITY(v)   ((unsigned) (((v) >> 8) & 0xff))
#define SNAPCACHE_VARIANT_PIPELINE(v)  ((unsigned) ((v) & 0xff))

/* get flags */
#define SNAPCACHE_GET_STALE          0x01  /* copy out an expired record too */
#define SNAPCACHE_GET_LOOP           0x04  /* the caller is the one thread
                                              (an event loop) that reuses
                                              the cache's read transaction */
#define SNAPCACHE_GET_KEEP_BAD       0x02  /* leave a foreign or corrupt
                                              record for the next put of
                                              its key to replace */


typedef enum {
    SNAPCACHE_CACHE_OK = 0,
    SNAPCACHE_CACHE_HIT = 0,
    SNAPCACHE_CACHE_MISS,          /* no record under this key */
    SNAPCACHE_CACHE_EXPIRED,       /* a record, past its expiry */
    SNAPCACHE_CACHE_FOREIGN,       /* identity digest of someone else */
    SNAPCACHE_CACHE_CORRUPT,       /* bad header or body checksum */
    SNAPCACHE_CACHE_OUTDATED,      /* a record of an older layout: never
                                      read, it ages out */
    SNAPCACHE_CACHE_FULL,          /* map full even after eviction */
    SNAPCACHE_CACHE_ABORTED,       /* the precommit check said no */
    SNAPCACHE_CACHE_SKIPPED,       /* the caller chose not to store */
    SNAPCACHE_CACHE_DAMAGED,       /* the LMDB file itself is damaged */
    SNAPCACHE_CACHE_NOMEM,
    SNAPCACHE_CACHE_ERROR
} snapcache_cache_rc_e;


typedef struct snapcache_cache_s  snapcache_cache_t;


typedef struct {
    const char  *path;             /* a directory */
    size_t       map_size;         /* bytes; the data file is preallocated */
    unsigned     high_pct;         /* evict above this (default 90) */
    unsigned     low_pct;          /* ... down to this (default 75) */
    unsigned     read_only;        /* an existing store, and write nothing */
} snapcache_cache_conf_t;


/* Who a request is for; computed once per request from the ids. */
typedef struct {
    unsigned char  acct_tag[SNAPCACHE_TAG_LEN];
    unsigned char  dev_tag[SNAPCACHE_TAG_LEN];
    unsigned char  digest[SNAPCACHE_DIGEST_LEN];
    unsigned char  prefix[SNAPCACHE_CACHE_KEY_MAX];   /* tags|snapshot|0x00 */
    size_t         prefix_len;
} snapcache_ident_t;


typedef struct {
    unsigned char  data[SNAPCACHE_CACHE_KEY_MAX];
    size_t         len;
} snapcache_key_t;


typedef struct {
    int64_t         created;
    int64_t         expires;
    uint32_t        variant;
    unsigned        format;        /* snapcache_format_e, or ABSENT */
    unsigned        width;
    unsigned        height;
    uint32_t        checksum;      /* CRC32C of the body */
    unsigned char   digest[SNAPCACHE_DIGEST_LEN];
    unsigned char  *body;          /* caller memory, from alloc */
    size_t          body_len;
} snapcache_record_t;


/*
 * One record to store.  A negative record (the origin said 404) goes
 * under the kept original's key, with variant ORIGINAL, format ABSENT
 * and an empty body.
 */
typedef struct {
    snapcache_key_t           key;
    const snapcache_ident_t  *ident;
    uint32_t                  variant;
    unsigned                  format;
    unsigned                  width;
    unsigned                  height;
    int64_t                   expires;
    const void               *body;
    size_t                    body_len;
} snapcache_put_t;


typedef struct {
    uint64_t  entries;             /* records */
    uint64_t  used_pages;
    uint64_t  total_pages;         /* the configured size, in pages */
    uint64_t  evictions;           /* records evicted by this process */
    uint64_t  deleted_bad;         /* foreign or corrupt, deleted by get */
    unsigned  page_size;
} snapcache_cache_stats_t;


typedef void *(*snapcache_alloc_pt)(void *ctx, size_t size);

/* Runs inside put's write transaction before commit; non-zero aborts. */
typedef int (*snapcache_precommit_pt)(void *ctx);

/*
 * For iterate: one record's key and decoded header, and its check: OK,
 * EXPIRED, CORRUPT or OUTDATED.  Non-zero stops the walk.
 */
typedef int (*snapcache_visit_pt)(void *ctx, const unsigned char *key,
    size_t key_len, const snapcache_record_t *hdr, int check_rc);


/*
 * Opens or creates a store.  With read_only, the store must exist: it is
 * opened with MDB_RDONLY and nothing is created or written; when no
 * other process has it open, not even the lock file is touched.
 * A store whose data file is larger than map_size (the size was
 * lowered) keeps its file; the store is evicted down to map_size by the
 * next put.
 */
int snapcache_cache_open(const snapcache_cache_conf_t *conf,
    snapcache_cache_t **out, char *err, size_t err_size);
void snapcache_cache_close(snapcache_cache_t *cache);

/* Clears reader slots left by dead processes; call at open and on a timer. */
int snapcache_cache_reader_check(snapcache_cache_t *cache, int *cleared);

int snapcache_cache_ident(snapcache_cache_t *cache, const char *account,
    size_t account_len, const char *device, size_t device_len,
    const char *snapshot, size_t snapshot_len, snapcache_ident_t *ident);

/*
 * A rung's variant: width (16 bits) | quality (8) | pipeline (8), the
 * transcoder's SNAPCACHE_TRANSCODE_PIPELINE.  0, which no rung has, when
 * a value is out of range (width 1-65535, quality and pipeline 1-255).
 */
uint32_t snapcache_cache_variant(unsigned width, unsigned quality,
    unsigned pipeline);
void snapcache_cache_key(const snapcache_ident_t *ident, uint32_t variant,
    unsigned format, snapcache_key_t *key);

/*
 * Exact-key lookup.  The body is copied into alloc(ctx, len) inside the
 * read transaction, which then ends; the identity digest, the header and
 * the body checksum are checked on the copy, and the record must be of
 * the variant and format its key names (the kept original's key, format
 * ANY, takes any format, ABSENT too).  FOREIGN and CORRUPT are misses,
 * and get deletes the record in a short write transaction after
 * checking it again under the writer lock (a fill may have replaced it).
 * Such records only come from damage or a bug; a good lookup never
 * writes.  A caller that must never wait for the writer lock (an event
 * loop) passes SNAPCACHE_GET_KEEP_BAD: the record stays until the next
 * put of its key, which replaces it.  A negative record is a HIT with
 * format ABSENT and body_len 0.
 */
int snapcache_cache_get(snapcache_cache_t *cache, const snapcache_key_t *key,
    const snapcache_ident_t *ident, int64_t now, unsigned flags,
    snapcache_record_t *rec, snapcache_alloc_pt alloc, void *alloc_ctx);

/*
 * 1 when a fresh, well-formed record of ident is under key.  It reads the
 * header only (no body, no checksum): for deciding what a fill still has
 * to make, never for serving.
 */
int snapcache_cache_fresh(snapcache_cache_t *cache,
    const snapcache_key_t *key, const snapcache_ident_t *ident, int64_t now,
    unsigned flags);

/*
 * Stores n records in one write transaction, evicting first when usage
 * would cross the high watermark.  On MDB_MAP_FULL it evicts and
 * retries, twice at most, then returns FULL: the caller serves the fill
 * uncached.  A batch larger than the high watermark is FULL at once.
 */
int snapcache_cache_put_batch(snapcache_cache_t *cache,
    const snapcache_put_t *items, size_t n, int64_t now,
    snapcache_precommit_pt precommit, void *precommit_ctx);

/*
 * Only inside a precommit check: is the record under key still there,
 * with this creation time and body checksum?  A fill made from a record
 * that a purge (or an eviction) has since removed must not be stored.
 */
int snapcache_cache_unchanged(snapcache_cache_t *cache,
    const snapcache_key_t *key, int64_t created, uint32_t checksum);

/*
 * The same question in a read transaction of its own (flags: GET_LOOP
 * from an event loop), for a body read earlier that is about to be
 * served: a record that a purge removed since is not there any more.
 */
int snapcache_cache_still(snapcache_cache_t *cache, const snapcache_key_t *key,
    int64_t created, uint32_t checksum, unsigned flags);

/*
 * Deletes every record of an account, a device (device != NULL) or a
 * snapshot (snapshot != NULL too), at most 1000 per transaction, and
 * syncs the file before it returns: the removal is durable.  *count is
 * the number of records removed.
 */
int snapcache_cache_purge(snapcache_cache_t *cache, const char *account,
    const char *device, const char *snapshot, uint64_t *count);

/*
 * The same deletes without the sync, for a caller that shares one sync
 * among several purges (a group commit): the removal is durable once a
 * snapcache_cache_sync() that began after this call has returned.
 */
int snapcache_cache_purge_nosync(snapcache_cache_t *cache,
    const char *account, const char *device, const char *snapshot,
    uint64_t *count);

/* Flushes every committed write to the disk (the store runs MDB_NOSYNC). */
int snapcache_cache_sync(snapcache_cache_t *cache);

int snapcache_cache_stats(snapcache_cache_t *cache,
    snapcache_cache_stats_t *stats);

/*
 * Pages of the data file LMDB has handed out so far (its last page + 1).
 * It only grows while freed pages cannot be reused, e.g. behind a stale
 * reader slot: the number to watch for that.
 */
int snapcache_cache_extent(snapcache_cache_t *cache, uint64_t *pages);

/*
 * Visits every record whose key starts with prefix (all when len 0).
 * A failing walk returns its error (DAMAGED for a damaged file).
 */
int snapcache_cache_iterate(snapcache_cache_t *cache,
    const unsigned char *prefix, size_t prefix_len, int64_t now,
    snapcache_visit_pt visit, void *ctx);

/*
 * Walks every entry of the store's trees (the records and the two
 * indexes eviction uses) and compares each count with LMDB's own:
 * DAMAGED when a walk fails or a count differs.  *records is the number
 * of records walked.
 */
int snapcache_cache_verify(snapcache_cache_t *cache, uint64_t *records);

/* The key prefix of an account, or of one device of it. */
int snapcache_cache_prefix(snapcache_cache_t *cache, const char *account,
    const char *device, unsigned char *out, size_t *out_len);

/*
 * Record encoding, exposed for tools and the fuzzer.  decode checks the
 * header (magic, version, lengths, its checksum); the body checksum is
 * the caller's to check.  It returns OUTDATED, with the header decoded,
 * for a sound record of an older layout.
 */
int snapcache_record_decode(const void *data, size_t len,
    snapcache_record_t *hdr, const unsigned char **body);
size_t snapcache_record_encode(const snapcache_put_t *item, int64_t now,
    unsigned char *out, size_t out_size);

uint32_t snapcache_cache_checksum(const void *data, size_t len);
const char *snapcache_cache_strerror(int rc);

#endif /* SNAPCACHE_CACHE_H */
