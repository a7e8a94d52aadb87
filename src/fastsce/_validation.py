"""Input checking and coercion shared by the public functions.

Every public function calls these before any kernel runs, so a call that
raises has written nothing.  Rules (docs/DESIGN.md): float32/float64 are computed
in their own dtype, float16 and bfloat16 (ml_dtypes') in float32, longdouble in
float64, integers are promoted to float64; bool, complex, object, string and
datetime inputs raise TypeError; shape problems raise ValueError.  Arrays are
coerced without a copy whenever the kernels can read them as they are (rows
contiguous, native byte order, aligned); otherwise one copy is made.  The loss
kernels read 16-bit logits as they are (as_logits_array); other kernels get a
float32 copy.  bfloat16 is recognised by its dtype's name: ml_dtypes is never
imported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

#: the values of the `reduction` option
Reduction = Literal["mean", "sum", "none"]

FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


def is_bfloat16(dtype: np.dtype[Any]) -> bool:
    """ml_dtypes.bfloat16 (a 2-byte dtype of kind "V" named so), without importing it."""
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def is_16_bit_float(dtype: np.dtype[Any]) -> bool:
    """float16 or bfloat16: logits the loss kernels read as they are."""
    return dtype == FLOAT16 or is_bfloat16(dtype)


def float_dtype_for(dtype: np.dtype[Any], name: str) -> np.dtype[Any]:
    """The dtype a kernel computes in for input `dtype`, or TypeError."""
    if dtype.kind == "f":
        return FLOAT32 if dtype.itemsize <= 4 else FLOAT64
    if dtype.kind in "iu":
        return FLOAT64
    if is_bfloat16(dtype):
        return FLOAT32
    raise TypeError(f"`{name}` must hold real numbers (float or integer), got dtype {dtype}")


def as_array(value: object, name: str) -> npt.NDArray[Any]:
    """np.asarray(value), with numpy's error for a ragged nested sequence naming `name`.

    A numpy.ma.MaskedArray is a TypeError: np.asarray would drop its mask silently,
    and whether a masked logit means a masked class (-inf) or a missing value is the
    caller's choice to spell out.
    """
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(masked_array_message(name))
    try:
        return np.asarray(value)
    except ValueError as error:
        raise ValueError(f"`{name}` is not a rectangular array: {error}") from None


def masked_array_message(name: str) -> str:
    return (
        f"`{name}` is a numpy.ma.MaskedArray, whose mask fastsce would ignore; pass "
        f"np.ma.filled({name}, -np.inf) to make masked logits masked classes, or "
        f"{name}.data to drop the mask"
    )


def as_float_array(
    value: object, name: str, dtype: np.dtype[Any] | None = None
) -> npt.NDArray[np.floating[Any]]:
    """`value` as a float32/float64 ndarray (the compute dtype, or `dtype`)."""
    array = value if type(value) is np.ndarray else as_array(value, name)
    current = array.dtype
    if dtype is None and (current is FLOAT32 or current is FLOAT64):
        return array  # the common case, kept cheap for small calls
    wanted = float_dtype_for(current, name)
    if dtype is not None:
        wanted = dtype
    if current is not wanted and current != wanted:
        array = array.astype(wanted)
    return array


def as_logits_array(value: object, name: str) -> npt.NDArray[Any]:
    """Like as_float_array, but float16 and bfloat16 arrays are kept as they are (the
    loss kernels widen them to float32 a row at a time)."""
    array = value if type(value) is np.ndarray else as_array(value, name)
    dtype = array.dtype
    if dtype is not FLOAT32 and dtype is not FLOAT64 and is_16_bit_float(dtype):
        return array
    return as_float_array(array, name)


def as_rows(array: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    """2-D view (n_rows, n_classes) of `array` (classes last) with contiguous rows."""
    shape = array.shape
    n_classes = check_class_axis(shape, name)
    rows = array if len(shape) == 2 else array.reshape(-1, n_classes)
    itemsize = rows.itemsize
    strides = rows.strides
    if (
        (n_classes > 1 and strides[1] != itemsize)
        or strides[0] % itemsize
        or not rows.flags.aligned
    ):
        rows = np.ascontiguousarray(rows)
    return rows


def check_class_axis(shape: tuple[int, ...], name: str) -> int:
    """The class count of an array of this shape (class axis last); ValueError for a 0-d
    shape or zero classes."""
    if not shape:
        raise ValueError(f"`{name}` must have a class axis, got a 0-d array")
    if shape[-1] == 0:
        raise ValueError(f"`{name}` has zero classes (shape {shape})")
    return shape[-1]


def as_contiguous_rows(array: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    """Like as_rows, but C-contiguous (for arrays read alongside the logits)."""
    rows = as_rows(array, name)
    return rows if rows.flags.c_contiguous else np.ascontiguousarray(rows)


def check_reduction(reduction: object) -> None:
    if not isinstance(reduction, str) or reduction not in ("mean", "sum", "none"):
        raise ValueError(f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}")


def real_number(value: object, name: str) -> float:
    """`value` as a Python float, TypeError if it is not a real number."""
    if type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"`{name}` is out of the float range, got {value!r}") from None


#: the largest 1 / temperature a kernel can use, by compute dtype itemsize
MAX_INVERSE_TEMPERATURE = {4: float(np.finfo(np.float32).max), 8: float(np.finfo(np.float64).max)}


#: the smallest 1 / temperature that does not round to 0 in float32 (half the smallest
#: subnormal rounds to 0; in float64, 1 / temperature of a finite temperature never does)
MIN_INVERSE_TEMPERATURE_FLOAT32 = float(
    np.nextafter(np.float64(np.finfo(np.float32).smallest_subnormal) / 2, np.inf)
)


def check_inverse_temperature(inverse: float, dtype: np.dtype[Any]) -> None:
    """ValueError when 1 / temperature overflows the compute dtype, or rounds to 0 in
    float32: the kernels would compute 0 * inf = NaN for every row (float32: temperature
    below ~3e-39 or above ~7e44; float64: below ~6e-309)."""
    if inverse > MAX_INVERSE_TEMPERATURE[dtype.itemsize]:
        raise ValueError(
            f"`temperature` is too small for {dtype} (1 / temperature "
            f"overflows), got {1.0 / inverse!r}"
        )
    if dtype.itemsize == 4 and inverse < MIN_INVERSE_TEMPERATURE_FLOAT32:
        raise ValueError(
            f"`temperature` is too large for {dtype} (1 / temperature "
            f"rounds to 0), got {1.0 / inverse!r}"
        )


def check_temperature(temperature: object) -> float:
    value = real_number(temperature, "temperature")
    if not (0.0 < value < np.inf):
        raise ValueError(f"`temperature` must be positive and finite, got {temperature!r}")
    return value


def check_out(
    out: object,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    inputs: Iterable[tuple[str, object]],
    in_place_ok: object = None,
    name: str = "out",
    other_dtype: np.dtype[Any] | None = None,
) -> npt.NDArray[Any]:
    """Validate a caller's output buffer (the argument `name`).

    `inputs` are (name, value) pairs of the caller's original arguments: `out`
    may not share memory with any of them (writing it would modify an input),
    except that it may be exactly `in_place_ok` (same buffer, same layout) for
    an in-place result.  Its dtype must be `dtype`, or `other_dtype` when given.
    """
    if type(out) is not np.ndarray and not isinstance(out, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array, got {type(out).__name__}")
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(masked_array_message(name))
    if out.dtype is not dtype and out.dtype != dtype:
        if other_dtype is None:
            raise TypeError(f"`{name}` must have dtype {dtype}, got {out.dtype}")
        if out.dtype != other_dtype:
            raise TypeError(f"`{name}` must have dtype {dtype} or {other_dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {out.shape}")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError(f"`{name}` must be C-contiguous")
    if not flags.writeable:
        raise ValueError(f"`{name}` is read-only")
    for input_name, value in inputs:
        array: npt.NDArray[Any] | None
        if type(value) is np.ndarray or isinstance(value, np.ndarray):
            array = value
        else:
            array = _memory_of(value)
            if array is None:
                continue
        if not np.may_share_memory(out, array):
            continue
        if value is in_place_ok and same_buffer(out, array):
            continue
        raise ValueError(
            f"`{name}` overlaps `{input_name}`; pass a separate buffer"
            + (" or exactly that array for an in-place result" if in_place_ok is value else "")
        )
    return out


def _memory_of(value: object) -> npt.NDArray[Any] | None:
    """An ndarray over the memory of a non-ndarray input that may share it with `out`
    (a memoryview, an object with __array_interface__ or __array__), or None for values
    that cannot (None, Python scalars and strings, lists and tuples, which numpy copies)."""
    if value is None or isinstance(
        value, (int, float, complex, str, bytes, list, tuple, np.generic)
    ):
        return None
    try:
        return np.asarray(value)
    except Exception:  # not array-like: its own validation reports it
        return None


def same_buffer(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """True when a and b view exactly the same memory with the same layout and dtype."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )
