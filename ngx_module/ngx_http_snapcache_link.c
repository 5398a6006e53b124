
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the client's link.  Delivery samples
 * (ngx_http_snapcache_watch.c) go to a small record per client in the
 * shared zone, keyed by a keyed hash of the account tag and the client
 * address (IPv4 /32, IPv6 /64), in a bounded table evicted least
 * recently used first.  The same table keeps what each rung of each
 * device weighed lately.  adapt/ turns the record into a choice.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"

#include <sys/random.h>


#define NGX_HTTP_SNAPCACHE_LINK_CLIENT     1
#define NGX_HTTP_SNAPCACHE_LINK_DEVICE     2
#define NGX_HTTP_SNAPCACHE_LINK_SLOTS      8

/*
 * A queue that has not moved for this long belongs to a worker that
 * died with deliveries on its books: nothing is on its way any more.
 */
#define NGX_HTTP_SNAPCACHE_LINK_QUEUE_AGE  15000

/* busy spells of a client's connections kept apart, in usec */
#define NGX_HTTP_SNAPCACHE_LINK_BUSY       8

/* requests of a client this close to the first are one refresh */
#define NGX_HTTP_SNAPCACHE_LINK_BURST      250

/*
 * The most tiles a refresh is taken to share the link with: a flood from
 * one address (a load test, many displays behind one NAT) is no wall,
 * and its requests' own deliveries already show in the queue.
 */
#define NGX_HTTP_SNAPCACHE_LINK_WALL       16

/* a held-down response is paced at this many times the estimate */
#define NGX_HTTP_SNAPCACHE_LINK_PACE       3


/*
 * The queue is what this client's connections (an HTTP/1.1 pool, or the
 * streams of one HTTP/2 connection) still have on their way to it: a
 * new image shares the link with them.  A display refreshes its tiles
 * together: the requests that come within NGX_HTTP_SNAPCACHE_LINK_BURST
 * of the first are one refresh, and the last refresh's size is how many
 * tiles the next one shares the link with.
 *
 * Connections of a pool share the link as well, and each alone would
 * measure its share: the client's spell sums their deliveries over the
 * time at least one of them was busy (the union of their busy spans),
 * and becomes one sample when the queue runs dry.  Connections that took
 * turns each had the link alone; connections at once shared it; either
 * way the sum over the union is the link's rate.  One connection's spell
 * is measured over its busy time, as before.
 */
typedef struct {
    snapcache_adapt_link_t     link;
    snapcache_adapt_hold_t     hold;
    uint32_t                   hold_id;      /* the hold rung's variant */

    uint64_t                   queued_bytes;
    uint32_t                   queued;       /* responses */
    int64_t                    queued_ms;    /* when the queue last moved */

    uint32_t                   asked;        /* requests in this refresh */
    uint32_t                   together;     /* and in the one before */
    int64_t                    asked_ms;     /* when this refresh began */

    /* the spell's deliveries so far, over all the client's connections */
    snapcache_adapt_sample_t   spell;
    int64_t                    busy[NGX_HTTP_SNAPCACHE_LINK_BUSY][2];
    uint32_t                   nbusy;        /* usec, disjoint, sorted */
} ngx_http_snapcache_link_client_t;


typedef struct {
    uint32_t                   id[NGX_HTTP_SNAPCACHE_LINK_SLOTS];
    uint32_t                   bytes[NGX_HTTP_SNAPCACHE_LINK_SLOTS];
    uint32_t                   used[NGX_HTTP_SNAPCACHE_LINK_SLOTS];
    uint32_t                   clock;
} ngx_http_snapcache_link_device_t;


typedef struct {
    ngx_rbtree_node_t          node;         /* key: hash[0] */
    ngx_queue_t                queue;        /* most recently used first */
    uint64_t                   hash[2];
    ngx_uint_t                 kind;

    union {
        ngx_http_snapcache_link_client_t  client;
        ngx_http_snapcache_link_device_t  device;
    } u;
} ngx_http_snapcache_link_node_t;


