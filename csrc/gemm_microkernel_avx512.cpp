// AVX-512 micro-kernel: an 8×32 tile of C in 16 ZMM registers.
//
// Each step k loads 32 floats of B (two registers), broadcasts the 8 values
// of A, and issues 16 fused multiply-adds. MR = 8 divides the usual batch
// sizes (32, 128), so the forward pass of a Dense layer has no edge tiles.
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace fz {

namespace {
constexpr int MR = 8, NR = 32;

// ROWS = MR: the micro-kernel; ROWS = 1: its first row alone (run_row).
template <int ROWS>
void microkernel_avx512(int64_t kc, float alpha, const float* a, int64_t rs_a, int64_t cs_a,
                        const float* b, int64_t rs_b, float* c, int64_t ldc, bool accumulate) {
    __m512 acc[ROWS][2];
    for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        for (int i = 0; i < ROWS; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i * rs_a]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    for (int i = 0; i < ROWS; ++i) {
        float* ci = c + i * ldc;
        __m512 c0 = _mm512_mul_ps(acc[i][0], scale), c1 = _mm512_mul_ps(acc[i][1], scale);
        if (accumulate) {
            c0 = _mm512_add_ps(c0, _mm512_loadu_ps(ci));
            c1 = _mm512_add_ps(c1, _mm512_loadu_ps(ci + 16));
        }
        _mm512_storeu_ps(ci, c0);
        _mm512_storeu_ps(ci + 16, c1);
    }
}
}  // namespace

// Packing with AVX's 8-float registers (pack_rows_avx; every AVX-512 CPU has AVX).
const MicroKernel kMicroKernelAvx512 = {"avx512", MR, NR, microkernel_avx512<MR>,
                                        microkernel_avx512<1>, pack_rows_avx};

}  // namespace fz
