"""Property-based tests (hypothesis) over random shapes, dtypes, memory layouts,
value ranges, temperatures and loss options.

Properties:
* softmax rows sum to 1 (and exp(log_softmax) rows too), entries in [0, 1];
* softmax / log_softmax / the loss are invariant to adding a constant per row --
  bit for bit when the shift is exact (dyadic values), within the rounding of the
  shifted inputs otherwise;
* every per-row loss is >= 0 (non-negative weights and targets);
* gradient rows sum to 0 for class-index targets without label smoothing;
* agreement with fastsce.reference (float64 oracle, _helpers tolerances);
* gradients agree with central finite differences (float64).

Bounded: each test runs FASTSCE_HYPOTHESIS_EXAMPLES examples (default 40) with
deadline=None and no example database (nothing is written to the repository).  The
examples are derandomized (the same on every run, so the suite is reproducible);
FASTSCE_HYPOTHESIS_RANDOM=1 draws new ones each run.  tests/run_long_checks.sh runs
these tests with many more, random, examples.
"""

import atexit
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# Nothing in the repository: hypothesis keeps a cache of constants (and, on failure,
# patch files) in its home directory, ./.hypothesis by default.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _HOME = tempfile.mkdtemp(prefix="fastsce-hypothesis-")
    atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
    set_hypothesis_home_dir(_HOME)
# On a failure hypothesis' pytest plugin imports hypothesis.extra._patching, whose libcst
# import emits a DeprecationWarning; with filterwarnings = error that becomes an
# INTERNALERROR that hides the failure.  Import it once here, with the warning ignored.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

import fastsce  # noqa: E402
from _helpers import (  # noqa: E402
    FD_ATOL,
    FD_RTOL,
    LAYOUTS,
    LOG_SUM_ATOL,
    LOSS_RTOL,
    RTOL,
    assert_close,
    assert_loss_and_grad_close,
    backward_magnitude,
    central_difference,
    compute_dtype,
    f64,
    grad_magnitude,
    in_layout,
    logsumexp_magnitude,
    oracle,
    target_distribution,
)

EXAMPLES = int(os.environ.get("FASTSCE_HYPOTHESIS_EXAMPLES", "40"))
RANDOM = os.environ.get("FASTSCE_HYPOTHESIS_RANDOM", "0") == "1"
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not RANDOM,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

DTYPES = [np.float32, np.float64]
#: class counts around every vector width (8 float32 / 4 float64 lanes) and a few large ones
CLASS_COUNTS = st.one_of(
    st.integers(1, 20), st.sampled_from([31, 32, 33, 63, 64, 65, 127, 255, 256, 257, 1000, 4097])
)


def eps(dtype):
    return float(np.finfo(dtype).eps)


# ---------------------------------------------------------------------------
# strategies


@st.composite
def shapes(draw, max_batch_dims=2, max_rows=6, class_counts=CLASS_COUNTS):
    batch = draw(st.lists(st.integers(1, max_rows), min_size=0, max_size=max_batch_dims))
    n_classes = draw(class_counts)
    if n_classes > 300:  # keep big rows few
        batch = batch[:1]
    return tuple(batch) + (n_classes,)


@st.composite
def logit_values(draw, shape, dtype, scales=(1e-3, 1.0, 4.0, 30.0, 300.0), masked=False):
    """Random logits: normal * scale, with hypothesis-chosen special entries (ties at the
    row max, zeros, large offsets) and, if `masked`, -inf entries (never a whole row)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(scales))
    offset = draw(st.sampled_from([0.0, 0.0, 5.0, -1e3]))
    values = offset + scale * rng.standard_normal(shape)
    n_classes = shape[-1]
    rows = values.reshape(-1, n_classes)
    special = draw(st.sampled_from(["none", "ties", "zeros", "constant_rows"]))
    if special == "ties" and n_classes > 1:
        rows[:, : n_classes // 2] = rows.max(axis=1, keepdims=True)
    elif special == "zeros":
        rows[rng.random(rows.shape) < 0.3] = 0.0
    elif special == "constant_rows":
        rows[:] = rows[:, :1]
    values = values.astype(dtype)
    if masked and n_classes > 1:
        rows = values.reshape(-1, n_classes)
        mask = rng.random(rows.shape) < 0.3
        mask[np.arange(len(rows)), rng.integers(0, n_classes, len(rows))] = False
        rows[mask] = -np.inf
    return values


def layouts():
    # 'list' turns the values into Python floats (float64): keep it, it is an input form
    return st.sampled_from(LAYOUTS)


@st.composite
def logits_inputs(draw, masked=False, dtypes=DTYPES, **shape_options):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(shapes(**shape_options))
    values = draw(logit_values(shape, dtype, masked=masked))
    layout = draw(layouts())
    return values, in_layout(values, layout), layout


def temperatures():
    return st.one_of(st.just(1.0), st.sampled_from([0.25, 0.5, 2.0, 10.0]), st.floats(0.05, 50.0))


@st.composite
def loss_options(draw, n_classes, hard, smoothing=True):
    options = {}
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        weight = rng.uniform(0.0, 3.0, n_classes)
        weight[rng.random(n_classes) < 0.2] = 0.0
        options["weight"] = weight
    if smoothing and draw(st.booleans()):
        # not below 1e-6: eps / C must stay a normal float32 number, or the mass it puts
        # on a masked class rounds to 0 in float32 (loss finite) but not in the float64
        # oracle (loss inf) -- a property of the dtype, not of the kernels
        options["label_smoothing"] = draw(
            st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(1e-6, 1.0)
        )
    if hard and draw(st.booleans()):
        options["ignore_index"] = draw(st.sampled_from([-100, 0, n_classes - 1, 2**40]))
    return options


@st.composite
def targets(draw, shape, hard, dtype, ignore_index=None):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if hard:
        target = rng.integers(0, shape[-1], size=shape[:-1])
        if ignore_index is not None:
            target = np.where(rng.random(shape[:-1]) < 0.3, ignore_index, target)
        int_dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16, np.int8]))
        if ignore_index is not None and not np.can_cast(
            np.min_scalar_type(ignore_index), int_dtype
        ):
            int_dtype = np.int64
        if shape[-1] > 127 and int_dtype == np.int8:
            int_dtype = np.int64
        return target.astype(int_dtype)
    raw = rng.exponential(size=shape)
    raw[rng.random(shape) < 0.3] = 0.0
    raw.reshape(-1, shape[-1])[:, 0] += 1e-3
    if draw(st.booleans()):
        raw = raw / raw.sum(axis=-1, keepdims=True)  # probabilities (else any mass >= 0)
    return raw.astype(dtype)


# ---------------------------------------------------------------------------
# softmax rows sum to 1


@PROPERTY_SETTINGS
@given(data=st.data(), inputs=logits_inputs(masked=True), temperature=temperatures())
def test_softmax_rows_sum_to_one(data, inputs, temperature):
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    n_classes = values.shape[-1]
    s = fastsce.softmax(x, temperature=temperature)
    assert s.dtype == dtype and s.shape == values.shape
    assert np.all(s >= 0) and np.all(s <= 1)
    # each entry is within a few ulp (relative) of the true probability, so the row sum
    # is within that many ulp of 1
    row_sums = f64(s).sum(axis=-1)
    np.testing.assert_allclose(row_sums, 1.0, rtol=0, atol=16 * eps(dtype))
    # exp(log_softmax) rows: log s_j is exact to eps (|z_j - m| + log C), and
    # s_j |z_j - m| <= 1/e, so the sum is within eps (C + 2 log C + 8) of 1
    log_s = fastsce.log_softmax(x, temperature=temperature)
    assert log_s.dtype == dtype and np.all(log_s <= 0)
    exp_sums = np.exp(f64(log_s)).sum(axis=-1)
    np.testing.assert_allclose(
        exp_sums, 1.0, rtol=0, atol=eps(dtype) * (n_classes + 2 * math.log(n_classes) + 8)
    )


# ---------------------------------------------------------------------------
# invariance to a per-row constant


@st.composite
def dyadic_logits(draw):
    """Logits k / 256 (|k| <= 2**12) and per-row integer shifts |c| <= 2**10: x + c is
    exact in float32 and float64, and so is (x_j + c) - (max + c) = x_j - max."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(shapes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.integers(-(2**12), 2**12 + 1, size=shape) / 256).astype(dtype)
    shift = rng.integers(-(2**10), 2**10 + 1, size=shape[:-1] + (1,)).astype(dtype)
    return x, shift


