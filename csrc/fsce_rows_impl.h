/*
 * fsce_rows_impl.h -- row helpers, written once, instantiated per dtype and ISA.
 *
 * Included by fsce_rows.c with
 *   FSCE_DOUBLE  0 for float32, 1 for float64
 *   FSCE_ISA     name suffix of the instruction set (baseline, avx2)
 *   FSCE_TARGET  function attribute selecting that instruction set (may be empty)
 *   FSCE_MASKED_TAILS  1 when AVX2 masked loads/stores may be used for row tails
 * Each inclusion defines the helpers as static functions and one table
 * `fsce_ops_<dtype>_<isa>` pointing at them; fsce_rows.c picks a table at run
 * time.  A "row" is n contiguous elements; every helper handles any n >= 0.
 */
#if FSCE_DOUBLE
#define REAL double
#define VEC f64v
#define IVEC i64v
#define IREAL int64_t
#define T_(name) fsce_##name##_f64
#define LANES FSCE_F64_LANES
/* exp: round-to-integer constant 1.5 * 2**52, exponent field, Cody-Waite ln 2 */
#define EXP_MAGIC 6755399441055744.0
#define EXP_MANT_BITS 52
#define EXP_BIAS 1023
#define EXP_LN2_HI 6.93147180369123816490e-01
#define EXP_LN2_LO 1.90821492927058770002e-10
#define EXP_LO -708.39641853226410622 /* log(DBL_MIN): smaller results flush to 0 */
#define EXP_DEGREE 13                 /* Taylor truncation < 1e-17 on |r| <= ln2/2 */
#else
#define REAL float
#define VEC f32v
#define IVEC i32v
#define IREAL int32_t
#define T_(name) fsce_##name##_f32
#define LANES FSCE_F32_LANES
#define EXP_MAGIC 12582912.0f
#define EXP_MANT_BITS 23
#define EXP_BIAS 127
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187045e-06f
#define EXP_LO -87.3365447505f /* log(FLT_MIN) */
#define EXP_DEGREE 7           /* Taylor truncation < 1e-8 on |r| <= ln2/2 */
#endif

#define CAT3_(a, b, c) a##_##b##_##c
#define CAT3(a, b, c) CAT3_(a, b, c)
#if FSCE_DOUBLE
#define N_(name) CAT3(name, f64, FSCE_ISA)
#else
#define N_(name) CAT3(name, f32, FSCE_ISA)
#endif

/*
 * exp(t) lane by lane for t <= 0 (the only arguments the row helpers pass:
 * t = (x - max) * scale), a few ULP accurate, NaN in -> NaN out.
 *   t = n ln2 + r,  n = round(t / ln2),  |r| <= ln2 / 2
 *   exp(t) = 2**n * sum_{k <= EXP_DEGREE} r**k / k!
 * n is rounded by adding 1.5 * 2**mantissa_bits (its integer value then sits
 * in the low mantissa bits) and 2**n is built directly in the exponent field.
 * Results below the smallest normal number are flushed to 0 (exp(-inf) = 0).
 */
FSCE_TARGET FSCE_INLINE VEC N_(vexp)(VEC t)
{
    const VEC lo = T_(splat)(EXP_LO);
    const VEC magic = T_(splat)(EXP_MAGIC);
    const IVEC underflow = FSCE_MASK(t < lo); /* false for NaN */
    const VEC tc = T_(select)(underflow, lo, t);
    const VEC k = tc * (REAL)1.44269504088896340736 + magic; /* log2(e) */
    const VEC n = k - magic;
    const VEC r = (tc - n * EXP_LN2_HI) - n * EXP_LN2_LO;
    REAL inv_factorial = (REAL)1;
    REAL coef[EXP_DEGREE + 1];
    for (int d = 0; d <= EXP_DEGREE; ++d) {
        coef[d] = inv_factorial;               /* 1 / d! */
        inv_factorial /= (REAL)(d + 1);
    }
    VEC p = T_(splat)(coef[EXP_DEGREE]);
    for (int d = EXP_DEGREE - 1; d >= 0; --d) p = p * r + coef[d];
    const IVEC biased = T_(bits)(k) - T_(bits)(magic) + (IREAL)EXP_BIAS;
    const VEC two_n = T_(from_bits)(biased << EXP_MANT_BITS);
    return T_(from_bits)(~underflow & T_(bits)(p * two_n));
}

