"""Compare fastsce with other softmax cross-entropy implementations in one run.

    python bench/compare.py [--quick] [--budget SECONDS] [--repeat N] [--threads N ...]
                            [--sections NAME ...] [--wait-quiet SECONDS]
                            [--output bench/results.md] [--plot PNG]

Prints a markdown report (machine, then one table per task) and writes it to
--output; when matplotlib is importable also writes a plot of effective
bandwidth against the number of classes (float32, the largest thread count).

Design
- The systems are those of fastsce._speed, shared with ``python -m fastsce``
  and bench/test_bench.py; nothing is reimplemented here.
- A Section pairs the systems of one task with the floor of that task:
  loss + gradient against the bandwidth floor (read the logits, write an array
  of the same size), loss only against the fastest of several streaming reads.
- A case is (dtype, shape, threads).  All systems of a section are set up
  inside ``_speed.thread_count(threads)`` and timed together by
  ``_speed.best_times`` (interleaved rounds, best of N), so the ratios in a
  row come from the same stretch of a noisy, shared machine; then the floor
  candidates, likewise (apart, because the OpenBLAS threads behind np.dot
  keep spinning after a call and slow down whatever runs next).
- The naive NumPy version loops over rows in Python: its call time is
  extrapolated from a few rows and it is skipped ("—") where one call would
  exceed MAX_CALL_SECONDS.
- The machine is shared, so each row also records how many CPUs other
  processes kept busy meanwhile (/proc/stat minus this process's CPU time),
  and --wait-quiet waits for them to go idle before each case.
- Measuring yields plain Row records; the markdown and the plot are pure
  functions of them.
"""

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fastsce
from fastsce import _kernels, _speed

HERE = Path(__file__).resolve().parent

#: (rows, classes), from a tiny call to a vocabulary-sized one
FULL_SIZES = [(64, 10), (1024, 100), (4096, 1000), (256, 10000), (512, 32000), (32, 128000)]
QUICK_SIZES = [(64, 10), (1024, 100), (256, 10000)]
DTYPES = [np.float32, np.float64]
DEFAULT_THREADS = [1, 2]
#: systems that loop over rows in Python: their call time, extrapolated from a few
#: rows, decides whether they are timed at all
ROW_LOOP_SYSTEMS = {"naive NumPy"}
#: a row-loop system whose single call would take longer is not timed
MAX_CALL_SECONDS = 2.0
#: rows on which a row-loop system's call time is estimated before the real timing
ESTIMATE_ROWS = 8
#: seconds of timing for that estimate (best of 3 rounds: one slow call must not skip a system)
ESTIMATE_BUDGET = 0.01
#: --wait-quiet: other processes count as quiet below this many busy CPUs ...
QUIET_LOAD = 0.2
#: ... measured over this long
QUIET_PROBE_SECONDS = 0.2
MISSING = "—"


@dataclasses.dataclass(frozen=True)
class Section:
    """One task: the systems that perform it and the floor they are measured against."""

    title: str
    systems: dict  # name -> factory make(logits, target) -> run
    floors: dict  # name -> factory; the fastest candidate is the floor
    floor_label: str
    passes: int  # passes over the logits' bytes the floor makes (for GB/s)
    dtypes: tuple = tuple(DTYPES)  # the logits' dtypes it is measured on
    sizes: tuple = ()  # its own shapes (rows, classes); empty: the run's sizes
    per_element: bool = False  # a column of fastsce's nanoseconds per element


LOSS_AND_GRAD = Section(
    title="Loss + gradient (reduction='mean')",
    systems={name: make for name, make in _speed.SYSTEMS.items() if name != "bandwidth floor"},
    floors={"np.multiply(x, 1.0, out=g)": _speed.SYSTEMS["bandwidth floor"]},
    floor_label="bandwidth floor",
    passes=2,
)
LOSS_ONLY = Section(
    title="Loss only (cross_entropy, reduction='mean')",
    systems=_speed.LOSS_SYSTEMS,
    floors=_speed.READ_FLOORS,
    floor_label="read floor",
    passes=1,
)


#: rows of 17-512 classes, whose fixed cost per row long rows amortise
SHORT_ROWS = dataclasses.replace(
    LOSS_AND_GRAD,
    title="Short rows: loss + gradient (reduction='mean'), per element",
    sizes=((1024, 17), (1024, 20), (1024, 32), (1024, 64), (1024, 100), (2048, 256), (512, 512)),
    per_element=True,
)


