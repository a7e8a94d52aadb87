"""Public softmax-family functions: validate, allocate, call one kernel.

The class axis is moved last (a view when possible), the array is seen as
(n_rows, n_classes) rows, and one kernel call computes every row.  For the
default axis=-1 no copy of the input is made unless its rows are not
contiguous in memory.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt
from numpy.exceptions import AxisError

from . import _kernels as kernels
from ._config import threads_for
from ._validation import (
    as_contiguous_rows,
    as_float_array,
    as_rows,
    check_inverse_temperature,
    check_out,
    check_temperature,
)

_Floats = npt.NDArray[np.floating[Any]]
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
    n_threads = threads_for(rows.shape[0], rows.size)
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
    out: _Floats | None = None,
) -> _Floats:
    """Softmax along `axis`: s_j = exp(x_j / T) / sum_k exp(x_k / T), max-shifted.

    float32/float64 are computed in their own dtype, float16 in float32,
    integers in float64.  `out` (C-contiguous, compute dtype, x's shape) may
    be `x` itself.  A row containing NaN, or only -inf, gives NaN.
    """
    return _along_axis(kernels.softmax, x, axis, temperature, out)


def log_softmax(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    temperature: float = 1.0,
    out: _Floats | None = None,
) -> _Floats:
    """log(softmax(x / T)) along `axis`, computed as (x - max) / T - log(sum exp)."""
    return _along_axis(kernels.log_softmax, x, axis, temperature, out)


def logsumexp(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
) -> _Floats:
    """log(sum(exp(x / T))) along `axis` (-inf for an all -inf row, +inf if any +inf)."""
    array = as_float_array(x, "x")
    inv_temperature = _inverse_temperature(temperature, array.dtype)
    if array.ndim == 0:
        as_rows(array, "x")
    axis = _normalize_axis(axis, array.ndim)
    rows = as_rows(np.moveaxis(array, axis, -1), "x")
    reduced = np.empty(rows.shape[0], array.dtype)
    kernels.logsumexp(rows, inv_temperature, reduced, threads_for(rows.shape[0], rows.size))
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
    kernel(g_rows, v_rows, out.reshape(v_rows.shape), threads_for(v_rows.shape[0], v_rows.size))
    return out


def softmax_backward(grad_s: npt.ArrayLike, s: npt.ArrayLike) -> _Floats:
    """Gradient with respect to x of a loss L(s), s = softmax(x) (class axis last).

    grad_x = (diag(s) - s s^T) grad_s = s * (grad_s - grad_s . s), row by row,
    without building the Jacobian.  Result dtype: the wider of the two inputs.
    """
    return _backward(kernels.softmax_backward, grad_s, "grad_s", s, "s")


def log_softmax_backward(grad_out: npt.ArrayLike, log_s: npt.ArrayLike) -> _Floats:
    """Gradient with respect to x of a loss L(log_s), log_s = log_softmax(x).

    grad_x = grad_out - softmax(x) * sum(grad_out), row by row (class axis
    last), with softmax(x) = exp(log_s).  Result dtype: the wider of the two.
    """
    return _backward(kernels.log_softmax_backward, grad_out, "grad_out", log_s, "log_s")


def softmax_jacobian(s: npt.ArrayLike) -> _Floats:
    """Jacobian of softmax at output s: diag(s) - s s^T, shape s.shape + (C,)."""
    array, rows = _probability_rows(s, "s")
    n_classes = rows.shape[1]
    out = np.empty(array.shape + (n_classes,), array.dtype)
    kernels.softmax_jacobian(
        rows,
        out.reshape(rows.shape[0], n_classes, n_classes),
        threads_for(rows.shape[0], rows.size * n_classes),
    )
    return out
