/*
 * fsce_rows_impl.h -- the row helpers, written once over the vector
 * vocabulary of fsce_simd.h, instantiated per dtype.
 *
 * Included by each fsce_rows_<isa>.c after its instruction-set header, twice:
 * with FSCE_DOUBLE 0 (float32) and 1 (float64).  Each inclusion defines the
 * helpers as static functions named <helper>_f32 or <helper>_f64 (static in
 * the instruction set's own translation unit) and the table FSCE_TABLE_F32 or
 * FSCE_TABLE_F64 (named by that file, e.g. fsce_ops_f32_avx2) pointing at
 * them.  A "row" is n contiguous elements; every helper handles any n >= 0.
 * In the code, V(op) is the vocabulary's D_op and NAME(helper) the helper's
 * dtype-suffixed name.
 */
#if FSCE_DOUBLE
#define REAL double
#define VEC f64v
#define MASK f64m
#define LANES FSCE_F64_LANES
#define V(op) f64_##op
#define NAME(helper) helper##_f64
#define TABLE FSCE_TABLE_F64
#define TABLE_TYPE fsce_ops_f64
/* exp: round-to-integer constant 1.5 * 2**52 (its bits: 0x4338 << 48), ln 2 in two parts
   (Cody-Waite) */
#define EXP_MAGIC 6755399441055744.0
#define EXP_MAGIC_BITS INT64_C(0x4338000000000000)
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
#define VEC f32v
#define MASK f32m
#define LANES FSCE_F32_LANES
#define V(op) f32_##op
#define NAME(helper) helper##_f32
#define TABLE FSCE_TABLE_F32
#define TABLE_TYPE fsce_ops_f32
/* round-to-integer constant 1.5 * 2**23 (its bits: 0x4B40 << 16) */
#define EXP_MAGIC 12582912.0f
#define EXP_MAGIC_BITS INT32_C(0x4B400000)
#define EXP_BIAS 127
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187045e-06f
/* with FMA, r = t - n ln2 in one rounding: ln2's own rounding moves r by |n| 1.9e-9,
   about 5 ULP in results near the smallest normal, 2.4 ULP above 1e-3 (the exhaustive
   float32 sweep of tests/test_exp.py) */
#define EXP_ONE_STEP_REDUCTION FSCE_EXP_ONE_STEP_REDUCTION
#define EXP_LN2 0.693147180559945309f
#define EXP_CLAMP -104.0f
#define EXP_LO -87.3365447505f
/* minimax on |r| <= ln2/2, relative error 9.3e-8 (about one float32 ULP) */
#define EXP_DEGREE 5
#define EXP_COEFFS {0.9999997036606623f, 0.4999914274688023f, 0.1666764397516011f, \
                    0.04189885226322740f, 0.008290142103835597f}
#endif

/*
 * exp(t) lane by lane for t <= 0 or NaN, a few ULP accurate, NaN in -> NaN out.
 * t <= 0 is the callers' contract: the row helpers pass t = (x - max) * scale,
 * and log_softmax_backward takes rows with a log_s > 0 elsewhere.  (Above
 * about ln(largest float) the portable 2**n would overflow its exponent field.)
 *   t = n ln2 + r,  n = round(t / ln2),  |r| <= ln2 / 2
 *   exp(t) = 2**n p(r),  p(r) = 1 + c1 r + ... + cD r**D  (EXP_COEFFS)
 * n is rounded by adding EXP_MAGIC = 1.5 * 2**mantissa_bits (its integer value
 * then sits in the low mantissa bits of k); exp_clamp and exp_scale (the
 * instruction set's header) keep the reduction finite down to t = -inf and
 * make 2**n p, flushed to 0 below the smallest normal number: exp(-inf) = 0.
 */
