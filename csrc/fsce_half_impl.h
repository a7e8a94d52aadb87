/*
 * fsce_half_impl.h -- 16-bit float rows to float32 rows and back, written
 * once over the vocabulary's f32_load_<format> / f32_store_<format>.
 *
 * Included by each fsce_rows_<isa>.c after fsce_rows_both_dtypes.h, twice:
 * with FSCE_HALF_FORMAT_BF16 1 (bfloat16) and 0 (float16).  Each inclusion
 * defines widen_<format> and narrow_<format> (static) and the table
 * FSCE_TABLE_BF16 or FSCE_TABLE_F16 (named by that file).  The kernels read
 * 16-bit logits a row (or a block of short rows) at a time into a float32 row
 * that stays in cache, compute in float32 exactly as for float32 logits, and
 * narrow a 16-bit gradient from it: the same results as a float32 copy of the
 * logits, without that copy's memory traffic.
 *
 * The passes of a plain row (a class index, no transform: _kernels_half.pxi)
 * read the 16-bit logits themselves, widened in registers: row_max, row_sum and
 * row_exp_sum here are row_max_f32, row_sum_f32 and row_exp_sum_f32 (scale 1) of
 * fsce_rows_impl.h with the 16-bit load, the same vector operations in the same
 * order, so their results are those of the float32 helpers on the widened row,
 * bit for bit.  Tails are widened lane by lane (fsce_half.h, the same values).
 */
#include "fsce_half.h"

#if FSCE_HALF_FORMAT_BF16
#define LOAD16 f32_load_bf16
#define STORE16 f32_store_bf16
#define WIDEN1 fsce_bf16_to_f32
#define NAME16(helper) helper##_bf16
#define TABLE16 FSCE_TABLE_BF16
#else
#define LOAD16 f32_load_f16
#define STORE16 f32_store_f16
#define WIDEN1 fsce_f16_to_f32
#define NAME16(helper) helper##_f16
#define TABLE16 FSCE_TABLE_F16
#endif
#define LANES16 FSCE_F32_LANES

/* the first r < LANES16 values widened, the other lanes pad */
FSCE_INLINE f32v NAME16(load_tail)(const uint16_t *x, ptrdiff_t r, float pad)
{
    float lanes[LANES16];
    for (ptrdiff_t i = 0; i < LANES16; ++i) lanes[i] = i < r ? WIDEN1(x[i]) : pad;
    return f32_load(lanes);
}

/* out_j = x_j widened to float32 (exact) */
static void NAME16(widen)(const uint16_t *x, ptrdiff_t n, float *out)
{
    ptrdiff_t j = 0;
    for (; j + LANES16 <= n; j += LANES16) f32_store(out + j, LOAD16(x + j));
    if (j < n) f32_store_tail(out + j, n - j, NAME16(load_tail)(x + j, n - j, 0));
}

/* row_max_f32 of the widened row */
static float NAME16(row_max)(const uint16_t *x, ptrdiff_t n)
{
    f32v best0 = f32_splat(-INFINITY), best1 = best0;
    ptrdiff_t j = 0;
    for (; j + 2 * LANES16 <= n; j += 2 * LANES16) {
        best0 = f32_max(LOAD16(x + j), best0);
        best1 = f32_max(LOAD16(x + j + LANES16), best1);
    }
    if (j + LANES16 <= n) {
        best0 = f32_max(LOAD16(x + j), best0);
        j += LANES16;
    }
    if (j < n) best1 = f32_max(NAME16(load_tail)(x + j, n - j, -INFINITY), best1);
    return f32_lanes_max(f32_max(best0, best1));
}

/* row_sum_f32 of the widened row: sum_j (x_j - shift) scale in float64 */
static double NAME16(row_sum)(const uint16_t *x, ptrdiff_t n, float shift, float scale)
{
    const f32v vshift = f32_splat(shift), vscale = f32_splat(scale);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES16 <= n; j += LANES16) f32_acc_add(&acc, f32_mul(f32_sub(LOAD16(x + j), vshift), vscale));
    if (j < n) f32_acc_add(&acc, f32_mul(f32_sub(NAME16(load_tail)(x + j, n - j, shift), vshift), vscale));
    return acc_total(acc);
}

