
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the client's link.  The server measures delivery, not
 * writes: after a response is handed to the socket, a timer reads
 * TCP_INFO on the connection until the client has acknowledged every
 * byte, or a deadline passes, and the bytes acknowledged over the time
 * the connection was busy sending them become a sample.  Samples go to
 * a small record per client in the shared zone, keyed by a keyed hash of
 * the account tag and the client address (IPv4 /32, IPv6 /64), in a
 * bounded table evicted least recently used first.  The same table keeps
 * what each rung of each device weighed lately.  adapt/ turns the record
 * into a choice.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"

#include <sys/random.h>


#define NGX_HTTP_SNAPCACHE_LINK_CLIENT     1
#define NGX_HTTP_SNAPCACHE_LINK_DEVICE     2
#define NGX_HTTP_SNAPCACHE_LINK_SLOTS      8

/* the first look at a delivery, then twice as late each time, up to */
#define NGX_HTTP_SNAPCACHE_LINK_POLL       10
#define NGX_HTTP_SNAPCACHE_LINK_POLL_MAX   200

/* a connection busier than one response per this is measured once in it */
#define NGX_HTTP_SNAPCACHE_LINK_EVERY      100


/*
 * The kernel's struct tcp_info up to tcpi_busy_time: its layout only
 * grows at the end.  <linux/tcp.h> cannot be included next to
 * <netinet/tcp.h>, whose own copy stops before the delivery fields.
 */
typedef struct {
    uint8_t                    state;
    uint8_t                    ca_state;
    uint8_t                    retransmits;
    uint8_t                    probes;
    uint8_t                    backoff;
    uint8_t                    options;
    uint8_t                    wscale;
    uint8_t                    flags;        /* bit 0: app limited */

    uint32_t                   rto;
    uint32_t                   ato;
    uint32_t                   snd_mss;
    uint32_t                   rcv_mss;

    uint32_t                   unacked;
    uint32_t                   sacked;
    uint32_t                   lost;
    uint32_t                   retrans;
    uint32_t                   fackets;

    uint32_t                   last_data_sent;
    uint32_t                   last_ack_sent;
    uint32_t                   last_data_recv;
    uint32_t                   last_ack_recv;

    uint32_t                   pmtu;
    uint32_t                   rcv_ssthresh;
    uint32_t                   rtt;
    uint32_t                   rttvar;
    uint32_t                   snd_ssthresh;
    uint32_t                   snd_cwnd;
    uint32_t                   advmss;
    uint32_t                   reordering;

    uint32_t                   rcv_rtt;
    uint32_t                   rcv_space;

    uint32_t                   total_retrans;

    uint64_t                   pacing_rate;
    uint64_t                   max_pacing_rate;
    uint64_t                   bytes_acked;
    uint64_t                   bytes_received;
    uint32_t                   segs_out;
    uint32_t                   segs_in;

    uint32_t                   notsent_bytes;
    uint32_t                   min_rtt;
    uint32_t                   data_segs_in;
    uint32_t                   data_segs_out;

    uint64_t                   delivery_rate;

    uint64_t                   busy_time;
} ngx_http_snapcache_tcp_info_t;


