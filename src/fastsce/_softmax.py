"""Public softmax-family functions: validate, allocate, call one kernel.

The class axis is moved last (a view when possible), the array is seen as
(n_rows, n_classes) rows, and one kernel call computes every row.  For the
default axis=-1 no copy of the input is made unless its rows are not
contiguous in memory.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, SupportsIndex, TypedDict

import numpy as np
import numpy.typing as npt
from numpy.exceptions import AxisError

from . import _kernels as kernels
from ._config import row_work, threads_for
from ._validation import (
    as_contiguous_rows,
    as_float_array,
    as_rows,
    check_inverse_temperature,
    check_out,
    check_temperature,
)

_Floats = npt.NDArray[np.floating[Any]]


class SoftmaxKeywords(TypedDict, total=False):
    """The keywords of softmax and log_softmax: their names and types (their defaults:
    SOFTMAX_DEFAULTS).  fastsce.softmax and log_softmax write them out (a call there costs
    about a microsecond); fastsce.reference takes them as
    ``**options: Unpack[SoftmaxKeywords]`` and shows them with fastsce._keywords."""

    temperature: float
    out: npt.NDArray[np.floating[Any]] | None


#: their defaults, in the order of the signatures
SOFTMAX_DEFAULTS: SoftmaxKeywords = {"temperature": 1.0, "out": None}

#: a row kernel of _kernels: (x rows, 1 / temperature, out, n_threads)
_RowKernel = Callable[[_Floats, float, _Floats, int], None]
#: a backward kernel of _kernels: (upstream gradient, values, out, n_threads)
_BackwardKernel = Callable[[_Floats, _Floats, _Floats, int], None]


def _inverse_temperature(temperature: object, dtype: np.dtype[Any]) -> float:
    """1 / temperature, checked for the compute dtype (check_inverse_temperature)."""
    inverse = 1.0 / check_temperature(temperature)
    check_inverse_temperature(inverse, dtype)
    return inverse


def _normalize_axis(axis: object, ndim: int) -> int:
    """`axis` in [0, ndim): TypeError unless an integer, numpy's AxisError if out of range."""
    if type(axis) is not int:
        if isinstance(axis, (bool, np.bool_)) or not hasattr(axis, "__index__"):
            raise TypeError(f"`axis` must be an integer, got {axis!r}")
        try:
            axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"`axis` must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(f"`axis` {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def _along_axis(
    kernel: _RowKernel,
    x: npt.ArrayLike,
    axis: SupportsIndex,
    temperature: float,
    out: _Floats | None,
) -> _Floats:
    """Apply a row kernel producing one value per input element along `axis`."""
    array = as_float_array(x, "x")
    inv_temperature = _inverse_temperature(temperature, array.dtype)
    if array.ndim == 0:
        as_rows(array, "x")  # raises the 0-d error
    axis = _normalize_axis(axis, array.ndim)
    if out is not None:
        check_out(out, array.shape, array.dtype, (("x", x),), in_place_ok=x)
    moved = np.moveaxis(array, axis, -1)
    rows = as_rows(moved, "x")
    n_threads = threads_for(rows.shape[0], row_work(rows.shape[0], rows.size))
    if axis == array.ndim - 1:
        result = out if out is not None else np.empty(array.shape, array.dtype)
        kernel(rows, inv_temperature, result.reshape(rows.shape), n_threads)
        return result
    buffer = np.empty(moved.shape, array.dtype)
    kernel(rows, inv_temperature, buffer.reshape(rows.shape), n_threads)
    result = np.moveaxis(buffer, -1, axis)
    if out is None:
        return result
    np.copyto(out, result)
    return out


def softmax(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    temperature: float = 1.0,
    out: npt.NDArray[np.floating[Any]] | None = None,
) -> npt.NDArray[np.floating[Any]]:
    """Softmax along `axis`, shifted by the row max: no overflow.

    Parameters
    ----------
    x : array_like
        Logits, any shape with at least one axis; float32 and float64 are computed in
        their own dtype, float16 in float32, integers and wider floats in float64.
    axis : int, optional
        The class axis (default: the last).
    temperature : float, optional
        T > 0: the softmax of x / T.
    out : ndarray, optional
        Receives the result: C-contiguous, of x's shape and compute dtype; it may be
        `x` itself when x is float32 or float64.

    Returns
    -------
    ndarray
        s, of x's shape and compute dtype.  A row holding a NaN, or only -inf, is NaN.

    Raises
    ------
    TypeError
        Non-numeric x, a masked array, or `out` of the wrong dtype.
    ValueError
        0-d x, zero classes, `temperature` not positive and finite, or `out` of the
        wrong shape, read-only, not C-contiguous or overlapping x.

    Notes
    -----
    s_j = exp((x_j - m) / T) / sum_k exp((x_k - m) / T),  m = max_k x_k.

    Examples
    --------
    >>> import fastsce
    >>> fastsce.softmax([3.0, 4.0, 1.0]).round(4)
    array([0.2595, 0.7054, 0.0351])
    """
    return _along_axis(kernels.softmax, x, axis, temperature, out)


def log_softmax(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    temperature: float = 1.0,
    out: npt.NDArray[np.floating[Any]] | None = None,
) -> npt.NDArray[np.floating[Any]]:
    """log(softmax(x / T)) along `axis`, without computing the softmax first.

    Parameters
    ----------
    x : array_like
        Logits, as in `softmax` (the same dtype rules).
    axis : int, optional
        The class axis (default: the last).
    temperature : float, optional
        T > 0: the log-softmax of x / T.
    out : ndarray, optional
        Receives the result (as for `softmax`; may be `x` itself).

    Returns
    -------
    ndarray
        log s, of x's shape and compute dtype (-inf for a -inf logit).

    Raises
    ------
    TypeError, ValueError
        As `softmax`.

    Notes
    -----
    log s_j = (x_j - m) / T - log sum_k exp((x_k - m) / T), the log of the sum taken as
    log1p of the terms other than the max's own when they are small (a confident row
    keeps its digits).

    Examples
    --------
    >>> import fastsce
    >>> fastsce.log_softmax([3.0, 4.0, 1.0]).round(4)
    array([-1.349, -0.349, -3.349])
    """
    return _along_axis(kernels.log_softmax, x, axis, temperature, out)


def logsumexp(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
) -> npt.NDArray[np.floating[Any]]:
    """log(sum(exp(x / T))) along `axis`, shifted by the max: no overflow.

    Parameters
    ----------
    x : array_like
        Logits, as in `softmax` (the same dtype rules).
    axis : int, optional
        The axis reduced (default: the last).
    keepdims : bool, optional
        Keep the reduced axis with length 1.
    temperature : float, optional
        T > 0: the log-sum-exp of x / T.

    Returns
    -------
    ndarray
        x's shape without `axis` (or with length 1 there), in the compute dtype:
        -inf for an all -inf row, +inf when the row holds +inf, NaN with a NaN.

    Raises
    ------
    TypeError, ValueError
        As `softmax`, and numpy.exceptions.AxisError for an axis out of range.

    Notes
    -----
    lse = m / T + log1p(S'), m = max_j x_j and S' = sum over the other terms of
    exp((x_j - m) / T): exact to a few ULP even when S' is below the float64 epsilon
    (scipy gh-18295), where log(1 + S') would return 0.

    Examples
    --------
    >>> import fastsce
    >>> fastsce.logsumexp([[3.0, 4.0, 1.0], [0.0, 0.0, 0.0]]).round(4)
    array([4.349 , 1.0986])
    >>> float(fastsce.logsumexp([0.0, -40.0]))  # log1p(exp(-40))
    4.248354255291589e-18
    """
    array = as_float_array(x, "x")
    inv_temperature = _inverse_temperature(temperature, array.dtype)
    if array.ndim == 0:
        as_rows(array, "x")
    axis = _normalize_axis(axis, array.ndim)
    rows = as_rows(np.moveaxis(array, axis, -1), "x")
    reduced = np.empty(rows.shape[0], array.dtype)
    kernels.logsumexp(
        rows,
        inv_temperature,
        reduced,
        threads_for(rows.shape[0], row_work(rows.shape[0], rows.size)),
    )
    shape = list(array.shape)
    if keepdims:
        shape[axis] = 1
    else:
        del shape[axis]
    return reduced.reshape(shape)


def _probability_rows(s: npt.ArrayLike, name: str) -> tuple[_Floats, _Floats]:
    array = as_float_array(s, name)
    return array, as_contiguous_rows(array, name)


def _backward(
    kernel: _BackwardKernel,
    grad: npt.ArrayLike,
    grad_name: str,
    values: npt.ArrayLike,
    values_name: str,
) -> _Floats:
    """Shared shape/dtype handling of the two backward functions."""
    v_array, v_rows = _probability_rows(values, values_name)
    g_array, g_rows = _probability_rows(grad, grad_name)
    if g_array.shape != v_array.shape:
        raise ValueError(
            f"`{grad_name}` must have the shape of `{values_name}` {v_array.shape}, "
            f"got {g_array.shape}"
        )
    dtype = np.result_type(v_rows.dtype, g_rows.dtype)
    v_rows, g_rows = v_rows.astype(dtype, copy=False), g_rows.astype(dtype, copy=False)
    out = np.empty(v_array.shape, dtype)
    kernel(
        g_rows,
        v_rows,
        out.reshape(v_rows.shape),
        threads_for(v_rows.shape[0], row_work(v_rows.shape[0], v_rows.size)),
    )
    return out


def softmax_backward(grad_s: npt.ArrayLike, s: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    """Gradient with respect to x of a loss L(s), s = softmax(x), class axis last.

    Parameters
    ----------
    grad_s : array_like
        dL/ds, of s's shape.
    s : array_like
        The softmax output.

    Returns
    -------
    ndarray
        dL/dx, of s's shape, in the wider compute dtype of the two inputs.

    Raises
    ------
    TypeError, ValueError
        Non-numeric inputs, or shapes that differ.

    Notes
    -----
    dL/dx = (diag(s) - s sᵀ) dL/ds = s * (dL/ds - dL/ds · s), row by row, without
    building the Jacobian.  For cross-entropy, dL/ds = -y / s and this is s - y.

    Examples
    --------
    >>> import numpy as np, fastsce
    >>> s = fastsce.softmax([3.0, 4.0, 1.0])
    >>> fastsce.softmax_backward(-np.array([0.0, 1.0, 0.0]) / s, s).round(4)
    array([ 0.2595, -0.2946,  0.0351])
    """
    return _backward(kernels.softmax_backward, grad_s, "grad_s", s, "s")


def log_softmax_backward(
    grad_out: npt.ArrayLike, log_s: npt.ArrayLike
) -> npt.NDArray[np.floating[Any]]:
    """Gradient with respect to x of a loss L(log_s), log_s = log_softmax(x).

    Parameters
    ----------
    grad_out : array_like
        dL/d(log_s), of log_s's shape.
    log_s : array_like
        The log-softmax output (class axis last).

    Returns
    -------
    ndarray
        dL/dx, of log_s's shape, in the wider compute dtype of the two inputs.

    Raises
    ------
    TypeError, ValueError
        Non-numeric inputs, or shapes that differ.

    Notes
    -----
    dL/dx = grad_out - softmax(x) * sum(grad_out), row by row, softmax(x) = exp(log_s).

    Examples
    --------
    >>> import numpy as np, fastsce
    >>> log_s = fastsce.log_softmax([3.0, 4.0, 1.0])
    >>> fastsce.log_softmax_backward(np.array([0.0, 1.0, 0.0]), log_s).round(4)
    array([-0.2595,  0.2946, -0.0351])
    """
    return _backward(kernels.log_softmax_backward, grad_out, "grad_out", log_s, "log_s")


def softmax_jacobian(s: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    """Jacobian of softmax at its output s, row by row.

    Parameters
    ----------
    s : array_like
        The softmax output, class axis last.

    Returns
    -------
    ndarray
        Shape s.shape + (C,): J = diag(s) - s sᵀ for every row.

    Raises
    ------
    TypeError, ValueError
        Non-numeric or 0-d s.

    Notes
    -----
    J_jk = s_j ([j = k] - s_k).  C x C per row: for a gradient, softmax_backward is
    the same product without building J.

    Examples
    --------
    >>> import fastsce
    >>> fastsce.softmax_jacobian([0.5, 0.5])
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    array, rows = _probability_rows(s, "s")
    n_classes = rows.shape[1]
    out = np.empty(array.shape + (n_classes,), array.dtype)
    kernels.softmax_jacobian(
        rows,
        out.reshape(rows.shape[0], n_classes, n_classes),
        threads_for(rows.shape[0], row_work(rows.shape[0], rows.size * n_classes)),
    )
    return out
