// The portable micro-kernel: plain C++ the compiler vectorises with whatever
// SIMD the build targets by default (SSE2 on x86-64, NEON on ARM64).
#include "gemm_microkernel.h"

namespace fz {

namespace {
constexpr int MR = 4, NR = 16;

// ROWS = MR: the micro-kernel; ROWS = 1: its first row alone (run_row).
template <int ROWS>
void microkernel_generic(int64_t kc, float alpha, const float* a, int64_t rs_a, int64_t cs_a,
                         const float* b, int64_t rs_b, float* c, int64_t ldc, bool accumulate) {
    float acc[ROWS][NR] = {};
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += rs_b)
        for (int i = 0; i < ROWS; ++i)
            for (int j = 0; j < NR; ++j) acc[i][j] += a[i * rs_a] * b[j];
    for (int i = 0; i < ROWS; ++i)
        for (int j = 0; j < NR; ++j)
            c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + alpha * acc[i][j];
}
}  // namespace

const MicroKernel kMicroKernelGeneric = {"generic", MR, NR, microkernel_generic<MR>,
                                         microkernel_generic<1>, nullptr};

}  // namespace fz
