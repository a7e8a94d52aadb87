"""The tasks of fastsce.dask's graphs: NumPy blocks in, one kernel call, NumPy out.

Nothing here imports dask: these functions run on the workers.  Each block step is
one call of a compiled kernel on one thread (dask runs the tasks in parallel): whole
rows through ``rows_loss``; blocks of columns through ``block_partials``, then
``block_gradient`` or ``block_softmax`` from the row state that fastsce._sharded merges
from the partials.  The check of the targets runs here too: each block of targets
gives a record (its kept weight, its first bad value), and the records give the
"mean" denominator or the in-memory call's error for the first bad value in row order.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _kernels as kernels
from . import _sharded as sharded
from ._loss import INT64_MAX, LossOptions, bad_class_index_message
from ._validation import FLOAT64


class TaskOptions(NamedTuple):
    """The validated options a task reads (kernels, _sharded): small, so that they can
    travel with every task; the class weights travel as a dask array instead."""

    ignore_index: int
    smoothing: float
    softcap: float
    inv_temperature: float
    z_loss: float
    weight: npt.NDArray[np.float64] | None = None


def task_options(options: LossOptions) -> TaskOptions:
    return TaskOptions(
        options.ignore_index,
        options.smoothing,
        options.softcap,
        options.inv_temperature,
        options.z_loss,
    )


# --------------------------------------------------------------------------- the check


#: (flat position in the whole target, value) of a block's first bad value, or None
Found = tuple[int, Any] | None


class Record(NamedTuple):
    """What the check of one block of targets found."""

    kept: float  # the summed weights of its kept rows
    beyond: Found  # a class index beyond int64 (reported first, as in memory)
    bad: Found  # a class index out of range, or a probability that is not finite


def first(
    flags: npt.NDArray[np.bool_],
    block: npt.NDArray[Any],
    start: tuple[int, ...],
    shape: tuple[int, ...],
) -> Found:
    where = np.flatnonzero(flags)
    if where.size == 0:
        return None
    local = np.unravel_index(where[0], block.shape)
    position = np.ravel_multi_index(tuple(s + i for s, i in zip(start, local)), shape)
    return int(position), block.reshape(-1)[where[0]]


def check_indices(
    block: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    start: tuple[int, ...],
    shape: tuple[int, ...],
    ignore_index: int,
    n_classes: int,
) -> Record:
    flat = block.reshape(-1)
    beyond = flat > INT64_MAX if flat.dtype.kind == "u" else np.zeros(flat.shape, bool)
    values = np.where(beyond, -1, flat).astype(np.int64)
    kept = values != ignore_index
    bad = kept & ~beyond & ((values < 0) | (values >= n_classes))
    valid = values[kept & ~bad & ~beyond]
    return Record(
        float(valid.size) if weight is None else math.fsum(weight[valid]),
        first(beyond, block, start, shape),
        first(bad, block, start, shape),
    )


def check_probabilities(
    block: npt.NDArray[Any], start: tuple[int, ...], shape: tuple[int, ...]
) -> Record:
    return Record(0.0, None, first(~np.isfinite(block), block, start, shape))


def check_block(
    block: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    start: tuple[int, ...],
    soft: bool,
    shape: tuple[int, ...],
    ignore_index: int,
    n_classes: int,
) -> npt.NDArray[np.object_]:
    """The block's Record, in an object array of one element per axis."""
    records = np.empty((1,) * block.ndim, object)
    records[(0,) * block.ndim] = (
        check_probabilities(block, start, shape)
        if soft
        else check_indices(block, weight, start, shape, ignore_index, n_classes)
    )
    return records


def merged_record(records: npt.NDArray[np.object_]) -> Record:
    """The Record of several blocks: kept weights summed, the first bad values kept."""
    listed = list(records.reshape(-1))

    def earliest(found: list[Found]) -> Found:
        return min((item for item in found if item is not None), default=None, key=_position)

    return Record(
        math.fsum(record.kept for record in listed),
        earliest([record.beyond for record in listed]),
        earliest([record.bad for record in listed]),
    )


def _position(item: tuple[int, Any]) -> int:
    return item[0]


def combine_records(
    records: npt.NDArray[np.object_], axis: Any, keepdims: bool
) -> npt.NDArray[np.object_]:
    """dask's tree step over the records (an object array, one element per axis)."""
    del axis, keepdims
    combined = np.empty((1,) * records.ndim, object)
    if records.size:  # else dask's metadata probe
        combined[(0,) * records.ndim] = merged_record(records)
    return combined


def denominator_of(
    records: npt.NDArray[np.object_],
    axis: Any,
    keepdims: bool,
    soft: bool,
    shape: tuple[int, ...],
    n_rows: int,
    n_classes: int,
    ignore_index: int,
) -> npt.NDArray[np.float64]:
    """The "mean" denominator from the blocks' records, or the in-memory call's error for
    the first bad value in row order (an index beyond int64 first, as in memory)."""
    del axis, keepdims
    if records.size == 0:  # dask's metadata probe
        return np.asarray(np.nan, FLOAT64)
    record = merged_record(records)
    for found in (record.beyond, record.bad):
        if found is None:
            continue
        position, value = found
        if soft:
            raise ValueError(
                f"`target` probabilities must be finite; row {position // n_classes} of the "
                f"{n_rows} rows has {value}"
            )
        where = tuple(int(i) for i in np.unravel_index(position, shape))
        raise ValueError(bad_class_index_message(value, where, n_classes, ignore_index))
    return np.asarray(n_rows if soft else record.kept, FLOAT64)


# --------------------------------------------------------------------------- block tasks


