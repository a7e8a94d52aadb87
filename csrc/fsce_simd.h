/*
 * fsce_simd.h -- the small vector vocabulary the row helpers are written in.
 *
 * Design: every row helper is written once against the types and inline
 * functions below, then compiled several times (fsce_rows.c) with different
 * target attributes.  With GCC or Clang the vector types are 32-byte generic
 * vectors (`vector_size`), which the compiler lowers to AVX2 in a function
 * compiled with target("avx2,fma"), to SSE2 pairs on baseline x86-64 and to
 * NEON pairs on arm64.  Compilers without vector extensions (MSVC) get one
 * lane per "vector", so the same source still builds, just without SIMD.
 *
 * Masks follow the vector-extension convention: all bits set (-1) for true,
 * 0 for false.  No function here uses -ffast-math semantics: NaN must
 * propagate and the round-to-integer trick in fsce_exp_impl.h needs strict
 * IEEE arithmetic.
 */
#ifndef FSCE_SIMD_H
#define FSCE_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
/* every vector function is inlined, so the vector-argument ABI never applies */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define FSCE_INLINE static inline __attribute__((always_inline))
#define FSCE_VECTOR_BYTES 32
typedef float f32v __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef int32_t i32v __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef double f64v __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef int64_t i64v __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef float f32v_half __attribute__((vector_size(FSCE_VECTOR_BYTES / 2)));
#define FSCE_MASK(cond) (cond)
#else
#define FSCE_INLINE static __forceinline
#define FSCE_VECTOR_BYTES 8
typedef float f32v;
typedef int32_t i32v;
typedef double f64v;
typedef int64_t i64v;
#define FSCE_MASK(cond) (-(cond))
#endif

#define FSCE_F32_LANES ((ptrdiff_t)(sizeof(f32v) / sizeof(float)))
#define FSCE_F64_LANES ((ptrdiff_t)(sizeof(f64v) / sizeof(double)))

/* Bit casts through memcpy: free for vectors, well defined for scalars. */
FSCE_INLINE i32v fsce_bits_f32(f32v v) { i32v b; memcpy(&b, &v, sizeof b); return b; }
FSCE_INLINE f32v fsce_from_bits_f32(i32v b) { f32v v; memcpy(&v, &b, sizeof v); return v; }
FSCE_INLINE i64v fsce_bits_f64(f64v v) { i64v b; memcpy(&b, &v, sizeof b); return b; }
FSCE_INLINE f64v fsce_from_bits_f64(i64v b) { f64v v; memcpy(&v, &b, sizeof v); return v; }

/* select(mask, a, b) = mask ? a : b, lane by lane. */
FSCE_INLINE f32v fsce_select_f32(i32v mask, f32v a, f32v b)
{
    return fsce_from_bits_f32((mask & fsce_bits_f32(a)) | (~mask & fsce_bits_f32(b)));
}
FSCE_INLINE f64v fsce_select_f64(i64v mask, f64v a, f64v b)
{
    return fsce_from_bits_f64((mask & fsce_bits_f64(a)) | (~mask & fsce_bits_f64(b)));
}

FSCE_INLINE f32v fsce_splat_f32(float s) { f32v v = {0}; return v + s; }
FSCE_INLINE f64v fsce_splat_f64(double s) { f64v v = {0}; return v + s; }

/* Unaligned loads and stores of a whole vector. */
FSCE_INLINE f32v fsce_load_f32(const float *p) { f32v v; memcpy(&v, p, sizeof v); return v; }
FSCE_INLINE f64v fsce_load_f64(const double *p) { f64v v; memcpy(&v, p, sizeof v); return v; }
FSCE_INLINE void fsce_store_f32(float *p, f32v v) { memcpy(p, &v, sizeof v); }
FSCE_INLINE void fsce_store_f64(double *p, f64v v) { memcpy(p, &v, sizeof v); }

/* Partial load of the last r < lanes elements; the other lanes hold `pad`. */
FSCE_INLINE f32v fsce_load_tail_f32(const float *p, ptrdiff_t r, float pad)
{
    float tmp[FSCE_F32_LANES];
    for (ptrdiff_t i = 0; i < FSCE_F32_LANES; ++i) tmp[i] = i < r ? p[i] : pad;
    return fsce_load_f32(tmp);
}
FSCE_INLINE f64v fsce_load_tail_f64(const double *p, ptrdiff_t r, double pad)
{
    double tmp[FSCE_F64_LANES];
    for (ptrdiff_t i = 0; i < FSCE_F64_LANES; ++i) tmp[i] = i < r ? p[i] : pad;
    return fsce_load_f64(tmp);
}
FSCE_INLINE void fsce_store_tail_f32(float *p, ptrdiff_t r, f32v v)
{
    float tmp[FSCE_F32_LANES];
    fsce_store_f32(tmp, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = tmp[i];
}
FSCE_INLINE void fsce_store_tail_f64(double *p, ptrdiff_t r, f64v v)
{
    double tmp[FSCE_F64_LANES];
    fsce_store_f64(tmp, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = tmp[i];
}

/*
 * Float64 accumulation.  Sums are always carried in double lanes, whatever
 * the element type: a float32 row of 50257 exponentials summed in float32
 * would lose ~1e-5 of relative accuracy, which is visible in the loss.
 */
typedef struct { f64v lo, hi; } fsce_acc;

FSCE_INLINE fsce_acc fsce_acc_zero(void) { fsce_acc a = {fsce_splat_f64(0.0), fsce_splat_f64(0.0)}; return a; }

FSCE_INLINE void fsce_acc_add_f32(fsce_acc *acc, f32v v)
{
#if defined(__GNUC__) || defined(__clang__)
    f32v_half lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    acc->lo += __builtin_convertvector(lo, f64v);
    acc->hi += __builtin_convertvector(hi, f64v);
#else
    acc->lo += (double)v;
#endif
}
FSCE_INLINE void fsce_acc_add_f64(fsce_acc *acc, f64v v) { acc->lo += v; }

/* The per-lane sums of values added with fsce_acc_add_f32 (8 lanes) or _f64 (4 lanes). */
FSCE_INLINE void fsce_acc_lanes(fsce_acc acc, double *lanes, ptrdiff_t n_lanes)
{
    fsce_store_f64(lanes, acc.lo);
    if (n_lanes > FSCE_F64_LANES) fsce_store_f64(lanes + FSCE_F64_LANES, acc.hi);
}

FSCE_INLINE double fsce_acc_total(fsce_acc acc)
{
    double lanes[FSCE_F64_LANES];
    double total = 0.0;
    fsce_store_f64(lanes, acc.lo + acc.hi);
    for (ptrdiff_t i = 0; i < FSCE_F64_LANES; ++i) total += lanes[i];
    return total;
}

#endif /* FSCE_SIMD_H */
