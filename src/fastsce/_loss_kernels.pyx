# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cross-entropy kernels: loss and gradient of softmax cross-entropy in one pass per row.

Design: every target is a distribution b over classes, and for one row

    lse    = m + log sum_j exp(x_j - m),         m = max_j x_j
    loss   = sum_j b_j (lse - x_j) = A log sum_j exp(x_j - m) - sum_j b_j (x_j - m)
    grad_j = scale * (A s_j - b_j),               A = sum_j b_j,  s = softmax(x)

* hard targets (class index t, class weight w_t, label smoothing eps without
  class weights): b = w_t (1 - eps) onehot(t) + eps / C, handled in closed form;
* everything else (soft targets, class weights with smoothing): b is built
  in a per-thread scratch row and used densely.

A row is read from memory once: the max pass pulls it into cache, the exp pass
writes exp(x_j - m) straight into the gradient row, and a last in-cache pass
turns it into the gradient.  ``grad`` may be the logits buffer itself (in
place): every value of x a row needs is read before that row is overwritten.
Per-row losses go to a float64 array; the batch loss is summed from it
afterwards in row order, so results do not depend on the number of threads.
The Python layer (``_loss.py``) validates everything first: kernels cannot fail.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite, log
from libc.string cimport memset

from ._rows cimport (fsce_init, row_max, row_exp_sum, row_affine, row_axpby, row_sum,
                     row_dot)

