# cache/: the LMDB snapshot store
LIB_SRCS   += cache/snapcache_cache.c
LIB_HDRS   += cache/snapcache_cache.h
CLI_DEPS   += cache/snapcache_cache.c

UNIT_TESTS += test_cache
test_cache_DEPS := cache/snapcache_cache.c
