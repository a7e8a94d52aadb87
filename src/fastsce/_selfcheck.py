"""Self-check run by ``python -m fastsce``: fastsce against its float64 oracle.

A handful of cases that touch every kernel path (hard and soft targets,
weights, smoothing, ignore_index, each reduction, both dtypes, row lengths
that are and are not multiples of the vector width, in-place gradient) plus
the worked example z = [3, 4, 1].  Each case returns the worst relative error and is
compared with the dtype's tolerance: 1e-12 for float64, 1e-5 for float32.
Losses and probabilities are compared element by element; gradients, whose
entries s_j - y_j may cancel to nearly 0, relative to their largest entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _loss, _softmax, reference

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def relative_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(actual - expected) / scale, initial=0.0))


def gradient_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """max |actual - expected| / max |expected| (norm-wise relative error)."""
    expected = np.asarray(expected, np.float64)
    largest: float = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0)) / largest


def worked_example() -> tuple[float, float]:
    """z = [3, 4, 1], label 1: the published softmax and gradient (11 decimals), to 1e-10."""
    z = np.array([3.0, 4.0, 1.0])
    loss, grad = _loss.cross_entropy_with_grad(z, 1)
    error = np.max(
        np.abs(
            np.concatenate(
                [
                    _softmax.softmax(z) - [0.25949646034, 0.70538451269, 0.03511902695],
                    grad - [0.25949646034, -0.29461548731, 0.03511902695],
                    [loss + np.log(0.70538451269)],
                ]
            )
        )
    )
    return float(error), 1e-10


def loss_case(
    dtype: type[np.floating[Any]],
    shape: tuple[int, ...],
    soft: bool = False,
    **options: Any,
) -> tuple[float, float]:
    rng = np.random.default_rng(sum(shape))
    logits = (4 * rng.standard_normal(shape)).astype(dtype)
    if soft:
        target = rng.random(shape).astype(dtype)
        target /= target.sum(axis=-1, keepdims=True)
    else:
        target = rng.integers(0, shape[-1], shape[:-1])
        target.flat[::5] = options.get("ignore_index", -100)
    if options.get("weight") == "random":
        options["weight"] = rng.random(shape[-1]) + 0.5
    loss, grad = _loss.cross_entropy_with_grad(logits, target, **options)
    in_place = logits.copy()
    _loss.cross_entropy_with_grad(in_place, target, out=in_place, **options)
    expected_loss, expected_grad = reference.cross_entropy_with_grad(
        logits.astype(np.float64), target, **options
    )
    error = max(
        relative_error(loss, expected_loss),
        gradient_error(grad, expected_grad),
        gradient_error(in_place, expected_grad),
    )
    return error, TOLERANCE[dtype]


def softmax_case(dtype: type[np.floating[Any]], shape: tuple[int, ...]) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    x64 = x.astype(np.float64)
    probabilities = _softmax.softmax(x)
    tiny = probabilities > np.finfo(dtype).tiny  # exp flushes sub-normal results to 0
    error = max(
        relative_error(probabilities[tiny], reference.softmax(x64)[tiny]),
        relative_error(_softmax.log_softmax(x), reference.log_softmax(x64)),
        relative_error(_softmax.logsumexp(x), reference.logsumexp(x64)),
    )
    return error, TOLERANCE[dtype]


def cases() -> Iterator[tuple[str, Callable[[], tuple[float, float]]]]:
    """(name, thunk) for every check."""
    yield "the worked example z=[3,4,1], label 1", worked_example
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        for shape in [(7, 3), (64, 10), (33, 1003)]:
            yield (
                f"{name} softmax/log_softmax/logsumexp {shape}",
                partial(softmax_case, dtype, shape),
            )
            yield f"{name} cross-entropy {shape}", partial(loss_case, dtype, shape)
        options: list[tuple[str, dict[str, Any]]] = [
            ("sum, weights", {"reduction": "sum", "weight": "random"}),
            ("none, smoothing 0.1", {"reduction": "none", "label_smoothing": 0.1}),
            (
                "mean, weights + smoothing + ignore_index 0",
                {"weight": "random", "label_smoothing": 0.2, "ignore_index": 0},
            ),
        ]
        for label, option in options:
            yield (
                f"{name} cross-entropy (40, 77) {label}",
                partial(loss_case, dtype, (40, 77), **option),
            )
        yield (
            f"{name} soft targets (40, 77) + weights + smoothing",
            partial(loss_case, dtype, (40, 77), soft=True, weight="random", label_smoothing=0.1),
        )


def run(
    print_line: Callable[[str], object] = print, record: list[dict[str, Any]] | None = None
) -> bool:
    """Run every check, print one aligned line each (and append {name, error, tolerance,
    passed} to `record` when given); True when all pass."""
    all_cases = list(cases())
    width = max(len(name) for name, _ in all_cases)
    all_passed = True
    for name, check in all_cases:
        error, tolerance = check()
        passed = error <= tolerance
        all_passed &= passed
        if record is not None:
            record.append({"name": name, "error": error, "tolerance": tolerance, "passed": passed})
        print_line(
            f"  {'ok  ' if passed else 'FAIL'} {name:<{width}}  error {error:.1e} "
            f"(tol {tolerance:.0e})"
        )
    return all_passed