cnp.import_array()
fsce_init()


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FSCE_OPENMP 1
    #else
    #define FSCE_OPENMP 0
    #endif
    """
    bint FSCE_OPENMP


ctypedef struct HardTargets:
    const cnp.int64_t *index      # class index per row (validated: in range or ignored)
    const double *weight          # class weights, or NULL
    cnp.int64_t ignore_index
    double smoothing              # eps, only with weight == NULL


ctypedef struct RowLayout:
    Py_ssize_t n_rows
    Py_ssize_t n_classes
    Py_ssize_t x_stride           # elements between logits rows
    double grad_scale             # 1 / denominator for 'mean', else 1
    double *row_loss              # OUT (n_rows,)
    int n_threads


# ---------------------------------------------------------------------------
# one row

cdef inline double hard_row(const floating *x, Py_ssize_t n, Py_ssize_t t, double w_t,
                            double eps, double scale, floating *grad) noexcept nogil:
    """Loss of one row with b = w_t (1 - eps) onehot(t) + eps / n; gradient into grad."""
    cdef floating m = row_max(x, n)
    cdef double x_t = x[t]                       # read before grad may overwrite x
    cdef double mean_gap = 0.0                   # m - mean_j x_j, for smoothing
    if eps != 0.0:
        mean_gap = m - row_sum(x, n) / n
    cdef double total = row_exp_sum(x, n, m, 1, grad)
    if grad != NULL:
        # grad_j = scale ((w_t (1 - eps) + eps) s_j - eps / n) - scale w_t (1 - eps) [j = t]
        row_affine(grad, n, 0, <floating>(scale * (w_t * (1.0 - eps) + eps) / total),
                   <floating>(scale * eps / n), grad)
        grad[t] -= <floating>(scale * w_t * (1.0 - eps))
    # loss = w_t (1 - eps) (lse - x_t) + eps (lse - mean_j x_j),  lse = m + log(total)
    return w_t * (1.0 - eps) * ((m - x_t) + log(total)) + eps * (mean_gap + log(total))


cdef inline double dense_row(const floating *x, Py_ssize_t n, const floating *b,
                             double scale, floating *grad) noexcept nogil:
    """Loss of one row with an explicit target distribution b; gradient into grad."""
    cdef floating m = row_max(x, n)
    cdef double mass = row_sum(b, n)             # A = sum_j b_j
    cdef double gap = row_dot(x, b, n, m)        # sum_j b_j (x_j - m), read before grad
    cdef double total = row_exp_sum(x, n, m, 1, grad)
    if grad != NULL:
        # grad_j = scale (A s_j - b_j)
        row_axpby(grad, b, n, <floating>(scale * mass / total), <floating>scale, grad)
    # loss = sum_j b_j (lse - x_j) = A log(total) - sum_j b_j (x_j - m)
    return mass * log(total) - gap


# ---------------------------------------------------------------------------
# all rows

cdef void hard_rows(const floating *x, HardTargets tg, RowLayout lay, floating *scratch,
                    floating *grad) noexcept nogil:
    """Hard targets; scratch (n_threads, C) is used only for weighted smoothing."""
    cdef Py_ssize_t i, j, t, n = lay.n_classes
    cdef floating *g
    cdef floating *b
    cdef double w_t
    for i in prange(lay.n_rows, schedule='static', num_threads=lay.n_threads,
                      use_threads_if=lay.n_threads > 1):
        t = tg.index[i]
        g = NULL
        if grad != NULL:
            g = grad + i * n
        if t == tg.ignore_index:
            lay.row_loss[i] = 0.0
            if g != NULL:
                memset(g, 0, n * sizeof(floating))
        elif tg.weight == NULL or tg.smoothing == 0.0:
            w_t = 1.0
            if tg.weight != NULL:
                w_t = tg.weight[t]
            lay.row_loss[i] = hard_row(x + i * lay.x_stride, n, t, w_t, tg.smoothing,
                                       lay.grad_scale, g)
        else:
            # b_j = eps w_j / C + (1 - eps) w_t [j = t]
            b = scratch + threadid() * n
            for j in range(n):
                b[j] = <floating>(tg.smoothing * tg.weight[j] / n)
            b[t] = <floating>(b[t] + (1.0 - tg.smoothing) * tg.weight[t])
            lay.row_loss[i] = dense_row(x + i * lay.x_stride, n, b, lay.grad_scale, g)


cdef void soft_rows(const floating *x, const floating *y, const double *weight, double eps,
                    RowLayout lay, floating *scratch, floating *grad) noexcept nogil:
    """Soft targets y (C-contiguous rows): b_j = w_j ((1 - eps) y_j + eps / C)."""
    cdef Py_ssize_t i, j, n = lay.n_classes
    cdef floating *g
    cdef floating *b
    cdef const floating *y_row
    for i in prange(lay.n_rows, schedule='static', num_threads=lay.n_threads,
                      use_threads_if=lay.n_threads > 1):
        g = NULL
        if grad != NULL:
            g = grad + i * n
        y_row = y + i * n
        b = scratch + threadid() * n
        for j in range(n):
            b[j] = <floating>((1.0 - eps) * y_row[j] + eps / n)
            if weight != NULL:
                b[j] = <floating>(b[j] * weight[j])
        lay.row_loss[i] = dense_row(x + i * lay.x_stride, n, b, lay.grad_scale, g)


cdef double sum_in_order(const double *values, Py_ssize_t n) noexcept nogil:
    """Compensated (Neumaier) sum, always in index order: thread-count independent.

    An infinite or NaN total is returned as it is (its compensation would be
    inf - inf = NaN).
    """
    cdef double total = 0.0, compensation = 0.0, t
    cdef Py_ssize_t i
    for i in range(n):
        t = total + values[i]
        if abs(total) >= abs(values[i]):
            compensation += (total - t) + values[i]
        else:
            compensation += (values[i] - t) + total
        total = t
    return total + compensation if isfinite(total) else total


# ---------------------------------------------------------------------------
# entry points (arrays already validated by _loss.py)

cdef RowLayout layout(cnp.ndarray logits, double grad_scale, cnp.ndarray row_loss,
                      int n_threads):
    cdef RowLayout lay
    lay.n_rows = logits.shape[0]
    lay.n_classes = logits.shape[1]
    lay.x_stride = logits.strides[0] // logits.itemsize if lay.n_rows > 1 else lay.n_classes
    lay.grad_scale = grad_scale
    lay.row_loss = <double *>cnp.PyArray_DATA(row_loss)
    lay.n_threads = n_threads
    return lay


cdef void *data_or_null(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray>array)


def hard_targets(cnp.ndarray logits, cnp.ndarray index, object weight, cnp.int64_t ignore_index,
                 double smoothing, double grad_scale, cnp.ndarray row_loss, object grad,
                 object scratch, int n_threads):
    """Row losses (and gradient when grad is not None) for class-index targets.

    logits (n_rows, C) float32/float64 with contiguous rows; index int64 (n_rows,);
    weight float64 (C,) or None; row_loss float64 (n_rows,) OUT; grad like logits,
    C-contiguous, OUT (may be logits); scratch (n_threads, C) of logits' dtype when
    weight is given with smoothing.  Returns the row losses summed in row order.
    """
    cdef RowLayout lay = layout(logits, grad_scale, row_loss, n_threads)
    cdef HardTargets tg
    cdef void *x = cnp.PyArray_DATA(logits)
    cdef void *work = data_or_null(scratch)
    cdef void *g = data_or_null(grad)
    cdef double total
    tg.index = <const cnp.int64_t *>cnp.PyArray_DATA(index)
    tg.weight = <const double *>data_or_null(weight)
    tg.ignore_index = ignore_index
    tg.smoothing = smoothing
    with nogil:
        if cnp.PyArray_TYPE(logits) == cnp.NPY_FLOAT32:
            hard_rows(<const float *>x, tg, lay, <float *>work, <float *>g)
        else:
            hard_rows(<const double *>x, tg, lay, <double *>work, <double *>g)
        total = sum_in_order(lay.row_loss, lay.n_rows)
    return total


def soft_targets(cnp.ndarray logits, cnp.ndarray target, object weight, double smoothing,
                 double grad_scale, cnp.ndarray row_loss, object grad, cnp.ndarray scratch,
                 int n_threads):
    """Row losses (and gradient) for probability targets of logits' shape and dtype.

    target C-contiguous (n_rows, C); scratch (n_threads, C); other arguments as in
    hard_targets.  Returns the row losses summed in row order.
    """
    cdef RowLayout lay = layout(logits, grad_scale, row_loss, n_threads)
    cdef const double *w = <const double *>data_or_null(weight)
    cdef void *x = cnp.PyArray_DATA(logits)
    cdef void *y = cnp.PyArray_DATA(target)
    cdef void *work = cnp.PyArray_DATA(scratch)
    cdef void *g = data_or_null(grad)
    cdef double total
    with nogil:
        if cnp.PyArray_TYPE(logits) == cnp.NPY_FLOAT32:
            soft_rows(<const float *>x, <const float *>y, w, smoothing, lay, <float *>work, <float *>g)
        else:
            soft_rows(<const double *>x, <const double *>y, w, smoothing, lay, <double *>work,
                      <double *>g)
        total = sum_in_order(lay.row_loss, lay.n_rows)
    return total


def check_class_indices(cnp.ndarray index, Py_ssize_t n_classes, cnp.int64_t ignore_index,
                        object weight):
    """Validate int64 class indices before anything is written.

    Returns (first_bad_row, weight_total): first_bad_row is -1 when every index
    is in [0, n_classes) or equals ignore_index; weight_total is the sum of
    weight[t] (1 without weights) over the rows not ignored, the 'mean' divisor.
    """
    cdef const cnp.int64_t *t = <const cnp.int64_t *>cnp.PyArray_DATA(index)
    cdef const double *w = <const double *>data_or_null(weight)
    cdef Py_ssize_t i, first_bad = -1, n = index.shape[0]
    cdef double total = 0.0
    with nogil:
        for i in range(n):
            if t[i] == ignore_index:
                continue
            if t[i] < 0 or t[i] >= n_classes:
                first_bad = i
                break
            total += w[t[i]] if w != NULL else 1.0
    return first_bad, total


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FSCE_OPENMP)
