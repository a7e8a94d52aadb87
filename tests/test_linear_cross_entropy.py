"""fastsce.linear_cross_entropy(_with_grad): the loss of logits X Wᵀ + b, fused.

The oracle is unfused and float64: logits = X Wᵀ + b from float64 copies of the inputs,
then fastsce.reference.cross_entropy_with_grad (loss and G = dloss/dlogits), then
dX = G W, dW = Gᵀ X, db = the column sums of G.  The tolerance of each value is derived,
not chosen: the kernel's own (RTOL / LOSS_RTOL on option_bounds' magnitudes, as for
cross_entropy), plus what the GEMMs in the compute dtype allow, with the classic bound
|fl(A B) - A B| <= gamma_K |A| |B|, gamma_K = K u / (1 - K u), u the unit roundoff:

* logits: delta = gamma_(H+1) (|X| |W|ᵀ + |b|);
* the loss moves by at most sum |G| delta (G being dloss/dlogits);
* G moves by at most its magnitude times 2 max_k delta_k / T (softmax: |ds_j| <= s_j
  (|dz_j| + sum_k s_k |dz_k|)), plus 2 max_k delta_k / c with a softcap c (dz/dx);
* dX = G W, dW = Gᵀ X: that error through |W| and |X|, plus gamma_V |G| |W| and
  gamma_N |G|ᵀ |X| for the products themselves; db is summed in float64.

In float64 these bounds are ~1e-13 relative; in float32 they are what float32 GEMMs
allow.  Everything else (threads, chunk sizes, layouts) is compared bit for bit.
"""

import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import fastsce
from _helpers import (
    BAD_EXTRA_OPTIONS,
    BASE_OPTIONS,
    FD_ATOL,
    FD_RTOL,
    LOSS_RTOL,
    RTOL,
    SOFT_BASES,
    TRANSFORMS,
    assert_close,
    assert_unchanged,
    central_difference,
    f64,
    make_hard_target,
    make_soft_target,
    option_bounds,
    oracle,
    rng_for,
    snapshot,
)

#: rows, features, classes: several chunks, class tiles (1024) and feature tiles (256)
#: with a remainder each
SHAPE = (21, 260, 1100)
CASES = [("hard", base) for base in BASE_OPTIONS] + [("soft", base) for base in SOFT_BASES]


def make_problem(kind, base, transform, dtype, shape=SHAPE, bias=True, tag="linear"):
    """(x, w, b or None, target, options) with logits of a few units."""
    n_rows, n_features, n_classes = shape
    rng = rng_for(tag, kind, base, transform, np.dtype(dtype).name, shape, bias)
    options = {**BASE_OPTIONS[base], **TRANSFORMS[transform]}
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, n_classes)
    x = rng.standard_normal((n_rows, n_features)).astype(dtype)
    w = (2.0 / np.sqrt(max(n_features, 1)) * rng.standard_normal((n_classes, n_features))).astype(
        dtype
    )
    b = rng.standard_normal(n_classes).astype(dtype) if bias else None
    if kind == "soft":
        target = make_soft_target((n_rows, n_classes), dtype, rng)
    else:
        ignore_index = options.get("ignore_index", -100)
        target = make_hard_target((n_rows,), n_classes, rng, ignore_index=ignore_index)
    return x, w, b, target, options


def unfused(x, w, b, target, reduction, options):
    """(loss, dX, dW, db, G, logits) in float64, from the logits."""
    x, w = f64(x), f64(w)
    logits = x @ w.T + (0.0 if b is None else f64(b))
    loss, grad = oracle("cross_entropy_with_grad", logits, target, reduction=reduction, **options)
    grad = grad.reshape(-1, w.shape[0])
    rows = x.reshape(grad.shape[0], w.shape[1])
    return loss, grad @ w, grad.T @ rows, grad.sum(axis=0), grad, logits