def rows_of(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """(n_rows, n) with contiguous rows (a copy only when they are not)."""
    rows = block.reshape(-1, block.shape[-1])
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows


def target_rows(target: npt.NDArray[Any] | None, soft: bool) -> tuple[Any, Any]:
    """(int64 class indices, None) or (None, C-contiguous probability rows) of a block."""
    if target is None:
        return None, None
    if soft:
        return None, np.ascontiguousarray(target.reshape(-1, target.shape[-1]))
    return np.ascontiguousarray(target.reshape(-1), dtype=np.int64), None


def rows_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    denominator: npt.NDArray[np.float64],
    options: TaskOptions,
    want_grad: bool,
    mean: bool,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any] | None]:
    """Whole rows: (per-row float64 losses, gradient or None), one kernel call."""
    rows = rows_of(x)
    index, soft_rows = target_rows(target, target.ndim == x.ndim)
    row_loss = np.empty(rows.shape[0], FLOAT64)
    grad = np.empty(rows.shape, x.dtype) if want_grad else None
    scale = float(inverse(denominator)) if mean else 1.0
    with_weight = options._replace(weight=weight)
    kernels.rows_loss(rows, index, soft_rows, with_weight, scale, row_loss, grad, 1)
    return row_loss.reshape(x.shape[:-1]), None if grad is None else grad.reshape(x.shape)


def column_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any] | None,
    soft: bool,
    weight: npt.NDArray[np.float64] | None,
    col0: int,
    n_classes: int,
) -> sharded.ColumnBlock:
    """A block of logits (columns col0 onwards of rows of n_classes) and its targets, as
    the block kernels read them."""
    index, soft_rows = target_rows(target, soft)
    return sharded.ColumnBlock(rows_of(x), index, soft_rows, weight, col0, n_classes)


def item(pair: tuple[Any, ...], which: int) -> Any:
    return pair[which]


def field(state: npt.NDArray[np.float64], field: int, dtype: np.dtype[Any]) -> Any:
    return state[..., field].astype(dtype)


def partials_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any] | None,
    weight: npt.NDArray[np.float64] | None,
    col0: int,
    *checked: npt.NDArray[np.float64],
    options: TaskOptions,
    soft: bool,
    n_classes: int,
) -> npt.NDArray[np.float64]:
    """(*lead, 1, PARTIAL_FIELDS): the block's partials, one kernel call (`checked`: the
    denominator, a dependency that orders the target check first)."""
    del checked
    block = column_block(x, target, soft, weight, col0, n_classes)
    partials = np.empty((block.x.shape[0], sharded.PARTIAL_FIELDS))
    kernels.block_partials(block, options, partials, 1)
    return partials.reshape(x.shape[:-1] + (1, sharded.PARTIAL_FIELDS))


def identity(partials: npt.NDArray[np.float64], axis: Any, keepdims: bool) -> Any:
    del axis, keepdims
    return partials


def combine_blocks(
    partials: npt.NDArray[np.float64], axis: Any, keepdims: bool, unit: float, n_classes: int
) -> npt.NDArray[np.float64]:
    del keepdims
    if partials.shape[axis[0]] == 0:  # dask's metadata probe
        return partials
    return sharded.combine(partials, axis[0], unit, n_classes)


def state_block(
    merged: npt.NDArray[np.float64],
    index: npt.NDArray[Any] | None,
    options: TaskOptions,
    hard: bool,
) -> npt.NDArray[np.float64]:
    return sharded.row_state(merged, index, options, hard)


def gradient_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    col0: int,
    state: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    options: TaskOptions,
    n_classes: int,
) -> npt.NDArray[Any]:
    """The block's gradient from its logits and the row state, one kernel call."""
    block = column_block(x, target, target.ndim == x.ndim, weight, col0, n_classes)
    grad = np.empty(block.x.shape, x.dtype)
    kernels.block_gradient(
        block,
        options,
        float(scale),
        np.ascontiguousarray(state.reshape(-1, sharded.STATE_FIELDS)),
        grad,
        1,
    )
    return grad.reshape(x.shape)


def inverse(denominator: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1 / denominator, NaN for 0 (the gradient of a "mean" over nothing kept)."""
    return np.asarray(1.0 / denominator if denominator != 0 else np.nan, FLOAT64)


def batch_loss(
    total: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64], mean: bool
) -> npt.NDArray[np.float64]:
    """The sum, or the mean (NaN over nothing kept)."""
    if not mean:
        return total
    return np.asarray(total / denominator if denominator != 0 else np.nan, FLOAT64)


def lse_block(x: npt.NDArray[Any], inv_temperature: float) -> npt.NDArray[Any]:
    rows = rows_of(x)
    lse = np.empty(rows.shape[0], x.dtype)
    kernels.logsumexp(rows, inv_temperature, lse, 1)
    return lse.reshape(x.shape[:-1])


def softmax_rows(x: npt.NDArray[Any], inv_temperature: float, log: bool) -> npt.NDArray[Any]:
    rows = rows_of(x)
    out = np.empty(rows.shape, x.dtype)
    (kernels.log_softmax if log else kernels.softmax)(rows, inv_temperature, out, 1)
    return out.reshape(x.shape)


def softmax_block(
    x: npt.NDArray[Any], state: npt.NDArray[np.float64], inv_temperature: float, log: bool
) -> npt.NDArray[Any]:
    rows = rows_of(x)
    out = np.empty(rows.shape, x.dtype)
    kernels.block_softmax(
        rows,
        inv_temperature,
        log,
        np.ascontiguousarray(state.reshape(-1, sharded.STATE_FIELDS)),
        out,
        1,
    )
    return out.reshape(x.shape)
