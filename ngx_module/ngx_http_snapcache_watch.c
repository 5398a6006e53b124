
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: watching deliveries.  The server measures delivery, not
 * writes: after a response is handed to nginx, a timer reads TCP_INFO on
 * the client's TCP connection (under HTTP/2, the one under all of its
 * streams) until the client has acknowledged every byte, or a deadline
 * passes.  The bytes acknowledged over the time the connection was busy
 * sending them become a sample for the client's record in the link
 * table (ngx_http_snapcache_link.c).
 *
 * Responses that follow one another on a connection before the first is
 * delivered (the tiles of a wall over HTTP/2, or pipelined) join the
 * same busy spell: each is a delivery in the spell, in the order of the
 * connection's bytes, and leaves the client's queue as the
 * acknowledgements pass its end.  The spell's sample covers them all.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


/* the first look at a delivery, then twice as late each time, up to */
#define NGX_HTTP_SNAPCACHE_LINK_POLL       10
#define NGX_HTTP_SNAPCACHE_LINK_POLL_MAX   200

/* a connection busier than one response per this is measured once in it */
#define NGX_HTTP_SNAPCACHE_LINK_EVERY      100

/* deliveries one spell keeps apart; more are not watched */
#define NGX_HTTP_SNAPCACHE_LINK_DELIVERIES 16


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


/* One response on its way: where it ends in the spell's bytes. */
typedef struct {
    uint64_t                         client[2];
    uint64_t                         end;
} ngx_http_snapcache_delivery_t;


/* A connection's deliveries being watched; one per connection, reused. */
typedef struct {
    ngx_connection_t                *connection;
    ngx_http_snapcache_main_conf_t  *smcf;
    ngx_event_t                      timer;

    ngx_http_snapcache_delivery_t    d[NGX_HTTP_SNAPCACHE_LINK_DELIVERIES];
    ngx_uint_t                       first;      /* not yet delivered */
    ngx_uint_t                       n;

    uint64_t                         expect;     /* the spell's bytes */
    uint64_t                         acked;      /* at the spell's start */
    uint32_t                         retrans;
    uint64_t                         busy;
    ngx_msec_t                       deadline;
    ngx_msec_t                       interval;
    ngx_msec_t                       started;
    ngx_msec_t                       polled;
    uint32_t                         pace_kbps;  /* as set on the socket */
    uint32_t                         delivery;   /* the best rate seen */

    unsigned                         active:1;
} ngx_http_snapcache_watch_t;


