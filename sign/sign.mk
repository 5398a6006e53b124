# SPDX-License-Identifier: BSD-2-Clause
# sign/: the signed-URL scheme
# every C file here; `config` builds the same list for the module
SIGN_SRCS  := $(wildcard sign/*.c)

LIB_SRCS   += $(SIGN_SRCS)
LIB_HDRS   += $(wildcard sign/*.h)
CLI_DEPS   += $(SIGN_SRCS)

UNIT_TESTS += test_sign
test_sign_DEPS := $(SIGN_SRCS)

FUZZ       += fuzz_url_verify
fuzz_url_verify_DEPS := $(SIGN_SRCS)
