# SPDX-License-Identifier: BSD-2-Clause
# format/: the image-format vocabulary every library shares (header only)
LIB_HDRS   += format/snapcache_format.h
