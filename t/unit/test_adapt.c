
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * adapt/: the ceiling stays inside [0, max] for every input and
 * Save-Data caps it; the choice, over every combination of ladder,
 * ceiling, link, budget, sizes and hysteresis state, is never above the
 * ceiling, never a rung predicted over budget while a lower one fits,
 * never a step up by more than one rung, and never a second step up
 * within SNAPCACHE_ADAPT_STEADY choices on a steady link; the estimator
 * believes a worse link at once and a better one within a refresh or
 * two; simulated displays on shaped links; hints; sizes; the Accept
 * parser is strict about q=0.
 */

#include <string.h>

#include "adapt/snapcache_adapt.h"
#include "t/unit/tap.h"


static void
test_ceiling(void)
{
    int                        n, v, max, def, sd, rc, bad, want;
    unsigned                   count;
    snapcache_adapt_ceiling_t  c;
    snapcache_adapt_request_t  req;

    bad = 0;
    count = 0;

    for (n = 1; n <= 6; n++) {
        for (max = -1; max < n; max++) {
            for (v = -1; v < n; v++) {
                for (def = 0; def < n; def++) {
                    for (sd = 0; sd <= 1; sd++) {
                        int  top = max == -1 ? n - 1 : max;

                        req.nvariants = (unsigned) n;
                        req.explicit_v = v;
                        req.max = max;
                        req.def = def;
                        req.save_data = sd;

                        rc = snapcache_adapt_ceiling(&req, &c);
                        count++;

                        if (v != -1 && v > top) {
                            bad += (rc != -1);
                            continue;
                        }

                        want = v != -1 ? v : (def < top ? def : top);

                        if (rc != 0 || (int) c.index != (sd && want > 1
                                                         ? 1 : want)
                            || (int) c.index > top
                            || c.save_data != (sd && want > 1))
                        {
                            diag("n=%d max=%d v=%d def=%d sd=%d -> %d/%u",
                                 n, max, v, def, sd, rc, c.index);
                            bad++;
                        }
                    }
                }
            }
        }
    }

    is_int(bad, 0, "every input of %u gives the expected ceiling, never "
           "above max, Save-Data at most the second-lowest rung", count);

    req.nvariants = 0;
    req.explicit_v = -1;
    req.max = -1;
    req.def = 0;
    req.save_data = 0;
    is_int(snapcache_adapt_ceiling(&req, &c), -1,
           "an empty ladder is refused");
}


/* Sizes as a photograph's default ladder, flat, decreasing, tiny. */
static const uint64_t  size_sets[][6] = {
    { 6000, 18000, 60000, 200000, 400000, 800000 },
    { 50000, 50000, 50000, 50000, 50000, 50000 },
    { 300000, 100000, 40000, 9000, 3000, 1000 },
    { 10, 20, 40, 80, 160, 320 },
    { 6000, 300000, 9000, 60000, 1, 500000 }
};

static const uint32_t  kbps_set[] = { 0, 20, 256, 700, 2000, 8000, 400000 };
static const uint32_t  rtt_set[] = { 0, 40, 400 };
static const uint32_t  budget_set[] = { 150, 1000, 4000 };
static const uint32_t  since_set[] = { 0, 3, 6, 7, 8, 1000 };
static const uint32_t  hold_kbps_set[] = { 0, 256, 1400, 2000, 400000 };


#define NELTS(a)  (sizeof(a) / sizeof((a)[0]))


static int
fits(const uint64_t *bytes, int i, uint32_t kbps, uint32_t rtt,
    uint32_t budget)
{
    return snapcache_adapt_predict_ms(bytes[i], kbps, rtt) <= budget;
}


static void
test_choose_exhaustive(void)
{
    int                       n, ceil, sd, hints, dropped, prev, j;
    int                       lower_fits;
    unsigned                  count, bad_ceiling, bad_budget, bad_step;
    unsigned                  bad_steady, bad_unknown, bad_rc, bad_open;
    unsigned                  bad_dropped;
    size_t                    s, k, r, b, si, hk;
    snapcache_adapt_hold_t    hold, before;
    snapcache_adapt_input_t   in;
    snapcache_adapt_choice_t  c;

    count = bad_ceiling = bad_budget = bad_step = bad_steady = 0;
    bad_unknown = bad_rc = bad_open = bad_dropped = 0;

    for (n = 1; n <= 6; n++)
    for (ceil = 0; ceil < n; ceil++)
    for (sd = 0; sd <= 1; sd++)
    for (hints = 0; hints <= 1; hints++)
    for (dropped = 0; dropped <= 1; dropped++)
    for (s = 0; s < NELTS(size_sets); s++)
    for (k = 0; k < NELTS(kbps_set); k++)
    for (r = 0; r < NELTS(rtt_set); r++)
    for (b = 0; b < NELTS(budget_set); b++)
    for (prev = -1; prev < n; prev++)
    for (si = 0; si < NELTS(since_set); si++)
    for (hk = 0; hk < NELTS(hold_kbps_set); hk++)
    {
        in.nrungs = (unsigned) n;
        in.bytes = size_sets[s];
        in.ceiling = ceil;
        in.save_data = sd;
        in.kbps = kbps_set[k];
        in.rtt_ms = rtt_set[r];
        in.from_hints = hints;
        in.careful = dropped;
        in.budget_ms = budget_set[b];

        hold.rung = prev;
        hold.since = since_set[si];
        hold.kbps = hold_kbps_set[hk];
        before = hold;

        count++;

        if (snapcache_adapt_choose(&in, &hold, &c) != 0) {
            bad_rc++;
            continue;
        }

        /* never above the ceiling */
        if ((int) c.index > ceil) {
            bad_ceiling++;
        }

        if (in.kbps == 0 || ceil == 0) {
            /* nothing measured or nothing to choose: the ceiling */
            if ((int) c.index != ceil
                || memcmp(&hold, &before, sizeof(hold)) != 0)
            {
                bad_unknown++;
            }

            continue;
        }

        /* never over budget while a lower rung fits */
        if (!fits(in.bytes, (int) c.index, in.kbps, in.rtt_ms, in.budget_ms)) {
            lower_fits = 0;

            for (j = 0; j < (int) c.index; j++) {
                lower_fits |= fits(in.bytes, j, in.kbps, in.rtt_ms,
                                   in.budget_ms);
            }

            if (lower_fits) {
                diag("over budget: n=%d ceil=%d set=%zu kbps=%u rtt=%u "
                     "budget=%u prev=%d -> %u", n, ceil, s, in.kbps,
                     in.rtt_ms, in.budget_ms, prev, c.index);
                bad_budget++;
            }
        }

        if (prev >= 0) {
            /* up by one rung at most, for the same ceiling */
            if ((int) c.index > (prev < ceil ? prev : ceil) + 1) {
                bad_step++;
            }

            /* up again only after STEADY choices, or on a changed link */
            if (hold.rung > prev
                && !(before.since >= SNAPCACHE_ADAPT_STEADY - 1
                     || (uint64_t) in.kbps * 2 >= (uint64_t) before.kbps * 3))
            {
                bad_steady++;
            }
        }

        /* just after a collapse, with headroom, or the lowest rung */
        if (dropped && c.index > 0
            && snapcache_adapt_predict_ms(in.bytes[c.index], in.kbps,
                                          in.rtt_ms) * 10
               > (uint64_t) in.budget_ms * 7)
        {
            bad_dropped++;
        }

        /* an open link with no hold gets the ceiling */
        if (prev < 0 && in.kbps == 400000 && s == 0 && in.budget_ms >= 1000
            && in.rtt_ms == 0 && (int) c.index != ceil)
        {
            bad_open++;
        }
    }

    diag("%u choices", count);
    is_int(bad_rc, 0, "every input is accepted");
    is_int(bad_ceiling, 0, "never above the ceiling");
    is_int(bad_unknown, 0, "unknown link or lowest ceiling: the ceiling, "
           "hold untouched");
    is_int(bad_budget, 0, "never a rung predicted over budget while a "
           "lower one fits");
    is_int(bad_step, 0, "never up by more than one rung");
    is_int(bad_steady, 0, "never up again within %d choices on a steady "
           "link", SNAPCACHE_ADAPT_STEADY);
    is_int(bad_open, 0, "an open link gets the ceiling");
    is_int(bad_dropped, 0, "careful (after a collapse, on a lossy link): a rung with headroom");

    in.nrungs = 0;
    is_int(snapcache_adapt_choose(&in, &hold, &c), -1, "empty ladder");
    in.nrungs = 4;
    in.ceiling = 4;
    is_int(snapcache_adapt_choose(&in, &hold, &c), -1, "ceiling off the "
           "ladder");
}


