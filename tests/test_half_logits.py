"""float16 and bfloat16 logits, read as they are and computed in float32.

The loss kernels widen 16-bit logits to float32 a row at a time and compute
exactly as for float32 logits, so every result must be the float32 result on
the upcast values bit for bit (loss, float32 gradient, lse_out, argmax_out),
for every option, layout and vector path; a 16-bit gradient (out= of the
logits' dtype) must be that float32 gradient rounded to nearest even, bit for
bit.  The float32 path itself is checked against the reference elsewhere; one
test here checks the 16-bit results against it too.  bfloat16 is ml_dtypes'
(an optional dependency: its cases skip without it).
"""

import numpy as np
import pytest

import fastsce
from _helpers import (
    CASE_IDS,
    CASES,
    LOSS_RTOL,
    RTOL,
    TRANSFORMS,
    assert_close,
    grad_magnitude,
    imports_after_import_fastsce,
    make_case,
    oracle,
    run_with_simd,
)
from fastsce import _loss

try:
    import ml_dtypes
except ImportError:  # optional: only its cases skip
    ml_dtypes = None

HALF_DTYPES = [
    pytest.param(np.float16, id="float16"),
    pytest.param(
        "bfloat16",
        id="bfloat16",
        marks=pytest.mark.skipif(ml_dtypes is None, reason="needs ml_dtypes"),
    ),
]


def half(dtype):
    return np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def same_bits(actual, expected):
    """Bit-identical arrays, any NaN matching any NaN (which NaN an operation passes on
    is the compiler's choice, as for float32)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    unsigned = np.dtype(f"u{actual.dtype.itemsize}")
    nan = np.isnan(actual.astype(np.float32))
    np.testing.assert_array_equal(nan, np.isnan(expected.astype(np.float32)))
    np.testing.assert_array_equal(actual.view(unsigned)[~nan], expected.view(unsigned)[~nan])


def both_ways(x16, target, options, out16=False, **outputs):
    """(16-bit call, float32 call on the upcast values) of cross_entropy_with_grad, with
    lse_out and argmax_out; the gradient of the first in the logits' dtype when out16."""
    results = []
    for x in (x16, x16.astype(np.float32)):
        target_x = target.astype(np.float32) if target.dtype.kind == "f" else target
        extra = {
            "lse_out": np.empty(x.shape[:-1]),
            "argmax_out": np.empty(x.shape[:-1], np.int64),
        }
        if out16 and x is x16:
            extra["out"] = np.empty(x.shape, x16.dtype)
        loss, grad = fastsce.cross_entropy_with_grad(x, target_x, **options, **extra)
        results.append((loss, grad, extra["lse_out"], extra["argmax_out"]))
    return results


def assert_same_as_float32(x16, target, options, out16=False):
    (loss, grad, lse, argmax), (loss32, grad32, lse32, argmax32) = both_ways(
        x16, target, options, out16
    )
    same_bits(
        np.float64(loss) if np.ndim(loss) == 0 else loss,
        np.float64(loss32) if np.ndim(loss32) == 0 else loss32,
    )
    same_bits(grad, grad32.astype(x16.dtype) if out16 else grad32)
    same_bits(lse, lse32)
    np.testing.assert_array_equal(argmax, argmax32)
    only_loss = fastsce.cross_entropy(x16, target, **options)
    same_bits(np.asarray(only_loss, np.float64), np.asarray(loss, np.float64))


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_every_option_as_float32(dtype, case, transform, reduction):
    kind, base = case
    x, target, options = make_case(kind, base, transform, True, np.float64, shape=(9, 37))
    x16 = x.astype(half(dtype))
    target = target.astype(half(dtype)) if kind == "soft" else target
    for out16 in (False, True):
        assert_same_as_float32(x16, target, dict(options, reduction=reduction), out16)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize(
    "shape", [(5, 1), (7, 3), (40, 16), (33, 17), (3, 4097), (2, 50257), (4, 5, 6)], ids=str
)
def test_shapes_as_float32(dtype, shape):
    """Short rows (one per vector lane), blocks of rows, tails after any vector width."""
    rng = np.random.default_rng(shape)
    x16 = (4 * rng.standard_normal(shape)).astype(half(dtype))
    target = rng.integers(0, shape[-1], shape[:-1])
    for options in ({}, {"label_smoothing": 0.1, "reduction": "sum"}):
        for out16 in (False, True):
            assert_same_as_float32(x16, target, options, out16)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_every_16_bit_value(dtype):
    """Each of the 65536 bit patterns once (infinities and NaNs make their rows NaN or
    masked), so every widening is checked: 256 rows of 256 classes."""
    x16 = np.arange(1 << 16, dtype=np.uint16).view(half(dtype)).reshape(256, 256)
    target = np.arange(256) % 251
    assert_same_as_float32(x16, target, {"reduction": "none"}, out16=True)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_tiny_gradients_round_to_nearest_even(dtype):
    """Probabilities across float16's subnormals and bfloat16's small normals."""
    rng = np.random.default_rng(7)
    x16 = rng.uniform(-30, 10, (64, 300)).astype(half(dtype))
    target = rng.integers(0, 300, 64)
    assert_same_as_float32(x16, target, {"reduction": "sum"}, out16=True)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_layouts_and_threads(dtype):
    """Strided rows and a Fortran-order copy; a call large enough for two threads gives the
    float32 call's bits."""
    rng = np.random.default_rng(3)
    x16 = (3 * rng.standard_normal((300, 1000))).astype(half(dtype))
    target = rng.integers(0, 1000, 300)
    fastsce.set_num_threads(2)
    assert_same_as_float32(x16, target, {}, out16=True)
    assert_same_as_float32(x16[::2, :500], target[::2] % 500, {})
    assert_same_as_float32(np.asfortranarray(x16[:10]), target[:10], {})


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_against_reference(dtype):
    """The loss within float32's tolerance of the float64 reference on the upcast values; the
    16-bit gradient within one rounding of it."""
    rng = np.random.default_rng(11)
    x16 = (3 * rng.standard_normal((20, 500))).astype(half(dtype))
    target = rng.integers(0, 500, 20)
    upcast = x16.astype(np.float64)
    expected_loss, expected_grad = oracle("cross_entropy_with_grad", upcast, target)
    out = np.empty(x16.shape, x16.dtype)
    loss, grad = fastsce.cross_entropy_with_grad(x16, target, out=out)
    assert_close(loss, expected_loss, LOSS_RTOL[np.dtype(np.float32)])
    magnitude = grad_magnitude(upcast, target)
    finfo = ml_dtypes.finfo(x16.dtype) if dtype == "bfloat16" else np.finfo(x16.dtype)
    # one rounding (half an ULP, or half the least subnormal) of a float32-accurate value
    assert_close(
        grad.astype(np.float64),
        expected_grad,
        float(finfo.eps) / 2 + RTOL[np.dtype(np.float32)],
        magnitude=magnitude,
        atol=float(finfo.smallest_subnormal) / 2,
    )
    _, grad32 = fastsce.cross_entropy_with_grad(x16, target)
    assert_close(grad32, expected_grad, RTOL[np.dtype(np.float32)], magnitude=magnitude)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_in_place_16_bit_gradient(dtype):
    rng = np.random.default_rng(5)
    x16 = (2 * rng.standard_normal((6, 70))).astype(half(dtype))
    target = rng.integers(0, 70, 6)
    _, expected = fastsce.cross_entropy_with_grad(x16, target, out=np.empty_like(x16))
    _, grad = fastsce.cross_entropy_with_grad(x16, target, out=x16)
    assert grad is x16
    same_bits(x16, expected)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("out", ["none", "float32", "16-bit", "logits"])
