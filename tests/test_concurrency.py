"""Concurrency: Python threads calling fastsce at the same time.

* Many threads on shared read-only inputs, and on inputs of their own, get exactly
  (bit for bit) the results of serial calls -- small calls (GIL kept) and large ones
  (GIL released, OpenMP inside) mixed, every public function, a shared CrossEntropyLoss
  object included.
* The GIL is released during large kernels: shown structurally, without timing.  With
  the interpreter's switch interval made huge, a thread holding the GIL keeps it until
  it blocks or releases it explicitly.  A second thread, woken just before a large call,
  can then only run its Python loop (incrementing a counter) if the call releases the
  GIL; the counter is read right after the call returns.  The control: the same with
  small inputs (which keep the GIL on purpose, below 16384 elements) leaves the counter
  at 0.  Inputs are C-contiguous float32 with int64 class indices, so the call makes no
  numpy copy (numpy itself releases the GIL in large copies): the release seen is the
  kernel's.  The kernels run on one OpenMP thread there, so that on a small machine a
  CPU is free for the second Python thread while the kernel runs.
"""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastsce
from _helpers import make_logits, make_soft_target, rng_for

N_THREADS = 8


def read_only(array):
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def make_inputs(key, n_rows, n_classes, dtype):
    rng = rng_for("concurrency", key, n_rows, n_classes, np.dtype(dtype).name)
    x = make_logits((n_rows, n_classes), dtype, rng=rng)
    return {
        "x": read_only(x),
        "hard": read_only(rng.integers(0, n_classes, n_rows)),
        "soft": read_only(make_soft_target((n_rows, n_classes), dtype, rng)),
        "s": read_only(fastsce.softmax(x)),
        "log_s": read_only(fastsce.log_softmax(x)),
        "g": read_only(make_logits((n_rows, n_classes), dtype, rng=rng)),
        "weight": read_only(rng.uniform(0.5, 2.0, n_classes)),
    }


