"""fastsce.jax against optax and against fastsce's NumPy functions.

* optax.softmax_cross_entropy_with_integer_labels / optax.softmax_cross_entropy: values
  and gradients under jax.jit, jax.grad and jax.vmap, float32 and (x64 enabled)
  float64 to 1e-12 relative to the terms of each value (_helpers.option_bounds).
* fastsce.cross_entropy_with_grad: every option in every combination, bit for bit (the
  handler runs the same kernel on the same rows, and sums the batch in the same order).
* the errors: at trace time those of fastsce.cross_entropy (type and message); at run
  time (what only the values tell) an XLA error carrying fastsce's message.
* XLA's threads: concurrent calls from Python threads and inside one XLA program.
"""

import concurrent.futures
import doctest
import re

import numpy as np
import pytest

import fastsce
from _helpers import (
    CASE_IDS,
    CASES,
    REDUCTIONS,
    TRANSFORMS,
    assert_close,
    grad_magnitude,
    imports_after_import_fastsce,
    loss_atol,
    make_case,
    make_logits,
    make_soft_target,
    rng_for,
)

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy
fsj = pytest.importorskip("fastsce.jax")

#: float64 (x64 enabled) against optax: relative to the terms of each value
RTOL64 = 1e-12
#: float32 against optax: two float32 implementations, a few roundings apart
RTOL32 = 1e-5


@pytest.fixture
def x64():
    """JAX with float64 (jax_enable_x64) for the test, restored after it."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def optax_loss(logits, target, reduction="mean"):
    """optax's per-row loss (class indices or probabilities), reduced as fastsce does."""
    if jnp.issubdtype(target.dtype, jnp.integer):
        rows = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    else:
        rows = optax.softmax_cross_entropy(logits, target)
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda v: v}[reduction](rows)


def value_and_grad(loss_fn, reduction):
    """jit(value_and_grad) of loss_fn(logits, target); for "none", of the summed losses."""
    if reduction == "none":
        return jax.jit(jax.value_and_grad(lambda x, t: loss_fn(x, t).sum()))
    return jax.jit(jax.value_and_grad(loss_fn))


def problem(shape, dtype, soft, tag):
    rng = rng_for("jax", shape, np.dtype(dtype).name, soft, tag)
    logits = make_logits(shape, dtype, rng=rng)
    if soft:
        return logits, make_soft_target(shape, dtype, rng)
    return logits, rng.integers(0, shape[-1], shape[:-1])


# ---------------------------------------------------------------------------
# against optax


def ours_and_optax(logits, target, reduction):
    """(loss, gradient) of fastsce.jax, then of optax, each by jit(value_and_grad) (the
    summed losses for "none")."""
    x, t = jnp.asarray(logits), jnp.asarray(target)

    def ours(x, t):
        return fsj.cross_entropy(x, t, reduction=reduction)

    def theirs(x, t):
        return optax_loss(x, t, reduction)

    return [value_and_grad(loss_fn, reduction)(x, t) for loss_fn in (ours, theirs)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("shape", [(7,), (8, 5), (3, 4, 7), (2, 1000), (64, 3000)], ids=str)
def test_float64_matches_optax_under_jit_and_grad(x64, shape, soft, reduction):
    logits, target = problem(shape, np.float64, soft, "x64")
    (total, grad), (expected_total, expected_grad) = ours_and_optax(logits, target, reduction)
    loss = jax.jit(lambda x, t: fsj.cross_entropy(x, t, reduction=reduction))(logits, target)
    expected_loss = optax_loss(jnp.asarray(logits), jnp.asarray(target), reduction)
    assert loss.dtype == grad.dtype == jnp.float64 and loss.shape == expected_loss.shape
    atol = loss_atol(logits, target, reduction)
    assert_close(loss, expected_loss, RTOL64, atol=atol)
    assert_close(total, expected_total, RTOL64, atol=np.sum(atol))
    assert_close(grad, expected_grad, RTOL64, magnitude=grad_magnitude(logits, target, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 40), (4096, 1000)], ids=str)
