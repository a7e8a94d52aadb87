/* fastsce's side of XLA's FFI C API (see fsce_xla_ffi.h). */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE  /* madvise under -std=c11 */
#endif
#include "fsce_xla_ffi.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

XLA_FFI_Error *fsce_xla_error(const XLA_FFI_CallFrame *frame, XLA_FFI_Error_Code code,
                              const char *message) {
    XLA_FFI_Error_Create_Args args;
    memset(&args, 0, sizeof args);
    args.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
    args.message = message;
    args.errc = code;
    return frame->api->XLA_FFI_Error_Create(&args);
}

static XLA_FFI_Error *invalid(const XLA_FFI_CallFrame *frame, const char *what) {
    char message[FSCE_XLA_MESSAGE_BYTES];
    snprintf(message, sizeof message, "fastsce's XLA handler: %s (not a call made by fastsce.jax)",
             what);
    return fsce_xla_error(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, message);
}

/* XLA asks every handler, when it is registered, which API version it was built
 * against.  That call frame has no API table (no way to return an error): metadata of an
 * unknown layout is left as it is, and XLA reports the version it then finds. */
static void answer_metadata_query(XLA_FFI_CallFrame *frame) {
    XLA_FFI_Metadata_Extension *extension = (XLA_FFI_Metadata_Extension *)frame->extension_start;
    if (extension->extension_base.struct_size < XLA_FFI_Metadata_Extension_STRUCT_SIZE ||
        extension->metadata->struct_size < XLA_FFI_Metadata_STRUCT_SIZE) {
        return;
    }
    extension->metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    extension->metadata->api_version.extension_start = NULL;
    extension->metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    extension->metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    extension->metadata->traits = 0;
}

static const XLA_FFI_Buffer *argument(const XLA_FFI_CallFrame *frame, int64_t i) {
    if (frame->args.types[i] != XLA_FFI_ArgType_BUFFER) return NULL;
    const XLA_FFI_Buffer *buffer = (const XLA_FFI_Buffer *)frame->args.args[i];
    return buffer->struct_size >= XLA_FFI_Buffer_STRUCT_SIZE ? buffer : NULL;
}

static const XLA_FFI_Buffer *result(const XLA_FFI_CallFrame *frame, int64_t i) {
    if (frame->rets.types[i] != XLA_FFI_RetType_BUFFER) return NULL;
    const XLA_FFI_Buffer *buffer = (const XLA_FFI_Buffer *)frame->rets.rets[i];
    return buffer->struct_size >= XLA_FFI_Buffer_STRUCT_SIZE ? buffer : NULL;
}

/* The scalar attribute `name` of this type, or NULL (attributes are few: a linear search) */
static const void *attribute(const XLA_FFI_CallFrame *frame, const char *name,
                             XLA_FFI_DataType type) {
    size_t length = strlen(name);
    for (int64_t i = 0; i < frame->attrs.size; i++) {
        const XLA_FFI_ByteSpan *key = frame->attrs.names[i];
        if (key->len != length || memcmp(key->ptr, name, length) != 0) continue;
        if (frame->attrs.types[i] != XLA_FFI_AttrType_SCALAR) return NULL;
        const XLA_FFI_Scalar *scalar = (const XLA_FFI_Scalar *)frame->attrs.attrs[i];
        return scalar->dtype == type ? scalar->value : NULL;
    }
    return NULL;
}

static int same_dims(const XLA_FFI_Buffer *a, const XLA_FFI_Buffer *b, int64_t rank) {
    if (a->rank < rank || b->rank < rank) return 0;
    for (int64_t i = 0; i < rank; i++) {
        if (a->dims[i] != b->dims[i]) return 0;
    }
    return 1;
}

static int is_index_type(XLA_FFI_DataType type) {
    switch (type) {
    case XLA_FFI_DataType_S8: case XLA_FFI_DataType_S16: case XLA_FFI_DataType_S32:
    case XLA_FFI_DataType_S64: case XLA_FFI_DataType_U8: case XLA_FFI_DataType_U16:
    case XLA_FFI_DataType_U32: case XLA_FFI_DataType_U64:
        return 1;
    default:
        return 0;
    }
}

