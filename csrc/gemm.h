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
#include <vector>

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

// ---------------------------------------------------------------- skipping zeros
//
// A matrix with its zero entries left out: row r's non-zero entries are
// index[first[r] + t] (their columns, increasing in t) and value[...], for
// t < count[r]; nnz is the sum of the counts. The vectors only grow, so a training loop that rebuilds one
// every step allocates on its first step only.
struct NonzeroRows {
    int64_t rows = 0, cols = 0, nnz = 0;
    std::vector<int64_t> first;  // (rows,)
    std::vector<int32_t> count;  // (rows,)
    std::vector<int32_t> index;
    std::vector<float> value;
};

// The non-zero entries of X (rows, cols), row-major with leading dimension
// ld: every entry that is not ±0, NaN included; rows and cols < 2³¹. The
// rows are stored one after the other (at most twice their size is kept).
void nonzero_rows(const float* X, int64_t rows, int64_t cols, int64_t ld, NonzeroRows& out);

// out = the entries of Aᵀ: a's columns become rows, each one's entries in
// increasing order of a's row.
void transpose(const NonzeroRows& a, NonzeroRows& out);

// Zeros among the first `limit` entries of X (row by row): an estimate of
// the zero fraction that costs little however large X is.
int64_t count_zeros(const float* X, int64_t rows, int64_t cols, int64_t ld, int64_t limit);

// C = act(A·B + bias) for A (M, K) given by its non-zero entries (M = a.rows,
// K = a.cols), B (K, N) row-major with leading dimension ldb, C (M, N) with
// ldc: the product gemm(false, false, M, N, K, 1, A, ..., 0, C, ldc, ep)
// computes, with the same bits (each sum over k is the micro-kernel's, cut
// into the same kc-slices, with the zero terms left out; the epilogue runs on
// the same column tiles), and less work in proportion to A's zeros. Exact
// because 0·b = ±0 and s + ±0 = s for any finite b and s ≠ −0; two cases
// differ: B holding inf or NaN where A is 0 (gemm gives NaN, this the sum
// of the other terms), and a sum that only underflows to −0 (gemm may give
// +0). Threads split the rows of C, or, when B is the larger (K > M, K ≤ kc),
// the rows of B in a pipeline along k; each sum is the same chain in the same
// order for any thread count.
void gemm_nonzero(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N, float* C,
                  int64_t ldc, const GemmEpilogue& epilogue = {});

// C = act(X·B + bias) for a dense X (M, K) with leading dimension ldx,
// skipping its zeros: nonzero_rows(X, M, K, ldx, a), then gemm_nonzero(a,
// ...), with the same bits and `a` left holding X's entries (a layer's
// backward uses them). In the pipeline along k the threads find the entries
// of their own k as they go, so no thread waits for all of them; a's rows
// then lie K + 16 entries apart.
void gemm_skipping_zeros(const float* X, int64_t M, int64_t K, int64_t ldx, const float* B,
                         int64_t ldb, int64_t N, float* C, int64_t ldc, const GemmEpilogue& ep,
                         NonzeroRows& a);

// C = Aᵀ·B for A (rows, cols) given by its non-zero entries (a layer's x, for
// its weight gradient xᵀ·dz): gemm_nonzero(transpose(a), B, ...) with the
// same bits, the transpose done by the threads that use its parts.
void gemm_nonzero_transposed(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N,
                             float* C, int64_t ldc);

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
// The definition: C = act(A·B + bias) summed in double, A from its entries.
void gemm_nonzero(const NonzeroRows& a, const float* B, int64_t ldb, int64_t N, float* C,
                  int64_t ldc, const GemmEpilogue& epilogue = {});
// Three plain loops, the definition the fast path is tested against.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const GemmEpilogue& epilogue = {});
}  // namespace reference

}  // namespace fz
