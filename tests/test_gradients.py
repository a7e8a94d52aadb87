"""Analytic gradients against central finite differences, in float64.

d L / d x_k ~ (L(x + h e_k) - L(x - h e_k)) / (2 h).  The difference quotient
has truncation error h^2 |L'''| / 6 and rounding error ~ eps |L| / h; with
h = 1e-5 and |L|, |L'''| of order 1 both are below 1e-9, so FD_TOL below
(1e-7 absolute plus 1e-6 relative) is a bound on the quotient's own error, not a
loosened tolerance on fastsce.
"""

import numpy as np
import pytest

import fastsce
from _helpers import (
    FD_ATOL,
    FD_RTOL,
    LOG_SUM_ATOL,
    assert_close,
    central_difference,
    make_hard_target,
    make_logits,
    make_soft_target,
    rng_for,
)

SHAPES = [(5,), (4, 3), (2, 3, 4)]

OPTION_SETS = {
    "plain": {},
    "weight": {"weight": "random"},
    "label_smoothing": {"label_smoothing": 0.2},
    "weight_smoothing": {"weight": "random", "label_smoothing": 0.35},
    "ignore_index": {"ignore_index": 1},
    "everything": {"weight": "random", "label_smoothing": 0.1, "ignore_index": -100},
}


def options_for(kind, n_classes, rng):
    options = dict(OPTION_SETS[kind])
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, n_classes)
    return options


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", list(OPTION_SETS))
@pytest.mark.parametrize("target_kind", ["hard", "soft"])
def test_cross_entropy_gradient_matches_finite_differences(target_kind, kind, reduction, shape):
    rng = rng_for("fd", target_kind, kind, reduction, shape)
    logits = make_logits(shape, np.float64, rng=rng, scale=1.5)
    options = options_for(kind, shape[-1], rng)
    if target_kind == "soft":
        options.pop("ignore_index", None)
        target = make_soft_target(shape, np.float64, rng)
    else:
        target = make_hard_target(shape[:-1], shape[-1], rng)
        if "ignore_index" in options:
            target.reshape(-1)[::2] = options["ignore_index"]

    def total_loss(x):
        # for reduction='none' the gradient is that of the sum of the row losses
        return float(np.sum(fastsce.cross_entropy(x, target, reduction=reduction, **options)))

    _loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    if np.isnan(total_loss(logits)):
        # every row ignored and reduction='mean': the loss is NaN, the gradient exactly 0
        assert np.all(grad == 0)
        return
    np.testing.assert_allclose(
        grad, central_difference(total_loss, logits), rtol=FD_RTOL, atol=FD_ATOL
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ignored_rows_have_zero_gradient_and_do_not_move_the_loss(shape):
    rng = rng_for("ignored fd", shape)
    logits = make_logits(shape, np.float64, rng=rng)
    target = make_hard_target(shape[:-1], shape[-1], rng)
    if target.ndim:
        target.reshape(-1)[0] = -100
    _, grad = fastsce.cross_entropy_with_grad(logits, target, reduction="sum")
    ignored = target == -100
    assert np.all(grad[ignored] == 0)
    numeric = central_difference(
        lambda x: fastsce.cross_entropy(x, target, reduction="sum"), logits
    )
    assert np.all(numeric[ignored] == 0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_softmax_backward_matches_finite_differences(shape, temperature):
    """grad_x of L(softmax(x)) with L(s) = sum c s + 0.5 sum s^2, so dL/ds = c + s."""
    rng = rng_for("backward fd", shape)
    logits = make_logits(shape, np.float64, rng=rng)
    c = rng.standard_normal(shape)

    def scalar(x):
        s = fastsce.softmax(x, temperature=temperature)
        return float(np.sum(c * s) + 0.5 * np.sum(s * s))

    s = fastsce.softmax(logits, temperature=temperature)
    # softmax(x / T): the chain rule adds the factor 1 / T
    analytic = fastsce.softmax_backward(c + s, s) / temperature
    np.testing.assert_allclose(
        analytic, central_difference(scalar, logits), rtol=FD_RTOL, atol=FD_ATOL
    )


@pytest.mark.parametrize("n_classes", [1, 2, 5, 9])
def test_softmax_jacobian_matches_finite_differences(n_classes):
    logits = make_logits((n_classes,), np.float64, rng=rng_for("jac fd", n_classes))
    jac = fastsce.softmax_jacobian(fastsce.softmax(logits))
    for j in range(n_classes):
        # row j of J is the gradient of s_j
        numeric = central_difference(lambda x, j=j: fastsce.softmax(x)[j], logits)
        np.testing.assert_allclose(jac[j], numeric, rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_logsumexp_gradient_is_softmax(shape):
    logits = make_logits(shape, np.float64, rng=rng_for("lse fd", shape))
    numeric = central_difference(lambda x: float(np.sum(fastsce.logsumexp(x))), logits)
    np.testing.assert_allclose(fastsce.softmax(logits), numeric, rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (5, 10), (3, 4, 1000)], ids=str)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 4.0])
def test_log_softmax_softmax_logsumexp_are_consistent(shape, dtype, temperature):
    # quarter-integer logits: x + 3 below is exact, so a shifted row is the same row
    x = np.round(4 * make_logits(shape, dtype, rng=rng_for("consistency", shape, dtype))) / 4
    s = fastsce.softmax(x, temperature=temperature)
    log_s = fastsce.log_softmax(x, temperature=temperature)
    lse = fastsce.logsumexp(x, keepdims=True, temperature=temperature)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    # exp(log_softmax) = softmax (no cancellation: relative comparison)
    np.testing.assert_allclose(np.exp(log_s.astype(np.float64)), s, rtol=rtol)
    # log_softmax = x / T - logsumexp(x / T): rounding is relative to the terms |x / T|
    # and |lse|, plus LOG_SUM_ATOL for the log of the sum (see _helpers.py)
    x64 = x.astype(np.float64) / temperature
    expected = x64 - lse.astype(np.float64)
    assert_close(log_s, expected, rtol, magnitude=np.abs(x64) + np.abs(lse), atol=LOG_SUM_ATOL)
    # rows sum to one (a sum of C positive terms: rounding grows with C at most)
    np.testing.assert_allclose(
        s.sum(axis=-1, dtype=np.float64), 1.0, rtol=shape[-1] * np.finfo(dtype).eps
    )
    # softmax is invariant to adding a constant to a row: x_j - max x is unchanged, bit for bit
    shifted = fastsce.softmax(x + dtype(3.0), temperature=temperature)
    np.testing.assert_array_equal(shifted, s)
    np.testing.assert_array_equal(
        fastsce.log_softmax(x - dtype(3.0), temperature=temperature), log_s
    )
