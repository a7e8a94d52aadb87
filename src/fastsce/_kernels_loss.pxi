# Cross-entropy kernels (included by _kernels.pyx): loss and gradient of softmax
# cross-entropy in one pass per row.
#
# Design: every target is a distribution b over classes, and for one row of
# (transformed) logits z
#
#     lse    = m + log sum_j exp(z_j - m),          m = max_j z_j
#     loss   = sum_j b_j (lse - z_j) + lambda lse^2
#            = A log sum_j exp(z_j - m) - sum_j b_j (z_j - m) + lambda lse^2
#     grad_j = scale * ((A + 2 lambda lse) s_j - b_j),  A = sum_j b_j,  s = softmax(z)
#
# * hard targets (class index t, class weight w_t, label smoothing eps without
#   class weights): b = w_t (1 - eps) onehot(t) + eps / C, handled in closed form;
# * everything else (soft targets, class weights with smoothing): b is built
#   in a per-thread scratch row and used densely.
# * z = x / T (temperature) folds into the gradient scale; with a softcap c,
#   z = c tanh(x / c) / T is built in a scratch row and the gradient is
#   multiplied by dz/dx = (1 - tanh^2(x / c)) / T.  -inf stays -inf (masked).
# * lambda lse^2 is the z-loss (PaLM; Liger's lse_square_scale).
#
# A row is read from memory once: the max pass pulls it into cache, the exp pass
# writes exp(z_j - m) straight into the gradient row, and a last in-cache pass
# turns it into the gradient.  ``grad`` may be the logits buffer itself (in
# place): every value of x a row needs is read before that row is overwritten.
# Per-row losses go to a float64 array; the batch loss is summed from it
# afterwards in row order, so results do not depend on the number of threads.
# The Python layer (``_loss.py``) validates everything first: kernels cannot fail.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FSCE_OPENMP 1
    static int fsce_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FSCE_OPENMP 0
    static int fsce_openmp_max_threads(void) { return 1; }
    #endif
    """
    bint FSCE_OPENMP
    int fsce_openmp_max_threads() noexcept nogil


ctypedef struct LossCall:
    bint single                   # float32 (else float64)
    const void *logits            # IN (n_rows, C), rows x_stride apart
    Py_ssize_t n_rows
    Py_ssize_t n_classes
    Py_ssize_t x_stride
    const cnp.int64_t *index      # IN class index per row (validated), or NULL
    const void *soft_target       # IN (n_rows, C) C-contiguous probabilities, or NULL
    const double *weight          # IN class weights (C,), or NULL
    cnp.int64_t ignore_index
    double smoothing              # label smoothing eps
    double z_loss                 # lambda
    double softcap                # c, 0 when off
    double inv_temperature        # 1 / T
    double grad_scale             # 1 / denominator for 'mean', else 1
    double *row_loss              # OUT (n_rows,)
    double *row_lse               # OUT (n_rows,) or NULL
    cnp.int64_t *row_argmax       # OUT (n_rows,) or NULL
    void *scratch                 # SCRATCH_ROWS rows of C per worker
    void *grad                    # OUT (n_rows, C) C-contiguous, or NULL


cdef enum:
    SCRATCH_ROWS = 3              # target distribution b, softcapped z, dz/dx


# ---------------------------------------------------------------------------
# one row

cdef inline double dense_row(const floating *z, Py_ssize_t n, const floating *b, double z_loss,
                             double scale, floating *grad, double z_shift,
                             double *lse, const floating *next) noexcept nogil:
    """Loss of one row with an explicit target distribution b; gradient into grad
    z is the row's z minus z_shift (the loss does not depend on a shift; lse does); next is
    the input row read after this one (NULL if none), prefetched meanwhile."""
    cdef floating m = row_max_for_lse(z, n)
    cdef double mass = row_sum(b, n, 0, 1)          # A = sum_j b_j
    cdef double gap = row_dot(z, b, n, m)        # sum_j b_j (z_j - m), read before grad
    cdef double total = row_exp_sum(z, n, m, 1, grad, next)
    cdef double other                            # S' = total - 1, or -1 (log_of_total)
    cdef double log_total = log_of_total(grad if grad != NULL else z, n, m, 1, grad == NULL,
                                         total, &other)
    lse[0] = fsce_lse(m, log_total) + z_shift
    cdef double coefficient = mass + fsce_weighted(2.0 * z_loss, lse[0])
    cdef Py_ssize_t top
    if grad != NULL:
        # the max's term exp(0) = 1 of a confident row (the only term equal to 1)
        top = row_find(grad, n, 1) if other >= 0.0 else -1
        # grad_j = scale ((A + 2 lambda lse) s_j - b_j)
        row_ay_minus_cb(grad, b, n, <floating>(scale * coefficient / total), <floating>scale, grad)
        if top >= 0:
            # s_top = 1 / S, S = 1 + S': the same value as scale ((A + 2 lambda lse - b_top)
            # - b_top S') / S, without the cancellation of (A + 2 lambda lse) s_top - b_top
            grad[top] = <floating>(scale * ((coefficient - b[top]) - b[top] * other) / total)
    # loss = sum_j b_j (lse - z_j) + lambda lse^2
    #      = A log(total) - sum_j b_j (z_j - m) + lambda lse^2
    return mass * log_total - gap + fsce_weighted(z_loss, lse[0] * lse[0])


cdef inline cnp.int64_t argmax(const floating *z, Py_ssize_t n) noexcept nogil:
    """First index of the largest value (of the first NaN, as numpy.argmax)."""
    cdef Py_ssize_t j = row_find(z, n, row_max(z, n))    # the first max or the first NaN
    cdef Py_ssize_t later_nan
    if j < 0:
        return 0                                         # n = 0
    if z[j] == z[j]:                                     # a max, but a later NaN wins
        later_nan = row_find(z + j, n - j, NAN)
        if later_nan >= 0:
            j += later_nan
    return j


cdef inline void softcap_row(const floating *x, Py_ssize_t n, double cap, double inv_t,
                             floating *z, floating *dz_dx) noexcept nogil:
    """z_j = cap tanh(x_j / cap) / T and dz_j/dx_j = (1 - tanh^2) / T; -inf stays masked."""
    cdef Py_ssize_t j
    cdef double th
    for j in range(n):
        if x[j] == -INFINITY:
            z[j] = x[j]
            dz_dx[j] = 0
        else:
            th = tanh(x[j] / cap)
            z[j] = <floating>(cap * th * inv_t)
            dz_dx[j] = <floating>((1.0 - th * th) * inv_t)


cdef inline const floating *scaled_row(const floating *x, Py_ssize_t n, double inv_t,
                                       floating *z, double *z_shift) noexcept nogil:
    """z = (x - max x) / T, z_shift = max x / T: no overflow when x / T would overflow
    (x itself when T = 1; no shift when max x is not finite)."""
    if inv_t == 1.0:
        z_shift[0] = 0.0
        return x
    cdef floating m = row_max(x, n)
    if not isfinite(m):
        m = 0
    row_affine(x, n, m, <floating>inv_t, 0, z)
    z_shift[0] = m * inv_t
    return z


# ---------------------------------------------------------------------------
# a range of rows (run by for_row_ranges, one range per thread)

cdef void loss_rows(const floating *x, const LossCall *c, Py_ssize_t start, Py_ssize_t stop,
                    floating *scratch, floating *grad) noexcept nogil:
    """Rows [start, stop): row_loss (and lse, argmax, gradient when asked)."""
    cdef Py_ssize_t i, j, t, n = c.n_classes
    cdef floating *b = scratch                   # NULL when the options need no scratch
    cdef floating *z_buffer = NULL if scratch == NULL else scratch + n
    cdef floating *dz_dx = NULL if scratch == NULL else scratch + 2 * n
    cdef const floating *x_row
    cdef const floating *z
    cdef const floating *y
    cdef const floating *next
    cdef floating *g = NULL
    cdef double eps = c.smoothing, lse = NAN, loss, z_shift = 0.0
    # the temperature folds into the gradient scale unless softcap multiplies by dz/dx
    cdef double scale = c.grad_scale * (c.inv_temperature if c.softcap == 0.0 else 1.0)
    cdef bint ignored
    cdef fsce_hard_targets targets
    targets.ignore_index = c.ignore_index
    targets.weight = c.weight
    targets.eps = eps
    targets.z_loss = c.z_loss
    targets.scale = scale
    if grad != NULL:
        g = grad + start * n
    if (c.index != NULL and n <= FSCE_SMALL_ROW_CLASSES and c.softcap == 0.0
            and c.inv_temperature == 1.0 and c.z_loss == 0.0 and (c.weight == NULL or eps == 0.0)):
        # short rows: one row per vector lane (same results, no per-row reductions)
        small_rows(x + start * c.x_stride, c.x_stride, stop - start, n,
                   <const int64_t *>c.index + start, c.ignore_index, c.weight, eps, scale,
                   c.row_loss + start, g, NULL if c.row_lse == NULL else c.row_lse + start,
                   NULL if c.row_argmax == NULL else <int64_t *>c.row_argmax + start)
        return
    if (c.index != NULL and c.softcap == 0.0 and c.inv_temperature == 1.0
            and c.row_argmax == NULL and (c.weight == NULL or eps == 0.0)):
        # the logits are z: the whole range in one call, no per-row step here
        targets.target = <const int64_t *>c.index + start
        hard_rows(x + start * c.x_stride, c.x_stride, stop - start, n, &targets, 0.0,
                  c.row_loss + start, g, NULL if c.row_lse == NULL else c.row_lse + start, NULL)
        return
    for i in range(start, stop):
        x_row = x + i * c.x_stride
        next = x_row + c.x_stride if i + 1 < stop else NULL     # to prefetch
        if grad != NULL:
            g = grad + i * n
        if c.softcap != 0.0:
            softcap_row(x_row, n, c.softcap, c.inv_temperature, z_buffer, dz_dx)
            z = z_buffer
        else:
            z = scaled_row(x_row, n, c.inv_temperature, z_buffer, &z_shift)
        if c.row_argmax != NULL:
            c.row_argmax[i] = argmax(x_row, n)     # of the logits, not of softcapped z
        ignored = c.index != NULL and c.index[i] == c.ignore_index
        if c.index != NULL and (c.weight == NULL or eps == 0.0):
            targets.target = <const int64_t *>c.index + i
            hard_rows(z, n, 1, n, &targets, z_shift, &loss, g,
                      NULL if c.row_lse == NULL else &lse, next)
        elif ignored:
            loss = 0.0
            if c.row_lse != NULL:
                lse = row_lse(z, n, next) + z_shift       # before g (maybe z itself) is zeroed
            if g != NULL:
                memset(g, 0, n * sizeof(floating))
        else:
            if c.index != NULL:
                # b_j = eps w_j / C + (1 - eps) w_t [j = t]
                t = c.index[i]
                for j in range(n):
                    b[j] = <floating>(eps * c.weight[j] / n)
                b[t] = <floating>(b[t] + (1.0 - eps) * c.weight[t])
            else:
                # b_j = w_j ((1 - eps) y_j + eps / C)
                y = <const floating *>c.soft_target + i * n
                for j in range(n):
                    b[j] = <floating>((1.0 - eps) * y[j] + eps / n)
                    if c.weight != NULL:
                        b[j] = <floating>(b[j] * c.weight[j])
            loss = dense_row(z, n, b, c.z_loss, scale, g, z_shift, &lse, next)
        if g != NULL and c.softcap != 0.0 and not ignored:
            row_mul_shifted(dz_dx, g, n, 0, g)       # chain rule: grad_x = grad_z dz/dx
        c.row_loss[i] = loss
        if c.row_lse != NULL:
            c.row_lse[i] = lse


cdef void loss_range(void *call, Py_ssize_t start, Py_ssize_t stop, int worker) noexcept nogil:
    """Rows [start, stop) of a LossCall, with the scratch rows of `worker`."""
    cdef const LossCall *c = <const LossCall *>call
    cdef Py_ssize_t offset = worker * SCRATCH_ROWS * c.n_classes
    if c.single:
        loss_rows(<const float *>c.logits, c, start, stop,
                  NULL if c.scratch == NULL else <float *>c.scratch + offset, <float *>c.grad)
    else:
        loss_rows(<const double *>c.logits, c, start, stop,
                  NULL if c.scratch == NULL else <double *>c.scratch + offset, <double *>c.grad)


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
# entry point (arrays already validated by _loss.py)

cdef void *data_or_null(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray>array)


cdef Py_ssize_t check_class_indices(const cnp.int64_t *index, Py_ssize_t n_rows,
                                    Py_ssize_t n_classes, cnp.int64_t ignore_index,
                                    const double *weight, double *kept_weight) noexcept nogil:
    """Index of the first row whose class index is neither in [0, C) nor ignored
    (-1 if none); kept_weight = sum of weight[t] (1 without weights) over the kept rows."""
    cdef Py_ssize_t i, kept = 0
    cdef cnp.int64_t t
    kept_weight[0] = 0.0
    if weight == NULL:                  # a count: no float64 addition chained row to row
        for i in range(n_rows):
            t = index[i]
            if t != ignore_index:
                if t < 0 or t >= n_classes:
                    return i
                kept += 1
        kept_weight[0] = kept
        return -1
    for i in range(n_rows):
        t = index[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= n_classes:
            return i
        kept_weight[0] += weight[t]
    return -1


cdef Py_ssize_t first_non_finite_index(const floating *values, Py_ssize_t n) noexcept nogil:
    """Index of the first non-finite value (-1 if none)."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(values[i]):
            return i
    return -1


