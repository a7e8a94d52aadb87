"""fastsce against torch.nn.functional.cross_entropy (float64, autograd) to 1e-10.

The first part checks the PyTorch options one by one and the public functions' forms;
the second every combination of the options, with fastsce's own (temperature,
softcap, z-loss) written out in PyTorch by hand.

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
from _helpers import (
    LOG_SUM_ATOL,
    REDUCTIONS,
    TRANSFORMS,
    assert_close,
    grad_magnitude,
    imports_after_import_fastsce,
    kept_rows,
    logsumexp_magnitude,
    loss_atol,
    make_case,
    make_logits,
    make_soft_target,
    option_bounds,
    rng_for,
)

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


# ---------------------------------------------------------------------------
# the loss options in every combination
#
# fastsce's loss options against PyTorch (float64, autograd) to 1e-10 relative.
#
# weight / ignore_index / label_smoothing / soft targets / reductions are
# torch.nn.functional.cross_entropy itself, in every combination.  PyTorch has no
# temperature, softcap or z-loss argument; the PyTorch side is written out by hand and
# differentiated by autograd, exactly as documented for fastsce:
#
#     z = x / T,   or   z = c tanh(x / c) / T  with a -inf logit kept -inf (a constant:
#                       no gradient flows to a masked class through the softcap)
#     loss = F.cross_entropy(z, ...) + lambda lse(z)^2 per kept row, where the 'mean'
#            divides the summed z-loss by F.cross_entropy's own divisor (the summed
#            target weights of the kept rows, or the row count for soft targets).
#
# Documented difference: an ignored row whose logits are -inf (or NaN) has a NaN
# gradient in PyTorch and exactly 0 in fastsce; such rows are left out of the gradient
# comparison and fastsce's are asserted to be 0.  PyTorch refuses ignore_index with
# probability targets, so soft targets are compared without it.  Tolerances as in
# test_torch.py: RTOL relative to the terms of each value (_helpers.option_bounds).
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


# ---------------------------------------------------------------------------
# fastsce.torch: the drop-in entry point for PyTorch training loops

fst = pytest.importorskip("fastsce.torch")

ENTRY_CASES = [
    ("(N, C)", (6, 5), {}),
    ("(N, C) weight", (6, 5), {"weight": "random"}),
    ("(N, C) ignore_index", (6, 5), {"ignore_index": 2}),
    ("(N, C) smoothing", (6, 5), {"label_smoothing": 0.2, "weight": "random"}),
    ("(N, C, d1, d2)", (3, 5, 4, 2), {"weight": "random", "ignore_index": 1}),
    ("(C,)", (5,), {"label_smoothing": 0.1}),
]


def entry_case(shape, options, soft, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    batch = (shape[0], *shape[2:]) if len(shape) > 1 else ()
    if soft:
        target = torch.softmax(
            torch.randn(shape, dtype=torch.float64, generator=generator), 1 if len(shape) > 1 else 0
        )
        options = {k: v for k, v in options.items() if k != "ignore_index"}
    else:
        target = torch.randint(0, n_classes, batch, generator=generator)
    options = dict(options)
    if options.get("weight") == "random":
        options["weight"] = torch.rand(n_classes, dtype=torch.float64, generator=generator) + 0.5
    return x, target, options


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("name, shape, options", ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_entry_point_matches_pytorch(name, shape, options, soft, reduction):
    x, target, options = entry_case(shape, options, soft)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    ours = fst.cross_entropy(a, target, reduction=reduction, **options)
    theirs = F.cross_entropy(b, target, reduction=reduction, **options)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    upstream = torch.rand(theirs.shape, dtype=torch.float64) + 0.5  # grad_output other than 1
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_entry_point_gradcheck_and_a_loss_used_twice():
    x, target, options = entry_case((4, 6), {"weight": "random"}, False)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda v: fst.cross_entropy(v, target, **options), (x,))
    assert torch.autograd.gradcheck(
        lambda v: fst.cross_entropy(v, target, reduction="none", **options), (x,)
    )
    loss = fst.cross_entropy(x, target, **options)
    (3 * loss + loss).backward()
    y = x.detach().clone().requires_grad_()
    reference = F.cross_entropy(y, target, **options)
    (3 * reference + reference).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-10, atol=1e-12)


def test_entry_point_under_torch_compile():
    x, target, _ = entry_case((8, 7), {}, False)

    def step(v):
        return fst.cross_entropy(v, target, label_smoothing=0.1)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_a, loss_b = compiled(a), step(b)
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    x, target, _ = entry_case((6, 5), {}, False)
    half = x.to(dtype).requires_grad_()
    loss = fst.cross_entropy(half, target)
    loss.backward()
    assert loss.dtype == dtype and half.grad.dtype == dtype
    as_float = half.detach().float().requires_grad_()
    expected = F.cross_entropy(as_float, target)
    expected.backward()
    torch.testing.assert_close(loss, expected.to(dtype))
    torch.testing.assert_close(half.grad, as_float.grad.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True])
def test_half_precision_is_read_as_it_is(dtype, soft):
    """Eager mode reads 16-bit logits without a float32 copy (bfloat16 through ml_dtypes):
    the loss and input.grad are those of the float32 copy's computation, bit for bit."""
    if dtype == torch.bfloat16:
        pytest.importorskip("ml_dtypes")
    x, target, _ = entry_case((16, 300), {}, soft)
    half = x.to(dtype).requires_grad_()
    assert fst._reads_as_is(half)
    loss = fst.cross_entropy(half, target, label_smoothing=0.1)
    loss.backward()
    as_float = half.detach().float().requires_grad_()
    expected = fst.cross_entropy(as_float, target, label_smoothing=0.1)
    expected.backward()
    assert torch.equal(loss, expected.to(dtype))
    assert torch.equal(half.grad, as_float.grad.to(dtype))


def test_no_gradient_work_without_requires_grad():
    x, target, _ = entry_case((6, 5), {}, False)
    with torch.no_grad():
        y = x.clone().requires_grad_()
        assert fst.cross_entropy(y, target).grad_fn is None
    assert fst.cross_entropy(x, target).grad_fn is None
    torch.testing.assert_close(fst.cross_entropy(x, target), F.cross_entropy(x, target))


def test_other_devices_are_refused_with_the_way_out():
    x = torch.empty((2, 3), device="meta")
    with pytest.raises(ValueError, match=r"`input` is on meta.*torch\.nn\.functional"):
        fst.cross_entropy(x, torch.zeros(2, dtype=torch.int64))


def test_legacy_size_average_and_reduce_map_as_in_pytorch():
    x, target, _ = entry_case((6, 5), {}, False)
    with pytest.warns(UserWarning, match="deprecated"):
        ours = fst.cross_entropy(x, target, None, False)  # size_average=False: "sum"
    torch.testing.assert_close(ours, F.cross_entropy(x, target, reduction="sum"))


def test_the_module_keeps_its_weight_as_a_buffer():
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    criterion = fst.CrossEntropyLoss(weight, label_smoothing=0.1, z_loss=0.0)
    assert "weight" in criterion.state_dict()
    x = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    reference = torch.nn.CrossEntropyLoss(weight, label_smoothing=0.1)
    torch.testing.assert_close(criterion(x, target), reference(x, target), rtol=1e-10, atol=0)


def test_a_training_loop_learns_as_with_pytorch():
    """The same MLP, data and SGD steps: fastsce.torch and F.cross_entropy give the same
    trajectory (float64) and a trained classifier."""
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(300, 8, dtype=torch.float64, generator=generator)
    labels = (data[:, :3] * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).argmax(1)
    results = []
    for loss_fn in (fst.cross_entropy, F.cross_entropy):
        torch.manual_seed(1)
        model = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        ).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(60):
            optimizer.zero_grad()
            loss = loss_fn(model(data), labels)
            loss.backward()
            optimizer.step()
        accuracy = (model(data).argmax(1) == labels).double().mean().item()
        results.append((loss.item(), accuracy))
    (ours_loss, ours_accuracy), (torch_loss, torch_accuracy) = results
    assert ours_loss == pytest.approx(torch_loss, rel=1e-8)
    assert ours_accuracy == torch_accuracy and ours_accuracy > 0.9


