/*
 * fsce_rows_both_dtypes.h -- the row helpers (fsce_rows_impl.h) for float32 and
 * float64 under the instruction-set settings fsce_rows.c defines before
 * including it; those settings are undefined again at the end, ready for the
 * next instruction set.
 */
#define FSCE_DOUBLE 0
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_DOUBLE 1
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE

#undef FSCE_ISA
#undef FSCE_WIDTH_SUFFIX
#undef FSCE_TARGET
#undef FSCE_FMA
#undef FSCE_AVX2_INTRINSICS
#undef FSCE_AVX512_INTRINSICS
