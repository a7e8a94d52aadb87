"""examples/mlp_training.py: the NumPy training loop trains, on a small setting.

examples/ is not a package: the script is imported by path.  Its main(argv) returns
the per-epoch losses and the final accuracies.  Chance level is 1 / 3 (three spiral
arms of equal size); the default run reaches 0.977-1.0 test accuracy for every seed
tried (0-11): the 0.9 thresholds below leave margin and are far from chance.
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from _helpers import load_script

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "mlp_training.py"


@pytest.fixture(scope="module")
def example():
    return load_script(EXAMPLE)


@pytest.mark.parametrize("seed", [0, 1])
def test_training_reduces_the_loss_and_reaches_a_good_accuracy(example, seed):
    # the default setting (1200 points, 40 epochs, 64 hidden units): ~0.2 s
    result = example.main(["--epochs", "40", "--hidden", "64", "--seed", str(seed), "--quiet"])
    losses = result["epoch_losses"]
    assert len(losses) == 40 and np.all(np.isfinite(losses))
    assert result["final_loss"] == losses[-1]
    # from ~log(3) = 1.1 at the start to well below it (label smoothing 0.05 keeps it
    # above ~0.15 even for a perfect fit)
    assert losses[0] > 0.9
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert result["train_accuracy"] > 0.9
    assert result["test_accuracy"] > 0.9
    assert (result["n_train"], result["n_test"]) == (900, 300)


def test_results_are_reproducible(example):
    """Same seed, same numbers (fastsce's results do not depend on timing or threads)."""
    args = ["--epochs", "3", "--hidden", "16", "--points", "100", "--seed", "5", "--quiet"]
    first, second = example.main(args), example.main(args)
    for key in ("epoch_losses", "train_accuracy", "test_accuracy", "test_loss"):
        assert first[key] == second[key]


def test_prints_the_epoch_losses_and_final_accuracy(example, capsys):
    result = example.main(["--epochs", "2", "--hidden", "8", "--points", "50"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch   1  loss ") and lines[1].startswith("epoch   2  loss ")
    assert f"{result['epoch_losses'][1]:.4f}" in lines[1]
    assert lines[2].startswith("final: ") and f"{result['test_accuracy']:.3f}" in lines[2]


def test_quiet_prints_nothing_and_bad_arguments_exit(example, capsys):
    example.main(["--epochs", "1", "--points", "20", "--quiet"])
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit) as info:
        example.main(["--epochs", "0"])
    assert info.value.code == 2


def test_runs_as_a_script():
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "2", "--points", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "test accuracy" in completed.stdout.splitlines()[-1]


# ---------------------------------------------------------------------------
# every ```python block of the README runs as written

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def readme_python_blocks():
    """The README's ```python blocks (```text holds signatures, not code)."""
    text = README.read_text(encoding="utf-8")
    blocks = text.split("```python\n")[1:]
    return [block.split("\n```", 1)[0] for block in blocks]


@pytest.mark.parametrize("number", range(len(readme_python_blocks())))
def test_readme_code_blocks_run(number, capsys):
    block = readme_python_blocks()[number]
    if "import torch" in block:
        pytest.importorskip("torch")  # the PyTorch entry point's example: an optional extra
    if "import jax" in block:
        pytest.importorskip("jax")  # the JAX entry point's example: an optional extra
    if "import fastsce.dask" in block:
        pytest.importorskip("dask")  # fastsce.dask's example: an optional extra
    exec(compile(block, f"README.md python block {number}", "exec"), {})
    capsys.readouterr()


def test_readme_training_loop_learns():
    (loop,) = [block for block in readme_python_blocks() if "loss_and_grad" in block]
    namespace = {}
    exec(compile(loop, "README training loop", "exec"), namespace)
    X, y, W = namespace["X"], namespace["y"], namespace["W"]
    assert np.mean((X @ W).argmax(1) == y) > 0.9
    assert namespace["grad"].shape == (1000 % 128, 3)  # the last, smaller batch
    assert namespace["grad"].base is namespace["grad_buffer"]


# ---------------------------------------------------------------------------
# examples/lm_head_training.py: the fused LM head trains a next-token model


@pytest.fixture(scope="module")
def lm_example():
    return load_script(EXAMPLES / "lm_head_training.py")


def test_lm_head_training_approaches_the_chain_entropy(lm_example):
    # tiny: 64 tokens, 4 successors each, 6000 tokens of text (~1 s); the loss starts near
    # log(64) = 4.16 and must come within 0.5 nat of the best possible (~1.1)
    args = ["--epochs", "6", "--vocab", "64", "--dim", "8", "--length", "6000", "--quiet"]
    result = lm_example.main([*args, "--batch-size", "128"])
    losses, entropy = result["epoch_losses"], result["entropy"]
    assert len(losses) == 6 and np.all(np.isfinite(losses))
    assert losses[0] > entropy + 1.0
    assert np.all(np.diff(losses) < 0)
    assert entropy < losses[-1] < entropy + 0.5


def test_lm_head_training_prints_and_rejects_bad_arguments(lm_example, capsys):
    lm_example.main(["--epochs", "1", "--vocab", "16", "--dim", "4", "--length", "300"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch   1  loss ") and lines[1].startswith("final loss ")
    with pytest.raises(SystemExit) as info:
        lm_example.main(["--successors", "20", "--vocab", "16"])
    assert info.value.code == 2