FSCE_INLINE VEC NAME(vexp)(VEC t)
{
    static const REAL coef[EXP_DEGREE] = EXP_COEFFS;
    const VEC magic = V(splat)(EXP_MAGIC);
    const VEC tc = V(exp_clamp)(t, EXP_CLAMP);
    const VEC k = V(add)(V(mul)(tc, V(splat)((REAL)1.44269504088896340736)), magic); /* log2(e) */
    const VEC n = V(sub)(k, magic);
#if EXP_ONE_STEP_REDUCTION
    const VEC r = V(neg_mul_add)(n, V(splat)(EXP_LN2), tc);
#else
    /* n * EXP_LN2_HI is exact */
    const VEC r = V(sub)(V(sub)(tc, V(mul)(n, V(splat)(EXP_LN2_HI))), V(mul)(n, V(splat)(EXP_LN2_LO)));
#endif
    /* p(r) = sum_k a_k r**k (a_0 = 1, a_k = coef[k - 1]) by Estrin's scheme: the pairs
       q_i = a_2i + a_2i+1 r, then Horner in r**2 over them (half the dependency chain of
       Horner in r, which bounds the throughput: the scheduler holds few iterations) */
    const VEC r2 = V(mul)(r, r);
    VEC p = V(splat)(0);
    for (int i = EXP_DEGREE / 2; i >= 0; --i) {
        const VEC even = V(splat)(i == 0 ? (REAL)1 : coef[2 * i - 1]);
        const VEC q = 2 * i + 1 <= EXP_DEGREE ? V(add)(V(mul)(r, V(splat)(coef[2 * i])), even) : even;
        p = i == EXP_DEGREE / 2 ? q : V(add)(V(mul)(p, r2), q);
    }
    return V(exp_scale)(t, p, k, n, EXP_LO, EXP_MAGIC_BITS - EXP_BIAS);
}

#ifndef FSCE_LOG_TOTALS_DEFINED /* once per translation unit: float64 for both dtypes */
#define FSCE_LOG_TOTALS_DEFINED
#if FSCE_SMALL_ROW_CLASSES >= 181 /* sqrt2 2**7: fsce_log_totals' halving steps reach no further */
#error "fsce_log_totals needs more halving steps for rows this long"
#endif
/*
 * out_i = log S_i for n float64 row sums 1 <= S_i <= FSCE_SMALL_ROW_CLASSES (a short
 * row's exps, each at most 1, among them the max's own exp(0) = 1) or NaN,
 * FSCE_F64_LANES at a time (n a multiple of it), without a libm call per row:
 *   S = 2**k f,  f in [1/sqrt2, sqrt2)  (k by halving steps of 2**4, 2**2, 2: enough
 *                                        below sqrt2 2**7; exact: powers of two)
 *   log S = k ln2 + log f,  ln2 in two parts (k ln2_hi exact)
 *   log f = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ... + s^20/21),  s = (f - 1) / (f + 1)
 * |s| <= (sqrt2 - 1) / (sqrt2 + 1) = 0.172, so the series' remainder (s^22/23) is below
 * 1e-18 relative: a few rounding errors in all, within a few ULP of a correctly
 * rounded log (libm's last bit may differ).
 */
static void fsce_log_totals(const double *totals, double *out, ptrdiff_t n)
{
    static const double step_at[3] = {/* sqrt2 2**(p-1) for p = 4, 2, 1 */
        11.313708498984761, 2.8284271247461903, 1.4142135623730951};
    static const double step_scale[3] = {0x1p-4, 0x1p-2, 0x1p-1};
    static const double step_k[3] = {4, 2, 1};
    const f64v one = f64_splat(1.0);
    for (ptrdiff_t i = 0; i < n; i += FSCE_F64_LANES) {
        f64v f = f64_load(totals + i), k = f64_splat(0.0);
        for (int q = 0; q < 3; ++q) {
            const f64m big = f64_ge(f, f64_splat(step_at[q]));
            f = f64_select(big, f64_mul(f, f64_splat(step_scale[q])), f);
            k = f64_select(big, f64_add(k, f64_splat(step_k[q])), k);
        }
        const f64v s = f64_div(f64_sub(f, one), f64_add(f, one)), s2 = f64_mul(s, s);
        f64v series = f64_splat(1.0 / 21.0);
        for (int j = 19; j >= 1; j -= 2) series = f64_add(f64_mul(series, s2), f64_splat(1.0 / (double)j));
        const f64v log_f = f64_mul(f64_add(s, s), series);
        const f64v k_ln2_lo = f64_mul(k, f64_splat(1.90821492927058770002e-10));
        f64_store(out + i, f64_add(f64_mul(k, f64_splat(6.93147180369123816490e-01)), f64_add(k_ln2_lo, log_f)));
    }
}
#endif

