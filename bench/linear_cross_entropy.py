"""Language-model heads: fused linear + cross-entropy, time and peak memory.

    python bench/linear_cross_entropy.py                       # 2048 x 512 x 32000
    python bench/linear_cross_entropy.py --shape 4096 1024 128256 --repeats 1 \\
        --systems gemms gemm fastsce fastsce_loss torch torch_chunked

Forward + backward (loss, gradients of input, weight) of logits X Wᵀ, float32, for each
system in a fresh process: the three GEMMs alone (NumPy: X Wᵀ, G W, Gᵀ X, the floor
of any implementation that does not skip work), fastsce at its default memory budget and
at 0.4x the logits, fastsce's loss alone against the one GEMM X Wᵀ, PyTorch's
X @ W.T + F.cross_entropy, PyTorch's F.linear_cross_entropy unchunked and chunked
(LinearCrossEntropyOptions()), and a plain NumPy loop over chunks of 256 rows.

Peak extra memory: the process's peak resident set (VmHWM) during the first full call,
minus its resident set just before, minus the gradients the call returns (grad_input,
grad_linear_weight: what any implementation must hand back), in multiples of the
logits' size.  Library set-up is done by a small call first, so that it does not count.
Time: the best of --repeats calls after that first one; "other load" is the CPUs other
processes kept busy meanwhile (this machine is shared: --wait-quiet waits for them to go
idle before each system, and a system measured while they kept more than a fifth of a
CPU busy is measured again, up to --retries times, keeping its least disturbed run).
Threads: --threads for everything (fastsce, NumPy's BLAS, PyTorch).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from compare import cpu_snapshot, other_processes_cpus, wait_for_quiet

SYSTEMS = {
    "gemms": "the three GEMMs alone (NumPy: X Wᵀ, G W, Gᵀ X)",
    "fastsce": "fastsce.linear_cross_entropy_with_grad (default budget)",
    "fastsce_04": "fastsce.linear_cross_entropy_with_grad (memory_budget = 0.4x logits)",
    "torch": "torch X @ W.T + F.cross_entropy",
    "torch_lce": "torch F.linear_cross_entropy",
    "torch_chunked": "torch F.linear_cross_entropy, chunked (LinearCrossEntropyOptions())",
    "numpy_chunked": "a plain chunked NumPy loop, 256 rows",
    "gemm": "the one GEMM X Wᵀ (NumPy), for the loss alone",
    "fastsce_loss": "fastsce.linear_cross_entropy (loss only, default budget)",
}
#: a measurement made while other processes kept more CPUs than this busy is retried
DISTURBED_LOAD = 0.2
#: what each system's time is divided by in the table
BASELINE = {"gemm": "gemm", "fastsce_loss": "gemm"}


def numpy_chunked(x, w, target, rows=256):
    """Mean cross-entropy of x wᵀ and its gradients, 256 rows at a time, in plain NumPy."""
    import numpy as np

    n = len(x)
    grad_x = np.empty_like(x)
    grad_w = np.zeros_like(w)
    total = 0.0
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        logits = x[start:stop] @ w.T
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        sums = logits.sum(axis=1, keepdims=True)
        index = np.arange(stop - start), target[start:stop]
        total -= np.sum(np.log(logits[index] / sums[:, 0]))
        logits /= sums
        logits[index] -= 1.0
        logits /= n
        grad_x[start:stop] = logits @ w
        grad_w += logits.T @ x[start:stop]
    return total / n, grad_x, grad_w


def make_call(system, x, w, target, logits_bytes):
    """A function running one forward + backward of `system`, returning the gradients
    it hands back (an empty tuple for a loss alone)."""
    import numpy as np

    import fastsce

    if system == "gemms":

        def call():
            g = x @ w.T
            return g @ w, g.T @ x

    elif system == "gemm":

        def call():
            x @ w.T
            return ()

    elif system in ("fastsce", "fastsce_04"):
        budget = 0.4 * logits_bytes if system == "fastsce_04" else None

        def call():
            _, grad_x, grad_w, _ = fastsce.linear_cross_entropy_with_grad(
                x, w, target, memory_budget=budget
            )
            return grad_x, grad_w

    elif system == "fastsce_loss":

        def call():
            fastsce.linear_cross_entropy(x, w, target)
            return ()

    elif system == "numpy_chunked":

        def call():
            return numpy_chunked(x, w, target)[1:]

    else:
        import torch
        import torch.nn.functional as F

        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tt = torch.from_numpy(np.asarray(target, np.int64))
        options = torch.nn.LinearCrossEntropyOptions() if system == "torch_chunked" else None

        def call():
            tx.grad = tw.grad = None
            if system == "torch":
                loss = F.cross_entropy(tx @ tw.T, tt)
            else:
                loss = F.linear_cross_entropy(tx, tw, tt, options=options)
            loss.backward()
            return tx.grad, tw.grad

    return call


def resident(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def run_one(system, shape, threads, repeats):
    """In this (fresh) process: {"time": s, "peak_extra": bytes}."""
    import numpy as np

    import fastsce

    n, h, v = shape
    fastsce.set_num_threads(threads)
    if system.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), dtype=np.float32)
    w = (rng.standard_normal((v, h), dtype=np.float32) / np.sqrt(h)).astype(np.float32)
    target = rng.integers(0, v, n)
    logits_bytes = n * v * 4
    small = make_call(system, x[:8], w[:64], target[:8] % 64, 8 * 64 * 4)
    small()  # libraries loaded, thread pools started
    call = make_call(system, x, w, target, logits_bytes)
    before = resident("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    outputs = call()
    peak = resident("VmHWM") - before - sum(o.nbytes for o in outputs)
    del outputs
    times = []
    load = cpu_snapshot()
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {
        "time": min(times),
        "peak_extra": peak,
        "other_load": other_processes_cpus(load),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[2048, 512, 32000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="also draw the table (needs matplotlib)")
    parser.add_argument("--run", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(run_one(args.run, args.shape, args.threads, args.repeats)))
        return None
    results = {}
    for system in args.systems:
        command = [sys.executable, __file__, "--run", system, "--shape", *map(str, args.shape)]
        command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
        for _ in range(1 + args.retries):
            wait_for_quiet(args.wait_quiet)
            completed = subprocess.run(command, capture_output=True, text=True, env=os.environ)
            if completed.returncode != 0:
                print(f"{system}: failed\n{completed.stderr}", file=sys.stderr)
                break
            result = json.loads(completed.stdout)
            print(f"{system}: {result}", file=sys.stderr, flush=True)
            if system not in results or result["other_load"] < results[system]["other_load"]:
                results[system] = result
            if result["other_load"] is None or result["other_load"] <= DISTURBED_LOAD:
                break
    n, h, v = args.shape
    logits_bytes = n * v * 4
    print(f"{n} x {h} x {v} float32, {args.threads} threads, best of {args.repeats}\n")
    print("| system | time | x baseline | peak extra memory, x logits | other load |")
    print("|---|---:|---:|---:|---:|")
    for system, result in results.items():
        baseline = results.get(BASELINE.get(system, "gemms"))
        ratio = f"{result['time'] / baseline['time']:.2f}" if baseline else "—"
        memory = (
            "—" if system in ("gemms", "gemm") else f"{result['peak_extra'] / logits_bytes:.3f}"
        )
        load = result["other_load"]
        load = "—" if load is None else f"{load:.2f}"
        row = f"| {SYSTEMS[system]} | {result['time']:.2f} s | {ratio} | {memory} | {load} |"
        print(row)
    if args.plot:
        plot(results, args.shape, args.threads, args.plot)
    return results


def plot(results, shape, threads, path):
    """Two panels: each system's time as a multiple of its baseline (the GEMMs alone), and
    its peak extra memory as a multiple of the logits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, h, v = shape
    logits_bytes = n * v * 4
    baselines = {s: BASELINE.get(s, "gemms") for s in results if s not in ("gemms", "gemm")}
    shown = [s for s, baseline in baselines.items() if baseline in results]
    labels = [SYSTEMS[s] for s in shown]
    times = [results[s]["time"] / results[baselines[s]]["time"] for s in shown]
    memory = [results[s]["peak_extra"] / logits_bytes for s in shown]
    colours = ["C0" if s.startswith("fastsce") else "C7" for s in shown]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * len(shown) + 1.5), sharey=True)
    left.barh(labels, times, color=colours)
    left.axvline(1.0, color="k", lw=0.8)
    left.set_xlabel("time, x the GEMMs alone (loss only: the one GEMM)", fontsize=9)
    right.barh(labels, memory, color=colours)
    right.set_xlabel("peak extra memory, x the logits", fontsize=9)
    left.invert_yaxis()
    figure.suptitle(f"fused linear + cross-entropy, {n} x {h} x {v} float32, {threads} threads")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