@PROPERTY_SETTINGS
@given(inputs=dyadic_logits(), temperature=temperatures(), data=st.data())
def test_exact_row_shift_changes_nothing(inputs, temperature, data):
    """softmax(x + c) == softmax(x) bit for bit when x + c is exact: the kernels work on
    x - max only.  Same for log_softmax and the loss and gradient (no label smoothing,
    whose mean term sums the raw logits)."""
    x, shift = inputs
    shifted = x + shift
    np.testing.assert_array_equal(shifted - shift, x)  # the shift is exact
    for name in ["softmax", "log_softmax"]:
        np.testing.assert_array_equal(
            getattr(fastsce, name)(shifted, temperature=temperature),
            getattr(fastsce, name)(x, temperature=temperature),
            err_msg=name,
        )
    hard = data.draw(st.booleans())
    options = data.draw(loss_options(x.shape[-1], hard, smoothing=False))
    target = data.draw(targets(x.shape, hard, x.dtype, options.get("ignore_index")))
    for reduction in ["none", "sum"]:
        loss_a, grad_a = fastsce.cross_entropy_with_grad(
            shifted, target, reduction=reduction, **options
        )
        loss_b, grad_b = fastsce.cross_entropy_with_grad(x, target, reduction=reduction, **options)
        np.testing.assert_array_equal(loss_a, loss_b)
        np.testing.assert_array_equal(grad_a, grad_b)
    # logsumexp moves with the shift: lse(x + c) = lse(x) + c (rounding of the sum)
    lse_shifted = f64(fastsce.logsumexp(shifted))
    lse = f64(fastsce.logsumexp(x))
    magnitude = np.abs(lse) + np.abs(shift[..., 0]) + np.abs(lse_shifted)
    assert np.all(
        np.abs(lse_shifted - (lse + shift[..., 0])) <= 4 * eps(x.dtype) * magnitude + LOG_SUM_ATOL
    )


@PROPERTY_SETTINGS
@given(inputs=logits_inputs(), temperature=temperatures(), data=st.data())
def test_row_shift_invariance_within_the_shift_rounding(inputs, temperature, data):
    """Any float shift c: x + c is rounded (absolute error <= eps |x + c| / 2 per entry),
    which moves softmax entries by a factor within exp(+-2 delta / T), delta the largest
    such error.  Both calls also round x_j - max (absolute error eps |x_j - max| / 2,
    which exp turns into a relative error of s_j), and the rest is a few ulp."""
    _, x, _ = inputs
    dtype = compute_dtype(x)
    x = np.asarray(x, dtype)
    shift = np.asarray(
        data.draw(st.sampled_from([1.0, -7.5, 1e3, -1e4]) | st.floats(-1e3, 1e3)), dtype
    )
    n_rows = x.size // x.shape[-1]
    rows_shift = (
        shift * np.arange(1, n_rows + 1, dtype=dtype).reshape(x.shape[:-1] + (1,)) / max(1, n_rows)
    )
    shifted = (x + rows_shift).astype(dtype)
    delta = eps(dtype) * float(np.max(np.abs(f64(shifted)))) / 2
    gap = f64(x).max(axis=-1, keepdims=True) - f64(x)  # x_j - max, >= 0
    exponent = (2 * delta + eps(dtype) * (gap + delta)) / temperature + 32 * eps(dtype)
    s = f64(fastsce.softmax(x, temperature=temperature))
    s_shifted = f64(fastsce.softmax(shifted, temperature=temperature))
    bound = s * np.expm1(exponent) + np.finfo(dtype).tiny
    excess = np.abs(s_shifted - s) - bound
    assert np.all(excess <= 0), (np.max(excess), s.ravel()[np.argmax(excess)])


