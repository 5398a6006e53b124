
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache adaptive quality: the whole interface of adapt/.
 *
 * Pure functions that choose which rung of the variant ladder, and which
 * output format, to serve.  They are given rung indexes, sizes and link
 * figures only, never an account, device or snapshot id, so adaptation
 * cannot change whose image is served: it only picks among the variants
 * of the one verified snapshot.
 *
 * The choice has two steps.  The ceiling comes from the URL and the
 * request: v= or the default rung, never above the signed max, and
 * Save-Data caps it at the second-lowest rung.  Then the rung is the
 * largest at or below the ceiling whose predicted time to last byte fits
 * the time budget, with hysteresis: down at once, up one rung at a time
 * and only with headroom, and after a step down, up again only after
 * SNAPCACHE_ADAPT_STEADY choices while the link stays as it was.  A climb
 * goes on at once: a step up that followed a step up is no flap, and a
 * link that came back should not wait a refresh per rung.  Right
 * after the link collapsed, or while it loses packets, the choice keeps
 * that headroom too: the estimate rests on one sample, and a connection
 * that was sending fast sends its next response in a burst that a slow
 * link's queue drops and the sender must repeat.
 *
 * The link is shared.  A display refreshes a wall of tiles at once, over
 * HTTP/2 streams or a pool of connections, and the estimate is of the
 * whole link, so a response's last byte arrives only after the bytes
 * queued ahead of it, and the tiles still to be chosen share the rate
 * with it.  So rung i is predicted as
 *
 *     snapcache_adapt_predict_ms(queued_bytes + bytes[i] * k, ...)
 *
 * with k = max(1, together - queued): the responses already queued are
 * in queued_bytes at their own sizes, and this one and the rest of its
 * wall are taken at rung i, since the same rule will choose for them
 * on the same link.  This holds for the headroom too, and so for the
 * hold: a client that turns from a wall to one tile steps up as after
 * any other drop.  With all three at 0 the prediction is the rung's
 * alone.  The sum saturates: 2^64 bytes outlast any budget even at the
 * fastest rate, so a saturated share never fits.
 *
 * The link estimate is kept per client by the caller, as a
 * snapcache_adapt_link_t that snapcache_adapt_sample() updates from
 * delivery measurements (bytes acknowledged over the time the connection
 * was busy sending them).
 */

#ifndef SNAPCACHE_ADAPT_H
#define SNAPCACHE_ADAPT_H

#include <stddef.h>
#include <stdint.h>

#include "format/snapcache_format.h"


#define SNAPCACHE_ADAPT_NONE        -1
#define SNAPCACHE_ADAPT_MAX_RUNGS   16

/* an estimate whose last sample is older than this is forgotten */
#define SNAPCACHE_ADAPT_MAX_AGE_MS  300000

/* choices on a steady link between two steps up */
#define SNAPCACHE_ADAPT_STEADY      8

/* a sample of this many bytes or more has full weight */
#define SNAPCACHE_ADAPT_FULL_BYTES  16384

/* and of this many, the kernel's delivery rate counts too */
#define SNAPCACHE_ADAPT_PIECES_BYTES  (4 * SNAPCACHE_ADAPT_FULL_BYTES)


/* ------------------------------------------------------------ ceiling */

typedef struct {
    unsigned  nvariants;      /* ladder length, smallest first */
    int       explicit_v;     /* v= index, or SNAPCACHE_ADAPT_NONE */
    int       max;            /* signed max= index, or SNAPCACHE_ADAPT_NONE */
    int       def;            /* snapcache_default_variant index */
    int       save_data;      /* "Save-Data: on" */
} snapcache_adapt_request_t;


typedef struct {
    unsigned  index;          /* the ceiling */
    int       save_data;      /* 1 when Save-Data lowered it */
} snapcache_adapt_ceiling_t;


/*
 * The rung to serve on an unconstrained link: v=, else the default,
 * never above max; Save-Data caps it at the second-lowest rung.  Always
 * a valid index.  Returns -1 only for an empty ladder or an explicit v
 * above max, which the caller must already have refused.
 */
