# Block kernels (included by _kernels.pyx): cross-entropy and the softmax family of rows
# cut into blocks of columns, for arrays sharded over the class axis (fastsce.dask).
#
# Design: a row of C classes is cut into blocks of columns [col0, col0 + n).  One pass over
# a block gives its partial (block_partials), PARTIAL_FIELDS float64 values per row:
#
#     P_MAX     the block's max m_b in units u (below); NaN when the block holds a NaN
#     P_ONES    1, the max's own exp(0) (0 for a block of -inf only)
#     P_OTHERS  S'_b = the sum of the other exp(z_j - m_b): summed without the 1 when the
#               block's total is below FSCE_CONFIDENT_TOTAL (as log_of_total does), else
#               total - 1 (then the block can only hold a row max with S >= 1.5)
#     P_COUNT   n
#     P_ZSUM    sum_j (z_j - m_b) / C                  (class indices: the smoothing term)
#     P_ZT      the target's value in units u when the target is in the block, else 0
#     P_TMASS   w_t (1 - eps) when the target is in the block, else 0
#     P_MASS    A_b = sum_j b_j                        (a dense target distribution b)
#     P_GAP     sum_j b_j (z_j - m_b)                  (dense)
#
# fastsce._sharded combines the partials of a row with max-rescaling (m = max_b m_b,
# S' += S_b exp(m_b - m) for a block below the max) into the row state: m, S = 1 + S', S'
# (or -1 when S >= FSCE_CONFIDENT_TOTAL), 2 lambda lse and the target mass, from which it
# writes the loss as loss_rows does.  block_gradient and block_softmax then write each
# block from its own logits and that state, with the row helpers and formulas of
# loss_rows and of the softmax kernels: the exps exp(z_j - m) of a block are those of the
# whole row, so the results are those of the in-memory call up to the order of the sums.
#
# Units: without a softcap, z = x / T is linear in x, so maxima and the target's value are
# kept as x values and a kernel forms z = (x - m) / T from the row's m exactly as
# scaled_row does; with a softcap, z = c tanh(x / c) / T is computed unshifted (as
# softcap_row does) and they are z values.

cdef enum:
    P_MAX, P_ONES, P_OTHERS, P_COUNT, P_ZSUM, P_ZT, P_TMASS, P_MASS, P_GAP, PARTIAL_FIELDS

cdef enum:
    S_MAX, S_TOTAL, S_OTHER, S_ZLT, S_MASS, STATE_FIELDS

ctypedef enum BlockOp:
    PARTIALS, GRADIENT, SOFTMAX_BLOCK, LOG_SOFTMAX_BLOCK


ctypedef struct BlockCall:
    BlockOp op
    bint single                   # float32 (else float64)
    const void *x                 # IN (n_rows, n), rows x_stride apart
    Py_ssize_t n                  # columns in the block
    Py_ssize_t x_stride
    Py_ssize_t col0               # the block's first column in the row
    Py_ssize_t n_classes          # C, the row's length
    const cnp.int64_t *index      # IN class index per row, or NULL
    const void *soft_target       # IN (n_rows, n) probabilities, or NULL
    Py_ssize_t soft_stride        # elements between their rows (>= n)
    const double *weight          # IN the class weights of the block's columns, or NULL
    cnp.int64_t ignore_index
    double smoothing              # eps
    double softcap                # c, 0 when off
    double inv_temperature        # 1 / T
    double grad_scale             # 1 / denominator for 'mean', else 1
    const double *state           # IN (n_rows, state_stride): S_* fields first
    Py_ssize_t state_stride
    double *partials              # OUT (n_rows, PARTIAL_FIELDS) for PARTIALS
    void *out                     # OUT (n_rows, n) C-contiguous for the other ops
    void *scratch                 # 3 rows of n per worker


cdef inline const floating *block_z(const floating *x, const BlockCall *c, floating shift,
                                    floating *z, floating *dz_dx) noexcept nogil:
    """z of a block row: c tanh(x / c) / T with a softcap (dz_dx filled, as softcap_row),
    else (x - shift) / T (x itself when T = 1)."""
    if c.softcap != 0.0:
        softcap_row(x, c.n, c.softcap, c.inv_temperature, z, dz_dx)
        return z
    if c.inv_temperature == 1.0:
        return x
    row_affine(x, c.n, shift, <floating>c.inv_temperature, 0, z)
    return z