def test_the_entry_points_examples_run():
    import doctest

    for obj in (fst.cross_entropy, fst.CrossEntropyLoss):
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        for test in doctest.DocTestFinder(recurse=False).find(obj, obj.__name__):
            runner.run(test)
        failed, attempted = runner.summarize(verbose=False)
        assert attempted > 0 and failed == 0, obj.__name__


def test_import_fastsce_does_not_import_torch():
    assert imports_after_import_fastsce("torch") is False


def test_the_entry_point_uses_pytorchs_thread_count(monkeypatch):
    """fastsce's default inside the op is torch.get_num_threads(); set_num_threads wins."""
    from fastsce import _config, _loss

    seen = []
    original = _loss.cross_entropy_with_grad

    def spy(*args, **kwargs):
        seen.append(_config.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(_loss, "cross_entropy_with_grad", spy)
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (8,))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        fst.cross_entropy(x, target)
        fastsce.set_num_threads(3)
        fst.cross_entropy(x, target)
    finally:
        torch.set_num_threads(before)
        fastsce.set_num_threads(None)
    assert seen == [1, 3]
    assert _config.get_num_threads() == _config.USABLE_CPUS  # nothing left behind


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_inplace_backward_writes_the_gradient_over_the_logits(reduction):
    """A linear layer's output as the logits: the same loss and parameter gradients as
    F.cross_entropy, with the gradient written into the logits' storage."""
    torch.manual_seed(3)
    layer = torch.nn.Linear(6, 4).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 2, 3])
    logits = layer(x)
    loss = fst.cross_entropy(logits, target, reduction=reduction, inplace_backward=True)
    expected_grad = torch.autograd.grad(
        F.cross_entropy(layer(x), target, reduction=reduction).sum() * 2, layer.weight
    )[0]
    (loss.sum() * 2).backward()
    torch.testing.assert_close(layer.weight.grad, expected_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss, F.cross_entropy(layer(x), target, reduction=reduction))
    with pytest.raises(ValueError, match="contiguous float32 or float64"):
        fst.cross_entropy(torch.randn(2, 3, 4), torch.zeros(2, 4).long(), inplace_backward=True)


def test_the_benchmarks_systems():
    """bench/compare.py's "Through PyTorch" systems: fastsce.torch and F.cross_entropy give
    the same step; the autograd floor a zero loss and a gradient of the logits' shape."""
    from fastsce import _speed

    logits, target = _speed.problem(64, 100, np.float64)
    systems = _speed.TORCH_ENTRY_SYSTEMS
    loss, grad = systems["fastsce"](logits, target)()
    expected_loss, expected_grad = systems["PyTorch"](logits, target)()
    assert_close(loss, expected_loss, RTOL)
    assert_close(
        grad.numpy(), expected_grad.numpy(), RTOL, magnitude=grad_magnitude(logits, target)
    )
    floor_loss, floor_grad = systems["autograd floor"](logits, target)()
    assert floor_loss == 0.0
    assert floor_grad.shape == logits.shape and floor_grad.dtype == torch.float64


# ---------------------------------------------------------------------------
# fastsce.torch.linear_cross_entropy against F.linear_cross_entropy

LINEAR_OPTIONS = {
    "plain": {},
    "weight_smoothing": {"weight": "random", "label_smoothing": 0.2},
    "ignore_in_range": {"ignore_index": 3},
}


