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

#include "cpu_features.h"

namespace fz {

using MicroKernelFn = void (*)(int64_t kc, float alpha, const float* a, int64_t rs_a,
                               int64_t cs_a, const float* b, int64_t rs_b, float* c, int64_t ldc,
                               bool accumulate);

// Part of one row of C from the non-zero entries of one row of A
// (gemm_nonzero), continuing the sums c[0:n] hold (from +0 when start):
//
//   c[0:n] = (start ? 0 : c) + Σ_{t<nnz} value[t] · b[index[t]·ldb + 0:n]
//
// Each c[j] is summed in the micro-kernel's own way — a chain of fused
// multiply-adds over t in order on AVX2/AVX-512, a multiply then an add in
// the generic kernel — so when index[] lists the k where A(i, k) ≠ 0, the
// chain is run's bit for bit: a skipped term is 0·B(k, j) = ±0, and
// s + ±0 = s for any s ≠ −0. (A float stored and reloaded between calls is
// the same float, so a chain may be cut into calls anywhere.)
using NonzeroRowFn = void (*)(int64_t nnz, const float* value, const int32_t* index,
                              const float* b, int64_t ldb, int64_t n, float* c, bool start);

// The entries of x[begin:end) that are not ±0, in order: their positions k
// go to index[], their values to value[] (both with room for end − begin +
// 16: a kernel may write whole vectors past the last entry kept); returns
// how many.
using NonzeroEntriesFn = int64_t (*)(const float* x, int64_t begin, int64_t end, int32_t* index,
                                     float* value);

// Packs `width` rows of X (row r at x + r·ld, contiguous along k) over kc
// values of k into one panel, dst[k·width + r] = x[r·ld + k]: the transposing
// copy that packing op(B) with trans_b, or op(A) without trans_a, is. width is
// a multiple of 8.
using PackRowsFn = void (*)(const float* x, int64_t ld, int width, int64_t kc, float* dst);

struct MicroKernel {
    const char* name;
    int mr, nr;  // register tile
    MicroKernelFn run;
    // One row of the tile (1×NR: only c[0:NR] is written), for the GEMMs of
    // one row a generated token makes, which would otherwise fill MR − 1 rows
    // with zeros. Its sums are row 0 of run's, bit for bit: the same
    // operations in the same order.
    MicroKernelFn run_row;
    // The transposing pack in 8×8 register blocks, or null: a plain loop
    // (gemm.cpp) then moves one float at a time.
    PackRowsFn pack_rows;
    // Any n (no tile): the zero-skipping product (gemm.h, gemm_nonzero).
    NonzeroRowFn run_nonzero_row;
    NonzeroEntriesFn nonzero_entries;  // builds the rows run_nonzero_row reads
    // The same kernel with a tile half as wide (same mr, same sums), or null:
    // gemm() runs it on a C at most nr/2 columns wide, which the full tile
    // would pad to more than twice its width (a 10-class output layer).
    const MicroKernel* narrow = nullptr;
};

// pack_rows with AVX's 8-float registers; the AVX2 and AVX-512 kernels use it.
void pack_rows_avx(const float* x, int64_t ld, int width, int64_t kc, float* dst);

// One per instruction set; each lives in its own file compiled with its flags.
extern const MicroKernel kMicroKernelGeneric;  // any CPU (the compiler's default SIMD)
extern const MicroKernel kMicroKernelAvx2;     // AVX2 + FMA, 256-bit
extern const MicroKernel kMicroKernelAvx512;   // AVX-512F, 512-bit

// The micro-kernels this CPU can run, best first (used by gemm() and the tests).
int available_micro_kernels(const MicroKernel** out, int capacity);

// Cache blocks (gemm.cpp): an A block is mc×kc and stays in L2, a B
// micro-panel kc×nr stays in L1, a B block kc×nc in this core's share of L3.
// mc is a multiple of mr, nc of nr. kc sets where the sums over k are cut
// (each kc-slice is summed in registers, then added to C), so it is the one
// block size that changes rounding: it depends on the CPU, never on the
// thread count or the matrix shapes.
struct GemmBlocking {
    int64_t mc, kc, nc;
};

// The block sizes for a micro-kernel with an mr×nr tile on caches of these sizes.
GemmBlocking gemm_blocking(const CacheSizes& caches, int mr, int nr);

// What gemm() runs: a micro-kernel and its block sizes.
struct GemmPlan {
    const MicroKernel* kernel;
    GemmBlocking blocks;
};

// The plan for this CPU: the first available micro-kernel, blocked for its caches.
const GemmPlan& gemm_plan();

// gemm() with a given plan (the tests run every kernel with several cache sizes).
struct GemmEpilogue;
void gemm_with_plan(const GemmPlan& plan, bool trans_a, bool trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue& epilogue);

// gemm_nonzero() with a given plan (gemm.h).
struct NonzeroRows;
void gemm_nonzero_with_plan(const GemmPlan& plan, const NonzeroRows& a, const float* B,
                            int64_t ldb, int64_t N, float* C, int64_t ldc,
                            const GemmEpilogue& epilogue);

// C[0:m, 0:n] ← act(C + bias[j0:j0+n]) row by row: gemm's epilogue on one
// tile (gemm_nonzero runs it on the same tiles, so on the same bits).
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t m, int64_t n,
                    int64_t j0);

}  // namespace fz
