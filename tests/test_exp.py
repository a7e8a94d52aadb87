"""The vector exp of the C row helpers, on every code path.

The exp is seen directly through log_softmax_backward: with
grad_out = (-1, 0, ..., 0) and log_s = (-inf, t_1, ..., t_n) the kernel
returns out_j = 0 - exp(t_j) * (-1) = exp(t_j) exactly for j >= 1.  Those
values are compared with exp in extended precision (numpy.longdouble) in
units in the last place (ULP) of the dtype, and the flush rule is checked:
exp(t) is 0 exactly where t is below log(smallest normal number) rounded
to the dtype, and nowhere else.  ``check_exp`` is also run in subprocesses
with FASTSCE_SIMD capping the instruction set, so every path is held to the
same bounds and the same flush threshold.

log_s > 0 (not log-probabilities) is outside the vector exp's range t <= 0;
log_softmax_backward takes such rows through libm, checked here against the
reference up to overflow.
"""

import numpy as np
import pytest

import fastsce
from fastsce import reference
from test_simd_paths import run_with_simd

#: documented accuracy (README), the worst of the paths: float32 2.6 ULP for results
#: above 1e-3 (FMA paths 2.41, baseline 2.54) and 5.2 ULP near the smallest normal
#: number (FMA paths 5.15: their one-step reduction), both measured over every float32
#: t in [log(smallest normal), 0]; float64 1.3 ULP (sampled)
ULP_BOUNDS = {
    np.dtype(np.float32): {"above_1e-3": 2.6, "anywhere": 5.2},
    np.dtype(np.float64): {"above_1e-3": 1.5, "anywhere": 1.5},
}
#: the lowest t sampled: below both flush thresholds and the float32 clamp (-104)
T_LOW = {np.dtype(np.float32): -110.0, np.dtype(np.float64): -760.0}


def kernel_exp(t):
    grad_out = np.zeros(t.size + 1, t.dtype)
    grad_out[0] = -1
    log_s = np.concatenate([np.array([-np.inf], t.dtype), t])
    return fastsce.log_softmax_backward(grad_out, log_s)[1:]


def sample_arguments(dtype, n=1 << 18, seed=0):
    """t <= 0: uniform over the whole range, dense near 0 and around the flush
    threshold, and the specials."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    threshold = dtype.type(np.log(np.finfo(dtype).tiny))
    around = threshold + np.arange(-64, 65) * np.spacing(threshold)
    specials = [0.0, -0.0, -np.finfo(dtype).smallest_subnormal, -1e-30, -np.inf]
    parts = [rng.uniform(T_LOW[dtype], 0.0, n), -rng.exponential(1e-3, n // 8), around, specials]
    return np.concatenate([np.asarray(p, dtype) for p in parts])


def ulp_errors(got, t):
    exact = np.exp(t.astype(np.longdouble))
    spacing = np.spacing(exact.astype(got.dtype)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - exact) / spacing, exact


def check_exp(dtype):
    """Failures (strings) of the kernels' exp on this process's path for one dtype."""
    dtype = np.dtype(dtype)
    failures = []
    t = sample_arguments(dtype)
    got = kernel_exp(t)
    threshold = dtype.type(np.log(np.finfo(dtype).tiny))
    flushed = t < threshold
    if np.any(got[flushed] != 0):
        failures.append(f"{dtype}: nonzero exp(t) below t = {threshold}")
    if np.any(got[~flushed] == 0):
        failures.append(f"{dtype}: exp(t) flushed to 0 at t >= {threshold}")
    errors, exact = ulp_errors(got[~flushed], t[~flushed])
    bounds = ULP_BOUNDS[dtype]
    worst_large = errors[exact > 1e-3].max()
    if not worst_large <= bounds["above_1e-3"]:
        failures.append(f"{dtype}: {worst_large:.2f} ULP for exp(t) > 1e-3")
    if not errors.max() <= bounds["anywhere"]:
        failures.append(f"{dtype}: {errors.max():.2f} ULP")
    nan = kernel_exp(np.array([np.nan, -np.nan, 0.0], dtype))
    if not (np.isnan(nan[:2]).all() and nan[2] == 1):
        failures.append(f"{dtype}: exp of NaN gave {nan}")
    return failures


def positive_log_s_case(dtype):
    """Rows whose log_s exceeds 0, up to values whose exp overflows."""
    dtype = np.dtype(dtype)
    big = [1.0, 50.0, 88.3, 88.5, 88.7, 89.0, 100.0]
    if dtype == np.float64:
        big += [700.0, 709.7, 710.0, 1000.0]
    log_s = np.array([[0.5, -1.0] + big, [-2.0, -np.inf] + big], dtype)
    grad_out = np.zeros_like(log_s)
    grad_out[:, 0] = [0.25, -1.0]
    return grad_out, log_s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_accuracy_and_flush_threshold(dtype):
    assert check_exp(dtype) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_backward_with_positive_log_s_matches_reference(dtype):
    grad_out, log_s = positive_log_s_case(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = reference.log_softmax_backward(grad_out, log_s)
    got = fastsce.log_softmax_backward(grad_out, log_s)
    # the same infinities and NaNs, finite values within a few ULP of the libm exp's
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected))
    np.testing.assert_array_equal(got[~np.isfinite(got)], expected[~np.isfinite(expected)])
    finite = np.isfinite(got)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=4 * np.finfo(dtype).eps)


PATH_SCRIPT = """
import numpy as np
from fastsce import _softmax_kernels
from test_exp import check_exp, positive_log_s_case
import fastsce
print(_softmax_kernels.simd_path())
failures = check_exp(np.float32) + check_exp(np.float64)
for dtype in (np.float32, np.float64):
    grad_out, log_s = positive_log_s_case(dtype)
    print(dtype.__name__, fastsce.log_softmax_backward(grad_out, log_s).tobytes().hex())
print("FAILURES", failures)
"""


def run_path(cap):
    result = run_with_simd(cap, PATH_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("cap", ["baseline", "avx2", None])
def test_exp_on_every_path(cap):
    lines = run_path(cap)
    assert lines[-1] == "FAILURES []", lines[0] + ": " + lines[-1]


def test_positive_log_s_gives_the_same_bits_on_every_path():
    here = run_path(None)
    for cap in ("baseline", "avx2"):
        assert run_path(cap)[1:3] == here[1:3], cap
