
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the memory tier, a bounded LRU of hot variants in front of
 * the store, one per worker.  An entry is made only from a record that
 * a lookup has just read from the store and checked (identity digest,
 * header and body checksums, expiry, snapcache_cold_start).  Its body is
 * written once into pages of a memfd of the worker's own, mapped
 * read-only, and never written again; its ETag is made then too.  A
 * response points into the entry, never into the map: a plain HTTP
 * connection with sendfile sends a large body straight from the
 * memfd's pages (zero copy), any other sends it from the mapping.  The
 * response holds a reference until the request's pool goes, which is
 * after nginx has handed its last byte to the kernel; only then are
 * the entry's pages given back, by punching a hole in the memfd.  The
 * kernel keeps the pages that a queued sendfile still references, and
 * a later entry at the same offset gets new pages: no response can
 * carry bytes of another entry.
 *
 * Every hit from the tier compares the request's identity digest with
 * the entry's in constant time, checks that the purge generations read
 * before the store read that admitted it have not moved since (a purge
 * bumps them before its deletes and again once they are committed, so
 * a purge that answered leaves nothing of its scope servable in any
 * worker's tier), and checks expiry and snapcache_cold_start again.  The
 * signature was checked by the gate before any lookup.
 *
 * Per worker, not in the shared zone: a hit takes no lock and no
 * atomic, references are counted by one event loop, and a worker that
 * dies takes its entries and references with it.  Purges reach every
 * worker's tier through the generations in the zone.
 */


#include "ngx_module/ngx_http_snapcache.h"

#include <sys/mman.h>
#include <openssl/crypto.h>


/* an entry larger than this share of the tier is not admitted */
#define NGX_HTTP_SNAPCACHE_MEM_ENTRY_SHARE  8

/* buckets: one per this many bytes of the tier, a power of two */
#define NGX_HTTP_SNAPCACHE_MEM_PER_BUCKET   8192

/*
 * The memfd's pages: twice the tier, room for entries evicted while a
 * response still sends them, and for holes between entries.
 */
#define NGX_HTTP_SNAPCACHE_MEM_ARENA        2

/*
 * Within its size, the tier may still lack a run of free pages (slow
 * responses hold evicted entries' pages): it evicts this many more
 * entries for one at most, rather than empty itself for one admission.
 */
#define NGX_HTTP_SNAPCACHE_MEM_TRIES        8


typedef struct ngx_http_snapcache_mem_entry_s  ngx_http_snapcache_mem_entry_t;

struct ngx_http_snapcache_mem_entry_s {
    ngx_http_snapcache_mem_entry_t  *next;        /* in its bucket */
    ngx_queue_t                      lru;         /* or in held */
    ngx_uint_t                       refs;        /* the tier's and each
                                                     response's */
    uint64_t                         hash;
    size_t                           size;        /* what it costs */

    ngx_http_snapcache_gen_t         gen;         /* read before the store
                                                     read that made it */
    int64_t                          created;
    int64_t                          expires;
    uint32_t                         checksum;
    ngx_uint_t                       format;

    u_char                           digest[SNAPCACHE_DIGEST_LEN];
    size_t                           key_len;
    u_char                           key[SNAPCACHE_CACHE_KEY_MAX];

    ngx_str_t                        etag;
    u_char                           etag_data[NGX_HTTP_SNAPCACHE_ETAG_LEN];
    size_t                           body_len;
    ngx_uint_t                       page;        /* the first, in the */
    ngx_uint_t                       npages;      /* memfd */
};


typedef struct {
    ngx_http_snapcache_mem_entry_t **buckets;
    ngx_uint_t                       mask;
    ngx_queue_t                      lru;         /* most recent first */
    ngx_queue_t                      held;        /* out of the tier, still
                                                     referenced */
    size_t                           size;        /* the budget */
    size_t                           used;        /* of entries in the
                                                     tier */
    ngx_uint_t                       entries;
    ngx_http_snapcache_main_conf_t  *smcf;

    ngx_file_t                       file;        /* the memfd */
    u_char                          *base;        /* mapped read-only */
    ngx_uint_t                       npages;
    uint64_t                        *map;         /* a bit a page: in use */
} ngx_http_snapcache_mem_t;


static ngx_http_snapcache_mem_entry_t **ngx_http_snapcache_mem_find(
    ngx_http_snapcache_mem_t *mem, const snapcache_key_t *key, uint64_t hash);
static void ngx_http_snapcache_mem_unlink(ngx_http_snapcache_mem_t *mem,
    ngx_http_snapcache_mem_entry_t **pe, ngx_uint_t reason);
static void ngx_http_snapcache_mem_unref(ngx_http_snapcache_mem_entry_t *e);
static void ngx_http_snapcache_mem_release(void *data);
static void ngx_http_snapcache_mem_gauges(ngx_http_snapcache_mem_t *mem);
static ngx_int_t ngx_http_snapcache_mem_arena(ngx_http_snapcache_mem_t *mem,
    ngx_log_t *log);
static ngx_int_t ngx_http_snapcache_mem_pages(ngx_http_snapcache_mem_t *mem,
    ngx_uint_t n);
static void ngx_http_snapcache_mem_mark(ngx_http_snapcache_mem_t *mem,
    ngx_uint_t page, ngx_uint_t n, ngx_uint_t used);
static void ngx_http_snapcache_mem_free(ngx_http_snapcache_mem_t *mem,
    ngx_http_snapcache_mem_entry_t *e);
static uint64_t ngx_http_snapcache_mem_hash(const snapcache_key_t *key);


static ngx_http_snapcache_mem_t  *ngx_http_snapcache_mem;


/*
 * snapcache_memory_cache size=<size> | off, in http{}: each worker's
 * tier; snapcache_memory_cache off | on in a server or location: whether
 * its requests use the tier (on by default when there is one).
 */
char *
ngx_http_snapcache_memory_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ssize_t                          size;
    ngx_str_t                       *value, s;
    ngx_http_snapcache_main_conf_t  *smcf;

    value = cf->args->elts;

    if (cf->cmd_type != NGX_HTTP_MAIN_CONF) {
        if (slcf->memory != NGX_CONF_UNSET) {
            return "is duplicate";
        }

        if (ngx_strcmp(value[1].data, "on") == 0) {
            slcf->memory = 1;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "off") == 0) {
            slcf->memory = 0;
            return NGX_CONF_OK;
        }

        return "takes \"on\" or \"off\" here; size= is set in http{}";
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_snapcache_module);

    if (smcf->memory_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        smcf->memory_size = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "size=", 5) != 0) {
        return "needs size=, the tier's size in each worker, e.g. size=64m";
    }

    s.data = value[1].data + 5;
    s.len = value[1].len - 5;

    size = ngx_parse_size(&s);
    if (size == NGX_ERROR || size < 1024 * 1024) {
        return "needs a size of at least 1m";
    }

    smcf->memory_size = (size_t) size;

    return NGX_CONF_OK;
}


