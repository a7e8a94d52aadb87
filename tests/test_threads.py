"""Threads: how many a kernel uses (fastsce._config.threads_for), and that results
never depend on them.

One thread below PARALLEL_MIN_ELEMENTS; otherwise the fewest of
set_num_threads (default: the usable CPUs), the usable CPUs, the rows, and
the OpenMP runtime's limit for the calling thread, so OMP_NUM_THREADS and
threadpoolctl limits are respected as they are by NumPy's BLAS and
scikit-learn.

Reproducibility: results are bit-identical across runs, across thread counts
(fastsce.set_num_threads 1, 2, 3 -- more than the CPUs of a small machine included)
and across processes, for every public function and loss option, on inputs large
enough to run in parallel (>= 65536 elements, PARALLEL_MIN_ELEMENTS).
"""

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastsce
from _helpers import TESTS_DIR, make_logits, make_soft_target, rng_for
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


# ---------------------------------------------------------------------------
# reproducibility


def results(dtype):
    """Every public function on parallel-sized inputs; a list of (name, array)."""
    rng = rng_for("reproducibility", np.dtype(dtype).name)
    n_rows, n_classes = 301, 257  # 77357 elements; odd row count
    x = make_logits((n_rows, n_classes), dtype, rng=rng)
    x[3, 5] = -np.inf  # a masked class
    hard = rng.integers(0, n_classes, n_rows)
    hard[::7] = -100
    soft = make_soft_target((n_rows, n_classes), dtype, rng)
    weight = rng.uniform(0.5, 2.0, n_classes)
    s = fastsce.softmax(x)
    log_s = fastsce.log_softmax(x)
    g = make_logits((n_rows, n_classes), dtype, rng=rng)
    x3 = x.reshape(7, 43, n_classes)
    out = []
    out.append(("softmax", fastsce.softmax(x)))
    out.append(("softmax axis 0", fastsce.softmax(x, axis=0)))
    out.append(("softmax T", fastsce.softmax(x3, temperature=0.3)))
    out.append(("log_softmax", fastsce.log_softmax(x3, axis=1, temperature=2.5)))
    out.append(("logsumexp", fastsce.logsumexp(x)))
    out.append(("logsumexp axis 0", fastsce.logsumexp(x3, axis=0, keepdims=True)))
    out.append(("softmax_backward", fastsce.softmax_backward(g, s)))
    out.append(("log_softmax_backward", fastsce.log_softmax_backward(g, log_s)))
    out.append(("softmax_jacobian", fastsce.softmax_jacobian(s[:4])))  # 4 * 257 * 257
    in_place = x.copy()
    out.append(("in place grad", fastsce.cross_entropy_with_grad(in_place, hard, out=in_place)[1]))
    for target_name, target in [("hard", hard), ("soft", soft)]:
        for options, reductions in [
            ({}, ["mean", "sum", "none"]),
            ({"weight": weight, "label_smoothing": 0.1}, ["mean", "none"]),
            (extra_options(), ["sum"]),
        ]:
            for reduction in reductions:
                name = f"cross_entropy {target_name} {reduction} {sorted(options)}"
                loss = fastsce.cross_entropy(x, target, reduction=reduction, **options)
                loss_g, grad = fastsce.cross_entropy_with_grad(
                    x, target, reduction=reduction, **options
                )
                out += [
                    (name, np.asarray(loss)),
                    (name + " (with grad)", np.asarray(loss_g)),
                    (name + " grad", grad),
                ]
                criterion = fastsce.CrossEntropyLoss(reduction=reduction, **options)
                out.append((name + " CrossEntropyLoss", np.asarray(criterion(x, target))))
    return out


def extra_options():
    """The options beyond PyTorch's, all at once."""
    return {"temperature": 1.7, "softcap": 5.0, "z_loss": 1e-3}


def digest(pairs):
    h = hashlib.sha256()
    for name, array in pairs:
        array = np.ascontiguousarray(array)
        h.update(name.encode())
        h.update(str(array.dtype).encode() + str(array.shape).encode())
        h.update(array.tobytes())
    return h.hexdigest()


def assert_bit_identical(pairs_a, pairs_b, what):
    assert [n for n, _ in pairs_a] == [n for n, _ in pairs_b]
    for (name, a), (_, b) in zip(pairs_a, pairs_b):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {name}"
        # compare the bytes: NaN payloads and the sign of zero included
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), (
            f"{what}: {name} differs"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.usefixtures("restore_threads")
def test_bit_identical_across_runs_and_thread_counts(dtype):
    fastsce.set_num_threads(1)
    reference_run = results(dtype)
    assert_bit_identical(results(dtype), reference_run, "second run, 1 thread")
    for n_threads in [2, 3, 2]:
        fastsce.set_num_threads(n_threads)
        assert fastsce.get_num_threads() == n_threads
        assert_bit_identical(results(dtype), reference_run, f"{n_threads} threads")
    fastsce.set_num_threads(None)
    assert_bit_identical(results(dtype), reference_run, "default thread count")


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import fastsce
    import test_threads as r
    fastsce.set_num_threads({n_threads})
    print(r.digest(r.results(np.float32) + r.results(np.float64)))
""")


@pytest.mark.parametrize("n_threads", [2])
@pytest.mark.usefixtures("restore_threads")
def test_bit_identical_in_a_fresh_process(n_threads):
    """Another process (fresh allocations, another address layout) gets the same bits."""
    fastsce.set_num_threads(1)
    here = digest(results(np.float32) + results(np.float64))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=str(TESTS_DIR), n_threads=n_threads)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == here
