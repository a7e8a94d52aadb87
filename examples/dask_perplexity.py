"""Perplexity of a store of logits, in bounded memory, with fastsce.dask.

The store is a directory of .npy files, each a shard of rows (tokens) by classes
(vocabulary), plus target.npy with one class index per row: what a run that saves a
language model's logits leaves on disk.  Each file is read chunk by chunk through a
memory map (a chunk of rows by a chunk of the vocabulary), so neither a file nor a row
is ever loaded whole: memory stays at a few chunks per worker whatever the store's size.
The loss is fastsce's exact cross-entropy (the rows' log-sum-exp combined across the
vocabulary chunks), and perplexity = exp(mean loss).

    python examples/dask_perplexity.py --store /tmp/logits          # writes a store first
    python examples/dask_perplexity.py --store /tmp/logits --scheduler tcp://host:8786

Without --scheduler the work runs on dask's threaded scheduler in this process (nothing
to start); with it, on that dask.distributed cluster (a Client is created), whose workers
must see the store's path.  A dask progress bar shows the tasks as they complete.
"""

from __future__ import annotations

import argparse
import math
import pathlib

import dask
import dask.array as da
import numpy as np

import fastsce.dask


class NpyFile:
    """An .npy file as an array-like that dask reads slice by slice (through a memory
    map opened per read: the object itself is only a path, cheap to send to workers)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index):
        return np.array(np.load(self.path, mmap_mode="r")[index])


def write_store(store: pathlib.Path, files: int, rows: int, classes: int, seed: int) -> None:
    """A synthetic store: logits whose target class is boosted, as a trained model's are."""
    store.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    targets = []
    for k in range(files):
        target = rng.integers(0, classes, rows)
        logits = rng.standard_normal((rows, classes), dtype=np.float32)
        logits[np.arange(rows), target] += 8.0
        np.save(store / f"logits_{k:05d}.npy", logits)
        targets.append(target)
    np.save(store / "target.npy", np.concatenate(targets))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=pathlib.Path, required=True, help="directory of .npy")
    parser.add_argument("--files", type=int, default=4, help="files written for a new store")
    parser.add_argument("--rows", type=int, default=512, help="rows per file written")
    parser.add_argument("--classes", type=int, default=50257, help="vocabulary written")
    parser.add_argument("--chunk-rows", type=int, default=256)
    parser.add_argument("--chunk-classes", type=int, default=8192)
    parser.add_argument("--scheduler", help="address of a dask.distributed scheduler")
    parser.add_argument("--tiny", action="store_true", help="a small store (the tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no output")
    args = parser.parse_args(argv)
    if args.tiny:
        args.files, args.rows, args.classes, args.chunk_rows, args.chunk_classes = (
            3,
            40,
            700,
            16,
            300,
        )
    if not (args.store / "target.npy").exists():
        write_store(args.store, args.files, args.rows, args.classes, seed=0)

    files = sorted(args.store.glob("logits_*.npy"))
    chunks = (args.chunk_rows, args.chunk_classes)
    logits = da.concatenate([da.from_array(NpyFile(path), chunks=chunks) for path in files])
    target = np.load(args.store / "target.npy")
    mean_loss = fastsce.dask.cross_entropy(logits, target)  # lazy, 0-d

    if args.scheduler:
        from distributed import Client, progress

        with Client(args.scheduler) as client:
            future = client.compute(mean_loss)
            if not args.quiet:
                progress(future)
            value = float(future.result())
    elif args.quiet:
        value = float(mean_loss.compute())
    else:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            value = float(dask.compute(mean_loss)[0])
    perplexity = math.exp(value)
    if not args.quiet:
        print(
            f"{logits.shape[0]} tokens, vocabulary {logits.shape[1]}, {logits.nbytes / 1e9:.2f} GB"
        )
        print(f"mean loss {value:.6f}, perplexity {perplexity:.4f}")
    return {"perplexity": perplexity, "files": files, "target": args.store / "target.npy"}


if __name__ == "__main__":
    main()