/*
 * The largest non-NaN x_j (-inf if there is none).  NaNs are skipped here
 * because they reach every exp-based result anyway, through
 * exp(NaN - max) = NaN; callers that need to know about them ask row_find.
 * Two running maxima keep two loads in flight.
 */
static REAL NAME(row_max)(const REAL *x, ptrdiff_t n)
{
    VEC best0 = V(splat)(-(REAL)INFINITY), best1 = best0;
    ptrdiff_t j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        best0 = V(max)(V(load)(x + j), best0);
        best1 = V(max)(V(load)(x + j + LANES), best1);
    }
    if (j + LANES <= n) {
        best0 = V(max)(V(load)(x + j), best0);
        j += LANES;
    }
    if (j < n) best1 = V(max)(V(load_tail)(x + j, n - j, -(REAL)INFINITY), best1);
    return V(lanes_max)(V(max)(best0, best1));
}

/*
 * Index of the first j with x_j == value or x_j NaN (so the first NaN when
 * value is NaN); -1 if there is none.  Whole vectors are tested a block at a
 * time, the block holding a match is then searched element by element.
 */
static ptrdiff_t NAME(row_find)(const REAL *x, ptrdiff_t n, REAL value)
{
    const VEC v = V(splat)(value);
    ptrdiff_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        MASK hit = V(lt)(v, v); /* no lane set (v < v is false, NaN or not) */
        for (ptrdiff_t q = 0; q < 4 * LANES; q += LANES) {
            const VEC y = V(load)(x + j + q);
            hit = V(mask_or)(hit, V(mask_or)(V(eq)(y, v), V(ne)(y, y)));
        }
        if (V(mask_any)(hit)) break;
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
FSCE_INLINE double NAME(exp_sum_body)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out,
                                      int scaled, const REAL *next)
{
    const VEC vshift = V(splat)(shift), vscale = V(splat)(scale);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        if (next) FSCE_PREFETCH(next + j);
        const VEC t = V(sub)(V(load)(x + j), vshift);
        const VEC e = NAME(vexp)(scaled ? V(mul)(t, vscale) : t);
        if (out) V(store)(out + j, e);
        V(acc_add)(&acc, e);
    }
    if (j < n) {
        const VEC t = V(sub)(V(load_tail)(x + j, n - j, -(REAL)INFINITY), vshift);
        const VEC e = NAME(vexp)(scaled ? V(mul)(t, vscale) : t);
        if (out) V(store_tail)(out + j, n - j, e);
        V(acc_add)(&acc, e);
    }
    return acc_total(acc);
}

/* one copy of the loop per case: with or without the store and the scaling */
FSCE_INLINE double NAME(exp_sum_cases)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out,
                                       const REAL *next)
{
    if (scale == 1)
        return out ? NAME(exp_sum_body)(x, n, shift, 1, out, 0, next)
                   : NAME(exp_sum_body)(x, n, shift, 1, NULL, 0, next);
    return out ? NAME(exp_sum_body)(x, n, shift, scale, out, 1, next)
               : NAME(exp_sum_body)(x, n, shift, scale, NULL, 1, next);
}

static double NAME(row_exp_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out, const REAL *next)
{
    const size_t bytes = (size_t)n * sizeof(REAL);
    if (next != NULL && bytes >= PREFETCH_MIN_BYTES && bytes <= PREFETCH_MAX_BYTES)
        return NAME(exp_sum_cases)(x, n, shift, scale, out, next);
    return NAME(exp_sum_cases)(x, n, shift, scale, out, NULL); /* no prefetch in the loop */
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
static double NAME(row_sum_below_one)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, int exponentiate)
{
    const VEC vshift = V(splat)(shift), vscale = V(splat)(scale), one = V(splat)(1), zero = V(splat)(0);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC e = exponentiate ? NAME(vexp)(V(mul)(V(sub)(V(load)(x + j), vshift), vscale)) : V(load)(x + j);
        V(acc_add)(&acc, V(select)(V(lt)(e, one), e, zero));
    }
    if (j < n) {
        const VEC e = exponentiate
            ? NAME(vexp)(V(mul)(V(sub)(V(load_tail)(x + j, n - j, -(REAL)INFINITY), vshift), vscale))
            : V(load_tail)(x + j, n - j, 0);
        V(acc_add)(&acc, V(select)(V(lt)(e, one), e, zero));
    }
    return acc_total(acc);
}

