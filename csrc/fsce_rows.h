/*
 * fsce_rows.h -- plain C row helpers used by the Cython kernels.
 *
 * A row is n contiguous elements.  Each helper is compiled for several
 * instruction sets (fsce_rows_<isa>.c, see csrc/README.md); fsce_init() picks the best one the
 * running CPU supports, once, and fsce_get_ops_f32()/fsce_get_ops_f64()
 * return the chosen table.  The environment variable FASTSCE_SIMD caps the
 * choice: "baseline" forces the portable path, "avx2" stops below AVX-512
 * (the tests use both to check every path on one machine).
 * No Python API here.
 */
#ifndef FSCE_ROWS_H
#define FSCE_ROWS_H

#include <stddef.h>
#include <stdint.h>

/* rows with at most this many classes can use the lane-per-row small_rows helper (beyond
   it, the row-by-row hard_rows is as fast: on AVX2, both some 0.9 ns per class at 64-100) */
#define FSCE_SMALL_ROW_CLASSES 64

/* a row whose exps sum to S below this has its lse as m + log1p(S'), S' = S - 1 summed
   without the 1 (row_sum_below_one): log(S) there would lose the digits of S' */
#define FSCE_CONFIDENT_TOTAL 1.5

/* the class-index targets of hard_rows: per row b = w_t (1 - eps) onehot(t) + eps / C */
typedef struct {
    const int64_t *target; /* class index per row (validated), from the first row passed */
    int64_t ignore_index;  /* rows with this target: loss 0, gradient 0 */
    const double *weight;  /* class weights (C,), or NULL (all 1); only with eps = 0 */
    double eps;            /* label smoothing */
    double z_loss;         /* lambda of the z-loss lambda lse^2 */
    double scale;          /* the gradient's factor (1 / the "mean" denominator, 1 / T) */
} fsce_hard_targets;

/* what the passes over one class-index row found, for hard_row_end */
typedef struct {
    double m;         /* the max (the lse's shift) */
    double z_t;       /* the target's logit */
    double mean_gap;  /* m - mean_j z_j (0 without smoothing) */
    double total;     /* S = sum_j exp(z_j - m) */
    double log_total; /* log S, or log1p(S') for a confident row */
    double other;     /* S' for a confident row, else -1 */
} fsce_row_sums;

#define FSCE_DECLARE_OPS(REAL, SUFFIX)                                                   \
    typedef struct {                                                                     \
        REAL (*row_max)(const REAL *x, ptrdiff_t n);                                     \
        ptrdiff_t (*row_find)(const REAL *x, ptrdiff_t n, REAL value);                   \
        double (*row_exp_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale, REAL *out, \
                              const REAL *next);                                         \
        void (*row_affine)(const REAL *y, ptrdiff_t n, REAL shift, REAL a, REAL c, REAL *out); \
        void (*row_ay_minus_cb)(const REAL *y, const REAL *b, ptrdiff_t n, REAL a, REAL c, REAL *out); \
        double (*row_sum)(const REAL *x, ptrdiff_t n, REAL shift, REAL scale);           \
        double (*row_dot)(const REAL *x, const REAL *b, ptrdiff_t n, REAL shift);        \
        void (*row_mul_shifted)(const REAL *s, const REAL *g, ptrdiff_t n, REAL d, REAL *out); \
        void (*small_rows)(const REAL *x, ptrdiff_t x_stride, ptrdiff_t n_rows, ptrdiff_t n,    \
                           const int64_t *target, int64_t ignore_index, const double *weight,   \
                           double eps, double scale, double *row_loss, REAL *grad,              \
                           double *row_lse, int64_t *row_argmax);                               \
        REAL (*row_max_for_lse)(const REAL *z, ptrdiff_t n);                                     \
        double (*row_log_total)(const REAL *terms, ptrdiff_t n, REAL shift, REAL scale,          \
                                int exponentiate, double total, double *other);                  \
        double (*row_lse)(const REAL *z, ptrdiff_t n, const REAL *next);                         \
        double (*hard_row_end)(ptrdiff_t n, int64_t t, const fsce_hard_targets *targets,         \
                               const fsce_row_sums *sums, double z_shift, REAL *grad, double *lse); \
        void (*hard_rows)(const REAL *z, ptrdiff_t z_stride, ptrdiff_t n_rows, ptrdiff_t n,      \
                          const fsce_hard_targets *targets, double z_shift, double *row_loss,    \
                          REAL *grad, double *row_lse, const REAL *next);                       \
    } fsce_ops_##SUFFIX;

FSCE_DECLARE_OPS(float, f32)
FSCE_DECLARE_OPS(double, f64)

/* 16-bit floats (bfloat16, float16: one table each, as uint16_t bits) to float32 rows and
   back (widen is exact, narrow rounds to nearest even), and the passes of a plain row over
   16-bit logits: those of the float32 table on the widened row (fsce_half_impl.h) */
typedef struct {
    void (*widen)(const uint16_t *x, ptrdiff_t n, float *out);
    void (*narrow)(const float *x, ptrdiff_t n, uint16_t *out);
    float (*row_max)(const uint16_t *x, ptrdiff_t n);
    double (*row_sum)(const uint16_t *x, ptrdiff_t n, float shift, float scale);
    double (*row_exp_sum)(const uint16_t *x, ptrdiff_t n, float shift, float *out, const uint16_t *next,
                          const uint16_t *fill);
    void (*affine_narrow)(const float *y, ptrdiff_t n, float a, float c, uint16_t *out);
} fsce_ops_half;

/* The tables of each instruction set (fsce_rows_<isa>.c; AVX2 and AVX-512 on x86-64 only),
   for fsce_dispatch.c. */
#if defined(__GNUC__) || defined(__clang__)
#define FSCE_HIDDEN __attribute__((visibility("hidden")))
#else
#define FSCE_HIDDEN
#endif
extern FSCE_HIDDEN const fsce_ops_f32 fsce_ops_f32_baseline, fsce_ops_f32_avx2, fsce_ops_f32_avx512;
extern FSCE_HIDDEN const fsce_ops_f64 fsce_ops_f64_baseline, fsce_ops_f64_avx2, fsce_ops_f64_avx512;
extern FSCE_HIDDEN const fsce_ops_half fsce_ops_bf16_baseline, fsce_ops_bf16_avx2, fsce_ops_bf16_avx512;
extern FSCE_HIDDEN const fsce_ops_half fsce_ops_f16_baseline, fsce_ops_f16_avx2, fsce_ops_f16_avx512;

/* Choose the instruction set; idempotent.  Call before any helper runs. */
void fsce_init(void);
/* The chosen tables (inline: the kernels fetch them for every row). */
extern FSCE_HIDDEN const fsce_ops_f32 *fsce_chosen_f32;
extern FSCE_HIDDEN const fsce_ops_f64 *fsce_chosen_f64;
static inline const fsce_ops_f32 *fsce_get_ops_f32(void) { return fsce_chosen_f32; }
static inline const fsce_ops_f64 *fsce_get_ops_f64(void) { return fsce_chosen_f64; }
extern FSCE_HIDDEN const fsce_ops_half *fsce_chosen_bf16;
extern FSCE_HIDDEN const fsce_ops_half *fsce_chosen_f16;
static inline const fsce_ops_half *fsce_get_ops_bf16(void) { return fsce_chosen_bf16; }
static inline const fsce_ops_half *fsce_get_ops_f16(void) { return fsce_chosen_f16; }
/* Name of the chosen instruction set, e.g. "avx2+fma" or "baseline (sse2)". */
const char *fsce_simd_path(void);

#endif /* FSCE_ROWS_H */
