"""pytest-benchmark suite: ``pytest bench/ --benchmark-only``.

Design
- Parametrised over dtype x shape x system, where the systems are those of
  fastsce._speed (shared with bench/compare.py and ``python -m fastsce``):
  task "loss+grad" runs SYSTEMS (bandwidth floor included), task "loss" runs
  LOSS_SYSTEMS and the READ_FLOORS.  Nothing is reimplemented here.
- Each benchmark's group is (task, dtype, shape), so pytest-benchmark prints
  one table per case with the systems side by side.
- Everything runs on the CPUs available (``_speed.thread_count``); a system
  whose library is not importable is skipped.
- Shapes stay small so the whole suite takes a few minutes; the naive NumPy
  version (a Python loop over rows) dominates.  bench/compare.py covers the
  large shapes and the thread counts.
- test_systems_agree is not a benchmark (so --benchmark-only skips it): it
  checks that all systems compute the same loss and gradient, i.e. that the
  benchmarks compare like with like.

Plain ``pytest`` from the repository root does not collect this directory:
pyproject.toml sets testpaths = ["tests"].
"""

import functools

import numpy as np
import pytest

from fastsce import _config, _speed, reference

DTYPES = [np.float32, np.float64]
SHAPES = [(64, 10), (1024, 100), (4096, 1000), (64, 32000)]
FLOORS = {"bandwidth floor", *_speed.READ_FLOORS}
TASKS = {
    "loss+grad": _speed.SYSTEMS,
    "loss": {**_speed.LOSS_SYSTEMS, **_speed.READ_FLOORS},
}
SYSTEM_PARAMS = [
    pytest.param(task, name, id=f"{task}:{name}")
    for task, systems in TASKS.items()
    for name in systems
]
DTYPE_PARAMS = [pytest.param(dtype, id=np.dtype(dtype).name) for dtype in DTYPES]
SHAPE_PARAMS = [pytest.param(shape, id=f"{shape[0]}x{shape[1]}") for shape in SHAPES]


@pytest.fixture(scope="module", autouse=True)
def all_cpus():
    with _speed.thread_count(_config.get_num_threads()):
        yield


@functools.cache
def cached_problem(shape, dtype):
    """The same (logits, target) for every system of a case; no system writes to them."""
    return _speed.problem(*shape, dtype)


def make_run(task, name, logits, target):
    run = TASKS[task][name](logits, target)
    if run is None:
        pytest.skip(f"{name}: library not importable")
    return run


@pytest.mark.parametrize("shape", SHAPE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("task, name", SYSTEM_PARAMS)
def test_speed(benchmark, task, name, dtype, shape):
    logits, target = cached_problem(shape, dtype)
    run = make_run(task, name, logits, target)
    benchmark.group = f"{task} {np.dtype(dtype).name} {shape[0]}x{shape[1]}"
    benchmark.extra_info["logits_bytes"] = logits.nbytes
    benchmark(run)


def loss_and_grad(task, result):
    """(loss, grad or None) from a run's result, whatever the system returns."""
    loss, grad = result if task == "loss+grad" else (result, None)
    return float(loss), None if grad is None else np.asarray(grad)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize(
    "task, name", [param for param in SYSTEM_PARAMS if param.values[1] not in FLOORS]
)
def test_systems_agree(task, name, dtype):
    logits, target = _speed.problem(33, 17, dtype)
    expected_loss, expected_grad = reference.cross_entropy_with_grad(logits, target)
    loss, grad = loss_and_grad(task, make_run(task, name, logits, target)())
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    if grad is not None:
        assert grad.dtype == logits.dtype
        np.testing.assert_allclose(grad, expected_grad, rtol=tolerance, atol=tolerance / 17)