struct ngx_http_snapcache_links_s {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                lru;
    ngx_queue_t                free;
    uint64_t                   key[2][2];    /* SipHash keys, per zone */
    ngx_uint_t                 capacity;
};


static uint64_t ngx_http_snapcache_siphash(const uint64_t key[2],
    const u_char *in, size_t len);
static ngx_int_t ngx_http_snapcache_client_hash(ngx_http_request_t *r,
    ngx_http_snapcache_links_t *links, ngx_http_snapcache_ctx_t *ctx);
static ngx_http_snapcache_link_node_t *ngx_http_snapcache_link_find(
    ngx_http_snapcache_links_t *links, const uint64_t hash[2],
    ngx_uint_t kind, ngx_uint_t create);
static void ngx_http_snapcache_link_decide(snapcache_adapt_input_t *in,
    snapcache_adapt_rung_t *rungs, uint64_t *bytes, ngx_uint_t n,
    snapcache_adapt_hold_t *hold, snapcache_adapt_choice_t *choice);
static void ngx_http_snapcache_link_sizes(ngx_http_snapcache_link_node_t *dev,
    ngx_http_snapcache_loc_conf_t *slcf, snapcache_adapt_rung_t *rungs);
static ngx_int_t ngx_http_snapcache_link_hints(
    ngx_http_snapcache_req_t *sreq, uint32_t *kbps, uint32_t *rtt_ms);
static ngx_http_snapcache_link_node_t *ngx_http_snapcache_link_lock(
    ngx_http_snapcache_main_conf_t *smcf, const uint64_t hash[2],
    ngx_uint_t kind);
static void ngx_http_snapcache_link_dequeue(
    ngx_http_snapcache_link_client_t *cl, int64_t now, int64_t bytes,
    ngx_int_t responses);
static uint64_t ngx_http_snapcache_link_busy(
    ngx_http_snapcache_link_client_t *cl, int64_t start, int64_t end);
static void ngx_http_snapcache_link_asked(ngx_http_snapcache_link_client_t *cl,
    int64_t now);


/*
 * The table takes a quarter of the zone, made when the zone is, so that
 * a zone too small for it is known at startup.  Returns NULL when there
 * is no room or no randomness for the key; adaptation then knows
 * nothing about any client and serves the ceilings.
 */
ngx_http_snapcache_links_t *
ngx_http_snapcache_links_create(ngx_slab_pool_t *shpool, size_t zone_size,
    ngx_log_t *log)
{
    ngx_uint_t                       i, n;
    ngx_http_snapcache_links_t      *links;
    ngx_http_snapcache_link_node_t  *nodes;

    links = ngx_slab_calloc(shpool, sizeof(ngx_http_snapcache_links_t));
    if (links == NULL) {
        return NULL;
    }

    if (getrandom(links->key, sizeof(links->key), 0)
        != (ssize_t) sizeof(links->key))
    {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "snapcache: no random key for the link history, "
                      "adaptation will serve the ceilings");
        ngx_slab_free(shpool, links);
        return NULL;
    }

    n = zone_size / 4 / sizeof(ngx_http_snapcache_link_node_t);

    for ( ;; ) {
        if (n < 16) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "snapcache: zone too small for the link history, "
                          "adaptation will serve the ceilings");
            ngx_slab_free(shpool, links);
            return NULL;
        }

        nodes = ngx_slab_calloc(shpool,
                                n * sizeof(ngx_http_snapcache_link_node_t));
        if (nodes) {
            break;
        }

        n /= 2;
    }

    ngx_rbtree_init(&links->rbtree, &links->sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&links->lru);
    ngx_queue_init(&links->free);

    for (i = 0; i < n; i++) {
        ngx_queue_insert_tail(&links->free, &nodes[i].queue);
    }

    links->capacity = n;

    return links;
}


