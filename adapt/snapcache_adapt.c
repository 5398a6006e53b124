
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache adaptive quality.  See snapcache_adapt.h.
 */

#include <math.h>
#include <string.h>

#include "adapt/snapcache_adapt.h"


static int
min_int(int a, int b)
{
    return a < b ? a : b;
}


int
snapcache_adapt_ceiling(const snapcache_adapt_request_t *req,
    snapcache_adapt_ceiling_t *ceiling)
{
    int  top, pick;

    if (req->nvariants == 0) {
        return -1;
    }

    top = (int) req->nvariants - 1;

    if (req->max != SNAPCACHE_ADAPT_NONE) {
        top = min_int(top, req->max < 0 ? 0 : req->max);
    }

    if (req->explicit_v != SNAPCACHE_ADAPT_NONE) {
        if (req->explicit_v < 0 || req->explicit_v > top) {
            return -1;
        }

        pick = req->explicit_v;

    } else {
        pick = req->def < 0 ? 0 : min_int(req->def, top);
    }

    ceiling->save_data = 0;

    if (req->save_data && pick > 1) {
        pick = 1;
        ceiling->save_data = 1;
    }

    ceiling->index = (unsigned) pick;

    return 0;
}


int
snapcache_adapt_sample(snapcache_adapt_link_t *link,
    const snapcache_adapt_sample_t *sample, int64_t now_ms)
{
    uint64_t  rate, weight;

    if (sample->busy_us == 0) {
        return -1;
    }

    /* workers' clocks may lag one another a little: earlier is not older */
    if (link->samples
        && now_ms - link->sampled_ms > SNAPCACHE_ADAPT_MAX_AGE_MS)
    {
        memset(link, 0, sizeof(snapcache_adapt_link_t));
    }

    /* bits per millisecond is kbit/s */
    rate = sample->bytes * 8000 / sample->busy_us;

    if (sample->delivery_kbps > rate
        && sample->bytes >= SNAPCACHE_ADAPT_PIECES_BYTES)
    {
        rate = sample->delivery_kbps < rate * 3 / 2 ? sample->delivery_kbps
                                                    : rate * 3 / 2;
    }

    if (rate == 0) {
        rate = 1;
    }

    if (rate > UINT32_MAX) {
        rate = UINT32_MAX;
    }

    /* per mille */
    weight = 1000;

    /* a shaper's burst flatters a small transfer more than a large one */
    if (sample->complete && sample->bytes < SNAPCACHE_ADAPT_FULL_BYTES) {
        weight = sample->bytes * sample->bytes * 1000
                 / SNAPCACHE_ADAPT_FULL_BYTES / SNAPCACHE_ADAPT_FULL_BYTES;
    }

    link->dropped = (link->samples && rate * 2 < link->kbps);
    link->lossy = (sample->retrans > 0);

    if (link->samples == 0 || link->kbps == 0) {
        link->kbps = (uint32_t) rate;

    } else if (rate < link->kbps) {
        link->kbps -= (uint32_t) ((link->kbps - rate) * weight / 1000);

    } else if (sample->paced_kbps) {
        /* no burst flattered it: the pace held it back, or the link did */
        link->kbps += (uint32_t) ((rate - link->kbps) * weight / 1000);

    } else {
        link->kbps += (uint32_t) ((rate - link->kbps) * weight / 1600);
    }

    if (link->kbps == 0) {
        link->kbps = 1;
    }

    link->last_kbps = (uint32_t) rate;

    if (sample->min_rtt_us) {
        link->rtt_us = link->rtt_us ? (link->rtt_us + sample->min_rtt_us) / 2
                                    : sample->min_rtt_us;
    }

    if (link->samples < UINT32_MAX) {
        link->samples++;
    }

    link->sampled_ms = now_ms;

    return 0;
}


uint32_t
snapcache_adapt_link_kbps(const snapcache_adapt_link_t *link, int64_t now_ms)
{
    if (link->samples == 0
        || now_ms - link->sampled_ms > SNAPCACHE_ADAPT_MAX_AGE_MS)
    {
        return 0;
    }

    return link->kbps;
}


