/*
 * fsce_vectors.h -- vector types and helpers of one width, included by
 * fsce_simd.h once per width with FSCE_VECTOR_BYTES set:
 *   16  the baseline (SSE2, NEON): names end in _128, no target attribute
 *   32  AVX2: unsuffixed names (f32v, fsce_load_f32, fsce_acc), target avx2,fma
 *   64  AVX-512: names end in _512, the AVX-512 target
 *    8  one lane, without vector extensions (MSVC, FSCE_SCALAR_ONLY): unsuffixed
 * The target attribute applies on x86-64 only (FSCE_X86_VECTOR_TARGETS).
 */
#if FSCE_VECTOR_BYTES == 16
#define FSCE_WIDTH_SUFFIX _128
#elif FSCE_VECTOR_BYTES == 64
#define FSCE_WIDTH_SUFFIX _512
#else
#define FSCE_WIDTH_SUFFIX
#endif
#if FSCE_X86_VECTOR_TARGETS && FSCE_VECTOR_BYTES == 32
#define FSCE_VECTOR_TARGET FSCE_TARGET_AVX2
#elif FSCE_X86_VECTOR_TARGETS && FSCE_VECTOR_BYTES == 64
#define FSCE_VECTOR_TARGET FSCE_TARGET_AVX512
#else
#define FSCE_VECTOR_TARGET
#endif

#define V_(name) FSCE_CAT(name, FSCE_WIDTH_SUFFIX)
#define VFUNC FSCE_VECTOR_TARGET FSCE_INLINE

#if FSCE_VECTOR_EXTENSIONS
typedef float V_(f32v) __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef int32_t V_(i32v) __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef double V_(f64v) __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef int64_t V_(i64v) __attribute__((vector_size(FSCE_VECTOR_BYTES)));
typedef double V_(f64v_wide) __attribute__((vector_size(2 * FSCE_VECTOR_BYTES)));
#else
typedef float V_(f32v);
typedef int32_t V_(i32v);
typedef double V_(f64v);
typedef int64_t V_(i64v);
#endif

#define F32_LANES ((ptrdiff_t)(sizeof(V_(f32v)) / sizeof(float)))
#define F64_LANES ((ptrdiff_t)(sizeof(V_(f64v)) / sizeof(double)))

/* Bit casts through memcpy: free for vectors, well defined for scalars. */
VFUNC V_(i32v) V_(fsce_bits_f32)(V_(f32v) v) { V_(i32v) b; memcpy(&b, &v, sizeof b); return b; }
VFUNC V_(f32v) V_(fsce_from_bits_f32)(V_(i32v) b) { V_(f32v) v; memcpy(&v, &b, sizeof v); return v; }
VFUNC V_(i64v) V_(fsce_bits_f64)(V_(f64v) v) { V_(i64v) b; memcpy(&b, &v, sizeof b); return b; }
VFUNC V_(f64v) V_(fsce_from_bits_f64)(V_(i64v) b) { V_(f64v) v; memcpy(&v, &b, sizeof v); return v; }

/* select(mask, a, b) = mask ? a : b, lane by lane (one lane: a plain conditional,
   which compilers turn into a branch-free max or blend, unlike the bit arithmetic). */
VFUNC V_(f32v) V_(fsce_select_f32)(V_(i32v) mask, V_(f32v) a, V_(f32v) b)
{
#if FSCE_VECTOR_EXTENSIONS
    return V_(fsce_from_bits_f32)((mask & V_(fsce_bits_f32)(a)) | (~mask & V_(fsce_bits_f32)(b)));
#else
    return mask ? a : b;
#endif
}
VFUNC V_(f64v) V_(fsce_select_f64)(V_(i64v) mask, V_(f64v) a, V_(f64v) b)
{
#if FSCE_VECTOR_EXTENSIONS
    return V_(fsce_from_bits_f64)((mask & V_(fsce_bits_f64)(a)) | (~mask & V_(fsce_bits_f64)(b)));
#else
    return mask ? a : b;
#endif
}

VFUNC V_(f32v) V_(fsce_splat_f32)(float s) { V_(f32v) v = {0}; return v + s; }
VFUNC V_(f64v) V_(fsce_splat_f64)(double s) { V_(f64v) v = {0}; return v + s; }

