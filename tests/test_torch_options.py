"""fastsce's loss options against PyTorch (float64, autograd) to 1e-10 relative.

weight / ignore_index / label_smoothing / soft targets / reductions are
torch.nn.functional.cross_entropy itself, in every combination.  PyTorch has no
temperature, softcap or z-loss argument; the PyTorch side is written out by hand and
differentiated by autograd, exactly as documented for fastsce:

    z = x / T,   or   z = c tanh(x / c) / T  with a -inf logit kept -inf (a constant:
                      no gradient flows to a masked class through the softcap)
    loss = F.cross_entropy(z, ...) + lambda lse(z)^2 per kept row, where the 'mean'
           divides the summed z-loss by F.cross_entropy's own divisor (the summed
           target weights of the kept rows, or the row count for soft targets).

Documented difference: an ignored row whose logits are -inf (or NaN) has a NaN
gradient in PyTorch and exactly 0 in fastsce; such rows are left out of the gradient
comparison and fastsce's are asserted to be 0.  PyTorch refuses ignore_index with
probability targets, so soft targets are compared without it.  Tolerances as in
test_torch.py: RTOL relative to the terms of each value (test_loss_options.option_bounds).
"""

import numpy as np
import pytest

import fastsce
from conftest import assert_close
from test_loss_options import REDUCTIONS, TRANSFORMS, kept_rows, make_case, option_bounds

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-10
FLOAT64 = np.dtype(np.float64)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tensors are tiny: one thread avoids PyTorch's thread-pool overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_loss_and_grad(
    logits,
    target,
    reduction,
    *,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    temperature=1.0,
    softcap=None,
    z_loss=0.0,
):
    """PyTorch's loss and d(loss)/d(logits) (for 'none': of the summed losses)."""
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    if softcap is None:
        z = x / temperature
    else:
        masked = torch.isneginf(x)
        capped = softcap * torch.tanh(x / softcap) / temperature
        z = torch.where(masked, torch.full_like(x, -torch.inf), capped)
    moved = torch.movedim(z, -1, 1) if z.ndim > 1 else z
    soft = target.dtype.kind == "f"
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    if soft:
        t = torch.tensor(target, dtype=torch.float64)
        t = torch.movedim(t, -1, 1) if t.ndim > 1 else t
        loss = F.cross_entropy(
            moved, t, weight=w, reduction=reduction, label_smoothing=label_smoothing
        )
    else:
        t = torch.tensor(target, dtype=torch.int64)
        loss = F.cross_entropy(
            moved,
            t,
            weight=w,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
    if z_loss:
        kept = torch.tensor(kept_rows(target, np.shape(logits), ignore_index))
        lse = torch.logsumexp(z, dim=-1)
        squares = torch.where(kept, lse**2, torch.zeros_like(lse))
        if reduction == "none":
            loss = loss + z_loss * squares
        elif reduction == "sum":
            loss = loss + z_loss * squares.sum()
        else:
            if soft:
                divisor = float(np.prod(np.shape(logits)[:-1]))
            elif weight is None:
                divisor = float(kept.sum())
            else:
                index = np.where(kept.numpy(), target, 0)
                divisor = float(np.sum(np.where(kept.numpy(), np.asarray(weight)[index], 0.0)))
            loss = loss + z_loss * squares.sum() / divisor
    (loss.sum() if reduction == "none" else loss).backward()
    return loss.detach().numpy(), x.grad.numpy()


def compare_with_torch(logits, target, reduction, options):
    """fastsce (functional and class) against PyTorch; ignored rows with non-finite
    logits are excluded from the gradient comparison (PyTorch: NaN) and must be 0."""
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    torch_options = dict(options)
    if target.dtype.kind == "f":
        torch_options.pop("ignore_index", None)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction, **torch_options)
    loss_atol, grad_magnitude, _ = option_bounds(logits, target, reduction, options, FLOAT64)
    assert_close(np.asarray(loss), expected_loss, RTOL, atol=loss_atol, err_msg="(loss)")

    kept = kept_rows(target, logits.shape, options.get("ignore_index", -100))
    finite_rows = np.all(np.isfinite(logits), axis=-1)
    compared = kept | finite_rows
    np.testing.assert_array_equal(grad[~kept], 0.0)
    assert_close(
        grad[compared],
        expected_grad[compared],
        RTOL,
        magnitude=grad_magnitude[compared],
        err_msg="(grad)",
    )

    criterion = fastsce.CrossEntropyLoss(reduction=reduction, **options)
    assert_close(np.asarray(criterion(logits, target)), expected_loss, RTOL, atol=loss_atol)
    return loss, grad, expected_grad, compared


