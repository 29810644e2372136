// dense.h — a fully connected layer's forward and backward pass, one call each.
//
// Shapes: x (batch, in), W (in, out), b (out,), y, z, dy, dz (batch, out).
//
//   forward    z = x·W + b,  y = f(z)
//   backward   dz = dy ⊙ f'(z)          (softmax: dz = y ⊙ (dy − Σ dy·y))
//              db = Σ_batch dz,  dW = xᵀ·dz,  dx = dz·Wᵀ
//
// These compose the GEMM, activation and reduction kernels so that a layer
// costs one call from Python: the forward GEMM applies b and f in its
// epilogue while each tile is in cache, and the backward computes dz and db
// in one pass before the two GEMMs.
#pragma once
#include <cstdint>

#include "activations.h"
#include "gemm.h"

namespace fz {

// Skipping x's zeros. When most of x is exactly zero (MNIST's pixels: 81%;
// the output of a ReLU layer: about half), the forward GEMM x·W and the
// backward xᵀ·dz leave out the zero entries of x (gemm_nonzero, gemm.h), with
// the same bits as the full products. The forward builds x's non-zero entries
// (by rows) once; the backward's threads turn their parts of them into
// columns for xᵀ·dz (gemm_nonzero_transposed). This is what a layer keeps
// between the two, in buffers that only grow.
struct DenseZeroSkip {
    NonzeroRows x_rows;        // x without its zeros, when the forward skipped them
    const float* x = nullptr;  // the x x_rows holds; null when the forward did not skip
};

// The forward skips x's zeros when at least this fraction of x (estimated
// on its first 4096 entries) is zero. Both paths give the same bits, so the
// threshold only decides speed; it was measured (docs/09-making-it-fast.md).
// > 1 never skips, 0 always does (the tests force each path this way).
constexpr float kDefaultZeroSkipThreshold = 0.7f;
float zero_skip_threshold();
void set_zero_skip_threshold(float fraction);

// y = f(x·W + b). b may be null (no bias). z receives x·W + b when f's
// derivative needs it (activation_backward_needs_input, i.e. GELU) and z is
// given; with z null (inference: no backward follows) GELU too is applied in
// the GEMM's epilogue, while each tile is in cache. alpha is LeakyReLU's slope.
// With `skip` (a layer's DenseZeroSkip) x's zeros are skipped when they are
// many; skip then remembers x for dense_backward.
void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha,
                   DenseZeroSkip* skip = nullptr);

// From dy = ∂L/∂y: writes dz = ∂L/∂z, db, dW and dx. dz may alias dy. dW and
// db may be null (a frozen layer: no gradient work), b's gradient db is
// skipped when null, and dx is skipped when null (the first layer: nobody
// needs ∂L/∂input). z may be null unless the activation needs it. Pass
// act = identity with dy = ∂L/∂z to start from the pre-activation gradient
// (the fused softmax + cross-entropy path). With the `skip` the forward of
// this same x filled, dW = xᵀ·dz skips x's zeros too (x must be unchanged).
void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha,
                    DenseZeroSkip* skip = nullptr);

// ---------------------------------------------------------------- LoRA
//
// A Dense layer with a low-rank adapter (LoRA, Hu et al. 2021): the kernel W
// and bias b are frozen, two small matrices A (in, rank) and B (rank, out)
// train, and the effective kernel is W + s·A·B with s = lora_alpha / rank.
// It is never materialised: the adapter runs as two thin products.
//
// Shapes: x (batch, in), W (in, out), b (out,), A (in, rank), B (rank, out),
// h, dh (batch, rank), y, z, dy, dz (batch, out).
//
//   forward    h = s·(x·A),  z = x·W + b + h·B,  y = f(z)
//   backward   dz = dy ⊙ f'(z)
//              dB = hᵀ·dz,   dh = s·(dz·Bᵀ),   dA = xᵀ·dh
//              dx = dz·Wᵀ + dh·Aᵀ
// z is written when given and f is GELU (its backward needs it); z null
// (inference) applies GELU in the last GEMM's epilogue, as dense_forward.
// No dW and no db: the base layer is frozen. h is saved by the forward pass
// for dB; dh is a workspace the caller owns (so a step allocates nothing).
// With B = 0 (its initial value) y is exactly the base layer's output.
void dense_lora_forward(const float* x, const float* W, const float* b, const float* A,
                        const float* B, float scale, float* h, float* y, float* z,
                        int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                        float alpha);

// dA and dB may be null (the adapter frozen too), dx may be null (nobody
// needs ∂L/∂x). dz may alias dy. accumulate_dx adds to dx instead of
// overwriting it (attention's query, key and value projections read one x).
void dense_lora_backward(const float* x, const float* W, const float* A, const float* B,
                         float scale, const float* h, const float* z, const float* y,
                         const float* dy, float* dz, float* dh, float* dA, float* dB, float* dx,
                         int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                         float alpha, bool accumulate_dx = false);

namespace reference {
void dense_lora_forward(const float* x, const float* W, const float* b, const float* A,
                        const float* B, float scale, float* h, float* y, float* z,
                        int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                        float alpha);
void dense_lora_backward(const float* x, const float* W, const float* A, const float* B,
                         float scale, const float* h, const float* z, const float* y,
                         const float* dy, float* dz, float* dh, float* dA, float* dB, float* dx,
                         int64_t batch, int64_t in, int64_t out, int64_t rank, Activation act,
                         float alpha, bool accumulate_dx = false);
void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha);
void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha);
}  // namespace reference

}  // namespace fz