def entry_section(title, systems):
    """A framework entry point's section: its loss + gradient against the bandwidth floor."""
    return Section(
        title=title,
        systems=systems,
        floors={"np.multiply(x, 1.0, out=g)": _speed.SYSTEMS["bandwidth floor"]},
        floor_label="bandwidth floor",
        passes=2,
    )


# fastsce here is fastsce.torch.cross_entropy: forward + backward of a fresh leaf
TORCH_ENTRY = entry_section(
    "Through PyTorch: fastsce.torch vs F.cross_entropy", _speed.TORCH_ENTRY_SYSTEMS
)
# fastsce here is fastsce.jax.cross_entropy: jax.jit(jax.value_and_grad(...)), as optax
JAX_ENTRY = entry_section(
    "Through JAX: fastsce.jax vs optax, under jax.jit", _speed.JAX_ENTRY_SYSTEMS
)


def sixteen_bit_dtypes():
    """bfloat16 (when ml_dtypes is importable) and float16."""
    try:
        import ml_dtypes
    except ImportError:
        return (np.float16,)
    return (ml_dtypes.bfloat16, np.float16)


def fastsce_float32_gradient(logits, target):
    grad = np.empty(logits.shape, np.float32)
    return lambda: fastsce.cross_entropy_with_grad(logits, target, out=grad)


def fastsce_on_float32(logits, target):
    """fastsce on a float32 copy of the same values (the copy made before the timing)."""
    return _speed.fastsce_system(logits.astype(np.float32), target)


def copy_floor(logits, target):
    grad = np.empty_like(logits)
    return lambda: np.copyto(grad, logits)


# fastsce here is the 16-bit call with a 16-bit out=; the float32 call on the same values
# is the reference the 16-bit logits are for (its speed-up column: float32 time / 16-bit)
SIXTEEN_BIT = Section(
    title="16-bit logits, loss + gradient (reduction='mean'): against float32",
    systems={
        "fastsce": _speed.fastsce_system,
        "fastsce, float32 gradient": fastsce_float32_gradient,
        "fastsce on float32": fastsce_on_float32,
    },
    floors={"np.copyto(g, x)": copy_floor},
    floor_label="bandwidth floor",
    passes=2,
    dtypes=sixteen_bit_dtypes(),
)
#: every section, by the name --sections takes
SECTIONS_BY_NAME = {
    "loss-and-grad": LOSS_AND_GRAD,
    "loss": LOSS_ONLY,
    "short-rows": SHORT_ROWS,
    "torch": TORCH_ENTRY,
    "jax": JAX_ENTRY,
    "16-bit": SIXTEEN_BIT,
}
SECTIONS = list(SECTIONS_BY_NAME.values())
#: one plot colour per system and floor, the same in every panel
PLOTTED = dict.fromkeys(
    name for section in SECTIONS for name in [*section.systems, section.floor_label]
)
COLOURS = {name: f"C{index}" for index, name in enumerate(PLOTTED)}


@dataclasses.dataclass(frozen=True)
class Row:
    """Best seconds per call of each system (None: not measured) for one case."""

    section: Section
    dtype: str
    shape: tuple
    threads: int
    seconds: dict
    floor_name: str
    floor_seconds: float
    logits_bytes: int
    other_load: float  # CPUs other processes kept busy meanwhile (None: unknown)


# -- measuring ---------------------------------------------------------------


def estimated_call_seconds(make, logits, target):
    """Seconds one call on all rows would take, extrapolated from the first few rows
    (None when the system is not importable)."""
    sample = min(len(logits), ESTIMATE_ROWS)
    run = make(logits[:sample], target[:sample])
    if run is None:
        return None
    return _speed.best_time(run, budget=ESTIMATE_BUDGET, repeat=3) * len(logits) / sample


def fast_enough(name, make, logits, target):
    if name not in ROW_LOOP_SYSTEMS:
        return True
    estimate = estimated_call_seconds(make, logits, target)
    return estimate is None or estimate <= MAX_CALL_SECONDS


def runnable_systems(factories, logits, target):
    """{name: run} of the systems that are importable and fast enough to time."""
    runs = {}
    for name, make in factories.items():
        if fast_enough(name, make, logits, target):
            run = make(logits, target)
            if run is not None:
                runs[name] = run
    return runs


def best_times(factories, logits, target, budget, repeat):
    """{name: best seconds per call} of the runnable systems, timed in interleaved rounds."""
    return _speed.best_times(runnable_systems(factories, logits, target), budget, repeat)


