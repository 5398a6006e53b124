# SPDX-License-Identifier: BSD-2-Clause
# t/lib: owner-marker images and the snapmark tool
LIB_HDRS   += t/lib/owner_marker.h
EXTRA_BINS += $(B)/bin/snapmark
snapmark_MAIN := t/lib/snapmark.c
snapmark_DEPS := t/lib/owner_marker.c
EXTRA_BINS += $(B)/bin/snapdamage
snapdamage_MAIN := t/lib/snapdamage.c
snapdamage_DEPS :=
