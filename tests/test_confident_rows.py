"""Confident rows keep their digits (scipy gh-18295).

A row whose max beats every other logit by a margin a has exp sum S = 1 + S',
S' ~ exp(-a); log(S) rounds S' away below the float64 epsilon (a > ~37) and
keeps only some of its digits above.  fastsce sums S' without the max's own
term and takes log1p(S'), so the log-sum-exp, the log-softmax at the max, the
loss of a confidently right row (log1p(S')) and its gradient at the target
(-S' / (1 + S')) are exact to a few ULP.  Expected values come from closed
forms in float64 (np.log1p, np.exp), not from the oracle, which has the defect.

The checks run in this process (the CPU's best vector path) and, in
subprocesses, on every other path (FASTSCE_SIMD).
"""

import numpy as np
import pytest

import fastsce
from _helpers import run_with_simd

#: margins of the runner-up logit below the max (700: exp(-700) is near the smallest normal)
MARGINS = [20.0, 25.0, 30.0, 37.0, 40.0, 100.0, 300.0, 700.0]
FLOAT32_MARGINS = [5.0, 10.0, 20.0, 25.0, 30.0]
F64_RTOL = 1e-14
F32_LOSS_RTOL = 2e-6


def relative_error(actual, expected):
    return abs(float(actual) - expected) / abs(expected)


def check_close(actual, expected, rtol, what):
    error = relative_error(actual, expected)
    assert error <= rtol, f"{what}: {float(actual)!r} against {expected!r}: {error:.3g} relative"


def two_class_rows(a, n_classes, dtype):
    """[0, -a] padded to n_classes with masked (-inf) classes: the same numbers on the
    lane-per-row path of short rows and on the row path (n_classes > 64)."""
    row = np.full(n_classes, -np.inf)
    row[:2] = [0.0, -a]
    return np.array([row, row[::-1].copy()], dtype)  # the max first, then last


def check_float64_margin(a, n_classes):
    """Every quantity named in the module docstring, at margin a, with n_classes classes."""
    d = np.exp(-a)
    x = two_class_rows(a, n_classes, np.float64)
    target = np.array([0, n_classes - 1])  # the max in both rows
    lse = fastsce.logsumexp(x)
    for i in range(2):
        check_close(lse[i], np.log1p(d), F64_RTOL, f"logsumexp a={a} C={n_classes}")
    log_s = fastsce.log_softmax(x)
    check_close(log_s[0, 0], -np.log1p(d), F64_RTOL, f"log_softmax at the max a={a}")
    check_close(log_s[1, -1], -np.log1p(d), F64_RTOL, f"log_softmax at the max a={a}")
    for reduction in ["none", "sum"]:
        loss, grad = fastsce.cross_entropy_with_grad(x, target, reduction=reduction)
        plain_loss = fastsce.cross_entropy(x, target, reduction=reduction)
        np.testing.assert_array_equal(loss, plain_loss)  # the same bits, with or without grad
        lse_out = np.empty(2)
        fastsce.cross_entropy(x, target, reduction=reduction, lse_out=lse_out)
        expected_loss = np.log1p(d) * (2 if reduction == "sum" else 1)
        for value in np.atleast_1d(loss):
            check_close(value, expected_loss, F64_RTOL, f"loss a={a} C={n_classes} {reduction}")
        for i in range(2):
            check_close(lse_out[i], np.log1p(d), F64_RTOL, f"lse_out a={a}")
        p_other = d / (1.0 + d)  # softmax of the runner-up; the max's gradient is -p_other
        check_close(grad[0, 0], -p_other, F64_RTOL, f"grad at the target a={a} C={n_classes}")
        check_close(grad[0, 1], p_other, F64_RTOL, f"grad of the runner-up a={a}")
        check_close(grad[1, -1], -p_other, F64_RTOL, f"grad at the target a={a} C={n_classes}")
        check_close(grad[1, -2], p_other, F64_RTOL, f"grad of the runner-up a={a}")
        in_place = x.copy()
        fastsce.cross_entropy_with_grad(in_place, target, reduction=reduction, out=in_place)
        np.testing.assert_array_equal(in_place, grad)


