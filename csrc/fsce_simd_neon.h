/*
 * fsce_simd_neon.h -- the vector vocabulary of fsce_simd.h with NEON
 * (Advanced SIMD) intrinsics, the arm64 baseline every such CPU has: 4
 * float32 or 2 float64 lanes, masks as all-ones lanes (uint32x4_t /
 * uint64x2_t).  NEON's own max propagates NaN, so max is spelled as the x86
 * rule every path shares; tails and the largest lane go through a small stack
 * array, as on SSE2 (fsce_simd_stack_lanes.h).
 */
#include <arm_neon.h>

#include "fsce_simd.h"

#define FSCE_F32_LANES 4
#define FSCE_F64_LANES 2
#define FSCE_EXP_ONE_STEP_REDUCTION 0

typedef float32x4_t f32v;
typedef float64x2_t f64v;
typedef uint32x4_t f32m;
typedef uint64x2_t f64m;
typedef struct { float64x2_t lo, hi; } acc64;

FSCE_INLINE f32v f32_splat(float s) { return vdupq_n_f32(s + 0.0f); }
FSCE_INLINE f64v f64_splat(double s) { return vdupq_n_f64(s + 0.0); }
FSCE_INLINE f32v f32_load(const float *p) { return vld1q_f32(p); }
FSCE_INLINE f64v f64_load(const double *p) { return vld1q_f64(p); }
FSCE_INLINE void f32_store(float *p, f32v v) { vst1q_f32(p, v); }
FSCE_INLINE void f64_store(double *p, f64v v) { vst1q_f64(p, v); }
FSCE_INLINE f32v f32_gather(const float *p, ptrdiff_t s)
{
    f32v v = vdupq_n_f32(p[0]);
    v = vsetq_lane_f32(p[s], v, 1);
    v = vsetq_lane_f32(p[2 * s], v, 2);
    return vsetq_lane_f32(p[3 * s], v, 3);
}
FSCE_INLINE f64v f64_gather(const double *p, ptrdiff_t s) { return vsetq_lane_f64(p[s], vdupq_n_f64(p[0]), 1); }
/* 4 x 4: 2 x 2 blocks transposed within pairs of rows (trn), then their halves joined */
FSCE_INLINE void f32_transpose(f32v v[4])
{
    const float32x4x2_t a = vtrnq_f32(v[0], v[1]), b = vtrnq_f32(v[2], v[3]);
    v[0] = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
    v[1] = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
    v[2] = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
    v[3] = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
}
FSCE_INLINE void f64_transpose(f64v v[2])
{
    const f64v first = vzip1q_f64(v[0], v[1]);
    v[1] = vzip2q_f64(v[0], v[1]);
    v[0] = first;
}

FSCE_INLINE f32v f32_add(f32v a, f32v b) { return vaddq_f32(a, b); }
FSCE_INLINE f64v f64_add(f64v a, f64v b) { return vaddq_f64(a, b); }
FSCE_INLINE f32v f32_sub(f32v a, f32v b) { return vsubq_f32(a, b); }
FSCE_INLINE f64v f64_sub(f64v a, f64v b) { return vsubq_f64(a, b); }
FSCE_INLINE f32v f32_mul(f32v a, f32v b) { return vmulq_f32(a, b); }
FSCE_INLINE f64v f64_mul(f64v a, f64v b) { return vmulq_f64(a, b); }
FSCE_INLINE f64v f64_div(f64v a, f64v b) { return vdivq_f64(a, b); }
FSCE_INLINE f32v f32_mul_sub(f32v a, f32v b, f32v c) { return vsubq_f32(vmulq_f32(a, b), c); }
FSCE_INLINE f64v f64_mul_sub(f64v a, f64v b, f64v c) { return vsubq_f64(vmulq_f64(a, b), c); }