def busy_cpu_seconds():
    """CPU-seconds all processes have kept the CPUs busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot():
    return busy_cpu_seconds(), time.process_time(), time.perf_counter()


def other_processes_cpus(since):
    """CPUs kept busy by other processes, on average, since `since` (a cpu_snapshot)."""
    (busy, own, wall), (busy_now, own_now, wall_now) = since, cpu_snapshot()
    if busy is None or busy_now is None:
        return None
    return max(0.0, (busy_now - busy - (own_now - own)) / (wall_now - wall))


def wait_for_quiet(max_seconds):
    """Wait, at most max_seconds, for a moment when other processes leave the CPUs idle."""
    deadline = time.perf_counter() + max_seconds
    while time.perf_counter() < deadline:
        start = cpu_snapshot()
        time.sleep(QUIET_PROBE_SECONDS)
        load = other_processes_cpus(start)
        if load is None or load < QUIET_LOAD:
            return


def measure(section, dtype, shape, threads, budget, repeat):
    """Row of one section for one case: its systems timed together, then its floors.

    Floors apart: the OpenBLAS threads behind np.dot keep spinning for a while
    after a call and would slow down whichever system was timed next.
    """
    logits, target = _speed.problem(*shape, dtype)
    start = cpu_snapshot()
    with _speed.thread_count(threads):
        seconds = best_times(section.systems, logits, target, budget, repeat)
        seconds |= best_times(section.floors, logits, target, budget, repeat)
    floor_name = min((name for name in section.floors if name in seconds), key=seconds.get)
    return Row(
        section=section,
        dtype=np.dtype(dtype).name,
        shape=shape,
        threads=threads,
        seconds={name: seconds.get(name) for name in section.systems},
        floor_name=floor_name,
        floor_seconds=seconds[floor_name],
        logits_bytes=logits.nbytes,
        other_load=other_processes_cpus(start),
    )


def measure_all(sizes, threads, budget, repeat, quiet_wait, sections=SECTIONS):
    rows = []
    for dtype in dict.fromkeys(dtype for section in sections for dtype in section.dtypes):
        for section in sections:
            if dtype not in section.dtypes:
                continue
            for shape in section.sizes or sizes:
                for n_threads in threads:
                    print(
                        f"measuring {section.title[:24]}: {np.dtype(dtype).name} {shape} "
                        f"threads={n_threads}",
                        file=sys.stderr,
                        flush=True,
                    )
                    wait_for_quiet(quiet_wait)
                    rows.append(measure(section, dtype, shape, n_threads, budget, repeat))
    return rows


# -- describing the machine --------------------------------------------------


def cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_description():
    model = cpuinfo_field("model name") or platform.processor() or platform.machine()
    flags = set((cpuinfo_field("flags") or "").split())
    simd = [flag for flag in ("sse4_2", "avx2", "fma", "avx512f", "asimd") if flag in flags]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({platform.machine()}), {os.cpu_count()} logical CPUs ({usable} usable)" + (
        f", flags: {' '.join(simd)}" if simd else ""
    )


def library_version(module_name):
    module = _speed._optional_import(module_name)
    return getattr(module, "__version__", "?") if module is not None else "not installed"


def load_average():
    """The 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_description(load_before):
    load = "unknown" if load_before is None else f"{load_before:.2f}"
    return [
        f"CPU: {cpu_description()}",
        f"1-minute load average before the run: {load}",
        f"OS: {platform.platform()}",
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"PyTorch {library_version('torch')}, scikit-learn {library_version('sklearn')}, "
        f"JAX {library_version('jax')}, optax {library_version('optax')}",
        f"fastsce {fastsce.__version__}, SIMD path {_kernels.simd_path()}",
    ]


# -- reporting ---------------------------------------------------------------


def format_seconds(seconds):
    if seconds is None:
        return MISSING
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def format_ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return MISSING
    ratio = numerator / denominator
    return f"{ratio:.0f}×" if ratio >= 100 else f"{ratio:.3g}×"


def system_cell(row, name):
    seconds = row.seconds[name]
    if seconds is None:
        return MISSING
    return f"{format_seconds(seconds)} ({format_ratio(seconds, row.floor_seconds)})"


def per_element_cell(row):
    seconds = row.seconds["fastsce"]
    return MISSING if seconds is None else f"{seconds * 1e9 / (row.shape[0] * row.shape[1]):.3f}"


