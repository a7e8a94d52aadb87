# Fused linear + cross-entropy (included by _kernels.pyx): the loss of logits X Wᵀ + b
# and its gradients with respect to X, W and b, without the (n_rows, V) logits.
#
# Design: the rows go in chunks of chunk_rows; per chunk, in a buffer of (chunk_rows, V)
# reused from chunk to chunk,
#
#     L      = X[chunk] Wᵀ + b               one GEMM
#     G      = dloss/dL                      the cross-entropy rows (loss_range), in place
#     dX[chunk]  = G W                       one GEMM
#     dW    (+)= Gᵀ X[chunk]                 one GEMM, set by the first chunk, then added to
#     db    (+)= sum_rows G                  in float64, rows in order
#
# so nothing of (n_rows, V) is ever allocated.  The per-row losses go to one (n_rows,)
# array summed in row order at the end, and the 'mean' scale 1 / denominator is known
# before the first chunk (check_targets): every row is computed as cross_entropy
# computes it, whatever the chunk.
#
# The loss alone (linear_partials) needs no row whole: per chunk, each tile of classes
# [v0, v0 + CLASS_TILE) goes by one GEMM into a small buffer of its worker's, and the
# block partials of _kernels_blocks.pxi (the tile's max, its exps, the target's logit and
# the sums the options need) are taken from it while it is in cache, into a
# (class tiles, n_rows, PARTIAL_FIELDS) array that fastsce._sharded merges tile by tile
# into each row's loss.  The logits never leave the cache, and a chunk can have many
# more rows for the same memory (W, read once per chunk, is read fewer times).
#
# GEMMs are BLAS's (scipy's cython_blas exports, looked up by load_blas), called on one
# thread each: every GEMM is cut into tiles of fixed shape (CLASS_TILE classes,
# FEATURE_TILE features) that fastsce's OpenMP threads share out (schedule dynamic).
# A tile is the same single-threaded BLAS call whichever thread runs it, and tiles never
# split a dot product, so results are the same bits for any thread count (a BLAS left
# to partition a GEMM itself changes bits with its thread count).  The caller
# (_linear.py) sets BLAS to one thread for the duration of the call.

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython.parallel cimport prange, threadid

ctypedef void (*sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                          float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                          int *ldc) noexcept nogil
ctypedef void (*dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                          double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                          int *ldc) noexcept nogil

cdef sgemm_fn blas_sgemm = NULL
cdef dgemm_fn blas_dgemm = NULL

cdef enum:
    CLASS_TILE = 1024             # classes per tile of L = X Wᵀ and of dW = Gᵀ X
    FEATURE_TILE = 256            # features per tile of dX = G W

#: classes per tile of the logits (the loss alone: per buffer of a worker)
LINEAR_CLASS_TILE = CLASS_TILE


def load_blas(dict capi):
    """Take sgemm and dgemm from scipy.linalg.cython_blas.__pyx_capi__ (once)."""
    global blas_sgemm, blas_dgemm
    cdef object s = capi["sgemm"], d = capi["dgemm"]
    blas_sgemm = <sgemm_fn>PyCapsule_GetPointer(s, PyCapsule_GetName(s))
    blas_dgemm = <dgemm_fn>PyCapsule_GetPointer(d, PyCapsule_GetName(d))


cdef inline void gemm(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                      floating beta, floating *c, Py_ssize_t ldc) noexcept nogil:
    """C = op(A) op(B) + beta C in BLAS's column-major terms (a row-major (r, s) array
    is a column-major (s, r) one); leading dimensions of at least 1, as BLAS requires."""
    cdef int m_ = <int>m, n_ = <int>n, k_ = <int>k
    cdef int lda_ = <int>max(lda, 1), ldb_ = <int>max(ldb, 1), ldc_ = <int>max(ldc, 1)
    cdef floating one = 1
    if floating is float:
        blas_sgemm(&transa, &transb, &m_, &n_, &k_, &one, <float *>a, &lda_, <float *>b, &ldb_,
                   &beta, c, &ldc_)
    else:
        blas_dgemm(&transa, &transb, &m_, &n_, &k_, &one, <double *>a, &lda_, <double *>b,
                   &ldb_, &beta, c, &ldc_)


