# SPDX-License-Identifier: BSD-2-Clause
# sign/: the signed-URL scheme
LIB_SRCS   += sign/snapcache_sign.c
LIB_HDRS   += sign/snapcache_sign.h
CLI_DEPS   += sign/snapcache_sign.c

UNIT_TESTS += test_sign
test_sign_DEPS := sign/snapcache_sign.c

FUZZ       += fuzz_url_verify
fuzz_url_verify_DEPS := sign/snapcache_sign.c
