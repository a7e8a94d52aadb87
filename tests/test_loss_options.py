"""The loss options beyond PyTorch's, alone and combined, against ``fastsce.reference``.

Every combination of weight / label_smoothing / ignore_index / soft targets with the
transforms temperature, softcap and z_loss, for every reduction, float32 and float64,
with and without -inf masked classes and ignored rows (all -inf or NaN), compared with
the float64 oracle: loss, gradient, lse_out (against reference.logsumexp of z) and
argmax_out (against np.argmax of z).  Then: gradients of z_loss / softcap / temperature
against central finite differences, out=logits in place, CrossEntropyLoss (equal to the
functional API, allocation-free steady state, options validated at construction),
softmax_backward / log_softmax_backward as layers, and the errors of the new options.

Tolerances are _helpers.py's (RTOL, LOSS_RTOL, LOG_SUM_ATOL), applied to the terms the
results are computed from, as _helpers.py explains.  With the options, for one kept
row with target distribution b (A = sum_j b_j), z = x / T or c tanh(x / c) / T,
s = softmax(z) and lse = log sum_j exp(z_j):

    loss   = sum_j b_j (lse - z_j) + lambda lse^2                 (a sum of terms >= 0)
    grad_j = scale ((A + 2 lambda lse) s_j - b_j) dz_j/dx_j,      scale = 1 / 'mean' divisor

* the gradient is compared relative to scale (|A + 2 lambda lse| s_j + |b_j|) |dz_j/dx_j|;
* the loss relative to |loss| plus LOG_SUM_ATOL (A + 2 lambda |lse|) absolute: the log
  of the row sum carries LOG_SUM_ATOL, and the z-loss term sees it through 2 lambda lse;
* when z is not x itself (a temperature or a softcap) fastsce rounds z to the compute
  dtype before anything else (the oracle keeps it in float64).  That one rounding
  (at most eps of the dtype, counting the rounding of 1 / T) moves the loss by at most
  eps sum_j |dL/dz_j| |z_j|, which is added to the loss's absolute allowance, and the
  log-sum-exp by eps sum_j s_j |z_j|, added to its magnitude.  In the gradient it is a
  relative error of about eps (|z_j| + max z) in s_j, below RTOL for the logits used
  here (|z| < 20, so < 40 eps32 = 5e-6 < 1e-5), so no allowance is added there.
"""

import tracemalloc

import numpy as np
import pytest

import fastsce
from _helpers import (
    CASE_IDS,
    CASES,
    DTYPES,
    LOG_SUM_ATOL,
    LOSS_RTOL,
    REDUCTIONS,
    RTOL,
    TRANSFORMS,
    assert_close,
    assert_close_to_oracle,
    assert_unchanged,
    f64,
    kept_rows,
    make_case,
    make_logits,
    make_soft_target,
    option_bounds,
    oracle,
    rng_for,
    snapshot,
    target_distribution,
    transformed,
)
from fastsce import reference

INF = np.inf