typedef struct {
    snapcache_adapt_link_t     link;
    snapcache_adapt_hold_t     hold;
    uint32_t                   hold_id;      /* the hold rung's variant */
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


/* One delivery being watched; one per connection, reused. */
typedef struct {
    ngx_connection_t                *connection;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_event_t                      timer;

    uint64_t                         client[2];
    uint64_t                         device[2];
    uint32_t                         variant;
    size_t                           body_len;

    uint64_t                         expect;     /* header and body */
    uint64_t                         acked;
    uint32_t                         retrans;
    uint64_t                         busy;
    ngx_msec_t                       deadline;
    ngx_msec_t                       interval;
    ngx_msec_t                       started;

    unsigned                         baseline:1;
    unsigned                         active:1;
} ngx_http_snapcache_watch_t;


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
static ngx_int_t ngx_http_snapcache_tcp_info(ngx_connection_t *c,
    ngx_http_snapcache_tcp_info_t *ti);
static ngx_http_snapcache_watch_t *ngx_http_snapcache_watch_get(
    ngx_connection_t *c, ngx_uint_t create);
static void ngx_http_snapcache_watch_poll(ngx_http_snapcache_watch_t *w);
static void ngx_http_snapcache_watch_timer(ngx_event_t *ev);
static void ngx_http_snapcache_watch_request_done(void *data);
static void ngx_http_snapcache_watch_cleanup(void *data);
static void ngx_http_snapcache_watch_record(ngx_http_snapcache_watch_t *w,
    snapcache_adapt_sample_t *s);


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
 * device's rungs had lately and the budget.  Sets sreq's variant and
 * the $snapcache_link_* and $snapcache_adapt_reason variables.
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
    ngx_http_snapcache_watch_t      *w;
    ngx_http_snapcache_links_t      *links;
    ngx_http_snapcache_loc_conf_t   *slcf;
    ngx_http_snapcache_variant_t    *variants;
    ngx_http_snapcache_link_node_t  *cl, *dev;

    slcf = ctx->slcf;
    sreq = ctx->sreq;

    if (!slcf->adapt) {
        ctx->adapt_reason = SNAPCACHE_ADAPT_OFF;
        ngx_http_snapcache_set_link(r, 0, 0, "off");
        return;
    }

    links = ctx->smcf->sh ? ctx->smcf->sh->links : NULL;
    variants = slcf->variants->elts;
    n = slcf->variants->nelts;
    now = (int64_t) ngx_current_msec;

    known = (links
             && ngx_http_snapcache_client_hash(r, links, ctx) == NGX_OK);

    if (known) {
        /* the last response on this connection may be delivered by now */
        w = ngx_http_snapcache_watch_get(r->connection, 0);
        if (w && w->active) {
            ngx_http_snapcache_watch_poll(w);
        }
    }

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
     * response leaves as one burst that a weak link's buffer drops, and
     * retransmits cost more than the budget.  A new connection starts
     * from the initial window.
     */
    if (choice.reason == SNAPCACHE_ADAPT_LINK
        || choice.reason == SNAPCACHE_ADAPT_HOLD)
    {
        r->keepalive = 0;
    }

    ngx_http_snapcache_set_link(r, in.kbps, in.rtt_ms,
                                snapcache_adapt_reason_name(choice.reason));
}


/*
 * Before a response's header goes out: where the connection's counters
 * stand, so that its delivery can be measured from here.  A connection
 * still delivering the previous response is not measured apart.
 */
void
ngx_http_snapcache_link_sending(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_connection_t               *c;
    ngx_http_snapcache_watch_t     *w;
    ngx_http_snapcache_tcp_info_t   ti;

    c = r->connection;

    if (!ctx->slcf->adapt || !ctx->client_known
        || (r->method & NGX_HTTP_HEAD) || c->error
#if (NGX_HTTP_V2)
        || r->stream
#endif
       )
    {
        return;
    }

    w = ngx_http_snapcache_watch_get(c, 1);
    if (w == NULL) {
        return;
    }

    if (w->active) {
        ngx_http_snapcache_watch_poll(w);

        if (w->active) {
            return;
        }
    }

    /*
     * A display refreshes every few seconds; a connection asking many
     * times a second is fast enough, and measuring each of its
     * responses would cost hits their speed.
     */
    if (w->started
        && ngx_current_msec - w->started < NGX_HTTP_SNAPCACHE_LINK_EVERY)
    {
        return;
    }

    if (ngx_http_snapcache_tcp_info(c, &ti) != NGX_OK) {
        return;
    }

    w->acked = ti.bytes_acked;
    w->busy = ti.busy_time;
    w->retrans = ti.total_retrans;
    w->baseline = 1;
}


/*
 * The header and len body bytes were handed to the socket: watch them
 * until they are delivered, looking now, then on a timer.
 */
