/*
 * fsce_rows_both_dtypes.h -- the row helpers (fsce_rows_impl.h) for float32
 * then float64, in the translation unit of one instruction set, which has
 * included its vocabulary header and named its tables FSCE_TABLE_F32 and
 * FSCE_TABLE_F64.
 */
#define FSCE_DOUBLE 0
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
#define FSCE_DOUBLE 1
#include "fsce_rows_impl.h"
#undef FSCE_DOUBLE
