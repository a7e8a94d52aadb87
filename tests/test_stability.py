"""Extreme and non-finite logits (docs/DESIGN.md "Non-finite values follow PyTorch").

* huge logits (+-1e4, +-3e38 in float32) give finite, correct results;
* a -inf logit is a masked class: probability 0, gradient exactly 0;
* a row of all -inf, or with a NaN (or +inf), is NaN for that row only;
* ignored rows give loss 0 and gradient exactly 0, even with -inf or NaN logits;
* a target on a masked class has infinite loss.
"""

import math

import numpy as np
import pytest

import fastsce
from _helpers import (
    DTYPES,
    LOG_SUM_ATOL,
    LOSS_RTOL,
    RTOL,
    assert_close,
    grad_magnitude,
    loss_atol,
    oracle,
)

INF = np.inf
REDUCTIONS = ["mean", "sum", "none"]


def check_against_oracle(logits, target, reduction="none", **options):
    """fastsce loss and gradient against the float64 oracle; returns them."""
    dtype = logits.dtype
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    expected_loss, expected_grad = oracle(
        "cross_entropy_with_grad", logits, target, reduction=reduction, **options
    )
    with np.errstate(invalid="ignore"):
        assert_close(
            loss,
            expected_loss,
            LOSS_RTOL[dtype],
            atol=loss_atol(logits, target, reduction, **options),
        )
        assert_close(
            grad,
            expected_grad,
            RTOL[dtype],
            magnitude=grad_magnitude(logits, target, reduction, **options),
        )
    return loss, grad


# ---------------------------------------------------------------------------
# huge logits


