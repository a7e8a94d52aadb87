"""Public cross-entropy functions: validate everything, then one kernel call.

Order matters for the "nothing written on error" rule: logits, options,
target (including the range check of class indices) and out= are all checked
before the kernel runs.  The kernel computes per-row losses (float64) and,
when asked, the gradient of the reduced loss straight into the output buffer.
Semantics are PyTorch's F.cross_entropy with the class axis last.
"""

from __future__ import annotations

import math
import operator
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NoReturn, SupportsIndex, TypedDict

import numpy as np
import numpy.typing as npt

from . import _kernels as kernels
from ._config import row_work, threads_for
from ._keywords import keyword_arguments, keyword_signature
from ._validation import (
    FLOAT32,
    FLOAT64,
    Reduction,
    as_array,
    as_contiguous_rows,
    as_float_array,
    as_logits_array,
    as_rows,
    check_inverse_temperature,
    check_out,
    check_reduction,
    check_temperature,
    is_bfloat16,
    real_number,
)

INT64 = np.dtype(np.int64)
INT64_MAX = np.iinfo(np.int64).max

_Floats = npt.NDArray[np.floating[Any]]

if TYPE_CHECKING:
    from typing_extensions import Unpack


class LossKeywords(TypedDict, total=False):
    """The loss options, the keyword arguments every loss function takes: their names and
    types (their defaults: LOSS_DEFAULTS).  cross_entropy and cross_entropy_with_grad write
    them out (a call there costs about a microsecond); CrossEntropyLoss,
    linear_cross_entropy, fastsce.dask, fastsce.jax and fastsce.reference take them as
    ``**options: Unpack[LossKeywords]`` and show them with fastsce._keywords."""

    weight: npt.ArrayLike | None
    ignore_index: int
    reduction: Literal["mean", "sum", "none"]
    label_smoothing: float
    temperature: float
    softcap: float | None
    z_loss: float


#: the loss options' defaults, in the order of the signatures and of LossOptions
LOSS_DEFAULTS: LossKeywords = {
    "weight": None,
    "ignore_index": -100,
    "reduction": "mean",
    "label_smoothing": 0.0,
    "temperature": 1.0,
    "softcap": None,
    "z_loss": 0.0,
}

#: the loss options every loss call shares, in numpydoc form (inserted in the docstrings)
OPTION_PARAMETERS = """
    weight : array_like, optional
        Per-class weights (C,), finite.
    ignore_index : int, optional
        A class index whose rows count for nothing: loss 0, gradient exactly 0, left out
        of the "mean" (class-index targets only).
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides by the summed weights of the rows not ignored (class indices) or
        by the row count (soft targets); "none" keeps one loss per row.
    label_smoothing : float, optional
        eps in [0, 1]: the target becomes (1 - eps) y + eps / C.
    temperature : float, optional
        T > 0: the softmax sees z = x / T.
    softcap : float, optional
        c > 0: z = c tanh(x / c) / T (Gemma 2); a -inf logit stays masked.
    z_loss : float, optional
        lambda >= 0: adds lambda lse(z)^2 per kept row (PaLM)."""

#: the parameters every loss call shares (inserted in the docstrings)
LOSS_PARAMETERS = (
    """
    logits : array_like
        Shape (..., C), the class axis last.  float32 and float64 are computed in their
        own dtype, float16 and bfloat16 (ml_dtypes') in float32 (read as they are, a row
        at a time: no float32 copy), integers and wider floats in float64.
    target : array_like
        Integer class indices of shape logits.shape[:-1] (any integer dtype), or
        probabilities of logits' shape (soft targets, a float dtype)."""
    + OPTION_PARAMETERS
    + """
    lse_out : ndarray of float64, optional
        Shape logits.shape[:-1]: receives each row's log-sum-exp of z, from the same pass.
    argmax_out : ndarray of int64, optional
        Shape logits.shape[:-1]: receives the index of each row's largest logit (the
        first one; the first NaN as numpy.argmax), whatever softcap and temperature do."""
)