def gamma(k, dtype):
    u = np.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def assert_matches_unfused(result, x, w, b, target, reduction, options, dtype):
    """`result` of linear_cross_entropy_with_grad within the bounds of the module docstring."""
    loss, grad_x, grad_w, grad_b = result
    expected_loss, expected_x, expected_w, expected_b, grad, logits = unfused(
        x, w, b, target, reduction, options
    )
    rows, weight = np.abs(f64(x).reshape(grad.shape[0], w.shape[1])), np.abs(f64(w))
    n_rows, n_features = rows.shape
    loss_atol, grad_magnitude, _ = option_bounds(logits, target, reduction, options, dtype)
    delta = gamma(n_features + 1, dtype) * (rows @ weight.T + (0.0 if b is None else np.abs(b)))
    inv_t = 1.0 / options.get("temperature", 1.0)
    relative = 2.0 * delta.max(axis=1, keepdims=True) * inv_t
    if options.get("softcap") is not None:
        relative = relative + 2.0 * delta.max(axis=1, keepdims=True) / options["softcap"]
    abs_grad = np.abs(grad)
    grad_error = grad_magnitude.reshape(grad.shape) * (RTOL[np.dtype(dtype)] + relative)
    loss_moves = np.sum(abs_grad * delta, axis=1)
    if reduction == "none":
        assert np.shape(loss) == np.shape(target)[: np.ndim(x) - 1]
        assert_close(loss, expected_loss, LOSS_RTOL[np.dtype(dtype)], atol=loss_atol + loss_moves)
    else:
        assert isinstance(loss, float)
        assert_close(
            loss, expected_loss, LOSS_RTOL[np.dtype(dtype)], atol=loss_atol + loss_moves.sum()
        )
    for name, actual, expected, bound in [
        (
            "grad_input",
            grad_x.reshape(n_rows, n_features),
            expected_x,
            grad_error @ weight + gamma(w.shape[0], dtype) * abs_grad @ weight,
        ),
        (
            "grad_linear_weight",
            grad_w,
            expected_w,
            grad_error.T @ rows + gamma(n_rows, dtype) * abs_grad.T @ rows,
        ),
    ]:
        assert actual.dtype == dtype and actual.flags.c_contiguous, name
        assert_close(actual, expected, 1.0, magnitude=bound, err_msg=name)
    if b is None:
        assert grad_b is None
    else:
        assert grad_b.dtype == dtype
        bias_bound = grad_error.sum(axis=0) + np.finfo(dtype).eps * np.abs(expected_b)
        assert_close(grad_b, expected_b, 1.0, magnitude=bias_bound, err_msg="grad_linear_bias")


# ---------------------------------------------------------------------------
# values


#: every option set with every transform for "mean", the other reductions with two
FLOAT64_CASES = [(*case, transform, "mean") for case in CASES for transform in TRANSFORMS] + [
    (*case, transform, reduction)
    for case in CASES
    for transform in ("none", "all")
    for reduction in ("sum", "none")
]


@pytest.mark.parametrize(("kind", "base", "transform", "reduction"), FLOAT64_CASES, ids=str)
def test_float64_matches_the_unfused_computation(kind, base, transform, reduction):
    x, w, b, target, options = make_problem(kind, base, transform, np.float64)
    budget = 8 * SHAPE[2] * 8  # chunks of 8 rows: 3 chunks, the last of 5
    result = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=b, reduction=reduction, memory_budget=budget, **options
    )
    assert_matches_unfused(result, x, w, b, target, reduction, options, np.float64)
    loss_only = fastsce.linear_cross_entropy(
        x, w, target, linear_bias=b, reduction=reduction, memory_budget=budget, **options
    )
    # the loss alone, by tiles of classes (1100 > 1024): the same bound
    assert_matches_unfused(
        (loss_only, *result[1:]), x, w, b, target, reduction, options, np.float64
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("kind", "base"), CASES, ids=[f"{k}-{b}" for k, b in CASES])
def test_float32_within_what_the_gemms_allow(kind, base, bias, reduction):
    x, w, b, target, options = make_problem(kind, base, "none", np.float32, bias=bias)
    result = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=b, reduction=reduction, memory_budget=1e5, **options
    )
    assert_matches_unfused(result, x, w, b, target, reduction, options, np.float32)
    loss_only = fastsce.linear_cross_entropy(
        x, w, target, linear_bias=b, reduction=reduction, memory_budget=1e5, **options
    )
    assert_matches_unfused(
        (loss_only, *result[1:]), x, w, b, target, reduction, options, np.float32
    )


