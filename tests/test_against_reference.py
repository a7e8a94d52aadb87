"""Every public function against ``fastsce.reference`` run in float64 (the oracle).

Shapes (C,), (N, C), (A, B, C) for every C in CLASS_COUNTS, float32 and float64,
every reduction and option of the cross-entropy, out= (fresh and in place), all
memory layouts, empty batches, and thread-count independence.  Tolerances are in
_helpers.py: float64 1e-12 and float32 1e-5 relative (1e-6 on losses).
"""

import math

import numpy as np
import pytest

import fastsce
from _helpers import (
    BASE_OPTIONS,
    CLASS_COUNTS,
    COMPUTE_DTYPES,
    DTYPES,
    LAYOUTS,
    LOG_SUM_ATOL,
    LOSS_RTOL,
    RTOL,
    SOFT_BASES,
    assert_close,
    assert_loss_and_grad_close,
    assert_unchanged,
    backward_magnitude,
    compute_dtype,
    f64,
    grad_magnitude,
    in_layout,
    logsumexp_magnitude,
    loss_atol,
    make_hard_target,
    make_logits,
    make_soft_target,
    oracle,
    rng_for,
    shapes_for,
    snapshot,
)
from fastsce import _config

SHAPES = [shape for n_classes in CLASS_COUNTS for shape in shapes_for(n_classes)]
REDUCTIONS = ["mean", "sum", "none"]


def shape_id(shape):
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------------
# helpers


def check_loss_type(loss, dtype, reduction, shape):
    """A loss has the promised type: a float, or for "none" an array of the rows."""
    if reduction == "none":
        assert isinstance(loss, np.ndarray)
        assert loss.shape == shape[:-1] and loss.dtype == dtype
    else:
        assert isinstance(loss, float), type(loss)


def run_cross_entropy(logits, target, reduction, options):
    """fastsce loss-only and loss+grad calls against the oracle, inputs unchanged."""
    dtype = compute_dtype(logits)
    shape = np.shape(logits)
    copies = snapshot(logits, target, options.get("weight"))
    loss_only = fastsce.cross_entropy(logits, target, reduction=reduction, **options)
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    assert_unchanged([logits, target, options.get("weight")], copies)

    check_loss_type(loss_only, dtype, reduction, shape)
    check_loss_type(loss, dtype, reduction, shape)
    assert grad.shape == shape and grad.dtype == dtype
    losses = {"loss only": loss_only, "loss": loss}
    assert_loss_and_grad_close(losses, grad, logits, target, reduction, dtype, options)
    return loss, grad


def check_softmax_family(name, result, expected, dtype, err_msg=""):
    """Relative comparison (no cancellation in either), plus LOG_SUM_ATOL for the
    log-sum term of log_softmax (_helpers.py)."""
    atol = LOG_SUM_ATOL if name == "log_softmax" else 0.0
    assert_close(result, expected, RTOL[np.dtype(dtype)], atol=atol, err_msg=err_msg)


# ---------------------------------------------------------------------------
# softmax family over every shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax(name, shape, dtype):
    x = make_logits(shape, dtype)
    copy = x.copy()
    result = getattr(fastsce, name)(x)
    np.testing.assert_array_equal(x, copy)
    assert result.shape == shape and result.dtype == dtype
    check_softmax_family(name, result, oracle(name, x), dtype)
    if name == "softmax":
        assert np.all(result >= 0) and np.all(result <= 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp(shape, dtype, keepdims):
    x = make_logits(shape, dtype)
    result = fastsce.logsumexp(x, keepdims=keepdims)
    expected = oracle("logsumexp", x, keepdims=keepdims)
    assert np.shape(result) == expected.shape and result.dtype == dtype
    assert_close(
        result,
        expected,
        RTOL[np.dtype(dtype)],
        magnitude=logsumexp_magnitude(x, keepdims=keepdims),
        atol=LOG_SUM_ATOL,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 1000, 2), (2, 3, 4097)], ids=shape_id)