cdef inline Py_ssize_t block_target(const BlockCall *c, Py_ssize_t i) noexcept nogil:
    """The row's class index within the block, or -1 (elsewhere, ignored, soft target)."""
    if c.index == NULL or c.index[i] == c.ignore_index:
        return -1
    cdef cnp.int64_t t = c.index[i]
    return t - c.col0 if c.col0 <= t < c.col0 + c.n else -1     # no overflow for any t


cdef inline bint is_hard(const BlockCall *c) noexcept nogil:
    """Class indices handled in closed form, as loss_rows does (else b is dense)."""
    return c.index != NULL and (c.weight == NULL or c.smoothing == 0.0)


cdef inline void dense_target(const BlockCall *c, Py_ssize_t i, Py_ssize_t t,
                              floating *b) noexcept nogil:
    """The block's columns of b, as loss_rows builds the row's."""
    cdef Py_ssize_t j, n = c.n
    cdef double eps = c.smoothing
    cdef const floating *y
    if c.index != NULL:
        # b_j = eps w_j / C + (1 - eps) w_t [j = t]
        for j in range(n):
            b[j] = <floating>(eps * c.weight[j] / c.n_classes)
        if t >= 0:
            b[t] = <floating>(b[t] + (1.0 - eps) * c.weight[t])
        return
    # b_j = w_j ((1 - eps) y_j + eps / C)
    y = <const floating *>c.soft_target + i * c.soft_stride
    for j in range(n):
        b[j] = <floating>((1.0 - eps) * y[j] + eps / c.n_classes)
        if c.weight != NULL:
            b[j] = <floating>(b[j] * c.weight[j])


cdef void partial_row(const floating *x, const BlockCall *c, Py_ssize_t i, floating *b,
                      floating *z_buffer, floating *dz_dx, const floating *next) noexcept nogil:
    """The PARTIAL_FIELDS values of row i's block (see the top of this file)."""
    cdef double *p = c.partials + i * PARTIAL_FIELDS
    cdef Py_ssize_t n = c.n, t = block_target(c, i)
    cdef floating shift = 0
    cdef double total, other
    if c.softcap == 0.0 and c.inv_temperature != 1.0:
        shift = row_max(x, n)                      # z = (x - max x) / T, as scaled_row
        if not isfinite(shift):
            shift = 0
    cdef const floating *z = block_z(x, c, shift, z_buffer, dz_dx)
    cdef floating m = row_max_for_lse(z, n)
    # the sums below are taken relative to m, or to 0 for a block of -inf only (their
    # terms are then -inf where the weight is not 0, as the whole row's are)
    cdef floating base = m if m != -INFINITY else 0
    memset(p, 0, PARTIAL_FIELDS * sizeof(double))
    p[P_MAX] = shift + m                           # units u: x + 0, 0 + z
    p[P_COUNT] = n
    if m != -INFINITY:
        total = row_exp_sum(z, n, m, 1, NULL, next)
        log_of_total(z, n, m, 1, True, total, &other)
        p[P_ONES] = 1.0
        p[P_OTHERS] = other if other >= 0.0 else total - 1.0
        if total != total and m != INFINITY:      # a NaN in the block (beside +inf: NaN)
            p[P_MAX] = NAN
    if is_hard(c):
        if c.smoothing != 0.0:
            p[P_ZSUM] = row_sum(z, n, base, <floating>(1.0 / c.n_classes))
        if t >= 0:
            p[P_ZT] = z[t] if c.softcap != 0.0 else x[t]
            p[P_TMASS] = (c.weight[t] if c.weight != NULL else 1.0) * (1.0 - c.smoothing)
        return
    if c.index == NULL and c.soft_target == NULL:
        return                                     # no target: a log-sum-exp
    if c.index != NULL and c.index[i] == c.ignore_index:
        return
    dense_target(c, i, t, b)
    p[P_MASS] = row_sum(b, n, 0, 1)
    p[P_GAP] = row_dot(z, b, n, base)


cdef inline void fill(floating *out, Py_ssize_t n, floating value) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = value


