"""Thread settings shared by every kernel call.

Kernels parallelise over rows with OpenMP only when an input is large enough
for threads to pay off; below that one thread is used.  The number of threads
defaults to the CPUs this process may run on and can be set with
``set_num_threads``; a kernel never uses more threads than those CPUs, than
it has rows, or than the OpenMP runtime allows the calling thread
(omp_get_max_threads: OMP_NUM_THREADS, or a limit set with threadpoolctl,
e.g. ``threadpool_limits(1)``, as for NumPy's BLAS and scikit-learn).
Results never depend on the thread count: each row is computed the same way
on any thread and the batch loss is summed in row order.

The vector instruction set is chosen by the kernels at import (csrc/fsce_rows.c);
the environment variable FASTSCE_SIMD caps it, and an unknown value is reported
here with a warning rather than silently ignored.
"""

import os
import warnings

from ._loss_kernels import openmp_max_threads

#: values of FASTSCE_SIMD the kernels understand ("avx512": no cap, as unset)
SIMD_CAPS = ("baseline", "avx2", "avx512")


def _warn_unknown_simd_cap() -> None:
    cap = os.environ.get("FASTSCE_SIMD", "")
    if cap and cap not in SIMD_CAPS:
        warnings.warn(
            f"FASTSCE_SIMD={cap!r} is not one of {', '.join(SIMD_CAPS)}; ignored "
            "(the best instruction set of this CPU is used)",
            RuntimeWarning,
            stacklevel=2,
        )


_warn_unknown_simd_cap()

#: inputs with fewer elements than this run on one thread
PARALLEL_MIN_ELEMENTS = 1 << 16


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: CPUs this process may run on (read once, at import)
USABLE_CPUS = _usable_cpus()

_num_threads: int | None = None


def get_num_threads() -> int:
    """Number of threads large kernels use (default: the CPUs available)."""
    return _num_threads if _num_threads is not None else USABLE_CPUS


def set_num_threads(n_threads: int | None) -> None:
    """Set the number of threads for large inputs; None restores the default.

    Any positive integer is accepted; kernels use at most the CPUs available.
    """
    global _num_threads
    if n_threads is not None:
        n_threads = _positive_int(n_threads, "n_threads")
    _num_threads = n_threads


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"`{name}` must be a positive integer, got {value!r}")
    number: int = value.__index__()
    if number < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {number!r}")
    return number


def threads_for(n_rows: int, n_elements: int) -> int:
    """Threads a kernel over n_rows rows of n_elements elements in all uses."""
    if n_elements < PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(get_num_threads(), USABLE_CPUS, n_rows, openmp_max_threads()))
