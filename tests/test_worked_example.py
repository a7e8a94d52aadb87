"""The textbook worked example of softmax cross-entropy, checked to 1e-10.

z = [3, 4, 1] with label 1: sigma = [0.25949646034, 0.70538451269, 0.03511902695]
and dL/dz = sigma - onehot(1).  For a batch mean the gradient is (S - Y) / m and
the softmax Jacobian is diag(s) - s s^T.
"""

import numpy as np
import pytest

import fastsce
from _helpers import DTYPES, RTOL, assert_close, make_logits, make_soft_target, rng_for
from fastsce import reference

Z = [3.0, 4.0, 1.0]
SIGMA = np.array([0.25949646034, 0.70538451269, 0.03511902695])
GRAD = np.array([0.25949646034, -0.29461548731, 0.03511902695])
# The published figures are rounded to 11 decimals: 1e-10 absolute covers that rounding
# (|error| <= 5e-12).
SEED_ATOL = 1e-10


def test_softmax_of_seed_example():
    s = fastsce.softmax(np.array(Z))
    np.testing.assert_allclose(s, SIGMA, rtol=0, atol=SEED_ATOL)
    assert s.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_gradient_of_seed_example(reduction):
    loss, grad = fastsce.cross_entropy_with_grad(np.array(Z), 1, reduction=reduction)
    np.testing.assert_allclose(grad, GRAD, rtol=0, atol=SEED_ATOL)
    # L = -log sigma_1
    assert float(loss) == pytest.approx(-np.log(0.70538451269), abs=SEED_ATOL)
    assert fastsce.cross_entropy(np.array(Z), 1, reduction=reduction) == loss


def test_seed_example_as_a_batch_row_and_list_input():
    loss, grad = fastsce.cross_entropy_with_grad([Z, Z[::-1]], [1, 1])
    np.testing.assert_allclose(grad[0], GRAD / 2, rtol=0, atol=SEED_ATOL)
    # the second row is the first reversed, label 1 is the middle class again
    np.testing.assert_allclose(grad[1], GRAD[::-1] / 2, rtol=0, atol=SEED_ATOL)
    assert loss == pytest.approx(-np.log(0.70538451269), abs=SEED_ATOL)


def test_seed_example_float32():
    loss, grad = fastsce.cross_entropy_with_grad(np.array(Z, np.float32), np.int32(1))
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, GRAD, rtol=1e-6)
    assert loss == pytest.approx(-np.log(0.70538451269), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (8, 5), (64, 10), (4, 3, 7)])