/* Unaligned loads and stores of a whole vector. */
VFUNC V_(f32v) V_(fsce_load_f32)(const float *p) { V_(f32v) v; memcpy(&v, p, sizeof v); return v; }
VFUNC V_(f64v) V_(fsce_load_f64)(const double *p) { V_(f64v) v; memcpy(&v, p, sizeof v); return v; }
VFUNC void V_(fsce_store_f32)(float *p, V_(f32v) v) { memcpy(p, &v, sizeof v); }
VFUNC void V_(fsce_store_f64)(double *p, V_(f64v) v) { memcpy(p, &v, sizeof v); }

/* Partial load of the last r < lanes elements; the other lanes hold `pad`. */
VFUNC V_(f32v) V_(fsce_load_tail_f32)(const float *p, ptrdiff_t r, float pad)
{
    float tmp[F32_LANES];
    for (ptrdiff_t i = 0; i < F32_LANES; ++i) tmp[i] = i < r ? p[i] : pad;
    return V_(fsce_load_f32)(tmp);
}
VFUNC V_(f64v) V_(fsce_load_tail_f64)(const double *p, ptrdiff_t r, double pad)
{
    double tmp[F64_LANES];
    for (ptrdiff_t i = 0; i < F64_LANES; ++i) tmp[i] = i < r ? p[i] : pad;
    return V_(fsce_load_f64)(tmp);
}
VFUNC void V_(fsce_store_tail_f32)(float *p, ptrdiff_t r, V_(f32v) v)
{
    float tmp[F32_LANES];
    V_(fsce_store_f32)(tmp, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = tmp[i];
}
VFUNC void V_(fsce_store_tail_f64)(double *p, ptrdiff_t r, V_(f64v) v)
{
    double tmp[F64_LANES];
    V_(fsce_store_f64)(tmp, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = tmp[i];
}

/*
 * Float64 accumulation.  Sums are always carried in double lanes, whatever
 * the element type: a float32 row of 50257 exponentials summed in float32
 * would lose ~1e-5 of relative accuracy, which is visible in the loss.
 */
typedef struct { V_(f64v) lo, hi; } V_(fsce_acc);

VFUNC V_(fsce_acc) V_(fsce_acc_zero)(void)
{
    V_(fsce_acc) a = {V_(fsce_splat_f64)(0.0), V_(fsce_splat_f64)(0.0)};
    return a;
}

VFUNC void V_(fsce_acc_add_f32)(V_(fsce_acc) *acc, V_(f32v) v)
{
#if FSCE_VECTOR_EXTENSIONS
    /* widened whole, then split: GCC widens half vectors of two floats lane by lane */
    const V_(f64v_wide) wide = __builtin_convertvector(v, V_(f64v_wide));
    V_(f64v) lo, hi;
    memcpy(&lo, &wide, sizeof lo);
    memcpy(&hi, (const char *)&wide + sizeof lo, sizeof hi);
    acc->lo += lo;
    acc->hi += hi;
#else
    acc->lo += (double)v;
#endif
}
VFUNC void V_(fsce_acc_add_f64)(V_(fsce_acc) *acc, V_(f64v) v) { acc->lo += v; }

/* The per-lane sums of values added with fsce_acc_add_f32 (F32_LANES lanes) or _f64. */
VFUNC void V_(fsce_acc_lanes)(V_(fsce_acc) acc, double *lanes, ptrdiff_t n_lanes)
{
    V_(fsce_store_f64)(lanes, acc.lo);
    if (n_lanes > F64_LANES) V_(fsce_store_f64)(lanes + F64_LANES, acc.hi);
}

VFUNC double V_(fsce_acc_total)(V_(fsce_acc) acc)
{
    double lanes[F64_LANES];
    V_(fsce_store_f64)(lanes, acc.lo + acc.hi);
    for (ptrdiff_t width = F64_LANES / 2; width > 0; width /= 2) /* a tree, not a chain */
        for (ptrdiff_t i = 0; i < width; ++i) lanes[i] += lanes[i + width];
    return lanes[0];
}

#undef F32_LANES
#undef F64_LANES
#undef V_
#undef VFUNC
#undef FSCE_VECTOR_BYTES
#undef FSCE_WIDTH_SUFFIX
#undef FSCE_VECTOR_TARGET
