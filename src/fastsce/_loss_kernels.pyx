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
from libc.math cimport INFINITY, NAN, isfinite, log
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from ._rows cimport (fsce_init, row_max, row_exp_sum, row_affine, row_axpby, row_sum,
                     row_dot, run_rows)

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
    double smoothing              # label smoothing eps


ctypedef struct RowLayout:
    Py_ssize_t n_rows
    Py_ssize_t n_classes
    Py_ssize_t x_stride           # elements between logits rows
    double grad_scale             # 1 / denominator for 'mean', else 1
    double *row_loss              # OUT (n_rows,)


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
# a range of rows (run by for_row_ranges, one range per thread)

ctypedef struct LossCall:
    bint single                   # float32 (else float64)
    const void *logits            # IN (n_rows, C), rows x_stride apart
    const void *soft_target       # IN (n_rows, C) C-contiguous, or NULL for class indices
    HardTargets hard
    RowLayout lay
    void *scratch                 # (n_threads, C) rows for dense targets, or NULL
    void *grad                    # OUT (n_rows, C) C-contiguous, or NULL


cdef void hard_rows(const floating *x, const LossCall *c, Py_ssize_t start, Py_ssize_t stop,
                    floating *b, floating *grad) noexcept nogil:
    """Class-index targets; b (C,) is scratch, used only for weights with smoothing."""
    cdef Py_ssize_t i, j, t, n = c.lay.n_classes
    cdef const HardTargets *tg = &c.hard
    cdef floating *g = NULL
    cdef double w_t
    for i in range(start, stop):
        t = tg.index[i]
        if grad != NULL:
            g = grad + i * n
        if t == tg.ignore_index:
            c.lay.row_loss[i] = 0.0
            if g != NULL:
                memset(g, 0, n * sizeof(floating))
        elif tg.weight == NULL or tg.smoothing == 0.0:
            w_t = tg.weight[t] if tg.weight != NULL else 1.0
            c.lay.row_loss[i] = hard_row(x + i * c.lay.x_stride, n, t, w_t, tg.smoothing,
                                         c.lay.grad_scale, g)
        else:
            # b_j = eps w_j / C + (1 - eps) w_t [j = t]
            for j in range(n):
                b[j] = <floating>(tg.smoothing * tg.weight[j] / n)
            b[t] = <floating>(b[t] + (1.0 - tg.smoothing) * tg.weight[t])
            c.lay.row_loss[i] = dense_row(x + i * c.lay.x_stride, n, b, c.lay.grad_scale, g)


cdef void soft_rows(const floating *x, const LossCall *c, Py_ssize_t start, Py_ssize_t stop,
                    floating *b, floating *grad) noexcept nogil:
    """Probability targets y: b_j = w_j ((1 - eps) y_j + eps / C) in the scratch row b."""
    cdef Py_ssize_t i, j, n = c.lay.n_classes
    cdef const floating *y
    cdef floating *g = NULL
    cdef double eps = c.hard.smoothing
    cdef const double *weight = c.hard.weight
    for i in range(start, stop):
        y = <const floating *>c.soft_target + i * n
        if grad != NULL:
            g = grad + i * n
        for j in range(n):
            b[j] = <floating>((1.0 - eps) * y[j] + eps / n)
            if weight != NULL:
                b[j] = <floating>(b[j] * weight[j])
        c.lay.row_loss[i] = dense_row(x + i * c.lay.x_stride, n, b, c.lay.grad_scale, g)


cdef void loss_range(void *call, Py_ssize_t start, Py_ssize_t stop, int worker) noexcept nogil:
    """Rows [start, stop) of a LossCall, with the scratch row of `worker`."""
    cdef const LossCall *c = <const LossCall *>call
    cdef Py_ssize_t scratch_offset = worker * c.lay.n_classes
    if c.single:
        if c.soft_target != NULL:
            soft_rows(<const float *>c.logits, c, start, stop, <float *>c.scratch + scratch_offset,
                      <float *>c.grad)
        else:
            hard_rows(<const float *>c.logits, c, start, stop, <float *>c.scratch + scratch_offset,
                      <float *>c.grad)
    else:
        if c.soft_target != NULL:
            soft_rows(<const double *>c.logits, c, start, stop, <double *>c.scratch + scratch_offset,
                      <double *>c.grad)
        else:
            hard_rows(<const double *>c.logits, c, start, stop, <double *>c.scratch + scratch_offset,
                      <double *>c.grad)


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

cdef class Workspace:
    """Per-call C buffers: per-row losses (unless the caller's) and scratch rows."""
    cdef double *row_loss
    cdef void *scratch
    cdef bint owns_row_loss

    def __cinit__(self, object row_loss, Py_ssize_t n_rows, Py_ssize_t scratch_bytes):
        self.owns_row_loss = row_loss is None
        if self.owns_row_loss:
            self.row_loss = <double *>malloc(max(n_rows, 1) * sizeof(double))
        else:
            self.row_loss = <double *>cnp.PyArray_DATA(<cnp.ndarray>row_loss)
        self.scratch = malloc(scratch_bytes) if scratch_bytes else NULL
        if self.row_loss == NULL or (scratch_bytes and self.scratch == NULL):
            raise MemoryError("fastsce: cannot allocate the per-call workspace")

    def __dealloc__(self):
        if self.owns_row_loss:
            free(self.row_loss)
        free(self.scratch)