/* In each worker, once its store is open: an empty tier. */
ngx_int_t
ngx_http_snapcache_memory_init(ngx_cycle_t *cycle,
    ngx_http_snapcache_main_conf_t *smcf)
{
    ngx_uint_t                 n;
    ngx_http_snapcache_mem_t  *mem;

    if (smcf->memory_size == 0 || smcf->memory_size == NGX_CONF_UNSET_SIZE) {
        return NGX_OK;
    }

    mem = ngx_calloc(sizeof(ngx_http_snapcache_mem_t), cycle->log);
    if (mem == NULL) {
        return NGX_ERROR;
    }

    for (n = 64; n < smcf->memory_size / NGX_HTTP_SNAPCACHE_MEM_PER_BUCKET;
         n <<= 1)
    {
        /* void */
    }

    mem->buckets = ngx_calloc(n * sizeof(ngx_http_snapcache_mem_entry_t *),
                              cycle->log);
    if (mem->buckets == NULL) {
        ngx_free(mem);
        return NGX_ERROR;
    }

    mem->mask = n - 1;
    mem->size = smcf->memory_size;
    mem->smcf = smcf;
    ngx_queue_init(&mem->lru);
    ngx_queue_init(&mem->held);

    if (ngx_http_snapcache_mem_arena(mem, cycle->log) != NGX_OK) {
        /* the worker serves from the store alone, and says so */
        ngx_free(mem->buckets);
        ngx_free(mem);
        return NGX_OK;
    }

    ngx_http_snapcache_mem = mem;
    ngx_http_snapcache_mem_gauges(mem);

    return NGX_OK;
}


/*
 * The memfd, sparse, of NGX_HTTP_SNAPCACHE_MEM_ARENA times the tier's
 * size, mapped read-only: bodies are written with pwrite() once, and a
 * stray write through the mapping would fault rather than change a
 * body some response is sending.
 */
static ngx_int_t
ngx_http_snapcache_mem_arena(ngx_http_snapcache_mem_t *mem, ngx_log_t *log)
{
    int     fd;
    size_t  len;

    mem->npages = NGX_HTTP_SNAPCACHE_MEM_ARENA * mem->size / ngx_pagesize;
    mem->npages = (mem->npages + 63) & ~(ngx_uint_t) 63;
    len = mem->npages * ngx_pagesize;

    mem->map = ngx_calloc(mem->npages / 8, log);
    if (mem->map == NULL) {
        return NGX_ERROR;
    }

    fd = memfd_create("snapcache-memory", MFD_CLOEXEC);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "snapcache: memfd_create() failed, this worker has "
                      "no memory tier");
        ngx_free(mem->map);
        return NGX_ERROR;
    }

    if (ftruncate(fd, (off_t) len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "snapcache: ftruncate() of the memory tier failed, "
                      "this worker has no memory tier");
        goto failed;
    }

    mem->base = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (mem->base == MAP_FAILED) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "snapcache: mmap() of the memory tier failed, this "
                      "worker has no memory tier");
        goto failed;
    }

    mem->file.fd = fd;
    ngx_str_set(&mem->file.name, "snapcache memory tier");
    mem->file.log = ngx_cycle->log;

    return NGX_OK;

failed:

    (void) close(fd);
    ngx_free(mem->map);

    return NGX_ERROR;
}


/*
 * At the worker's exit nothing is sent any more: every entry goes, and
 * this worker's share of the gauges with it.
 */
void
ngx_http_snapcache_memory_exit(void)
{
    ngx_queue_t               *q;
    ngx_http_snapcache_mem_t  *mem;

    mem = ngx_http_snapcache_mem;
    if (mem == NULL) {
        return;
    }

    ngx_http_snapcache_mem = NULL;

    while (!ngx_queue_empty(&mem->lru)) {
        q = ngx_queue_head(&mem->lru);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_snapcache_mem_entry_t, lru));
    }

    while (!ngx_queue_empty(&mem->held)) {
        q = ngx_queue_head(&mem->held);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_snapcache_mem_entry_t, lru));
    }

    mem->used = 0;
    mem->entries = 0;
    ngx_http_snapcache_mem_gauges(mem);

    (void) munmap(mem->base, mem->npages * ngx_pagesize);
    (void) close(mem->file.fd);

    ngx_free(mem->map);
    ngx_free(mem->buckets);
    ngx_free(mem);
}


/*
 * A rung's key in the tier: NGX_OK with rec and image describing the
 * entry, whose body stays valid for as long as r's pool; NGX_DECLINED
 * when the tier has nothing it may serve for this request, and the
 * store is asked.
 */
ngx_int_t
ngx_http_snapcache_memory_get(ngx_http_request_t *r,
    ngx_http_snapcache_main_conf_t *smcf, const snapcache_key_t *key,
    const snapcache_ident_t *ident, snapcache_record_t *rec,
    ngx_http_snapcache_image_t *image)
{
    uint64_t                           hash;
    ngx_uint_t                         reason;
    ngx_pool_cleanup_t                *cln;
    ngx_http_snapcache_mem_t          *mem;
    ngx_http_snapcache_mem_entry_t    *e, **pe;
    ngx_http_snapcache_mem_metrics_t  *mm;

    mem = ngx_http_snapcache_mem;
    if (mem == NULL) {
        return NGX_DECLINED;
    }

    mm = &smcf->sh->metrics.memory;

    hash = ngx_http_snapcache_mem_hash(key);
    pe = ngx_http_snapcache_mem_find(mem, key, hash);

    if (pe == NULL) {
        ngx_atomic_fetch_add(&mm->misses, 1);
        return NGX_DECLINED;
    }

    e = *pe;

    /* the same key is the same ids, unless the tags collide: never trust */
    if (CRYPTO_memcmp(e->digest, ident->digest, SNAPCACHE_DIGEST_LEN) != 0) {
        ngx_atomic_fetch_add(&mm->misses, 1);
        return NGX_DECLINED;
    }

    if (ngx_http_snapcache_gen_changed(smcf, ident->acct_tag, ident->dev_tag,
                                       &e->gen))
    {
        reason = NGX_HTTP_SNAPCACHE_MEM_PURGED;

    } else if (e->expires <= (int64_t) ngx_time()) {
        reason = NGX_HTTP_SNAPCACHE_MEM_EXPIRED;

    } else if (e->created <= (int64_t) ngx_http_snapcache_not_before(smcf)) {
        reason = NGX_HTTP_SNAPCACHE_MEM_PURGED;

    } else {
        reason = NGX_HTTP_SNAPCACHE_MEM_NREASONS;
    }

    if (reason != NGX_HTTP_SNAPCACHE_MEM_NREASONS) {
        ngx_http_snapcache_mem_unlink(mem, pe, reason);
        ngx_atomic_fetch_add(&mm->misses, 1);
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    e->refs++;
    cln->handler = ngx_http_snapcache_mem_release;
    cln->data = e;

    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&mem->lru, &e->lru);

    image->body = mem->base + e->page * ngx_pagesize;
    image->len = e->body_len;
    image->format = e->format;
    image->expires = (time_t) e->expires;
    image->checksum = e->checksum;
    image->etag = e->etag;
    image->file = &mem->file;
    image->file_pos = (off_t) (e->page * ngx_pagesize);
    image->in_pool = 1;

    ngx_memzero(rec, sizeof(snapcache_record_t));
    rec->created = e->created;
    rec->expires = e->expires;
    rec->format = e->format;
    rec->checksum = e->checksum;
    ngx_memcpy(rec->digest, e->digest, SNAPCACHE_DIGEST_LEN);
    rec->body = image->body;
    rec->body_len = e->body_len;

    ngx_atomic_fetch_add(&mm->hits, 1);

    return NGX_OK;
}


/*
 * A record the lookup has just read from the store and checked, with
 * the generations read before that read: kept, in place of the least
 * recently used entries.  An entry evicted while a response still sends
 * it leaves the tier at once; its pages go with its last response.
 */
