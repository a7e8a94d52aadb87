# XLA's entry to the cross-entropy kernel (included by _kernels.pyx; used by fastsce.jax).
#
# Design: fastsce.jax calls the kernel through jax.ffi.ffi_call, and XLA calls
# xla_cross_entropy with its own buffers (no copy) on one of its threads, with no Python
# involved.  Three layers:
#
# * csrc/fsce_xla_ffi.c knows XLA's C API: it decodes the call frame into a plain
#   fsce_xla_loss (buffers, options), widens class indices to int64 and class weights to
#   float64, and writes the error messages (fastsce.cross_entropy's own);
# * xla_cross_entropy (here) checks the targets and weights, fills a LossCall and runs
#   loss_range over row ranges, exactly as cross_entropy() in _kernels_loss.pxi does for
#   NumPy arrays: the same rows, the same reduction in row order, the same bits;
# * fastsce/jax.py validates everything that shapes, dtypes and static options tell at
#   trace time and turns the loss and gradient into a custom_vjp.
#
# Thread safety: XLA may run several calls at once.  Each call mallocs its own
# workspace (per-row losses, widened indices and weights, scratch rows) and frees it
# before returning; the only shared state is the count of threads that running calls
# use, under a lock.  A call may use fastsce's thread count (fastsce.set_num_threads,
# read when it runs), less the threads other XLA calls use at that moment, and at least
# one, its own (XLA's): concurrent calls never start more OpenMP threads than one would.
#
# Errors (a class index out of range, a non-finite probability or weight: what only the
# values tell) come back to XLA as an XLA_FFI_Error with fastsce's message; JAX raises
# it where the result is used.

from cpython.pycapsule cimport PyCapsule_New
from cpython.pythread cimport (WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock)


cdef extern from "fsce_xla_ffi.h":
    ctypedef struct XLA_FFI_CallFrame:
        pass
    ctypedef struct XLA_FFI_Error:
        pass
    ctypedef enum XLA_FFI_Error_Code:
        XLA_FFI_Error_Code_INVALID_ARGUMENT
        XLA_FFI_Error_Code_RESOURCE_EXHAUSTED
    ctypedef enum XLA_FFI_DataType:
        XLA_FFI_DataType_S64
    enum:
        FSCE_XLA_NONE
        FSCE_XLA_MEAN
        FSCE_XLA_MESSAGE_BYTES
    ctypedef struct fsce_xla_loss:
        bint single
        const void *logits
        int64_t n_rows
        int64_t n_classes
        const void *target
        XLA_FFI_DataType target_type
        bint soft
        const void *weight
        void *loss
        void *grad
        int64_t ignore_index
        int64_t reduction
        double smoothing
        double inv_temperature
        double softcap
        double z_loss
    XLA_FFI_Error *fsce_xla_decode_loss(XLA_FFI_CallFrame *frame, fsce_xla_loss *call,
                                        int *metadata_only) noexcept nogil
    XLA_FFI_Error *fsce_xla_error(const XLA_FFI_CallFrame *frame, XLA_FFI_Error_Code code,
                                  const char *message) noexcept nogil
    int64_t fsce_xla_widen_indices(const fsce_xla_loss *call, int64_t *out) noexcept nogil
    int64_t fsce_xla_widen_weights(const fsce_xla_loss *call, double *out) noexcept nogil
    void fsce_xla_class_index_message(const fsce_xla_loss *call, int64_t row,
                                      const int64_t *index, char *message) noexcept nogil
    void fsce_xla_probability_message(const fsce_xla_loss *call, int64_t element,
                                      char *message) noexcept nogil
    void fsce_xla_weight_message(const fsce_xla_loss *call, int64_t j,
                                 char *message) noexcept nogil
    void fsce_xla_prefer_huge_pages(void *data, size_t bytes) noexcept nogil