@pytest.mark.parametrize("axis", [0, 1, -1, -3])
@pytest.mark.parametrize("order", ["C", "F"])
def test_softmax_family_along_any_axis(shape, dtype, axis, order):
    x = make_logits(shape, dtype, order)
    rtol = RTOL[np.dtype(dtype)]
    for name in ["softmax", "log_softmax"]:
        result = getattr(fastsce, name)(x, axis=axis)
        assert result.shape == shape and result.dtype == dtype
        check_softmax_family(name, result, oracle(name, x, axis=axis), dtype, err_msg=name)
    for keepdims in [False, True]:
        result = fastsce.logsumexp(x, axis=axis, keepdims=keepdims)
        assert_close(
            result,
            oracle("logsumexp", x, axis=axis, keepdims=keepdims),
            rtol,
            magnitude=logsumexp_magnitude(x, axis, keepdims),
            atol=LOG_SUM_ATOL,
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (5, 10), (2, 3, 1000), (3, 4097)], ids=shape_id)
@pytest.mark.parametrize("temperature", [0.25, 0.5, 3.0, 100.0])
def test_temperature(shape, dtype, temperature):
    x = make_logits(shape, dtype)
    rtol = RTOL[np.dtype(dtype)]
    for name in ["softmax", "log_softmax"]:
        result = getattr(fastsce, name)(x, temperature=temperature)
        check_softmax_family(
            name, result, oracle(name, x, temperature=temperature), dtype, err_msg=name
        )
    result = fastsce.logsumexp(x, temperature=temperature)
    assert_close(
        result,
        oracle("logsumexp", x, temperature=temperature),
        rtol,
        magnitude=logsumexp_magnitude(x, temperature=temperature),
        atol=LOG_SUM_ATOL,
    )


