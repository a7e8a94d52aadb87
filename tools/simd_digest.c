/*
 * simd_digest.c -- a fingerprint of every row helper's output bits, for
 * checking that a change to csrc/ keeps each vector path bit for bit.
 *
 * Every helper of the chosen table (csrc/fsce_rows.h) runs over fixed
 * pseudo-random rows of every length 0..80 and a few long ones, with special
 * values mixed in (-inf, +-0, NaN, huge, tiny, values far below the max); each
 * helper's outputs are hashed (FNV-1a over the bytes), one line per helper and
 * dtype.  Run it with FASTSCE_SIMD unset, =avx2, =baseline on the build before
 * and after a change: equal lines mean equal bits.  The 16-bit tables (bfloat16,
 * float16) are hashed likewise and also checked: every conversion against the
 * scalar one of fsce_half.h, every 16-bit pass against the float32 helper on the
 * widened row (a "mismatches" line, 0 when all agree).  It also runs under
 * qemu-aarch64 for the NEON path:
 *
 *   cc -O2 -ffp-contract=fast -Icsrc tools/simd_digest.c csrc/fsce_rows*.c -lm
 *   FASTSCE_SIMD=baseline ./a.out
 *   aarch64-linux-gnu-gcc -static ... && qemu-aarch64 ./a.out
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fsce_half.h"
#include "fsce_rows.h"

#define MAX_N 4100

static uint64_t state = 0x9E3779B97F4A7C15ull;

static double uniform(void) /* in [0, 1) */
{
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(state >> 11) * (1.0 / 9007199254740992.0);
}