def linear_case(options, soft, bias, shape=(18, 6, 40)):
    """(x (..., H), W (V, H), b or None, target, options) in float64."""
    *leading, n_features, n_classes = shape
    generator = torch.Generator().manual_seed(len(options) + 2 * soft + 4 * bias)
    x = torch.randn(*leading, n_features, dtype=torch.float64, generator=generator)
    w = torch.randn(n_classes, n_features, dtype=torch.float64, generator=generator)
    b = torch.randn(n_classes, dtype=torch.float64, generator=generator) if bias else None
    if soft:
        target = torch.softmax(torch.randn(*leading, n_classes, generator=generator), -1)
        target = target.double()
    else:
        target = torch.randint(0, n_classes, tuple(leading), generator=generator)
    options = dict(options)
    if options.get("weight") == "random":
        options["weight"] = torch.rand(n_classes, dtype=torch.float64, generator=generator) + 0.5
    if soft:
        options.pop("ignore_index", None)  # PyTorch refuses it with probabilities
    return x, w, b, target, options


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("name", list(LINEAR_OPTIONS))
def test_linear_entry_point_matches_pytorch(name, soft, bias, reduction):
    x, w, b, target, options = linear_case(LINEAR_OPTIONS[name], soft, bias)
    ours = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    theirs = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    loss, expected = (
        function(
            *tensors[:2],
            target,
            linear_bias=tensors[2] if bias else None,
            reduction=reduction,
            **options,
            **extra,
        )
        for function, tensors, extra in [
            (fst.linear_cross_entropy, ours, {"memory_budget": 40 * 8 * 5}),
            (F.linear_cross_entropy, theirs, {}),
        ]
    )
    assert loss.shape == expected.shape and loss.dtype == expected.dtype
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    # "none" back-propagates a gradient equal on every row (the mean of the losses)
    (loss.mean() if reduction == "none" else 2.5 * loss).backward()
    (expected.mean() if reduction == "none" else 2.5 * expected).backward()
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-10, atol=1e-12)


def test_linear_entry_point_refuses_what_it_cannot_do():
    x, w, _, target, _ = linear_case({}, False, True)
    x.requires_grad_()
    with pytest.raises(ValueError, match="`memory_budget`"):
        fst.linear_cross_entropy(x, w, target, options=torch.nn.LinearCrossEntropyOptions())
    loss = fst.linear_cross_entropy(x, w, target, reduction="none")
    with pytest.raises(RuntimeError, match="equal on every row"):
        (loss * torch.rand(loss.shape, dtype=torch.float64)).sum().backward()
    with pytest.raises(ValueError, match=r"`linear_weight` is on meta"):
        fst.linear_cross_entropy(x, w.to("meta"), target)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True])
def test_linear_half_precision_input_is_read_as_it_is(dtype, soft):
    """16-bit input (float32 weight) goes to fastsce without a float32 copy: the loss and
    the gradients are those of the float32 copy's computation, bit for bit."""
    if dtype == torch.bfloat16:
        pytest.importorskip("ml_dtypes")
    x, w, b, target, _ = linear_case({}, soft, True)
    half = x.to(dtype).requires_grad_()
    weights = [w.float().requires_grad_(), w.float().requires_grad_()]
    as_float = half.detach().float().requires_grad_()
    losses = [
        fst.linear_cross_entropy(inputs, weights[i], target, linear_bias=b.float())
        for i, inputs in enumerate((half, as_float))
    ]
    for loss in losses:
        loss.backward()
    assert losses[0].dtype == dtype and torch.equal(losses[0], losses[1].to(dtype))
    assert torch.equal(half.grad, as_float.grad.to(dtype))
    assert torch.equal(weights[0].grad, weights[1].grad)


def test_linear_entry_point_without_gradients_and_in_half_precision():
    x, w, b, target, _ = linear_case({}, False, True)
    with torch.no_grad():
        loss = fst.linear_cross_entropy(x.requires_grad_(), w, target, linear_bias=b)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, F.linear_cross_entropy(x, w, target, linear_bias=b))
    half = x.detach().half().requires_grad_()
    loss = fst.linear_cross_entropy(half, w.float(), target)
    loss.backward()
    assert loss.dtype == torch.float16 and half.grad.dtype == torch.float16