def backward_oracle(grad_s, s):
    """reference.softmax_backward builds the C x C Jacobian of every row; beyond C = 1000
    that is hundreds of MB, so there the same product s (g - g.s) is taken in float64."""
    if np.shape(s)[-1] <= 1000:
        return oracle("softmax_backward", grad_s, s)
    grad_s, s = f64(grad_s), f64(s)
    return s * (grad_s - np.sum(grad_s * s, axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_softmax_backward(shape, dtype):
    rng = rng_for("backward", shape, dtype)
    s = fastsce.softmax(make_logits(shape, dtype, rng=rng))
    grad_s = rng.standard_normal(shape).astype(dtype)
    copies = snapshot(s, grad_s)
    result = fastsce.softmax_backward(grad_s, s)
    assert_unchanged([s, grad_s], copies)
    assert result.shape == shape and result.dtype == dtype
    assert_close(
        result,
        backward_oracle(grad_s, s),
        RTOL[np.dtype(dtype)],
        magnitude=backward_magnitude(grad_s, s),
    )


def test_softmax_backward_mixed_dtypes_compute_in_the_wider():
    rng = rng_for("backward mixed")
    s = fastsce.softmax(make_logits((4, 9), np.float32, rng=rng))
    grad_s = rng.standard_normal((4, 9))
    for args in [(grad_s, s), (grad_s.astype(np.float32), s.astype(np.float64))]:
        result = fastsce.softmax_backward(*args)
        assert result.dtype == np.float64
        assert_close(
            result, oracle("softmax_backward", *args), 1e-12, magnitude=backward_magnitude(*args)
        )


# The Jacobian has C * C entries per row: C = 4097 is 134 MB per float64 row (and the
# reference builds another copy), so it is checked up to C = 1000.
JACOBIAN_SHAPES = [shape for n_classes in [1, 2, 3, 10] for shape in shapes_for(n_classes)] + [
    (1000,),
    (2, 1000),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", JACOBIAN_SHAPES, ids=shape_id)
def test_softmax_jacobian(shape, dtype):
    s = fastsce.softmax(make_logits(shape, dtype))
    copy = s.copy()
    jac = fastsce.softmax_jacobian(s)
    np.testing.assert_array_equal(s, copy)
    assert jac.shape == shape + shape[-1:] and jac.dtype == dtype
    # J_jk = [j == k] s_j - s_j s_k: the diagonal is a difference of s_j and s_j^2
    s64 = f64(s)
    magnitude = np.abs(s64[..., :, None] * s64[..., None, :]) + np.abs(
        np.eye(shape[-1]) * s64[..., None, :]
    )
    assert_close(jac, oracle("softmax_jacobian", s), RTOL[np.dtype(dtype)], magnitude=magnitude)
    np.testing.assert_array_equal(jac, np.swapaxes(jac, -1, -2))


# ---------------------------------------------------------------------------
# cross-entropy over every shape, reduction and option


def hard_options(kind, n_classes, rng):
    """(options, ignore_index used in the targets or None) for an option set."""
    weight = rng.uniform(0.5, 2.0, n_classes)
    return {
        "plain": ({}, None),
        "ignore_index": ({"ignore_index": -100}, -100),
        "ignore_index_in_range": ({"ignore_index": 0}, None),
        "weight": ({"weight": weight}, None),
        "label_smoothing": ({"label_smoothing": 0.1}, None),
        "weight_smoothing": ({"weight": weight, "label_smoothing": 0.25}, None),
        "all": ({"weight": weight, "label_smoothing": 0.3, "ignore_index": 7}, 7),
    }[kind]


HARD_KINDS = [
    "plain",
    "ignore_index",
    "ignore_index_in_range",
    "weight",
    "label_smoothing",
    "weight_smoothing",
    "all",
]


def hard_target(shape, rng, ignore_index):
    """Class indices for logits of `shape`; every third row (from the second) ignored."""
    target = make_hard_target(shape[:-1], shape[-1], rng)
    if ignore_index is not None:
        target.reshape(-1)[1::3] = ignore_index
    return target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", HARD_KINDS)
def test_cross_entropy_hard_targets(kind, reduction, shape, dtype):
    rng = rng_for("hard", kind, shape, dtype)
    logits = make_logits(shape, dtype, rng=rng)
    options, ignore_index = hard_options(kind, shape[-1], rng)
    target = hard_target(shape, rng, ignore_index)
    loss, grad = run_cross_entropy(logits, target, reduction, options)
    if ignore_index is not None:
        ignored = target == ignore_index
        assert np.all(grad[ignored] == 0)
        if reduction == "none":
            assert np.all(loss[ignored] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_rows", [8, 16, 17, 33, 40])
@pytest.mark.parametrize("n_classes", [1, 2, 7, 10, 16, 17, 20, 33, 64, 65])
@pytest.mark.parametrize("layout", ["C", "F", "strided_rows", "negative_strides"])
@pytest.mark.parametrize("kind", ["ignore_index", "label_smoothing", "weight"])
def test_short_rows_in_blocks_of_lanes(kind, layout, n_classes, n_rows, dtype):
    """Rows of at most 64 classes are computed a vector's lanes of rows at a time (blocks
    of rows read in place and transposed, a partial last block of rows, a partial last
    block of classes): every row and class count around the widths (4, 8, 16 lanes),
    the largest such rows and the first beyond them, layouts with row strides of either
    sign."""
    shape = (n_rows, n_classes)
    rng = rng_for("short rows", kind, layout, shape, dtype)
    logits = make_logits(shape, dtype, layout, rng=rng)
    options, ignore_index = hard_options(kind, n_classes, rng)
    target = hard_target(shape, rng, ignore_index)
    for reduction in REDUCTIONS:
        _, grad = run_cross_entropy(logits, target, reduction, options)
        if ignore_index is not None:
            assert np.all(grad[target == ignore_index] == 0)


#: the soft-target option sets of _helpers, and ignore_index, which soft targets ignore
SOFT_KINDS = {
    **{base: BASE_OPTIONS[base] for base in SOFT_BASES},
    "ignore_index_not_applied": {"ignore_index": 0},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", list(SOFT_KINDS))
def test_cross_entropy_soft_targets(kind, reduction, shape, dtype):
    rng = rng_for("soft", kind, shape, dtype)
    logits = make_logits(shape, dtype, rng=rng)
    target = make_soft_target(shape, dtype, rng)
    options = dict(SOFT_KINDS[kind])
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, shape[-1])
    run_cross_entropy(logits, target, reduction, options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_target_in_float64_with_float32_logits_is_used_in_float32(reduction):
    """Probabilities are read in the logits' compute dtype."""
    rng = rng_for("soft f64 target")
    logits = make_logits((5, 11), np.float32, rng=rng)
    target = make_soft_target((5, 11), np.float64, rng)
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction)
    loss32, grad32 = fastsce.cross_entropy_with_grad(
        logits, target.astype(np.float32), reduction=reduction
    )
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, grad32)
    np.testing.assert_array_equal(loss, loss32)


@pytest.mark.parametrize("seed", range(60))
def test_cross_entropy_random_option_combinations(seed):
    """Random shape, dtype, reduction, target kind, weight, smoothing, ignore_index and
    logit scale per seed (deterministic; no extra test dependency)."""
    rng = np.random.default_rng(seed)
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    shape = pick([(1,), (4,), (3, 1), (2, 5), (7, 3), (2, 3, 9), (1, 2, 17)])
    dtype = pick(DTYPES)
    logits = make_logits(shape, dtype, rng=rng, scale=pick([0.1, 1.0, 10.0]))
    ignore_index = pick([-100, -1, 0, 2])
    if rng.random() < 0.5:
        target = make_soft_target(shape, dtype, rng)
    else:
        target = rng.integers(0, shape[-1], shape[:-1])
        target = np.where(rng.random(shape[:-1]) < 0.3, ignore_index, target)
    options = {"label_smoothing": pick([0.0, 0.05, 0.5, 1.0]), "ignore_index": ignore_index}
    if rng.random() < 0.5:
        options["weight"] = rng.uniform(0.1, 3.0, shape[-1])
    run_cross_entropy(logits, target, pick(REDUCTIONS), options)


# ---------------------------------------------------------------------------
# out=


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (6, 10), (2, 3, 4097)], ids=shape_id)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_out_fresh_and_in_place(name, axis, shape, dtype):
    func = getattr(fastsce, name)
    x = make_logits(shape, dtype)
    expected = func(x, axis=axis)

    out = np.full(shape, np.nan, dtype)
    result = func(x, axis=axis, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)

    in_place = x.copy()
    result = func(in_place, axis=axis, out=in_place)
    assert result is in_place
    np.testing.assert_array_equal(in_place, expected)
    check_softmax_family(name, in_place, oracle(name, x, axis=axis), dtype)


OUT_CASES = {
    "hard": ("hard", {}),
    "hard_ignore": ("hard", {"ignore_index": -100}),
    "hard_smoothing": ("hard", {"label_smoothing": 0.2}),
    "hard_weight_smoothing": ("hard", {"weight": "random", "label_smoothing": 0.2}),
    "soft": ("soft", {}),
    "soft_weight_smoothing": ("soft", {"weight": "random", "label_smoothing": 0.2}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (9, 10), (2, 3, 4097)], ids=shape_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(OUT_CASES))
def test_cross_entropy_out_fresh_and_in_place(case, reduction, shape, dtype):
    rng = rng_for("out", case, shape, dtype)
    kind, options = OUT_CASES[case]
    options = dict(options)
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, shape[-1])
    logits = make_logits(shape, dtype, rng=rng)
    if kind == "soft":
        target = make_soft_target(shape, dtype, rng)
    else:
        target = hard_target(shape, rng, options.get("ignore_index"))
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, **options
    )

    out = np.full(shape, np.nan, dtype)
    loss, grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, out=out, **options
    )
    assert grad is out
    np.testing.assert_array_equal(grad, expected_grad)
    np.testing.assert_array_equal(loss, expected_loss)

    in_place = logits.copy()
    loss, grad = fastsce.cross_entropy_with_grad(
        in_place, target, reduction=reduction, out=in_place, **options
    )
    assert grad is in_place
    np.testing.assert_array_equal(in_place, expected_grad)
    np.testing.assert_array_equal(loss, expected_loss)
    _, oracle_grad = oracle(
        "cross_entropy_with_grad", logits, target, reduction=reduction, **options
    )
    assert_close(
        in_place,
        oracle_grad,
        RTOL[np.dtype(dtype)],
        magnitude=grad_magnitude(logits, target, reduction, **options),
    )