static ngx_connection_t *ngx_http_snapcache_watch_socket(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_snapcache_tcp_info(ngx_connection_t *c,
    ngx_http_snapcache_tcp_info_t *ti);
static void ngx_http_snapcache_watch_pace(ngx_http_snapcache_watch_t *w,
    uint32_t kbps);
static ngx_http_snapcache_watch_t *ngx_http_snapcache_watch_get(
    ngx_connection_t *c, ngx_uint_t create);
static void ngx_http_snapcache_watch_poll(ngx_http_snapcache_watch_t *w);
static void ngx_http_snapcache_watch_passed(ngx_http_snapcache_watch_t *w,
    uint64_t acked);
static void ngx_http_snapcache_watch_record(ngx_http_snapcache_watch_t *w,
    snapcache_adapt_sample_t *s, ngx_uint_t sample);
static void ngx_http_snapcache_watch_end(ngx_http_snapcache_watch_t *w);
static void ngx_http_snapcache_watch_timer(ngx_event_t *ev);
static void ngx_http_snapcache_watch_request_done(void *data);
static void ngx_http_snapcache_watch_cleanup(void *data);


/* The client's own TCP connection: under HTTP/2, the one under r. */
static ngx_connection_t *
ngx_http_snapcache_watch_socket(ngx_http_request_t *r)
{
#if (NGX_HTTP_V2)
    if (r->stream) {
        return r->stream->connection->connection;
    }
#endif

    return r->connection;
}


/*
 * Before a link is chosen: what this connection has delivered by now
 * leaves the client's queue, and a finished spell's sample is the
 * freshest there is.
 */
void
ngx_http_snapcache_watch_check(ngx_http_request_t *r)
{
    ngx_http_snapcache_watch_t  *w;

    w = ngx_http_snapcache_watch_get(ngx_http_snapcache_watch_socket(r), 0);

    if (w && w->active
        && ngx_current_msec - w->polled >= NGX_HTTP_SNAPCACHE_LINK_POLL)
    {
        ngx_http_snapcache_watch_poll(w);
    }
}


/*
 * Before a response's header goes out: the pace its rung asks for, and
 * where the connection's counters stand, so that a new spell can be
 * measured from here.  A connection in a spell adds this response to it.
 */
void
ngx_http_snapcache_watch_sending(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx)
{
    ngx_connection_t               *c;
    ngx_http_snapcache_watch_t     *w;
    ngx_http_snapcache_tcp_info_t   ti;

    c = ngx_http_snapcache_watch_socket(r);

    if (!ctx->slcf->adapt || !ctx->client_known
        || (r->method & NGX_HTTP_HEAD) || c->error)
    {
        return;
    }

    w = ngx_http_snapcache_watch_get(c, 1);
    if (w == NULL) {
        return;
    }

    ngx_http_snapcache_watch_pace(w, ctx->pace_kbps);

    if (w->active) {
        /* a busy connection is looked at no more often than its timer */
        if (ngx_current_msec - w->polled >= NGX_HTTP_SNAPCACHE_LINK_POLL) {
            ngx_http_snapcache_watch_poll(w);
        }

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

    w->smcf = ctx->smcf;
    w->acked = ti.bytes_acked;
    w->busy = ti.busy_time;
    w->retrans = ti.total_retrans;
    w->delivery = 0;
    w->expect = 0;
    w->first = 0;
    w->n = 0;
    w->interval = NGX_HTTP_SNAPCACHE_LINK_POLL;
    w->started = ngx_current_msec;
    w->deadline = ngx_current_msec
                  + ngx_max(1000, ngx_min(10000, 2 * ctx->slcf->adapt_budget));
    w->active = 1;
}


/*
 * The header and len body bytes were handed to nginx: a delivery in the
 * connection's spell, on the client's queue until the client has it.
 */
void
ngx_http_snapcache_watch_sent(ngx_http_request_t *r,
    ngx_http_snapcache_ctx_t *ctx, size_t len)
{
    size_t                          expect;
    ngx_connection_t               *c;
    ngx_pool_cleanup_t             *cln;
    ngx_http_snapcache_watch_t     *w;
    ngx_http_snapcache_delivery_t  *d;

    c = ngx_http_snapcache_watch_socket(r);

    if (!ctx->slcf->adapt || !ctx->client_known || len == 0
        || r->header_only)
    {
        return;
    }

    w = ngx_http_snapcache_watch_get(c, 0);

    /*
     * A connection this busy is measured by the deliveries it has; the
     * rest of its responses cost nothing more (the spell's sample counts
     * their bytes all the same).
     */
    if (w == NULL || !w->active || w->n == NGX_HTTP_SNAPCACHE_LINK_DELIVERIES)
    {
        return;
    }

    /*
     * What is sure to cross the connection: HTTP/2's frame headers and
     * TLS's records only add to it, so a delivery is never taken for
     * done before its body is acknowledged.
     */
    expect = len;

    if (c == r->connection) {
        expect += r->header_size;
    }

    d = &w->d[w->n++];
    d->client[0] = ctx->client[0];
    d->client[1] = ctx->client[1];

    ngx_http_snapcache_link_queue(w->smcf, d->client, expect, 1);

    w->expect += expect;
    d->end = w->expect;

    /* what the rung weighs is known now, delivered or not */
    ngx_http_snapcache_link_size(w->smcf, ctx->device, (uint32_t) ctx->variant,
                                 len);

    /* looked at once more when the request is done, while still open */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln) {
        cln->handler = ngx_http_snapcache_watch_request_done;
        cln->data = w;
    }

    /*
     * A connection that closes after this response would be closed as
     * soon as the last byte is written, long before the client has it:
     * lingering keeps it open until the client closes its side, that is
     * until it has read everything, so that the delivery can be seen.
     */
    if (c == r->connection && !r->keepalive) {
        r->lingering_close = 1;
    }

    /* the first delivery of a spell may be done already: look now */
    if (w->n == 1) {
        ngx_http_snapcache_watch_poll(w);
    }
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
 * Pacing caps the socket's rate (SO_MAX_PACING_RATE, in bytes a second)
 * for what it sends from now on; 0 takes the cap away.  Set only when it
 * changes: a connection that is not held down costs nothing.
 */
static void
ngx_http_snapcache_watch_pace(ngx_http_snapcache_watch_t *w, uint32_t kbps)
{
#if (NGX_LINUX) && defined(SO_MAX_PACING_RATE)
    unsigned int  rate;

    if (kbps == w->pace_kbps) {
        return;
    }

    rate = kbps ? (unsigned int) ngx_min((uint64_t) kbps * 125, 0xfffffffe)
                : ~0U;

    if (setsockopt(w->connection->fd, SOL_SOCKET, SO_MAX_PACING_RATE,
                   &rate, sizeof(rate))
        == -1)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->connection->log, ngx_errno,
                       "snapcache: setsockopt(SO_MAX_PACING_RATE, %uD) "
                       "failed", rate);
        return;
    }

    w->pace_kbps = kbps;
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
 * The spell is over when the socket has nothing unsent or
 * unacknowledged and its bytes are acknowledged; then, or at the
 * deadline, the bytes acknowledged since its start over the time the
 * connection was busy are the sample.  Until then, the deliveries whose
 * end the acknowledgements passed leave the queue, and it looks again
 * later.
 */
static void
ngx_http_snapcache_watch_poll(ngx_http_snapcache_watch_t *w)
{
    uint64_t                        acked;
    ngx_msec_t                      now, next;
    ngx_uint_t                      delivered;
    ngx_connection_t               *c;
    snapcache_adapt_sample_t        s;
    ngx_http_snapcache_tcp_info_t   ti;

    c = w->connection;

    if (c->error || ngx_http_snapcache_tcp_info(c, &ti) != NGX_OK) {
        ngx_http_snapcache_watch_end(w);
        return;
    }

    now = ngx_current_msec;
    w->polled = now;
    acked = ti.bytes_acked >= w->acked ? ti.bytes_acked - w->acked : 0;

    /*
     * The kernel's latest rate sample, when the link, not us, set it,
     * and an acknowledgement of this spell's bytes made it (until then
     * it is the last spell's).
     */
    if (acked && !(ti.flags & 1) && ti.delivery_rate / 125 > w->delivery) {
        w->delivery = (uint32_t) ngx_min(ti.delivery_rate / 125, 0xffffffff);
    }

    /* c->sent cannot tell: a keepalive connection zeroes it */
    delivered = w->n && acked >= w->expect
                && ti.notsent_bytes == 0 && ti.unacked == 0;

    /*
     * A socket whose both sides closed reads as closed, and so does one
     * that was reset; only the first has had everything acknowledged.
     */
    if (ti.state == 7 && !delivered) {
        ngx_http_snapcache_watch_end(w);
        return;
    }

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "snapcache delivery: state %d, %uL of %uL acked, "
                   "%uD unsent, %ui in the spell, %M ms left",
                   (int) ti.state, acked, w->expect, ti.notsent_bytes,
                   w->n - w->first, w->deadline - now);

    if (!delivered && (w->n == 0 || (ngx_msec_int_t) (w->deadline - now) > 0))
    {
        ngx_http_snapcache_watch_passed(w, acked);

        if (w->n == 0 && now - w->started > NGX_HTTP_SNAPCACHE_LINK_POLL_MAX)
        {
            /* a spell that no response joined: a 304, an error body */
            w->active = 0;
            return;
        }

        next = w->n ? ngx_min(w->interval, w->deadline - now)
                    : w->interval;
        w->interval = ngx_min(2 * w->interval,
                              NGX_HTTP_SNAPCACHE_LINK_POLL_MAX);

        if (!w->timer.timer_set) {
            ngx_add_timer(&w->timer, next);
        }

        return;
    }

    ngx_memzero(&s, sizeof(snapcache_adapt_sample_t));
    s.bytes = acked;
    s.busy_us = ti.busy_time - w->busy;
    s.min_rtt_us = ti.min_rtt;
    s.retrans = ti.total_retrans - w->retrans;
    s.complete = delivered;

    ngx_log_debug8(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "snapcache delivery: %uL bytes acked of %uL in %uL us "
                   "busy, %s, min rtt %uD us, rtt %uD us, "
                   "delivery rate %uL B/s, app limited %d",
                   s.bytes, w->expect, s.busy_us,
                   delivered ? "delivered" : "deadline", ti.min_rtt, ti.rtt,
                   ti.delivery_rate, ti.flags & 1);

    /*
     * The kernel counts busy time in ticks: a delivery within one reads
     * as none, and is at least as fast as one tick's worth.
     */
    if (ti.busy_time < w->busy || s.busy_us < 1000) {
        s.busy_us = 1000;
    }

    s.paced_kbps = w->pace_kbps;
    s.delivery_kbps = w->delivery;

    ngx_http_snapcache_watch_passed(w, delivered ? w->expect : acked);
    ngx_http_snapcache_watch_record(w, &s, ti.bytes_acked >= w->acked);

    w->first = w->n;
    ngx_http_snapcache_watch_end(w);
}


