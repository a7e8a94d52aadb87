# cython: language_level=3
"""Declarations shared by the kernel modules.

The C row helpers (csrc/fsce_rows.h) come in one table per dtype; the fused
inline wrappers below pick the float32 or float64 table, so a kernel written
once over ``floating`` calls the right vector code.  Every helper works on one
row of ``n`` contiguous elements and never touches Python objects.
"""
from cython cimport floating


from libc.math cimport INFINITY, NAN
from libc.stdint cimport int64_t


cdef extern from "fsce_rows.h" nogil:
    enum: FSCE_SMALL_ROW_CLASSES
    double FSCE_CONFIDENT_TOTAL

    ctypedef struct fsce_hard_targets:
        const int64_t *target
        int64_t ignore_index
        const double *weight
        double eps
        double z_loss
        double scale

    ctypedef struct fsce_row_sums:
        double m
        double z_t
        double mean_gap
        double total
        double log_total
        double other

    ctypedef struct fsce_ops_f32:
        float (*row_max)(const float *x, Py_ssize_t n) noexcept nogil
        Py_ssize_t (*row_find)(const float *x, Py_ssize_t n, float value) noexcept nogil
        double (*row_exp_sum)(const float *x, Py_ssize_t n, float shift, float scale,
                              float *out, const float *next) noexcept nogil
        void (*row_affine)(const float *y, Py_ssize_t n, float shift, float a, float c,
                           float *out) noexcept nogil
        void (*row_ay_minus_cb)(const float *y, const float *b, Py_ssize_t n, float a, float c,
                                float *out) noexcept nogil
        double (*row_sum)(const float *x, Py_ssize_t n, float shift, float scale) noexcept nogil
        double (*row_dot)(const float *x, const float *b, Py_ssize_t n, float shift) noexcept nogil
        void (*row_mul_shifted)(const float *s, const float *g, Py_ssize_t n, float d,
                                float *out) noexcept nogil
        void (*small_rows)(const float *x, Py_ssize_t x_stride, Py_ssize_t n_rows, Py_ssize_t n,
                           const int64_t *target, int64_t ignore_index, const double *weight,
                           double eps, double scale, double *row_loss, float *grad,
                           double *row_lse, int64_t *row_argmax) noexcept nogil
        float (*row_max_for_lse)(const float *z, Py_ssize_t n) noexcept nogil
        double (*row_log_total)(const float *terms, Py_ssize_t n, float shift, float scale,
                                int exponentiate, double total, double *other) noexcept nogil
        double (*row_lse)(const float *z, Py_ssize_t n, const float *next) noexcept nogil
        void (*hard_rows)(const float *z, Py_ssize_t z_stride, Py_ssize_t n_rows, Py_ssize_t n,
                          const fsce_hard_targets *targets, double z_shift, double *row_loss,
                          float *grad, double *row_lse, const float *next) noexcept nogil
        double (*hard_row_end)(Py_ssize_t n, int64_t t, const fsce_hard_targets *targets,
                               const fsce_row_sums *sums, double z_shift, float *grad,
                               double *lse) noexcept nogil

    ctypedef struct fsce_ops_f64:
        double (*row_max)(const double *x, Py_ssize_t n) noexcept nogil
        Py_ssize_t (*row_find)(const double *x, Py_ssize_t n, double value) noexcept nogil
        double (*row_exp_sum)(const double *x, Py_ssize_t n, double shift, double scale,
                              double *out, const double *next) noexcept nogil
        void (*row_affine)(const double *y, Py_ssize_t n, double shift, double a, double c,
                           double *out) noexcept nogil
        void (*row_ay_minus_cb)(const double *y, const double *b, Py_ssize_t n, double a,
                                double c, double *out) noexcept nogil
        double (*row_sum)(const double *x, Py_ssize_t n, double shift, double scale) noexcept nogil
        double (*row_dot)(const double *x, const double *b, Py_ssize_t n,
                          double shift) noexcept nogil
        void (*row_mul_shifted)(const double *s, const double *g, Py_ssize_t n, double d,
                                double *out) noexcept nogil
        void (*small_rows)(const double *x, Py_ssize_t x_stride, Py_ssize_t n_rows, Py_ssize_t n,
                           const int64_t *target, int64_t ignore_index, const double *weight,
                           double eps, double scale, double *row_loss, double *grad,
                           double *row_lse, int64_t *row_argmax) noexcept nogil
        double (*row_max_for_lse)(const double *z, Py_ssize_t n) noexcept nogil
        double (*row_log_total)(const double *terms, Py_ssize_t n, double shift, double scale,
                                int exponentiate, double total, double *other) noexcept nogil
        double (*row_lse)(const double *z, Py_ssize_t n, const double *next) noexcept nogil
        void (*hard_rows)(const double *z, Py_ssize_t z_stride, Py_ssize_t n_rows, Py_ssize_t n,
                          const fsce_hard_targets *targets, double z_shift, double *row_loss,
                          double *grad, double *row_lse, const double *next) noexcept nogil

    void fsce_init()
    const fsce_ops_f32 *fsce_get_ops_f32()
    const fsce_ops_f64 *fsce_get_ops_f64()
    const char *fsce_simd_path()


