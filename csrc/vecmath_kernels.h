// vecmath_kernels.h — the instruction-set-specific part of the vector math.
//
// The algorithms (vecmath_impl.h) are written once, as templates over a type
// of float lanes, and compiled three times — for AVX-512, for AVX2 + FMA and
// for any CPU (one lane of plain C++) — each in its own file with its own
// compiler flags, exactly like the GEMM micro-kernels. Each file fills one
// VecMathKernels table; vecmath.cpp picks the best table this CPU can run.
//
// Every table computes bit-for-bit the same results: the same IEEE operations
// (add, multiply, divide, fused multiply-add, integer bit manipulation) in the
// same order for every lane, and reductions accumulated in 16 double lanes
// combined in one fixed order (see Sum16 in vecmath_impl.h).
#pragma once
#include <cstdint>

namespace fz::vec {

struct VecMathKernels {
    const char* name;
    // y = f(x) for n floats (y may alias x)
    void (*exp)(const float* x, float* y, int64_t n);
    void (*log)(const float* x, float* y, int64_t n);
    void (*log1p)(const float* x, float* y, int64_t n);
    void (*sigmoid)(const float* x, float* y, int64_t n);
    void (*tanh)(const float* x, float* y, int64_t n);
    void (*erf)(const float* x, float* y, int64_t n);
    void (*gelu)(const float* x, float* y, int64_t n);
    void (*gelu_tanh)(const float* x, float* y, int64_t n);
    // dx = dy · f'(x) (dx may alias x or dy)
    void (*gelu_backward)(const float* x, const float* dy, float* dx, int64_t n);
    void (*gelu_tanh_backward)(const float* x, const float* dy, float* dx, int64_t n);
    // Activations without exp (y may alias x), and derivatives from the
    // output y (dx may alias y or dy); vecmath.h's functions of the same names,
    // `streamed` being their Store::streamed
    void (*relu)(const float* x, float* y, int64_t n, bool streamed);
    void (*leaky_relu)(const float* x, float* y, int64_t n, float alpha, bool streamed);
    void (*relu_backward)(const float* y, const float* dy, float* dx, int64_t n, bool streamed);
    void (*leaky_relu_backward)(const float* y, const float* dy, float* dx, int64_t n, float alpha,
                                bool streamed);
    void (*sigmoid_backward)(const float* y, const float* dy, float* dx, int64_t n, bool streamed);
    void (*tanh_backward)(const float* y, const float* dy, float* dx, int64_t n, bool streamed);
    void (*softmax_backward_row)(const float* y, const float* dy, float s, float* dx, int64_t n,
                                 bool streamed);
    void (*log_softmax_backward_row)(const float* y, const float* dy, float s, float* dx, int64_t n);
    // Row reductions
    float (*max)(const float* x, int64_t n);
    double (*sum)(const float* x, int64_t n);
    double (*dot)(const float* a, const float* b, int64_t n);
    double (*exp_sum)(const float* x, float shift, float* y, int64_t n);
};

// One per instruction set; each lives in its own file compiled with its flags.
extern const VecMathKernels kVecMathGeneric;  // any CPU: one lane of C++ with std::fma
extern const VecMathKernels kVecMathAvx2;     // AVX2 + FMA, 8 lanes
extern const VecMathKernels kVecMathAvx512;   // AVX-512F, 16 lanes

// The tables this CPU can run, best first (the tests run every one).
int available_vecmath_kernels(const VecMathKernels** out, int capacity);

// The table fz::vec's functions use: the first of available_vecmath_kernels.
const VecMathKernels& vecmath_kernels();

}  // namespace fz::vec
