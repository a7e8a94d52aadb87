/*
 * fsce_rows.c -- instantiates the row helpers per dtype and instruction set,
 * and picks one set at run time (cpuid), so one binary is fast on every CPU
 * of its platform without -march=native.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsce_rows.h"
#include "fsce_simd.h"

/* ---- portable baseline: SSE2 on x86-64, NEON on arm64, scalar elsewhere ---- */
#define FSCE_ISA baseline
#define FSCE_TARGET
#define FSCE_AVX2_INTRINSICS 0
#define FSCE_FMA 0
#define FSCE_DOUBLE 0
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_DOUBLE 1
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#undef FSCE_TARGET
#undef FSCE_ISA
#undef FSCE_AVX2_INTRINSICS
#undef FSCE_FMA

/*
 * ---- AVX2 + FMA, x86-64 with GCC ----
 * Clang refuses to inline the shared vector helpers (compiled without AVX)
 * into AVX2 functions, so Clang builds (macOS x86-64) keep the baseline path.
 */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FSCE_HAVE_AVX2_PATH 1
#define FSCE_ISA avx2
#define FSCE_TARGET __attribute__((target("avx2,fma")))
#define FSCE_AVX2_INTRINSICS 1
#define FSCE_FMA 1
#define FSCE_DOUBLE 0
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_DOUBLE 1
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#undef FSCE_TARGET
#undef FSCE_ISA
#undef FSCE_AVX2_INTRINSICS
#undef FSCE_FMA
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define FSCE_BASELINE_NAME "baseline (sse2)"
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FSCE_BASELINE_NAME "baseline (neon)"
#else
#define FSCE_BASELINE_NAME "baseline"
#endif

static const fsce_ops_f32 *chosen_f32 = &fsce_ops_f32_baseline;
static const fsce_ops_f64 *chosen_f64 = &fsce_ops_f64_baseline;
static const char *chosen_name = FSCE_BASELINE_NAME;

static int baseline_forced(void)
{
    const char *wanted = getenv("FASTSCE_SIMD");
    return wanted != NULL && strcmp(wanted, "baseline") == 0;
}

void fsce_init(void)
{
    if (baseline_forced()) return;
#ifdef FSCE_HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen_f32 = &fsce_ops_f32_avx2;
        chosen_f64 = &fsce_ops_f64_avx2;
        chosen_name = "avx2+fma";
    }
#endif
}

const fsce_ops_f32 *fsce_get_ops_f32(void) { return chosen_f32; }
const fsce_ops_f64 *fsce_get_ops_f64(void) { return chosen_f64; }
const char *fsce_simd_path(void) { return chosen_name; }
