/*
 * fsce_simd_avx512.h -- the vector vocabulary of fsce_simd.h with AVX-512
 * (F, DQ, BW, VL) intrinsics: 16 float32 or 8 float64 lanes, masks in k
 * registers.  Included by fsce_rows_avx512.c only, whose functions are all
 * compiled for these subsets (every AVX-512 CPU since Skylake-SP has them)
 * and run only after the CPU said it has them.
 * Tails are masked loads and stores; the exp's 2**n p is one vscalef.
 */
#include <immintrin.h>

#include "fsce_simd.h"

#define FSCE_F32_LANES 16
#define FSCE_F64_LANES 8
#define FSCE_EXP_ONE_STEP_REDUCTION 1

typedef __m512 f32v;
typedef __m512d f64v;
typedef __mmask16 f32m;
typedef __mmask8 f64m;
typedef struct { __m512d lo, hi; } acc64;

FSCE_INLINE f32v f32_splat(float s) { return _mm512_set1_ps(s + 0.0f); }
FSCE_INLINE f64v f64_splat(double s) { return _mm512_set1_pd(s + 0.0); }
FSCE_INLINE f32v f32_load(const float *p) { return _mm512_loadu_ps(p); }
FSCE_INLINE f64v f64_load(const double *p) { return _mm512_loadu_pd(p); }
FSCE_INLINE void f32_store(float *p, f32v v) { _mm512_storeu_ps(p, v); }
FSCE_INLINE void f64_store(double *p, f64v v) { _mm512_storeu_pd(p, v); }
FSCE_INLINE f32v f32_gather(const float *p, ptrdiff_t s) /* lane i = p[i * stride] */
{
    return _mm512_setr_ps(p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s], p[8 * s],
                          p[9 * s], p[10 * s], p[11 * s], p[12 * s], p[13 * s], p[14 * s], p[15 * s]);
}
FSCE_INLINE f64v f64_gather(const double *p, ptrdiff_t s)
{
    return _mm512_setr_pd(p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s]);
}
/* 16 x 16 and 8 x 8 through memory: the rows stored, each column gathered back (a short,
   plainly correct sequence on a path this project's CI machines cannot run) */
FSCE_INLINE void f32_transpose(f32v v[16])
{
    float block[16 * 16];
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(block + 16 * i, v[i]);
    for (int j = 0; j < 16; ++j) v[j] = f32_gather(block + j, 16);
}
FSCE_INLINE void f64_transpose(f64v v[8])
{
    double block[8 * 8];
    for (int i = 0; i < 8; ++i) _mm512_storeu_pd(block + 8 * i, v[i]);
    for (int j = 0; j < 8; ++j) v[j] = f64_gather(block + j, 8);
}
FSCE_INLINE f32v f32_load_tail(const float *p, ptrdiff_t r, float pad)
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(pad), (__mmask16)((1u << r) - 1), p);
}
FSCE_INLINE f64v f64_load_tail(const double *p, ptrdiff_t r, double pad)
{
    return _mm512_mask_loadu_pd(_mm512_set1_pd(pad), (__mmask8)((1u << r) - 1), p);
}
FSCE_INLINE void f32_store_tail(float *p, ptrdiff_t r, f32v v) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << r) - 1), v); }
FSCE_INLINE void f64_store_tail(double *p, ptrdiff_t r, f64v v) { _mm512_mask_storeu_pd(p, (__mmask8)((1u << r) - 1), v); }

FSCE_INLINE f32v f32_add(f32v a, f32v b) { return _mm512_add_ps(a, b); }
FSCE_INLINE f64v f64_add(f64v a, f64v b) { return _mm512_add_pd(a, b); }
FSCE_INLINE f32v f32_sub(f32v a, f32v b) { return _mm512_sub_ps(a, b); }
FSCE_INLINE f64v f64_sub(f64v a, f64v b) { return _mm512_sub_pd(a, b); }
FSCE_INLINE f32v f32_mul(f32v a, f32v b) { return _mm512_mul_ps(a, b); }
FSCE_INLINE f64v f64_mul(f64v a, f64v b) { return _mm512_mul_pd(a, b); }
FSCE_INLINE f64v f64_div(f64v a, f64v b) { return _mm512_div_pd(a, b); }
FSCE_INLINE f32v f32_neg_mul_add(f32v a, f32v b, f32v c) { return _mm512_fnmadd_ps(a, b, c); }
FSCE_INLINE f64v f64_neg_mul_add(f64v a, f64v b, f64v c) { return _mm512_fnmadd_pd(a, b, c); }
FSCE_INLINE f32v f32_mul_sub(f32v a, f32v b, f32v c) { return _mm512_fmsub_ps(a, b, c); }
FSCE_INLINE f64v f64_mul_sub(f64v a, f64v b, f64v c) { return _mm512_fmsub_pd(a, b, c); }
FSCE_INLINE f32v f32_max(f32v a, f32v b) { return _mm512_max_ps(a, b); }
FSCE_INLINE f64v f64_max(f64v a, f64v b) { return _mm512_max_pd(a, b); }