cdef class Workspace:
    """Per-call buffers: per-row losses and scratch rows, the caller's or malloc'ed."""
    cdef double *row_loss
    cdef void *scratch
    cdef bint owns_row_loss, owns_scratch

    def __cinit__(self, object row_loss, Py_ssize_t n_rows, object scratch,
                  Py_ssize_t scratch_bytes):
        self.owns_row_loss = row_loss is None
        self.owns_scratch = scratch is None and scratch_bytes > 0
        self.row_loss = (<double *>malloc(max(n_rows, 1) * sizeof(double)) if self.owns_row_loss
                         else <double *>cnp.PyArray_DATA(<cnp.ndarray>row_loss))
        self.scratch = malloc(scratch_bytes) if self.owns_scratch else data_or_null(scratch)
        if self.row_loss == NULL or (self.owns_scratch and self.scratch == NULL):
            raise MemoryError("fastsce: cannot allocate the per-call workspace")

    def __dealloc__(self):
        if self.owns_row_loss:
            free(self.row_loss)
        if self.owns_scratch:
            free(self.scratch)


cdef inline bint needs_scratch(bint soft, double softcap, double inv_temperature, bint weighted,
                               double smoothing) noexcept nogil:
    """Whether loss_rows needs its scratch rows: for a target distribution built densely
    (soft targets, class weights with smoothing) or transformed logits z."""
    return soft or softcap != 0.0 or inv_temperature != 1.0 or (weighted and smoothing != 0.0)


