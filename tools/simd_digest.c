/*
 * simd_digest.c -- a fingerprint of every row helper's output bits, for
 * checking that a change to csrc/ keeps each vector path bit for bit.
 *
 * Every helper of the chosen table (csrc/fsce_rows.h) runs over fixed
 * pseudo-random rows of every length 0..80 and a few long ones, with special
 * values mixed in (-inf, +-0, NaN, huge, tiny, values far below the max); each
 * helper's outputs are hashed (FNV-1a over the bytes), one line per helper and
 * dtype.  Run it with FASTSCE_SIMD unset, =avx2, =baseline on the build before
 * and after a change: equal lines mean equal bits.  It also checks that the two
 * kernels of class-index rows (small_rows, lane per row; hard_rows, row by row)
 * agree to rounding on finite rows, and the 16-bit tables (bfloat16, float16),
 * hashed likewise, against the scalar conversions of fsce_half.h and the float32
 * helpers on the widened row (a "mismatches" line, 0 when all agree); it exits
 * with 1 if anything disagrees.  It also runs under
 * qemu-aarch64 for the NEON path:
 *
 *   cc -O2 -ffp-contract=fast -Icsrc tools/simd_digest.c csrc/fsce_dispatch.c csrc/fsce_rows*.c -lm
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

/* small_rows and hard_rows on the same rows: sums in another order, so equal within tol */
static int disagreements = 0;
static void agree(const char *what, ptrdiff_t n, double a, double b, double tol)
{
    if (fabs(a - b) <= tol) return;
    if (disagreements++ < 10) printf("DISAGREE %s, %td classes: small_rows %.17g, hard_rows %.17g\n", what, n, a, b);
}