cdef PyThread_type_lock xla_threads_lock = PyThread_allocate_lock()
# under the lock:
cdef int xla_threads_busy = 0                 # threads of the XLA calls running now
cdef int xla_thread_limit = 1                 # fastsce's thread count (set_xla_threads)
cdef Py_ssize_t xla_parallel_min_elements = 1  # inputs below this work: one thread
cdef Py_ssize_t xla_row_cost_elements = 0      # a row's fixed cost, in elements


def set_xla_threads(int limit, Py_ssize_t parallel_min_elements,
                    Py_ssize_t row_cost_elements):
    """The thread count XLA's calls use from now on (fastsce._config keeps it equal to
    fastsce's own setting), and the work below which they use one thread: n_elements +
    n_rows * row_cost_elements, as fastsce._config.row_work."""
    global xla_thread_limit, xla_parallel_min_elements, xla_row_cost_elements
    with nogil:
        PyThread_acquire_lock(xla_threads_lock, WAIT_LOCK)
        xla_thread_limit = max(1, limit)
        xla_parallel_min_elements = parallel_min_elements
        xla_row_cost_elements = row_cost_elements
        PyThread_release_lock(xla_threads_lock)


cdef int take_threads(Py_ssize_t n_rows, Py_ssize_t n_elements) noexcept nogil:
    """Threads for a call on this input: fastsce's count (one below its size threshold, at
    most one per row and the OpenMP runtime's limit on this thread), less what the calls
    running now use, at least 1 (the calling thread); given back with return_threads."""
    global xla_threads_busy
    cdef int wanted = <int>min(n_rows, fsce_openmp_max_threads())
    PyThread_acquire_lock(xla_threads_lock, WAIT_LOCK)
    if n_elements + n_rows * xla_row_cost_elements < xla_parallel_min_elements:
        wanted = 1
    cdef int granted = max(1, min(wanted, xla_thread_limit) - xla_threads_busy)
    xla_threads_busy += granted
    PyThread_release_lock(xla_threads_lock)
    return granted


def xla_threads_for(Py_ssize_t n_rows, Py_ssize_t n_elements):
    """The threads an XLA call on this input would get now (take_threads, given back)."""
    cdef int granted
    with nogil:
        granted = take_threads(n_rows, n_elements)
        return_threads(granted)
    return granted


cdef void return_threads(int granted) noexcept nogil:
    global xla_threads_busy
    PyThread_acquire_lock(xla_threads_lock, WAIT_LOCK)
    xla_threads_busy -= granted
    PyThread_release_lock(xla_threads_lock)