def test_float32_matches_optax_under_jit_and_grad(shape, soft, reduction):
    logits, target = problem(shape, np.float32, soft, "f32")
    (total, grad), (expected_total, expected_grad) = ours_and_optax(logits, target, reduction)
    assert total.dtype == grad.dtype == jnp.float32
    assert_close(total, expected_total, RTOL32)
    assert_close(grad, expected_grad, RTOL32, magnitude=grad_magnitude(logits, target, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vmap_matches_optax(x64, reduction):
    """vmap over a batch of problems (each reduced on its own), of the loss and of its
    gradient, and a vmapped gradient inside jit."""
    logits, target = problem((5, 6, 9), np.float64, False, "vmap")
    x, t = jnp.asarray(logits), jnp.asarray(target)

    def ours(x, t):
        return fsj.cross_entropy(x, t, reduction=reduction)

    def theirs(x, t):
        return optax_loss(x, t, reduction)

    assert_close(jax.vmap(ours)(x, t), jax.vmap(theirs)(x, t), RTOL64, atol=1e-15)
    summed = (lambda f: lambda x, t: f(x, t).sum()) if reduction == "none" else (lambda f: f)
    grads = jax.jit(jax.vmap(jax.grad(summed(ours))))(x, t)
    expected = jax.vmap(jax.grad(summed(theirs)))(x, t)
    magnitude = np.stack(
        [grad_magnitude(logits[i], target[i], reduction) for i in range(len(logits))]
    )
    assert_close(grads, expected, RTOL64, magnitude=magnitude)


def test_vmap_over_the_target_only(x64):
    """A batch of targets for the same logits (in_axes): the logits are broadcast."""
    logits, _ = problem((4, 6), np.float64, False, "vmap target")
    targets = jnp.asarray(np.random.default_rng(1).integers(0, 6, (3, 4)))
    ours = jax.vmap(fsj.cross_entropy, in_axes=(None, 0))(jnp.asarray(logits), targets)
    theirs = jax.vmap(optax_loss, in_axes=(None, 0))(jnp.asarray(logits), targets)
    assert_close(ours, theirs, RTOL64, atol=1e-15)


def test_a_cotangent_other_than_one_scales_the_gradient(x64):
    logits, target = problem((6, 5), np.float64, False, "vjp")
    x, t = jnp.asarray(logits), jnp.asarray(target)
    cotangent = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, 6))
    _, vjp = jax.vjp(lambda v: fsj.cross_entropy(v, t, reduction="none"), x)
    _, expected_vjp = jax.vjp(lambda v: optax_loss(v, t, "none"), x)
    (grad,) = vjp(cotangent)
    (expected,) = expected_vjp(cotangent)
    magnitude = grad_magnitude(logits, target, "none") * np.asarray(cotangent)[:, None]
    assert_close(grad, expected, RTOL64, magnitude=magnitude)
    # a loss used twice: the cotangents add up
    twice = jax.grad(lambda v: 3 * fsj.cross_entropy(v, t) + fsj.cross_entropy(v, t))(x)
    assert_close(twice, 4 * jax.grad(fsj.cross_entropy)(x, t), 1e-15)


def test_a_training_loop_follows_optax(x64):
    """The same MLP, data and SGD steps under jit: the same trajectory (float64)."""
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.standard_normal((300, 8)))
    labels = jnp.argmax(data[:, :3] * jnp.asarray([1.0, -2.0, 0.5]), axis=1)
    init = (
        jnp.asarray(rng.standard_normal((8, 32)) / 3),
        jnp.zeros(32),
        jnp.asarray(rng.standard_normal((32, 3)) / 6),
        jnp.zeros(3),
    )

    def logits_of(params, x):
        w1, b1, w2, b2 = params
        return jax.nn.relu(x @ w1 + b1) @ w2 + b2

    results = []
    for loss_fn in (fsj.cross_entropy, optax_loss):

        @jax.jit
        def step(params, loss_fn=loss_fn):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(logits_of(p, data), labels))(params)
            return loss, jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)

        params = init
        for _ in range(60):
            loss, params = step(params)
        accuracy = float(jnp.mean(jnp.argmax(logits_of(params, data), 1) == labels))
        results.append((float(loss), accuracy))
    (ours_loss, ours_accuracy), (optax_loss_value, optax_accuracy) = results
    assert ours_loss == pytest.approx(optax_loss_value, rel=1e-9)
    assert ours_accuracy == optax_accuracy and ours_accuracy > 0.9


