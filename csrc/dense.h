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

namespace fz {

// y = f(x·W + b). b may be null (no bias). z receives x·W + b when f's
// derivative needs it (activation_backward_needs_input, i.e. GELU) and z is
// given; with z null (inference: no backward follows) GELU too is applied in
// the GEMM's epilogue, while each tile is in cache. alpha is LeakyReLU's slope.
void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha);

// From dy = ∂L/∂y: writes dz = ∂L/∂z, db, dW and dx. dz may alias dy. dW and
// db may be null (a frozen layer: no gradient work), b's gradient db is
// skipped when null, and dx is skipped when null (the first layer: nobody
// needs ∂L/∂input). z may be null unless the activation needs it. Pass
// act = identity with dy = ∂L/∂z to start from the pre-activation gradient
// (the fused softmax + cross-entropy path).
void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha);

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
