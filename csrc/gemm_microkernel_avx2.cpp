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
    __m256 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        for (int i = 0; i < MR; ++i) {
            const __m256 ai = _mm256_broadcast_ss(a + i * rs_a);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    const __m256 scale = _mm256_set1_ps(alpha);
    for (int i = 0; i < MR; ++i) {
        float* ci = c + i * ldc;
        __m256 c0 = _mm256_mul_ps(acc[i][0], scale), c1 = _mm256_mul_ps(acc[i][1], scale);
        if (accumulate) {
            c0 = _mm256_add_ps(c0, _mm256_loadu_ps(ci));
            c1 = _mm256_add_ps(c1, _mm256_loadu_ps(ci + 8));
        }
        _mm256_storeu_ps(ci, c0);
        _mm256_storeu_ps(ci + 8, c1);
    }
}
}  // namespace

const MicroKernel kMicroKernelAvx2 = {"avx2", MR, NR, microkernel_avx2};

}  // namespace fz