def test_where_optax_gives_nan_the_loss_is_finite(x64):
    """The README's documented differences: an ignored row counts for nothing (optax:
    NaN for an index outside [0, C)); a masked class with probability 0 (optax: NaN)."""
    logits = jnp.asarray([[1.0, 2.0, 3.0], [0.5, 2.0, -1.0]])
    target = jnp.asarray([-100, 1])
    assert jnp.isnan(optax_loss(logits, target, "none")[0])
    assert_close(fsj.cross_entropy(logits, target), optax_loss(logits[1:], target[1:]), 1e-15)
    masked = jnp.asarray([[0.0, -jnp.inf, 1.0]])
    probabilities = jnp.asarray([[0.5, 0.0, 0.5]])
    assert jnp.isnan(optax_loss(masked, probabilities))
    expected = fastsce.cross_entropy(np.asarray(masked), np.asarray(probabilities))
    assert np.isfinite(expected) and fsj.cross_entropy(masked, probabilities) == expected


# ---------------------------------------------------------------------------
# every option against fastsce's NumPy result, bit for bit


def jax_loss_and_grad(logits, target, reduction, options):
    """fastsce.jax's loss and gradient (of the summed losses for "none"), under jit."""
    weight = options.get("weight")
    rest = {k: v for k, v in options.items() if k != "weight"}

    def loss_fn(x, t, w):
        return fsj.cross_entropy(x, t, weight=w, reduction=reduction, **rest)

    w = None if weight is None else jnp.asarray(weight)
    loss = jax.jit(loss_fn)(logits, target, w)
    _, grad = value_and_grad(lambda x, t: loss_fn(x, t, w), reduction)(logits, target)
    return np.asarray(loss), np.asarray(grad)


#: every option set, with masked classes (make_case) for class indices and plain soft targets
MASKED_CASES = [
    (kind, base, masked)
    for kind, base in CASES
    for masked in (False, True)
    if not masked or kind == "hard" or base == "plain"
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize(
    "kind, base, masked",
    MASKED_CASES,
    ids=[
        f"{kind}-{base}-{'masked' if masked else 'finite'}" for kind, base, masked in MASKED_CASES
    ],
)
def test_every_option_is_fastsces_float64_result(x64, kind, base, masked, transform, reduction):
    logits, target, options = make_case(kind, base, transform, masked, np.float64, tag="jax")
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, **options
    )
    loss, grad = jax_loss_and_grad(logits, target, reduction, options)
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", ["none", "softcap_cold", "all"])
@pytest.mark.parametrize("kind, base", CASES, ids=CASE_IDS)
def test_every_option_is_fastsces_float32_result(kind, base, transform, reduction):
    """float32 logits, JAX's default: the class weights are float32 in JAX, so fastsce is
    given the same float32 weights."""
    logits, target, options = make_case(kind, base, transform, False, np.float32, tag="jax32")
    if "weight" in options:
        options["weight"] = options["weight"].astype(np.float32)
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction=reduction, **options
    )
    loss, grad = jax_loss_and_grad(logits, target, reduction, options)
    assert loss.dtype == grad.dtype == np.float32
    np.testing.assert_array_equal(loss, np.float32(expected_loss))
    np.testing.assert_array_equal(grad, expected_grad)