def scratch_elements(Py_ssize_t n_classes, int n_threads):
    """Elements of logits' dtype a caller-provided scratch array must hold."""
    return n_threads * SCRATCH_ROWS * n_classes


cdef void set_plain_call(LossCall *c, cnp.ndarray x, Py_ssize_t x_stride,
                         const cnp.int64_t *index, cnp.int64_t ignore_index, double smoothing,
                         double grad_scale, double *row_loss, void *grad) noexcept:
    """Fill every field of a LossCall for class indices and no option beyond ignore_index
    and an unweighted smoothing (the small call as it is; cross_entropy adds the rest)."""
    c.single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32
    c.logits = cnp.PyArray_DATA(x)
    c.n_rows = cnp.PyArray_DIM(x, 0)
    c.n_classes = cnp.PyArray_DIM(x, 1)
    c.x_stride = x_stride if c.n_rows > 1 else c.n_classes
    c.index = index
    c.soft_target = NULL
    c.weight = NULL
    c.ignore_index = ignore_index
    c.smoothing = smoothing
    c.z_loss = 0.0
    c.softcap = 0.0
    c.inv_temperature = 1.0
    c.grad_scale = grad_scale
    c.row_loss = row_loss
    c.row_lse = NULL
    c.row_argmax = NULL
    c.scratch = NULL
    c.grad = grad


