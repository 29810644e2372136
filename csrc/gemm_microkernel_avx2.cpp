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
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    const __m256 scale = _mm256_set1_ps(alpha);
    for (int i = 0; i < MR; ++i) {
        float* ci = c + i * ldc;
        __m256 v0 = _mm256_mul_ps(acc[i][0], scale), v1 = _mm256_mul_ps(acc[i][1], scale);
        if (accumulate) {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
        }
        _mm256_storeu_ps(ci, v0);
        _mm256_storeu_ps(ci + 8, v1);
    }
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
    const __m256 scale = _mm256_set1_ps(alpha);
    __m256 v0 = _mm256_mul_ps(c00, scale), v1 = _mm256_mul_ps(c01, scale);
    if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, v0);
    _mm256_storeu_ps(c + 8, v1);
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
                                      pack_rows_avx};

}  // namespace fz
