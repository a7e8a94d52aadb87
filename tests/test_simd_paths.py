"""Every vector code path of the C row helpers.

The helpers are compiled for a baseline (SSE2 on x86-64, NEON on arm64, one
lane in the -DFSCE_SCALAR_ONLY build: "scalar"), for AVX2+FMA and for AVX-512,
and the best one the CPU supports is chosen when fastsce is imported;
FASTSCE_SIMD=baseline forces the baseline and FASTSCE_SIMD=avx2 caps the
choice at AVX2.  The path of this process is checked by the rest of the
suite, so the others are checked here in subprocesses: softmax, log_softmax,
logsumexp, softmax_backward and cross_entropy_with_grad against the float64
oracle, for class counts around every vector width (tails of 1..15 elements)
in both dtypes.
"""

import os
import textwrap

import pytest

from _helpers import run_with_simd
from fastsce import _kernels

CHECK_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import fastsce
    from fastsce import _kernels
    from _helpers import (LOG_SUM_ATOL, LOSS_RTOL, RTOL, assert_close, backward_magnitude,
                          grad_magnitude, logsumexp_magnitude, loss_atol, make_hard_target,
                          make_logits, make_soft_target, oracle)

    print(_kernels.simd_path())
    failures = []
    for n_classes in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 1000, 4097]:
        for dtype in [np.float32, np.float64]:
            for shape in [(n_classes,), (5, n_classes), (2, 3, n_classes)]:
                rng = np.random.default_rng(n_classes)
                x = make_logits(shape, dtype, rng=rng)
                if n_classes > 1:
                    x[..., -1] = -np.inf  # a masked class in the tail
                rtol, loss_rtol = RTOL[np.dtype(dtype)], LOSS_RTOL[np.dtype(dtype)]
                weight = rng.uniform(0.5, 2.0, n_classes)
                hard = make_hard_target(shape[:-1], max(n_classes - 1, 1), rng)
                soft = make_soft_target(shape, dtype, rng)
                if n_classes > 1:  # no target mass on the masked class
                    soft[..., -1] = 0
                try:
                    assert_close(fastsce.softmax(x), oracle("softmax", x), rtol)
                    expected = oracle("log_softmax", x)
                    assert_close(fastsce.log_softmax(x), expected, rtol, atol=LOG_SUM_ATOL)
                    assert_close(fastsce.logsumexp(x), oracle("logsumexp", x), rtol,
                                 magnitude=logsumexp_magnitude(x), atol=LOG_SUM_ATOL)
                    s = fastsce.softmax(x)
                    g = rng.standard_normal(shape).astype(dtype)
                    s64, g64 = s.astype(np.float64), g.astype(np.float64)
                    # s (g - g.s) in float64: the reference's C x C Jacobians are too big at 4097
                    expected = s64 * (g64 - np.sum(g64 * s64, axis=-1, keepdims=True))
                    assert_close(fastsce.softmax_backward(g, s), expected, rtol,
                                 magnitude=backward_magnitude(g, s))
                    unmasked = make_logits(shape, dtype, rng=rng)
                    cases = [(x, {}), (x, {"weight": weight}),
                             # smoothing puts mass on every class: no masked class here
                             (unmasked, {"weight": weight, "label_smoothing": 0.1}),
                             (unmasked, {"label_smoothing": 0.2})]
                    for target in [hard, soft]:
                        for logits, options in cases:
                            for reduction in ["mean", "none"]:
                                loss, grad = fastsce.cross_entropy_with_grad(
                                    logits, target, reduction=reduction, **options)
                                e_loss, e_grad = oracle("cross_entropy_with_grad", logits,
                                                        target, reduction=reduction, **options)
                                assert_close(loss, e_loss, loss_rtol, atol=loss_atol(
                                    logits, target, reduction, **options))
                                assert_close(grad, e_grad, rtol, magnitude=grad_magnitude(
                                    logits, target, reduction, **options))
                except AssertionError as error:
                    failures.append(f"C={n_classes} {np.dtype(dtype).name} {shape}: {error}")
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
""")


def test_baseline_path_matches_reference():
    result = run_with_simd("baseline", CHECK_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(("baseline", "scalar")), result.stdout


def test_avx2_capped_path_matches_reference():
    """FASTSCE_SIMD=avx2: AVX2+FMA where the CPU has it (else the baseline)."""
    result = run_with_simd("avx2", CHECK_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    path = result.stdout.split("\n")[0]
    assert path == "avx2+fma" or path.startswith(("baseline", "scalar")), path
    if _kernels.simd_path() in ("avx2+fma", "avx512"):
        assert path == "avx2+fma"


PATH_SCRIPT = "from fastsce import _kernels; print(_kernels.simd_path())"


def test_environment_variable_forces_the_baseline():
    forced = run_with_simd("baseline", PATH_SCRIPT)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip().startswith(("baseline", "scalar"))
    default = run_with_simd(None, PATH_SCRIPT)
    assert default.returncode == 0, default.stderr
    # without the variable the best path for this CPU is chosen: the same as in this
    # process unless the suite itself runs with FASTSCE_SIMD set
    if os.environ.get("FASTSCE_SIMD") is None:
        assert default.stdout.strip() == _kernels.simd_path()


def test_simd_path_names_a_known_instruction_set():
    assert _kernels.simd_path() in (
        "avx512",
        "avx2+fma",
        "baseline (sse2)",
        "baseline (neon)",
        "baseline",
        "scalar",
    )


def test_default_path_matches_reference_on_tails():
    """The same checks in a subprocess without the variable (the path of this process)."""
    result = run_with_simd(None, CHECK_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        result.stdout.split("\n")[0] == _kernels.simd_path()
        or os.environ.get("FASTSCE_SIMD") is not None
    )


@pytest.mark.parametrize("value", ["avx3", "AVX2", "sse4"])
def test_unknown_value_warns_and_is_ignored(value):
    result = run_with_simd(
        value, "import warnings; warnings.simplefilter('always')\n" + PATH_SCRIPT
    )
    assert result.returncode == 0, result.stderr
    assert f"RuntimeWarning: FASTSCE_SIMD={value!r} is not one of baseline, avx2, avx512" in (
        result.stderr
    )
    if os.environ.get("FASTSCE_SIMD") is None:
        assert result.stdout.strip() == _kernels.simd_path()


@pytest.mark.parametrize("value", ["baseline", "avx2", "avx512", ""])
def test_known_values_do_not_warn(value):
    result = run_with_simd(value, "import warnings; warnings.simplefilter('error')\n" + PATH_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
