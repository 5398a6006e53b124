
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
    int                       n, ceil, sd, hints, dropped, prev, j, rose;
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

    /* nothing queued, a tile alone: the choice as it was before queues */
    memset(&in, 0, sizeof(in));

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
    for (rose = 0; rose <= 1; rose++)
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
        hold.rose = (uint32_t) rose;
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

            /*
             * after a step down, up again only after STEADY choices, or
             * on a changed link; a climb goes on
             */
            if (hold.rung > prev
                && !(before.rose
                     || before.since >= SNAPCACHE_ADAPT_STEADY - 1
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
    is_int(bad_steady, 0, "after a step down, never up again within %d "
           "choices on a steady link", SNAPCACHE_ADAPT_STEADY);
    is_int(bad_open, 0, "an open link gets the ceiling");
    is_int(bad_dropped, 0, "careful (after a collapse, on a lossy link): "
           "a rung with headroom");

    in.nrungs = 0;
    is_int(snapcache_adapt_choose(&in, &hold, &c), -1, "empty ladder");
    in.nrungs = 4;
    in.ceiling = 4;
    is_int(snapcache_adapt_choose(&in, &hold, &c), -1, "ceiling off the "
           "ladder");
}


/*
 * The share of the link, read from the rule in snapcache_adapt.h rather
 * than from the code: the bytes queued ahead, then this response and
 * the rest of its wall at this rung's size, saturating.
 */
static uint64_t
share_of(uint64_t queued_bytes, unsigned queued, unsigned together,
    uint64_t bytes)
{
    uint64_t  k;

    k = together > queued ? together - queued : 1;

    if (bytes > UINT64_MAX / k) {
        return UINT64_MAX;
    }

    bytes *= k;

    return bytes > UINT64_MAX - queued_bytes ? UINT64_MAX
                                             : bytes + queued_bytes;
}


/* Which rungs fit num/den of the budget with the bytes of k at qb. */
static unsigned
share_fits(const uint64_t *bytes, int n, uint64_t qb, unsigned k,
    uint32_t kbps, uint32_t rtt, uint32_t budget, uint64_t num, uint64_t den)
{
    int       i;
    unsigned  mask;
    uint64_t  ms;

    mask = 0;

    for (i = 0; i < n; i++) {
        /* nothing queued and k together: a share of k */
        ms = snapcache_adapt_predict_ms(share_of(qb, 0, k, bytes[i]), kbps,
                                        rtt);

        /* ms * den <= budget * num, for whole milliseconds */
        if (ms <= (uint64_t) budget * num / den) {
            mask |= 1u << i;
        }
    }

    return mask;
}


/* Non-decreasing ladders; each is taken whole and by its lower rungs. */
static const uint64_t  share_ladders[][5] = {
    { 5000, 16000, 52000, 200000, 800000 },
    { 50000, 50000, 50000, 50000, 50000 },
    { 10, 20, 40, 80, 160 },
    { 1000, 1000, 30000, 30000, 3000000 },
    { 1, 2, 4000000, 4000000, 8000000 },
    { 1ull << 61, 1ull << 62, UINT64_MAX / 2, UINT64_MAX - 1, UINT64_MAX }
};

static const uint32_t  share_kbps[] = {
    0, 1, 8, 64, 512, 2000, 10000, 400000, UINT32_MAX
};
static const uint32_t  share_rtt[] = { 0, 40, 400 };
static const uint32_t  share_budget[] = { 1000, 4000 };
static const uint64_t  share_qb[] = {
    0, 4000, 60000, 500000, 3000000, 8000000, UINT64_MAX
};
static const uint32_t  share_since[] = { 0, 7, 1000 };
static const uint32_t  share_hold_kbps[] = { 0, 1000, UINT32_MAX };


#define SHARE_QB    NELTS(share_qb)
#define SHARE_MAXQ  8


static void
test_choose_share(void)
{
    int                       n, ceil, careful, prev, want, top;
    unsigned                  q, t, k, c, mask, low;
    unsigned                  fit[SHARE_QB][SHARE_MAXQ + 1];
    unsigned                  fit70[SHARE_QB][SHARE_MAXQ + 1];
    unsigned                  got[SHARE_QB][SHARE_MAXQ + 1][SHARE_MAXQ + 1];
    unsigned                  by_k[SHARE_MAXQ + 1];
    unsigned long             count, bad_rc, bad_ceiling, bad_none;
    unsigned long             bad_budget, bad_careful, bad_step, bad_unknown;
    unsigned long             bad_qb, bad_together, bad_queued, bad_k;
    size_t                    l, kb, r, b, x, si, hk, nholds, h;
    snapcache_adapt_hold_t    hold, holds[1 + 5 * NELTS(share_since)
                                          * NELTS(share_hold_kbps)];
    snapcache_adapt_input_t   in;
    snapcache_adapt_choice_t  ch;

    count = bad_rc = bad_ceiling = bad_none = bad_budget = bad_careful = 0;
    bad_step = bad_unknown = bad_qb = bad_together = bad_queued = 0;
    bad_k = 0;

    memset(&in, 0, sizeof(in));

    for (l = 0; l < NELTS(share_ladders); l++)
    for (n = 1; n <= 5; n++)
    for (kb = 0; kb < NELTS(share_kbps); kb++)
    for (r = 0; r < NELTS(share_rtt); r++)
    for (b = 0; b < NELTS(share_budget); b++)
    {
        in.nrungs = (unsigned) n;
        in.bytes = share_ladders[l];
        in.kbps = share_kbps[kb];
        in.rtt_ms = share_rtt[r];
        in.budget_ms = share_budget[b];

        for (x = 0; x < SHARE_QB; x++) {
            for (k = 1; k <= SHARE_MAXQ; k++) {
                fit[x][k] = share_fits(in.bytes, n, share_qb[x], k, in.kbps,
                                       in.rtt_ms, in.budget_ms, 1, 1);
                fit70[x][k] = share_fits(in.bytes, n, share_qb[x], k,
                                         in.kbps, in.rtt_ms, in.budget_ms,
                                         7, 10);
            }
        }

        nholds = 0;
        holds[nholds].rung = SNAPCACHE_ADAPT_NONE;
        holds[nholds].kbps = 0;
        holds[nholds].rose = 0;
        holds[nholds++].since = 0;

        for (prev = 0; prev < n; prev++)
        for (si = 0; si < NELTS(share_since); si++)
        for (hk = 0; hk < NELTS(share_hold_kbps); hk++)
        {
            holds[nholds].rung = prev;
            holds[nholds].kbps = share_hold_kbps[hk];
            holds[nholds].rose = 0;
            holds[nholds++].since = share_since[si];
        }

        for (ceil = 0; ceil < n; ceil++)
        for (careful = 0; careful <= 1; careful++)
        for (h = 0; h < nholds; h++)
        {
            in.ceiling = ceil;
            in.careful = careful;
            prev = holds[h].rung;

            for (x = 0; x < SHARE_QB; x++)
            for (q = 0; q <= SHARE_MAXQ; q++)
            for (t = 0; t <= SHARE_MAXQ; t++)
            {
                in.queued_bytes = share_qb[x];
                in.queued = q;
                in.together = t;
                hold = holds[h];
                count++;

                if (snapcache_adapt_choose(&in, &hold, &ch) != 0) {
                    bad_rc++;
                    got[x][q][t] = 0;
                    continue;
                }

                c = ch.index;
                got[x][q][t] = c;

                /* (1) never above the ceiling */
                if ((int) c > ceil) {
                    bad_ceiling++;
                }

                /* nothing measured, nothing to choose: the ceiling */
                if (in.kbps == 0 || ceil == 0) {
                    if ((int) c != ceil
                        || memcmp(&hold, &holds[h], sizeof(hold)) != 0)
                    {
                        bad_unknown++;
                    }

                    continue;
                }

                k = t > q ? t - q : 1;
                mask = fit[x][k];

                /*
                 * (2) with no hold, exactly the largest rung that fits,
                 * with headroom when careful, at or below the ceiling;
                 * the lowest when none does
                 */
                if (prev == SNAPCACHE_ADAPT_NONE) {
                    low = (careful ? fit70[x][k] : mask)
                          & ((2u << ceil) - 1);
                    want = 0;

                    for (top = 0; top < n; top++) {
                        if (low & (1u << top)) {
                            want = top;
                        }
                    }

                    if ((int) c != want) {
                        if (bad_none++ < 5) {
                            diag("share: l=%zu n=%d ceil=%d kbps=%u "
                                 "rtt=%u budget=%u qb=%llu q=%u t=%u "
                                 "careful=%d -> %u, want %d", l, n, ceil,
                                 in.kbps, in.rtt_ms, in.budget_ms,
                                 (unsigned long long) in.queued_bytes, q,
                                 t, careful, c, want);
                        }
                    }
                }

                /* (2) any hold: never over budget while a lower rung fits */
                if (!(mask & (1u << c)) && (mask & ((1u << c) - 1))) {
                    if (bad_budget++ < 5) {
                        diag("share: over budget: l=%zu n=%d ceil=%d "
                             "kbps=%u rtt=%u qb=%llu q=%u t=%u prev=%d "
                             "-> %u", l, n, ceil, in.kbps, in.rtt_ms,
                             (unsigned long long) in.queued_bytes, q, t,
                             prev, c);
                    }
                }

                /* careful: with headroom for the share, or the lowest */
                if (careful && c > 0 && !(fit70[x][k] & (1u << c))) {
                    bad_careful++;
                }

                /* up by one rung at most, queue or not */
                if (prev >= 0 && (int) c > (prev < ceil ? prev : ceil) + 1) {
                    bad_step++;
                }
            }

            /* (3) a larger share never chooses a larger rung */
            for (x = 0; x < SHARE_QB; x++)
            for (q = 0; q <= SHARE_MAXQ; q++)
            for (t = 0; t <= SHARE_MAXQ; t++)
            {
                c = got[x][q][t];

                if (x > 0 && c > got[x - 1][q][t]) {
                    bad_qb++;
                }

                /* more of the wall still to come */
                if (t > 0 && c > got[x][q][t - 1]) {
                    bad_together++;
                }

                /* more of it already queued, at the same queued bytes */
                if (q > 0 && c < got[x][q - 1][t]) {
                    bad_queued++;
                }
            }

            /* only the share counts: one choice for each k, falling */
            for (x = 0; x < SHARE_QB; x++) {
                for (k = 0; k <= SHARE_MAXQ; k++) {
                    by_k[k] = UINT32_MAX;
                }

                for (q = 0; q <= SHARE_MAXQ; q++)
                for (t = 0; t <= SHARE_MAXQ; t++)
                {
                    k = t > q ? t - q : 1;
                    c = got[x][q][t];

                    if (by_k[k] == UINT32_MAX) {
                        by_k[k] = c;

                    } else if (by_k[k] != c) {
                        bad_k++;
                    }
                }

                for (k = 2; k <= SHARE_MAXQ; k++) {
                    if (by_k[k] > by_k[k - 1]) {
                        bad_k++;
                    }
                }
            }
        }
    }

    diag("%lu choices with queues and walls", count);
    is_int(bad_rc, 0, "share: every input is accepted");
    is_int(bad_ceiling, 0, "share: never above the ceiling");
    is_int(bad_unknown, 0, "share: unknown link or lowest ceiling: the "
           "ceiling whatever the queue, hold untouched");
    is_int(bad_none, 0, "share, no hold: the largest rung whose share "
           "fits (with headroom when careful), at or below the ceiling, "
           "else the lowest");
    is_int(bad_budget, 0, "share, any hold: never a rung whose share is "
           "predicted over budget while a lower one fits");
    is_int(bad_careful, 0, "share, careful: a rung with headroom for its "
           "share, or the lowest");
    is_int(bad_step, 0, "share: never up by more than one rung");
    is_int(bad_qb, 0, "more queued bytes never choose a larger rung");
    is_int(bad_together, 0, "a larger wall (together) never chooses a "
           "larger rung");
    is_int(bad_queued, 0, "more of the wall already queued (at the same "
           "queued bytes) never chooses a smaller rung");
    is_int(bad_k, 0, "the choice depends on the share only "
           "(max(1, together - queued)), and falls as it grows");
}


/*
 * A wall of 4 tiles at 512 kbit/s, each one asked for with the others
 * still undelivered, against one tile alone on the same link.
 */
static void
test_wall(void)
{
    int                       i, wall_ok;
    unsigned                  first;
    uint64_t                  bytes[4] = { 5000, 16000, 52000, 200000 };
    uint64_t                  queued;
    snapcache_adapt_hold_t    hold;
    snapcache_adapt_input_t   in;
    snapcache_adapt_choice_t  c;

    memset(&in, 0, sizeof(in));
    in.nrungs = 4;
    in.bytes = bytes;
    in.ceiling = 3;
    in.kbps = 512;
    in.rtt_ms = 40;
    in.budget_ms = 1000;
    in.together = 4;

    hold.rung = SNAPCACHE_ADAPT_NONE;
    hold.kbps = 0;
    hold.since = 0;
    hold.rose = 0;

    snapcache_adapt_choose(&in, &hold, &c);
    first = c.index;

    ok(snapcache_adapt_predict_ms(4 * bytes[first], 512, 40) <= 1000,
       "a 4-tile wall at 512 kbit/s: rung %u, 4 x %llu bytes within 1 s "
       "(%llu ms)", first, (unsigned long long) bytes[first],
       (unsigned long long) snapcache_adapt_predict_ms(4 * bytes[first],
                                                       512, 40));

    /* the other three tiles, the earlier ones still queued */
    wall_ok = 1;
    queued = bytes[first];

    for (i = 1; i < 4; i++) {
        in.queued = (unsigned) i;
        in.queued_bytes = queued;
        snapcache_adapt_choose(&in, &hold, &c);

        if (c.index != first) {
            wall_ok = 0;
        }

        queued += bytes[c.index];
    }

    ok(wall_ok, "each tile of the wall gets the same rung");
    ok(snapcache_adapt_predict_ms(queued, 512, 40) <= 1000,
       "the whole wall within 1 s (%llu ms)",
       (unsigned long long) snapcache_adapt_predict_ms(queued, 512, 40));

    in.queued = 0;
    in.queued_bytes = 0;
    in.together = 1;
    hold.rung = SNAPCACHE_ADAPT_NONE;
    snapcache_adapt_choose(&in, &hold, &c);

    ok(c.index > first, "one tile alone on the same link: a larger rung "
       "(%u > %u)", c.index, first);
    is_str(snapcache_adapt_reason_name(c.reason), "link",
           "one tile alone: below the ceiling for the link");

    in.together = 0;
    hold.rung = SNAPCACHE_ADAPT_NONE;
    snapcache_adapt_choose(&in, &hold, &c);
    ok(c.index > first, "together 0 is one tile too (%u)", c.index);

    /* a queue as large as the wall's, in one earlier response */
    in.queued = 1;
    in.queued_bytes = 3 * bytes[first + 1];
    hold.rung = SNAPCACHE_ADAPT_NONE;
    snapcache_adapt_choose(&in, &hold, &c);
    ok(c.index <= first, "behind 3 x %llu bytes queued: no larger than "
       "the wall's rung (%u)", (unsigned long long) bytes[first + 1],
       c.index);

    in.queued_bytes = UINT64_MAX;
    in.together = UINT32_MAX;
    in.queued = 0;
    hold.rung = SNAPCACHE_ADAPT_NONE;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 0, "a saturated share: the lowest rung");
}


