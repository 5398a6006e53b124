# SPDX-License-Identifier: BSD-2-Clause
# transcode/: the libvips variant pipeline
LIB_SRCS   += transcode/snapcache_transcode.c
LIB_HDRS   += transcode/snapcache_transcode.h

FUZZ       += fuzz_transcode
fuzz_transcode_DEPS := transcode/snapcache_transcode.c

BENCHES    += $(B)/bin/bench_transcode
bench_transcode_MAIN := bench/bench_transcode.c
bench_transcode_DEPS := transcode/snapcache_transcode.c

# ours against vipsthumbnail, image_filter and the in-process limit
.PHONY: bench-transcode
bench-transcode: deps-bench build $(B)/bin/bench_transcode
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_transcode.sh

UNIT_TESTS += test_transcode
test_transcode_DEPS := transcode/snapcache_transcode.c t/lib/owner_marker.c
