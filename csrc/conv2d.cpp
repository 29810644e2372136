// conv2d.cpp — the convolution as an implicit GEMM: im2col one block at a time.
//
// As conv.h explains, a convolution is a Dense layer applied to every window:
// y = act(cols · K + b) with cols = im2col(x), the (N·Ho·Wo, kh·kw·C) matrix
// holding one window per row. Built whole, cols is kh·kw times larger than x
// (18 MB for MNIST's second layer at batch 128) and makes a trip through main
// memory on each side of the GEMM. Here it is built a block of rows at a time
// into a buffer that stays in the L2 cache, and the GEMM's micro-kernel
// (gemm_microkernel.h) multiplies the block where it lies:
//
//   forward    for each block of rows:
//                A = [im2col(x)[rows] | 1]            (rows, P + 1), P = kh·kw·C
//                y[rows] = act(A · [K; b])            K packed once; the bias is the
//                                                     weight of a constant-1 input
//   backward   for each block of whole images:
//                dz[rows] = dy[rows] · act'(y[rows])   (when the forward had an activation)
//                A = im2col(x)[rows]:  dK_block += Aᵀ · dz[rows],  db_block += Σ_rows dz
//                dA = dz[rows] · Kᵀ:   dx[images] += col2im(dA)
//              dK = Σ_blocks dK_block,  db = Σ_blocks db_block   (in block order)
//
// Determinism. Every y value is one micro-kernel sum over k in a fixed order,
// whoever computes it. dK and db sum over every window of the batch; if each
// thread summed its own share of rows, the grouping of those sums would depend
// on the thread count. So the backward pass cuts the batch into blocks of a
// fixed number of images, chosen from the geometry alone, sums each block into
// its own partial, and adds the partials in block order at the end: the same
// additions for any thread count. dx needs no such care: windows overlap only
// inside an image, so the block that owns an image owns all of its dx.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "conv.h"
#include "conv_window.h"
#include "gemm_microkernel.h"
#include "parallel.h"
#include "scratch.h"
#include "simd.h"