# ---------------------------------------------------------------------------
# layouts: every layout gives bit for bit the C-order result and is not modified

# (20, 4097) is above the 65536-element threshold: the strided kernels run on 2 threads
LAYOUT_SHAPES = [(7,), (5, 3), (4, 13), (2, 3, 1000), (2, 4097), (20, 4097)]


def native(value):
    """C-ordered, native-byte-order array in the compute dtype of `value`."""
    return np.array(value, dtype=compute_dtype(value), order="C")


# The twins, bottleneck's way: every public function beside fastsce.reference's function
# of the same name, and how to make its arguments from logits of a shape and dtype.  One
# table drives the comparisons over layouts and dtypes; the per-function tests above add
# the shapes, options and edge cases.  An entry: name -> arguments(values, rng) returning
# (the positional array arguments, in order, laid out by the test; keyword options,
# passed as they are).


def softmax_arguments(values, rng):
    return {"x": values}, {}


def backward_arguments(values, rng):
    grad_s = rng.standard_normal(values.shape).astype(values.dtype)
    return {"grad_s": grad_s, "s": fastsce.softmax(values)}, {}


def log_backward_arguments(values, rng):
    grad_out = rng.standard_normal(values.shape).astype(values.dtype)
    return {"grad_out": grad_out, "log_s": fastsce.log_softmax(values)}, {}


