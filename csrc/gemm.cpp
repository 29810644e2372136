// gemm.cpp — the portable GEMM algorithm, BLIS style: pack, block, loop.
//
//   for jc in N by NC:                 columns of C and B
//     for pc in K by KC:               the shared dimension
//       pack op(B)[pc:+KC, jc:+NC]     into NR-wide panels (fits in L3/L2)
//       for ic in M by MC:
//         pack op(A)[ic:+MC, pc:+KC]   into MR-tall panels (fits in L2)
//         for each MR×NR tile (jr, ir), in parallel:
//           micro-kernel: tile += A panel · B panel   (B panel stays in L1)
//           after the last pc: epilogue (bias, activation) on the hot tile
//
// Packing copies each block once into the exact order the micro-kernel reads,
// so the inner loop walks memory sequentially, and it is also where the
// transposes happen: op(A) and op(B) are read in place, never copied whole.
// Threads split the tiles of C, so each C element is owned by one thread and
// summed in the same order whatever the thread count (bit-reproducible).
#include "gemm.h"

#include <algorithm>
#include <vector>

#include "cpu_features.h"
#include "gemm_microkernel.h"
#include "parallel.h"

namespace fz {

namespace {

constexpr int kMaxTile = 8 * 32;  // the largest MR×NR of any micro-kernel

// Packs the block X(d, k), d in [d0, d0+nd), k in [k0, k0+kc), into panels of
// `width` consecutive d: panel p holds, for each k, the `width` values
// X(d0 + p·width + r, k0 + k), scaled, zero-padded past nd.
//   d_contiguous: X(d, k) = X[d·ld + k]   (rows of X run along k)
//   otherwise:    X(d, k) = X[k·ld + d]
// For A the panels run along the rows i of op(A); for B along the columns j of
// op(B). So both packings are this one function, with d_contiguous = !trans_a
// for A and d_contiguous = trans_b for B.
void pack_panels(const float* X, int64_t ld, bool d_contiguous, int64_t d0, int64_t nd,
                 int64_t k0, int64_t kc, int width, float scale, float* out) {
    const int64_t panels = (nd + width - 1) / width;
    const int64_t grain = std::max<int64_t>(1, 16384 / (width * kc));
    parallel_for(0, panels, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            float* dst = out + p * width * kc;
            const int64_t rows = std::min<int64_t>(width, nd - p * width);
            const int64_t d_first = d0 + p * width;
            if (d_contiguous) {
                for (int64_t r = 0; r < rows; ++r) {
                    const float* src = X + (d_first + r) * ld + k0;
                    for (int64_t k = 0; k < kc; ++k) dst[k * width + r] = scale * src[k];
                }
            } else {
                for (int64_t k = 0; k < kc; ++k) {
                    const float* src = X + (k0 + k) * ld + d_first;
                    for (int64_t r = 0; r < rows; ++r) dst[k * width + r] = scale * src[r];
                }
            }
            for (int64_t k = 0; k < kc; ++k)
                for (int64_t r = rows; r < width; ++r) dst[k * width + r] = 0.0f;
        }
    });
}

// C[0:m, 0:n] = (accumulate ? C : 0) + a·b for one tile. Full tiles go straight
// to the micro-kernel; edge tiles are computed whole in a scratch tile (the
// packed panels are zero-padded) and only their m×n corner is written.
void compute_tile(const MicroKernel& uk, int64_t kc, const float* a, const float* b, float* c,
                  int64_t ldc, int64_t m, int64_t n, bool accumulate) {
    if (m == uk.mr && n == uk.nr) {
        uk.run(kc, a, b, c, ldc, accumulate);
        return;
    }
    alignas(64) float tile[kMaxTile];
    uk.run(kc, a, b, tile, uk.nr, false);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
            c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + tile[i * uk.nr + j];
}

// C[0:m, 0:n] ← act(C + bias[j0:j0+n]) row by row.
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t m, int64_t n,
                    int64_t j0) {
    if (!ep.bias && ep.activation == Activation::identity) return;
    for (int64_t i = 0; i < m; ++i) {
        float* row = c + i * ldc;
        if (ep.bias)
            for (int64_t j = 0; j < n; ++j) row[j] += ep.bias[j0 + j];
        if (ep.activation != Activation::identity)
            activation_forward(ep.activation, row, row, n, ep.alpha);
    }
}

void scale_tile(float* c, int64_t ldc, int64_t m, int64_t n, float beta) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