ctypedef struct LinearCall:
    bint single                   # float32 (else float64)
    const void *x                 # IN (n_rows, H), rows x_stride apart
    Py_ssize_t x_stride
    const void *x_rows            # the chunk's rows of X (or their float32 copy)
    Py_ssize_t x_rows_stride      # ... their stride (H for the copy of 16-bit x)
    const void *w                 # IN (V, H), rows w_stride apart
    Py_ssize_t w_stride
    const void *bias              # IN (V,), or NULL
    Py_ssize_t n_classes          # V
    Py_ssize_t n_features         # H
    void *logits                  # (chunk_rows, V) C-contiguous: L, then G in place, or
    #                               the loss alone's (workers, chunk_rows, CLASS_TILE)
    Py_ssize_t n_rows             # all the rows
    Py_ssize_t start              # the chunk: rows [start, start + rows)
    Py_ssize_t rows
    bint first                    # the first chunk: dW and db are set, not added to
    void *grad_x                  # OUT (n_rows, H) C-contiguous, or NULL
    void *grad_w                  # OUT (V, H) C-contiguous, or NULL
    double *grad_bias             # OUT (V,), or NULL
    const BlockCall *block        # the loss alone: the options and targets of every row
    double *partials              # OUT the loss alone: (class tiles, n_rows, PARTIAL_FIELDS)
    void *scratch                 # the loss alone: SCRATCH_ROWS rows of CLASS_TILE per worker


ctypedef void (*TileBody)(const LinearCall *c, Py_ssize_t tile, int worker) noexcept nogil


cdef inline Py_ssize_t tiles(Py_ssize_t n, Py_ssize_t size) noexcept nogil:
    return (n + size - 1) // size


cdef void for_tiles(TileBody body, const LinearCall *c, Py_ssize_t n_tiles,
                    int n_threads) noexcept nogil:
    """body(c, tile, worker) for every tile, shared out among n_threads threads (worker:
    the thread's number, below n_threads)."""
    cdef Py_ssize_t tile
    if n_threads <= 1:
        for tile in range(n_tiles):
            body(c, tile, 0)
        return
    for tile in prange(n_tiles, schedule='dynamic', num_threads=n_threads):
        body(c, tile, threadid())


cdef inline Py_ssize_t tile_width(const LinearCall *c, Py_ssize_t tile) noexcept nogil:
    return min(<Py_ssize_t>CLASS_TILE, c.n_classes - tile * CLASS_TILE)


cdef void logits_tile(const floating *x, const floating *w, const floating *bias,
                      const LinearCall *c, Py_ssize_t tile, floating *out,
                      Py_ssize_t out_stride) noexcept nogil:
    """Classes [v0, v0 + CLASS_TILE) of L = X[chunk] Wᵀ + b (x: the chunk's rows), into
    the (rows, width) array at out whose rows are out_stride apart."""
    cdef Py_ssize_t v0 = tile * CLASS_TILE, i, j, width = tile_width(c, tile)
    cdef floating beta = 0
    if bias != NULL:                             # L = b, then L += X Wᵀ
        for i in range(c.rows):
            for j in range(width):
                out[i * out_stride + j] = bias[v0 + j]
        beta = 1
    # column-major: Lᵀ[v0:, chunk] (width x rows) = (Wᵀ[:, v0:])ᵀ (width x H) Xᵀ[:, chunk]
    gemm(c'T', c'N', width, c.rows, c.n_features, w + v0 * c.w_stride, c.w_stride,
         x, c.x_rows_stride, beta, out, out_stride)


cdef void partials_tile(const floating *x, const floating *w, const floating *bias,
                        const LinearCall *c, Py_ssize_t tile, int worker) noexcept nogil:
    """The block partials of classes [v0, v0 + CLASS_TILE) of the chunk's rows (x), from
    their logits in the worker's buffer."""
    cdef Py_ssize_t v0 = tile * CLASS_TILE, width = tile_width(c, tile)
    cdef floating *logits = <floating *>c.logits + worker * c.rows * CLASS_TILE
    cdef BlockCall b = c.block[0]
    logits_tile(x, w, bias, c, tile, logits, width)
    b.x = logits
    b.n = width
    b.x_stride = width
    b.col0 = v0
    if b.index != NULL:
        b.index += c.start
    if b.soft_target != NULL:
        b.soft_target = <const floating *>b.soft_target + c.start * b.soft_stride + v0
    if b.weight != NULL:
        b.weight += v0
    b.partials += (tile * c.n_rows + c.start) * PARTIAL_FIELDS
    block_rows(logits, &b, 0, c.rows, <floating *>c.scratch + worker * SCRATCH_ROWS * CLASS_TILE)


