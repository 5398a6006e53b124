
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * CRC32C (Castagnoli), the checksum of record bodies and headers: by
 * carry-less multiplication over 512-bit registers (VPCLMULQDQ) where the
 * CPU has AVX-512, with the SSE4.2 crc32 instruction in three interleaved
 * streams where it has that, slicing-by-8 tables elsewhere.  See
 * snapcache_cache_int.h.
 */

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "cache/snapcache_cache_int.h"


static uint32_t  crc32c_table[8][256];
static int       crc32c_ready;


static void
crc32c_init(void)
{
    int       k;
    uint32_t  i, c, j;

    for (i = 0; i < 256; i++) {
        c = i;

        for (j = 0; j < 8; j++) {
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78 : c >> 1;
        }

        crc32c_table[0][i] = c;
    }

    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            c = crc32c_table[k - 1][i];
            crc32c_table[k][i] = (c >> 8) ^ crc32c_table[0][c & 0xff];
        }
    }

    __atomic_store_n(&crc32c_ready, 1, __ATOMIC_RELEASE);
}


static uint32_t
crc32c_soft(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t  v;

    if (!__atomic_load_n(&crc32c_ready, __ATOMIC_ACQUIRE)) {
        crc32c_init();
    }

    while (len >= 8) {
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc32c_table[7][v & 0xff]
              ^ crc32c_table[6][(v >> 8) & 0xff]
              ^ crc32c_table[5][(v >> 16) & 0xff]
              ^ crc32c_table[4][(v >> 24) & 0xff]
              ^ crc32c_table[3][(v >> 32) & 0xff]
              ^ crc32c_table[2][(v >> 40) & 0xff]
              ^ crc32c_table[1][(v >> 48) & 0xff]
              ^ crc32c_table[0][v >> 56];
        p += 8;
        len -= 8;
    }

    while (len--) {
        crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
    }

    return crc;
}


#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#define CRC32C_HW      1
#define CRC32C_SIZES   6          /* blocks of 8192, 4096, ... 256 bytes */
#define CRC32C_LARGEST 8192

/*
 * The crc32 instruction has a latency of three cycles and a throughput
 * of one, so one stream runs at a third of its speed.  Three streams over
 * adjacent blocks run at full speed, and their registers are joined with
 * these tables, which move a register past a block of zeros.  Blocks come
 * in six sizes, taken largest first, so that a body of any size costs a
 * few joins rather than one per 768 bytes.
 */
static uint32_t  crc32c_tables[CRC32C_SIZES][4][256];
static int       crc32c_hw_ready;


__attribute__((target("sse4.2")))
static uint32_t
crc32c_zeros(uint32_t crc, size_t len)
{
    uint64_t  c;

    c = crc;

    while (len >= 8) {
        c = __builtin_ia32_crc32di(c, 0);
        len -= 8;
    }

    return (uint32_t) c;
}


__attribute__((target("sse4.2")))
static void
crc32c_zeros_table(uint32_t table[4][256], size_t len)
{
    int       k, b, bit;
    uint32_t  basis[32], v;

    for (bit = 0; bit < 32; bit++) {
        basis[bit] = crc32c_zeros((uint32_t) 1 << bit, len);
    }

    for (k = 0; k < 4; k++) {
        for (b = 0; b < 256; b++) {
            v = 0;

            for (bit = 0; bit < 8; bit++) {
                if (b & (1 << bit)) {
                    v ^= basis[8 * k + bit];
                }
            }

            table[k][b] = v;
        }
    }
}


static void
crc32c_hw_init(void)
{
    int  k;

    for (k = 0; k < CRC32C_SIZES; k++) {
        crc32c_zeros_table(crc32c_tables[k], CRC32C_LARGEST >> k);
    }

    __atomic_store_n(&crc32c_hw_ready, 1, __ATOMIC_RELEASE);
}


static uint32_t
crc32c_shift(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff]
           ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}


/*
 * One pass of three streams over 3 * block bytes.  With dst, each word
 * is stored where it was checksummed from the register, so the sum is
 * the copy's, read once from the map.
 */
