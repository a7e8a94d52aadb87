"""Shared helpers for the fastsce test suite (imported by the test modules, which never
import each other; pytest fixtures are in conftest.py).

* ``make_logits`` / ``in_layout`` build the same values in every memory layout
  the public functions must accept (C and F order, strided views, negative
  strides, read-only, byte-swapped, nested lists).
* ``oracle`` runs ``fastsce.reference`` on float64 copies of the inputs: the
  float64 oracle every result is compared with.
* ``assert_close`` compares a result with the oracle at the tolerance of the
  result's dtype (``RTOL`` for arrays, ``LOSS_RTOL`` for losses; README "Accuracy").

Tolerances are relative.  Where a value is a difference of larger terms (a
gradient s_j - y_j, the Jacobian-vector product s (g - g.s), the log-sum-exp
m + log(sum)), rounding errors scale with the terms, not with their difference,
so those comparisons pass ``magnitude=`` (the sum of the terms' absolute
values, computed in float64 from the oracle) instead of |expected|: the error
bound is still rtol times a quantity the test derives.
Absolute allowances are used only where written down: np.finfo(dtype).tiny where
the kernels' exp flushes subnormal probabilities to 0 (documented behaviour), the
finite-difference error bound in test_gradients.py, and LOG_SUM_ATOL for the
term log(sum_j exp(x_j - m)): that sum is >= 1 and accumulated in float64 whatever
the input dtype, so its log is known to an *absolute* error equal to the sum's
relative rounding error (the oracle computes it the same way).  A log-softmax,
log-sum-exp or loss near 0 (a confident row: loss 1e-4) is therefore only defined to
~1e-15 absolute by either implementation; LOG_SUM_ATOL = 1e-12 is the float64
tolerance applied to that term (times the row's target mass for the loss).
"""

import os
import pathlib
import subprocess
import sys
import zlib

import numpy as np

import fastsce
from fastsce import reference

INF = np.inf
#: this folder: subprocesses import _helpers (and the test modules) from it
TESTS_DIR = pathlib.Path(__file__).resolve().parent
DTYPES = [np.float32, np.float64]
#: input dtype -> the dtype fastsce computes in and returns (float16 in float32, integers
#: and wider floats in float64)
COMPUTE_DTYPES = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
    np.dtype(np.longdouble): np.dtype(np.float64),
    np.dtype(np.int8): np.dtype(np.float64),
    np.dtype(np.int32): np.dtype(np.float64),
    np.dtype(np.int64): np.dtype(np.float64),
    np.dtype(np.uint8): np.dtype(np.float64),
    np.dtype(np.uint16): np.dtype(np.float64),
}

#: relative tolerance for arrays, by result dtype (float64 1e-12, float32 1e-5)
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
#: relative tolerance for losses against the float64 oracle (float64 1e-12, float32 1e-6)
LOSS_RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

#: absolute allowance for a log(sum) term, see the module docstring
LOG_SUM_ATOL = 1e-12

#: class counts from one to a vocabulary; 4097 and 50257 leave a tail after any vector width
CLASS_COUNTS = [1, 2, 3, 10, 1000, 4097, 50257]

#: memory layouts of the same values (see ``in_layout``)
LAYOUTS = [
    "C",
    "F",
    "strided_cols",
    "strided_rows",
    "negative_strides",
    "readonly",
    "byteswapped",
    "list",
]


def shapes_for(n_classes):
    """(C,), (N, C), (A, B, C) with few rows when C is large (keeps the suite fast)."""
    n = 6 if n_classes <= 1000 else 2
    return [(n_classes,), (n, n_classes), (2, n - 1, n_classes)]


