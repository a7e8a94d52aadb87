"""The fast path of small calls (kernels.small_call) takes every common argument form.

The path predicate (plain_options in _kernels_loss.pxi) is computed from the option values:
Python ints for the float options (label_smoothing=0, temperature=1, z_loss=0), class
indices of any integer dtype but uint64, logits in any layout (Fortran order is copied,
rows far apart are read in place).  Each form must reach it (the validating path is
made to fail here) and give the same bits as that validating path (reached with
lse_out=, which the fast path does not take).
"""

import numpy as np
import pytest

import fastsce
from fastsce import _loss


def forms():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 10))
    target = rng.integers(0, 10, 64)
    wide = np.zeros((64, 30))
    wide[:, 5:15] = x
    return [
        ("float64, int64", x, target, {}),
        ("float32", x.astype(np.float32), target, {}),
        ("int32 target", x, target.astype(np.int32), {}),
        ("uint8 target", x, target.astype(np.uint8), {}),
        ("int16 strided target", x, np.repeat(target, 2).astype(np.int16)[::2], {}),
        ("uint32 target", x, target.astype(np.uint32), {}),
        ("int64 strided target", x, np.repeat(target, 3)[::3], {}),
        ("int8 target, ignored rows", x, np.where(target < 3, -100, target).astype(np.int8), {}),
        ("Fortran-order logits", np.asfortranarray(x), target, {}),
        ("rows far apart", wide[:, 5:15], target, {}),
        ("reversed rows", x[::-1], target[::-1], {}),
        ("int label_smoothing", x, target, {"label_smoothing": 0}),
        ("int temperature, z_loss", x, target, {"temperature": 1, "z_loss": 0}),
        ("smoothing and sum", x, target, {"label_smoothing": 0.25, "reduction": "sum"}),
    ]


FORMS = forms()


@pytest.mark.parametrize("name, logits, target, options", FORMS, ids=[f[0] for f in FORMS])
def test_common_forms_take_the_fast_path_with_the_same_bits(
    monkeypatch, name, logits, target, options
):
    lse = np.empty(logits.shape[0])
    slow_loss, slow_grad = fastsce.cross_entropy_with_grad(logits, target, lse_out=lse, **options)
    slow_plain = fastsce.cross_entropy(logits, target, lse_out=lse, **options)

    def no_validating_path(*args, **kwargs):
        raise AssertionError("the validating path was taken")

    monkeypatch.setattr(_loss, "run", no_validating_path)
    loss, grad = fastsce.cross_entropy_with_grad(logits, target, **options)
    assert loss == slow_loss and np.array_equal(grad, slow_grad)
    assert fastsce.cross_entropy(logits, target, **options) == slow_plain
    criterion = fastsce.CrossEntropyLoss(**options)
    out = np.empty(logits.shape, grad.dtype)
    assert criterion.loss_and_grad(logits, target, out=out)[0] == slow_loss
    assert np.array_equal(out, slow_grad)


@pytest.mark.parametrize(
    "target, error",
    [
        (np.array([0, 1, 2**63], np.uint64), ValueError),  # would wrap onto valid indices
        (np.array([0, 1, 2**64 - 100], np.uint64), ValueError),  # ... or onto ignore_index
        (np.array([True, False, True]), TypeError),
        (np.array([0, 1, 7], np.int32), ValueError),  # out of range: reported by the slow path
    ],
)
def test_targets_the_fast_path_refuses_are_reported_by_the_validating_path(target, error):
    with pytest.raises(error, match="`target`"):
        fastsce.cross_entropy(np.zeros((3, 4)), target)


def test_out_overlapping_a_converted_target_is_still_refused():
    """An int32 target converted to int64 for the kernel is checked where it lives."""
    out = np.zeros((3, 4))
    target = out.view(np.int32)[:, 0]  # zeros inside out
    with pytest.raises(ValueError, match="`out` overlaps `target`"):
        fastsce.cross_entropy_with_grad(np.zeros((3, 4)), target, out=out)
