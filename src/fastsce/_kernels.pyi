"""Type stubs for the compiled kernels (_kernels.pyx and the files it includes).

The kernels trust their caller (fastsce._softmax, fastsce._loss), which
validates every array first; see the docstrings in the .pxi files for the
exact layout each argument needs.  The internal cdef class Workspace is left
out on purpose.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from fastsce._linear import LinearOperands
from fastsce._sharded import ColumnBlock

_Floats = npt.NDArray[np.floating[Any]]

def softmax(x: _Floats, inv_temperature: float, out: _Floats, n_threads: int) -> None: ...
def log_softmax(x: _Floats, inv_temperature: float, out: _Floats, n_threads: int) -> None: ...
def logsumexp(x: _Floats, inv_temperature: float, out: _Floats, n_threads: int) -> None: ...
def softmax_backward(grad_s: _Floats, s: _Floats, out: _Floats, n_threads: int) -> None: ...
def log_softmax_backward(
    grad_out: _Floats, log_s: _Floats, out: _Floats, n_threads: int
) -> None: ...
def softmax_jacobian(s: _Floats, out: _Floats, n_threads: int) -> None: ...
def simd_path() -> str: ...
def scratch_elements(n_classes: int, n_threads: int) -> int: ...
def cross_entropy(
    logits: _Floats,
    index: npt.NDArray[np.int64] | None,
    soft_target: _Floats | None,
    options: Any,  # fastsce._loss.LossOptions (validated)
    row_loss: npt.NDArray[np.float64] | None,
    grad: _Floats | None,
    row_lse: npt.NDArray[np.float64] | None,
    row_argmax: npt.NDArray[np.int64] | None,
    scratch: _Floats | None,
    n_threads: int,
) -> tuple[int, float]: ...
def small_call(
    logits: object,
    target: object,
    out: object,
    want_grad: bool,
    options: tuple[object, ...],
    lse_out: object,
    argmax_out: object,
) -> tuple[float, _Floats | None] | None: ...
def set_small_call_policy(
    max_work: int, row_cost_elements: int, threads_for: Callable[[int, int], int]
) -> None: ...
def xla_ffi_cross_entropy() -> object: ...  # a PyCapsule (types.CapsuleType)
def set_xla_threads(limit: int, parallel_min_elements: int, row_cost_elements: int) -> None: ...
def xla_threads_for(n_rows: int, n_elements: int) -> int: ...

LINEAR_CLASS_TILE: int

def load_blas(capi: dict[str, Any]) -> None: ...
def linear_cross_entropy(
    operands: LinearOperands,
    index: npt.NDArray[np.int64] | None,
    soft_target: _Floats | None,
    options: Any,  # fastsce._loss.LossOptions (validated)
    row_loss: npt.NDArray[np.float64],
    buffer: _Floats,
    grad_x: _Floats | None,
    grad_w: _Floats | None,
    grad_bias: npt.NDArray[np.float64] | None,
    n_threads: int,
) -> tuple[int, float]: ...
def linear_partials(
    operands: LinearOperands,
    index: npt.NDArray[np.int64] | None,
    soft_target: _Floats | None,
    options: Any,  # fastsce._loss.LossOptions (validated)
    buffers: _Floats,
    partials: npt.NDArray[np.float64],
) -> tuple[int, float]: ...
def reduced_loss(row_loss: npt.NDArray[np.float64], mean: bool, denominator: float) -> float: ...
def openmp_enabled() -> bool: ...
def openmp_max_threads() -> int: ...
def block_partials(
    block: ColumnBlock,
    options: Any,  # fastsce._loss.LossOptions (validated)
    partials: npt.NDArray[np.float64],
    n_threads: int,
) -> None: ...
def block_gradient(
    block: ColumnBlock,
    options: Any,  # fastsce._loss.LossOptions (validated)
    grad_scale: float,
    state: npt.NDArray[np.float64],  # fastsce._sharded.row_state of the loss
    out: _Floats,
    n_threads: int,
) -> None: ...
def block_softmax(
    x: _Floats,
    inv_temperature: float,
    log: bool,
    state: npt.NDArray[np.float64],  # fastsce._sharded.row_state of a log-sum-exp
    out: _Floats,
    n_threads: int,
) -> None: ...
def rows_loss(
    logits: _Floats,
    index: npt.NDArray[np.int64] | None,
    soft_target: _Floats | None,
    options: Any,
    grad_scale: float,
    row_loss: npt.NDArray[np.float64],
    grad: _Floats | None,
    n_threads: int,
) -> None: ...