def test_batch_mean_gradient_is_S_minus_Y_over_m(shape, dtype):
    """grad = (S - Y) / m, S the softmax rows, Y the one-hot targets, m the row count."""
    rng = rng_for("batch", shape, dtype)
    logits = make_logits(shape, dtype, rng=rng)
    n_classes = shape[-1]
    target = rng.integers(0, n_classes, shape[:-1])
    loss, grad = fastsce.cross_entropy_with_grad(logits, target)
    s = fastsce.softmax(logits)
    y = np.eye(n_classes, dtype=dtype)[target]
    m = int(np.prod(shape[:-1]))
    rtol = RTOL[np.dtype(dtype)]
    # grad_j = s_j / m - y_j / m: rounding is relative to the terms, |s_j| + |y_j|
    assert_close(grad, (s.astype(np.float64) - y) / m, rtol, magnitude=(s + y) / m)
    # L = mean_i -log s_i[t_i]
    s_target = np.take_along_axis(s.astype(np.float64), target[..., None], -1)
    expected_loss = -np.mean(np.log(s_target))
    assert loss == pytest.approx(expected_loss, rel=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jacobian_is_diag_s_minus_s_sT(dtype):
    s = fastsce.softmax(np.array(Z, dtype))
    jac = fastsce.softmax_jacobian(s)
    assert jac.shape == (3, 3) and jac.dtype == dtype
    np.testing.assert_array_equal(jac, jac.T)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(jac, np.diag(s) - np.outer(s, s), rtol=rtol)
    # the published numbers: J_11 = s_1 (1 - s_1), J_12 = -s_1 s_2 (float32 holds ~7 digits)
    seed_tol = SEED_ATOL if dtype == np.float64 else 1e-7
    assert jac[1, 1] == pytest.approx(0.70538451269 * (1 - 0.70538451269), abs=seed_tol)
    assert jac[0, 1] == pytest.approx(-0.25949646034 * 0.70538451269, abs=seed_tol)
    # rows of a softmax Jacobian sum to zero (softmax is invariant to x + c); each entry
    # is at most 1 in size, so the rounding error of a 3-term row sum is a few eps
    np.testing.assert_allclose(jac.sum(axis=1), 0.0, atol=4 * np.finfo(dtype).eps)


def test_jacobian_batch_matches_per_row_formula():
    s = fastsce.softmax(make_logits((2, 3, 6), np.float64))
    jac = fastsce.softmax_jacobian(s)
    assert jac.shape == (2, 3, 6, 6)
    for index in np.ndindex(2, 3):
        row = s[index]
        expected = np.diag(row) - np.outer(row, row)
        np.testing.assert_allclose(jac[index], expected, rtol=1e-15, atol=0)


def test_temperature_softmax_of_seed_example():
    """softmax(z / T): T = 2 halves the logit gaps."""
    s = fastsce.softmax(np.array(Z), temperature=2.0)
    e = np.exp(np.array(Z) / 2.0)
    np.testing.assert_allclose(s, e / e.sum(), rtol=1e-14)
    log_s = fastsce.log_softmax(np.array(Z), temperature=2.0)
    np.testing.assert_allclose(log_s, np.log(e / e.sum()), rtol=1e-14)


# ---------------------------------------------------------------------------
# the gradient through the probabilities: dL/ds = -y / s, and the Jacobian turns it
# into s - y


def test_gradient_wrt_probabilities_of_the_worked_example():
    """dL/ds = -y / s at z = [3, 4, 1], label 1: only the label's entry, -1 / sigma_1;
    the softmax Jacobian maps it to the published gradient s - y."""
    y = np.array([0.0, 1.0, 0.0])
    grad_s = reference.cross_entropy_grad_wrt_probabilities(SIGMA, y)
    np.testing.assert_array_equal(grad_s[[0, 2]], -0.0)
    assert grad_s[1] == pytest.approx(-1 / 0.70538451269, rel=1e-12)
    s = reference.softmax(np.array(Z))
    chained = reference.softmax_backward(reference.cross_entropy_grad_wrt_probabilities(s, y), s)
    np.testing.assert_allclose(chained, GRAD, rtol=0, atol=SEED_ATOL)
    fast = fastsce.softmax_backward(reference.cross_entropy_grad_wrt_probabilities(s, y), s)
    np.testing.assert_allclose(fast, GRAD, rtol=0, atol=SEED_ATOL)


@pytest.mark.parametrize("shape", [(3,), (5, 4), (2, 3, 7)], ids=str)
def test_jacobian_turns_minus_y_over_s_into_s_minus_y(shape):
    """For any target distribution y: J^T (-y / s) = s - y (the batch mean: -Y / (m S)
    maps to (S - Y) / m), in the reference and in fastsce.softmax_backward."""
    rng = rng_for("minus y over s", shape)
    s = reference.softmax(rng.standard_normal(shape))
    y = make_soft_target(shape, np.float64, rng)
    grad_s = reference.cross_entropy_grad_wrt_probabilities(s, y)
    np.testing.assert_allclose(reference.softmax_backward(grad_s, s), s - y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fastsce.softmax_backward(grad_s, s), s - y, rtol=1e-12, atol=1e-12)
    m = int(np.prod(shape[:-1]))
    mean = reference.cross_entropy_grad_wrt_probabilities(s, y, mean=True)
    np.testing.assert_allclose(mean, -y / (m * s), rtol=1e-15)
    np.testing.assert_allclose(reference.softmax_backward(mean, s), (s - y) / m, atol=1e-12)