static void
test_reasons(void)
{
    uint64_t                  bytes[4] = { 6000, 18000, 60000, 200000 };
    snapcache_adapt_hold_t    hold = { SNAPCACHE_ADAPT_NONE, 0, 0, 0 };
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


/* A climb goes on while the link allows it; after a step down it waits. */
static void
test_climb(void)
{
    uint64_t                  bytes[3] = { 5000, 16000, 52000 };
    snapcache_adapt_hold_t    hold;
    snapcache_adapt_input_t   in;
    snapcache_adapt_choice_t  c;

    memset(&in, 0, sizeof(in));
    in.nrungs = 3;
    in.bytes = bytes;
    in.ceiling = 2;
    in.kbps = 4000;
    in.budget_ms = 1000;

    /* held on the lowest rung by a slow link that has just come back */
    memset(&hold, 0, sizeof(hold));
    hold.rung = 0;
    hold.kbps = 512;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 1, "the link came back: one rung up");
    is_int(hold.rose, 1, "marked as a step up");

    hold.kbps = 3000;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 2, "a climb goes on at once, with headroom");

    /* the same link, but the last change was a step down */
    hold.rung = 1;
    hold.kbps = 3000;
    hold.since = 0;
    hold.rose = 0;
    snapcache_adapt_choose(&in, &hold, &c);
    is_int(c.index, 1, "after a step down it waits on a steady link");
}


