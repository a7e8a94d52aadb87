"""fastsce.dask: the in-memory results, lazily, on dask's threaded scheduler and a cluster.

Every chunking (one chunk, rows only, uneven classes, rows and classes, one element per
chunk) with every option (class weights, ignore_index, label smoothing, soft targets
chunked like the logits, temperature, softcap, z_loss; masked classes, ignored and NaN
rows) gives fastsce.cross_entropy(_with_grad)'s values to 1e-12 relative in float64,
the same bits on every run and on a LocalCluster of two worker processes (started once
for this module) as on the threaded scheduler.  Errors are the in-memory ones: at graph
construction for dtypes, shapes and options, at compute for values.  Out of core: rows
larger than a worker's memory limit, generated lazily, on that cluster, with no worker
killed and every worker's peak memory below its limit, for the loss and the gradient.
examples/dask_perplexity.py runs at a tiny size.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import fastsce  # noqa: E402
import fastsce.dask as fd  # noqa: E402
from _helpers import (  # noqa: E402
    LOSS_RTOL,
    RTOL,
    assert_close,
    load_script,
    make_case,
    rng_for,
)

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "dask_perplexity.py"
#: each worker's memory limit; the out-of-core rows are larger than it
WORKER_MEMORY = 250_000_000
SHAPE = (7, 19)
CHUNKINGS = {
    "one_chunk": SHAPE,
    "rows": ((3, 4), 19),
    "classes": (7, (8, 11)),
    "rows_classes": ((2, 5), (5, 5, 9)),
    "elements": (1, 1),
}
#: (target kind, options of _helpers.BASE_OPTIONS, transform of _helpers.TRANSFORMS, masked)
OPTION_CASES = [
    ("hard", "plain", "none", False),
    ("hard", "everything", "none", True),
    ("hard", "ignore_in_range", "z_loss", False),
    ("hard", "weight", "cold", True),
    ("hard", "smoothing", "hot", False),
    ("hard", "weight_smoothing", "softcap", True),
    ("soft", "weight_smoothing", "softcap_cold", True),
    ("soft", "plain", "all", False),
]
OPTION_IDS = ["-".join(map(str, case)) for case in OPTION_CASES]


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each; the environment variables the cluster
    sets for its workers in this process (OMP_NUM_THREADS=1, ...) are undone after.

    A worker process starts at some 85 MB (Python, NumPy, SciPy, dask), a third of
    WORKER_MEMORY, so the default spill target (60% of the limit for the data a worker
    holds) would let data and that baseline together reach the 95% at which the nanny
    kills the worker.  The workers spill held data to disk above 25% of the limit instead,
    as a user running out of core on small workers would configure them."""
    environment = dict(os.environ)
    with (
        dask.config.set(
            {"distributed.worker.memory.target": 0.25, "distributed.worker.memory.spill": 0.5}
        ),
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            memory_limit=WORKER_MEMORY,
            dashboard_address=":0",  # any free port: None still takes 8787, failing if it is busy
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client
    os.environ.clear()
    os.environ.update(environment)


def on_threads(*values):
    return dask.compute(*values, scheduler="threads")


def chunked(array, chunks):
    return da.from_array(array, chunks=chunks)


def assert_same_bits(a, b):
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def every_reduction(logits, target, options):
    """(mean, sum, none) losses and their gradients, lazily."""
    results = []
    for reduction in ("mean", "sum", "none"):
        results += fd.cross_entropy_with_grad(logits, target, reduction=reduction, **options)
    return results


def in_memory(logits, target, options):
    results = []
    for reduction in ("mean", "sum", "none"):
        with np.errstate(invalid="ignore"):
            results += fastsce.cross_entropy_with_grad(
                logits, target, reduction=reduction, **options
            )
    return results


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(("kind", "base", "transform", "masked"), OPTION_CASES, ids=OPTION_IDS)
def test_equals_the_in_memory_call(kind, base, transform, masked, chunking):
    logits, target, options = make_case(
        kind, base, transform, masked, np.float64, shape=SHAPE, tag="dask"
    )
    chunks = CHUNKINGS[chunking]
    lazy = every_reduction(chunked(logits, chunks), target, options)
    for value in lazy:
        assert isinstance(value, da.Array)
    assert lazy[0].shape == () and lazy[4].shape == SHAPE[:-1]
    assert lazy[1].shape == SHAPE and lazy[1].chunks == chunked(logits, chunks).chunks
    computed = on_threads(*lazy)
    for actual, expected in zip(computed, in_memory(logits, target, options)):
        assert np.asarray(actual).dtype == np.asarray(expected).dtype
        assert_close(actual, expected, 1e-12, err_msg=f"({chunking})")
    assert_same_bits(computed, on_threads(*lazy))
    loss_only = fd.cross_entropy(chunked(logits, chunks), target, **options)
    assert_same_bits(on_threads(loss_only), computed[:1])


@pytest.mark.parametrize("chunking", ["rows", "rows_classes"])
def test_float32_and_three_dimensions(chunking):
    rng = rng_for("dask-float32", chunking)
    logits = rng.standard_normal((3, 4, 30)).astype(np.float32)
    target = rng.integers(0, 30, (3, 4))
    chunks = {"rows": (2, 3, 30), "rows_classes": (1, (1, 3), (7, 23))}[chunking]
    options = {"label_smoothing": 0.1, "temperature": 0.8, "z_loss": 1e-3}
    lazy = fd.cross_entropy_with_grad(chunked(logits, chunks), target, **options)
    loss, grad = on_threads(*lazy)
    expected_loss, expected_grad = fastsce.cross_entropy_with_grad(logits, target, **options)
    assert grad.dtype == np.float32
    assert_close(loss, expected_loss, LOSS_RTOL[np.dtype(np.float32)])
    magnitude = np.abs(expected_grad).max(axis=-1, keepdims=True)
    assert_close(grad, expected_grad, RTOL[np.dtype(np.float32)], magnitude=magnitude)


def test_a_cluster_gives_the_bits_of_the_threaded_scheduler(client):
    logits, target, options = make_case("hard", "everything", "all", True, np.float64, SHAPE)
    for chunks in (CHUNKINGS["rows"], CHUNKINGS["rows_classes"]):
        lazy = every_reduction(chunked(logits, chunks), target, options)
        assert_same_bits(client.compute(lazy, sync=True), on_threads(*lazy))
    soft_logits, soft, soft_options = make_case("soft", "weight", "softcap", False, np.float64)
    lazy = fd.cross_entropy_with_grad(
        chunked(soft_logits, (3, 4)), chunked(soft, (3, 4)), **soft_options
    )
    assert_same_bits(client.compute(list(lazy), sync=True), on_threads(*lazy))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunks", [(2, 19), (3, (1, 9, 9)), (7, 1)])
def test_softmax_family(chunks, temperature):
    rng = rng_for("dask-softmax", chunks, temperature)
    x = 3.0 * rng.standard_normal(SHAPE)
    x[1, 4] = -np.inf
    x[2] = -np.inf
    x[3, :2] = [0.0, np.nan]
    x[5, 3] = np.inf
    x[6] = np.r_[0.0, np.full(18, -50.0)]  # a confident row
    lazy = chunked(x, chunks)
    for name in ("softmax", "log_softmax"):
        expected = getattr(fastsce, name)(x, temperature=temperature)
        actual = on_threads(getattr(fd, name)(lazy, temperature=temperature))[0]
        assert_close(actual, expected, 1e-12, err_msg=name)
        transposed = getattr(fd, name)(lazy.T, axis=0, temperature=temperature)
        assert_close(on_threads(transposed)[0], expected.T, 1e-12, err_msg=f"{name} axis 0")
    expected = fastsce.logsumexp(x, temperature=temperature)
    assert_close(on_threads(fd.logsumexp(lazy, temperature=temperature))[0], expected, 1e-12)
    kept = fd.logsumexp(lazy, keepdims=True, temperature=temperature)
    assert_close(on_threads(kept)[0], expected[:, None], 1e-12)


def test_numpy_inputs_and_targets_chunked_unlike_the_logits():
    logits, target, options = make_case("hard", "weight", "none", False, np.float64, SHAPE)
    expected = fastsce.cross_entropy_with_grad(logits, target, **options)
    from_numpy = on_threads(*fd.cross_entropy_with_grad(logits, target, **options))
    assert_close(from_numpy[0], expected[0], 1e-12)
    assert_close(from_numpy[1], expected[1], 1e-12)
    rechunked = fd.cross_entropy_with_grad(chunked(logits, (4, 10)), chunked(target, 2), **options)
    assert_same_bits(
        on_threads(*rechunked),
        on_threads(
            *fd.cross_entropy_with_grad(chunked(logits, (4, 10)), chunked(target, 4), **options)
        ),
    )


def error_of(call):
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    return caught.type, str(caught.value)


BAD_CALLS = {
    "complex logits": (np.ones((3, 4), complex), [0, 1, 2], {}),
    "bool logits": (np.ones((3, 4), bool), [0, 1, 2], {}),
    "0-d logits": (np.float64(1.0), 0, {}),
    "zero classes": (np.ones((3, 0)), [0, 0, 0], {}),
    "target shape": (np.ones((3, 4)), [0, 1], {}),
    "transposed": (np.ones((4, 3)), [0, 1, 2], {}),
    "float target shape": (np.ones((3, 4)), np.ones(3), {}),
    "string target": (np.ones((3, 4)), np.array(["a", "b", "c"]), {}),
    "weight shape": (np.ones((3, 4)), [0, 1, 2], {"weight": np.ones(3)}),
    "weight nan": (np.ones((3, 4)), [0, 1, 2], {"weight": [1, np.nan, 1, 1]}),
    "reduction": (np.ones((3, 4)), [0, 1, 2], {"reduction": "max"}),
    "smoothing": (np.ones((3, 4)), [0, 1, 2], {"label_smoothing": 2.0}),
    "temperature": (np.ones((3, 4)), [0, 1, 2], {"temperature": 0.0}),
    "temperature float32": (np.ones((3, 4), np.float32), [0, 1, 2], {"temperature": 1e-39}),
    "softcap": (np.ones((3, 4)), [0, 1, 2], {"softcap": -1.0}),
    "z_loss": (np.ones((3, 4)), [0, 1, 2], {"z_loss": "1"}),
    "ignore_index": (np.ones((3, 4)), [0, 1, 2], {"ignore_index": 1.5}),
    "masked logits": (np.ma.masked_array(np.ones((3, 4))), [0, 1, 2], {}),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_at_construction_as_in_memory(case):
    logits, target, options = BAD_CALLS[case]
    expected = error_of(lambda: fastsce.cross_entropy_with_grad(logits, target, **options))
    assert error_of(lambda: fd.cross_entropy_with_grad(logits, target, **options)) == expected
    if np.ndim(logits) and not isinstance(logits, np.ma.MaskedArray):
        dask_target = da.from_array(np.asarray(target)) if np.ndim(target) else target
        lazy = da.from_array(logits)
        assert error_of(lambda: fd.cross_entropy(lazy, dask_target, **options)) == expected


def test_bad_values_raise_at_compute_as_in_memory():
    logits = np.zeros((4, 3, 5))
    target = np.array([[1, 2, 3], [4, 7, 0], [9, 1, 1], [0, 1, 2]])  # 7 first, then 9
    huge = target.astype(np.uint64)
    huge[2, 1] = np.iinfo(np.uint64).max  # beyond int64: reported first, as in memory
    probabilities = np.full((4, 3, 5), 0.2)
    probabilities[2, 0, 4] = np.inf
    probabilities[1, 2, 3] = np.nan  # row 5: the first in row order
    for bad in (target, huge, probabilities):
        expected = error_of(lambda bad=bad: fastsce.cross_entropy(logits, bad))
        for chunks in ((4, 3, 5), (1, 1, 2), (3, 2, (4, 1))):
            bad_chunks = chunks if bad.ndim == 3 else (2, (1, 2))
            lazy = fd.cross_entropy_with_grad(
                chunked(logits, chunks), chunked(bad, bad_chunks), reduction="none"
            )
            for value in lazy:  # every output depends on the check
                assert error_of(lambda value=value: on_threads(value)) == expected


def test_import_fastsce_does_not_import_dask():
    script = "import sys, fastsce; print('dask' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def peak_memory():
    """This process's peak resident memory in bytes: VmHWM of /proc/self/status (not
    ru_maxrss, which keeps the high-water mark of the process that forked this one)."""
    with open("/proc/self/status") as status:
        (line,) = [line for line in status if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="peak memory read from /proc/self/status")
def test_rows_larger_than_a_workers_memory(client):
    """Two rows of 80 million float32 classes (320 MB each, a row block of 640 MB) on
    workers limited to 250 MB, generated chunk by chunk: x_ij = (j mod 7 + i) / 2, whose
    loss and gradient have closed forms (lse_i = i / 2 + log sum_r n_r e^(r / 2), n_r the
    number of classes j with j mod 7 = r; sum_j |grad_ij| = 2 (1 - s_it)).  The workers
    are restarted first: what earlier tests left in them would count against the limit."""
    client.restart()
    n_classes = 80_000_000
    columns = (da.arange(n_classes, chunks=500_000, dtype=np.int32) % 7).astype(np.float32)
    rows = (columns[None, :] + da.arange(2, dtype=np.float32)[:, None]) * np.float32(0.5)
    assert rows.chunks[0] == (2,) and rows.nbytes // 2 > WORKER_MEMORY
    target = np.array([3, n_classes - 1])
    workers = set(client.scheduler_info()["workers"])
    loss, grad = fd.cross_entropy_with_grad(rows, target, reduction="none")
    grad_sums = abs(grad).sum(axis=-1, dtype=np.float64)
    loss, grad_sums = client.compute([loss, grad_sums], sync=True)
    assert set(client.scheduler_info()["workers"]) == workers  # none killed and restarted
    peaks = client.run(peak_memory)
    assert len(peaks) == 2 and max(peaks.values()) < WORKER_MEMORY, peaks
    counts = n_classes // 7 + (np.arange(7) < n_classes % 7)
    lse = np.arange(2) / 2 + np.log(np.sum(counts * np.exp(np.arange(7) / 2)))
    target_logit = (target % 7 + np.arange(2)) / 2
    assert_close(loss, lse - target_logit, LOSS_RTOL[np.dtype(np.float32)])
    expected_sums = 2.0 * (1.0 - np.exp(target_logit - lse))
    assert_close(grad_sums, expected_sums, RTOL[np.dtype(np.float32)])


def test_the_perplexity_example(tmp_path):
    example = load_script(EXAMPLE)
    result = example.main(["--store", str(tmp_path / "store"), "--tiny", "--quiet"])
    logits = np.concatenate([np.load(path) for path in result["files"]])
    target = np.load(result["target"])
    expected = np.exp(fastsce.cross_entropy(logits, target))
    assert result["perplexity"] == pytest.approx(expected, rel=1e-6)