static XLA_FFI_Error *decode_attributes(XLA_FFI_CallFrame *frame, fsce_xla_loss *call) {
    const int64_t *ignore_index = attribute(frame, "ignore_index", XLA_FFI_DataType_S64);
    const int64_t *reduction = attribute(frame, "reduction", XLA_FFI_DataType_S64);
    const double *smoothing = attribute(frame, "label_smoothing", XLA_FFI_DataType_F64);
    const double *inv_temperature = attribute(frame, "inv_temperature", XLA_FFI_DataType_F64);
    const double *softcap = attribute(frame, "softcap", XLA_FFI_DataType_F64);
    const double *z_loss = attribute(frame, "z_loss", XLA_FFI_DataType_F64);
    if (!ignore_index || !reduction || !smoothing || !inv_temperature || !softcap || !z_loss ||
        *reduction < FSCE_XLA_NONE || *reduction > FSCE_XLA_SUM) {
        return invalid(frame, "missing or bad attributes");
    }
    call->ignore_index = *ignore_index;
    call->reduction = *reduction;
    call->smoothing = *smoothing;
    call->inv_temperature = *inv_temperature;
    call->softcap = *softcap;
    call->z_loss = *z_loss;
    return NULL;
}

XLA_FFI_Error *fsce_xla_decode_loss(XLA_FFI_CallFrame *frame, fsce_xla_loss *call,
                                    int *metadata_only) {
    *metadata_only = frame->extension_start != NULL &&
                     frame->extension_start->type == XLA_FFI_Extension_Metadata;
    if (*metadata_only) {
        answer_metadata_query(frame);
        return NULL;
    }
    if (frame->struct_size < XLA_FFI_CallFrame_STRUCT_SIZE) {
        return invalid(frame, "a call frame older than its C API");
    }
    if (frame->stage != XLA_FFI_ExecutionStage_EXECUTE) {
        return invalid(frame, "called for a stage other than execution");
    }
    if (frame->args.size != 3 || frame->rets.size < 1 || frame->rets.size > 2) {
        return invalid(frame, "not 3 arguments and 1 or 2 results");
    }
    const XLA_FFI_Buffer *logits = argument(frame, 0), *target = argument(frame, 1),
                         *weight = argument(frame, 2), *loss = result(frame, 0),
                         *grad = frame->rets.size == 2 ? result(frame, 1) : NULL;
    if (!logits || !target || !weight || !loss || (frame->rets.size == 2 && !grad)) {
        return invalid(frame, "arguments or results that are not buffers");
    }
    if ((logits->dtype != XLA_FFI_DataType_F32 && logits->dtype != XLA_FFI_DataType_F64) ||
        logits->rank < 1 || loss->dtype != logits->dtype ||
        (grad && (grad->dtype != logits->dtype || grad->rank != logits->rank ||
                  !same_dims(grad, logits, logits->rank)))) {
        return invalid(frame, "logits, loss or gradient of another dtype or shape");
    }
    int64_t rank = logits->rank;
    call->single = logits->dtype == XLA_FFI_DataType_F32;
    call->logits = logits->data;
    call->n_classes = logits->dims[rank - 1];
    call->n_rows = 1;
    for (int64_t i = 0; i < rank - 1; i++) call->n_rows *= logits->dims[i];
    call->batch_rank = rank - 1;
    call->batch_dims = logits->dims;
    call->soft = target->dtype == logits->dtype && target->rank == rank;
    if (call->soft ? !same_dims(target, logits, rank)
                   : !is_index_type(target->dtype) || target->rank != rank - 1 ||
                         !same_dims(target, logits, rank - 1)) {
        return invalid(frame, "a target of another dtype or shape");
    }
    call->target = target->data;
    call->target_type = target->dtype;
    if (weight->rank != 1 || (weight->dims[0] != 0 && weight->dims[0] != call->n_classes) ||
        (weight->dtype != XLA_FFI_DataType_F32 && weight->dtype != XLA_FFI_DataType_F64)) {
        return invalid(frame, "class weights of another dtype or shape");
    }
    call->weight = weight->dims[0] != 0 ? weight->data : NULL;
    call->weight_single = weight->dtype == XLA_FFI_DataType_F32;
    call->loss = loss->data;
    call->grad = grad ? grad->data : NULL;
    XLA_FFI_Error *error = decode_attributes(frame, call);
    if (error) return error;
    int none = call->reduction == FSCE_XLA_NONE;
    if (none ? loss->rank != rank - 1 || !same_dims(loss, logits, rank - 1) : loss->rank != 0) {
        return invalid(frame, "a loss of another shape than the reduction's");
    }
    return NULL;
}

