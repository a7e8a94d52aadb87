/*
 * fsce_simd.h -- the small vector vocabulary the row helpers are written in.
 *
 * Design: every row helper is written once against the types and inline
 * functions of fsce_vectors.h, then compiled several times (fsce_rows.c) with
 * different target attributes.  With GCC or Clang the vector types are
 * generic vectors (`vector_size`) of the registers' width: 16 bytes for the
 * baseline (SSE2 on x86-64, NEON on arm64), 32 bytes for AVX2 (functions
 * compiled with target("avx2,fma")), 64 bytes for AVX-512.  (32-byte vectors
 * on the baseline cost 2.3x: GCC splits their compares into single lanes.)
 * Compilers without vector extensions (MSVC) get one lane per "vector", so
 * the same source still builds, just without SIMD.
 *
 * Masks follow the vector-extension convention: all bits set (-1) for true,
 * 0 for false.  No function here uses -ffast-math semantics: NaN must
 * propagate and the round-to-integer trick of the exp in fsce_rows_impl.h needs strict
 * IEEE arithmetic.
 */
#ifndef FSCE_SIMD_H
#define FSCE_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Vector extensions: GCC and Clang have them; MSVC has not.  Defining
 * FSCE_SCALAR_ONLY builds the one-lane code of MSVC with GCC or Clang too,
 * which is how that code is tested on Linux (.ci/run).
 */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FSCE_SCALAR_ONLY)
#define FSCE_VECTOR_EXTENSIONS 1
#else
#define FSCE_VECTOR_EXTENSIONS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
/* every vector function is inlined, so the vector-argument ABI never applies */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#else
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define FSCE_INLINE static inline __attribute__((always_inline))
#else
#define FSCE_INLINE static __forceinline
#endif

/* a hint to fetch the cache line holding p; never faults */
#if defined(__GNUC__) || defined(__clang__)
#define FSCE_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define FSCE_PREFETCH(p) ((void)(p))
#endif

#if FSCE_VECTOR_EXTENSIONS
#define FSCE_MASK(cond) (cond)
#else
#define FSCE_MASK(cond) (-(cond))
#endif

#define FSCE_CAT_(a, b) a##b
#define FSCE_CAT(a, b) FSCE_CAT_(a, b)

/*
 * The x86 instruction sets of the AVX2 and AVX-512 paths (fsce_rows.c).  The
 * 32- and 64-byte helpers serve only those paths there and are compiled for
 * them too: Clang refuses to inline a helper that passes a 32- or 64-byte
 * vector into a function of another target (the vector ABI would change).
 */
#define FSCE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FSCE_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#if FSCE_VECTOR_EXTENSIONS && (defined(__x86_64__) || defined(__i386__))
#define FSCE_X86_VECTOR_TARGETS 1
#else
#define FSCE_X86_VECTOR_TARGETS 0
#endif

/* The vector sets, one per width (fsce_vectors.h reads FSCE_VECTOR_BYTES and names
   them): 32 bytes (AVX2; one lane without vector extensions), 16 bytes (the SSE2 / NEON
   baseline: wider generic vectors would leave GCC to split their compares lane by
   lane) and 64 bytes (AVX-512). */
#if FSCE_VECTOR_EXTENSIONS
#define FSCE_VECTOR_BYTES 32
#include "fsce_vectors.h"
#define FSCE_VECTOR_BYTES 16
#include "fsce_vectors.h"
#define FSCE_VECTOR_BYTES 64
#include "fsce_vectors.h"
#else
#define FSCE_VECTOR_BYTES 8
#include "fsce_vectors.h"
#endif

#endif /* FSCE_SIMD_H */
