// simd.h — run-time choice of instruction set for plain loops.
//
// The library is compiled for baseline x86-64 (SSE2) so one build runs on any
// x86-64 CPU. A loop marked FZ_SIMD_CLONES is compiled three times — for
// AVX-512, AVX2 and the baseline — and the dynamic loader picks the best
// version for the CPU it runs on (GCC's function multi-versioning). The GEMM
// does the same by hand, with one micro-kernel per instruction set.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FZ_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FZ_SIMD_CLONES
#endif
