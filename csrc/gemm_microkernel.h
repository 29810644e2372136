// gemm_microkernel.h — the only instruction-set-specific part of the GEMM.
//
// A micro-kernel multiplies an MR×kc panel of A by a kc×NR panel of B into an
// MR×NR tile of C held in registers — kc rank-1 updates of the tile:
//
//   C[0:MR, 0:NR] = (accumulate ? C : 0) + alpha · Σ_k A(i, k) · B(k, j)
//   A(i, k) = a[i·rs_a + k·cs_a]      B(k, j) = b[k·rs_b + j]  (j contiguous)
//
// Packed panels (gemm.cpp) have rs_a = 1, cs_a = MR and rs_b = NR, so the
// kernel reads them strictly sequentially. Small problems skip packing and
// pass the strides of the caller's matrices instead. Edge tiles (fewer than
// MR rows or NR columns) are handled by gemm.cpp through zero-padded panels
// and a scratch tile, so every kernel here only ever sees full tiles.
#pragma once
#include <cstdint>

namespace fz {

using MicroKernelFn = void (*)(int64_t kc, float alpha, const float* a, int64_t rs_a,
                               int64_t cs_a, const float* b, int64_t rs_b, float* c, int64_t ldc,
                               bool accumulate);

struct MicroKernel {
    const char* name;
    int mr, nr;        // register tile
    int64_t mc, kc, nc;  // cache blocks: A block mc×kc in L2, B panel kc×nr in L1
    MicroKernelFn run;
};

// One per instruction set; each lives in its own file compiled with its flags.
extern const MicroKernel kMicroKernelGeneric;  // any CPU (the compiler's default SIMD)
extern const MicroKernel kMicroKernelAvx2;     // AVX2 + FMA, 256-bit
extern const MicroKernel kMicroKernelAvx512;   // AVX-512F, 512-bit

// The micro-kernels this CPU can run, best first (used by gemm() and the tests).
int available_micro_kernels(const MicroKernel** out, int capacity);

// gemm() with a given micro-kernel (the tests run every available one).
struct GemmEpilogue;
void gemm_with_kernel(const MicroKernel& kernel, bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                      int64_t ldb, float beta, float* C, int64_t ldc,
                      const GemmEpilogue& epilogue);

}  // namespace fz
