
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * Minimal TAP producer for the C unit tests, so that prove runs them
 * next to the nginx end-to-end tests.  Header-only on purpose: each test
 * is one translation unit and links nothing extra.
 */

#ifndef SNAPCACHE_TAP_H
#define SNAPCACHE_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int  tap_run;
static int  tap_failed;

static inline int
tap_okv(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    char  name[512], *p;

    tap_run++;

    vsnprintf(name, sizeof(name), fmt, ap);

    for (p = name; *p; p++) {
        if (*p == '\n' || *p == '#') {
            *p = ' ';
        }
    }

    printf("%s %d - %s\n", pass ? "ok" : "not ok", tap_run, name);

    if (!pass) {
        tap_failed++;
        printf("#   Failed test at %s line %d\n", file, line);
    }

    fflush(stdout);
    return pass;
}

static inline int
tap_ok_at(int pass, const char *file, int line, const char *fmt, ...)
{
    int      rc;
    va_list  ap;

    va_start(ap, fmt);
    rc = tap_okv(pass, file, line, fmt, ap);
    va_end(ap);

    return rc;
}

static inline void
tap_diag(const char *fmt, ...)
{
    va_list  ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static inline int
tap_done(void)
{
    printf("1..%d\n", tap_run);
    fflush(stdout);
    return tap_failed ? 1 : 0;
}

static inline void
tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fflush(stdout);
    exit(0);
}

#define ok(pass, ...)  tap_ok_at(!!(pass), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                               \
    do {                                                                     \
        long long  got_ = (long long) (got), want_ = (long long) (want);     \
        if (!tap_ok_at(got_ == want_, __FILE__, __LINE__, __VA_ARGS__)) {    \
            tap_diag("  got: %lld, expected: %lld", got_, want_);            \
        }                                                                    \
    } while (0)

#define is_str(got, want, ...)                                               \
    do {                                                                     \
        const char  *got_ = (got), *want_ = (want);                          \
        int  same_ = got_ && want_ && strcmp(got_, want_) == 0;              \
        if (!tap_ok_at(same_, __FILE__, __LINE__, __VA_ARGS__)) {            \
            tap_diag("  got: '%s', expected: '%s'",                          \
                     got_ ? got_ : "(null)", want_ ? want_ : "(null)");      \
        }                                                                    \
    } while (0)

#define diag  tap_diag
#define done_testing()  tap_done()
#define skip_all  tap_skip_all

#endif /* SNAPCACHE_TAP_H */