FSCE_INLINE f32m f32_lt(f32v a, f32v b) { return vcltq_f32(a, b); }
FSCE_INLINE f64m f64_lt(f64v a, f64v b) { return vcltq_f64(a, b); }
FSCE_INLINE f32m f32_gt(f32v a, f32v b) { return vcgtq_f32(a, b); }
FSCE_INLINE f64m f64_gt(f64v a, f64v b) { return vcgtq_f64(a, b); }
FSCE_INLINE f32m f32_ge(f32v a, f32v b) { return vcgeq_f32(a, b); }
FSCE_INLINE f64m f64_ge(f64v a, f64v b) { return vcgeq_f64(a, b); }
FSCE_INLINE f32m f32_eq(f32v a, f32v b) { return vceqq_f32(a, b); }
FSCE_INLINE f64m f64_eq(f64v a, f64v b) { return vceqq_f64(a, b); }
FSCE_INLINE f32m f32_ne(f32v a, f32v b) { return vmvnq_u32(vceqq_f32(a, b)); }
FSCE_INLINE f64m f64_ne(f64v a, f64v b) { return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(vceqq_f64(a, b)))); }
FSCE_INLINE f32v f32_select(f32m m, f32v a, f32v b) { return vbslq_f32(m, a, b); }
FSCE_INLINE f64v f64_select(f64m m, f64v a, f64v b) { return vbslq_f64(m, a, b); }
FSCE_INLINE f32m f32_mask_or(f32m m, f32m n) { return vorrq_u32(m, n); }
FSCE_INLINE f64m f64_mask_or(f64m m, f64m n) { return vorrq_u64(m, n); }
FSCE_INLINE int f32_mask_any(f32m m) { return vmaxvq_u32(m) != 0; }
FSCE_INLINE int f64_mask_any(f64m m) { return vmaxvq_u32(vreinterpretq_u32_u64(m)) != 0; }
FSCE_INLINE f32v f32_max(f32v a, f32v b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
FSCE_INLINE f64v f64_max(f64v a, f64v b) { return vbslq_f64(vcgtq_f64(a, b), a, b); }

#include "fsce_simd_stack_lanes.h"

/* the exp's ends: as in fsce_simd_sse2.h */
FSCE_INLINE f32v f32_exp_clamp(f32v t, float clamp) { return f32_max(vdupq_n_f32(clamp), t); }
FSCE_INLINE f64v f64_exp_clamp(f64v t, double clamp) { return f64_max(vdupq_n_f64(clamp), t); }
FSCE_INLINE f32v f32_exp_scale(f32v t, f32v p, f32v k, f32v n, float lo, int32_t offset)
{
    (void)n;
    const int32x4_t biased = vsubq_s32(vreinterpretq_s32_f32(k), vdupq_n_s32(offset));
    const int32x4_t kept = vandq_s32(vreinterpretq_s32_u32(vcgeq_f32(t, vdupq_n_f32(lo))), biased);
    return vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(kept, 23)));
}
FSCE_INLINE f64v f64_exp_scale(f64v t, f64v p, f64v k, f64v n, double lo, int64_t offset)
{
    (void)n;
    const int64x2_t biased = vsubq_s64(vreinterpretq_s64_f64(k), vdupq_n_s64(offset));
    const int64x2_t kept = vandq_s64(vreinterpretq_s64_u64(vcgeq_f64(t, vdupq_n_f64(lo))), biased);
    return vmulq_f64(p, vreinterpretq_f64_s64(vshlq_n_s64(kept, 52)));
}

/* the float64 accumulator: lo holds lanes 0-1, hi lanes 2-3 of float32 vectors */
FSCE_INLINE acc64 acc_zero(void)
{
    acc64 acc = {vdupq_n_f64(0.0), vdupq_n_f64(0.0)};
    return acc;
}
FSCE_INLINE void f32_acc_add(acc64 *acc, f32v v)
{
    acc->lo = vaddq_f64(acc->lo, vcvt_f64_f32(vget_low_f32(v)));
    acc->hi = vaddq_f64(acc->hi, vcvt_high_f64_f32(v));
}
FSCE_INLINE void f64_acc_add(acc64 *acc, f64v v) { acc->lo = vaddq_f64(acc->lo, v); }
FSCE_INLINE double acc_total(acc64 acc)
{
    const float64x2_t v = vaddq_f64(acc.lo, acc.hi);
    return vgetq_lane_f64(v, 0) + vgetq_lane_f64(v, 1);
}
FSCE_INLINE void acc_lanes(acc64 acc, double *lanes, ptrdiff_t n_lanes)
{
    vst1q_f64(lanes, acc.lo);
    if (n_lanes > FSCE_F64_LANES) vst1q_f64(lanes + FSCE_F64_LANES, acc.hi);
}

/* 16-bit floats, 4 at a time (RNE narrowing, NaN made quiet: the bits of fsce_half.h) */
FSCE_INLINE f32v f32_load_bf16(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
FSCE_INLINE void f32_store_bf16(uint16_t *p, f32v v)
{
    const uint32x4_t u = vreinterpretq_u32_f32(v), low_bit = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7FFF), low_bit));
    const uint32x4_t nan = vmvnq_u32(vceqq_f32(v, v));
    vst1_u16(p, vshrn_n_u32(vbslq_u32(nan, vorrq_u32(u, vdupq_n_u32(0x00400000)), rounded), 16));
}
FSCE_INLINE f32v f32_load_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
FSCE_INLINE void f32_store_f16(uint16_t *p, f32v v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }
