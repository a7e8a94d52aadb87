"""fastsce on Dask arrays: exact cross-entropy and softmax, sharded over rows and classes.

``pip install "fastsce[dask]"``.  Every function takes dask arrays (NumPy inputs are
wrapped) and returns dask arrays: nothing runs until they are computed, by whatever
scheduler is active (the threaded one by default, a ``dask.distributed`` cluster when a
Client exists).  Each task runs one kernel call on one thread; dask runs the tasks in
parallel.

Design.  With the class axis in one chunk, each block of rows is one call of the fused
kernel (``rows_loss``: per-row losses in float64 and the gradient, scaled by the batch's
"mean" denominator).  With the class axis in several chunks (a vocabulary too large for a
row to sit in one task), a row is never gathered: each block gives its partials in one
kernel call (``block_partials``: the block's max, its exps split as the max's own 1 and
the sum of the others, the target's logit when it falls in the block, the sums the
options need), the partials of a row are merged by a tree reduction of fixed shape
(``_sharded.combine``, SPLIT_EVERY blocks at a time) into the row state and loss
(``_sharded.row_state``), and each gradient (or softmax) block is one kernel call on its
own logits and the row state.  The per-row losses are summed by dask's tree reduction and
divided by the denominator, computed from the targets alone.  For a given chunking the
task graph and every sum's order are fixed, so results are the same bits on every run.

Errors are those of the in-memory functions: what the metadata tells (dtypes, shapes,
options) is raised when the graph is built; what the values tell (a class index out of
range, a probability that is not finite) when it is computed, by a check of the targets
that every output depends on, with the message of the in-memory call (the first bad
position in row order).  Targets whose rows are chunked unlike the logits' are rechunked.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal, NamedTuple, SupportsIndex

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.layers import ArrayValuesDep

from . import _kernels as kernels
from . import _sharded as sharded
from ._loss import (
    INT64_MAX,
    LOSS_PARAMETERS,
    LossOptions,
    _is_soft,
    bad_class_index_message,
    check_index_shape,
)
from ._softmax import _normalize_axis
from ._validation import (
    FLOAT64,
    as_array,
    check_class_axis,
    check_inverse_temperature,
    float_dtype_for,
    masked_array_message,
)

__all__ = ["cross_entropy", "cross_entropy_with_grad", "log_softmax", "logsumexp", "softmax"]

#: blocks of a row merged per task of the tree reduction over the class axis
SPLIT_EVERY = 8
#: the letters of blockwise's index strings: leading axes, then the class axis "z" and
#: the field axis "k" (partials and row states)
_AXES = "abcdefghijklmnopqrstuvwxy"


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
) -> da.Array:
    options = LossOptions(
        weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss
    )
    return _Problem(logits, target, options).loss(want_grad=False)[0]


def cross_entropy_with_grad(
    logits: Any,
    target: Any,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
) -> tuple[da.Array, da.Array]:
    options = LossOptions(
        weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss
    )
    loss, grad = _Problem(logits, target, options).loss(want_grad=True)
    assert grad is not None  # asked for
    return loss, grad


_DASK_NOTES = """
    Notes
    -----
    The values of fastsce.{name} (to the order of the sums: float64 within a few ULP),
    computed where the chunks are: chunks of rows and chunks of classes alike, a row never
    gathered into one task.  For a given chunking, the same bits on every run.  A target
    whose rows are chunked unlike the logits is rechunked; soft targets are rechunked
    like the logits."""

cross_entropy.__doc__ = f"""Softmax cross-entropy of dask `logits` against `target`, lazily.

    Parameters
    ----------{LOSS_PARAMETERS.split("    lse_out")[0].rstrip()}

    Returns
    -------
    dask.array.Array
        0-d float64 for "mean" and "sum"; for "none" the per-row losses, of shape
        logits.shape[:-1] in the compute dtype, chunked as the logits' rows.

    Raises
    ------
    TypeError, ValueError
        As fastsce.cross_entropy: at once for dtypes, shapes and options; when computed
        for a class index out of range or a probability that is not finite.
{_DASK_NOTES.format(name="cross_entropy")}
    """

cross_entropy_with_grad.__doc__ = f"""The loss and its gradient for dask `logits`, lazily.

    Parameters
    ----------{LOSS_PARAMETERS.split("    lse_out")[0].rstrip()}

    Returns
    -------
    loss : dask.array.Array
        As `cross_entropy`.
    grad : dask.array.Array
        d(loss)/d(logits), of logits' shape, chunks and compute dtype (for "none", of the
        sum of the per-row losses).

    Raises
    ------
    TypeError, ValueError
        As `cross_entropy`.
{_DASK_NOTES.format(name="cross_entropy_with_grad")}
    """


def logsumexp(
    x: Any, axis: SupportsIndex = -1, *, keepdims: bool = False, temperature: float = 1.0
) -> da.Array:
    """log(sum(exp(x / T))) along `axis` of a dask array, lazily (fastsce.logsumexp).

    Returns a dask array of x's shape without `axis` (length 1 there with keepdims), in
    the compute dtype; the axis may be chunked.
    """
    array, axis, inv_temperature = _along_axis_input(x, axis, temperature)
    moved = da.moveaxis(array, axis, -1)
    lead = moved.ndim - 1
    if moved.numblocks[-1] == 1:
        lse = moved.map_blocks(
            _lse_block, inv_temperature=inv_temperature, drop_axis=lead, dtype=array.dtype
        )
    else:
        state = _softmax_state(moved, inv_temperature)
        lse = state.map_blocks(
            _field, sharded.S_LSE, array.dtype, drop_axis=lead, dtype=array.dtype
        )
    return da.expand_dims(lse, axis) if keepdims else lse


def softmax(x: Any, axis: SupportsIndex = -1, *, temperature: float = 1.0) -> da.Array:
    """Softmax of x / T along `axis` of a dask array, lazily (fastsce.softmax); the axis
    may be chunked."""
    return _softmax_family(x, axis, temperature, log=False)


def log_softmax(x: Any, axis: SupportsIndex = -1, *, temperature: float = 1.0) -> da.Array:
    """log(softmax(x / T)) along `axis` of a dask array, lazily (fastsce.log_softmax); the
    axis may be chunked."""
    return _softmax_family(x, axis, temperature, log=True)


# --------------------------------------------------------------------------- inputs


def _as_dask_float(value: Any, name: str, dtype: np.dtype[Any] | None = None) -> da.Array:
    """`value` as a dask array of its compute dtype (or `dtype`): the in-memory rules."""
    if isinstance(value, da.Array):
        if isinstance(value._meta, np.ma.MaskedArray):
            raise TypeError(masked_array_message(name))
        wanted = float_dtype_for(value.dtype, name) if dtype is None else dtype
        return value if value.dtype == wanted else value.astype(wanted)
    array = as_array(value, name)
    wanted = float_dtype_for(array.dtype, name) if dtype is None else dtype
    array = array.astype(wanted, copy=False)
    if array.ndim == 0 or array.size == 0:
        return da.from_array(array, chunks=array.shape)
    return da.from_array(array, chunks=("auto",) * (array.ndim - 1) + (-1,))


def _along_axis_input(
    x: Any, axis: SupportsIndex, temperature: float
) -> tuple[da.Array, int, float]:
    """The checks of fastsce.softmax & co, in their order."""
    array = _as_dask_float(x, "x")
    options = LossOptions(None, -100, "mean", 0.0, temperature, None, 0.0)
    check_inverse_temperature(options.inv_temperature, array.dtype)
    check_class_axis(array.shape, "x")
    return array, _normalize_axis(axis, array.ndim), options.inv_temperature


class _TaskOptions(NamedTuple):
    """The validated options a task reads (kernels, _sharded): small, so that they can
    travel with every task; the class weights travel as a dask array instead."""

    ignore_index: int
    smoothing: float
    softcap: float
    inv_temperature: float
    z_loss: float
    weight: npt.NDArray[np.float64] | None = None


def _task_options(options: LossOptions) -> _TaskOptions:
    return _TaskOptions(
        options.ignore_index,
        options.smoothing,
        options.softcap,
        options.inv_temperature,
        options.z_loss,
    )


class _Problem:
    """Validated dask inputs of a loss call and the graph built from them."""

    def __init__(self, logits: Any, target: Any, options: LossOptions) -> None:
        x = _as_dask_float(logits, "logits")
        n_classes = check_class_axis(x.shape, "logits")
        check_inverse_temperature(options.inv_temperature, x.dtype)
        if options.weight is not None and options.weight.shape != (n_classes,):
            raise ValueError(f"`weight` must have shape ({n_classes},), got {options.weight.shape}")
        if not isinstance(target, da.Array):
            target = as_array(target, "target")
        elif target.dtype.kind == "O":
            target = target.compute()  # object targets always raise: the values say how
        self.soft = _is_soft(target, x.shape)
        lead = x.ndim - 1
        if self.soft:
            target = _as_dask_float(target, "target", x.dtype).rechunk(x.chunks)
        else:
            check_index_shape(target.shape, x.shape)
            if not isinstance(target, da.Array):
                target = da.from_array(target, chunks=x.chunks[:lead])
            target = target.rechunk(x.chunks[:lead])
        self.x, self.target, self.options, self.n_classes = x, target, options, n_classes
        self.task_options = _task_options(options)
        #: the class weights, one dask chunk per class chunk of the logits (or None)
        self.weight = (
            None
            if options.weight is None
            else da.from_array(options.weight, chunks=(x.chunks[-1],))
        )
        self.lead = _AXES[:lead]
        #: class indices in closed form (kernels: is_hard)
        self.hard = not self.soft and (options.weight is None or options.smoothing == 0.0)
        self.denominator = _checked_denominator(target, self.soft, options, n_classes)

    def loss(self, want_grad: bool) -> tuple[da.Array, da.Array | None]:
        """(loss, gradient or None) as dask arrays."""
        x, lead = self.x, self.lead
        target_index = lead + "z" if self.soft else lead
        mean = self.options.reduction == "mean"
        grad: da.Array | None = None
        if x.numblocks[-1] == 1:
            rows = da.blockwise(
                partial(_rows_block, options=self.task_options, want_grad=want_grad, mean=mean),
                lead,
                x,
                lead + "z",
                self.target,
                target_index,
                self.weight,
                None if self.weight is None else "z",
                self.denominator,
                "",
                concatenate=True,
                dtype=object,
                meta=np.empty((0,) * len(lead), object),
            )
            row_loss = rows.map_blocks(_item, 0, dtype=FLOAT64)
            if want_grad:
                grad = rows.map_blocks(_item, 1, new_axis=len(lead), chunks=x.chunks, dtype=x.dtype)
        else:
            state = self._state()
            row_loss = state.map_blocks(
                _field, sharded.S_LOSS, FLOAT64, drop_axis=len(lead), dtype=FLOAT64
            )
            if want_grad:
                grad = self._gradient(state, mean)
        if self.options.reduction == "none":
            return row_loss.astype(x.dtype), grad
        total = row_loss.sum(split_every=SPLIT_EVERY)
        loss = da.blockwise(
            partial(_batch_loss, mean=mean), "", total, "", self.denominator, "", dtype=FLOAT64
        )
        return loss, grad

    def _column_args(self) -> list[Any]:
        """blockwise arguments of a class-sharded step: logits, target, the class weights
        and the first column of each block."""
        lead, x = self.lead, self.x
        return [
            x,
            lead + "z",
            self.target,
            lead + "z" if self.soft else lead,
            self.weight,
            None if self.weight is None else "z",
            _column_starts(x),
            "z",
        ]

    def _state(self) -> da.Array:
        """The row state (*lead, STATE_FIELDS), from the partials merged by a tree."""
        lead = self.lead
        partials = da.blockwise(
            partial(
                _partials_block,
                options=self.task_options,
                soft=self.soft,
                n_classes=self.n_classes,
            ),
            lead + "zk",
            *self._column_args(),
            self.denominator,
            "",
            new_axes={"k": sharded.PARTIAL_FIELDS},
            adjust_chunks={"z": 1},
            align_arrays=False,
            dtype=FLOAT64,
        )
        merged = _merged(partials, self._unit(), self.n_classes)
        index = None if self.soft else self.target
        return da.blockwise(
            partial(_state_block, options=self.task_options, hard=self.hard),
            lead + "k",
            merged,
            lead + "k",
            index,
            None if index is None else lead,
            adjust_chunks={"k": sharded.STATE_FIELDS},
            dtype=FLOAT64,
        )

    def _unit(self) -> float:
        return 1.0 if self.options.softcap else self.options.inv_temperature

    def _gradient(self, state: da.Array, mean: bool) -> da.Array:
        scale = (
            da.blockwise(_inverse, "", self.denominator, "", dtype=FLOAT64)
            if mean
            else da.from_array(np.asarray(1.0))
        )
        return da.blockwise(
            partial(_gradient_block, options=self.task_options, n_classes=self.n_classes),
            self.lead + "z",
            *self._column_args(),
            state,
            self.lead + "k",
            scale,
            "",
            concatenate=True,
            align_arrays=False,
            dtype=self.x.dtype,
        )


def _column_starts(x: da.Array) -> ArrayValuesDep:
    """The first column of each block of x's class axis, handed to the tasks by dask's
    graph itself (no task, no array: a block's offset is known when the graph is built)."""
    starts = np.cumsum((0,) + x.chunks[-1][:-1])
    return ArrayValuesDep((x.chunks[-1],), {(j,): int(start) for j, start in enumerate(starts)})


def _merged(partials: da.Array, unit: float, n_classes: int) -> da.Array:
    """(*lead, 1, PARTIAL_FIELDS): the partials' class-block axis reduced by a fixed tree."""
    axis = partials.ndim - 2
    merge = partial(_combine_blocks, unit=unit, n_classes=n_classes)
    return da.reduction(
        partials,
        _identity,
        merge,
        combine=merge,
        axis=axis,
        keepdims=True,
        dtype=FLOAT64,
        split_every={axis: SPLIT_EVERY},
        concatenate=True,
    )[..., 0, :]


def _softmax_state(moved: da.Array, inv_temperature: float) -> da.Array:
    """The row state of a softmax-family call on x chunked along its last axis."""
    lead = _AXES[: moved.ndim - 1]
    options = _TaskOptions(-100, 0.0, 0.0, inv_temperature, 0.0)
    partials = da.blockwise(
        partial(_partials_block, options=options, soft=False, n_classes=moved.shape[-1]),
        lead + "zk",
        moved,
        lead + "z",
        None,
        None,
        None,
        None,
        _column_starts(moved),
        "z",
        new_axes={"k": sharded.PARTIAL_FIELDS},
        adjust_chunks={"z": 1},
        align_arrays=False,
        dtype=FLOAT64,
    )
    merged = _merged(partials, inv_temperature, moved.shape[-1])
    return merged.map_blocks(
        sharded.row_state,
        None,
        options,
        False,
        chunks=merged.chunks[:-1] + ((sharded.STATE_FIELDS,),),
        dtype=FLOAT64,
    )


def _softmax_family(x: Any, axis: SupportsIndex, temperature: float, log: bool) -> da.Array:
    array, axis, inv_temperature = _along_axis_input(x, axis, temperature)
    moved = da.moveaxis(array, axis, -1)
    if moved.numblocks[-1] == 1:
        result = moved.map_blocks(
            _softmax_rows, inv_temperature=inv_temperature, log=log, dtype=array.dtype
        )
    else:
        lead = _AXES[: moved.ndim - 1]
        state = _softmax_state(moved, inv_temperature)
        result = da.blockwise(
            partial(_softmax_block, inv_temperature=inv_temperature, log=log),
            lead + "z",
            moved,
            lead + "z",
            state,
            lead + "k",
            concatenate=True,
            dtype=array.dtype,
        )
    return da.moveaxis(result, -1, axis)


# --------------------------------------------------------------------------- the check


def _checked_denominator(
    target: da.Array, soft: bool, options: LossOptions, n_classes: int
) -> da.Array:
    """0-d: the "mean" denominator (summed weights of the kept rows, or the row count),
    raising the in-memory call's error when computed if a target value is invalid."""
    blocks = target.to_delayed().ravel()
    offsets = [np.cumsum((0,) + chunks[:-1]) for chunks in target.chunks]
    starts = [
        tuple(int(offsets[axis][i]) for axis, i in enumerate(position))
        for position in np.ndindex(*target.numblocks)
    ]
    weight = None if soft or options.weight is None else dask.delayed(options.weight)
    check = _check_probabilities if soft else _check_indices
    records = [
        dask.delayed(check, pure=True)(
            block, weight, start, target.shape, options.ignore_index, n_classes
        )
        for block, start in zip(blocks, starts)
    ]
    n_rows = math.prod(target.shape[:-1]) if soft else math.prod(target.shape)
    aggregate = partial(
        _denominator_of,
        soft=soft,
        shape=target.shape,
        n_rows=n_rows,
        n_classes=n_classes,
        ignore_index=options.ignore_index,
    )
    return da.from_delayed(dask.delayed(aggregate)(records), shape=(), dtype=FLOAT64)


#: (flat position in the whole target, value) of a block's first bad value, or None
_Found = tuple[int, Any] | None


class _Record(NamedTuple):
    """What the check of one block of targets found."""

    kept: float  # the summed weights of its kept rows
    beyond: _Found  # a class index beyond int64 (reported first, as in memory)
    bad: _Found  # a class index out of range, or a probability that is not finite


def _first(
    flags: npt.NDArray[np.bool_],
    block: npt.NDArray[Any],
    start: tuple[int, ...],
    shape: tuple[int, ...],
) -> _Found:
    where = np.flatnonzero(flags)
    if where.size == 0:
        return None
    local = np.unravel_index(where[0], block.shape)
    position = np.ravel_multi_index(tuple(s + i for s, i in zip(start, local)), shape)
    return int(position), block.reshape(-1)[where[0]]


def _check_indices(
    block: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    start: tuple[int, ...],
    shape: tuple[int, ...],
    ignore_index: int,
    n_classes: int,
) -> _Record:
    flat = block.reshape(-1)
    beyond = flat > INT64_MAX if flat.dtype.kind == "u" else np.zeros(flat.shape, bool)
    values = np.where(beyond, -1, flat).astype(np.int64)
    kept = values != ignore_index
    bad = kept & ~beyond & ((values < 0) | (values >= n_classes))
    valid = values[kept & ~bad & ~beyond]
    return _Record(
        float(valid.size) if weight is None else math.fsum(weight[valid]),
        _first(beyond, block, start, shape),
        _first(bad, block, start, shape),
    )


def _check_probabilities(
    block: npt.NDArray[Any],
    weight: None,
    start: tuple[int, ...],
    shape: tuple[int, ...],
    ignore_index: int,
    n_classes: int,
) -> _Record:
    del weight, ignore_index, n_classes
    return _Record(0.0, None, _first(~np.isfinite(block), block, start, shape))


def _denominator_of(
    records: list[_Record],
    soft: bool,
    shape: tuple[int, ...],
    n_rows: int,
    n_classes: int,
    ignore_index: int,
) -> npt.NDArray[np.float64]:
    """The denominator from the blocks' records, or the in-memory call's error for the
    first bad value in row order."""
    for found in ([r.beyond for r in records], [r.bad for r in records]):
        firsts = [item for item in found if item is not None]
        if not firsts:
            continue
        position, value = min(firsts, key=lambda item: item[0])
        if soft:
            raise ValueError(
                f"`target` probabilities must be finite; row {position // n_classes} of the "
                f"{n_rows} rows has {value}"
            )
        where = tuple(int(i) for i in np.unravel_index(position, shape))
        raise ValueError(bad_class_index_message(value, where, n_classes, ignore_index))
    total = n_rows if soft else math.fsum(record.kept for record in records)
    return np.asarray(total, FLOAT64)


# --------------------------------------------------------------------------- block tasks


def _rows_of(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """(n_rows, n) with contiguous rows (a copy only when they are not)."""
    rows = block.reshape(-1, block.shape[-1])
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows


def _target_rows(target: npt.NDArray[Any] | None, soft: bool) -> tuple[Any, Any]:
    """(int64 class indices, None) or (None, C-contiguous probability rows) of a block."""
    if target is None:
        return None, None
    if soft:
        return None, np.ascontiguousarray(target.reshape(-1, target.shape[-1]))
    return np.ascontiguousarray(target.reshape(-1), dtype=np.int64), None


def _rows_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    denominator: npt.NDArray[np.float64],
    options: _TaskOptions,
    want_grad: bool,
    mean: bool,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any] | None]:
    """Whole rows: (per-row float64 losses, gradient or None), one kernel call."""
    rows = _rows_of(x)
    index, soft_rows = _target_rows(target, target.ndim == x.ndim)
    row_loss = np.empty(rows.shape[0], FLOAT64)
    grad = np.empty(rows.shape, x.dtype) if want_grad else None
    scale = float(_inverse(denominator)) if mean else 1.0
    with_weight = options._replace(weight=weight)
    kernels.rows_loss(rows, index, soft_rows, with_weight, scale, row_loss, grad, 1)
    return row_loss.reshape(x.shape[:-1]), None if grad is None else grad.reshape(x.shape)


