/*
 * adapt/: the variant choice stays inside [0, max] for every input, v=
 * turns adaptation off, Save-Data caps, and the Accept parser is strict
 * about q=0.
 */

#include <string.h>

#include "adapt/snapcache_adapt.h"
#include "t/unit/tap.h"


static void
test_exhaustive(void)
{
    int                        n, v, max, def, sd, rc, bad, want;
    unsigned                   count;
    snapcache_adapt_choice_t   c;
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

                        rc = snapcache_adapt_choose(&req, &c);
                        count++;

                        if (v != -1 && v > top) {
                            bad += (rc != -1);
                            continue;
                        }

                        if (v != -1) {
                            want = v;
                        } else {
                            want = def < top ? def : top;
                            if (sd && want > 1) {
                                want = 1;
                            }
                        }

                        if (rc != 0 || (int) c.index != want
                            || (int) c.index > top
                            || c.adaptive != (v == -1))
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

    is_int(bad, 0, "every input of %u gives the expected rung, never above "
           "max", count);

    req.nvariants = 0;
    req.explicit_v = -1;
    req.max = -1;
    req.def = 0;
    req.save_data = 0;
    is_int(snapcache_adapt_choose(&req, &c), -1, "an empty ladder is refused");
}


static size_t
len_of(const char *s)
{
    return s ? strlen(s) : 0;
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
    test_exhaustive();
    test_format();

    return done_testing();
}
