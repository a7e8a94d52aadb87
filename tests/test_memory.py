"""Memory: no leaks over many calls (resident set size, in a fresh subprocess so that the
rest of the suite does not move it), and no hidden copies of the logits (tracemalloc,
which sees numpy's array allocations).

RSS is read from /proc/self/statm after a warm-up of every call; the slack allowed is
fixed and small next to what a leak would add: 10**5 small calls leaking a single
8-byte pointer each would add 0.8 MB, one Python object each ~5 MB, one small array
each >= 10 MB; 10**2 large calls leaking their 4 MB result would add 400 MB.  A control
in the same process keeps 20 large results alive and must be seen to grow.
"""

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fastsce
from _helpers import make_logits, rng_for

STATM = Path("/proc/self/statm")
SMALL_SLACK = 2 * 2**20  # bytes of RSS growth allowed over 10**5 small calls
LARGE_SLACK = 16 * 2**20  # ... and over 10**2 large calls (allocator caching)

RSS_SCRIPT = textwrap.dedent("""
    import json, os, gc
    import numpy as np
    import fastsce

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def calls(n_rows, n_classes, dtype, seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n_rows, n_classes)).astype(dtype)
        t = rng.integers(0, n_classes, n_rows)
        t[::5] = -100
        p = fastsce.softmax(x)
        lp = fastsce.log_softmax(x)
        g = rng.standard_normal((n_rows, n_classes)).astype(dtype)
        w = rng.uniform(0.5, 2.0, n_classes)
        out = np.empty_like(x)
        criterion = fastsce.CrossEntropyLoss(label_smoothing=0.1)
        bad = t.copy()
        bad[-1] = n_classes + 3
        def rejected():
            try:
                fastsce.cross_entropy_with_grad(x, bad, out=out)
            except ValueError:
                return None
            raise AssertionError("a bad class index was accepted")
        return [
            lambda: fastsce.softmax(x),
            lambda: fastsce.softmax(x, out=out, temperature=2.0),
            lambda: fastsce.log_softmax(x, axis=0),
            lambda: fastsce.logsumexp(x),
            lambda: fastsce.softmax_backward(g, p),
            lambda: fastsce.log_softmax_backward(g, lp),
            lambda: fastsce.softmax_jacobian(p[:2, :32]),
            lambda: fastsce.cross_entropy(x, t),
            lambda: fastsce.cross_entropy(x, t, reduction="none", weight=w),
            lambda: fastsce.cross_entropy_with_grad(x, t),
            lambda: fastsce.cross_entropy_with_grad(x, p, label_smoothing=0.2, out=out),
            lambda: criterion(x, t),
            lambda: criterion.loss_and_grad(x, t, out=out),
            rejected,
        ]

    def run(thunks, n_calls):
        for i in range(n_calls):
            thunks[i % len(thunks)]()

    report = {}
    small = calls(32, 10, np.float32, 0) + calls(16, 33, np.float64, 1)
    run(small, 20_000)                                  # warm-up
    before = rss()
    run(small, 100_000)
    report["small"] = [before, rss()]

    large = calls(1024, 1000, np.float32, 2)            # 4 MB logits: GIL released, threads
    run(large, 3 * len(large))                          # warm-up
    before = rss()
    run(large, 100)
    report["large"] = [before, rss()]

    # control: the same large calls, keeping 20 results alive (80 MB)
    kept = []
    before = rss()
    for i in range(20):
        kept.append(large[0]())
    report["control"] = [before, rss()]
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def rss_report():
    if not STATM.exists():
        pytest.skip("needs /proc/self/statm (Linux)")
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_rss_stable_over_100000_small_calls(rss_report):
    before, after = rss_report["small"]
    assert after - before <= SMALL_SLACK, (
        f"RSS grew by {(after - before) / 2**20:.2f} MiB over 10**5 small calls"
    )


def test_rss_stable_over_100_large_calls(rss_report):
    before, after = rss_report["large"]
    assert after - before <= LARGE_SLACK, (
        f"RSS grew by {(after - before) / 2**20:.2f} MiB over 10**2 large calls"
    )


def test_the_rss_measurement_sees_a_leak(rss_report):
    """The control keeps 20 results of 4 MB alive: the same measurement must see them
    (allocator caching may hide a few)."""
    before, after = rss_report["control"]
    assert after - before >= 40 * 2**20, (before, after)


# ---------------------------------------------------------------------------
# tracemalloc: what each call allocates


SMALL_EXTRA = 64 * 1024  # bytes: Python objects, per-row arrays of a few KB


def peak_allocation(func, *args, **kwargs):
    """Bytes allocated at the peak of one call (numpy arrays included), beyond what was
    allocated before it."""
    func(*args, **kwargs)  # warm-up: caches, lazily created objects
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = func(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del result
    return peak


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["float32", "float64"])
def logits_and_target(request):
    x = make_logits((2048, 1000), request.param)  # C-contiguous
    target = rng_for("memory target").integers(0, 1000, 2048)
    return x, target


def test_loss_and_grad_allocates_the_gradient_and_nothing_else(logits_and_target):
    x, target = logits_and_target
    peak = peak_allocation(fastsce.cross_entropy_with_grad, x, target)
    assert peak >= x.nbytes  # the gradient itself is seen
    assert peak <= 1.1 * x.nbytes + SMALL_EXTRA, f"{peak / x.nbytes:.3f} x the logits"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reduction": "none"},
        {"label_smoothing": 0.1, "weight": "ones"},
        {"reduction": "sum", "ignore_index": 3},
    ],
    ids=str,
)
def test_loss_only_allocates_per_row_memory_only(logits_and_target, options):
    x, target = logits_and_target
    options = dict(options)
    if options.get("weight") == "ones":
        options["weight"] = np.ones(x.shape[1])
    peak = peak_allocation(fastsce.cross_entropy, x, target, **options)
    per_row = 4 * 8 * x.shape[0]  # a few float64 / int64 per row
    assert peak <= per_row + SMALL_EXTRA, f"{peak} bytes for {x.nbytes} bytes of logits"


@pytest.mark.parametrize("in_place", [False, True], ids=["out buffer", "in place"])
def test_loss_and_grad_into_out_allocates_per_row_memory_only(logits_and_target, in_place):
    x, target = logits_and_target
    out = x.copy() if in_place else np.empty_like(x)
    logits = out if in_place else x
    peak = peak_allocation(fastsce.cross_entropy_with_grad, logits, target, out=out)
    assert peak <= 4 * 8 * x.shape[0] + SMALL_EXTRA


def test_loss_object_steady_state_allocates_almost_nothing(logits_and_target):
    """CrossEntropyLoss reuses its buffers: with out= the second call allocates no array."""
    x, target = logits_and_target
    criterion = fastsce.CrossEntropyLoss(label_smoothing=0.1, weight=np.ones(x.shape[1]))
    out = np.empty_like(x)
    peak = peak_allocation(criterion.loss_and_grad, x, target, out=out)
    assert peak <= SMALL_EXTRA


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_allocates_its_result_only(logits_and_target, name):
    x, _ = logits_and_target
    peak = peak_allocation(getattr(fastsce, name), x)
    assert x.nbytes <= peak <= 1.1 * x.nbytes + SMALL_EXTRA
    out = np.empty_like(x)
    assert peak_allocation(getattr(fastsce, name), x, out=out) <= SMALL_EXTRA


def test_logsumexp_allocates_its_result_only(logits_and_target):
    x, _ = logits_and_target
    assert peak_allocation(fastsce.logsumexp, x) <= x.shape[0] * x.itemsize + SMALL_EXTRA