cdef inline double grad_scale_of(bint mean, double denominator) noexcept nogil:
    """The gradient's factor: 1 / denominator for 'mean' (NaN over nothing kept: 0 / 0,
    NaN gradient rows as in PyTorch), 1 for 'sum' and 'none'."""
    if not mean:
        return 1.0
    return 1.0 / denominator if denominator != 0.0 else NAN


cdef double batch_loss(const double *row_loss, Py_ssize_t n_rows, bint mean,
                       double denominator) noexcept nogil:
    """The per-row losses summed in row order, divided by denominator for 'mean' (NaN when
    it is 0)."""
    cdef double total = sum_in_order(row_loss, n_rows)
    if not mean:
        return total
    return total / denominator if denominator != 0.0 else NAN


cdef Py_ssize_t check_targets(const cnp.int64_t *indices, const void *probabilities,
                              bint single, Py_ssize_t n_rows, Py_ssize_t n_classes,
                              object options, double *denominator):
    """The first row whose class index is invalid or whose probabilities are not all finite
    (-1 if none), and the 'mean' denominator: the summed weights of the kept rows (class
    indices) or the row count (probabilities)."""
    cdef Py_ssize_t first_bad
    if indices != NULL:
        return check_class_indices(indices, n_rows, n_classes, options.ignore_index,
                                   <const double *>data_or_null(options.weight), denominator)
    denominator[0] = n_rows
    first_bad = (first_non_finite_index(<const float *>probabilities, n_rows * n_classes)
                 if single else
                 first_non_finite_index(<const double *>probabilities, n_rows * n_classes))
    return first_bad // n_classes if first_bad >= 0 else -1