static int
token_is(const char *p, size_t len, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    while (len && (*p == ' ' || *p == '"')) {
        p++;
        len--;
    }

    while (len && (p[len - 1] == ' ' || p[len - 1] == '"')) {
        len--;
    }

    if (len != n) {
        return 0;
    }

    while (n--) {
        if ((p[n] | 0x20) != lit[n]) {
            return 0;
        }
    }

    return 1;
}


/*
 * A non-negative decimal ("1.75") in thousandths, or -1 when the value
 * is not one.  Larger values than any link are clamped.
 */
static int64_t
parse_milli(const char *p, size_t len)
{
    int64_t  v, frac;
    size_t   i, digits;

    while (len && *p == ' ') {
        p++;
        len--;
    }

    while (len && p[len - 1] == ' ') {
        len--;
    }

    if (len == 0) {
        return -1;
    }

    v = 0;
    digits = 0;

    for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (v < 100000000) {
            v = v * 10 + (p[i] - '0');
        }

        digits++;
    }

    v *= 1000;

    if (i < len && p[i] == '.') {
        frac = 100;

        for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
            v += (p[i] - '0') * frac;
            frac /= 10;
            digits++;
        }
    }

    return (i == len && digits) ? v : -1;
}


int
snapcache_adapt_hints(const char *ect, size_t ect_len, const char *downlink,
    size_t downlink_len, const char *rtt, size_t rtt_len, uint32_t *kbps,
    uint32_t *rtt_ms)
{
    int64_t   dl, r;
    uint32_t  ect_kbps, ect_rtt;

    dl = downlink ? parse_milli(downlink, downlink_len) : -1;
    r = rtt ? parse_milli(rtt, rtt_len) : -1;

    /* Chromium's "no idea": Downlink 10 (its cap) with RTT 0 */
    if (dl == 10000 && r == 0) {
        dl = -1;
    }

    if (r <= 0) {
        r = -1;
    }

    ect_kbps = 0;
    ect_rtt = 0;

    if (ect) {
        if (token_is(ect, ect_len, "slow-2g")) {
            ect_kbps = 50;
            ect_rtt = 2000;

        } else if (token_is(ect, ect_len, "2g")) {
            ect_kbps = 70;
            ect_rtt = 1400;

        } else if (token_is(ect, ect_len, "3g")) {
            ect_kbps = 700;
            ect_rtt = 270;
        }
    }

    /* Downlink is in Mbit/s: thousandths of it are kbit/s */
    if (dl > 0) {
        *kbps = dl > UINT32_MAX ? UINT32_MAX : (uint32_t) dl;
        *rtt_ms = r > 0 ? (uint32_t) (r / 1000) : ect_rtt;
        return 1;
    }

    if (ect_kbps) {
        *kbps = ect_kbps;
        *rtt_ms = r > 0 ? (uint32_t) (r / 1000) : ect_rtt;
        return 1;
    }

    return 0;
}


/* How much more a JPEG of quality q spends per pixel than one of q50. */
static double
quality_factor(uint32_t q)
{
    if (q < 1) {
        q = 1;
    }

    if (q > 99) {
        q = 99;
    }

    return sqrt((double) q / (100 - q));
}


static double
pixels_of(uint32_t width)
{
    /* a camera's 16:9 frame */
    return (double) width * width * 9 / 16;
}


double
snapcache_adapt_weight(uint32_t width, uint32_t quality)
{
    return pow(pixels_of(width), 0.85) * quality_factor(quality);
}


static double
rung_weight(const snapcache_adapt_rung_t *rung)
{
    return rung->weight > 0 ? rung->weight
                            : snapcache_adapt_weight(rung->width,
                                                     rung->quality);
}


