// The portable micro-kernel: plain C++ the compiler vectorises with whatever
// SIMD the build targets by default (SSE2 on x86-64, NEON on ARM64).
#include <algorithm>

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
// run_nonzero_row, NR columns per pass over the entries, summed as above.
void nonzero_row_generic(int64_t nnz, const float* value, const int32_t* index, const float* b,
                         int64_t ldb, int64_t n, float* c, bool start) {
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
        const int64_t w = std::min<int64_t>(NR, n - j0);
        float acc[NR] = {};
        if (!start) std::copy(c + j0, c + j0 + w, acc);
        for (int64_t t = 0; t < nnz; ++t) {
            const float* row = b + index[t] * ldb + j0;
            for (int64_t j = 0; j < w; ++j) acc[j] += value[t] * row[j];
        }
        std::copy(acc, acc + w, c + j0);
    }
}

// Branch-free: every entry is written, only a non-zero one kept.
int64_t nonzero_entries_generic(const float* x, int64_t begin, int64_t end, int32_t* index,
                                float* value) {
    int64_t count = 0;
    for (int64_t k = begin; k < end; ++k) {
        index[count] = static_cast<int32_t>(k);
        value[count] = x[k];
        count += x[k] != 0.0f;
    }
    return count;
}
}  // namespace

const MicroKernel kMicroKernelGeneric = {"generic", MR, NR, microkernel_generic<MR>,
                                         microkernel_generic<1>, nullptr, nonzero_row_generic,
                                         nonzero_entries_generic};

}  // namespace fz
