# SPDX-License-Identifier: BSD-2-Clause
# cache/: the LMDB snapshot store
# every C file here; `config` builds the same list for the module
CACHE_SRCS := $(wildcard cache/*.c)

LIB_SRCS   += $(CACHE_SRCS)
LIB_HDRS   += $(wildcard cache/*.h)
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
bench-store: build $(B)/bin/bench_store
	$(B)/bin/bench_store $(B)/bench-store $(BENCH_STORE_RECORDS)
