"""The whole Python path of a (64, 10) call, as a multiple of NumPy's own overhead.

    python bench/tiny_calls.py [--rounds 9]

Each common argument form of a small loss + gradient call (float32/float64, with and
without out=, an int32 target, CrossEntropyLoss) is timed against
`np.multiply(x, 1.0, out=g)` on the same array in the same run (absolute microseconds
are not stable on a shared machine; the ratio is): best of `rounds` interleaved rounds,
each the best of 11 repeats of 200 calls.
"""

import argparse
import timeit

import numpy as np

import fastsce


def forms(x, t, g):
    """name -> a call, the NumPy baseline first."""
    module = fastsce.CrossEntropyLoss()
    t32 = t.astype(np.int32)
    with_grad = fastsce.cross_entropy_with_grad
    return {
        "np.multiply(x, 1.0, out=g)": lambda: np.multiply(x, 1.0, out=g),
        "cross_entropy_with_grad(x, t, out=g)": lambda: with_grad(x, t, out=g),
        "cross_entropy_with_grad(x, t)": lambda: with_grad(x, t),
        "cross_entropy_with_grad(x, t32, out=g)": lambda: with_grad(x, t32, out=g),
        "cross_entropy(x, t)": lambda: fastsce.cross_entropy(x, t),
        "CrossEntropyLoss().loss_and_grad(x, t, out=g)": lambda: module.loss_and_grad(x, t, out=g),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| dtype | call (64 x 10) | best | x np.multiply |")
    print("|---|---|---:|---:|")
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((64, 10)).astype(dtype)
        calls = forms(x, rng.integers(0, 10, 64), np.empty_like(x))
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(args.rounds):
            for name, call in calls.items():
                seconds = min(timeit.repeat(call, number=200, repeat=11)) / 200
                best[name] = min(best[name], seconds)
        baseline = best["np.multiply(x, 1.0, out=g)"]
        for name, seconds in best.items():
            ratio = seconds / baseline
            print(f"| {np.dtype(dtype).name} | `{name}` | {seconds * 1e6:.2f} µs | {ratio:.2f} |")


if __name__ == "__main__":
    main()