#define DIGEST(REAL, SUFFIX, GET_OPS)                                                              \
    static void digest_##SUFFIX(void)                                                              \
    {                                                                                              \
        static REAL x[MAX_N], b[MAX_N], out[MAX_N], x2[80 * 40], grad[80 * 40];                   \
        uint64_t h[12];                                                                            \
        const fsce_ops_##SUFFIX *ops = GET_OPS();                                                  \
        for (int i = 0; i < 12; ++i) h[i] = 1469598103934665603ull;                                \
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
                const REAL m_lse = ops->row_max_for_lse(x, n);                                     \
                const double lse = ops->row_lse(x, n, NULL);                                       \
                h[0] = hash_bytes(hash_bytes(h[0], &m_lse, sizeof m_lse), &lse, sizeof lse);       \
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
                    double other;                                                                  \
                    total = ops->row_log_total(x, n, m, scale, 1, 0.5, &other);                    \
                    h[3] = hash_bytes(hash_bytes(h[3], &total, sizeof total), &other, sizeof other); \
                    total = ops->row_log_total(out, n, m, scale, 0, 0.5, &other);                  \
                    h[3] = hash_bytes(hash_bytes(h[3], &total, sizeof total), &other, sizeof other); \
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
        /* small_rows (up to FSCE_SMALL_ROW_CLASSES classes), hard_rows (1..80), 1..37 rows, options */ \
        for (ptrdiff_t n = 1; n <= 80; ++n)                                                        \
            for (ptrdiff_t rows = 1; rows <= 37; rows += 4)                                        \
                for (int variant = 0; variant < 4; ++variant) {                                    \
                    int64_t target[40], argmax[40];                                                \
                    double weight[80], loss[40], lse[40];                                          \
                    for (ptrdiff_t j = 0; j < rows * n; ++j)                                       \
                        x2[j] = (REAL)special_or_random(variant == 3 ? 1 : (variant == 2 ? 2 : 0)); \
                    if (variant == 1 && rows > 2) { x2[0] = 40; x2[n] = -5; } /* confident rows */ \
                    for (ptrdiff_t r = 0; r < rows; ++r)                                           \
                        target[r] = r % 7 == 3 ? -100 : (int64_t)(uniform() * (double)n);           \
                    for (ptrdiff_t j = 0; j < n; ++j) weight[j] = 0.5 + uniform();                \
                    const double eps = variant == 2 ? 0.1 : 0.0;                                   \
                    if (n <= FSCE_SMALL_ROW_CLASSES) {                                             \
                        ops->small_rows(x2, n, rows, n, target, -100, variant == 1 ? weight : NULL, eps, \
                                        1.0 / (double)rows, loss, grad, lse, argmax);              \
                        h[9] = hash_bytes(h[9], loss, (size_t)rows * sizeof(double));              \
                        h[9] = hash_bytes(h[9], grad, (size_t)(rows * n) * sizeof(REAL));          \
                        h[9] = hash_bytes(h[9], lse, (size_t)rows * sizeof(double));               \
                        h[9] = hash_bytes(h[9], argmax, (size_t)rows * sizeof(int64_t));           \
                        if (variant < 2) { /* finite rows: the two kernels agree to rounding */   \
                            const fsce_hard_targets same = {target, -100, variant == 1 ? weight : NULL, \
                                                            eps, 0.0, 1.0 / (double)rows};         \
                            static REAL grad2[80 * 40];                                            \
                            double loss2[40], lse2[40];                                            \
                            ops->hard_rows(x2, n, rows, n, &same, 0.0, loss2, grad2, lse2, NULL);  \
                            const double tol = sizeof(REAL) == 4 ? 1e-6 : 1e-14;                   \
                            for (ptrdiff_t i = 0; i < rows; ++i)                                   \
                                agree(#SUFFIX " loss", n, loss[i], loss2[i], tol * (1 + fabs(loss2[i]))); \
                            for (ptrdiff_t j = 0; j < rows * n; ++j)                               \
                                agree(#SUFFIX " grad", n, grad[j], grad2[j], tol);                 \
                        }                                                                          \
                    }                                                                              \
                    /* hard_rows on the same rows, with every option of its own */                 \
                    const fsce_hard_targets targets = {target, -100, variant == 1 ? weight : NULL,  \
                                                       eps, variant == 3 ? 1e-3 : 0.0, 0.25};      \
                    ops->hard_rows(x2, n, rows, n, &targets, variant * 0.5, loss,                  \
                                   variant == 2 ? NULL : grad, lse, NULL);                         \
                    h[11] = hash_bytes(h[11], loss, (size_t)rows * sizeof(double));                \
                    h[11] = hash_bytes(h[11], lse, (size_t)rows * sizeof(double));                 \
                    if (variant != 2) h[11] = hash_bytes(h[11], grad, (size_t)(rows * n) * sizeof(REAL)); \
                }                                                                                  \
        /* the exp over its whole range: -inf, underflow, the clamps, 0, NaN */                   \
        for (ptrdiff_t j = 0; j < MAX_N; ++j) x[j] = (REAL)(-800.0 * (double)j / MAX_N);            \
        x[1] = (REAL)-INFINITY;                                                                    \
        x[2] = (REAL)NAN;                                                                          \
        x[3] = (REAL)-0.0;                                                                         \
        double total = ops->row_exp_sum(x, MAX_N, 0, 1, out, NULL);                                \
        h[10] = hash_bytes(h[10], &total, sizeof total);                                           \
        h[10] = hash_bytes(h[10], out, sizeof out);                                                \
        static const char *names[12] = {"row_max, row_lse", "row_find", "row_exp_sum", "row_log_total", \
                                        "row_sum", "row_dot", "row_affine", "row_ay_minus_cb",     \
                                        "row_mul_shifted", "small_rows", "exp_range", "hard_rows"}; \
        for (int i = 0; i < 12; ++i) printf("%s %-18s %016llx\n", #SUFFIX, names[i], (unsigned long long)h[i]); \
    }

DIGEST(float, f32, fsce_get_ops_f32)
DIGEST(double, f64, fsce_get_ops_f64)

static int same_float(float a, float b) { return fsce_f32_to_bits(a) == fsce_f32_to_bits(b) || (a != a && b != b); }

/* the 16-bit table of one format: hashes, and mismatches against the scalar conversions and
   the float32 helpers */
static long digest_half(const char *format, const fsce_ops_half *ops, float (*widen1)(uint16_t),
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
            total = ops->row_exp_sum(x, n, m, out, n > 1 ? x : NULL, n > 2 ? x : NULL);
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
    return mismatches;
}

int main(void)
{
    fsce_init();
    printf("path %s\n", fsce_simd_path());
    digest_f32();
    digest_f64();
    const long mismatches = digest_half("bf16", fsce_get_ops_bf16(), fsce_bf16_to_f32, fsce_f32_to_bf16)
                            + digest_half("f16", fsce_get_ops_f16(), fsce_f16_to_f32, fsce_f32_to_f16);
    return disagreements != 0 || mismatches != 0;
}