/* Expected sizes, then adapt/'s choice. */
static void
ngx_http_snapcache_link_decide(snapcache_adapt_input_t *in,
    snapcache_adapt_rung_t *rungs, uint64_t *bytes, ngx_uint_t n,
    snapcache_adapt_hold_t *hold, snapcache_adapt_choice_t *choice)
{
    ngx_uint_t  i;

    snapcache_adapt_sizes(rungs, (unsigned) n);

    for (i = 0; i < n; i++) {
        bytes[i] = rungs[i].bytes;
    }

    if (snapcache_adapt_choose(in, hold, choice) != 0) {
        /* cannot happen: the gate checked the ceiling */
        choice->index = (unsigned) in->ceiling;
        choice->reason = SNAPCACHE_ADAPT_UNKNOWN;
    }
}


/*
 * The rung for this request: at or below the ceiling the gate set in
 * sreq, from this client's history (or its hints), the sizes this
 * device's rungs had lately and the budget.  Sets the request's rung
 * and what $snapcache_link_* and $snapcache_adapt_reason show.
 */
void
ngx_http_snapcache_link_choose(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    int64_t                          now;
    uint32_t                         kbps, rtt_ms;
    ngx_uint_t                       i, n, known;
    uint64_t                         bytes[SNAPCACHE_ADAPT_MAX_RUNGS];
    snapcache_adapt_rung_t           rungs[SNAPCACHE_ADAPT_MAX_RUNGS];
    snapcache_adapt_hold_t           hold;
    snapcache_adapt_input_t          in;
    snapcache_adapt_choice_t         choice;
    ngx_http_snapcache_req_t        *sreq;
    ngx_http_snapcache_links_t      *links;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_variant_t    *variants;
    ngx_http_snapcache_link_node_t  *cl, *dev;

    slcf = ctx->slcf;
    sreq = &ctx->req;

    if (!slcf->adapt) {
        ctx->adapt_reason = SNAPCACHE_ADAPT_OFF;
        ctx->adapted = 1;
        return;
    }

    links = ctx->smcf->sh ? ctx->smcf->sh->links : NULL;
    variants = slcf->variants->elts;
    n = slcf->variants->nelts;
    now = (int64_t) ngx_current_msec;

    known = (links
             && ngx_http_snapcache_client_hash(r, links, ctx) == NGX_OK);

    for (i = 0; i < n; i++) {
        rungs[i].width = (uint32_t) variants[i].width;
        rungs[i].quality = (uint32_t) variants[i].quality;
        rungs[i].bytes = 0;
        rungs[i].weight = variants[i].weight;
    }

    ngx_memzero(&in, sizeof(snapcache_adapt_input_t));
    in.nrungs = (unsigned) n;
    in.bytes = bytes;
    in.ceiling = (int) sreq->variant_index;
    in.save_data = sreq->save_data;
    in.budget_ms = (uint32_t) slcf->adapt_budget;

    hold.rung = SNAPCACHE_ADAPT_NONE;
    hold.kbps = 0;
    hold.since = 0;

    cl = NULL;
    choice.index = sreq->variant_index;
    choice.reason = SNAPCACHE_ADAPT_UNKNOWN;

    if (known) {
        /* one lock: read the records, choose, keep the hysteresis */
        ngx_shmtx_lock(&ctx->smcf->shpool->mutex);

        dev = ngx_http_snapcache_link_find(links, ctx->device,
                                           NGX_HTTP_SNAPCACHE_LINK_DEVICE, 0);
        if (dev) {
            ngx_http_snapcache_link_sizes(dev, slcf, rungs);
        }

        cl = ngx_http_snapcache_link_find(links, ctx->client,
                                          NGX_HTTP_SNAPCACHE_LINK_CLIENT, 0);
        if (cl) {
            in.kbps = snapcache_adapt_link_kbps(&cl->u.client.link, now);
            in.rtt_ms = cl->u.client.link.rtt_us / 1000;
            in.careful = cl->u.client.link.dropped
                         || cl->u.client.link.lossy;

            if (now - cl->u.client.queued_ms
                <= NGX_HTTP_SNAPCACHE_LINK_QUEUE_AGE)
            {
                in.queued_bytes = cl->u.client.queued_bytes;
                in.queued = cl->u.client.queued;
            }

            ngx_http_snapcache_link_asked(&cl->u.client, now);
            in.together = ngx_min(ngx_max(cl->u.client.together,
                                          cl->u.client.asked),
                                  NGX_HTTP_SNAPCACHE_LINK_WALL);

            for (i = 0; in.kbps && i < n; i++) {
                if (variants[i].id == cl->u.client.hold_id) {
                    hold = cl->u.client.hold;
                    hold.rung = (int) i;
                }
            }
        }

        if (in.kbps) {
            ngx_http_snapcache_link_decide(&in, rungs, bytes, n, &hold,
                                           &choice);

            if (hold.rung >= 0) {
                cl->u.client.hold = hold;
                cl->u.client.hold_id = (uint32_t) variants[hold.rung].id;
            }
        }

        ngx_shmtx_unlock(&ctx->smcf->shpool->mutex);
    }

    if (in.kbps == 0
        && ngx_http_snapcache_link_hints(sreq, &kbps, &rtt_ms) == NGX_OK)
    {
        /* a prior for this request only: hints set no history */
        in.kbps = kbps;
        in.rtt_ms = rtt_ms;
        in.from_hints = 1;

        ngx_http_snapcache_link_decide(&in, rungs, bytes, n, &hold, &choice);
    }

    if (in.kbps == 0) {
        ngx_http_snapcache_link_decide(&in, rungs, bytes, n, &hold, &choice);
    }

    ngx_log_debug8(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "snapcache adapt: %s %ui of ceiling %ui, %uD kbit/s, "
                   "rtt %uD ms, sizes %uL %uL, budget %M",
                   snapcache_adapt_reason_name(choice.reason),
                   (ngx_uint_t) choice.index, sreq->variant_index,
                   in.kbps, in.rtt_ms, bytes[0], bytes[n - 1],
                   slcf->adapt_budget);

    sreq->variant_index = choice.index;
    sreq->variant = &variants[choice.index];
    ctx->adapt_reason = choice.reason;

    /*
     * A kept-alive connection keeps the congestion window its earlier
     * responses grew, and an idle spell shorter than its (long, on a
     * slow link) retransmission timeout does not shrink it: the next
     * response would leave as one burst that a weak link's buffer drops.
     * Pacing a held-down response at a few times the estimate spreads it
     * out, and still lets a link that got better show it: the delivery
     * can measure up to the pace, and the next pace follows the estimate.
     */
    ctx->pace_kbps = 0;

    if (choice.reason == SNAPCACHE_ADAPT_LINK
        || choice.reason == SNAPCACHE_ADAPT_HOLD)
    {
        ctx->pace_kbps = in.kbps * NGX_HTTP_SNAPCACHE_LINK_PACE;
    }

    ctx->link_queued = (uint32_t) ngx_min(in.queued_bytes, 0xffffffff);
    ctx->link_kbps = in.kbps;
    ctx->link_rtt_ms = in.rtt_ms;
    ctx->adapted = 1;
}


