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

The kernel calls XLA makes for fastsce.jax run on XLA's threads, without
Python: set_num_threads publishes the count to the kernel module
(_kernels.set_xla_threads), where those calls read it when they run.  The kernel
module's fast path of small calls takes this module's rule once, at import
(_kernels.set_small_call_policy: the threshold, a row's cost and threads_for).

Forked children.  Once a kernel has run on several threads, the OpenMP
runtime holds a thread pool; GNU libgomp cannot use it, nor build a new one,
in a child made by fork() (its first parallel region would wait forever).  A
child forked after that point therefore runs every kernel on one thread, for
good: os.register_at_fork marks it, set_num_threads there warns once that it
has no effect, and get_num_threads says 1.  Results are the same bits (they
never depend on the thread count); the parent keeps its threads.  A child
forked before any multi-threaded kernel ran keeps its threads too, as do the
spawn and forkserver start methods, which start fresh interpreters.  LLVM's
libomp (macOS) re-initialises itself in a forked child, but the same rule is
applied on every platform, so a program behaves alike everywhere.

The vector instruction set is chosen by the kernels at import (csrc/fsce_dispatch.c);
the environment variable FASTSCE_SIMD caps it, and an unknown value is reported
here with a warning rather than silently ignored.
"""

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator

from ._kernels import openmp_max_threads, set_small_call_policy, set_xla_threads

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

#: kernels with less work than this many elements (row_work) run on one thread
PARALLEL_MIN_ELEMENTS = 1 << 16
#: the fixed cost of one row (its reductions, its log, its set-up) in elements of a long
#: row: some 45 ns on an AVX2 core, the time of 80 elements at 0.58 ns each
ROW_COST_ELEMENTS = 80


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: CPUs this process may run on (read once, at import)
USABLE_CPUS = _usable_cpus()

_num_threads: int | None = None
#: per calling thread: the default a framework entry point sets (fastsce.torch: PyTorch's
#: own thread count), used when set_num_threads has not been called
_framework_default = threading.local()

#: a kernel has run on more than one thread in this process (the OpenMP pool exists)
_pool_started = False
#: this process was forked after the pool started: one thread for good
_forked_after_pool = False
_warned_forked = False


def _after_fork_in_child() -> None:
    global _forked_after_pool
    if _pool_started:
        _forked_after_pool = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """The number of threads large kernels use.

    Returns
    -------
    int
        The value of `set_num_threads`, by default the CPUs this process may run on;
        1 in a process forked after fastsce's threads started (see `set_num_threads`).

    Examples
    --------
    >>> import fastsce
    >>> fastsce.get_num_threads() >= 1
    True
    """
    if _forked_after_pool:
        return 1
    if _num_threads is not None:
        return _num_threads
    default: int | None = getattr(_framework_default, "n_threads", None)
    return default if default is not None else USABLE_CPUS


@contextlib.contextmanager
def default_threads(n_threads: int) -> Iterator[None]:
    """Inside the block, on this thread, calls use n_threads unless set_num_threads was
    called (a framework's entry point passes its own pool's size, so that fastsce's
    threads and the framework's do not oversubscribe the cores)."""
    saved = getattr(_framework_default, "n_threads", None)
    _framework_default.n_threads = max(1, int(n_threads))
    try:
        yield
    finally:
        _framework_default.n_threads = saved


def set_num_threads(n_threads: int | None) -> None:
    """Set the number of threads for large inputs (65536 elements or more).

    Parameters
    ----------
    n_threads : int or None
        Any positive integer; None restores the default (the CPUs available).  A call
        uses at most the CPUs available, its rows, and the OpenMP runtime's limit
        (OMP_NUM_THREADS, threadpoolctl).  Results never depend on the thread count.

    Raises
    ------
    TypeError
        `n_threads` is not an integer (bool included).
    ValueError
        `n_threads` < 1.

    Notes
    -----
    In a process forked (os.fork, multiprocessing's "fork" start method) after
    fastsce ran a kernel on several threads, the OpenMP runtime cannot start
    threads: kernels there run on one thread whatever is set, and asking for more
    warns once (RuntimeWarning).

    Examples
    --------
    >>> import fastsce
    >>> fastsce.set_num_threads(1)
    >>> fastsce.get_num_threads()
    1
    >>> fastsce.set_num_threads(None)
    """
    global _num_threads, _warned_forked
    if n_threads is not None:
        n_threads = _positive_int(n_threads, "n_threads")
    if _forked_after_pool and (n_threads is None or n_threads > 1) and not _warned_forked:
        _warned_forked = True
        warnings.warn(
            "fastsce: this process was forked after fastsce's OpenMP threads started; "
            "the OpenMP runtime cannot start threads in it, so kernels run on one thread "
            "here (use the 'spawn' or 'forkserver' start method for threads in workers)",
            RuntimeWarning,
            stacklevel=2,
        )
    _num_threads = n_threads
    _publish_xla_threads()


def _publish_xla_threads() -> None:
    """Give the kernel calls XLA makes (fastsce.jax, on XLA's threads, without Python) the
    process-wide setting: set_num_threads' count, or the usable CPUs."""
    limit = USABLE_CPUS if _num_threads is None else min(_num_threads, USABLE_CPUS)
    set_xla_threads(1 if _forked_after_pool else limit, PARALLEL_MIN_ELEMENTS, ROW_COST_ELEMENTS)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"`{name}` must be a positive integer, got {value!r}")
    number: int = value.__index__()
    if number < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {number!r}")
    return number


def row_work(n_rows: int, n_elements: int) -> int:
    """The work of a kernel over n_rows rows of n_elements elements in all, in elements:
    short rows cost more per element than long ones."""
    return n_elements + n_rows * ROW_COST_ELEMENTS


def threads_for(n_rows: int, work: int) -> int:
    """Threads a kernel over n_rows rows of `work` elements' work (row_work) uses."""
    global _pool_started
    if work < PARALLEL_MIN_ELEMENTS or _forked_after_pool:
        return 1
    n_threads = max(1, min(get_num_threads(), USABLE_CPUS, n_rows, openmp_max_threads()))
    if n_threads > 1:
        _pool_started = True
    return n_threads


_publish_xla_threads()
set_small_call_policy(PARALLEL_MIN_ELEMENTS, ROW_COST_ELEMENTS, threads_for)