/*
 * The spell's sample to each client it carried (usually one), with what
 * of the client's deliveries the queue still holds.
 */
static void
ngx_http_snapcache_watch_record(ngx_http_snapcache_watch_t *w,
    snapcache_adapt_sample_t *s, ngx_uint_t sample)
{
    uint64_t                        bytes, start;
    ngx_uint_t                      i, j, k, responses;
    ngx_http_snapcache_delivery_t  *d;

    for (i = 0; i < w->n; i++) {
        d = &w->d[i];

        for (k = 0; k < i; k++) {
            if (w->d[k].client[0] == d->client[0]
                && w->d[k].client[1] == d->client[1])
            {
                break;
            }
        }

        if (k < i) {
            continue;
        }

        bytes = 0;
        responses = 0;

        for (j = ngx_max(i, w->first); j < w->n; j++) {
            if (w->d[j].client[0] == d->client[0]
                && w->d[j].client[1] == d->client[1])
            {
                start = j ? w->d[j - 1].end : 0;
                bytes += w->d[j].end - start;
                responses++;
            }
        }

        if (sample) {
            ngx_http_snapcache_link_record(w->smcf, d->client, s, w->started,
                                           bytes, responses);

        } else if (responses) {
            ngx_http_snapcache_link_queue(w->smcf, d->client,
                                          -(int64_t) bytes,
                                          -(ngx_int_t) responses);
        }
    }
}


