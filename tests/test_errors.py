"""Every error of README "Errors": exact exception type, a message naming the
argument, and nothing written: out= and every input are unchanged afterwards."""

import numpy as np
import pytest

import fastsce
from _helpers import BAD_EXTRA_OPTIONS, assert_unchanged, make_logits, snapshot


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


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 0), (2, 3, 0)], ids=str)
@pytest.mark.parametrize("function", list(X_FUNCTIONS))
def test_zero_classes_is_a_value_error(function, shape):
    name, call = X_FUNCTIONS[function]
    raises_and_writes_nothing(ValueError, f"`{name}`.*zero classes", call, np.zeros(shape))


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


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", "none ", None, "batchmean"])
def test_unknown_reduction_is_a_value_error(function, reduction):
    logits, target = logits_and_target()
    raises_and_writes_nothing(
        ValueError, "`reduction`", getattr(fastsce, function), logits, target, reduction=reduction
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
@pytest.mark.parametrize("shift", [1, 4, 11])
def test_out_overlapping_the_input_is_a_value_error(function, shift):
    """out and x are C-contiguous views of one buffer, `shift` elements apart."""
    buffer = make_logits((30,), np.float64)
    x = buffer[:12].reshape(3, 4)
    out = buffer[shift : shift + 12].reshape(3, 4)
    raises_and_writes_nothing(ValueError, "`out` overlaps", out_calls()[function], x, out)


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


def test_out_overlapping_the_soft_target_is_a_value_error():
    logits = make_logits((3, 4), np.float64)
    buffer = np.full((3, 4), 0.25)
    raises_and_writes_nothing(
        ValueError,
        "`out` overlaps `target`",
        fastsce.cross_entropy_with_grad,
        logits,
        buffer,
        out=buffer,
    )
    buffer2 = np.full((6, 4), 0.25)
    raises_and_writes_nothing(
        ValueError,
        "`out` overlaps `target`",
        fastsce.cross_entropy_with_grad,
        logits,
        buffer2[::2],
        out=buffer2[2:5],
    )


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


def test_out_overlapping_the_weight_is_a_value_error():
    logits, target = logits_and_target((3, 4))
    out = np.ones((3, 4))
    raises_and_writes_nothing(
        ValueError,
        "`out` overlaps `weight`",
        fastsce.cross_entropy_with_grad,
        logits,
        target,
        weight=out[1],
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


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("temperature, exception", BAD_EXTRA_OPTIONS["temperature"])
def test_bad_temperature(function, temperature, exception):
    x = make_logits((3, 4), np.float64)
    raises_and_writes_nothing(
        exception, "`temperature`", getattr(fastsce, function), x, temperature=temperature
    )


@pytest.mark.parametrize(
    "ignore_index, exception",
    [
        (1.5, TypeError),
        ("0", TypeError),
        (True, TypeError),
        (None, TypeError),
        (2**63, ValueError),
        (-(2**63) - 1, ValueError),
    ],
)
def test_bad_ignore_index(ignore_index, exception):
    logits, target = logits_and_target()
    raises_and_writes_nothing(
        exception,
        "`ignore_index`",
        fastsce.cross_entropy,
        logits,
        target,
        ignore_index=ignore_index,
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
