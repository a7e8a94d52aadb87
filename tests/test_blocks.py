"""The block kernels (rows cut along the class axis) against ``fastsce.reference``.

``block_partials`` on each block of columns, the partials merged by
``fastsce._sharded`` (combine, row_state), then ``block_gradient`` and
``block_softmax`` on each block: the loss, gradient, log-sum-exp and softmax family of
the whole rows, compared with the float64 oracle at the tolerances of the in-memory
tests (_helpers.option_bounds), for every option combination, float32 and float64,
masked classes and ignored or NaN rows, and cuts from one block to one column per
block.  Confident rows keep their digits across cuts (the closed forms of
test_confident_rows.py), and ``rows_loss`` is the in-memory kernel with a given
gradient scale.
"""

import itertools

import numpy as np
import pytest

import fastsce
from _helpers import (
    CASE_IDS,
    CASES,
    DTYPES,
    LOG_SUM_ATOL,
    REDUCTIONS,
    RTOL,
    assert_close,
    assert_close_to_oracle,
    logsumexp_magnitude,
    make_case,
    make_logits,
    option_bounds,
    oracle,
    rng_for,
    target_distribution,
)
from fastsce import _kernels as kernels
from fastsce import _sharded as sharded
from fastsce._loss import loss_options as validated_options