def test_large_inputs_on_several_threads_are_fastsces_result(restore_threads):
    """Above fastsce's threshold for threads: the same bits on 1 and 2 threads."""
    logits, target = problem((512, 3000), np.float32, False, "threads")
    results = []
    for n_threads in (1, 2):
        fastsce.set_num_threads(n_threads)
        results.append(jax_loss_and_grad(logits, target, "mean", {"label_smoothing": 0.1}))
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, label_smoothing=0.1
    )
    for loss, grad in results:
        assert loss == np.float32(expected_loss)
        np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    logits, target = problem((6, 5), np.float32, False, "half")
    half = jnp.asarray(logits).astype(dtype)
    loss, grad = jax.value_and_grad(fsj.cross_entropy)(half, jnp.asarray(target))
    assert loss.dtype == grad.dtype == jnp.dtype(dtype)
    as_float = np.asarray(half.astype(jnp.float32))
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(as_float, target)
    assert loss == jnp.asarray(expected_loss, jnp.float32).astype(dtype)
    np.testing.assert_array_equal(grad, jnp.asarray(expected_grad).astype(dtype))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32"])
def test_every_integer_dtype_of_class_indices(dtype):
    logits, target = problem((6, 5), np.float32, False, "integers")
    t = jnp.asarray(target.astype(dtype))
    loss, grad = jax.jit(jax.value_and_grad(fsj.cross_entropy))(jnp.asarray(logits), t)
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(logits, target)
    assert loss == np.float32(expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


def test_integer_logits_are_computed_in_jaxs_float(x64):
    logits = np.array([[3, 4, 1], [2, 0, 0]])
    loss = fsj.cross_entropy(jnp.asarray(logits), jnp.asarray([1, 0]))
    assert loss.dtype == jnp.float64
    assert loss == fastsce.cross_entropy(logits, [1, 0])


def test_numpy_arrays_and_lists_are_accepted():
    loss = fsj.cross_entropy(np.array([[3.0, 4.0, 1.0]], np.float32), [1])
    assert loss == np.float32(fastsce.cross_entropy(np.array([[3.0, 4.0, 1.0]], np.float32), [1]))


def test_a_traced_weight_is_checked_by_the_handler(x64):
    logits, target = problem((4, 3), np.float64, False, "traced weight")
    weight = jnp.asarray([1.0, 2.0, 0.5])
    loss = jax.jit(lambda w: fsj.cross_entropy(logits, target, weight=w))(weight)
    assert loss == fastsce.cross_entropy(logits, target, weight=np.asarray(weight))
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"`weight` must be finite, got nan"):
        jax.jit(lambda w: fsj.cross_entropy(logits, target, weight=w))(weight.at[1].set(jnp.nan))


# ---------------------------------------------------------------------------
# errors


def fastsce_error(*args, **kwargs):
    """(type, message) of the error fastsce.cross_entropy raises for these arguments."""
    with pytest.raises((TypeError, ValueError)) as raised:
        fastsce.cross_entropy(*args, **kwargs)
    return raised.type, str(raised.value)


LOGITS = np.zeros((4, 3), np.float32)
TARGET = np.array([0, 1, 2, 0])
TRACE_TIME_ERRORS = {
    "0-d logits": ((np.float32(1.0), np.int64(0)), {}),
    "zero classes": ((np.zeros((4, 0), np.float32), TARGET), {}),
    "bool logits": ((np.zeros((4, 3), bool), TARGET), {}),
    "target shape": ((LOGITS, np.zeros(5, np.int64)), {}),
    "target transposed": ((LOGITS, np.zeros(3, np.int64)), {}),
    "target (N, 1)": ((LOGITS, np.zeros((4, 1), np.int64)), {}),
    "float target shape": ((LOGITS, np.zeros(4, np.float32)), {}),
    "bool target": ((LOGITS, np.zeros(4, bool)), {}),
    "weight shape": ((LOGITS, TARGET), {"weight": np.ones(4, np.float32)}),
    "weight 2-d": ((LOGITS, TARGET), {"weight": np.ones((1, 3), np.float32)}),
    "weight not finite": ((LOGITS, TARGET), {"weight": np.array([1, np.nan, 1], np.float32)}),
    "reduction": ((LOGITS, TARGET), {"reduction": "average"}),
    "label_smoothing": ((LOGITS, TARGET), {"label_smoothing": 1.5}),
    "label_smoothing type": ((LOGITS, TARGET), {"label_smoothing": "0.1"}),
    "temperature": ((LOGITS, TARGET), {"temperature": 0.0}),
    "temperature too small for float32": ((LOGITS, TARGET), {"temperature": 1e-40}),
    "softcap": ((LOGITS, TARGET), {"softcap": -1.0}),
    "z_loss": ((LOGITS, TARGET), {"z_loss": np.inf}),
    "ignore_index": ((LOGITS, TARGET), {"ignore_index": True}),
}


