/*
 * fsce_rows_impl.h -- row helpers, written once, instantiated per dtype and ISA.
 *
 * Included by fsce_rows.c with
 *   FSCE_DOUBLE  0 for float32, 1 for float64
 *   FSCE_ISA     name suffix of the instruction set (baseline, avx2, avx512)
 *   FSCE_WIDTH_SUFFIX  the vector set of fsce_simd.h (_128: 16 bytes, empty: 32 bytes
 *                      or one lane without vector extensions, _512: 64 bytes)
 *   FSCE_TARGET  function attribute selecting that instruction set (may be empty)
 *   FSCE_FMA     1 when the target has fused multiply-add (a * b + c contracts)
 *   FSCE_AVX2_INTRINSICS, FSCE_AVX512_INTRINSICS  1 when those intrinsics may be
 *                used (see fsce_isa_ops.h)
 * Each inclusion defines the helpers as static functions and one table
 * `fsce_ops_<dtype>_<isa>` pointing at them; fsce_rows.c picks a table at run
 * time.  A "row" is n contiguous elements; every helper handles any n >= 0.
 */
#if FSCE_DOUBLE
#define REAL double
#define VEC FSCE_CAT(f64v, FSCE_WIDTH_SUFFIX)
#define IVEC FSCE_CAT(i64v, FSCE_WIDTH_SUFFIX)
#define IREAL int64_t
#define T_(name) FSCE_CAT(fsce_##name##_f64, FSCE_WIDTH_SUFFIX)
#define OPS fsce_ops_f64
/* exp: round-to-integer constant 1.5 * 2**52, exponent field, ln 2 in two parts (Cody-Waite) */
#define EXP_MAGIC 6755399441055744.0
#define EXP_MANT_BITS 52
#define EXP_BIAS 1023
#define EXP_LN2_HI 6.93147180369123816490e-01
#define EXP_LN2_LO 1.90821492927058770002e-10
#define EXP_CLAMP -760.0 /* below log of the smallest subnormal: exp is 0 there */
#define EXP_LO -708.39641853226410622 /* log of the smallest normal number */
#define EXP_ONE_STEP_REDUCTION 0
/* c1..c11 of the minimax p(r) = 1 + c1 r + ... on |r| <= ln2/2: relative error 3.5e-18 */
#define EXP_DEGREE 11
#define EXP_COEFFS {1.00000000000000002421694, 0.5000000000000012744700838, 0.166666666666662081598179, \
                    0.04166666666651544067005126, 0.008333333333553178085555399, \
                    0.001388888894704314802871152, 0.0001984126943191578513256461, \
                    0.00002480148986326906125266381, 0.00000275576291689657347006676, \
                    0.0000002763132849728552453859126, 2.499118795058240147071328e-8}
#else
#define REAL float
#define VEC FSCE_CAT(f32v, FSCE_WIDTH_SUFFIX)
#define IVEC FSCE_CAT(i32v, FSCE_WIDTH_SUFFIX)
#define IREAL int32_t
#define T_(name) FSCE_CAT(fsce_##name##_f32, FSCE_WIDTH_SUFFIX)
#define OPS fsce_ops_f32
#define EXP_MAGIC 12582912.0f
#define EXP_MANT_BITS 23
#define EXP_BIAS 127
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187045e-06f
/* with FMA, r = t - n ln2 in one rounding: ln2's own rounding moves r by |n| 1.9e-9,
   about 5 ULP in results near the smallest normal, 2.4 ULP above 1e-3 (the exhaustive
   float32 sweep of tests/test_exp.py) */
#define EXP_ONE_STEP_REDUCTION FSCE_FMA
#define EXP_LN2 0.693147180559945309f
#define EXP_CLAMP -104.0f
#define EXP_LO -87.3365447505f
/* minimax on |r| <= ln2/2, relative error 9.3e-8 (about one float32 ULP) */
#define EXP_DEGREE 5
#define EXP_COEFFS {0.9999997036606623f, 0.4999914274688023f, 0.1666764397516011f, \
                    0.04189885226322740f, 0.008290142103835597f}
#endif

