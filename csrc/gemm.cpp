// gemm.cpp — the portable GEMM algorithm, BLIS style: pack, block, loop.
//
// Threads first split C into chunks of whole panels, which they claim one at
// a time (gemm_with_plan, parallel_for), then run the serial BLIS loop nest on
// each chunk (gemm_block):
//
//   for jc in N by NC:                 columns of C and B
//     for pc in K by KC:               the shared dimension
//       pack op(B)[pc:+KC, jc:+NC]     into NR-wide panels
//       for ic in M by MC:
//         pack op(A)[ic:+MC, pc:+KC]   into MR-tall panels (stays in L2)
//         for each MR×NR tile (jr, ir):
//           micro-kernel: tile += A panel · B panel   (B panel stays in L2)
//           after the last pc: epilogue (bias, activation) on the hot tile
//
// Packing copies a block once into the exact order the micro-kernel reads, so
// the inner loop walks memory sequentially; it is also where the transposes
// happen (op(A) and op(B) are read in place, never copied whole). Packing
// pays for itself only when a panel is reused by many tiles, so small and
// skinny problems (a Dense layer on a batch of 32) read full panels straight
// from the caller's matrices and pack only the ragged edge panels.
//
// Each element of C belongs to one thread and is summed over k in the same
// order whatever the thread count, so results are bit-reproducible.
// Where the sum over k is cut into kc-slices depends on the L2 size (block
// sizes below), so two different CPUs may round differently.
#include "gemm.h"

#include <algorithm>
#include <vector>

#include "cpu_features.h"
#include "gemm_microkernel.h"
#include "parallel.h"
#include "scratch.h"

