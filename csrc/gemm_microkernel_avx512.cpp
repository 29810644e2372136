// AVX-512 micro-kernels: an 8×32 tile of C in 16 ZMM registers, and its
// narrow twin, an 8×16 tile in 8, for a C at most 16 columns wide.
//
// Each step k loads 32 floats of B (two registers), broadcasts the 8 values
// of A, and issues 16 fused multiply-adds. MR = 8 divides the usual batch
// sizes (32, 128), so the forward pass of a Dense layer has no edge tiles.
// The narrow tile loads one register of B and issues 8: a 10-class output
// layer padded to 16 columns rather than 32 does half the multiply-adds.
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace fz {

namespace {
constexpr int MR = 8;

// C[i, 0:16·NV] = (accumulate ? C[i, 0:16·NV] : 0) + alpha·(lo, hi): one row
// of the tile leaving its registers (NV = 1: lo only). alpha = 1 (every GEMM
// of the layers) skips the multiply, which changes no bit: x · 1 = x.
template <int NV>
inline void store_row(float* ci, __m512 lo, __m512 hi, float alpha, bool accumulate) {
    if (alpha != 1.0f) {
        const __m512 scale = _mm512_set1_ps(alpha);
        lo = _mm512_mul_ps(lo, scale);
        if constexpr (NV == 2) hi = _mm512_mul_ps(hi, scale);
    }
    if (accumulate) {
        lo = _mm512_add_ps(lo, _mm512_loadu_ps(ci));
        if constexpr (NV == 2) hi = _mm512_add_ps(hi, _mm512_loadu_ps(ci + 16));
    }
    _mm512_storeu_ps(ci, lo);
    if constexpr (NV == 2) _mm512_storeu_ps(ci + 16, hi);
}

// NV registers of B per step: 2 (the 8×32 tile) or 1 (the narrow 8×16). Each
// sum is the same chain of FMAs over k either way, so a column has the same
// bits whichever tile computed it.
// The 16 accumulators are named variables, not an array: with an array
// (acc[8][2]) GCC kept a copy of the tile on the stack, zeroed it, and stored
// and reloaded all 16 registers around the k loop — 48 extra 64-byte memory
// operations per tile, 10% of a tile with K = 32 (the weight gradient of a
// Dense layer at batch 32). With NV = 1 the hi halves are never used.
template <int NV>
void microkernel_avx512(int64_t kc, float alpha, const float* a, int64_t rs_a, int64_t cs_a,
                        const float* b, int64_t rs_b, float* c, int64_t ldc, bool accumulate) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00;
    __m512 c61 = c00, c70 = c00, c71 = c00;
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
        const auto row = [&](__m512& lo, __m512& hi, int i) {  // row i += A(i, k) · B(k, :)
            const __m512 ai = _mm512_set1_ps(a[i * rs_a]);
            lo = _mm512_fmadd_ps(ai, b0, lo);
            if constexpr (NV == 2) hi = _mm512_fmadd_ps(ai, b1, hi);
        };
        row(c00, c01, 0), row(c10, c11, 1), row(c20, c21, 2), row(c30, c31, 3);
        row(c40, c41, 4), row(c50, c51, 5), row(c60, c61, 6), row(c70, c71, 7);
    }
    store_row<NV>(c, c00, c01, alpha, accumulate);
    store_row<NV>(c + ldc, c10, c11, alpha, accumulate);
    store_row<NV>(c + 2 * ldc, c20, c21, alpha, accumulate);
    store_row<NV>(c + 3 * ldc, c30, c31, alpha, accumulate);
    store_row<NV>(c + 4 * ldc, c40, c41, alpha, accumulate);
    store_row<NV>(c + 5 * ldc, c50, c51, alpha, accumulate);
    store_row<NV>(c + 6 * ldc, c60, c61, alpha, accumulate);
    store_row<NV>(c + 7 * ldc, c70, c71, alpha, accumulate);
}