#: what every loss call raises
LOSS_RAISES = """
    Raises
    ------
    TypeError
        Non-numeric logits or target, a masked array, a float target not of logits'
        shape, an output of the wrong dtype, an option of the wrong type.
    ValueError
        0-d logits, zero classes, a target of the wrong shape or with a class index
        outside [0, C) that is not ignore_index, weight not (C,) or not finite, an
        option out of range, an output of the wrong shape, read-only, not
        C-contiguous or sharing memory with an input or another output.  Nothing is
        written when anything is raised."""

#: the formula, for the Notes sections
LOSS_NOTES = """
    Notes
    -----
    Per row, with z the transformed logits, lse = log sum_j exp(z_j) and b the target
    distribution (w_t (1 - eps) onehot(t) + eps / C for a class index t):
    loss = sum_j b_j (lse - z_j) + lambda lse^2, the semantics of PyTorch's
    F.cross_entropy with the class axis last; dL/dz = (sum_j b_j + 2 lambda lse)
    softmax(z) - b.  The batch loss is summed in row order: results do not depend on
    the thread count."""


def cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    lse_out: npt.NDArray[np.float64] | None = None,
    argmax_out: npt.NDArray[np.int64] | None = None,
) -> float | npt.NDArray[np.floating[Any]]:
    options = (weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss)
    fast = kernels.small_call(logits, target, None, False, options, lse_out, argmax_out)
    if fast is not None:
        return fast[0]
    return evaluate(logits, target, options, None, False, None, lse_out, argmax_out)[0]


cross_entropy.__doc__ = f"""Softmax cross-entropy of `logits` against `target`.

    Parameters
    ----------{LOSS_PARAMETERS}

    Returns
    -------
    float or ndarray
        A Python float for "mean" and "sum"; for "none" an array of shape
        logits.shape[:-1] in the compute dtype.
{LOSS_RAISES}
{LOSS_NOTES}

    Examples
    --------
    >>> import fastsce
    >>> round(fastsce.cross_entropy([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]], [1, 0]), 4)
    0.359
    >>> fastsce.cross_entropy([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]], [1, 0], reduction="none")
    array([0.34901222, 0.36898114])
    """


def cross_entropy_with_grad(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    out: npt.NDArray[np.floating[Any]] | None = None,
    lse_out: npt.NDArray[np.float64] | None = None,
    argmax_out: npt.NDArray[np.int64] | None = None,
) -> tuple[float | npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]:
    options = (weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss)
    fast = kernels.small_call(logits, target, out, True, options, lse_out, argmax_out)
    loss, grad = (
        fast
        if fast is not None
        else evaluate(logits, target, options, None, True, out, lse_out, argmax_out)
    )
    assert grad is not None  # asked for
    return loss, grad


cross_entropy_with_grad.__doc__ = f"""The loss and its gradient with respect to logits, in one pass.

    Parameters
    ----------{LOSS_PARAMETERS}
    out : ndarray, optional
        Receives the gradient: C-contiguous, logits' shape and compute dtype.  It may be
        `logits` itself (the gradient overwrites them) when logits are float32 or
        float64, and a view such as ``buffer[:n]`` for a last, smaller batch.  For
        float16 or bfloat16 logits it may also have their dtype (`logits` itself
        included): the float32 gradient rounded to nearest even.

    Returns
    -------
    loss : float or ndarray
        As `cross_entropy`.
    grad : ndarray
        d(loss)/d(logits): logits' shape, the compute dtype; the gradient of the reduced
        loss (already divided by the batch for "mean"; for "none", of the sum of the
        per-row losses).  Ignored rows get exactly 0.
{LOSS_RAISES}
{LOSS_NOTES}

    Examples
    --------
    >>> import fastsce
    >>> loss, grad = fastsce.cross_entropy_with_grad([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]], [1, 0])
    >>> round(loss, 4)
    0.359
    >>> grad.round(4)
    array([[ 0.1297, -0.1473,  0.0176],
           [-0.1543,  0.0771,  0.0771]])
    """


def evaluate(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    options: tuple[Any, ...],
    validated: LossOptions | None,
    want_grad: bool,
    out: _Floats | None,
    lse_out: npt.NDArray[np.float64] | None,
    argmax_out: npt.NDArray[np.int64] | None,
    local: threading.local | None = None,
) -> tuple[float | _Floats, _Floats | None]:
    """Every loss call, as (loss, grad or None).

    `options` are the seven option arguments (weight, ignore_index, reduction,
    label_smoothing, temperature, softcap, z_loss), as given or as validated
    (`validated`, a CrossEntropyLoss's).  kernels.small_call takes the call when
    the options are plain and the arrays simple (its one predicate decides); else
    everything is validated and run() makes one kernel call, with this thread's
    ReusedBuffers from `local` when given.  (cross_entropy and cross_entropy_with_grad
    try small_call themselves before calling this, one Python call less on the common
    call; the second try of a call it declined costs some 0.1 us of a validating call's
    10.)
    """
    result = kernels.small_call(logits, target, out, want_grad, options, lse_out, argmax_out)
    if result is not None:
        return result
    return run(
        logits,
        target,
        validated if validated is not None else LossOptions(*options),
        want_grad=want_grad,
        out=out,
        lse_out=lse_out,
        argmax_out=argmax_out,
        buffers=None if local is None else thread_buffers(local),
    )


class LossOptions:
    """Validated loss options (everything but what depends on the logits' shape)."""

    __slots__ = (
        "arguments",
        "ignore_index",
        "inv_temperature",
        "reduction",
        "smoothing",
        "softcap",
        "weight",
        "weight_input",
        "z_loss",
    )
    arguments: tuple[Any, ...]
    ignore_index: int
    inv_temperature: float
    reduction: Reduction
    smoothing: float
    softcap: float
    weight: npt.NDArray[np.float64] | None
    weight_input: npt.ArrayLike | None
    z_loss: float

    def __init__(
        self,
        weight: npt.ArrayLike | None,
        ignore_index: int,
        reduction: Reduction,
        label_smoothing: float,
        temperature: float,
        softcap: float | None,
        z_loss: float,
    ) -> None:
        check_reduction(reduction)
        self.reduction = reduction
        self.smoothing = _check_smoothing(label_smoothing)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.weight_input = weight
        self.weight = None if weight is None else _class_weights(weight)
        self.inv_temperature = 1.0 / check_temperature(temperature)
        self.softcap = 0.0 if softcap is None else _positive_finite(softcap, "softcap")
        self.z_loss = _non_negative_finite(z_loss, "z_loss")
        #: the seven option arguments again, as validated Python values (for the fast path)
        self.arguments = (
            self.weight,
            self.ignore_index,
            self.reduction,
            self.smoothing,
            1.0 / self.inv_temperature if temperature != 1 else 1.0,
            softcap if softcap is None else self.softcap,
            self.z_loss,
        )


def loss_options(function: Callable[..., object], options: LossKeywords) -> LossOptions:
    """The validated options of a call of `function`, which takes the loss keywords as
    ``**options`` (the defaults for those not given); TypeError for any other keyword."""
    return LossOptions(**keyword_arguments(function, options, LOSS_DEFAULTS))