void
snapcache_adapt_sizes(snapcache_adapt_rung_t *rungs, unsigned n)
{
    unsigned  i, k, best, dist, best_dist;
    double    b;
    uint64_t  learned[SNAPCACHE_ADAPT_MAX_RUNGS];

    if (n > SNAPCACHE_ADAPT_MAX_RUNGS) {
        n = SNAPCACHE_ADAPT_MAX_RUNGS;
    }

    for (i = 0; i < n; i++) {
        learned[i] = rungs[i].width ? rungs[i].bytes : 0;
    }

    for (i = 0; i < n; i++) {
        if (rungs[i].bytes) {
            continue;
        }

        best = n;
        best_dist = 0;

        for (k = 0; k < n; k++) {
            dist = k > i ? k - i : i - k;

            if (learned[k] && (best == n || dist < best_dist)) {
                best = k;
                best_dist = dist;
            }
        }

        if (best < n) {
            b = (double) learned[best] * rung_weight(&rungs[i])
                / rung_weight(&rungs[best]);

        } else {
            /* about what a photograph takes, from the default ladder */
            b = 0.3 * rung_weight(&rungs[i]);
        }

        rungs[i].bytes = b < 1 ? 1 : (uint64_t) b;
    }
}


uint64_t
snapcache_adapt_predict_ms(uint64_t bytes, uint32_t kbps, uint32_t rtt_ms)
{
    uint64_t  div, q;

    if (kbps == 0) {
        return UINT64_MAX;
    }

    /*
     * bytes * 8 / (0.9 * kbps) milliseconds, rounded up; divided first,
     * so that a queue of any size is counted, not wrapped
     */
    div = (uint64_t) kbps * 9;
    q = bytes / div;

    /* the remainder adds at most 80, the RTTs at most 2 * UINT32_MAX */
    if (q > (UINT64_MAX - 2 * (uint64_t) UINT32_MAX) / 80 - 1) {
        return UINT64_MAX;
    }

    return 2 * (uint64_t) rtt_ms + q * 80 + (bytes % div * 80 + div - 1) / div;
}


/*
 * The bytes that go before this response's last: those queued ahead,
 * then this response and the rest of its wall at the same size.
 */
static uint64_t
share_bytes(const snapcache_adapt_input_t *in, uint64_t bytes)
{
    uint64_t  k;

    k = in->together > in->queued ? in->together - in->queued : 1;

    if (bytes > UINT64_MAX / k) {
        return UINT64_MAX;
    }

    bytes *= k;

    return bytes > UINT64_MAX - in->queued_bytes ? UINT64_MAX
                                                 : bytes + in->queued_bytes;
}


/*
 * The largest rung whose prediction fits the budget (scaled by num/den),
 * or -1.  Sizes are taken as non-decreasing up the ladder, so that the
 * rungs that fit are always the lowest ones.
 */
static int
largest_fitting(const snapcache_adapt_input_t *in, uint64_t num,
    uint64_t den)
{
    int       i, fit;
    uint64_t  bytes, ms;

    fit = -1;
    bytes = 0;

    for (i = 0; i < (int) in->nrungs; i++) {
        if (in->bytes[i] > bytes) {
            bytes = in->bytes[i];
        }

        ms = snapcache_adapt_predict_ms(share_bytes(in, bytes), in->kbps,
                                        in->rtt_ms);

        if (ms > UINT64_MAX / den || ms * den > (uint64_t) in->budget_ms * num)
        {
            break;
        }

        fit = i;
    }

    return fit;
}


/*
 * The hold is the largest rung the link allows, whatever the request's
 * ceiling; a request gets the lower of the two.  So a client that asks
 * for several ceilings (a grid of thumbs, one camera full screen) keeps
 * one view of its link, and an unconstrained link serves every ceiling.
 */
