"""Fused linear + cross-entropy: the loss of logits X Wᵀ + b without holding the logits.

For a language-model head the logits are (tokens x vocabulary), far larger than X, W or
the gradients.  Here the rows go through the kernel (_kernels_linear.pxi) in chunks of
`chunk_rows(...)` rows: logits of one chunk by a BLAS GEMM into one reused buffer, the
cross-entropy rows of `cross_entropy` on it (the gradient written over it), then
dX[chunk] = G W, dW += Gᵀ X[chunk] and db += the column sums of G.  The extra memory is
that buffer, (chunk_rows, V), plus O(n_rows + V).

The loss alone never needs a row whole: with more than one tile of classes, each chunk's
logits go tile by tile into one small buffer per thread, whose block partials (as
fastsce.dask's, _kernels_blocks.pxi) are taken while it is in cache, and
`_sharded.combine` merges a row's tiles in order into its loss.  Its chunks are larger
(`tile_chunks`: TILE_BUFFERS buffers of (rows, CLASS_TILE) in the budget), so W is read
fewer times; its values are those of the rows' kernel up to rounding (the order of the
exp sums), not the same bits.

Validation is `cross_entropy`'s (LossOptions, checked_targets, reported_loss: the same
types, messages and order), with the logits' shape taken as input.shape[:-1] + (V,);
targets are checked by the kernel before anything is computed.  The chunk size depends
only on the shapes, the dtype and `memory_budget`, never on the thread count, and the
GEMMs are cut into fixed tiles, so results are the same bits for any thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _blas, _sharded
from . import _kernels as kernels
from ._config import threads_for
from ._keywords import keyword_arguments, keyword_signature
from ._loss import (
    LOSS_DEFAULTS,
    LOSS_NOTES,
    OPTION_PARAMETERS,
    LossKeywords,
    LossOptions,
    _positive_finite,
    checked_targets,
    own_indices,
    reported_loss,
)
from ._validation import (
    FLOAT32,
    FLOAT64,
    as_float_array,
    as_logits_array,
    check_inverse_temperature,
    float_dtype_for,
    is_16_bit_float,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

_Floats = npt.NDArray[np.floating[Any]]

#: the default budget: 1/12 of the logits' bytes (so that the chunk, BLAS's packing buffers
#: and the O(n_rows + V) rest stay under a tenth of the logits), and at least this many bytes
DEFAULT_BUDGET_FRACTION = 1 / 12
DEFAULT_BUDGET_MIN = 16 * 2**20
#: the loss alone: the budget holds this many buffers of (chunk rows, CLASS_TILE) logits,
#: one per thread (chunks of budget / (TILE_BUFFERS CLASS_TILE itemsize) rows)
TILE_BUFFERS = 4

LINEAR_PARAMETERS = (
    """
    input : array_like
        Shape (..., H), the features last.  The compute dtype is float32 when input and
        linear_weight are float32 (or float16, bfloat16: 16-bit input is converted one
        chunk of rows at a time, never whole), float64 otherwise.
    linear_weight : array_like
        Shape (V, H), as torch.nn.Linear's weight: logits = input linear_weightᵀ + bias.
    target : array_like
        Integer class indices of shape input.shape[:-1], or probabilities of shape
        input.shape[:-1] + (V,) (soft targets: a V-sized input of its own).
    linear_bias : array_like, optional
        Shape (V,)."""
    + OPTION_PARAMETERS
    + """
    memory_budget : float, optional
        Bytes for the one buffer of logits the call holds: chunks of
        memory_budget // (V itemsize) rows (at least one).  By default 1/12 of the whole
        logits' size, at least 16 MiB: with the rest, under a tenth of the logits."""
)

LINEAR_RAISES = """
    Raises
    ------
    TypeError
        Non-numeric input, linear_weight, linear_bias or target, a masked array, a float
        target not of the logits' shape, an option of the wrong type.
    ValueError
        0-d input, linear_weight not (V, H) with V >= 1, linear_bias not (V,), a target
        of the wrong shape or with a class index outside [0, V) that is not
        ignore_index, weight not (V,) or not finite, an option out of range,
        memory_budget not positive and finite."""


class LinearOperands(NamedTuple):
    """The linear layer's operands as the kernels take them (`_operands`): in the compute
    dtype, laid out as BLAS reads them (rows contiguous, a positive row stride of at least
    H: any, for one row)."""

    x: _Floats  # (n_rows, H); float16 / bfloat16 in a float32 call (widened by chunks)
    w: _Floats  # (V, H)
    bias: _Floats | None  # (V,) C-contiguous, or None