namespace fz {
namespace {

// A block of im2col rows is about this many floats (192 KB): with the packed
// kernel beside it, it stays in a 1–2 MB L2 cache.
constexpr int64_t kBlockFloats = 48 * 1024;
// ... and at most this many rows: enough for long micro-kernel runs, few
// enough that the block's outputs (rows × F) are still in cache for the epilogue.
constexpr int64_t kMaxBlockRows = 256;
// Backward blocks are whole images, about this many windows (rows) each, and
// few enough that their partial kernel gradients take at most kMaxPartialFloats.
constexpr int64_t kReduceRows = 2048;
constexpr int64_t kMaxPartialFloats = int64_t{8} << 20;  // 32 MB
// Below this many multiply-adds per thread, a second thread costs more than it saves.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 18;
// The largest MR×NR register tile this file makes room for.
constexpr int kMaxTile = 1024;
// im2col copies window rows of at least this many floats; shorter ones are
// gathered through a table of offsets, for windows of at most kMaxGatherPatch values.
constexpr int64_t kMinCopyLength = 16;
constexpr int64_t kMaxGatherPatch = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }

// Rows of im2col handled at a time when a row holds `width` floats: a
// multiple of the micro-kernel's MR.
int64_t block_rows(const MicroKernel& uk, int64_t width) {
    const int64_t rows = std::min(kMaxBlockRows, kBlockFloats / std::max<int64_t>(width, 1));
    return std::max<int64_t>(uk.mr, rows / uk.mr * uk.mr);
}

int64_t parallel_grain(int64_t macs_per_item) {
    return std::max<int64_t>(1, kMinMacsPerThread / std::max<int64_t>(macs_per_item, 1));
}

// Rows [r0, r1) of im2col(x) into out, one row every `ld` floats: the window
// of row r = (n·Ho + oh)·Wo + ow laid out (i, j, c) like the kernel's rows,
// zeros for padding, then a 1 in column P if `one` (the bias's input). Within
// one window row i the cells j_lo..j_hi are neighbours in x too (NHWC keeps a
// pixel's channels together and the pixels of a row adjacent): one
// contiguous copy each. When those copies are short (a first layer's kw·C =
// 3 values), a window inside the image is instead gathered value by value
// through a table of offsets, which costs less than starting kh short copies.
FZ_SIMD_CLONES void im2col_rows(const Window2d& g, const float* x, int64_t r0, int64_t r1,
                                float* out, int64_t ld, bool one) {
    const int64_t P = g.patch(), image = g.h * g.w * g.c, windows = g.ho * g.wo;
    int32_t offset[kMaxGatherPatch];  // value t of an inner window's row is at src[offset[t]]
    const bool gather = g.kw * g.c < kMinCopyLength && P <= kMaxGatherPatch &&
                        g.kh * g.w * g.c <= INT32_MAX;
    if (gather)
        for (int64_t i = 0, t = 0; i < g.kh; ++i)
            for (int64_t jc = 0; jc < g.kw * g.c; ++jc) offset[t++] = static_cast<int32_t>(i * g.w * g.c + jc);
    int64_t n = r0 / windows, oh = r0 % windows / g.wo, ow = r0 % g.wo;
    for (float* row = out; row < out + (r1 - r0) * ld; row += ld) {
        const Clip cl = clip_window(g, oh, ow);
        const float* img = x + n * image;
        if (one) row[P] = 1.0f;
        if (gather && cl.count() == g.kh * g.kw) {
            const float* src = img + pixel(g, cl.ih0, cl.iw0);
            for (int64_t t = 0; t < P; ++t) row[t] = src[offset[t]];
        } else {
            if (cl.count() < g.kh * g.kw) std::fill_n(row, P, 0.0f);
            const int64_t len = (cl.j_hi - cl.j_lo) * g.c;
            for (int64_t i = cl.i_lo; i < cl.i_hi; ++i) {
                const float* src = img + pixel(g, cl.ih0 + i, cl.iw0 + cl.j_lo);
                float* dst = row + (i * g.kw + cl.j_lo) * g.c;
                for (int64_t t = 0; t < len; ++t) dst[t] = src[t];
            }
        }
        if (++ow == g.wo) {  // the next window
            ow = 0;
            if (++oh == g.ho) oh = 0, ++n;
        }
    }
}

// The adjoint of im2col_rows: row r of da (P floats each, da holding rows
// [r0, r1)) is added back onto the input values its window read.
FZ_SIMD_CLONES void col2im_rows(const Window2d& g, const float* da, int64_t r0, int64_t r1,
                                float* dx) {
    const int64_t P = g.patch(), image = g.h * g.w * g.c, windows = g.ho * g.wo;
    int64_t n = r0 / windows, oh = r0 % windows / g.wo, ow = r0 % g.wo;
    for (const float* row = da; row < da + (r1 - r0) * P; row += P) {
        const Clip cl = clip_window(g, oh, ow);
        float* img = dx + n * image;
        const int64_t len = (cl.j_hi - cl.j_lo) * g.c;
        for (int64_t i = cl.i_lo; i < cl.i_hi; ++i) {
            const float* src = row + (i * g.kw + cl.j_lo) * g.c;
            float* dst = img + pixel(g, cl.ih0 + i, cl.iw0 + cl.j_lo);
            for (int64_t t = 0; t < len; ++t) dst[t] += src[t];
        }
        if (++ow == g.wo) {
            ow = 0;
            if (++oh == g.ho) oh = 0, ++n;
        }
    }
}

// Packs B(k, j) = src[k·rs + j·cs], k < K, j < N, into ⌈N/NR⌉ panels of NR
// columns, zero-padded past N: row k of panel p at out + (p·panel_rows + k)·NR,
// the order the micro-kernel reads. panel_rows ≥ K leaves room for more rows.
void pack_b(const float* src, int64_t rs, int64_t cs, int64_t K, int64_t N, int nr,
            int64_t panel_rows, float* out) {
    for (int64_t p = 0; p * nr < N; ++p) {
        const int64_t cols = std::min<int64_t>(nr, N - p * nr);
        for (int64_t k = 0; k < K; ++k) {
            float* dst = out + (p * panel_rows + k) * nr;
            const float* s = src + k * rs + p * nr * cs;
            for (int64_t j = 0; j < cols; ++j) dst[j] = s[j * cs];
            std::fill(dst + cols, dst + nr, 0.0f);
        }
    }
}

// C[0:m, 0:n] = (accumulate ? C : 0) + A·B for one register tile: A(i, k) =
// a[i·rs_a + k·cs_a] with MR rows readable, B(k, j) = b[k·rs_b + j] with NR
// columns readable. Full tiles are computed in place; an edge tile (m < MR or
// n < NR) is computed whole on a scratch tile and only its m×n corner kept.
void run_tile(const MicroKernel& uk, int64_t kc, const float* a, int64_t rs_a, int64_t cs_a,
              const float* b, int64_t rs_b, float* c, int64_t ldc, int64_t m, int64_t n,
              bool accumulate) {
    if (m == uk.mr && n == uk.nr) {
        uk.run(kc, 1.0f, a, rs_a, cs_a, b, rs_b, c, ldc, accumulate);
        return;
    }
    alignas(64) float tile[kMaxTile];
    uk.run(kc, 1.0f, a, rs_a, cs_a, b, rs_b, tile, uk.nr, false);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const float t = tile[i * uk.nr + j];
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + t : t;
        }
}

