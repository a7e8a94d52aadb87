"""Plain NumPy versions of every public fastsce function: the test oracle and
the "naive NumPy" baseline of the benchmarks.

Written to be obviously right, not fast, following the textbook derivation:
softmax with the max subtracted, the Jacobian diag(s) - s s^T, cross-entropy
-sum_j y_j log s_j and its gradient s - y for one row, taken row by row as the
seed does, and (S - Y) / m for a batch mean.  Options extend the target y
exactly as PyTorch's F.cross_entropy does (see ``_target_distribution``).
Each function computes in the float dtype of its input (pass float64 arrays
to get a float64 oracle) and returns the same kinds of values as fastsce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, SupportsIndex, cast

import numpy as np
import numpy.typing as npt

from ._keywords import keyword_arguments, keyword_signature
from ._loss import LOSS_DEFAULTS, LossKeywords
from ._softmax import SOFTMAX_DEFAULTS, SoftmaxKeywords

if TYPE_CHECKING:
    from typing_extensions import Unpack

_Floats = npt.NDArray[np.floating[Any]]


def as_float_array(x: npt.ArrayLike, name: str) -> _Floats:
    """x as a float array in fastsce's compute dtype: float32 and float64 kept, smaller
    floats in float32, wider ones and integers in float64.  Written here on purpose,
    not imported from the package: a bug in the fast path's coercion must not hide from
    the oracle.  (`name` only labels the argument; the oracle trusts its inputs.)"""
    del name
    array = np.asarray(x)
    if array.dtype.kind == "f" and array.dtype.itemsize in (4, 8):
        return array
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return array.astype(np.float64)


@keyword_signature(SoftmaxKeywords, SOFTMAX_DEFAULTS)
def softmax(
    x: npt.ArrayLike, axis: SupportsIndex = -1, **options: Unpack[SoftmaxKeywords]
) -> _Floats:
    """s = exp(z - max z) / sum exp(z - max z), z = x / T, along axis."""
    shifted, out = _shifted(softmax, x, axis, options)
    e = np.exp(shifted)
    return _into(e / np.sum(e, axis=axis, keepdims=True), out)


@keyword_signature(SoftmaxKeywords, SOFTMAX_DEFAULTS)
def log_softmax(
    x: npt.ArrayLike, axis: SupportsIndex = -1, **options: Unpack[SoftmaxKeywords]
) -> _Floats:
    """log s = (z - max z) - log sum exp(z - max z), z = x / T."""
    shifted, out = _shifted(log_softmax, x, axis, options)
    return _into(shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)), out)


def _shifted(
    function: Callable[..., object],
    x: npt.ArrayLike,
    axis: SupportsIndex,
    options: SoftmaxKeywords,
) -> tuple[_Floats, _Floats | None]:
    """z - max z along axis, z = x / T, and the `out` given, of a call of `function`
    (its keywords: SoftmaxKeywords)."""
    given = keyword_arguments(function, options, SOFTMAX_DEFAULTS)
    z = as_float_array(x, "x") / given["temperature"]
    return z - np.max(z, axis=axis, keepdims=True), given["out"]


def logsumexp(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
) -> _Floats:
    """max z + log sum exp(z - max z), z = x / T; max z itself when it is +-inf."""
    z = as_float_array(x, "x") / temperature
    m = np.max(z, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        lse: _Floats = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    lse = np.where(np.isinf(m), m, lse)
    return lse if keepdims else np.squeeze(lse, axis=axis)


def softmax_jacobian(s: npt.ArrayLike) -> _Floats:
    """diag(s) - s s^T for every row of s (class axis last)."""
    s = as_float_array(s, "s")
    rows = s.reshape(-1, s.shape[-1])
    jac = (
        np.stack([np.diag(row) - np.outer(row, row) for row in rows])
        if len(rows)
        else np.empty((0, s.shape[-1], s.shape[-1]), s.dtype)
    )
    return jac.reshape(s.shape + (s.shape[-1],))


def softmax_backward(grad_s: npt.ArrayLike, s: npt.ArrayLike) -> _Floats:
    """J^T grad_s row by row, J = diag(s) - s s^T (symmetric)."""
    s = as_float_array(s, "s")
    grad_s = as_float_array(grad_s, "grad_s")
    jac = softmax_jacobian(s)
    product: _Floats = np.einsum("...jk,...k->...j", jac, grad_s)
    return product


def cross_entropy_grad_wrt_probabilities(
    s: npt.ArrayLike, y: npt.ArrayLike, *, mean: bool = False
) -> _Floats:
    """dL/ds = -y / s for L = -sum_j y_j log s_j, row by row (batch mean: -Y / (m S)).

    The softmax Jacobian turns it into the gradient with respect to the logits:
    softmax_backward(-y / s, s) = s - y for a target distribution y (sum_j y_j = 1).
    """
    probabilities = as_float_array(s, "s")
    target = as_float_array(y, "y")
    grad: _Floats = -target / probabilities
    if mean:
        grad = grad / int(np.prod(grad.shape[:-1]))  # m rows (1 for a single row)
    return grad


def log_softmax_backward(grad_out: npt.ArrayLike, log_s: npt.ArrayLike) -> _Floats:
    """grad_out - exp(log_s) * sum(grad_out) row by row (d log s_i / d x_j = [i = j] - s_j)."""
    log_s = as_float_array(log_s, "log_s")
    grad_out = as_float_array(grad_out, "grad_out")
    grad_x: _Floats = grad_out - np.exp(log_s) * np.sum(grad_out, axis=-1, keepdims=True)
    return grad_x


@keyword_signature(LossKeywords, LOSS_DEFAULTS)
def cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    lse_out: npt.NDArray[np.float64] | None = None,
    argmax_out: npt.NDArray[np.int64] | None = None,
    **options: Unpack[LossKeywords],
) -> float | _Floats:
    """Loss only: cross_entropy_with_grad's loss (every option and output the same)."""
    keyword_arguments(cross_entropy, options, LOSS_DEFAULTS)
    return cross_entropy_with_grad(
        logits, target, lse_out=lse_out, argmax_out=argmax_out, **options
    )[0]