__attribute__((target("sse4.2"), always_inline))
static inline uint32_t
crc32c_hw_blocks(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t block, uint32_t table[4][256])
{
    size_t    i;
    uint64_t  c0, c1, c2, v0, v1, v2;

    c0 = crc;
    c1 = 0;
    c2 = 0;

    for (i = 0; i < block; i += 8) {
        memcpy(&v0, src + i, 8);
        memcpy(&v1, src + block + i, 8);
        memcpy(&v2, src + 2 * block + i, 8);

        if (dst) {
            memcpy(dst + i, &v0, 8);
            memcpy(dst + block + i, &v1, 8);
            memcpy(dst + 2 * block + i, &v2, 8);
        }

        c0 = __builtin_ia32_crc32di(c0, v0);
        c1 = __builtin_ia32_crc32di(c1, v1);
        c2 = __builtin_ia32_crc32di(c2, v2);
    }

    crc = crc32c_shift(table, (uint32_t) c0) ^ (uint32_t) c1;

    return crc32c_shift(table, crc) ^ (uint32_t) c2;
}


__attribute__((target("sse4.2"), always_inline))
static inline uint32_t
crc32c_hw_run(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t len)
{
    int       k;
    size_t    block;
    uint64_t  v, c;

    if (!__atomic_load_n(&crc32c_hw_ready, __ATOMIC_ACQUIRE)) {
        crc32c_hw_init();
    }

    for (k = 0; k < CRC32C_SIZES; k++) {
        block = (size_t) CRC32C_LARGEST >> k;

        while (len >= 3 * block) {
            crc = crc32c_hw_blocks(crc, dst, src, block, crc32c_tables[k]);
            src += 3 * block;
            dst = dst ? dst + 3 * block : NULL;
            len -= 3 * block;
        }
    }

    c = crc;

    while (len >= 8) {
        memcpy(&v, src, 8);
        if (dst) {
            memcpy(dst, &v, 8);
            dst += 8;
        }

        c = __builtin_ia32_crc32di(c, v);
        src += 8;
        len -= 8;
    }

    crc = (uint32_t) c;

    while (len--) {
        if (dst) {
            *dst++ = *src;
        }

        crc = __builtin_ia32_crc32qi(crc, *src++);
    }

    return crc;
}


/*
 * Folding: the CRC of a long message is that of a short one whose blocks
 * are the earlier blocks multiplied (carry-less) by x^d mod P, d their
 * distance to the end, then added.  Sixteen 128-bit lanes in four 512-bit
 * registers fold 256 bytes a step, at a few bytes a cycle per lane; the
 * lanes are then folded into one, and the last 128 bits go through the
 * crc32 instruction.  The constants are x^(d+32) and x^(d-32) mod P,
 * bit-reflected and shifted left by one, for d of 2048, 512 and 128 bits.
 * With dst, every block is stored where it was loaded from the register,
 * so the sum is the copy's.  len must be at least 256.
 */
#define CRC32C_FOLD_MIN  512

__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))
static inline __m512i
crc32c_fold512(__m512i x, __m512i k)
{
    return _mm512_xor_si512(_mm512_clmulepi64_epi128(x, k, 0x00),
                            _mm512_clmulepi64_epi128(x, k, 0x11));
}


__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))
static inline __m128i
crc32c_fold128(__m128i x, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
                         _mm_clmulepi64_si128(x, k, 0x11));
}