def run(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    options: LossOptions,
    *,
    want_grad: bool,
    out: _Floats | None,
    lse_out: npt.NDArray[np.float64] | None,
    argmax_out: npt.NDArray[np.int64] | None,
    buffers: ReusedBuffers | None = None,
) -> tuple[float | _Floats, _Floats | None]:
    """Validate the arrays, then one kernel call; returns (loss, grad or None).

    buffers: optional ReusedBuffers supplying the per-row loss and scratch
    arrays (see CrossEntropyLoss); the kernel allocates its own otherwise.
    """
    array = as_logits_array(logits, "logits")
    rows = as_rows(array, "logits")
    n_rows, n_classes = rows.shape
    # float16 / bfloat16 logits (the only 2-byte dtype left) are read as they are and
    # computed in float32
    sixteen_bit = array.itemsize == 2
    dtype = FLOAT32 if sixteen_bit else array.dtype
    check_inverse_temperature(options.inv_temperature, dtype)
    target_array, index, soft_target = checked_targets(target, array.shape, dtype, options)
    if index is not None:
        index = own_indices(index, target_array, buffers)

    inputs = (("logits", logits), ("target", target), ("weight", options.weight_input))
    grad: _Floats | None = None
    grad_rows: _Floats | None = None
    if want_grad:
        if out is None:
            grad = np.empty(array.shape, dtype)
        else:
            # a 16-bit gradient (out= of the logits' dtype) is narrowed from the float32 one
            other = array.dtype if sixteen_bit else None
            grad = check_out(out, array.shape, dtype, inputs, in_place_ok=logits, other_dtype=other)
        grad_rows = grad.reshape(rows.shape)
    # each output is checked against the inputs and against the outputs before it:
    # two outputs sharing memory would overwrite each other's results
    checked: tuple[tuple[str, object], ...] = (*inputs, ("out", out))
    row_lse: npt.NDArray[np.float64] | None = None
    row_argmax: npt.NDArray[np.int64] | None = None
    if lse_out is not None:
        row_lse = check_out(lse_out, array.shape[:-1], FLOAT64, checked, name="lse_out").reshape(-1)
    checked += (("lse_out", lse_out),)
    if argmax_out is not None:
        row_argmax = check_out(
            argmax_out, array.shape[:-1], INT64, checked, name="argmax_out"
        ).reshape(-1)

    n_threads = threads_for(rows.shape[0], row_work(rows.shape[0], rows.size))
    row_loss: npt.NDArray[np.float64] | None = None
    scratch: _Floats | None = None
    if buffers is not None:
        row_loss, scratch = buffers.arrays(
            n_rows, 0 if sixteen_bit else kernels.scratch_elements(n_classes, n_threads), dtype
        )
    if options.reduction == "none":
        row_loss = np.empty(n_rows, FLOAT64)
    first_bad, loss = kernels.cross_entropy(
        rows,
        index,
        soft_target,
        options,
        row_loss,
        grad_rows,
        row_lse,
        row_argmax,
        scratch,
        n_threads,
    )
    result = reported_loss(
        first_bad, loss, row_loss, target_array, soft_target, options, array.shape, dtype
    )
    return result, grad


def checked_targets(
    target: npt.ArrayLike,
    logits_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    options: LossOptions,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64] | None, _Floats | None]:
    """(target as an array, flat int64 class indices or None, probability rows or None),
    with `weight`'s shape checked against the class count of `logits_shape` (class-index
    values are checked by the kernel)."""
    n_classes = logits_shape[-1]
    weights = options.weight
    if weights is not None and weights.shape != (n_classes,):
        raise ValueError(f"`weight` must have shape ({n_classes},), got {weights.shape}")
    target_array = target if type(target) is np.ndarray else as_array(target, "target")
    if _is_soft(target_array, logits_shape):
        soft = as_contiguous_rows(as_float_array(target_array, "target", dtype), "target")
        return target_array, None, soft
    return target_array, _class_indices(target_array, logits_shape, options.ignore_index), None


def reported_loss(
    first_bad: int,
    loss: float,
    row_loss: npt.NDArray[np.float64] | None,
    target: npt.NDArray[Any],
    soft_target: _Floats | None,
    options: LossOptions,
    logits_shape: tuple[int, ...],
    dtype: np.dtype[Any],
) -> float | _Floats:
    """The loss of a loss kernel's call from what it reported (the first bad target's row
    or -1, the reduced loss, the per-row losses): the error for that bad target, else
    `loss` for "mean" and "sum", the per-row losses for "none" (logits_shape[:-1], in
    `dtype`)."""
    if first_bad >= 0:
        raise_bad_target(target, soft_target, first_bad, logits_shape[-1], options.ignore_index)
    if options.reduction == "none":
        assert row_loss is not None  # allocated by the caller for reduction='none'
        return row_loss.reshape(logits_shape[:-1]).astype(dtype, copy=False)
    return loss


