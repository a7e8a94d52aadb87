"""Public cross-entropy functions: validate everything, then one kernel call.

Order matters for the "nothing written on error" rule: logits, options,
target (including the range check of class indices) and out= are all checked
before the kernel runs.  The kernel computes per-row losses (float64) and,
when asked, the gradient of the reduced loss straight into the output buffer.
Semantics are PyTorch's F.cross_entropy with the class axis last.
"""
import operator

import numpy as np

from . import _loss_kernels as kernels
from ._config import threads_for
from ._validation import (FLOAT64, as_contiguous_rows, as_float_array, as_rows, check_out,
                          check_reduction, real_number)

INT64 = np.dtype(np.int64)
INT64_MAX = np.iinfo(np.int64).max


def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy of `logits` (..., C) against `target`.

    target: integer class indices of shape logits.shape[:-1], or probabilities
    of logits' shape (soft targets).  weight: per-class weights (C,).
    ignore_index: class index whose rows count for nothing (hard targets only).
    reduction: 'mean' (divided by the summed weights of the rows not ignored,
    or by the row count for soft targets), 'sum', or 'none' (per-row losses).
    label_smoothing: eps in [0, 1], mixing the target with the uniform
    distribution.  Returns a float, or an array of shape logits.shape[:-1].
    """
    loss, _ = _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                             want_grad=False, out=None)
    return loss


def cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, out=None):
    """(loss, grad): cross_entropy and its gradient with respect to logits, in one pass.

    grad has logits' shape and compute dtype; for reduction='none' it is the
    gradient of the sum of the per-row losses.  out= (C-contiguous, that
    dtype and shape) receives the gradient and may be `logits` itself.
    Ignored rows get loss 0 and gradient exactly 0.
    """
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          want_grad=True, out=out)


def _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, want_grad, out):
    array = as_float_array(logits, "logits")
    rows = as_rows(array, "logits")
    check_reduction(reduction)
    smoothing = _check_smoothing(label_smoothing)
    ignore_index = _check_ignore_index(ignore_index)
    weights = None if weight is None else _class_weights(weight, rows.shape[1])
    target_array = target if type(target) is np.ndarray else np.asarray(target)
    soft = _is_soft(target_array, array.shape)
    if soft:
        targets = as_contiguous_rows(as_float_array(target_array, "target", array.dtype), "target")
    else:
        targets = _class_indices(target_array, array.shape)

    grad = None
    if want_grad:
        if out is None:
            grad = np.empty(array.shape, array.dtype)
        else:
            grad = check_out(out, array.shape, array.dtype,
                             (("logits", logits), ("target", target), ("weight", weight)), in_place_ok=logits)
        grad_rows = grad.reshape(rows.shape)
    else:
        grad_rows = None
    row_loss = np.empty(rows.shape[0], FLOAT64) if reduction == "none" else None
    mean = reduction == "mean"
    n_threads = threads_for(rows.size)
    if soft:
        loss = kernels.soft_targets(rows, targets, weights, smoothing, mean, row_loss, grad_rows,
                                    n_threads)
    else:
        first_bad, loss = kernels.hard_targets(rows, targets, weights, ignore_index, smoothing, mean,
                                               row_loss, grad_rows, n_threads)
        if first_bad >= 0:
            _raise_bad_class_index(target_array, first_bad, rows.shape[1], ignore_index)
    if row_loss is not None:
        loss = row_loss.reshape(array.shape[:-1]).astype(array.dtype, copy=False)
    return loss, grad


def _raise_bad_class_index(target, flat_position, n_classes, ignore_index):
    position = np.unravel_index(flat_position, target.shape) if target.ndim else ()
    raise ValueError(f"`target` has class index {target[position]} at position {position}, "
                     f"outside [0, {n_classes}) and not ignore_index ({ignore_index})")


def _check_smoothing(label_smoothing):
    value = real_number(label_smoothing, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1], got {label_smoothing!r}")
    return value


def _check_ignore_index(ignore_index):
    if type(ignore_index) is not int:
        if isinstance(ignore_index, (bool, np.bool_)) or not hasattr(ignore_index, "__index__"):
            raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}")
        ignore_index = operator.index(ignore_index)
    if not -INT64_MAX - 1 <= ignore_index <= INT64_MAX:
        raise ValueError(f"`ignore_index` must fit in int64, got {ignore_index!r}")
    return ignore_index


def _class_weights(weight, n_classes):
    weights = as_float_array(weight, "weight", FLOAT64)
    if weights.shape != (n_classes,):
        raise ValueError(f"`weight` must have shape ({n_classes},), got {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError(f"`weight` must be finite, got {weights}")
    return np.ascontiguousarray(weights)


def _is_soft(target, logits_shape):
    """True for probability targets, False for class indices; TypeError otherwise."""
    kind = target.dtype.kind
    if kind in "iu":
        return False
    if kind == "f":
        if target.shape != logits_shape:
            raise TypeError(f"`target` of float dtype must be probabilities of the logits' shape "
                            f"{logits_shape}, got shape {target.shape}; class indices must be integers")
        return True
    raise TypeError(f"`target` must hold integer class indices or float probabilities, "
                    f"got dtype {target.dtype}")


def _class_indices(target, logits_shape):
    """Flat int64 class indices, shape-checked (values are checked by the kernel)."""
    if target.shape != logits_shape[:-1]:
        raise ValueError(f"`target` of class indices must have shape {logits_shape[:-1]}, "
                         f"got {target.shape}")
    if target.dtype.kind == "u" and target.size and target.max() > INT64_MAX:
        position = np.unravel_index(int(np.argmax(target > INT64_MAX)), target.shape)
        raise ValueError(f"`target` has class index {target[position]} at position {position}, "
                         f"outside [0, {logits_shape[-1]})")
    index = target if target.ndim == 1 else target.reshape(-1)
    if index.dtype is not INT64 or not index.flags.c_contiguous:
        index = np.ascontiguousarray(index, dtype=INT64)
    return index
