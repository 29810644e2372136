// gemm_microkernel.h — the only instruction-set-specific part of the GEMM.
//
// A micro-kernel multiplies one packed MR×kc panel of A by one packed kc×NR
// panel of B into an MR×NR tile of C held in registers:
//
//   C[0:MR, 0:NR] = (accumulate ? C : 0) + Σ_k a[k·MR + i] · b[k·NR + j]
//
// Packing (gemm.cpp) lays both panels out so the kernel reads them strictly
// sequentially; the kernel is then just kc rank-1 updates of the tile. Edge
// tiles (fewer than MR rows or NR columns) are handled by gemm.cpp through a
// scratch tile, so every kernel here only ever sees full tiles.
#pragma once
#include <cstdint>

namespace fz {

using MicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
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
