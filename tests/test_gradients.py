"""Analytic gradients against central finite differences, in float64.

d L / d x_k ~ (L(x + h e_k) - L(x - h e_k)) / (2 h).  The difference quotient
has truncation error h^2 |L'''| / 6 and rounding error ~ eps |L| / h; with
h = 1e-5 and |L|, |L'''| of order 1 both are below 1e-9, so FD_TOL below
(1e-7 absolute plus 1e-6 relative) is a bound on the quotient's own error, not a
loosened tolerance on fastsce.
"""

import math

import numpy as np
import pytest

import fastsce
from _helpers import (
    BASE_OPTIONS,
    FD_ATOL,
    FD_RTOL,
    LOG_SUM_ATOL,
    REDUCTIONS,
    assert_close,
    central_difference,
    make_case,
    make_hard_target,
    make_logits,
    make_soft_target,
    rng_for,
)

INF = np.inf
SHAPES = [(5,), (4, 3), (2, 3, 4)]

#: the PyTorch-semantics option sets of _helpers (weights drawn per case)
OPTION_SETS = BASE_OPTIONS


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


#: a backward layer checked through a scalar loss L of the forward output u (random c):
#: (forward, backward, L(u, c), dL/du (u, c))
LAYERS = {
    "softmax, L = c.s + s.s/2": (
        fastsce.softmax,
        fastsce.softmax_backward,
        lambda u, c: np.sum(c * u) + 0.5 * np.sum(u * u),
        lambda u, c: c + u,
    ),
    "softmax, L = c.s^2 + s^3/3": (
        fastsce.softmax,
        fastsce.softmax_backward,
        lambda u, c: np.sum(c * u * u) + np.sum(u**3) / 3,
        lambda u, c: 2 * c * u + u * u,
    ),
    "log_softmax, L = c.u + u.u/4": (
        fastsce.log_softmax,
        fastsce.log_softmax_backward,
        lambda u, c: np.sum(c * u) + 0.25 * np.sum(u * u),
        lambda u, c: c + u / 2,
    ),
}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_backward_layers_match_finite_differences(layer, shape, temperature):
    """grad_x of L(forward(x / T)) = backward(dL/du, u) / T (the chain rule's 1 / T)."""
    forward, backward, loss, loss_gradient = LAYERS[layer]
    rng = rng_for("backward fd", layer, shape, temperature)
    logits = make_logits(shape, np.float64, rng=rng)
    c = rng.standard_normal(shape)

    def scalar(x):
        return float(loss(forward(x, temperature=temperature), c))

    u = forward(logits, temperature=temperature)
    analytic = backward(loss_gradient(u, c), u) / temperature
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


# ---------------------------------------------------------------------------
# gradients against central finite differences (float64)


FD_TRANSFORMS = ["cold", "hot", "softcap", "softcap_cold", "z_loss", "all"]
#: (kind, base, masked): with label smoothing a masked class in a kept row makes that
#: row's loss inf (no finite differences), so "everything" masks only its ignored row
FD_CASES = [
    (kind, base, masked)
    for kind, base in [
        ("hard", "plain"),
        ("hard", "weight_smoothing"),
        ("hard", "everything"),
        ("soft", "plain"),
        ("soft", "weight_smoothing"),
    ]
    for masked in (False, True)
    if not (masked and base == "weight_smoothing")
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", FD_TRANSFORMS)
@pytest.mark.parametrize(
    "kind, base, masked",
    FD_CASES,
    ids=[f"{k}-{b}-{'masked' if m else 'finite'}" for k, b, m in FD_CASES],
)
def test_gradient_matches_finite_differences(kind, base, transform, reduction, masked):
    logits, target, options = make_case(kind, base, transform, False, np.float64, (4, 5), "fd")
    if masked and not options.get("label_smoothing"):
        # one masked class in a kept row (never a hard target; no mass for soft targets)
        row = 1
        column = 0 if kind == "hard" and target[row] != 0 else 4
        if kind == "hard" and target[row] == column:
            column = 3
        logits[row, column] = -INF
        if kind == "soft":
            target[row, column] = 0.0
            target[row] /= target[row].sum()
    if kind == "hard" and "ignore_index" in options:
        target[2] = options["ignore_index"]
        if masked:
            logits[2] = -INF  # an ignored row of -inf: no effect on the loss

    def total_loss(x):
        # for reduction='none' the gradient is that of the sum of the row losses
        return float(np.sum(fastsce.cross_entropy(x, target, reduction=reduction, **options)))

    _, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    assert math.isfinite(total_loss(logits))
    # at a -inf logit x +- h is -inf: the quotient is 0, as the gradient must be
    numeric = central_difference(total_loss, logits)
    np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=FD_ATOL)
    assert np.all(grad[np.isneginf(logits)] == 0)


@pytest.mark.parametrize("softcap", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_softcap_chain_rule_matches_finite_differences(temperature, softcap):
    """dz/dx = (1 - tanh^2(x / c)) / T, including logits beyond the cap."""
    rng = rng_for("softcap fd", temperature, softcap)
    logits = rng.uniform(-3 * softcap, 3 * softcap, (3, 6))
    target = rng.integers(0, 6, 3)
    options = {"softcap": softcap, "temperature": temperature, "z_loss": 0.02}
    _, grad = fastsce.cross_entropy_with_grad(logits, target, reduction="sum", **options)
    numeric = central_difference(
        lambda x: fastsce.cross_entropy(x, target, reduction="sum", **options), logits
    )
    np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=FD_ATOL)