class LinearKeywords(LossKeywords, total=False):
    """The keywords of the fused head: the loss keywords, linear_bias and memory_budget."""

    linear_bias: npt.ArrayLike | None
    memory_budget: float | None


#: their defaults, in the order of the signatures
LINEAR_DEFAULTS: LinearKeywords = {"linear_bias": None, **LOSS_DEFAULTS, "memory_budget": None}


@keyword_signature(LinearKeywords, LINEAR_DEFAULTS)
def linear_cross_entropy(
    input: npt.ArrayLike,
    linear_weight: npt.ArrayLike,
    target: npt.ArrayLike,
    **keywords: Unpack[LinearKeywords],
) -> float | npt.NDArray[np.floating[Any]]:
    return _with_keywords(linear_cross_entropy, input, linear_weight, target, keywords, False)[0]


linear_cross_entropy.__doc__ = f"""Softmax cross-entropy of the logits
    input linear_weightᵀ + linear_bias against `target`, without holding the logits.

    Parameters
    ----------{LINEAR_PARAMETERS}

    Returns
    -------
    float or ndarray
        As `cross_entropy` of the logits: a Python float for "mean" and "sum"; for "none"
        an array of shape input.shape[:-1] in the compute dtype.
{LINEAR_RAISES}
{LOSS_NOTES}
    The logits are computed chunk by chunk (BLAS GEMMs) and never held whole; beyond
    1024 classes, by tiles of 1024 classes reduced to per-row partials, so the loss is
    that of `linear_cross_entropy_with_grad` up to rounding, not bit for bit.

    Examples
    --------
    >>> import numpy as np, fastsce
    >>> x = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> round(fastsce.linear_cross_entropy(x, w, [2, 0]), 4)
    0.436
    >>> round(fastsce.cross_entropy(x @ w.T, [2, 0]), 4)  # the same, with the logits
    0.436
    """


@keyword_signature(LinearKeywords, LINEAR_DEFAULTS)
def linear_cross_entropy_with_grad(
    input: npt.ArrayLike,
    linear_weight: npt.ArrayLike,
    target: npt.ArrayLike,
    **keywords: Unpack[LinearKeywords],
) -> tuple[
    float | npt.NDArray[np.floating[Any]],
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.floating[Any]] | None,
]:
    loss, grads = _with_keywords(
        linear_cross_entropy_with_grad, input, linear_weight, target, keywords, True
    )
    assert grads is not None  # asked for
    return (loss, *grads)


linear_cross_entropy_with_grad.__doc__ = f"""The loss of `linear_cross_entropy` and its gradients
    with respect to input, linear_weight and linear_bias, in one pass over the chunks.

    Parameters
    ----------{LINEAR_PARAMETERS}

    Returns
    -------
    loss : float or ndarray
        As `linear_cross_entropy`.
    grad_input : ndarray
        d(loss)/d(input): input's shape, the compute dtype.
    grad_linear_weight : ndarray
        d(loss)/d(linear_weight): (V, H), the compute dtype.
    grad_linear_bias : ndarray or None
        d(loss)/d(linear_bias): (V,), the compute dtype (summed in float64); None
        without a bias.

    The gradients are those of the reduced loss (for "none", of the sum of the per-row
    losses), as in `cross_entropy_with_grad`; ignored rows contribute exactly 0.
{LINEAR_RAISES}
{LOSS_NOTES}
    With G = d(loss)/d(logits) of each chunk: grad_input = G linear_weight,
    grad_linear_weight = sum over chunks of Gᵀ input, grad_linear_bias = the column sums
    of G, all with a fixed order of summation.

    Examples
    --------
    >>> import numpy as np, fastsce
    >>> x = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> b = np.zeros(3)
    >>> loss, gx, gw, gb = fastsce.linear_cross_entropy_with_grad(x, w, [2, 0], linear_bias=b)
    >>> round(loss, 4)
    0.436
    >>> gw.round(4)
    array([[-0.0479,  0.2758],
           [ 0.1574,  0.1746],
           [-0.1096, -0.4504]])
    >>> bool(np.allclose(gb.sum(), 0.0))  # the softmax rows sum to 1, the targets too
    True
    """


def _with_keywords(
    function: Callable[..., object],
    input: npt.ArrayLike,
    linear_weight: npt.ArrayLike,
    target: npt.ArrayLike,
    keywords: LinearKeywords,
    want_grad: bool,
) -> tuple[float | _Floats, tuple[_Floats, _Floats, _Floats | None] | None]:
    """_evaluate with the keywords a call of `function` was given (defaults for the rest)."""
    arguments: Mapping[str, Any] = keyword_arguments(function, keywords, LINEAR_DEFAULTS)
    options = tuple(arguments[name] for name in LOSS_DEFAULTS)
    bias, budget = arguments["linear_bias"], arguments["memory_budget"]
    return _evaluate(input, linear_weight, bias, target, options, budget, want_grad)


