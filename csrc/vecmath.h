// vecmath.h — vectorized exp, log, tanh, sigmoid, erf and GELU, and the row
// primitives softmax, log-softmax and the cross-entropies are built from.
//
// Why not libm: std::exp is one scalar call per value, and glibc's vector
// versions are only declared under -ffast-math, which the library does not use.
// These functions handle 8 or 16 values per instruction (AVX2 / AVX-512,
// chosen at run time from CPUID), or one at a time on other CPUs. The ones
// that only stream memory (relu, leaky_relu, the *_backward derivatives from
// the output, softmax_backward_row, dot) use 8 where the CPU has AVX2: on
// arrays that are not 64-byte aligned they are faster (vecmath.cpp says why).
//
// Every function here is serial: kernels call them from inside their own
// parallel_for, on the chunk or row they own. Results are bit-identical for
// any thread count, from run to run, and between the AVX-512, AVX2 and
// portable versions (vecmath_kernels.h says how).
//
// Maximum errors, in units in the last place (ulp) of the float result, against
// double precision; tests/cpp/test_vecmath.cpp checks these bounds over a
// sweep of every float class, the edges and random points, on every
// instruction set (in brackets: the largest error seen over all 2³² floats):
//   exp      1 ulp  [0.91]  (0 below −103.97, inf above 88.72, denormals rounded once)
//   log      1 ulp  [0.86]     log1p 2 ulp [1.44]
//   sigmoid  2 ulp  [1.65]     tanh  2 ulp [1.36]     erf 2 ulp [1.79]
//   gelu     6 ulp for x ≥ −2, 20 ulp for x ≥ −5.6 (where x Φ(x) > −5e-8);
//            below, |error| < 1e-8, and the result is 0 beyond −12.9 (|x Φ(x)| < 3e-37)
//   gelu_tanh 7 ulp for x ≥ −2, 36 ulp for x ≥ −5.6, |error| < 1e-8 below
//   gelu_backward, gelu_tanh_backward: |error| ≤ 3 (resp. 4) · 2⁻²⁴ · max(1, |f'(x)|)
// With denormal flushing on (fz.set_flush_denormal, the default: FTZ/DAZ in
// every kernel thread) a denormal input reads as 0 and a denormal result is 0.
// Special values follow C: exp(−inf) = 0, exp(inf) = inf, log(0) = −inf,
// log(x < 0) = NaN, tanh(±inf) = ±1, sigmoid(−inf) = 0; NaN gives NaN.
#pragma once
#include <cstdint>

namespace fz::vec {

// y[i] = f(x[i]) for i < n. y may alias x (in place).
void exp(const float* x, float* y, int64_t n);
void log(const float* x, float* y, int64_t n);
void log1p(const float* x, float* y, int64_t n);    // log(1 + x), accurate for small x
void sigmoid(const float* x, float* y, int64_t n);  // 1 / (1 + e^−x)
void tanh(const float* x, float* y, int64_t n);
void erf(const float* x, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n);       // x Φ(x) = x/2 (1 + erf(x/√2))
void gelu_tanh(const float* x, float* y, int64_t n);  // x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))

// dx[i] = dy[i] · f'(x[i]). dx may alias x or dy.
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n);

// How the memory-bound loops below write their output. cached: ordinary
// stores. streamed: non-temporal stores, which send whole cache lines to
// memory without reading them first — an ordinary store reads every line it
// writes into (its "read for ownership"), a third of the traffic of
// dx = f(y, dy) — and without evicting the inputs from the cache. For outputs
// too large to stay in cache until they are read; streamed stores are weakly
// ordered, so call stream_fence() after them, before another thread reads
// the output. The values written are the same either way.
enum class Store { cached, streamed };
void stream_fence();

// The activations without exp, and the derivatives the activations write from
// their output y: exact (the same IEEE operations as the plain formula, in the
// same order). y may alias x; dx may alias y or dy.
void relu(const float* x, float* y, int64_t n, Store store = Store::cached);  // max(x, 0), NaN kept
void leaky_relu(const float* x, float* y, int64_t n, float alpha,
                Store store = Store::cached);                              // x > 0 ? x : alpha·x
void relu_backward(const float* y, const float* dy, float* dx, int64_t n,
                   Store store = Store::cached);                           // y > 0 ? dy : 0
void leaky_relu_backward(const float* y, const float* dy, float* dx, int64_t n, float alpha,
                         Store store = Store::cached);                     // y > 0 ? dy : alpha·dy
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n,
                      Store store = Store::cached);                        // dy·y·(1 − y)
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n,
                   Store store = Store::cached);                           // dy·(1 − y·y)
// One row of softmax's backward, dx = y (dy − s), s = Σ dy·y over the row.
void softmax_backward_row(const float* y, const float* dy, float s, float* dx, int64_t n,
                          Store store = Store::cached);
// One row of log-softmax's backward, dx = dy − e^y s, s = Σ dy over the row.
void log_softmax_backward_row(const float* y, const float* dy, float s, float* dx, int64_t n);

// Row reductions, in one fixed order that does not depend on the instruction
// set: element i goes to accumulator i mod 16, and the 16 accumulators are
// added as a fixed tree at the end. sum and exp_sum accumulate in double
// (each float term is exact there); dot accumulates products by FMA in float
// and moves the 16 partial sums to double every 256 elements, so its error is
// that of 16-term float sums.
float max(const float* x, int64_t n);                   // −inf when n = 0; NaNs are skipped
double sum(const float* x, int64_t n);                  // Σ x_i
double dot(const float* a, const float* b, int64_t n);  // Σ a_i b_i
// y[i] = e^(x[i] − shift) and returns Σ_i e^(x[i] − shift). y may be null
// (sum only) and may alias x.
double exp_sum(const float* x, float shift, float* y, int64_t n);

// One row of softmax, y_i = e^(x_i − m) / Σ_k e^(x_k − m) with m = max_k x_k:
// the max, then the exponentials and their sum, then the scaling — three
// sweeps over a row that stays in cache. y may alias x. A row with an inf or a
// NaN, or of all −inf (a fully masked attention row), gives NaN.
void softmax_row(const float* x, float* y, int64_t n);

// One row of log-softmax, y_i = x_i − m − log Σ_k e^(x_k − m). y may alias x.
void log_softmax_row(const float* x, float* y, int64_t n);

// log Σ_i e^(x_i) = m + log Σ_i e^(x_i − m), in double (the cross-entropies' normaliser).
double log_sum_exp(const float* x, int64_t n);

// The widest instruction set these functions use: "avx512", "avx2" or "generic".
const char* isa();

}  // namespace fz::vec