cdef inline bint options_need_scratch(object options, bint soft):
    """needs_scratch for validated options (fastsce._loss.LossOptions)."""
    return needs_scratch(soft, options.softcap, options.inv_temperature,
                         options.weight is not None, options.smoothing)


cdef void set_call(LossCall *c, cnp.ndarray logits, const cnp.int64_t *indices,
                   const void *probabilities, object options, double grad_scale,
                   Workspace work, void *grad):
    """Fill every field of a LossCall from the validated options (no lse, no argmax)."""
    set_plain_call(c, logits, logits.strides[0] // logits.itemsize, indices,
                   options.ignore_index, options.smoothing, grad_scale, work.row_loss, grad)
    c.soft_target = probabilities
    c.weight = <const double *>data_or_null(options.weight)
    c.z_loss = options.z_loss
    c.softcap = options.softcap
    c.inv_temperature = options.inv_temperature
    c.scratch = work.scratch


cdef Workspace run_loss(cnp.ndarray logits, const cnp.int64_t *indices, object soft_target,
                        object options, double grad_scale, object row_loss, object grad,
                        object row_lse, object row_argmax, object scratch, int n_threads):
    """One LossCall over every row of logits, with validated targets and a given gradient
    scale; returns the Workspace holding the per-row losses (arguments as cross_entropy's)."""
    cdef LossCall c
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1]
    cdef Workspace work = Workspace(row_loss, n_rows, scratch,
                                    scratch_elements(n_classes, n_threads) * logits.itemsize
                                    if options_need_scratch(options, soft_target is not None)
                                    else 0)
    set_call(&c, logits, indices, data_or_null(soft_target), options, grad_scale, work,
             data_or_null(grad))
    c.row_lse = <double *>data_or_null(row_lse)
    c.row_argmax = <cnp.int64_t *>data_or_null(row_argmax)
    run_rows(loss_range, &c, n_rows, n_rows * n_classes, n_threads)
    return work


