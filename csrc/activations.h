// activations.h — activation functions, forward and backward.
//
// Elementwise activations act on n contiguous values; softmax acts on each row
// of a (rows, cols) matrix. Backward computes dx = dy * f'(x). Every derivative
// except GELU's is written in terms of the output y, so Dense can apply the
// activation in place inside the GEMM epilogue and forget the pre-activation.
#pragma once
#include <cstdint>

namespace fz {

// The order is part of the Python binding (fromzero._core.Activation).
enum class Activation : int {
    identity = 0,
    relu = 1,        // y = max(x, 0)                       dy/dx = [y > 0]
    leaky_relu = 2,  // y = x if x > 0 else alpha*x (alpha>=0) dy/dx = 1 if y > 0 else alpha
    sigmoid = 3,     // y = 1 / (1 + exp(-x))               dy/dx = y (1 - y)
    tanh = 4,        // y = tanh(x)                         dy/dx = 1 - y^2
    gelu = 5,        // y = x Φ(x) = x/2 (1 + erf(x/√2))    dy/dx = Φ(x) + x φ(x)
    softmax = 6,     // row-wise: y_j = exp(x_j - max) / Σ_k exp(x_k - max)
};

// True when activation_backward needs the pre-activation x (only GELU).
bool activation_backward_needs_input(Activation act);

// y = f(x) for n values; y may alias x (in place). Not for softmax.
// alpha is LeakyReLU's negative slope and is ignored by the others.
void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha);

// dx = dy * f'(x) for n values; dx may alias dy. x may be null unless
// activation_backward_needs_input(act). Not for softmax.
void activation_backward(Activation act, const float* x, const float* y, const float* dy,
                         float* dx, int64_t n, float alpha);

// x, y: (rows, cols). y_ij = exp(x_ij - max_j x_i) / Σ_k exp(x_ik - max_j x_i).
// Subtracting the row maximum keeps exp from overflowing. y may alias x.
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);

// y, dy, dx: (rows, cols). dx_ij = y_ij (dy_ij - Σ_k dy_ik y_ik). dx may alias dy.
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);

// x, y: (rows, cols). y_ij = x_ij - m_i - log Σ_k exp(x_ik - m_i), m_i = max_j x_ij:
// the logarithm of softmax without computing softmax (no log(0) = -inf for
// the small probabilities). y may alias x.
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);

// y, dy, dx: (rows, cols), y = log_softmax(x). dx_ij = dy_ij - exp(y_ij) Σ_k dy_ik.
// dx may alias dy.
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);

// The memory-bound kernels (ReLU and the derivatives written from the output,
// softmax's backward) write their output with non-temporal stores
// (vec::Store::streamed) when the arrays a call reads and writes span more
// bytes than this: the L3 share of the threads that run it. Same values
// either way.
int64_t streaming_threshold_bytes();

// y = f(x) for n values in parallel chunks, f being any serial array function
// of the vector math, e.g. parallel_map(vec::exp, x, y, n). y may alias x.
void parallel_map(void (*f)(const float*, float*, int64_t), const float* x, float* y, int64_t n);

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
namespace reference {
void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha);
void activation_backward(Activation act, const float* x, const float* y, const float* dy,
                         float* dx, int64_t n, float alpha);
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);
}  // namespace reference

}  // namespace fz
