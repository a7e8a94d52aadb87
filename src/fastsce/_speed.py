"""What the speed table compares, and how it times a call.

Each system is a factory ``make(logits, target) -> run``: the factory does the
set-up that a training loop would do once (allocating buffers, converting to
tensors) and ``run()`` computes the mean cross-entropy loss and its gradient
once.  ``bandwidth_floor`` is the cost of one streaming pass that reads the
logits and writes an array of the same size: no loss+gradient kernel can beat
it.  A factory returns None when its library is not importable.

Five families:
    SYSTEMS       loss + gradient (reduction="mean"), plus the bandwidth floor
    TORCH_ENTRY_SYSTEMS  the same through PyTorch tensors and autograd: fastsce.torch
                  against F.cross_entropy
    JAX_ENTRY_SYSTEMS  the same under jax.jit (value_and_grad): fastsce.jax against optax
    LOSS_SYSTEMS  loss only
    READ_FLOORS   passes that only read the logits, the floor of loss only; which
                  one is fastest depends on the machine, so callers time them all
                  and take the fastest

``thread_count(n)`` runs every system on n threads.  ``best_time`` times one
call; ``best_times`` times several in interleaved rounds so that a noisy
machine slows them alike and their ratios stay fair.
Used by ``python -m fastsce``, bench/compare.py and bench/test_bench.py.
"""

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _config, _loss, reference

Logits = npt.NDArray[np.floating[Any]]
Target = npt.NDArray[np.integer[Any]]
#: one call of a system; what it returns (loss, or loss and gradient) is not timed
Run = Callable[[], object]
#: set-up of a system for one problem: its run, or None when its library is missing
Factory = Callable[[Logits, Target], Run | None]


def _optional_import(name: str) -> ModuleType | None:
    """The module `name`, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# -- loss + gradient -------------------------------------------------------


def fastsce_system(logits: Logits, target: Target) -> Run:
    grad = np.empty_like(logits)
    return lambda: _loss.cross_entropy_with_grad(logits, target, out=grad)


def naive_numpy_system(logits: Logits, target: Target) -> Run:
    """The textbook formulas, row by row (fastsce.reference)."""
    return lambda: reference.cross_entropy_with_grad(logits, target)


def vectorised_numpy_system(logits: Logits, target: Target) -> Run:
    """The usual whole-array NumPy version: (S - Y) / m."""
    rows = np.arange(len(logits))

    def run() -> tuple[Any, Logits]:
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(total[:, 0]) - shifted[rows, target])
        grad = exp / total
        grad[rows, target] -= 1
        grad /= len(logits)
        return loss, grad

    return run


def sklearn_system(logits: Logits, target: Target) -> Run | None:
    """scikit-learn's HalfMultinomialLoss().loss_gradient, or None without scikit-learn.

    loss_gradient does no reduction: per sample i it writes the loss
    logsumexp(x_i) - x_i[y_i] (the full negative log-likelihood; "half" means
    half the multinomial deviance, which is twice that) and the gradient
    softmax(x_i) - onehot(y_i), each times sample_weight[i].  With
    sample_weight = 1/m the m losses sum to the mean loss and the gradient is
    the gradient of the mean, as for the other systems; the weight costs one
    multiply per element inside sklearn's own loop.  The targets are converted
    once to the logits' float dtype (sklearn's y_true must be floating), and
    n_threads = fastsce.get_num_threads() (see thread_count).
    """
    sklearn_loss = _optional_import("sklearn._loss.loss")
    if sklearn_loss is None:
        return None
    n_rows, n_classes = logits.shape
    loss = sklearn_loss.HalfMultinomialLoss(n_classes=n_classes)
    y_true = target.astype(logits.dtype)
    sample_weight = np.full(n_rows, 1.0 / n_rows, logits.dtype)
    loss_out = np.empty(n_rows, logits.dtype)
    grad_out = np.empty_like(logits)
    n_threads = _config.get_num_threads()

    def run() -> tuple[Any, Logits]:
        loss.loss_gradient(
            y_true,
            logits,
            sample_weight=sample_weight,
            loss_out=loss_out,
            gradient_out=grad_out,
            n_threads=n_threads,
        )
        return loss_out.sum(), grad_out

    return run


def _torch_inputs(logits: Logits, target: Target) -> tuple[Any, Any, Any] | None:
    """(torch, logits tensor, int64 target tensor) sharing logits' memory, or None."""
    torch = _optional_import("torch")
    if torch is None:
        return None
    return torch, torch.from_numpy(logits), torch.from_numpy(target.astype(np.int64))