#define CAT3_(a, b, c) a##_##b##_##c
#define CAT3(a, b, c) CAT3_(a, b, c)
#if FSCE_DOUBLE
#define N_(name) CAT3(name, f64, FSCE_ISA)
#else
#define N_(name) CAT3(name, f32, FSCE_ISA)
#endif
#define LANES ((ptrdiff_t)(sizeof(VEC) / sizeof(REAL)))
#define ACC FSCE_CAT(fsce_acc, FSCE_WIDTH_SUFFIX)
#define ACC_(name) FSCE_CAT(fsce_acc_##name, FSCE_WIDTH_SUFFIX)

#include "fsce_isa_ops.h"

/*
 * exp(t) lane by lane for t <= 0 or NaN, a few ULP accurate, NaN in -> NaN out.
 * t <= 0 is the callers' contract: the row helpers pass t = (x - max) * scale,
 * and log_softmax_backward takes rows with a log_s > 0 elsewhere.  (Above
 * about ln(largest float) the portable 2**n would overflow its exponent field.)
 *   t = n ln2 + r,  n = round(t / ln2),  |r| <= ln2 / 2
 *   exp(t) = 2**n * p(r),  p(r) = 1 + c1 r + ... + cD r**D  (EXP_COEFFS)
 * n is rounded by adding 1.5 * 2**mantissa_bits (its integer value then
 * sits in the low mantissa bits of k); exp_clamp and exp_scale
 * (fsce_isa_ops.h) keep the reduction finite down to t = -inf and make
 * 2**n p, flushed to 0 below the smallest normal number: exp(-inf) = 0.
 */
FSCE_TARGET FSCE_INLINE VEC N_(vexp)(VEC t)
{
    static const REAL coef[EXP_DEGREE] = EXP_COEFFS;
    const VEC magic = T_(splat)(EXP_MAGIC);
    const VEC tc = N_(exp_clamp)(t);
    const VEC k = tc * (REAL)1.44269504088896340736 + magic; /* log2(e) */
    const VEC n = k - magic;
#if EXP_ONE_STEP_REDUCTION
    const VEC r = N_(fnmadd)(n, T_(splat)(EXP_LN2), tc);
#else
    const VEC r = (tc - n * EXP_LN2_HI) - n * EXP_LN2_LO; /* n * EXP_LN2_HI is exact */
#endif
    /* p(r) = sum_k a_k r**k (a_0 = 1, a_k = coef[k - 1]) by Estrin's scheme: the pairs
       q_i = a_2i + a_2i+1 r, then Horner in r**2 over them (half the dependency chain of
       Horner in r, which bounds the throughput: the scheduler holds few iterations) */
    const VEC r2 = r * r;
    VEC p = T_(splat)(0);
    for (int i = EXP_DEGREE / 2; i >= 0; --i) {
        const REAL even = i == 0 ? (REAL)1 : coef[2 * i - 1];
        const VEC q = 2 * i + 1 <= EXP_DEGREE ? r * coef[2 * i] + even : T_(splat)(even);
        p = i == EXP_DEGREE / 2 ? q : p * r2 + q;
    }
    return N_(exp_scale)(t, p, k, n);
}

/*
 * The largest non-NaN x_j (-inf if there is none).  NaNs are skipped here
 * because they reach every exp-based result anyway, through
 * exp(NaN - max) = NaN; callers that need to know about them ask row_find.
 * Two running maxima keep two loads in flight.
 */
FSCE_TARGET static REAL N_(row_max)(const REAL *x, ptrdiff_t n)
{
    VEC best0 = T_(splat)(-(REAL)INFINITY), best1 = best0;
    ptrdiff_t j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        best0 = N_(max)(T_(load)(x + j), best0);
        best1 = N_(max)(T_(load)(x + j + LANES), best1);
    }
    if (j + LANES <= n) {
        best0 = N_(max)(T_(load)(x + j), best0);
        j += LANES;
    }
    if (j < n) best1 = N_(max)(N_(load_tail)(x + j, n - j, -(REAL)INFINITY), best1);
    return N_(lanes_max)(N_(max)(best0, best1));
}

/*
 * Index of the first j with x_j == value or x_j NaN (so the first NaN when
 * value is NaN); -1 if there is none.  Whole vectors are tested a block at a
 * time, the block holding a match is then searched element by element.
 */
