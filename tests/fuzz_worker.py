"""Fuzz worker: throws random garbage at every public fastsce function.

Run by tests/test_fuzz.py in a subprocess (a crash then shows up as a negative return
code instead of killing pytest), or by hand:

    python tests/fuzz_worker.py --seed 1 --cases 20000          # run, print a JSON summary
    python tests/fuzz_worker.py --seed 1 --describe 1234        # show case 1234 of seed 1

Each case is built from its own generator, seeded by (seed, case number), so any case can
be regenerated alone.  Before a call the worker writes "case <n>" to stderr (unbuffered),
so after a crash the last such line names the case.

A call must either raise one of the documented exceptions -- TypeError or ValueError
(numpy's AxisError, a ValueError, for a bad axis) whose message names an argument in
backquotes, or MemoryError for sizes that cannot be allocated -- having changed no input
and no out= buffer; or return a correct result: compared with fastsce.reference (float64
oracle, _helpers tolerances) when the inputs are moderate, and otherwise checked for the
invariants that hold for any input (shape, dtype, no NaN in a row that has no NaN, no +inf
and is not all -inf, probabilities in [0, 1] summing to 1, log-probabilities <= 0,
logsumexp >= max / T, losses >= 0 for non-negative weights and targets).  Exit status 0
when every case passed, 1 otherwise; the summary lists the first failures.
"""

import argparse
import json
import os
import sys
import traceback
import warnings
import zlib

import numpy as np

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import fastsce  # noqa: E402
from _helpers import (  # noqa: E402
    LOG_SUM_ATOL,
    LOSS_RTOL,
    RTOL,
    assert_close,
    backward_magnitude,
    call_by_name,
    grad_magnitude,
    logsumexp_magnitude,
    loss_atol,
    target_distribution,
)
from fastsce import reference  # noqa: E402

FUNCTIONS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "cross_entropy",
    "cross_entropy_with_grad",
    "CrossEntropyLoss",
    "CrossEntropyLoss.loss_and_grad",
    "softmax_jacobian",
    "softmax_backward",
    "log_softmax_backward",
]
LOSS_FUNCTIONS = FUNCTIONS[3:7]
ALLOWED_EXCEPTIONS = (TypeError, ValueError, MemoryError)


class Skip(Exception):
    """The function does not exist in this version of fastsce."""


# ---------------------------------------------------------------------------
# random garbage

NUMERIC_DTYPES = [
    "float32",
    "float64",
    "float16",
    "longdouble",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint32",
    "uint64",
    ">f8",
    ">f4",
    "<f8",
]
GARBAGE_DTYPES = [
    "bool",
    "complex64",
    "complex128",
    "object",
    "U3",
    "S2",
    "datetime64[s]",
    "timedelta64[ms]",
    "V8",
]


def pick(rng, options, weights=None):
    if weights is not None:
        weights = np.asarray(weights, float)
        weights = weights / weights.sum()
    return options[int(rng.choice(len(options), p=weights))]


def random_dtype(rng):
    if rng.random() < 0.08:
        return np.dtype(pick(rng, GARBAGE_DTYPES))
    return np.dtype(pick(rng, NUMERIC_DTYPES, [30, 30, 4, 2, 2, 1, 3, 4, 2, 2, 2, 3, 2, 2]))


def random_shape(rng):
    ndim = pick(rng, [0, 1, 2, 3, 4], [3, 20, 50, 20, 7])
    shape = [int(pick(rng, [0, 1, 2, 3, 4, 5, 6], [2, 10, 10, 10, 8, 5, 5])) for _ in range(ndim)]
    if ndim:
        shape[-1] = int(
            pick(
                rng,
                [0, 1, 2, 3, 5, 7, 8, 9, 16, 31, 33, 64, 100, 257, 1025],
                [2, 8, 8, 8, 8, 6, 6, 6, 5, 5, 5, 4, 3, 2, 1],
            )
        )
        if shape[-1] > 100:  # keep the cases small
            shape = [min(d, 2) for d in shape[:-1]] + [shape[-1]]
    return tuple(shape)


