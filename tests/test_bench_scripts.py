"""The measurement scripts of bench/ that are not pytest-benchmark's: each runs and
prints one row per case (a handful of calls, no timing claim)."""

import pathlib

import numpy as np

from _helpers import load_script

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def table_rows(text):
    return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_short_rows_prints_every_shape(capsys):
    script = load_script(BENCH / "short_rows.py")
    script.main(["--calls", "2"])
    rows = table_rows(capsys.readouterr().out)[1:]  # after the header
    assert [row.split(" | ")[0] for row in rows] == [f"| {n} x {c}" for n, c in script.SHAPES]
    assert rows[0].endswith("| 1.00 |")  # the reference against itself


def test_tiny_calls_prints_every_form_in_both_dtypes(capsys):
    script = load_script(BENCH / "tiny_calls.py")
    script.main(["--rounds", "1"])
    rows = table_rows(capsys.readouterr().out)[1:]
    assert len(rows) == 12 and sum("float32" in row for row in rows) == 6
    assert all(row.endswith("| 1.00 |") for row in rows if "np.multiply" in row)


def test_compare_measures_16_bit_logits_against_float32(capsys, tmp_path):
    script = load_script(BENCH / "compare.py")
    output = tmp_path / "results.md"
    sizes = script.QUICK_SIZES
    script.QUICK_SIZES = [(64, 10)]
    try:
        script.main(
            [
                "--quick",
                "--sections",
                "16-bit",
                "--threads",
                "1",
                "--budget",
                "0.001",
                "--repeat",
                "1",
                "--output",
                str(output),
            ]
        )
    finally:
        script.QUICK_SIZES = sizes
    rows = table_rows(output.read_text())[1:]
    dtypes = [np.dtype(dtype).name for dtype in script.SIXTEEN_BIT.dtypes]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in dtypes]
    assert all(row.count("×") >= 5 for row in rows)  # every system timed, floor and speed-ups
    assert not (tmp_path / "results.png").exists()  # no float32 rows to plot
    capsys.readouterr()


def test_compare_short_rows_section_reports_nanoseconds_per_element():
    script = load_script(BENCH / "compare.py")
    section = script.SECTIONS_BY_NAME["short-rows"]
    assert section.sizes and all(17 <= classes <= 512 for _, classes in section.sizes)
    seconds = dict.fromkeys(section.systems)
    seconds["fastsce"] = 40.96e-6  # 2048 x 20 elements: 1 ns each
    row = script.Row(section, "float32", (2048, 20), 2, seconds, "floor", 20.48e-6, 0, 0.0)
    header, _, line = script.markdown_table([row])
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert cells[columns.index("fastsce ns / element")] == "1.000"
    assert cells[columns.index("fastsce (× floor)")] == "41 µs (2×)"
