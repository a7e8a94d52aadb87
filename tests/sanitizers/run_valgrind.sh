#!/usr/bin/env bash
# Run a small workload (tests/sanitizers/valgrind_subset.py: every public function, row
# tails of every length, both dtypes, options, out=, error paths, one multi-threaded
# call) under valgrind memcheck, once with the SIMD path chosen for this CPU and once
# with FASTSCE_SIMD=baseline, against the installed (in place) build.  Valgrind does not
# emulate AVX-512, so under it the chosen path is at most AVX2+FMA; the AVX-512 path is
# covered by run_asan.sh.
#
# Python's own allocator noise is avoided with PYTHONMALLOC=malloc; what remains from
# the interpreter and numpy is not ours, so only errors with a frame in fastsce's
# extension modules (_kernels, fsce_* helpers) count.  All
# error blocks are kept in the logs ($FASTSCE_VALGRIND_LOGS, default
# /tmp/fastsce-valgrind).
#
# Exit status: 1 if memcheck reported an error in fastsce's code or the workload failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python}
PYTHON_EXE=$("$PYTHON" -c "import sys; print(sys.executable)")   # not a pyenv shim script
LOGS=${FASTSCE_VALGRIND_LOGS:-/tmp/fastsce-valgrind}
rm -rf "$LOGS"
mkdir -p "$LOGS"
failed=0

for simd in default baseline; do
    log="$LOGS/memcheck-$simd.log"
    echo "== valgrind memcheck, SIMD path: $simd"
    if [ "$simd" = baseline ]; then export FASTSCE_SIMD=baseline; else unset FASTSCE_SIMD; fi
    PYTHONMALLOC=malloc valgrind --tool=memcheck --error-limit=no --num-callers=40 \
        --log-file="$log" "$PYTHON_EXE" "$ROOT/tests/sanitizers/valgrind_subset.py"
    status=$?
    total=$(grep -E "ERROR SUMMARY" "$log" | tail -1)
    # error blocks: from a line "==pid== <description>" to the next blank "==pid== " line
    ours=$(awk '
        /^==[0-9]+== $/ { if (block != "" && block ~ /(_kernels|fsce_)/) n++; block=""; next }
        /^==[0-9]+== / { block = block "\n" $0 }
        END { if (block ~ /(_kernels|fsce_)/) n++; print n+0 }' "$log")
    echo "   workload exit status: $status"
    echo "   memcheck (all code): $total"
    echo "   errors with a frame in fastsce: $ours"
    if [ "$ours" -gt 0 ]; then
        awk '
            /^==[0-9]+== $/ { if (block ~ /(_kernels|fsce_)/) print block "\n"; block=""; next }
            /^==[0-9]+== / { block = block "\n" $0 }' "$log" | head -150
        failed=1
    fi
    if [ "$status" -ne 0 ]; then failed=1; fi
done
exit $failed
