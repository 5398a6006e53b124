# SPDX-License-Identifier: BSD-2-Clause
# hmac/: keyed HMAC-SHA256 on EVP_MAC, for sign/ and cache/ (header only)
LIB_HDRS   += hmac/snapcache_hmac.h
