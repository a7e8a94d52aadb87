/*
 * fsce_simd_scalar.h -- the vocabulary of fsce_simd.h one lane wide, in
 * plain C: the baseline of a platform without a vector header here (and of
 * the build with FSCE_SCALAR_ONLY, which tests this code on any machine).
 * A "vector" is one float or double, a mask an int; the results are those
 * of the SSE2 path bit for bit.
 */
#include <math.h>

#include "fsce_half.h"
#include "fsce_simd.h"

#define FSCE_F32_LANES 1
#define FSCE_F64_LANES 1
#define FSCE_EXP_ONE_STEP_REDUCTION 0

typedef float f32v;
typedef double f64v;
typedef int f32m;
typedef int f64m;
typedef struct { double lo; } acc64;

FSCE_INLINE f32v f32_splat(float s) { return s + 0.0f; }
FSCE_INLINE f64v f64_splat(double s) { return s + 0.0; }
FSCE_INLINE f32v f32_load(const float *p) { return *p; }
FSCE_INLINE f64v f64_load(const double *p) { return *p; }
FSCE_INLINE void f32_store(float *p, f32v v) { *p = v; }
FSCE_INLINE void f64_store(double *p, f64v v) { *p = v; }
FSCE_INLINE f32v f32_gather(const float *p, ptrdiff_t s) { (void)s; return *p; }
FSCE_INLINE f64v f64_gather(const double *p, ptrdiff_t s) { (void)s; return *p; }
FSCE_INLINE void f32_transpose(f32v v[1]) { (void)v; } /* a 1 x 1 block is its own transpose */
FSCE_INLINE void f64_transpose(f64v v[1]) { (void)v; }
/* a tail is shorter than one lane: never called with r > 0 */
FSCE_INLINE f32v f32_load_tail(const float *p, ptrdiff_t r, float pad) { return r > 0 ? *p : pad; }
FSCE_INLINE f64v f64_load_tail(const double *p, ptrdiff_t r, double pad) { return r > 0 ? *p : pad; }
FSCE_INLINE void f32_store_tail(float *p, ptrdiff_t r, f32v v) { if (r > 0) *p = v; }
FSCE_INLINE void f64_store_tail(double *p, ptrdiff_t r, f64v v) { if (r > 0) *p = v; }

FSCE_INLINE f32v f32_add(f32v a, f32v b) { return a + b; }
FSCE_INLINE f64v f64_add(f64v a, f64v b) { return a + b; }
FSCE_INLINE f32v f32_sub(f32v a, f32v b) { return a - b; }
FSCE_INLINE f64v f64_sub(f64v a, f64v b) { return a - b; }
FSCE_INLINE f32v f32_mul(f32v a, f32v b) { return a * b; }
FSCE_INLINE f64v f64_mul(f64v a, f64v b) { return a * b; }
FSCE_INLINE f64v f64_div(f64v a, f64v b) { return a / b; }
FSCE_INLINE f32v f32_mul_sub(f32v a, f32v b, f32v c) { return a * b - c; }
FSCE_INLINE f64v f64_mul_sub(f64v a, f64v b, f64v c) { return a * b - c; }
FSCE_INLINE f32v f32_max(f32v a, f32v b) { return a > b ? a : b; }
FSCE_INLINE f64v f64_max(f64v a, f64v b) { return a > b ? a : b; }

FSCE_INLINE f32m f32_lt(f32v a, f32v b) { return a < b; }
FSCE_INLINE f64m f64_lt(f64v a, f64v b) { return a < b; }
FSCE_INLINE f32m f32_gt(f32v a, f32v b) { return a > b; }
FSCE_INLINE f64m f64_gt(f64v a, f64v b) { return a > b; }
FSCE_INLINE f32m f32_ge(f32v a, f32v b) { return a >= b; }
FSCE_INLINE f64m f64_ge(f64v a, f64v b) { return a >= b; }
FSCE_INLINE f32m f32_eq(f32v a, f32v b) { return a == b; }
FSCE_INLINE f64m f64_eq(f64v a, f64v b) { return a == b; }
FSCE_INLINE f32m f32_ne(f32v a, f32v b) { return a != b; }
FSCE_INLINE f64m f64_ne(f64v a, f64v b) { return a != b; }
FSCE_INLINE f32v f32_select(f32m m, f32v a, f32v b) { return m ? a : b; }
FSCE_INLINE f64v f64_select(f64m m, f64v a, f64v b) { return m ? a : b; }
FSCE_INLINE f32m f32_mask_or(f32m m, f32m n) { return m | n; }
FSCE_INLINE f64m f64_mask_or(f64m m, f64m n) { return m | n; }
FSCE_INLINE int f32_mask_any(f32m m) { return m; }
FSCE_INLINE int f64_mask_any(f64m m) { return m; }
FSCE_INLINE float f32_lanes_max(f32v v) { return v; }
FSCE_INLINE double f64_lanes_max(f64v v) { return v; }

/* the exp's ends: as in fsce_simd_sse2.h; 2**n exactly (a normal number where t >= lo) */
FSCE_INLINE f32v f32_exp_clamp(f32v t, float clamp) { return clamp > t ? clamp : t; }
FSCE_INLINE f64v f64_exp_clamp(f64v t, double clamp) { return clamp > t ? clamp : t; }
FSCE_INLINE f32v f32_exp_scale(f32v t, f32v p, f32v k, f32v n, float lo, int32_t offset)
{
    (void)k, (void)offset;
    return p * (t >= lo ? ldexpf(1.0f, (int)n) : 0.0f);
}
FSCE_INLINE f64v f64_exp_scale(f64v t, f64v p, f64v k, f64v n, double lo, int64_t offset)
{
    (void)k, (void)offset;
    return p * (t >= lo ? ldexp(1.0, (int)n) : 0.0);
}

FSCE_INLINE acc64 acc_zero(void)
{
    acc64 acc = {0.0};
    return acc;
}
FSCE_INLINE void f32_acc_add(acc64 *acc, f32v v) { acc->lo += (double)v; }
FSCE_INLINE void f64_acc_add(acc64 *acc, f64v v) { acc->lo += v; }
FSCE_INLINE double acc_total(acc64 acc) { return acc.lo; }
FSCE_INLINE void acc_lanes(acc64 acc, double *lanes, ptrdiff_t n_lanes)
{
    (void)n_lanes;
    lanes[0] = acc.lo;
}

/* 16-bit floats (fsce_half.h) */
FSCE_INLINE f32v f32_load_bf16(const uint16_t *p) { return fsce_bf16_to_f32(*p); }
FSCE_INLINE void f32_store_bf16(uint16_t *p, f32v v) { *p = fsce_f32_to_bf16(v); }
FSCE_INLINE f32v f32_load_f16(const uint16_t *p) { return fsce_f16_to_f32(*p); }
FSCE_INLINE void f32_store_f16(uint16_t *p, f32v v) { *p = fsce_f32_to_f16(v); }