def torch_system(logits: Logits, target: Target) -> Run | None:
    """torch.nn.functional.cross_entropy forward + backward, or None without torch."""
    inputs = _torch_inputs(logits, target)
    if inputs is None:
        return None
    torch, x, t = inputs

    def run() -> tuple[Any, Any]:
        leaf = x.detach().requires_grad_()
        loss = torch.nn.functional.cross_entropy(leaf, t)
        loss.backward()
        return loss.item(), leaf.grad

    return run


def fastsce_torch_system(logits: Logits, target: Target) -> Run | None:
    """fastsce.torch.cross_entropy forward + backward, exactly as torch_system times
    F.cross_entropy (the PyTorch entry point); None without torch."""
    inputs = _torch_inputs(logits, target)
    if inputs is None:
        return None
    _, x, t = inputs
    entry = importlib.import_module("fastsce.torch")

    def run() -> tuple[Any, Any]:
        leaf = x.detach().requires_grad_()
        loss = entry.cross_entropy(leaf, t)
        loss.backward()
        return loss.item(), leaf.grad

    return run


def autograd_floor_system(logits: Logits, target: Target) -> Run | None:
    """The least any PyTorch loss written as an autograd.Function costs, timed as
    torch_system: a Function whose forward returns a zero loss and whose backward returns
    an uninitialised gradient (no arithmetic, no pass over memory; autograd takes it as
    leaf.grad without a copy); None without torch."""
    inputs = _torch_inputs(logits, target)
    if inputs is None:
        return None
    torch, x, _ = inputs

    class Nothing(torch.autograd.Function):  # type: ignore[misc,name-defined]
        @staticmethod
        def forward(ctx: Any, leaf: Any) -> Any:
            ctx.leaf = leaf
            return leaf.new_zeros(())

        @staticmethod
        def backward(ctx: Any, grad_loss: Any) -> Any:
            return torch.empty_like(ctx.leaf)

    def run() -> tuple[Any, Any]:
        leaf = x.detach().requires_grad_()
        loss = Nothing.apply(leaf)
        loss.backward()
        return loss.item(), leaf.grad

    return run


def _jax_inputs(logits: Logits, target: Target) -> tuple[Any, Any, Any] | None:
    """(jax, logits, int32 targets) as JAX arrays on the CPU, or None without jax or for
    float64 logits when JAX's x64 mode is off (JAX would compute them in float32)."""
    jax = _optional_import("jax")
    if jax is None or (logits.dtype == np.float64 and not jax.config.jax_enable_x64):
        return None
    return jax, jax.device_put(logits), jax.device_put(target.astype(np.int32))


def _jitted_step(loss: Callable[..., Any], logits: Logits, target: Target) -> Run | None:
    """jax.jit(jax.value_and_grad(loss)) on the problem, waited for, or None (_jax_inputs)."""
    inputs = _jax_inputs(logits, target)
    if inputs is None:
        return None
    jax, x, t = inputs
    step = jax.jit(jax.value_and_grad(loss))
    return lambda: jax.block_until_ready(step(x, t))


def optax_system(logits: Logits, target: Target) -> Run | None:
    """optax.softmax_cross_entropy_with_integer_labels(x, t).mean() forward + backward
    under jax.jit (jax.value_and_grad), or None without jax and optax."""
    optax = _optional_import("optax")
    if optax is None:
        return None
    return _jitted_step(
        lambda x, t: optax.softmax_cross_entropy_with_integer_labels(x, t).mean(), logits, target
    )


def fastsce_jax_system(logits: Logits, target: Target) -> Run | None:
    """fastsce.jax.cross_entropy forward + backward, exactly as optax_system times optax;
    None without jax."""
    if _optional_import("jax") is None:
        return None
    entry = importlib.import_module("fastsce.jax")
    return _jitted_step(entry.cross_entropy, logits, target)


def bandwidth_floor_system(logits: Logits, target: Target) -> Run:
    out = np.empty_like(logits)
    return lambda: np.multiply(logits, 1.0, out=out)


SYSTEMS: dict[str, Factory] = {
    "fastsce": fastsce_system,
    "naive NumPy": naive_numpy_system,
    "vectorised NumPy": vectorised_numpy_system,
    "scikit-learn": sklearn_system,
    "PyTorch": torch_system,
    "bandwidth floor": bandwidth_floor_system,
}


#: loss + gradient through PyTorch's signature: fastsce.torch against F.cross_entropy
TORCH_ENTRY_SYSTEMS: dict[str, Factory] = {
    "fastsce": fastsce_torch_system,
    "PyTorch": torch_system,
    "autograd floor": autograd_floor_system,
}


#: loss + gradient under jax.jit: fastsce.jax against optax
JAX_ENTRY_SYSTEMS: dict[str, Factory] = {
    "fastsce": fastsce_jax_system,
    "optax": optax_system,
}