FSCE_TARGET static ptrdiff_t N_(row_find)(const REAL *x, ptrdiff_t n, REAL value)
{
    const VEC v = T_(splat)(value);
    ptrdiff_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        IVEC hit = {0};
        for (ptrdiff_t q = 0; q < 4 * LANES; q += LANES) {
            const VEC y = T_(load)(x + j + q);
            hit |= FSCE_MASK(y == v) | FSCE_MASK(y != y);
        }
        IREAL lanes[LANES], any = 0;
        memcpy(lanes, &hit, sizeof lanes);
        for (ptrdiff_t i = 0; i < LANES; ++i) any |= lanes[i];
        if (any) break;
    }
    for (; j < n; ++j)
        if (x[j] == value || x[j] != x[j]) return j;
    return -1;
}

/*
 * sum_j exp((x_j - shift) * scale), accumulated in float64 (in float32 a
 * row total near 1 would lose the small terms that make a confident row's loss).
 * When out is not NULL, out_j = exp((x_j - shift) * scale) is stored too
 * (out may be x itself: each element is read before it is written).
 * next (may be NULL) is the row of n elements the caller reads after this
 * one.  A row of 16 KB to 256 KB is too long for the hardware prefetcher to
 * have the next one in cache when its max pass starts, which then waits for
 * memory while this compute-bound pass leaves memory idle; so it is
 * prefetched here, one prefetch per vector: one per cache line with AVX-512,
 * repeats (which cost little) on narrower paths.  Shorter rows need no help,
 * longer ones would push this row's data out of L2 (figures: CHANGELOG).
 */
#define PREFETCH_MIN_BYTES 16384
#define PREFETCH_MAX_BYTES 262144
FSCE_TARGET FSCE_INLINE double N_(exp_sum_body)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale,
                                                REAL *out, int scaled, const REAL *next)
{
    const VEC vshift = T_(splat)(shift);
    ACC acc = ACC_(zero)();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        if (next) FSCE_PREFETCH(next + j);
        const VEC t = T_(load)(x + j) - vshift;
        const VEC e = N_(vexp)(scaled ? t * scale : t);
        if (out) T_(store)(out + j, e);
        N_(acc_add)(&acc, e);
    }
    if (j < n) {
        const VEC t = N_(load_tail)(x + j, n - j, -(REAL)INFINITY) - vshift;
        const VEC e = N_(vexp)(scaled ? t * scale : t);
        if (out) N_(store_tail)(out + j, n - j, e);
        N_(acc_add)(&acc, e);
    }
    return N_(acc_total)(acc);
}

/* one copy of the loop per case: with or without the store and the scaling */
FSCE_TARGET FSCE_INLINE double N_(exp_sum_cases)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale,
                                                 REAL *out, const REAL *next)
{
    if (scale == 1)
        return out ? N_(exp_sum_body)(x, n, shift, 1, out, 0, next)
                   : N_(exp_sum_body)(x, n, shift, 1, NULL, 0, next);
    return out ? N_(exp_sum_body)(x, n, shift, scale, out, 1, next)
               : N_(exp_sum_body)(x, n, shift, scale, NULL, 1, next);
}

FSCE_TARGET static double N_(row_exp_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out,
                                          const REAL *next)
{
    const size_t bytes = (size_t)n * sizeof(REAL);
    if (next != NULL && bytes >= PREFETCH_MIN_BYTES && bytes <= PREFETCH_MAX_BYTES)
        return N_(exp_sum_cases)(x, n, shift, scale, out, next);
    return N_(exp_sum_cases)(x, n, shift, scale, out, NULL); /* no prefetch in the loop */
}
#undef PREFETCH_MIN_BYTES
#undef PREFETCH_MAX_BYTES

/*
 * S' = the sum of the terms e_j < 1 of a row whose terms sum to S < 2, where
 * e_j = exp((x_j - shift) * scale) when exponentiate is set (x the logits, shift
 * their max), else e_j = x_j (the terms row_exp_sum stored).  Such a row has
 * exactly one term equal to 1, the max's own exp(0) (two would make S >= 2), so
 * S' is S without it: lse = m + log1p(S') keeps the digits that log(1 + S') loses
 * when S' is below the float64 epsilon (a confident row; scipy gh-18295).  Both
 * modes sum the same values in the same order, so they agree bit for bit.
 */