def markdown_table(rows):
    """One section's rows: time (ratio to floor) per system, then fastsce's speed-ups."""
    section = rows[0].section
    others = [name for name in section.systems if name != "fastsce"]
    header = (
        ["dtype", "shape", "threads", section.floor_label]
        + [f"{name} (× floor)" for name in section.systems]
        + [f"speed-up vs {name}" for name in others]
        + (["fastsce ns / element"] if section.per_element else [])
        + ["other load"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        floor = format_seconds(row.floor_seconds)
        if len(section.floors) > 1:
            floor += f" `{row.floor_name}`"
        cells = (
            [row.dtype, f"{row.shape[0]} × {row.shape[1]}", str(row.threads), floor]
            + [system_cell(row, name) for name in section.systems]
            + [format_ratio(row.seconds[name], row.seconds["fastsce"]) for name in others]
            + ([per_element_cell(row)] if section.per_element else [])
            + [MISSING if row.other_load is None else f"{row.other_load:.2f}"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


SYSTEM_NOTES = [
    "Every system computes the mean softmax cross-entropy of float logits (rows × classes, "
    "3 × standard normal) against uniform random int64 class indices, and for loss + gradient "
    "its gradient; inputs, output buffers and thread settings are prepared once, outside the "
    "timing.  Every call reuses the same arrays, so those that fit in the CPU caches are timed "
    "warm, floors included.",
    "",
    "- **fastsce**: `fastsce.cross_entropy_with_grad(x, t, out=g)` / "
    "`fastsce.cross_entropy(x, t)`, threads set by `fastsce.set_num_threads(n)`.",
    "- **naive NumPy**: `fastsce.reference`, the textbook formulas row by row (a Python loop); "
    f"{MISSING} where one call would take over {MAX_CALL_SECONDS:g} s.",
    "- **vectorised NumPy**: whole-array `(softmax(x) - onehot(t)) / m` in NumPy "
    "(single-threaded whatever the thread setting).",
    "- **scikit-learn**: `HalfMultinomialLoss().loss_gradient(y, x, sample_weight=w, loss_out=l, "
    "gradient_out=g, n_threads=n)`.  It does no reduction: per row i it writes "
    "`w_i * (logsumexp(x_i) - x_i[y_i])` (the full negative log-likelihood; *half* refers to the "
    "multinomial deviance, twice that) and `w_i * (softmax(x_i) - onehot(y_i))`.  With "
    "`w_i = 1/m` and `l.sum()` this is the mean loss and its gradient, like the others; y is the "
    "targets as floats of the logits' dtype, converted once.",
    "- **PyTorch**: `F.cross_entropy(x, t)` forward + `backward()` on a CPU tensor sharing the "
    "logits' memory (forward only for loss only), `torch.set_num_threads(n)`.",
    "- **Through PyTorch** (its own section): fastsce is `fastsce.torch.cross_entropy(x, t)` "
    "forward + `backward()` of a fresh leaf `x.detach().requires_grad_()`, timed exactly as "
    "PyTorch's `F.cross_entropy` beside it.  **autograd floor**: an `autograd.Function` that "
    "does nothing (forward returns a zero loss, backward an uninitialised gradient, which "
    "autograd takes as the leaf's .grad without a copy), timed the same way: the least any "
    "loss written as an autograd.Function costs.",
    "- **Through JAX** (its own section): fastsce is `fastsce.jax.cross_entropy(x, t)` and optax "
    "`optax.softmax_cross_entropy_with_integer_labels(x, t).mean()`, each as "
    "`jax.jit(jax.value_and_grad(loss))(x, t)` on JAX arrays already on the CPU (int32 targets), "
    "waited for with `jax.block_until_ready`; float64 only when JAX's x64 mode is on.  XLA's own "
    "thread pool (optax) has the process's CPUs whatever n is.",
    "- **bandwidth floor**: `np.multiply(x, 1.0, out=g)`, one pass reading the logits and writing "
    "an array of the same size; no loss + gradient can do less memory traffic (16-bit logits: "
    "`np.copyto(g, x)`).",
    "- **16-bit logits** (their own section; bfloat16 is `ml_dtypes.bfloat16`): fastsce is "
    "`fastsce.cross_entropy_with_grad(x, t, out=g)` with g of x's dtype (a 16-bit gradient); "
    "**float32 gradient**: the same with a float32 g; **on float32**: the same call on "
    "`x.astype(np.float32)` (made before the timing), the time the 16-bit logits are "
    "measured against (its speed-up column is float32's time / the 16-bit call's).",
    "- **read floor**: the fastest, per row, of "
    + ", ".join(f"`{name}`" for name in _speed.READ_FLOORS)
    + " over the flattened logits (np.dot is BLAS, multithreaded within the thread limit; the "
    "NumPy reductions are single-threaded).",
    "- BLAS/OpenMP pools of the other libraries are limited to n threads with threadpoolctl.",
]


def measured_sections(rows):
    """The sections that have rows, in SECTIONS order."""
    return [section for section in SECTIONS if any(row.section is section for row in rows)]


def markdown_report(rows, machine, command, elapsed, budget, repeat, plot_name):
    lines = [
        "# fastsce benchmark",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"wall time {elapsed:.0f} s (timing budget {budget:g} s per system and case, "
        f"best of {repeat} interleaved rounds)",
        "",
    ]
    lines += [f"- {line}" for line in machine] + [""]
    lines += [
        "Cells: best time per call (time / floor).  Speed-up: fastsce's speed-up over "
        f"another system, its time / fastsce's.  {MISSING}: not measured.  Other load: "
        "CPUs kept busy by other processes while the row was measured, on average "
        "(from /proc/stat); rows with a high value, above all 2-thread rows, are "
        "unreliable.",
        "",
    ]
    for section in measured_sections(rows):
        section_rows = [row for row in rows if row.section is section]
        lines += [f"## {section.title}", ""] + markdown_table(section_rows) + [""]
    if plot_name:
        lines += [f"![effective bandwidth against classes]({plot_name})", ""]
    lines += ["## What is measured", ""] + SYSTEM_NOTES + [""]
    return "\n".join(lines)


def write_plot(rows, path, threads):
    """GB/s (floor's passes × logits bytes / time) against classes, float32, `threads`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sections = [  # the 16-bit section has no float32 rows
        section
        for section in measured_sections(rows)
        if any(row.section is section and row.dtype == "float32" for row in rows)
    ]
    if not sections:
        return False
    figure, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4.5), squeeze=False)
    for axis, section in zip(axes[0], sections):
        chosen = sorted(
            (
                row
                for row in rows
                if row.section is section and row.dtype == "float32" and row.threads == threads
            ),
            key=lambda row: row.shape[1],
        )
        lines = {name: [row.seconds[name] for row in chosen] for name in section.systems}
        lines[section.floor_label] = [row.floor_seconds for row in chosen]
        for name, seconds in lines.items():
            points = [
                (row.shape[1], section.passes * row.logits_bytes / s / 1e9)
                for row, s in zip(chosen, seconds)
                if s is not None
            ]
            if points:
                axis.plot(
                    *zip(*points),
                    marker="o",
                    label=name,
                    color=COLOURS[name],
                    linestyle="--" if name == section.floor_label else "-",
                )
        axis.set(
            xscale="log",
            yscale="log",
            xlabel="classes",
            ylabel=f"GB/s ({section.passes} × logits bytes / time)",
            title=f"{section.title}\nfloat32, {threads} threads",
        )
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# -- command line ------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer sizes and a short budget (CI smoke run, well under a minute)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of timing per system and case (default 0.5, quick 0.05)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="interleaved timing rounds, best kept (default 7, quick 3)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=DEFAULT_THREADS,
        metavar="N",
        help="thread counts to measure (default 1 2)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS_BY_NAME),
        default=list(SECTIONS_BY_NAME),
        metavar="NAME",
        help=f"sections to measure, of {', '.join(SECTIONS_BY_NAME)} (default: all)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to SECONDS for other processes to "
        "leave the CPUs idle (default 0: don't wait)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results.md",
        help="markdown file to write (default bench/results.md)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG to write (default: --output with suffix .png)"
    )
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = 0.05 if args.quick else 0.5
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.plot is None:
        args.plot = args.output.with_suffix(".png")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    load_before = load_average()
    start = time.perf_counter()
    rows = measure_all(
        QUICK_SIZES if args.quick else FULL_SIZES,
        args.threads,
        args.budget,
        args.repeat,
        args.wait_quiet,
        [SECTIONS_BY_NAME[name] for name in args.sections],
    )
    elapsed = time.perf_counter() - start
    plotted = write_plot(rows, args.plot, max(args.threads))
    command = " ".join(["python", "bench/compare.py", *argv])
    plot_name = os.path.relpath(args.plot, args.output.parent) if plotted else None
    report = markdown_report(
        rows,
        machine_description(load_before),
        command,
        elapsed,
        args.budget,
        args.repeat,
        plot_name,
    )
    print(report)
    args.output.write_text(report + "\n", encoding="utf-8")
    print(f"wrote {args.output}" + (f" and {args.plot}" if plotted else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