/* out_j = (y_j - shift) * a - c  (out may be y) */
FSCE_INLINE void NAME(affine_body)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out)
{
    const VEC vshift = V(splat)(shift), va = V(splat)(a), vc = V(splat)(c);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) V(store)(out + j, V(sub)(V(mul)(V(sub)(V(load)(y + j), vshift), va), vc));
    if (j < n)
        V(store_tail)(out + j, n - j, V(sub)(V(mul)(V(sub)(V(load_tail)(y + j, n - j, 0), vshift), va), vc));
}

static void NAME(row_affine)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out)
{
    /* y - 0 = y for every y, so the subtraction is left out when shift is 0 */
    if (shift == 0) NAME(affine_body)(y, n, 0, a, c, out);
    else NAME(affine_body)(y, n, shift, a, c, out);
}

/* out_j = y_j * a - c * b_j  (out may be y), the subtraction fused with y_j * a where the
   instruction set has FMA */
static void NAME(row_ay_minus_cb)(const REAL *y, const REAL *b, ptrdiff_t n, REAL a, REAL c, REAL *out)
{
    const VEC va = V(splat)(a), vc = V(splat)(c);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES)
        V(store)(out + j, V(mul_sub)(V(load)(y + j), va, V(mul)(vc, V(load)(b + j))));
    if (j < n)
        V(store_tail)(out + j, n - j, V(mul_sub)(V(load_tail)(y + j, n - j, 0), va, V(mul)(vc, V(load_tail)(b + j, n - j, 0))));
}

/*
 * sum_j (x_j - shift) * scale, accumulated in float64: shifting by the max and
 * scaling by 1 / n first lets a mean of values near the largest float not overflow.
 */
static double NAME(row_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale)
{
    const VEC vshift = V(splat)(shift), vscale = V(splat)(scale);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) V(acc_add)(&acc, V(mul)(V(sub)(V(load)(x + j), vshift), vscale));
    if (j < n) /* padding adds 0 */
        V(acc_add)(&acc, V(mul)(V(sub)(V(load_tail)(x + j, n - j, shift), vshift), vscale));
    return acc_total(acc);
}

/*
 * sum_j b_j (x_j - shift) over the j with b_j != 0, accumulated in float64
 * (a zero weight on a masked class contributes 0, not 0 * -inf = NaN).
 */
static double NAME(row_dot)(const REAL *x, const REAL *b, ptrdiff_t n, REAL shift)
{
    const VEC zero = V(splat)(0), vshift = V(splat)(shift);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        const VEC vb = V(load)(b + j);
        const VEC term = V(mul)(vb, V(sub)(V(load)(x + j), vshift));
        V(acc_add)(&acc, V(select)(V(ne)(vb, zero), term, zero));
    }
    if (j < n) {
        const VEC vb = V(load_tail)(b + j, n - j, 0);
        const VEC term = V(mul)(vb, V(sub)(V(load_tail)(x + j, n - j, 0), vshift));
        V(acc_add)(&acc, V(select)(V(ne)(vb, zero), term, zero));
    }
    return acc_total(acc);
}

/* out_j = s_j * (g_j - d): the softmax Jacobian-vector product once d = g . s */
static void NAME(row_mul_shifted)(const REAL *s, const REAL *g, ptrdiff_t n, REAL d, REAL *out)
{
    const VEC vd = V(splat)(d);
    ptrdiff_t j = 0;
    for (; j + LANES <= n; j += LANES) V(store)(out + j, V(mul)(V(load)(s + j), V(sub)(V(load)(g + j), vd)));
    if (j < n)
        V(store_tail)(out + j, n - j, V(mul)(V(load_tail)(s + j, n - j, 0), V(sub)(V(load_tail)(g + j, n - j, 0), vd)));
}

