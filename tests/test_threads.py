"""How many threads a kernel uses (fastsce._config.threads_for).

One thread below PARALLEL_MIN_ELEMENTS; otherwise the fewest of
set_num_threads (default: the usable CPUs), the usable CPUs, the rows, and
the OpenMP runtime's limit for the calling thread, so OMP_NUM_THREADS and
threadpoolctl limits are respected as they are by NumPy's BLAS and
scikit-learn.  Results never depend on the count (test_reproducibility.py).
"""

import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastsce
from fastsce import _config, _kernels

BIG = _config.PARALLEL_MIN_ELEMENTS
openmp_only = pytest.mark.skipif(
    not _kernels.openmp_enabled(), reason="built without OpenMP: always one thread"
)


@pytest.fixture(autouse=True)
def default_threads():
    fastsce.set_num_threads(None)
    yield
    fastsce.set_num_threads(None)


def expected_default(n_rows):
    return max(1, min(_config.USABLE_CPUS, n_rows, _kernels.openmp_max_threads()))


def test_small_inputs_use_one_thread():
    fastsce.set_num_threads(64)
    assert _config.threads_for(1000, BIG - 1) == 1


@openmp_only
def test_threads_are_capped_by_cpus_rows_and_the_setting():
    assert _config.threads_for(1000, BIG) == expected_default(1000)
    assert _config.threads_for(1, BIG) == 1  # one row: one thread
    fastsce.set_num_threads(10**6)  # capped at the usable CPUs, never more
    assert _config.threads_for(10**6, 10**8) == expected_default(10**6)
    fastsce.set_num_threads(1)
    assert _config.threads_for(10**6, 10**8) == 1


@openmp_only
def test_a_threadpoolctl_limit_is_respected_and_lifted():
    assert any(info["user_api"] == "openmp" for info in threadpool_info())
    before = _config.threads_for(10**6, 10**8)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert _kernels.openmp_max_threads() == 1
        assert _config.threads_for(10**6, 10**8) == 1
    assert _config.threads_for(10**6, 10**8) == before


@openmp_only
def test_omp_num_threads_is_respected():
    script = (
        "from fastsce import _config; print(_config.threads_for(10**6, 10**8), "
        "_config.get_num_threads())"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", str(_config.USABLE_CPUS)]
