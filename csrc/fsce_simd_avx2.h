/*
 * fsce_simd_avx2.h -- the vector vocabulary of fsce_simd.h with AVX2 + FMA
 * intrinsics: 8 float32 or 4 float64 lanes, masks as all-ones lanes.
 * Included by fsce_rows_avx2.c only, whose functions are all compiled for
 * AVX2 + FMA and run only after the CPU said it has both.
 */
#include <immintrin.h>

#include "fsce_simd.h"

#define FSCE_F32_LANES 8
#define FSCE_F64_LANES 4
#define FSCE_EXP_ONE_STEP_REDUCTION 1 /* FMA: the exp's r = t - n ln2 in one rounding */

typedef __m256 f32v;
typedef __m256d f64v;
typedef __m256 f32m;
typedef __m256d f64m;
typedef struct { __m256d lo, hi; } acc64;

FSCE_INLINE f32v f32_splat(float s) { return _mm256_set1_ps(s + 0.0f); }
FSCE_INLINE f64v f64_splat(double s) { return _mm256_set1_pd(s + 0.0); }
FSCE_INLINE f32v f32_load(const float *p) { return _mm256_loadu_ps(p); }
FSCE_INLINE f64v f64_load(const double *p) { return _mm256_loadu_pd(p); }
FSCE_INLINE void f32_store(float *p, f32v v) { _mm256_storeu_ps(p, v); }
FSCE_INLINE void f64_store(double *p, f64v v) { _mm256_storeu_pd(p, v); }
/* lane i = p[i * stride] (built in registers: a vector load right after scalar stores
   would stall on store forwarding) */
FSCE_INLINE f32v f32_gather(const float *p, ptrdiff_t s)
{
    return _mm256_setr_ps(p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s]);
}
FSCE_INLINE f64v f64_gather(const double *p, ptrdiff_t s) { return _mm256_setr_pd(p[0], p[s], p[2 * s], p[3 * s]); }
/* 8 x 8: rows interleaved in pairs (lanes 2k, 2k+1 of each 128-bit half), pairs of
   pairs (a column's 4 rows per half), then the halves of rows 0-3 and 4-7 joined */