namespace fz {

namespace {

constexpr int kMaxTile = 8 * 32;  // the largest MR×NR of any micro-kernel

// A panel is read in place when at most this many tiles use it.
constexpr int64_t kMaxReuseUnpacked = 8;

// A block of op(B) without trans_b whose rows, from the first to the last,
// span at most this many bytes is read in place however many tiles use it:
// it stays in L1 (a contiguous 16 KB fills at most 4 ways of any set of a
// 32 KB 8-way L1), so packing would only copy it. The weight gradient of a
// Dense layer at batch 32, Xᵀ·dY with dY of 32×128, is one: packing dY cost
// each chunk of the product a 16 KB copy.
constexpr int64_t kMaxInPlaceBSpan = 16 * 1024;

// Below this many flops per thread, a second thread costs more than it saves.
constexpr int64_t kMinFlopsPerThread = 1 << 18;

struct GemmArgs {
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha;
    const float* A;
    int64_t lda;
    const float* B;
    int64_t ldb;
    float beta;
    float* C;
    int64_t ldc;
    const GemmEpilogue& ep;
};

// Packs the block X(d, k), d in [d0, d0+nd), k in [k0, k0+kc), into panels of
// `width` consecutive d: panel p holds, for each k, the `width` values
// X(d0 + p·width + r, k0 + k), zero-padded past nd.
//   d_contiguous: X(d, k) = X[d·ld + k]   (rows of X run along k)
//   otherwise:    X(d, k) = X[k·ld + d]
// For A the panels run along the rows i of op(A); for B along the columns j of
// op(B). So both packings are this one function, with d_contiguous = !trans_a
// for A and d_contiguous = trans_b for B.
// The d_contiguous case is a transpose: full panels go to the micro-kernel's
// pack_rows when it has one (8×8 blocks in registers).
void pack_panels(const MicroKernel& uk, const float* X, int64_t ld, bool d_contiguous, int64_t d0,
                 int64_t nd, int64_t k0, int64_t kc, int width, float* out) {
    for (int64_t p = 0; p * width < nd; ++p) {
        float* dst = out + p * width * kc;
        const int64_t rows = std::min<int64_t>(width, nd - p * width);
        const int64_t d_first = d0 + p * width;
        if (d_contiguous && uk.pack_rows && rows == width && width % 8 == 0) {
            uk.pack_rows(X + d_first * ld + k0, ld, width, kc, dst);
        } else if (d_contiguous) {
            for (int64_t r = 0; r < rows; ++r) {
                const float* src = X + (d_first + r) * ld + k0;
                for (int64_t k = 0; k < kc; ++k) dst[k * width + r] = src[k];
            }
        } else {
            for (int64_t k = 0; k < kc; ++k) {
                const float* src = X + (k0 + k) * ld + d_first;
                for (int64_t r = 0; r < rows; ++r) dst[k * width + r] = src[r];
            }
        }
        for (int64_t k = 0; k < kc; ++k)
            for (int64_t r = rows; r < width; ++r) dst[k * width + r] = 0.0f;
    }
}

// Where the micro-kernel finds one panel: element (i, k) of an A panel is
// p[i·rs + k·cs]; row k of a B panel starts at p + k·rs (cs is 1).
struct Panel {
    const float* p;
    int64_t rs, cs;
};

// C[0:m, 0:n] = (accumulate ? C : 0) + alpha·a·b for one tile. Full tiles go
// straight to the micro-kernel; edge tiles are computed whole in a scratch
// tile (their panels are zero-padded) and only their m×n corner is written.
void compute_tile(const MicroKernel& uk, int64_t kc, float alpha, Panel a, Panel b, float* c,
                  int64_t ldc, int64_t m, int64_t n, bool accumulate) {
    if (m == uk.mr && n == uk.nr) {
        uk.run(kc, alpha, a.p, a.rs, a.cs, b.p, b.rs, c, ldc, accumulate);
        return;
    }
    alignas(64) float tile[kMaxTile];
    // One row (a GEMM of one row: generating a token) needs one row of FMAs,
    // not MR rows of which MR − 1 multiply zero padding.
    (m == 1 ? uk.run_row : uk.run)(kc, alpha, a.p, a.rs, a.cs, b.p, b.rs, tile, uk.nr, false);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
            c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + tile[i * uk.nr + j];
}

void scale_tile(float* c, int64_t ldc, int64_t m, int64_t n, float beta) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

// The serial BLIS loop nest over the block C[i0:i1, j0:j1] (see the top).
void gemm_block(const GemmPlan& plan, const GemmArgs& g, int64_t i0, int64_t i1, int64_t j0,
                int64_t j1) {
    const MicroKernel& uk = *plan.kernel;
    const int64_t mr = uk.mr, nr = uk.nr;
    const int64_t MC = plan.blocks.mc, KC = plan.blocks.kc, NC = plan.blocks.nc;
    // Packing pays when a panel is reused by many tiles: an A panel by every
    // column panel of the block, a B panel by every row panel (unless all of
    // B's block stays in L1: kMaxInPlaceBSpan). op(B) with trans_b has its
    // columns strided, so it is always packed.
    const bool pack_a = (j1 - j0 + nr - 1) / nr > kMaxReuseUnpacked;
    const int64_t b_span = ((std::min(KC, g.K) - 1) * g.ldb + (j1 - j0)) * int64_t{sizeof(float)};
    const bool pack_b = g.trans_b || ((i1 - i0 + mr - 1) / mr > kMaxReuseUnpacked &&
                                      b_span > kMaxInPlaceBSpan);
    // This thread's packing buffers; they only grow (scratch.h), so a training
    // loop allocates and fills them once, whatever sizes its GEMMs alternate.
    thread_local std::vector<float> a_buf, b_buf;
    const int64_t kc_max = std::min(KC, g.K);
    float* const a_packed = scratch(a_buf, (std::min(MC, i1 - i0) + mr) * kc_max);
    float* const b_packed = scratch(b_buf, (std::min(NC, j1 - j0) + nr) * kc_max);

    for (int64_t jc = j0; jc < j1; jc += NC) {
        const int64_t nc = std::min(NC, j1 - jc);
        // Panels read in place come first; the rest (all, or the ragged edge) are packed.
        const int64_t b_direct = pack_b ? 0 : nc / nr;
        for (int64_t pc = 0; pc < g.K; pc += KC) {
            const int64_t kc = std::min(KC, g.K - pc);
            const bool first = pc == 0, last = pc + kc == g.K;
            pack_panels(uk, g.B, g.ldb, g.trans_b, jc + b_direct * nr, nc - b_direct * nr, pc, kc, nr,
                        b_packed);
            for (int64_t ic = i0; ic < i1; ic += MC) {
                const int64_t mc = std::min(MC, i1 - ic);
                const int64_t a_direct = pack_a ? 0 : mc / mr;
                pack_panels(uk, g.A, g.lda, !g.trans_a, ic + a_direct * mr, mc - a_direct * mr, pc,
                            kc, mr, a_packed);
                for (int64_t jr = 0; jr * nr < nc; ++jr) {
                    const int64_t j = jc + jr * nr, n = std::min(nr, j1 - j);
                    const Panel b = jr < b_direct
                                        ? Panel{g.B + pc * g.ldb + j, g.ldb, 1}
                                        : Panel{b_packed + (jr - b_direct) * nr * kc, nr, 1};
                    for (int64_t ir = 0; ir * mr < mc; ++ir) {
                        const int64_t i = ic + ir * mr, m = std::min(mr, i1 - i);
                        const Panel a = ir >= a_direct
                                            ? Panel{a_packed + (ir - a_direct) * mr * kc, 1, mr}
                                        : g.trans_a ? Panel{g.A + pc * g.lda + i, 1, g.lda}
                                                    : Panel{g.A + i * g.lda + pc, g.lda, 1};
                        float* c = g.C + i * g.ldc + j;
                        bool accumulate = !first;
                        if (first && g.beta != 0.0f) {
                            if (g.beta != 1.0f) scale_tile(c, g.ldc, m, n, g.beta);
                            accumulate = true;
                        }
                        compute_tile(uk, kc, g.alpha, a, b, c, g.ldc, m, n, accumulate);
                        if (last) apply_epilogue(g.ep, c, g.ldc, m, n, j);
                    }
                }
            }
        }
    }
}

int64_t round_down(int64_t x, int64_t multiple) { return x / multiple * multiple; }

}  // namespace

// ReLU and leaky ReLU are applied in the pass that adds the bias: a tile row
// is only nr floats (32 with AVX-512), and a call of activation_forward per
// row — its dispatch, the vector kernel's aligning step — cost more than the
// arithmetic (2.8 µs of the 33 µs forward of the MLP's first layer at batch
// 32, 128 tile rows). The same operations as vec::relu and vec::leaky_relu
// after the addition, so the same bits: std::max(x, 0) keeps a NaN, and
// x > 0 ? x : α·x. The other activations go through activation_forward.
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t m, int64_t n,
                    int64_t j0) {
    if (!ep.bias && ep.activation == Activation::identity) return;
    const float* bias = ep.bias ? ep.bias + j0 : nullptr;
    const float alpha = ep.alpha;
    for (int64_t i = 0; i < m; ++i) {
        float* row = c + i * ldc;
        switch (ep.activation) {
            case Activation::relu:
                for (int64_t j = 0; j < n; ++j) row[j] = std::max(bias ? row[j] + bias[j] : row[j], 0.0f);
                break;
            case Activation::leaky_relu:
                for (int64_t j = 0; j < n; ++j) {
                    const float x = bias ? row[j] + bias[j] : row[j];
                    row[j] = x > 0.0f ? x : alpha * x;
                }
                break;
            default:
                if (bias)
                    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
                if (ep.activation != Activation::identity) activation_forward(ep.activation, row, row, n, alpha);
        }
    }
}

