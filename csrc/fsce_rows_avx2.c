/*
 * fsce_rows_avx2.c -- the row helpers with AVX2 + FMA (x86-64).  Every
 * function here is compiled for that target (GCC: #pragma GCC target, Clang:
 * an attribute pushed over the file; MSVC needs nothing to emit the
 * intrinsics) and is called only after fsce_init found both on the CPU.
 * F16C is in the target too, for the float16 conversions only (no other code
 * has a 16-bit float to convert): their table is chosen only when the CPU
 * has F16C as well.
 */
#include <math.h>
#include <string.h>

#include "fsce_formulas.h"
#include "fsce_rows.h"
#include "fsce_simd.h"

#if FSCE_X86_64
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "fsce_simd_avx2.h"

#define FSCE_TABLE_F32 fsce_ops_f32_avx2
#define FSCE_TABLE_F64 fsce_ops_f64_avx2
#define FSCE_TABLE_BF16 fsce_ops_bf16_avx2
#define FSCE_TABLE_F16 fsce_ops_f16_avx2
#include "fsce_rows_both_dtypes.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int fsce_no_avx2_path; /* not x86-64: nothing to compile (ISO C wants a declaration) */
#endif
