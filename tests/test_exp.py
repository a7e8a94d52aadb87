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
log_softmax_backward takes such rows through libm, checked here (on every path
too) against the reference up to overflow.
"""

import numpy as np
import pytest

import fastsce
from _helpers import run_with_simd
from fastsce import reference

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
    """Rows with a log_s above 0 (libm's exp), up to values whose exp overflows, beside a
    row of log-probabilities (the vector exp); several nonzero grad_out in every row."""
    dtype = np.dtype(dtype)
    big = [1.0, 50.0, 88.3, 88.5, 88.7, 89.0, 100.0]
    if dtype == np.float64:
        big += [700.0, 709.7, 710.0, 1000.0]
    n = 2 + len(big)
    log_probabilities = reference.log_softmax(np.linspace(-3.0, 4.0, n)).tolist()
    log_s = np.array([[0.5, -1.0] + big, [-2.0, -np.inf] + big, log_probabilities], dtype)
    grad_out = np.stack(
        [np.linspace(-1.0, 2.0, n), np.linspace(0.5, -0.25, n), np.linspace(-0.75, 1.0, n)]
    ).astype(dtype)
    return grad_out, log_s


def check_positive_log_s(dtype):
    """Failures of log_softmax_backward on positive_log_s_case against the reference:
    the same infinities and NaNs, finite values within a few ULP of their terms."""
    grad_out, log_s = positive_log_s_case(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = reference.log_softmax_backward(grad_out, log_s)
        g64 = grad_out.astype(np.float64)
        magnitude = np.abs(g64) + np.exp(log_s.astype(np.float64)) * np.abs(
            g64.sum(axis=-1, keepdims=True)
        )
    got = fastsce.log_softmax_backward(grad_out, log_s)
    failures = []
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), finite):
        failures.append(f"{dtype.__name__}: finite at {np.isfinite(got)}, expected {finite}")
    elif not np.array_equal(got[~finite], expected[~finite]):
        failures.append(f"{dtype.__name__}: {got[~finite]} where {expected[~finite]} expected")
    error = np.abs(got[finite].astype(np.float64) - expected[finite])
    if not np.all(error <= 4 * np.finfo(dtype).eps * magnitude[finite]):
        failures.append(f"{dtype.__name__}: error {error} against {magnitude[finite]}")
    return failures


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_accuracy_and_flush_threshold(dtype):
    assert check_exp(dtype) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_backward_with_positive_log_s_matches_reference(dtype):
    assert check_positive_log_s(dtype) == []


PATH_SCRIPT = """
import numpy as np
from fastsce import _kernels
from test_exp import check_exp, check_positive_log_s
print(_kernels.simd_path())
print("FAILURES", [failure for dtype in (np.float32, np.float64)
                   for failure in check_exp(dtype) + check_positive_log_s(dtype)])
"""


@pytest.mark.parametrize("cap", ["baseline", "avx2", None])
def test_exp_on_every_path(cap):
    result = run_with_simd(cap, PATH_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "FAILURES []", lines[0] + ": " + lines[-1]