// Row 0 of microkernel_avx512 alone (run_row): the same FMAs in the same order.
template <int NV>
void microkernel_avx512_row(int64_t kc, float alpha, const float* a, int64_t, int64_t cs_a,
                            const float* b, int64_t rs_b, float* c, int64_t, bool accumulate) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00;
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m512 ai = _mm512_set1_ps(*a);
        c00 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(b), c00);
        if constexpr (NV == 2) c01 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(b + 16), c01);
    }
    store_row<NV>(c, c00, c01, alpha, accumulate);
}
// run_nonzero_row on 128 columns: 8 accumulators, named variables rather
// than an array, which GCC would store to memory after every step.
void nonzero_128_avx512(int64_t nnz, const float* value, const int32_t* index, const float* b,
                        int64_t ldb, float* c, bool start) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    if (!start) {
        c0 = _mm512_loadu_ps(c), c1 = _mm512_loadu_ps(c + 16), c2 = _mm512_loadu_ps(c + 32);
        c3 = _mm512_loadu_ps(c + 48), c4 = _mm512_loadu_ps(c + 64), c5 = _mm512_loadu_ps(c + 80);
        c6 = _mm512_loadu_ps(c + 96), c7 = _mm512_loadu_ps(c + 112);
    }
    for (int64_t t = 0; t < nnz; ++t) {
        const __m512 a = _mm512_set1_ps(value[t]);
        const float* row = b + index[t] * ldb;
        c0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row), c0);
        c1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 16), c1);
        c2 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 32), c2);
        c3 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 48), c3);
        c4 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 64), c4);
        c5 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 80), c5);
        c6 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 96), c6);
        c7 = _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 112), c7);
    }
    _mm512_storeu_ps(c, c0), _mm512_storeu_ps(c + 16, c1), _mm512_storeu_ps(c + 32, c2);
    _mm512_storeu_ps(c + 48, c3), _mm512_storeu_ps(c + 64, c4), _mm512_storeu_ps(c + 80, c5);
    _mm512_storeu_ps(c + 96, c6), _mm512_storeu_ps(c + 112, c7);
}

// run_nonzero_row on the `mask` lanes of 16 columns.
void nonzero_16_avx512(int64_t nnz, const float* value, const int32_t* index, const float* b,
                       int64_t ldb, float* c, bool start, __mmask16 mask) {
    __m512 acc = start ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, c);
    for (int64_t t = 0; t < nnz; ++t)
        acc = _mm512_fmadd_ps(_mm512_set1_ps(value[t]),
                              _mm512_maskz_loadu_ps(mask, b + index[t] * ldb), acc);
    _mm512_mask_storeu_ps(c, mask, acc);
}

// 128 columns (8 registers) per pass over the entries, then 16 at a time.
void nonzero_row_avx512(int64_t nnz, const float* value, const int32_t* index, const float* b,
                        int64_t ldb, int64_t n, float* c, bool start) {
    int64_t j = 0;
    for (; j + 128 <= n; j += 128) nonzero_128_avx512(nnz, value, index, b + j, ldb, c + j, start);
    for (; j < n; j += 16) {
        const int64_t w = n - j < 16 ? n - j : 16;  // not std::min: its copy compiled with
        // AVX here could be the one the linker keeps for the plain-x86 files
        nonzero_16_avx512(nnz, value, index, b + j, ldb, c + j, start, __mmask16((1u << w) - 1));
    }
}

// Sixteen entries at a time: the lanes where x ≠ 0 are compressed to the
// front of a register, which is stored whole (the lanes past the count are
// overwritten by the next store or left past the end: hence n + 16). Not
// the compress-to-memory form, which is microcoded and slow on AMD Zen 4.
int64_t nonzero_entries_avx512(const float* x, int64_t begin, int64_t end, int32_t* index,
                               float* value) {
    int64_t count = 0;
    __m512i k16 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(begin)),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i step = _mm512_set1_epi32(16);
    for (int64_t k = begin; k < end; k += 16, k16 = _mm512_add_epi32(k16, step)) {
        const __mmask16 in = end - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (end - k)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(in, x + k);
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(in, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        if (keep == 0) continue;  // (an image's border)
        _mm512_storeu_si512(index + count, _mm512_maskz_compress_epi32(keep, k16));
        _mm512_storeu_ps(value + count, _mm512_maskz_compress_ps(keep, v));
        count += __builtin_popcount(keep);
    }
    return count;
}

// Packing with AVX's 8-float registers (pack_rows_avx; every AVX-512 CPU has AVX).
// The narrow kernel is only ever run through the wide one's `narrow`.
const MicroKernel kMicroKernelAvx512Narrow = {"avx512 narrow", MR, 16, microkernel_avx512<1>,
                                              microkernel_avx512_row<1>, pack_rows_avx,
                                              nonzero_row_avx512, nonzero_entries_avx512};
}  // namespace

const MicroKernel kMicroKernelAvx512 = {"avx512", MR, 32, microkernel_avx512<2>,
                                        microkernel_avx512_row<2>, pack_rows_avx, nonzero_row_avx512,
                                        nonzero_entries_avx512, &kMicroKernelAvx512Narrow};

}  // namespace fz