def cross_entropy(cnp.ndarray logits, object index, object soft_target, object options,
                  object row_loss, object grad, object row_lse, object row_argmax,
                  object scratch, int n_threads):
    """Loss (and gradient, lse, argmax when their arrays are given) of one batch.

    logits (n_rows, C) float32/float64, or float16/bfloat16 (computed in float32,
    _kernels_half.pxi), with contiguous rows; exactly one of index (int64 (n_rows,),
    C-contiguous) and soft_target (the compute dtype, C-contiguous (n_rows, C));
    options: the validated options (fastsce._loss.LossOptions:
    weight float64 (C,) or None, ignore_index, smoothing, z_loss, softcap (0 for none),
    inv_temperature, reduction); OUT arrays (None when not wanted): row_loss float64
    (n_rows,), grad like logits C-contiguous (may be logits), row_lse float64 (n_rows,),
    row_argmax int64 (n_rows,); grad of 16-bit logits is float32 or their own dtype;
    scratch: None or scratch_elements(C, n_threads) elements (unused for 16-bit logits).
    Targets are checked first: returns (first_bad_row, nan) without writing
    anything when a class index is invalid or a probability is not finite,
    else (-1, loss), the loss being the 'mean' (divided by the summed weights of
    the kept rows, or the row count for soft targets; NaN when that is 0) or the sum.
    """
    cdef double denominator
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1]
    cdef bint mean = options.reduction == "mean"
    cdef const cnp.int64_t *indices = <const cnp.int64_t *>data_or_null(index)
    cdef const void *probabilities = data_or_null(soft_target)
    cdef HalfFormat format = half_format(logits)
    first_bad = check_targets(indices, probabilities, cnp.PyArray_ITEMSIZE(logits) <= 4,
                              n_rows, n_classes, options, &denominator)
    if first_bad >= 0:
        return first_bad, NAN
    cdef Workspace work
    if format != NOT_HALF:
        work = run_half_loss(logits, format, indices, soft_target, options,
                             grad_scale_of(mean, denominator), row_loss, grad, row_lse,
                             row_argmax, n_threads)
    else:
        work = run_loss(logits, indices, soft_target, options, grad_scale_of(mean, denominator),
                        row_loss, grad, row_lse, row_argmax, scratch, n_threads)
    return -1, batch_loss(work.row_loss, n_rows, mean, denominator)


# ---------------------------------------------------------------------------
# the common small call, without the Python layer

cdef enum:
    SMALL_CALL_MAX_ROWS = 1024    # per-row losses fit in a stack array

cdef object INT64_MIN = -(1 << 63), INT64_MAX = (1 << 63) - 1