/* row_exp_sum_f32 of the widened row with scale 1: sum_j exp(x_j - shift) in float64, each
   exp stored into out (float32) unless NULL; next (may be NULL): the 16-bit row read after
   this one, prefetched meanwhile when the row is 16 KB to 256 KB long (as row_exp_sum_f32
   does for its rows); fill (may be NULL; only with out): the 16-bit row the caller writes
   next from out (a 16-bit gradient), its cache lines fetched meanwhile, so that the
   narrowing pass's stores do not each wait for memory while this compute-bound pass leaves
   it idle (a float32 gradient gets this for free: its exps are stored in place here) */
FSCE_INLINE double NAME16(exp_sum_body)(const uint16_t *x, ptrdiff_t n, float shift, float *out,
                                        const uint16_t *next, const uint16_t *fill)
{
    const f32v vshift = f32_splat(shift);
    acc64 acc = acc_zero();
    ptrdiff_t j = 0;
    for (; j + LANES16 <= n; j += LANES16) {
        if (next) FSCE_PREFETCH(next + j);
        if (fill) FSCE_PREFETCH(fill + j);
        const f32v e = vexp_f32(f32_sub(LOAD16(x + j), vshift));
        if (out) f32_store(out + j, e);
        f32_acc_add(&acc, e);
    }
    if (j < n) {
        const f32v e = vexp_f32(f32_sub(NAME16(load_tail)(x + j, n - j, -INFINITY), vshift));
        if (out) f32_store_tail(out + j, n - j, e);
        f32_acc_add(&acc, e);
    }
    return acc_total(acc);
}

static double NAME16(row_exp_sum)(const uint16_t *x, ptrdiff_t n, float shift, float *out, const uint16_t *next,
                                  const uint16_t *fill)
{
    const size_t bytes = (size_t)n * sizeof(float);
    if (next == NULL || bytes < 16384 || bytes > 262144) next = NULL;
    if (out && fill) return NAME16(exp_sum_body)(x, n, shift, out, next, fill);
    if (next) return out ? NAME16(exp_sum_body)(x, n, shift, out, next, NULL) : NAME16(exp_sum_body)(x, n, shift, NULL, next, NULL);
    return out ? NAME16(exp_sum_body)(x, n, shift, out, NULL, NULL) : NAME16(exp_sum_body)(x, n, shift, NULL, NULL, NULL);
}

/* out_j = x_j rounded to the 16-bit format, to nearest even */
static void NAME16(narrow)(const float *x, ptrdiff_t n, uint16_t *out)
{
    ptrdiff_t j = 0;
    for (; j + LANES16 <= n; j += LANES16) STORE16(out + j, f32_load(x + j));
    if (j < n) {
        uint16_t narrow[LANES16];
        STORE16(narrow, f32_load_tail(x + j, n - j, 0));
        memcpy(out + j, narrow, (size_t)(n - j) * sizeof *out);
    }
}

/* out_j = y_j a - c rounded to the 16-bit format: row_affine_f32 (shift 0, the same
   operations) and narrow in one pass, for a 16-bit gradient */
static void NAME16(affine_narrow)(const float *y, ptrdiff_t n, float a, float c, uint16_t *out)
{
    const f32v va = f32_splat(a), vc = f32_splat(c);
    ptrdiff_t j = 0;
    for (; j + LANES16 <= n; j += LANES16) STORE16(out + j, f32_sub(f32_mul(f32_load(y + j), va), vc));
    if (j < n) {
        uint16_t narrow[LANES16];
        STORE16(narrow, f32_sub(f32_mul(f32_load_tail(y + j, n - j, 0), va), vc));
        memcpy(out + j, narrow, (size_t)(n - j) * sizeof *out);
    }
}

const fsce_ops_half TABLE16 = {
    NAME16(widen), NAME16(narrow), NAME16(row_max), NAME16(row_sum), NAME16(row_exp_sum),
    NAME16(affine_narrow),
};

#undef LOAD16
#undef STORE16
#undef WIDEN1
#undef NAME16
#undef TABLE16
#undef LANES16
