#!/usr/bin/env bash
# Build a copy of the fastsce tree with AddressSanitizer + UndefinedBehaviorSanitizer and
# run the test suite against it.
#
#   tests/sanitizers/run_asan.sh [extra pytest arguments, e.g. -x or -k softmax]
#
# The repository's own build is never touched: the tree is copied (tar, without .git,
# build products and caches) to $FASTSCE_ASAN_DIR (default /tmp/fastsce-asan), built there
# in place with -fsanitize=address,undefined, and the copy's tests run with PYTHONPATH
# pointing at the copy.  Python itself is not instrumented, so libasan (and libubsan) are
# LD_PRELOADed; PYTHONMALLOC=malloc routes Python's small objects through the sanitizer's
# malloc too.  ASan stops a process at the first error (the test run then dies: that is a
# failure); UBSan reports are logged to files and counted at the end, every process of the
# suite (the fuzz and SIMD-path subprocesses included) writing its own.
#
# Deselected: the RSS leak checks of test_memory.py (ASan keeps freed memory in
# quarantine, so RSS grows by design; the tracemalloc checks still run), and the fuzz
# harness self-test, whose worker segfaults on purpose (ASan would report that SEGV).
#
# FASTSCE_ASAN_EXTRA_CFLAGS adds compile flags, e.g. -DFSCE_SCALAR_ONLY for the one-lane
# code.
#
# Exit status: 1 if a sanitizer reported anything or the run died, else pytest's status.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEST=${FASTSCE_ASAN_DIR:-/tmp/fastsce-asan}
PYTHON=${PYTHON:-python}
CC=${CC:-gcc}

echo "== copying $ROOT to $DEST"
case "$DEST" in /|"$ROOT"|"$ROOT"/*) echo "refusing to use $DEST"; exit 1;; esac
rm -rf "$DEST"
mkdir -p "$DEST"
tar -C "$ROOT" -cf - \
    --exclude './.git' --exclude './build' --exclude '*.so' --exclude './src/fastsce/_kernels.c' \
    --exclude './src/fastsce/_build_info.py' --exclude './.hypothesis' --exclude './.pytest_cache' \
    --exclude './.mypy_cache' --exclude './.ruff_cache' --exclude './.benchmarks' . \
    | tar -C "$DEST" -xf - || exit 1
cd "$DEST" || exit 1

SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
echo "== building with $SAN_FLAGS and OpenMP (log: $DEST/build-asan.log)"
# setup.py's OpenMP probe links a test program: it needs the sanitizer flags too
if ! CC="$CC" CFLAGS="$SAN_FLAGS ${FASTSCE_ASAN_EXTRA_CFLAGS:-}" LDFLAGS="$SAN_FLAGS" FASTSCE_OPENMP=1 \
        FASTSCE_OPENMP_CFLAGS="-fopenmp" FASTSCE_OPENMP_LDFLAGS="-fopenmp $SAN_FLAGS" \
        "$PYTHON" setup.py build_ext --inplace -j 2 > build-asan.log 2>&1; then
    tail -40 build-asan.log
    echo "build failed"
    exit 1
fi
for so in src/fastsce/_kernels*.so; do
    if ! readelf -d "$so" | grep NEEDED | grep libasan > /dev/null; then
        echo "$so is not linked with libasan"
        exit 1
    fi
done

LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
LOGS="$DEST/sanitizer-logs"
rm -rf "$LOGS"
mkdir -p "$LOGS"

export LD_PRELOAD="$LIBASAN:$LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:print_summary=1:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$LOGS/ubsan"
export PYTHONMALLOC=malloc
export PYTHONPATH="$DEST/src"
export HYPOTHESIS_STORAGE_DIRECTORY="$DEST/.hypothesis"

if ! "$PYTHON" -c "
import fastsce
from fastsce import _kernels
assert fastsce.__file__.startswith('$DEST'), fastsce.__file__
assert _kernels.openmp_enabled(), 'built without OpenMP'
print('fastsce from', fastsce.__file__, '| OpenMP on | SIMD path', _kernels.simd_path())"; then
    echo "the instrumented copy (with OpenMP) is not the one imported"
    exit 1
fi

echo "== running the test suite under ASan + UBSan"
"$PYTHON" -m pytest -p no:cacheprovider -q "$DEST/tests" \
    --deselect "tests/test_memory.py::test_rss_stable_over_100000_small_calls" \
    --deselect "tests/test_memory.py::test_rss_stable_over_100_large_calls" \
    --deselect "tests/test_memory.py::test_the_rss_measurement_sees_a_leak" \
    --deselect "tests/test_fuzz.py::test_the_harness_reports_a_crash" \
    "$@"
status=$?

reports=$(cat "$LOGS"/* 2>/dev/null | grep -c -E "ERROR: AddressSanitizer|runtime error:")
echo "== pytest exit status: $status"
echo "== sanitizer reports: $reports (logs in $LOGS)"
if [ "$reports" -gt 0 ]; then
    cat "$LOGS"/* | grep -E -A12 "ERROR: AddressSanitizer|runtime error:" | head -200
    exit 1
fi
if [ "$status" -ge 128 ] || [ "$status" -eq 3 ] || [ "$status" -eq 2 ]; then
    echo "the test run died or was interrupted"
    exit 1
fi
exit "$status"