cdef void gradient_row(const floating *x, const BlockCall *c, Py_ssize_t i, floating *b,
                       floating *z_buffer, floating *dz_dx, floating *g,
                       const floating *next) noexcept nogil:
    """Row i's block of d(loss)/dx from the row state (hard_row_end / dense_row's
    gradient over the block's columns)."""
    cdef Py_ssize_t n = c.n, t = block_target(c, i), top
    cdef const double *s = c.state + i * c.state_stride
    cdef double eps = c.smoothing, total = s[S_TOTAL], other = s[S_OTHER]
    cdef double scale = c.grad_scale * (c.inv_temperature if c.softcap == 0.0 else 1.0)
    cdef double coefficient
    cdef bint scaled = c.softcap == 0.0 and c.inv_temperature != 1.0
    if c.index != NULL and c.index[i] == c.ignore_index:
        memset(g, 0, n * sizeof(floating))
        return
    if not isfinite(s[S_MAX]):                     # -inf only, +inf or NaN: a NaN row
        fill(g, n, <floating>NAN)
        return
    # with a temperature z = (x - m) / T, whose max is 0
    cdef floating m = 0 if scaled else <floating>s[S_MAX]
    cdef const floating *z = block_z(x, c, <floating>s[S_MAX], z_buffer, dz_dx)
    row_exp_sum(z, n, m, 1, g, next)                # g_j = exp(z_j - m)
    if is_hard(c):
        # g_j = scale ((w_t (1 - eps) + eps + 2 lambda lse) s_j - eps / C)
        #       - scale w_t (1 - eps) [j = t]
        row_affine(g, n, 0, <floating>(scale * (s[S_MASS] + eps + s[S_ZLT]) / total),
                   <floating>(scale * eps / c.n_classes), g)
        if t >= 0:
            if other >= 0.0 and z[t] == m:         # a confident row whose target is the max
                g[t] = <floating>fsce_confident_target_grad(scale, s[S_MASS], eps, s[S_ZLT],
                                                            other, total, c.n_classes)
            else:
                g[t] -= <floating>(scale * s[S_MASS])
    else:
        dense_target(c, i, t, b)
        top = row_find(g, n, 1) if other >= 0.0 else -1
        coefficient = s[S_MASS] + s[S_ZLT]
        # g_j = scale ((A + 2 lambda lse) s_j - b_j)
        row_ay_minus_cb(g, b, n, <floating>(scale * coefficient / total), <floating>scale, g)
        if top >= 0:
            g[top] = <floating>(scale * ((coefficient - b[top]) - b[top] * other) / total)
    if c.softcap != 0.0:
        row_mul_shifted(dz_dx, g, n, 0, g)          # chain rule: grad_x = grad_z dz/dx


cdef void block_rows(const floating *x, const BlockCall *c, Py_ssize_t start, Py_ssize_t stop,
                     floating *scratch) noexcept nogil:
    """Rows [start, stop) of a BlockCall."""
    cdef Py_ssize_t i, n = c.n
    cdef floating *out = <floating *>c.out
    cdef const floating *x_row
    cdef const floating *next
    cdef const double *s
    cdef floating inv_t = <floating>c.inv_temperature
    for i in range(start, stop):
        x_row = x + i * c.x_stride
        next = x_row + c.x_stride if i + 1 < stop else NULL     # to prefetch
        if c.op == PARTIALS:
            partial_row(x_row, c, i, scratch, scratch + n, scratch + 2 * n, next)
        elif c.op == GRADIENT:
            gradient_row(x_row, c, i, scratch, scratch + n, scratch + 2 * n, out + i * n, next)
        elif c.op == SOFTMAX_BLOCK:
            s = c.state + i * c.state_stride
            # s_j = exp((x_j - m) / T) / S
            row_exp_sum(x_row, n, <floating>s[S_MAX], inv_t, out + i * n, next)
            row_affine(out + i * n, n, 0, <floating>(1.0 / s[S_TOTAL]), 0, out + i * n)
        else:
            s = c.state + i * c.state_stride
            # log s_j = (x_j - m) / T - log S
            row_affine(x_row, n, <floating>s[S_MAX], inv_t,
                       <floating>fsce_log_total(s[S_TOTAL], s[S_OTHER]), out + i * n)


cdef void block_range(void *call, Py_ssize_t start, Py_ssize_t stop, int worker) noexcept nogil:
    cdef const BlockCall *c = <const BlockCall *>call
    cdef Py_ssize_t offset = worker * SCRATCH_ROWS * c.n
    if c.single:
        block_rows(<const float *>c.x, c, start, stop, <float *>c.scratch + offset)
    else:
        block_rows(<const double *>c.x, c, start, stop, <double *>c.scratch + offset)


