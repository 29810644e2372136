// activations.cpp — elementwise activations and row-wise softmax.
//
// Each activation is a <name>_forward / <name>_backward pair over n contiguous
// values; activation_forward / activation_backward dispatch on the enum.
// Elementwise kernels split [0, n) into contiguous per-thread chunks and
// softmax splits rows, so every output is computed by one thread with the same
// operations whatever the thread count.
//
// Every loop is a function of the vector math (vecmath.h), called on the chunk
// or row a thread owns: for exp / tanh / erf because libm's would cost one
// scalar call per value (glibc declares its vector libm only under
// -ffast-math, which the library does not use); for ReLU and the derivatives
// because the plain loop GCC vectorises runs ~1.5× the instructions of an
// explicit one (alias checks, a scalar remainder, one vector per step).
#include "activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu_features.h"
#include "parallel.h"
#include "vecmath.h"

namespace fz {
namespace {

// Below ~16K values starting a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

const char* const kNotElementwise =
    "not an elementwise activation (softmax is row-wise: use softmax_forward/backward)";

// Rows per parallel chunk for row-wise kernels: about kGrain values, at least one row.
int64_t row_grain(int64_t cols) {
    return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
}

// f(lo, hi, store) on every chunk of [0, n) of a memory-bound kernel whose
// call reads and writes `bytes` in all: its output streamed beyond
// streaming_threshold_bytes(), else cached; then the fence that streamed
// stores need before other threads read them.
template <class F>
void parallel_streaming(int64_t n, int64_t grain, int64_t bytes, const F& f) {
    const vec::Store store =
        bytes > streaming_threshold_bytes() ? vec::Store::streamed : vec::Store::cached;
    parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
        f(lo, hi, store);
        if (store == vec::Store::streamed) vec::stream_fence();
    });
}

// The bytes of `arrays` arrays of n floats (a call's inputs and output).
int64_t bytes_of(int arrays, int64_t n) { return arrays * n * static_cast<int64_t>(sizeof(float)); }

// f(y, dy, dx, n, store) on every chunk of [0, n): a derivative written from the output y.
void parallel_backward(void (*f)(const float*, const float*, float*, int64_t, vec::Store),
                       const float* y, const float* dy, float* dx, int64_t n) {
    parallel_streaming(n, kGrain, bytes_of(3, n), [=](int64_t lo, int64_t hi, vec::Store store) {
        f(y + lo, dy + lo, dx + lo, hi - lo, store);
    });
}

// src, dst: (n,). dst = src; identity's forward and backward; nothing to do in place.
void copy(const float* src, float* dst, int64_t n) {
    if (src == dst) return;
    parallel_for(0, n, kGrain, [=](int64_t lo, int64_t hi) {
        std::memcpy(dst + lo, src + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    });
}

// x, y: (n,). y = max(x, 0). As std::max(x, 0), a NaN x is returned, so NaNs
// propagate (as in PyTorch) instead of being hidden as zeros.
void relu_forward(const float* x, float* y, int64_t n) {
    parallel_streaming(n, kGrain, bytes_of(2, n), [=](int64_t lo, int64_t hi, vec::Store store) {
        vec::relu(x + lo, y + lo, hi - lo, store);
    });
}

// y, dy, dx: (n,). dx = dy · [y > 0]; y > 0 exactly where x > 0.
void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
    parallel_backward(vec::relu_backward, y, dy, dx, n);
}

// x, y: (n,). y = x if x > 0 else alpha·x.
void leaky_relu_forward(const float* x, float* y, int64_t n, float alpha) {
    parallel_streaming(n, kGrain, bytes_of(2, n), [=](int64_t lo, int64_t hi, vec::Store store) {
        vec::leaky_relu(x + lo, y + lo, hi - lo, alpha, store);
    });
}

// y, dy, dx: (n,). dx = dy if y > 0 else alpha·dy; with alpha >= 0, y > 0 exactly
// where x > 0, so the output is enough.
void leaky_relu_backward(const float* y, const float* dy, float* dx, int64_t n, float alpha) {
    parallel_streaming(n, kGrain, bytes_of(3, n), [=](int64_t lo, int64_t hi, vec::Store store) {
        vec::leaky_relu_backward(y + lo, dy + lo, dx + lo, hi - lo, alpha, store);
    });
}

// x, y: (n,). y = 1 / (1 + exp(-x)), by vec::sigmoid (≤ 2 ulp, no overflow for any x).
void sigmoid_forward(const float* x, float* y, int64_t n) { parallel_map(vec::sigmoid, x, y, n); }

// y, dy, dx: (n,). dx = dy · y (1 − y).
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
    parallel_backward(vec::sigmoid_backward, y, dy, dx, n);
}

// x, y: (n,). y = tanh(x), by vec::tanh (≤ 2 ulp).
void tanh_forward(const float* x, float* y, int64_t n) { parallel_map(vec::tanh, x, y, n); }

