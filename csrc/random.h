// random.h — a counter-based random number generator, dropout and shuffling.
//
// random_bits(seed, i) is a pure function of (seed, i) (SplitMix64's
// finaliser applied to seed and counter), so value i is the same whichever
// thread computes it: dropout masks do not depend on the thread count.
#pragma once
#include <cstdint>

namespace fz {

uint64_t random_bits(uint64_t seed, uint64_t counter);

// Uniform in [0, 1) with 24 random bits.
float random_uniform(uint64_t seed, uint64_t counter);

// x, y, mask: n values. mask_i = 1/(1 − rate) with probability 1 − rate, else 0
// (inverted dropout: the expected value of y equals x, so inference needs no
// rescaling); y = x · mask. Element i uses random_uniform(seed, i).
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed);

// dx = dy · mask. dx may alias dy.
void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n);

// out = a uniformly random permutation of 0..n-1 (Fisher–Yates driven by
// random_bits(seed, ·)).
void random_permutation(int64_t* out, int64_t n, uint64_t seed);

// Plain serial loops with the same signatures and semantics, kept as the
// oracle the tests compare the fast kernels against.
namespace reference {
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed);
void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n);
void random_permutation(int64_t* out, int64_t n, uint64_t seed);
}  // namespace reference

}  // namespace fz