FSCE_TARGET static double N_(row_sum_below_one)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale,
                                                int exponentiate)
{
    const VEC vshift = T_(splat)(shift), one = T_(splat)(1), zero = T_(splat)(0);
    ACC acc = ACC_(zero)();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC e = exponentiate ? N_(vexp)((T_(load)(x + j) - vshift) * scale) : T_(load)(x + j);
        N_(acc_add)(&acc, T_(select)(FSCE_MASK(e < one), e, zero));
    }
    if (j < n) {
        const VEC e = exponentiate ? N_(vexp)((N_(load_tail)(x + j, n - j, -(REAL)INFINITY) - vshift) * scale)
                                   : N_(load_tail)(x + j, n - j, 0);
        N_(acc_add)(&acc, T_(select)(FSCE_MASK(e < one), e, zero));
    }
    return N_(acc_total)(acc);
}

/* out_j = (y_j - shift) * a - c  (out may be y) */
FSCE_TARGET FSCE_INLINE void N_(affine_body)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out)
{
    const VEC vshift = T_(splat)(shift), va = T_(splat)(a), vc = T_(splat)(c);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) T_(store)(out + j, (T_(load)(y + j) - vshift) * va - vc);
    if (j < n) N_(store_tail)(out + j, n - j, (N_(load_tail)(y + j, n - j, 0) - vshift) * va - vc);
}

FSCE_TARGET static void N_(row_affine)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out)
{
    /* y - 0 = y for every y, so the subtraction is left out when shift is 0 */
    if (shift == 0) N_(affine_body)(y, n, 0, a, c, out);
    else N_(affine_body)(y, n, shift, a, c, out);
}

/* out_j = y_j * a - c * b_j  (out may be y) */
FSCE_TARGET static void N_(row_ay_minus_cb)(const REAL *y, const REAL *b, ptrdiff_t n, REAL a, REAL c, REAL *out)
{
    const VEC va = T_(splat)(a), vc = T_(splat)(c);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES)
        T_(store)(out + j, T_(load)(y + j) * va - vc * T_(load)(b + j));
    if (j < n)
        N_(store_tail)(out + j, n - j, N_(load_tail)(y + j, n - j, 0) * va - vc * N_(load_tail)(b + j, n - j, 0));
}

/*
 * sum_j (x_j - shift) * scale, accumulated in float64: shifting by the max and
 * scaling by 1 / n first lets a mean of values near the largest float not overflow.
 */
FSCE_TARGET static double N_(row_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale)
{
    const VEC vshift = T_(splat)(shift);
    ACC acc = ACC_(zero)();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) N_(acc_add)(&acc, (T_(load)(x + j) - vshift) * scale);
    if (j < n) N_(acc_add)(&acc, (N_(load_tail)(x + j, n - j, shift) - vshift) * scale); /* padding adds 0 */
    return N_(acc_total)(acc);
}

/*
 * sum_j b_j (x_j - shift) over the j with b_j != 0, accumulated in float64
 * (a zero weight on a masked class contributes 0, not 0 * -inf = NaN).
 */
FSCE_TARGET static double N_(row_dot)(const REAL *x, const REAL *b, ptrdiff_t n, REAL shift)
{
    const VEC zero = T_(splat)(0), vshift = T_(splat)(shift);
    ACC acc = ACC_(zero)();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC vb = T_(load)(b + j);
        const VEC term = vb * (T_(load)(x + j) - vshift);
        N_(acc_add)(&acc, T_(select)(FSCE_MASK(vb != zero), term, zero));
    }
    if (j < n) {
        const VEC vb = N_(load_tail)(b + j, n - j, 0);
        const VEC term = vb * (N_(load_tail)(x + j, n - j, 0) - vshift);
        N_(acc_add)(&acc, T_(select)(FSCE_MASK(vb != zero), term, zero));
    }
    return N_(acc_total)(acc);
}

/* out_j = s_j * (g_j - d): the softmax Jacobian-vector product once d = g . s */
FSCE_TARGET static void N_(row_mul_shifted)(const REAL *s, const REAL *g, ptrdiff_t n, REAL d, REAL *out)
{
    const VEC vd = T_(splat)(d);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) T_(store)(out + j, T_(load)(s + j) * (T_(load)(g + j) - vd));
    if (j < n)
        N_(store_tail)(out + j, n - j, N_(load_tail)(s + j, n - j, 0) * (N_(load_tail)(g + j, n - j, 0) - vd));
}