/*
 * The last r < LANES elements of a row: masked loads and stores with AVX2
 * (no trip through the stack), a small copy loop otherwise.  Lanes past the
 * row read as `pad`.
 */
#if FSCE_MASKED_TAILS
#if FSCE_DOUBLE
#define MASKLOAD(p, m) ((VEC)_mm256_maskload_pd((p), (__m256i)(m)))
#define MASKSTORE(p, m, v) _mm256_maskstore_pd((p), (__m256i)(m), (__m256d)(v))
#else
#define MASKLOAD(p, m) ((VEC)_mm256_maskload_ps((p), (__m256i)(m)))
#define MASKSTORE(p, m, v) _mm256_maskstore_ps((p), (__m256i)(m), (__m256)(v))
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
    return T_(select)(mask, MASKLOAD(p, mask), T_(splat)(pad));
}
FSCE_TARGET FSCE_INLINE void N_(store_tail)(REAL *p, ptrdiff_t r, VEC v) { MASKSTORE(p, N_(tail_mask)(r), v); }
#undef MASKLOAD
#undef MASKSTORE
#else
FSCE_INLINE VEC N_(load_tail)(const REAL *p, ptrdiff_t r, REAL pad) { return T_(load_tail)(p, r, pad); }
FSCE_INLINE void N_(store_tail)(REAL *p, ptrdiff_t r, VEC v) { T_(store_tail)(p, r, v); }
#endif

/* max_j x_j; NaN if any x_j is NaN, -inf for an empty row. */
FSCE_TARGET static REAL N_(row_max)(const REAL *x, ptrdiff_t n)
{
    VEC best = T_(splat)(-(REAL)INFINITY);
    IVEC any_nan = FSCE_MASK(best != best);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC v = T_(load)(x + j);
        best = T_(select)(FSCE_MASK(v > best), v, best);
        any_nan |= FSCE_MASK(v != v);
    }
    if (j < n) {
        const VEC v = N_(load_tail)(x + j, n - j, -(REAL)INFINITY);
        best = T_(select)(FSCE_MASK(v > best), v, best);
        any_nan |= FSCE_MASK(v != v);
    }
    REAL lanes[LANES];
    IREAL nan_lanes[LANES];
    T_(store)(lanes, best);
    memcpy(nan_lanes, &any_nan, sizeof nan_lanes);
    REAL result = -(REAL)INFINITY;
    for (ptrdiff_t i = 0; i < LANES; ++i) {
        if (nan_lanes[i]) return (REAL)NAN;
        if (lanes[i] > result) result = lanes[i];
    }
    return result;
}

/*
 * sum_j exp((x_j - shift) * scale), accumulated in float64.
 * When out is not NULL, out_j = exp((x_j - shift) * scale) is stored too
 * (out may be x itself: each element is read before it is written).
 */
FSCE_TARGET FSCE_INLINE double N_(exp_sum_body)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out)
{
    const VEC vshift = T_(splat)(shift);
    fsce_acc acc = fsce_acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC e = N_(vexp)((T_(load)(x + j) - vshift) * scale);
        if (out) T_(store)(out + j, e);
        T_(acc_add)(&acc, e);
    }
    if (j < n) {
        const VEC e = N_(vexp)((N_(load_tail)(x + j, n - j, -(REAL)INFINITY) - vshift) * scale);
        if (out) N_(store_tail)(out + j, n - j, e);
        T_(acc_add)(&acc, e);
    }
    return fsce_acc_total(acc);
}

FSCE_TARGET static double N_(row_exp_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out)
{
    /* two copies of the loop: with and without the store */
    return out ? N_(exp_sum_body)(x, n, shift, scale, out) : N_(exp_sum_body)(x, n, shift, scale, NULL);
}

/* out_j = (y_j - shift) * a - c  (out may be y) */
FSCE_TARGET static void N_(row_affine)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out)
{
    const VEC vshift = T_(splat)(shift), va = T_(splat)(a), vc = T_(splat)(c);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) T_(store)(out + j, (T_(load)(y + j) - vshift) * va - vc);
    if (j < n) N_(store_tail)(out + j, n - j, (N_(load_tail)(y + j, n - j, 0) - vshift) * va - vc);
}

