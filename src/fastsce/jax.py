"""fastsce for JAX: optax's layout (class axis last), fastsce's kernel inside jax.jit.

    import fastsce.jax as fsj
    loss = fsj.cross_entropy(logits, labels)   # optax...with_integer_labels(...).mean()

Needs JAX (``pip install "fastsce[jax]"``); ``import fastsce`` never imports it.

Design: one XLA FFI target, ``fastsce_cross_entropy``, whose handler is compiled into
fastsce's kernel module (``_kernels.xla_ffi_cross_entropy``, written against XLA's
versioned C API): under jax.jit, XLA calls the kernel on its own CPU buffers, with no
copy and no Python, on one of its threads (jax.ffi.ffi_call, not a callback).  One
pass computes the loss and, when JAX differentiates, the gradient of the reduced loss
with it; the gradient is the residual of a jax.custom_vjp, whose backward multiplies it
by the cotangent (a scalar, or one per row for reduction="none"; XLA drops the product
when the cotangent is the constant 1 of jax.grad).  Everything that shapes, dtypes and
the static options tell is checked here, at trace time, with fastsce.cross_entropy's
messages; what only the values tell (a class index out of range, a non-finite
probability or class weight) is checked by the handler, which returns an XLA error with
the same message (JAX raises it as a JaxRuntimeError, a RuntimeError).  float16 and
bfloat16 logits are computed in float32 and the loss returned in their dtype.  Threads:
the handler uses at most the threads fastsce would use (fastsce.set_num_threads, read
when it runs), fewer while other XLA calls of it run: several concurrent calls never
start more threads than one.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels, _loss, _validation
from ._keywords import keyword_arguments, keyword_signature

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["cross_entropy"]

#: the XLA FFI target (one handler, for the CPU)
TARGET = "fastsce_cross_entropy"
jax.ffi.register_ffi_target(TARGET, _kernels.xla_ffi_cross_entropy(), platform="cpu")

#: the handler's codes for the reductions (csrc/fsce_xla_ffi.h)
_REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}
#: logits computed in their own dtype; other floats in float32 (half precision)
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


class _Options(NamedTuple):
    """The static, validated options of one call (hashable: a custom_vjp static argument)."""

    reduction: str
    ignore_index: int
    label_smoothing: float
    inv_temperature: float
    softcap: float  # 0: none
    z_loss: float


def _kernel(
    logits: jax.Array, target: jax.Array, weight: jax.Array, options: _Options, want_grad: bool
) -> Any:
    """The FFI call: (loss,) or (loss, gradient of the reduced loss)."""
    loss_shape = logits.shape[:-1] if options.reduction == "none" else ()
    results = [jax.ShapeDtypeStruct(loss_shape, logits.dtype)]
    if want_grad:
        results.append(jax.ShapeDtypeStruct(logits.shape, logits.dtype))
    call = jax.ffi.ffi_call(TARGET, results, vmap_method="sequential")
    return call(
        logits,
        target,
        weight,
        ignore_index=np.int64(options.ignore_index),
        reduction=np.int64(_REDUCTION_CODES[options.reduction]),
        label_smoothing=np.float64(options.label_smoothing),
        inv_temperature=np.float64(options.inv_temperature),
        softcap=np.float64(options.softcap),
        z_loss=np.float64(options.z_loss),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _cross_entropy(
    logits: jax.Array, target: jax.Array, weight: jax.Array, options: _Options
) -> jax.Array:
    """The loss alone, when nothing differentiates it."""
    return _kernel(logits, target, weight, options, want_grad=False)[0]


def _forward(
    logits: jax.Array, target: jax.Array, weight: jax.Array, options: _Options
) -> tuple[jax.Array, jax.Array]:
    loss, grad = _kernel(logits, target, weight, options, want_grad=True)
    return loss, grad


def _backward(options: _Options, grad: jax.Array, cotangent: jax.Array) -> tuple[Any, ...]:
    """d(c . loss)/d(logits) = c grad, with c one number per row for "none"; target and
    weight are constants (no cotangent)."""
    factor = cotangent[..., None] if options.reduction == "none" else cotangent
    return grad * factor, None, None


_cross_entropy.defvjp(_forward, _backward)


def _is_traced(value: object) -> bool:
    return isinstance(value, jax.core.Tracer)


def _default_float() -> np.dtype[Any]:
    """JAX's default float: float64 with x64 enabled, else float32."""
    dtype: np.dtype[Any] = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    return dtype


def _compute_dtype(dtype: np.dtype[Any], name: str) -> np.dtype[Any]:
    """float32/float64 as they are, other floats in float32, integers in JAX's float (float64
    with x64 enabled); TypeError for anything else (fastsce's rule and message)."""
    if dtype in _NATIVE:
        return dtype
    if jnp.issubdtype(dtype, jnp.floating):
        return np.dtype(np.float32)
    if jnp.issubdtype(dtype, jnp.integer):
        return _default_float()
    return _validation.float_dtype_for(dtype, name)  # bool, complex, ...: its TypeError


