"""Rows cut into blocks of columns: the partials of the blocks combined into the row state.

A `ColumnBlock` is one block of columns of the rows as the block kernels read it.  The
kernel ``block_partials`` gives, per row and block of columns, PARTIAL_FIELDS float64
values (their meaning is at the top of _kernels_blocks.pxi): the block's max m_b, its
exps split as ONES (the max's own exp(0) = 1) and OTHERS (the sum of the others), and the
sums the loss needs.  `combine` merges the partials of consecutive blocks of the same rows
by max-rescaling; `row_state` turns the partials of whole rows into the state that
``block_gradient`` and ``block_softmax`` read, and the per-row loss.

Keeping the max's 1 apart from the other terms is what keeps a confident row exact: once
the row's max m is known, a block below it contributes all its terms to the others,
S'_b exp(m_b - m) with S_b = ONES + OTHERS, and the block holding m its OTHERS as summed
without the 1; so S' is never S - 1 and lse = m + log1p(S') keeps its digits when S < 1.5
(the rule of the in-memory kernel, fsce_formulas.h).  Every formula below is the in-memory
kernel's, written over arrays of rows; a fixed order of merging gives fixed bits.

Maxima and the target's value are in units u of the kernels: x values without a softcap
(z = x / T, so differences of z are differences of x times u = 1 / T), z values with one
(u = 1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.float64]

#: the fields of a partial (last axis), as _kernels_blocks.pxi writes them
P_MAX, P_ONES, P_OTHERS, P_COUNT, P_ZSUM, P_ZT, P_TMASS, P_MASS, P_GAP = range(9)
PARTIAL_FIELDS = 9
#: the fields of a row state: those block_gradient and block_softmax read, then the
#: row's loss and log-sum-exp
S_MAX, S_TOTAL, S_OTHER, S_ZLT, S_MASS, S_LOSS, S_LSE = range(7)
STATE_FIELDS = 7
#: below this S, lse = m + log1p(S') (FSCE_CONFIDENT_TOTAL)
CONFIDENT_TOTAL = 1.5


class ColumnBlock(NamedTuple):
    """Columns [col0, col0 + n) of rows of n_classes classes and their targets, as the
    block kernels (block_partials, block_gradient) read them.  A class index outside the
    block is not in it; no target at all (class_index and soft_target None) gives the
    log-sum-exp terms only."""

    x: npt.NDArray[Any]  # (n_rows, n) float32 or float64, with contiguous rows
    class_index: npt.NDArray[np.int64] | None  # (n_rows,) any values, or None
    soft_target: npt.NDArray[Any] | None  # (n_rows, n) of x's dtype, C-contiguous, or None
    weight: npt.NDArray[np.float64] | None  # (n,) the block's class weights, or None
    col0: int  # the block's first column in the row
    n_classes: int  # C, the row's length


def weighted(coefficient: Any, term: Any) -> Any:
    """coefficient * term, exactly 0 where the coefficient is 0 (fsce_weighted)."""
    return np.where(coefficient != 0, coefficient * term, 0.0)


def combine(partials: _Floats, axis: int, unit: float, n_classes: int) -> _Floats:
    """The partials along `axis` (consecutive blocks of the same rows) merged left to
    right into one (the axis kept, of length 1)."""
    blocks = np.moveaxis(partials, axis, 0)
    merged = blocks[0]
    with np.errstate(invalid="ignore", over="ignore"):
        for block in blocks[1:]:
            merged = _merge(merged, block, unit, n_classes)
    return np.expand_dims(merged, axis)


def _merge(a: _Floats, b: _Floats, unit: float, n_classes: int) -> _Floats:
    """Two partials of the same rows, a's columns before b's."""
    m = np.maximum(a[..., P_MAX], b[..., P_MAX])  # NaN wins
    merged = np.zeros_like(a)
    merged[..., P_MAX] = m
    for side in (a, b):
        at_max = side[..., P_MAX] == m
        # d = (m_b - m) u <= 0: the block's terms exp(z_j - m_b) times exp(d) are exp(z_j - m)
        d = np.where(at_max, 0.0, (side[..., P_MAX] - m) * unit)
        terms = side[..., P_ONES] + side[..., P_OTHERS]
        merged[..., P_ONES] += np.where(at_max, side[..., P_ONES], 0.0)
        merged[..., P_OTHERS] += np.where(at_max, side[..., P_OTHERS], terms * np.exp(d))
        # sum_j (z_j - m) / C and sum_j b_j (z_j - m), shifted from m_b to m
        merged[..., P_ZSUM] += side[..., P_ZSUM] + side[..., P_COUNT] / n_classes * d
        merged[..., P_GAP] += side[..., P_GAP] + weighted(side[..., P_MASS], d)
    for field in (P_COUNT, P_ZT, P_TMASS, P_MASS):
        merged[..., field] = a[..., field] + b[..., field]
    return merged


def row_state(
    partials: _Floats,
    index: npt.NDArray[np.integer[Any]] | None,
    options: Any,
    hard: bool,
) -> _Floats:
    """(..., STATE_FIELDS) from the merged partials (..., PARTIAL_FIELDS) of whole rows.

    index: the rows' class indices (None for soft targets or a log-sum-exp); options: the
    validated LossOptions; hard: class indices in closed form (no class weights with label
    smoothing), else a dense target distribution.  Per row (fsce_formulas.h):
        S = ONES + OTHERS (NaN for a row of -inf only, as exp(-inf - -inf) makes it),
        log S = log1p(S') when S < 1.5, else log S;  lse = m u + log S (m u when infinite)
        loss = w_t (1 - eps) ((m - z_t) u + log S) + eps (m - mean z + log S)   (hard)
             = A log S - sum_j b_j (z_j - m)                                     (dense)
               + lambda lse^2, and 0 for an ignored row.
    """
    unit = 1.0 if options.softcap else options.inv_temperature
    m = partials[..., P_MAX]
    others = partials[..., P_OTHERS]
    state = np.empty(m.shape + (STATE_FIELDS,))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = np.where(m == -np.inf, np.nan, partials[..., P_ONES] + others)
        confident = total < CONFIDENT_TOTAL
        log_total = np.where(confident, np.log1p(others), np.log(total))
        lse = np.where(np.isinf(m), m * unit, m * unit + log_total)
        if hard:
            mass = partials[..., P_TMASS]
            loss = weighted(mass, (m - partials[..., P_ZT]) * unit + log_total) + weighted(
                options.smoothing, -partials[..., P_ZSUM] + log_total
            )
        else:
            mass = partials[..., P_MASS]
            loss = mass * log_total - partials[..., P_GAP]
        loss = loss + weighted(options.z_loss, lse * lse)
        state[..., S_ZLT] = weighted(2.0 * options.z_loss, lse)
    if index is not None:
        loss = np.where(index == options.ignore_index, 0.0, loss)
    state[..., S_MAX] = m
    state[..., S_TOTAL] = total
    state[..., S_OTHER] = np.where(confident, others, -1.0)
    state[..., S_MASS] = mass
    state[..., S_LOSS] = loss
    state[..., S_LSE] = lse
    return state