// The activations the kernels apply or differentiate a block at a time:
// elementwise ones whose derivative needs only y (checked before any thread
// starts, as an exception cannot leave a parallel region).
void check_activation(Activation act, bool backward, const float* y) {
    if (act == Activation::softmax)
        throw std::invalid_argument("conv2d: softmax is row-wise, not an elementwise activation");
    if (backward && activation_backward_needs_input(act))
        throw std::invalid_argument("conv2d_backward: the activation's derivative needs its input");
    if (backward && act != Activation::identity && !y)
        throw std::invalid_argument("conv2d_backward: y is needed for the activation's derivative");
}

void check_tile(const MicroKernel& uk) {
    if (uk.mr * uk.nr > kMaxTile)
        throw std::logic_error("conv2d: micro-kernel tile larger than kMaxTile");
}

// Rows [r0, r1) of y = act([im2col(x) | 1] · packed): `packed` is [K; b] in
// NR-wide panels of kp = P (+1 with a bias) rows; `a` a workspace of
// round_up(r1 − r0, MR) rows of kp floats. The sums over kp are cut every
// kc_block values, as gemm() cuts them.
void forward_block(const MicroKernel& uk, int64_t kc_block, const Window2d& g, const float* x, const float* packed,
                   int64_t kp, int64_t F, Activation act, float alpha, int64_t r0, int64_t r1,
                   float* a, float* y) {
    const int64_t rows = r1 - r0, mr = uk.mr, nr = uk.nr;
    // A ragged last tile also reads the rows of `a` past the block's end,
    // left over from an earlier block (or zeros), into tile rows it drops.
    im2col_rows(g, x, r0, r1, a, kp, kp > g.patch());
    float* yb = y + r0 * F;
    for (int64_t pc = 0; pc < kp; pc += kc_block) {  // K in cache blocks, BLIS order
        const int64_t kc = std::min(kc_block, kp - pc);
        for (int64_t j = 0; j < F; j += nr) {
            const float* b = packed + (j * kp + pc * nr);  // panel j / nr, row pc
            for (int64_t i = 0; i < rows; i += mr)
                run_tile(uk, kc, a + i * kp + pc, kp, 1, b, nr, yb + i * F + j, F,
                         std::min(mr, rows - i), std::min(nr, F - j), pc > 0);
        }
    }
    if (act != Activation::identity) activation_forward(act, yb, yb, rows * F, alpha);
}