/* out_j = y_j * a - c * b_j  (out may be y) */
FSCE_TARGET static void N_(row_axpby)(const REAL *y, const REAL *b, ptrdiff_t n, REAL a, REAL c, REAL *out)
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
    fsce_acc acc = fsce_acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) T_(acc_add)(&acc, (T_(load)(x + j) - vshift) * scale);
    if (j < n) T_(acc_add)(&acc, (N_(load_tail)(x + j, n - j, shift) - vshift) * scale); /* padding adds 0 */
    return fsce_acc_total(acc);
}

/*
 * sum_j b_j (x_j - shift) over the j with b_j != 0, accumulated in float64
 * (a zero weight on a masked class contributes 0, not 0 * -inf = NaN).
 */
FSCE_TARGET static double N_(row_dot)(const REAL *x, const REAL *b, ptrdiff_t n, REAL shift)
{
    const VEC zero = T_(splat)(0), vshift = T_(splat)(shift);
    fsce_acc acc = fsce_acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC vb = T_(load)(b + j);
        const VEC term = vb * (T_(load)(x + j) - vshift);
        T_(acc_add)(&acc, T_(select)(FSCE_MASK(vb != zero), term, zero));
    }
    if (j < n) {
        const VEC vb = N_(load_tail)(b + j, n - j, 0);
        const VEC term = vb * (N_(load_tail)(x + j, n - j, 0) - vshift);
        T_(acc_add)(&acc, T_(select)(FSCE_MASK(vb != zero), term, zero));
    }
    return fsce_acc_total(acc);
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
    double totals[LANES], sums[LANES], coef[LANES];
    for (ptrdiff_t r0 = 0; r0 < n_rows; r0 += LANES) {
        const ptrdiff_t rows = n_rows - r0 < LANES ? n_rows - r0 : LANES;
        VEC best = T_(splat)(-(REAL)INFINITY);
        IVEC any_nan = FSCE_MASK(best != best);
        IVEC best_index = any_nan, first_nan = any_nan;   /* all 0 */
        fsce_acc sum_x = fsce_acc_zero(), sum_e = fsce_acc_zero();
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
            if (eps != 0.0) T_(acc_add)(&sum_x, (column[j] - m) * (REAL)(1.0 / (double)n)); /* mean, no overflow */
            column[j] = N_(vexp)(column[j] - m);
            T_(acc_add)(&sum_e, column[j]);
        }
        fsce_acc_lanes(sum_e, totals, LANES);
        fsce_acc_lanes(sum_x, sums, LANES);
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
            if (row_lse != NULL) row_lse[row] = isinf(lane[r]) ? lane[r] : lane[r] + log(totals[r]);
            const int64_t t = target[row];
            if (t == ignore_index) {
                lane_bits[r] = -1;
                row_loss[row] = 0.0;
                continue;
            }
            const double w_t = weight ? weight[t] : 1.0, m_r = lane[r];
            const double log_total = log(totals[r]);
            const double target_mass = w_t * (1.0 - eps);  /* a 0 coefficient adds 0, even times inf */
            row_loss[row] = (target_mass != 0.0 ? target_mass * ((m_r - (double)x[row * x_stride + t]) + log_total) : 0.0)
                            + (eps != 0.0 ? eps * (log_total - sums[r]) : 0.0);
            coef[r] = scale * (w_t * (1.0 - eps) + eps) / totals[r];
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
            if (t != ignore_index)
                grad[(r0 + r) * n + t] -= (REAL)(scale * (weight ? weight[t] : 1.0) * (1.0 - eps));
        }
    }
}

static const T_(ops) N_(fsce_ops) = {
    N_(row_max), N_(row_exp_sum), N_(row_affine), N_(row_axpby),
    N_(row_sum), N_(row_dot), N_(row_mul_shifted), N_(small_rows),
};

#undef REAL
#undef VEC
#undef IVEC
#undef IREAL
#undef T_
#undef N_
#undef LANES
#undef EXP_MAGIC
#undef EXP_MANT_BITS
#undef EXP_BIAS
#undef EXP_LN2_HI
#undef EXP_LN2_LO
#undef EXP_LO
#undef EXP_DEGREE