# -- loss only ---------------------------------------------------------------


def fastsce_loss_system(logits: Logits, target: Target) -> Run:
    return lambda: _loss.cross_entropy(logits, target)


def torch_loss_system(logits: Logits, target: Target) -> Run | None:
    """F.cross_entropy forward only (no autograd graph), or None without torch."""
    inputs = _torch_inputs(logits, target)
    if inputs is None:
        return None
    torch, x, t = inputs
    return lambda: torch.nn.functional.cross_entropy(x, t).item()


LOSS_SYSTEMS: dict[str, Factory] = {
    "fastsce": fastsce_loss_system,
    "PyTorch": torch_loss_system,
}


def _read_floor(read: Callable[[Logits], object]) -> Factory:
    """A factory for a system that applies `read` to the flattened logits."""

    def make(logits: Logits, target: Target) -> Run:
        flat = logits.reshape(-1)
        return lambda: read(flat)

    return make


#: streaming reads of the logits; np.dot is BLAS, so threaded (see thread_count)
READ_FLOORS: dict[str, Factory] = {
    "np.add.reduce(x)": _read_floor(np.add.reduce),
    "np.maximum.reduce(x)": _read_floor(np.maximum.reduce),
    "np.dot(x, x)": _read_floor(lambda flat: np.dot(flat, flat)),
}


# -- set-up and timing -------------------------------------------------------


def problem(
    n_rows: int, n_classes: int, dtype: npt.DTypeLike, seed: int = 0
) -> tuple[Logits, npt.NDArray[np.int64]]:
    """Random logits (n_rows, n_classes) of `dtype` and class-index targets."""
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    target = rng.integers(0, n_classes, n_rows)
    return logits, target


@contextlib.contextmanager
def thread_count(n_threads: int) -> Iterator[None]:
    """Run every system on `n_threads` inside the block, restoring the settings after.

    Sets fastsce.set_num_threads (read by sklearn_system at set-up, as its
    n_threads), torch.set_num_threads when torch is installed, and
    threadpoolctl's limit on the BLAS and OpenMP pools when threadpoolctl is
    installed.  NumPy's own ufunc loops are single-threaded regardless.
    """
    torch = _optional_import("torch")
    threadpoolctl = _optional_import("threadpoolctl")
    saved_fastsce = _config._num_threads
    saved_torch = torch.get_num_threads() if torch is not None else None
    with contextlib.ExitStack() as stack:
        if threadpoolctl is not None:
            stack.enter_context(threadpoolctl.threadpool_limits(limits=n_threads))
        _config.set_num_threads(n_threads)
        if torch is not None:
            torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            _config.set_num_threads(saved_fastsce)
            if torch is not None:
                torch.set_num_threads(saved_torch)


#: untimed calls that open every timing round last at least this long (and are >= 2)
SETTLE_SECONDS = 0.01


def _seconds_of(run: Run, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - start) / number


def _settle(run: Run) -> float:
    """Call `run` untimed, at least twice and for SETTLE_SECONDS; the fastest call's seconds.

    The first calls after another library ran are slow when that library's
    OpenMP threads are still spinning on the cores (several OpenMP runtimes
    are loaded: fastsce's, PyTorch's and scikit-learn's); this also warms up
    buffers and lazy imports.
    """
    fastest, spent, calls = float("inf"), 0.0, 0
    while calls < 2 or spent < SETTLE_SECONDS:
        seconds = _seconds_of(run, 1)
        fastest, spent, calls = min(fastest, seconds), spent + seconds, calls + 1
    return fastest


def best_times(
    runs: Mapping[str, Run],
    budget: float = 0.2,
    repeat: int = 5,
    after_round: Callable[[], object] | None = None,
) -> dict[str, float]:
    """{name: best seconds per call} for a dict of runs, timed in interleaved rounds.

    Each run gets about budget / repeat seconds per round; every round times
    each run once, after settling it, so a slow spell of a shared machine hits
    them all and the ratios between them stay fair.  after_round (if given) is
    called after the first settling and after every round (progress for a terminal).
    """
    once = {name: max(_settle(run), 1e-7) for name, run in runs.items()}
    numbers = {name: max(1, int(budget / repeat / once[name])) for name in runs}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        if after_round is not None:
            after_round()
        for name, run in runs.items():
            _settle(run)
            best[name] = min(best[name], _seconds_of(run, numbers[name]))
    return best


def best_time(run: Run, budget: float = 0.2, repeat: int = 5) -> float:
    """Best seconds per call over `repeat` rounds of about budget / repeat each."""
    return best_times({"run": run}, budget, repeat)["run"]