@keyword_signature(LossKeywords, LOSS_DEFAULTS)
def cross_entropy_with_grad(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    out: _Floats | None = None,
    lse_out: npt.NDArray[np.float64] | None = None,
    argmax_out: npt.NDArray[np.int64] | None = None,
    **options: Unpack[LossKeywords],
) -> tuple[float | _Floats, _Floats]:
    """Row by row: z = x / T, or c tanh(x / c) / T with a softcap c (-inf kept);
    y = target distribution, s = softmax(z), lse = log sum exp z,
    loss = -sum_j y_j log s_j (terms with y_j = 0 skipped) + z_loss lse^2,
    grad_z = s (sum_j y_j + 2 z_loss lse) - y, grad_x = grad_z dz/dx;
    'mean' divides both by the summed target weights of the rows kept
    (hard targets) or by the row count (soft targets)."""
    given = keyword_arguments(cross_entropy_with_grad, options, LOSS_DEFAULTS)
    weight, ignore_index, reduction = given["weight"], given["ignore_index"], given["reduction"]
    temperature, softcap, z_loss = given["temperature"], given["softcap"], given["z_loss"]
    label_smoothing = given["label_smoothing"]
    x = as_float_array(logits, "logits")
    target = np.asarray(target)
    soft = target.dtype.kind == "f"
    n_classes = x.shape[-1]
    rows = x.reshape(-1, n_classes)
    targets = target.reshape(-1, n_classes) if soft else target.reshape(-1)
    losses = np.zeros(len(rows), np.float64)
    grad: _Floats = np.zeros(rows.shape, x.dtype)
    lse = np.zeros(len(rows))
    argmax = np.zeros(len(rows), np.int64)
    denominator = 0.0
    kept_rows = np.zeros(len(rows), bool)
    for i, (row, t) in enumerate(zip(rows, targets)):
        z, dz_dx = _transformed(row, temperature, softcap)
        lse[i] = logsumexp(z)
        argmax[i] = np.argmax(row)  # of the logits: a softcap can tie distinct ones in z
        if not soft and t == ignore_index:
            continue
        kept_rows[i] = True
        y = _target_distribution(t, n_classes, weight, label_smoothing, soft, x.dtype)
        # weight[t] of the caller's weight as given (a sequence or an array)
        denominator += 1.0 if soft else (1.0 if weight is None else cast(Any, weight)[t])
        log_s = log_softmax(z)
        kept = y != 0
        losses[i] = -np.sum(y[kept] * log_s[kept]) + (z_loss * lse[i] ** 2 if z_loss else 0.0)
        grad_z = softmax(z) * (np.sum(y) + 2 * z_loss * lse[i]) - y
        grad[i] = np.where(dz_dx == 0, 0, grad_z * dz_dx)
    loss: float | _Floats
    if reduction == "mean":
        loss = np.sum(losses) / denominator if denominator else np.nan
        if denominator:
            grad = grad / denominator
        else:
            grad[kept_rows] = np.nan  # kept rows of total weight 0: 0 / 0, as in PyTorch
    elif reduction == "sum":
        loss = np.sum(losses)
    else:
        loss = losses.reshape(x.shape[:-1]).astype(x.dtype)
    if lse_out is not None:
        np.copyto(lse_out, lse.reshape(x.shape[:-1]))
    if argmax_out is not None:
        np.copyto(argmax_out, argmax.reshape(x.shape[:-1]))
    grad = grad.astype(x.dtype).reshape(x.shape)
    return (float(loss) if reduction != "none" else loss), _into(grad, out)


def _transformed(
    row: _Floats,
    temperature: float,
    softcap: float | None,
) -> tuple[_Floats, npt.NDArray[np.float64]]:
    """(z, dz/dx) for one row: z = x / T, or softcap * tanh(x / softcap) / T."""
    if softcap is None:
        return row / temperature, np.full(row.shape, 1.0 / temperature)
    th = np.tanh(row / softcap)
    masked = row == -np.inf
    z = np.where(masked, -np.inf, softcap * th / temperature)
    return z.astype(row.dtype), np.where(masked, 0.0, (1 - th**2) / temperature)


def _target_distribution(
    t: Any,
    n_classes: int,
    weight: npt.ArrayLike | None,
    eps: float,
    soft: bool,
    dtype: np.dtype[Any],
) -> _Floats:
    """PyTorch's target for one row: y = w * ((1 - eps) onehot(t) + eps / C) with
    onehot(t) replaced by the given probabilities for soft targets."""
    if soft:
        y = np.asarray(t, np.float64)
    else:
        y = np.zeros(n_classes)
        y[t] = 1.0
    y = (1.0 - eps) * y + eps / n_classes
    if weight is not None:
        y = y * np.asarray(weight, np.float64)
    return y.astype(dtype)


def _into(result: _Floats, out: _Floats | None) -> _Floats:
    if out is None:
        return result
    np.copyto(out, result)
    return out
