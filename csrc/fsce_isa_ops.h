/*
 * fsce_isa_ops.h -- the few operations spelled per instruction set, included
 * by fsce_rows_impl.h (same parameters) before the row helpers:
 *   max(a, b)         a > b ? a : b lane by lane, b where either is NaN (the
 *                     x86 maxps rule: one instruction with AVX2 / AVX-512)
 *   load_tail(p, r, pad), store_tail(p, r, v)
 *                     the last r < LANES elements of a row, lanes past the row
 *                     reading as pad: masked loads and stores with AVX2 /
 *                     AVX-512 (no trip through the stack), a copy loop otherwise
 *   acc_add(acc, v)   acc += v in float64 lanes; float32 is widened with the
 *                     conversion intrinsics, which GCC does not find by itself
 *   lanes_max(v), acc_total(acc)
 *                     the largest lane of v (no lane is NaN) and the sum of the
 *                     accumulator's lanes, as trees: halves combined until one
 *                     lane is left.  AVX2 / AVX-512: in registers (the same
 *                     tree, bit for bit; only the sign of a zero maximum may
 *                     differ, which no result shows); portable: through a
 *                     stack array (whose partial reloads would stall store
 *                     forwarding on the wide paths)
 *   fnmadd(a, b, c)   c - a b rounded once (FMA targets only: the float32 exp
 *                     reduction needs the single rounding, which must not hang
 *                     on the compiler's -ffp-contract setting)
 *   exp_clamp(t), exp_scale(t, p, k, n)
 *                     the ends of vexp (fsce_rows_impl.h): t made safe for the
 *                     reduction, then 2**n p (k = n + the rounding constant),
 *                     0 where t < EXP_LO (log of the smallest normal number),
 *                     NaN where t is NaN: the same results on every path.
 *                     Portable: t raised to EXP_CLAMP, 2**n built in the
 *                     exponent field from the bits of k, the field zeroed
 *                     where t < EXP_LO or t is NaN.  AVX-512: no clamp, one
 *                     vscalef with the lanes t < EXP_LO masked to 0 (so no
 *                     underflow is ever raised: masked lanes do not signal).
 * The portable versions come last and serve every other target.
 */
#if FSCE_AVX512_INTRINSICS
#if FSCE_DOUBLE
typedef __mmask8 N_(kmask);
#define MM_(op) _mm512_##op##_pd
#define MM_CMP _mm512_cmp_pd_mask
#define MMVEC __m512d
#else
typedef __mmask16 N_(kmask);
#define MM_(op) _mm512_##op##_ps
#define MM_CMP _mm512_cmp_ps_mask
#define MMVEC __m512
#endif
FSCE_TARGET FSCE_INLINE VEC N_(load_tail)(const REAL *p, ptrdiff_t r, REAL pad)
{
    return (VEC)MM_(mask_loadu)(MM_(set1)(pad), (N_(kmask))((1u << r) - 1), p);
}
FSCE_TARGET FSCE_INLINE void N_(store_tail)(REAL *p, ptrdiff_t r, VEC v)
{
    MM_(mask_storeu)(p, (N_(kmask))((1u << r) - 1), (MMVEC)v);
}
#if FSCE_DOUBLE
FSCE_TARGET FSCE_INLINE void N_(acc_add)(ACC *acc, VEC v) { acc->lo += v; }
#else
FSCE_TARGET FSCE_INLINE void N_(acc_add)(ACC *acc, VEC v)
{
    acc->lo += (f64v_512)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
    acc->hi += (f64v_512)_mm512_cvtps_pd((__m256)_mm512_extractf64x4_pd((__m512d)v, 1));
}
#endif
FSCE_TARGET FSCE_INLINE REAL N_(lanes_max)(VEC v) { return MM_(reduce_max)((MMVEC)v); }
FSCE_TARGET FSCE_INLINE double N_(acc_total)(ACC acc) { return _mm512_reduce_add_pd((__m512d)(acc.lo + acc.hi)); }
FSCE_TARGET FSCE_INLINE VEC N_(exp_clamp)(VEC t) { return t; }
FSCE_TARGET FSCE_INLINE VEC N_(exp_scale)(VEC t, VEC p, VEC k, VEC n)
{
    (void)k;
    const N_(kmask) keep = MM_CMP((MMVEC)t, MM_(set1)(EXP_LO), _CMP_NLT_UQ); /* or NaN */
    return (VEC)MM_(maskz_scalef)(keep, (MMVEC)p, (MMVEC)n);
}
#undef MM_CMP

