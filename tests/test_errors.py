"""Every error of README "Errors", and the bad-input matrix of every argument of every
public function.

For each argument a catalogue of bad values (wrong dtypes, 0-d, zero classes, wrong
shapes, class indices out of range in every integer dtype, ignore_index collisions,
non-finite weights and soft targets, unknown reductions, bad out= buffers, ...) is
tried with every other argument valid.  Each call must raise exactly the exception
type of README "Errors" with a message naming the argument (`name`), and write
nothing: out= (filled with a sentinel) and every input are unchanged, also when the
gradient was to be written in place into the logits.

The first part is the cross product (argument x bad value x function x target
kind); the second, the per-function list of the documented errors with their exact
messages, and the hints that point at the fix.  Inputs that are *valid* although
unusual (empty batches, ignore_index equal to a real class, integer dtypes of every
width) are checked for the right result instead.
"""

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastsce
from _helpers import (
    BAD_EXTRA_OPTIONS,
    COMPUTE_DTYPES,
    LOSS_RTOL,
    RTOL,
    assert_close,
    assert_unchanged,
    call_by_name,
    loss_atol,
    make_logits,
    make_soft_target,
    oracle,
    rng_for,
    snapshot,
)

SENTINEL = -12345.0
N_ROWS, N_CLASSES = 4, 3
SHAPE = (N_ROWS, N_CLASSES)


def expect_error(exception, name, func, *args, contains=(), **kwargs):
    """func(*args, **kwargs) raises exactly `exception` whose message names `name`
    (and contains every string of `contains`), and no array argument changed."""
    values = list(args) + list(kwargs.values())
    copies = snapshot(*values)
    with pytest.raises(Exception) as info:
        func(*args, **kwargs)
    error = info.value
    assert type(error) is exception, (
        f"expected {exception.__name__} naming `{name}`, got {type(error).__name__}: {error}"
    )
    message = str(error)
    assert f"`{name}`" in message, f"message does not name `{name}`: {message!r}"
    for text in contains:
        assert text in message, f"message does not contain {text!r}: {message!r}"
    assert_unchanged(values, copies)


def logits(dtype=np.float64, shape=SHAPE):
    return make_logits(shape, dtype)


def hard_target(shape=SHAPE, dtype=np.int64):
    return (np.arange(int(np.prod(shape[:-1]))) % shape[-1]).reshape(shape[:-1]).astype(dtype)


def soft_target(shape=SHAPE, dtype=np.float64):
    return make_soft_target(shape, dtype, rng_for("soft", shape))


def sentinel_out(shape=SHAPE, dtype=np.float64):
    return np.full(shape, SENTINEL, dtype)


# ---------------------------------------------------------------------------
# Every public function as {argument: valid value}; a case replaces one argument.


LOSS_FUNCTIONS = [
    "cross_entropy",
    "cross_entropy_with_grad",
    "CrossEntropyLoss",
    "CrossEntropyLoss.loss_and_grad",
]


def valid_arguments(function, kind="hard"):
    """Keyword arguments of a valid call of `function` (out= filled with the sentinel).

    kind: 'hard' or 'soft' targets for the cross-entropy functions.  The loss object
    CrossEntropyLoss counts as two functions: calling it, and its loss_and_grad."""
    x = logits()
    s = fastsce.softmax(x)
    if function in ("softmax", "log_softmax"):
        return {"x": x, "axis": -1, "temperature": 1.0, "out": sentinel_out()}
    if function == "logsumexp":
        return {"x": x, "axis": -1, "keepdims": False, "temperature": 1.0}
    if function in LOSS_FUNCTIONS:
        arguments = {
            "logits": x,
            "target": hard_target() if kind == "hard" else soft_target(),
            "weight": np.array([0.5, 1.0, 2.0]),
            "ignore_index": -100,
            "reduction": "mean",
            "label_smoothing": 0.1,
        }
        if function in ("cross_entropy_with_grad", "CrossEntropyLoss.loss_and_grad"):
            arguments["out"] = sentinel_out()
        return arguments
    if function == "softmax_jacobian":
        return {"s": s}
    if function == "softmax_backward":
        return {"grad_s": make_logits(SHAPE, np.float64, rng=rng_for("grad_s")), "s": s}
    if function == "log_softmax_backward":
        return {
            "grad_out": make_logits(SHAPE, np.float64, rng=rng_for("grad_out")),
            "log_s": fastsce.log_softmax(x),
        }
    raise AssertionError(function)


POSITIONAL = {
    "softmax": ["x"],
    "log_softmax": ["x"],
    "logsumexp": ["x"],
    "cross_entropy": ["logits", "target"],
    "cross_entropy_with_grad": ["logits", "target"],
    "CrossEntropyLoss": ["logits", "target"],
    "CrossEntropyLoss.loss_and_grad": ["logits", "target"],
    "softmax_jacobian": ["s"],
    "softmax_backward": ["grad_s", "s"],
    "log_softmax_backward": ["grad_out", "log_s"],
}


def call(function, arguments):
    """fastsce.<function> called with `arguments` (positional ones by position); for
    CrossEntropyLoss the options build the loss object, which is then called."""
    positional = POSITIONAL[function]
    args = [arguments[name] for name in positional]
    kwargs = {k: v for k, v in arguments.items() if k not in positional}
    return call_by_name(function, args, kwargs)


def expect_call_error(exception, name, function, arguments, contains=()):
    expect_error(exception, name, lambda **kw: call(function, kw), contains=contains, **arguments)


def test_valid_baseline_calls_succeed():
    """The baseline arguments every case starts from are valid (else the cases below
    would test nothing); out= is written."""
    for function in ALL_FUNCTIONS:
        for kind in ["hard", "soft"]:
            arguments = valid_arguments(function, kind)
            result = call(function, arguments)
            if "out" in arguments:
                assert not np.any(arguments["out"] == SENTINEL)
            assert np.all(np.isfinite(result[-1] if isinstance(result, tuple) else result))


ALL_FUNCTIONS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_jacobian",
    "softmax_backward",
    "log_softmax_backward",
] + LOSS_FUNCTIONS
#: (function, target kind) pairs; the softmax family has no target
CALLS = [(f, "hard") for f in ALL_FUNCTIONS] + [(f, "soft") for f in LOSS_FUNCTIONS]
#: array arguments holding numbers, by function
ARRAY_ARGUMENTS = {
    "softmax": ["x"],
    "log_softmax": ["x"],
    "logsumexp": ["x"],
    **{f: ["logits", "target", "weight"] for f in LOSS_FUNCTIONS},
    "softmax_jacobian": ["s"],
    "softmax_backward": ["grad_s", "s"],
    "log_softmax_backward": ["grad_out", "log_s"],
}
LOSS_CALLS = [(f, k) for f in LOSS_FUNCTIONS for k in ["hard", "soft"]]
#: the array argument validated first (named by errors when all arrays are bad)
FIRST_ARRAY = {
    **{f: ARRAY_ARGUMENTS[f][0] for f in ARRAY_ARGUMENTS},
    "softmax_backward": "s",
    "log_softmax_backward": "log_s",
}


def short_id(value):
    """Readable, bounded test ids (huge integers would make kilometre-long ids)."""
    text = value.__name__ if isinstance(value, type) else repr(value)
    return text if len(text) <= 24 else text[:10] + "..." + text[-6:]


# ---------------------------------------------------------------------------
# Non-numeric dtypes: TypeError naming the argument, for every array argument


