#!/usr/bin/env bash
# The long variants of the reliability tests, which plain `pytest` runs in a
# bounded form:
#   * hypothesis property tests with FASTSCE_HYPOTHESIS_EXAMPLES examples per test
#     (default here 1000, suite default 40), drawn at random (not derandomized);
#   * the fuzzer with FASTSCE_FUZZ_CASES cases (default here 50000) for each of the seeds
#     FASTSCE_FUZZ_SEEDS (default here "11 12 13 14");
#   * the large-array tests with FASTSCE_LARGE_ARRAYS=1 (float64, 'sum' and logsumexp on
#     the virtual > 2**31-element batch).
# The sanitizer runs are separate: tests/sanitizers/run_asan.sh, run_valgrind.sh.
#
#   tests/run_long_checks.sh [extra pytest arguments]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
cd "$ROOT" || exit 1

export FASTSCE_HYPOTHESIS_EXAMPLES=${FASTSCE_HYPOTHESIS_EXAMPLES:-1000}
export FASTSCE_HYPOTHESIS_RANDOM=${FASTSCE_HYPOTHESIS_RANDOM:-1}
export FASTSCE_FUZZ_CASES=${FASTSCE_FUZZ_CASES:-50000}
export FASTSCE_FUZZ_SEEDS=${FASTSCE_FUZZ_SEEDS:-"11 12 13 14"}
export FASTSCE_LARGE_ARRAYS=1

"$PYTHON" -m pytest -p no:cacheprovider -q -s --hypothesis-show-statistics \
    tests/test_properties.py tests/test_fuzz.py tests/test_large_arrays.py "$@"
