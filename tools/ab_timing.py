"""Interleaved A/B timing of two fastsce builds in one session.

    python tools/ab_timing.py A_SRC B_SRC [--rounds 15] [--calls 20] [--threads 2]
                              [--sizes 64x10 1024x100 ...] [--dtypes float32 float64]

A_SRC and B_SRC are directories holding a built ``fastsce`` package (e.g.
``src/`` of two checkouts built with ``python setup.py build_ext --inplace``).
One worker process per build imports its own fastsce; for every case (the
loss + gradient rows of bench/compare.py, float32 and float64) the two
workers are asked in turn, round after round, for the best of --calls calls
with ``out=``, so both builds see the same stretch of a noisy machine.  The
report gives each build's best time over all rounds and the ratio B / A.
"""

import argparse
import subprocess
import sys

SIZES = [(64, 10), (1024, 100), (4096, 1000), (256, 10000), (512, 32000), (32, 128000)]
DTYPES = ["float32", "float64"]

WORKER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastsce
assert fastsce.__file__.startswith(sys.argv[1]), fastsce.__file__
fastsce.set_num_threads(int(sys.argv[2]))
cases = {}
print("ready", flush=True)
for line in sys.stdin:
    dtype, rows, classes, calls = line.split()
    rows, classes, calls = int(rows), int(classes), int(calls)
    key = (dtype, rows, classes)
    if key not in cases:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, classes)).astype(dtype)
        cases[key] = (x, rng.integers(0, classes, rows), np.empty_like(x))
    x, t, out = cases[key]
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fastsce.cross_entropy_with_grad(x, t, out=out)
        best = min(best, time.perf_counter() - start)
    print(best, flush=True)
"""


def start_worker(source, threads):
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, source, str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline().strip() == "ready"
    return worker


def ask(worker, dtype, rows, classes, calls):
    worker.stdin.write(f"{dtype} {rows} {classes} {calls}\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="directory holding build A's fastsce package")
    parser.add_argument("b", help="directory holding build B's fastsce package")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sizes", nargs="+", default=[f"{r}x{c}" for r, c in SIZES], help="ROWSxCLASSES ..."
    )
    parser.add_argument("--dtypes", nargs="+", default=DTYPES)
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes]
    workers = [start_worker(args.a, args.threads), start_worker(args.b, args.threads)]
    print(
        f"A = {args.a}\nB = {args.b}\n{args.threads} threads, best of {args.rounds} rounds "
        f"x {args.calls} calls, A and B interleaved\n"
    )
    print("| dtype | shape | A | B | B / A |\n|---|---|---:|---:|---:|")
    worst = 0.0
    for dtype in args.dtypes:
        for rows, classes in sizes:
            best = [float("inf"), float("inf")]
            calls = max(3, min(args.calls, int(2e7 // (rows * classes))))
            for round_ in range(args.rounds):
                order = (0, 1) if round_ % 2 == 0 else (1, 0)
                for k in order:
                    best[k] = min(best[k], ask(workers[k], dtype, rows, classes, calls))
            ratio = best[1] / best[0]
            worst = max(worst, ratio)
            print(
                f"| {dtype} | {rows} x {classes} | {best[0] * 1e6:.1f} us | "
                f"{best[1] * 1e6:.1f} us | {ratio:.3f} |",
                flush=True,
            )
    print(f"\nworst B / A: {worst:.3f}")
    for worker in workers:
        worker.stdin.close()
        worker.wait()


if __name__ == "__main__":
    main()