/*
 * m = max_j z_j as the shift of lse = m + log sum_j exp(z_j - m): NaN when m is
 * infinite and the row holds a NaN (beside a finite m a NaN reaches the sum by itself).
 */
static REAL NAME(row_max_for_lse)(const REAL *z, ptrdiff_t n)
{
    const REAL m = NAME(row_max)(z, n);
    if ((m == (REAL)INFINITY || m == -(REAL)INFINITY) && NAME(row_find)(z, n, (REAL)NAN) >= 0) return (REAL)NAN;
    return m;
}

/*
 * log S for the S = total that row_exp_sum returned for this row.  S = 1 + S', the 1
 * being the max's own exp(0); log(S) loses the digits of S' below the float64 epsilon
 * (a confident row), so below FSCE_CONFIDENT_TOTAL S' is summed again without the 1
 * (row_sum_below_one over the stored terms, or over exp((x_j - shift) scale) when
 * exponentiate) and log S = log1p(S').  *other receives S' there, -1 elsewhere.
 */
static double NAME(row_log_total)(const REAL *terms, ptrdiff_t n, REAL shift, REAL scale, int exponentiate,
                                  double total, double *other)
{
    *other = total < FSCE_CONFIDENT_TOTAL ? NAME(row_sum_below_one)(terms, n, shift, scale, exponentiate) : -1.0;
    return fsce_log_total(total, *other);
}

/* lse = log sum_j exp(z_j) of one row (next: the row read after it, or NULL) */
static double NAME(row_lse)(const REAL *z, ptrdiff_t n, const REAL *next)
{
    const REAL m = NAME(row_max_for_lse)(z, n);
    double other;
    if (!isfinite(m)) return m; /* +-inf (fsce_lse), or NaN */
    return fsce_lse(m, NAME(row_log_total)(z, n, m, 1, 1, NAME(row_exp_sum)(z, n, m, 1, NULL, next), &other));
}

/*
 * The end of a class-index row once its passes are done (sums: its max m, z_t, m -
 * mean_j z_j, S = total, log S = log_total and S' = other for a confident row, else
 * -1): lse (+ z_shift) into *lse, the gradient into grad (holding the row's exps; NULL:
 * none), and the loss returned.  With A = w_t (1 - eps) + eps and lambda the z-loss:
 *   loss   = w_t (1 - eps) (lse - z_t) + eps (lse - mean_j z_j) + lambda lse^2
 *   grad_j = scale ((A + 2 lambda lse) s_j - eps / n) - scale w_t (1 - eps) [j = t]
 */
static double NAME(hard_row_end)(ptrdiff_t n, int64_t t, const fsce_hard_targets *targets,
                                 const fsce_row_sums *sums, double z_shift, REAL *grad, double *lse)
{
    const double eps = targets->eps, scale = targets->scale;
    const double target_mass = (targets->weight ? targets->weight[t] : 1.0) * (1.0 - eps);
    *lse = fsce_lse(sums->m, sums->log_total) + z_shift;
    const double z_loss_term = fsce_weighted(2.0 * targets->z_loss, *lse);
    if (grad) {
        NAME(row_affine)(grad, n, 0, (REAL)(scale * (target_mass + eps + z_loss_term) / sums->total),
                         (REAL)(scale * eps / (double)n), grad);
        if (sums->other >= 0.0 && sums->z_t == sums->m) /* a confident row whose target is the max */
            grad[t] = (REAL)fsce_confident_target_grad(scale, target_mass, eps, z_loss_term, sums->other,
                                                       sums->total, (double)n);
        else
            grad[t] -= (REAL)(scale * target_mass);
    }
    return fsce_hard_target_loss(target_mass, eps, sums->m, sums->z_t, sums->log_total, sums->mean_gap)
           + fsce_weighted(targets->z_loss, *lse * *lse);
}