// ---------------------------------------------------------------- block sizes
//
// Each block goes in the cache level that matches how often it is reused,
// after the analytical model of BLIS (Low et al., "Analytical Modeling Is
// Enough for High-Performance BLIS", 2016) — with one measured difference.
// BLIS sizes KC so that the kc×nr micro-panel of B stays in L1. Here every
// kc-slice also costs one pass over C (the tile is read, added to and written
// back once per slice), and our micro-kernel asks for only (mr + nr) floats
// per mr·nr/16 FMAs, which L2 streams with ease. So KC is as large as L2 can
// hold comfortably (on a Zen 4 core, KC = 1024 against BLIS's L1-sized 128
// took one thread from 85 to 100 GFLOP/s at 1024² and 2048²):
//
//   KC  the kc×nr micro-panel of B, read again by every mr-row sliver of A
//       in the block (the ir loop), takes 1/8 of L2:
//                                        KC = (L2 / 8) / (nr · 4 bytes)
//   MC  the mc×kc block of A, read again for every micro-panel of B (the jr
//       loop), takes 1/4 of L2 (the rest: B micro-panels passing through,
//       C tiles):                        MC = (L2 / 4) / (KC · 4 bytes)
//   NC  the kc×nc block of B, read again for every block of A (the ic loop),
//       takes half of this core's share of L3:
//                                        NC = (L3 / 2) / (KC · 4 bytes)
//
// KC is a multiple of 8 in [32, 1024] (1024: the MLP's K = 784 is one
// slice), MC a multiple of mr in [mr, 4096], NC a multiple of nr in
// [16·nr, 8192] (a narrower B block would make the A blocks be packed again
// too often). An unknown L3 counts as 2 × L2, and an L3 share smaller than L2
// (Intel server parts, whose L3 does not hold copies of L2) as L2.
GemmBlocking gemm_blocking(const CacheSizes& caches, int mr, int nr) {
    constexpr int64_t kFloat = sizeof(float);
    const int64_t l2 = std::max<int64_t>(caches.l2, 4096);
    const int64_t l3 = caches.l3 > 0 ? std::max(caches.l3, l2) : 2 * l2;
    GemmBlocking b;
    b.kc = std::clamp<int64_t>(round_down(l2 / 8 / (nr * kFloat), 8), 32, 1024);
    b.mc = std::clamp<int64_t>(round_down(l2 / 4 / (b.kc * kFloat), mr), mr, round_down(4096, mr));
    b.nc = std::clamp<int64_t>(round_down(l3 / 2 / (b.kc * kFloat), nr), 16 * nr, round_down(8192, nr));
    return b;
}