@pytest.mark.parametrize(
    "shape",
    [(1, 5, 3), (1, 260, 2100), (9, 1, 1), (5, 0, 4), (6, 3, 1025), (300, 7, 40)],
    ids=str,
)
@pytest.mark.parametrize("budget", [None, 1, 3.5, "one_short", "exact"])
def test_odd_shapes_and_chunk_boundaries(shape, budget):
    """One row, one feature or class, no feature at all, one class past a tile, and chunks
    of 1 row, 3 rows, n - 1 rows and exactly n rows."""
    x, w, b, target, options = make_problem("hard", "everything", "all", np.float64, shape)
    row_bytes = shape[2] * 8
    budget = {"one_short": (shape[0] - 1) * row_bytes, "exact": shape[0] * row_bytes}.get(
        budget, budget if budget is None else budget * row_bytes
    )
    result = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=b, memory_budget=budget or None, **options
    )
    assert_matches_unfused(result, x, w, b, target, "mean", options, np.float64)
    loss_only = fastsce.linear_cross_entropy(
        x, w, target, linear_bias=b, memory_budget=budget or None, **options
    )
    assert_matches_unfused((loss_only, *result[1:]), x, w, b, target, "mean", options, np.float64)


def test_leading_axes_keep_their_shape():
    x, w, b, target, _ = make_problem("hard", "plain", "none", np.float64, (12, 6, 9))
    x3, t3 = x.reshape(3, 4, 6), target.reshape(3, 4)
    loss, grad_x, grad_w, grad_b = fastsce.linear_cross_entropy_with_grad(
        x3, w, t3, linear_bias=b, reduction="none"
    )
    flat = fastsce.linear_cross_entropy_with_grad(x, w, target, linear_bias=b, reduction="none")
    assert loss.shape == (3, 4) and grad_x.shape == (3, 4, 6)
    np.testing.assert_array_equal(loss.reshape(-1), flat[0])
    np.testing.assert_array_equal(grad_x.reshape(12, 6), flat[1])
    np.testing.assert_array_equal(grad_w, flat[2])
    np.testing.assert_array_equal(grad_b, flat[3])


def test_empty_batch():
    w = np.ones((4, 3))
    x = np.empty((0, 3))
    target = np.empty(0, np.int64)
    loss, grad_x, grad_w, grad_b = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=np.zeros(4)
    )
    assert np.isnan(loss) and grad_x.shape == (0, 3)
    np.testing.assert_array_equal(grad_w, np.zeros((4, 3)))
    np.testing.assert_array_equal(grad_b, np.zeros(4))
    assert fastsce.linear_cross_entropy(x, w, target, reduction="sum") == 0.0