def rng_for(*key):
    """A generator seeded from the test's parameters: reproducible, different per case."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def in_layout(values, layout):
    """`values` (an ndarray) re-laid out in memory; same shape, dtype and numbers.

    C: C-contiguous copy; F: Fortran order; strided_cols: every other column of
    an array twice as wide; strided_rows: every other row (second-to-last axis)
    of an array twice as tall; negative_strides: the class axis (1-D) or the
    row axis walked backwards; readonly: a non-writeable C array; byteswapped:
    non-native byte order; list: nested Python lists (float64 when converted).
    """
    values = np.asarray(values)
    if values.ndim == 0:  # a scalar target of 1-D logits has no layout
        return values.item() if layout == "list" else values.copy()
    if layout == "C":
        return np.ascontiguousarray(values).copy()
    if layout == "F":
        return np.asfortranarray(values).copy()
    if layout == "strided_cols" or (layout == "strided_rows" and values.ndim < 2):
        wide = np.full(values.shape[:-1] + (2 * values.shape[-1],), _poison(values.dtype))
        wide[..., ::2] = values
        return wide[..., ::2]
    if layout == "strided_rows":
        tall = np.full(
            values.shape[:-2] + (2 * values.shape[-2], values.shape[-1]), _poison(values.dtype)
        )
        tall[..., ::2, :] = values
        return tall[..., ::2, :]
    if layout == "negative_strides":
        axis = -1 if values.ndim < 2 else -2
        backwards = np.ascontiguousarray(np.flip(values, axis))
        return np.flip(backwards, axis)
    if layout == "readonly":
        array = np.ascontiguousarray(values).copy()
        array.flags.writeable = False
        return array
    if layout == "byteswapped":
        return values.astype(values.dtype.newbyteorder())
    if layout == "list":
        return values.tolist()
    raise ValueError(f"unknown layout {layout!r}")


def _poison(dtype):
    """Filler for the elements a strided view skips: NaN, or an out-of-range class index."""
    return np.array(np.nan if dtype.kind == "f" else 127, dtype)


def make_logits(shape, dtype, layout="C", *, rng=None, scale=2.0):
    """Random logits (normal, standard deviation `scale`) of `shape` and `dtype` in `layout`."""
    rng = rng if rng is not None else rng_for("logits", shape, np.dtype(dtype).name, layout)
    values = (scale * rng.standard_normal(shape)).astype(dtype)
    return in_layout(values, layout)


def make_soft_target(shape, dtype, rng):
    """Random probability rows (Dirichlet-like, some exact zeros) of `shape`."""
    raw = rng.exponential(size=shape)
    raw[rng.random(shape) < 0.2] = 0.0
    raw[..., 0] += 1e-3  # no all-zero row
    return (raw / raw.sum(axis=-1, keepdims=True)).astype(dtype)


def make_hard_target(shape, n_classes, rng, *, ignore_index=None, ignore_fraction=0.3):
    """Random class indices of `shape`; about `ignore_fraction` of them ignore_index."""
    target = rng.integers(0, n_classes, size=shape)
    if ignore_index is not None:
        target = np.where(rng.random(shape) < ignore_fraction, ignore_index, target)
    return np.asarray(target, np.int64)


def compute_dtype(value):
    """The dtype fastsce computes in for `value` (float16 -> float32, others -> float64)."""
    dtype = np.asarray(value).dtype
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def f64(value):
    """A float64 copy (native byte order, C order) of an array-like."""
    return np.array(value, dtype=np.float64, order="C")


def oracle(name, *arrays, **options):
    """fastsce.reference.<name> on float64 copies of `arrays` (the float64 oracle).

    Float keyword arrays (weight) are converted too; integer class-index
    targets are passed through as int64.
    """
    converted = []
    for array in arrays:
        array = np.asarray(array)
        converted.append(array.astype(np.int64) if array.dtype.kind in "iu" else f64(array))
    if options.get("weight") is not None:
        options["weight"] = f64(options["weight"])
    with np.errstate(invalid="ignore", divide="ignore"):  # -inf - -inf in NaN rows
        return getattr(reference, name)(*converted, **options)


def assert_close(actual, expected, rtol, *, magnitude=None, atol=0.0, err_msg=""):
    """|actual - expected| <= rtol * magnitude + atol elementwise, magnitude = |expected|
    by default; NaN and infinities must match exactly (position and sign)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), (
        f"NaN positions differ {err_msg}: actual {actual[nan_a != nan_e][:5]}, expected "
        f"{expected[nan_a != nan_e][:5]} at {np.argwhere(nan_a != nan_e)[:5].tolist()}"
    )
    inf_a, inf_e = np.isinf(actual), np.isinf(expected)
    assert np.array_equal(inf_a, inf_e) and np.array_equal(actual[inf_a], expected[inf_e]), (
        f"infinities differ {err_msg}"
    )
    finite = np.isfinite(expected)
    bound_of = np.abs(expected) if magnitude is None else np.asarray(magnitude, np.float64)
    bound = rtol * np.broadcast_to(bound_of, expected.shape) + atol
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf (checked above)
        error = np.abs(actual - expected)
    bad = finite & ~(error <= bound)
    if bad.any():
        where = tuple(np.argwhere(bad)[np.argmax((error - bound)[bad])])
        raise AssertionError(
            f"{int(bad.sum())} of {expected.size} values out of tolerance {err_msg}; worst at "
            f"{where}: actual {actual[where]!r}, expected {expected[where]!r}, "
            f"error {error[where]:.3e} > bound {bound[where]:.3e} (rtol {rtol})"
        )