def hard_loss_arguments(values, rng):
    weight = rng.uniform(0.5, 2.0, values.shape[-1])
    target = hard_target(values.shape, rng, -100)
    return {"logits": values, "target": target}, {"weight": weight, "label_smoothing": 0.1}


def soft_loss_arguments(values, rng):
    target = make_soft_target(values.shape, values.dtype, rng)
    return {"logits": values, "target": target}, {"reduction": "none", "label_smoothing": 0.2}


TWINS = {
    "softmax": softmax_arguments,
    "log_softmax": softmax_arguments,
    "logsumexp": softmax_arguments,
    "softmax_backward": backward_arguments,
    "log_softmax_backward": log_backward_arguments,
    "softmax_jacobian": lambda values, rng: ({"s": fastsce.softmax(values)}, {}),
    "cross_entropy": hard_loss_arguments,
    "cross_entropy_with_grad": hard_loss_arguments,
    "cross_entropy_with_grad, soft targets": soft_loss_arguments,
}
#: the Jacobian is C x C per row: only the layout shapes whose Jacobian stays small
TWIN_CASES = [
    (twin, shape)
    for twin in TWINS
    for shape in LAYOUT_SHAPES
    if not (twin == "softmax_jacobian" and np.prod(shape) > 1000)
]


def as_results(value):
    return [np.asarray(v) for v in (value if isinstance(value, tuple) else (value,))]