void
ngx_http_snapcache_memory_admit(ngx_http_snapcache_main_conf_t *smcf,
    const snapcache_key_t *key, const snapcache_ident_t *ident,
    const snapcache_record_t *rec, const ngx_http_snapcache_gen_t *gen)
{
    size_t                           size;
    ssize_t                          n;
    uint64_t                         hash;
    ngx_int_t                        page;
    ngx_uint_t                       npages, tries;
    ngx_queue_t                     *q;
    ngx_http_snapcache_mem_t        *mem;
    ngx_http_snapcache_mem_entry_t  *e, **pe;

    mem = ngx_http_snapcache_mem;
    if (mem == NULL || rec->format == SNAPCACHE_FORMAT_ABSENT
        || rec->body_len == 0)
    {
        return;
    }

    npages = (rec->body_len + ngx_pagesize - 1) / ngx_pagesize;
    size = sizeof(ngx_http_snapcache_mem_entry_t) + npages * ngx_pagesize;

    if (size > mem->size / NGX_HTTP_SNAPCACHE_MEM_ENTRY_SHARE) {
        return;
    }

    hash = ngx_http_snapcache_mem_hash(key);

    if (ngx_http_snapcache_mem_find(mem, key, hash)) {
        /* another request of this worker admitted it meanwhile */
        return;
    }

    for (tries = 0; /* void */; /* void */) {

        if (mem->used + size <= mem->size) {
            page = ngx_http_snapcache_mem_pages(mem, npages);

            if (page != NGX_ERROR) {
                break;
            }

            /* the pages are held by responses in flight, or in holes */
            if (++tries > NGX_HTTP_SNAPCACHE_MEM_TRIES) {
                return;
            }
        }

        if (ngx_queue_empty(&mem->lru)) {
            return;
        }

        q = ngx_queue_last(&mem->lru);
        e = ngx_queue_data(q, ngx_http_snapcache_mem_entry_t, lru);

        for (pe = &mem->buckets[e->hash & mem->mask]; *pe != e;
             pe = &(*pe)->next)
        {
            /* void */
        }

        ngx_http_snapcache_mem_unlink(mem, pe, NGX_HTTP_SNAPCACHE_MEM_SIZE);
    }

    e = ngx_alloc(sizeof(ngx_http_snapcache_mem_entry_t), ngx_cycle->log);
    if (e == NULL) {
        return;
    }

    n = pwrite(mem->file.fd, rec->body, rec->body_len,
               (off_t) ((ngx_uint_t) page * ngx_pagesize));

    if (n != (ssize_t) rec->body_len) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, n == -1 ? ngx_errno : 0,
                      "snapcache: pwrite() to the memory tier failed");
        (void) fallocate(mem->file.fd,
                         FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                         (off_t) ((ngx_uint_t) page * ngx_pagesize),
                         (off_t) (npages * ngx_pagesize));
        ngx_free(e);
        return;
    }

    ngx_memzero(e, sizeof(ngx_http_snapcache_mem_entry_t));

    e->refs = 1;
    e->hash = hash;
    e->size = size;
    e->gen = *gen;
    e->created = rec->created;
    e->expires = rec->expires;
    e->checksum = rec->checksum;
    e->format = rec->format;
    ngx_memcpy(e->digest, ident->digest, SNAPCACHE_DIGEST_LEN);
    e->key_len = key->len;
    ngx_memcpy(e->key, key->data, key->len);

    e->etag.data = e->etag_data;
    e->etag.len = ngx_http_snapcache_etag(e->etag_data, rec->checksum,
                                          rec->body_len)
                  - e->etag_data;

    e->body_len = rec->body_len;
    e->page = (ngx_uint_t) page;
    e->npages = npages;
    ngx_http_snapcache_mem_mark(mem, e->page, npages, 1);

    e->next = mem->buckets[hash & mem->mask];
    mem->buckets[hash & mem->mask] = e;
    ngx_queue_insert_head(&mem->lru, &e->lru);

    mem->used += size;
    mem->entries++;

    ngx_atomic_fetch_add(&smcf->sh->metrics.memory.admissions, 1);
    ngx_http_snapcache_mem_gauges(mem);
}


static ngx_http_snapcache_mem_entry_t **
ngx_http_snapcache_mem_find(ngx_http_snapcache_mem_t *mem,
    const snapcache_key_t *key, uint64_t hash)
{
    ngx_http_snapcache_mem_entry_t  **pe;

    for (pe = &mem->buckets[hash & mem->mask]; *pe; pe = &(*pe)->next) {
        if ((*pe)->hash == hash && (*pe)->key_len == key->len
            && ngx_memcmp((*pe)->key, key->data, key->len) == 0)
        {
            return pe;
        }
    }

    return NULL;
}