def test_ignored_rows_have_zero_input_gradient_and_add_nothing():
    x, w, b, target, _ = make_problem("hard", "ignore_in_range", "none", np.float64)
    kept = target != 2
    assert 0 < kept.sum() < len(target)
    loss, grad_x, grad_w, grad_b = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=b, reduction="sum", ignore_index=2
    )
    assert np.all(grad_x[~kept] == 0.0)
    only_kept = fastsce.linear_cross_entropy_with_grad(
        x[kept], w, target[kept], linear_bias=b, reduction="sum"
    )
    assert_close(loss, only_kept[0], 1e-14)
    # the same rows, in other places of the chunks' GEMMs: equal to their rounding
    assert_close(grad_x[kept], only_kept[1], 1e-12, atol=1e-15)
    assert_close(grad_w, only_kept[2], 1e-12, atol=1e-15)
    assert_close(grad_b, only_kept[3], 1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# gradients by finite differences (float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("kind", "base"), [("hard", "everything"), ("soft", "weight_smoothing")])
def test_gradients_match_finite_differences(kind, base, reduction):
    x, w, b, target, options = make_problem(kind, base, "all", np.float64, (5, 3, 4))

    def total(x_, w_, b_):
        loss = fastsce.linear_cross_entropy(
            x_, w_, target, linear_bias=b_, reduction=reduction, memory_budget=2 * 4 * 8, **options
        )
        return float(np.sum(loss))

    _, grad_x, grad_w, grad_b = fastsce.linear_cross_entropy_with_grad(
        x, w, target, linear_bias=b, reduction=reduction, memory_budget=2 * 4 * 8, **options
    )
    for actual, numeric in [
        (grad_x, central_difference(lambda v: total(v, w, b), x)),
        (grad_w, central_difference(lambda v: total(x, v, b), w)),
        (grad_b, central_difference(lambda v: total(x, w, v), b)),
    ]:
        assert_close(actual, numeric, FD_RTOL, atol=FD_ATOL)


# ---------------------------------------------------------------------------
# the same bits whatever the threads, the layout, the call


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kind", "base"), [("hard", "everything"), ("soft", "plain")])
def test_bit_identical_on_one_and_two_threads(dtype, kind, base):
    x, w, b, target, options = make_problem(kind, base, "softcap", dtype, (300, 260, 2100))
    results = []
    for n_threads in (1, 2):
        fastsce.set_num_threads(n_threads)
        try:
            kwargs = dict(linear_bias=b, memory_budget=7e5, **options)
            loss_only = fastsce.linear_cross_entropy(x, w, target, reduction="none", **kwargs)
            results.append(
                (*fastsce.linear_cross_entropy_with_grad(x, w, target, **kwargs), loss_only)
            )
        finally:
            fastsce.set_num_threads(None)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("layout", ["F", "strided_rows", "strided_cols", "byteswapped", "list"])
def test_layouts_give_the_same_bits(layout):
    x, w, b, target, _ = make_problem("hard", "plain", "none", np.float64, (20, 6, 30))
    expected = fastsce.linear_cross_entropy_with_grad(x, w, target, linear_bias=b)

    def laid_out(values):
        if layout == "F":
            return np.asfortranarray(values)
        if layout == "strided_rows":
            return np.repeat(values, 2, axis=0)[::2]
        if layout == "strided_cols":
            return np.repeat(values, 2, axis=1)[:, ::2]
        if layout == "byteswapped":
            return values.astype(values.dtype.newbyteorder())
        return values.tolist()

    result = fastsce.linear_cross_entropy_with_grad(
        laid_out(x), laid_out(w), target, linear_bias=list(b) if layout == "list" else b
    )
    for actual, wanted in zip(result, expected):
        np.testing.assert_array_equal(actual, wanted)


def test_compute_dtype_follows_input_and_weight():
    x, w, _, target, _ = make_problem("hard", "plain", "none", np.float64, (4, 3, 5))
    for x_dtype, w_dtype, expected in [
        (np.float32, np.float32, np.float32),
        (np.float16, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.int64, np.float32, np.float64),
    ]:
        loss, grad_x, grad_w, _ = fastsce.linear_cross_entropy_with_grad(
            x.astype(x_dtype), w.astype(w_dtype), target, reduction="none"
        )
        assert loss.dtype == grad_x.dtype == grad_w.dtype == expected


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    ("function", "n_classes", "budget"),
    [
        (fastsce.linear_cross_entropy_with_grad, 300, None),
        (fastsce.linear_cross_entropy_with_grad, 300, 3e4),
        (fastsce.linear_cross_entropy, 1100, None),  # the loss alone: by tiles
        (fastsce.linear_cross_entropy, 1100, 2e5),
    ],
    ids=["grad-one-chunk", "grad-chunks", "loss-one-chunk", "loss-chunks"],
)
def test_16_bit_input_is_widened_a_chunk_at_a_time(dtype, function, n_classes, budget):
    """float16 / bfloat16 input (float32 weight) is converted chunk by chunk (never
    whole): the results of a float32 copy of the input, bit for bit, with one chunk or
    several, strided rows included, with the gradients and for the loss alone."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x, w, b, target, options = make_problem(
        "hard", "everything", "all", np.float32, (60, 24, n_classes)
    )
    half = x.astype(dtype)
    for rows, t in ((half, target), (half[::2], target[::2])):
        kwargs = dict(linear_bias=b, reduction="none", memory_budget=budget, **options)
        expected = function(rows.astype(np.float32), w, t, **kwargs)
        np.testing.assert_equal(function(rows, w, t, **kwargs), expected)


def test_concurrent_calls_give_the_serial_results():
    """Python threads calling at once (BLAS held to one thread until the last leaves)."""
    problems = [
        make_problem("hard", "everything", "all", np.float32, (200, 40, 1500), tag=str(i))
        for i in range(4)
    ]

    def call(problem):
        x, w, b, target, options = problem
        return fastsce.linear_cross_entropy_with_grad(
            x, w, target, linear_bias=b, memory_budget=1e5, **options
        )

    serial = [call(problem) for problem in problems]
    results = [None] * len(problems)

    def worker(i):
        for _ in range(3):
            results[i] = call(problems[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(problems))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, expected in zip(results, serial):
        for actual, wanted in zip(got, expected):
            np.testing.assert_array_equal(actual, wanted)


def test_blas_thread_limits_are_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x, w, _, target, _ = make_problem("hard", "plain", "none", np.float32, (64, 16, 2000))
    fastsce.linear_cross_entropy(x, w, target)  # loads the BLAS
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    fastsce.linear_cross_entropy_with_grad(x, w, target)
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == before


# ---------------------------------------------------------------------------
# memory: nothing of (rows, classes) is allocated


def traced_peak(function):
    """Peak bytes numpy allocated (tracemalloc sees its arrays) during function()."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        result = function()
        return tracemalloc.get_traced_memory()[1] - start, result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("budget", [None, 2**22])