def raise_bad_target(
    target: npt.NDArray[Any],
    soft_target: _Floats | None,
    first_bad: int,
    n_classes: int,
    ignore_index: int,
) -> NoReturn:
    """The error for the first bad row a kernel reported: a probability row that is not
    finite, or a class index out of range."""
    if soft_target is not None:
        row = soft_target[first_bad]
        raise ValueError(
            f"`target` probabilities must be finite; row {first_bad} of the "
            f"{soft_target.shape[0]} rows has {row[~np.isfinite(row)][0]}"
        )
    _raise_bad_class_index(target, first_bad, n_classes, ignore_index)


class ReusedBuffers:
    """Per-row loss and scratch arrays kept between calls, grown when needed."""

    def __init__(self) -> None:
        self.row_loss = np.empty(0, FLOAT64)
        self.scratch: dict[np.dtype[Any], _Floats] = {}
        self.index = np.empty(0, INT64)

    def indices(self, index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """A copy of `index` in the kept int64 array."""
        if self.index.size < index.size:
            self.index = np.empty(index.size, INT64)
        copy = self.index[: index.size]
        np.copyto(copy, index)
        return copy

    def arrays(
        self, n_rows: int, n_scratch: int, dtype: np.dtype[Any]
    ) -> tuple[npt.NDArray[np.float64], _Floats]:
        if self.row_loss.size < n_rows:
            self.row_loss = np.empty(n_rows, FLOAT64)
        scratch = self.scratch.get(dtype)
        if scratch is None or scratch.size < n_scratch:
            scratch = self.scratch[dtype] = np.empty(n_scratch, dtype)
        return self.row_loss, scratch


def thread_buffers(local: threading.local) -> ReusedBuffers:
    """This thread's buffers in `local`: the kernels release the GIL, so calls from
    several threads must not share the per-row loss and scratch arrays."""
    buffers: ReusedBuffers | None = getattr(local, "buffers", None)
    if buffers is None:
        buffers = local.buffers = ReusedBuffers()
    return buffers


class CrossEntropyLoss:
    """Softmax cross-entropy with fixed options, for training loops.

    Parameters
    ----------
    weight, ignore_index, reduction, label_smoothing, temperature, softcap, z_loss
        As in `cross_entropy`, validated once here (a bad value raises now, not at the
        first call).  `weight` is copied: changing the caller's array afterwards has no
        effect.

    Raises
    ------
    TypeError, ValueError
        A bad option, at construction; a call raises as `cross_entropy` does.

    Notes
    -----
    ``criterion(logits, target)`` returns the loss, ``criterion.loss_and_grad(logits,
    target, out=buffer)`` the loss and the gradient (see `cross_entropy_with_grad`).
    The per-row buffers are kept between calls (one set per thread), so with a reused
    `out` the steady state allocates no arrays ("none" returns a new array of losses).

    Examples
    --------
    >>> import numpy as np, fastsce
    >>> criterion = fastsce.CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]])
    >>> grad = np.empty_like(logits)
    >>> loss, _ = criterion.loss_and_grad(logits, [1, 0], out=grad)
    >>> round(loss, 4), bool(abs(grad.sum()) < 1e-12)  # each row's gradient sums to 0
    (0.4757, True)
    """

    @keyword_signature(LossKeywords, LOSS_DEFAULTS)
    def __init__(self, **options: Unpack[LossKeywords]) -> None:
        self.options = loss_options(CrossEntropyLoss.__init__, options)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]  # buffers are per thread and per object, not state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __call__(
        self,
        logits: npt.ArrayLike,
        target: npt.ArrayLike,
        *,
        lse_out: npt.NDArray[np.float64] | None = None,
        argmax_out: npt.NDArray[np.int64] | None = None,
    ) -> float | npt.NDArray[np.floating[Any]]:
        """The loss (float, or per-row array for reduction='none')."""
        loss, _ = evaluate(
            logits,
            target,
            self.options.arguments,
            self.options,
            False,
            None,
            lse_out,
            argmax_out,
            self._local,
        )
        return loss

    def loss_and_grad(
        self,
        logits: npt.ArrayLike,
        target: npt.ArrayLike,
        *positional_out: npt.NDArray[np.floating[Any]],
        out: npt.NDArray[np.floating[Any]] | None = None,
        lse_out: npt.NDArray[np.float64] | None = None,
        argmax_out: npt.NDArray[np.int64] | None = None,
    ) -> tuple[float | npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]:
        """(loss, grad), grad written into `out` when given (may be `logits` itself).

        `out` is keyword-only, as in cross_entropy_with_grad; passing it as the third
        positional argument still works but is deprecated (DeprecationWarning).
        """
        if positional_out:
            if len(positional_out) > 1 or out is not None:
                raise TypeError(
                    "loss_and_grad() takes `out` once, as a keyword: loss_and_grad(logits, "
                    "target, out=buffer)"
                )
            warnings.warn(
                "passing `out` positionally to CrossEntropyLoss.loss_and_grad is deprecated "
                "and will stop working in the next release: write out=...",
                DeprecationWarning,
                stacklevel=2,
            )
            out = positional_out[0]
        loss, grad = evaluate(
            logits,
            target,
            self.options.arguments,
            self.options,
            True,
            out,
            lse_out,
            argmax_out,
            self._local,
        )
        assert grad is not None  # asked for
        return loss, grad

    def __repr__(self) -> str:
        o = self.options
        return (
            f"CrossEntropyLoss(reduction={o.reduction!r}, ignore_index={o.ignore_index}, "
            f"label_smoothing={o.smoothing}, temperature={1.0 / o.inv_temperature}, "
            f"softcap={o.softcap or None}, z_loss={o.z_loss}, "
            f"weight={'None' if o.weight is None else 'array(' + str(o.weight.size) + ')'})"
        )


