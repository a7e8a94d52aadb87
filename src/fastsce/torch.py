"""fastsce for PyTorch: torch.nn.functional.cross_entropy's signature, fastsce's kernel.

    import fastsce.torch as fst
    loss = fst.cross_entropy(logits, target)        # where F.cross_entropy was
    criterion = fst.CrossEntropyLoss(label_smoothing=0.1)
    loss = fst.linear_cross_entropy(h, head.weight, target)  # F.linear_cross_entropy

Needs PyTorch (``pip install "fastsce[torch]"``); ``import fastsce`` never imports it.

Design: one custom operator, ``fastsce::cross_entropy`` (torch.library.custom_op, so
it works under torch.compile and torch.func), takes logits with the class axis last
and returns the reduced loss together with its gradient, both from one pass of
fastsce's kernel over CPU memory shared with the tensors (no copy of contiguous
float32/float64 logits).  Its autograd formula keeps that one gradient-sized tensor
between forward and backward (nothing when the logits do not require grad) and
multiplies it by grad_output, without an extra pass when grad_output is 1.  The
Python wrapper maps PyTorch's layout (class axis at dim 1 for (N, C, d1, ...)) and
legacy arguments (size_average, reduce) onto it, and computes float16/bfloat16 in
float32, returning the input's dtype as PyTorch does: in eager mode fastsce reads the
16-bit logits where they are (bfloat16 through ml_dtypes, when it is installed), and the
float32 gradient becomes input.grad's dtype as autograd casts it (the float32 copy of
the logits is made only under torch.compile, or for bfloat16 without ml_dtypes).
fastsce uses as many threads as torch.get_num_threads() (unless
fastsce.set_num_threads says otherwise), so the two pools never run more threads than
PyTorch was given.

linear_cross_entropy (F.linear_cross_entropy's signature) is an autograd.Function over
fastsce.linear_cross_entropy_with_grad: the forward pass computes the loss and the three
gradients chunk by chunk, without the logits, keeps the gradients (input-, weight- and
bias-sized, not logits-sized) and backward scales them by grad_output.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np
import torch

from . import _config, _linear, _loss

__all__ = ["CrossEntropyLoss", "cross_entropy", "linear_cross_entropy"]

#: logits computed in their own dtype; others in float32 (half precision, as PyTorch)
_NATIVE = (torch.float32, torch.float64)
#: half precision read as it is (no float32 copy), computed in float32: float16 always,
#: bfloat16 when ml_dtypes (NumPy's bfloat16) is importable; in eager mode (the custom
#: operator torch.compile traces takes a float32 copy)
_HALF = (torch.float16, torch.bfloat16)


@functools.cache
def _has_ml_dtypes() -> bool:
    return importlib.util.find_spec("ml_dtypes") is not None


def _reads_as_is(input: torch.Tensor) -> bool:
    """Whether fastsce reads input's memory itself (else a float32 copy)."""
    if input.dtype in _NATIVE:
        return True
    return (
        input.dtype in _HALF
        and (input.dtype == torch.float16 or _has_ml_dtypes())
        and not torch.compiler.is_compiling()
    )


def _numpy(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    """tensor.numpy() on the same memory, bfloat16 as ml_dtypes.bfloat16."""
    array: np.ndarray[Any, Any]
    if tensor.dtype == torch.bfloat16:
        ml_dtypes = importlib.import_module("ml_dtypes")  # only here: optional
        array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
        array = tensor.numpy()
    return array


def _compute(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    options: dict[str, Any],
    want_grad: bool,
    in_place: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient of the reduced loss) of logits (..., C), class axis last, by one
    fastsce call on the tensors' memory; the gradient is written over the logits when
    in_place, and is an empty tensor when want_grad is False.  fastsce's threads
    default to PyTorch's (one pool's worth of threads, no oversubscription)."""
    x = _numpy(logits.detach())
    t = target.detach().numpy()
    w = None if weight is None else weight.detach().numpy()
    with _config.default_threads(torch.get_num_threads()):
        if not want_grad:
            loss = _loss.cross_entropy(x, t, weight=w, **options)
            gradient = logits.new_empty(0)
        elif in_place:
            loss, _ = _loss.cross_entropy_with_grad(x, t, weight=w, out=x, **options)
            gradient = logits.detach()
        else:
            loss, grad = _loss.cross_entropy_with_grad(x, t, weight=w, **options)
            gradient = torch.from_numpy(grad)
    if isinstance(loss, np.ndarray):  # reduction="none": the per-row losses, no copy
        return torch.from_numpy(loss), gradient
    return torch.tensor(loss, dtype=logits.dtype), gradient


def _scaled(
    grad: torch.Tensor, grad_loss: torch.Tensor, reduction: str, in_place: bool
) -> torch.Tensor:
    """The saved gradient times grad_output (per row for "none"): no pass at all for the
    usual loss.backward() in eager mode (grad_output 1); a new tensor otherwise, so that
    backward can run again (retain_graph), except for inplace_backward, whose storage is
    the logits' and is scaled where it is."""
    if reduction == "none":  # row i's gradient is that of loss_i
        factor = grad_loss.unsqueeze(-1)
    elif torch.compiler.is_compiling() or grad_loss.item() != 1.0:  # a scalar here
        factor = grad_loss
    else:
        return grad
    return grad.mul_(factor) if in_place else grad * factor


@torch.library.custom_op(  # type: ignore[untyped-decorator]
    "fastsce::cross_entropy", mutates_args=(), device_types="cpu"
)
def _cross_entropy_op(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    temperature: float,
    softcap: float | None,
    z_loss: float,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The operator torch.compile sees: _compute."""
    options = {
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "temperature": temperature,
        "softcap": softcap,
        "z_loss": z_loss,
    }
    return _compute(logits, target, weight, options, want_grad)


@_cross_entropy_op.register_fake  # type: ignore[untyped-decorator]
def _(logits: torch.Tensor, *arguments: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes and dtypes of the outputs, for tracing (torch.compile, fake tensors);
    `arguments` are the operator's after logits (reduction the 4th, want_grad the last)."""
    reduction, want_grad = arguments[3], arguments[-1]
    shape = logits.shape[:-1] if reduction == "none" else ()
    grad = logits.new_empty(logits.shape) if want_grad else logits.new_empty(0)
    return logits.new_empty(shape), grad


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.reduction = inputs[4]
    ctx.save_for_backward(output[1])


def _backward(ctx: Any, grad_loss: torch.Tensor, _grad_of_grad: torch.Tensor) -> tuple[Any, ...]:
    (grad,) = ctx.saved_tensors
    return _scaled(grad, grad_loss, ctx.reduction, False), *([None] * 9)


_cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerCrossEntropy(torch.autograd.Function):  # type: ignore[misc]
    """The same computation for eager mode, where an autograd.Function costs a fraction of
    a custom operator's dispatch (64 x 10: about 60 against 200 us per step); with
    in_place the gradient is written over the logits' storage (inplace_backward)."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        options: dict[str, Any],
        in_place: bool,
    ) -> torch.Tensor:
        loss, gradient = _compute(logits, target, weight, options, True, in_place)
        # saved, not kept on ctx: autograd frees it after backward (unless retain_graph),
        # so the gradient handed back becomes input.grad without a copy
        ctx.save_for_backward(gradient)
        ctx.reduction = options["reduction"]
        ctx.in_place = in_place
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        (gradient,) = ctx.saved_tensors
        grad = _scaled(gradient, grad_loss, ctx.reduction, ctx.in_place)
        return grad, None, None, None, None


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    inplace_backward: bool = False,
) -> torch.Tensor:
    """torch.nn.functional.cross_entropy, computed by fastsce's fused kernel.

    Parameters
    ----------
    input, target, weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As in torch.nn.functional.cross_entropy, in the same positional order: input is
        (C,), (N, C) or (N, C, d1, ...), the class axis at dim 1; target holds class
        indices or probabilities; size_average and reduce are deprecated there and
        mapped the same way (with PyTorch's warning).
    temperature, softcap, z_loss
        fastsce's extras (keyword-only), as in fastsce.cross_entropy.
    inplace_backward : bool, optional
        Write the gradient into input's own storage (no gradient-sized buffer: for large
        vocabularies).  input's values are gone afterwards, so only for logits nothing
        else reads later (the output of a linear layer is such: its backward needs its
        input and weight, not its output).  Eager mode only (an autograd.Function, not
        the custom operator); input must be a contiguous float32/float64 (N, C) or (C,)
        tensor.

    Returns
    -------
    torch.Tensor
        The loss (0-d for "mean" and "sum"), in input's dtype; differentiable with
        respect to input.

    Raises
    ------
    ValueError
        A tensor not on the CPU (use torch.nn.functional.cross_entropy there), and the
        errors of fastsce.cross_entropy.
    TypeError
        The errors of fastsce.cross_entropy.

    Examples
    --------
    >>> import torch, fastsce.torch as fst
    >>> logits = torch.tensor([[3.0, 4.0, 1.0]], requires_grad=True)
    >>> loss = fst.cross_entropy(logits, torch.tensor([1]))
    >>> loss.backward()
    >>> logits.grad.round(decimals=4)
    tensor([[ 0.2595, -0.2946,  0.0351]])
    """
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    _check_cpu("cross_entropy", input=input, target=target, weight=weight)
    logits = input if _reads_as_is(input) else input.float()
    soft = target.is_floating_point()
    if logits.dim() > 2:  # (N, C, d1, ...) -> (N, d1, ..., C)
        logits = torch.movedim(logits, 1, -1)
        if soft:
            target = torch.movedim(target, 1, -1)
    compute_dtype = logits.dtype if logits.dtype in _NATIVE else torch.float32
    if soft and target.dtype != compute_dtype:
        target = target.to(compute_dtype)
    if weight is not None and weight.dtype != torch.float64:
        weight = weight.double()
    options = {
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "temperature": temperature,
        "softcap": softcap,
        "z_loss": z_loss,
    }
    want_grad = input.requires_grad and torch.is_grad_enabled()
    if inplace_backward and (
        input.dtype not in _NATIVE or input.dim() > 2 or not input.is_contiguous()
    ):
        raise ValueError(
            "inplace_backward needs `input` as a contiguous float32 or float64 (N, C) or "
            f"(C,) tensor, got {input.dtype} of shape {tuple(input.shape)}"
        )
    if torch.compiler.is_compiling():
        if inplace_backward:
            raise ValueError("inplace_backward is for eager mode, not under torch.compile")
        loss, _ = _cross_entropy_op(logits, target, weight, *options.values(), want_grad)
    elif want_grad:
        loss = _EagerCrossEntropy.apply(logits, target, weight, options, inplace_backward)
    else:
        loss, _ = _compute(logits, target, weight, options, False)
    return loss if loss.dtype == input.dtype else loss.to(input.dtype)


def _check_cpu(function: str, **tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device.type != "cpu":
            raise ValueError(
                f"fastsce.torch runs on the CPU; `{name}` is on {tensor.device}: use "
                f"torch.nn.functional.{function} for tensors on other devices"
            )


def _linear_compute(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    linear_bias: torch.Tensor | None,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    options: dict[str, Any],
    want_grad: bool,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """(loss, [grad_input, grad_linear_weight, grad_linear_bias] or []) by one fastsce call
    on the tensors' memory, with PyTorch's thread count."""
    arrays = [t if t is None else t.detach().numpy() for t in (linear_bias, weight)]
    arguments = (_numpy(input.detach()), linear_weight.detach().numpy(), target.detach().numpy())
    with _config.default_threads(torch.get_num_threads()):
        if want_grad:
            loss, *grads = _linear.linear_cross_entropy_with_grad(
                *arguments, linear_bias=arrays[0], weight=arrays[1], **options
            )
        else:
            loss = _linear.linear_cross_entropy(
                *arguments, linear_bias=arrays[0], weight=arrays[1], **options
            )
            grads = []
    if isinstance(loss, np.ndarray):
        return torch.from_numpy(loss), [g if g is None else torch.from_numpy(g) for g in grads]
    single = input.dtype in (torch.float32, *_HALF) and linear_weight.dtype == torch.float32
    loss_tensor = torch.tensor(loss, dtype=torch.float32 if single else torch.float64)
    return loss_tensor, [g if g is None else torch.from_numpy(g) for g in grads]


class _LinearCrossEntropy(torch.autograd.Function):  # type: ignore[misc]
    """_linear_compute in the forward pass; backward scales the saved gradients (of the
    reduced loss; of the sum of the losses for "none")."""

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        linear_weight: torch.Tensor,
        linear_bias: torch.Tensor | None,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        options: dict[str, Any],
    ) -> torch.Tensor:
        loss, grads = _linear_compute(
            input, linear_weight, linear_bias, target, weight, options, True
        )
        ctx.save_for_backward(*[g for g in grads if g is not None])
        ctx.has_bias = grads[2] is not None
        ctx.reduction = options["reduction"]
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        if ctx.reduction == "none":
            # the saved gradients are those of the sum of the losses: exact for a
            # grad_output equal on every row (loss.sum(), loss.mean()), not otherwise
            first = grad_loss.flatten()[:1].sum()
            if not bool((grad_loss == first).all()):
                raise RuntimeError(
                    "fastsce.torch.linear_cross_entropy with reduction='none' back-propagates "
                    "a gradient equal on every row (loss.sum(), loss.mean()); weigh the "
                    "classes with `weight` or reduce with 'sum' instead"
                )
            grad_loss = first
        grads = [_scaled(g, grad_loss, "sum", False) for g in ctx.saved_tensors]
        return grads[0], grads[1], grads[2] if ctx.has_bias else None, None, None, None


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    memory_budget: float | None = None,
) -> torch.Tensor:
    """torch.nn.functional.linear_cross_entropy, computed by fastsce without the logits.

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing
        As in torch.nn.functional.linear_cross_entropy: input (..., H), linear_weight
        (V, H), class indices of shape input.shape[:-1] or probabilities (..., V);
        ignore_index None means -100.
    options : None
        PyTorch's chunking options; fastsce chunks by `memory_budget` instead, so only
        None is accepted.
    temperature, softcap, z_loss, memory_budget
        fastsce's extras, as in fastsce.linear_cross_entropy.

    Returns
    -------
    torch.Tensor
        The loss (0-d for "mean" and "sum"), in the compute dtype of input and
        linear_weight (float32 or float64; half precision is computed in float32 and
        returned in input's dtype); differentiable with respect to input, linear_weight
        and linear_bias.  With reduction "none", backward accepts a gradient equal on
        every row (loss.sum(), loss.mean()).

    Raises
    ------
    ValueError
        A tensor not on the CPU, `options` given, and the errors of
        fastsce.linear_cross_entropy.
    TypeError
        The errors of fastsce.linear_cross_entropy.

    Examples
    --------
    >>> import torch, fastsce.torch as fst
    >>> h = torch.tensor([[1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    >>> head = torch.nn.Linear(2, 3)
    >>> loss = fst.linear_cross_entropy(h, head.weight, torch.tensor([2, 0]),
    ...                                 linear_bias=head.bias)
    >>> loss.backward()
    >>> h.grad.shape, head.weight.grad.shape, head.bias.grad.shape
    (torch.Size([2, 2]), torch.Size([3, 2]), torch.Size([3]))
    """
    _check_cpu(
        "linear_cross_entropy",
        input=input,
        linear_weight=linear_weight,
        target=target,
        linear_bias=linear_bias,
        weight=weight,
    )
    if options is not None:
        raise ValueError(
            "fastsce.torch.linear_cross_entropy chunks by `memory_budget` (bytes of logits "
            "held at once), not by PyTorch's `options`: pass options=None"
        )
    # 16-bit input is read as it is (fastsce widens it a chunk of rows at a time)
    x = input if _reads_as_is(input) else input.float()
    w = linear_weight if linear_weight.dtype in _NATIVE else linear_weight.float()
    bias = linear_bias
    if bias is not None and bias.dtype not in _NATIVE:
        bias = bias.float()
    if weight is not None and weight.dtype != torch.float64:
        weight = weight.double()
    compute_dtype = x.dtype if x.dtype in _NATIVE else torch.float32
    if target.is_floating_point() and target.dtype != compute_dtype:
        target = target.to(compute_dtype)
    loss_options = {
        "ignore_index": -100 if ignore_index is None else ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "temperature": temperature,
        "softcap": softcap,
        "z_loss": z_loss,
        "memory_budget": memory_budget,
    }
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, linear_weight, linear_bias)
    ):
        loss = _LinearCrossEntropy.apply(x, w, bias, target, weight, loss_options)
    else:
        loss, _ = _linear_compute(x, w, bias, target, weight, loss_options, False)
    return loss if input.dtype in _NATIVE else loss.to(input.dtype)


class CrossEntropyLoss(torch.nn.Module):  # type: ignore[misc]
    """torch.nn.CrossEntropyLoss computed by fastsce's kernel (weight kept as a buffer).

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As in torch.nn.CrossEntropyLoss.
    temperature, softcap, z_loss
        fastsce's extras (keyword-only).

    Examples
    --------
    >>> import torch, fastsce.torch as fst
    >>> criterion = fst.CrossEntropyLoss(label_smoothing=0.1)
    >>> round(criterion(torch.tensor([[3.0, 4.0, 1.0]]), torch.tensor([1])).item(), 4)
    0.4823
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        temperature: float = 1.0,
        softcap: float | None = None,
        z_loss: float = 0.0,
    ) -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.temperature = temperature
        self.softcap = softcap
        self.z_loss = z_loss

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            temperature=self.temperature,
            softcap=self.softcap,
            z_loss=self.z_loss,
        )