/*
 * The client's key: a keyed hash of the account tag and the address,
 * IPv4 /32 and IPv6 /64, so that neither another account nor another
 * address can reach this record; and the device's, for its sizes.
 */
static ngx_int_t
ngx_http_snapcache_client_hash(ngx_http_request_t *r,
    ngx_http_snapcache_links_t *links, ngx_http_snapcache_ctx_t *ctx)
{
    u_char                buf[1 + SNAPCACHE_TAG_LEN + 1 + 8], *p;
    struct sockaddr      *sa;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    u_char               *a6;
    struct sockaddr_in6  *sin6;
#endif

    sa = r->connection->sockaddr;

    p = buf;
    *p++ = 'c';
    p = ngx_cpymem(p, ctx->ident.acct_tag, SNAPCACHE_TAG_LEN);

    switch (sa->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        *p++ = 4;
        p = ngx_cpymem(p, &sin->sin_addr, 4);
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        a6 = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            *p++ = 4;
            p = ngx_cpymem(p, a6 + 12, 4);

        } else {
            *p++ = 6;
            p = ngx_cpymem(p, a6, 8);
        }

        break;
#endif

    default:
        /* a unix socket has no link to measure */
        return NGX_DECLINED;
    }

    ctx->client[0] = ngx_http_snapcache_siphash(links->key[0], buf, p - buf);
    ctx->client[1] = ngx_http_snapcache_siphash(links->key[1], buf, p - buf);

    buf[0] = 'd';
    ngx_memcpy(buf + 1, ctx->ident.dev_tag, SNAPCACHE_TAG_LEN);

    ctx->device[0] = ngx_http_snapcache_siphash(links->key[0], buf,
                                                1 + SNAPCACHE_TAG_LEN);
    ctx->device[1] = ngx_http_snapcache_siphash(links->key[1], buf,
                                                1 + SNAPCACHE_TAG_LEN);

    ctx->client_known = 1;

    return NGX_OK;
}


