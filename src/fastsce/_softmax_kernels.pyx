# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax-family kernels: softmax, log_softmax, logsumexp, backward, Jacobian.

Design: the Python layer (``_softmax.py``) hands every kernel clean 2-D
arrays of shape (n_rows, n_classes) whose rows are contiguous (any row
stride), float32 or float64, and C-contiguous outputs it allocated or checked.
Each kernel runs one ``prange`` over rows with the GIL released; the work on a
row is a few passes of the vectorised C helpers over data that stays in cache,
so the logits are read from memory once and the output written once.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport log, isinf

from ._rows cimport (fsce_init, fsce_simd_path, row_max, row_exp_sum, row_affine, row_dot,
                     row_mul_shifted)

cnp.import_array()
fsce_init()


cdef inline Py_ssize_t row_stride(cnp.ndarray a) noexcept:
    """Distance between rows in elements (rows are contiguous)."""
    return a.strides[0] // a.itemsize if a.shape[0] > 1 else a.shape[1]


# ---------------------------------------------------------------------------
# softmax / log_softmax / logsumexp

cdef void softmax_rows(const floating *x, Py_ssize_t x_stride, Py_ssize_t n_rows,
                       Py_ssize_t n_classes, floating inv_temperature,
                       floating *out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating m
    cdef double total
    cdef floating *out_row
    for i in prange(n_rows, schedule='static', num_threads=n_threads,
                      use_threads_if=n_threads > 1):
        out_row = out + i * n_classes
        m = row_max(x + i * x_stride, n_classes)
        # s_j = exp((x_j - m) / T) / sum_k exp((x_k - m) / T)
        total = row_exp_sum(x + i * x_stride, n_classes, m, inv_temperature, out_row)
        row_affine(out_row, n_classes, 0, <floating>(1.0 / total), 0, out_row)


cdef void log_softmax_rows(const floating *x, Py_ssize_t x_stride, Py_ssize_t n_rows,
                           Py_ssize_t n_classes, floating inv_temperature,
                           floating *out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating m
    cdef double total
    for i in prange(n_rows, schedule='static', num_threads=n_threads,
                      use_threads_if=n_threads > 1):
        m = row_max(x + i * x_stride, n_classes)
        total = row_exp_sum(x + i * x_stride, n_classes, m, inv_temperature, NULL)
        # log s_j = (x_j - m) / T - log sum_k exp((x_k - m) / T)
        row_affine(x + i * x_stride, n_classes, m, inv_temperature, <floating>log(total),
                   out + i * n_classes)


cdef void logsumexp_rows(const floating *x, Py_ssize_t x_stride, Py_ssize_t n_rows,
                         Py_ssize_t n_classes, floating inv_temperature,
                         floating *out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating m
    for i in prange(n_rows, schedule='static', num_threads=n_threads,
                      use_threads_if=n_threads > 1):
        m = row_max(x + i * x_stride, n_classes)
        if isinf(m):
            # lse is m itself when the largest logit is +-inf (and no NaN)
            out[i] = m * inv_temperature
        else:
            # lse = m / T + log sum_j exp((x_j - m) / T)
            out[i] = <floating>(m * inv_temperature
                                + log(row_exp_sum(x + i * x_stride, n_classes, m,
                                                  inv_temperature, NULL)))


ctypedef enum RowOp:
    SOFTMAX, LOG_SOFTMAX, LOGSUMEXP


cdef dispatch_rows(RowOp op, cnp.ndarray x, double inv_temperature, cnp.ndarray out,
                   int n_threads):
    cdef Py_ssize_t n_rows = x.shape[0], n_classes = x.shape[1]
    cdef Py_ssize_t stride = row_stride(x)
    cdef const float *x32 = <const float *>cnp.PyArray_DATA(x)
    cdef const double *x64 = <const double *>cnp.PyArray_DATA(x)
    cdef float *out32 = <float *>cnp.PyArray_DATA(out)
    cdef double *out64 = <double *>cnp.PyArray_DATA(out)
    cdef bint single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32
    with nogil:
        if op == SOFTMAX:
            if single:
                softmax_rows(x32, stride, n_rows, n_classes, <float>inv_temperature, out32, n_threads)
            else:
                softmax_rows(x64, stride, n_rows, n_classes, inv_temperature, out64, n_threads)
        elif op == LOG_SOFTMAX:
            if single:
                log_softmax_rows(x32, stride, n_rows, n_classes, <float>inv_temperature, out32, n_threads)
            else:
                log_softmax_rows(x64, stride, n_rows, n_classes, inv_temperature, out64, n_threads)
        else:
            if single:
                logsumexp_rows(x32, stride, n_rows, n_classes, <float>inv_temperature, out32, n_threads)
            else:
                logsumexp_rows(x64, stride, n_rows, n_classes, inv_temperature, out64, n_threads)


def softmax(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = softmax(x[i] / T); x (n_rows, n_classes) with contiguous rows."""
    dispatch_rows(SOFTMAX, x, inv_temperature, out, n_threads)


def log_softmax(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = log_softmax(x[i] / T)."""
    dispatch_rows(LOG_SOFTMAX, x, inv_temperature, out, n_threads)


def logsumexp(cnp.ndarray x, double inv_temperature, cnp.ndarray out, int n_threads):
    """out[i] = log sum_j exp(x[i, j] / T); out has shape (n_rows,)."""
    dispatch_rows(LOGSUMEXP, x, inv_temperature, out, n_threads)


# ---------------------------------------------------------------------------
# backward and Jacobian: s is a softmax output, rows C-contiguous

cdef void backward_rows(const floating *grad_s, const floating *s, Py_ssize_t n_rows,
                        Py_ssize_t n_classes, floating *out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, offset
    cdef floating d
    for i in prange(n_rows, schedule='static', num_threads=n_threads,
                      use_threads_if=n_threads > 1):
        offset = i * n_classes
        # grad_x = J g = s * (g - g . s)      (J = diag(s) - s s^T)
        d = <floating>row_dot(grad_s + offset, s + offset, n_classes, 0)
        row_mul_shifted(s + offset, grad_s + offset, n_classes, d, out + offset)


cdef void jacobian_rows(const floating *s, Py_ssize_t n_rows, Py_ssize_t n_classes,
                        floating *out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, j, k
    cdef const floating *s_row
    cdef floating *jac
    for i in prange(n_rows, schedule='static', num_threads=n_threads,
                      use_threads_if=n_threads > 1):
        s_row = s + i * n_classes
        jac = out + i * n_classes * n_classes
        for j in range(n_classes):
            for k in range(n_classes):
                jac[j * n_classes + k] = -s_row[j] * s_row[k]   # J_jk = -s_j s_k
            jac[j * n_classes + j] += s_row[j]                  # J_jj = s_j - s_j^2


def softmax_backward(cnp.ndarray grad_s, cnp.ndarray s, cnp.ndarray out, int n_threads):
    """out[i] = (diag(s[i]) - s[i] s[i]^T) grad_s[i]; all C-contiguous, same dtype."""
    cdef Py_ssize_t n_rows = s.shape[0], n_classes = s.shape[1]
    if cnp.PyArray_TYPE(s) == cnp.NPY_FLOAT32:
        with nogil:
            backward_rows(<const float *>cnp.PyArray_DATA(grad_s), <const float *>cnp.PyArray_DATA(s),
                          n_rows, n_classes, <float *>cnp.PyArray_DATA(out), n_threads)
    else:
        with nogil:
            backward_rows(<const double *>cnp.PyArray_DATA(grad_s), <const double *>cnp.PyArray_DATA(s),
                          n_rows, n_classes, <double *>cnp.PyArray_DATA(out), n_threads)


def softmax_jacobian(cnp.ndarray s, cnp.ndarray out, int n_threads):
    """out[i] = diag(s[i]) - s[i] s[i]^T; s (n_rows, C) and out (n_rows, C, C) C-contiguous."""
    cdef Py_ssize_t n_rows = s.shape[0], n_classes = s.shape[1]
    if cnp.PyArray_TYPE(s) == cnp.NPY_FLOAT32:
        with nogil:
            jacobian_rows(<const float *>cnp.PyArray_DATA(s), n_rows, n_classes,
                          <float *>cnp.PyArray_DATA(out), n_threads)
    else:
        with nogil:
            jacobian_rows(<const double *>cnp.PyArray_DATA(s), n_rows, n_classes,
                          <double *>cnp.PyArray_DATA(out), n_threads)


def simd_path():
    """Name of the vector instruction set chosen for this CPU."""
    return fsce_simd_path().decode()
