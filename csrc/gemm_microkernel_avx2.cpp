// AVX2 + FMA micro-kernel: a 6×16 tile of C in 12 YMM registers.
//
// Each step k loads 16 floats of B (two registers), broadcasts the 6 values
// of A one at a time, and issues 12 fused multiply-adds. 12 independent
// accumulators cover the FMA latency (4 cycles × 2 pipes on current x86).
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace fz {

namespace {
constexpr int MR = 6, NR = 16;

// C[i, 0:16] = (accumulate ? C[i, 0:16] : 0) + alpha·(lo, hi): one row of the
// tile leaving its registers. alpha = 1 (every GEMM of the layers) skips the
// multiply, which changes no bit: x · 1 = x for every float.
inline void store_row(float* ci, __m256 lo, __m256 hi, float alpha, bool accumulate) {
    if (alpha != 1.0f) {
        const __m256 scale = _mm256_set1_ps(alpha);
        lo = _mm256_mul_ps(lo, scale);
        hi = _mm256_mul_ps(hi, scale);
    }
    if (accumulate) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(ci));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, lo);
    _mm256_storeu_ps(ci + 8, hi);
}

void microkernel_avx2(int64_t kc, float alpha, const float* a, int64_t rs_a, int64_t cs_a,
                      const float* b, int64_t rs_b, float* c, int64_t ldc, bool accumulate) {
    // The 12 accumulators are named variables, not an array: with an array GCC
    // kept a copy of the tile in memory and stored all 12 registers on every
    // step (the 16 YMM registers hold 12 + 2 + 1 values, no room to spare),
    // which halved the kernel's speed.
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 ai = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a + rs_a);
        c10 = _mm256_fmadd_ps(ai, b0, c10);
        c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a + 2 * rs_a);
        c20 = _mm256_fmadd_ps(ai, b0, c20);
        c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a + 3 * rs_a);
        c30 = _mm256_fmadd_ps(ai, b0, c30);
        c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a + 4 * rs_a);
        c40 = _mm256_fmadd_ps(ai, b0, c40);
        c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a + 5 * rs_a);
        c50 = _mm256_fmadd_ps(ai, b0, c50);
        c51 = _mm256_fmadd_ps(ai, b1, c51);
    }
    store_row(c, c00, c01, alpha, accumulate);
    store_row(c + ldc, c10, c11, alpha, accumulate);
    store_row(c + 2 * ldc, c20, c21, alpha, accumulate);
    store_row(c + 3 * ldc, c30, c31, alpha, accumulate);
    store_row(c + 4 * ldc, c40, c41, alpha, accumulate);
    store_row(c + 5 * ldc, c50, c51, alpha, accumulate);
}

// Row 0 of microkernel_avx2 alone (run_row): the same FMAs in the same order.
void microkernel_avx2_row(int64_t kc, float alpha, const float* a, int64_t, int64_t cs_a,
                          const float* b, int64_t rs_b, float* c, int64_t, bool accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00;
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        const __m256 ai = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
    }
    store_row(c, c00, c01, alpha, accumulate);
}

// run_nonzero_row on 64 columns: 8 accumulators, named variables (see above).
void nonzero_64_avx2(int64_t nnz, const float* value, const int32_t* index, const float* b,
                     int64_t ldb, float* c, bool start) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    if (!start) {
        c0 = _mm256_loadu_ps(c), c1 = _mm256_loadu_ps(c + 8), c2 = _mm256_loadu_ps(c + 16);
        c3 = _mm256_loadu_ps(c + 24), c4 = _mm256_loadu_ps(c + 32), c5 = _mm256_loadu_ps(c + 40);
        c6 = _mm256_loadu_ps(c + 48), c7 = _mm256_loadu_ps(c + 56);
    }
    for (int64_t t = 0; t < nnz; ++t) {
        const __m256 a = _mm256_broadcast_ss(value + t);
        const float* row = b + index[t] * ldb;
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 8), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 16), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 24), c3);
        c4 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 32), c4);
        c5 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 40), c5);
        c6 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 48), c6);
        c7 = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 56), c7);
    }
    _mm256_storeu_ps(c, c0), _mm256_storeu_ps(c + 8, c1), _mm256_storeu_ps(c + 16, c2);
    _mm256_storeu_ps(c + 24, c3), _mm256_storeu_ps(c + 32, c4), _mm256_storeu_ps(c + 40, c5);
    _mm256_storeu_ps(c + 48, c6), _mm256_storeu_ps(c + 56, c7);
}

// run_nonzero_row on the lanes of 8 columns whose `mask` lane has the sign bit set.
void nonzero_8_avx2(int64_t nnz, const float* value, const int32_t* index, const float* b,
                    int64_t ldb, float* c, bool start, __m256i mask) {
    __m256 acc = start ? _mm256_setzero_ps() : _mm256_maskload_ps(c, mask);
    for (int64_t t = 0; t < nnz; ++t)
        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(value + t),
                              _mm256_maskload_ps(b + index[t] * ldb, mask), acc);
    _mm256_maskstore_ps(c, mask, acc);
}

// 64 columns (8 registers) per pass over the entries, then 8 at a time.
void nonzero_row_avx2(int64_t nnz, const float* value, const int32_t* index, const float* b,
                      int64_t ldb, int64_t n, float* c, bool start) {
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) nonzero_64_avx2(nnz, value, index, b + j, ldb, c + j, start);
    for (; j < n; j += 8) {
        const int w = static_cast<int>(n - j < 8 ? n - j : 8);  // not std::min: its copy compiled with
        // AVX here could be the one the linker keeps for the plain-x86 files
        const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(w),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        nonzero_8_avx2(nnz, value, index, b + j, ldb, c + j, start, last);
    }
}

// Eight entries at a time: all zero (MNIST's borders) costs one test;
// otherwise they are kept branch-free, every one written, a non-zero one kept.
int64_t nonzero_entries_avx2(const float* x, int64_t begin, int64_t end, int32_t* index,
                             float* value) {
    int64_t count = 0, k = begin;
    for (; k + 8 <= end; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        const int zero = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ));
        if (zero == 0xFF) continue;
        for (int64_t l = k; l < k + 8; ++l) {
            index[count] = static_cast<int32_t>(l);
            value[count] = x[l];
            count += x[l] != 0.0f;
        }
    }
    for (; k < end; ++k) {
        index[count] = static_cast<int32_t>(k);
        value[count] = x[k];
        count += x[k] != 0.0f;
    }
    return count;
}
// r[0..7] ← its transpose: r[i][j] becomes r[j][i]. Pairs of rows are
// interleaved (unpack), then pairs of pairs (shuffle), then the 128-bit
// halves are exchanged (permute2f128): 24 shuffles for 64 floats.
inline void transpose8x8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
}  // namespace

// Blocks of 8 rows × 8 k: eight loads along k, a transpose in registers,
// eight stores along r — instead of one float per load and store.
void pack_rows_avx(const float* x, int64_t ld, int width, int64_t kc, float* dst) {
    for (int r0 = 0; r0 < width; r0 += 8) {
        const float* src = x + r0 * ld;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld + k);
            transpose8x8(r);
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (k + i) * width + r0, r[i]);
        }
        for (; k < kc; ++k)
            for (int i = 0; i < 8; ++i) dst[k * width + r0 + i] = src[i * ld + k];
    }
}

const MicroKernel kMicroKernelAvx2 = {"avx2", MR, NR, microkernel_avx2, microkernel_avx2_row,
                                      pack_rows_avx, nonzero_row_avx2, nonzero_entries_avx2};

}  // namespace fz
