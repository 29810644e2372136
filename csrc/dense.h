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

// y = f(x·W + b). b may be null (no bias). z receives x·W + b only when f's
// derivative needs it (activation_backward_needs_input, i.e. GELU); it may be
// null otherwise. alpha is LeakyReLU's slope.
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

namespace reference {
void dense_forward(const float* x, const float* W, const float* b, float* y, float* z,
                   int64_t batch, int64_t in, int64_t out, Activation act, float alpha);
void dense_backward(const float* x, const float* W, const float* z, const float* y,
                    const float* dy, float* dz, float* dW, float* db, float* dx, int64_t batch,
                    int64_t in, int64_t out, Activation act, float alpha);
}  // namespace reference

}  // namespace fz