def _raise_bad_class_index(
    target: npt.NDArray[Any],
    flat_position: int,
    n_classes: int,
    ignore_index: int,
) -> NoReturn:
    """The one message for a class index out of range (position as plain ints)."""
    position = tuple(int(i) for i in np.unravel_index(flat_position, target.shape))
    raise ValueError(bad_class_index_message(target[position], position, n_classes, ignore_index))


def bad_class_index_message(
    value: object, position: tuple[int, ...], n_classes: int, ignore_index: int
) -> str:
    """The message of a class index out of range (`position` in the target's shape)."""
    return (
        f"`target` has class index {value} at position {position}, "
        f"outside [0, {n_classes}) and not ignore_index ({ignore_index})"
    )


def _positive_finite(value: object, name: str) -> float:
    number = real_number(value, name)
    if not 0.0 < number < math.inf:
        raise ValueError(f"`{name}` must be positive and finite, got {value!r}")
    return number


def _non_negative_finite(value: object, name: str) -> float:
    number = real_number(value, name)
    if not 0.0 <= number < math.inf:
        raise ValueError(f"`{name}` must be non-negative and finite, got {value!r}")
    return number


def _check_smoothing(label_smoothing: object) -> float:
    value = real_number(label_smoothing, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1], got {label_smoothing!r}")
    return value


def _check_ignore_index(ignore_index: SupportsIndex) -> int:
    if type(ignore_index) is not int:
        if isinstance(ignore_index, (bool, np.bool_)):
            raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}")
        try:
            ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}") from None
    if not -INT64_MAX - 1 <= ignore_index <= INT64_MAX:
        raise ValueError(f"`ignore_index` must fit in int64, got {ignore_index!r}")
    return ignore_index


def _class_weights(weight: npt.ArrayLike) -> npt.NDArray[np.float64]:
    given = as_float_array(weight, "weight", FLOAT64)
    if given.ndim != 1:
        raise ValueError(f"`weight` must have shape (C,), got {given.shape}")
    if not np.isfinite(given).all():
        raise ValueError(f"`weight` must be finite, got {given}")
    # a private, read-only copy: the caller changing its array later (a NaN included)
    # cannot bypass the checks above
    weights = np.array(given, dtype=FLOAT64, order="C", copy=True)
    weights.flags.writeable = False
    return weights