/*
 * Cross-entropy of n_rows rows of n classes with class-index targets, row by row,
 * loss into row_loss, gradient into grad (rows n apart; NULL: loss only; may be z
 * itself) and lse into row_lse (may be NULL).  z is each row's transformed logits
 * minus z_shift (the loss does not depend on a shift; lse does), rows z_stride
 * apart; next is the row read after the last one (NULL if none), prefetched meanwhile.
 * Per row b = w_t (1 - eps) onehot(t) + eps / n, finished by hard_row_end; a row
 * whose target is ignore_index gets loss 0 and gradient 0 (and its lse).  Every
 * helper is inlined: a short row costs no call per step.
 */
static void NAME(hard_rows)(const REAL *z, ptrdiff_t z_stride, ptrdiff_t n_rows, ptrdiff_t n,
                            const fsce_hard_targets *targets, double z_shift, double *row_loss, REAL *grad,
                            double *row_lse, const REAL *next)
{
    const double eps = targets->eps;
    for (ptrdiff_t i = 0; i < n_rows; ++i, z += z_stride) {
        const REAL *after = i + 1 < n_rows ? z + z_stride : next;
        REAL *g = grad ? grad + i * n : NULL;
        const int64_t t = targets->target[i];
        if (t == targets->ignore_index) {
            if (row_lse) row_lse[i] = NAME(row_lse)(z, n, after) + z_shift; /* before g (maybe z) is zeroed */
            if (g) memset(g, 0, (size_t)n * sizeof(REAL));
            row_loss[i] = 0.0;
            continue;
        }
        const REAL m = NAME(row_max_for_lse)(z, n);
        const double z_t = z[t]; /* read before g may overwrite z */
        /* m - mean_j z_j, for smoothing: shifted and scaled, no overflow */
        const double mean_gap = eps != 0.0 ? -NAME(row_sum)(z, n, m, (REAL)(1.0 / (double)n)) : 0.0;
        fsce_row_sums sums = {m, z_t, mean_gap, NAME(row_exp_sum)(z, n, m, 1, g, after), 0.0, 0.0};
        sums.log_total = NAME(row_log_total)(g ? g : z, n, m, 1, g == NULL, sums.total, &sums.other);
        double lse;
        row_loss[i] = NAME(hard_row_end)(n, t, targets, &sums, z_shift, g, &lse);
        if (row_lse) row_lse[i] = lse;
    }
}

/*
 * Cross-entropy loss (and gradient unless grad is NULL) of n_rows short rows
 * (n <= FSCE_SMALL_ROW_CLASSES) with class-index targets, LANES rows at a
 * time: row r of a block sits in lane r of every vector, so the max and the
 * sum over a row's classes are lane-wise vector operations instead of one
 * horizontal reduction per row.  The block's rows are read LANES classes at a
 * time and transposed in registers into columns (column j: class j of every
 * row), kept in L1; the gradient's columns are transposed back into rows.
 *   lse = m + log sum_j exp(x_j - m),  b = w_t (1 - eps) onehot(t) + eps / n
 *   loss = w_t (1 - eps) (lse - x_t) + eps (lse - mean_j x_j)
 *   grad_j = scale ((w_t (1 - eps) + eps) s_j - eps / n) - scale w_t (1 - eps) [j = t]
 * Each row's sums run over its classes in order (one float64 lane per row), so
 * a row's results do not depend on the rows beside it: lanes past the last row
 * read a row of zeros.  Rows whose target is ignore_index get loss 0 and
 * gradient 0.  weight may be NULL (all 1); it is only used with eps = 0 (the
 * caller's contract).  When not NULL, row_lse and row_argmax receive every
 * row's lse and first argmax (first NaN for a row with NaN, as numpy.argmax).
 * Class indices are carried in REAL lanes (exact: at most FSCE_SMALL_ROW_CLASSES).
 */
