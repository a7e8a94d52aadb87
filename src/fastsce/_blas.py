"""BLAS for the fused linear loss: scipy's GEMMs, on one thread per call.

The kernels (_kernels_linear.pxi) call sgemm/dgemm through the function pointers
scipy.linalg.cython_blas exports (the BLAS scipy ships with, OpenBLAS in its wheels),
taken at the first fused call: ``import fastsce`` does not import scipy, and building
fastsce does not need it.  fastsce's OpenMP threads share out fixed tiles of each GEMM,
so BLAS itself must run on one thread while they do: ``one_thread()`` sets every BLAS
library threadpoolctl finds to one thread for the duration, and restores the previous
limits when the last overlapping call (from any Python thread) leaves.

OpenBLAS's pool (pthreads) is process-wide, and threadpoolctl lets only one "controlling"
Python thread change it, silently ignoring the others; the thread that sets or restores
the limit here takes control first (clear_controlling_thread(force=True)) and hands it
back after, so that calls from any thread apply it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import _kernels as kernels

_lock = threading.Lock()
#: the ThreadpoolController of the BLAS libraries, made at the first call
_controller: Any = None
#: calls inside one_thread() now, and the limiter that restores the limits after them
_active = 0
_limiter: Any = None


def _load() -> None:
    global _controller
    import scipy.linalg.cython_blas
    import threadpoolctl

    kernels.load_blas(scipy.linalg.cython_blas.__pyx_capi__)
    _controller = threadpoolctl.ThreadpoolController().select(user_api="blas")


def _as_controller(change: Callable[[], Any]) -> Any:
    """change() made by this thread as OpenBLAS's controlling thread (an older
    threadpoolctl has no such notion: every thread's change applies)."""
    import threadpoolctl

    clear = getattr(threadpoolctl.OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
    try:
        return change()
    finally:
        if clear is not None:
            clear(force=True)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Inside the block, BLAS runs every call on the calling thread (and the GEMM
    pointers are loaded)."""
    global _active, _limiter
    with _lock:
        if _controller is None:
            _load()
        if _active == 0:
            _limiter = _as_controller(lambda: _controller.limit(limits=1))
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _as_controller(_limiter.restore_original_limits)
                _limiter = None