def reference_bound(name, arrays, options, dtype):
    """(expected results, magnitude, atol) of the float64 reference twin, with the
    magnitude and absolute allowance the _helpers module docstring derives."""
    if name == "softmax_backward":  # without the reference's C x C Jacobians
        grad_s, s = arrays["grad_s"], arrays["s"]
        return [backward_oracle(grad_s, s)], backward_magnitude(grad_s, s), 0.0
    expected = as_results(oracle(name, *arrays.values(), **options))
    if name.startswith("cross_entropy"):
        logits, target = arrays["logits"], arrays["target"]
        rest = dict(options)
        reduction = rest.pop("reduction", "mean")
        return (
            expected,
            grad_magnitude(logits, target, reduction, **rest),
            loss_atol(logits, target, reduction, **rest),
        )
    if name == "logsumexp":
        return expected, logsumexp_magnitude(arrays["x"]), LOG_SUM_ATOL
    if name == "log_softmax_backward":
        s = np.exp(f64(arrays["log_s"]))
        grad = f64(arrays["grad_out"])
        magnitude = np.abs(grad) + s * np.sum(np.abs(grad), axis=-1, keepdims=True)
        return expected, magnitude, 0.0
    return expected, None, LOG_SUM_ATOL if name == "log_softmax" else 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "twin, shape", TWIN_CASES, ids=[f"{t}-{shape_id(s)}" for t, s in TWIN_CASES]
)
def test_twins_in_every_layout(twin, shape, layout, dtype):
    """Each twin's array arguments in every memory layout: the inputs unchanged, the same
    bits as in C order, and the float64 reference twin's values to RTOL."""
    name = twin.split(",")[0]
    rng = rng_for("twin", twin, layout, shape, dtype)
    arrays, options = TWINS[twin](make_logits(shape, dtype, rng=rng), rng)
    laid_out = {k: in_layout(v, layout) for k, v in arrays.items()}
    copies = snapshot(*laid_out.values())
    results = as_results(getattr(fastsce, name)(*laid_out.values(), **options))
    assert_unchanged(list(laid_out.values()), copies)
    # the same values in C order and the compute dtype of what was passed (nested lists
    # of float32 values arrive as float64); class indices as they were
    plain = {k: native(laid_out[k]) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    c_order = as_results(getattr(fastsce, name)(*plain.values(), **options))
    for result, expected in zip(results, c_order, strict=True):
        np.testing.assert_array_equal(result, expected, err_msg=name)
        assert result.dtype == expected.dtype
    expected, magnitude, atol = reference_bound(name, plain, options, dtype)
    rtol = RTOL[np.dtype(dtype)]
    if name.startswith("cross_entropy"):
        assert_close(results[0], expected[0], LOSS_RTOL[np.dtype(dtype)], atol=atol)
        results, expected, atol = results[1:], expected[1:], 0.0
    for result, value in zip(results, expected):
        assert_close(result, value, rtol, magnitude=magnitude, atol=atol, err_msg=name)


@pytest.mark.parametrize(
    "target_dtype",
    ["int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64", ">i8", "<i4", ">u2"],
)
def test_class_index_dtypes(target_dtype):
    rng = rng_for("target dtype", target_dtype)
    logits = make_logits((6, 5, 7), np.float64, rng=rng)
    target = rng.integers(0, 7, (6, 5))
    expected = fastsce.cross_entropy_with_grad(logits, target, reduction="none")
    cast = target.astype(target_dtype)
    result = fastsce.cross_entropy_with_grad(logits, cast, reduction="none")
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1], expected[1])
    # a strided, a Fortran-ordered and a list target
    for variant in [np.asfortranarray(cast), in_layout(cast, "strided_cols"), cast.tolist()]:
        result = fastsce.cross_entropy_with_grad(logits, variant, reduction="none")
        np.testing.assert_array_equal(result[1], expected[1])


def test_rows_with_zero_stride():
    """A broadcast (stride-0) batch: every row is the same row."""
    row = make_logits((9,), np.float64)
    logits = np.broadcast_to(row, (4, 9))
    s = fastsce.softmax(logits)
    np.testing.assert_array_equal(s, np.tile(fastsce.softmax(row), (4, 1)))
    loss, grad = fastsce.cross_entropy_with_grad(logits, [3, 3, 3, 3], reduction="none")
    single_loss, single_grad = fastsce.cross_entropy_with_grad(row, 3, reduction="none")
    np.testing.assert_array_equal(loss, np.full(4, single_loss))
    np.testing.assert_array_equal(grad, np.tile(single_grad, (4, 1)))


# ---------------------------------------------------------------------------
# dtypes of results


@pytest.mark.parametrize("input_dtype, result_dtype", COMPUTE_DTYPES.items(), ids=str)
def test_compute_dtypes(input_dtype, result_dtype):
    x = (np.arange(12).reshape(3, 4) % 5 - 2).astype(input_dtype)
    exact = f64(x)
    rtol = RTOL[np.dtype(result_dtype)]
    for name in ["softmax", "log_softmax", "logsumexp"]:
        result = getattr(fastsce, name)(x)
        assert result.dtype == result_dtype, name
        np.testing.assert_array_equal(result, getattr(fastsce, name)(exact.astype(result_dtype)))
    loss, grad = fastsce.cross_entropy_with_grad(x, [0, 1, 3], reduction="none")
    assert grad.dtype == result_dtype and loss.dtype == result_dtype
    expected_loss, expected_grad = oracle(
        "cross_entropy_with_grad", exact, np.array([0, 1, 3]), reduction="none"
    )
    assert_close(loss, expected_loss, LOSS_RTOL[np.dtype(result_dtype)])
    assert_close(
        grad, expected_grad, rtol, magnitude=grad_magnitude(exact, np.array([0, 1, 3]), "none")
    )
    s = fastsce.softmax(x)
    assert fastsce.softmax_jacobian(s).dtype == result_dtype
    assert fastsce.softmax_backward(x, x).dtype == result_dtype