cdef void backward_tile(const floating *x_chunk, const floating *w, const floating *g,
                        const LinearCall *c, Py_ssize_t tile, floating *grad_x,
                        floating *grad_w) noexcept nogil:
    """Tile `tile` of the backward GEMMs: the first ones are features [h0, h0 +
    FEATURE_TILE) of dX[chunk] = G W, the others classes [v0, v0 + CLASS_TILE) of
    dW (+)= Gᵀ X[chunk] and db (+)= the column sums of G (x_chunk: the chunk's rows)."""
    cdef Py_ssize_t n_classes = c.n_classes, n_features = c.n_features, i, j
    cdef Py_ssize_t feature_tiles = tiles(n_features, FEATURE_TILE)
    cdef Py_ssize_t h0, v0, width
    cdef double *db
    if tile < feature_tiles:
        h0 = tile * FEATURE_TILE
        width = min(<Py_ssize_t>FEATURE_TILE, n_features - h0)
        # column-major: dXᵀ[h0:, chunk] (width x rows) = Wᵀ[h0:, :] (width x V) Gᵀ (V x rows)
        gemm(c'N', c'N', width, c.rows, n_classes, w + h0, c.w_stride, g, n_classes, 0,
             grad_x + c.start * n_features + h0, n_features)
        return
    v0 = (tile - feature_tiles) * CLASS_TILE
    width = min(<Py_ssize_t>CLASS_TILE, n_classes - v0)
    # column-major: dWᵀ[:, v0:] (H x width) (+)= X[chunk]ᵀ (H x rows) G[:, v0:] (rows x width)
    gemm(c'N', c'T', n_features, width, c.rows, x_chunk, c.x_rows_stride, g + v0, n_classes,
         0 if c.first else 1, grad_w + v0 * n_features, n_features)
    if c.grad_bias != NULL:
        db = c.grad_bias + v0
        if c.first:
            memset(db, 0, width * sizeof(double))
        for i in range(c.rows):                  # db_j += G_ij, rows in order
            for j in range(width):
                db[j] += g[i * n_classes + v0 + j]


cdef void logits_body(const LinearCall *c, Py_ssize_t tile, int worker) noexcept nogil:
    cdef Py_ssize_t v0 = tile * CLASS_TILE
    if c.single:
        logits_tile(<const float *>c.x_rows, <const float *>c.w, <const float *>c.bias, c,
                    tile, <float *>c.logits + v0, c.n_classes)
    else:
        logits_tile(<const double *>c.x_rows, <const double *>c.w, <const double *>c.bias, c,
                    tile, <double *>c.logits + v0, c.n_classes)


cdef void partials_body(const LinearCall *c, Py_ssize_t tile, int worker) noexcept nogil:
    if c.single:
        partials_tile(<const float *>c.x_rows, <const float *>c.w, <const float *>c.bias, c,
                      tile, worker)
    else:
        partials_tile(<const double *>c.x_rows, <const double *>c.w, <const double *>c.bias,
                      c, tile, worker)


cdef void backward_body(const LinearCall *c, Py_ssize_t tile, int worker) noexcept nogil:
    if c.single:
        backward_tile(<const float *>c.x_rows, <const float *>c.w, <const float *>c.logits, c,
                      tile, <float *>c.grad_x, <float *>c.grad_w)
    else:
        backward_tile(<const double *>c.x_rows, <const double *>c.w, <const double *>c.logits,
                      c, tile, <double *>c.grad_x, <double *>c.grad_w)


cdef void set_linear(LinearCall *linear, cnp.ndarray x, cnp.ndarray w, object bias,
                     cnp.ndarray buffer, HalfFormat x_format):
    """The fields of a LinearCall every call fills (no gradient, no partials)."""
    cdef Py_ssize_t n_rows = x.shape[0], n_classes = w.shape[0]
    memset(linear, 0, sizeof(LinearCall))
    linear.single = cnp.PyArray_TYPE(w) == cnp.NPY_FLOAT32
    linear.x = cnp.PyArray_DATA(x)
    linear.x_stride = x.strides[0] // x.itemsize if n_rows > 1 else x.shape[1]
    linear.x_rows_stride = linear.x_stride if x_format == NOT_HALF else x.shape[1]
    linear.w = cnp.PyArray_DATA(w)
    linear.w_stride = w.strides[0] // w.itemsize if n_classes > 1 else w.shape[1]
    linear.bias = data_or_null(bias)
    linear.n_classes = n_classes
    linear.n_features = x.shape[1]
    linear.logits = cnp.PyArray_DATA(buffer)
    linear.n_rows = n_rows


