"""The main job, python -m fastsce: options, output forms, exit status."""

import json
import subprocess
import sys

import pytest

from fastsce import __main__ as main_job
from fastsce import _selfcheck


def run_main(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "fastsce", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_describes_the_options_and_runs_nothing():
    done = run_main("--help")
    assert done.returncode == 0
    for option in ["--quick", "--full", "--self-check", "--threads", "--markdown", "--json"]:
        assert option in done.stdout
    assert "Self-check" not in done.stdout


def test_self_check_alone_passes_with_one_aligned_line_per_check():
    done = run_main("--self-check")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("  ok")]
    assert len(lines) == len(list(_selfcheck.cases()))
    assert len({line.index("error") for line in lines}) == 1  # one column for the errors
    assert "the worked example z=[3,4,1]" in done.stdout
    assert "timing" not in done.stdout


def test_a_failing_self_check_exits_with_status_1(monkeypatch, capsys):
    monkeypatch.setattr(_selfcheck, "cases", lambda: iter([("broken", lambda: (1.0, 1e-12))]))
    assert main_job.main(["--self-check"]) == 1
    assert "FAIL broken" in capsys.readouterr().out


@pytest.fixture
def tiny_sizes(monkeypatch):
    monkeypatch.setattr(main_job, "QUICK_SIZES", [((8, 5), main_job.np.float32)])
    monkeypatch.setattr(main_job, "QUICK_TIMING", (0.005, 1))


@pytest.mark.usefixtures("tiny_sizes", "restore_threads")
def test_json_is_the_whole_stdout_and_holds_every_number(capsys):
    assert main_job.main(["--json", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["self_check"]["passed"] is True
    assert len(report["self_check"]["checks"]) == len(list(_selfcheck.cases()))
    (row,) = report["timings_seconds"]
    assert (row["rows"], row["classes"], row["dtype"]) == (8, 5, "float32")
    assert row["fastsce"] > 0 and row["bandwidth floor"] > 0
    assert "timing 8x5 float32" in captured.err  # progress on stderr


@pytest.mark.usefixtures("tiny_sizes", "restore_threads")
def test_the_table_is_aligned_and_says_what_is_missing(capsys, monkeypatch):
    monkeypatch.setitem(main_job._speed.SYSTEMS, "scikit-learn", lambda logits, target: None)
    assert main_job.main(["--threads", "1"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("size"))
    row = next(line for line in out.splitlines() if line.startswith("8x5"))
    assert len(row) <= len(header) + 2 and "|" not in row
    assert "x floor: fastsce's time / the bandwidth floor's" in out
    # PyTorch may be missing too (it is in the wheel's test environment of .ci/run)
    note = next(line for line in out.splitlines() if "not installed" in line)
    assert note.startswith("scikit-learn") and "(pip install scikit-learn" in note, note
    assert note.endswith(" to compare)"), note


@pytest.mark.usefixtures("tiny_sizes", "restore_threads")
def test_markdown_on_request(capsys):
    assert main_job.main(["--markdown", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| size | dtype | fastsce | x floor |" in out
    assert "|---|---|---:|" in out


def test_bad_thread_count_is_refused():
    assert main_job.main(["--threads", "0"]) == 2