#: hard targets: every combination of weight, ignore_index (none, -100, in range), smoothing
HARD_OPTIONS = {
    f"{w}-{i}-{s}": {
        **({"weight": "random"} if w == "weight" else {}),
        **({"ignore_index": {"ignore": -100, "ignore2": 2}[i]} if i != "keep" else {}),
        **({"label_smoothing": 0.2} if s == "smooth" else {}),
    }
    for w in ("noweight", "weight")
    for i in ("keep", "ignore", "ignore2")
    for s in ("nosmooth", "smooth")
}
#: soft targets: weight and smoothing, alone and together
SOFT_OPTIONS = {
    f"{w}-{s}": {
        **({"weight": "random"} if w == "weight" else {}),
        **({"label_smoothing": 0.3} if s == "smooth" else {}),
    }
    for w in ("noweight", "weight")
    for s in ("nosmooth", "smooth")
}
CASES = [("hard", name, masked) for name in HARD_OPTIONS for masked in (False, True)] + [
    ("soft", name, False) for name in SOFT_OPTIONS
]
CASE_IDS = [f"{kind}-{name}-{'masked' if masked else 'finite'}" for kind, name, masked in CASES]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kind, name, masked", CASES, ids=CASE_IDS)
def test_options_match_pytorch(kind, name, masked, transform, reduction):
    """masked: rows with -inf classes, an ignored row with a NaN logit and an ignored
    row of -inf (make_case in test_loss_options.py)."""
    base = (HARD_OPTIONS if kind == "hard" else SOFT_OPTIONS)[name]
    logits, target, options = make_case(
        kind, name, transform, masked, np.float64, tag="torch", options=base
    )
    compare_with_torch(logits, target, reduction, options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("shape", [(7,), (2, 5, 7), (3, 1000)], ids=str)
def test_everything_at_once_on_other_shapes_matches_pytorch(shape, kind, reduction):
    """1-D (scalar target), class axis moved for 3-D inputs, long rows."""
    base = {"weight": "random", "label_smoothing": 0.1}
    if kind == "hard":
        base["ignore_index"] = 3
    logits, target, options = make_case(
        kind, "everything", "all", False, np.float64, shape, tag="torch shapes", options=base
    )
    if kind == "hard" and target.size > 2:
        target.reshape(-1)[2::3] = 3
    compare_with_torch(logits, target, reduction, options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("transform", ["none", "cold", "softcap", "z_loss", "all"])
def test_ignored_rows_of_minus_inf_are_zero_where_pytorch_is_nan(transform, reduction):
    logits = np.array([[0.5, -np.inf, 2.0, -1.0], [-np.inf] * 4, [1.0, 2.0, 3.0, 4.0]])
    target = np.array([2, -100, 0])
    options = {"label_smoothing": 0.1, **TRANSFORMS[transform]}
    _, grad, expected_grad, compared = compare_with_torch(logits, target, reduction, options)
    assert not compared[1]
    np.testing.assert_array_equal(grad[1], 0.0)
    if "softcap" in options:
        # the softcap's masking (a constant -inf) stops PyTorch's NaN before the logits
        np.testing.assert_array_equal(expected_grad[1], 0.0)
    else:
        # the documented difference: NaN in F.cross_entropy's backward, 0 in fastsce
        assert np.all(np.isnan(expected_grad[1]))