cdef void set_chunk(LinearCall *linear, Py_ssize_t start, Py_ssize_t rows, HalfFormat x_format,
                    Py_ssize_t x_itemsize, float *widened) noexcept nogil:
    """The chunk of rows [start, start + rows): x_rows points at them, or at their float32
    copy in `widened` for 16-bit x."""
    cdef Py_ssize_t r
    linear.start = start
    linear.rows = rows
    if x_format == NOT_HALF:
        linear.x_rows = <const char *>linear.x + start * linear.x_stride * x_itemsize
        return
    for r in range(rows):
        widen_row(x_format, <const uint16_t *>linear.x + (start + r) * linear.x_stride,
                  linear.n_features, widened + r * linear.n_features)
    linear.x_rows = widened


def linear_cross_entropy(object operands, object index, object soft_target, object options,
                         cnp.ndarray row_loss, cnp.ndarray buffer, object grad_x,
                         object grad_w, object grad_bias, int n_threads):
    """Loss (and gradients when their arrays are given) of logits x wᵀ + bias, by chunks.

    operands: x, w, bias as fastsce._linear.LinearOperands lays them out (each chunk of
    a float16/bfloat16 x widened into a float32 copy of its own);
    index / soft_target / options as in cross_entropy (soft_target (n_rows, V));
    row_loss float64 (n_rows,); buffer C-contiguous (chunk_rows, V) of w's dtype, the
    chunk; OUT arrays (None for the loss alone, else all three, grad_bias None without a
    bias): grad_x (n_rows, H) C-contiguous, grad_w (V, H) C-contiguous and grad_bias
    float64 (V,).  load_blas must have run and BLAS must run on one thread.  Targets are
    checked before anything is written: returns (first_bad_row, nan) or (-1, loss) as
    cross_entropy does.
    """
    cdef LossCall c
    cdef LinearCall linear
    cdef double denominator
    cdef cnp.ndarray x, w
    x, w, bias = operands
    cdef Py_ssize_t n_rows = x.shape[0], n_classes = w.shape[0]
    cdef Py_ssize_t chunk_rows = buffer.shape[0]
    cdef bint mean = options.reduction == "mean", want_grad = grad_x is not None
    cdef bint single = cnp.PyArray_TYPE(w) == cnp.NPY_FLOAT32
    cdef Py_ssize_t row_bytes = n_classes * w.itemsize
    cdef HalfFormat x_format = half_format(x)
    cdef Workspace x_chunk = Workspace(None, 0, None,                # the widened chunk
                                       chunk_rows * x.shape[1] * sizeof(float)
                                       if x_format != NOT_HALF else 0)
    cdef Py_ssize_t x_itemsize = x.itemsize
    cdef const cnp.int64_t *indices = <const cnp.int64_t *>data_or_null(index)
    cdef const char *probabilities = <const char *>data_or_null(soft_target)
    first_bad = check_targets(indices, probabilities, single, n_rows, n_classes, options,
                              &denominator)
    if first_bad >= 0:
        return first_bad, NAN
    cdef bint scratch_rows = options_need_scratch(options, soft_target is not None)
    cdef Workspace work = Workspace(row_loss, n_rows, None,
                                    scratch_elements(n_classes, n_threads) * w.itemsize
                                    if scratch_rows else 0)
    set_call(&c, buffer, NULL, NULL, options, grad_scale_of(mean, denominator), work,
             cnp.PyArray_DATA(buffer) if want_grad else NULL)
    set_linear(&linear, x, w, bias, buffer, x_format)
    linear.grad_x = data_or_null(grad_x)
    linear.grad_w = data_or_null(grad_w)
    linear.grad_bias = <double *>data_or_null(grad_bias)
    cdef Py_ssize_t class_tiles = tiles(n_classes, CLASS_TILE)
    cdef Py_ssize_t backward_tiles = class_tiles + tiles(linear.n_features, FEATURE_TILE)
    cdef Py_ssize_t start = 0
    with nogil:
        while start < n_rows:
            set_chunk(&linear, start, min(chunk_rows, n_rows - start), x_format, x_itemsize,
                      <float *>x_chunk.scratch)
            linear.first = start == 0
            for_tiles(logits_body, &linear, class_tiles, n_threads)
            c.n_rows = linear.rows
            c.index = NULL if indices == NULL else indices + start
            c.soft_target = NULL if probabilities == NULL else probabilities + start * row_bytes
            c.row_loss = work.row_loss + start
            for_row_ranges(loss_range, &c, linear.rows, n_threads)
            if want_grad:
                for_tiles(backward_body, &linear, backward_tiles, n_threads)
            start += linear.rows
    return -1, batch_loss(work.row_loss, n_rows, mean, denominator)


