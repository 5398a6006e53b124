# SPDX-License-Identifier: BSD-2-Clause
# cache/: the LMDB snapshot store
CACHE_SRCS := cache/snapcache_crc32c.c cache/snapcache_record.c \
              cache/snapcache_keys.c cache/snapcache_store.c \
              cache/snapcache_evict.c cache/snapcache_walk.c

LIB_SRCS   += $(CACHE_SRCS)
LIB_HDRS   += cache/snapcache_cache.h cache/snapcache_cache_int.h
CLI_DEPS   += $(CACHE_SRCS)

UNIT_TESTS += test_cache
test_cache_DEPS := $(CACHE_SRCS)

FUZZ       += fuzz_record
fuzz_record_DEPS := $(CACHE_SRCS)

BENCHES    += $(B)/bin/bench_store
bench_store_MAIN := bench/bench_store.c
bench_store_DEPS := $(CACHE_SRCS)

# a test helper: a store of n small records, for the inspect tests
EXTRA_BINS += $(B)/bin/snapfill
snapfill_MAIN := t/lib/snapfill.c
snapfill_DEPS := $(CACHE_SRCS)

# get against the raw mdb_get floor, batched put and purge, at 10k and
# 1M records of 25 KB (the 1M store needs about 40 GB of disk)
.PHONY: bench-store
bench-store: deps build $(B)/bin/bench_store
	$(B)/bin/bench_store $(B)/bench-store $(BENCH_STORE_RECORDS)