static void
test_reasons(void)
{
    uint64_t                  bytes[4] = { 6000, 18000, 60000, 200000 };
    snapcache_adapt_hold_t    hold = { SNAPCACHE_ADAPT_NONE, 0, 0 };
    snapcache_adapt_input_t   in;
    snapcache_adapt_choice_t  c;

    memset(&in, 0, sizeof(in));
    in.nrungs = 4;
    in.bytes = bytes;
    in.ceiling = 2;
    in.budget_ms = 1000;

    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "unknown",
           "no figures: unknown");
    is_int(c.index, 2, "no figures: the ceiling");

    in.save_data = 1;
    in.ceiling = 1;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "save-data",
           "no figures, Save-Data: save-data");

    in.kbps = 100000;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "save-data",
           "open link, Save-Data: save-data");
    is_int(c.index, 1, "Save-Data: the second-lowest rung");

    in.save_data = 0;
    in.ceiling = 2;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "ceiling",
           "open link: ceiling");
    is_int(hold.rung, 3, "the hold is what the link allows, above the "
           "ceiling too");

    in.kbps = 256;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "link", "256 kbit/s: link");
    is_int(c.index, 1, "256 kbit/s, 1 s: sd (18 KB)");

    in.kbps = 300;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "link",
           "hd does not fit at 300 kbit/s: link");

    in.kbps = 700;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 1, "hd fits at 700 kbit/s but not with headroom");
    is_str(snapcache_adapt_reason_name(c.reason), "hold",
           "fits without headroom: hold");

    in.kbps = 2000;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 2, "a link 1.5 x better steps up at once");

    in.ceiling = 0;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "pinned",
           "lowest ceiling: pinned");

    in.ceiling = 2;
    in.from_hints = 1;
    hold.rung = SNAPCACHE_ADAPT_NONE;
    in.kbps = 256;
    snapcache_adapt_choose(&in, &hold, &c);
    is_str(snapcache_adapt_reason_name(c.reason), "hint", "from hints: hint");
    is_int(c.index, 1, "hints of 256 kbit/s: sd");

    is_str(snapcache_adapt_reason_name(SNAPCACHE_ADAPT_OFF), "off", "off");
    is_str(snapcache_adapt_reason_name(SNAPCACHE_ADAPT_NREASONS), "unknown",
           "out of range");
}


static void
test_sample(void)
{
    snapcache_adapt_link_t    l;
    snapcache_adapt_sample_t  s;

    memset(&l, 0, sizeof(l));
    memset(&s, 0, sizeof(s));

    is_int(snapcache_adapt_link_kbps(&l, 1000), 0, "nothing known: 0");

    s.bytes = 64000;
    s.busy_us = 2000000;
    s.complete = 1;
    s.min_rtt_us = 40000;
    is_int(snapcache_adapt_sample(&l, &s, 1000), 0, "a sample");
    is_int(snapcache_adapt_link_kbps(&l, 1000), 256,
           "64 KB in 2 s is 256 kbit/s");
    is_int(l.rtt_us, 40000, "min RTT kept");

    s.busy_us = 0;
    is_int(snapcache_adapt_sample(&l, &s, 1000), -1, "no time: refused");

    /* a full-weight sample of a better link: half the way up */
    s.bytes = 64000;
    s.busy_us = 256000;
    snapcache_adapt_sample(&l, &s, 2000);
    ok(l.kbps > 256 && l.kbps < 2000, "a better link: part of the way up "
       "(%u)", l.kbps);
    is_int(l.last_kbps, 2000, "the latest sample is kept");

    /* a worse one: believed at once */
    s.busy_us = 2000000;
    snapcache_adapt_sample(&l, &s, 3000);
    is_int(l.kbps, 256, "a worse link: believed at once");
    is_int(l.dropped, 1, "a collapse is marked");
    is_int(l.lossy, 0, "no retransmission, not lossy");

    /* a tiny complete transfer barely moves the estimate */
    s.bytes = 1000;
    s.busy_us = 1000;
    snapcache_adapt_sample(&l, &s, 4000);
    is_int(l.dropped, 0, "and unmarked by the next sample");
    ok(l.kbps < 256 + (8000 - 256) / 20, "a 1 KB burst at 8 Mbit/s moves "
       "it by less than a twentieth of the way (%u)", l.kbps);

    /* an incomplete one counts fully: the link was busy all along */
    s.bytes = 3200;
    s.busy_us = 1000000;
    s.complete = 0;
    snapcache_adapt_sample(&l, &s, 5000);
    is_int(l.kbps, 25, "an incomplete transfer counts fully");

    /* ageing */
    is_int(snapcache_adapt_link_kbps(&l, 5000 + SNAPCACHE_ADAPT_MAX_AGE_MS
                                     + 1), 0, "forgotten when old");
    s.bytes = 64000;
    s.busy_us = 256000;
    s.complete = 1;
    snapcache_adapt_sample(&l, &s, 5000 + SNAPCACHE_ADAPT_MAX_AGE_MS + 1);
    is_int(l.kbps, 2000, "a new sample after that starts afresh");
    is_int(l.samples, 1, "sample count restarted");
    is_int(snapcache_adapt_link_kbps(&l, 1000), 2000,
           "a clock a little behind another worker's is not older");
}