def linear_partials(object operands, object index, object soft_target, object options,
                    cnp.ndarray buffers, cnp.ndarray partials):
    """The block partials of every row and tile of CLASS_TILE classes of the logits
    x wᵀ + bias, in chunks of rows (the loss alone; fastsce._sharded merges them).

    operands, index, soft_target and options as in linear_cross_entropy; buffers
    C-contiguous (n_threads, chunk_rows, CLASS_TILE) of w's dtype, one per thread (as
    many threads as buffers); partials float64 (class tiles, n_rows, PARTIAL_FIELDS)
    C-contiguous.  Targets are checked before anything is written: returns
    (first_bad_row, nan) or (-1, the 'mean' denominator).
    """
    cdef LinearCall linear
    cdef BlockCall block
    cdef double denominator
    cdef cnp.ndarray x, w
    x, w, bias = operands
    cdef Py_ssize_t n_rows = x.shape[0], n_classes = w.shape[0]
    cdef Py_ssize_t chunk_rows = buffers.shape[1]
    cdef int n_threads = <int>buffers.shape[0]
    cdef bint single = cnp.PyArray_TYPE(w) == cnp.NPY_FLOAT32
    cdef HalfFormat x_format = half_format(x)
    cdef Py_ssize_t x_itemsize = x.itemsize
    first_bad = check_targets(<const cnp.int64_t *>data_or_null(index),
                              data_or_null(soft_target), single, n_rows, n_classes, options,
                              &denominator)
    if first_bad >= 0:
        return first_bad, NAN
    memset(&block, 0, sizeof(BlockCall))
    block.op = PARTIALS
    block.single = single
    block.n_classes = n_classes
    block.index = <const cnp.int64_t *>data_or_null(index)
    block.soft_target = data_or_null(soft_target)
    block.soft_stride = n_classes
    block.weight = <const double *>data_or_null(options.weight)
    block.ignore_index = options.ignore_index
    block.smoothing = options.smoothing
    block.softcap = options.softcap
    block.inv_temperature = options.inv_temperature
    block.partials = <double *>cnp.PyArray_DATA(partials)
    cdef Workspace x_chunk = Workspace(None, 0, None,                # the widened chunk
                                       chunk_rows * x.shape[1] * sizeof(float)
                                       if x_format != NOT_HALF else 0)
    cdef Workspace scratch = Workspace(None, 0, None,
                                       n_threads * SCRATCH_ROWS * CLASS_TILE * w.itemsize)
    set_linear(&linear, x, w, bias, buffers, x_format)
    linear.block = &block
    linear.scratch = scratch.scratch
    cdef Py_ssize_t class_tiles = tiles(n_classes, CLASS_TILE)
    cdef Py_ssize_t start = 0
    with nogil:
        while start < n_rows:
            set_chunk(&linear, start, min(chunk_rows, n_rows - start), x_format, x_itemsize,
                      <float *>x_chunk.scratch)
            for_tiles(partials_body, &linear, class_tiles, n_threads)
            start += linear.rows
    return -1, denominator


def reduced_loss(cnp.ndarray row_loss, bint mean, double denominator):
    """The float64 (n_rows,) C-contiguous per-row losses summed in row order (compensated),
    divided by denominator for 'mean': the batch loss as cross_entropy reduces it."""
    return batch_loss(<const double *>cnp.PyArray_DATA(row_loss), row_loss.shape[0], mean,
                      denominator)
