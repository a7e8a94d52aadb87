/*
 * fsce_half.h -- one 16-bit float to float32 and back, in integer arithmetic
 * (plain C, the same bits on every platform and compiler).
 *
 * bfloat16 is the top half of a float32: widening is a 16-bit shift, and
 * narrowing rounds the low half away to nearest, ties to even.  float16 (IEEE
 * binary16: 5 exponent bits, 10 mantissa bits) widens exactly, subnormals
 * included, and narrows to nearest even with float16's own subnormals and
 * overflow to infinity.  A NaN stays a NaN of the same sign, made quiet, its
 * payload truncated, as the x86 and arm64 conversion instructions do; the
 * vector spellings of these conversions (f32_load_bf16 ... in the vocabulary
 * headers) give the same bits.
 */
#ifndef FSCE_HALF_H
#define FSCE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float fsce_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t fsce_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float fsce_bf16_to_f32(uint16_t h) { return fsce_bits_to_f32((uint32_t)h << 16); }

static inline uint16_t fsce_f32_to_bf16(float f)
{
    const uint32_t u = fsce_f32_to_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(u >> 16 | 0x0040u); /* NaN: quiet */
    /* + 0x7FFF rounds up above the half, + the kept lowest bit breaks ties to even; a carry
       into the exponent is the right result (up to infinity) */
    return (uint16_t)((u + 0x7FFFu + (u >> 16 & 1u)) >> 16);
}

static inline float fsce_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = h >> 10 & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1F) /* infinity, or NaN made quiet */
        return fsce_bits_to_f32(sign | 0x7F800000u | mantissa << 13 | (mantissa ? 0x00400000u : 0u));
    if (exponent != 0) return fsce_bits_to_f32(sign | (exponent + 112) << 23 | mantissa << 13);
    if (mantissa == 0) return fsce_bits_to_f32(sign);
    /* subnormal: mantissa 2**-24, normalised (float32 exponent 113 - shifts) */
    uint32_t biased = 113;
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        --biased;
    }
    return fsce_bits_to_f32(sign | biased << 23 | (mantissa & 0x3FFu) << 13);
}

static inline uint16_t fsce_f32_to_f16(float f)
{
    const uint32_t u = fsce_f32_to_bits(f), magnitude = u & 0x7FFFFFFFu;
    const uint16_t sign = (uint16_t)(u >> 16 & 0x8000u);
    if (magnitude > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | (magnitude >> 13 & 0x3FFu)); /* NaN */
    if (magnitude >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* from 65520 up: infinity */
    if (magnitude >= 0x38800000u) {                                  /* a normal float16 (2**-14 up) */
        const uint32_t rebiased = magnitude - 0x38000000u;           /* exponent 127 -> 15 */
        return (uint16_t)(sign | (rebiased + 0xFFFu + (rebiased >> 13 & 1u)) >> 13);
    }
    if (magnitude < 0x33000000u) return sign; /* below 2**-25 (half the least subnormal): 0 */
    /* a subnormal float16: the value in units of 2**-24, rounded to nearest even */
    const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u, shift = 126 - (magnitude >> 23);
    const uint32_t kept = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    return (uint16_t)(sign | (kept + (rest > half || (rest == half && (kept & 1u)))));
}

#endif /* FSCE_HALF_H */
