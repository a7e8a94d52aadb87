# Softmax-family kernels (included by _kernels.pyx): softmax, log_softmax, logsumexp,
# backward, Jacobian.
#
# Design: the Python layer (``_softmax.py``) hands every kernel clean 2-D
# arrays of shape (n_rows, n_classes) whose rows are contiguous (any row
# stride), float32 or float64, and C-contiguous outputs it allocated or checked.
# A kernel fills a ``RowOpCall`` and runs it over row ranges (``run_rows``: one
# range per thread, GIL released for large inputs); the work on a row is a few
# passes of the vectorised C helpers over data that stays in cache, so the input
# is read from memory once and the output written once.

ctypedef enum RowOp:
    SOFTMAX, LOG_SOFTMAX, LOGSUMEXP, BACKWARD, LOG_BACKWARD, JACOBIAN


ctypedef struct RowOpCall:
    RowOp op
    bint single                   # float32 (else float64)
    const void *x                 # IN (n_rows, n_classes), rows x_stride apart
    const void *other             # IN upstream gradient for backward ops (C-contiguous), else NULL
    Py_ssize_t x_stride
    Py_ssize_t n_classes
    double inv_temperature
    void *out                     # OUT (n_rows, n_classes), (n_rows,) or (n_rows, C, C)


# ---------------------------------------------------------------------------
# one row

cdef inline void softmax_row(const floating *x, Py_ssize_t n, floating inv_t, floating *out,
                             const floating *next) noexcept nogil:
    cdef floating m = row_max(x, n)
    # s_j = exp((x_j - m) / T) / sum_k exp((x_k - m) / T)
    cdef double total = row_exp_sum(x, n, m, inv_t, out, next)
    row_affine(out, n, 0, <floating>(1.0 / total), 0, out)


cdef inline void log_softmax_row(const floating *x, Py_ssize_t n, floating inv_t, floating *out,
                                 const floating *next) noexcept nogil:
    cdef floating m = row_max(x, n)
    cdef double other
    cdef double log_total = log_of_total(x, n, m, inv_t, True,
                                         row_exp_sum(x, n, m, inv_t, NULL, next), &other)
    # log s_j = (x_j - m) / T - log sum_k exp((x_k - m) / T)
    row_affine(x, n, m, inv_t, <floating>log_total, out)


cdef inline floating logsumexp_row(const floating *x, Py_ssize_t n, floating inv_t,
                                   const floating *next) noexcept nogil:
    cdef floating m = row_max_for_lse(x, n)
    cdef double other
    if isinf(m):
        return m * inv_t          # fsce_lse's rule, without the exp pass it would ignore
    # lse = m / T + log sum_j exp((x_j - m) / T)
    return <floating>fsce_lse(m * inv_t, log_of_total(x, n, m, inv_t, True,
                                                      row_exp_sum(x, n, m, inv_t, NULL, next),
                                                      &other))


cdef inline void backward_row(const floating *s, const floating *grad_s, Py_ssize_t n,
                              floating *out) noexcept nogil:
    # grad_x = J g = s * (g - g . s)      (J = diag(s) - s s^T)
    cdef floating d = <floating>row_dot(grad_s, s, n, 0)
    row_mul_shifted(s, grad_s, n, d, out)


cdef inline void log_backward_row(const floating *log_s, const floating *grad_out, Py_ssize_t n,
                                  floating *out) noexcept nogil:
    # grad_x = g - s sum_j g_j      (d log s_i / d x_j = [i = j] - s_j)
    cdef floating total = <floating>row_sum(grad_out, n, 0, 1)
    cdef Py_ssize_t j
    if row_max(log_s, n) > 0:
        # not log-probabilities: exp(log s) may exceed the vector exp's range (t <= 0),
        # so such a row takes libm's exp, element by element
        for j in range(n):
            out[j] = grad_out[j] - <floating>exp(log_s[j]) * total
        return
    row_exp_sum(log_s, n, 0, 1, out, NULL)                 # out = s = exp(log s)
    row_ay_minus_cb(out, grad_out, n, -total, -1, out)            # out = g - s sum_j g_j


