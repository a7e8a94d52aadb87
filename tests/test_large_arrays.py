"""64-bit indexing.

* A virtual logits array of more than 2**31 elements -- shape (2**21 + 1, 1024), float32,
  built with as_strided with a zero row stride, so it takes one row of memory -- through
  the loss-only path: every row equals the single-row loss (reduction='none', all
  2**21 + 1 of them), and 'mean' equals it too.  Element counts and row ranges above
  2**31 must not wrap.
* Element offsets of 2**32 (byte offsets of 16 GiB): a 16 GiB anonymous mapping
  (MAP_NORESERVE; only the pages the rows touch ever get memory) holds 33 rows 512 MiB
  apart, a row stride of 2**27 elements, read in place; every function must give bit
  for bit what it gives on a compact copy.

The first check costs a few seconds (2**31 exponentials).  FASTSCE_LARGE_ARRAYS=1 adds
float64, 'sum' and logsumexp on the virtual array (tests/run_long_checks.sh sets it).
"""

import mmap
import os
import sys
import tracemalloc

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import fastsce
from _helpers import make_logits, rng_for

LONG = os.environ.get("FASTSCE_LARGE_ARRAYS", "0") == "1"
N_ROWS = 2**21 + 1
N_CLASSES = 1024


def virtual_batch(dtype):
    row = make_logits((N_CLASSES,), dtype, rng=rng_for("virtual row", np.dtype(dtype).name))
    logits = as_strided(row, shape=(N_ROWS, N_CLASSES), strides=(0, row.itemsize))
    assert logits.size > 2**31 and logits.base is not None
    return row, logits


TARGET_CLASS = 417


@pytest.mark.parametrize("dtype", [np.float32] + ([np.float64] if LONG else []))
def test_loss_of_a_virtual_batch_of_more_than_2_31_elements(dtype):
    row, logits = virtual_batch(dtype)
    target = np.full(N_ROWS, TARGET_CLASS, np.int64)
    single = fastsce.cross_entropy(row[None, :], np.array([TARGET_CLASS]), reduction="sum")
    assert np.isfinite(single) and single > 0

    losses = fastsce.cross_entropy(logits, target, reduction="none")
    assert losses.shape == (N_ROWS,) and losses.dtype == dtype
    np.testing.assert_array_equal(losses, np.full(N_ROWS, single, dtype))

    mean = fastsce.cross_entropy(logits, target)
    np.testing.assert_allclose(mean, single, rtol=1e-12)


@pytest.mark.skipif(
    not LONG, reason="long variant: FASTSCE_LARGE_ARRAYS=1 (run by tests/run_long_checks.sh)"
)
def test_sum_and_logsumexp_of_a_virtual_batch():
    row, logits = virtual_batch(np.float32)
    target = np.full(N_ROWS, TARGET_CLASS, np.int64)
    single = fastsce.cross_entropy(row[None, :], np.array([TARGET_CLASS]), reduction="sum")
    total = fastsce.cross_entropy(logits, target, reduction="sum")
    # the row losses are summed in float64 with compensation: N * single to 1e-12
    np.testing.assert_allclose(total, N_ROWS * single, rtol=1e-12)
    lse = fastsce.logsumexp(logits)
    np.testing.assert_array_equal(lse, np.full(N_ROWS, fastsce.logsumexp(row), np.float32))


# ---------------------------------------------------------------------------
# element offsets beyond 2**32 through a 16 GiB anonymous mapping

FAR_ROWS = 33
ROW_STRIDE_ELEMENTS = 2**27  # 512 MiB between float32 rows: the last starts at 2**32
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value


@pytest.fixture(scope="module")
def far_apart_rows():
    if not sys.platform.startswith("linux"):
        pytest.skip("needs a Linux anonymous MAP_NORESERVE mapping")
    n_classes = 37
    length = (FAR_ROWS - 1) * ROW_STRIDE_ELEMENTS * 4 + 2**16
    # untouched pages of an anonymous mapping take no memory: only the rows' pages do
    buffer = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
    memory = np.frombuffer(buffer, np.float32)
    logits = as_strided(memory, shape=(FAR_ROWS, n_classes), strides=(ROW_STRIDE_ELEMENTS * 4, 4))
    values = make_logits((FAR_ROWS, n_classes), np.float32, rng=rng_for("far rows"))
    logits[...] = values
    assert (FAR_ROWS - 1) * ROW_STRIDE_ELEMENTS == 2**32
    return logits, values  # unmapped when the last array over it is collected


def test_rows_512_mib_apart_up_to_16_gib_give_the_compact_results(far_apart_rows):
    logits, compact = far_apart_rows
    assert logits.strides[0] == 2**29 and not logits.flags.c_contiguous
    target = rng_for("sparse target").integers(0, logits.shape[1], logits.shape[0])
    target[::9] = -100
    criterion = fastsce.CrossEntropyLoss(label_smoothing=0.1)
    pairs = [
        (lambda a: fastsce.cross_entropy(a, target, reduction="none"), "cross_entropy"),
        (
            lambda a: fastsce.cross_entropy(a, target, weight=np.linspace(0.5, 2, 37)),
            "cross_entropy weighted mean",
        ),
        (lambda a: fastsce.cross_entropy_with_grad(a, target), "cross_entropy_with_grad"),
        (lambda a: criterion.loss_and_grad(a, target), "CrossEntropyLoss"),
        (lambda a: fastsce.softmax(a), "softmax"),
        (lambda a: fastsce.log_softmax(a, temperature=0.5), "log_softmax"),
        (lambda a: fastsce.logsumexp(a), "logsumexp"),
    ]
    # the kernels read the far-apart rows in place (a compact copy would hide the offsets)
    tracemalloc.start()
    try:
        fastsce.cross_entropy(logits, target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < compact.nbytes / 4, f"{peak} bytes allocated: the logits were copied"
    for func, name in pairs:
        far = func(logits)
        near = func(compact)
        for a, b in zip(
            far if isinstance(far, tuple) else (far,), near if isinstance(near, tuple) else (near,)
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