cdef XLA_FFI_Error *run_xla_loss(XLA_FFI_CallFrame *frame, fsce_xla_loss *a, char *memory,
                                 size_t scratch_bytes, int n_threads) noexcept nogil:
    """The call in a, its workspace in memory (laid out as xla_cross_entropy says)."""
    cdef char message[FSCE_XLA_MESSAGE_BYTES]
    cdef Py_ssize_t n_rows = a.n_rows, n = a.n_classes, bad
    cdef double *row_loss = <double *>(memory + scratch_bytes)
    cdef double *weight = row_loss + n_rows
    cdef int64_t *index = <int64_t *>(weight + n)
    cdef double denominator = n_rows
    if a.weight != NULL:
        bad = fsce_xla_widen_weights(a, weight)
        if bad >= 0:
            fsce_xla_weight_message(a, bad, message)
            return fsce_xla_error(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, message)
    if a.soft:
        bad = (first_non_finite_index(<const float *>a.target, n_rows * n) if a.single else
               first_non_finite_index(<const double *>a.target, n_rows * n))
        if bad >= 0:
            fsce_xla_probability_message(a, bad, message)
            return fsce_xla_error(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, message)
    else:
        if a.target_type == XLA_FFI_DataType_S64:
            index = <int64_t *>a.target
        else:
            bad = fsce_xla_widen_indices(a, index)
            if bad >= 0:
                fsce_xla_class_index_message(a, bad, index, message)
                return fsce_xla_error(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, message)
        bad = check_class_indices(<const cnp.int64_t *>index, n_rows, n, a.ignore_index,
                                  weight if a.weight != NULL else NULL, &denominator)
        if bad >= 0:
            fsce_xla_class_index_message(a, bad, index, message)
            return fsce_xla_error(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, message)
    cdef bint mean = a.reduction == FSCE_XLA_MEAN
    cdef LossCall c
    c.single = a.single
    c.logits = a.logits
    c.n_rows = n_rows
    c.n_classes = n
    c.x_stride = n                  # XLA's buffers are row-major and dense
    c.index = NULL
    c.soft_target = NULL
    if a.soft:
        c.soft_target = a.target
    else:
        c.index = <const cnp.int64_t *>index
    c.weight = weight if a.weight != NULL else NULL
    c.ignore_index = a.ignore_index
    c.smoothing = a.smoothing
    c.z_loss = a.z_loss
    c.softcap = a.softcap
    c.inv_temperature = a.inv_temperature
    c.grad_scale = grad_scale_of(mean, denominator)
    c.row_loss = row_loss
    c.row_lse = NULL
    c.row_argmax = NULL
    c.scratch = memory if scratch_bytes else NULL
    c.grad = a.grad
    if a.grad != NULL:
        fsce_xla_prefer_huge_pages(a.grad, n_rows * n * (sizeof(float) if a.single
                                                         else sizeof(double)))
    for_row_ranges(loss_range, &c, n_rows, n_threads)
    cdef Py_ssize_t i
    cdef double total
    if a.reduction == FSCE_XLA_NONE:
        for i in range(n_rows):     # the loss in logits' dtype, as fastsce returns it
            if a.single:
                (<float *>a.loss)[i] = <float>row_loss[i]
            else:
                (<double *>a.loss)[i] = row_loss[i]
    else:
        total = batch_loss(row_loss, n_rows, mean, denominator)
        if a.single:
            (<float *>a.loss)[0] = <float>total
        else:
            (<double *>a.loss)[0] = total
    return NULL


cdef XLA_FFI_Error *xla_cross_entropy(XLA_FFI_CallFrame *frame) noexcept nogil:
    """XLA's handler: the loss (and gradient when asked) of one fastsce.jax call.

    Workspace, one malloc: scratch rows (n_threads * SCRATCH_ROWS * C, when the rows need
    them), per-row losses (n_rows float64), class weights (C float64), class indices
    (n_rows int64, unless the target is int64 already)."""
    cdef fsce_xla_loss a
    cdef int metadata_only
    cdef XLA_FFI_Error *error = fsce_xla_decode_loss(frame, &a, &metadata_only)
    if error != NULL or metadata_only:
        return error
    cdef int n_threads = take_threads(a.n_rows, a.n_rows * a.n_classes)
    cdef size_t scratch_bytes = 0
    if needs_scratch(a.soft, a.softcap, a.inv_temperature, a.weight != NULL, a.smoothing):
        scratch_bytes = (n_threads * SCRATCH_ROWS * a.n_classes
                         * (sizeof(float) if a.single else sizeof(double)))
        scratch_bytes = (scratch_bytes + 63) // 64 * 64     # the float64 arrays after it aligned
    cdef char *memory = <char *>malloc(scratch_bytes
                                       + (2 * a.n_rows + a.n_classes) * sizeof(double))
    if memory == NULL:
        error = fsce_xla_error(frame, XLA_FFI_Error_Code_RESOURCE_EXHAUSTED,
                               "fastsce: cannot allocate the per-call workspace")
    else:
        error = run_xla_loss(frame, &a, memory, scratch_bytes, n_threads)
        free(memory)
    return_threads(n_threads)
    return error


def xla_ffi_cross_entropy():
    """A PyCapsule of the XLA FFI handler of the loss (jax.ffi.register_ffi_target)."""
    return PyCapsule_New(<void *>xla_cross_entropy, NULL, NULL)