cdef inline void jacobian_row(const floating *s, Py_ssize_t n, floating *jac) noexcept nogil:
    cdef Py_ssize_t j, k
    for j in range(n):
        for k in range(n):
            jac[j * n + k] = -s[j] * s[k]    # J_jk = -s_j s_k
        jac[j * n + j] += s[j]               # J_jj = s_j - s_j^2


# ---------------------------------------------------------------------------
# a range of rows

cdef void rows_of(const floating *x, const RowOpCall *c, Py_ssize_t start, Py_ssize_t stop,
                  floating *out) noexcept nogil:
    cdef Py_ssize_t i, n = c.n_classes
    cdef floating inv_t = <floating>c.inv_temperature
    cdef const floating *next
    for i in range(start, stop):
        next = x + (i + 1) * c.x_stride if i + 1 < stop else NULL     # to prefetch
        if c.op == SOFTMAX:
            softmax_row(x + i * c.x_stride, n, inv_t, out + i * n, next)
        elif c.op == LOG_SOFTMAX:
            log_softmax_row(x + i * c.x_stride, n, inv_t, out + i * n, next)
        elif c.op == LOGSUMEXP:
            out[i] = logsumexp_row(x + i * c.x_stride, n, inv_t, next)
        elif c.op == BACKWARD:
            backward_row(x + i * c.x_stride, <const floating *>c.other + i * n, n, out + i * n)
        elif c.op == LOG_BACKWARD:
            log_backward_row(x + i * c.x_stride, <const floating *>c.other + i * n, n, out + i * n)
        else:
            jacobian_row(x + i * c.x_stride, n, out + i * n * n)


cdef void row_op_range(void *call, Py_ssize_t start, Py_ssize_t stop, int worker) noexcept nogil:
    cdef const RowOpCall *c = <const RowOpCall *>call
    if c.single:
        rows_of(<const float *>c.x, c, start, stop, <float *>c.out)
    else:
        rows_of(<const double *>c.x, c, start, stop, <double *>c.out)


cdef run(RowOp op, cnp.ndarray x, object other, double inv_temperature, cnp.ndarray out,
         int n_threads):
    cdef RowOpCall call
    cdef Py_ssize_t n_rows = x.shape[0]
    call.op = op
    call.single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32
    call.x = cnp.PyArray_DATA(x)
    call.other = NULL if other is None else cnp.PyArray_DATA(<cnp.ndarray>other)
    call.n_classes = x.shape[1]
    call.x_stride = x.strides[0] // x.itemsize if n_rows > 1 else call.n_classes
    call.inv_temperature = inv_temperature
    call.out = cnp.PyArray_DATA(out)
    run_rows(row_op_range, &call, n_rows, max(cnp.PyArray_SIZE(x), cnp.PyArray_SIZE(out)),
             n_threads)


# ---------------------------------------------------------------------------
# entry points (arrays already validated by _softmax.py)

def softmax(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = softmax(x[i] / T); x (n_rows, n_classes) with contiguous rows, out C-contiguous."""
    run(SOFTMAX, x, None, inv_temperature, out, n_threads)


def log_softmax(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = log_softmax(x[i] / T)."""
    run(LOG_SOFTMAX, x, None, inv_temperature, out, n_threads)


def logsumexp(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = log sum_j exp(x[i, j] / T); out has shape (n_rows,)."""
    run(LOGSUMEXP, x, None, inv_temperature, out, n_threads)


def softmax_backward(cnp.ndarray grad_s, cnp.ndarray s, cnp.ndarray out, int n_threads):
    """out[i] = (diag(s[i]) - s[i] s[i]^T) grad_s[i]; all C-contiguous, same dtype."""
    run(BACKWARD, s, grad_s, 1.0, out, n_threads)


def log_softmax_backward(cnp.ndarray grad_out, cnp.ndarray log_s, cnp.ndarray out, int n_threads):
    """out[i] = grad_out[i] - exp(log_s[i]) sum(grad_out[i]); all C-contiguous, same dtype."""
    run(LOG_BACKWARD, log_s, grad_out, 1.0, out, n_threads)


def softmax_jacobian(cnp.ndarray s, cnp.ndarray out, int n_threads):
    """out[i] = diag(s[i]) - s[i] s[i]^T; s (n_rows, C) and out (n_rows, C, C) C-contiguous."""
    run(JACOBIAN, s, None, 1.0, out, n_threads)