def _is_soft(target: npt.NDArray[Any], logits_shape: tuple[int, ...]) -> bool:
    """True for probability targets, False for class indices; TypeError otherwise."""
    kind = target.dtype.kind
    if kind in "iu":
        return False
    if kind == "f" or is_bfloat16(target.dtype):
        if target.shape != logits_shape:
            if target.shape == logits_shape[:-1] and np.isnan(target).any():
                raise TypeError(
                    "`target` has missing values (NaN): class indices must be integers; "
                    "remove those rows or set them to ignore_index (a nullable integer "
                    "column with NA arrives as floats with NaN)"
                )
            raise TypeError(float_target_shape_message(logits_shape, target.shape))
        return True
    if kind == "O" and any(_is_missing(value) for value in target.reshape(-1)):
        raise TypeError(
            "`target` has missing values (None or NA): remove those rows or set their class "
            "to ignore_index before the call"
        )
    raise TypeError(target_dtype_message(target.dtype))


def target_dtype_message(dtype: object) -> str:
    """The TypeError's message for a target neither of integers nor of floats."""
    return f"`target` must hold integer class indices or float probabilities, got dtype {dtype}"


def float_target_shape_message(logits_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The TypeError's message for a float target of another shape than the logits'."""
    return (
        f"`target` of float dtype must be probabilities of the logits' shape "
        f"{logits_shape}, got shape {shape}; class indices must be integers"
    )


def _is_missing(value: object) -> bool:
    """None, pandas.NA or a float NaN (what an object array of labels holds for a gap)."""
    return value is None or type(value).__name__ == "NAType" or value != value


def class_index_shape_message(target_shape: tuple[int, ...], logits_shape: tuple[int, ...]) -> str:
    """The ValueError's message for class indices not of shape logits_shape[:-1]."""
    return (
        f"`target` of class indices must have shape {logits_shape[:-1]}, got {target_shape}"
        + _shape_hint(target_shape, logits_shape)
    )


def _shape_hint(target_shape: tuple[int, ...], logits_shape: tuple[int, ...]) -> str:
    """Why a class-index target may not match, for the error message."""
    expected = logits_shape[:-1]
    hint = (
        f"; logits must be (..., C) with the class axis last: got logits {logits_shape} "
        f"and {int(np.prod(target_shape))} targets"
    )
    if len(logits_shape) == 2 and target_shape == (logits_shape[-1],):
        return hint + ": did you mean logits.T?"
    if target_shape == (*expected, 1):
        return f"; a target of shape {target_shape} holds one index per row: pass target.ravel()"
    return hint


def check_index_shape(target_shape: tuple[int, ...], logits_shape: tuple[int, ...]) -> None:
    """ValueError unless a class-index target's shape is logits_shape[:-1]."""
    if target_shape != logits_shape[:-1]:
        raise ValueError(class_index_shape_message(target_shape, logits_shape))


def _class_indices(
    target: npt.NDArray[Any],
    logits_shape: tuple[int, ...],
    ignore_index: int,
) -> npt.NDArray[np.int64]:
    """Flat int64 class indices, shape-checked (values are checked by the kernel); the
    caller's own memory when it is already that (see own_indices)."""
    check_index_shape(target.shape, logits_shape)
    if target.dtype.kind == "u" and target.size and target.max() > INT64_MAX:
        _raise_bad_class_index(
            target, int(np.argmax(target.reshape(-1) > INT64_MAX)), logits_shape[-1], ignore_index
        )
    index = target if target.ndim == 1 else target.reshape(-1)
    if index.dtype is not INT64 or not index.flags.c_contiguous:
        index = np.ascontiguousarray(index, dtype=INT64)
    return index


def own_indices(
    index: npt.NDArray[np.int64], target: object, buffers: ReusedBuffers | None = None
) -> npt.NDArray[np.int64]:
    """`index`, or a copy of it when it is the caller's `target` memory: a kernel checks
    the class indices, then reads them again, so another thread changing the caller's
    array in between must not reach it (it could make the kernel index outside a row).
    The copy is one int64 per row, in `buffers` when given (no allocation per call)."""
    if not np.may_share_memory(index, target):  # already converted: a private array
        return index
    copy: npt.NDArray[np.int64] = index.copy() if buffers is None else buffers.indices(index)
    return copy