static double special_or_random(int mode)
{
    const double u = uniform();
    if (mode == 0 || u > 0.08) return (uniform() - 0.5) * (mode == 2 ? 200.0 : 12.0);
    static const double specials[] = {-INFINITY, 0.0, -0.0, 1e30, -1e30, 1e-30, -300.0, -90.0, -750.0, NAN};
    return specials[(int)(uniform() * 10) % 10];
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static const ptrdiff_t lengths_extra[] = {100, 127, 255, 513, 1000, 4099};

#define DIGEST(REAL, SUFFIX, GET_OPS)                                                              \
    static void digest_##SUFFIX(void)                                                              \
    {                                                                                              \
        static REAL x[MAX_N], b[MAX_N], out[MAX_N], x2[16 * 40], grad[16 * 40];                   \
        uint64_t h[11];                                                                            \
        const fsce_ops_##SUFFIX *ops = GET_OPS();                                                  \
        for (int i = 0; i < 11; ++i) h[i] = 1469598103934665603ull;                                \
        state = 0x9E3779B97F4A7C15ull;                                                             \
        for (int k = 0; k < 81 + 6; ++k) {                                                         \
            const ptrdiff_t n = k < 81 ? k : lengths_extra[k - 81];                                \
            for (int mode = 0; mode < 3; ++mode) {                                                 \
                for (ptrdiff_t j = 0; j < n; ++j) {                                                \
                    x[j] = (REAL)special_or_random(mode);                                          \
                    b[j] = (REAL)(uniform() < 0.2 ? 0.0 : uniform());                              \
                }                                                                                  \
                REAL m = ops->row_max(x, n);                                                       \
                h[0] = hash_bytes(h[0], &m, sizeof m);                                             \
                ptrdiff_t found = ops->row_find(x, n, n ? x[n / 2] : (REAL)1);                     \
                h[1] = hash_bytes(h[1], &found, sizeof found);                                     \
                found = ops->row_find(x, n, (REAL)NAN);                                            \
                h[1] = hash_bytes(h[1], &found, sizeof found);                                     \
                if (!isfinite(m)) m = 0;                                                           \
                for (int s = 0; s < 2; ++s) {                                                      \
                    const REAL scale = s ? (REAL)0.7 : (REAL)1;                                    \
                    double total = ops->row_exp_sum(x, n, m, scale, out, n > 1 ? b : NULL);        \
                    h[2] = hash_bytes(h[2], &total, sizeof total);                                 \
                    h[2] = hash_bytes(h[2], out, (size_t)n * sizeof(REAL));                        \
                    total = ops->row_exp_sum(x, n, m, scale, NULL, NULL);                          \
                    h[2] = hash_bytes(h[2], &total, sizeof total);                                 \
                    total = ops->row_sum_below_one(x, n, m, scale, 1);                             \
                    h[3] = hash_bytes(h[3], &total, sizeof total);                                 \
                    total = ops->row_sum_below_one(out, n, m, scale, 0);                           \
                    h[3] = hash_bytes(h[3], &total, sizeof total);                                 \
                    total = ops->row_sum(x, n, s ? m : 0, scale);                                  \
                    h[4] = hash_bytes(h[4], &total, sizeof total);                                 \
                    total = ops->row_dot(x, b, n, s ? m : 0);                                      \
                    h[5] = hash_bytes(h[5], &total, sizeof total);                                 \
                }                                                                                  \
                ops->row_affine(x, n, (REAL)0, (REAL)0.3, (REAL)0.01, out);                        \
                h[6] = hash_bytes(h[6], out, (size_t)n * sizeof(REAL));                            \
                ops->row_affine(x, n, m, (REAL)1.7, (REAL)-0.2, out);                              \
                h[6] = hash_bytes(h[6], out, (size_t)n * sizeof(REAL));                            \
                ops->row_ay_minus_cb(x, b, n, (REAL)0.9, (REAL)0.3, out);                          \
                h[7] = hash_bytes(h[7], out, (size_t)n * sizeof(REAL));                            \
                ops->row_mul_shifted(b, x, n, (REAL)0.25, out);                                    \
                h[8] = hash_bytes(h[8], out, (size_t)n * sizeof(REAL));                            \
            }                                                                                      \
        }                                                                                          \
        /* small_rows: 1..16 classes, 1..37 rows, with and without options */                    \
        for (ptrdiff_t n = 1; n <= 16; ++n)                                                        \
            for (ptrdiff_t rows = 1; rows <= 37; rows += 4)                                        \
                for (int variant = 0; variant < 4; ++variant) {                                    \
                    int64_t target[40], argmax[40];                                                \
                    double weight[16], loss[40], lse[40];                                          \
                    for (ptrdiff_t j = 0; j < rows * n; ++j)                                       \
                        x2[j] = (REAL)special_or_random(variant == 3 ? 1 : (variant == 2 ? 2 : 0)); \
                    if (variant == 1 && rows > 2) { x2[0] = 40; x2[n] = -5; } /* confident rows */ \
                    for (ptrdiff_t r = 0; r < rows; ++r)                                           \
                        target[r] = r % 7 == 3 ? -100 : (int64_t)(uniform() * (double)n);           \
                    for (ptrdiff_t j = 0; j < n; ++j) weight[j] = 0.5 + uniform();                \
                    const double eps = variant == 2 ? 0.1 : 0.0;                                   \
                    ops->small_rows(x2, n, rows, n, target, -100, variant == 1 ? weight : NULL, eps, \
                                    1.0 / (double)rows, loss, grad, lse, argmax);                  \
                    h[9] = hash_bytes(h[9], loss, (size_t)rows * sizeof(double));                  \
                    h[9] = hash_bytes(h[9], grad, (size_t)(rows * n) * sizeof(REAL));              \
                    h[9] = hash_bytes(h[9], lse, (size_t)rows * sizeof(double));                   \
                    h[9] = hash_bytes(h[9], argmax, (size_t)rows * sizeof(int64_t));               \
                }                                                                                  \
        /* the exp over its whole range: -inf, underflow, the clamps, 0, NaN */                   \
        for (ptrdiff_t j = 0; j < MAX_N; ++j) x[j] = (REAL)(-800.0 * (double)j / MAX_N);            \
        x[1] = (REAL)-INFINITY;                                                                    \
        x[2] = (REAL)NAN;                                                                          \
        x[3] = (REAL)-0.0;                                                                         \
        double total = ops->row_exp_sum(x, MAX_N, 0, 1, out, NULL);                                \
        h[10] = hash_bytes(h[10], &total, sizeof total);                                           \
        h[10] = hash_bytes(h[10], out, sizeof out);                                                \
        static const char *names[11] = {"row_max", "row_find", "row_exp_sum", "row_sum_below_one", \
                                        "row_sum", "row_dot", "row_affine", "row_ay_minus_cb",     \
                                        "row_mul_shifted", "small_rows", "exp_range"};             \
        for (int i = 0; i < 11; ++i) printf("%s %-18s %016llx\n", #SUFFIX, names[i], (unsigned long long)h[i]); \
    }

DIGEST(float, f32, fsce_get_ops_f32)
DIGEST(double, f64, fsce_get_ops_f64)

static int same_float(float a, float b) { return fsce_f32_to_bits(a) == fsce_f32_to_bits(b) || (a != a && b != b); }

/* the 16-bit table of one format: hashes, and mismatches against the scalar conversions and
   the float32 helpers */
static void digest_half(const char *format, const fsce_ops_half *ops, float (*widen1)(uint16_t),
                        uint16_t (*narrow1)(float))
{
    static uint16_t x[MAX_N], back[MAX_N];
    static float wide[MAX_N], out[MAX_N], expected[MAX_N];
    const fsce_ops_f32 *f32 = fsce_get_ops_f32();
    uint64_t h[6];
    long mismatches = 0;
    for (int i = 0; i < 6; ++i) h[i] = 1469598103934665603ull;
    /* every 16-bit value widened, and narrowed back */
    for (uint32_t first = 0; first < 65536; first += 4096) {
        for (ptrdiff_t j = 0; j < 4096; ++j) x[j] = (uint16_t)(first + (uint32_t)j);
        ops->widen(x, 4096, wide);
        ops->narrow(wide, 4096, back);
        h[0] = hash_bytes(h[0], wide, 4096 * sizeof(float));
        h[1] = hash_bytes(h[1], back, 4096 * sizeof(uint16_t));
        for (ptrdiff_t j = 0; j < 4096; ++j)
            mismatches += !same_float(wide[j], widen1(x[j])) || back[j] != narrow1(wide[j]);
    }
    /* float32 values narrowed: a sweep of bit patterns, the ties of either format, odd lengths */
    for (uint32_t k = 0; k < 3 * 65536; k += MAX_N) {
        const ptrdiff_t n = (ptrdiff_t)(k / MAX_N % 80) + 1;
        for (ptrdiff_t j = 0; j < n; ++j) {
            const uint32_t i = k + (uint32_t)j;
            const uint32_t bits = i < 65536 ? i * 65537u : i < 131072 ? i << 16 | 0x8000u : i << 13 | 0x1000u;
            wide[j] = fsce_bits_to_f32(bits);
        }
        ops->narrow(wide, n, back);
        h[1] = hash_bytes(h[1], back, (size_t)n * sizeof(uint16_t));
        for (ptrdiff_t j = 0; j < n; ++j) mismatches += back[j] != narrow1(wide[j]);
    }
    /* the passes of a plain row, against the float32 helpers on the widened row */
    state = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 81 + 6; ++k) {
        const ptrdiff_t n = k < 81 ? k : lengths_extra[k - 81];
        for (int mode = 0; mode < 3; ++mode) {
            for (ptrdiff_t j = 0; j < n; ++j) {
                x[j] = narrow1((float)special_or_random(mode));
                wide[j] = widen1(x[j]);
            }
            float m = ops->row_max(x, n);
            mismatches += !same_float(m, f32->row_max(wide, n));
            h[2] = hash_bytes(h[2], &m, sizeof m);
            if (!isfinite(m)) m = 0;
            double total = ops->row_sum(x, n, m, 0.7f);
            mismatches += total != f32->row_sum(wide, n, m, 0.7f) && total == total;
            h[3] = hash_bytes(h[3], &total, sizeof total);
            total = ops->row_exp_sum(x, n, m, out, n > 1 ? x : NULL);
            const double expected_total = f32->row_exp_sum(wide, n, m, 1, expected, NULL);
            mismatches += !(total == expected_total || (total != total && expected_total != expected_total));
            for (ptrdiff_t j = 0; j < n; ++j) mismatches += !same_float(out[j], expected[j]);
            h[4] = hash_bytes(h[4], &total, sizeof total);
            h[4] = hash_bytes(h[4], out, (size_t)n * sizeof(float));
            ops->affine_narrow(wide, n, 1.3f, 0.02f, back);
            f32->row_affine(wide, n, 0, 1.3f, 0.02f, expected);
            for (ptrdiff_t j = 0; j < n; ++j) mismatches += back[j] != narrow1(expected[j]);
            h[5] = hash_bytes(h[5], back, (size_t)n * sizeof(uint16_t));
        }
    }
    static const char *names[6] = {"widen", "narrow", "row_max", "row_sum", "row_exp_sum", "affine_narrow"};
    for (int i = 0; i < 6; ++i) printf("%s %-18s %016llx\n", format, names[i], (unsigned long long)h[i]);
    printf("%s %-18s %ld\n", format, "mismatches", mismatches);
}

int main(void)
{
    fsce_init();
    printf("path %s\n", fsce_simd_path());
    digest_f32();
    digest_f64();
    digest_half("bf16", fsce_get_ops_bf16(), fsce_bf16_to_f32, fsce_f32_to_bf16);
    digest_half("f16", fsce_get_ops_f16(), fsce_f16_to_f32, fsce_f32_to_f16);
    return 0;
}