/*
 * Under the zone's mutex.  With create, a missing record takes a free
 * node or the least recently used one.  A found or created record
 * becomes the most recently used.
 */
static ngx_http_snapcache_link_node_t *
ngx_http_snapcache_link_find(ngx_http_snapcache_links_t *links,
    const uint64_t hash[2], ngx_uint_t kind, ngx_uint_t create)
{
    ngx_queue_t                     *q;
    ngx_rbtree_key_t                 key;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_snapcache_link_node_t  *ln;

    key = (ngx_rbtree_key_t) hash[0];
    node = links->rbtree.root;
    sentinel = links->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        ln = (ngx_http_snapcache_link_node_t *) node;

        if (ln->hash[0] == hash[0] && ln->hash[1] == hash[1]
            && ln->kind == kind)
        {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&links->lru, &ln->queue);
            return ln;
        }

        /* equal keys are inserted to the right */
        node = node->right;
    }

    if (!create) {
        return NULL;
    }

    if (!ngx_queue_empty(&links->free)) {
        q = ngx_queue_head(&links->free);

    } else {
        q = ngx_queue_last(&links->lru);
        ln = ngx_queue_data(q, ngx_http_snapcache_link_node_t, queue);
        ngx_rbtree_delete(&links->rbtree, &ln->node);
    }

    ngx_queue_remove(q);

    ln = ngx_queue_data(q, ngx_http_snapcache_link_node_t, queue);
    ngx_memzero(ln, sizeof(ngx_http_snapcache_link_node_t));

    ln->node.key = key;
    ln->hash[0] = hash[0];
    ln->hash[1] = hash[1];
    ln->kind = kind;

    if (kind == NGX_HTTP_SNAPCACHE_LINK_CLIENT) {
        ln->u.client.hold.rung = SNAPCACHE_ADAPT_NONE;
    }

    ngx_rbtree_insert(&links->rbtree, &ln->node);
    ngx_queue_insert_head(&links->lru, &ln->queue);

    return ln;
}


/* What this device's rungs weighed lately, by what the rung is. */
static void
ngx_http_snapcache_link_sizes(ngx_http_snapcache_link_node_t *dev,
    ngx_http_snapcache_loc_conf_t *slcf, snapcache_adapt_rung_t *rungs)
{
    ngx_uint_t                     i, k;
    ngx_http_snapcache_variant_t  *variants;

    variants = slcf->variants->elts;

    for (i = 0; i < slcf->variants->nelts; i++) {
        for (k = 0; k < NGX_HTTP_SNAPCACHE_LINK_SLOTS; k++) {
            if (dev->u.device.bytes[k]
                && dev->u.device.id[k] == (uint32_t) variants[i].id)
            {
                rungs[i].bytes = dev->u.device.bytes[k];
                break;
            }
        }
    }
}