/* Deliveries the acknowledgements passed leave the client's queue. */
static void
ngx_http_snapcache_watch_passed(ngx_http_snapcache_watch_t *w,
    uint64_t acked)
{
    uint64_t                        start;
    ngx_http_snapcache_delivery_t  *d;

    for ( /* void */ ; w->first < w->n; w->first++) {
        d = &w->d[w->first];

        if (d->end > acked) {
            break;
        }

        start = w->first ? w->d[w->first - 1].end : 0;

        ngx_http_snapcache_link_queue(w->smcf, d->client,
                                      -(int64_t) (d->end - start), -1);
    }
}


/* The spell is over, measured or not: nothing of it stays queued. */
static void
ngx_http_snapcache_watch_end(ngx_http_snapcache_watch_t *w)
{
    uint64_t                        start;
    ngx_http_snapcache_delivery_t  *d;

    for ( /* void */ ; w->first < w->n; w->first++) {
        d = &w->d[w->first];
        start = w->first ? w->d[w->first - 1].end : 0;

        ngx_http_snapcache_link_queue(w->smcf, d->client,
                                      -(int64_t) (d->end - start), -1);
    }

    w->n = 0;
    w->first = 0;
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

    if (w->active) {
        ngx_http_snapcache_watch_end(w);
    }
}