void
ngx_http_snapcache_link_sent(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, size_t len)
{
    ngx_connection_t            *c;
    ngx_pool_cleanup_t          *cln;
    ngx_http_snapcache_watch_t  *w;

    c = r->connection;

    if (!ctx->slcf->adapt || !ctx->client_known || len == 0
        || r->header_only)
    {
        return;
    }

    w = ngx_http_snapcache_watch_get(c, 0);
    if (w == NULL || !w->baseline || w->active) {
        return;
    }

    w->baseline = 0;

    /* looked at once more when the request is done, while still open */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return;
    }

    cln->handler = ngx_http_snapcache_watch_request_done;
    cln->data = w;

    w->smcf = ctx->smcf;
    w->client[0] = ctx->client[0];
    w->client[1] = ctx->client[1];
    w->device[0] = ctx->device[0];
    w->device[1] = ctx->device[1];
    w->variant = (uint32_t) ctx->variant;
    w->body_len = len;
    w->expect = r->header_size + len;
    w->interval = NGX_HTTP_SNAPCACHE_LINK_POLL;
    w->started = ngx_current_msec;
    w->deadline = ngx_current_msec
                  + ngx_max(1000, ngx_min(10000, 2 * ctx->slcf->adapt_budget));
    w->active = 1;

    /*
     * A connection that closes after this response would be closed as
     * soon as the last byte is written, long before the client has it:
     * lingering keeps it open until the client closes its side, that is
     * until it has read everything, so that the delivery can be seen.
     */
    if (!r->keepalive) {
        r->lingering_close = 1;
    }

    ngx_http_snapcache_watch_poll(w);
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


static ngx_int_t
ngx_http_snapcache_tcp_info(ngx_connection_t *c,
    ngx_http_snapcache_tcp_info_t *ti)
{
#if (NGX_LINUX) && defined(TCP_INFO)
    socklen_t  len;

    if (c->fd == (ngx_socket_t) -1 || c->type != SOCK_STREAM) {
        return NGX_DECLINED;
    }

    len = sizeof(ngx_http_snapcache_tcp_info_t);

    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, ti, &len) == -1
        || len < sizeof(ngx_http_snapcache_tcp_info_t))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
#else
    return NGX_DECLINED;
#endif
}


/*
 * The connection's watch lives in the connection's pool, found again by
 * its cleanup handler, so that a keepalive connection has one however
 * many requests it carries, and its timer dies with the connection.
 */
static ngx_http_snapcache_watch_t *
ngx_http_snapcache_watch_get(ngx_connection_t *c, ngx_uint_t create)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_snapcache_watch_t  *w;

    for (cln = c->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_snapcache_watch_cleanup) {
            return cln->data;
        }
    }

    if (!create) {
        return NULL;
    }

    w = ngx_pcalloc(c->pool, sizeof(ngx_http_snapcache_watch_t));
    if (w == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    w->connection = c;
    w->timer.handler = ngx_http_snapcache_watch_timer;
    w->timer.data = w;
    w->timer.log = c->log;
    w->timer.cancelable = 1;

    cln->handler = ngx_http_snapcache_watch_cleanup;
    cln->data = w;

    return w;
}


/*
 * Delivered when nginx has written the whole body, holds nothing back,
 * and the socket has nothing unsent or unacknowledged.  Then, or at the
 * deadline, the bytes acknowledged since the start over the time the
 * connection was busy are the sample; until then, look again later.
 */
