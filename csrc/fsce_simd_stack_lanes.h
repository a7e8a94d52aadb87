/*
 * fsce_simd_stack_lanes.h -- the tails and the largest lane of a 16-byte
 * instruction set without masked loads (SSE2, NEON), through a small stack
 * array.  Included by such a header after its f32_load / f32_store /
 * f64_load / f64_store and lane counts.  The largest lane is the tree of the
 * wider paths: lane i becomes lane i + width where that is larger, width
 * halving down to 1.
 */
FSCE_INLINE f32v f32_load_tail(const float *p, ptrdiff_t r, float pad)
{
    float lanes[FSCE_F32_LANES];
    for (ptrdiff_t i = 0; i < FSCE_F32_LANES; ++i) lanes[i] = i < r ? p[i] : pad;
    return f32_load(lanes);
}
FSCE_INLINE f64v f64_load_tail(const double *p, ptrdiff_t r, double pad)
{
    double lanes[FSCE_F64_LANES];
    for (ptrdiff_t i = 0; i < FSCE_F64_LANES; ++i) lanes[i] = i < r ? p[i] : pad;
    return f64_load(lanes);
}
FSCE_INLINE void f32_store_tail(float *p, ptrdiff_t r, f32v v)
{
    float lanes[FSCE_F32_LANES];
    f32_store(lanes, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = lanes[i];
}
FSCE_INLINE void f64_store_tail(double *p, ptrdiff_t r, f64v v)
{
    double lanes[FSCE_F64_LANES];
    f64_store(lanes, v);
    for (ptrdiff_t i = 0; i < r; ++i) p[i] = lanes[i];
}

FSCE_INLINE float f32_lanes_max(f32v v)
{
    float lanes[FSCE_F32_LANES];
    f32_store(lanes, v);
    for (ptrdiff_t width = FSCE_F32_LANES / 2; width > 0; width /= 2)
        for (ptrdiff_t i = 0; i < width; ++i)
            if (lanes[i + width] > lanes[i]) lanes[i] = lanes[i + width];
    return lanes[0];
}
FSCE_INLINE double f64_lanes_max(f64v v)
{
    double lanes[FSCE_F64_LANES];
    f64_store(lanes, v);
    return lanes[1] > lanes[0] ? lanes[1] : lanes[0];
}