def _item(pair: tuple[Any, ...], which: int) -> Any:
    return pair[which]


def _field(state: npt.NDArray[np.float64], field: int, dtype: np.dtype[Any]) -> Any:
    return state[..., field].astype(dtype)


def _partials_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any] | None,
    weight: npt.NDArray[np.float64] | None,
    col0: int,
    *checked: npt.NDArray[np.float64],
    options: _TaskOptions,
    soft: bool,
    n_classes: int,
) -> npt.NDArray[np.float64]:
    """(*lead, 1, PARTIAL_FIELDS): the block's partials, one kernel call (`checked`: the
    denominator, a dependency that orders the target check first)."""
    del checked
    rows = _rows_of(x)
    index, soft_rows = _target_rows(target, soft)
    partials = np.empty((rows.shape[0], sharded.PARTIAL_FIELDS))
    kernels.block_partials(rows, index, soft_rows, weight, col0, n_classes, options, partials, 1)
    return partials.reshape(x.shape[:-1] + (1, sharded.PARTIAL_FIELDS))


def _identity(partials: npt.NDArray[np.float64], axis: Any, keepdims: bool) -> Any:
    del axis, keepdims
    return partials


def _combine_blocks(
    partials: npt.NDArray[np.float64], axis: Any, keepdims: bool, unit: float, n_classes: int
) -> npt.NDArray[np.float64]:
    del keepdims
    if partials.shape[axis[0]] == 0:  # dask's metadata probe
        return partials
    return sharded.combine(partials, axis[0], unit, n_classes)