def non_numeric(shape):
    """{label: array-like of `shape` whose values are not real numbers}."""
    size = int(np.prod(shape))
    return {
        "complex128": np.full(shape, 1 + 1j),
        "complex64": np.full(shape, 0.5 + 0j, np.complex64),
        "complex_real_only": np.zeros(shape, np.complex128),  # imaginary part 0 still complex
        "object_numbers": np.ones(shape, dtype=object),
        "object_none": np.full(shape, None, dtype=object),
        "str": np.full(shape, "1.0"),
        "bytes": np.full(shape, b"1"),
        "bool": np.ones(shape, bool),
        "datetime64": np.full(shape, np.datetime64("2020-01-01")),
        "timedelta64": np.full(shape, np.timedelta64(1, "s")),
        "void": np.zeros(shape, "V8"),
        "structured": np.zeros(shape, [("a", "f8")]),
        "bool_list": np.ones(shape, bool).tolist(),
        "str_list": np.full(shape, "2").tolist(),
        "none": None,
        "dict": {"a": 1},
        "flat_object_mix": np.array(
            [1.0, "a"] * (size // 2) + [1.0] * (size % 2), dtype=object
        ).reshape(shape),
    }


NON_NUMERIC_KINDS = list(non_numeric((2, 2)))


def argument_shape(function, name):
    if name == "weight":
        return (N_CLASSES,)
    if name == "target":
        return (N_ROWS,)
    return SHAPE


@pytest.mark.parametrize(
    "function, kind, name, bad",
    [
        (f, k, name, bad)
        for f, k in CALLS
        for name in ARRAY_ARGUMENTS[f]
        for bad in NON_NUMERIC_KINDS
        if not (name == "target" and k == "soft") and not (name == "weight" and bad == "none")
    ],
)
def test_non_numeric_array_argument_is_a_type_error(function, kind, name, bad):
    """weight=None is valid (no weights); None for any other array argument is not."""
    arguments = valid_arguments(function, kind)
    arguments[name] = non_numeric(argument_shape(function, name))[bad]
    expect_call_error(TypeError, name, function, arguments)


@pytest.mark.parametrize("bad", NON_NUMERIC_KINDS)
@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
def test_non_numeric_target_of_the_logits_shape_is_a_type_error(function, bad):
    """The (N, C) shape of soft targets does not make a non-float target acceptable."""
    arguments = valid_arguments(function, "soft")
    arguments["target"] = non_numeric(SHAPE)[bad]
    expect_call_error(TypeError, "target", function, arguments)


RAGGED = {
    "rows of two lengths": [[0.1, 0.2, 0.3], [0.4, 0.5]],
    "row and scalar": [[0.1, 0.2, 0.3], 0.4],
    "three levels, ragged inside": [[[0.1, 0.2], [0.3]], [[0.4, 0.5], [0.6, 0.7]]],
}


@pytest.mark.parametrize("bad", list(RAGGED))
@pytest.mark.parametrize(
    "function, kind, name", [(f, k, name) for f, k in CALLS for name in ARRAY_ARGUMENTS[f]]
)
def test_ragged_nested_list_is_a_value_error(function, kind, name, bad):
    """A nested list that is not rectangular: numpy refuses it (ValueError); the message
    must still name the argument."""
    arguments = valid_arguments(function, kind)
    value = RAGGED[bad]
    if name == "target" and kind == "hard":
        value = [[0, 1, 2], [1]]
    arguments[name] = value
    expect_call_error(ValueError, name, function, arguments)


# ---------------------------------------------------------------------------
# 0-d, zero classes, wrong shapes


ZERO_D = {
    "np.float64": np.float64(1.5),
    "0-d array": np.array(2.0),
    "float": 3.0,
    "int": 7,
    "np.int8": np.int8(1),
    "0-d float32 read-only": np.array(1.0, np.float32),
}
ZERO_D["0-d float32 read-only"].flags.writeable = False


@pytest.mark.parametrize("bad", list(ZERO_D))
@pytest.mark.parametrize(
    "function, kind, name",
    [
        (f, k, name)
        for f, k in CALLS
        for name in ARRAY_ARGUMENTS[f]
        if name not in ("target", "grad_s", "grad_out")
    ],
)
def test_0d_array_argument_is_a_value_error(function, kind, name, bad):
    """0-d logits/x/s/log_s have no class axis; a 0-d weight is not of shape (C,)."""
    arguments = valid_arguments(function, kind)
    arguments[name] = ZERO_D[bad]
    if name in ("x", "logits", "s", "log_s"):
        arguments.pop("out", None)  # out= of the old shape would be the error
        if function == "softmax_backward":
            arguments["grad_s"] = ZERO_D[bad]
        if function == "log_softmax_backward":
            arguments["grad_out"] = ZERO_D[bad]
        if function in LOSS_FUNCTIONS:
            arguments["target"] = 0
    expect_call_error(ValueError, name, function, arguments)


@pytest.mark.parametrize("bad", list(ZERO_D))
@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
def test_0d_target_of_a_batch_is_a_value_error(function, bad):
    arguments = valid_arguments(function, "hard")
    arguments["target"] = ZERO_D[bad]
    exception = TypeError if np.asarray(ZERO_D[bad]).dtype.kind == "f" else ValueError
    expect_call_error(exception, "target", function, arguments)


@pytest.mark.parametrize(
    "function, name", [("softmax_backward", "grad_s"), ("log_softmax_backward", "grad_out")]
)
@pytest.mark.parametrize("bad", list(ZERO_D))
def test_0d_incoming_gradient_is_a_value_error(function, name, bad):
    arguments = valid_arguments(function)
    arguments[name] = ZERO_D[bad]
    expect_call_error(ValueError, name, function, arguments)


ZERO_CLASS_SHAPES = [(0,), (4, 0), (0, 0), (2, 3, 0), (1, 1, 1, 0)]


@pytest.mark.parametrize("shape", ZERO_CLASS_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("function, kind", CALLS, ids=str)
def test_zero_classes_is_a_value_error(function, kind, dtype, shape):
    arguments = valid_arguments(function, kind)
    for name in ARRAY_ARGUMENTS[function]:
        if name not in ("target", "weight"):
            arguments[name] = np.zeros(shape, dtype)
    name = FIRST_ARRAY[function]
    if function in LOSS_FUNCTIONS:
        arguments["target"] = np.zeros(shape[:-1], np.int64) if kind == "hard" else np.zeros(shape)
        arguments["weight"] = None
    if "out" in arguments:
        arguments["out"] = np.full(
            shape, SENTINEL, np.float32 if dtype == np.float32 else np.float64
        )
    expect_call_error(ValueError, name, function, arguments, contains=["zero classes"])


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_zero_length_reduced_axis_is_a_value_error_whatever_the_axis(function, axis):
    x = np.zeros((0, 3)) if axis in (0, -2) else np.zeros((3, 0))
    expect_error(
        ValueError, "x", getattr(fastsce, function), x, axis=axis, contains=["zero classes"]
    )


@pytest.mark.parametrize(
    "grad_shape", [(4, 3, 1), (1, 3), (4, 1), (3,), (2, 2, 3), (12,), (4, 6)], ids=str
)
@pytest.mark.parametrize(
    "function, name", [("softmax_backward", "grad_s"), ("log_softmax_backward", "grad_out")]
)
def test_incoming_gradient_of_another_shape_is_a_value_error_no_broadcasting(
    function, name, grad_shape
):
    arguments = valid_arguments(function)
    arguments[name] = np.ones(grad_shape)
    expect_call_error(ValueError, name, function, arguments)


# ---------------------------------------------------------------------------
# Empty batches are valid: empty results, and PyTorch's reductions (mean of nothing is NaN)


EMPTY_SHAPES = [(0, 3), (0, 0 + 5), (2, 0, 3), (0, 1)]


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_softmax_family(shape, dtype):
    x = np.zeros(shape, dtype)
    for function in ["softmax", "log_softmax"]:
        out = np.full(shape, SENTINEL, dtype)
        result = getattr(fastsce, function)(x)
        assert result.shape == shape and result.dtype == dtype
        assert getattr(fastsce, function)(x, out=out) is out
    lse = fastsce.logsumexp(x)
    assert lse.shape == shape[:-1] and lse.dtype == dtype
    assert fastsce.logsumexp(x, keepdims=True).shape == shape[:-1] + (1,)
    jac = fastsce.softmax_jacobian(x)
    assert jac.shape == shape + (shape[-1],) and jac.dtype == dtype
    back = fastsce.softmax_backward(x, x)
    assert back.shape == shape and back.dtype == dtype


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("options", [{}, {"weight": "ones", "label_smoothing": 0.2}], ids=str)
def test_empty_batch_cross_entropy(shape, dtype, kind, options):
    x = np.zeros(shape, dtype)
    target = np.zeros(shape[:-1], np.int64) if kind == "hard" else np.zeros(shape, dtype)
    options = dict(options)
    if "weight" in options:
        options["weight"] = np.ones(shape[-1])
    for reduction, expected in [("mean", np.nan), ("sum", 0.0)]:
        loss = fastsce.cross_entropy(x, target, reduction=reduction, **options)
        assert np.isnan(loss) if np.isnan(expected) else loss == expected, (reduction, loss)
        loss, grad = fastsce.cross_entropy_with_grad(x, target, reduction=reduction, **options)
        assert np.isnan(loss) if np.isnan(expected) else loss == expected, (reduction, loss)
        assert grad.shape == shape and grad.dtype == dtype
    losses = fastsce.cross_entropy(x, target, reduction="none", **options)
    assert losses.shape == shape[:-1] and losses.dtype == dtype


# ---------------------------------------------------------------------------
# Class indices out of range, in every integer dtype


INTEGER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
CANDIDATE_BAD_INDICES = [
    N_CLASSES,
    N_CLASSES + 1,
    -1,
    -2,
    -100 - 1,
    2**7 - 1,
    -(2**7),
    2**8 - 1,
    2**15 - 1,
    -(2**15),
    2**16 - 1,
    2**31 - 1,
    -(2**31),
    2**31,
    2**31 + 1,
    2**32 - 1,
    2**32,
    2**32 + 1,  # truncated to 32 bits: class 1
    2**32 - 100,  # truncated to int32: -100, the default ignore_index
    2**63 - 1,
    -(2**63),
    2**63,
    2**63 + 1,
    2**64 - 1,
    2**64 - 100,  # the uint64 bit pattern of -100 (the ignore_index)
    2**64 - 2**32 + 1,  # low 32 bits: class 1
]


def representable(value, dtype):
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


BAD_INDEX_CASES = [
    (np.dtype(d).name, v)
    for d in INTEGER_DTYPES
    for v in CANDIDATE_BAD_INDICES
    if representable(v, d)
]


@pytest.mark.parametrize("dtype_name, bad", BAD_INDEX_CASES)
@pytest.mark.parametrize("position", [0, -1])
def test_class_index_out_of_range_in_every_integer_dtype(dtype_name, bad, position):
    """Raised whatever the dtype and value, with the value in the message; never wrapped
    into [0, C) or onto ignore_index by a narrowing conversion."""
    target = hard_target((2, 2, N_CLASSES), np.dtype(dtype_name))
    target.reshape(-1)[position] = bad
    x = logits(shape=(2, 2, N_CLASSES))
    contains = [str(bad)]
    expect_error(ValueError, "target", fastsce.cross_entropy, x, target, contains=contains)
    for reduction in ["mean", "sum", "none"]:
        expect_error(
            ValueError,
            "target",
            fastsce.cross_entropy_with_grad,
            x,
            target,
            reduction=reduction,
            out=sentinel_out(x.shape),
            contains=contains,
        )
    # in place: the logits are the output buffer and must survive
    expect_error(
        ValueError,
        "target",
        fastsce.cross_entropy_with_grad,
        x,
        target,
        out=x,
        weight=np.ones(N_CLASSES),
        label_smoothing=0.3,
        contains=contains,
    )


@pytest.mark.parametrize("bad", [2**31, 2**32 + 1, 2**63, 2**64 - 1], ids=str)
def test_class_index_out_of_range_as_python_list(bad):
    """Python ints too large for int64 are not class indices: TypeError (they are not
    integers numpy can hold) or ValueError, naming `target` either way."""
    x = logits()
    target = [0, 1, bad, 1]
    dtype = np.asarray(target).dtype
    exception = ValueError if dtype.kind in "iu" else TypeError
    expect_error(
        exception, "target", fastsce.cross_entropy_with_grad, x, target, out=sentinel_out()
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.usefixtures("restore_threads")
def test_bad_index_in_the_last_row_of_a_parallel_batch_writes_nothing(dtype, n_threads):
    """All class indices are checked before any thread writes a gradient row."""
    fastsce.set_num_threads(n_threads)
    x = make_logits((2000, 97), dtype)  # > 65536 elements: the parallel path
    target = hard_target((2000, 97))
    target[-1] = 97
    expect_error(
        ValueError, "target", fastsce.cross_entropy_with_grad, x, target, out=x, contains=["97"]
    )
    target[-1] = -100
    target[1000] = -5
    expect_error(
        ValueError,
        "target",
        fastsce.cross_entropy_with_grad,
        x,
        target,
        out=sentinel_out(x.shape, dtype),
        reduction="none",
        contains=["-5"],
    )


# ---------------------------------------------------------------------------
# ignore_index collisions


def reference_loss(x, target, **options):
    return oracle("cross_entropy_with_grad", x, target, **options)


def assert_matches_reference(x, target, **options):
    loss, grad = fastsce.cross_entropy_with_grad(x, target, **options)
    e_loss, e_grad = reference_loss(x, np.asarray(target).astype(np.int64), **options)
    reduction = options.get("reduction", "mean")
    assert_close(
        loss,
        e_loss,
        LOSS_RTOL[np.dtype(x.dtype)],
        atol=loss_atol(
            x,
            np.asarray(target).astype(np.int64),
            reduction,
            **{k: v for k, v in options.items() if k != "reduction"},
        ),
    )
    assert_close(grad, e_grad, RTOL[np.dtype(x.dtype)], atol=1e-15)
    return loss, grad


@pytest.mark.parametrize("ignore_index", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignore_index_equal_to_a_real_class_ignores_those_rows(ignore_index, reduction):
    x = logits(shape=(6, N_CLASSES))
    target = hard_target((6, N_CLASSES))
    loss, grad = assert_matches_reference(x, target, ignore_index=ignore_index, reduction=reduction)
    ignored = target == ignore_index
    assert ignored.any() and not ignored.all()
    assert np.all(grad[ignored] == 0)
    if reduction == "none":
        assert np.all(loss[ignored] == 0)


@pytest.mark.parametrize(
    "dtype, value, ignore_index, ignored",
    [
        (np.int8, -100, -100, True),  # same value in a narrow dtype: ignored
        (np.int16, -100, -100, True),
        (np.int32, -100, -100, True),
        (np.int64, 2**40, 2**40, True),  # wide ignore_index, wide target
        (np.uint64, 2**63 - 1, 2**63 - 1, True),
        (np.int64, -(2**63), -(2**63), True),
        (np.uint32, 2**32 - 1, 2**32 - 1, True),
        (np.uint8, 156, -100, False),  # 156 is -100's bit pattern in 8 bits
        (np.uint16, 2**16 - 100, -100, False),
        (np.uint32, 2**32 - 100, -100, False),
        (np.uint64, 2**64 - 100, -100, False),
        (np.int64, 2**32 - 100, -100, False),  # -100 in the low 32 bits
        (np.int64, 2**32 + 1, 1, False),  # class 1 in the low 32 bits, ignore_index 1
        (np.int64, 2**32 + 5, 2**32 + 5 - 2**32, False),
        (np.int64, 255, -1, False),  # -1 in 8 bits
    ],
    ids=str,
)
def test_ignore_index_is_compared_by_value_not_by_bit_pattern(dtype, value, ignore_index, ignored):
    x = logits()
    target = hard_target(dtype=dtype)
    target[2] = value
    if ignored:
        loss, grad = fastsce.cross_entropy_with_grad(
            x, target, ignore_index=ignore_index, reduction="none"
        )
        assert loss[2] == 0 and np.all(grad[2] == 0)
        kept = np.arange(N_ROWS) != 2
        e_loss, e_grad = reference_loss(x[kept], target[kept].astype(np.int64), reduction="none")
        assert_close(loss[kept], e_loss, LOSS_RTOL[x.dtype], atol=1e-15)
        assert_close(grad[kept], e_grad, RTOL[x.dtype], atol=1e-15)
    else:
        expect_error(
            ValueError,
            "target",
            fastsce.cross_entropy_with_grad,
            x,
            target,
            ignore_index=ignore_index,
            out=sentinel_out(),
            contains=[str(value)],
        )


@pytest.mark.parametrize(
    "ignore_index",
    [2**32 + 1, 2**31 + 1, -(2**32) + 1, 2**63 - 1 - 2**32 + 2, 1 - 2**64 + 2**64 - 2**33],
    ids=str,
)
def test_wide_ignore_index_does_not_collide_with_a_real_class(ignore_index):
    """ignore_index values whose low bits are a valid class do not ignore that class."""
    x = logits()
    target = hard_target()
    plain = fastsce.cross_entropy(x, target, reduction="none")
    np.testing.assert_array_equal(
        fastsce.cross_entropy(x, target, reduction="none", ignore_index=ignore_index), plain
    )
    assert np.all(plain > 0)


@pytest.mark.parametrize("ignore_index", [0, 1, -100, 2**62])
def test_ignore_index_has_no_effect_on_soft_targets(ignore_index):
    """PyTorch ignores ignore_index for probability targets."""
    x = logits()
    target = soft_target()
    expected = fastsce.cross_entropy_with_grad(x, target, reduction="none")
    actual = fastsce.cross_entropy_with_grad(x, target, reduction="none", ignore_index=ignore_index)
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])


@pytest.mark.parametrize(
    "ignore_index, exception",
    [
        (np.array([1]), TypeError),
        (np.array([1, 2]), TypeError),
        ([1], TypeError),
        ((-100,), TypeError),
        (1.0, TypeError),
        (np.float64(-100), TypeError),
        ("-100", TypeError),
        (None, TypeError),
        (np.True_, TypeError),
        (False, TypeError),
        (1 + 0j, TypeError),
        (2**63, ValueError),
        (2**64 - 100, ValueError),
        (-(2**63) - 1, ValueError),
        (np.uint64(2**64 - 100), ValueError),
        (10**30, ValueError),
    ],
    ids=short_id,
)
@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
def test_bad_ignore_index(function, ignore_index, exception):
    arguments = valid_arguments(function, "hard")
    arguments["ignore_index"] = ignore_index
    expect_call_error(exception, "ignore_index", function, arguments)


@pytest.mark.parametrize(
    "ignore_index",
    [np.int8(-100), np.uint8(2), np.int64(-100), np.uint64(2), np.array(-100), np.intp(1)],
    ids=short_id,
)
def test_numpy_integer_ignore_index_is_accepted(ignore_index):
    x = logits()
    target = hard_target()
    target[0] = int(ignore_index)
    ignored = target == int(ignore_index)
    loss, grad = fastsce.cross_entropy_with_grad(
        x, target, ignore_index=ignore_index, reduction="none"
    )
    assert np.all(loss[ignored] == 0) and np.all(grad[ignored] == 0)
    assert np.all(loss[~ignored] > 0)


# ---------------------------------------------------------------------------
# NaN / inf in weights and in soft targets


NON_FINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("position", [0, -1])
@pytest.mark.parametrize("function, kind", LOSS_CALLS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_non_finite_weight_is_a_value_error(
    function, kind, dtype, value, position, label_smoothing
):
    arguments = valid_arguments(function, kind)
    weight = np.ones(N_CLASSES, dtype)
    weight[position] = value
    arguments["weight"] = weight
    arguments["label_smoothing"] = label_smoothing
    expect_call_error(ValueError, "weight", function, arguments)
    if "out" in arguments:  # in place
        arguments["out"] = arguments["logits"]
        expect_call_error(ValueError, "weight", function, arguments)


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
def test_non_finite_weight_as_a_list_is_a_value_error(function, value):
    arguments = valid_arguments(function, "hard")
    arguments["weight"] = [1.0, value, 2.0]
    expect_call_error(ValueError, "weight", function, arguments)


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
def test_non_finite_soft_target_is_a_value_error(function, dtype, value):
    """Probabilities must be finite: a NaN or infinite probability
    is a corrupted label, and letting it through silently turns that row's loss (and,
    for 'mean', the whole batch loss and every gradient row) into NaN; so it is a
    ValueError naming `target`, like non-finite weights."""
    x = logits(np.float32 if dtype != np.float64 else np.float64)
    for where in ["first", "last", "all"]:
        target = soft_target(dtype=dtype)
        if where == "all":
            target[:] = value
        else:
            target[(0, 0) if where == "first" else (-1, -1)] = value
        for reduction in ["mean", "sum", "none"]:
            arguments = {"logits": x, "target": target, "reduction": reduction}
            outs = [None]
            if function.endswith(("with_grad", "loss_and_grad")):
                outs += [sentinel_out(dtype=x.dtype), x]  # a buffer, and in place
            for out in outs:
                if out is not None:
                    arguments["out"] = out
                expect_call_error(ValueError, "target", function, arguments)


# ---------------------------------------------------------------------------
# reduction, label_smoothing, temperature, axis: scalar options


BAD_REDUCTIONS = [
    "avg",
    "MEAN",
    "Mean",
    "",
    "mean ",
    " sum",
    "mean\x00",
    "batchmean",
    "nONE",
    None,
    0,
    1,
    1.0,
    True,
    b"mean",
    ["mean"],
    ("sum",),
    {"mean"},
    np.array(["mean", "sum"]),
    np.array([b"sum"]),
]


@pytest.mark.parametrize("reduction", BAD_REDUCTIONS, ids=short_id)
@pytest.mark.parametrize("function, kind", LOSS_CALLS)
def test_unknown_reduction_is_a_value_error(function, kind, reduction):
    arguments = valid_arguments(function, kind)
    arguments["reduction"] = reduction
    expect_call_error(ValueError, "reduction", function, arguments)


@pytest.mark.parametrize(
    "label_smoothing, exception",
    [
        (-0.0001, ValueError),
        (1.5, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        (-np.inf, ValueError),
        (np.float16(1.5), ValueError),
        (10**400, ValueError),
        (-(10**400), ValueError),
        (2, ValueError),
        ("0.1", TypeError),
        (None, TypeError),
        (True, TypeError),
        (np.False_, TypeError),
        (0.1 + 0j, TypeError),
        (np.array([0.1]), TypeError),
        ([0.1], TypeError),
    ],
    ids=short_id,
)
@pytest.mark.parametrize("function, kind", LOSS_CALLS)
def test_bad_label_smoothing(function, kind, label_smoothing, exception):
    arguments = valid_arguments(function, kind)
    arguments["label_smoothing"] = label_smoothing
    expect_call_error(exception, "label_smoothing", function, arguments)


@pytest.mark.parametrize(
    "temperature, exception",
    [
        (0, ValueError),
        (-0.0, ValueError),
        (-1e-300, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        (-np.inf, ValueError),
        (10**400, ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
        (1 + 0j, TypeError),
        (np.array([1.0]), TypeError),
        ([1.0], TypeError),
    ],
    ids=short_id,
)
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_bad_temperature(function, temperature, exception):
    arguments = valid_arguments(function)
    arguments["temperature"] = temperature
    expect_call_error(exception, "temperature", function, arguments)


def temperature_is_refused(dtype, temperature):
    """The documented rule: 1 / temperature must not overflow the compute dtype, nor
    round to 0 in float32 (every row would be 0 * inf = NaN)."""
    inverse = 1.0 / temperature
    return inverse > float(np.finfo(dtype).max) or (
        dtype == np.float32 and inverse <= float(np.finfo(np.float32).smallest_subnormal) / 2
    )


def refused_or_result(function, arguments, dtype, temperature):
    """The call's result, or None after checking the ValueError the rule asks for."""
    if temperature_is_refused(dtype, temperature):
        expect_call_error(ValueError, "temperature", function, arguments)
        return None
    return call(function, arguments)


@pytest.mark.parametrize("temperature", [5e-324, 1e-310, 1e-300, 1e-39])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_tiny_temperature_raises_or_gives_the_limit_never_silent_nan(function, dtype, temperature):
    """A positive temperature so small that 1/T overflows the compute dtype: ValueError
    naming `temperature`; otherwise the T -> 0 limit (one-hot softmax at the max, finite
    log-softmax entries -inf or 0, logsumexp = max/T) -- not NaN for finite logits."""
    x = np.array([[0.5, 2.0, -1.0], [3.0, 1.0, 2.5]], dtype)
    result = refused_or_result(function, {"x": x, "temperature": temperature}, dtype, temperature)
    if result is None:
        return
    assert not np.isnan(result).any(), f"silent NaN for temperature={temperature}: {result}"
    if function == "softmax":
        np.testing.assert_array_equal(result, np.eye(3, dtype=dtype)[[1, 0]])


@pytest.mark.parametrize("temperature", [1e39, 1e44, 1e46, 1e300, 1.7e308])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_huge_temperature_raises_or_gives_the_limit_never_silent_nan(function, dtype, temperature):
    """1 / T rounding to 0 in float32: ValueError naming `temperature`; otherwise the
    T -> inf limit (uniform softmax, log-softmax -log C, logsumexp log C) -- not NaN."""
    x = np.array([[0.5, 2.0, -1.0], [3.0, 1.0, 2.5]], dtype)
    result = refused_or_result(function, {"x": x, "temperature": temperature}, dtype, temperature)
    if result is None:
        return
    expected = {"softmax": 1 / 3, "log_softmax": -np.log(3), "logsumexp": np.log(3)}[function]
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def extreme_temperatures():
    return [
        (np.float32, 1e-39),
        (np.float32, 1e-45),
        (np.float32, 1e39),
        (np.float32, 1e46),
        (np.float32, 1e300),
        (np.float64, 1e-310),
        (np.float64, 5e-324),
        (np.float64, 1.7e308),
    ]


@pytest.mark.parametrize("dtype, temperature", extreme_temperatures(), ids=str)
@pytest.mark.parametrize("function, kind", LOSS_CALLS)
def test_extreme_loss_temperature_raises_or_is_not_nan(function, kind, dtype, temperature):
    """The loss functions' temperature option: 1 / T overflowing the compute dtype (or
    rounding to 0 in float32) raises ValueError naming `temperature`; any other gives a
    NaN-free loss and gradient for finite logits."""
    assert "temperature" in parameters(function), function
    for n_classes in [3, 16, 33]:  # a vector tail only, whole vectors, both
        arguments = valid_arguments(function, kind)
        shape = (N_ROWS, n_classes)
        arguments.pop("out", None)
        arguments.update(
            logits=make_logits(shape, dtype),
            weight=None,
            temperature=temperature,
            reduction="none",
            target=hard_target(shape) if kind == "hard" else soft_target(shape),
        )
        result = refused_or_result(function, arguments, dtype, temperature)
        if result is None:
            continue
        for value in result if isinstance(result, tuple) else (result,):
            assert not np.isnan(value).any(), (
                f"silent NaN for temperature={temperature}, C={n_classes}: {value}"
            )


@pytest.mark.parametrize(
    "dtype, big, temperature",
    [
        (np.float64, 1.79e308, 0.5),
        (np.float64, 1e300, 1e-10),
        (np.float32, 3.4e38, 1e-3),
        (np.float32, 1e30, 1e-10),
    ],
    ids=str,
)
@pytest.mark.parametrize("function, kind", LOSS_CALLS)
def test_loss_temperature_with_logits_beyond_the_range_of_x_over_t_is_not_nan(
    function, kind, dtype, big, temperature
):
    """Found by the fuzzer: finite logits whose x / T overflows the dtype.  The loss is
    sum_j b_j (lse(z) - z_j), z = x / T, which is +inf when it exceeds the largest float
    (log_softmax(x, temperature=T), which subtracts the max before scaling, gives -inf
    for those classes) -- never NaN, and the gradient stays finite."""
    assert "temperature" in parameters(function), function
    x = np.array([[big, 1.0, -2.0, 0.5], [0.5, 1.0, -2.0, big]], dtype)
    arguments = {
        "logits": x,
        "temperature": temperature,
        "reduction": "none",
        "target": np.array([1, 0])
        if kind == "hard"
        else np.array([[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]], dtype),
    }
    result = call(function, arguments)
    loss, grad = result if isinstance(result, tuple) else (result, None)
    expected = -fastsce.log_softmax(x, temperature=temperature)
    expected = (
        expected[np.arange(2), [1, 0]]
        if kind == "hard"
        else np.array([expected[0, 1], 0.5 * expected[1, 0]])
    )
    assert np.all(np.isposinf(expected))  # every case here overflows the dtype
    assert not np.isnan(loss).any(), f"NaN loss for finite logits: {loss}"
    np.testing.assert_array_equal(loss, expected.astype(loss.dtype))
    if grad is not None:
        assert np.isfinite(grad).all(), grad


BAD_AXES = [
    (2, ValueError),
    (-3, ValueError),
    (2**70, ValueError),
    (-(2**70), ValueError),
    (1.0, TypeError),
    (1.5, TypeError),
    ("0", TypeError),
    (None, TypeError),
    ((0, 1), TypeError),
    ([0], TypeError),
    (np.float64(0), TypeError),
    (True, TypeError),
    (np.array([0]), TypeError),
]


@pytest.mark.parametrize("axis, exception", BAD_AXES, ids=short_id)
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_bad_axis(function, axis, exception):
    """Out of range: numpy's AxisError (a ValueError); not an integer: TypeError."""
    arguments = valid_arguments(function)
    arguments["axis"] = axis
    values = list(arguments.values())
    copies = snapshot(*values)
    with pytest.raises(Exception) as info:
        call(function, arguments)
    assert isinstance(info.value, exception) and not (
        exception is TypeError and isinstance(info.value, ValueError)
    ), repr(info.value)
    assert "axis" in str(info.value), f"message does not name the axis: {info.value}"
    assert_unchanged(values, copies)


@pytest.mark.parametrize("axis", [np.int8(0), np.int64(-2), np.uint8(1), np.array(0)], ids=short_id)
def test_numpy_integer_axis_is_accepted(axis):
    x = logits()
    expected = fastsce.reference.softmax(x, axis=int(axis))
    assert_close(fastsce.softmax(x, axis=axis), expected, RTOL[x.dtype])


# ---------------------------------------------------------------------------
# out=: wrong type, dtype, shape, order, read-only, overlapping an input


def out_cases():
    """{label: (function, arguments without out, compute dtype of the output)}."""
    x = logits()
    cases = {}
    for function in ["softmax", "log_softmax"]:
        for axis in [-1, 0]:
            cases[f"{function} axis={axis}"] = (function, {"x": x, "axis": axis})
    for function in ["cross_entropy_with_grad", "CrossEntropyLoss.loss_and_grad"]:
        for kind in ["hard", "soft"]:
            arguments = valid_arguments(function, kind)
            del arguments["out"]
            cases[f"{function} {kind}"] = (function, arguments)
            for reduction in ["sum", "none"]:
                cases[f"{function} {kind} {reduction}"] = (
                    function,
                    dict(arguments, reduction=reduction),
                )
    return cases


OUT_CASES = list(out_cases())


def wrong_outs():
    """{label: (out buffer, exception)} for a (4, 3) float64 result."""
    readonly = np.zeros(SHAPE)
    readonly.flags.writeable = False
    base = np.zeros((8, 6))
    return {
        "float32": (np.zeros(SHAPE, np.float32), TypeError),
        "float16": (np.zeros(SHAPE, np.float16), TypeError),
        "longdouble": (np.zeros(SHAPE, np.longdouble), TypeError),
        "int64": (np.zeros(SHAPE, np.int64), TypeError),
        "uint8": (np.zeros(SHAPE, np.uint8), TypeError),
        "bool": (np.zeros(SHAPE, bool), TypeError),
        "complex128": (np.zeros(SHAPE, np.complex128), TypeError),
        "object": (np.zeros(SHAPE, object), TypeError),
        "datetime64": (np.zeros(SHAPE, "M8[s]"), TypeError),
        "big-endian float64": (np.zeros(SHAPE, ">f8"), TypeError),
        "list": ([[0.0] * 3] * 4, TypeError),
        "tuple": (tuple((0.0,) * 3 for _ in range(4)), TypeError),
        "memoryview": (memoryview(np.zeros(SHAPE)), TypeError),
        "float": (0.0, TypeError),
        "shape (3, 4)": (np.zeros((3, 4)), ValueError),
        "shape (12,)": (np.zeros(12), ValueError),
        "shape (4, 3, 1)": (np.zeros((4, 3, 1)), ValueError),
        "shape (1, 3) broadcastable": (np.zeros((1, 3)), ValueError),
        "shape (4,) (the loss shape)": (np.zeros(4), ValueError),
        "shape ()": (np.zeros(()), ValueError),
        "shape (0, 3)": (np.zeros((0, 3)), ValueError),
        "Fortran order": (np.zeros((3, 4)).T, ValueError),
        "strided columns": (base[:4, ::2], ValueError),
        "strided rows": (base[::2, :3], ValueError),
        "negative strides": (np.zeros(SHAPE)[::-1], ValueError),
        "zero stride (broadcast view)": (np.broadcast_to(np.zeros(3), SHAPE), ValueError),
        "read-only": (readonly, ValueError),
    }


WRONG_OUTS = list(wrong_outs())


@pytest.mark.parametrize("bad", WRONG_OUTS)
@pytest.mark.parametrize("case", OUT_CASES)
def test_wrong_out(case, bad):
    function, arguments = out_cases()[case]
    out, exception = wrong_outs()[bad]
    expect_call_error(exception, "out", function, dict(arguments, out=out))


#: the dtypes tried for `out`: each is wrong for every input computed in another dtype
OUT_DTYPES = [np.float16, np.float32, np.float64, np.longdouble, np.int64, np.complex128, ">f8"]
WRONG_OUT_DTYPES = [
    (x_dtype, out_dtype)
    for x_dtype, compute in COMPUTE_DTYPES.items()
    for out_dtype in map(np.dtype, OUT_DTYPES)
    # a loss's gradient may be float16 for float16 logits (softmax's may not:
    # test_softmax_out_is_not_16_bit; the losses': tests/test_half_logits.py)
    if out_dtype != compute and not (x_dtype == np.float16 and out_dtype == np.float16)
]


@pytest.mark.parametrize("case", OUT_CASES)
@pytest.mark.parametrize("x_dtype, out_dtype", WRONG_OUT_DTYPES, ids=str)
def test_out_must_have_the_compute_dtype(case, x_dtype, out_dtype):
    function, arguments = out_cases()[case]
    name = "x" if "x" in arguments else "logits"
    arguments = dict(arguments)
    arguments[name] = np.abs(make_logits(SHAPE, np.float64) * 10).astype(x_dtype)
    if arguments.get("target") is not None and np.asarray(arguments["target"]).dtype.kind == "f":
        arguments["target"] = soft_target(dtype=np.float64)
    expect_call_error(TypeError, "out", function, dict(arguments, out=np.zeros(SHAPE, out_dtype)))


@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_softmax_out_is_not_16_bit(function):
    """float16 x is computed in float32 and the result written in float32 (only the losses
    write a 16-bit gradient: tests/test_half_logits.py)."""
    x = (logits() * 4).astype(np.float16)
    expect_call_error(TypeError, "out", function, {"x": x, "out": np.zeros(SHAPE, np.float16)})


@pytest.mark.parametrize("case", OUT_CASES)
@pytest.mark.parametrize("shift", [1, 11, -5], ids=str)
@pytest.mark.parametrize("wrap", ["ndarray", "memoryview", "array interface"])
def test_out_overlapping_the_input_is_a_value_error(case, shift, wrap):
    """out= and the logits are views of one buffer, `shift` elements apart; the logits
    may also arrive as another object exposing that memory (a memoryview, or an object
    with __array_interface__): writing out would still overwrite them."""
    function, arguments = out_cases()[case]
    name = "x" if "x" in arguments else "logits"
    buffer = make_logits((50,), np.float64)
    start = 20
    x = buffer[start : start + 12].reshape(SHAPE)
    out = buffer[start + shift : start + shift + 12].reshape(SHAPE)
    if wrap == "memoryview":
        x_arg = memoryview(x)
    elif wrap == "array interface":
        x_arg = ArrayInterface(x)
    else:
        x_arg = x
    before = buffer.copy()
    with pytest.raises(Exception) as info:
        call(function, dict(arguments, **{name: x_arg, "out": out}))
    assert type(info.value) is ValueError, repr(info.value)
    assert "`out`" in str(info.value), str(info.value)
    np.testing.assert_array_equal(buffer, before)


class ArrayInterface:
    """An array-like exposing an ndarray's memory through __array_interface__."""

    def __init__(self, array):
        self.array = array
        self.__array_interface__ = array.__array_interface__


@pytest.mark.parametrize("wrap", ["ndarray", "memoryview"])
def test_out_overlapping_the_soft_target_is_a_value_error(wrap):
    x = logits()
    buffer = np.tile(soft_target(), (3, 1))
    target = buffer[4:8]
    out = buffer[5:9]
    before = buffer.copy()
    target_arg = memoryview(target) if wrap == "memoryview" else target
    with pytest.raises(ValueError, match="`out`"):
        fastsce.cross_entropy_with_grad(x, target_arg, out=out)
    np.testing.assert_array_equal(buffer, before)


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_out_overlapping_the_weight_is_a_value_error(kind):
    arguments = valid_arguments("cross_entropy_with_grad", kind)
    out = np.ones(SHAPE)
    arguments["weight"] = out[2]
    arguments["out"] = out
    expect_call_error(ValueError, "out", "cross_entropy_with_grad", arguments)
    arguments["weight"] = out.reshape(-1)[::4]  # a strided view into out
    expect_call_error(ValueError, "out", "cross_entropy_with_grad", arguments)


def overlapping_outputs(case, n_rows, n_classes):
    """Two output buffers of a loss call that share memory, and the buffer under them."""
    grad = np.full((n_rows, n_classes), SENTINEL)
    rows = np.full(2 * n_rows, SENTINEL)
    if case == "lse_out in out":
        return {"out": grad, "lse_out": grad.reshape(-1)[:n_rows]}, grad
    if case == "argmax_out is lse_out's bytes":
        return {"lse_out": rows[:n_rows], "argmax_out": rows[:n_rows].view(np.int64)}, rows
    if case == "argmax_out in out":
        return {"out": grad, "argmax_out": grad.reshape(-1)[-n_rows:].view(np.int64)}, grad
    # lse_out and argmax_out overlapping by half
    half = n_rows // 2
    return {"lse_out": rows[:n_rows], "argmax_out": rows[half : half + n_rows].view(np.int64)}, rows


#: (function, overlap): cross_entropy has no out=, its outputs are lse_out and argmax_out
OUTPUT_OVERLAPS = [
    (function, case)
    for function in ["cross_entropy", "cross_entropy_with_grad", "class"]
    for case in [
        "lse_out in out",
        "argmax_out is lse_out's bytes",
        "argmax_out in out",
        "lse_out and argmax_out by half",
    ]
    if function != "cross_entropy" or " out" not in case
]


@pytest.mark.parametrize("function, case", OUTPUT_OVERLAPS)
def test_outputs_overlapping_each_other_are_a_value_error_naming_both(function, case):
    """Any two of out=, lse_out=, argmax_out= that share memory: ValueError naming both,
    before anything is written (the buffers keep their sentinel)."""
    n_rows, n_classes = 8, 40
    x = np.random.default_rng(0).standard_normal((n_rows, n_classes))
    target = np.arange(n_rows)
    outputs, buffer = overlapping_outputs(case, n_rows, n_classes)
    before = buffer.copy()
    names = sorted(outputs)
    call = {
        "cross_entropy": fastsce.cross_entropy,
        "cross_entropy_with_grad": fastsce.cross_entropy_with_grad,
        "class": fastsce.CrossEntropyLoss().loss_and_grad,
    }[function]
    with pytest.raises(ValueError, match="overlaps") as error:
        call(x, target, **outputs)
    for name in names:
        assert f"`{name}`" in str(error.value), str(error.value)
    np.testing.assert_array_equal(buffer, before)


IN_PLACE_FUNCTIONS = [
    "softmax",
    "log_softmax",
    "cross_entropy_with_grad",
    "CrossEntropyLoss.loss_and_grad",
]


def in_place_arguments(function, x):
    return (
        {"x": x}
        if function in ("softmax", "log_softmax")
        else {"logits": x, "target": hard_target()}
    )


@pytest.mark.parametrize("function", IN_PLACE_FUNCTIONS)
def test_in_place_on_read_only_logits_is_a_value_error(function):
    x = logits()
    x.flags.writeable = False
    expect_call_error(ValueError, "out", function, dict(in_place_arguments(function, x), out=x))


@pytest.mark.parametrize(
    "function, layout",
    [
        (function, layout)
        for function in IN_PLACE_FUNCTIONS
        for layout in ["float16", "int64", "float32 to float64 out"]
        # a loss's gradient may be written over float16 logits (tests/test_half_logits.py)
        if layout != "float16" or function in ("softmax", "log_softmax")
    ],
)
def test_in_place_needs_the_compute_dtype(function, layout):
    """out=x where x is not in the compute dtype cannot be an in-place result."""
    dtype = {"float16": np.float16, "int64": np.int64, "float32 to float64 out": np.float32}[layout]
    x = (logits() * 4).astype(dtype)
    out = x if layout != "float32 to float64 out" else np.zeros(SHAPE)
    expect_call_error(TypeError, "out", function, dict(in_place_arguments(function, x), out=out))


@pytest.mark.parametrize("function", IN_PLACE_FUNCTIONS)
def test_in_place_is_allowed_and_correct(function):
    """The one allowed overlap: out is exactly the logits array."""
    x = logits()
    expected = call(function, in_place_arguments(function, x.copy()))
    result = call(function, dict(in_place_arguments(function, x), out=x))
    expected = expected[1] if isinstance(expected, tuple) else expected
    result = result[1] if isinstance(result, tuple) else result
    assert result is x
    np.testing.assert_array_equal(x, expected)


# ---------------------------------------------------------------------------
# set_num_threads, absurd sizes: in a subprocess (a crash must fail the test, not pytest)


def run_python(script, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("n_threads", [10**5, 2**31, 2**40, 2**63], ids=str)
def test_absurd_thread_count_is_harmless(n_threads):
    """set_num_threads(huge) is accepted (documented: kernels use at most the CPUs
    available), and later calls large enough to be parallel give the same results --
    never a crash, never an exception."""
    result = run_python(f"""
        import numpy as np, fastsce
        x = np.linspace(-3, 3, 300 * 300).reshape(300, 300)
        target = np.arange(300) % 300
        expected = (fastsce.softmax(x), fastsce.cross_entropy(x, target))
        fastsce.set_num_threads({n_threads})
        assert fastsce.get_num_threads() == {n_threads}
        assert np.array_equal(fastsce.softmax(x), expected[0])
        assert fastsce.cross_entropy(x, target) == expected[1]
        print("harmless")
    """)
    assert result.returncode == 0, (
        f"return code {result.returncode}\n{result.stdout}\n{result.stderr[-2000:]}"
    )
    assert result.stdout.strip() == "harmless"


def test_absurd_sizes_raise_memory_error_not_crash():
    """Results too large to allocate: MemoryError (documented), no crash.  Inputs are
    zero-stride views, so they take no memory themselves."""
    result = run_python("""
        import numpy as np, fastsce
        from numpy.lib.stride_tricks import as_strided
        row = np.zeros(4)
        huge = as_strided(row, shape=(2**56, 4), strides=(0, 8))      # 2 EiB of logits
        for name, func in [
                ("softmax", lambda: fastsce.softmax(huge)),
                ("log_softmax", lambda: fastsce.log_softmax(huge)),
                ("logsumexp", lambda: fastsce.logsumexp(huge)),
                ("cross_entropy", lambda: fastsce.cross_entropy(
                    huge, as_strided(np.zeros(1, np.int64), shape=(2**56,), strides=(0,)))),
                ("cross_entropy_with_grad", lambda: fastsce.cross_entropy_with_grad(
                    huge, as_strided(np.zeros(1, np.int64), shape=(2**56,), strides=(0,)))),
                ("softmax_jacobian", lambda: fastsce.softmax_jacobian(   # 256 GiB result
                    np.ones((2**4, 2**16), np.float32))),
                ("softmax_backward", lambda: fastsce.softmax_backward(huge, huge))]:
            try:
                func()
            except MemoryError:
                print(name, "MemoryError")
            else:
                raise SystemExit(name + ": no error")
    """)
    assert result.returncode == 0, (
        f"return code {result.returncode}\n{result.stdout}\n{result.stderr[-2000:]}"
    )
    assert result.stdout.count("MemoryError") == 7, result.stdout


# ---------------------------------------------------------------------------
# Options other engineers add to cross_entropy: checked when the signature has them


def parameters(function):
    """Names of the parameters `function` (as in LOSS_FUNCTIONS) accepts."""
    if function.startswith("CrossEntropyLoss"):
        method = "loss_and_grad" if function.endswith("loss_and_grad") else "__call__"
        return set(inspect.signature(fastsce.CrossEntropyLoss).parameters) | set(
            inspect.signature(getattr(fastsce.CrossEntropyLoss, method)).parameters
        )
    return set(inspect.signature(getattr(fastsce, function)).parameters)


#: the options beyond PyTorch's and their bad values (_helpers)
EXTRA_SCALAR_OPTIONS = BAD_EXTRA_OPTIONS
EXTRA_CASES = [
    (f, name, value, exc)
    for f in LOSS_FUNCTIONS
    for name, bad in EXTRA_SCALAR_OPTIONS.items()
    for value, exc in bad
]


@pytest.mark.parametrize("function, name, value, exception", EXTRA_CASES, ids=short_id)
@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_bad_extra_scalar_option(function, name, value, exception, kind):
    assert name in parameters(function), (function, name)
    arguments = valid_arguments(function, kind)
    arguments[name] = value
    expect_call_error(exception, name, function, arguments)


EXTRA_OUTS = {"lse_out": np.float64, "argmax_out": np.int64}


@pytest.mark.parametrize("function", LOSS_FUNCTIONS)
@pytest.mark.parametrize("name", list(EXTRA_OUTS))
@pytest.mark.parametrize(
    "bad, exception",
    [
        ("wrong dtype", TypeError),
        ("wrong shape", ValueError),
        ("read-only", ValueError),
        ("strided", ValueError),
        ("overlaps logits", ValueError),
        ("list", TypeError),
    ],
)
def test_bad_extra_per_row_out(function, name, bad, exception):
    assert name in parameters(function), (function, name)
    arguments = valid_arguments(function, "hard")
    dtype = EXTRA_OUTS[name]
    if bad == "wrong dtype":
        out = np.zeros(N_ROWS, np.float32 if dtype == np.float64 else np.int32)
    elif bad == "wrong shape":
        out = np.zeros(N_ROWS + 1, dtype)
    elif bad == "read-only":
        out = np.zeros(N_ROWS, dtype)
        out.flags.writeable = False
    elif bad == "strided":
        out = np.zeros(2 * N_ROWS, dtype)[::2]
    elif bad == "overlaps logits":
        out = arguments["logits"].reshape(-1)[:N_ROWS].view(dtype)
    else:
        out = [0] * N_ROWS
    arguments[name] = out
    expect_call_error(exception, name, function, arguments)


# ---------------------------------------------------------------------------
# numpy.ma.MaskedArray: its mask would be ignored, so it is refused


def masked(values):
    return np.ma.masked_array(values, mask=np.zeros(np.shape(values), bool))


MASKED_ARGUMENTS = [
    ("softmax", {"x": masked(np.zeros(SHAPE))}, "x"),
    ("log_softmax", {"x": masked(np.zeros(SHAPE))}, "x"),
    ("logsumexp", {"x": masked(np.zeros(SHAPE))}, "x"),
    ("softmax_jacobian", {"s": masked(np.full(SHAPE, 0.25))}, "s"),
    ("softmax_backward", {"grad_s": masked(np.zeros(SHAPE)), "s": np.full(SHAPE, 0.25)}, "grad_s"),
    (
        "log_softmax_backward",
        {"grad_out": np.zeros(SHAPE), "log_s": masked(np.zeros(SHAPE))},
        "log_s",
    ),
    ("softmax", {"x": np.zeros(SHAPE), "out": masked(np.zeros(SHAPE))}, "out"),
    (
        "cross_entropy",
        {"logits": masked(np.zeros(SHAPE)), "target": np.zeros(SHAPE[0], int)},
        "logits",
    ),
    (
        "cross_entropy",
        {"logits": np.zeros(SHAPE), "target": masked(np.zeros(SHAPE[0], int))},
        "target",
    ),
    (
        "cross_entropy",
        {"logits": np.zeros(SHAPE), "target": masked(np.full(SHAPE, 0.25))},
        "target",
    ),
    (
        "cross_entropy",
        {
            "logits": np.zeros(SHAPE),
            "target": np.zeros(SHAPE[0], int),
            "weight": masked(np.ones(SHAPE[1])),
        },
        "weight",
    ),
    (
        "cross_entropy_with_grad",
        {
            "logits": np.zeros(SHAPE),
            "target": np.zeros(SHAPE[0], int),
            "out": masked(np.zeros(SHAPE)),
        },
        "out",
    ),
]


@pytest.mark.parametrize("function, arguments, name", MASKED_ARGUMENTS)
def test_masked_arrays_are_a_type_error_naming_the_argument(function, arguments, name):
    with pytest.raises(TypeError, match=rf"`{name}` is a numpy\.ma\.MaskedArray") as error:
        getattr(fastsce, function)(**arguments)
    assert "np.ma.filled" in str(error.value)


def test_masked_class_weight_is_a_type_error_at_construction():
    with pytest.raises(TypeError, match=r"`weight` is a numpy\.ma\.MaskedArray"):
        fastsce.CrossEntropyLoss(weight=masked(np.ones(3)))


def test_class_weight_is_copied_at_construction():
    """Changing the caller's weight afterwards (a NaN included) changes nothing."""
    weight = np.array([1.0, 2.0, 0.5])
    criterion = fastsce.CrossEntropyLoss(weight=weight)
    x = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    target = np.array([1, 2])
    before = criterion(x, target)
    weight[1] = np.nan
    after = criterion(x, target)
    assert after == before and np.isfinite(after)
    assert before == fastsce.cross_entropy(x, target, weight=[1.0, 2.0, 0.5])
    assert not criterion.options.weight.flags.writeable


# ---------------------------------------------------------------------------
# CrossEntropyLoss validates its options at construction

CONSTRUCTION_CASES = [
    ({"reduction": "avg"}, ValueError, "reduction"),
    ({"reduction": None}, ValueError, "reduction"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
    ({"label_smoothing": np.nan}, ValueError, "label_smoothing"),
    ({"label_smoothing": "0.1"}, TypeError, "label_smoothing"),
    ({"ignore_index": 1.5}, TypeError, "ignore_index"),
    ({"ignore_index": None}, TypeError, "ignore_index"),
    ({"ignore_index": 2**63}, ValueError, "ignore_index"),
    ({"weight": [1.0, np.nan]}, ValueError, "weight"),
    ({"weight": [[1.0, 2.0]]}, ValueError, "weight"),
    ({"weight": np.ones(2, complex)}, TypeError, "weight"),
    ({"z_loss": [0.1]}, TypeError, "z_loss"),
] + [
    ({name: value}, exception, name)
    for name, bad in EXTRA_SCALAR_OPTIONS.items()
    for value, exception in bad
]


@pytest.mark.parametrize(
    "options, exception, name",
    CONSTRUCTION_CASES,
    ids=[repr(options) for options, _, _ in CONSTRUCTION_CASES],
)
def test_class_validates_options_at_construction(options, exception, name):
    with pytest.raises(exception, match=f"`{name}`") as info:
        fastsce.CrossEntropyLoss(**options)
    assert type(info.value) is exception


# ---------------------------------------------------------------------------
# the options beyond PyTorch's with lse_out / argmax_out: nothing written on error


def raises_naming(exception, name, func, *args, **kwargs):
    values = list(args) + list(kwargs.values())
    copies = snapshot(*values)
    with pytest.raises(exception, match=f"`{name}`") as info:
        func(*args, **kwargs)
    assert type(info.value) is exception, f"{type(info.value).__name__}: {info.value}"
    assert_unchanged(values, copies)


def error_call_arrays():
    logits = make_logits((4, 3), np.float64)
    target = np.array([0, 1, 2, -100])
    return {
        "logits": logits,
        "target": target,
        "out": np.full((4, 3), 5.0),
        "lse_out": np.full(4, 6.0),
        "argmax_out": np.full(4, 7, np.int64),
    }


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(
    "option, value, exception",
    [(name, value, exc) for name, bad in BAD_EXTRA_OPTIONS.items() for value, exc in bad],
)
def test_bad_option_values(option, value, exception, function):
    arrays = error_call_arrays()
    kwargs = {"lse_out": arrays["lse_out"], "argmax_out": arrays["argmax_out"]}
    if function == "cross_entropy_with_grad":
        kwargs["out"] = arrays["out"]
    raises_naming(
        exception,
        option,
        getattr(fastsce, function),
        arrays["logits"],
        arrays["target"],
        **kwargs,
        **{option: value},
    )


def bad_outputs():
    """(argument, bad array, exception) for lse_out (float64) and argmax_out (int64)."""
    cases = []
    for name, dtype, wrong_dtypes in [
        ("lse_out", np.float64, [np.float32, np.int64, np.complex128]),
        ("argmax_out", np.int64, [np.int32, np.uint64, np.float64]),
    ]:
        for wrong in wrong_dtypes:
            cases.append((name, f"dtype-{np.dtype(wrong).name}", np.zeros(4, wrong), TypeError))
        cases.append((name, "list", [0, 0, 0, 0], TypeError))
        cases.append((name, "shape-3", np.zeros(3, dtype), ValueError))
        cases.append((name, "shape-4x1", np.zeros((4, 1), dtype), ValueError))
        cases.append((name, "shape-0d", np.zeros((), dtype), ValueError))
        cases.append((name, "strided", np.zeros(8, dtype)[::2], ValueError))
        readonly = np.zeros(4, dtype)
        readonly.flags.writeable = False
        cases.append((name, "readonly", readonly, ValueError))
    return cases


BAD_OUTPUTS = bad_outputs()


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad", "class"])
@pytest.mark.parametrize(
    "name, bad, exception",
    [c[::2] + c[3:] for c in BAD_OUTPUTS],
    ids=[f"{c[0]}-{c[1]}" for c in BAD_OUTPUTS],
)
def test_bad_lse_or_argmax_out(name, bad, exception, function):
    arrays = error_call_arrays()
    kwargs = {"lse_out": arrays["lse_out"], "argmax_out": arrays["argmax_out"]}
    kwargs[name] = bad
    if function == "class":
        call = fastsce.CrossEntropyLoss(z_loss=0.1, softcap=3.0).loss_and_grad
        kwargs["out"] = arrays["out"]
    else:
        call = getattr(fastsce, function)
        if function == "cross_entropy_with_grad":
            kwargs["out"] = arrays["out"]
    raises_naming(exception, name, call, arrays["logits"], arrays["target"], **kwargs)


@pytest.mark.parametrize("name", ["lse_out", "argmax_out"])
def test_outputs_overlapping_an_input_are_a_value_error(name):
    arrays = error_call_arrays()
    logits = arrays["logits"]
    target = arrays["target"]
    overlapping = logits.reshape(-1)[:4] if name == "lse_out" else target
    kwargs = {name: overlapping}
    raises_naming(
        ValueError,
        name,
        fastsce.cross_entropy_with_grad,
        logits,
        target,
        out=arrays["out"],
        **kwargs,
    )


def test_bad_class_index_writes_no_output():
    arrays = error_call_arrays()
    target = np.array([0, 1, 3, -100])  # 3 is out of range
    raises_naming(
        ValueError,
        "target",
        fastsce.cross_entropy_with_grad,
        arrays["logits"],
        target,
        out=arrays["out"],
        lse_out=arrays["lse_out"],
        argmax_out=arrays["argmax_out"],
        softcap=2.0,
        z_loss=0.1,
    )


# ---------------------------------------------------------------------------
# the documented errors one by one: exact type, the message, nothing written


def raises_and_writes_nothing(exception, match, func, *args, exact=True, **kwargs):
    """Call func, expect exactly `exception` (a subclass if not `exact`) with a message
    matching `match`, and check that no array argument (out= included) changed."""
    values = list(args) + list(kwargs.values())
    copies = snapshot(*values)
    with pytest.raises(exception, match=match) as info:
        func(*args, **kwargs)
    if exact:
        assert type(info.value) is exception, f"{type(info.value).__name__}: {info.value}"
    assert_unchanged(values, copies)
    return info


def logits_and_target(shape=(4, 3), dtype=np.float64):
    logits = make_logits(shape, dtype)
    target = np.arange(int(np.prod(shape[:-1]))).reshape(shape[:-1]) % shape[-1]
    return logits, target


# Each public function called with one "logits-like" argument x; the second column is
# the name its messages use for x.
def _target_for(x):
    return np.zeros(np.shape(x)[:-1], np.int64)


X_FUNCTIONS = {
    "softmax": ("x", lambda x: fastsce.softmax(x)),
    "log_softmax": ("x", lambda x: fastsce.log_softmax(x)),
    "logsumexp": ("x", lambda x: fastsce.logsumexp(x)),
    "cross_entropy": ("logits", lambda x: fastsce.cross_entropy(x, _target_for(x))),
    "cross_entropy_with_grad": (
        "logits",
        lambda x: fastsce.cross_entropy_with_grad(x, _target_for(x)),
    ),
    "softmax_jacobian": ("s", lambda x: fastsce.softmax_jacobian(x)),
    "softmax_backward(s)": ("s", lambda x: fastsce.softmax_backward(np.ones(np.shape(x)), x)),
}
DTYPE_ONLY_FUNCTIONS = {
    "softmax_backward(grad_s)": (
        "grad_s",
        lambda x: fastsce.softmax_backward(x, np.ones(np.shape(x))),
    ),
}


# ---------------------------------------------------------------------------
# TypeError: non-numeric logits


NON_NUMERIC = {
    "complex": np.array([[1 + 2j, 0.5], [0, 1]]),
    "complex64": np.ones((2, 3), np.complex64),
    "object": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object),
    "str": np.array([["a", "b"], ["c", "d"]]),
    "bytes": np.array([[b"a", b"b"]]),
    "bool": np.array([[True, False], [False, True]]),
    "bool_list": [[True, False, True]],
    "datetime": np.array([["2020-01-01", "2021-01-01"]], dtype="datetime64[D]"),
    "str_list": [["1.0", "2.0"]],
}


@pytest.mark.parametrize("kind", list(NON_NUMERIC))
@pytest.mark.parametrize("function", list(X_FUNCTIONS) + list(DTYPE_ONLY_FUNCTIONS))
def test_non_numeric_input_is_a_type_error(function, kind):
    name, call = {**X_FUNCTIONS, **DTYPE_ONLY_FUNCTIONS}[function]
    raises_and_writes_nothing(TypeError, f"`{name}`", call, NON_NUMERIC[kind])


# ---------------------------------------------------------------------------
# ValueError: no class axis, zero classes


@pytest.mark.parametrize(
    "value",
    [np.float64(1.5), np.array(2.0), 3.0, np.float32(1), 7],
    ids=["np.float64", "0d array", "float", "np.float32", "int"],
)
@pytest.mark.parametrize("function", list(X_FUNCTIONS))
def test_0d_input_is_a_value_error(function, value):
    name, call = X_FUNCTIONS[function]
    raises_and_writes_nothing(ValueError, f"`{name}`.*0-d", call, value)


# ---------------------------------------------------------------------------
# target


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(
    "target",
    [
        np.array([0.0, 1.0, 2.0, 1.0]),  # float class indices
        np.array([0.0, 1.0, 2.0, 1.0], np.float32),
        np.full((4, 2), 0.5),  # probabilities of the wrong shape
        np.full((4, 3, 1), 0.5),
        np.full((3,), 1 / 3),
        [0.0, 1.0, 2.0, 1.0],  # a list of floats
        np.array([True, False, True, True]),  # not numbers at all
        np.array(["a"] * 4),
        np.array([1j, 0, 0, 0]),
    ],
    ids=[
        "float64 indices",
        "float32 indices",
        "(4, 2)",
        "(4, 3, 1)",
        "(3,)",
        "float list",
        "bool",
        "str",
        "complex",
    ],
)
def test_target_neither_indices_nor_probabilities_is_a_type_error(function, target):
    """Floats not of the logits' shape, and non-numbers: TypeError naming `target`."""
    logits, _ = logits_and_target()
    raises_and_writes_nothing(TypeError, "`target`", getattr(fastsce, function), logits, target)


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(
    "logits_shape, target_shape",
    [
        ((4, 3), (3,)),
        ((4, 3), (4, 1)),
        ((4, 3), (1, 4)),
        ((4, 3), (4, 3)),
        ((4, 3), ()),
        ((4, 3), (5,)),
        ((2, 4, 3), (8,)),
        ((2, 4, 3), (4, 2)),
        ((3,), (1,)),
        ((3,), (3,)),
    ],
)
def test_class_index_target_of_the_wrong_shape_is_a_value_error(
    function, logits_shape, target_shape
):
    logits = make_logits(logits_shape, np.float64)
    target = np.zeros(target_shape, np.int64)
    raises_and_writes_nothing(
        ValueError, "`target`.*shape", getattr(fastsce, function), logits, target
    )


BAD_INDICES = [-1, 3, 4, 10**9, np.iinfo(np.int64).min, np.iinfo(np.int64).max]


@pytest.mark.parametrize("bad", BAD_INDICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_index_out_of_range_is_a_value_error_and_writes_nothing(bad, dtype):
    logits, target = logits_and_target((4, 3), dtype)
    target[2] = bad
    pattern = rf"`target`.*{bad}"
    raises_and_writes_nothing(ValueError, pattern, fastsce.cross_entropy, logits, target)
    for reduction in ["mean", "sum", "none"]:
        # into a buffer, then in place: the logits themselves must survive
        for out in (np.full(logits.shape, 42.0, dtype), logits):
            raises_and_writes_nothing(
                ValueError,
                pattern,
                fastsce.cross_entropy_with_grad,
                logits,
                target,
                reduction=reduction,
                out=out,
            )


@pytest.mark.parametrize("bad", [2**63, 2**63 + 5, 2**64 - 1])
def test_uint64_class_index_above_int64_is_a_value_error(bad):
    logits, target = logits_and_target((2, 2, 3))
    target = target.astype(np.uint64)
    target[1, 0] = bad
    out = np.full(logits.shape, -7.0)
    raises_and_writes_nothing(
        ValueError, rf"`target`.*{bad}", fastsce.cross_entropy_with_grad, logits, target, out=out
    )
    raises_and_writes_nothing(
        ValueError, rf"`target`.*{bad}", fastsce.cross_entropy, logits, target
    )


@pytest.mark.parametrize("target_dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint32])
def test_out_of_range_in_small_integer_dtypes(target_dtype):
    logits, target = logits_and_target((5, 3))
    target = target.astype(target_dtype)
    target[4] = 100
    raises_and_writes_nothing(ValueError, "`target`.*100", fastsce.cross_entropy, logits, target)


def test_out_of_range_scalar_target_of_1d_logits():
    logits = make_logits((3,), np.float64)
    out = np.full(3, 9.0)
    raises_and_writes_nothing(
        ValueError, "`target`.*3", fastsce.cross_entropy_with_grad, logits, 3, out=out
    )
    raises_and_writes_nothing(ValueError, "`target`.*-1", fastsce.cross_entropy, logits, -1)


def test_ignore_index_is_the_only_out_of_range_index_allowed():
    logits, target = logits_and_target()
    target[1] = -100
    fastsce.cross_entropy(logits, target)  # default ignore_index
    target[1] = 3
    fastsce.cross_entropy(logits, target, ignore_index=3)  # ignore_index == C
    raises_and_writes_nothing(ValueError, "`target`.*3", fastsce.cross_entropy, logits, target)
    target[1] = -100  # no longer the ignore_index
    raises_and_writes_nothing(
        ValueError, "`target`.*-100", fastsce.cross_entropy, logits, target, ignore_index=-1
    )


# ---------------------------------------------------------------------------
# options


#: (option, value) pairs out of range: a weight not of shape (C,), a smoothing outside [0, 1]
OUT_OF_RANGE = [
    ("weight", weight)
    for weight in [
        np.ones(2),
        np.ones(4),
        np.ones((1, 3)),
        np.ones((3, 1)),
        np.float64(1.0),
        [1.0, 2.0],
        np.ones(0),
    ]
] + [
    ("label_smoothing", eps)
    for eps in [-0.1, -1e-300, 1.0000001, 2, np.nan, np.inf, -np.inf, np.float32(1.5)]
]


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(
    "option, value",
    OUT_OF_RANGE,
    ids=[
        f"{name}={np.shape(value) if name == 'weight' else value!r}" for name, value in OUT_OF_RANGE
    ],
)
@pytest.mark.parametrize("soft", [False, True])
def test_option_out_of_range_is_a_value_error(function, option, value, soft):
    logits, target = logits_and_target()
    if soft:
        target = np.full(logits.shape, 1 / 3)
    raises_and_writes_nothing(
        ValueError, f"`{option}`", getattr(fastsce, function), logits, target, **{option: value}
    )


@pytest.mark.parametrize("label_smoothing", [0, 0.0, 1, 1.0, np.float32(0.5)])
def test_label_smoothing_bounds_are_allowed(label_smoothing):
    logits, target = logits_and_target()
    assert np.isfinite(fastsce.cross_entropy(logits, target, label_smoothing=label_smoothing))


# ---------------------------------------------------------------------------
# out=


def out_calls():
    """{name: call(x, out)} for every function taking out=."""
    return {
        "softmax": lambda x, out: fastsce.softmax(x, out=out),
        "log_softmax": lambda x, out: fastsce.log_softmax(x, out=out),
        "softmax_axis0": lambda x, out: fastsce.softmax(x, axis=0, out=out),
        "cross_entropy_with_grad": lambda x, out: fastsce.cross_entropy_with_grad(
            x, np.zeros(x.shape[:-1], np.int64), out=out
        ),
        "cross_entropy_with_grad_soft": lambda x, out: fastsce.cross_entropy_with_grad(
            x, np.full(x.shape, 0.25), out=out
        ),
    }


OUT_FUNCTIONS = list(out_calls())


@pytest.mark.parametrize("function", OUT_FUNCTIONS)
@pytest.mark.parametrize("out_shape", [(4, 3), (3, 4, 1), (12,), (3, 5), (1, 3, 4), ()], ids=str)
def test_out_of_the_wrong_shape_is_a_value_error(function, out_shape):
    x = make_logits((3, 4), np.float64)
    raises_and_writes_nothing(ValueError, "`out`", out_calls()[function], x, np.zeros(out_shape))


@pytest.mark.parametrize("function", OUT_FUNCTIONS)
def test_read_only_out_is_a_value_error(function):
    x = make_logits((3, 4), np.float64)
    out = np.zeros((3, 4))
    out.flags.writeable = False
    raises_and_writes_nothing(ValueError, "`out`", out_calls()[function], x, out)


@pytest.mark.parametrize("function", OUT_FUNCTIONS)
@pytest.mark.parametrize("layout", ["F", "strided_cols", "strided_rows", "negative_strides"])
def test_out_not_c_contiguous_is_a_value_error(function, layout):
    x = make_logits((3, 4), np.float64)
    out = {
        "F": lambda: np.zeros((4, 3)).T,
        "strided_cols": lambda: np.zeros((3, 8))[:, ::2],
        "strided_rows": lambda: np.zeros((6, 4))[::2],
        "negative_strides": lambda: np.zeros((3, 4))[::-1],
    }[layout]()
    raises_and_writes_nothing(ValueError, "`out`", out_calls()[function], x, out)


def test_out_not_an_array_is_a_type_error():
    x = make_logits((3, 4), np.float64)
    raises_and_writes_nothing(TypeError, "`out`", fastsce.softmax, x, out=[[0.0] * 4] * 3)


@pytest.mark.parametrize("function", OUT_FUNCTIONS)
def test_out_as_the_transpose_of_the_input_is_a_value_error(function):
    x = np.asfortranarray(make_logits((4, 4), np.float64))
    raises_and_writes_nothing(ValueError, "`out`", out_calls()[function], x, x.T)


@pytest.mark.parametrize("function", OUT_FUNCTIONS)
def test_out_as_a_float_view_of_integer_input_is_a_value_error(function):
    """Integer logits are computed in float64: out=x.view(float64) is the same memory
    with another meaning, not the logits themselves, so it must not be written."""
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    raises_and_writes_nothing(ValueError, "`out`", out_calls()[function], x, x.view(np.float64))


def test_out_overlapping_the_class_indices_is_a_value_error():
    logits = make_logits((3, 4), np.float64)
    out = np.zeros((3, 4))
    target = out.view(np.int64)[:, 0]  # zeros: valid class indices, stored inside out
    raises_and_writes_nothing(
        ValueError,
        "`out` overlaps `target`",
        fastsce.cross_entropy_with_grad,
        logits,
        target,
        out=out,
    )


def test_out_equal_to_an_input_is_allowed_only_for_the_logits():
    logits, _target = logits_and_target((3, 4))
    expected = fastsce.softmax(logits)
    x = logits.copy()
    assert fastsce.softmax(x, out=x) is x
    np.testing.assert_array_equal(x, expected)
    # a copy of the logits used as soft target may not be out
    s = fastsce.softmax(logits)
    raises_and_writes_nothing(
        ValueError, "`out` overlaps `target`", fastsce.cross_entropy_with_grad, logits, s, out=s
    )


# ---------------------------------------------------------------------------
# softmax_backward, axis, temperature, ignore_index, threads


@pytest.mark.parametrize("grad_shape", [(3, 5), (4, 5), (4,), (2, 4, 4), (4, 4, 1)], ids=str)
def test_softmax_backward_shape_mismatch_is_a_value_error(grad_shape):
    s = fastsce.softmax(make_logits((4, 4), np.float64))
    raises_and_writes_nothing(
        ValueError, "`grad_s`", fastsce.softmax_backward, np.ones(grad_shape), s
    )


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [2, -3, 10])
def test_axis_out_of_range_is_a_value_error(function, axis):
    x = make_logits((3, 4), np.float64)
    # numpy's AxisError, a ValueError subclass
    raises_and_writes_nothing(
        ValueError, "axis", getattr(fastsce, function), x, axis=axis, exact=False
    )


@pytest.mark.parametrize(
    "weight, exception",
    [
        ([1.0, np.nan, 1.0], ValueError),
        ([1.0, np.inf, 1.0], ValueError),
        (np.ones(3, complex), TypeError),
        (["a", "b", "c"], TypeError),
    ],
)
def test_non_finite_or_non_numeric_weight(weight, exception):
    logits, target = logits_and_target()
    raises_and_writes_nothing(
        exception,
        "`weight`",
        fastsce.cross_entropy_with_grad,
        logits,
        target,
        weight=weight,
        out=np.zeros_like(logits),
    )


@pytest.mark.parametrize(
    "n_threads, exception",
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
@pytest.mark.usefixtures("restore_threads")
def test_bad_thread_count(n_threads, exception):
    before = fastsce.get_num_threads()
    with pytest.raises(exception, match="`n_threads`"):
        fastsce.set_num_threads(n_threads)
    assert fastsce.get_num_threads() == before


# ---------------------------------------------------------------------------
# messages that point at the fix


def test_positions_are_plain_integers():
    with pytest.raises(ValueError) as info:
        fastsce.cross_entropy(np.zeros((2, 3, 4)), np.array([[0, 1, 2], [0, 1, 7]]))
    assert "class index 7 at position (1, 2)," in str(info.value)
    assert "np.int64" not in str(info.value)


def test_transposed_logits_are_suggested():
    """Logits given as (C, N) with N labels: the target is not to blame."""
    logits = make_logits((4, 6), np.float64)  # 6 rows of 4 classes, passed transposed
    with pytest.raises(ValueError) as info:
        fastsce.cross_entropy(logits, np.arange(6) % 4)
    message = str(info.value)
    assert "`target` of class indices must have shape (4,), got (6,)" in message
    assert "class axis last" in message and "did you mean logits.T?" in message


def test_a_column_of_indices_is_told_to_ravel():
    logits = make_logits((6, 4), np.float64)
    with pytest.raises(ValueError, match=r"target\.ravel\(\)") as info:
        fastsce.cross_entropy_with_grad(logits, np.zeros((6, 1), np.int64))
    assert "`target`" in str(info.value)


def test_other_shape_mismatches_say_that_the_class_axis_is_last():
    with pytest.raises(ValueError, match="class axis last") as info:
        fastsce.cross_entropy(make_logits((2, 3, 4), np.float64), np.zeros(5, np.int64))
    assert "logits (2, 3, 4) and 5 targets" in str(info.value)
    assert "logits.T" not in str(info.value)


class NAType:
    """Stands for pandas.NA (what np.asarray of a nullable integer column holds in
    pandas before 3.0; from 3.0 on it is a float NaN)."""


@pytest.mark.parametrize(
    "target",
    [
        np.array([0, None, 1], dtype=object),
        np.array([0, NAType(), 1], dtype=object),
        np.array([0.0, np.nan, 1.0]),
    ],
    ids=["None in an object array", "NA in an object array", "NaN in floats"],
)
def test_targets_with_missing_values_say_so(target):
    with pytest.raises(TypeError, match="`target` has missing values"):
        fastsce.cross_entropy(make_logits((3, 4), np.float64), target)


def test_positional_out_of_loss_and_grad_is_deprecated_but_works():
    logits, target = logits_and_target((4, 3))
    criterion = fastsce.CrossEntropyLoss()
    out = np.empty((4, 3))
    with pytest.warns(DeprecationWarning, match="out=") as record:
        loss, grad = criterion.loss_and_grad(logits, target, out)
    assert len(record) == 1 and grad is out
    assert (loss, grad.tolist()) == (
        criterion.loss_and_grad(logits, target, out=np.empty((4, 3)))[0],
        fastsce.cross_entropy_with_grad(logits, target)[1].tolist(),
    )
    with pytest.raises(TypeError, match="`out` once"):
        criterion.loss_and_grad(logits, target, out, out=out)