def _evaluate(
    input: npt.ArrayLike,
    linear_weight: npt.ArrayLike,
    linear_bias: npt.ArrayLike | None,
    target: npt.ArrayLike,
    option_arguments: tuple[Any, ...],
    memory_budget: float | None,
    want_grad: bool,
) -> tuple[float | _Floats, tuple[_Floats, _Floats, _Floats | None] | None]:
    """Validate everything, then one kernel call: (loss, (grad_input,
    grad_linear_weight, grad_linear_bias) or None)."""
    options = LossOptions(*option_arguments)
    operands = _operands(input, linear_weight, linear_bias)
    dtype = operands.w.dtype
    n_rows, n_features = operands.x.shape
    n_classes = operands.w.shape[0]
    leading = np.shape(input)[:-1]
    check_inverse_temperature(options.inv_temperature, dtype)
    target_array, index, soft_target = checked_targets(
        target, (*leading, n_classes), dtype, options
    )
    if index is not None:
        index = own_indices(index, target_array)
    logits_shape = (*leading, n_classes)
    if not want_grad and n_classes > kernels.LINEAR_CLASS_TILE:
        tiled = (target_array, index, soft_target)
        return _loss_by_tiles(operands, tiled, options, memory_budget, logits_shape), None
    rows = chunk_rows(memory_budget, n_rows, n_classes, dtype.itemsize)
    # a chunk's work, in elements of the row kernel (about 16 flops each): its logits,
    # plus the GEMMs' 6 H flops per logit; threads share out the tiles and rows
    work = rows * n_classes * (1 + 6 * n_features // 16)
    n_threads = threads_for(rows * n_classes, work)
    row_loss = np.empty(n_rows, FLOAT64)
    buffer = np.empty((rows, n_classes), dtype)
    grad_input: _Floats | None = None
    grad_weight: _Floats | None = None
    grad_bias: npt.NDArray[np.float64] | None = None
    if want_grad:
        # dW and db are set by the first chunk: zeros when there is none
        new = np.empty if n_rows else np.zeros
        grad_input = np.empty((n_rows, n_features), dtype)
        grad_weight = new(operands.w.shape, dtype)
        grad_bias = None if operands.bias is None else new(n_classes, FLOAT64)
    with _blas.one_thread():
        first_bad, loss = kernels.linear_cross_entropy(
            operands,
            index,
            soft_target,
            options,
            row_loss,
            buffer,
            grad_input,
            grad_weight,
            grad_bias,
            n_threads,
        )
    result = reported_loss(
        first_bad, loss, row_loss, target_array, soft_target, options, logits_shape, dtype
    )
    if grad_input is None or grad_weight is None:
        return result, None
    shaped_bias = None if grad_bias is None else grad_bias.astype(dtype, copy=False)
    return result, (grad_input.reshape(np.shape(input)), grad_weight, shaped_bias)


def _loss_by_tiles(
    operands: LinearOperands,
    targets: tuple[npt.NDArray[Any], npt.NDArray[np.int64] | None, _Floats | None],
    options: LossOptions,
    memory_budget: float | None,
    logits_shape: tuple[int, ...],
) -> float | _Floats:
    """The loss alone, from the block partials of every tile of classes of every row
    (targets: checked_targets's)."""
    target_array, index, soft_target = targets
    n_rows, n_features = operands.x.shape
    n_classes, dtype = operands.w.shape[0], operands.w.dtype
    tile = kernels.LINEAR_CLASS_TILE
    n_tiles = -(-n_classes // tile)
    rows, n_buffers = tile_chunks(memory_budget, n_rows, n_classes, dtype.itemsize)
    work = rows * n_classes * (1 + 6 * n_features // 16)  # as for the rows' chunks
    n_threads = min(threads_for(rows * n_classes, work), n_tiles, n_buffers)
    buffers = np.empty((n_threads, rows, tile), dtype)
    partials = np.empty((n_tiles, n_rows, _sharded.PARTIAL_FIELDS))
    with _blas.one_thread():
        first_bad, denominator = kernels.linear_partials(
            operands, index, soft_target, options, buffers, partials
        )
    row_loss, loss = None, math.nan
    if first_bad < 0:
        unit = 1.0 if options.softcap else options.inv_temperature
        merged = _sharded.combine(partials, 0, unit, n_classes)[0]
        hard = index is not None and (options.weight is None or options.smoothing == 0.0)
        state = _sharded.row_state(merged, index, options, hard)
        row_loss = np.ascontiguousarray(state[:, _sharded.S_LOSS])
        loss = kernels.reduced_loss(row_loss, options.reduction == "mean", denominator)
    return reported_loss(
        first_bad, loss, row_loss, target_array, soft_target, options, logits_shape, dtype
    )


def _budget_bytes(memory_budget: object, n_rows: int, row_bytes: int) -> float:
    """`memory_budget`, or the default: DEFAULT_BUDGET_FRACTION of all the logits, at
    least DEFAULT_BUDGET_MIN."""
    if memory_budget is None:
        return max(n_rows * row_bytes * DEFAULT_BUDGET_FRACTION, DEFAULT_BUDGET_MIN)
    return _positive_finite(memory_budget, "memory_budget")


def chunk_rows(memory_budget: object, n_rows: int, n_classes: int, itemsize: int) -> int:
    """Rows per chunk: as many as the budget's bytes of logits hold, at least 1 and at
    most n_rows."""
    row_bytes = n_classes * itemsize
    return max(1, min(n_rows, int(_budget_bytes(memory_budget, n_rows, row_bytes) // row_bytes)))


def tile_chunks(
    memory_budget: object, n_rows: int, n_classes: int, itemsize: int
) -> tuple[int, int]:
    """(rows per chunk, buffers) of the loss alone: chunks of equal size (the last one
    shorter by less than their number) of at most budget / (TILE_BUFFERS tile) rows, tile
    = CLASS_TILE itemsize bytes, and as many (rows, CLASS_TILE) buffers as the budget
    holds (at least 1).  Neither depends on the thread count."""
    budget = _budget_bytes(memory_budget, n_rows, n_classes * itemsize)
    tile_bytes = kernels.LINEAR_CLASS_TILE * itemsize
    most = max(1, min(n_rows, int(budget // (TILE_BUFFERS * tile_bytes))))
    rows = -(-n_rows // -(-n_rows // most)) if n_rows else 1
    return rows, max(1, int(budget // (rows * tile_bytes)))


def _operands(
    input: npt.ArrayLike, linear_weight: npt.ArrayLike, linear_bias: npt.ArrayLike | None
) -> LinearOperands:
    """The LinearOperands of a call: x as (n_rows, H) rows, w, bias (a copy only when
    needed); float16 / bfloat16 x of a float32 call stays as it is (the kernel widens one
    chunk of rows at a time)."""
    x = as_logits_array(input, "input")
    w = as_float_array(linear_weight, "linear_weight")
    if x.ndim == 0:
        raise ValueError("`input` must have a feature axis, got a 0-d array")
    n_features = x.shape[-1]
    if w.ndim != 2 or w.shape[1] != n_features:
        raise ValueError(
            f"`linear_weight` must have shape (V, {n_features}) for input of shape "
            f"{x.shape}, got {w.shape}"
        )
    n_classes = w.shape[0]
    if n_classes == 0:
        raise ValueError(f"`linear_weight` has zero classes (shape {w.shape})")
    single = float_dtype_for(x.dtype, "input") == FLOAT32 and w.dtype == FLOAT32
    dtype = FLOAT32 if single else FLOAT64
    bias: _Floats | None = None
    if linear_bias is not None:
        bias = as_float_array(linear_bias, "linear_bias", dtype)
        if bias.shape != (n_classes,):
            raise ValueError(f"`linear_bias` must have shape ({n_classes},), got {bias.shape}")
        bias = np.ascontiguousarray(bias)
    if not (single and is_16_bit_float(x.dtype)):  # 16-bit: widened a chunk at a time
        x = x.astype(dtype, copy=False)
    rows = x.reshape(math.prod(x.shape[:-1]), n_features)
    return LinearOperands(_blas_rows(rows), _blas_rows(w.astype(dtype, copy=False)), bias)


def _blas_rows(rows: npt.NDArray[Any]) -> _Floats:
    """`rows` as BLAS reads them, row by row: elements adjacent, rows a positive whole
    number of elements apart and no closer than a row's length, aligned; else a
    C-contiguous copy."""
    n_rows, length = rows.shape
    itemsize = rows.itemsize
    row_stride, column_stride = rows.strides
    readable = (
        rows.flags.aligned
        and (length <= 1 or column_stride == itemsize)
        and (
            n_rows <= 1 or (row_stride % itemsize == 0 and row_stride >= max(length, 1) * itemsize)
        )
    )
    return rows if readable else np.ascontiguousarray(rows)
