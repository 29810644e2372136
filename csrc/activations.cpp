// activations.cpp — elementwise activations and row-wise softmax.
//
// Each activation is a <name>_forward / <name>_backward pair over n contiguous
// values; activation_forward / activation_backward dispatch on the enum.
// Elementwise kernels split [0, n) into contiguous per-thread chunks and
// softmax splits rows, so every output is computed by one thread with the same
// operations whatever the thread count.
//
// The loops are plain counted loops so GCC -O3 vectorises them. Those calling
// exp / tanh / erf stay scalar: glibc declares its vector libm (libmvec) only
// under -ffast-math, which the library does not use.
#include "activations.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "parallel.h"
#include "simd.h"

namespace fz {
namespace {

// Below ~16K values starting a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

constexpr float kInvSqrt2 = 0.7071067811865475f;    // 1/√2, for Φ(x) = (1 + erf(x/√2)) / 2
constexpr float kInvSqrt2Pi = 0.3989422804014327f;  // 1/√(2π), for φ(x) = exp(-x²/2) / √(2π)

const char* const kNotElementwise =
    "not an elementwise activation (softmax is row-wise: use softmax_forward/backward)";

// op(i) for i in [lo, hi): the counted loop GCC vectorises, once per
// instruction set (simd.h). op is a small lambda inlined into each version.
template <class Op>
FZ_SIMD_CLONES void elementwise_chunk(int64_t lo, int64_t hi, Op op) {
    for (int64_t i = lo; i < hi; ++i) op(i);
}

// Calls op(i) for every i in [0, n), in contiguous chunks of at least kGrain.
template <class Op>
void elementwise(int64_t n, const Op& op) {
    parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) { elementwise_chunk(lo, hi, op); });
}

// src, dst: (n,). dst = src; identity's forward and backward; nothing to do in place.
void copy(const float* src, float* dst, int64_t n) {
    if (src != dst) elementwise(n, [=](int64_t i) { dst[i] = src[i]; });
}

// x, y: (n,). y = max(x, 0). std::max(x, 0) returns x when x is NaN, so NaNs
// propagate (as in PyTorch) instead of being hidden as zeros.
void relu_forward(const float* x, float* y, int64_t n) {
    elementwise(n, [=](int64_t i) { y[i] = std::max(x[i], 0.0f); });
}

// y, dy, dx: (n,). dx = dy · [y > 0]; y > 0 exactly where x > 0.
void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
    elementwise(n, [=](int64_t i) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; });
}

// x, y: (n,). y = x if x > 0 else alpha·x.
void leaky_relu_forward(const float* x, float* y, int64_t n, float alpha) {
    elementwise(n, [=](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : alpha * x[i]; });
}

// y, dy, dx: (n,). dx = dy if y > 0 else alpha·dy; with alpha >= 0, y > 0 exactly
// where x > 0, so the output is enough.
void leaky_relu_backward(const float* y, const float* dy, float* dx, int64_t n, float alpha) {
    elementwise(n, [=](int64_t i) { dx[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i]; });
}

// x, y: (n,). y = 1 / (1 + exp(-x)). For x << 0 exp overflows to inf and y
// becomes 0, the correct limit, so no special case is needed.
void sigmoid_forward(const float* x, float* y, int64_t n) {
    elementwise(n, [=](int64_t i) { y[i] = 1.0f / (1.0f + std::exp(-x[i])); });
}

// y, dy, dx: (n,). dx = dy · y (1 − y).
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
    elementwise(n, [=](int64_t i) { dx[i] = dy[i] * y[i] * (1.0f - y[i]); });
}

// x, y: (n,). y = tanh(x).
void tanh_forward(const float* x, float* y, int64_t n) {
    elementwise(n, [=](int64_t i) { y[i] = std::tanh(x[i]); });
}

// y, dy, dx: (n,). dx = dy · (1 − y²).
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
    elementwise(n, [=](int64_t i) { dx[i] = dy[i] * (1.0f - y[i] * y[i]); });
}

// x, y: (n,). y = x Φ(x) = x/2 (1 + erf(x/√2)): the exact GELU, the default of
// Keras and PyTorch (not the tanh approximation).
void gelu_forward(const float* x, float* y, int64_t n) {
    elementwise(n, [=](int64_t i) { y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2)); });
}

// x, dy, dx: (n,). dx = dy · (Φ(x) + x φ(x)). Needs x: y = x Φ(x) cannot be
// inverted cheaply (it is not even monotonic for x < 0).
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
    elementwise(n, [=](int64_t i) {
        const float cdf = 0.5f * (1.0f + std::erf(x[i] * kInvSqrt2));
        const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    });
}

// Rows per parallel chunk for row-wise kernels: about kGrain values, at least one row.
int64_t row_grain(int64_t cols) {
    return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
}

}  // namespace

bool activation_backward_needs_input(Activation act) { return act == Activation::gelu; }

