/*
 * fsce_rows_avx512.c -- the row helpers with AVX-512 F/DQ/BW/VL (x86-64), the
 * subsets every AVX-512 CPU since Skylake-SP has.  Compiled for that target
 * as fsce_rows_avx2.c is for its own; called only after fsce_init found all
 * of them (and the OS's support of the 512-bit state) on the CPU.
 */
#include <math.h>
#include <string.h>

#include "fsce_formulas.h"
#include "fsce_rows.h"
#include "fsce_simd.h"

#if FSCE_X86_64
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif

#include "fsce_simd_avx512.h"

#define FSCE_TABLE_F32 fsce_ops_f32_avx512
#define FSCE_TABLE_F64 fsce_ops_f64_avx512
#define FSCE_TABLE_BF16 fsce_ops_bf16_avx512
#define FSCE_TABLE_F16 fsce_ops_f16_avx512
#include "fsce_rows_both_dtypes.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int fsce_no_avx512_path; /* not x86-64: nothing to compile (ISO C wants a declaration) */
#endif