/*
 * A display refreshing through a token bucket of rate kbps with a
 * 4 KB burst: what it takes to deliver bytes.
 */
static uint64_t
shaped_us(uint64_t bytes, uint32_t kbps)
{
    uint64_t  burst = 4096, us;

    us = 200;

    if (bytes > burst) {
        us += (bytes - burst) * 8000 / kbps;

    } else {
        us += bytes * 8000 / 100000;
    }

    return us;
}


typedef struct {
    snapcache_adapt_link_t  link;
    snapcache_adapt_hold_t  hold;
    uint64_t                bytes[4];
    unsigned                served;
    uint64_t                took_ms;
} display_t;


static void
display_refresh(display_t *d, uint32_t true_kbps, int64_t now_ms)
{
    uint64_t                  us;
    snapcache_adapt_input_t   in;
    snapcache_adapt_sample_t  s;
    snapcache_adapt_choice_t  c;

    memset(&in, 0, sizeof(in));
    in.nrungs = 4;
    in.bytes = d->bytes;
    in.ceiling = 2;
    in.kbps = snapcache_adapt_link_kbps(&d->link, now_ms);
    in.rtt_ms = d->link.rtt_us / 1000;
    in.careful = (int) (d->link.dropped || d->link.lossy);
    in.budget_ms = 1000;

    snapcache_adapt_choose(&in, &d->hold, &c);

    d->served = c.index;
    us = shaped_us(d->bytes[c.index], true_kbps);
    d->took_ms = us / 1000;

    memset(&s, 0, sizeof(s));
    s.bytes = d->bytes[c.index];
    s.busy_us = us;
    s.complete = 1;
    s.min_rtt_us = 200;
    snapcache_adapt_sample(&d->link, &s, now_ms + (int64_t) (us / 1000));
}