FSCE_INLINE void f32_transpose(f32v v[8])
{
    __m256 pair[8], quad[8];
    for (int i = 0; i < 8; i += 2) {
        pair[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        pair[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        quad[i] = _mm256_shuffle_ps(pair[i], pair[i + 2], 0x44);
        quad[i + 1] = _mm256_shuffle_ps(pair[i], pair[i + 2], 0xEE);
        quad[i + 2] = _mm256_shuffle_ps(pair[i + 1], pair[i + 3], 0x44);
        quad[i + 3] = _mm256_shuffle_ps(pair[i + 1], pair[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_permute2f128_ps(quad[j], quad[j + 4], 0x20);
        v[j + 4] = _mm256_permute2f128_ps(quad[j], quad[j + 4], 0x31);
    }
}
/* 4 x 4: rows interleaved in pairs, then the 128-bit halves joined */
FSCE_INLINE void f64_transpose(f64v v[4])
{
    const __m256d p0 = _mm256_unpacklo_pd(v[0], v[1]), p1 = _mm256_unpackhi_pd(v[0], v[1]);
    const __m256d p2 = _mm256_unpacklo_pd(v[2], v[3]), p3 = _mm256_unpackhi_pd(v[2], v[3]);
    v[0] = _mm256_permute2f128_pd(p0, p2, 0x20);
    v[1] = _mm256_permute2f128_pd(p1, p3, 0x20);
    v[2] = _mm256_permute2f128_pd(p0, p2, 0x31);
    v[3] = _mm256_permute2f128_pd(p1, p3, 0x31);
}

FSCE_INLINE f32v f32_add(f32v a, f32v b) { return _mm256_add_ps(a, b); }
FSCE_INLINE f64v f64_add(f64v a, f64v b) { return _mm256_add_pd(a, b); }
FSCE_INLINE f32v f32_sub(f32v a, f32v b) { return _mm256_sub_ps(a, b); }
FSCE_INLINE f64v f64_sub(f64v a, f64v b) { return _mm256_sub_pd(a, b); }
FSCE_INLINE f32v f32_mul(f32v a, f32v b) { return _mm256_mul_ps(a, b); }
FSCE_INLINE f64v f64_mul(f64v a, f64v b) { return _mm256_mul_pd(a, b); }
FSCE_INLINE f64v f64_div(f64v a, f64v b) { return _mm256_div_pd(a, b); }
FSCE_INLINE f32v f32_neg_mul_add(f32v a, f32v b, f32v c) { return _mm256_fnmadd_ps(a, b, c); }
FSCE_INLINE f64v f64_neg_mul_add(f64v a, f64v b, f64v c) { return _mm256_fnmadd_pd(a, b, c); }
FSCE_INLINE f32v f32_mul_sub(f32v a, f32v b, f32v c) { return _mm256_fmsub_ps(a, b, c); }
FSCE_INLINE f64v f64_mul_sub(f64v a, f64v b, f64v c) { return _mm256_fmsub_pd(a, b, c); }
FSCE_INLINE f32v f32_max(f32v a, f32v b) { return _mm256_max_ps(a, b); }
FSCE_INLINE f64v f64_max(f64v a, f64v b) { return _mm256_max_pd(a, b); }

FSCE_INLINE f32m f32_lt(f32v a, f32v b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
FSCE_INLINE f64m f64_lt(f64v a, f64v b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
FSCE_INLINE f32m f32_gt(f32v a, f32v b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
FSCE_INLINE f64m f64_gt(f64v a, f64v b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
FSCE_INLINE f32m f32_ge(f32v a, f32v b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
FSCE_INLINE f64m f64_ge(f64v a, f64v b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
FSCE_INLINE f32m f32_eq(f32v a, f32v b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
FSCE_INLINE f64m f64_eq(f64v a, f64v b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
FSCE_INLINE f32m f32_ne(f32v a, f32v b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
FSCE_INLINE f64m f64_ne(f64v a, f64v b) { return _mm256_cmp_pd(a, b, _CMP_NEQ_UQ); }
FSCE_INLINE f32v f32_select(f32m m, f32v a, f32v b) { return _mm256_blendv_ps(b, a, m); }
FSCE_INLINE f64v f64_select(f64m m, f64v a, f64v b) { return _mm256_blendv_pd(b, a, m); }
FSCE_INLINE f32m f32_mask_or(f32m m, f32m n) { return _mm256_or_ps(m, n); }
FSCE_INLINE f64m f64_mask_or(f64m m, f64m n) { return _mm256_or_pd(m, n); }
FSCE_INLINE int f32_mask_any(f32m m) { return _mm256_movemask_ps(m) != 0; }
FSCE_INLINE int f64_mask_any(f64m m) { return _mm256_movemask_pd(m) != 0; }

/* masked loads and stores: lanes i < r */
FSCE_INLINE __m256i fsce_avx2_tail_mask32(ptrdiff_t r)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
FSCE_INLINE __m256i fsce_avx2_tail_mask64(ptrdiff_t r)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)r), _mm256_setr_epi64x(0, 1, 2, 3));
}
FSCE_INLINE f32v f32_load_tail(const float *p, ptrdiff_t r, float pad)
{
    const __m256i mask = fsce_avx2_tail_mask32(r);
    return _mm256_blendv_ps(_mm256_set1_ps(pad), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
}
FSCE_INLINE f64v f64_load_tail(const double *p, ptrdiff_t r, double pad)
{
    const __m256i mask = fsce_avx2_tail_mask64(r);
    return _mm256_blendv_pd(_mm256_set1_pd(pad), _mm256_maskload_pd(p, mask), _mm256_castsi256_pd(mask));
}
FSCE_INLINE void f32_store_tail(float *p, ptrdiff_t r, f32v v) { _mm256_maskstore_ps(p, fsce_avx2_tail_mask32(r), v); }
FSCE_INLINE void f64_store_tail(double *p, ptrdiff_t r, f64v v) { _mm256_maskstore_pd(p, fsce_avx2_tail_mask64(r), v); }

/* largest lane: halves combined, max(lane i, lane i + width) */
FSCE_INLINE float f32_lanes_max(f32v v)
{
    __m128 half = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_max_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_max_ss(half, _mm_shuffle_ps(half, half, 1)));
}
FSCE_INLINE double f64_lanes_max(f64v v)
{
    const __m128d half = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(half, _mm_unpackhi_pd(half, half)));
}

/* the exp's ends (fsce_rows_impl.h): t raised to `clamp`, then 2**n p with 2**n built in
   the exponent field from the bits of k (k's bits - offset = n + the exponent bias), 0
   where t < lo or t is NaN */
FSCE_INLINE f32v f32_exp_clamp(f32v t, float clamp) { return _mm256_max_ps(_mm256_set1_ps(clamp), t); }
FSCE_INLINE f64v f64_exp_clamp(f64v t, double clamp) { return _mm256_max_pd(_mm256_set1_pd(clamp), t); }
FSCE_INLINE f32v f32_exp_scale(f32v t, f32v p, f32v k, f32v n, float lo, int32_t offset)
{
    (void)n;
    const __m256i biased = _mm256_sub_epi32(_mm256_castps_si256(k), _mm256_set1_epi32(offset));
    const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(t, _mm256_set1_ps(lo), _CMP_GE_OQ));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(keep, biased), 23)));
}
FSCE_INLINE f64v f64_exp_scale(f64v t, f64v p, f64v k, f64v n, double lo, int64_t offset)
{
    (void)n;
    const __m256i biased = _mm256_sub_epi64(_mm256_castpd_si256(k), _mm256_set1_epi64x(offset));
    const __m256i keep = _mm256_castpd_si256(_mm256_cmp_pd(t, _mm256_set1_pd(lo), _CMP_GE_OQ));
    return _mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_and_si256(keep, biased), 52)));
}

/* the float64 accumulator: lo holds lanes 0-3, hi lanes 4-7 of float32 vectors */
FSCE_INLINE acc64 acc_zero(void)
{
    acc64 acc = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    return acc;
}
FSCE_INLINE void f32_acc_add(acc64 *acc, f32v v)
{
    acc->lo = _mm256_add_pd(acc->lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc->hi = _mm256_add_pd(acc->hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
FSCE_INLINE void f64_acc_add(acc64 *acc, f64v v) { acc->lo = _mm256_add_pd(acc->lo, v); }
FSCE_INLINE double acc_total(acc64 acc)
{
    const __m256d v = _mm256_add_pd(acc.lo, acc.hi);
    const __m128d half = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)));
}
FSCE_INLINE void acc_lanes(acc64 acc, double *lanes, ptrdiff_t n_lanes)
{
    _mm256_storeu_pd(lanes, acc.lo);
    if (n_lanes > FSCE_F64_LANES) _mm256_storeu_pd(lanes + FSCE_F64_LANES, acc.hi);
}

/* 16-bit floats, 8 at a time (RNE narrowing, NaN made quiet: the bits of fsce_half.h);
   float16 needs F16C, which fsce_init checks apart from AVX2 */
FSCE_INLINE f32v f32_load_bf16(const uint16_t *p)
{
    /* the 8 values in both 128-bit lanes (a plain load), then one in-lane byte shuffle moves
       lane 0's first 4 and lane 1's last 4 to the high halves of their 32-bit slots (-1: a
       zero byte): one vector operation where a widening and a shift take two */
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    const __m256i to_high = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,
                                             -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
    return _mm256_castsi256_ps(_mm256_shuffle_epi8(both, to_high));
}
FSCE_INLINE void f32_store_bf16(uint16_t *p, f32v v)
{
    const __m256i u = _mm256_castps_si256(v), low_bit = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), low_bit));
    const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    /* each 32-bit slot's high half, a lane's 4 into its low 8 bytes, the lanes' low 8 bytes joined */
    const __m256i from_high = _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1,
                                               2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i halves = _mm256_shuffle_epi8(_mm256_blendv_epi8(rounded, quiet, nan), from_high);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(_mm256_permute4x64_epi64(halves, 0x08)));
}
FSCE_INLINE f32v f32_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
FSCE_INLINE void f32_store_f16(uint16_t *p, f32v v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