cdef inline bint is_plain(object value, int typenum) noexcept:
    """An ndarray of this type, C-contiguous, aligned and in native byte order."""
    if type(value) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>value
    return (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_ISCARRAY_RO(a)
            and cnp.PyArray_ISNOTSWAPPED(a))


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b) noexcept:
    """The memory spans of a (contiguous) and b (any strides) intersect."""
    cdef char *a0 = <char *>cnp.PyArray_DATA(a)
    cdef char *b0 = <char *>cnp.PyArray_DATA(b)
    cdef char *b1 = b0 + cnp.PyArray_ITEMSIZE(b)
    cdef Py_ssize_t reach
    cdef int axis
    if cnp.PyArray_SIZE(a) == 0 or cnp.PyArray_SIZE(b) == 0:
        return False
    for axis in range(cnp.PyArray_NDIM(b)):
        reach = (cnp.PyArray_DIM(b, axis) - 1) * cnp.PyArray_STRIDE(b, axis)
        if reach < 0:
            b0 += reach
        else:
            b1 += reach
    return a0 < b1 and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef const cnp.int64_t *int64_indices(object target, Py_ssize_t n_rows,
                                      cnp.int64_t *buffer) noexcept:
    """`target`'s n_rows class indices copied into buffer as int64, from any integer dtype
    whose values int64 holds exactly (not uint64, whose large values would wrap onto
    valid indices or ignore_index); NULL for anything else.  Always a copy: the kernel
    checks the indices, then reads them again, so another thread changing the caller's
    array in between cannot make it index outside a row."""
    if type(target) is not cnp.ndarray:
        return NULL
    cdef cnp.ndarray t = <cnp.ndarray>target
    cdef int typenum = cnp.PyArray_TYPE(t)
    cdef Py_ssize_t i, size = cnp.PyArray_ITEMSIZE(t)
    if (cnp.PyArray_NDIM(t) != 1 or cnp.PyArray_DIM(t, 0) != n_rows
            or not cnp.PyArray_ISNOTSWAPPED(t) or not cnp.PyArray_ISALIGNED(t)
            or not cnp.PyTypeNum_ISINTEGER(typenum)):
        return NULL
    cdef const char *data = <const char *>cnp.PyArray_DATA(t)
    cdef Py_ssize_t stride = cnp.PyArray_STRIDE(t, 0)
    cdef bint signed = cnp.PyTypeNum_ISSIGNED(typenum)
    if size == 8 and not signed:
        return NULL
    for i in range(n_rows):                 # each width and signedness read as itself
        if size == 1 and signed:
            buffer[i] = (<const cnp.int8_t *>data)[0]
        elif size == 1:
            buffer[i] = (<const cnp.uint8_t *>data)[0]
        elif size == 2 and signed:
            buffer[i] = (<const cnp.int16_t *>data)[0]
        elif size == 2:
            buffer[i] = (<const cnp.uint16_t *>data)[0]
        elif size == 4 and signed:
            buffer[i] = (<const cnp.int32_t *>data)[0]
        elif size == 4:
            buffer[i] = (<const cnp.uint32_t *>data)[0]
        else:
            buffer[i] = (<const cnp.int64_t *>data)[0]
        data += stride
    return buffer


cdef inline bint is_python_real(object value) noexcept:
    """A Python int or float (not bool, not a NumPy scalar)."""
    return type(value) is float or type(value) is int


cdef inline bint plain_options(tuple options) noexcept:
    """The one predicate of the fast path, over the seven option arguments of a loss call
    (weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss) as
    given: no weight, softcap, temperature or z-loss, a reduction of 'mean' or 'sum', an
    int64 ignore_index and a label_smoothing in [0, 1].  Python ints count as floats
    (label_smoothing=0, temperature=1); anything else goes the validating way."""
    if len(options) != 7:
        return False
    weight, ignore_index, reduction, smoothing, temperature, softcap, z_loss = options
    return (weight is None and softcap is None
            and type(reduction) is str and (reduction == "mean" or reduction == "sum")
            and type(ignore_index) is int and INT64_MIN <= ignore_index <= INT64_MAX
            and is_python_real(smoothing) and 0 <= smoothing <= 1
            and is_python_real(temperature) and temperature == 1
            and is_python_real(z_loss) and z_loss == 0)


cdef Py_ssize_t small_call_max_work = 0           # set_small_call_policy's
cdef Py_ssize_t small_call_row_cost = 0
cdef object small_call_threads_for = None


def set_small_call_policy(Py_ssize_t max_work, Py_ssize_t row_cost_elements,
                          object threads_for):
    """How small_call chooses its threads (fastsce._config sets it once, at import): one
    while the work (n_elements + n_rows * row_cost_elements, as fastsce._config.row_work)
    is below max_work, else threads_for(n_rows, work)."""
    global small_call_max_work, small_call_row_cost, small_call_threads_for
    small_call_max_work = max_work
    small_call_row_cost = row_cost_elements
    small_call_threads_for = threads_for