def test_nested_lists_and_python_scalars():
    logits = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    loss, grad = fastsce.cross_entropy_with_grad(logits, [2, 0])
    expected_loss, expected_grad = oracle("cross_entropy_with_grad", logits, np.array([2, 0]))
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert_close(grad, expected_grad, 1e-12, magnitude=grad_magnitude(logits, np.array([2, 0])))
    assert fastsce.logsumexp([0.0, 0.0]) == pytest.approx(math.log(2.0), rel=1e-15)
    np.testing.assert_allclose(fastsce.softmax([1, 1, 1, 1]), 0.25, rtol=1e-15)


# ---------------------------------------------------------------------------
# empty batches


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 1), (0, 3), (0, 4097), (2, 0, 5), (0, 3, 5)], ids=shape_id)
def test_empty_batches(shape, dtype):
    x = np.zeros(shape, dtype)
    for name in ["softmax", "log_softmax"]:
        result = getattr(fastsce, name)(x)
        assert result.shape == shape and result.dtype == dtype
    assert fastsce.logsumexp(x).shape == shape[:-1]
    assert fastsce.logsumexp(x, keepdims=True).shape == shape[:-1] + (1,)
    assert fastsce.softmax_backward(x, x).shape == shape
    assert fastsce.softmax_jacobian(x).shape == shape + shape[-1:]

    for target in [np.zeros(shape[:-1], np.int64), np.zeros(shape, dtype)]:
        loss, grad = fastsce.cross_entropy_with_grad(x, target)
        assert math.isnan(loss)  # 'mean' over no rows
        assert math.isnan(oracle("cross_entropy", x, target))
        assert grad.shape == shape and grad.dtype == dtype
        assert fastsce.cross_entropy(x, target, reduction="sum") == 0.0
        none = fastsce.cross_entropy(x, target, reduction="none")
        assert none.shape == shape[:-1] and none.dtype == dtype


# ---------------------------------------------------------------------------
# thread-count independence


PARALLEL_SHAPE = (40, 4097)  # 163880 elements: above the 65536-element threshold


def all_results(rng):
    """Outputs of every public function on inputs large enough to run in parallel."""
    x = make_logits(PARALLEL_SHAPE, np.float32, rng=rng)
    x64 = x.astype(np.float64)
    n_classes = PARALLEL_SHAPE[-1]
    weight = rng.uniform(0.5, 2.0, n_classes)
    hard = hard_target(PARALLEL_SHAPE, rng, -100)
    soft = make_soft_target(PARALLEL_SHAPE, np.float32, rng)
    s = fastsce.softmax(x)
    results = [
        s,
        fastsce.log_softmax(x64),
        fastsce.logsumexp(x),
        fastsce.softmax(x64, axis=0),
        fastsce.softmax_backward(x, s),
        fastsce.softmax_jacobian(s[:, :64].copy()),  # 40 * 64 * 64 > 65536
    ]
    for logits in [x, x64]:
        for target in [hard, soft.astype(logits.dtype)]:
            for options in [{}, {"weight": weight, "label_smoothing": 0.1}]:
                for reduction in REDUCTIONS:
                    loss, grad = fastsce.cross_entropy_with_grad(
                        logits, target, reduction=reduction, **options
                    )
                    results += [np.asarray(loss), grad]
    return results


@pytest.mark.usefixtures("restore_threads")
def test_results_do_not_depend_on_the_thread_count():
    fastsce.set_num_threads(1)
    assert fastsce.get_num_threads() == 1
    single = all_results(rng_for("threads"))
    fastsce.set_num_threads(2)
    assert fastsce.get_num_threads() == 2
    double = all_results(rng_for("threads"))
    for a, b in zip(single, double):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("restore_threads")
def test_set_num_threads_none_restores_the_default():
    fastsce.set_num_threads(3)
    assert fastsce.get_num_threads() == 3
    fastsce.set_num_threads(None)
    assert fastsce.get_num_threads() == _config.USABLE_CPUS