// dk[0:m, 0:F] (+)= Σ_r a[r·lda + i] · dz[r, 0:F] for r < rows: a few rows of
// the kernel gradient (a first layer's P = 9 leaves one row past a tile of 8),
// one rank-1 update per window along the filters, for what a register tile
// would spend mostly on rows it then drops.
FZ_SIMD_CLONES void kernel_grad_few_rows(const float* a, int64_t lda, int64_t m, int64_t rows,
                                         const float* __restrict dz, int64_t F, bool accumulate,
                                         float* __restrict dk) {
    for (int64_t i = 0; i < m; ++i) {
        float* __restrict out = dk + i * F;
        if (!accumulate) std::fill_n(out, F, 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
            const float s = a[r * lda + i];
            const float* d = dz + r * F;
            for (int64_t f = 0; f < F; ++f) out[f] += s * d[f];
        }
    }
}

// sum[0:F] += Σ_r rows[r, 0:F] for r < count, rows added in order.
FZ_SIMD_CLONES void add_rows(const float* __restrict rows, int64_t count, int64_t F,
                             float* __restrict sum) {
    for (int64_t r = 0; r < count; ++r)
        for (int64_t f = 0; f < F; ++f) sum[f] += rows[r * F + f];
}

// One backward block's share of dK and db: for rows [r0, r1) and dzb = their
// rows of dz,
//   dk += im2col(x)[rows]ᵀ · dzb   (P, F), or = when !accumulate
//   db += Σ_rows dzb                (F,)
// a: a workspace of (r1 − r0)·P + MR floats; edge: (r1 − r0)·NR floats.
void kernel_grad_rows(const MicroKernel& uk, const Window2d& g, const float* x, const float* dzb,
                      int64_t F, int64_t r0, int64_t r1, bool accumulate, float* a, float* edge,
                      float* dk, float* db) {
    const int64_t rows = r1 - r0, P = g.patch(), mr = uk.mr, nr = uk.nr;
    if (db) add_rows(dzb, rows, F, db);
    if (!dk) return;
    // A(i, k) = im2col[k, i], a column of the block: rs = 1, cs = P. An edge
    // tile (P not a multiple of MR) also reads the first values of the next
    // row into tile rows it then drops; after the last row it reads the MR
    // floats of slack at the end of the workspace.
    im2col_rows(g, x, r0, r1, a, P, false);
    // Rows [0, tiled) go through register tiles; a ragged rest of at most
    // MR/2 rows through kernel_grad_few_rows.
    const int64_t rest = P % mr, tiled = rest != 0 && 2 * rest <= mr ? P - rest : P;
    for (int64_t j = 0; j < F; j += nr) {
        // B = dz[rows] read in place, except a ragged last panel of filters,
        // which is copied zero-padded to NR columns.
        const int64_t n = std::min(nr, F - j);
        if (n < nr) pack_b(dzb + j, F, 1, rows, n, static_cast<int>(nr), rows, edge);
        const float* b = n < nr ? edge : dzb + j;
        const int64_t rs_b = n < nr ? nr : F;
        for (int64_t i = 0; i < tiled; i += mr)
            run_tile(uk, rows, a + i, 1, P, b, rs_b, dk + i * F + j, F, std::min(mr, P - i), n,
                     accumulate);
    }
    if (tiled < P)
        kernel_grad_few_rows(a + tiled, P, P - tiled, rows, dzb, F, accumulate, dk + tiled * F);
}

