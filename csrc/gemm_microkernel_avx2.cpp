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
}  // namespace

const MicroKernel kMicroKernelAvx2 = {"avx2", MR, NR, microkernel_avx2, microkernel_avx2_row};

}  // namespace fz