static void
test_display(void)
{
    int        i, changes, window_bad, last, over, first_hd, drop_ok;
    int64_t    now;
    display_t  d;
    unsigned   hist[64];

    memset(&d, 0, sizeof(d));
    d.hold.rung = SNAPCACHE_ADAPT_NONE;
    d.bytes[0] = 6000;
    d.bytes[1] = 18000;
    d.bytes[2] = 60000;
    d.bytes[3] = 200000;
    now = 1000;

    /* 256 kbit/s: from the 3rd refresh on, every image within 1 s */
    over = 0;

    for (i = 0; i < 30; i++, now += 3000) {
        display_refresh(&d, 256, now);
        hist[i] = d.served;

        if (i >= 2 && d.took_ms > 1000) {
            over++;
        }
    }

    is_int(hist[0], 2, "first refresh: nothing known, hd");
    is_int(over, 0, "256 kbit/s: within 1 s from the 3rd refresh on");

    changes = 0;
    window_bad = 0;
    last = -1;

    for (i = 2; i < 30; i++) {
        if (i > 2 && hist[i] != hist[i - 1]) {
            changes++;

            if (last >= 0 && i - last < SNAPCACHE_ADAPT_STEADY) {
                window_bad++;
            }

            last = i;
        }
    }

    ok(changes <= 28 / SNAPCACHE_ADAPT_STEADY && window_bad == 0,
       "steady 256 kbit/s: no flapping (%d changes)", changes);

    /* 2 Mbit/s: back on hd within 3 refreshes */
    first_hd = -1;

    for (i = 0; i < 10; i++, now += 3000) {
        display_refresh(&d, 2000, now);

        if (first_hd < 0 && d.served == 2) {
            first_hd = i;
        }

        if (first_hd >= 0 && d.served != 2) {
            first_hd = 100;
        }
    }

    ok(first_hd >= 0 && first_hd < 3, "2 Mbit/s: back on hd at refresh %d "
       "and staying", first_hd + 1);

    /* back to 256 kbit/s: within budget from the 2nd refresh after */
    drop_ok = 1;

    for (i = 0; i < 10; i++, now += 3000) {
        display_refresh(&d, 256, now);

        if (i >= 1 && d.took_ms > 1000) {
            drop_ok = 0;
        }
    }

    ok(drop_ok, "back to 256 kbit/s: within 1 s from the 2nd refresh");

    /* a link of noise around 1 Mbit/s: few changes */
    changes = 0;
    last = d.served;

    for (i = 0; i < 200; i++, now += 3000) {
        display_refresh(&d, (uint32_t) (900 + (i * 7919 % 200)), now);

        if (i >= 3 && d.served != (unsigned) last) {
            changes++;
        }

        last = (int) d.served;
    }

    ok(changes <= 200 / SNAPCACHE_ADAPT_STEADY,
       "a noisy 0.9-1.1 Mbit/s link: %d changes in 200 refreshes", changes);
}


static size_t
len_of(const char *s)
{
    return s ? strlen(s) : 0;
}


static void
test_hints(void)
{
    uint32_t  kbps, rtt;

#define H(e, d, r)                                                            \
    snapcache_adapt_hints(e, len_of(e), d, len_of(d), r, len_of(r), &kbps,    \
                          &rtt)

    is_int(H(NULL, NULL, NULL), 0, "no hints");
    is_int(H("4g", "10", "0"), 0, "Chromium's 'no idea' is unknown");
    is_int(H("4g", NULL, NULL), 0, "4g alone tells nothing");
    is_int(H(NULL, "1.5", "150"), 1, "Downlink and RTT");
    is_int(kbps, 1500, "Downlink 1.5 is 1500 kbit/s");
    is_int(rtt, 150, "RTT 150");
    is_int(H(NULL, "10", "50"), 1, "Downlink 10 with an RTT is real");
    is_int(kbps, 10000, "10 Mbit/s");
    is_int(H("3g", NULL, NULL), 1, "ECT 3g");
    is_int(kbps, 700, "3g: 700 kbit/s");
    is_int(rtt, 270, "3g: 270 ms");
    is_int(H("SLOW-2G", NULL, "0"), 1, "slow-2g, any case, RTT 0");
    is_int(kbps, 50, "slow-2g: 50 kbit/s");
    is_int(rtt, 2000, "RTT 0 is unknown: ECT's RTT");
    is_int(H("\"2g\"", NULL, NULL), 1, "a quoted token");
    is_int(kbps, 70, "2g: 70 kbit/s");
    is_int(H(NULL, "fast", "1e9"), 0, "garbage is unknown");
    is_int(H(NULL, "0", "100"), 0, "Downlink 0 is unknown");
    is_int(H(NULL, "0.075", NULL), 1, "Downlink 0.075");
    is_int(kbps, 75, "75 kbit/s");
    is_int(H(NULL, "99999999999999999999", NULL), 1, "a huge Downlink");
    ok(kbps > 1000000, "is clamped, not wrapped (%u)", kbps);

#undef H
}