@pytest.mark.parametrize("name", list(TRACE_TIME_ERRORS))
def test_trace_time_errors_are_fastsces(name):
    args, kwargs = TRACE_TIME_ERRORS[name]
    error_type, message = fastsce_error(*args, **kwargs)
    with pytest.raises(error_type) as raised:
        jax.jit(lambda *a: fsj.cross_entropy(*a, **kwargs))(*map(jnp.asarray, args))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "target, dtype",
    [([0, 3, 1, 0], "int32"), ([0, 1, -1, 7], "int64"), ([0, 1, 2, 2**63 + 5], "uint64")],
    ids=["int32", "int64", "uint64"],
)
def test_a_class_index_out_of_range_is_an_xla_error_with_fastsces_message(x64, target, dtype):
    target = np.array(target, dtype=dtype)
    _, message = fastsce_error(np.zeros((4, 3)), target)
    call = jax.jit(jax.value_and_grad(fsj.cross_entropy))
    with pytest.raises(jax.errors.JaxRuntimeError) as raised:
        jax.block_until_ready(call(jnp.zeros((4, 3)), jnp.asarray(target)))
    assert message in str(raised.value)
    # the handler failed cleanly: the next call works
    assert call(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32))[0] == pytest.approx(np.log(3))


def test_the_position_of_a_bad_class_index_is_in_the_targets_shape():
    target = np.zeros((2, 3), np.int32)
    target[1, 2] = 5
    _, message = fastsce_error(np.zeros((2, 3, 4), np.float32), target)
    assert "position (1, 2)" in message
    with pytest.raises(jax.errors.JaxRuntimeError, match=re.escape(message)):
        fsj.cross_entropy(jnp.zeros((2, 3, 4)), jnp.asarray(target)).block_until_ready()


def test_a_non_finite_probability_is_an_xla_error_with_fastsces_message():
    target = np.full((3, 4), 0.25, np.float32)
    target[2, 1] = np.inf
    _, message = fastsce_error(np.zeros((3, 4), np.float32), target)
    with pytest.raises(jax.errors.JaxRuntimeError, match=re.escape(message)):
        jax.jit(fsj.cross_entropy)(jnp.zeros((3, 4)), jnp.asarray(target)).block_until_ready()


def test_forward_mode_is_refused():
    """custom_vjp: reverse mode only."""
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda v: fsj.cross_entropy(v, jnp.asarray(TARGET)), (LOGITS,), (LOGITS,))


# ---------------------------------------------------------------------------
# XLA's threads, the thread count, the compiled program


def test_concurrent_calls_from_python_threads_are_each_right(restore_threads):
    """Eight calls at once from four Python threads, large enough for several OpenMP
    threads each: every result is the serial one, bit for bit."""
    fastsce.set_num_threads(2)
    problems = [problem((256, 1024), np.float32, False, f"concurrent {i}") for i in range(8)]
    step = jax.jit(jax.value_and_grad(lambda x, t: fsj.cross_entropy(x, t, label_smoothing=0.1)))
    expected = [fastsce.cross_entropy_with_grad(x, t, label_smoothing=0.1) for x, t in problems]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            results = list(pool.map(lambda p: jax.block_until_ready(step(*p)), problems))
            for (loss, grad), (expected_loss, expected_grad) in zip(results, expected):
                assert loss == np.float32(expected_loss)
                np.testing.assert_array_equal(grad, expected_grad)