static void
ngx_http_snapcache_watch_poll(ngx_http_snapcache_watch_t *w)
{
    ngx_msec_t                      now, next;
    ngx_uint_t                      delivered;
    ngx_connection_t               *c;
    snapcache_adapt_sample_t        s;
    ngx_http_snapcache_tcp_info_t   ti;

    c = w->connection;

    if (c->error || ngx_http_snapcache_tcp_info(c, &ti) != NGX_OK) {
        goto done;
    }

    now = ngx_current_msec;

    /*
     * The response's bytes are acknowledged and nothing else is waiting
     * (c->sent cannot tell: a keepalive connection zeroes it between
     * requests).
     */
    delivered = ti.bytes_acked >= w->acked
                && ti.bytes_acked - w->acked >= w->expect
                && ti.notsent_bytes == 0 && ti.unacked == 0;

    /*
     * A socket whose both sides closed reads as closed, and so does one
     * that was reset; only the first has had everything acknowledged.
     */
    if (ti.state == 7 && !delivered) {
        goto done;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "snapcache delivery: state %d, %uL of %uL acked, "
                   "%uD unsent, %M ms left", (int) ti.state,
                   ti.bytes_acked - w->acked, w->expect, ti.notsent_bytes,
                   w->deadline - now);

    if (!delivered && (ngx_msec_int_t) (w->deadline - now) > 0) {
        next = ngx_min(w->interval, w->deadline - now);
        w->interval = ngx_min(2 * w->interval,
                              NGX_HTTP_SNAPCACHE_LINK_POLL_MAX);

        if (!w->timer.timer_set) {
            ngx_add_timer(&w->timer, next);
        }

        return;
    }

    ngx_memzero(&s, sizeof(snapcache_adapt_sample_t));
    s.bytes = ti.bytes_acked - w->acked;
    s.busy_us = ti.busy_time - w->busy;
    s.min_rtt_us = ti.min_rtt;
    s.retrans = ti.total_retrans - w->retrans;
    s.complete = delivered;

    ngx_log_debug8(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "snapcache delivery: %uL bytes acked of %uz in %uL us "
                   "busy, %s, min rtt %uD us, rtt %uD us, "
                   "delivery rate %uL B/s, app limited %d",
                   s.bytes, w->body_len, s.busy_us,
                   delivered ? "delivered" : "deadline", ti.min_rtt, ti.rtt,
                   ti.delivery_rate, ti.flags & 1);

    /*
     * The kernel counts busy time in ticks: a delivery within one reads
     * as none, and is at least as fast as one tick's worth.
     */
    if (ti.busy_time < w->busy || s.busy_us < 1000) {
        s.busy_us = 1000;
    }

    if (ti.bytes_acked >= w->acked) {
        ngx_http_snapcache_watch_record(w, &s);
    }

done:

    w->active = 0;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


static void
ngx_http_snapcache_watch_timer(ngx_event_t *ev)
{
    ngx_http_snapcache_watch_t *w = ev->data;

    if (w->active) {
        ngx_http_snapcache_watch_poll(w);
    }
}


/* The request is done; its socket is still open, for a last look. */
static void
ngx_http_snapcache_watch_request_done(void *data)
{
    ngx_http_snapcache_watch_t *w = data;

    if (w->active) {
        ngx_http_snapcache_watch_poll(w);
    }
}


/* The connection goes away: nothing more can be seen of it. */
static void
ngx_http_snapcache_watch_cleanup(void *data)
{
    ngx_http_snapcache_watch_t *w = data;

    w->active = 0;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


/* The sample into the client's record, the size into the device's. */
static void
ngx_http_snapcache_watch_record(ngx_http_snapcache_watch_t *w,
    snapcache_adapt_sample_t *s)
{
    ngx_uint_t                         k, slot;
    ngx_http_snapcache_links_t        *links;
    ngx_http_snapcache_link_node_t    *ln;
    ngx_http_snapcache_link_device_t  *d;

    links = w->smcf->sh ? w->smcf->sh->links : NULL;
    if (links == NULL) {
        return;
    }

    ngx_shmtx_lock(&w->smcf->shpool->mutex);

    ln = ngx_http_snapcache_link_find(links, w->client,
                                      NGX_HTTP_SNAPCACHE_LINK_CLIENT, 1);

    if (ln->u.client.link.samples
        && snapcache_adapt_link_kbps(&ln->u.client.link,
                                     (int64_t) ngx_current_msec) == 0)
    {
        /* a forgotten estimate takes its hold with it */
        ln->u.client.hold.rung = SNAPCACHE_ADAPT_NONE;
    }

    (void) snapcache_adapt_sample(&ln->u.client.link, s,
                                  (int64_t) ngx_current_msec);

    if (s->complete) {
        ln = ngx_http_snapcache_link_find(links, w->device,
                                          NGX_HTTP_SNAPCACHE_LINK_DEVICE, 1);
        d = &ln->u.device;

        slot = 0;

        for (k = 0; k < NGX_HTTP_SNAPCACHE_LINK_SLOTS; k++) {
            if (d->bytes[k] && d->id[k] == w->variant) {
                slot = k;
                break;
            }

            if (d->used[k] < d->used[slot]) {
                slot = k;
            }
        }

        d->bytes[slot] = (d->bytes[slot] && d->id[slot] == w->variant)
                         ? (uint32_t) ((d->bytes[slot] + w->body_len) / 2)
                         : (uint32_t) ngx_min(w->body_len, 0xffffffff);
        d->id[slot] = w->variant;
        d->used[slot] = ++d->clock;
    }

    ngx_shmtx_unlock(&w->smcf->shpool->mutex);
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