def target_distribution(
    logits_shape, target, *, weight=None, ignore_index=-100, label_smoothing=0.0
):
    """Dense PyTorch target b (logits' shape, float64) and per-row 'mean' divisor weights.

    Hard target t: b = w * ((1 - eps) onehot(t) + eps / C), rows with
    t == ignore_index are all zero; soft target y: b = w * ((1 - eps) y + eps / C).
    Returns (b, row_weight): row_weight is w_t for kept hard rows, 0 for ignored
    rows and 1 for soft rows; the 'mean' divisor is row_weight.sum().
    """
    n_classes = logits_shape[-1]
    target = np.asarray(target)
    w = np.ones(n_classes) if weight is None else f64(weight)
    if target.dtype.kind == "f":
        b = (1.0 - label_smoothing) * f64(target) + label_smoothing / n_classes
        return b * w, np.ones(logits_shape[:-1])
    kept = target != ignore_index
    index = np.where(kept, target, 0).astype(np.int64)
    onehot = np.zeros(logits_shape)
    np.put_along_axis(onehot, index[..., None], 1.0, axis=-1)
    b = ((1.0 - label_smoothing) * onehot + label_smoothing / n_classes) * w * kept[..., None]
    return b, np.where(kept, w[index], 0.0)


def grad_magnitude(logits, target, reduction="mean", **options):
    """Sum of |terms| of each gradient element, |A s_j| + |b_j| (scaled like the gradient).

    grad_j = scale (A s_j - b_j), A = sum_j b_j: rounding errors are relative
    to the two terms, so this is the quantity the gradient's rtol applies to.
    """
    logits = f64(logits)
    b, row_weight = target_distribution(logits.shape, target, **options)
    s = oracle("softmax", logits)
    mass = b.sum(axis=-1, keepdims=True)
    magnitude = np.abs(mass * np.where(np.isnan(s), 0.0, s)) + np.abs(b)
    if reduction == "mean" and row_weight.sum() != 0:
        magnitude = magnitude / row_weight.sum()
    return magnitude


def backward_magnitude(grad_s, s):
    """|s_j g_j| + |s_j (g . s)|: the terms of the Jacobian-vector product s (g - g.s)."""
    grad_s, s = f64(grad_s), f64(s)
    dot = np.sum(grad_s * s, axis=-1, keepdims=True)
    return np.abs(s * grad_s) + np.abs(s * dot)