/* The first run of n free pages of the memfd, or NGX_ERROR. */
static ngx_int_t
ngx_http_snapcache_mem_pages(ngx_http_snapcache_mem_t *mem, ngx_uint_t n)
{
    ngx_uint_t  i, run;

    run = 0;

    for (i = 0; i < mem->npages; i++) {

        if ((i & 63) == 0 && mem->map[i >> 6] == ~(uint64_t) 0) {
            run = 0;
            i += 63;
            continue;
        }

        if (mem->map[i >> 6] & ((uint64_t) 1 << (i & 63))) {
            run = 0;
            continue;
        }

        if (++run == n) {
            return (ngx_int_t) (i + 1 - n);
        }
    }

    return NGX_ERROR;
}


static void
ngx_http_snapcache_mem_mark(ngx_http_snapcache_mem_t *mem, ngx_uint_t page,
    ngx_uint_t n, ngx_uint_t used)
{
    ngx_uint_t  i;

    for (i = page; i < page + n; i++) {
        if (used) {
            mem->map[i >> 6] |= (uint64_t) 1 << (i & 63);

        } else {
            mem->map[i >> 6] &= ~((uint64_t) 1 << (i & 63));
        }
    }
}


/* Out of the tier; freed now, or by the last response that holds it. */
static void
ngx_http_snapcache_mem_unlink(ngx_http_snapcache_mem_t *mem,
    ngx_http_snapcache_mem_entry_t **pe, ngx_uint_t reason)
{
    ngx_http_snapcache_mem_entry_t  *e;

    e = *pe;
    *pe = e->next;
    ngx_queue_remove(&e->lru);
    ngx_queue_insert_tail(&mem->held, &e->lru);

    mem->used -= e->size;
    mem->entries--;

    ngx_atomic_fetch_add(&mem->smcf->sh->metrics.memory.evictions[reason], 1);
    ngx_http_snapcache_mem_gauges(mem);

    ngx_http_snapcache_mem_unref(e);
}


static void
ngx_http_snapcache_mem_unref(ngx_http_snapcache_mem_entry_t *e)
{
    if (--e->refs == 0) {
        ngx_http_snapcache_mem_free(ngx_http_snapcache_mem, e);
    }
}


/*
 * No response holds the entry any more: its pages go back to the
 * kernel, punched out of the memfd.  A sendfile() the kernel still has
 * queued keeps the pages it references; the offsets get new, zeroed
 * pages when a later entry is written there.
 */
static void
ngx_http_snapcache_mem_free(ngx_http_snapcache_mem_t *mem,
    ngx_http_snapcache_mem_entry_t *e)
{
    ngx_queue_remove(&e->lru);

    if (fallocate(mem->file.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t) (e->page * ngx_pagesize),
                  (off_t) (e->npages * ngx_pagesize))
        == -1)
    {
        /* the pages stay out of use rather than be written over */
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "snapcache: fallocate(PUNCH_HOLE) on the memory tier "
                      "failed, %ui pages are lost to it", e->npages);
        ngx_free(e);
        return;
    }

    ngx_http_snapcache_mem_mark(mem, e->page, e->npages, 0);
    ngx_free(e);
}


/* The request's pool goes: its response has been sent, or never will. */
static void
ngx_http_snapcache_mem_release(void *data)
{
    ngx_http_snapcache_mem_entry_t *e = data;

    if (ngx_http_snapcache_mem == NULL) {
        /* the worker is exiting: the tier freed every entry */
        return;
    }

    ngx_http_snapcache_mem_unref(e);
}


/* This worker's share of the tier's gauges, in its process slot. */
static void
ngx_http_snapcache_mem_gauges(ngx_http_snapcache_mem_t *mem)
{
    ngx_http_snapcache_worker_slot_t  *w;

    if (mem->smcf->sh == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    w = &mem->smcf->sh->metrics.workers[ngx_process_slot];

    /* a slot another live worker claimed is not this worker's to write */
    if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
        w->memory_bytes = mem->used;
        w->memory_entries = mem->entries;
    }
}


/* FNV-1a over the key; its first bytes are keyed tags, so well spread. */
static uint64_t
ngx_http_snapcache_mem_hash(const snapcache_key_t *key)
{
    size_t         i;
    uint64_t       h;
    const u_char  *p;

    h = 0xcbf29ce484222325ULL;
    p = key->data;

    for (i = 0; i < key->len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}
