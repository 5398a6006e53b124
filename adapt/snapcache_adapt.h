/*
 * snapcache adaptive quality: the whole interface of adapt/.
 *
 * Pure functions that choose which rung of the variant ladder, and which
 * output format, to serve.  They are given rung indexes and client
 * signals only, never an account, device or snapshot id, so adaptation
 * cannot change whose image is served: it only picks among the variants
 * of the one verified snapshot.
 */

#ifndef SNAPCACHE_ADAPT_H
#define SNAPCACHE_ADAPT_H

#include <stddef.h>

#include "format/snapcache_format.h"


#define SNAPCACHE_ADAPT_NONE     -1


typedef struct {
    unsigned  nvariants;      /* ladder length, smallest first */
    int       explicit_v;     /* v= index, or SNAPCACHE_ADAPT_NONE */
    int       max;            /* signed max= index, or SNAPCACHE_ADAPT_NONE */
    int       def;            /* snapcache_default_variant index */
    int       save_data;      /* "Save-Data: on" */
} snapcache_adapt_request_t;


typedef struct {
    unsigned  index;          /* the rung to serve */
    int       adaptive;       /* 0 when v= fixed the choice */
} snapcache_adapt_choice_t;


/*
 * v= wins (adaptation off); otherwise Save-Data caps at the second-lowest
 * rung; otherwise the default.  The result never exceeds max and is
 * always a valid index.  Returns -1 only for an empty ladder or an
 * explicit v above max, which the caller must already have refused.
 */
int snapcache_adapt_choose(const snapcache_adapt_request_t *req,
    snapcache_adapt_choice_t *choice);

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