@pytest.mark.parametrize("big", [1e4, 3e38])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huge_float32_logits_give_finite_correct_results(big, reduction):
    f32 = np.float32
    logits = np.array(
        [
            [big, 0.0, big / 3],  # one dominant class
            [big, big, big],  # uniform at the top of the range
            [-big, -big, -big],  # uniform at the bottom
            [big, big / 2, big / 2],
            [-big / 3, -big, -big / 2],
        ],
        f32,
    )
    target = np.array([0, 2, 1, 1, 0])
    loss, grad = check_against_oracle(logits, target, reduction)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    row_loss = fastsce.cross_entropy(logits, target, reduction="none")
    expected_rows = [0.0, math.log(3), math.log(3), big / 2, 0.0]
    np.testing.assert_allclose(row_loss, expected_rows, rtol=1e-6)
    # a row of -3e38 and 3e38: 6e38 is beyond float32 but the mean loss is a Python float
    wide = np.array([[big, -big]], f32)
    assert fastsce.cross_entropy(wide, [1]) == pytest.approx(2 * float(f32(big)), rel=1e-7)
    np.testing.assert_array_equal(fastsce.cross_entropy_with_grad(wide, [1])[1], [[1, -1]])

    s = fastsce.softmax(logits)
    assert np.all(np.isfinite(s))
    # exp of x - max below the smallest normal float is flushed to 0: |error| <= tiny
    assert_close(s, oracle("softmax", logits), RTOL[np.dtype(f32)], atol=np.finfo(f32).tiny)
    log_s = fastsce.log_softmax(logits)
    assert np.all(np.isfinite(log_s))
    assert_close(log_s, oracle("log_softmax", logits), RTOL[np.dtype(f32)])
    lse = fastsce.logsumexp(logits)
    assert np.all(np.isfinite(lse))
    top = np.max(logits.astype(np.float64), axis=-1)
    np.testing.assert_allclose(lse, top + [0, math.log(3), math.log(3), 0, 0], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_gaps_flush_tiny_probabilities_but_keep_log_probabilities_exact(dtype):
    """exp(-90) (float32) and exp(-720) (float64) are subnormal: the kernels' exp
    flushes them to 0, but log_softmax and the loss never go through that exp."""
    gap = 90.0 if dtype == np.float32 else 720.0
    logits = np.array([0.0, -gap, -2 * gap, -1.0], dtype)
    s = fastsce.softmax(logits)
    assert np.all(s >= 0)
    assert_close(s, oracle("softmax", logits), RTOL[np.dtype(dtype)], atol=np.finfo(dtype).tiny)
    log_s = fastsce.log_softmax(logits)
    assert_close(log_s, oracle("log_softmax", logits), RTOL[np.dtype(dtype)])
    assert fastsce.cross_entropy(logits, 1) == pytest.approx(
        gap + math.log1p(math.exp(-1)), rel=LOSS_RTOL[np.dtype(dtype)]
    )


# ---------------------------------------------------------------------------
# -inf: masked classes


MASKED = np.array(
    [
        [0.5, -INF, 2.0, -1.0, -INF],
        [-INF, -INF, -INF, 3.0, -INF],  # one class left: probability 1
        [1.0, 2.0, 3.0, 4.0, -INF],
    ]
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options", [{}, {"weight": [1.0, 2.0, 0.5, 1.5, 3.0]}], ids=["plain", "weight"]
)
def test_masked_classes_hard_targets(dtype, reduction, options):
    logits = MASKED.astype(dtype)
    target = np.array([2, 3, 0])
    loss, grad = check_against_oracle(logits, target, reduction, **options)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    masked = np.isneginf(logits)
    assert np.all(grad[masked] == 0)
    # the only class left: loss 0, gradient 0
    assert np.all(grad[1] == 0)
    if reduction == "none":
        assert loss[1] == 0
    in_place = logits.copy()
    fastsce.cross_entropy_with_grad(in_place, target, reduction=reduction, out=in_place, **options)
    np.testing.assert_array_equal(in_place, grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_classes_soft_targets_with_zero_probability_there(dtype, reduction):
    logits = MASKED.astype(dtype)
    target = np.array(
        [[0.2, 0.0, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]], dtype
    )
    loss, grad = check_against_oracle(logits, target, reduction)
    assert np.all(np.isfinite(loss))
    assert np.all(grad[np.isneginf(logits)] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_with_masked_classes(dtype):
    logits = MASKED.astype(dtype)
    s = fastsce.softmax(logits)
    assert np.all(s[np.isneginf(logits)] == 0)
    assert_close(s, oracle("softmax", logits), RTOL[np.dtype(dtype)])
    np.testing.assert_array_equal(s[1], [0, 0, 0, 1, 0])
    log_s = fastsce.log_softmax(logits)
    np.testing.assert_array_equal(np.isneginf(log_s), np.isneginf(logits))
    assert_close(log_s, oracle("log_softmax", logits), RTOL[np.dtype(dtype)], atol=LOG_SUM_ATOL)
    lse = fastsce.logsumexp(logits)
    assert np.all(np.isfinite(lse)) and lse[1] == 3.0
    # backward at a masked class: s = 0 there, so the gradient is exactly 0
    grad_x = fastsce.softmax_backward(np.ones_like(s) * 2 + s, s)
    assert np.all(grad_x[np.isneginf(logits)] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_label_smoothing_puts_mass_on_masked_classes(dtype):
    """With smoothing every class has target mass eps / C, so a masked class makes the
    loss infinite (as in PyTorch); the gradient stays finite: -eps / C there."""
    logits = MASKED[:1].astype(dtype)
    loss, grad = check_against_oracle(logits, np.array([2]), "mean", label_smoothing=0.1)
    assert loss == INF
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[np.isneginf(logits)], -0.1 / 5, rtol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_target_on_a_masked_class_has_infinite_loss(dtype, soft):
    logits = MASKED.astype(dtype)
    if soft:
        target = np.array(
            [
                [0.5, 0.5, 0.0, 0.0, 0.0],  # mass on masked class 1
                [0.0, 0.0, 0.0, 1.0, 0.0],
                [0.5, 0.0, 0.0, 0.5, 0.0],
            ],
            dtype,
        )
    else:
        target = np.array([1, 3, 0])
    loss, grad = check_against_oracle(logits, target, "none")
    assert loss[0] == INF
    assert np.all(np.isfinite(loss[1:]))
    assert np.all(np.isfinite(grad))
    assert fastsce.cross_entropy(logits, target) == INF


# ---------------------------------------------------------------------------
# NaN rows: all -inf, a NaN, a +inf


BAD_ROWS = {
    "all_neg_inf": [-INF, -INF, -INF, -INF],
    "one_nan": [0.0, np.nan, 1.0, 2.0],
    "all_nan": [np.nan] * 4,
    "pos_inf": [0.0, INF, 1.0, -INF],
}


def batch_with_bad_row(kind, dtype, bad_row=2):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((5, 4)).astype(dtype)
    clean = logits.copy()
    logits[bad_row] = BAD_ROWS[kind]
    return logits, clean


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_bad_row_is_nan_for_that_row_only_softmax_family(kind, dtype):
    logits, clean = batch_with_bad_row(kind, dtype)
    others = [0, 1, 3, 4]
    for name in ["softmax", "log_softmax"]:
        result = getattr(fastsce, name)(logits)
        assert np.all(np.isnan(result[2])), name
        np.testing.assert_array_equal(result[others], getattr(fastsce, name)(clean)[others])
    lse = fastsce.logsumexp(logits)
    expected = {"all_neg_inf": -INF, "pos_inf": INF}.get(kind, np.nan)
    np.testing.assert_array_equal(lse[2], expected)  # all -inf -> -inf, +inf -> +inf, NaN -> NaN
    np.testing.assert_array_equal(lse[others], fastsce.logsumexp(clean)[others])
    np.testing.assert_array_equal(oracle("logsumexp", logits)[2], expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(BAD_ROWS))
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(
    "options",
    [{}, {"weight": [1.0, 2.0, 0.5, 1.5], "label_smoothing": 0.2}],
    ids=["plain", "weight_smoothing"],
)
def test_bad_row_is_nan_for_that_row_only_cross_entropy(kind, dtype, soft, options):
    logits, clean = batch_with_bad_row(kind, dtype)
    target = np.full((5, 4), 0.25, dtype) if soft else np.array([0, 1, 2, 3, 0])
    others = [0, 1, 3, 4]
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction="none", **options)
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    clean_loss, clean_grad = fastsce.cross_entropy_with_grad(
        clean, target, reduction="none", **options
    )
    np.testing.assert_array_equal(loss[others], clean_loss[others])
    np.testing.assert_array_equal(grad[others], clean_grad[others])
    # with 'mean' the loss is NaN; other rows' gradients are unchanged (same divisor)
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, **options)
    assert math.isnan(loss)
    np.testing.assert_array_equal(
        grad[others], fastsce.cross_entropy_with_grad(clean, target, **options)[1][others]
    )
    check_against_oracle(logits, target, "none", **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [17, 40, 1003])
@pytest.mark.parametrize("largest", [1.0, INF, -INF], ids=["finite_max", "pos_inf", "neg_inf"])
@pytest.mark.parametrize("nan_at", ["first", "before_max", "after_max", "last"])
def test_nan_anywhere_in_a_wide_row(dtype, n_classes, largest, nan_at):
    """The max pass skips NaN (it reaches exp-based results by itself); logsumexp, lse_out
    and argmax_out must still see it wherever it is, next to a finite or infinite max."""
    row = np.full(n_classes, -INF if largest == -INF else -2.0, dtype)
    row[n_classes // 2] = largest
    at = {
        "first": 0,
        "before_max": n_classes // 2 - 1,
        "after_max": n_classes // 2 + 3,
        "last": n_classes - 1,
    }[nan_at]
    row[at] = np.nan
    logits = np.stack([row, np.linspace(-1, 1, n_classes, dtype=dtype)])
    target = np.array([n_classes // 2, 0])
    lse = fastsce.logsumexp(logits)
    assert np.isnan(lse[0]) and np.isfinite(lse[1])
    lse_out = np.zeros(2)
    argmax_out = np.full(2, -1, np.int64)
    loss, grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction="none", lse_out=lse_out, argmax_out=argmax_out
    )
    assert np.isnan(loss[0]) and np.all(np.isnan(grad[0])) and np.isfinite(loss[1])
    assert np.isnan(lse_out[0]) and lse_out[1] == pytest.approx(lse[1], rel=1e-6)
    np.testing.assert_array_equal(argmax_out, np.argmax(logits, axis=1))  # first NaN
    assert argmax_out[0] == at


NAN_PAYLOADS = {
    np.float32: [0x7FC00001, 0xFFC00123, 0x7F800001, 0x7FC001FF],
    np.float64: [0x7FF8000000000001, 0xFFF80000000001FF, 0x7FF0000000000001],
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_with_any_payload_or_sign_propagates(dtype):
    """Not only numpy's default NaN: exp's bit tricks must not turn a NaN into a number."""
    uint = np.uint32 if dtype == np.float32 else np.uint64
    for payload in NAN_PAYLOADS[dtype]:
        row = np.linspace(-3, 3, 100).astype(dtype)
        row.view(uint)[57] = payload
        assert np.isnan(row[57])
        logits = np.stack([row, row])
        assert np.all(np.isnan(fastsce.softmax(logits))), hex(payload)
        assert np.all(np.isnan(fastsce.log_softmax(logits))), hex(payload)
        assert np.all(np.isnan(fastsce.logsumexp(logits))), hex(payload)
        loss, grad = fastsce.cross_entropy_with_grad(logits, np.array([1, 57]), reduction="none")
        assert np.all(np.isnan(loss)) and np.all(np.isnan(grad)), hex(payload)


# ---------------------------------------------------------------------------
# ignored rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.3}, {"weight": [1.0, 2.0, 0.5, 1.5], "label_smoothing": 0.3}],
    ids=["plain", "smoothing", "weight_smoothing"],
)
def test_ignored_rows_with_non_finite_logits_give_zero(dtype, reduction, options):
    logits, clean = batch_with_bad_row("all_neg_inf", dtype, bad_row=1)
    logits[3] = BAD_ROWS["one_nan"]
    logits[4, 1] = -INF
    target = np.array([0, -100, 2, -100, -100])
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    assert np.all(np.isfinite(loss))
    np.testing.assert_array_equal(grad[[1, 3, 4]], 0.0)
    kept_loss, kept_grad = fastsce.cross_entropy_with_grad(
        clean[[0, 2]], target[[0, 2]], reduction=reduction, **options
    )
    if reduction == "none":
        np.testing.assert_array_equal(loss[[1, 3, 4]], 0.0)
        np.testing.assert_array_equal(loss[[0, 2]], kept_loss)
    else:
        assert loss == kept_loss
    np.testing.assert_array_equal(grad[[0, 2]], kept_grad)

    in_place = logits.copy()
    fastsce.cross_entropy_with_grad(in_place, target, reduction=reduction, out=in_place, **options)
    np.testing.assert_array_equal(in_place, grad)
    assert fastsce.cross_entropy(logits, target, reduction=reduction, **options) == pytest.approx(
        loss
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_over_no_kept_rows_is_nan_with_zero_gradient(dtype):
    logits = np.array([[-INF, -INF], [0.0, 1.0]], dtype)
    loss, grad = fastsce.cross_entropy_with_grad(logits, [-100, -100])
    assert math.isnan(loss)
    np.testing.assert_array_equal(grad, 0.0)
    assert fastsce.cross_entropy(logits, [-100, -100], reduction="sum") == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("soft", [False, True])
def test_an_infinite_row_loss_makes_the_reduced_loss_infinite(dtype, reduction, soft):
    """Row losses [inf] or [1.3, inf, 0.4] reduce to inf (PyTorch, reference), not NaN."""
    logits = np.array([[0.0, 1.0, 2.0], [0.0, -INF, 1.0], [3.0, 0.0, 1.0]], dtype)
    target = np.array([1, 1, 0]) if not soft else np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0]], dtype)
    assert fastsce.cross_entropy(logits, target, reduction="none")[1] == INF
    assert fastsce.cross_entropy(logits, target, reduction=reduction) == INF
    assert fastsce.cross_entropy(logits[1:2], target[1:2], reduction=reduction) == INF
    assert oracle("cross_entropy", logits, target, reduction=reduction) == INF


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_mean_with_zero_total_weight_is_nan_like_pytorch(dtype, label_smoothing):
    """'mean' divides by the summed weight of the kept rows; when that is 0, PyTorch
    returns a NaN loss and NaN gradient rows for the kept rows (0 / 0); ignored rows
    keep their exact-zero gradient."""
    logits = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, -1.0], [2.0, 0.0, 0.0]], dtype)
    target = np.array([0, -100, 0])
    weight = [0.0, 1.0, 1.0]
    options = {"weight": weight, "label_smoothing": label_smoothing}
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, **options)
    assert math.isnan(loss)
    assert np.all(np.isnan(grad[[0, 2]]))
    np.testing.assert_array_equal(grad[1], 0.0)
    expected_loss, expected_grad = oracle("cross_entropy_with_grad", logits, target, **options)
    assert math.isnan(expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)
