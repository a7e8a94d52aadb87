"""``python -m fastsce``: self-check against the NumPy oracle, then a short speed table.

Exits with status 1 when the self-check fails.  The full comparison (more
sizes, loss only, thread counts, a plot) is bench/compare.py.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np

from . import __version__, _config, _kernels, _selfcheck, _speed

SIZES = [
    ((64, 10), np.float32),
    ((4096, 1000), np.float32),
    ((512, 32000), np.float32),
    ((4096, 1000), np.float64),
]
#: skip a system whose single call takes longer than this (the naive loop at big sizes)
SLOW_CALL_SECONDS = 2.0


def describe_machine() -> str:
    return (
        f"fastsce {__version__} | {platform.machine()} {platform.processor() or ''} | "
        f"SIMD path {_kernels.simd_path()} | OpenMP {_kernels.openmp_enabled()} | "
        f"{_config.get_num_threads()} threads | numpy {np.__version__}"
    )


def speed_table() -> str:
    """Markdown table: time of each system and its ratio to fastsce's time."""
    names = [name for name in _speed.SYSTEMS if name != "fastsce"]
    lines = [
        "| size | dtype | fastsce | " + " | ".join(names) + " |",
        "|---|---|---:|" + "---:|" * len(names),
    ]
    for shape, dtype in SIZES:
        logits, target = _speed.problem(*shape, dtype)
        runs: dict[str, _speed.Run] = {}
        for name, make in _speed.SYSTEMS.items():
            run = make(logits, target)
            if run is not None and one_call_seconds(run) <= SLOW_CALL_SECONDS:
                runs[name] = run
        seconds = _speed.best_times(runs)
        fast = seconds["fastsce"]
        cells = [
            "—"
            if name not in seconds
            else f"{format_time(seconds[name])} ({seconds[name] / fast:.1f}x)"
            for name in names
        ]
        lines.append(
            f"| {shape[0]}x{shape[1]} | {np.dtype(dtype).name} | {format_time(fast)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def one_call_seconds(run: _speed.Run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def format_time(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main() -> int:
    print(describe_machine())
    print("\nSelf-check against fastsce.reference (float64 oracle):")
    passed = _selfcheck.run()
    print("self-check " + ("passed" if passed else "FAILED"))
    print(
        "\nMean loss + gradient, one call (in brackets: that time / fastsce's time;"
        " the bandwidth floor is one read-and-write pass, np.multiply(x, 1.0, out=g)):\n"
    )
    print(speed_table())
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