cdef inline floating row_max(const floating *x, Py_ssize_t n) noexcept nogil:
    """The largest non-NaN x_j (-inf if none): a NaN reaches exp-based results through
    exp(NaN - max) = NaN; see row_max_for_lse for the max as the shift of a log-sum-exp."""
    if floating is float:
        return fsce_get_ops_f32().row_max(x, n)
    else:
        return fsce_get_ops_f64().row_max(x, n)


cdef inline Py_ssize_t row_find(const floating *x, Py_ssize_t n, floating value) noexcept nogil:
    """First j with x_j == value or x_j NaN (the first NaN when value is NaN), -1 if none."""
    if floating is float:
        return fsce_get_ops_f32().row_find(x, n, value)
    else:
        return fsce_get_ops_f64().row_find(x, n, value)


cdef inline floating row_max_for_lse(const floating *x, Py_ssize_t n) noexcept nogil:
    """m = max_j x_j for lse = m + log sum_j exp(x_j - m); NaN when m is infinite and the
    row holds a NaN (beside a finite m the NaN reaches the sum by itself)."""
    if floating is float:
        return fsce_get_ops_f32().row_max_for_lse(x, n)
    else:
        return fsce_get_ops_f64().row_max_for_lse(x, n)


cdef inline double row_exp_sum(const floating *x, Py_ssize_t n, floating shift,
                               floating scale, floating *out,
                               const floating *next) noexcept nogil:
    """sum_j exp((x_j - shift) * scale); stores each exp into out unless NULL.  next: the
    n-element row read after this one (NULL if none), prefetched meanwhile."""
    if floating is float:
        return fsce_get_ops_f32().row_exp_sum(x, n, shift, scale, out, next)
    else:
        return fsce_get_ops_f64().row_exp_sum(x, n, shift, scale, out, next)


cdef extern from "fsce_formulas.h" nogil:
    double fsce_lse(double m, double log_total)
    double fsce_log_total(double total, double other)
    double fsce_weighted(double coefficient, double term)
    double fsce_hard_target_loss(double target_mass, double eps, double m, double z_t,
                                 double log_total, double mean_gap)
    double fsce_confident_target_grad(double scale, double target_mass, double eps,
                                      double z_loss_term, double other, double total,
                                      double n_classes)


