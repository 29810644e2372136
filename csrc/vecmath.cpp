// vecmath.cpp — fz::vec's functions: the instruction set chosen once, and the
// row helpers built from its primitives.
#include "vecmath.h"

#include <cmath>

#ifdef FROMZERO_X86
#include <xmmintrin.h>
#endif

#include "cpu_features.h"
#include "simd.h"
#include "vecmath_kernels.h"

namespace fz::vec {

int available_vecmath_kernels(const VecMathKernels** out, int capacity) {
    int n = 0;
    const auto add = [&](const VecMathKernels& k) {
        if (n < capacity) out[n] = &k;
        ++n;
    };
#ifdef FROMZERO_X86
    if (cpu_features().avx512f) add(kVecMathAvx512);
    if (cpu_features().avx2_fma) add(kVecMathAvx2);
#endif
    add(kVecMathGeneric);
    return n;
}

const VecMathKernels& vecmath_kernels() {
    static const VecMathKernels* const best = [] {
        const VecMathKernels* k = nullptr;
        available_vecmath_kernels(&k, 1);
        return k;
    }();
    return *best;
}

// Loops that do a few operations per value read — ReLU, the derivatives
// written from the output, softmax's backward and its dot products — run at
// the speed of memory, not of arithmetic, and there 256-bit vectors beat
// 512-bit ones on arrays that are not 64-byte aligned (NumPy aligns to 16
// bytes): then every 64-byte load spans two cache lines, against every other
// 32-byte load. Measured on AMD Zen 4, one thread: softmax's backward over
// 4096×1024 took 1.64 ms with AVX-512 against 1.17 ms with AVX2 when its three
// arrays started 32, 16 and 48 bytes past a cache line (PyTorch: 1.25 ms),
// and about 1.2 ms either way when all three were aligned; on the arrays of
// bench/compare.py (16 bytes past), tanh's backward 1.30 → 1.17 ms, softmax's
// 1.41 → 1.24 ms. (PyTorch runs most of its elementwise kernels with 256-bit
// vectors on AVX-512 CPUs too.) Every table gives the same bits, so this
// changes no result. Loops with an exp, tanh or erf per value, and the
// reductions that feed one (max, sum), keep the widest table.
const VecMathKernels& streaming_kernels() {
    static const VecMathKernels* const table = [] {
#ifdef FROMZERO_X86
        if (cpu_features().avx2_fma) return &kVecMathAvx2;
#endif
        return &vecmath_kernels();
    }();
    return *table;
}

void exp(const float* x, float* y, int64_t n) { vecmath_kernels().exp(x, y, n); }
void log(const float* x, float* y, int64_t n) { vecmath_kernels().log(x, y, n); }
void log1p(const float* x, float* y, int64_t n) { vecmath_kernels().log1p(x, y, n); }
void sigmoid(const float* x, float* y, int64_t n) { vecmath_kernels().sigmoid(x, y, n); }
void tanh(const float* x, float* y, int64_t n) { vecmath_kernels().tanh(x, y, n); }
void erf(const float* x, float* y, int64_t n) { vecmath_kernels().erf(x, y, n); }
void gelu(const float* x, float* y, int64_t n) { vecmath_kernels().gelu(x, y, n); }
void gelu_tanh(const float* x, float* y, int64_t n) { vecmath_kernels().gelu_tanh(x, y, n); }
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
    vecmath_kernels().gelu_backward(x, dy, dx, n);
}
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
    vecmath_kernels().gelu_tanh_backward(x, dy, dx, n);
}
void stream_fence() {
#ifdef FROMZERO_X86
    _mm_sfence();
#endif
}
void relu(const float* x, float* y, int64_t n, Store store) {
    streaming_kernels().relu(x, y, n, store == Store::streamed);
}
void leaky_relu(const float* x, float* y, int64_t n, float alpha, Store store) {
    streaming_kernels().leaky_relu(x, y, n, alpha, store == Store::streamed);
}
void relu_backward(const float* y, const float* dy, float* dx, int64_t n, Store store) {
    streaming_kernels().relu_backward(y, dy, dx, n, store == Store::streamed);
}
void leaky_relu_backward(const float* y, const float* dy, float* dx, int64_t n, float alpha,
                         Store store) {
    streaming_kernels().leaky_relu_backward(y, dy, dx, n, alpha, store == Store::streamed);
}
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n, Store store) {
    streaming_kernels().sigmoid_backward(y, dy, dx, n, store == Store::streamed);
}
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n, Store store) {
    streaming_kernels().tanh_backward(y, dy, dx, n, store == Store::streamed);
}
void softmax_backward_row(const float* y, const float* dy, float s, float* dx, int64_t n,
                          Store store) {
    streaming_kernels().softmax_backward_row(y, dy, s, dx, n, store == Store::streamed);
}
void log_softmax_backward_row(const float* y, const float* dy, float s, float* dx, int64_t n) {
    vecmath_kernels().log_softmax_backward_row(y, dy, s, dx, n);
}
float max(const float* x, int64_t n) { return vecmath_kernels().max(x, n); }
double sum(const float* x, int64_t n) { return vecmath_kernels().sum(x, n); }
double dot(const float* a, const float* b, int64_t n) { return streaming_kernels().dot(a, b, n); }
double exp_sum(const float* x, float shift, float* y, int64_t n) {
    return vecmath_kernels().exp_sum(x, shift, y, n);
}
const char* isa() { return vecmath_kernels().name; }

namespace {

// y[i] *= a; y[i] = x[i] − a − b. Plain loops, compiled once per instruction set.
FZ_SIMD_CLONES void scale_in_place(float* y, float a, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] *= a;
}
FZ_SIMD_CLONES void subtract_twice(const float* x, float a, float b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - a - b;
}

}  // namespace

void softmax_row(const float* x, float* y, int64_t n) {
    const VecMathKernels& k = vecmath_kernels();
    const float m = k.max(x, n);
    const double s = k.exp_sum(x, m, y, n);
    scale_in_place(y, static_cast<float>(1.0 / s), n);  // one division per row
}

// x_i − m − log s is rounded twice; x_i − (m + log s) would round the sum
// first, losing the digits of log s when m is large.
void log_softmax_row(const float* x, float* y, int64_t n) {
    const VecMathKernels& k = vecmath_kernels();
    const float m = k.max(x, n);
    const auto log_s = static_cast<float>(std::log(k.exp_sum(x, m, nullptr, n)));
    subtract_twice(x, m, log_s, y, n);
}

double log_sum_exp(const float* x, int64_t n) {
    const VecMathKernels& k = vecmath_kernels();
    const float m = k.max(x, n);
    return m + std::log(k.exp_sum(x, m, nullptr, n));
}

}  // namespace fz::vec