const GemmPlan& gemm_plan() {
    static const GemmPlan plan = [] {
        const MicroKernel* list[3];
        available_micro_kernels(list, 3);
        return GemmPlan{list[0], gemm_blocking(cpu_features().caches, list[0]->mr, list[0]->nr)};
    }();
    return plan;
}

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

void gemm_with_plan(const GemmPlan& given, bool trans_a, bool trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
    // A C at most half a tile wide runs the narrow tile (MicroKernel::narrow)
    // with the same blocks: the same kc-slices and FMA chains, so the same bits.
    const bool narrow = given.kernel->narrow && 2 * N <= given.kernel->nr;
    const GemmPlan plan = narrow ? GemmPlan{given.kernel->narrow, given.blocks} : given;
    const MicroKernel& uk = *plan.kernel;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {  // no product: C = act(β·C + bias)
        scale_tile(C, ldc, M, N, beta);
        apply_epilogue(ep, C, ldc, M, N, 0);
        return;
    }
    const GemmArgs g{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep};
    // One parallel region per GEMM. Threads split C along N when B is the
    // larger operand (each chunk packs only its share of B and reads all of
    // the smaller A), along M otherwise; chunks are whole panels, so the tiles
    // are the same for any thread count and any cut (parallel.h claims chunks
    // dynamically). A chunk wider than kMaxReuseUnpacked panels packs the
    // whole other operand for itself, so then there are at most two chunks
    // per thread rather than parallel_for's four.
    const bool split_n = N >= M;
    const int64_t unit = split_n ? uk.nr : uk.mr;
    const int64_t units = ((split_n ? N : M) + unit - 1) / unit;
    const int64_t flops_per_unit = 2 * K * unit * (split_n ? M : N);
    const int64_t work_grain = std::max<int64_t>(1, kMinFlopsPerThread / flops_per_unit);
    int64_t grain = work_grain;
    const int64_t threads = get_num_threads();
    if (units / (4 * threads) > kMaxReuseUnpacked)
        grain = std::max(grain, (units + 2 * threads - 1) / (2 * threads));
    parallel_for(
        0, units, grain,
        [&](int64_t lo, int64_t hi) {
            if (split_n)
                gemm_block(plan, g, 0, M, lo * unit, std::min(N, hi * unit));
            else
                gemm_block(plan, g, lo * unit, std::min(M, hi * unit), 0, N);
        },
        work_grain);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const GemmEpilogue& epilogue) {
    gemm_with_plan(gemm_plan(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                   epilogue);
}

const char* gemm_kernel_name() { return gemm_plan().kernel->name; }

GemmInfo gemm_info() {
    const GemmPlan& plan = gemm_plan();
    return {plan.kernel->name, plan.kernel->mr, plan.kernel->nr, plan.blocks.mc,
            plan.blocks.kc, plan.blocks.nc, cpu_features().caches};
}

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