def test_allocates_one_chunk_of_logits_not_all_of_them(budget):
    n_rows, n_features, n_classes = 4096, 8, 16384  # logits: 256 MiB in float32
    rng = rng_for("memory")
    x = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    w = rng.standard_normal((n_classes, n_features), dtype=np.float32)
    target = rng.integers(0, n_classes, n_rows)
    logits_bytes = n_rows * n_classes * 4
    peak, (_, grad_x, grad_w, _) = traced_peak(
        lambda: fastsce.linear_cross_entropy_with_grad(x, w, target, memory_budget=budget)
    )
    extra = peak - grad_x.nbytes - grad_w.nbytes
    # the chunk, plus per-row losses and indices (8 bytes each) and slack for small objects
    chunk = logits_bytes // 12 if budget is None else budget  # the default: 1/12
    assert extra <= chunk + 2 * 8 * n_rows + 2**16, (extra, chunk)
    assert extra <= logits_bytes // 10


def test_the_loss_alone_holds_small_tiles_of_logits():
    """By tiles of 1024 classes: buffers within the budget, per-row partials of 9 float64
    per tile, per-row losses and indices."""
    n_rows, n_features, n_classes = 4096, 8, 16384  # logits: 256 MiB in float32
    rng = rng_for("memory", "loss alone")
    x = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    w = rng.standard_normal((n_classes, n_features), dtype=np.float32)
    target = rng.integers(0, n_classes, n_rows)
    logits_bytes = n_rows * n_classes * 4
    peak, _ = traced_peak(lambda: fastsce.linear_cross_entropy(x, w, target))
    partials = n_rows * (n_classes // 1024) * 9 * 8
    assert peak <= logits_bytes // 12 + 2 * partials + 8 * 8 * n_rows, (peak, partials)
    assert peak <= logits_bytes // 10


# ---------------------------------------------------------------------------
# errors: cross_entropy's types and messages, nothing written


def linear_and_logits(kind="hard"):
    x, w, b, target, _ = make_problem(kind, "plain", "none", np.float64, (4, 3, 5))
    return x, w, b, target, x @ w.T + b


def assert_same_error(linear_kwargs, logits_kwargs=None, *, kind="hard", target=None):
    """linear_cross_entropy(_with_grad) raise what cross_entropy raises on the logits,
    type and message, and change no input."""
    x, w, b, default_target, logits = linear_and_logits(kind)
    target = default_target if target is None else target
    with pytest.raises(Exception) as expected:
        fastsce.cross_entropy(
            logits, target, **(linear_kwargs if logits_kwargs is None else logits_kwargs)
        )
    for function in (fastsce.linear_cross_entropy, fastsce.linear_cross_entropy_with_grad):
        copies = snapshot(x, w, b, target)
        with pytest.raises(Exception) as raised:
            function(x, w, target, linear_bias=b, **linear_kwargs)
        assert type(raised.value) is type(expected.value)
        assert str(raised.value) == str(expected.value)
        assert_unchanged([x, w, b, target], copies)


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, values in BAD_EXTRA_OPTIONS.items() for value, _ in values]
    + [
        ("label_smoothing", 1.5),
        ("label_smoothing", "0.1"),
        ("reduction", "avg"),
        ("ignore_index", 1.0),
        ("ignore_index", 2**70),
        ("weight", [1.0, np.nan, 1.0, 1.0, 1.0]),
        ("weight", np.ones(4)),
        ("weight", np.ones((5, 1))),
    ],
    ids=str,
)
def test_bad_options_raise_as_cross_entropy(name, value):
    assert_same_error({name: value})