void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha) {
    switch (act) {
        case Activation::identity: return copy(x, y, n);
        case Activation::relu: return relu_forward(x, y, n);
        case Activation::leaky_relu: return leaky_relu_forward(x, y, n, alpha);
        case Activation::sigmoid: return sigmoid_forward(x, y, n);
        case Activation::tanh: return tanh_forward(x, y, n);
        case Activation::gelu: return gelu_forward(x, y, n);
        case Activation::softmax: break;
    }
    throw std::invalid_argument(std::string("activation_forward: ") + kNotElementwise);
}

void activation_backward(Activation act, const float* x, const float* y, const float* dy,
                         float* dx, int64_t n, float alpha) {
    switch (act) {
        case Activation::identity: return copy(dy, dx, n);
        case Activation::relu: return relu_backward(y, dy, dx, n);
        case Activation::leaky_relu: return leaky_relu_backward(y, dy, dx, n, alpha);
        case Activation::sigmoid: return sigmoid_backward(y, dy, dx, n);
        case Activation::tanh: return tanh_backward(y, dy, dx, n);
        case Activation::gelu: return gelu_backward(x, dy, dx, n);
        case Activation::softmax: break;
    }
    throw std::invalid_argument(std::string("activation_backward: ") + kNotElementwise);
}

// x, y: (rows, cols). y_ij = exp(x_ij − m_i) / Σ_k exp(x_ik − m_i), m_i = max_j x_ij.
// Three passes over a row: max, exp and sum, scale. Each reads x_ij before
// writing y_ij, so y may alias x. The sum is accumulated in double: a float sum
// of 20K terms drifts by ~1e-5, and the scalar exp dominates the cost anyway
// (the max and sum reductions keep their strict order without -ffast-math, so
// only the scaling pass vectorises).
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
    parallel_for(0, rows, row_grain(cols), [=](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
            const float* xr = x + r * cols;
            float* yr = y + r * cols;
            float max = -INFINITY;
            for (int64_t j = 0; j < cols; ++j) max = std::max(max, xr[j]);
            double sum = 0.0;
            for (int64_t j = 0; j < cols; ++j) {
                yr[j] = std::exp(xr[j] - max);
                sum += yr[j];
            }
            const auto inv = static_cast<float>(1.0 / sum);  // one division per row
            for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
        }
    });
}

// y, dy, dx: (rows, cols). dx_ij = y_ij (dy_ij − Σ_k dy_ik y_ik): the Jacobian
// diag(y) − y yᵀ applied to dy without forming it. The dot product is taken
// (in double, as softmax's sum) before dx is written, so dx may alias dy.
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
    parallel_for(0, rows, row_grain(cols), [=](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
            const float* yr = y + r * cols;
            const float* dyr = dy + r * cols;
            float* dxr = dx + r * cols;
            double dot = 0.0;
            for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
            const auto dot_f = static_cast<float>(dot);
            for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot_f);
        }
    });
}

// Reference implementations: the plain loops the fast kernels are tested against.
namespace reference {

void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha) {
    switch (act) {
        case Activation::identity:
            for (int64_t i = 0; i < n; ++i) y[i] = x[i];
            return;
        case Activation::relu:
            for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.0f);
            return;
        case Activation::leaky_relu:
            for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
            return;
        case Activation::sigmoid:
            for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
            return;
        case Activation::tanh:
            for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
            return;
        case Activation::gelu:
            for (int64_t i = 0; i < n; ++i)
                y[i] = x[i] * 0.5f * (1.0f + std::erf(x[i] / std::sqrt(2.0f)));
            return;
        case Activation::softmax: break;
    }
    throw std::invalid_argument(std::string("activation_forward: ") + kNotElementwise);
}

void activation_backward(Activation act, const float* x, const float* y, const float* dy,
                         float* dx, int64_t n, float alpha) {
    switch (act) {
        case Activation::identity:
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
            return;
        case Activation::relu:
            for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
            return;
        case Activation::leaky_relu:
            for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i];
            return;
        case Activation::sigmoid:
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
            return;
        case Activation::tanh:
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
            return;
        case Activation::gelu:
            for (int64_t i = 0; i < n; ++i) {
                const float cdf = 0.5f * (1.0f + std::erf(x[i] / std::sqrt(2.0f)));
                const float pdf =
                    std::exp(-x[i] * x[i] / 2.0f) / std::sqrt(2.0f * 3.14159265358979f);
                dx[i] = dy[i] * (cdf + x[i] * pdf);
            }
            return;
        case Activation::softmax: break;
    }
    throw std::invalid_argument(std::string("activation_backward: ") + kNotElementwise);
}

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
        float max = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) max = std::max(max, x[i * cols + j]);
        double sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            y[i * cols + j] = std::exp(x[i * cols + j] - max);
            sum += y[i * cols + j];
        }
        for (int64_t j = 0; j < cols; ++j)
            y[i * cols + j] = static_cast<float>(y[i * cols + j] / sum);
    }
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
        double dot = 0.0;
        for (int64_t j = 0; j < cols; ++j) dot += dy[i * cols + j] * y[i * cols + j];
        for (int64_t j = 0; j < cols; ++j)
            dx[i * cols + j] = static_cast<float>(y[i * cols + j] * (dy[i * cols + j] - dot));
    }
}

}  // namespace reference
}  // namespace fz
