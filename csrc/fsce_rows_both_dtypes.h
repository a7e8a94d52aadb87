/*
 * fsce_rows_both_dtypes.h -- the row helpers (fsce_rows_impl.h) for float32
 * then float64, and the 16-bit conversions (fsce_half_impl.h) for bfloat16
 * then float16, in the translation unit of one instruction set, which has
 * included its vocabulary header and named its tables FSCE_TABLE_F32,
 * FSCE_TABLE_F64, FSCE_TABLE_BF16 and FSCE_TABLE_F16.
 */
#define FSCE_DOUBLE 0
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_DOUBLE 1
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_HALF_FORMAT_BF16 1
#include "fsce_half_impl.h"
#undef FSCE_HALF_FORMAT_BF16
#define FSCE_HALF_FORMAT_BF16 0
#include "fsce_half_impl.h"
#undef FSCE_HALF_FORMAT_BF16