def logsumexp_magnitude(x, axis=-1, keepdims=False, temperature=1.0):
    """|m| + |lse - m| with m the max of x / T: the two terms of m + log sum exp(x/T - m)
    (compare with atol=LOG_SUM_ATOL for the log term's own rounding)."""
    z = f64(x) / temperature
    m = np.max(z, axis=axis, keepdims=True)
    lse = oracle("logsumexp", z, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(m) + np.abs(lse - m)
    return magnitude if keepdims else np.squeeze(magnitude, axis=axis)


def loss_atol(logits, target, reduction="mean", **options):
    """LOG_SUM_ATOL times each row's target mass A_i = sum_j b_ij (the weight of the
    row's log-sum term in its loss), reduced like the loss."""
    b, row_weight = target_distribution(np.shape(logits), target, **options)
    per_row = LOG_SUM_ATOL * np.abs(b.sum(axis=-1))
    if reduction == "none":
        return per_row
    total = np.sum(per_row)
    if reduction == "mean":
        return total / row_weight.sum() if row_weight.sum() != 0 else np.nan
    return total


def assert_loss_and_grad_close(
    losses, grad, logits, target, reduction, dtype, options, grad_atol=0.0
):
    """fastsce's losses (name -> the loss of one call) and gradient on `logits` against
    the float64 oracle's, at the tolerances of `dtype`: the loss to LOSS_RTOL plus
    loss_atol, the gradient to RTOL relative to grad_magnitude (plus `grad_atol`)."""
    expected_loss, expected_grad = oracle(
        "cross_entropy_with_grad", logits, target, reduction=reduction, **options
    )
    atol = loss_atol(logits, target, reduction, **options)
    for name, loss in losses.items():
        assert_close(loss, expected_loss, LOSS_RTOL[dtype], atol=atol, err_msg=f"({name})")
    assert_close(
        grad,
        expected_grad,
        RTOL[dtype],
        err_msg="(grad)",
        magnitude=grad_magnitude(logits, target, reduction, **options),
        atol=grad_atol,
    )


def assert_close_to_oracle(loss, grad, lse, expected, bounds, dtype, what=""):
    """A loss, gradient and log-sum-exp of z (any of them None: not compared) against the
    oracle's `expected` (loss, grad, lse), at the tolerances of `dtype` with `bounds`,
    option_bounds' (loss_atol, grad_magnitude, lse_magnitude)."""
    expected_loss, expected_grad, expected_lse = expected
    loss_atol, grad_magnitude, lse_magnitude = bounds
    if loss is not None:
        assert_close(loss, expected_loss, LOSS_RTOL[dtype], atol=loss_atol, err_msg=f"(loss{what})")
    if grad is not None:
        assert grad.dtype == dtype
        assert_close(
            grad, expected_grad, RTOL[dtype], magnitude=grad_magnitude, err_msg=f"(grad{what})"
        )
    if lse is not None:
        assert_close(
            lse,
            expected_lse,
            RTOL[dtype],
            magnitude=lse_magnitude,
            atol=LOG_SUM_ATOL,
            err_msg=f"(lse{what})",
        )


def snapshot(*values):
    """Copies of every ndarray among `values` (None for the rest), for ``assert_unchanged``."""
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else None for v in values]


def assert_unchanged(values, copies):
    """Every ndarray in `values` still equals its copy bit for bit (NaN == NaN)."""
    for value, copy in zip(values, copies):
        if copy is not None:
            assert value.dtype == copy.dtype
            equal_nan = value.dtype.kind in "fc"  # NaN == NaN; other kinds have no NaN
            assert np.array_equal(value, copy, equal_nan=equal_nan), "an input or out= changed"


# ---------------------------------------------------------------------------
# central finite differences (float64)

#: step of the central difference
H = 1e-5
#: bound on the difference quotient's own error: truncation h^2 |L'''| / 6 and rounding
#: eps |L| / h are both < 1e-9 for the |L|, |L'''| ~ 1-10 of these tests
FD_RTOL, FD_ATOL = 1e-6, 1e-7


