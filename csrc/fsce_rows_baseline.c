/*
 * fsce_rows_baseline.c -- the row helpers on the instruction set every CPU of
 * the platform has: SSE2 on x86-64, NEON on arm64, one lane elsewhere (and
 * with FSCE_SCALAR_ONLY).  No target attribute: the build's own flags.
 */
#include <math.h>
#include <string.h>

#include "fsce_formulas.h"
#include "fsce_rows.h"
#include "fsce_simd.h"

#if FSCE_X86_64
#include "fsce_simd_sse2.h"
#elif FSCE_ARM64
#include "fsce_simd_neon.h"
#else
#include "fsce_simd_scalar.h"
#endif

#define FSCE_TABLE_F32 fsce_ops_f32_baseline
#define FSCE_TABLE_F64 fsce_ops_f64_baseline
#define FSCE_TABLE_BF16 fsce_ops_bf16_baseline
#define FSCE_TABLE_F16 fsce_ops_f16_baseline
#include "fsce_rows_both_dtypes.h"
