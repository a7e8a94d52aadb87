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
own logits and the row state (the tasks are in _dask_tasks).  The per-row losses are
summed by dask's tree reduction and divided by the denominator, computed from the
targets alone.  For a given chunking the task graph and every sum's order are fixed,
so results are the same bits on every run.

Errors are those of the in-memory functions: what the metadata tells (dtypes, shapes,
options) is raised when the graph is built; what the values tell (a class index out of
range, a probability that is not finite) when it is computed, by a check of the targets
that every output depends on, with the message of the in-memory call (the first bad
position in row order).  Targets whose rows are chunked unlike the logits' are rechunked.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any, SupportsIndex

import dask.array as da
import numpy as np
from dask.layers import ArrayValuesDep

from . import _dask_tasks as tasks
from . import _sharded as sharded
from ._keywords import keyword_signature
from ._loss import (
    LOSS_DEFAULTS,
    LOSS_PARAMETERS,
    LossKeywords,
    LossOptions,
    _is_soft,
    check_index_shape,
    loss_options,
)
from ._softmax import _inverse_temperature, _normalize_axis
from ._validation import (
    FLOAT64,
    as_array,
    check_class_axis,
    check_inverse_temperature,
    float_dtype_for,
    masked_array_message,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["cross_entropy", "cross_entropy_with_grad", "log_softmax", "logsumexp", "softmax"]

#: blocks of a row merged per task of the tree reduction over the class axis
SPLIT_EVERY = 8
#: the letters of blockwise's index strings: leading axes, then the class axis "z" and
#: the field axis "k" (partials and row states)
_AXES = "abcdefghijklmnopqrstuvwxy"


@keyword_signature(LossKeywords, LOSS_DEFAULTS)
def cross_entropy(
    logits: Any,
    target: Any,
    **options: Unpack[LossKeywords],
) -> da.Array:
    validated = loss_options(cross_entropy, options)
    return _Problem(logits, target, validated).loss(want_grad=False)[0]


@keyword_signature(LossKeywords, LOSS_DEFAULTS)
def cross_entropy_with_grad(
    logits: Any,
    target: Any,
    **options: Unpack[LossKeywords],
) -> tuple[da.Array, da.Array]:
    validated = loss_options(cross_entropy_with_grad, options)
    loss, grad = _Problem(logits, target, validated).loss(want_grad=True)
    assert grad is not None  # asked for
    return loss, grad


_NOTES = """
    Notes
    -----
    The values of the in-memory fastsce.{name}, to the order of the sums (float64: a few
    ULP), computed where the chunks are: chunks of rows and chunks of the class axis
    alike, a row never gathered into one task.  For a given chunking, the same bits on
    every run and on every scheduler.{more}"""

_LOSS_MORE = """  A target whose rows are chunked unlike the logits is
    rechunked (soft targets like the logits).  `lse_out` / `argmax_out` / `out` have no
    lazy equivalent: compute `logsumexp` or ``logits.argmax(-1)`` alongside."""

#: the parameters of the loss calls, without the in-memory outputs
_LOSS_PARAMETERS = (
    LOSS_PARAMETERS.split("    lse_out")[0]
    .rstrip()
    .replace("logits : array_like\n", "logits : dask.array.Array or array_like\n")
)

cross_entropy.__doc__ = f"""Softmax cross-entropy of dask `logits` against `target`, lazily.

    Parameters
    ----------{_LOSS_PARAMETERS}

    Returns
    -------
    dask.array.Array
        0-d float64 for "mean" and "sum"; for "none" the per-row losses, of shape
        logits.shape[:-1] in the compute dtype, chunked as the logits' rows.

    Raises
    ------
    TypeError, ValueError
        Those of fastsce.cross_entropy: when called for dtypes, shapes and options; when
        computed for a class index out of range or a probability that is not finite
        (the first in row order, with the in-memory message).
{_NOTES.format(name="cross_entropy", more=_LOSS_MORE)}

    Examples
    --------
    >>> import dask.array as da, fastsce.dask
    >>> logits = da.from_array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]], chunks=(1, 2))
    >>> loss = fastsce.dask.cross_entropy(logits, [1, 0])
    >>> round(float(loss.compute()), 4)
    0.359
    """

cross_entropy_with_grad.__doc__ = f"""The loss and its gradient for dask `logits`, lazily.

    Parameters
    ----------{_LOSS_PARAMETERS}

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
{_NOTES.format(name="cross_entropy_with_grad", more=_LOSS_MORE)}

    Examples
    --------
    >>> import dask, dask.array as da, fastsce.dask
    >>> logits = da.from_array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]], chunks=(1, 2))
    >>> loss, grad = dask.compute(*fastsce.dask.cross_entropy_with_grad(logits, [1, 0]))
    >>> grad.round(4)
    array([[ 0.1297, -0.1473,  0.0176],
           [-0.1543,  0.0771,  0.0771]])
    """

_AXIS_PARAMETERS = """
    x : dask.array.Array or array_like
        Logits, any shape with at least one axis (the dtype rules of fastsce.softmax).
    axis : int, optional
        The class axis (default: the last); it may be chunked.
    temperature : float, optional
        T > 0: the function of x / T."""

_AXIS_RAISES = """
    Raises
    ------
    TypeError, ValueError
        Those of the in-memory function, when called."""


def logsumexp(
    x: Any, axis: SupportsIndex = -1, *, keepdims: bool = False, temperature: float = 1.0
) -> da.Array:
    array, axis, inv_temperature = _along_axis_input(x, axis, temperature)
    moved = da.moveaxis(array, axis, -1)
    lead = moved.ndim - 1
    if moved.numblocks[-1] == 1:
        lse = moved.map_blocks(
            tasks.lse_block, inv_temperature=inv_temperature, drop_axis=lead, dtype=array.dtype
        )
    else:
        state = _softmax_state(moved, inv_temperature)
        lse = state.map_blocks(
            tasks.field, sharded.S_LSE, array.dtype, drop_axis=lead, dtype=array.dtype
        )
    return da.expand_dims(lse, axis) if keepdims else lse


logsumexp.__doc__ = f"""log(sum(exp(x / T))) along `axis` of a dask array, lazily.

    Parameters
    ----------{_AXIS_PARAMETERS}
    keepdims : bool, optional
        Keep the reduced axis with length 1.

    Returns
    -------
    dask.array.Array
        x's shape without `axis` (length 1 there with keepdims), in the compute dtype.
{_AXIS_RAISES}
{_NOTES.format(name="logsumexp", more="")}

    Examples
    --------
    >>> import dask.array as da, fastsce.dask
    >>> x = da.from_array([[3.0, 4.0, 1.0], [0.0, 0.0, 0.0]], chunks=(2, 1))
    >>> fastsce.dask.logsumexp(x).compute().round(4)
    array([4.349 , 1.0986])
    """


def softmax(x: Any, axis: SupportsIndex = -1, *, temperature: float = 1.0) -> da.Array:
    return _softmax_family(x, axis, temperature, log=False)


def log_softmax(x: Any, axis: SupportsIndex = -1, *, temperature: float = 1.0) -> da.Array:
    return _softmax_family(x, axis, temperature, log=True)


for _function, _formula, _example in [
    (softmax, "softmax(x / T)", "array([0.2595, 0.7054, 0.0351])"),
    (log_softmax, "log(softmax(x / T))", "array([-1.349, -0.349, -3.349])"),
]:
    _function.__doc__ = f"""{_formula} along `axis` of a dask array, lazily.

    Parameters
    ----------{_AXIS_PARAMETERS}

    Returns
    -------
    dask.array.Array
        Of x's shape and chunks, in the compute dtype.
{_AXIS_RAISES}
{_NOTES.format(name=_function.__name__, more="")}

    Examples
    --------
    >>> import dask.array as da, fastsce.dask
    >>> x = da.from_array([3.0, 4.0, 1.0], chunks=2)
    >>> fastsce.dask.{_function.__name__}(x).compute().round(4)
    {_example}
    """


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
    inv_temperature = _inverse_temperature(temperature, array.dtype)
    check_class_axis(array.shape, "x")
    return array, _normalize_axis(axis, array.ndim), inv_temperature


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
        self.task_options = tasks.task_options(options)
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
                partial(
                    tasks.rows_block, options=self.task_options, want_grad=want_grad, mean=mean
                ),
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
            row_loss = rows.map_blocks(tasks.item, 0, dtype=FLOAT64)
            if want_grad:
                grad = rows.map_blocks(
                    tasks.item, 1, new_axis=len(lead), chunks=x.chunks, dtype=x.dtype
                )
        else:
            state = self._state()
            row_loss = state.map_blocks(
                tasks.field, sharded.S_LOSS, FLOAT64, drop_axis=len(lead), dtype=FLOAT64
            )
            if want_grad:
                grad = self._gradient(state, mean)
        if self.options.reduction == "none":
            return row_loss.astype(x.dtype), grad
        total = row_loss.sum(split_every=SPLIT_EVERY)
        loss = da.blockwise(
            partial(tasks.batch_loss, mean=mean), "", total, "", self.denominator, "", dtype=FLOAT64
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
                tasks.partials_block,
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
            partial(tasks.state_block, options=self.task_options, hard=self.hard),
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
            da.blockwise(tasks.inverse, "", self.denominator, "", dtype=FLOAT64)
            if mean
            else da.from_array(np.asarray(1.0))
        )
        return da.blockwise(
            partial(tasks.gradient_block, options=self.task_options, n_classes=self.n_classes),
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
    merge = partial(tasks.combine_blocks, unit=unit, n_classes=n_classes)
    return da.reduction(
        partials,
        tasks.identity,
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
    options = tasks.TaskOptions(-100, 0.0, 0.0, inv_temperature, 0.0)
    partials = da.blockwise(
        partial(tasks.partials_block, options=options, soft=False, n_classes=moved.shape[-1]),
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
            tasks.softmax_rows, inv_temperature=inv_temperature, log=log, dtype=array.dtype
        )
    else:
        lead = _AXES[: moved.ndim - 1]
        state = _softmax_state(moved, inv_temperature)
        result = da.blockwise(
            partial(tasks.softmax_block, inv_temperature=inv_temperature, log=log),
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
    raising the in-memory call's error when computed if a target value is invalid: one
    record per block of targets (tasks.check_block), merged by a tree of fixed shape."""
    shape = target.shape
    n_rows = math.prod(shape[:-1]) if soft else math.prod(shape)
    if target.ndim == 0:
        target = target[None]  # positions are found in (1,), reported in ()
    axes = _AXES[: target.ndim]
    offsets = [np.cumsum((0,) + chunks[:-1]) for chunks in target.chunks]
    starts = ArrayValuesDep(
        target.chunks,
        {
            block: tuple(int(offsets[axis][i]) for axis, i in enumerate(block))
            for block in np.ndindex(*target.numblocks)
        },
    )
    weight = None if soft or options.weight is None else da.from_array(options.weight)
    check = partial(
        tasks.check_block,
        soft=soft,
        shape=target.shape,
        ignore_index=options.ignore_index,
        n_classes=n_classes,
    )
    records = da.blockwise(
        check,
        axes,
        target,
        axes,
        weight,
        None if weight is None else "w",
        starts,
        axes,
        adjust_chunks=dict.fromkeys(axes, 1),
        align_arrays=False,
        concatenate=True,
        dtype=object,
        meta=np.empty((0,) * target.ndim, object),
    )
    aggregate = partial(
        tasks.denominator_of,
        soft=soft,
        shape=shape,
        n_rows=n_rows,
        n_classes=n_classes,
        ignore_index=options.ignore_index,
    )
    return da.reduction(
        records,
        tasks.identity,
        aggregate,
        combine=tasks.combine_records,
        axis=tuple(range(target.ndim)),
        dtype=FLOAT64,
        split_every=SPLIT_EVERY,
        concatenate=True,
        meta=np.empty((), FLOAT64),
    )
