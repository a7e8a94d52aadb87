/*
 * fsce_dispatch.c -- picks one table of row helpers at run time, so one
 * binary is fast on every CPU of its platform without -march=native.
 *
 * The tables come from fsce_rows_<isa>.c.  On x86-64 the CPU is asked for
 * AVX-512 F/DQ/BW/VL, then AVX2 + FMA, each with the operating system's
 * support of the wider registers (XGETBV); anything else runs the baseline.
 * The bfloat16 conversions follow that choice; the float16 ones need F16C
 * besides (a CPUID flag of its own) and otherwise run the baseline's.
 * FASTSCE_SIMD caps the choice: "baseline" or "avx2" (unset: the best).
 */
#include <stdlib.h>
#include <string.h>

#include "fsce_rows.h"
#include "fsce_simd.h"

#if FSCE_X86_64 && defined(_MSC_VER) && !defined(__clang__)
#include <immintrin.h>
#include <intrin.h>
#elif FSCE_X86_64
#include <cpuid.h>
#endif

#if defined(FSCE_SCALAR_ONLY) || !(FSCE_X86_64 || FSCE_ARM64)
#define FSCE_BASELINE_NAME "scalar"
#elif FSCE_X86_64
#define FSCE_BASELINE_NAME "baseline (sse2)"
#else
#define FSCE_BASELINE_NAME "baseline (neon)"
#endif

const fsce_ops_f32 *fsce_chosen_f32 = &fsce_ops_f32_baseline;
const fsce_ops_f64 *fsce_chosen_f64 = &fsce_ops_f64_baseline;
const fsce_ops_half *fsce_chosen_bf16 = &fsce_ops_bf16_baseline;
const fsce_ops_half *fsce_chosen_f16 = &fsce_ops_f16_baseline;
static const char *chosen_name = FSCE_BASELINE_NAME;

#if FSCE_X86_64
enum { CPU_AVX2_FMA = 1, CPU_AVX512 = 2, CPU_F16C = 4 };

#if defined(_MSC_VER) && !defined(__clang__)
/* CPUID leaf 1 (ECX: FMA bit 12, OSXSAVE 27, AVX 28, F16C 29) and leaf 7 (EBX: AVX2 bit 5,
   AVX-512 F 16, DQ 17, BW 30, VL 31); XCR0: the OS saves the YMM (bits 1-2) and ZMM (5-7)
   state */
static int cpu_features(void)
{
    int regs[4];
    __cpuid(regs, 0);
    const int max_leaf = regs[0];
    __cpuid(regs, 1);
    const unsigned ecx1 = (unsigned)regs[2];
    if (max_leaf < 7 || !(ecx1 >> 27 & 1) || !(ecx1 >> 28 & 1)) return 0;
    const unsigned long long xcr0 = _xgetbv(0);
    __cpuidex(regs, 7, 0);
    const unsigned ebx7 = (unsigned)regs[1];
    int features = 0;
    if ((xcr0 & 0x6) == 0x6 && (ebx7 >> 5 & 1) && (ecx1 >> 12 & 1)) features |= CPU_AVX2_FMA;
    if ((xcr0 & 0x6) == 0x6 && (ecx1 >> 29 & 1)) features |= CPU_F16C;
    if ((features & CPU_AVX2_FMA) && (xcr0 & 0xE6) == 0xE6 && (ebx7 >> 16 & 1) && (ebx7 >> 17 & 1)
        && (ebx7 >> 30 & 1) && (ebx7 >> 31 & 1))
        features |= CPU_AVX512;
    return features;
}
#else
/* the compiler's own CPU model (it checks the OS support of the wider state too) */
static int cpu_features(void)
{
    __builtin_cpu_init();
    int features = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) features |= CPU_AVX2_FMA;
    /* F16C: CPUID leaf 1, ECX bit 29 (a name not every compiler's __builtin_cpu_supports
       knows); used only beside AVX2 or AVX-512, whose checks cover the OS's support */
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 29 & 1)) features |= CPU_F16C;
    if ((features & CPU_AVX2_FMA) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        features |= CPU_AVX512;
    return features;
}
#endif

/* the paths FASTSCE_SIMD allows: all when unset or another value (which fastsce's
   Python side reports with a warning) */
static int allowed_features(void)
{
    const char *cap = getenv("FASTSCE_SIMD");
    if (cap != NULL && strcmp(cap, "baseline") == 0) return 0;
    if (cap != NULL && strcmp(cap, "avx2") == 0) return CPU_AVX2_FMA | CPU_F16C;
    return CPU_AVX2_FMA | CPU_AVX512 | CPU_F16C;
}
#endif

void fsce_init(void)
{
#if FSCE_X86_64
    const int features = cpu_features() & allowed_features();
    if (features & CPU_AVX512) {
        fsce_chosen_f32 = &fsce_ops_f32_avx512;
        fsce_chosen_f64 = &fsce_ops_f64_avx512;
        fsce_chosen_bf16 = &fsce_ops_bf16_avx512;
        if (features & CPU_F16C) fsce_chosen_f16 = &fsce_ops_f16_avx512;
        chosen_name = "avx512";
    } else if (features & CPU_AVX2_FMA) {
        fsce_chosen_f32 = &fsce_ops_f32_avx2;
        fsce_chosen_f64 = &fsce_ops_f64_avx2;
        fsce_chosen_bf16 = &fsce_ops_bf16_avx2;
        if (features & CPU_F16C) fsce_chosen_f16 = &fsce_ops_f16_avx2;
        chosen_name = "avx2+fma";
    }
#endif
}

const char *fsce_simd_path(void) { return chosen_name; }