cdef LossCall prepare(cnp.ndarray logits, object weight, double smoothing, object grad,
                      Workspace work, double grad_scale):
    cdef LossCall c
    c.single = cnp.PyArray_TYPE(logits) == cnp.NPY_FLOAT32
    c.logits = cnp.PyArray_DATA(logits)
    c.soft_target = NULL
    c.hard.weight = <const double *>data_or_null(weight)
    c.hard.smoothing = smoothing
    c.lay.n_rows = logits.shape[0]
    c.lay.n_classes = logits.shape[1]
    c.lay.x_stride = logits.strides[0] // logits.itemsize if c.lay.n_rows > 1 else c.lay.n_classes
    c.lay.grad_scale = grad_scale
    c.lay.row_loss = work.row_loss
    c.scratch = work.scratch
    c.grad = data_or_null(grad)
    return c


cdef void *data_or_null(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray>array)


cdef Py_ssize_t check_class_indices(const cnp.int64_t *index, Py_ssize_t n_rows,
                                    Py_ssize_t n_classes, cnp.int64_t ignore_index,
                                    const double *weight, double *kept_weight) noexcept nogil:
    """Index of the first row whose class index is neither in [0, C) nor ignored
    (-1 if none); kept_weight = sum of weight[t] (1 without weights) over the kept rows."""
    cdef Py_ssize_t i
    cdef cnp.int64_t t
    kept_weight[0] = 0.0
    for i in range(n_rows):
        t = index[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= n_classes:
            return i
        kept_weight[0] += weight[t] if weight != NULL else 1.0
    return -1


cdef double reduce_rows(const double *row_loss, Py_ssize_t n_rows, bint mean,
                        double denominator) noexcept nogil:
    """The 'mean' (NaN when nothing is kept) or 'sum' of the row losses."""
    cdef double total = sum_in_order(row_loss, n_rows)
    if not mean:
        return total
    return total / denominator if denominator != 0.0 else NAN


cdef inline double mean_scale(bint mean, double denominator) noexcept nogil:
    """Gradient factor: 1 / denominator for 'mean' (0 / 0 -> NaN rows, like PyTorch)."""
    if not mean:
        return 1.0
    return 1.0 / denominator if denominator != 0.0 else INFINITY


def hard_targets(cnp.ndarray logits, cnp.ndarray index, object weight, cnp.int64_t ignore_index,
                 double smoothing, bint mean, object row_loss, object grad, int n_threads):
    """Loss (and gradient when grad is not None) for class-index targets.

    logits (n_rows, C) float32/float64 with contiguous rows; index int64 (n_rows,),
    C-contiguous; weight float64 (C,) or None; row_loss float64 (n_rows,) OUT or
    None; grad like logits, C-contiguous, OUT (may be logits).  The class indices
    are checked first: returns (first_bad_row, nan) without writing anything when
    one is invalid, else (-1, loss) with loss the 'mean' (mean=True) or the sum.
    """
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1]
    cdef const cnp.int64_t *t = <const cnp.int64_t *>cnp.PyArray_DATA(index)
    cdef double kept_weight
    cdef Py_ssize_t first_bad = check_class_indices(t, n_rows, n_classes, ignore_index,
                                                    <const double *>data_or_null(weight),
                                                    &kept_weight)
    if first_bad >= 0:
        return first_bad, NAN
    cdef bint dense = weight is not None and smoothing != 0.0
    cdef Workspace work = Workspace(row_loss, n_rows,
                                    n_threads * n_classes * logits.itemsize if dense else 0)
    cdef LossCall call = prepare(logits, weight, smoothing, grad, work,
                                 mean_scale(mean, kept_weight))
    call.hard.index = t
    call.hard.ignore_index = ignore_index
    run_rows(loss_range, &call, n_rows, n_rows * n_classes, n_threads)
    return -1, reduce_rows(work.row_loss, n_rows, mean, kept_weight)


def soft_targets(cnp.ndarray logits, cnp.ndarray target, object weight, double smoothing,
                 bint mean, object row_loss, object grad, int n_threads):
    """Loss (and gradient) for probability targets of logits' shape and dtype.

    target C-contiguous (n_rows, C); other arguments as in hard_targets; 'mean'
    divides by the row count.  Returns the loss.
    """
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1]
    cdef Workspace work = Workspace(row_loss, n_rows, n_threads * n_classes * logits.itemsize)
    cdef LossCall call = prepare(logits, weight, smoothing, grad, work, mean_scale(mean, n_rows))
    call.soft_target = cnp.PyArray_DATA(target)
    run_rows(loss_range, &call, n_rows, n_rows * n_classes, n_threads)
    return reduce_rows(work.row_loss, n_rows, mean, n_rows)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FSCE_OPENMP)