/* ECT, Downlink and RTT, when a browser sends them and nothing is known. */
static ngx_int_t
ngx_http_snapcache_link_hints(ngx_http_snapcache_req_t *sreq, uint32_t *kbps,
    uint32_t *rtt_ms)
{
    ngx_table_elt_t  *ect, *dl, *rtt;

    ect = sreq->ect;
    dl = sreq->downlink;
    rtt = sreq->rtt;

    if (ect == NULL && dl == NULL) {
        return NGX_DECLINED;
    }

    if (!snapcache_adapt_hints(ect ? (const char *) ect->value.data : NULL,
                               ect ? ect->value.len : 0,
                               dl ? (const char *) dl->value.data : NULL,
                               dl ? dl->value.len : 0,
                               rtt ? (const char *) rtt->value.data : NULL,
                               rtt ? rtt->value.len : 0, kbps, rtt_ms))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The record for hash, made if needed, with the zone's mutex held; NULL,
 * and no lock, when there is no table.
 */
static ngx_http_snapcache_link_node_t *
ngx_http_snapcache_link_lock(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t hash[2], ngx_uint_t kind)
{
    ngx_http_snapcache_links_t  *links;

    links = smcf->sh ? smcf->sh->links : NULL;
    if (links == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&smcf->shpool->mutex);

    return ngx_http_snapcache_link_find(links, hash, kind, 1);
}


/*
 * A connection's spell ended, with its sample and what of it was still
 * on the client's queue: into the client's spell, and the client's
 * spell into its estimate once nothing else is on its way.
 */
void
ngx_http_snapcache_link_record(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t client[2], snapcache_adapt_sample_t *s,
    ngx_msec_t started, uint64_t bytes, ngx_uint_t responses)
{
    int64_t                            start, end;
    snapcache_adapt_sample_t          *sp;
    ngx_http_snapcache_link_node_t    *ln;
    ngx_http_snapcache_link_client_t  *cl;

    ln = ngx_http_snapcache_link_lock(smcf, client,
                                      NGX_HTTP_SNAPCACHE_LINK_CLIENT);
    if (ln == NULL) {
        return;
    }

    cl = &ln->u.client;
    sp = &cl->spell;

    start = (int64_t) started * 1000;
    end = start + (int64_t) s->busy_us;

    if (sp->busy_us == 0) {
        *sp = *s;
        cl->nbusy = 0;

    } else {
        sp->bytes += s->bytes;
        sp->retrans += s->retrans;
        sp->complete = sp->complete && s->complete;
        sp->paced_kbps = ngx_max(sp->paced_kbps, s->paced_kbps);
        sp->delivery_kbps = ngx_max(sp->delivery_kbps, s->delivery_kbps);

        if (s->min_rtt_us
            && (sp->min_rtt_us == 0 || s->min_rtt_us < sp->min_rtt_us))
        {
            sp->min_rtt_us = s->min_rtt_us;
        }
    }

    sp->busy_us = ngx_max(ngx_http_snapcache_link_busy(cl, start, end), 1000);

    ngx_http_snapcache_link_dequeue(cl, (int64_t) ngx_current_msec,
                                    -(int64_t) bytes, -(ngx_int_t) responses);

    if (cl->queued == 0) {
        if (cl->link.samples
            && snapcache_adapt_link_kbps(&cl->link,
                                         (int64_t) ngx_current_msec) == 0)
        {
            /* a forgotten estimate takes its hold with it */
            cl->hold.rung = SNAPCACHE_ADAPT_NONE;
        }

        (void) snapcache_adapt_sample(&cl->link, sp,
                                      (int64_t) ngx_current_msec);

        ngx_memzero(sp, sizeof(snapcache_adapt_sample_t));
    }

    ngx_shmtx_unlock(&smcf->shpool->mutex);
}


/* What a rung of a device weighed, delivered whole. */
void
ngx_http_snapcache_link_size(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t device[2], uint32_t variant, size_t body_len)
{
    ngx_uint_t                         k, slot;
    ngx_http_snapcache_link_node_t    *ln;
    ngx_http_snapcache_link_device_t  *d;

    ln = ngx_http_snapcache_link_lock(smcf, device,
                                      NGX_HTTP_SNAPCACHE_LINK_DEVICE);
    if (ln == NULL) {
        return;
    }

    d = &ln->u.device;

    slot = 0;

    for (k = 0; k < NGX_HTTP_SNAPCACHE_LINK_SLOTS; k++) {
        if (d->bytes[k] && d->id[k] == variant) {
            slot = k;
            break;
        }

        if (d->used[k] < d->used[slot]) {
            slot = k;
        }
    }

    d->bytes[slot] = (d->bytes[slot] && d->id[slot] == variant)
                     ? (uint32_t) ((d->bytes[slot] + body_len) / 2)
                     : (uint32_t) ngx_min(body_len, 0xffffffff);
    d->id[slot] = variant;
    d->used[slot] = ++d->clock;

    ngx_shmtx_unlock(&smcf->shpool->mutex);
}


/*
 * Bytes and responses joining (positive) or leaving (negative) what is
 * on its way to a client.  The record is made if needed, so that a
 * client's first refresh already counts its tiles.
 */
void
ngx_http_snapcache_link_queue(ngx_http_snapcache_main_conf_t *smcf,
    const uint64_t client[2], int64_t bytes, ngx_int_t responses)
{
    ngx_http_snapcache_link_node_t  *ln;

    ln = ngx_http_snapcache_link_lock(smcf, client,
                                      NGX_HTTP_SNAPCACHE_LINK_CLIENT);
    if (ln == NULL) {
        return;
    }

    ngx_http_snapcache_link_dequeue(&ln->u.client, (int64_t) ngx_current_msec,
                                    bytes, responses);

    ngx_shmtx_unlock(&smcf->shpool->mutex);
}


/* Under the zone's mutex: the queue moves by bytes and responses. */
static void
ngx_http_snapcache_link_dequeue(ngx_http_snapcache_link_client_t *cl,
    int64_t now, int64_t bytes, ngx_int_t responses)
{
    if (now - cl->queued_ms > NGX_HTTP_SNAPCACHE_LINK_QUEUE_AGE) {
        cl->queued_bytes = 0;
        cl->queued = 0;
        ngx_memzero(&cl->spell, sizeof(snapcache_adapt_sample_t));
    }

    cl->queued_ms = now;

    if (bytes < 0 && (uint64_t) -bytes >= cl->queued_bytes) {
        cl->queued_bytes = 0;

    } else {
        cl->queued_bytes += bytes;
    }

    if (responses < 0 && (uint32_t) -responses >= cl->queued) {
        cl->queued = 0;

    } else {
        cl->queued += responses;
    }

    if (cl->queued == 0) {
        cl->queued_bytes = 0;
    }
}


/*
 * Under the zone's mutex: a connection's busy span joins the client's,
 * merged where they overlap; returns the time any of them was busy.
 * With no room left, the span joins the nearest one.
 */
static uint64_t
ngx_http_snapcache_link_busy(ngx_http_snapcache_link_client_t *cl,
    int64_t start, int64_t end)
{
    int64_t     (*b)[2];
    uint64_t      total;
    ngx_uint_t    i, j, n;

    b = cl->busy;
    n = cl->nbusy;

    if (n == NGX_HTTP_SNAPCACHE_LINK_BUSY) {
        /* the last one stretches to take it in */
        b[n - 1][0] = ngx_min(b[n - 1][0], start);
        b[n - 1][1] = ngx_max(b[n - 1][1], end);

    } else {
        for (i = 0; i < n && b[i][0] < start; i++) {
            /* void */
        }

        for (j = n; j > i; j--) {
            b[j][0] = b[j - 1][0];
            b[j][1] = b[j - 1][1];
        }

        b[i][0] = start;
        b[i][1] = end;
        n++;
    }

    /* sorted by start: merge each into the one before when they meet */
    for (i = 0, j = 1; j < n; j++) {
        if (b[j][0] <= b[i][1]) {
            b[i][1] = ngx_max(b[i][1], b[j][1]);

        } else {
            i++;
            b[i][0] = b[j][0];
            b[i][1] = b[j][1];
        }
    }

    cl->nbusy = (uint32_t) (n ? i + 1 : 0);

    total = 0;

    for (i = 0; i < cl->nbusy; i++) {
        total += (uint64_t) (b[i][1] - b[i][0]);
    }

    return total;
}


/*
 * Under the zone's mutex: one more request of this client, in the
 * refresh under way or the first of a new one.  A refresh after a long
 * pause says nothing of the one before it.
 */
static void
ngx_http_snapcache_link_asked(ngx_http_snapcache_link_client_t *cl,
    int64_t now)
{
    if (now - cl->asked_ms > NGX_HTTP_SNAPCACHE_LINK_BURST
        || now < cl->asked_ms)
    {
        cl->together = (now - cl->asked_ms
                        <= NGX_HTTP_SNAPCACHE_LINK_QUEUE_AGE)
                       ? cl->asked : 0;
        cl->asked = 0;
        cl->asked_ms = now;
    }

    if (cl->asked < UINT32_MAX) {
        cl->asked++;
    }
}


/* SipHash-2-4: a keyed hash fast enough for every request. */

#define ngx_http_snapcache_rotl(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_snapcache_sipround                                           \
    v0 += v1; v1 = ngx_http_snapcache_rotl(v1, 13); v1 ^= v0;                 \
    v0 = ngx_http_snapcache_rotl(v0, 32);                                     \
    v2 += v3; v3 = ngx_http_snapcache_rotl(v3, 16); v3 ^= v2;                 \
    v0 += v3; v3 = ngx_http_snapcache_rotl(v3, 21); v3 ^= v0;                 \
    v2 += v1; v1 = ngx_http_snapcache_rotl(v1, 17); v1 ^= v2;                 \
    v2 = ngx_http_snapcache_rotl(v2, 32)


static uint64_t
ngx_http_snapcache_siphash(const uint64_t key[2], const u_char *in,
    size_t len)
{
    size_t    i, left;
    uint64_t  v0, v1, v2, v3, m, b;

    v0 = key[0] ^ 0x736f6d6570736575ULL;
    v1 = key[1] ^ 0x646f72616e646f6dULL;
    v2 = key[0] ^ 0x6c7967656e657261ULL;
    v3 = key[1] ^ 0x7465646279746573ULL;

    b = (uint64_t) len << 56;
    left = len & 7;

    for (i = 0; i + 8 <= len; i += 8) {
        m = (uint64_t) in[i] | (uint64_t) in[i + 1] << 8
            | (uint64_t) in[i + 2] << 16 | (uint64_t) in[i + 3] << 24
            | (uint64_t) in[i + 4] << 32 | (uint64_t) in[i + 5] << 40
            | (uint64_t) in[i + 6] << 48 | (uint64_t) in[i + 7] << 56;

        v3 ^= m;
        ngx_http_snapcache_sipround;
        ngx_http_snapcache_sipround;
        v0 ^= m;
    }

    while (left--) {
        b |= (uint64_t) in[i + left] << (8 * left);
    }

    v3 ^= b;
    ngx_http_snapcache_sipround;
    ngx_http_snapcache_sipround;
    v0 ^= b;

    v2 ^= 0xff;
    ngx_http_snapcache_sipround;
    ngx_http_snapcache_sipround;
    ngx_http_snapcache_sipround;
    ngx_http_snapcache_sipround;

    return v0 ^ v1 ^ v2 ^ v3;
}


/*
 * The history's occupancy, for the admin API's metrics: records in use
 * and room.  Records are taken from the free list and never given back;
 * once it is empty, the least recently used is reused.
 */
void
ngx_http_snapcache_links_usage(ngx_http_snapcache_main_conf_t *smcf,
    ngx_uint_t *used, ngx_uint_t *capacity)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_http_snapcache_links_t  *links;

    *used = 0;
    *capacity = 0;

    if (smcf->sh == NULL || smcf->sh->links == NULL) {
        return;
    }

    links = smcf->sh->links;
    n = 0;

    ngx_shmtx_lock(&smcf->shpool->mutex);

    for (q = ngx_queue_head(&links->free);
         q != ngx_queue_sentinel(&links->free);
         q = ngx_queue_next(q))
    {
        n++;
    }

    *capacity = links->capacity;
    *used = links->capacity - n;

    ngx_shmtx_unlock(&smcf->shpool->mutex);
}
