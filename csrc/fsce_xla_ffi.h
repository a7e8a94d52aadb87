/* fastsce's side of XLA's FFI C API: what an XLA call of the cross-entropy kernel hands
 * over, decoded and checked, and the errors it can return.
 *
 * fastsce.jax calls the kernel through jax.ffi.ffi_call; XLA then calls the handler
 * (xla_cross_entropy in src/fastsce/_kernels_xla.pxi) with a call frame: its buffers
 * (XLA's own memory, row-major: no copy), its attributes (the loss options, fixed when
 * the JAX function was traced) and the API table, whose XLA_FFI_Error_Create is the
 * only way a handler reports an error.  This file is the layer that knows the C API
 * (csrc/third_party/xla_ffi/c_api.h, pinned): it checks struct sizes, answers XLA's metadata query,
 * reads the buffers and attributes into one plain struct, widens what the kernel reads
 * in other types (class indices to int64, class weights to float64) and writes the
 * error messages, which are fastsce's own.  It holds no state: every function works on
 * its arguments only, so XLA may call the handler from several threads at once.
 *
 * The call, as fastsce.jax builds it:
 *   arguments  logits (..., C) float32/float64; target: class indices (...) of an
 *              integer type, or probabilities (..., C) of logits' dtype; weight (C,)
 *              float32/float64, or (0,) for none
 *   results    loss: (...) for reduction "none", () otherwise, logits' dtype; then the
 *              gradient, logits' shape and dtype, when asked for
 *   attributes ignore_index (int64), reduction (int64: FSCE_XLA_NONE, _MEAN, _SUM),
 *              label_smoothing, inv_temperature, softcap (0: none), z_loss (float64)
 */
#ifndef FSCE_XLA_FFI_H
#define FSCE_XLA_FFI_H

#include <stddef.h>
#include <stdint.h>

#include "third_party/xla_ffi/c_api.h"

enum { FSCE_XLA_NONE = 0, FSCE_XLA_MEAN = 1, FSCE_XLA_SUM = 2 };

/* bytes of an error message (they are short: a value, a position, a few words) */
enum { FSCE_XLA_MESSAGE_BYTES = 512 };

typedef struct {
    int single;                       /* float32 logits, else float64 */
    const void *logits;               /* (n_rows, n_classes), C-contiguous */
    int64_t n_rows;
    int64_t n_classes;
    const void *target;               /* class indices (n_rows,) or probabilities */
    XLA_FFI_DataType target_type;
    int soft;                         /* target holds probabilities of logits' shape */
    int64_t batch_rank;               /* logits' rank - 1: the shape of the batch ... */
    const int64_t *batch_dims;        /* ... for the position in an error message */
    const void *weight;               /* (n_classes,), or NULL */
    int weight_single;                /* weight is float32, else float64 */
    void *loss;                       /* (n_rows,) for "none", else one value */
    void *grad;                       /* like logits, or NULL */
    int64_t ignore_index;
    int64_t reduction;                /* FSCE_XLA_NONE, FSCE_XLA_MEAN or FSCE_XLA_SUM */
    double smoothing;
    double inv_temperature;
    double softcap;
    double z_loss;
} fsce_xla_loss;

/* Decode a call frame into *call.  Returns NULL when it is a call to run (*metadata_only
 * 0) or XLA's metadata query, answered (*metadata_only 1); an error otherwise (a frame
 * that does not match the call above: not fastsce.jax's). */
XLA_FFI_Error *fsce_xla_decode_loss(XLA_FFI_CallFrame *frame, fsce_xla_loss *call,
                                    int *metadata_only);

/* An XLA error with this code and message. */
XLA_FFI_Error *fsce_xla_error(const XLA_FFI_CallFrame *frame, XLA_FFI_Error_Code code,
                              const char *message);

/* The class indices as int64 into out (n_rows); the row of the first index that int64
 * cannot hold (a uint64 above INT64_MAX), or -1. */
int64_t fsce_xla_widen_indices(const fsce_xla_loss *call, int64_t *out);

/* The class weights as float64 into out (n_classes); the class of the first non-finite
 * weight, or -1. */
int64_t fsce_xla_widen_weights(const fsce_xla_loss *call, double *out);

/* The messages of fastsce.cross_entropy's ValueErrors, into message
 * (FSCE_XLA_MESSAGE_BYTES): a class index out of range in `row` (index: the widened
 * indices), a non-finite probability at flat position `element`, a non-finite class
 * weight of class `j`. */
void fsce_xla_class_index_message(const fsce_xla_loss *call, int64_t row,
                                  const int64_t *index, char *message);
void fsce_xla_probability_message(const fsce_xla_loss *call, int64_t element, char *message);
void fsce_xla_weight_message(const fsce_xla_loss *call, int64_t j, char *message);

/* Ask Linux for transparent huge pages in a large result buffer, as NumPy does for its
 * own arrays (a hint, nothing else where unsupported): XLA hands out fresh memory for
 * every result, and writing a gradient of 64 MB into 4 KiB pages costs more in page
 * faults than the kernel itself (512 x 32000 float32: 20 ms against 5). */
enum { FSCE_XLA_HUGE_PAGES_MIN_BYTES = 4 << 20 };
void fsce_xla_prefer_huge_pages(void *data, size_t bytes);

#endif