# ---------------------------------------------------------------------------
# loss >= 0, gradient rows sum to 0


@PROPERTY_SETTINGS
@given(inputs=logits_inputs(masked=True), hard=st.booleans(), data=st.data())
def test_loss_is_non_negative(inputs, hard, data):
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    options = data.draw(loss_options(values.shape[-1], hard))
    target = data.draw(targets(values.shape, hard, dtype, options.get("ignore_index")))
    losses = fastsce.cross_entropy(x, target, reduction="none", **options)
    assert losses.shape == values.shape[:-1]
    # no NaN: every row has a finite logit; +inf when a target puts mass on a masked class
    assert not np.any(np.isnan(losses)), losses
    assert np.all(losses >= 0), losses[losses < 0]
    total = fastsce.cross_entropy(x, target, reduction="sum", **options)
    assert total >= 0
    mean, grad = fastsce.cross_entropy_with_grad(x, target, reduction="mean", **options)
    assert np.isnan(mean) or mean >= 0
    assert grad.shape == values.shape and grad.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("label_smoothing", [0.0, 1e-9, 0.5])
def test_zero_weight_target_on_a_masked_class_contributes_nothing(
    dtype, reduction, label_smoothing
):
    """Found by test_loss_is_non_negative: the target class has weight 0 and a -inf
    logit.  Its target mass w_t (1 - eps) is 0, so that term contributes nothing (0, as
    the reference and as the soft-target path with the same zero mass give; docs/DESIGN.md:
    only an all -inf row or a NaN makes a row NaN) -- not 0 * inf = NaN, which would
    also make the 'mean' and 'sum' of the whole batch NaN."""
    x = np.array([[-np.inf, 0.0, 1.0], [0.5, 0.2, 0.1]], dtype)
    target = np.array([0, 1])
    weight = np.array([0.0, 1.0, 1.0])
    loss, grad = fastsce.cross_entropy_with_grad(
        x, target, weight=weight, reduction=reduction, label_smoothing=label_smoothing
    )
    expected_loss, expected_grad = oracle(
        "cross_entropy_with_grad",
        x,
        target,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    assert_close(loss, expected_loss, LOSS_RTOL[np.dtype(dtype)], atol=1e-12)
    assert_close(grad, expected_grad, RTOL[np.dtype(dtype)], atol=1e-15)
    # the same zero mass given as a soft target: already 0
    soft = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype)
    soft_loss = fastsce.cross_entropy(x, soft, weight=weight, reduction="none")
    assert soft_loss[0] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", [None, [1.0, 2.0]])
def test_full_label_smoothing_with_the_target_on_a_masked_class_is_infinite(dtype, weight):
    """Found by test_loss_is_non_negative: label_smoothing=1 leaves the one-hot part of
    the target with mass 0, the uniform part puts mass on the masked class, so the loss
    is +inf (as the reference says and as for label_smoothing=0.999) -- not NaN."""
    x = np.array([[1.25e-4, -np.inf]], dtype)
    target = np.array([1])
    for label_smoothing in [0.999, 1.0]:
        losses = fastsce.cross_entropy(
            x, target, reduction="none", weight=weight, label_smoothing=label_smoothing
        )
        expected = oracle(
            "cross_entropy",
            x,
            target,
            reduction="none",
            weight=weight,
            label_smoothing=label_smoothing,
        )
        assert expected[0] == np.inf
        assert losses[0] == np.inf, (label_smoothing, losses)


