# 16-bit logits (included by _kernels.pyx): bfloat16 and float16, computed in float32.
#
# Design: the row kernels of _kernels_loss.pxi run on float32 rows.  A call on 16-bit
# logits widens them into float32 a row at a time (a block of rows when they are short)
# into memory that stays in cache -- the rows of the float32 gradient when there is one,
# else a per-worker block -- and runs loss_rows over that block as it runs over float32
# logits, the gradient computed in place.  So every option works, and the results are
# those of a float32 copy of the logits bit for bit, without that copy: the logits are
# read once, at 2 bytes an element.  A 16-bit gradient (out= of the logits' dtype) is
# narrowed from the block to nearest even, at 2 bytes an element too.
#
# A plain row (a class index, no transform, no argmax_out, more classes than
# small_rows takes) does not need the widened row: its passes read the 16-bit
# logits, widened in registers (the max, the mean for smoothing, the exps stored in
# float32 into the gradient row or the block), and the float32 table's hard_row_end
# finishes it as hard_rows does -- the same operations, so the same bits.  Ignored
# rows and rows whose max is not finite take the block way.

cdef enum:
    HALF_BLOCK_ELEMENTS = 4096    # short rows are widened this many elements at a time


ctypedef struct HalfLossCall:
    LossCall loss                 # logits (and grad when half_grad) hold 16-bit values
    HalfFormat format
    bint half_grad                # grad in the logits' 16-bit format (else float32)
    Py_ssize_t block_rows         # rows widened at a time
    Py_ssize_t scratch_elements   # loss_rows's scratch rows per worker (then the block)
    Py_ssize_t worker_elements    # float32 elements per worker: scratch rows and block


cdef object known_bfloat16 = None    # ml_dtypes' bfloat16 dtype, once half_format has met it


cdef HalfFormat half_format(cnp.ndarray a):
    """FLOAT16 or BFLOAT16 for arrays of those dtypes (bfloat16: ml_dtypes', known by
    its name without importing it, then by identity), NOT_HALF otherwise."""
    global known_bfloat16
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT16:
        return FLOAT16
    if cnp.PyArray_ITEMSIZE(a) != 2:
        return NOT_HALF
    cdef object dtype = <object>cnp.PyArray_DESCR(a)
    if dtype is known_bfloat16:
        return BFLOAT16
    if dtype.kind == "V" and dtype.name == "bfloat16":
        known_bfloat16 = dtype
        return BFLOAT16
    return NOT_HALF


cdef inline void block_call(LossCall *rows, const LossCall *c, Py_ssize_t first,
                            Py_ssize_t n_rows, float *block) noexcept nogil:
    """rows = the LossCall of c's rows [first, first + n_rows) widened into block (C
    contiguous): every per-row pointer moved to that first row."""
    cdef Py_ssize_t n = c.n_classes
    rows[0] = c[0]
    rows.single = True
    rows.logits = block
    rows.n_rows = n_rows
    rows.x_stride = n
    rows.row_loss = c.row_loss + first
    if c.index != NULL:
        rows.index = c.index + first
    if c.soft_target != NULL:
        rows.soft_target = <const float *>c.soft_target + first * n
    if c.row_lse != NULL:
        rows.row_lse = c.row_lse + first
    if c.row_argmax != NULL:
        rows.row_argmax = c.row_argmax + first
    rows.grad = block if c.grad != NULL else NULL


cdef inline bint plain_rows(const LossCall *c) noexcept nogil:
    """Whether the rows of c can take half_hard_row (hard_rows' case with z = x)."""
    return (c.index != NULL and c.n_classes > FSCE_SMALL_ROW_CLASSES and c.softcap == 0.0
            and c.inv_temperature == 1.0 and c.row_argmax == NULL
            and (c.weight == NULL or c.smoothing == 0.0))


cdef inline bint half_hard_row(const HalfLossCall *h, const fsce_hard_targets *targets,
                               Py_ssize_t i, Py_ssize_t stop, float *block) noexcept nogil:
    """hard_rows' row i of a plain call, its passes over the 16-bit logits, finished by
    the float32 table's hard_row_end; False (nothing written) for a row to widen instead:
    ignored, or a max that is not finite."""
    cdef const LossCall *c = &h.loss
    cdef const fsce_ops_half *ops = half_ops(h.format)
    cdef Py_ssize_t n = c.n_classes, t = c.index[i]
    cdef const uint16_t *x = <const uint16_t *>c.logits + i * c.x_stride
    cdef const uint16_t *next = x + c.x_stride if i + 1 < stop else NULL
    cdef float *g = NULL
    cdef float *float_grad
    cdef float m, z_t
    cdef fsce_row_sums sums
    cdef double lse
    if t == c.ignore_index:
        return False
    m = ops.row_max(x, n)
    if not isfinite(m):
        return False
    if c.grad != NULL:
        g = block if h.half_grad else <float *>c.grad + i * n
    ops.widen(x + t, 1, &z_t)
    sums.m = m
    sums.z_t = z_t
    sums.mean_gap = -ops.row_sum(x, n, m, <float>(1.0 / n)) if targets.eps != 0.0 else 0.0
    sums.total = ops.row_exp_sum(x, n, m, g, next,
                                 <uint16_t *>c.grad + i * n if h.half_grad else NULL)
    sums.other = -1.0
    if sums.total < FSCE_CONFIDENT_TOTAL:             # rare: see log_of_total
        if g == NULL:
            ops.widen(x, n, block)
        sums.log_total = log_of_total(block if g == NULL else g, n, m, 1, g == NULL, sums.total,
                                      &sums.other)
    else:
        sums.log_total = fsce_log_total(sums.total, -1.0)
    float_grad = NULL if h.half_grad else g     # a 16-bit gradient: half_hard_grad below
    c.row_loss[i] = fsce_get_ops_f32().hard_row_end(n, t, targets, &sums, 0.0, float_grad, &lse)
    if c.row_lse != NULL:
        c.row_lse[i] = lse
    if h.half_grad:
        half_hard_grad(h.format, g, n, t,
                       (c.weight[t] if c.weight != NULL else 1.0) * (1.0 - targets.eps),
                       targets.eps, fsce_weighted(2.0 * targets.z_loss, lse), targets.scale,
                       &sums, <uint16_t *>c.grad + i * n)
    return True


