"""Fuzzing: random garbage (dtypes, shapes, strides, values, options) thrown at every
public function by tests/fuzz_worker.py in a subprocess, so that a crash (segfault,
abort) is a failed test and not a dead pytest.

Every case must end in a documented exception (TypeError / ValueError naming an
argument, MemoryError for absurd sizes) with nothing written, or in a correct result;
see fuzz_worker.py for the checks.  FASTSCE_FUZZ_CASES cases per seed (default 2500)
for the seeds FASTSCE_FUZZ_SEEDS (default "1 2"); tests/run_long_checks.sh runs far more.
Reproduce a case with: python tests/fuzz_worker.py --seed S --describe N.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fuzz_worker.py")
CASES = int(os.environ.get("FASTSCE_FUZZ_CASES", "2500"))
SEEDS = [int(s) for s in os.environ.get("FASTSCE_FUZZ_SEEDS", "1 2").split()]


def run_fuzz(seed, cases, *extra):
    """Run the worker; returns (summary dict or None, completed process, crash text)."""
    result = subprocess.run(
        [sys.executable, str(WORKER), "--seed", str(seed), "--cases", str(cases), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        summary = None
    crash = ""
    if result.returncode < 0 or summary is None:
        started = re.findall(r"^case (\d+)$", result.stderr, re.MULTILINE)
        last = int(started[-1]) if started else None
        described = ""
        if last is not None:
            described = subprocess.run(
                [sys.executable, str(WORKER), "--seed", str(seed), "--describe", str(last)],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        crash = (
            f"worker died (return code {result.returncode}) in case {last} of seed "
            f"{seed}:\n{described}\nstderr tail:\n{result.stderr[-1500:]}"
        )
    return summary, result, crash


@pytest.mark.parametrize("seed", SEEDS)
def test_random_garbage_never_crashes_and_gets_a_documented_answer(seed):
    summary, result, crash = run_fuzz(seed, CASES)
    assert not crash, crash
    failures = "\n".join(
        f"case {f['case']}: {f['call']}\n  -> {f['failure']}" for f in summary["failures"]
    )
    assert result.returncode == 0 and summary["failed"] == 0, (
        f"{summary['failed']} of {summary['cases']} fuzz cases failed (seed {seed}):\n{failures}"
    )
    assert summary["cases"] == CASES
    outcomes = summary["outcomes"]
    print(
        f"fuzz seed {seed}: {summary['cases']} cases, outcomes {json.dumps(outcomes)}, "
        f"warnings {summary['warnings']}"
    )
    # the garbage reaches every function, and both ends: results and errors
    functions = {key.split(":")[0] for key in outcomes}
    for function in functions:
        assert outcomes.get(f"{function}: ok", 0) > 0, f"{function}: no successful call"
        errors = sum(
            v
            for k, v in outcomes.items()
            if k.startswith(function + ":") and not k.endswith(": ok")
        )
        assert errors > 0, f"{function}: no rejected call"
    assert len(functions) >= 7, functions


def test_the_harness_reports_a_crash():
    """A worker that dies (here a deliberate SIGSEGV at case 5) fails the test with the
    case that crashed, instead of passing or taking pytest down."""
    summary, result, crash = run_fuzz(3, 10, "--crash-at", "5")
    assert result.returncode < 0
    assert summary is None
    assert "in case 5 of seed 3" in crash, crash