int64_t fsce_xla_widen_indices(const fsce_xla_loss *call, int64_t *out) {
    int64_t n = call->n_rows;
    switch (call->target_type) {
#define FSCE_WIDEN(TYPE)                                                         \
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)((const TYPE *)call->target)[i]; \
    return -1;
    case XLA_FFI_DataType_S8: FSCE_WIDEN(int8_t)
    case XLA_FFI_DataType_S16: FSCE_WIDEN(int16_t)
    case XLA_FFI_DataType_S32: FSCE_WIDEN(int32_t)
    case XLA_FFI_DataType_S64: FSCE_WIDEN(int64_t)
    case XLA_FFI_DataType_U8: FSCE_WIDEN(uint8_t)
    case XLA_FFI_DataType_U16: FSCE_WIDEN(uint16_t)
    case XLA_FFI_DataType_U32: FSCE_WIDEN(uint32_t)
#undef FSCE_WIDEN
    default:  /* uint64: values above INT64_MAX would wrap onto valid indices */
        for (int64_t i = 0; i < n; i++) {
            uint64_t t = ((const uint64_t *)call->target)[i];
            if (t > (uint64_t)INT64_MAX) return i;
            out[i] = (int64_t)t;
        }
        return -1;
    }
}

int64_t fsce_xla_widen_weights(const fsce_xla_loss *call, double *out) {
    for (int64_t j = 0; j < call->n_classes; j++) {
        out[j] = call->weight_single ? (double)((const float *)call->weight)[j]
                                     : ((const double *)call->weight)[j];
        if (!isfinite(out[j])) return j;
    }
    return -1;
}

/* Python's repr of a float that is not finite: nan, inf, -inf */
static const char *non_finite_repr(double value) {
    return isnan(value) ? "nan" : value > 0 ? "inf" : "-inf";
}

/* Python's repr of the position of row `row` in the batch shape: (), (i,), (i, j), ... */
static void position_repr(const fsce_xla_loss *call, int64_t row, char *text, size_t size) {
    int64_t index[64];
    int64_t rank = call->batch_rank < 64 ? call->batch_rank : 64;
    for (int64_t axis = rank - 1; axis >= 0; axis--) {
        int64_t extent = call->batch_dims[axis];
        index[axis] = extent > 0 ? row % extent : 0;
        row = extent > 0 ? row / extent : 0;
    }
    size_t used = (size_t)snprintf(text, size, "(");
    for (int64_t axis = 0; axis < rank && used < size; axis++) {
        used += (size_t)snprintf(text + used, size - used, axis ? ", %lld" : "%lld",
                                 (long long)index[axis]);
    }
    if (used < size) snprintf(text + used, size - used, rank == 1 ? ",)" : ")");
}

void fsce_xla_class_index_message(const fsce_xla_loss *call, int64_t row,
                                  const int64_t *index, char *message) {
    char position[FSCE_XLA_MESSAGE_BYTES / 2], value[32];
    position_repr(call, row, position, sizeof position);
    if (call->target_type == XLA_FFI_DataType_U64) {  /* maybe above INT64_MAX */
        snprintf(value, sizeof value, "%llu",
                 (unsigned long long)((const uint64_t *)call->target)[row]);
    } else {
        snprintf(value, sizeof value, "%lld", (long long)index[row]);
    }
    snprintf(message, FSCE_XLA_MESSAGE_BYTES,
             "`target` has class index %s at position %s, outside [0, %lld) and not "
             "ignore_index (%lld)",
             value, position, (long long)call->n_classes, (long long)call->ignore_index);
}

void fsce_xla_probability_message(const fsce_xla_loss *call, int64_t element, char *message) {
    double value = call->single ? (double)((const float *)call->target)[element]
                                : ((const double *)call->target)[element];
    snprintf(message, FSCE_XLA_MESSAGE_BYTES,
             "`target` probabilities must be finite; row %lld of the %lld rows has %s",
             (long long)(element / call->n_classes), (long long)call->n_rows,
             non_finite_repr(value));
}

void fsce_xla_weight_message(const fsce_xla_loss *call, int64_t j, char *message) {
    double value = call->weight_single ? (double)((const float *)call->weight)[j]
                                       : ((const double *)call->weight)[j];
    snprintf(message, FSCE_XLA_MESSAGE_BYTES, "`weight` must be finite, got %s for class %lld",
             non_finite_repr(value), (long long)j);
}

void fsce_xla_prefer_huge_pages(void *data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes < FSCE_XLA_HUGE_PAGES_MIN_BYTES) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)data + page - 1) / page * page;
    uintptr_t stop = ((uintptr_t)data + bytes) / page * page;
    if (stop > start) madvise((void *)start, stop - start, MADV_HUGEPAGE);  /* a hint */
#else
    (void)data;
    (void)bytes;
#endif
}
