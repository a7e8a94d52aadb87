"""What the speed table compares, and how it times a call.

Each system is a factory ``make(logits, target) -> run``: the factory does the
set-up that a training loop would do once (allocating buffers, converting to
tensors) and ``run()`` computes the mean cross-entropy loss and its gradient
once.  ``bandwidth_floor`` is the cost of one streaming pass that reads the
logits and writes an array of the same size: no loss+gradient kernel can beat
it.  Used by ``python -m fastsce`` and by bench/compare.py.
"""
import time

import numpy as np

from . import _loss, reference


def fastsce_system(logits, target):
    grad = np.empty_like(logits)
    return lambda: _loss.cross_entropy_with_grad(logits, target, out=grad)


def naive_numpy_system(logits, target):
    """The seed's formulas, row by row (fastsce.reference)."""
    return lambda: reference.cross_entropy_with_grad(logits, target)


def vectorised_numpy_system(logits, target):
    """The usual whole-array NumPy version: (S - Y) / m."""
    rows = np.arange(len(logits))

    def run():
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(total[:, 0]) - shifted[rows, target])
        grad = exp / total
        grad[rows, target] -= 1
        grad /= len(logits)
        return loss, grad

    return run


def torch_system(logits, target):
    """torch.nn.functional.cross_entropy forward + backward, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    x = torch.from_numpy(logits)
    t = torch.from_numpy(target.astype(np.int64))

    def run():
        leaf = x.detach().requires_grad_()
        loss = torch.nn.functional.cross_entropy(leaf, t)
        loss.backward()
        return loss.item(), leaf.grad

    return run


def bandwidth_floor_system(logits, target):
    out = np.empty_like(logits)
    return lambda: np.multiply(logits, 1.0, out=out)


SYSTEMS = {
    "fastsce": fastsce_system,
    "naive NumPy": naive_numpy_system,
    "vectorised NumPy": vectorised_numpy_system,
    "PyTorch": torch_system,
    "bandwidth floor": bandwidth_floor_system,
}


def problem(n_rows, n_classes, dtype, seed=0):
    """Random logits (n_rows, n_classes) of `dtype` and class-index targets."""
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    target = rng.integers(0, n_classes, n_rows)
    return logits, target


def best_time(run, budget=0.2, repeat=5):
    """Best seconds per call over `repeat` rounds of about budget / repeat each."""
    run()  # warm up (first-touch of buffers, lazy imports)
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(budget / repeat / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            run()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def time_if_fast(run, limit_seconds):
    """best_time(run), or None when one call takes longer than limit_seconds."""
    start = time.perf_counter()
    run()
    if time.perf_counter() - start > limit_seconds:
        return None
    return best_time(run)