def _state_block(
    merged: npt.NDArray[np.float64],
    index: npt.NDArray[Any] | None,
    options: _TaskOptions,
    hard: bool,
) -> npt.NDArray[np.float64]:
    return sharded.row_state(merged, index, options, hard)


def _gradient_block(
    x: npt.NDArray[Any],
    target: npt.NDArray[Any],
    weight: npt.NDArray[np.float64] | None,
    col0: int,
    state: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    options: _TaskOptions,
    n_classes: int,
) -> npt.NDArray[Any]:
    """The block's gradient from its logits and the row state, one kernel call."""
    rows = _rows_of(x)
    index, soft_rows = _target_rows(target, target.ndim == x.ndim)
    grad = np.empty(rows.shape, x.dtype)
    kernels.block_gradient(
        rows,
        index,
        soft_rows,
        weight,
        col0,
        n_classes,
        options,
        float(scale),
        np.ascontiguousarray(state.reshape(-1, sharded.STATE_FIELDS)),
        grad,
        1,
    )
    return grad.reshape(x.shape)


def _inverse(denominator: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1 / denominator, NaN for 0 (the gradient of a "mean" over nothing kept)."""
    return np.asarray(1.0 / denominator if denominator != 0 else np.nan, FLOAT64)


def _batch_loss(
    total: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64], mean: bool
) -> npt.NDArray[np.float64]:
    """The sum, or the mean (NaN over nothing kept)."""
    if not mean:
        return total
    return np.asarray(total / denominator if denominator != 0 else np.nan, FLOAT64)


def _lse_block(x: npt.NDArray[Any], inv_temperature: float) -> npt.NDArray[Any]:
    rows = _rows_of(x)
    lse = np.empty(rows.shape[0], x.dtype)
    kernels.logsumexp(rows, inv_temperature, lse, 1)
    return lse.reshape(x.shape[:-1])


def _softmax_rows(x: npt.NDArray[Any], inv_temperature: float, log: bool) -> npt.NDArray[Any]:
    rows = _rows_of(x)
    out = np.empty(rows.shape, x.dtype)
    (kernels.log_softmax if log else kernels.softmax)(rows, inv_temperature, out, 1)
    return out.reshape(x.shape)


def _softmax_block(
    x: npt.NDArray[Any], state: npt.NDArray[np.float64], inv_temperature: float, log: bool
) -> npt.NDArray[Any]:
    rows = _rows_of(x)
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