@pytest.mark.parametrize(
    "target",
    [
        np.array([0, 1, 5, 2]),
        np.array([0, -1, 2, 2]),
        np.array([0, 1, 2]),
        np.array([[0], [1], [2], [3]]),
        np.array([0.0, 1.0, np.nan, 2.0]),
        np.array(["a", "b", "c", "d"]),
        np.uint64([0, 1, 2**63 + 1, 0]),
    ],
    ids=str,
)
def test_bad_targets_raise_as_cross_entropy(target):
    assert_same_error({}, target=target)


def test_non_finite_soft_target_raises_as_cross_entropy():
    _, _, _, soft, _ = linear_and_logits("soft")
    soft = soft.copy()
    soft[2, 1] = np.inf
    assert_same_error({}, kind="soft", target=soft)


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_the_loss_alone_by_tiles_raises_as_cross_entropy(kind):
    x, w, b, target, _ = make_problem(kind, "plain", "none", np.float64, (5, 3, 1100))
    target = target.copy()
    if kind == "hard":
        target[3] = 1100
    else:
        target[3, 1050] = np.nan
    with pytest.raises(ValueError) as expected:
        fastsce.cross_entropy(x @ w.T + b, target)
    copies = snapshot(x, w, b, target)
    with pytest.raises(ValueError) as raised:
        fastsce.linear_cross_entropy(x, w, target, linear_bias=b)
    assert str(raised.value) == str(expected.value)
    assert_unchanged([x, w, b, target], copies)


def test_tiny_temperature_for_float32_raises_as_cross_entropy():
    x, w, _, target, logits = linear_and_logits()
    with pytest.raises(ValueError) as expected:
        fastsce.cross_entropy(logits.astype(np.float32), target, temperature=1e-39)
    with pytest.raises(ValueError) as raised:
        fastsce.linear_cross_entropy(
            x.astype(np.float32), w.astype(np.float32), target, temperature=1e-39
        )
    assert str(raised.value) == str(expected.value)


@pytest.mark.parametrize(
    ("arguments", "exception", "name"),
    [
        ({"input": np.float64(1.0)}, ValueError, "input"),
        ({"input": np.ones((4, 2))}, ValueError, "linear_weight"),
        ({"linear_weight": np.ones(3)}, ValueError, "linear_weight"),
        ({"linear_weight": np.ones((0, 3))}, ValueError, "linear_weight"),
        ({"linear_bias": np.ones(4)}, ValueError, "linear_bias"),
        ({"linear_bias": np.ones((5, 1))}, ValueError, "linear_bias"),
        ({"input": np.array([["a", "b", "c"]] * 4)}, TypeError, "input"),
        ({"linear_weight": np.ones((5, 3), bool)}, TypeError, "linear_weight"),
        ({"linear_bias": np.ones(5, complex)}, TypeError, "linear_bias"),
        ({"input": np.ma.masked_array(np.ones((4, 3)))}, TypeError, "input"),
        ({"memory_budget": 0}, ValueError, "memory_budget"),
        ({"memory_budget": -1.0}, ValueError, "memory_budget"),
        ({"memory_budget": np.inf}, ValueError, "memory_budget"),
        ({"memory_budget": "1e6"}, TypeError, "memory_budget"),
        ({"memory_budget": True}, TypeError, "memory_budget"),
    ],
    ids=str,
)
def test_bad_linear_arguments(arguments, exception, name):
    x, w, b, target, _ = linear_and_logits()
    for function in (fastsce.linear_cross_entropy, fastsce.linear_cross_entropy_with_grad):
        call = {"input": x, "linear_weight": w, "target": target, "linear_bias": b, **arguments}
        copies = snapshot(x, w, b, target)
        with pytest.raises(exception) as raised:
            function(**call)
        assert f"`{name}`" in str(raised.value)
        assert_unchanged([x, w, b, target], copies)


def test_import_fastsce_imports_neither_scipy_nor_threadpoolctl():
    """They are loaded at the first fused call only."""
    script = (
        "import sys, fastsce; "
        "assert 'scipy' not in sys.modules and 'threadpoolctl' not in sys.modules, 'loaded'; "
        "fastsce.linear_cross_entropy([[1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]], [1]); "
        "assert 'scipy.linalg.cython_blas' in sys.modules"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