const MicroKernel& best_micro_kernel() {
    static const MicroKernel* best = [] {
        const MicroKernel* list[3];
        available_micro_kernels(list, 3);
        return list[0];
    }();
    return *best;
}

}  // namespace

int available_micro_kernels(const MicroKernel** out, int capacity) {
    int n = 0;
    auto add = [&](const MicroKernel& k) {
        if (n < capacity) out[n++] = &k;
    };
#ifdef FROMZERO_X86
    const CpuFeatures& cpu = cpu_features();
    if (cpu.avx512f) add(kMicroKernelAvx512);
    if (cpu.avx2_fma) add(kMicroKernelAvx2);
#endif
    add(kMicroKernelGeneric);
    return n;
}

void gemm_with_kernel(const MicroKernel& uk, bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                      int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {  // no product: C = act(β·C + bias)
        scale_tile(C, ldc, M, N, beta);
        apply_epilogue(ep, C, ldc, M, N, 0);
        return;
    }
    // Packing buffers belong to the calling thread and only grow, so a
    // training loop allocates them once (and two Python threads never share).
    thread_local std::vector<float> a_packed, b_packed;
    const int64_t mc_max = std::min(uk.mc, M), kc_max = std::min(uk.kc, K);
    const int64_t nc_max = std::min(uk.nc, N);
    a_packed.resize(static_cast<size_t>((mc_max + uk.mr) * kc_max));
    b_packed.resize(static_cast<size_t>((nc_max + uk.nr) * kc_max));
    // Plain pointers: inside the parallel region the name a_packed would mean
    // each worker thread's own (empty) thread_local vector.
    float* const a_buf = a_packed.data();
    float* const b_buf = b_packed.data();

    for (int64_t jc = 0; jc < N; jc += uk.nc) {
        const int64_t nc = std::min(uk.nc, N - jc);
        const int64_t n_panels = (nc + uk.nr - 1) / uk.nr;
        for (int64_t pc = 0; pc < K; pc += uk.kc) {
            const int64_t kc = std::min(uk.kc, K - pc);
            const bool first = pc == 0, last = pc + kc == K;
            pack_panels(B, ldb, trans_b, jc, nc, pc, kc, uk.nr, 1.0f, b_buf);
            for (int64_t ic = 0; ic < M; ic += uk.mc) {
                const int64_t mc = std::min(uk.mc, M - ic);
                const int64_t m_panels = (mc + uk.mr - 1) / uk.mr;
                pack_panels(A, lda, !trans_a, ic, mc, pc, kc, uk.mr, alpha, a_buf);
                // Tiles are numbered column panel by column panel, so a thread's
                // consecutive tiles reuse the same B panel from L1.
                const int64_t flops_per_tile = 2 * uk.mr * uk.nr * kc;
                const int64_t grain = std::max<int64_t>(1, 200000 / flops_per_tile);
                parallel_for(0, m_panels * n_panels, grain, [&](int64_t t0, int64_t t1) {
                    for (int64_t t = t0; t < t1; ++t) {
                        const int64_t jr = t / m_panels, ir = t % m_panels;
                        const int64_t i = ic + ir * uk.mr, j = jc + jr * uk.nr;
                        const int64_t m = std::min<int64_t>(uk.mr, M - i);
                        const int64_t n = std::min<int64_t>(uk.nr, N - j);
                        float* c = C + i * ldc + j;
                        bool accumulate = !first;
                        if (first && beta != 0.0f) {
                            if (beta != 1.0f) scale_tile(c, ldc, m, n, beta);
                            accumulate = true;
                        }
                        compute_tile(uk, kc, a_buf + ir * uk.mr * kc, b_buf + jr * uk.nr * kc, c,
                                     ldc, m, n, accumulate);
                        if (last) apply_epilogue(ep, c, ldc, m, n, j);
                    }
                });
            }
        }
    }
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const GemmEpilogue& epilogue) {
    gemm_with_kernel(best_micro_kernel(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc, epilogue);
}

const char* gemm_kernel_name() { return best_micro_kernel().name; }

// Reference implementation: the definition, three loops, accumulated in double.
void reference::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc, const GemmEpilogue& ep) {
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
            double sum = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                sum += static_cast<double>(a) * b;
            }
            float& c = C[i * ldc + j];
            c = static_cast<float>(alpha * sum + (beta == 0.0f ? 0.0 : beta * static_cast<double>(c)));
            if (ep.bias) c += ep.bias[j];
        }
        if (ep.activation != Activation::identity)
            reference::activation_forward(ep.activation, C + i * ldc, C + i * ldc, N, ep.alpha);
    }
}

}  // namespace fz