def test_concurrent_calls_share_fastsces_thread_count(restore_threads):
    """While an XLA call holds fastsce's 2 threads, another call gets 1 (its own): the
    calls together never start more OpenMP threads than one call would.  Afterwards the
    count is whole again."""
    fastsce.set_num_threads(2)
    size = (2048, 2000)
    rows_and_elements = (size[0], size[0] * size[1])
    if fastsce._kernels.xla_threads_for(*rows_and_elements) < 2:
        pytest.skip("needs 2 usable CPUs and OpenMP")
    x, t = problem(size, np.float32, False, "budget")
    step = jax.jit(jax.value_and_grad(fsj.cross_entropy))
    jax.block_until_ready(step(x, t))
    seen = set()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: [jax.block_until_ready(step(x, t)) for _ in range(20)])
        while not running.done():
            seen.add(fastsce._kernels.xla_threads_for(*rows_and_elements))
        running.result()
    assert 1 in seen and seen <= {1, 2}
    assert fastsce._kernels.xla_threads_for(*rows_and_elements) == 2


def test_independent_calls_in_one_program_are_each_right():
    """XLA may run independent calls of one program at the same time."""
    (x1, t1), (x2, t2) = (problem((300, 400), np.float32, False, f"program {i}") for i in (1, 2))

    @jax.jit
    def two_losses(x1, t1, x2, t2):
        return jax.value_and_grad(fsj.cross_entropy)(x1, t1), jax.grad(fsj.cross_entropy)(x2, t2)

    (loss1, grad1), grad2 = two_losses(x1, t1, x2, t2)
    expected_loss1, expected_grad1 = fastsce.cross_entropy_with_grad(x1, t1)
    assert loss1 == np.float32(expected_loss1)
    np.testing.assert_array_equal(grad1, expected_grad1)
    np.testing.assert_array_equal(grad2, fastsce.cross_entropy_with_grad(x2, t2)[1])


def test_the_thread_count_is_fastsces_when_the_call_runs(restore_threads):
    """XLA's calls read fastsce's setting when they run (not when traced): no retrace."""
    n_rows, n_classes = 512, 1000
    limit = min(fastsce._config.USABLE_CPUS, fastsce._kernels.openmp_max_threads())
    for n_threads in (1, 2, None):
        fastsce.set_num_threads(n_threads)
        work = fastsce._config.row_work(n_rows, n_rows * n_classes)
        expected = fastsce._config.threads_for(n_rows, work)
        assert fastsce._kernels.xla_threads_for(n_rows, n_rows * n_classes) == expected
        assert expected == min(n_threads or limit, limit)
    assert fastsce._kernels.xla_threads_for(8, 80) == 1  # small: one thread


def test_the_compiled_step_is_the_kernel_call_alone():
    """value_and_grad under jit: one custom call reading the logits where they are and
    writing loss and gradient, no copy, no product with the cotangent 1."""
    step = jax.jit(jax.value_and_grad(fsj.cross_entropy))
    text = step.lower(jnp.zeros((64, 100)), jnp.zeros(64, int)).compile().as_text()
    entry = text[text.index("ENTRY") :]
    assert (
        entry.count("custom-call(") == 1 and 'custom_call_target="fastsce_cross_entropy"' in entry
    )
    for op in ("copy(", "multiply(", "fusion(", "transpose("):
        assert op not in entry, entry


# ---------------------------------------------------------------------------
# the module


def test_the_benchmarks_systems_compute_the_same_step():
    """bench/compare.py's "Through JAX" systems: the same loss and gradient; float64 only
    with x64 enabled."""
    from fastsce import _speed

    logits, target = _speed.problem(64, 100, np.float32)
    runs = [make(logits, target) for make in _speed.JAX_ENTRY_SYSTEMS.values()]
    (loss, grad), (expected_loss, expected_grad) = (run() for run in runs)
    assert_close(loss, expected_loss, RTOL32)
    assert_close(grad, expected_grad, RTOL32, magnitude=grad_magnitude(logits, target))
    assert _speed.fastsce_jax_system(logits.astype(np.float64), target) is None


def test_the_docstring_example_runs():
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(recurse=False).find(fsj.cross_entropy, "cross_entropy"):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0 and failed == 0


def test_import_fastsce_does_not_import_jax():
    assert imports_after_import_fastsce("jax") is False
