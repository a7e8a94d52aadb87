/*
 * fsce_simd_sse2.h -- the vector vocabulary of fsce_simd.h with SSE2
 * intrinsics, the x86-64 baseline every such CPU has: 4 float32 or 2 float64
 * lanes, masks as all-ones lanes.  No FMA: a b + c is rounded twice.
 * Tails and the largest lane go through a small stack array (SSE2 has no
 * masked loads: fsce_simd_stack_lanes.h).
 */
#include <emmintrin.h>

#include "fsce_half.h"
#include "fsce_simd.h"

#define FSCE_F32_LANES 4
#define FSCE_F64_LANES 2
#define FSCE_EXP_ONE_STEP_REDUCTION 0 /* no FMA: Cody-Waite in two steps */

typedef __m128 f32v;
typedef __m128d f64v;
typedef __m128 f32m;
typedef __m128d f64m;
typedef struct { __m128d lo, hi; } acc64;

FSCE_INLINE f32v f32_splat(float s) { return _mm_set1_ps(s + 0.0f); }
FSCE_INLINE f64v f64_splat(double s) { return _mm_set1_pd(s + 0.0); }
FSCE_INLINE f32v f32_load(const float *p) { return _mm_loadu_ps(p); }
FSCE_INLINE f64v f64_load(const double *p) { return _mm_loadu_pd(p); }
FSCE_INLINE void f32_store(float *p, f32v v) { _mm_storeu_ps(p, v); }
FSCE_INLINE void f64_store(double *p, f64v v) { _mm_storeu_pd(p, v); }
FSCE_INLINE f32v f32_gather(const float *p, ptrdiff_t s) { return _mm_setr_ps(p[0], p[s], p[2 * s], p[3 * s]); }
FSCE_INLINE f64v f64_gather(const double *p, ptrdiff_t s) { return _mm_setr_pd(p[0], p[s]); }
/* 4 x 4: rows interleaved in pairs, then the low and high halves of the pairs joined */
FSCE_INLINE void f32_transpose(f32v v[4])
{
    const __m128 p0 = _mm_unpacklo_ps(v[0], v[1]), p1 = _mm_unpackhi_ps(v[0], v[1]);
    const __m128 p2 = _mm_unpacklo_ps(v[2], v[3]), p3 = _mm_unpackhi_ps(v[2], v[3]);
    v[0] = _mm_movelh_ps(p0, p2);
    v[1] = _mm_movehl_ps(p2, p0);
    v[2] = _mm_movelh_ps(p1, p3);
    v[3] = _mm_movehl_ps(p3, p1);
}
FSCE_INLINE void f64_transpose(f64v v[2])
{
    const __m128d first = _mm_unpacklo_pd(v[0], v[1]);
    v[1] = _mm_unpackhi_pd(v[0], v[1]);
    v[0] = first;
}

FSCE_INLINE f32v f32_add(f32v a, f32v b) { return _mm_add_ps(a, b); }
FSCE_INLINE f64v f64_add(f64v a, f64v b) { return _mm_add_pd(a, b); }
FSCE_INLINE f32v f32_sub(f32v a, f32v b) { return _mm_sub_ps(a, b); }
FSCE_INLINE f64v f64_sub(f64v a, f64v b) { return _mm_sub_pd(a, b); }
FSCE_INLINE f32v f32_mul(f32v a, f32v b) { return _mm_mul_ps(a, b); }
FSCE_INLINE f64v f64_mul(f64v a, f64v b) { return _mm_mul_pd(a, b); }
FSCE_INLINE f64v f64_div(f64v a, f64v b) { return _mm_div_pd(a, b); }
/* no FMA: a b - c in two roundings */
FSCE_INLINE f32v f32_mul_sub(f32v a, f32v b, f32v c) { return _mm_sub_ps(_mm_mul_ps(a, b), c); }
FSCE_INLINE f64v f64_mul_sub(f64v a, f64v b, f64v c) { return _mm_sub_pd(_mm_mul_pd(a, b), c); }
FSCE_INLINE f32v f32_max(f32v a, f32v b) { return _mm_max_ps(a, b); }
FSCE_INLINE f64v f64_max(f64v a, f64v b) { return _mm_max_pd(a, b); }

FSCE_INLINE f32m f32_lt(f32v a, f32v b) { return _mm_cmplt_ps(a, b); }
FSCE_INLINE f64m f64_lt(f64v a, f64v b) { return _mm_cmplt_pd(a, b); }
FSCE_INLINE f32m f32_gt(f32v a, f32v b) { return _mm_cmpgt_ps(a, b); }
FSCE_INLINE f64m f64_gt(f64v a, f64v b) { return _mm_cmpgt_pd(a, b); }
FSCE_INLINE f32m f32_ge(f32v a, f32v b) { return _mm_cmpge_ps(a, b); }
FSCE_INLINE f64m f64_ge(f64v a, f64v b) { return _mm_cmpge_pd(a, b); }
FSCE_INLINE f32m f32_eq(f32v a, f32v b) { return _mm_cmpeq_ps(a, b); }
FSCE_INLINE f64m f64_eq(f64v a, f64v b) { return _mm_cmpeq_pd(a, b); }
FSCE_INLINE f32m f32_ne(f32v a, f32v b) { return _mm_cmpneq_ps(a, b); }
FSCE_INLINE f64m f64_ne(f64v a, f64v b) { return _mm_cmpneq_pd(a, b); }
FSCE_INLINE f32v f32_select(f32m m, f32v a, f32v b) { return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b)); }
FSCE_INLINE f64v f64_select(f64m m, f64v a, f64v b) { return _mm_or_pd(_mm_and_pd(m, a), _mm_andnot_pd(m, b)); }
FSCE_INLINE f32m f32_mask_or(f32m m, f32m n) { return _mm_or_ps(m, n); }
FSCE_INLINE f64m f64_mask_or(f64m m, f64m n) { return _mm_or_pd(m, n); }
FSCE_INLINE int f32_mask_any(f32m m) { return _mm_movemask_ps(m) != 0; }
FSCE_INLINE int f64_mask_any(f64m m) { return _mm_movemask_pd(m) != 0; }