FSCE_INLINE f32m f32_lt(f32v a, f32v b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
FSCE_INLINE f64m f64_lt(f64v a, f64v b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
FSCE_INLINE f32m f32_gt(f32v a, f32v b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
FSCE_INLINE f64m f64_gt(f64v a, f64v b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
FSCE_INLINE f32m f32_ge(f32v a, f32v b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
FSCE_INLINE f64m f64_ge(f64v a, f64v b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
FSCE_INLINE f32m f32_eq(f32v a, f32v b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
FSCE_INLINE f64m f64_eq(f64v a, f64v b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
FSCE_INLINE f32m f32_ne(f32v a, f32v b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
FSCE_INLINE f64m f64_ne(f64v a, f64v b) { return _mm512_cmp_pd_mask(a, b, _CMP_NEQ_UQ); }
FSCE_INLINE f32v f32_select(f32m m, f32v a, f32v b) { return _mm512_mask_blend_ps(m, b, a); }
FSCE_INLINE f64v f64_select(f64m m, f64v a, f64v b) { return _mm512_mask_blend_pd(m, b, a); }
FSCE_INLINE f32m f32_mask_or(f32m m, f32m n) { return (f32m)(m | n); }
FSCE_INLINE f64m f64_mask_or(f64m m, f64m n) { return (f64m)(m | n); }
FSCE_INLINE int f32_mask_any(f32m m) { return m != 0; }
FSCE_INLINE int f64_mask_any(f64m m) { return m != 0; }

/* largest lane: a tree of halves (the upper half first, as GCC's _mm512_reduce_max_*,
   which not every compiler has), then neighbouring pairs */
FSCE_INLINE float f32_lanes_max(f32v v)
{
    const __m256 upper = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 half = _mm256_max_ps(upper, _mm512_castps512_ps256(v));
    __m128 quarter = _mm_max_ps(_mm256_extractf128_ps(half, 1), _mm256_castps256_ps128(half));
    quarter = _mm_max_ps(quarter, _mm_shuffle_ps(quarter, quarter, _MM_SHUFFLE(1, 0, 3, 2)));
    quarter = _mm_max_ps(quarter, _mm_shuffle_ps(quarter, quarter, _MM_SHUFFLE(0, 1, 0, 1)));
    return _mm_cvtss_f32(quarter);
}
FSCE_INLINE double f64_lanes_max(f64v v)
{
    const __m256d half = _mm256_max_pd(_mm512_extractf64x4_pd(v, 1), _mm512_castpd512_pd256(v));
    const __m128d quarter = _mm_max_pd(_mm256_extractf128_pd(half, 1), _mm256_castpd256_pd128(half));
    return _mm_cvtsd_f64(_mm_max_pd(quarter, _mm_shuffle_pd(quarter, quarter, 1)));
}

/* the exp's ends: no clamp; 2**n p by one vscalef, the lanes t < lo masked to 0 (a
   masked lane raises no underflow) and NaN lanes kept (NaN compares "not less") */
FSCE_INLINE f32v f32_exp_clamp(f32v t, float clamp) { (void)clamp; return t; }
FSCE_INLINE f64v f64_exp_clamp(f64v t, double clamp) { (void)clamp; return t; }
FSCE_INLINE f32v f32_exp_scale(f32v t, f32v p, f32v k, f32v n, float lo, int32_t offset)
{
    (void)k, (void)offset;
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(t, _mm512_set1_ps(lo), _CMP_NLT_UQ), p, n);
}
FSCE_INLINE f64v f64_exp_scale(f64v t, f64v p, f64v k, f64v n, double lo, int64_t offset)
{
    (void)k, (void)offset;
    return _mm512_maskz_scalef_pd(_mm512_cmp_pd_mask(t, _mm512_set1_pd(lo), _CMP_NLT_UQ), p, n);
}

/* the float64 accumulator: lo holds lanes 0-7, hi lanes 8-15 of float32 vectors */
FSCE_INLINE acc64 acc_zero(void)
{
    acc64 acc = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    return acc;
}
FSCE_INLINE void f32_acc_add(acc64 *acc, f32v v)
{
    acc->lo = _mm512_add_pd(acc->lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc->hi = _mm512_add_pd(acc->hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
FSCE_INLINE void f64_acc_add(acc64 *acc, f64v v) { acc->lo = _mm512_add_pd(acc->lo, v); }
FSCE_INLINE double acc_total(acc64 acc) /* the tree of halves of the other paths */
{
    const __m512d v = _mm512_add_pd(acc.lo, acc.hi);
    const __m256d half = _mm256_add_pd(_mm512_extractf64x4_pd(v, 1), _mm512_castpd512_pd256(v));
    const __m128d quarter = _mm_add_pd(_mm256_extractf128_pd(half, 1), _mm256_castpd256_pd128(half));
    return _mm_cvtsd_f64(_mm_add_sd(quarter, _mm_unpackhi_pd(quarter, quarter)));
}
FSCE_INLINE void acc_lanes(acc64 acc, double *lanes, ptrdiff_t n_lanes)
{
    _mm512_storeu_pd(lanes, acc.lo);
    if (n_lanes > FSCE_F64_LANES) _mm512_storeu_pd(lanes + FSCE_F64_LANES, acc.hi);
}

/* 16-bit floats, 16 at a time (RNE narrowing, NaN made quiet: the bits of fsce_half.h) */
FSCE_INLINE f32v f32_load_bf16(const uint16_t *p)
{
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
FSCE_INLINE void f32_store_bf16(uint16_t *p, f32v v)
{
    const __m512i u = _mm512_castps_si512(v), low_bit = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), low_bit));
    const __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
    const __m512i bits = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), rounded, quiet);
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16)));
}
FSCE_INLINE f32v f32_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
FSCE_INLINE void f32_store_f16(uint16_t *p, f32v v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