def check_against_oracle(logits, target, reduction, options, dtype):
    """fastsce (loss only; loss + grad + lse_out + argmax_out) against the float64 oracle;
    returns (loss, grad, lse, argmax) of fastsce."""
    shape = np.shape(logits)
    copies = snapshot(logits, target, options.get("weight"))
    loss_only = fastsce.cross_entropy(logits, target, reduction=reduction, **options)
    lse = np.full(shape[:-1], -1.0)
    argmax = np.full(shape[:-1], -1, np.int64)
    loss, grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, lse_out=lse, argmax_out=argmax, **options
    )
    assert_unchanged([logits, target, options.get("weight")], copies)

    expected_lse = np.full(shape[:-1], -2.0)
    expected_argmax = np.full(shape[:-1], -2, np.int64)
    expected_loss, expected_grad = oracle(
        "cross_entropy_with_grad",
        logits,
        target,
        reduction=reduction,
        lse_out=expected_lse,
        argmax_out=expected_argmax,
        **options,
    )
    bounds = option_bounds(logits, target, reduction, options, dtype)
    for value in (loss_only, loss):
        if reduction == "none":
            assert isinstance(value, np.ndarray) and value.dtype == dtype
            assert value.shape == shape[:-1]
        else:
            assert isinstance(value, float), type(value)
    assert grad.shape == shape

    # lse_out: log-sum-exp of z for every row (ignored rows too), as reference.logsumexp
    z, _ = transformed(logits, options.get("temperature", 1.0), options.get("softcap"))
    with np.errstate(invalid="ignore"):
        lse_of_z = reference.logsumexp(z)
    assert_close(expected_lse, lse_of_z, 1e-15, magnitude=bounds[2], err_msg="(oracle lse)")
    expected = (expected_loss, expected_grad, lse_of_z)
    assert_close_to_oracle(loss_only, None, None, expected, bounds, dtype, " only")
    assert_close_to_oracle(loss, grad, lse, expected, bounds, dtype)
    # argmax_out: first index of the largest z (of the first NaN), as np.argmax
    np.testing.assert_array_equal(argmax, np.argmax(z, axis=-1))
    np.testing.assert_array_equal(argmax, expected_argmax)

    # the extra outputs come from the same pass and change nothing else
    plain_loss, plain_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, **options
    )
    np.testing.assert_array_equal(plain_grad, grad)
    np.testing.assert_array_equal(plain_loss, loss)
    np.testing.assert_array_equal(loss_only, loss)

    kept = kept_rows(target, shape, options.get("ignore_index", -100))
    # ignored rows: loss 0 and gradient exactly 0, whatever their logits
    assert np.all(grad[~kept] == 0)
    if reduction == "none":
        assert np.all(loss[~kept] == 0)
    return loss, grad, lse, argmax


