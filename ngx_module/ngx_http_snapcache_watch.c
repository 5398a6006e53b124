
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: watching a delivery.  The server measures delivery, not
 * writes: after a response is handed to the socket, a timer reads
 * TCP_INFO on the connection until the client has acknowledged every
 * byte, or a deadline passes, and the bytes acknowledged over the time
 * the connection was busy sending them become a sample for the client's
 * record in the link table (ngx_http_snapcache_link.c).
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


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


static ngx_int_t ngx_http_snapcache_tcp_info(ngx_connection_t *c,
    ngx_http_snapcache_tcp_info_t *ti);
static ngx_http_snapcache_watch_t *ngx_http_snapcache_watch_get(
    ngx_connection_t *c, ngx_uint_t create);
static void ngx_http_snapcache_watch_poll(ngx_http_snapcache_watch_t *w);
static void ngx_http_snapcache_watch_timer(ngx_event_t *ev);
static void ngx_http_snapcache_watch_request_done(void *data);
static void ngx_http_snapcache_watch_cleanup(void *data);


/*
 * Before a link is chosen: the last response on this connection may be
 * delivered by now, and its sample is the freshest there is.
 */
void
ngx_http_snapcache_watch_check(ngx_connection_t *c)
{
    ngx_http_snapcache_watch_t  *w;

    w = ngx_http_snapcache_watch_get(c, 0);

    if (w && w->active) {
        ngx_http_snapcache_watch_poll(w);
    }
}


/*
 * Before a response's header goes out: where the connection's counters
 * stand, so that its delivery can be measured from here.  A connection
 * still delivering the previous response is not measured apart.
 */
void
ngx_http_snapcache_watch_sending(ngx_http_request_t *r,
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
ngx_http_snapcache_watch_sent(ngx_http_request_t *r,
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
        ngx_http_snapcache_link_record(w->smcf, w->client, w->device,
                                       w->variant, w->body_len, &s);
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
