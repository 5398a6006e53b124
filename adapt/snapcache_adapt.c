/*
 * snapcache adaptive quality.  See snapcache_adapt.h.
 */

#include <string.h>

#include "adapt/snapcache_adapt.h"


static int
min_int(int a, int b)
{
    return a < b ? a : b;
}


int
snapcache_adapt_choose(const snapcache_adapt_request_t *req,
    snapcache_adapt_choice_t *choice)
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

        choice->index = (unsigned) req->explicit_v;
        choice->adaptive = 0;
        return 0;
    }

    pick = req->def < 0 ? 0 : min_int(req->def, top);

    if (req->save_data) {
        pick = min_int(pick, req->nvariants > 1 ? 1 : 0);
    }

    choice->index = (unsigned) pick;
    choice->adaptive = 1;

    return 0;
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