__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))
static uint32_t
crc32c_fold(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t len)
{
    int             i;
    uint64_t        c;
    __m128i         x, k16;
    __m512i         z[4], d[4], k256, k64;

    k256 = _mm512_broadcast_i32x4(_mm_set_epi64x(0xb9e02b86LL,
                                                 0xdcb17aa4LL));
    k64 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x9e4addf8LL, 0x740eef02LL));
    k16 = _mm_set_epi64x(0x14cd00bd6LL, 0xf20c0dfeLL);

    for (i = 0; i < 4; i++) {
        z[i] = _mm512_loadu_si512(src + 64 * i);
        if (dst) {
            _mm512_storeu_si512(dst + 64 * i, z[i]);
        }
    }

    z[0] = _mm512_xor_si512(z[0],
                            _mm512_castsi128_si512(_mm_cvtsi32_si128(
                                (int) crc)));
    src += 256;
    dst = dst ? dst + 256 : NULL;
    len -= 256;

    while (len >= 256) {
        for (i = 0; i < 4; i++) {
            d[i] = _mm512_loadu_si512(src + 64 * i);
            if (dst) {
                _mm512_storeu_si512(dst + 64 * i, d[i]);
            }
        }

        for (i = 0; i < 4; i++) {
            z[i] = _mm512_xor_si512(crc32c_fold512(z[i], k256), d[i]);
        }

        src += 256;
        dst = dst ? dst + 256 : NULL;
        len -= 256;
    }

    for (i = 1; i < 4; i++) {
        z[i] = _mm512_xor_si512(crc32c_fold512(z[i - 1], k64), z[i]);
    }

    x = _mm512_extracti32x4_epi32(z[3], 0);
    x = _mm_xor_si128(crc32c_fold128(x, k16),
                      _mm512_extracti32x4_epi32(z[3], 1));
    x = _mm_xor_si128(crc32c_fold128(x, k16),
                      _mm512_extracti32x4_epi32(z[3], 2));
    x = _mm_xor_si128(crc32c_fold128(x, k16),
                      _mm512_extracti32x4_epi32(z[3], 3));

    while (len >= 16) {
        __m128i  v;

        v = _mm_loadu_si128((const __m128i *) src);
        if (dst) {
            _mm_storeu_si128((__m128i *) dst, v);
            dst += 16;
        }

        x = _mm_xor_si128(crc32c_fold128(x, k16), v);
        src += 16;
        len -= 16;
    }

    c = _mm_crc32_u64(0, (uint64_t) _mm_cvtsi128_si64(x));
    c = _mm_crc32_u64(c, (uint64_t) _mm_extract_epi64(x, 1));
    crc = (uint32_t) c;

    while (len--) {
        if (dst) {
            *dst++ = *src;
        }

        crc = _mm_crc32_u8(crc, *src++);
    }

    return crc;
}


static int
crc32c_can_fold(void)
{
    static int  can = -1;

    if (can < 0) {
        can = __builtin_cpu_supports("avx512f")
              && __builtin_cpu_supports("avx512vl")
              && __builtin_cpu_supports("vpclmulqdq")
              && __builtin_cpu_supports("pclmul");
    }

    return can;
}


__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    if (len >= CRC32C_FOLD_MIN && crc32c_can_fold()) {
        return crc32c_fold(crc, NULL, p, len);
    }

    return crc32c_hw_run(crc, NULL, p, len);
}


__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw_copy(uint32_t crc, unsigned char *dst, const unsigned char *src,
    size_t len)
{
    if (len >= CRC32C_FOLD_MIN && crc32c_can_fold()) {
        return crc32c_fold(crc, dst, src, len);
    }

    return crc32c_hw_run(crc, dst, src, len);
}

#endif


/* CRC32C (Castagnoli), with SSE4.2 when the CPU has it. */
uint32_t
snapcache_cache_checksum(const void *data, size_t len)
{
    uint32_t  crc;

    crc = 0xffffffff;

#ifdef CRC32C_HW
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hw(crc, data, len) ^ 0xffffffff;
    }
#endif

    return crc32c_soft(crc, data, len) ^ 0xffffffff;
}


/*
 * Copies len bytes and returns the CRC32C of what was written, reading
 * the source once: get's copy out of the map and its check in one pass.
 */
uint32_t
snapcache_crc32c_copy(void *dst, const void *src, size_t len)
{
#ifdef CRC32C_HW
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hw_copy(0xffffffff, dst, src, len) ^ 0xffffffff;
    }
#endif

    memcpy(dst, src, len);

    return snapcache_cache_checksum(dst, len);
}
