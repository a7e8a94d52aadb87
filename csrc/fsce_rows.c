/*
 * fsce_rows.c -- instantiates the row helpers per dtype and instruction set,
 * and picks one set at run time (cpuid), so one binary is fast on every CPU
 * of its platform without -march=native.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsce_formulas.h"
#include "fsce_rows.h"
#include "fsce_simd.h"

/* Each instruction set: the settings fsce_rows_impl.h reads, then both dtypes. */

/* ---- portable baseline: SSE2 on x86-64, NEON on arm64, scalar without vector extensions ---- */
#define FSCE_ISA baseline
#if FSCE_VECTOR_EXTENSIONS
#define FSCE_WIDTH_SUFFIX _128 /* the registers' width: 32-byte compares would be scalarised */
#else
#define FSCE_WIDTH_SUFFIX      /* one lane */
#endif
#define FSCE_TARGET
#define FSCE_FMA 0
#define FSCE_AVX2_INTRINSICS 0
#define FSCE_AVX512_INTRINSICS 0
#include "fsce_rows_both_dtypes.h"

/* ---- AVX2 + FMA and AVX-512, x86-64 with GCC or Clang ---- */
#if FSCE_X86_VECTOR_TARGETS
#include <immintrin.h>
#define FSCE_HAVE_X86_PATHS 1

#define FSCE_ISA avx2
#define FSCE_WIDTH_SUFFIX
#define FSCE_TARGET FSCE_TARGET_AVX2
#define FSCE_FMA 1
#define FSCE_AVX2_INTRINSICS 1
#define FSCE_AVX512_INTRINSICS 0
#include "fsce_rows_both_dtypes.h"

/* 64-byte vectors; the subsets every AVX-512 CPU since Skylake-SP has */
#define FSCE_ISA avx512
#define FSCE_WIDTH_SUFFIX _512
#define FSCE_TARGET FSCE_TARGET_AVX512
#define FSCE_FMA 1
#define FSCE_AVX2_INTRINSICS 0
#define FSCE_AVX512_INTRINSICS 1
#include "fsce_rows_both_dtypes.h"
#endif

#if !FSCE_VECTOR_EXTENSIONS
#define FSCE_BASELINE_NAME "scalar"
#elif defined(__x86_64__) || defined(_M_X64)
#define FSCE_BASELINE_NAME "baseline (sse2)"
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FSCE_BASELINE_NAME "baseline (neon)"
#else
#define FSCE_BASELINE_NAME "baseline"
#endif

const fsce_ops_f32 *fsce_chosen_f32 = &fsce_ops_f32_baseline;
const fsce_ops_f64 *fsce_chosen_f64 = &fsce_ops_f64_baseline;
static const char *chosen_name = FSCE_BASELINE_NAME;

#ifdef FSCE_HAVE_X86_PATHS
/* FASTSCE_SIMD caps the instruction set: "baseline" or "avx2" (unset: the best) */
static int simd_allowed(const char *isa)
{
    const char *cap = getenv("FASTSCE_SIMD");
    if (cap == NULL) return 1;
    if (strcmp(cap, "baseline") == 0) return 0;
    return strcmp(cap, "avx2") != 0 || strcmp(isa, "avx2") == 0;
}
#endif

void fsce_init(void)
{
#ifdef FSCE_HAVE_X86_PATHS
    __builtin_cpu_init();
    if (simd_allowed("avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fsce_chosen_f32 = &fsce_ops_f32_avx512;
        fsce_chosen_f64 = &fsce_ops_f64_avx512;
        chosen_name = "avx512";
    } else if (simd_allowed("avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fsce_chosen_f32 = &fsce_ops_f32_avx2;
        fsce_chosen_f64 = &fsce_ops_f64_avx2;
        chosen_name = "avx2+fma";
    }
#endif
}

const char *fsce_simd_path(void) { return chosen_name; }
