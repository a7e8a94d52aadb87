"""Throughput of fastsce.dask: GB of logits per second, against the in-memory call.

    python bench/dask_throughput.py [--rows 4096] [--classes 32768] [--repeat 3]

float32 logits (rows x classes, standard normal) are generated once on the workers of a
dask.distributed LocalCluster (1, then 2 worker processes of one thread each) and kept
there (persisted), so that the timings are those of fastsce.dask's graph: the loss alone,
then the loss with the gradient (kept on the workers too), with the class axis in one
chunk (chunks of rows: the fused kernel) and in chunks of 8192 classes (the block
kernels, partials merged across the vocabulary).  The in-memory
fastsce.cross_entropy(_with_grad) on the same array, on 1 and 2 threads, is the
reference.  GB/s is the logits' size over the best of --repeat runs; "peak MB" is each
worker's peak resident memory (VmHWM, Linux) after the runs: the persisted logits and
the last gradient included.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

import fastsce
import fastsce.dask


def peak_mb() -> float:
    """This process's peak resident memory in MB: VmHWM of /proc/self/status (Linux;
    ru_maxrss would keep the high-water mark of the process that forked this one)."""
    with open("/proc/self/status") as status:
        (line,) = [line for line in status if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def in_memory_rows(x: np.ndarray, target: np.ndarray, repeat: int) -> list[str]:
    rows = []
    grad = np.empty_like(x)
    for threads in (1, 2):
        fastsce.set_num_threads(threads)
        loss = best_of(repeat, lambda: fastsce.cross_entropy(x, target))
        both = best_of(repeat, lambda: fastsce.cross_entropy_with_grad(x, target, out=grad))
        where = f"in memory, {threads} thread{'s' if threads > 1 else ''}"
        rows.append(_row(where, "-", x.nbytes, loss, both, "-"))
    fastsce.set_num_threads(None)
    return rows


def timings(client: Client, args: argparse.Namespace, chunks: tuple[int, int]) -> tuple[float, ...]:
    """(GB, best seconds of the loss, of the loss with the gradient) on the cluster."""
    shape = (args.rows, args.classes)
    x = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
    x = client.persist(x)
    wait(x)
    target = np.random.default_rng(1).integers(0, args.classes, args.rows)

    def loss_only() -> None:
        fastsce.dask.cross_entropy(x, target).compute()

    def with_grad() -> None:
        loss, grad = fastsce.dask.cross_entropy_with_grad(x, target)
        grad = client.persist(grad)  # kept on the workers
        loss.compute()
        wait(grad)

    return best_of(args.repeat, loss_only), best_of(args.repeat, with_grad)


def cluster_rows(args: argparse.Namespace, workers: int) -> list[str]:
    rows = []
    nbytes = args.rows * args.classes * 4
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        for chunks in ((args.chunk_rows, args.classes), (args.chunk_rows, args.chunk_classes)):
            loss, both = timings(client, args, chunks)
            peaks = " / ".join(f"{peak:.0f}" for peak in client.run(peak_mb).values())
            kind = "all classes" if chunks[1] == args.classes else f"{chunks[1]} classes"
            where = f"{workers} worker{'s' if workers > 1 else ''}"
            rows.append(_row(where, f"{chunks[0]} rows x {kind}", nbytes, loss, both, peaks))
    return rows


def _row(where: str, chunks: str, nbytes: int, loss: float, both: float, peak: str) -> str:
    return (
        f"| {where} | {chunks} | {nbytes / 1e9 / loss:.2f} | {nbytes / 1e9 / both:.2f} | {peak} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32768)
    parser.add_argument("--chunk-rows", type=int, default=512)
    parser.add_argument("--chunk-classes", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.classes), dtype=np.float32)
    target = rng.integers(0, args.classes, args.rows)
    print(f"float32 logits {args.rows} x {args.classes} ({x.nbytes / 1e9:.2f} GB)")
    print()
    print("| where | chunks | loss GB/s | loss + grad GB/s | peak MB per worker |")
    print("|---|---|---:|---:|---:|")
    for line in in_memory_rows(x, target, args.repeat):
        print(line, flush=True)
    del x
    for workers in (1, 2):
        for line in cluster_rows(args, workers):
            print(line, flush=True)


if __name__ == "__main__":
    main()
