# SPDX-License-Identifier: BSD-2-Clause
# transcode/: the libvips variant pipeline
# every C file here; `config` builds the same list for the module
TRANSCODE_SRCS := $(wildcard transcode/*.c)

LIB_SRCS   += $(TRANSCODE_SRCS)
LIB_HDRS   += $(wildcard transcode/*.h)

FUZZ       += fuzz_transcode
fuzz_transcode_DEPS := $(TRANSCODE_SRCS)

BENCHES    += $(B)/bin/bench_transcode
bench_transcode_MAIN := bench/bench_transcode.c
bench_transcode_DEPS := $(TRANSCODE_SRCS)

# ours against vipsthumbnail, image_filter and the in-process limit
.PHONY: bench-transcode
bench-transcode: build $(B)/bin/bench_transcode
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_transcode.sh

UNIT_TESTS += test_transcode
test_transcode_DEPS := $(TRANSCODE_SRCS) t/lib/owner_marker.c