@pytest.mark.parametrize("shape", [(1, 1), (64, 10), (9, 65), (300, 1000)], ids=str)
def test_small_calls_take_the_fast_path_with_the_same_bits(monkeypatch, dtype, out, shape):
    """A small 16-bit call skips the validating path (made to fail here) and gives its
    bits (reached with lse_out=, which the fast path does not take); 300 x 1000 runs on
    two threads."""
    rng = np.random.default_rng(11)
    x16 = (3 * rng.standard_normal(shape)).astype(half(dtype))
    target = rng.integers(0, shape[1], shape[0]).astype(np.int32)
    target[::4] = -100

    def call(x, **extra):
        outputs = {
            "none": {},
            "float32": {"out": np.empty(shape, np.float32)},
            "16-bit": {"out": np.empty_like(x)},
            "logits": {"out": x},
        }[out]
        return fastsce.cross_entropy_with_grad(x, target, label_smoothing=0.1, **outputs, **extra)

    slow_loss, slow_grad = call(x16.copy(), lse_out=np.empty(shape[0]))

    def no_validating_path(*args, **kwargs):
        raise AssertionError("the validating path was taken")

    monkeypatch.setattr(_loss, "run", no_validating_path)
    loss, grad = call(x16.copy())
    same_bits(np.float64(loss), np.float64(slow_loss))
    same_bits(grad, slow_grad)
    same_bits(np.float64(fastsce.cross_entropy(x16, target, label_smoothing=0.1)), np.float64(loss))


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("out_dtype", [np.float64, np.float16, "bfloat16"], ids=str)
def test_out_of_another_dtype_is_a_type_error(dtype, out_dtype):
    if out_dtype == "bfloat16" and ml_dtypes is None:
        pytest.skip("needs ml_dtypes")
    x16 = np.zeros((3, 4), half(dtype))
    out = np.zeros((3, 4), half(out_dtype))
    if out.dtype == x16.dtype:
        return  # allowed: the test above
    with pytest.raises(TypeError, match=f"`out` must have dtype float32 or {x16.dtype}"):
        fastsce.cross_entropy_with_grad(x16, [0, 1, 2], out=out)
    assert not out.any()


@pytest.mark.parametrize("path", ["baseline", "avx2"])
def test_vector_paths(path):
    """The other vector paths (float16 without F16C on the baseline) give the float32 bits
    on the upcast values, and the 16-bit gradient rounded from them."""
    script = """
import numpy as np, fastsce
from test_half_logits import assert_same_as_float32, half, ml_dtypes
dtypes = [np.float16] + ([] if ml_dtypes is None else ["bfloat16"])
rng = np.random.default_rng(1)
for dtype in dtypes:
    for shape in [(40, 13), (3, 4097)]:
        x16 = np.arange(np.prod(shape), dtype=np.uint16).view(half(dtype)).reshape(shape)
        x16 = np.where(np.isfinite(x16.astype(np.float32)), x16, 0).astype(half(dtype))
        target = rng.integers(0, shape[-1], shape[0])
        assert_same_as_float32(x16, target, {"reduction": "none"}, out16=True)
        assert_same_as_float32((3 * rng.standard_normal(shape)).astype(half(dtype)), target,
                               {"label_smoothing": 0.1}, out16=True)
print("ok", fastsce._kernels.simd_path())
"""
    done = run_with_simd(path, script)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr


def test_ml_dtypes_is_not_imported():
    assert not imports_after_import_fastsce("ml_dtypes")