// dx += col2im(dzb · Kᵀ) for rows [r0, r1), dzb their rows of dz. packed_kt:
// Kᵀ (F, P) in NR-wide panels of F rows. da: a workspace of (r1 − r0)·P
// floats, edge: MR·F.
void input_grad_rows(const MicroKernel& uk, const Window2d& g, const float* dzb,
                     const float* packed_kt, int64_t F, int64_t r0, int64_t r1, float* da,
                     float* edge, float* dx) {
    const int64_t rows = r1 - r0, P = g.patch(), mr = uk.mr, nr = uk.nr;
    // The rows of dz read by a ragged last tile, zero-padded to MR rows (the
    // tile must not read past the end of dz).
    const int64_t full = rows / mr * mr;
    if (full < rows) {
        std::copy(dzb + full * F, dzb + rows * F, edge);
        std::fill(edge + (rows - full) * F, edge + mr * F, 0.0f);
    }
    for (int64_t j = 0; j < P; j += nr) {
        const float* b = packed_kt + j * F;  // panel j / nr
        for (int64_t i = 0; i < rows; i += mr)
            run_tile(uk, F, i < full ? dzb + i * F : edge, F, 1, b, nr, da + i * P + j, P,
                     std::min(mr, rows - i), std::min(nr, P - j), false);
    }
    col2im_rows(g, da, r0, r1, dx);
}

}  // namespace

void conv2d_forward_with_plan(const GemmPlan& plan, const Window2d& g, const float* x,
                              const float* kernel, const float* bias, int64_t filters,
                              Activation act, float alpha, float* y) {
    const MicroKernel& uk = *plan.kernel;
    check_tile(uk);
    check_activation(act, false, nullptr);
    const int64_t R = g.positions(), P = g.patch(), F = filters;
    if (R <= 0 || F <= 0) return;
    thread_local std::vector<float> packed_buf;  // the calling thread's
    // [K; b]: the bias is row P, the weight of the constant 1 that im2col_rows
    // appends to every window.
    const int64_t kp = bias ? P + 1 : P;
    float* packed = scratch(packed_buf, round_up(F, uk.nr) * kp);
    pack_b(kernel, F, 1, P, F, uk.nr, kp, packed);
    if (bias) pack_b(bias, 0, 1, 1, F, uk.nr, kp, packed + P * uk.nr);
    const int64_t rows = block_rows(uk, kp), blocks = ceil_div(R, rows);
    parallel_for(0, blocks, parallel_grain(rows * kp * F), [&](int64_t b0, int64_t b1) {
        thread_local std::vector<float> a_buf;
        float* a = scratch(a_buf, rows * kp);
        for (int64_t b = b0; b < b1; ++b)
            forward_block(uk, plan.blocks.kc, g, x, packed, kp, F, act, alpha, b * rows,
                          std::min(R, (b + 1) * rows), a, y);
    });
}