def check_float64_options(a):
    """Weights, 'mean', temperature and one-hot soft targets (the dense path) keep it."""
    d = np.exp(-a)
    x = np.array([[0.0, -a, -np.inf]])
    target = np.array([0])
    loss, grad = fastsce.cross_entropy_with_grad(x, target, weight=[3.0, 1.0, 1.0])
    check_close(loss, np.log1p(d), F64_RTOL, f"weighted mean a={a}")  # mean divides by 3
    check_close(grad[0, 0], -d / (1 + d), F64_RTOL, f"weighted mean grad a={a}")
    loss, grad = fastsce.cross_entropy_with_grad(2.0 * x, target, temperature=2.0)
    check_close(loss, np.log1p(d), F64_RTOL, f"temperature a={a}")
    check_close(grad[0, 0], -d / (1 + d) / 2.0, F64_RTOL, f"temperature grad a={a}")
    soft = np.array([[1.0, 0.0, 0.0]])
    loss, grad = fastsce.cross_entropy_with_grad(x, soft)
    check_close(loss, np.log1p(d), F64_RTOL, f"one-hot soft target a={a}")
    check_close(grad[0, 0], -d / (1 + d), F64_RTOL, f"one-hot soft target grad a={a}")
    check_close(grad[0, 1], d / (1 + d), F64_RTOL, f"one-hot soft target grad a={a}")
    # a target off the max: loss a + log1p(d), gradient 1 / (1 + d) at the max
    loss, grad = fastsce.cross_entropy_with_grad(x, np.array([1]))
    check_close(loss, a + np.log1p(d), F64_RTOL, f"target off the max a={a}")
    check_close(grad[0, 0], 1.0 / (1.0 + d), F64_RTOL, f"target off the max grad a={a}")


def check_three_class_rows():
    for a, b in [(20.0, 25.0), (30.0, 30.0), (40.0, 45.0), (36.0, 700.0)]:
        d = np.exp(-a) + np.exp(-b)
        x = np.array([[-a, 0.0, -b]])
        check_close(fastsce.logsumexp(x)[0], np.log1p(d), F64_RTOL, f"3 classes {a}, {b}")
        loss, grad = fastsce.cross_entropy_with_grad(x, np.array([1]))
        check_close(loss, np.log1p(d), F64_RTOL, f"3-class loss {a}, {b}")
        check_close(grad[0, 1], -d / (1 + d), F64_RTOL, f"3-class grad {a}, {b}")
        check_close(grad[0, 0], np.exp(-a) / (1 + d), F64_RTOL, f"3-class grad {a}, {b}")


def check_float32():
    for a in FLOAT32_MARGINS:
        d = np.exp(-a)
        for n_classes in [2, 20, 100]:
            x = two_class_rows(a, n_classes, np.float32)
            loss = fastsce.cross_entropy(x, np.array([0, n_classes - 1]), reduction="none")
            for value in loss:
                check_close(value, np.log1p(d), F32_LOSS_RTOL, f"float32 loss a={a}")
            check_close(
                fastsce.cross_entropy(x[:1], np.array([0])),
                np.log1p(d),
                F32_LOSS_RTOL,
                f"float32 mean loss a={a}",
            )


def check_all():
    for n_classes in [2, 3, 16, 17, 40, 64, 65, 100]:
        for a in MARGINS:
            check_float64_margin(a, n_classes)
    for a in MARGINS:
        check_float64_options(a)
    check_three_class_rows()
    check_float32()


def test_the_example_of_scipy_gh_18295():
    assert fastsce.logsumexp([0.0, -40.0]) == pytest.approx(4.248354255291589e-18, rel=1e-15)


@pytest.mark.parametrize("n_classes", [2, 3, 16, 17, 40, 64, 65, 100])
@pytest.mark.parametrize("a", MARGINS)
def test_float64_quantities_of_a_confident_row(a, n_classes):
    check_float64_margin(a, n_classes)


@pytest.mark.parametrize("a", MARGINS)
def test_float64_options_keep_the_digits(a):
    check_float64_options(a)


def test_three_class_rows():
    check_three_class_rows()


def test_float32_loss_of_a_confident_row():
    check_float32()


def test_rows_of_moderate_confidence_are_unchanged_by_the_rescan():
    """Rows on either side of the rescan threshold (S = 1.5) agree with log(sum) to
    float64 accuracy: the two formulas meet there."""
    for gap in np.linspace(0.5, 1.2, 15):  # S = 1 + exp(-gap): 1.3 .. 1.6
        x = np.array([0.0, -gap])
        check_close(fastsce.logsumexp(x), np.log(1 + np.exp(-gap)), 1e-15, f"gap {gap}")


@pytest.mark.parametrize("simd", ["baseline", "avx2"])
def test_every_vector_path(simd):
    result = run_with_simd(simd, "import test_confident_rows as t; t.check_all(); print('ok')")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
