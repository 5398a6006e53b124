# SPDX-License-Identifier: BSD-2-Clause
# adapt/: variant and format choice (pure functions)
LIB_SRCS   += adapt/snapcache_adapt.c
LIB_HDRS   += adapt/snapcache_adapt.h

UNIT_TESTS += test_adapt
test_adapt_DEPS := adapt/snapcache_adapt.c
