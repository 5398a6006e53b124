# SPDX-License-Identifier: BSD-2-Clause
# adapt/: variant and format choice (pure functions)
# every C file here; `config` builds the same list for the module
ADAPT_SRCS := $(wildcard adapt/*.c)

LIB_SRCS   += $(ADAPT_SRCS)
LIB_HDRS   += $(wildcard adapt/*.h)

UNIT_TESTS += test_adapt
test_adapt_DEPS := $(ADAPT_SRCS)