def random_values(rng, shape, dtype):
    """Values of `dtype` and `shape`: normal * scale with special values sprinkled in."""
    kind = dtype.kind
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if kind == "O":
        return np.array(rng.standard_normal(shape).tolist() if shape else 1.0, dtype=object)
    if kind in "US":
        return np.full(shape, "ab", dtype)
    if kind == "M":
        return np.full(shape, np.datetime64("2021-03-04", "s"))
    if kind == "m":
        return np.full(shape, np.timedelta64(5, "ms"))
    if kind == "V":
        return np.zeros(shape, dtype)
    if kind in "iu":
        info = np.iinfo(dtype)
        if rng.random() < 0.2:
            return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        return rng.integers(
            max(info.min, -50), min(info.max, 50), size=shape, endpoint=True
        ).astype(dtype)
    scale = pick(rng, [1e-3, 1.0, 3.0, 30.0, 1e3, 1e30, 1e300], [5, 30, 30, 15, 10, 5, 5])
    with np.errstate(over="ignore"):
        values = (scale * rng.standard_normal(shape)).astype(dtype)
    if values.size and rng.random() < 0.35:
        flat = values.reshape(-1)
        finfo = np.finfo(dtype)
        specials = [
            np.nan,
            np.inf,
            -np.inf,
            -0.0,
            0.0,
            finfo.max,
            -finfo.max,
            finfo.tiny,
            finfo.smallest_subnormal,
            -finfo.max / 2,
        ]
        for _ in range(int(rng.integers(1, 4))):
            flat[rng.integers(flat.size)] = pick(rng, specials)
        if values.ndim and rng.random() < 0.2:  # a whole masked row
            values.reshape(-1, values.shape[-1])[
                rng.integers(max(1, values.size // max(1, values.shape[-1])))
            ] = -np.inf
    return values


def relayout(rng, values):
    """The same values in a random memory layout (or as a Python object)."""
    return laid_out(rng, values)[1]


def laid_out(rng, values):
    """(values, x): x holds `values` in a random memory layout (or as a Python object);
    the broadcast layout repeats the first row, so it returns those values too."""
    if values.ndim == 0:
        return values, pick(
            rng, [values, values.item() if values.dtype.kind in "fiu" else values, values[()]]
        )
    return values, _laid_out(rng, values)


def _laid_out(rng, values):
    choice = pick(
        rng,
        ["C", "F", "strided", "negative", "readonly", "byteswap", "list", "unaligned", "broadcast"],
        [40, 10, 10, 8, 8, 6, 6, 6, 6],
    )
    if choice == "F":
        return np.asfortranarray(values)
    if choice == "strided":
        axis = int(rng.integers(values.ndim))
        shape = list(values.shape)
        shape[axis] *= 2
        wide = np.zeros(shape, values.dtype)
        index = [slice(None)] * values.ndim
        index[axis] = slice(None, None, 2)
        wide[tuple(index)] = values
        return wide[tuple(index)]
    if choice == "negative":
        return np.flip(np.flip(values, -1).copy(), -1)
    if choice == "readonly":
        values = values.copy()
        values.flags.writeable = False
        return values
    if choice == "byteswap" and values.dtype.kind in "fiu" and values.dtype.itemsize > 1:
        return values.astype(values.dtype.newbyteorder())
    if choice == "list" and values.dtype.kind in "fiub" and 0 < values.size < 5000:
        return values.tolist()
    if choice == "unaligned" and values.dtype.kind in "fiu" and values.dtype.itemsize > 1:
        raw = np.zeros(values.nbytes + 1, np.uint8)
        unaligned = raw[1:].view(values.dtype).reshape(values.shape)
        unaligned[...] = values
        return unaligned
    if choice == "broadcast" and values.ndim >= 2:
        values[...] = values[..., :1, :]  # the values a broadcast view shows
        return np.broadcast_to(values[..., :1, :], values.shape)
    return np.ascontiguousarray(values)


def compute_dtype(dtype):
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def random_logits(rng):
    dtype = random_dtype(rng)
    shape = random_shape(rng)
    if rng.random() < 0.01 and len(shape) >= 1 and dtype.kind == "f":
        # a huge virtual array (zero stride, no memory): results cannot be allocated
        row = np.zeros(max(1, shape[-1]), dtype)
        huge = np.lib.stride_tricks.as_strided(
            row, shape=(2**44, row.size), strides=(0, row.itemsize)
        )
        return huge, huge
    values = random_values(rng, shape, dtype)
    return laid_out(rng, values)


def random_temperature(rng):
    if rng.random() < 0.85:
        return pick(rng, [1.0, 1.0, 0.5, 2.0, float(rng.uniform(0.05, 20.0)), 1e-3, 1e3])
    return pick(
        rng,
        [
            0.0,
            -1.0,
            np.nan,
            np.inf,
            1e-300,
            1e300,
            "1",
            None,
            True,
            10**400,
            np.float32(0.5),
            np.array(2.0),
            1e-40,
        ],
    )


def random_axis(rng, ndim):
    if rng.random() < 0.9:
        return int(rng.integers(-ndim - 1, ndim + 1)) if ndim else -1
    return pick(rng, [1.5, "0", None, (0,), np.int64(0), np.uint8(0), True, 2**70, -(2**70)])


def random_out(rng, shape, dtype, x):
    """None mostly; otherwise a right or wrong out= buffer, or x itself (in place)."""
    r = rng.random()
    if r < 0.6:
        return None
    if r < 0.8:
        return np.full(shape, -777.0, dtype)
    if r < 0.85 and isinstance(x, np.ndarray):
        return x
    bad = pick(rng, ["dtype", "shape", "readonly", "fortran", "list", "overlap"])
    if bad == "dtype":
        return np.zeros(
            shape, pick(rng, [np.float32, np.float64, np.int64, np.float16, np.complex128])
        )
    if bad == "shape":
        return np.zeros(tuple(d + 1 for d in shape) or (1,), dtype)
    if bad == "readonly":
        out = np.zeros(shape, dtype)
        out.flags.writeable = False
        return out
    if bad == "fortran":
        return np.zeros(shape[::-1], dtype).T
    if bad == "list":
        return [0.0] * (shape[0] if shape else 1)
    if int(np.prod(shape)) > 1:
        return OVERLAP
    return np.zeros(shape, dtype)


OVERLAP = "overlap"


def overlapping(rng, values, dtype):
    """(x, out): x holds `values` in `dtype` (the compute dtype) and out, of the same
    shape, is a view of the same buffer a few elements further on."""
    size = values.size
    shift = int(rng.integers(1, size))
    buffer = np.zeros(size + shift, dtype)
    x = buffer[:size].reshape(values.shape)
    x[...] = values
    return x, buffer[shift : shift + size].reshape(values.shape)


def random_target(rng, shape, logits_dtype):
    n_classes = shape[-1] if shape else 1
    batch = shape[:-1]
    r = rng.random()
    if r < 0.6:  # class indices
        dtype = np.dtype(
            pick(rng, ["int64", "int32", "int8", "uint8", "uint16", "uint64", "int16", ">i8"])
        )
        info = np.iinfo(dtype)
        target = rng.integers(0, max(1, min(n_classes, info.max)), size=batch).astype(dtype)
        if target.size and rng.random() < 0.25:
            bad = pick(
                rng,
                [n_classes, -1, -100, info.max, info.min, 2**31, 2**32 + 1, 2**63 - 1, 2**64 - 100],
            )
            if info.min <= bad <= info.max:
                target.reshape(-1)[rng.integers(target.size)] = bad
        target = target.astype(dtype)
        if rng.random() < 0.05:
            target = rng.integers(0, max(1, n_classes), size=batch + (1,)).astype(dtype)
        return relayout(rng, np.asarray(target)) if rng.random() < 0.3 else target
    if r < 0.9:  # probabilities
        dtype = np.dtype(pick(rng, ["float32", "float64", "float16"]))
        raw = rng.exponential(size=shape)
        raw[rng.random(shape) < 0.3] = 0.0
        if rng.random() < 0.7 and raw.ndim:
            sums = raw.sum(axis=-1, keepdims=True)
            raw = np.divide(raw, sums, out=np.zeros_like(raw), where=sums > 0)
        if raw.size and rng.random() < 0.1:
            raw.reshape(-1)[rng.integers(raw.size)] = pick(rng, [np.nan, np.inf, -1.0, 1e30])
        target = raw.astype(dtype)
        if rng.random() < 0.05:
            target = target[..., :-1] if target.ndim else target
        return relayout(rng, target)
    return pick(
        rng,
        [
            None,
            "cat",
            np.ones(batch, bool),
            np.ones(batch, complex),
            1.5,
            [1.0, 2.0],
            np.zeros(batch, "datetime64[s]"),
            {"t": 1},
        ],
    )


def random_weight(rng, n_classes):
    r = rng.random()
    if r < 0.6:
        return None
    if r < 0.85:
        weight = rng.uniform(0.0, 3.0, n_classes)
        weight[rng.random(n_classes) < 0.15] = 0.0
        return relayout(rng, weight.astype(pick(rng, [np.float64, np.float32, np.float16])))
    return pick(
        rng,
        [
            np.ones(n_classes + 1),
            np.ones((1, n_classes)),
            1.0,
            np.full(n_classes, np.nan),
            np.full(n_classes, np.inf),
            np.ones(n_classes, complex),
            ["a"] * n_classes,
            np.ones(n_classes, int),
            -np.ones(n_classes),
        ],
    )


def random_options(rng, n_classes, function):
    options = {}
    if rng.random() < 0.5:
        options["weight"] = random_weight(rng, n_classes)
    if rng.random() < 0.4:
        options["ignore_index"] = pick(
            rng,
            [
                -100,
                0,
                n_classes - 1,
                n_classes,
                -1,
                2**40,
                1.5,
                None,
                "0",
                True,
                2**70,
                np.int8(-100),
                np.array([1]),
            ],
            [20, 5, 5, 5, 5, 3] + [1] * 7,
        )
    if rng.random() < 0.5:
        options["reduction"] = pick(
            rng, ["mean", "sum", "none", "avg", None, b"sum", "SUM"], [30, 30, 30, 2, 2, 2, 2]
        )
    if rng.random() < 0.4:
        options["label_smoothing"] = pick(
            rng,
            [0.0, 0.1, float(rng.uniform(0, 1)), 1.0, -0.1, 1.5, np.nan, "0.1", None],
            [10, 10, 10, 5, 1, 1, 1, 1, 1],
        )
    parameters = loss_parameters(function)
    if "temperature" in parameters and rng.random() < 0.15:
        options["temperature"] = random_temperature(rng)
    if "softcap" in parameters and rng.random() < 0.1:
        options["softcap"] = pick(
            rng, [None, 1.0, 30.0, 0.0, -1.0, np.inf, "1"], [5, 5, 5, 1, 1, 1, 1]
        )
    if "z_loss" in parameters and rng.random() < 0.1:
        options["z_loss"] = pick(rng, [0.0, 1e-4, 0.1, -1.0, np.nan], [5, 5, 5, 1, 1])
    return options


_PARAMETERS = {}


def loss_parameters(function):
    if function not in _PARAMETERS:
        import inspect

        if function.startswith("CrossEntropyLoss"):
            names = set(inspect.signature(fastsce.CrossEntropyLoss).parameters)
        else:
            names = set(inspect.signature(getattr(fastsce, function)).parameters)
        _PARAMETERS[function] = names
    return _PARAMETERS[function]


def make_case(seed, number):
    """(function, args, kwargs, info) of case `number` of `seed`; info keeps copies of the
    inputs' values (taken before the call, which may write into them) for the checks."""
    function, args, kwargs, info = _make_case(seed, number)
    for key, value in info.items():
        if isinstance(value, np.ndarray) and value.size <= 2**26:
            info[key] = value.copy()
    return function, args, kwargs, info


def _make_case(seed, number):
    rng = np.random.default_rng([zlib.crc32(b"fastsce-fuzz"), seed, number])
    available = [f for f in FUNCTIONS if hasattr(fastsce, f.split(".")[0])]
    function = pick(rng, available)
    values, x = random_logits(rng)
    shape = np.shape(values)
    dtype = values.dtype
    info = {"values": values}
    virtual = values.ndim and values.strides[0] == 0 and values.shape[0] > 2**30
    if virtual:  # huge zero-stride input: no out= or other array that would need memory
        info["other"] = values
        if function in LOSS_FUNCTIONS:
            target = np.lib.stride_tricks.as_strided(
                np.zeros(1, np.int64), shape=shape[:-1], strides=(0,) * (len(shape) - 1)
            )
            info["target"] = target
            return function, [x, target], {"reduction": pick(rng, ["mean", "sum", "none"])}, info
        if function in ("softmax_backward", "log_softmax_backward"):
            return function, [x, x], {}, info
        return function, [x], {}, info
    if function in ("softmax", "log_softmax"):
        kwargs = {}
        if rng.random() < 0.4:
            kwargs["axis"] = random_axis(rng, len(shape))
        if rng.random() < 0.3:
            kwargs["temperature"] = random_temperature(rng)
        if dtype.kind in "fiu":
            kwargs["out"] = random_out(rng, shape, compute_dtype(dtype), x)
            if kwargs["out"] is OVERLAP:
                x, kwargs["out"] = overlapping(rng, values, compute_dtype(dtype))
                info["values"] = x
        return function, [x], kwargs, info
    if function == "logsumexp":
        kwargs = {}
        if rng.random() < 0.4:
            kwargs["axis"] = random_axis(rng, len(shape))
        if rng.random() < 0.3:
            kwargs["keepdims"] = bool(rng.random() < 0.5)
        if rng.random() < 0.3:
            kwargs["temperature"] = random_temperature(rng)
        return function, [x], kwargs, info
    if function in LOSS_FUNCTIONS:
        target = random_target(rng, shape, dtype)
        info["target"] = target
        kwargs = random_options(rng, shape[-1] if shape else 1, function)
        if function.endswith(("with_grad", "loss_and_grad")):
            if dtype.kind in "fiu" and rng.random() < 0.4:
                kwargs["out"] = random_out(rng, shape, compute_dtype(dtype), x)
                if kwargs["out"] is OVERLAP:
                    x, kwargs["out"] = overlapping(rng, values, compute_dtype(dtype))
                    info["values"] = x
        parameters = loss_parameters(function) | (
            {"lse_out", "argmax_out"} if function.startswith("CrossEntropyLoss") else set()
        )
        if "lse_out" in parameters and rng.random() < 0.05:
            kwargs["lse_out"] = np.zeros(shape[:-1], pick(rng, [np.float64, np.float32]))
        if "argmax_out" in parameters and rng.random() < 0.05:
            kwargs["argmax_out"] = np.zeros(shape[:-1], pick(rng, [np.int64, np.int32]))
        return function, [x, target], kwargs, info
    if function == "softmax_jacobian":
        if len(shape) and shape[-1] > 64:
            values = values[..., :64]
            x = np.ascontiguousarray(values)
            info["values"] = values
        return function, [x], {}, info
    # the backward functions: a second array of (usually) the same shape
    other_dtype = random_dtype(rng) if rng.random() < 0.2 else dtype
    other_shape = shape if rng.random() < 0.9 else random_shape(rng)
    other_values, other_x = laid_out(rng, random_values(rng, other_shape, other_dtype))
    info["other"] = other_values
    return function, [other_x, x], {}, info


def describe(function, args, kwargs):
    def short(value):
        if isinstance(value, np.ndarray):
            flags = value.flags
            return (
                f"ndarray(shape={value.shape}, dtype={value.dtype}, strides={value.strides}, "
                f"C={flags.c_contiguous}, writeable={flags.writeable}, "
                f"aligned={flags.aligned}, values={np.array2string(value.ravel()[:8])})"
            )
        text = repr(value)
        return text if len(text) < 120 else text[:117] + "..."

    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{function}({', '.join(parts)})"


# ---------------------------------------------------------------------------
# running and checking one case


def call(function, args, kwargs):
    return call_by_name(function, args, kwargs)


def observed(value):
    """What of `value` is compared before and after a call: all of it, or the first row
    of a huge zero-stride virtual array (its only memory)."""
    if value.size > 2**26:
        return value[(0,) * (value.ndim - 1)][:16]
    return value


def snapshot(values):
    return [np.array(observed(v), copy=True) if isinstance(v, np.ndarray) else None for v in values]


def same(value, copy):
    return np.array_equal(observed(value), copy, equal_nan=value.dtype.kind in "fc")


def changed(values, copies):
    return any(copy is not None and not same(value, copy) for value, copy in zip(values, copies))


def run_case(function, args, kwargs, info):
    """None when the case passed, else a failure message."""
    inputs = list(args) + list(kwargs.values())
    copies = snapshot(inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call(function, args, kwargs)
        except ALLOWED_EXCEPTIONS as error:
            if changed(inputs, copies):
                return f"raised {type(error).__name__} but changed an input or out=: {error}"
            message = str(error)
            if not isinstance(error, MemoryError) and "`" not in message and "axis" not in message:
                return f"{type(error).__name__} whose message names no argument: {error}"
            return ("raised", type(error).__name__, [str(w.message) for w in caught])
        except Exception as error:
            return f"undocumented exception {type(error).__name__}: {error}\n" + "".join(
                traceback.format_exception(error)[-3:]
            )
    out = kwargs.get("out")
    outputs = [v for k, v in kwargs.items() if k == "out" or k.endswith("_out")]
    unchanged_expected = [
        not any(v is o for o in outputs) and not (out is not None and v is args[0]) for v in inputs
    ]
    for value, copy, expect in zip(inputs, copies, unchanged_expected):
        if expect and copy is not None and not same(value, copy):
            return "an input changed although the call did not write into it"
    try:
        check_result(function, args, kwargs, info, result)
    except AssertionError as error:
        return f"wrong result: {str(error)[:1500]}"
    return ("ok", None, [str(w.message) for w in caught])


def finite_moderate(array, limit=100.0):
    array = np.asarray(array, dtype=np.float64)
    return bool(np.all(np.isfinite(array)) and np.all(np.abs(array) <= limit))


def good_rows(values64, temperature=1.0):
    """Rows (class axis last) whose softmax must be defined: no NaN, no +inf, not all -inf."""
    return ~(
        np.isnan(values64).any(axis=-1)
        | np.isposinf(values64).any(axis=-1)
        | np.isneginf(values64).all(axis=-1)
    )


def input_dtype(argument, values):
    """The dtype fastsce sees for `argument` (a list of numbers is float64 or int64)."""
    if isinstance(argument, np.ndarray):
        return argument.dtype
    return np.asarray(argument).dtype if argument is not None else values.dtype


def check_result(function, args, kwargs, info, result):
    values = info["values"]
    v64 = np.asarray(values, np.float64)
    dtype = compute_dtype(
        input_dtype(args[-1] if function.endswith("backward") else args[0], values)
    )
    temperature = kwargs.get("temperature", 1.0)
    t = float(temperature)
    if function in ("softmax", "log_softmax", "logsumexp"):
        axis = kwargs.get("axis", -1)
        moved = np.moveaxis(v64, axis, -1)
        ok_rows = good_rows(moved)
        if function == "logsumexp":
            keepdims = kwargs.get("keepdims", False)
            expected_shape = list(values.shape)
            if keepdims:
                expected_shape[axis] = 1
            else:
                del expected_shape[axis % values.ndim]
            assert result.shape == tuple(expected_shape), (result.shape, expected_shape)
            assert result.dtype == dtype
            lse = np.asarray(result, np.float64)
            lse_rows = np.moveaxis(lse, axis, -1)[..., 0] if keepdims else lse
            assert not np.isnan(lse_rows[ok_rows]).any(), "NaN logsumexp for a valid row"
            row_max = moved.max(axis=-1)
            with np.errstate(invalid="ignore", over="ignore"):
                floor = row_max / t
                # max / T beyond the dtype's range: -inf / +inf are the rounded results
                ok = ok_rows & np.isfinite(floor) & (np.abs(floor) <= np.finfo(dtype).max)
                assert np.all(lse_rows[ok] >= floor[ok] - 1e-6 * np.abs(floor[ok]) - 1e-30), (
                    "logsumexp below max / T"
                )
            if finite_moderate(v64) and 0.25 <= t <= 10:
                expected = reference.logsumexp(v64, axis=axis, keepdims=keepdims, temperature=t)
                assert_close(
                    result,
                    expected,
                    RTOL[dtype],
                    atol=LOG_SUM_ATOL,
                    magnitude=logsumexp_magnitude(v64, axis, keepdims, t),
                )
            return
        assert result.shape == values.shape and result.dtype == dtype
        if kwargs.get("out") is not None:
            assert result is kwargs["out"]
        r64 = np.moveaxis(np.asarray(result, np.float64), axis, -1)
        assert not np.isnan(r64[ok_rows]).any(), f"NaN {function} for a valid row"
        if function == "softmax":
            good = r64[ok_rows]
            assert np.all((good >= 0) & (good <= 1)), "probability outside [0, 1]"
            np.testing.assert_allclose(good.sum(axis=-1), 1.0, rtol=0, atol=1e-4)
        else:
            assert np.all(r64[ok_rows] <= 0), "log-probability > 0"
        if finite_moderate(v64) and 0.25 <= t <= 10:
            expected = getattr(reference, function)(v64, axis=axis, temperature=t)
            assert_close(
                result,
                expected,
                RTOL[dtype],
                atol=LOG_SUM_ATOL if function == "log_softmax" else float(np.finfo(dtype).tiny),
            )
        return
    if function in LOSS_FUNCTIONS:
        check_loss(function, kwargs, info, result, v64, dtype)
        return
    if function == "softmax_jacobian":
        assert result.shape == values.shape + (values.shape[-1],) and result.dtype == dtype
        if finite_moderate(v64, 10.0):
            expected = reference.softmax_jacobian(v64)
            s = v64
            magnitude = np.abs(s[..., :, None] * s[..., None, :]) + np.abs(
                s[..., :, None] * np.eye(values.shape[-1])
            )
            assert_close(
                result, expected, RTOL[dtype], magnitude=magnitude, atol=float(np.finfo(dtype).tiny)
            )
        return
    other = np.asarray(info["other"], np.float64)
    wide = np.result_type(dtype, compute_dtype(input_dtype(args[0], info["other"])))
    assert result.shape == values.shape and result.dtype == wide, (result.dtype, wide)
    if finite_moderate(v64, 10.0) and finite_moderate(other, 10.0):
        if function == "softmax_backward":
            expected = v64 * (other - np.sum(other * v64, axis=-1, keepdims=True))
            magnitude = backward_magnitude(other, v64)
        else:
            p = np.exp(v64)
            expected = other - p * np.sum(other, axis=-1, keepdims=True)
            magnitude = np.abs(other) + np.abs(p * np.sum(np.abs(other), axis=-1, keepdims=True))
        assert_close(
            result, expected, RTOL[wide], magnitude=magnitude, atol=float(np.finfo(wide).tiny)
        )


#: a 16-bit gradient's one rounding: (relative error, absolute error below the subnormals)
ROUNDING_16_BIT = {"float16": (2.0**-11, 2.0**-25), "bfloat16": (2.0**-8, 0.0)}


def check_loss(function, kwargs, info, result, v64, dtype):
    values = info["values"]
    target = np.asarray(info["target"])
    with_grad = function.endswith(("with_grad", "loss_and_grad"))
    loss, grad = result if with_grad else (result, None)
    reduction = kwargs.get("reduction", "mean")
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == values.shape[:-1], np.shape(loss)
    else:
        assert np.ndim(loss) == 0
    out = kwargs.get("out")
    # 16-bit logits may have a gradient of their own dtype (out= of it): the compute
    # dtype's gradient rounded once more
    grad_dtype = out.dtype if out is not None and out.dtype.itemsize == 2 else dtype
    if grad is not None:
        assert grad.shape == values.shape and grad.dtype == grad_dtype, (grad.shape, grad.dtype)
        if out is not None:
            assert grad is out
    weight = kwargs.get("weight")
    w64 = None if weight is None else np.asarray(weight, np.float64)
    soft = target.dtype.kind == "f"
    t64 = np.asarray(target, np.float64) if soft else None
    plain = (
        kwargs.get("temperature", 1.0) == 1.0
        and kwargs.get("softcap") is None
        and kwargs.get("z_loss", 0.0) == 0.0
    )
    eps = float(kwargs.get("label_smoothing", 0.0))
    ignore_index = kwargs.get("ignore_index", -100)
    # rows whose loss must not be NaN: logits rows with softmax defined, finite targets;
    # a NaN-free row may still be +inf (target mass on a masked class)
    ok_rows = good_rows(v64)
    if soft:
        ok_rows &= np.isfinite(t64).all(axis=-1)
    else:
        ignored = target.astype(np.int64) == int(ignore_index)
        ok_rows |= ignored  # ignored rows: loss 0 whatever the logits
    losses = np.asarray(loss, np.float64)
    if reduction == "none":
        assert not np.isnan(losses[ok_rows]).any(), "NaN loss for a valid row"
        non_negative = (w64 is None or np.all(w64 >= 0)) and (not soft or np.all(t64 >= 0))
        if non_negative and plain:
            assert np.all(losses[ok_rows] >= 0), "negative loss"
    if not (
        plain
        and finite_moderate(v64)
        and (w64 is None or finite_moderate(w64, 1e3))
        and (not soft or finite_moderate(t64, 1e3))
    ):
        return
    oracle_target = t64 if soft else target.astype(np.int64)
    options = {"reduction": reduction, "ignore_index": int(ignore_index), "label_smoothing": eps}
    if w64 is not None:
        options["weight"] = w64
    with np.errstate(all="ignore"):
        expected_loss, expected_grad = reference.cross_entropy_with_grad(
            v64, oracle_target, **options
        )
    atol = np.abs(loss_atol(v64, oracle_target, **options))  # negative weights allowed
    assert_close(loss, expected_loss, LOSS_RTOL[dtype], atol=atol, err_msg="loss")
    if grad is not None:
        magnitude = np.abs(grad_magnitude(v64, oracle_target, **options))
        b, row_weight = target_distribution(
            v64.shape, oracle_target, **{k: v for k, v in options.items() if k != "reduction"}
        )
        mass = np.abs(b.sum(axis=-1, keepdims=True))
        if reduction == "mean" and row_weight.sum() != 0:
            mass = mass / abs(row_weight.sum())
        rounding, flushed = ROUNDING_16_BIT.get(grad_dtype.name, (0.0, 0.0))
        assert_close(
            np.asarray(grad, np.float32) if grad_dtype != dtype else grad,
            expected_grad,
            RTOL[dtype] + rounding,
            magnitude=magnitude,
            err_msg="grad",
            atol=float(np.finfo(dtype).tiny) * np.maximum(mass, 1.0) + flushed,
        )


# ---------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--describe", type=int, default=None)
    parser.add_argument("--max-failures", type=int, default=20)
    parser.add_argument(
        "--crash-at",
        type=int,
        default=None,
        help="segfault on purpose at this case (tests the harness)",
    )
    options = parser.parse_args()
    if options.describe is not None:
        function, args, kwargs, _ = make_case(options.seed, options.describe)
        print(describe(function, args, kwargs))
        return 0
    outcomes = {}
    failures = []
    warned = {}
    stderr = sys.stderr.fileno()
    for number in range(options.start, options.start + options.cases):
        function, args, kwargs, info = make_case(options.seed, number)
        os.write(stderr, f"case {number}\n".encode())
        if number == options.crash_at:
            import ctypes

            ctypes.string_at(0)  # SIGSEGV
        outcome = run_case(function, args, kwargs, info)
        if isinstance(outcome, tuple):
            kind, name, caught = outcome
            key = f"{function}: {'ok' if kind == 'ok' else name}"
            outcomes[key] = outcomes.get(key, 0) + 1
            for message in caught:
                warned[message] = warned.get(message, 0) + 1
        else:
            outcomes[f"{function}: FAILED"] = outcomes.get(f"{function}: FAILED", 0) + 1
            if len(failures) < options.max_failures:
                failures.append(
                    {"case": number, "call": describe(function, args, kwargs), "failure": outcome}
                )
    summary = {
        "seed": options.seed,
        "cases": options.cases,
        "failed": sum(v for k, v in outcomes.items() if k.endswith("FAILED")),
        "outcomes": dict(sorted(outcomes.items())),
        "warnings": warned,
        "failures": failures,
    }
    print(json.dumps(summary, indent=1))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