int
snapcache_adapt_choose(const snapcache_adapt_input_t *in,
    snapcache_adapt_hold_t *hold, snapcache_adapt_choice_t *choice)
{
    int  fit, headroom, cap, prev, pick, within;

    if (in->nrungs == 0 || in->nrungs > SNAPCACHE_ADAPT_MAX_RUNGS
        || in->ceiling < 0 || in->ceiling >= (int) in->nrungs)
    {
        return -1;
    }

    if (in->ceiling == 0) {
        choice->index = 0;
        choice->reason = SNAPCACHE_ADAPT_PINNED;
        return 0;
    }

    if (in->kbps == 0) {
        choice->index = (unsigned) in->ceiling;
        choice->reason = in->save_data ? SNAPCACHE_ADAPT_SAVE_DATA
                                       : SNAPCACHE_ADAPT_UNKNOWN;
        return 0;
    }

    fit = in->careful ? largest_fitting(in, 7, 10) : largest_fitting(in, 1, 1);
    if (fit < 0) {
        fit = 0;
    }

    prev = hold->rung;

    if (prev < 0 || prev >= (int) in->nrungs) {
        cap = fit;

    } else if (fit <= prev) {
        /* down at once */
        cap = fit;

    } else {
        /* up one rung, with headroom, and not again soon on a steady link */
        headroom = largest_fitting(in, 7, 10);

        if (headroom > prev
            && (hold->rose || hold->since >= SNAPCACHE_ADAPT_STEADY - 1
                || (uint64_t) in->kbps * 2 >= (uint64_t) hold->kbps * 3))
        {
            cap = prev + 1;

        } else {
            cap = prev;
        }
    }

    if (cap != prev) {
        hold->rose = (prev >= 0 && prev < (int) in->nrungs && cap > prev);
        hold->rung = cap;
        hold->kbps = in->kbps;
        hold->since = 0;

    } else if (hold->since < UINT32_MAX) {
        hold->since++;
    }

    pick = min_int(cap, in->ceiling);
    within = min_int(fit, in->ceiling);

    choice->index = (unsigned) pick;

    if (in->from_hints) {
        choice->reason = SNAPCACHE_ADAPT_HINT;

    } else if (pick == in->ceiling) {
        choice->reason = in->save_data ? SNAPCACHE_ADAPT_SAVE_DATA
                                       : SNAPCACHE_ADAPT_CEILING;

    } else if (pick < within) {
        choice->reason = SNAPCACHE_ADAPT_HOLD;

    } else {
        choice->reason = SNAPCACHE_ADAPT_LINK;
    }

    return 0;
}


const char *
snapcache_adapt_reason_name(snapcache_adapt_reason_e reason)
{
    static const char  *names[] = {
        "off", "pinned", "unknown", "ceiling", "save-data", "link", "hold",
        "hint"
    };

    if ((unsigned) reason >= SNAPCACHE_ADAPT_NREASONS) {
        return "unknown";
    }

    return names[reason];
}


static int
lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}


static int
prefix_ci(const char *p, const char *end, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    if ((size_t) (end - p) < n) {
        return 0;
    }

    while (n--) {
        if (lower((unsigned char) *p++) != *lit++) {
            return 0;
        }
    }

    return 1;
}


/* A q of exactly zero ("q=0", "q=0.0", "q=0.000") means "not acceptable". */
static int
q_is_zero(const char *p, const char *end)
{
    while (p < end && *p != ',') {
        if ((*p == 'q' || *p == 'Q') && p + 1 < end && p[1] == '=') {
            p += 2;

            if (p >= end || *p != '0') {
                return 0;
            }

            for (p++; p < end && (*p == '.' || *p == '0'); p++) {
                /* void */
            }

            return p >= end || *p == ',' || *p == ';' || *p == ' ';
        }

        p++;
    }

    return 0;
}


static int
accepts(const char *accept, size_t len, const char *type)
{
    const char  *p, *end;

    p = accept;
    end = accept + len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',' || *p == '\t')) {
            p++;
        }

        if (prefix_ci(p, end, type)) {
            const char  *after = p + strlen(type);

            if (after == end || *after == ',' || *after == ';'
                || *after == ' ')
            {
                return !q_is_zero(after, end);
            }
        }

        while (p < end && *p != ',') {
            p++;
        }
    }

    return 0;
}


unsigned
snapcache_adapt_format(const char *accept, size_t len, unsigned allowed)
{
    if (accept == NULL) {
        return SNAPCACHE_FORMAT_JPEG;
    }

    if ((allowed & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF))
        && accepts(accept, len, "image/avif"))
    {
        return SNAPCACHE_FORMAT_AVIF;
    }

    if ((allowed & SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP))
        && accepts(accept, len, "image/webp"))
    {
        return SNAPCACHE_FORMAT_WEBP;
    }

    return SNAPCACHE_FORMAT_JPEG;
}