int snapcache_adapt_ceiling(const snapcache_adapt_request_t *req,
    snapcache_adapt_ceiling_t *ceiling);


/* ------------------------------------------------------------ the link */

/* What the caller keeps per client; all zero is "nothing known". */
typedef struct {
    uint32_t  kbps;           /* estimated delivery rate, 0: unknown */
    uint32_t  last_kbps;      /* the latest sample's rate */
    uint32_t  rtt_us;         /* estimated minimum RTT */
    uint32_t  samples;        /* samples taken, saturating */
    uint32_t  dropped;        /* the latest sample was under half the
                                 estimate before it */
    uint32_t  lossy;          /* the latest delivery had to retransmit */
    int64_t   sampled_ms;     /* when the latest was taken */
} snapcache_adapt_link_t;


/*
 * One delivery: bytes the client acknowledged, and the microseconds the
 * connection was busy sending them (from the first byte sent to the
 * last acknowledged, or to a deadline when complete is 0).
 */
typedef struct {
    uint64_t  bytes;
    uint64_t  busy_us;
    uint32_t  min_rtt_us;     /* 0: unknown */
    uint32_t  retrans;        /* segments sent again meanwhile */
    uint32_t  paced_kbps;     /* the sender's pace, 0: not paced */
    uint32_t  delivery_kbps;  /* the kernel's best delivery rate seen
                                 meanwhile, not app-limited; 0: none */
    int       complete;       /* every byte was acknowledged */
} snapcache_adapt_sample_t;


/*
 * Folds a sample into the estimate.  A rate below the estimate is taken
 * at once (in proportion to the sample's weight), a rate above it at
 * 5/8 of it: a link that got worse is believed at once, one that got
 * better over a refresh or two.  A complete small transfer weighs less
 * ((bytes / SNAPCACHE_ADAPT_FULL_BYTES) squared), since a shaper's burst
 * makes it look faster than the link is; an incomplete one weighs fully.
 * The rate is the bytes over the busy time, or, for a sample of
 * SNAPCACHE_ADAPT_PIECES_BYTES or more, the kernel's delivery rate when
 * that is higher, up to 1.5 times as high: a delivery in several pieces
 * (tiles sent as their fills finish) waits for each piece's last
 * acknowledgement, and its busy time counts those waits, while the
 * kernel's rate, from the acknowledgements of a full flight, is the
 * link's.  A smaller sample's delivery rate is a shaper's burst as much
 * as the link, and the cap keeps a compressed run of acknowledgements
 * from passing for a faster link.
 *
 * A paced delivery is taken at once (by its weight) when faster too: the
 * pace, not a burst into a shaper's queue, set its speed, so it is
 * either the link's rate or a floor under it, and a client held down and
 * paced climbs as fast as its pace lets it.
 * An estimate older than SNAPCACHE_ADAPT_MAX_AGE_MS starts afresh.
 * Returns 0, or -1 for a sample that carries nothing (no time).
 */
int snapcache_adapt_sample(snapcache_adapt_link_t *link,
    const snapcache_adapt_sample_t *sample, int64_t now_ms);

/* The estimate in kbit/s, or 0 when there is none or it aged out. */
uint32_t snapcache_adapt_link_kbps(const snapcache_adapt_link_t *link,
    int64_t now_ms);


/*
 * Client hints as a prior: ECT, Downlink (Mbit/s) and RTT (ms) header
 * values, each may be NULL.  Downlink 10 with RTT 0 is Chromium saying it
 * knows nothing, and ECT 4g says only "better than 3g": both are
 * unknown.  Returns 1 with *kbps (and *rtt_ms, 0 when unknown) set, or
 * 0 when the hints tell nothing.
 */
int snapcache_adapt_hints(const char *ect, size_t ect_len,
    const char *downlink, size_t downlink_len, const char *rtt,
    size_t rtt_len, uint32_t *kbps, uint32_t *rtt_ms);


/* ------------------------------------------------------------ sizes */

typedef struct {
    uint32_t  width;
    uint32_t  quality;
    uint64_t  bytes;          /* learned size, 0: unknown */
    double    weight;         /* snapcache_adapt_weight(width, quality),
                                 worked out once; 0: worked out here */
} snapcache_adapt_rung_t;