cdef inline double log_of_total(const floating *terms, Py_ssize_t n, floating shift,
                                floating scale, bint exponentiate, double total,
                                double *other) noexcept nogil:
    """log S for the S = total that row_exp_sum returned for this row, with the digits of
    a confident row kept (log1p of S' = S - 1 summed without the max's own 1, stored in
    other; -1 there otherwise): csrc/fsce_rows_impl.h, row_log_total."""
    if floating is float:
        return fsce_get_ops_f32().row_log_total(terms, n, shift, scale, exponentiate, total, other)
    else:
        return fsce_get_ops_f64().row_log_total(terms, n, shift, scale, exponentiate, total, other)


cdef inline double row_lse(const floating *z, Py_ssize_t n, const floating *next) noexcept nogil:
    """log sum_j exp(z_j) of one row (next: the row read after it, or NULL)."""
    if floating is float:
        return fsce_get_ops_f32().row_lse(z, n, next)
    else:
        return fsce_get_ops_f64().row_lse(z, n, next)


cdef inline void hard_rows(const floating *z, Py_ssize_t z_stride, Py_ssize_t n_rows,
                           Py_ssize_t n, const fsce_hard_targets *targets, double z_shift,
                           double *row_loss, floating *grad, double *row_lse,
                           const floating *next) noexcept nogil:
    """Loss (gradient, lse) of rows with class-index targets, each helper inlined:
    csrc/fsce_rows_impl.h, hard_rows."""
    if floating is float:
        fsce_get_ops_f32().hard_rows(z, z_stride, n_rows, n, targets, z_shift, row_loss, grad,
                                     row_lse, next)
    else:
        fsce_get_ops_f64().hard_rows(z, z_stride, n_rows, n, targets, z_shift, row_loss, grad,
                                     row_lse, next)


cdef inline void row_affine(const floating *y, Py_ssize_t n, floating shift, floating a,
                            floating c, floating *out) noexcept nogil:
    """out_j = (y_j - shift) * a - c."""
    if floating is float:
        fsce_get_ops_f32().row_affine(y, n, shift, a, c, out)
    else:
        fsce_get_ops_f64().row_affine(y, n, shift, a, c, out)


cdef inline void row_ay_minus_cb(const floating *y, const floating *b, Py_ssize_t n,
                                 floating a, floating c, floating *out) noexcept nogil:
    """out_j = y_j * a - c * b_j."""
    if floating is float:
        fsce_get_ops_f32().row_ay_minus_cb(y, b, n, a, c, out)
    else:
        fsce_get_ops_f64().row_ay_minus_cb(y, b, n, a, c, out)


cdef inline double row_sum(const floating *x, Py_ssize_t n, floating shift,
                           floating scale) noexcept nogil:
    """sum_j (x_j - shift) * scale in float64."""
    if floating is float:
        return fsce_get_ops_f32().row_sum(x, n, shift, scale)
    else:
        return fsce_get_ops_f64().row_sum(x, n, shift, scale)


cdef inline double row_dot(const floating *x, const floating *b, Py_ssize_t n,
                           floating shift) noexcept nogil:
    """sum_j b_j (x_j - shift) over b_j != 0, in float64."""
    if floating is float:
        return fsce_get_ops_f32().row_dot(x, b, n, shift)
    else:
        return fsce_get_ops_f64().row_dot(x, b, n, shift)


cdef inline void row_mul_shifted(const floating *s, const floating *g, Py_ssize_t n,
                                 floating d, floating *out) noexcept nogil:
    """out_j = s_j * (g_j - d)."""
    if floating is float:
        fsce_get_ops_f32().row_mul_shifted(s, g, n, d, out)
    else:
        fsce_get_ops_f64().row_mul_shifted(s, g, n, d, out)


cdef inline void small_rows(const floating *x, Py_ssize_t x_stride, Py_ssize_t n_rows,
                            Py_ssize_t n, const int64_t *target, int64_t ignore_index,
                            const double *weight, double eps, double scale, double *row_loss,
                            floating *grad, double *row_lse, int64_t *row_argmax) noexcept nogil:
    """Hard-target cross-entropy of rows of n <= FSCE_SMALL_ROW_CLASSES classes, one row
    per lane."""
    if floating is float:
        fsce_get_ops_f32().small_rows(x, x_stride, n_rows, n, target, ignore_index, weight, eps,
                                      scale, row_loss, grad, row_lse, row_argmax)
    else:
        fsce_get_ops_f64().small_rows(x, x_stride, n_rows, n, target, ignore_index, weight, eps,
                                      scale, row_loss, grad, row_lse, row_argmax)