def all_calls(inputs, criterion):
    """[(name, thunk)] covering every public function; every thunk returns arrays."""
    x, hard, soft, s, log_s, g, w = (
        inputs[k] for k in ["x", "hard", "soft", "s", "log_s", "g", "weight"]
    )
    jac_s = s[: max(1, 200_000 // s.shape[1] ** 2), :] if s.shape[1] <= 256 else s[:2, :64]
    return [
        ("softmax", lambda: fastsce.softmax(x)),
        ("softmax axis 0", lambda: fastsce.softmax(x, axis=0)),
        ("log_softmax T", lambda: fastsce.log_softmax(x, temperature=0.7)),
        ("logsumexp", lambda: fastsce.logsumexp(x, keepdims=True)),
        ("softmax_backward", lambda: fastsce.softmax_backward(g, s)),
        ("log_softmax_backward", lambda: fastsce.log_softmax_backward(g, log_s)),
        ("softmax_jacobian", lambda: fastsce.softmax_jacobian(jac_s)),
        ("cross_entropy", lambda: fastsce.cross_entropy(x, hard)),
        (
            "cross_entropy none",
            lambda: fastsce.cross_entropy(x, hard, reduction="none", weight=w, label_smoothing=0.1),
        ),
        ("cross_entropy_with_grad", lambda: fastsce.cross_entropy_with_grad(x, hard)),
        (
            "cross_entropy_with_grad soft",
            lambda: fastsce.cross_entropy_with_grad(x, soft, weight=w, reduction="sum"),
        ),
        ("CrossEntropyLoss", lambda: criterion(x, hard)),
        ("CrossEntropyLoss soft", lambda: criterion(x, soft)),
        ("CrossEntropyLoss.loss_and_grad", lambda: criterion.loss_and_grad(x, hard)),
    ]


def as_arrays(result):
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


def assert_identical(actual, expected, what):
    for a, e in zip(as_arrays(actual), as_arrays(expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, what
        assert np.array_equal(a, e, equal_nan=True), f"{what}: differs from the serial result"


SIZES = [(64, 10), (100, 33), (512, 1000), (96, 4097)]  # GIL kept, kept, released, released


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_on_shared_read_only_inputs_match_serial_results(dtype):
    criterion = fastsce.CrossEntropyLoss(label_smoothing=0.05, weight=None)
    calls = []
    for n_rows, n_classes in SIZES:
        inputs = make_inputs("shared", n_rows, n_classes, dtype)
        calls += [
            (f"{name} {n_rows}x{n_classes}", thunk) for name, thunk in all_calls(inputs, criterion)
        ]
    expected = {name: thunk() for name, thunk in calls}

    def worker(k):
        order = np.random.default_rng(k).permutation(len(calls))
        for _ in range(3):
            for i in order:
                name, thunk = calls[i]
                assert_identical(thunk(), expected[name], f"thread {k}: {name}")
        return k

    with ThreadPoolExecutor(N_THREADS) as pool:
        assert sorted(pool.map(worker, range(N_THREADS))) == list(range(N_THREADS))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_on_inputs_of_their_own_match_serial_results(dtype):
    """Each thread its own inputs and its own out= buffers (in place included)."""
    per_thread = []
    for k in range(N_THREADS):
        n_rows, n_classes = SIZES[k % len(SIZES)]
        inputs = make_inputs(f"own {k}", n_rows, n_classes, dtype)
        x, hard = inputs["x"], inputs["hard"]
        expected_softmax = fastsce.softmax(x)
        expected_loss, expected_grad = fastsce.cross_entropy_with_grad(x, hard)
        per_thread.append((inputs, expected_softmax, expected_loss, expected_grad))

    def worker(k):
        inputs, expected_softmax, expected_loss, expected_grad = per_thread[k]
        x, hard = inputs["x"], inputs["hard"]
        out = np.empty_like(x)
        for _ in range(5):
            assert fastsce.softmax(x, out=out) is out
            assert np.array_equal(out, expected_softmax)
            in_place = x.copy()
            loss, grad = fastsce.cross_entropy_with_grad(in_place, hard, out=in_place)
            assert grad is in_place
            assert loss == expected_loss and np.array_equal(grad, expected_grad)
        return k

    with ThreadPoolExecutor(N_THREADS) as pool:
        assert sorted(pool.map(worker, range(N_THREADS))) == list(range(N_THREADS))


@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.1, "weight": "random"}, {"reduction": "none"}], ids=str
)
def test_one_loss_object_shared_by_threads(options):
    """CrossEntropyLoss keeps buffers between calls: threads sharing one object (and
    releasing the GIL in the kernel) must not share those buffers."""
    options = dict(options)
    n_classes = 1000
    if options.get("weight") == "random":
        options["weight"] = rng_for("shared loss weight").uniform(0.5, 2.0, n_classes)
    criterion = fastsce.CrossEntropyLoss(**options)
    inputs = [
        make_inputs(f"loss object {k}", 128 + 16 * k, n_classes, np.float32)
        for k in range(N_THREADS)
    ]
    expected = [fastsce.cross_entropy_with_grad(i["x"], i["hard"], **options) for i in inputs]

    def worker(k):
        for _ in range(10):
            loss, grad = criterion.loss_and_grad(inputs[k]["x"], inputs[k]["hard"])
            assert_identical((loss, grad), expected[k], f"thread {k}")
            assert_identical(
                criterion(inputs[k]["x"], inputs[k]["hard"]),
                expected[k][0],
                f"thread {k} (loss only)",
            )
        return k

    with ThreadPoolExecutor(N_THREADS) as pool:
        assert sorted(pool.map(worker, range(N_THREADS))) == list(range(N_THREADS))


# ---------------------------------------------------------------------------
# the GIL is released during large kernels


SPIN = 20_000


def progress_of_another_thread_during(call):
    """How many Python-loop iterations a second thread completes while `call()` runs,
    with preemption switched off (see the module docstring): > 0 only if `call`
    releases the GIL."""
    counter = [0]
    ready = threading.Event()
    go = threading.Event()

    def spinner():
        ready.set()
        go.wait()
        for _ in range(SPIN):
            counter[0] += 1

    thread = threading.Thread(target=spinner)
    previous = sys.getswitchinterval()
    thread.start()
    ready.wait()
    try:
        sys.setswitchinterval(1000.0)
        go.set()  # the spinner now waits for the GIL, which we hold
        call()
        during = counter[0]
    finally:
        sys.setswitchinterval(previous)
        go.set()
        thread.join()
    assert counter[0] == SPIN
    return during


def large_and_small_calls():
    big = make_inputs("gil", 1024, 4096, np.float32)  # 4M elements
    small = make_inputs("gil small", 16, 10, np.float32)  # 160 elements
    criterion = fastsce.CrossEntropyLoss()

    def calls(i, jac_rows):
        return {
            "softmax": lambda: fastsce.softmax(i["x"]),
            "log_softmax": lambda: fastsce.log_softmax(i["x"]),
            "logsumexp": lambda: fastsce.logsumexp(i["x"]),
            "softmax_backward": lambda: fastsce.softmax_backward(i["g"], i["s"]),
            "log_softmax_backward": lambda: fastsce.log_softmax_backward(i["g"], i["log_s"]),
            "softmax_jacobian": lambda: fastsce.softmax_jacobian(i["s"][:jac_rows, :1024]),
            "cross_entropy": lambda: fastsce.cross_entropy(i["x"], i["hard"]),
            "cross_entropy_with_grad": lambda: fastsce.cross_entropy_with_grad(i["x"], i["hard"]),
            "cross_entropy soft": lambda: fastsce.cross_entropy(i["x"], i["soft"]),
            "CrossEntropyLoss": lambda: criterion(i["x"], i["hard"]),
        }

    return calls(big, 8), calls(small, 1)


LARGE, SMALL = large_and_small_calls()


@pytest.mark.parametrize("name", list(LARGE))
@pytest.mark.usefixtures("restore_threads")
def test_large_kernels_release_the_gil(name):
    fastsce.set_num_threads(1)
    LARGE[name]()  # warm up (first-call allocations)

    def three_large_calls():
        for _ in range(3):
            LARGE[name]()

    assert progress_of_another_thread_during(three_large_calls) > 0, (
        f"{name}: another Python thread made no progress during large calls"
    )


@pytest.mark.parametrize("name", list(SMALL))
def test_small_calls_keep_the_gil_and_the_method_detects_it(name):
    """The control: 200 small calls (GIL kept on purpose) in a row give the other thread
    no chance to run -- so the progress seen above is the kernels' GIL release."""

    def many_small_calls():
        for _ in range(200):
            SMALL[name]()

    assert progress_of_another_thread_during(many_small_calls) == 0


RACING_TARGET = """
import threading
import numpy as np
import fastsce

x = np.random.default_rng(0).standard_normal((1024, 2000)).astype(np.float32)
grad = np.empty_like(x)
target = np.zeros(1024, np.int64)
done = False


def flip():  # an index out of range, then a valid one, over and over
    while not done:
        target[1000] = 2**40
        target[1000] = 0


thread = threading.Thread(target=flip)
thread.start()
for _ in range(150):
    for options in ({}, {"temperature": np.float64(1.0)}):  # the fast path, the other
        try:
            fastsce.cross_entropy_with_grad(x, target, out=grad, **options)
        except ValueError:
            pass  # the index was out of range when it was checked
done = True
thread.join()
print("ok")
"""


def test_a_target_changed_during_a_call_cannot_crash_it():
    """The kernels check the class indices, then read them again: they read a copy, so
    another thread changing the caller's array in between cannot make them index
    outside a row (run in a child process: the failure it guards against is a crash)."""
    result = subprocess.run(
        [sys.executable, "-c", RACING_TARGET], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