def _checked_logits(logits: Any) -> jax.Array:
    x = logits if isinstance(logits, jax.Array) else jnp.asarray(logits)
    if not _is_traced(x) and any(device.platform != "cpu" for device in x.devices()):
        raise ValueError(
            f"fastsce.jax runs on the CPU; `logits` is on {x.devices()}: use optax's "
            "softmax_cross_entropy on other devices"
        )
    if not x.shape:
        raise ValueError("`logits` must have a class axis, got a 0-d array")
    if x.shape[-1] == 0:
        raise ValueError(f"`logits` has zero classes (shape {x.shape})")
    return x


def _checked_target(target: Any, logits_shape: tuple[int, ...], compute: np.dtype[Any]) -> Any:
    """Class indices as they are (any integer type: the handler widens them), or
    probabilities in the compute dtype; fastsce.cross_entropy's errors otherwise."""
    t = target if isinstance(target, jax.Array) else jnp.asarray(target)
    if jnp.issubdtype(t.dtype, jnp.integer):
        if t.shape != logits_shape[:-1]:
            raise ValueError(_loss.class_index_shape_message(t.shape, logits_shape))
        return t
    if jnp.issubdtype(t.dtype, jnp.floating):
        if t.shape != logits_shape:
            raise TypeError(_loss.float_target_shape_message(logits_shape, t.shape))
        return t.astype(compute)
    raise TypeError(_loss.target_dtype_message(t.dtype))


def _checked_weight(weight: Any, n_classes: int) -> jax.Array:
    """weight in JAX's float dtype, shape-checked; values are checked here when known
    (LossOptions) and by the handler when traced."""
    dtype = _default_float()
    if weight is None:
        return jnp.zeros((0,), dtype)
    w = weight if isinstance(weight, jax.Array) else jnp.asarray(weight)
    _compute_dtype(w.dtype, "weight")
    if w.shape != (n_classes,):
        shape = f"({n_classes},)" if w.ndim == 1 else "(C,)"
        raise ValueError(f"`weight` must have shape {shape}, got {w.shape}")
    return w.astype(dtype)


@keyword_signature(_loss.LossKeywords, _loss.LOSS_DEFAULTS)
def cross_entropy(logits: Any, target: Any, **options: Unpack[_loss.LossKeywords]) -> jax.Array:
    """Softmax cross-entropy of JAX arrays by fastsce's fused kernel, for jax.jit,
    jax.grad / jax.value_and_grad and jax.vmap.

    Parameters
    ----------
    logits : jax.Array or array_like
        Shape (..., C), the class axis last (optax's layout).  float32 and float64 are
        computed in their own dtype, float16 and bfloat16 in float32, integers in JAX's
        default float.
    target : jax.Array or array_like
        Integer class indices of shape logits.shape[:-1], or probabilities of logits'
        shape (a float dtype).
    weight : jax.Array or array_like, optional
        Per-class weights (C,), finite, in JAX's default float dtype (float32 unless
        x64 is enabled).
    ignore_index, reduction, label_smoothing, temperature, softcap, z_loss
        As in fastsce.cross_entropy; static Python values (part of what jit traces).

    Returns
    -------
    jax.Array
        The loss: 0-d for "mean" and "sum", logits.shape[:-1] for "none"; in logits'
        dtype (JAX's default float for integer logits).  Differentiable with respect to
        logits (target and weight are constants); reverse mode only (jax.custom_vjp).

    Raises
    ------
    TypeError, ValueError
        As fastsce.cross_entropy, at trace time, for everything shapes, dtypes and the
        options tell; logits on a device other than the CPU (ValueError).
    jax.errors.JaxRuntimeError
        When the result is used, for what only the values tell: a class index out of
        range, a non-finite probability or class weight (fastsce's message).

    Notes
    -----
    Inside jax.jit the kernel runs on XLA's buffers (an XLA FFI call, no copy); the
    gradient comes from the same pass as the loss.  Under jax.vmap the kernel runs once
    per batch element.  The kernel uses fastsce.get_num_threads() threads (large inputs
    only), fewer while other calls of it run in XLA at the same time.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np, fastsce.jax as fsj
    >>> logits = jnp.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]])
    >>> step = jax.jit(jax.value_and_grad(fsj.cross_entropy))
    >>> loss, grad = step(logits, jnp.array([1, 0]))
    >>> round(float(loss), 4)
    0.359
    >>> print(np.asarray(grad).round(4))
    [[ 0.1297 -0.1473  0.0176]
     [-0.1543  0.0771  0.0771]]
    """
    given = keyword_arguments(cross_entropy, options, _loss.LOSS_DEFAULTS)
    x = _checked_logits(logits)
    compute = _compute_dtype(x.dtype, "logits")
    weight = given["weight"]
    given["weight"] = None if weight is None or _is_traced(weight) else np.asarray(weight)
    validated = _loss.LossOptions(**given)
    _validation.check_inverse_temperature(validated.inv_temperature, compute)
    t = _checked_target(target, x.shape, compute)
    w = _checked_weight(weight, x.shape[-1])
    v = validated
    static = _Options(
        v.reduction, v.ignore_index, v.smoothing, v.inv_temperature, v.softcap, v.z_loss
    )
    loss = _cross_entropy(x.astype(compute), t, w, static)
    return loss if jnp.issubdtype(x.dtype, jnp.integer) else loss.astype(x.dtype)
