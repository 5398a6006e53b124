# cache/: the LMDB snapshot store
LIB_SRCS   += cache/snapcache_cache.c
LIB_HDRS   += cache/snapcache_cache.h
CLI_DEPS   += cache/snapcache_cache.c

UNIT_TESTS += test_cache
test_cache_DEPS := cache/snapcache_cache.c

FUZZ       += fuzz_record
fuzz_record_DEPS := cache/snapcache_cache.c

BENCHES    += $(B)/bin/bench_store
bench_store_MAIN := bench/bench_store.c
bench_store_DEPS := cache/snapcache_cache.c

# get against the raw mdb_get floor, batched put and purge, at 10k and
# 1M records of 25 KB (the 1M store needs about 40 GB of disk)
.PHONY: bench-store
bench-store: deps build $(B)/bin/bench_store
	$(B)/bin/bench_store $(B)/bench-store $(BENCH_STORE_RECORDS)
