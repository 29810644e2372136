// random.cpp — a counter-based random number generator, dropout and shuffling.
#include "random.h"

#include <utility>

#include "parallel.h"
#include "simd.h"

namespace fz {
namespace {

// Below ~16K values starting a parallel region costs more than it saves.
constexpr int64_t kGrain = 16384;

// random_bits and random_uniform (below), inline so that the vectorised
// dropout loop can use them.
inline uint64_t splitmix64(uint64_t seed, uint64_t counter) {
    uint64_t z = seed + (counter + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// The top 24 bits fill a float mantissa exactly, so the result is k · 2^-24 for
// some k in [0, 2^24): never rounded up to 1. (k fits an int32, whose
// conversion to float vectorises; a uint64's needs AVX-512DQ.)
inline float uniform_from_bits(uint64_t bits) {
    return static_cast<float>(static_cast<int32_t>(bits >> 40)) * 0x1p-24f;
}

}  // namespace

// SplitMix64 (Steele, Lea & Flood 2014; Vigna's splitmix64.c). Its state after
// k + 1 steps is seed + (k + 1)·γ with γ = 2^64/φ, and each output is that state
// through the finaliser below. Computing the state directly from the counter
// makes random_bits(seed, 0), random_bits(seed, 1), ... exactly the SplitMix64
// stream seeded with `seed`, with O(1) access to any position — which is what
// lets threads draw disjoint parts of one stream.
uint64_t random_bits(uint64_t seed, uint64_t counter) { return splitmix64(seed, counter); }

float random_uniform(uint64_t seed, uint64_t counter) {
    return uniform_from_bits(splitmix64(seed, counter));
}

namespace {
// Elements [lo, hi) of dropout_forward, compiled once per instruction set
// (simd.h): the generator's 64-bit arithmetic vectorises too.
FZ_SIMD_CLONES void dropout_chunk(const float* x, float* y, float* mask, int64_t lo, int64_t hi,
                                  float rate, float scale, uint64_t seed) {
    for (int64_t i = lo; i < hi; ++i) {
        const float u = uniform_from_bits(splitmix64(seed, static_cast<uint64_t>(i)));
        const float keep = u >= rate ? scale : 0.0f;
        mask[i] = keep;
        y[i] = x[i] * keep;
    }
}
}  // namespace

// x, y, mask: (n,). mask_i = 1/(1 − rate) if u_i >= rate else 0, with
// u_i = random_uniform(seed, i); y_i = x_i · mask_i. Expects rate in [0, 1);
// rate == 0 keeps everything since u_i >= 0. u_i depends only on (seed, i), so
// chunks can be drawn by any thread.
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed) {
    const float scale = 1.0f / (1.0f - rate);
    parallel_for(0, n, kGrain, [=](int64_t lo, int64_t hi) {
        dropout_chunk(x, y, mask, lo, hi, rate, scale, seed);
    });
}

// dy, mask, dx: (n,). dx = dy · mask (mask already holds the 1/(1 − rate) scale).
void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) {
    parallel_for(0, n, kGrain, [=](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * mask[i];
    });
}

// out: (n,). A uniform permutation of 0..n-1 by the "inside-out" Fisher–Yates:
// step i draws j uniform in [0, i], moves out[j] to out[i] and puts i at out[j].
// That is the textbook swap loop started from the identity (see the reference),
// done in one pass without writing 0..n-1 first. Serial: every step depends on
// the previous ones. j = bits mod (i + 1) favours small j by at most
// (i + 1)/2^64 relative, far below anything a shuffle of in-memory data can show.
void random_permutation(int64_t* out, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; ++i) {
        const auto j = static_cast<int64_t>(random_bits(seed, static_cast<uint64_t>(i)) %
                                            static_cast<uint64_t>(i + 1));
        if (j != i) out[i] = out[j];  // when j == i, out[i] has not been written yet
        out[j] = i;
    }
}

// Reference implementations: the plain loops the fast kernels are tested against.
namespace reference {

void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed) {
    for (int64_t i = 0; i < n; ++i) {
        if (random_uniform(seed, static_cast<uint64_t>(i)) < rate) {
            mask[i] = 0.0f;
        } else {
            mask[i] = 1.0f / (1.0f - rate);
        }
        y[i] = x[i] * mask[i];
    }
}

void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

// Fisher–Yates from the identity, visiting i upwards: swap out[i] with a
// uniformly chosen out[j], j in [0, i].
void random_permutation(int64_t* out, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    for (int64_t i = 0; i < n; ++i) {
        const auto j = static_cast<int64_t>(random_bits(seed, static_cast<uint64_t>(i)) %
                                            static_cast<uint64_t>(i + 1));
        std::swap(out[i], out[j]);
    }
}

}  // namespace reference
}  // namespace fz