# ---------------------------------------------------------------------------
# every combination against the oracle


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("masked", [False, True], ids=["finite", "masked"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kind, base", CASES, ids=CASE_IDS)
def test_every_combination_matches_reference(kind, base, transform, reduction, masked, dtype):
    logits, target, options = make_case(kind, base, transform, masked, dtype)
    dtype = np.dtype(dtype)
    loss, grad, _, _ = check_against_oracle(logits, target, reduction, options, dtype)
    assert np.all(np.isfinite(grad))
    if masked and options.get("label_smoothing"):
        # smoothing puts target mass on the masked classes: those rows' losses are inf
        assert np.all(np.isinf(loss)) if reduction != "none" else np.all(np.isinf(loss[[1, 3]]))
    else:
        assert np.all(np.isfinite(loss))
    if not options.get("label_smoothing") or options.get("softcap"):
        # a masked class has probability 0: with no target mass there (no smoothing) the
        # gradient is exactly 0; with smoothing it is -scale eps w_j / C as in PyTorch,
        # unless a softcap multiplies it by dz/dx = 0 (checked against the oracle above)
        assert np.all(grad[np.isneginf(logits)] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind, base", [("hard", "everything"), ("soft", "weight_smoothing")])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (3, 1000), (2, 4097)], ids=str)
def test_all_options_on_every_shape(shape, kind, base, reduction, dtype):
    """1-D (scalar target), 3-D, and long rows (vector loops with a tail) with everything on."""
    logits, target, options = make_case(kind, base, "all", False, dtype, shape, tag="shapes")
    if kind == "hard":  # more ignored rows than make_case's, always one kept
        target.reshape(-1)[2::3] = options["ignore_index"]
    check_against_oracle(logits, target, reduction, options, np.dtype(dtype))


@pytest.mark.parametrize("z_loss", [1e-4, 0.1, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_adds_lambda_lse_squared_per_kept_row(reduction, z_loss):
    """Explicit formula: CE + lambda sum_kept lse(x)^2, 'mean' over the usual divisor."""
    rng = rng_for("z formula", reduction, z_loss)
    logits = 3.0 * rng.standard_normal((9, 6))
    target = rng.integers(0, 6, 9)
    target[[2, 5]] = -100
    weight = rng.uniform(0.5, 2.0, 6)
    kept = target != -100
    base = fastsce.cross_entropy(logits, target, weight=weight, reduction="none")
    lse = np.where(kept, reference.logsumexp(logits), 0.0)
    per_row = base + z_loss * lse**2
    divisor = weight[target[kept]].sum()
    expected = {"none": per_row, "sum": per_row.sum(), "mean": per_row.sum() / divisor}
    result = fastsce.cross_entropy(
        logits, target, weight=weight, z_loss=z_loss, reduction=reduction
    )
    np.testing.assert_allclose(result, expected[reduction], rtol=1e-12)
    # gradient: (1 + 2 lambda lse) s - onehot per kept row (times w_t), divided for 'mean'
    _, grad = fastsce.cross_entropy_with_grad(
        logits, target, weight=weight, z_loss=z_loss, reduction=reduction
    )
    s = reference.softmax(logits)
    onehot = np.eye(6)[np.where(kept, target, 0)]
    w_t = np.where(kept, weight[np.where(kept, target, 0)], 0.0)[:, None]
    expected_grad = w_t * (s - onehot) + 2 * z_loss * lse[:, None] * s * kept[:, None]
    if reduction == "mean":
        expected_grad /= divisor
    magnitude = (w_t * (s + onehot) + 2 * z_loss * np.abs(lse[:, None]) * s) / (
        divisor if reduction == "mean" else 1.0
    )
    assert_close(grad, expected_grad, 1e-12, magnitude=magnitude)


def test_z_loss_of_unweighted_mean_is_liger_lse_square_scale():
    """Liger-Kernel: loss = mean over kept rows of (CE_i + lse_square_scale lse_i^2)."""
    rng = rng_for("liger")
    logits = rng.standard_normal((8, 11)) * 2
    target = rng.integers(0, 11, 8)
    target[3] = -100
    kept = target != -100
    per_row = reference.logsumexp(logits) - logits[np.arange(8), np.where(kept, target, 0)]
    expected = np.mean((per_row + 0.3 * reference.logsumexp(logits) ** 2)[kept])
    np.testing.assert_allclose(
        fastsce.cross_entropy(logits, target, z_loss=0.3), expected, rtol=1e-12
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softcap_bounds_the_logits_and_keeps_masked_classes(dtype):
    """|z| < c / T: a huge logit no longer dominates; -inf stays a masked class."""
    logits = np.array([[1e4, 0.0, -1e4, -INF], [3.0, 2.0, 1.0, 0.0]], dtype)
    target = np.array([1, 0])
    lse = np.empty(2)
    loss, grad = fastsce.cross_entropy_with_grad(
        logits, target, softcap=5.0, temperature=0.5, reduction="none", lse_out=lse
    )
    z = np.array([[10.0, 0.0, -10.0, -INF], 10 * np.tanh(np.array([3.0, 2.0, 1.0, 0.0]) / 5)])
    options = {"softcap": 5.0, "temperature": 0.5}
    loss_atol, _, lse_magnitude = option_bounds(logits, target, "none", options, np.dtype(dtype))
    assert_close(
        lse,
        reference.logsumexp(z),
        RTOL[np.dtype(dtype)],
        magnitude=lse_magnitude,
        atol=LOG_SUM_ATOL,
    )
    assert_close(
        loss, reference.logsumexp(z) - z[[0, 1], [1, 0]], LOSS_RTOL[np.dtype(dtype)], atol=loss_atol
    )
    # saturated logits (tanh(+-2000) = +-1) have dz/dx = 0; the masked one too
    np.testing.assert_array_equal(grad[0, [0, 2, 3]], 0.0)
    assert np.all(np.isfinite(grad))


def test_target_on_a_masked_class_is_an_infinite_loss_with_a_finite_gradient():
    logits = np.array([[0.0, -INF, 1.0], [0.5, 0.0, -1.0]])
    target = np.array([1, 0])
    for options in ({}, {"temperature": 0.5}, {"softcap": 2.0}, {"z_loss": 0.1}):
        loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction="none", **options)
        expected_loss, expected_grad = oracle(
            "cross_entropy_with_grad", logits, target, reduction="none", **options
        )
        assert loss[0] == INF and expected_loss[0] == INF
        _, magnitude, _ = option_bounds(logits, target, "none", options, np.dtype(np.float64))
        assert_close(grad, expected_grad, 1e-12, magnitude=magnitude)
        assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------
# lse_out / argmax_out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.3}, {"softcap": 1.5, "z_loss": 0.2}],
    ids=["plain", "temperature", "softcap"],
)
def test_argmax_out_is_the_first_maximum_and_counts_hits(options, dtype):
    """Ties go to the first index (np.argmax); accuracy = mean(argmax == target)."""
    logits = np.array(
        [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-INF, -INF, 0.0, 0.0], [0.0, 1.0, 2.0, 5.0]],
        dtype,
    )
    target = np.array([2, 0, -100, 3])
    argmax = np.empty(4, np.int64)
    fastsce.cross_entropy(logits, target, argmax_out=argmax, **options)
    np.testing.assert_array_equal(argmax, [1, 0, 2, 3])
    assert np.mean(argmax == target) == 0.5


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "logits, options",
    [
        ([[40.0, 50.0, -1.0], [-1.0, 60.0, 70.0]], {"softcap": 1.0}),  # tanh saturates to 1
        ([[300.0, 400.0], [5.0, 2.0]], {"softcap": 30.0}),
        ([[1000.0, 2000.0], [-3.0, -2.0]], {"softcap": 30.0, "temperature": 0.5}),
        ([[1.0, 1.0000001], [2.0, 1.0]], {"softcap": 1.0}),  # float32: rounds to one z
        ([[1.0, 1.0000001], [2.0, 1.0]], {"temperature": 3.0}),
    ],
)
def test_argmax_out_is_that_of_the_logits_whatever_softcap_and_temperature(logits, options, dtype):
    """The index of the largest logit, as np.argmax, even where the softcap or the
    temperature maps distinct logits to the same z (the first would win there)."""
    x = np.array(logits, dtype)
    argmax = np.empty(2, np.int64)
    target = np.array([0, 1])
    fastsce.cross_entropy(x, target, argmax_out=argmax, **options)
    np.testing.assert_array_equal(argmax, np.argmax(x, axis=-1))
    with_grad = np.full(2, -1, np.int64)
    fastsce.cross_entropy_with_grad(x, target, argmax_out=with_grad, **options)
    np.testing.assert_array_equal(with_grad, argmax)
    expected = np.empty(2, np.int64)
    oracle("cross_entropy", x, target, argmax_out=expected, **options)
    np.testing.assert_array_equal(expected, argmax)


def test_argmax_out_with_softcap_where_the_capped_logits_tie():
    """The cases the softcap ties: tanh(300 / 30) and tanh(400 / 30) round to one float32."""
    x = np.array([[300.0, 400.0]], np.float32)
    z = (30.0 * np.tanh(x.astype(np.float64) / 30.0)).astype(np.float32)
    assert z[0, 0] == z[0, 1] == 30.0  # the softcapped values tie, the logits do not
    argmax = np.empty(1, np.int64)
    fastsce.cross_entropy(x, np.array([1]), softcap=30.0, argmax_out=argmax)
    assert argmax[0] == 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("z_loss", [0.0, 0.1])
def test_lse_and_argmax_out_of_non_finite_rows(z_loss, reduction):
    """Rows of all -inf, with +inf, with NaN, kept or ignored: lse_out is logsumexp of the
    row (-inf, +inf, NaN as fastsce.logsumexp and the reference), argmax as np.argmax."""
    logits = np.array(
        [
            [-INF, -INF, -INF],
            [1.0, INF, 0.0],
            [0.0, np.nan, 1.0],
            [-INF, 2.0, -INF],
            [-INF, -INF, -INF],
            [1.0, INF, 0.0],
            [np.nan, 0.0, 1.0],
        ]
    )
    target = np.array([0, 0, 2, 1, -100, -100, -100])
    lse = np.empty(7)
    argmax = np.empty(7, np.int64)
    with np.errstate(invalid="ignore"):
        fastsce.cross_entropy(
            logits, target, z_loss=z_loss, reduction=reduction, lse_out=lse, argmax_out=argmax
        )
        expected = reference.logsumexp(logits)
    np.testing.assert_array_equal(expected, [-INF, INF, np.nan, 2.0, -INF, INF, np.nan])
    np.testing.assert_array_equal(fastsce.logsumexp(logits), expected)
    np.testing.assert_array_equal(argmax, np.argmax(logits, axis=-1))
    np.testing.assert_array_equal(lse, expected)


# ---------------------------------------------------------------------------
# out=logits in place, and CrossEntropyLoss against the functional API


def with_outputs(function, logits, target, shape, **kwargs):
    """function(...) with fresh lse_out / argmax_out; returns (result, lse, argmax)."""
    lse = np.full(shape[:-1], np.nan)
    argmax = np.full(shape[:-1], -1, np.int64)
    result = function(logits, target, lse_out=lse, argmax_out=argmax, **kwargs)
    return result, lse, argmax


def assert_same(a, b):
    """Bit for bit (NaN == NaN), for results that must come from the same computation."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kind, base", CASES, ids=CASE_IDS)
def test_in_place_and_class_equal_the_functional_api(kind, base, transform, reduction, dtype):
    """With masked classes and (hard targets) ignored rows of NaN / -inf logits."""
    logits, target, options = make_case(kind, base, transform, True, dtype, tag="in place")
    shape = logits.shape
    (loss, grad), lse, argmax = with_outputs(
        fastsce.cross_entropy_with_grad, logits, target, shape, reduction=reduction, **options
    )

    # CrossEntropyLoss: same numbers, reused out, repeated calls
    criterion = fastsce.CrossEntropyLoss(reduction=reduction, **options)
    loss_only, lse_c, argmax_c = with_outputs(criterion, logits, target, shape)
    assert_same(loss_only, loss)
    assert_same(lse_c, lse)
    assert_same(argmax_c, argmax)
    assert_same(criterion(logits, target), loss)
    if reduction != "none":
        assert isinstance(loss_only, float)
    out = np.full(shape, np.nan, dtype)
    for _ in range(2):
        (loss_c, grad_c), lse_c, argmax_c = with_outputs(
            criterion.loss_and_grad, logits, target, shape, out=out
        )
        assert grad_c is out
        for a, b in ((grad_c, grad), (loss_c, loss), (lse_c, lse), (argmax_c, argmax)):
            assert_same(a, b)

    # out=logits: the gradient overwrites the logits; every output as out of place
    # (the functional API and the class; lse_out compared last, after everything else)
    in_places = []
    functional = ({"reduction": reduction, **options}, fastsce.cross_entropy_with_grad)
    for kwargs, function in (functional, ({}, criterion.loss_and_grad)):
        in_place = logits.copy()
        (loss_ip, grad_ip), lse_ip, argmax_ip = with_outputs(
            function, in_place, target, shape, out=in_place, **kwargs
        )
        assert grad_ip is in_place
        for a, b in ((grad_ip, grad), (loss_ip, loss), (argmax_ip, argmax)):
            assert_same(a, b)
        in_places.append(lse_ip)
    for lse_ip in in_places:
        assert_same(lse_ip, lse)


def test_class_buffers_follow_shape_and_dtype_changes():
    """The kept buffers grow, shrink (a larger buffer is reused) and are per dtype."""
    criterion = fastsce.CrossEntropyLoss(
        label_smoothing=0.1, softcap=3.0, temperature=0.9, z_loss=1e-3, weight=np.linspace(1, 2, 9)
    )
    rng = rng_for("class buffers")
    for n_rows, dtype in [
        (4, np.float64),
        (50, np.float64),
        (3, np.float32),
        (7, np.float64),
        (60, np.float32),
        (1, np.float64),
        (50, np.float32),
    ]:
        logits = make_logits((n_rows, 9), dtype, rng=rng)
        target = rng.integers(0, 9, n_rows)
        target[::4] = -100
        options = {
            "label_smoothing": 0.1,
            "softcap": 3.0,
            "temperature": 0.9,
            "z_loss": 1e-3,
            "weight": np.linspace(1, 2, 9),
        }
        loss, grad = criterion.loss_and_grad(logits, target)
        expected_loss, expected_grad = fastsce.cross_entropy_with_grad(logits, target, **options)
        assert_same(grad, expected_grad)
        assert_same(loss, expected_loss)
        assert_same(criterion(logits, target), expected_loss)
        soft = fastsce.softmax(make_logits((n_rows, 9), dtype, rng=rng))
        assert_same(
            criterion.loss_and_grad(logits, soft)[1],
            fastsce.cross_entropy_with_grad(logits, soft, **options)[1],
        )


def test_class_options_are_those_given():
    options = {
        "weight": np.array([1.0, 2.0, 0.5]),
        "ignore_index": 1,
        "reduction": "sum",
        "label_smoothing": 0.25,
        "temperature": 2.0,
        "softcap": 7.0,
        "z_loss": 0.125,
    }
    criterion = fastsce.CrossEntropyLoss(**options)
    text = repr(criterion)
    for part in (
        "reduction='sum'",
        "ignore_index=1",
        "label_smoothing=0.25",
        "temperature=2.0",
        "softcap=7.0",
        "z_loss=0.125",
    ):
        assert part in text, text
    logits = make_logits((5, 3), np.float64)
    target = np.array([0, 1, 2, 1, 0])
    expected = fastsce.cross_entropy(logits, target, **options)
    assert criterion(logits, target) == expected
    assert fastsce.CrossEntropyLoss()(logits, target) == fastsce.cross_entropy(logits, target)


# ---------------------------------------------------------------------------
# CrossEntropyLoss steady state allocates no arrays

#: Bound on the peak memory tracemalloc sees during 20 steady-state calls.  What a call
#: may allocate besides arrays: a few small Python objects (the loss float, the result
#: tuple, the 2-D views of out/logits and their ndarray headers, a kernel workspace
#: object), a few hundred bytes in all, each freed before the next call (measured: under
#: 500 bytes).  The batch is chosen so that any array the call could allocate is larger
#: than the bound: 1024 rows make the smallest possible one (a per-row float32 array)
#: 4096 bytes of data plus its header; the gradient is 64 KiB (float32) or more.
#: tracemalloc sees NumPy's array data and Python objects; it does not see memory the
#: compiled kernels take with C malloc (their per-call workspace when no buffers are
#: passed), so this checks the promise as stated: no arrays.
ALLOCATION_BOUND = 4096
N_ROWS, N_CLASSES = 1024, 16


def peak_traced_bytes(call, repeats):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in range(repeats):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "kind, options",
    [
        ("hard", {}),
        ("hard", {"label_smoothing": 0.1}),
        ("hard", {"weight": "random", "label_smoothing": 0.1, "softcap": 5.0, "z_loss": 1e-3}),
        ("soft", {"temperature": 0.7, "weight": "random"}),
    ],
    ids=["hard", "hard-smoothing", "hard-everything", "soft-temperature-weight"],
)
def test_class_steady_state_allocates_no_arrays(kind, options, reduction, dtype):
    rng = rng_for("alloc", kind, reduction, np.dtype(dtype).name)
    options = dict(options)
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, N_CLASSES)
    logits = make_logits((N_ROWS, N_CLASSES), dtype, rng=rng)
    if kind == "soft":
        target = make_soft_target(logits.shape, dtype, rng)
    else:
        target = rng.integers(0, N_CLASSES, N_ROWS).astype(np.int64)
        target[::7] = -100
    criterion = fastsce.CrossEntropyLoss(reduction=reduction, **options)
    out = np.empty_like(logits)
    lse = np.empty(N_ROWS)
    argmax = np.empty(N_ROWS, np.int64)

    def step():
        criterion.loss_and_grad(logits, target, out=out, lse_out=lse, argmax_out=argmax)

    for _ in range(3):  # warm-up: the kept buffers are allocated here
        step()
    assert peak_traced_bytes(step, 20) < ALLOCATION_BOUND
    expected = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    assert_same(out, expected[1])

    # the measurement sees arrays: without out= the gradient is allocated every call
    peak = peak_traced_bytes(lambda: criterion.loss_and_grad(logits, target), 2)
    assert peak >= logits.nbytes


@pytest.mark.usefixtures("restore_threads")
def test_class_steady_state_allocates_no_arrays_with_two_threads():
    """Above the parallel threshold: per-thread scratch rows are kept too."""
    fastsce.set_num_threads(2)
    rng = rng_for("alloc threads")
    logits = make_logits((4096, 40), np.float32, rng=rng)
    target = rng.integers(0, 40, 4096)
    criterion = fastsce.CrossEntropyLoss(label_smoothing=0.1, softcap=4.0, weight=np.ones(40))
    out = np.empty_like(logits)
    for _ in range(3):
        criterion.loss_and_grad(logits, target, out=out)
    peak = peak_traced_bytes(lambda: criterion.loss_and_grad(logits, target, out=out), 20)
    assert peak < ALLOCATION_BOUND


def test_class_accepts_numpy_scalars_and_defaults():
    criterion = fastsce.CrossEntropyLoss(
        temperature=np.float32(2.0),
        softcap=np.int64(5),
        z_loss=np.float64(0.0),
        label_smoothing=np.float16(0.5),
        ignore_index=np.int32(3),
    )
    logits = make_logits((4, 5), np.float64)
    target = np.array([0, 3, 1, 4])
    expected = fastsce.cross_entropy(
        logits, target, temperature=2.0, softcap=5.0, label_smoothing=0.5, ignore_index=3
    )
    assert criterion(logits, target) == expected


def test_class_weight_of_the_wrong_length_is_a_value_error_at_call():
    criterion = fastsce.CrossEntropyLoss(weight=np.ones(4))
    logits = make_logits((3, 5), np.float64)
    out = np.full((3, 5), 7.0)
    with pytest.raises(ValueError, match="`weight`"):
        criterion.loss_and_grad(logits, np.array([0, 1, 2]), out=out)
    assert np.all(out == 7.0)


# ---------------------------------------------------------------------------
# softmax_backward / log_softmax_backward as layers


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(6,), (5, 9), (2, 3, 1000), (2, 4097)], ids=str)
def test_log_softmax_backward_matches_reference(shape, dtype):
    rng = rng_for("log backward ref", shape, np.dtype(dtype).name)
    logits = make_logits(shape, dtype, rng=rng)
    grad_out = rng.standard_normal(shape).astype(dtype)
    log_s = fastsce.log_softmax(logits)
    result = fastsce.log_softmax_backward(grad_out, log_s)
    assert result.dtype == dtype and result.shape == shape
    g = f64(grad_out)
    # |g_j| + s_j sum_k |g_k|: the terms of g_j - s_j sum_k g_k
    magnitude = np.abs(g) + np.exp(f64(log_s)) * np.sum(np.abs(g), axis=-1, keepdims=True)
    assert_close(
        result,
        oracle("log_softmax_backward", grad_out, log_s),
        RTOL[np.dtype(dtype)],
        magnitude=magnitude,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(6,), (5, 9), (2, 3, 257)], ids=str)
def test_softmax_backward_matches_reference(shape, dtype):
    """(The reference builds each row's (C, C) Jacobian: kept to small C.)"""
    rng = rng_for("backward ref", shape, np.dtype(dtype).name)
    s = fastsce.softmax(make_logits(shape, dtype, rng=rng))
    grad_s = rng.standard_normal(shape).astype(dtype)
    result = fastsce.softmax_backward(grad_s, s)
    assert result.dtype == dtype and result.shape == shape
    g, s64 = f64(grad_s), f64(s)
    # s_j (g_j - sum_k s_k g_k): terms |s_j g_j| and s_j sum_k |s_k g_k|
    magnitude = np.abs(s64 * g) + s64 * np.sum(np.abs(s64 * g), axis=-1, keepdims=True)
    assert_close(
        result, oracle("softmax_backward", grad_s, s), RTOL[np.dtype(dtype)], magnitude=magnitude
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["hard", "hard-weight-smoothing", "soft-smoothing"])
def test_backward_layers_compose_to_the_cross_entropy_gradient(kind, dtype):
    """CE = -sum_j b_j log s_j: log_softmax_backward(-b, log s) = A s - b, and
    softmax_backward(-b / s, s) the same, = cross_entropy_with_grad(reduction='sum')."""
    rng = rng_for("compose", kind, np.dtype(dtype).name)
    shape = (6, 8)
    logits = make_logits(shape, dtype, rng=rng)
    options = {}
    if kind == "hard":
        target = rng.integers(0, 8, 6)
    elif kind == "hard-weight-smoothing":
        target = rng.integers(0, 8, 6)
        options = {"weight": rng.uniform(0.5, 2.0, 8), "label_smoothing": 0.2}
    else:
        target = make_soft_target(shape, dtype, rng)
        options = {"label_smoothing": 0.1}
    b, _ = target_distribution(shape, target, **options)
    _, expected = fastsce.cross_entropy_with_grad(logits, target, reduction="sum", **options)
    log_s = fastsce.log_softmax(logits)
    s = fastsce.softmax(logits)
    s64 = f64(s)
    magnitude = b.sum(axis=-1, keepdims=True) * s64 + b
    rtol = RTOL[np.dtype(dtype)]
    via_log = fastsce.log_softmax_backward(-b.astype(dtype), log_s)
    assert_close(via_log, expected, rtol, magnitude=magnitude)
    via_softmax = fastsce.softmax_backward((-b / s64).astype(dtype), s)
    assert_close(via_softmax, expected, rtol, magnitude=magnitude)