cdef inline void half_hard_grad(HalfFormat format, const float *exps, Py_ssize_t n,
                                Py_ssize_t t, double target_mass, double eps,
                                double z_loss_term, double scale, const fsce_row_sums *sums,
                                uint16_t *out) noexcept nogil:
    """The gradient hard_row_end writes, from the row's stored exps, rounded to the 16-bit
    format in the same pass (affine_narrow: its row_affine, narrowed): the float32 values
    of hard_row_end (csrc/fsce_rows_impl.h), then one rounding."""
    cdef float a = <float>(scale * (target_mass + eps + z_loss_term) / sums.total)
    cdef float c = <float>(scale * eps / n)
    cdef float g_t
    half_ops(format).affine_narrow(exps, n, a, c, out)
    if sums.other >= 0.0 and sums.z_t == sums.m:  # a confident row whose target is the max
        g_t = <float>fsce_confident_target_grad(scale, target_mass, eps, z_loss_term,
                                                sums.other, sums.total, n)
    else:
        row_affine(exps + t, 1, 0, a, c, &g_t)
        g_t -= <float>(scale * target_mass)
    narrow_row(format, &g_t, 1, out + t)


cdef void half_loss_range(void *call, Py_ssize_t start, Py_ssize_t stop,
                          int worker) noexcept nogil:
    """Rows [start, stop) of a HalfLossCall, a block at a time: widen, loss_rows in
    float32 (in place), narrow a 16-bit gradient."""
    cdef const HalfLossCall *h = <const HalfLossCall *>call
    cdef const LossCall *c = &h.loss
    cdef const uint16_t *x = <const uint16_t *>c.logits
    cdef Py_ssize_t n = c.n_classes, first = start, n_rows, r
    cdef float *scratch = <float *>c.scratch + worker * h.worker_elements
    cdef float *block
    cdef LossCall rows
    cdef bint plain = plain_rows(c)
    cdef fsce_hard_targets targets
    targets.target = <const int64_t *>c.index
    targets.ignore_index = c.ignore_index
    targets.weight = c.weight
    targets.eps = c.smoothing
    targets.z_loss = c.z_loss
    targets.scale = c.grad_scale                # inv_temperature is 1 for plain rows
    while first < stop:
        if plain and half_hard_row(h, &targets, first, stop, scratch + h.scratch_elements):
            first += 1
            continue
        n_rows = 1 if plain else min(h.block_rows, stop - first)
        if c.grad != NULL and not h.half_grad:
            block = <float *>c.grad + first * n
        else:
            block = scratch + h.scratch_elements
        for r in range(n_rows):
            widen_row(h.format, x + (first + r) * c.x_stride, n, block + r * n)
        block_call(&rows, c, first, n_rows, block)
        loss_rows(<const float *>block, &rows, 0, n_rows, scratch, <float *>rows.grad)
        if h.half_grad:
            narrow_row(h.format, block, n_rows * n, <uint16_t *>c.grad + first * n)
        first += n_rows


cdef Workspace run_half_loss(cnp.ndarray logits, HalfFormat format,
                             const cnp.int64_t *indices, object soft_target, object options,
                             double grad_scale, object row_loss, object grad, object row_lse,
                             object row_argmax, int n_threads):
    """run_loss for 16-bit logits (soft_target float32; grad float32 or of the logits'
    dtype)."""
    cdef LossCall c
    cdef Workspace work = Workspace(row_loss, logits.shape[0], None, 0)
    set_call(&c, logits, indices, data_or_null(soft_target), options, grad_scale, work,
             data_or_null(grad))
    c.row_lse = <double *>data_or_null(row_lse)
    c.row_argmax = <cnp.int64_t *>data_or_null(row_argmax)
    run_half_rows(&c, format, grad is not None and (<cnp.ndarray>grad).itemsize == 2,
                  options_need_scratch(options, soft_target is not None), n_threads)
    return work


cdef int run_half_rows(const LossCall *c, HalfFormat format, bint half_grad, bint need_scratch,
                       int n_threads) except -1:
    """Every row of c (its logits of the 16-bit format; its gradient of that format when
    half_grad, else float32), with the float32 scratch of its own each worker needs:
    loss_rows's scratch rows when need_scratch, then the block of widened rows."""
    cdef HalfLossCall h
    h.loss = c[0]
    h.format = format
    h.half_grad = half_grad
    h.block_rows = max(1, HALF_BLOCK_ELEMENTS // c.n_classes)
    h.scratch_elements = SCRATCH_ROWS * c.n_classes if need_scratch else 0
    h.worker_elements = h.scratch_elements + h.block_rows * c.n_classes
    h.loss.scratch = malloc(n_threads * h.worker_elements * sizeof(float))
    if h.loss.scratch == NULL:
        raise MemoryError("fastsce: cannot allocate the per-call workspace")
    try:
        run_rows(half_loss_range, &h, c.n_rows, c.n_rows * c.n_classes, n_threads)
    finally:
        free(h.loss.scratch)
    return 0