static void NAME(small_rows)(const REAL *x, ptrdiff_t x_stride, ptrdiff_t n_rows, ptrdiff_t n,
                             const int64_t *target, int64_t ignore_index, const double *weight, double eps,
                             double scale, double *row_loss, REAL *grad, double *row_lse, int64_t *row_argmax)
{
    enum { COLUMNS = (FSCE_SMALL_ROW_CLASSES + LANES - 1) / LANES * LANES };
    static const REAL zero_row[COLUMNS];
    VEC column[COLUMNS];
    REAL lane[LANES], ignored_lanes[LANES];
    double totals[LANES], log_totals[LANES], sums[LANES], others[LANES], coef[LANES];
    const VEC zero = V(splat)(0), one = V(splat)(1);
    for (ptrdiff_t r0 = 0; r0 < n_rows; r0 += LANES) {
        const ptrdiff_t rows = n_rows - r0 < LANES ? n_rows - r0 : LANES;
        const REAL *row[LANES];
        for (ptrdiff_t r = 0; r < LANES; ++r) row[r] = r < rows ? x + (r0 + r) * x_stride : zero_row;
        ptrdiff_t j = 0;
        for (; j + LANES <= n; j += LANES) { /* LANES columns: the rows' vectors transposed */
            for (ptrdiff_t r = 0; r < LANES; ++r) column[j + r] = V(load)(row[r] + j);
            V(transpose)(column + j);
        }
        for (; j < n; ++j) {                 /* the last few columns one by one */
            if (rows == LANES) {
                column[j] = V(gather)(row[0] + j, x_stride);
            } else {
                for (ptrdiff_t r = 0; r < LANES; ++r) lane[r] = row[r][j];
                column[j] = V(load)(lane);
            }
        }
        VEC best = V(splat)(-(REAL)INFINITY), best_index = zero, first_nan = zero, index = zero;
        MASK any_nan = V(lt)(zero, zero); /* no lane set */
        if (row_argmax == NULL) { /* two running maxima: half the dependency chain */
            VEC other_best = best;
            MASK other_nan = any_nan;
            ptrdiff_t j = 0;
            for (; j + 2 <= n; j += 2) {
                any_nan = V(mask_or)(any_nan, V(ne)(column[j], column[j]));
                best = V(select)(V(gt)(column[j], best), column[j], best);
                other_nan = V(mask_or)(other_nan, V(ne)(column[j + 1], column[j + 1]));
                other_best = V(select)(V(gt)(column[j + 1], other_best), column[j + 1], other_best);
            }
            if (j < n) {
                any_nan = V(mask_or)(any_nan, V(ne)(column[j], column[j]));
                best = V(select)(V(gt)(column[j], best), column[j], best);
            }
            any_nan = V(mask_or)(any_nan, other_nan);
            best = V(select)(V(gt)(other_best, best), other_best, best);
        } else {
            for (ptrdiff_t j = 0; j < n; ++j, index = V(add)(index, one)) {
                const MASK larger = V(gt)(column[j], best), nan_here = V(ne)(column[j], column[j]);
                best = V(select)(larger, column[j], best);
                best_index = V(select)(larger, index, best_index);
                first_nan = V(select)(any_nan, first_nan, V(select)(nan_here, index, first_nan));
                any_nan = V(mask_or)(any_nan, nan_here);
            }
        }
        const VEC m = V(select)(any_nan, V(splat)((REAL)NAN), best);
        acc64 sum_x = acc_zero(), sum_e = acc_zero();
        for (ptrdiff_t j = 0; j < n; ++j) {                /* column j becomes exp(x_j - m) */
            if (eps != 0.0) /* the mean, without overflow */
                V(acc_add)(&sum_x, V(mul)(V(sub)(column[j], m), V(splat)((REAL)(1.0 / (double)n))));
            column[j] = NAME(vexp)(V(sub)(column[j], m));
            V(acc_add)(&sum_e, column[j]);
        }
        acc_lanes(sum_e, totals, LANES);
        acc_lanes(sum_x, sums, LANES);
        V(store)(lane, m);
        if (row_argmax != NULL) {
            REAL max_at[LANES], nan_at[LANES], has_nan[LANES];
            V(store)(max_at, best_index);
            V(store)(nan_at, first_nan);
            V(store)(has_nan, V(select)(any_nan, one, zero));
            for (ptrdiff_t r = 0; r < rows; ++r)
                row_argmax[r0 + r] = (int64_t)(has_nan[r] != 0 ? nan_at[r] : max_at[r]);
        }
        fsce_log_totals(totals, log_totals, LANES);
        for (ptrdiff_t r = 0; r < LANES; ++r) {            /* per row: loss and gradient factor */
            const ptrdiff_t i = r0 + r;
            ignored_lanes[r] = 0;
            coef[r] = 0.0;
            if (r >= rows) continue;
            if (row_lse != NULL) row_lse[i] = fsce_lse(lane[r], log_totals[r]);
            const int64_t t = target[i];
            if (t == ignore_index) {
                ignored_lanes[r] = 1;
                row_loss[i] = 0.0;
                continue;
            }
            const double w_t = weight ? weight[t] : 1.0;
            row_loss[i] = fsce_hard_target_loss(w_t * (1.0 - eps), eps, lane[r], row[r][t], log_totals[r],
                                                -sums[r]);
            coef[r] = scale * (w_t * (1.0 - eps) + eps) / totals[r];
        }
        /* confident rows (S < FSCE_CONFIDENT_TOTAL, rare): lse and loss again from
           log1p(S'), S' summed as row_sum_below_one does, before grad (maybe x) is written */
        int confident_max[LANES] = {0}; /* ... whose target is the max */
        int any_confident = 0;
        for (ptrdiff_t r = 0; r < rows; ++r) any_confident |= totals[r] < FSCE_CONFIDENT_TOTAL;
        if (any_confident) {
            acc64 sum_other = acc_zero();
            for (ptrdiff_t j = 0; j < n; ++j) V(acc_add)(&sum_other, V(select)(V(lt)(column[j], one), column[j], zero));
            acc_lanes(sum_other, others, LANES);
            for (ptrdiff_t r = 0; r < rows; ++r) {
                const ptrdiff_t i = r0 + r;
                if (!(totals[r] < FSCE_CONFIDENT_TOTAL)) continue;
                const double log_total = fsce_log_total(totals[r], others[r]);
                if (row_lse != NULL) row_lse[i] = fsce_lse(lane[r], log_total);
                const int64_t t = target[i];
                if (t == ignore_index) continue;
                const double w_t = weight ? weight[t] : 1.0;
                row_loss[i] = fsce_hard_target_loss(w_t * (1.0 - eps), eps, lane[r], row[r][t], log_total, -sums[r]);
                confident_max[r] = row[r][t] == lane[r];
            }
        }
        if (grad == NULL) continue;
        const MASK ignored = V(ne)(V(load)(ignored_lanes), zero);
        for (ptrdiff_t r = 0; r < LANES; ++r) lane[r] = (REAL)coef[r];
        const VEC a = V(load)(lane), c = V(splat)((REAL)(scale * eps / (double)n));
        for (j = 0; j < n; ++j) column[j] = V(select)(ignored, zero, V(sub)(V(mul)(column[j], a), c));
        for (j = 0; j + LANES <= n; j += LANES) {          /* the gradient's columns, back into rows */
            V(transpose)(column + j);
            for (ptrdiff_t r = 0; r < rows; ++r) V(store)(grad + (r0 + r) * n + j, column[j + r]);
        }
        for (; j < n; ++j) {
            V(store)(lane, column[j]);
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

const TABLE_TYPE TABLE = {
    NAME(row_max), NAME(row_find), NAME(row_exp_sum), NAME(row_affine), NAME(row_ay_minus_cb),
    NAME(row_sum), NAME(row_dot), NAME(row_mul_shifted), NAME(small_rows), NAME(row_max_for_lse),
    NAME(row_log_total), NAME(row_lse), NAME(hard_row_end), NAME(hard_rows),
};

#undef REAL
#undef VEC
#undef MASK
#undef LANES
#undef V
#undef NAME
#undef TABLE
#undef TABLE_TYPE
#undef EXP_MAGIC
#undef EXP_MAGIC_BITS
#undef EXP_BIAS
#undef EXP_LN2_HI
#undef EXP_LN2_LO
#undef EXP_CLAMP
#undef EXP_LO
#undef EXP_ONE_STEP_REDUCTION
#undef EXP_LN2
#undef EXP_COEFFS
#undef EXP_DEGREE