def central_difference(func, x):
    """Gradient of scalar func at x (float64) by central differences."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = H
        grad[index] = (func(x + step) - func(x - step)) / (2 * H)
    return grad


# ---------------------------------------------------------------------------
# the loss options in combination (test_loss_options.py, test_torch.py)

REDUCTIONS = ["mean", "sum", "none"]

#: PyTorch-semantics options; "random" weights are drawn per case in [0.5, 2]
BASE_OPTIONS = {
    "plain": {},
    "weight": {"weight": "random"},
    "smoothing": {"label_smoothing": 0.2},
    "weight_smoothing": {"weight": "random", "label_smoothing": 0.3},
    "ignore_in_range": {"ignore_index": 2},
    "everything": {"weight": "random", "label_smoothing": 0.15, "ignore_index": -100},
}
#: ignore_index does not apply to probability targets: those sets are hard-only
SOFT_BASES = ["plain", "weight", "smoothing", "weight_smoothing"]

#: the options beyond PyTorch's (z = x / T, or c tanh(x / c) / T; lambda lse^2 per kept row)
TRANSFORMS = {
    "none": {},
    "cold": {"temperature": 0.6},
    "hot": {"temperature": 2.5},
    "softcap": {"softcap": 4.0},
    "softcap_cold": {"softcap": 2.0, "temperature": 0.7},
    "z_loss": {"z_loss": 1e-2},
    "all": {"temperature": 0.8, "softcap": 3.0, "z_loss": 0.05},
}

CASES = [("hard", base) for base in BASE_OPTIONS] + [("soft", base) for base in SOFT_BASES]
CASE_IDS = [f"{kind}-{base}" for kind, base in CASES]


def transformed(x, temperature=1.0, softcap=None):
    """(z, dz/dx) in float64: z = x / T, or softcap tanh(x / softcap) / T with -inf kept."""
    x = f64(x)
    if softcap is None:
        return x / temperature, np.full(x.shape, 1.0 / temperature)
    with np.errstate(invalid="ignore"):  # NaN logits stay NaN
        th = np.tanh(x / softcap)
    masked = x == -INF
    z = np.where(masked, -INF, softcap * th / temperature)
    return z, np.where(masked, 0.0, (1.0 - th**2) / temperature)


def kept_rows(target, logits_shape, ignore_index=-100):
    """Rows whose loss counts: all rows for soft targets, target != ignore_index otherwise."""
    target = np.asarray(target)
    if target.dtype.kind == "f":
        return np.ones(logits_shape[:-1], bool)
    return target != ignore_index


def option_bounds(logits, target, reduction, options, dtype):
    """(loss_atol, grad_magnitude, lse_magnitude) for comparisons with the float64 oracle.

    See the module docstring: grad_magnitude is scale (|A + 2 lambda lse| s + |b|) |dz/dx|,
    loss_atol is LOG_SUM_ATOL (A + 2 lambda |lse|) (+ eps sum_j |dL/dz_j| |z_j| when z is
    rounded), both per row and reduced like the loss; lse_magnitude is |m| + |lse - m|
    (+ sum_j s_j |z_j| when z is rounded) for every row.
    """
    shape = np.shape(logits)
    temperature = options.get("temperature", 1.0)
    softcap = options.get("softcap")
    z_loss = options.get("z_loss", 0.0)
    ignore_index = options.get("ignore_index", -100)
    z, dz_dx = transformed(logits, temperature, softcap)
    b, row_weight = target_distribution(
        shape,
        target,
        weight=options.get("weight"),
        ignore_index=ignore_index,
        label_smoothing=options.get("label_smoothing", 0.0),
    )
    kept = kept_rows(target, shape, ignore_index)[..., None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lse = oracle("logsumexp", z, keepdims=True)
        m = np.max(z, axis=-1, keepdims=True)
        s = np.exp(z - lse)
        log_term = np.abs(lse - m)
    s = np.where(np.isfinite(s), s, 0.0)  # NaN rows: compared by NaN position only
    z_finite = np.where(np.isfinite(z), np.abs(z), 0.0)  # s_j = b_j = 0 where z_j = -inf
    rounded = temperature != 1.0 or softcap is not None
    eps = np.finfo(dtype).eps

    lse_magnitude = np.abs(m) + log_term
    if rounded:
        lse_magnitude = lse_magnitude + np.sum(s * z_finite, axis=-1, keepdims=True)

    lse_kept = np.where(kept & np.isfinite(lse), lse, 0.0)
    mass = b.sum(axis=-1, keepdims=True)
    coefficient = mass + 2.0 * z_loss * lse_kept  # grad_z = coefficient s - b
    divisor = row_weight.sum() if reduction == "mean" else 1.0
    grad_magnitude = np.where(
        kept, (np.abs(coefficient) * s + np.abs(b)) * np.abs(dz_dx) / divisor, 0.0
    )

    row_atol = LOG_SUM_ATOL * (mass + 2.0 * z_loss * np.abs(lse_kept))
    if rounded:
        grad_z = coefficient * s - b
        row_atol = row_atol + eps * np.sum(np.abs(grad_z) * z_finite, axis=-1, keepdims=True)
    row_atol = np.where(kept, row_atol, 0.0)[..., 0]
    if reduction == "none":
        loss_atol = row_atol
    else:
        loss_atol = np.sum(row_atol) / divisor
    return loss_atol, grad_magnitude, lse_magnitude[..., 0]


def make_case(kind, base, transform, masked, dtype, shape=(10, 7), tag="options", options=None):
    """(logits, target, options) for one combination; see the comments for the rows.

    masked (at least 5 rows): rows 1 and 3 have two -inf (masked) classes, never the
    target (hard) or with probability 0 there (soft); hard targets also get row 0
    ignored with a NaN logit and row 4 ignored with all logits -inf.  Without masking,
    option sets with an ignore_index ignore rows 0 and 4 when there are that many
    (a single row is never ignored: 'mean' would be 0 / 0).  `options` replaces
    BASE_OPTIONS[base] when given.
    """
    rng = rng_for(tag, kind, base, transform, masked, np.dtype(dtype).name, shape)
    options = {**(BASE_OPTIONS[base] if options is None else options), **TRANSFORMS[transform]}
    n_classes = shape[-1]
    if "weight" in options:
        options["weight"] = rng.uniform(0.5, 2.0, n_classes)
    logits = 2.0 * rng.standard_normal(shape)
    rows = logits.reshape(-1, n_classes)
    if kind == "soft":
        target = make_soft_target(shape, np.float64, rng)
        if masked:
            target_rows = target.reshape(-1, n_classes)
            for i in (1, 3):
                classes = rng.choice(np.arange(1, n_classes), 2, replace=False)
                rows[i, classes] = -INF
                target_rows[i, classes] = 0.0  # class 0 always has mass (make_soft_target)
                target_rows[i] /= target_rows[i].sum()
        return logits.astype(dtype), target.astype(dtype), options

    target = np.asarray(rng.integers(0, n_classes, shape[:-1]))
    ignore_index = options.get("ignore_index", -100)
    flat = target.reshape(-1)
    if masked:
        for i in (1, 3):
            others = [j for j in range(n_classes) if j not in (flat[i], ignore_index)]
            rows[i, rng.choice(others, 2, replace=False)] = -INF
        rows[0, 1] = np.nan
        rows[4] = -INF
    if (masked or "ignore_index" in options) and len(flat) > 1:
        flat[[i for i in (0, 4) if i < len(flat)]] = ignore_index
    return logits.astype(dtype), target, options


# ---------------------------------------------------------------------------
# the other vector paths, in subprocesses (FASTSCE_SIMD caps the path at import)


def run_with_simd(value, script):
    """Run `script` in a fresh interpreter with FASTSCE_SIMD=value (None: unset), this
    folder importable; returns the CompletedProcess."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(TESTS_DIR)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    )
    if value is None:
        env.pop("FASTSCE_SIMD", None)
    else:
        env["FASTSCE_SIMD"] = value
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