def stable_smoothed_loss(x, t, eps, weight=None):
    """sum_j b_j ((m - x_j) + log sum_k exp(x_k - m)) in float64, each term as
    b_j m - b_j x_j (no sum of logits, no difference of two huge logits), so logits near
    the float64 maximum do not overflow."""
    x = f64(x)
    m = x.max()
    n = x.size
    w = np.ones(n) if weight is None else f64(weight)
    b = eps * w / n
    b[t] += (1 - eps) * w[t]
    return float(np.sum(b * m - b * x) + b.sum() * np.log(np.sum(np.exp(x - m))))


@pytest.mark.parametrize(
    "row, dtype",
    [
        ([1.7e308, 1.7e308], np.float64),
        ([1e308, 1e308, 0.0], np.float64),
        ([-1e308, -1e308, -3.0], np.float64),
        ([3e38, 3e38, 0.0], np.float32),
    ],
    ids=str,
)
@pytest.mark.parametrize("weight", [None, "ones"])
def test_label_smoothing_with_logits_near_the_largest_float(row, dtype, weight):
    """Found while writing the fuzzer: label smoothing takes the mean of the logits; a sum
    of logits near the float64 maximum overflows to inf, and the loss came out -inf
    (a negative infinite loss from finite logits) for class-index targets without class
    weights.  The loss is sum_j b_j (lse - x_j) >= 0, here finite (no logit is more than
    the largest float below the row maximum)."""
    x = np.array([row], dtype)
    w = None if weight is None else np.ones(len(row))
    loss = fastsce.cross_entropy(x, np.array([0]), label_smoothing=0.1, weight=w, reduction="none")
    expected = stable_smoothed_loss(x[0], 0, 0.1, w)
    assert np.isfinite(expected) and expected >= 0
    assert np.isfinite(loss[0]) and loss[0] >= 0, loss
    np.testing.assert_allclose(loss[0], expected, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("weight", [None, "ones"])
def test_label_smoothing_with_logits_spanning_more_than_the_float_range(weight):
    """x_j - max itself overflows here (-2e308): the loss may then be +inf (true value
    1e307), but never NaN or negative."""
    x = np.array([[1e308, -1e308, 0.0]])
    w = None if weight is None else np.ones(3)
    loss = fastsce.cross_entropy(x, np.array([0]), label_smoothing=0.1, weight=w, reduction="none")
    assert not np.isnan(loss[0]) and loss[0] >= 1e306, loss


@PROPERTY_SETTINGS
@given(
    inputs=logits_inputs(masked=True),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    data=st.data(),
)
def test_gradient_rows_sum_to_zero_for_class_indices(inputs, reduction, data):
    """grad = scale (w_t s - w_t onehot(t)): sum_j = scale w_t (sum s - 1) = 0, up to the
    rounding of the terms |scale w_t s_j| and |scale w_t| (_helpers.grad_magnitude)."""
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    options = data.draw(loss_options(values.shape[-1], hard=True, smoothing=False))
    target = data.draw(targets(values.shape, True, dtype, options.get("ignore_index")))
    loss, grad = fastsce.cross_entropy_with_grad(x, target, reduction=reduction, **options)
    int_target = np.asarray(target).astype(np.int64)
    ignored = int_target == options.get("ignore_index", -100)
    assert np.all(grad[ignored] == 0)
    finite_rows = (
        np.isfinite(np.asarray(loss)) if reduction == "none" else np.ones(values.shape[:-1], bool)
    )
    if reduction == "mean" and not np.isfinite(loss):
        return  # every row ignored or of weight 0: NaN loss (PyTorch), checked elsewhere
    magnitude = grad_magnitude(values, int_target, reduction, **options)
    row_error = np.abs(f64(grad).sum(axis=-1))
    bound = 16 * eps(dtype) * magnitude.sum(axis=-1) + np.finfo(dtype).tiny * values.shape[-1]
    bad = finite_rows & ~(row_error <= bound)
    assert not bad.any(), (row_error[bad], bound[bad])


# ---------------------------------------------------------------------------
# agreement with the reference


@PROPERTY_SETTINGS
@given(inputs=logits_inputs(masked=True), temperature=temperatures(), data=st.data())
def test_softmax_family_agrees_with_reference(inputs, temperature, data):
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    axis = data.draw(st.integers(-values.ndim, values.ndim - 1))
    if values.shape[axis] == 0:
        return
    masked_along_axis = np.isneginf(values).any()
    if masked_along_axis and axis % values.ndim != values.ndim - 1:
        # -inf entries guarantee a finite entry per row of the last axis only
        x = np.where(np.isneginf(values), 0.0, values).astype(values.dtype)
        values = x
        dtype = compute_dtype(x)
    # the oracle divides first, z = x / T, rounding z_j by eps64 |z_j|; fastsce scales the
    # exact x - max.  For |x| >> |x - max| (an offset of -1e3 with T = 0.05) the oracle's
    # own error, 2 eps64 max|z| relative on s, can exceed RTOL: add it.
    finite = values[np.isfinite(values)]
    z_max = float(np.max(np.abs(f64(finite)))) / temperature if finite.size else 0.0
    oracle_error = 4 * eps(np.float64) * z_max
    rtol = RTOL[dtype] + oracle_error
    for name in ["softmax", "log_softmax"]:
        result = getattr(fastsce, name)(x, axis=axis, temperature=temperature)
        assert result.dtype == dtype and result.shape == values.shape
        expected = oracle(name, values, axis=axis, temperature=temperature)
        atol = (
            (LOG_SUM_ATOL + oracle_error) if name == "log_softmax" else float(np.finfo(dtype).tiny)
        )
        assert_close(result, expected, rtol, atol=atol, err_msg=name)
    keepdims = data.draw(st.booleans())
    result = fastsce.logsumexp(x, axis=axis, keepdims=keepdims, temperature=temperature)
    expected = oracle("logsumexp", values, axis=axis, keepdims=keepdims, temperature=temperature)
    assert_close(
        result,
        expected,
        rtol,
        atol=LOG_SUM_ATOL,
        magnitude=logsumexp_magnitude(values, axis, keepdims, temperature),
    )


@PROPERTY_SETTINGS
@given(
    inputs=logits_inputs(masked=True),
    hard=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    data=st.data(),
)
def test_cross_entropy_agrees_with_reference(inputs, hard, reduction, data):
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    options = data.draw(loss_options(values.shape[-1], hard))
    target = data.draw(targets(values.shape, hard, dtype, options.get("ignore_index")))
    loss_only = fastsce.cross_entropy(x, target, reduction=reduction, **options)
    loss, grad = fastsce.cross_entropy_with_grad(x, target, reduction=reduction, **options)
    oracle_target = np.asarray(target).astype(np.int64) if hard else target
    assert_loss_and_grad_close(
        {"loss only": loss_only, "loss": loss},
        grad,
        values,
        oracle_target,
        reduction,
        dtype,
        options,
        grad_atol=flush_atol(values, oracle_target, reduction, dtype, **options),
    )


def flush_atol(logits, target, reduction, dtype, **options):
    """The exp flush allowance (conftest: probabilities below np.finfo(dtype).tiny become
    0) carried into the gradient scale * A * s_j: tiny times each row's target mass A
    times the 'mean' scale."""
    b, row_weight = target_distribution(np.shape(logits), target, **options)
    mass = np.abs(b.sum(axis=-1, keepdims=True))
    if reduction == "mean" and row_weight.sum() != 0:
        mass = mass / row_weight.sum()
    return float(np.finfo(dtype).tiny) * np.maximum(mass, 1.0)


@PROPERTY_SETTINGS
@given(inputs=logits_inputs(class_counts=st.integers(1, 40)), data=st.data())
def test_jacobian_and_backward_agree_with_reference(inputs, data):
    values, x, _layout = inputs
    dtype = compute_dtype(x)
    s = fastsce.softmax(values)
    s_input = in_layout(s, data.draw(layouts()))
    dtype = compute_dtype(s_input)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    grad_s = rng.standard_normal(values.shape).astype(values.dtype)
    jac = fastsce.softmax_jacobian(s_input)
    assert jac.shape == values.shape + (values.shape[-1],) and jac.dtype == dtype
    expected = oracle("softmax_jacobian", s)
    s64 = f64(s)
    jac_magnitude = np.abs(s64[..., :, None] * s64[..., None, :]) + np.abs(
        s64[..., :, None] * np.eye(values.shape[-1])
    )
    # products s_j s_k below the smallest normal number are subnormal (fewer digits) or 0
    assert_close(
        jac,
        expected,
        RTOL[dtype],
        magnitude=jac_magnitude,
        err_msg="jacobian",
        atol=float(np.finfo(dtype).tiny),
    )
    back = fastsce.softmax_backward(in_layout(grad_s, data.draw(layouts())), s_input)
    assert back.shape == values.shape
    assert_close(
        back,
        oracle("softmax_backward", grad_s, s),
        RTOL[dtype],
        magnitude=backward_magnitude(grad_s, s),
        atol=float(np.finfo(dtype).tiny),
        err_msg="backward",
    )


# ---------------------------------------------------------------------------
# finite differences (float64)


SMALL_SHAPES = shapes(max_batch_dims=2, max_rows=3, class_counts=st.integers(1, 6))


@PROPERTY_SETTINGS
@given(
    shape=SMALL_SHAPES,
    hard=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    data=st.data(),
)
def test_loss_gradient_matches_finite_differences(shape, hard, reduction, data):
    x = data.draw(logit_values(shape, np.float64, scales=(0.1, 1.0, 2.0)))
    options = data.draw(loss_options(shape[-1], hard))
    if "weight" in options:
        options["weight"] = np.clip(options["weight"], 0.0, 2.0)
    target = data.draw(targets(shape, hard, np.float64, options.get("ignore_index")))

    def total(z):
        return float(np.sum(fastsce.cross_entropy(z, target, reduction=reduction, **options)))

    _, grad = fastsce.cross_entropy_with_grad(x, target, reduction=reduction, **options)
    if np.isnan(total(x)):
        assert reduction == "mean"  # nothing kept: NaN loss, zero / NaN gradient rows
        return
    np.testing.assert_allclose(grad, central_difference(total, x), rtol=FD_RTOL, atol=FD_ATOL)


@PROPERTY_SETTINGS
@given(shape=SMALL_SHAPES, temperature=st.sampled_from([1.0, 0.5, 3.0]), data=st.data())
def test_softmax_family_gradients_match_finite_differences(shape, temperature, data):
    """d logsumexp(x/T)/dx = softmax(x/T)/T; d (g . softmax(x))/dx = softmax_backward(g, s)."""
    x = data.draw(logit_values(shape, np.float64, scales=(0.1, 1.0, 2.0)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = rng.standard_normal(shape)
    s = fastsce.softmax(x, temperature=temperature)
    np.testing.assert_allclose(
        s / temperature,
        central_difference(
            lambda z: float(np.sum(fastsce.logsumexp(z, temperature=temperature))), x
        ),
        rtol=FD_RTOL,
        atol=FD_ATOL,
    )
    if temperature == 1.0:
        np.testing.assert_allclose(
            fastsce.softmax_backward(g, s),
            central_difference(lambda z: float(np.sum(g * fastsce.softmax(z))), x),
            rtol=FD_RTOL,
            atol=FD_ATOL,
        )