/*
 * Cross-entropy loss (and gradient unless grad is NULL) of n_rows short rows
 * (n <= FSCE_SMALL_ROW_CLASSES) with class-index targets, LANES rows at a
 * time: row r of a block sits in lane r of every vector, so the max and the
 * sum over a row's classes are lane-wise vector operations instead of one
 * horizontal reduction per row.  Same results as the row-by-row path:
 *   lse = m + log sum_j exp(x_j - m),  b = w_t (1 - eps) onehot(t) + eps / n
 *   loss = w_t (1 - eps) (lse - x_t) + eps (lse - mean_j x_j)
 *   grad_j = scale ((w_t (1 - eps) + eps) s_j - eps / n) - scale w_t (1 - eps) [j = t]
 * Rows whose target is ignore_index get loss 0 and gradient 0.  weight may be
 * NULL (all 1); it is only used with eps = 0 (the caller's contract).  When
 * not NULL, row_lse and row_argmax receive every row's lse and first argmax
 * (first NaN for a row with NaN, as numpy.argmax).
 */
FSCE_TARGET static void N_(small_rows)(const REAL *x, ptrdiff_t x_stride, ptrdiff_t n_rows, ptrdiff_t n,
                                       const int64_t *target, int64_t ignore_index, const double *weight,
                                       double eps, double scale, double *row_loss, REAL *grad,
                                       double *row_lse, int64_t *row_argmax)
{
    VEC column[FSCE_SMALL_ROW_CLASSES];
    REAL lane[LANES];
    IREAL lane_bits[LANES];
    double totals[LANES], sums[LANES], others[LANES], coef[LANES];
    for (ptrdiff_t r0 = 0; r0 < n_rows; r0 += LANES) {
        const ptrdiff_t rows = n_rows - r0 < LANES ? n_rows - r0 : LANES;
        VEC best = T_(splat)(-(REAL)INFINITY);
        IVEC any_nan = FSCE_MASK(best != best);
        IVEC best_index = any_nan, first_nan = any_nan;   /* all 0 */
        ACC sum_x = ACC_(zero)(), sum_e = ACC_(zero)();
        for (ptrdiff_t j = 0; j < n; ++j) {                /* gather column j of the block */
            for (ptrdiff_t r = 0; r < LANES; ++r) lane[r] = r < rows ? x[(r0 + r) * x_stride + j] : 0;
            column[j] = T_(load)(lane);
            const IVEC larger = FSCE_MASK(column[j] > best), nan_here = FSCE_MASK(column[j] != column[j]);
            best = T_(select)(larger, column[j], best);
            best_index = (larger & (IREAL)j) | (~larger & best_index);
            first_nan = (nan_here & ~any_nan & (IREAL)j) | (~(nan_here & ~any_nan) & first_nan);
            any_nan |= nan_here;
        }
        const VEC m = T_(select)(any_nan, T_(splat)((REAL)NAN), best);
        for (ptrdiff_t j = 0; j < n; ++j) {                /* column j becomes exp(x_j - m) */
            if (eps != 0.0) N_(acc_add)(&sum_x, (column[j] - m) * (REAL)(1.0 / (double)n)); /* mean, no overflow */
            column[j] = N_(vexp)(column[j] - m);
            N_(acc_add)(&sum_e, column[j]);
        }
        ACC_(lanes)(sum_e, totals, LANES);
        ACC_(lanes)(sum_x, sums, LANES);
        T_(store)(lane, m);
        if (row_argmax != NULL) {
            IREAL max_at[LANES], nan_at[LANES];
            memcpy(max_at, &best_index, sizeof max_at);
            memcpy(nan_at, &first_nan, sizeof nan_at);
            memcpy(lane_bits, &any_nan, sizeof lane_bits);
            for (ptrdiff_t r = 0; r < rows; ++r) row_argmax[r0 + r] = lane_bits[r] ? nan_at[r] : max_at[r];
        }
        for (ptrdiff_t r = 0; r < LANES; ++r) {            /* per row: loss and gradient factor */
            const ptrdiff_t row = r0 + r;
            lane_bits[r] = 0;
            coef[r] = 0.0;
            if (r >= rows) continue;
            if (row_lse != NULL) row_lse[row] = fsce_lse(lane[r], log(totals[r]));
            const int64_t t = target[row];
            if (t == ignore_index) {
                lane_bits[r] = -1;
                row_loss[row] = 0.0;
                continue;
            }
            const double w_t = weight ? weight[t] : 1.0;
            row_loss[row] = fsce_hard_target_loss(w_t * (1.0 - eps), eps, lane[r], x[row * x_stride + t],
                                                  log(totals[r]), -sums[r]);
            coef[r] = scale * (w_t * (1.0 - eps) + eps) / totals[r];
        }
        /* confident rows (S < FSCE_CONFIDENT_TOTAL, rare): lse and loss again from
           log1p(S'), S' summed as row_sum_below_one does, before grad (maybe x) is written */
        int confident_max[LANES] = {0}; /* ... whose target is the max */
        int any_confident = 0;
        for (ptrdiff_t r = 0; r < rows; ++r) any_confident |= totals[r] < FSCE_CONFIDENT_TOTAL;
        if (any_confident) {
            ACC sum_other = ACC_(zero)();
            for (ptrdiff_t j = 0; j < n; ++j)
                N_(acc_add)(&sum_other, T_(select)(FSCE_MASK(column[j] < 1), column[j], T_(splat)(0)));
            ACC_(lanes)(sum_other, others, LANES);
            for (ptrdiff_t r = 0; r < rows; ++r) {
                const ptrdiff_t row = r0 + r;
                if (!(totals[r] < FSCE_CONFIDENT_TOTAL)) continue;
                const double log_total = fsce_log_total(totals[r], others[r]);
                if (row_lse != NULL) row_lse[row] = fsce_lse(lane[r], log_total);
                const int64_t t = target[row];
                if (t == ignore_index) continue;
                const double w_t = weight ? weight[t] : 1.0;
                row_loss[row] = fsce_hard_target_loss(w_t * (1.0 - eps), eps, lane[r], x[row * x_stride + t],
                                                      log_total, -sums[r]);
                confident_max[r] = x[row * x_stride + t] == lane[r];
            }
        }
        if (grad == NULL) continue;
        IVEC ignored;
        memcpy(&ignored, lane_bits, sizeof ignored);
        for (ptrdiff_t r = 0; r < LANES; ++r) lane[r] = (REAL)coef[r];
        const VEC a = T_(load)(lane), c = T_(splat)((REAL)(scale * eps / (double)n));
        for (ptrdiff_t j = 0; j < n; ++j) {                /* scatter the gradient rows */
            T_(store)(lane, T_(select)(ignored, T_(splat)(0), column[j] * a - c));
            for (ptrdiff_t r = 0; r < rows; ++r) grad[(r0 + r) * n + j] = lane[r];
        }
        for (ptrdiff_t r = 0; r < rows; ++r) {
            const int64_t t = target[r0 + r];
            if (t == ignore_index) continue;
            const double target_mass = (weight ? weight[t] : 1.0) * (1.0 - eps);
            REAL *g_t = grad + (r0 + r) * n + t;
            if (confident_max[r])
                *g_t = (REAL)fsce_confident_target_grad(scale, target_mass, eps, 0.0, others[r], totals[r], (double)n);
            else
                *g_t -= (REAL)(scale * target_mass);
        }
    }
}

static const OPS N_(fsce_ops) = {
    N_(row_max), N_(row_find), N_(row_exp_sum), N_(row_affine), N_(row_ay_minus_cb),
    N_(row_sum), N_(row_dot), N_(row_mul_shifted), N_(small_rows), N_(row_sum_below_one),
};

#undef REAL
#undef VEC
#undef IVEC
#undef IREAL
#undef T_
#undef OPS
#undef N_
#undef LANES
#undef ACC
#undef ACC_
#undef EXP_MAGIC
#undef EXP_MANT_BITS
#undef EXP_BIAS
#undef EXP_LN2_HI
#undef EXP_LN2_LO
#undef EXP_CLAMP
#undef EXP_LO
#undef EXP_ONE_STEP_REDUCTION
#undef EXP_LN2
#undef EXP_COEFFS
#undef EXP_DEGREE
