// layernorm.h — layer normalization over the last axis, forward and backward.
//
// Shapes: x, y, dy, dx (rows, C); gamma, beta, dgamma, dbeta (C,); mean, rstd (rows,).
// Each row is normalized on its own (unlike batch normalization, nothing is
// shared between rows, so training and inference compute the same thing):
//
//   forward    μ = Σ_j x_j / C,   σ² = Σ_j (x_j − μ)² / C,   r = 1 / √(σ² + ε)
//              x̂_j = (x_j − μ)·r,   y_j = γ_j·x̂_j + β_j
//   backward   g_j = dy_j·γ_j                      (the gradient reaching x̂)
//              dx_j = r·(g_j − mean(g) − x̂_j·mean(g ⊙ x̂))
//              dγ_j = Σ_rows dy_j·x̂_j,   dβ_j = Σ_rows dy_j
//
// The forward saves μ and r per row (2 floats, not C): the backward recomputes
// x̂ from x, which the caller keeps anyway.
#pragma once
#include <cstdint>

namespace fz {

// y = LayerNorm(x); writes mean and rstd (= r above) for the backward.
// gamma / beta may be null: γ = 1 / β = 0 (Keras's scale=False / center=False).
// y may alias x.
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t rows, int64_t C, float epsilon);

// From dy and what the forward saved: writes dx, dgamma and dbeta (each may be
// null: not computed). dgamma and dbeta are sums over rows; they are summed in
// fixed blocks of rows, then the blocks in order, so they are bit-identical for
// any thread count. dx may alias dy.
void layernorm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                        int64_t C);

namespace reference {
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t rows, int64_t C, float epsilon);
void layernorm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                        const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                        int64_t C);
}  // namespace reference

}  // namespace fz
