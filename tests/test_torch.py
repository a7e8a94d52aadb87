"""fastsce against torch.nn.functional.cross_entropy (float64, autograd) to 1e-10.

weight / ignore_index / label_smoothing / reduction / soft targets are
exactly PyTorch's with the class axis last.  One documented difference: an ignored
row whose logits are -inf (or NaN) has gradient NaN in PyTorch (its log-softmax is
NaN and 0 * NaN = NaN in the backward pass) but exactly 0 in fastsce; those rows
are left out of the gradient comparison.  A second one: PyTorch raises when
ignore_index is given with probability targets, fastsce accepts and ignores it
(it only applies to class indices), so soft targets are compared without it.
"""

import numpy as np
import pytest

import fastsce
from conftest import (
    LOG_SUM_ATOL,
    assert_close,
    grad_magnitude,
    logsumexp_magnitude,
    loss_atol,
    make_logits,
    make_soft_target,
    rng_for,
)

torch = pytest.importorskip("torch")

RTOL = 1e-10


def torch_loss_and_grad(
    logits, target, reduction, weight=None, ignore_index=-100, label_smoothing=0.0
):
    """PyTorch's loss and d(loss)/d(logits), class axis moved to 1 and back."""
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    moved = torch.movedim(x, -1, 1) if x.ndim > 1 else x
    if target.dtype.kind == "f":
        t = torch.tensor(target, dtype=torch.float64)
        t = torch.movedim(t, -1, 1) if t.ndim > 1 else t
    else:
        t = torch.tensor(target, dtype=torch.int64)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(
        moved,
        t,
        weight=w,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    (loss.sum() if reduction == "none" else loss).backward()
    return loss.detach().numpy(), x.grad.numpy()


OPTION_SETS = {
    "plain": {},
    "weight": {"weight": "random"},
    "ignore_index": {"ignore_index": -100},
    "ignore_index_in_range": {"ignore_index": 2},
    "label_smoothing": {"label_smoothing": 0.15},
    "weight_smoothing": {"weight": "random", "label_smoothing": 0.4},
    "everything": {"weight": "random", "label_smoothing": 0.25, "ignore_index": 1},
}


@pytest.mark.parametrize("shape", [(6,), (8, 5), (3, 4, 7), (2, 1000)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", list(OPTION_SETS))
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_matches_pytorch(soft, kind, reduction, shape):
    rng = rng_for("torch", soft, kind, reduction, shape)
    logits = make_logits(shape, np.float64, rng=rng)
    options = dict(OPTION_SETS[kind])
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, shape[-1])
    if soft:
        # PyTorch refuses ignore_index with probability targets; fastsce does not apply it
        options.pop("ignore_index", None)
        target = make_soft_target(shape, np.float64, rng)
    else:
        target = rng.integers(0, shape[-1], shape[:-1])
        if "ignore_index" in options and target.ndim:
            target.reshape(-1)[::3] = options["ignore_index"]
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction, **options)
    atol = loss_atol(logits, target, reduction, **options)
    assert_close(np.asarray(loss), expected_loss, RTOL, atol=atol)
    assert_close(
        grad, expected_grad, RTOL, magnitude=grad_magnitude(logits, target, reduction, **options)
    )
    assert_close(
        fastsce.cross_entropy(logits, target, reduction=reduction, **options),
        expected_loss,
        RTOL,
        atol=atol,
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_masked_classes_and_ignored_rows_match_pytorch(reduction, label_smoothing):
    inf = np.inf
    logits = np.array(
        [
            [0.5, -inf, 2.0, -1.0],
            [-inf, -inf, 3.0, 1.0],
            [1.0, 2.0, 3.0, 4.0],
            [-inf, -inf, -inf, -inf],  # ignored
            [0.0, np.nan, 1.0, 1.0],  # ignored
        ]
    )
    target = np.array([2, 3, 0, -100, -100])
    options = {"label_smoothing": label_smoothing}
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction, **options)
    assert_close(np.asarray(loss), expected_loss, RTOL)
    kept = target != -100
    # PyTorch: NaN gradient on ignored rows with non-finite logits; fastsce: exactly 0
    assert np.all(np.isnan(expected_grad[~kept]))
    np.testing.assert_array_equal(grad[~kept], 0.0)
    assert_close(
        grad[kept],
        expected_grad[kept],
        RTOL,
        magnitude=grad_magnitude(logits, target, reduction, **options)[kept],
    )


def test_nan_rows_match_pytorch():
    logits = np.array([[0.0, 1.0, 2.0], [-np.inf] * 3, [np.nan, 0.0, 1.0], [1.0, np.inf, 0.0]])
    target = np.array([0, 1, 2, 0])
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction="none")
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, "none")
    assert_close(loss, expected_loss, RTOL)
    assert_close(grad, expected_grad, RTOL, magnitude=grad_magnitude(logits, target, "none"))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_zero_total_weight_matches_pytorch(label_smoothing):
    logits = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, -1.0], [2.0, 0.0, 0.0]])
    target = np.array([0, -100, 0])
    options = {"weight": np.array([0.0, 1.0, 1.0]), "label_smoothing": label_smoothing}
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, **options)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, "mean", **options)
    assert np.isnan(loss) and np.isnan(expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_softmax_family_matches_pytorch(temperature):
    x = make_logits((4, 3, 50), np.float64)
    tx = torch.tensor(x) / temperature
    np.testing.assert_allclose(
        fastsce.softmax(x, temperature=temperature),
        torch.softmax(tx, -1).numpy(),
        rtol=RTOL,
        atol=0,
    )
    expected = torch.log_softmax(tx, -1).numpy()
    assert_close(fastsce.log_softmax(x, temperature=temperature), expected, RTOL, atol=LOG_SUM_ATOL)
    expected = torch.logsumexp(tx, -1).numpy()
    assert_close(
        fastsce.logsumexp(x, temperature=temperature),
        expected,
        RTOL,
        magnitude=logsumexp_magnitude(x, temperature=temperature),
        atol=LOG_SUM_ATOL,
    )