def imports_after_import_fastsce(module):
    """Whether `module` is in sys.modules after `import fastsce` and a call, in a fresh
    interpreter (the optional frameworks must be imported only on request)."""
    script = (
        "import sys, fastsce; fastsce.cross_entropy([[1.0, 2.0]], [0]); "
        f"print({module!r} in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() in ("True", "False"), done.stderr
    return done.stdout.strip() == "True"


# ---------------------------------------------------------------------------
# calling a public function, or CrossEntropyLoss, by name (the error matrix, the fuzzer)

#: options CrossEntropyLoss takes in its constructor (the rest go to the call)
CONSTRUCTOR_OPTIONS = frozenset(
    ["weight", "ignore_index", "reduction", "label_smoothing", "temperature", "softcap", "z_loss"]
)


def call_by_name(function, args, kwargs):
    """fastsce.<function>(*args, **kwargs); "CrossEntropyLoss" or
    "CrossEntropyLoss.loss_and_grad" build the loss object from the options in kwargs,
    then call it (or its loss_and_grad) with the rest."""
    if not function.startswith("CrossEntropyLoss"):
        return getattr(fastsce, function)(*args, **kwargs)
    options = {k: v for k, v in kwargs.items() if k in CONSTRUCTOR_OPTIONS}
    rest = {k: v for k, v in kwargs.items() if k not in CONSTRUCTOR_OPTIONS}
    criterion = fastsce.CrossEntropyLoss(**options)
    method = criterion.loss_and_grad if function.endswith("loss_and_grad") else criterion
    return method(*args, **rest)


# ---------------------------------------------------------------------------
# bad option values (the error tests)

#: (bad value, exception) for an option that must be a positive, finite real
NOT_POSITIVE_FINITE = [
    (0.0, ValueError),
    (-1.0, ValueError),
    (np.nan, ValueError),
    (np.inf, ValueError),
    ("1", TypeError),
    (True, TypeError),
    (1j, TypeError),
]
#: the options beyond PyTorch's: {name: [(bad value, exception)]}
BAD_EXTRA_OPTIONS = {
    "temperature": [*NOT_POSITIVE_FINITE, (None, TypeError)],
    "softcap": NOT_POSITIVE_FINITE,  # None is valid: no softcap
    "z_loss": [
        (-1e-3, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        ("0", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
}


def load_script(path):
    """The script at `path` (an example or a benchmark), imported as a module (its main()
    not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{pathlib.Path(path).stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