def small_call(object logits, object target, object out, bint want_grad, tuple options,
               object lse_out, object argmax_out):
    """The common call, with no validation layer in Python.

    Handles plain options (plain_options), no lse_out / argmax_out, 2-D native
    float32/float64 logits, or float16/bfloat16 ones (a float32 gradient, or one of their
    dtype with such an out), of at most SMALL_CALL_MAX_ROWS rows (rows read in place where
    they are contiguous, other layouts copied), class indices of any integer dtype but uint64, out
    None, a separate buffer or the logits themselves.  Returns (loss, grad or
    None), or None when anything is unusual, an invalid class index included:
    the Python layer then validates (and reports) the call.  Its threads follow
    set_small_call_policy, with the GIL released for large inputs as on the validating
    path.
    """
    if lse_out is not None or argmax_out is not None or not plain_options(options):
        return None
    cdef bint mean = options[2] == "mean"
    cdef cnp.int64_t ignore_index = options[1]
    cdef double smoothing = options[3]
    cdef int typenum, grad_typenum
    cdef HalfFormat format = NOT_HALF
    if type(logits) is not cnp.ndarray:
        return None
    cdef cnp.ndarray x = <cnp.ndarray>logits
    typenum = grad_typenum = cnp.PyArray_TYPE(x)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        format = half_format(x)
        if format == NOT_HALF:
            return None
        grad_typenum = cnp.NPY_FLOAT32       # the default gradient of 16-bit logits
    if (cnp.PyArray_NDIM(x) != 2 or not cnp.PyArray_ISALIGNED(x)
            or not cnp.PyArray_ISNOTSWAPPED(x)):
        return None
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x), x_stride = cnp.PyArray_DIM(x, 1)
    if not cnp.PyArray_IS_C_CONTIGUOUS(x):
        if ((cnp.PyArray_STRIDE(x, 1) == itemsize or cnp.PyArray_DIM(x, 1) == 1)
                and cnp.PyArray_STRIDE(x, 0) % itemsize == 0):
            x_stride = cnp.PyArray_STRIDE(x, 0) // itemsize    # rows contiguous: read in place
        else:
            x = cnp.PyArray_NewCopy(x, cnp.NPY_CORDER)         # e.g. Fortran order
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(x, 0), n_classes = cnp.PyArray_DIM(x, 1)
    if n_classes == 0 or n_rows > SMALL_CALL_MAX_ROWS:
        return None
    cdef cnp.int64_t index_buffer[SMALL_CALL_MAX_ROWS]
    cdef const cnp.int64_t *indices = int64_indices(target, n_rows, index_buffer)
    if indices == NULL:
        return None
    cdef cnp.ndarray g = None
    if want_grad:
        if out is None:
            g = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x), grad_typenum, 0)
        else:
            if not is_plain(out, grad_typenum) and not (format != NOT_HALF
                                                        and is_plain(out, typenum)):
                return None
            g = <cnp.ndarray>out
            if (not cnp.PyArray_ISWRITEABLE(g) or cnp.PyArray_NDIM(g) != 2
                    or cnp.PyArray_DIM(g, 0) != n_rows or cnp.PyArray_DIM(g, 1) != n_classes
                    or overlaps(g, <cnp.ndarray>target)
                    or (overlaps(g, <cnp.ndarray>logits) and g is not logits)):
                return None
    cdef LossCall c
    cdef double row_loss[SMALL_CALL_MAX_ROWS]
    cdef double kept
    if check_class_indices(indices, n_rows, n_classes, ignore_index, NULL, &kept) >= 0:
        return None
    set_plain_call(&c, x, x_stride, indices, ignore_index,
                   smoothing, grad_scale_of(mean, kept), row_loss,
                   NULL if g is None else cnp.PyArray_DATA(g))
    cdef Py_ssize_t work = n_rows * (n_classes + small_call_row_cost)
    cdef int n_threads = (1 if work < small_call_max_work or small_call_threads_for is None
                          else small_call_threads_for(n_rows, work))
    if format == NOT_HALF:
        run_rows(loss_range, &c, n_rows, n_rows * n_classes, n_threads)
    else:
        run_half_rows(&c, format, g is not None and cnp.PyArray_ITEMSIZE(g) == 2, False,
                      n_threads)
    return batch_loss(row_loss, n_rows, mean, kept), g


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FSCE_OPENMP)


def openmp_max_threads():
    """The OpenMP runtime's thread limit for this thread (omp_get_max_threads: OMP_NUM_THREADS,
    or a threadpoolctl limit); 1 without OpenMP."""
    return fsce_openmp_max_threads()
