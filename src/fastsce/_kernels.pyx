# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""fastsce's compiled kernels, in one extension module.

The C row helpers of csrc/ are compiled into this module only: one copy of
the vector code and one dispatch table, chosen once at import (fsce_init).
The kernels that run those helpers over a batch live in three included files,
one concern each:

* _kernels_softmax.pxi: softmax, log_softmax, logsumexp, their backward
  passes and the Jacobian (a ``RowOpCall`` run over row ranges);
* _kernels_loss.pxi: softmax cross-entropy, loss and gradient in one pass per
  row (a ``LossCall``), and the allocation-light path of small calls;
* _kernels_half.pxi: that loss on bfloat16 / float16 logits, widened to float32 a
  row at a time (a ``HalfLossCall``);
* _kernels_xla.pxi: XLA's handler of that loss (fastsce.jax), on XLA's buffers.
* _kernels_blocks.pxi: the same over blocks of columns of rows cut along the
  class axis (per-block partials, then each block's gradient or softmax from
  the combined row state; a ``BlockCall``), for fastsce.dask.
* _kernels_linear.pxi: the same loss of logits X Wᵀ + b computed chunk by chunk
  between BLAS GEMMs (a ``LinearCall``), never holding all the logits.

The declarations both use (the row helpers' fused wrappers, for_row_ranges,
run_rows) are in _rows.pxd.  The Python layer (_softmax.py, _loss.py)
validates every argument first: nothing here can fail on bad input.
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport INFINITY, NAN, exp, isfinite, isinf, tanh
from libc.stdint cimport int64_t, uint16_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from ._rows cimport (FSCE_SMALL_ROW_CLASSES, fsce_confident_target_grad,
                     fsce_hard_targets, fsce_init, fsce_log_total,
                     fsce_lse, fsce_simd_path, fsce_weighted, for_row_ranges, hard_rows,
                     log_of_total, row_affine, row_ay_minus_cb, row_dot, row_exp_sum, row_find,
                     row_lse, row_max, row_mul_shifted, row_max_for_lse, row_sum, run_rows,
                     small_rows)
from ._rows cimport (BFLOAT16, FLOAT16, FSCE_CONFIDENT_TOTAL, NOT_HALF, HalfFormat,
                     fsce_get_ops_f32, fsce_ops_half, fsce_row_sums, half_ops, narrow_row,
                     widen_row)

cnp.import_array()
fsce_init()

include "_kernels_softmax.pxi"
include "_kernels_loss.pxi"
include "_kernels_half.pxi"
include "_kernels_xla.pxi"
include "_kernels_blocks.pxi"
include "_kernels_linear.pxi"


def simd_path():
    """Name of the vector instruction set chosen for this CPU."""
    return fsce_simd_path().decode()
