"""``python -m fastsce``: a self-check against the NumPy oracle, then a speed table.

    python -m fastsce [--quick | --full | --self-check] [--threads N] [--markdown | --json]

--quick (the default) answers in seconds: the self-check, then mean loss + gradient
timed at a few sizes against the systems that are installed.  --full adds sizes,
float64 and the naive row-by-row NumPy version (about a minute); bench/compare.py
is the complete benchmark.  A line is printed before every step, so the terminal
is never silent for long.  The exit status is 1 when the self-check fails.

Ratios follow one convention, stated in the table's header and the README's:
"x floor" is fastsce's time / the bandwidth floor's (one pass that reads the
logits and writes an array of their size; 1.0 is the best any kernel can do), and
a peer's "x" is that peer's time / fastsce's time (how many times faster fastsce
is).  Every time is the best of several warm calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import __version__, _config, _kernels, _selfcheck, _speed

Size = tuple[tuple[int, int], type[np.floating[Any]]]

QUICK_SIZES: list[Size] = [
    ((64, 10), np.float32),
    ((4096, 1000), np.float32),
    ((512, 32000), np.float32),
]
FULL_SIZES: list[Size] = [
    ((64, 10), np.float32),
    ((1024, 100), np.float32),
    ((4096, 1000), np.float32),
    ((256, 10000), np.float32),
    ((512, 32000), np.float32),
    ((32, 128000), np.float32),
    ((64, 10), np.float64),
    ((4096, 1000), np.float64),
    ((512, 32000), np.float64),
]
#: the peers of the table, by mode (the naive loop takes seconds per call: --full only)
QUICK_PEERS = ["vectorised NumPy", "scikit-learn", "PyTorch"]
FULL_PEERS = ["naive NumPy", "vectorised NumPy", "scikit-learn", "PyTorch"]
#: the libraries behind optional peers, for the "not installed" note
OPTIONAL = {"scikit-learn": "scikit-learn", "PyTorch": "torch"}
#: (seconds of timing per system and size, interleaved rounds): --quick keeps every size
#: under about two seconds, PyTorch's slowest call included
QUICK_TIMING, FULL_TIMING = (0.1, 3), (0.5, 5)


def describe_machine() -> str:
    return (
        f"fastsce {__version__} | {platform.machine()} | SIMD path {_kernels.simd_path()} | "
        f"OpenMP {'on' if _kernels.openmp_enabled() else 'off'} | "
        f"{_config.get_num_threads()} threads | numpy {np.__version__}"
    )


def format_time(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def time_size(
    shape: tuple[int, int],
    dtype: type[np.floating[Any]],
    peers: Sequence[str],
    timing: tuple[float, int],
    progress: Callable[[], object],
) -> dict[str, Any]:
    """One row of the table: best warm seconds of fastsce, the floor and each installed peer."""
    logits, target = _speed.problem(*shape, dtype)
    names = ["fastsce", "bandwidth floor", *peers]
    runs = {}
    for name in names:
        run = _speed.SYSTEMS[name](logits, target)
        if run is not None:
            runs[name] = run
    budget, rounds = timing
    seconds = _speed.best_times(runs, budget * rounds, rounds, after_round=progress)
    return {"rows": shape[0], "classes": shape[1], "dtype": np.dtype(dtype).name, **seconds}


def table(results: list[dict[str, Any]], peers: Sequence[str], markdown: bool) -> str:
    """The results as an aligned text table (or Markdown): fastsce, x floor, then each peer
    as time and that time / fastsce's."""
    header = ["size", "dtype", "fastsce", "x floor", *peers]
    rows = []
    for result in results:
        fast = result["fastsce"]
        cells = [
            f"{result['rows']}x{result['classes']}",
            result["dtype"],
            format_time(fast),
            f"{fast / result['bandwidth floor']:.2f}",
        ]
        for peer in peers:
            seconds = result.get(peer)
            cells.append(
                "-" if seconds is None else f"{format_time(seconds)} ({seconds / fast:.1f}x)"
            )
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])
    widths = [max(len(str(line[k])) for line in [header, *rows]) for k in range(len(header))]

    def align(cells: list[str]) -> str:  # text left, numbers right
        return "  ".join(
            cell.ljust(width) if k < 2 else cell.rjust(width)
            for k, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([align(header), align(["-" * w for w in widths]), *map(align, rows)])


def missing_peers(peers: Sequence[str], results: list[dict[str, Any]]) -> list[str]:
    return [peer for peer in peers if peer in OPTIONAL and not any(peer in r for r in results)]


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastsce",
        description="Check fastsce against its NumPy oracle, then time it against its peers.",
        epilog="The complete benchmark is bench/compare.py in the source tree.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few sizes, seconds (default)")
    mode.add_argument("--full", action="store_true", help="more sizes, float64, naive NumPy")
    mode.add_argument("--self-check", action="store_true", help="the self-check only")
    parser.add_argument("--threads", type=int, metavar="N", help="threads for every system")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="the table as Markdown")
    output.add_argument("--json", action="store_true", help="machine-readable results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.threads is not None and args.threads < 1:
        print("--threads must be a positive integer", file=sys.stderr)
        return 2
    # with --json every progress line goes to stderr, so that stdout is the JSON alone
    terminal = sys.stderr if args.json else sys.stdout

    def say(text: str, end: str = "\n") -> None:
        print(text, end=end, file=terminal, flush=True)

    say(describe_machine())
    say("\nSelf-check against fastsce.reference (float64 oracle):")
    checks: list[dict[str, Any]] = []
    passed = _selfcheck.run(say, checks)
    say("self-check " + ("passed" if passed else "FAILED"))
    report: dict[str, Any] = {
        "fastsce": __version__,
        "machine": describe_machine(),
        "self_check": {"passed": passed, "checks": checks},
    }
    if not args.self_check:
        sizes, peers, timing = (
            (FULL_SIZES, FULL_PEERS, FULL_TIMING)
            if args.full
            else (QUICK_SIZES, QUICK_PEERS, QUICK_TIMING)
        )
        threads = args.threads or _config.get_num_threads()
        say(
            f"\nMean loss + gradient, best of several warm calls, {threads} threads.\n"
            "x floor: fastsce's time / the bandwidth floor's (np.multiply(x, 1.0, out=g): "
            "read the logits, write their size; 1.0 is the limit).\n"
            "A peer's (N.Nx): its time / fastsce's time (N.N times faster).\n"
        )
        results = []
        say("loading the peers' libraries ...")
        with _speed.thread_count(threads):
            for shape, dtype in sizes:
                say(f"timing {shape[0]}x{shape[1]} {np.dtype(dtype).name} ", end="")
                results.append(time_size(shape, dtype, peers, timing, lambda: say(".", end="")))
                say("")
        say("")
        if not args.json:
            print(table(results, peers, args.markdown))
        missing = missing_peers(peers, results)
        if missing:
            packages = " ".join(OPTIONAL[peer] for peer in missing)
            say(f"\n{', '.join(missing)}: not installed (pip install {packages} to compare)")
        if not args.full:
            say("More sizes, float64 and the naive NumPy loop: python -m fastsce --full")
        report["timings_seconds"] = results
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