/* The kernel's delivery rate counts when higher, up to 1.5 times. */
static void
test_sample_delivery(void)
{
    snapcache_adapt_link_t    l;
    snapcache_adapt_sample_t  s;

    memset(&s, 0, sizeof(s));
    s.bytes = 128000;
    s.busy_us = 2000000;
    s.complete = 1;

    memset(&l, 0, sizeof(l));
    s.delivery_kbps = 700;
    snapcache_adapt_sample(&l, &s, 1000);
    is_int(l.kbps, 700, "128 KB in 2 s busy, the kernel saw 700 kbit/s: "
           "700");

    memset(&l, 0, sizeof(l));
    s.delivery_kbps = 5000;
    snapcache_adapt_sample(&l, &s, 1000);
    is_int(l.kbps, 768, "a delivery rate far above: 1.5 x the busy rate");

    memset(&l, 0, sizeof(l));
    s.delivery_kbps = 100;
    snapcache_adapt_sample(&l, &s, 1000);
    is_int(l.kbps, 512, "a lower delivery rate changes nothing");

    /* a small delivery's kernel rate is a shaper's burst as much */
    memset(&l, 0, sizeof(l));
    s.bytes = 32000;
    s.busy_us = 500000;
    s.delivery_kbps = 700;
    snapcache_adapt_sample(&l, &s, 1000);
    is_int(l.kbps, 512, "under 64 KB the delivery rate does not count");
}