#include "fsce_simd_stack_lanes.h"

/* the exp's ends: as in fsce_simd_avx2.h */
FSCE_INLINE f32v f32_exp_clamp(f32v t, float clamp) { return _mm_max_ps(_mm_set1_ps(clamp), t); }
FSCE_INLINE f64v f64_exp_clamp(f64v t, double clamp) { return _mm_max_pd(_mm_set1_pd(clamp), t); }
FSCE_INLINE f32v f32_exp_scale(f32v t, f32v p, f32v k, f32v n, float lo, int32_t offset)
{
    (void)n;
    const __m128i biased = _mm_sub_epi32(_mm_castps_si128(k), _mm_set1_epi32(offset));
    const __m128i keep = _mm_castps_si128(_mm_cmpge_ps(t, _mm_set1_ps(lo)));
    return _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_and_si128(keep, biased), 23)));
}
FSCE_INLINE f64v f64_exp_scale(f64v t, f64v p, f64v k, f64v n, double lo, int64_t offset)
{
    (void)n;
    const __m128i biased = _mm_sub_epi64(_mm_castpd_si128(k), _mm_set1_epi64x(offset));
    const __m128i keep = _mm_castpd_si128(_mm_cmpge_pd(t, _mm_set1_pd(lo)));
    return _mm_mul_pd(p, _mm_castsi128_pd(_mm_slli_epi64(_mm_and_si128(keep, biased), 52)));
}

/* the float64 accumulator: lo holds lanes 0-1, hi lanes 2-3 of float32 vectors */
FSCE_INLINE acc64 acc_zero(void)
{
    acc64 acc = {_mm_setzero_pd(), _mm_setzero_pd()};
    return acc;
}
FSCE_INLINE void f32_acc_add(acc64 *acc, f32v v)
{
    acc->lo = _mm_add_pd(acc->lo, _mm_cvtps_pd(v));
    acc->hi = _mm_add_pd(acc->hi, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
}
FSCE_INLINE void f64_acc_add(acc64 *acc, f64v v) { acc->lo = _mm_add_pd(acc->lo, v); }
FSCE_INLINE double acc_total(acc64 acc)
{
    const __m128d v = _mm_add_pd(acc.lo, acc.hi);
    return _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v)));
}
FSCE_INLINE void acc_lanes(acc64 acc, double *lanes, ptrdiff_t n_lanes)
{
    _mm_storeu_pd(lanes, acc.lo);
    if (n_lanes > FSCE_F64_LANES) _mm_storeu_pd(lanes + FSCE_F64_LANES, acc.hi);
}

/* 16-bit floats, 4 at a time (RNE narrowing, NaN made quiet: the bits of fsce_half.h);
   SSE2 has no float16 conversion: float16 goes lane by lane through fsce_half.h */
FSCE_INLINE f32v f32_load_bf16(const uint16_t *p)
{
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64((const __m128i *)p)));
}
FSCE_INLINE void f32_store_bf16(uint16_t *p, f32v v)
{
    const __m128i u = _mm_castps_si128(v), low_bit = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
    const __m128i rounded = _mm_add_epi32(u, _mm_add_epi32(_mm_set1_epi32(0x7FFF), low_bit));
    const __m128i quiet = _mm_or_si128(u, _mm_set1_epi32(0x00400000));
    const __m128i nan = _mm_castps_si128(_mm_cmpunord_ps(v, v));
    const __m128i top = _mm_srai_epi32(_mm_or_si128(_mm_and_si128(nan, quiet), _mm_andnot_si128(nan, rounded)), 16);
    _mm_storel_epi64((__m128i *)p, _mm_packs_epi32(top, top)); /* int16 range: packs keeps it */
}
FSCE_INLINE f32v f32_load_f16(const uint16_t *p)
{
    return _mm_setr_ps(fsce_f16_to_f32(p[0]), fsce_f16_to_f32(p[1]), fsce_f16_to_f32(p[2]), fsce_f16_to_f32(p[3]));
}
FSCE_INLINE void f32_store_f16(uint16_t *p, f32v v)
{
    float lanes[FSCE_F32_LANES];
    f32_store(lanes, v);
    for (ptrdiff_t i = 0; i < FSCE_F32_LANES; ++i) p[i] = fsce_f32_to_f16(lanes[i]);
}