#elif FSCE_AVX2_INTRINSICS
#if FSCE_DOUBLE
#define MM_(op) _mm256_##op##_pd
#define MMVEC __m256d
#else
#define MM_(op) _mm256_##op##_ps
#define MMVEC __m256
#endif
FSCE_TARGET FSCE_INLINE IVEC N_(tail_mask)(ptrdiff_t r)
{
    static const IREAL lane_ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    IVEC ids;
    memcpy(&ids, lane_ids, sizeof ids);
    return FSCE_MASK(ids < (IREAL)r);
}
FSCE_TARGET FSCE_INLINE VEC N_(load_tail)(const REAL *p, ptrdiff_t r, REAL pad)
{
    const IVEC mask = N_(tail_mask)(r);
    return T_(select)(mask, (VEC)MM_(maskload)(p, (__m256i)mask), T_(splat)(pad));
}
FSCE_TARGET FSCE_INLINE void N_(store_tail)(REAL *p, ptrdiff_t r, VEC v)
{
    MM_(maskstore)(p, (__m256i)N_(tail_mask)(r), (MMVEC)v);
}
#if FSCE_DOUBLE
FSCE_TARGET FSCE_INLINE void N_(acc_add)(ACC *acc, VEC v) { acc->lo += v; }
FSCE_TARGET FSCE_INLINE REAL N_(lanes_max)(VEC v)
{
    const __m128d half = _mm_max_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(half, _mm_unpackhi_pd(half, half)));
}
#else
FSCE_TARGET FSCE_INLINE void N_(acc_add)(ACC *acc, VEC v)
{
    acc->lo += (f64v)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
    acc->hi += (f64v)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
}
FSCE_TARGET FSCE_INLINE REAL N_(lanes_max)(VEC v)
{
    __m128 half = _mm_max_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    half = _mm_max_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_max_ss(half, _mm_shuffle_ps(half, half, 1)));
}
#endif
FSCE_TARGET FSCE_INLINE double N_(acc_total)(ACC acc)
{
    const __m256d v = (__m256d)(acc.lo + acc.hi);
    const __m128d half = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)));
}

#else
FSCE_INLINE VEC N_(max)(VEC a, VEC b) { return T_(select)(FSCE_MASK(a > b), a, b); }
FSCE_INLINE VEC N_(load_tail)(const REAL *p, ptrdiff_t r, REAL pad) { return T_(load_tail)(p, r, pad); }
FSCE_INLINE void N_(store_tail)(REAL *p, ptrdiff_t r, VEC v) { T_(store_tail)(p, r, v); }
FSCE_INLINE void N_(acc_add)(ACC *acc, VEC v) { T_(acc_add)(acc, v); }
FSCE_INLINE REAL N_(lanes_max)(VEC v)
{
    REAL lanes[LANES];
    T_(store)(lanes, v);
    for (ptrdiff_t width = LANES / 2; width > 0; width /= 2)
        for (ptrdiff_t i = 0; i < width; ++i)
            if (lanes[i + width] > lanes[i]) lanes[i] = lanes[i + width];
    return lanes[0];
}
FSCE_INLINE double N_(acc_total)(ACC acc) { return ACC_(total)(acc); }
#endif

#if FSCE_AVX512_INTRINSICS || FSCE_AVX2_INTRINSICS
/* spelled alike at both widths: MM_ names the intrinsics of the width in use */
FSCE_TARGET FSCE_INLINE VEC N_(max)(VEC a, VEC b) { return (VEC)MM_(max)((MMVEC)a, (MMVEC)b); }
FSCE_TARGET FSCE_INLINE VEC N_(fnmadd)(VEC a, VEC b, VEC c) { return (VEC)MM_(fnmadd)((MMVEC)a, (MMVEC)b, (MMVEC)c); }
#undef MM_
#undef MMVEC
#endif

#if !FSCE_AVX512_INTRINSICS
FSCE_TARGET FSCE_INLINE VEC N_(exp_clamp)(VEC t) { return N_(max)(T_(splat)(EXP_CLAMP), t); }
FSCE_TARGET FSCE_INLINE VEC N_(exp_scale)(VEC t, VEC p, VEC k, VEC n)
{
    (void)n;
    const IVEC biased = T_(bits)(k) - (T_(bits)(T_(splat)(EXP_MAGIC)) - (IREAL)EXP_BIAS); /* n + bias */
    const IVEC exponent = FSCE_MASK(t >= EXP_LO) & biased;  /* in [1, 2 bias] for EXP_LO <= t <= 0 */
    return p * T_(from_bits)(exponent << EXP_MANT_BITS);
}
#endif