/* How a rung's bytes scale with its width and quality: for sizes(). */
double snapcache_adapt_weight(uint32_t width, uint32_t quality);


/*
 * Fills in the sizes not learned yet: scaled from the nearest learned
 * rung by width^1.7 (JPEG bytes grow slower than pixels) and by quality,
 * or, when none is known, from a typical photograph's bits per pixel.
 */
void snapcache_adapt_sizes(snapcache_adapt_rung_t *rungs, unsigned n);

/*
 * Predicted time to last byte: 2 RTTs, then the bytes at 0.9 x the rate.
 * UINT64_MAX, which fits no budget, for no rate or a time too long for
 * 64 bits.
 */
uint64_t snapcache_adapt_predict_ms(uint64_t bytes, uint32_t kbps,
    uint32_t rtt_ms);


/* ------------------------------------------------------------ choice */

typedef enum {
    SNAPCACHE_ADAPT_OFF = 0,       /* adaptation is off: the ceiling */
    SNAPCACHE_ADAPT_PINNED,        /* the ceiling is the lowest rung */
    SNAPCACHE_ADAPT_UNKNOWN,       /* no history, no hints: the ceiling */
    SNAPCACHE_ADAPT_CEILING,       /* the link allows the ceiling */
    SNAPCACHE_ADAPT_SAVE_DATA,     /* the link allows Save-Data's cap */
    SNAPCACHE_ADAPT_LINK,          /* below the ceiling: the link */
    SNAPCACHE_ADAPT_HOLD,          /* below: not yet back up (hysteresis) */
    SNAPCACHE_ADAPT_HINT,          /* from client hints, no history yet */
    SNAPCACHE_ADAPT_NREASONS
} snapcache_adapt_reason_e;


/* What the caller keeps per client between choices; see the rule above. */
typedef struct {
    int       rung;           /* last rung chosen by the link, or NONE */
    uint32_t  kbps;           /* the estimate when it last changed */
    uint32_t  since;          /* choices since it last changed */
    uint32_t  rose;           /* that change was a step up */
} snapcache_adapt_hold_t;


typedef struct {
    unsigned                 nrungs;
    const uint64_t          *bytes;      /* expected size of each rung */
    int                      ceiling;
    int                      save_data;  /* Save-Data lowered the ceiling */
    uint32_t                 kbps;       /* 0: nothing known */
    uint32_t                 rtt_ms;
    int                      from_hints;
    int                      careful;    /* the link just collapsed, or
                                            lost packets: keep headroom */
    uint32_t                 budget_ms;
    uint64_t                 queued_bytes; /* bytes of earlier responses
                                              to this client not yet
                                              delivered, across its
                                              connections or streams */
    unsigned                 queued;       /* how many responses those are */
    unsigned                 together;     /* responses this client asks
                                              for at once (a wall of
                                              tiles); 0 or 1: this one */
} snapcache_adapt_input_t;


typedef struct {
    unsigned                 index;
    snapcache_adapt_reason_e reason;
} snapcache_adapt_choice_t;


/*
 * The rung to serve, never above the ceiling, and the reason.  hold is
 * read and updated; it is left alone when nothing was measured.
 * Returns -1 only for an empty ladder or a ceiling off the ladder.
 */
int snapcache_adapt_choose(const snapcache_adapt_input_t *in,
    snapcache_adapt_hold_t *hold, snapcache_adapt_choice_t *choice);

/* "off", "pinned", "unknown", "ceiling", "save-data", "link", "hold" ... */
const char *snapcache_adapt_reason_name(snapcache_adapt_reason_e reason);


/* ------------------------------------------------------------ format */

/*
 * Picks the output format (a snapcache_format_e) from an Accept header
 * value (may be NULL) and the formats allowed, as SNAPCACHE_FORMAT_BIT
 * bits (the variant's, as far as the build can encode them): AVIF, then
 * WebP, when the client lists it with a non-zero q and it is allowed;
 * else JPEG.
 */
unsigned snapcache_adapt_format(const char *accept, size_t len,
    unsigned allowed);

#endif /* SNAPCACHE_ADAPT_H */
