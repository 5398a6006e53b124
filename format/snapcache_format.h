
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache image formats: the one vocabulary that cache/, transcode/,
 * adapt/, the tools and the nginx module share.  A format code is the
 * record's and the key's format byte, the transcoder's input and output
 * format, and, as SNAPCACHE_FORMAT_BIT(code), a bit of a set of formats.
 * Header only, with no dependency, so that every library can include it
 * without reaching into another.
 */

#ifndef SNAPCACHE_FORMAT_H
#define SNAPCACHE_FORMAT_H


typedef enum {
    SNAPCACHE_FORMAT_ANY = 0,          /* key of a kept original */
    SNAPCACHE_FORMAT_JPEG = 1,
    SNAPCACHE_FORMAT_PNG = 2,
    SNAPCACHE_FORMAT_WEBP = 3,
    SNAPCACHE_FORMAT_AVIF = 4,
    SNAPCACHE_FORMAT_NCODES            /* keep last of the image formats */
} snapcache_format_e;

/*
 * Not an image: a negative record, which says that the origin answered
 * 404 for the snapshot.  It has an empty body and is stored under the
 * kept original's key.
 */
#define SNAPCACHE_FORMAT_ABSENT    255

#define SNAPCACHE_FORMAT_BIT(f)    (1u << (f))


_Static_assert(SNAPCACHE_FORMAT_NCODES <= 32,
               "a set of formats is the bits of an unsigned");
_Static_assert(SNAPCACHE_FORMAT_ABSENT >= SNAPCACHE_FORMAT_NCODES
               && SNAPCACHE_FORMAT_ABSENT <= 0xff,
               "the negative record's code is one byte, and no image's");


/* "jpeg", "png", "webp", "avif", "any", "absent"; NULL if unknown. */
static inline const char *
snapcache_format_name(unsigned f)
{
    static const char  *names[SNAPCACHE_FORMAT_NCODES] = {
        "any", "jpeg", "png", "webp", "avif"
    };

    if (f == SNAPCACHE_FORMAT_ABSENT) {
        return "absent";
    }

    return f < SNAPCACHE_FORMAT_NCODES ? names[f] : NULL;
}


/* The Content-Type of an image format; NULL for ANY, ABSENT, unknown. */
static inline const char *
snapcache_format_mime(unsigned f)
{
    static const char  *types[SNAPCACHE_FORMAT_NCODES] = {
        NULL, "image/jpeg", "image/png", "image/webp", "image/avif"
    };

    return f < SNAPCACHE_FORMAT_NCODES ? types[f] : NULL;
}


#endif /* SNAPCACHE_FORMAT_H */