static void
test_sizes(void)
{
    unsigned                i;
    snapcache_adapt_rung_t  w[4];
    snapcache_adapt_rung_t  r[4] = {
        { 320, 50, 0, 0 }, { 640, 65, 18000, 0 }, { 1280, 75, 0, 0 },
        { 1920, 85, 0, 0 }
    };
    snapcache_adapt_rung_t  none[2] = { { 320, 50, 0, 0 },
                                        { 1280, 75, 0, 0 } };

    /* weights worked out once, as the module does, give the same sizes */
    for (i = 0; i < 4; i++) {
        w[i] = r[i];
        w[i].weight = snapcache_adapt_weight(r[i].width, r[i].quality);
    }

    snapcache_adapt_sizes(r, 4);
    snapcache_adapt_sizes(w, 4);

    ok(w[0].bytes == r[0].bytes && w[2].bytes == r[2].bytes
       && w[3].bytes == r[3].bytes, "weights given or worked out: the same "
       "sizes");

    is_int((int) r[1].bytes, 18000, "a learned size is kept");
    ok(r[0].bytes > 3000 && r[0].bytes < 9000, "thumb scaled down from sd "
       "(%llu)", (unsigned long long) r[0].bytes);
    ok(r[2].bytes > 40000 && r[2].bytes < 120000, "hd scaled up from sd "
       "(%llu)", (unsigned long long) r[2].bytes);
    ok(r[3].bytes > r[2].bytes, "full above hd (%llu)",
       (unsigned long long) r[3].bytes);

    snapcache_adapt_sizes(none, 2);
    ok(none[0].bytes > 1000 && none[1].bytes > 4 * none[0].bytes,
       "nothing learned: a photograph's sizes (%llu, %llu)",
       (unsigned long long) none[0].bytes,
       (unsigned long long) none[1].bytes);

    is_int((int) snapcache_adapt_predict_ms(32000, 256, 0), 1112,
           "32 KB at 0.9 x 256 kbit/s");
    is_int((int) snapcache_adapt_predict_ms(32000, 256, 50), 1212,
           "plus two RTTs");
    ok(snapcache_adapt_predict_ms(1, 0, 0) == UINT64_MAX, "no rate: never");
}


static void
test_format(void)
{
    unsigned  both = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)
                     | SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP);
    unsigned  jpeg = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG);
    unsigned  avif = SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF);

#define FMT(s, allowed)  snapcache_adapt_format(s, len_of(s), allowed)

    is_int(FMT("image/webp,*/*", both), SNAPCACHE_FORMAT_WEBP,
           "image/webp accepted");
    is_int(FMT("image/avif,image/webp,image/apng,*/*;q=0.8", both),
           SNAPCACHE_FORMAT_WEBP, "a browser Accept");
    is_int(FMT("IMAGE/WEBP", both), SNAPCACHE_FORMAT_WEBP,
           "case-insensitive");
    is_int(FMT("image/webp;q=0.5", both), SNAPCACHE_FORMAT_WEBP,
           "q=0.5 accepts");
    is_int(FMT("image/webp;q=0", both), SNAPCACHE_FORMAT_JPEG,
           "q=0 refuses");
    is_int(FMT("image/webp; q=0.000, image/jpeg", both), SNAPCACHE_FORMAT_JPEG,
           "q=0.000 refuses");
    is_int(FMT("image/webpx", both), SNAPCACHE_FORMAT_JPEG,
           "image/webpx is not webp");
    is_int(FMT("*/*", both), SNAPCACHE_FORMAT_JPEG,
           "*/* alone gets the universal format");
    is_int(FMT(NULL, both), SNAPCACHE_FORMAT_JPEG, "no Accept: JPEG");
    is_int(FMT("image/webp", jpeg), SNAPCACHE_FORMAT_JPEG,
           "webp not enabled for the variant: JPEG");
    is_int(FMT("image/avif,image/webp", both | avif),
           SNAPCACHE_FORMAT_AVIF, "AVIF first when accepted and allowed");
    is_int(FMT("image/avif,image/webp", both), SNAPCACHE_FORMAT_WEBP,
           "AVIF accepted but not allowed: WebP");
    is_int(FMT("image/avif;q=0,image/webp", both | avif),
           SNAPCACHE_FORMAT_WEBP, "image/avif;q=0 refuses AVIF");

#undef FMT
}


int
main(void)
{
    test_ceiling();
    test_choose_exhaustive();
    test_reasons();
    test_sample();
    test_display();
    test_hints();
    test_sizes();
    test_format();

    return done_testing();
}