def cuts(n_classes):
    """Column edges: one block, two uneven ones, one column each."""
    return [
        [0, n_classes],
        [0, max(1, n_classes // 3), n_classes] if n_classes > 1 else [0, 1],
        list(range(n_classes + 1)),
    ]


def loss_options(**options):
    """The kernels' validated options (the defaults for those not given)."""
    return validated_options(loss_options, options)


def blocked(logits, target, reduction, options, edges, n_threads=1):
    """(loss, grad, lse) of the rows computed block by block with the block kernels."""
    x = np.asarray(logits)
    n_classes = x.shape[-1]
    rows = x.reshape(-1, n_classes)
    validated = loss_options(reduction=reduction, **options)
    soft = np.asarray(target).dtype.kind == "f"
    index = None if soft else np.asarray(target, np.int64).reshape(-1)
    soft_rows = np.asarray(target).reshape(-1, n_classes) if soft else None
    weight = validated.weight
    blocks = list(itertools.pairwise(edges))

    def block_of(a, b):
        """The kernels' ColumnBlock of columns [a, b)."""
        x_block, soft_block, weight_block = [
            None if v is None else np.ascontiguousarray(v[..., a:b])
            for v in (rows, soft_rows, weight)
        ]
        return sharded.ColumnBlock(x_block, index, soft_block, weight_block, a, n_classes)

    partials = []
    for a, b in blocks:
        partial = np.empty((len(rows), sharded.PARTIAL_FIELDS))
        kernels.block_partials(block_of(a, b), validated, partial, n_threads)
        partials.append(partial)
    unit = 1.0 if validated.softcap else validated.inv_temperature
    merged = sharded.combine(np.stack(partials, axis=1), 1, unit, n_classes)[:, 0]
    hard = not soft and (weight is None or validated.smoothing == 0.0)
    state = sharded.row_state(merged, index, validated, hard)

    _, row_weight = target_distribution(x.shape, target, **_pytorch_options(options))
    denominator = row_weight.sum()
    mean = reduction == "mean"
    scale = (1.0 / denominator if denominator else np.nan) if mean else 1.0
    grad = np.empty(rows.shape, x.dtype)
    for a, b in blocks:
        block = np.empty((len(rows), b - a), x.dtype)
        kernels.block_gradient(block_of(a, b), validated, scale, state, block, n_threads)
        grad[:, a:b] = block
    row_loss = state[:, sharded.S_LOSS]
    if reduction == "none":
        loss = row_loss.reshape(x.shape[:-1]).astype(x.dtype)
    elif mean:
        loss = row_loss.sum() / denominator if denominator else np.nan
    else:
        loss = row_loss.sum()
    return loss, grad.reshape(x.shape), state[:, sharded.S_LSE].reshape(x.shape[:-1])


def _pytorch_options(options):
    keys = ("weight", "ignore_index", "label_smoothing")
    return {key: options[key] for key in keys if key in options}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("transform", ["none", "cold", "softcap_cold", "all"])
@pytest.mark.parametrize(("kind", "base"), CASES, ids=CASE_IDS)
def test_blocks_match_the_oracle(kind, base, transform, masked, dtype):
    dtype = np.dtype(dtype)
    logits, target, options = make_case(kind, base, transform, masked, dtype, tag="blocks")
    for reduction in REDUCTIONS:
        z_lse = np.full(logits.shape[:-1], np.nan)
        expected = oracle(
            "cross_entropy_with_grad",
            logits,
            target,
            reduction=reduction,
            lse_out=z_lse,
            **options,
        )
        bounds = option_bounds(logits, target, reduction, options, dtype)
        for edges in cuts(logits.shape[-1]):
            loss, grad, lse = blocked(logits, target, reduction, options, edges)
            what = f" {reduction} {edges}"
            assert_close_to_oracle(loss, grad, lse, (*expected, z_lse), bounds, dtype, what)


@pytest.mark.parametrize("n_classes", [1, 2, 17, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blocks_equal_the_in_memory_call(n_classes, dtype):
    """Odd shapes: the same values as fastsce.cross_entropy_with_grad (float64: 1e-12)."""
    rng = rng_for("blocks-in-memory", n_classes, dtype)
    logits = make_logits((5, n_classes), dtype, rng=rng)
    target = rng.integers(0, n_classes, 5)
    options = {"label_smoothing": 0.1, "z_loss": 1e-3}
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction="none", **options
    )
    rtol = RTOL[np.dtype(dtype)]
    for edges in cuts(n_classes)[:2] + [[0, n_classes - 1, n_classes]] * (n_classes > 1):
        loss, grad, _ = blocked(logits, target, "none", options, edges)
        np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=0)
        magnitude = np.abs(expected_grad).max(axis=-1, keepdims=True)
        assert_close(grad, expected_grad, rtol, magnitude=magnitude, err_msg=f"{edges}")


def test_blocks_are_the_same_bits_on_two_threads():
    rng = rng_for("blocks-threads")
    logits = make_logits((300, 400), np.float64, rng=rng)
    target = rng.integers(0, 400, 300)
    options = {"weight": rng.uniform(0.5, 2, 400), "label_smoothing": 0.1, "softcap": 5.0}
    one = blocked(logits, target, "mean", options, [0, 150, 400], n_threads=1)
    two = blocked(logits, target, "mean", options, [0, 150, 400], n_threads=2)
    for a, b in zip(one, two):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("margin", [20.0, 37.0, 100.0, 700.0])
def test_confident_rows_keep_their_digits_across_blocks(margin):
    """A row [0, -a, -inf...] cut anywhere: loss log1p(e^-a), gradient -+e^-a / (1 + e^-a),
    log-sum-exp and log-softmax at the max to 1e-14 (the closed forms)."""
    d = np.exp(-margin)
    row = np.full(6, -np.inf)
    row[[1, 4]] = [0.0, -margin]
    x = np.array([row, row[::-1]])
    target = np.array([1, 4])
    p_other = d / (1.0 + d)
    for edges in [[0, 6], [0, 2, 6], [0, 3, 6], [0, 4, 5, 6], list(range(7))]:
        for options in [{}, {"weight": np.arange(1.0, 7.0)}, {"temperature": 1.0, "z_loss": 0.0}]:
            loss, grad, lse = blocked(x, target, "none", options, edges)
            w = options.get("weight", np.ones(6))[[1, 4]]
            np.testing.assert_allclose(loss, w * np.log1p(d), rtol=1e-14, atol=0)
            np.testing.assert_allclose(lse, np.log1p(d), rtol=1e-14, atol=0)
            np.testing.assert_allclose(grad[0, [1, 4]], w[0] * np.array([-p_other, p_other]), 1e-14)
            np.testing.assert_allclose(grad[1, [4, 1]], w[1] * np.array([-p_other, p_other]), 1e-14)
        state = state_of(x, edges)
        for log in (False, True):
            out = np.hstack(
                [softmax_block(x, state, a, b, 1.0, log) for a, b in itertools.pairwise(edges)]
            )
            expected = -np.log1p(d) if log else 1.0 / (1.0 + d)
            np.testing.assert_allclose(out[[0, 1], [1, 4]], expected, rtol=1e-14, atol=0)


def state_of(x, edges, inv_temperature=1.0):
    """The softmax family's row state of x cut at `edges`."""
    options = loss_options(temperature=1.0 / inv_temperature)
    n_classes = x.shape[-1]
    partials = []
    for a, b in itertools.pairwise(edges):
        partial = np.empty((len(x), sharded.PARTIAL_FIELDS))
        block = sharded.ColumnBlock(np.ascontiguousarray(x[:, a:b]), None, None, None, a, n_classes)
        kernels.block_partials(block, options, partial, 1)
        partials.append(partial)
    merged = sharded.combine(np.stack(partials, axis=1), 1, inv_temperature, n_classes)[:, 0]
    return sharded.row_state(merged, None, options, False)


def softmax_block(x, state, a, b, inv_temperature, log):
    out = np.empty((len(x), b - a), x.dtype)
    kernels.block_softmax(np.ascontiguousarray(x[:, a:b]), inv_temperature, log, state, out, 1)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_softmax_family_blocks_match_the_oracle(dtype, temperature):
    rng = rng_for("blocks-softmax", dtype, temperature)
    x = make_logits((6, 11), dtype, rng=rng)
    x[1, 3] = -np.inf
    x[2] = -np.inf
    x[3, 5] = np.nan
    x[4, 2] = np.inf
    inv_t = 1.0 / temperature
    rtol = RTOL[np.dtype(dtype)]
    expected_lse = oracle("logsumexp", x, temperature=temperature)
    for edges in cuts(11):
        state = state_of(x, edges, inv_t)
        assert_close(
            state[:, sharded.S_LSE],
            expected_lse,
            rtol,
            magnitude=logsumexp_magnitude(x, temperature=temperature),
            atol=LOG_SUM_ATOL,
            err_msg=f"(lse {edges})",
        )
        for log, name in [(False, "softmax"), (True, "log_softmax")]:
            out = np.hstack(
                [softmax_block(x, state, a, b, inv_t, log) for a, b in itertools.pairwise(edges)]
            )
            assert out.dtype == dtype
            expected = getattr(fastsce, name)(x, temperature=temperature)
            magnitude = np.abs(expected) + (1.0 if log else 0.0)
            assert_close(out, expected, rtol, magnitude=magnitude, err_msg=f"({name} {edges})")


@pytest.mark.parametrize("soft", [False, True])
def test_rows_loss_is_the_in_memory_kernel_with_a_given_scale(soft):
    rng = rng_for("rows-loss", soft)
    logits = make_logits((9, 30), np.float64, rng=rng)
    if soft:
        target = rng.dirichlet(np.ones(30), 9)
    else:
        target = rng.integers(0, 30, 9)
    options = {"label_smoothing": 0.2, "temperature": 0.9, "z_loss": 1e-2}
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(
        logits, target, reduction="sum", **options
    )
    row_loss = np.empty(9)
    grad = np.empty_like(logits)
    index = None if soft else target.astype(np.int64)
    kernels.rows_loss(
        logits, index, target if soft else None, loss_options(**options), 0.25, row_loss, grad, 1
    )
    np.testing.assert_array_equal(grad, expected_grad * 0.25)
    np.testing.assert_allclose(row_loss.sum(), expected_loss, rtol=1e-15)
    if not soft:
        with pytest.raises(ValueError, match="valid class indices"):
            kernels.rows_loss(logits, index + 30, None, loss_options(), 1.0, row_loss, None, 1)