void conv2d_backward_with_plan(const GemmPlan& plan, const Window2d& g, const float* x,
                               const float* kernel, const float* dy, int64_t filters,
                               float* dkernel, float* dbias, float* dx, Activation act,
                               const float* y, float alpha) {
    const MicroKernel& uk = *plan.kernel;
    check_tile(uk);
    check_activation(act, true, y);
    const int64_t P = g.patch(), F = filters, windows = g.ho * g.wo, image = g.h * g.w * g.c;
    if (windows == 0 || g.n == 0 || F <= 0) {  // no window: no gradient
        if (dkernel) std::fill_n(dkernel, P * F, 0.0f);
        if (dbias) std::fill_n(dbias, F, 0.0f);
        if (dx) std::fill_n(dx, g.n * image, 0.0f);
        return;
    }
    const bool params = dkernel || dbias;
    const int64_t partial_size = P * F + F;
    const int64_t max_blocks = std::max<int64_t>(1, kMaxPartialFloats / partial_size);
    const int64_t images = std::max({int64_t{1}, kReduceRows / windows, ceil_div(g.n, max_blocks)});
    const int64_t blocks = ceil_div(g.n, images);
    // The calling thread's buffers, shared by the workers: one partial
    // (dK, db) per block, and Kᵀ packed for dx.
    thread_local std::vector<float> partial_buf, packed_kt_buf;
    float* partials = params ? scratch(partial_buf, blocks * partial_size) : nullptr;
    float* packed_kt = dx ? scratch(packed_kt_buf, round_up(P, uk.nr) * F) : nullptr;
    if (dx) pack_b(kernel, 1, F, F, P, uk.nr, F, packed_kt);  // Kᵀ(f, p) = K[p·F + f]

    const int64_t chunk = block_rows(uk, std::max(P, F));
    const int64_t macs = images * windows * P * F * ((dkernel ? 1 : 0) + (dx ? 1 : 0));
    parallel_for(0, blocks, parallel_grain(macs), [&](int64_t b0, int64_t b1) {
        thread_local std::vector<float> a_buf, dz_buf, dz_edge_buf, da_buf, edge_buf;
        float* dz = act != Activation::identity ? scratch(dz_buf, chunk * F) : nullptr;
        float* a = dkernel ? scratch(a_buf, chunk * P + uk.mr) : nullptr;
        float* dz_edge = dkernel ? scratch(dz_edge_buf, chunk * uk.nr) : nullptr;
        float* da = dx ? scratch(da_buf, chunk * P) : nullptr;
        float* edge = dx ? scratch(edge_buf, uk.mr * F) : nullptr;
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t n0 = b * images, n1 = std::min(g.n, n0 + images);
            float* dk = dkernel ? partials + b * partial_size : nullptr;
            float* db = dbias ? partials + b * partial_size + P * F : nullptr;
            if (db) std::fill_n(db, F, 0.0f);
            if (dx) std::fill(dx + n0 * image, dx + n1 * image, 0.0f);
            for (int64_t r0 = n0 * windows; r0 < n1 * windows; r0 += chunk) {
                const int64_t r1 = std::min(n1 * windows, r0 + chunk);
                // dz for these rows: dy itself, or dy · act'(y) formed here, in cache.
                const float* dzb = dy + r0 * F;
                if (dz) {
                    activation_backward(act, nullptr, y + r0 * F, dzb, dz, (r1 - r0) * F, alpha);
                    dzb = dz;
                }
                if (params)
                    kernel_grad_rows(uk, g, x, dzb, F, r0, r1, r0 > n0 * windows, a, dz_edge, dk,
                                     db);
                if (dx) input_grad_rows(uk, g, dzb, packed_kt, F, r0, r1, da, edge, dx);
            }
        }
    });
    if (!params) return;
    // dK and db: the block partials added in block order, split over their values.
    const auto add_partials = [&](int64_t offset, int64_t size, float* out) {
        parallel_for(0, size, 4096, [&](int64_t e0, int64_t e1) {
            for (int64_t e = e0; e < e1; ++e) {
                float sum = partials[offset + e];
                for (int64_t b = 1; b < blocks; ++b) sum += partials[b * partial_size + offset + e];
                out[e] = sum;
            }
        });
    };
    if (dkernel) add_partials(0, P * F, dkernel);
    if (dbias) add_partials(P * F, F, dbias);
}

void conv2d_forward(const Window2d& g, const float* x, const float* kernel, const float* bias,
                    int64_t filters, Activation act, float alpha, float* y) {
    conv2d_forward_with_plan(gemm_plan(), g, x, kernel, bias, filters, act, alpha, y);
}

void conv2d_backward(const Window2d& g, const float* x, const float* kernel, const float* dy,
                     int64_t filters, float* dkernel, float* dbias, float* dx, Activation act,
                     const float* y, float alpha) {
    conv2d_backward_with_plan(gemm_plan(), g, x, kernel, dy, filters, dkernel, dbias,
                              dx, act, y, alpha);
}

}  // namespace fz