# ---------------------------------------------------------------------------
# running a kernel over rows

from cython.parallel cimport prange

#: kernels on fewer elements keep the GIL: releasing it costs more than they take
cdef enum:
    GIL_RELEASE_MIN_ELEMENTS = 1 << 14

ctypedef void (*RowRange)(void *call, Py_ssize_t start, Py_ssize_t stop, int worker) noexcept nogil


cdef inline void for_row_ranges(RowRange body, void *call, Py_ssize_t n_rows,
                                int n_threads) noexcept nogil:
    """body(call, start, stop, worker) on n_threads equal, contiguous row ranges.

    The ranges depend only on n_rows and n_threads; with one thread the body
    runs directly, without starting an OpenMP team.
    """
    cdef int worker
    if n_threads <= 1:
        body(call, 0, n_rows, 0)
        return
    for worker in prange(n_threads, schedule='static', chunksize=1, num_threads=n_threads):
        body(call, <Py_ssize_t>worker * n_rows // n_threads,
             (<Py_ssize_t>worker + 1) * n_rows // n_threads, worker)


cdef inline void run_rows(RowRange body, void *call, Py_ssize_t n_rows, Py_ssize_t n_elements,
                          int n_threads) noexcept:
    """for_row_ranges, with the GIL released when the input is large enough."""
    if n_elements >= GIL_RELEASE_MIN_ELEMENTS:
        with nogil:
            for_row_ranges(body, call, n_rows, n_threads)
    else:
        for_row_ranges(body, call, n_rows, n_threads)


# ---------------------------------------------------------------------------
# 16-bit floats (bfloat16, float16) to float32 rows and back

from libc.stdint cimport uint16_t


cdef extern from "fsce_rows.h" nogil:
    ctypedef struct fsce_ops_half:
        void (*widen)(const uint16_t *x, Py_ssize_t n, float *out) noexcept nogil
        void (*narrow)(const float *x, Py_ssize_t n, uint16_t *out) noexcept nogil
        float (*row_max)(const uint16_t *x, Py_ssize_t n) noexcept nogil
        double (*row_sum)(const uint16_t *x, Py_ssize_t n, float shift, float scale) noexcept nogil
        double (*row_exp_sum)(const uint16_t *x, Py_ssize_t n, float shift, float *out,
                              const uint16_t *next, const uint16_t *fill) noexcept nogil
        void (*affine_narrow)(const float *y, Py_ssize_t n, float a, float c,
                              uint16_t *out) noexcept nogil

    const fsce_ops_half *fsce_get_ops_bf16()
    const fsce_ops_half *fsce_get_ops_f16()


cdef enum HalfFormat:
    NOT_HALF = 0
    BFLOAT16 = 1
    FLOAT16 = 2


cdef inline const fsce_ops_half *half_ops(HalfFormat format) noexcept nogil:
    """The conversions of a 16-bit format (BFLOAT16 or FLOAT16)."""
    return fsce_get_ops_bf16() if format == BFLOAT16 else fsce_get_ops_f16()


cdef inline void widen_row(HalfFormat format, const uint16_t *x, Py_ssize_t n,
                           float *out) noexcept nogil:
    """out_j = x_j as float32 (exact)."""
    half_ops(format).widen(x, n, out)


cdef inline void narrow_row(HalfFormat format, const float *x, Py_ssize_t n,
                            uint16_t *out) noexcept nogil:
    """out_j = x_j rounded to the 16-bit format, to nearest even."""
    half_ops(format).narrow(x, n, out)
