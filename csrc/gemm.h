// gemm.h — general matrix multiply, the kernel most of training time goes to.
//
//   C = α · op(A) · op(B) + β · C,   op(X) = X or Xᵀ
//   op(A): (M, K), op(B): (K, N), C: (M, N), all row-major with leading
//   dimensions lda, ldb, ldc (the distance in floats between two rows).
//
// Dense layers use the three forms of backpropagation:
//   forward   Y  = X · W + b     gemm(false, false, ...) with a bias epilogue
//   backward  dX = dY · Wᵀ       gemm(false, true,  ...)
//             dW = Xᵀ · dY       gemm(true,  false, ...)
//
// The epilogue runs on each block of C right after its last product, while
// the block is still in cache: C ← act(C + bias) with bias broadcast over rows.
#pragma once
#include <cstdint>

#include "activations.h"
#include "cpu_features.h"

namespace fz {

struct GemmEpilogue {
    const float* bias = nullptr;                   // (N,) added to every row, or null
    Activation activation = Activation::identity;  // elementwise only (not softmax)
    float alpha = 0.0f;                            // LeakyReLU's slope
};

// The fast path: packed, cache-blocked, SIMD micro-kernel, OpenMP-parallel.
// β == 0 means C is written without being read (it may hold NaNs).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const GemmEpilogue& epilogue = {});

// The name of the micro-kernel gemm() runs on this CPU: "avx512", "avx2" or "generic".
const char* gemm_kernel_name();

// What gemm() chose for this CPU: the micro-kernel, its mr×nr register tile,
// the cache blocks derived from the cache sizes (gemm_blocking in gemm.cpp),
// and those sizes.
struct GemmInfo {
    const char* kernel;
    int mr, nr;
    int64_t mc, kc, nc;
    CacheSizes caches;
};
GemmInfo gemm_info();

namespace reference {
// Three plain loops, the definition the fast path is tested against.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const GemmEpilogue& epilogue = {});
}  // namespace reference

}  // namespace fz