cdef run_block(BlockOp op, object block, object options, double inv_temperature,
               double grad_scale, object state, cnp.ndarray out, int n_threads):
    """Fill a BlockCall and run it over the rows, with malloc'ed scratch rows (block: a
    fastsce._sharded.ColumnBlock, or a tuple of its fields; options: ignore_index,
    smoothing, softcap; None for the softmax family)."""
    cdef BlockCall c
    cdef cnp.ndarray x
    cdef Py_ssize_t col0, n_classes
    x, index, soft_target, weight, col0, n_classes = block
    cdef Py_ssize_t n_rows = x.shape[0]
    c.op = op
    c.single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32
    c.x = cnp.PyArray_DATA(x)
    c.n = x.shape[1]
    c.x_stride = x.strides[0] // x.itemsize if n_rows > 1 else c.n
    c.col0 = col0
    c.n_classes = n_classes
    c.index = <const cnp.int64_t *>data_or_null(index)
    c.soft_target = data_or_null(soft_target)
    c.soft_stride = c.n
    c.weight = <const double *>data_or_null(weight)
    c.ignore_index = options.ignore_index if options is not None else 0
    c.smoothing = options.smoothing if options is not None else 0.0
    c.softcap = options.softcap if options is not None else 0.0
    c.inv_temperature = inv_temperature
    c.grad_scale = grad_scale
    c.state = <const double *>data_or_null(state)
    c.state_stride = state.shape[1] if state is not None else 0
    c.partials = <double *>cnp.PyArray_DATA(out) if op == PARTIALS else NULL
    c.out = cnp.PyArray_DATA(out)
    c.scratch = malloc(max(n_threads * SCRATCH_ROWS * c.n * x.itemsize, 1))
    if c.scratch == NULL:
        raise MemoryError("fastsce: cannot allocate the per-call workspace")
    try:
        run_rows(block_range, &c, n_rows, n_rows * c.n, n_threads)
    finally:
        free(c.scratch)


# ---------------------------------------------------------------------------
# entry points (arrays already validated by fastsce.dask)

def block_partials(object block, object options, cnp.ndarray partials, int n_threads):
    """partials (n_rows, PARTIAL_FIELDS) float64 C-contiguous of the block, a
    fastsce._sharded.ColumnBlock (its fields' layout there); options: ignore_index,
    smoothing, softcap (0 for none), inv_temperature (fastsce._loss.LossOptions)."""
    run_block(PARTIALS, block, options, options.inv_temperature, 1.0, None, partials,
              n_threads)


def block_gradient(object block, object options, double grad_scale, cnp.ndarray state,
                   cnp.ndarray out, int n_threads):
    """out (n_rows, n) like the block's x, C-contiguous: the block's gradient of the loss,
    from the row state (n_rows, >= STATE_FIELDS) float64 C-contiguous (arguments as
    block_partials; index: valid class indices or ignore_index)."""
    run_block(GRADIENT, block, options, options.inv_temperature, grad_scale, state, out,
              n_threads)


def block_softmax(cnp.ndarray x, double inv_temperature, bint log, cnp.ndarray state,
                  cnp.ndarray out, int n_threads):
    """out (n_rows, n) like x, C-contiguous: softmax (log_softmax when log) of the block x
    of rows whose state is given (the S_* fields of a log-sum-exp, without a softcap)."""
    # the block's fields: x alone, no target or class weights (col0, n_classes unread)
    run_block(LOG_SOFTMAX_BLOCK if log else SOFTMAX_BLOCK, (x, None, None, None, 0, x.shape[1]),
              None, inv_temperature, 1.0, state, out, n_threads)


def rows_loss(cnp.ndarray logits, object index, object soft_target, object options,
              double grad_scale, cnp.ndarray row_loss, object grad, int n_threads):
    """cross_entropy's kernel call on whole rows with a given gradient scale (the 'mean'
    denominator of a larger batch): row_loss (n_rows,) float64 and grad (or None) as in
    cross_entropy.  Class indices must be valid (ValueError otherwise, nothing written)."""
    cdef double kept
    if index is not None and check_class_indices(
            <const cnp.int64_t *>cnp.PyArray_DATA(<cnp.ndarray>index), logits.shape[0],
            logits.shape[1], options.ignore_index, NULL, &kept) >= 0:
        raise ValueError("fastsce: rows_loss needs valid class indices")
    run_loss(logits, <const cnp.int64_t *>data_or_null(index), soft_target, options,
             grad_scale, row_loss, grad, None, None, None, n_threads)