// y, dy, dx: (n,). dx = dy · (1 − y²).
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
    parallel_backward(vec::tanh_backward, y, dy, dx, n);
}

// x, y: (n,). y = x Φ(x) = x/2 (1 + erf(x/√2)): the exact GELU, the default of
// Keras and PyTorch (not the tanh approximation), by vec::gelu.
void gelu_forward(const float* x, float* y, int64_t n) { parallel_map(vec::gelu, x, y, n); }

// x, dy, dx: (n,). dx = dy · (Φ(x) + x φ(x)), φ(x) = exp(−x²/2) / √(2π). Needs
// x: y = x Φ(x) cannot be inverted cheaply (it is not even monotonic for x < 0).
// Bound by its arithmetic, not by memory: its stores stay cached.
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
    parallel_for(0, n, kGrain, [=](int64_t lo, int64_t hi) {
        vec::gelu_backward(x + lo, dy + lo, dx + lo, hi - lo);
    });
}

// Calls f(r) for every row r of a (rows, cols) matrix, rows split across threads.
template <class F>
void for_each_row(int64_t rows, int64_t cols, const F& f) {
    parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) f(r);
    });
}

}  // namespace

void parallel_map(void (*f)(const float*, float*, int64_t), const float* x, float* y, int64_t n) {
    parallel_for(0, n, kGrain, [=](int64_t lo, int64_t hi) { f(x + lo, y + lo, hi - lo); });
}

// Beyond the last-level cache of the threads that run a kernel (each thread on
// a core of its own, with that core's share of the L3), the first lines of
// its output are evicted before the call ends: caching them buys nothing,
// while every cached store first reads its line from memory (for
// dx = f(y, dy), a third more traffic) and pushes the inputs out of the cache.
// Zen 4, 2 cores with 16 MB of L3 each, 2 threads, bench/compare.py's arrays
// (4096×1024, 48 MB in all): sigmoid's backward 486 → 350–380 µs, softmax's
// 609 → 545 µs. An output that fits stays cached for the layer that reads it.
int64_t streaming_threshold_bytes() {
    return cpu_features().caches.l3 * get_num_threads();
}

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

// x, y: (rows, cols). y_ij = exp(x_ij − m_i) / Σ_k exp(x_ik − m_i), m_i = max_j x_ij,
// one row at a time by vec::softmax_row: the max, then exp and the sum (in
// double), then the scaling by 1/sum, three sweeps over a row held in cache.
// Each reads x_ij before writing y_ij, so y may alias x.
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
    for_each_row(rows, cols, [=](int64_t r) { vec::softmax_row(x + r * cols, y + r * cols, cols); });
}

// y, dy, dx: (rows, cols). dx_ij = y_ij (dy_ij − Σ_k dy_ik y_ik): the Jacobian
// diag(y) − y yᵀ applied to dy without forming it. The dot product is taken
// (in double, as softmax's sum) before dx is written, so dx may alias dy.
// dx is streamed when the three arrays exceed the cache, as the elementwise
// derivatives' (parallel_streaming).
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
    parallel_streaming(rows, row_grain(cols), bytes_of(3, rows * cols),
                       [=](int64_t lo, int64_t hi, vec::Store store) {
        for (int64_t r = lo; r < hi; ++r) {
            const int64_t o = r * cols;
            const auto dot = static_cast<float>(vec::dot(dy + o, y + o, cols));
            vec::softmax_backward_row(y + o, dy + o, dot, dx + o, cols, store);
        }
    });
}

// x, y: (rows, cols). y_ij = x_ij − m_i − log Σ_k exp(x_ik − m_i), by
// vec::log_softmax_row. y may alias x.
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
    for_each_row(rows, cols,
                 [=](int64_t r) { vec::log_softmax_row(x + r * cols, y + r * cols, cols); });
}

// y, dy, dx: (rows, cols). dx_ij = dy_ij − softmax_ij Σ_k dy_ik, softmax = e^y,
// in one sweep after the sum. The sum is taken before dx is written, so dx may
// alias dy.
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
    for_each_row(rows, cols, [=](int64_t r) {
        const int64_t o = r * cols;
        const auto s = static_cast<float>(vec::sum(dy + o, cols));
        vec::log_softmax_backward_row(y + o, dy + o, s, dx + o, cols);
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

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
        double max = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) max = std::max(max, double{x[i * cols + j]});
        double sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(x[i * cols + j] - max);
        const double lse = max + std::log(sum);
        for (int64_t j = 0; j < cols; ++j) y[i * cols + j] = static_cast<float>(x[i * cols + j] - lse);
    }
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) sum += dy[i * cols + j];
        for (int64_t j = 0; j < cols; ++j)
            dx[i * cols + j] =
                static_cast<float>(dy[i * cols + j] - std::exp(double{y[i * cols + j]}) * sum);
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
