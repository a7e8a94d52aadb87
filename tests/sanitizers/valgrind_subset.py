"""A small workload for valgrind memcheck: every public function on row lengths around
the vector widths (tails of every length), float32 and float64, contiguous and strided
inputs, hard and soft targets, every option, out= (fresh and in place), error paths
(which must write nothing), 16-bit logits (float16; bfloat16 when ml_dtypes is there)
with every kind of gradient, and one call large enough to run on several OpenMP threads.
Every result is compared with fastsce.reference, so memcheck also sees whether any
output element was left uninitialised (the comparison branches on every value).

Run by tests/sanitizers/run_valgrind.sh; prints the SIMD path and a count of checks.
"""

import sys

import numpy as np

import fastsce
from fastsce import _kernels, reference

CHECKS = 0


def close(actual, expected, rtol):
    global CHECKS
    CHECKS += 1
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if not np.allclose(actual, expected, rtol=rtol, atol=1e-6, equal_nan=True):
        raise SystemExit(f"mismatch: {actual} vs {expected}")


def half_dtypes():
    try:
        import ml_dtypes
    except ImportError:
        return [np.float16]
    return [np.float16, ml_dtypes.bfloat16]


def main():
    rng = np.random.default_rng(7)
    for dtype in [np.float32, np.float64]:
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        for n_classes in [1, 3, 4, 7, 8, 9, 15, 16, 17, 33]:
            for n_rows in [1, 3]:
                wide = rng.standard_normal((n_rows, 2 * n_classes)).astype(dtype)
                for x in [np.ascontiguousarray(wide[:, :n_classes]), wide[:, ::2]]:
                    x64 = x.astype(np.float64)
                    close(fastsce.softmax(x), reference.softmax(x64), rtol)
                    close(
                        fastsce.log_softmax(x, temperature=0.5),
                        reference.log_softmax(x64, temperature=0.5),
                        rtol,
                    )
                    close(fastsce.logsumexp(x), reference.logsumexp(x64), rtol)
                    close(fastsce.softmax(x, axis=0), reference.softmax(x64, axis=0), rtol)
                    s = fastsce.softmax(x)
                    g = rng.standard_normal(x.shape).astype(dtype)
                    close(
                        fastsce.softmax_backward(g, s),
                        reference.softmax_backward(g.astype(np.float64), s.astype(np.float64)),
                        rtol,
                    )
                    log_s = fastsce.log_softmax(x)
                    close(
                        fastsce.log_softmax_backward(g, log_s),
                        g - s * g.sum(axis=-1, keepdims=True),
                        rtol,
                    )
                    close(
                        fastsce.softmax_jacobian(s),
                        reference.softmax_jacobian(s.astype(np.float64)),
                        rtol,
                    )
                    hard = rng.integers(0, n_classes, n_rows)
                    soft = rng.random(x.shape).astype(dtype)
                    weight = rng.uniform(0.5, 2.0, n_classes)
                    for target in [hard, soft]:
                        for options in [
                            {},
                            {"weight": weight, "label_smoothing": 0.2},
                            {"label_smoothing": 0.1, "reduction": "none"},
                            {"reduction": "sum", "ignore_index": 0},
                        ]:
                            loss, grad = fastsce.cross_entropy_with_grad(x, target, **options)
                            e_loss, e_grad = reference.cross_entropy_with_grad(
                                x64, target, **options
                            )
                            close(loss, e_loss, rtol)
                            close(grad, e_grad, rtol)
                            close(fastsce.cross_entropy(x, target, **options), e_loss, rtol)
                            criterion = fastsce.CrossEntropyLoss(**options)
                            close(criterion(x, target), e_loss, rtol)
                            in_place = np.ascontiguousarray(x).copy()
                            fastsce.cross_entropy_with_grad(
                                in_place, target, out=in_place, **options
                            )
                            close(in_place, e_grad, rtol)
                    # error paths: nothing written
                    bad = hard.copy()
                    bad[-1] = n_classes
                    out = np.full(x.shape, 5.0, dtype)
                    try:
                        fastsce.cross_entropy_with_grad(x, bad, out=out)
                    except ValueError:
                        pass
                    else:
                        raise SystemExit("bad class index accepted")
                    close(out, np.full(x.shape, 5.0), 0)
    for dtype in half_dtypes():
        for n_classes in [3, 9, 17, 70, 130]:
            x16 = (2 * rng.standard_normal((5, n_classes))).astype(dtype)
            t = rng.integers(0, n_classes, 5)
            e_loss, e_grad = reference.cross_entropy_with_grad(x16.astype(np.float64), t)
            for out_kind in ["none", "float32", "16-bit", "in place"]:
                for extra in [{}, {"lse_out": np.empty(5)}]:  # the fast and validating paths
                    logits = x16.copy()
                    out = {
                        "none": None,
                        "float32": np.empty(x16.shape, np.float32),
                        "16-bit": np.empty_like(x16),
                        "in place": logits,
                    }[out_kind]
                    loss, grad = fastsce.cross_entropy_with_grad(logits, t, out=out, **extra)
                    close(loss, e_loss, 1e-3)
                    close(grad.astype(np.float32), e_grad, 1e-2)
    # one call large enough for the OpenMP threads and the GIL release
    fastsce.set_num_threads(2)
    x = rng.standard_normal((130, 520)).astype(np.float32)
    t = rng.integers(0, 520, 130)
    loss, grad = fastsce.cross_entropy_with_grad(x, t, label_smoothing=0.1)
    e_loss, e_grad = reference.cross_entropy_with_grad(x.astype(np.float64), t, label_smoothing=0.1)
    close(loss, e_loss, 1e-5)
    close(grad, e_grad, 1e-4)
    close(fastsce.softmax(x), reference.softmax(x.astype(np.float64)), 1e-4)
    close(fastsce.logsumexp(x), reference.logsumexp(x.astype(np.float64)), 1e-4)
    print(f"simd path {_kernels.simd_path()}: {CHECKS} checks passed")


if __name__ == "__main__":
    sys.exit(main())