/* A paced delivery is not flattered by a burst: taken at once. */
static void
test_sample_paced(void)
{
    uint32_t                  before;
    snapcache_adapt_link_t    l, u;
    snapcache_adapt_sample_t  s;

    memset(&l, 0, sizeof(l));
    memset(&s, 0, sizeof(s));

    s.bytes = 64000;
    s.busy_us = 1000000;
    s.complete = 1;
    snapcache_adapt_sample(&l, &s, 1000);
    is_int(l.kbps, 512, "held down at 512 kbit/s");

    u = l;

    /* paced at 3 x 512: 64 KB in 0.35 s is 1463 kbit/s, near the pace */
    s.busy_us = 350000;
    s.paced_kbps = 1536;
    snapcache_adapt_sample(&l, &s, 2000);
    is_int(l.kbps, 1462, "a paced delivery faster than the estimate is "
           "taken at once");

    s.paced_kbps = 0;
    snapcache_adapt_sample(&u, &s, 2000);
    ok(u.kbps > 512 && u.kbps < 1462, "the same delivery unpaced goes part "
       "of the way (%u)", u.kbps);

    /* well under its pace: the link's own rate, taken at once as well */
    memset(&l, 0, sizeof(l));
    s.busy_us = 1000000;
    s.paced_kbps = 0;
    snapcache_adapt_sample(&l, &s, 1000);
    before = l.kbps;
    s.busy_us = 500000;
    s.paced_kbps = 4000;
    snapcache_adapt_sample(&l, &s, 2000);
    ok(before == 512 && l.kbps == 1024, "under its pace it is the link's "
       "rate, taken at once (%u)", l.kbps);

    /* a small paced transfer still weighs by its size */
    memset(&l, 0, sizeof(l));
    s.bytes = 64000;
    s.busy_us = 1000000;
    s.paced_kbps = 0;
    snapcache_adapt_sample(&l, &s, 1000);
    s.bytes = 4096;
    s.busy_us = 25000;
    s.paced_kbps = 1536;
    snapcache_adapt_sample(&l, &s, 2000);
    ok(l.kbps > 512 && l.kbps < 512 + (1310 - 512) / 10, "a 4 KB paced "
       "burst moves it by its weight only (%u)", l.kbps);

    /* a paced delivery slower than the estimate is believed as ever */
    s.bytes = 64000;
    s.busy_us = 2000000;
    snapcache_adapt_sample(&l, &s, 3000);
    is_int(l.kbps, 256, "a slower paced delivery: believed at once");
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
    ok(snapcache_adapt_predict_ms(UINT64_MAX, 1, 0) == UINT64_MAX,
       "too long for 64 bits: never, not wrapped");
    ok(snapcache_adapt_predict_ms(UINT64_MAX, UINT32_MAX, 0)
       == 38177487085ull, "every byte there is, at the fastest rate");
    is_int(snapcache_adapt_predict_ms(1000000000000ull, UINT32_MAX, 0),
           2070, "1 TB at the fastest rate: the rate is not wrapped");
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
    test_choose_share();
    test_wall();
    test_reasons();
    test_climb();
    test_sample();
    test_sample_paced();
    test_sample_delivery();
    test_display();
    test_hints();
    test_sizes();
    test_format();

    return done_testing();
}
