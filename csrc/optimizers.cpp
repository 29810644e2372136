// optimizers.cpp — in-place parameter updates; formulas in optimizers.h.
//
// Each update is one pass over n floats, split into contiguous chunks across
// threads. The loop bodies only touch element i and every scalar factor is
// computed once beforehand, so GCC -O3 vectorises them (sqrt included, given
// -fno-math-errno), once per instruction set (simd.h). The operations are in
// the order Keras 3 writes them.
#include "optimizers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.h"
#include "scratch.h"
#include "simd.h"

namespace fz {
namespace {

// Updates are memory-bound and cheap per element: a thread pays off only past ~16K.
constexpr int64_t kGrain = 1 << 14;

constexpr float kInfinity = std::numeric_limits<float>::infinity();

// One chunk's loop: f(i, p_i, g_i) with p_i the weight after decay and g_i
// the gradient after clipping. Everything arrives by value, so GCC sees that
// no scalar (lr, β, ...) aliases the arrays and vectorises f's body. Read
// through the closure the threads share, those floats could alias p[i] and
// most of these loops stay scalar. Without clipping the loop reads g[i] as
// is: a model trained without clipping runs exactly the loop it always did.
template <class F>
FZ_SIMD_CLONES void update_chunk(float* p, const float* g, int64_t lo, int64_t hi, bool decay,
                                 float lr_wd, bool clip, float scale, float bound, F f) {
    // std::min / std::max in this order keep a NaN gradient NaN, as Keras's clip does.
    if (clip && decay) {
        for (int64_t i = lo; i < hi; ++i)
            f(i, p[i] - lr_wd * p[i], std::min(std::max(g[i] * scale, -bound), bound));
    } else if (clip) {
        for (int64_t i = lo; i < hi; ++i) f(i, p[i], std::min(std::max(g[i] * scale, -bound), bound));
    } else if (decay) {
        for (int64_t i = lo; i < hi; ++i) f(i, p[i] - lr_wd * p[i], g[i]);
    } else {
        for (int64_t i = lo; i < hi; ++i) f(i, p[i], g[i]);
    }
}

// Where position x of [0, total] falls in an array of n floats: ⌊n·x/total⌋
// rounded down to a whole 64-byte line of 16 floats (n at x = total), so two
// threads never write one line; 128-bit because n·x can pass 2⁶³.
inline int64_t fraction_of(int64_t n, int64_t x, int64_t total) {
    if (x >= total) return n;
    const auto i = static_cast<int64_t>(static_cast<__int128>(n) * x / total);
    return i - i % 16;
}

// The driver of every optimizer. parallel_for splits a range of Σ n[t]
// positions into chunks, and chunk [lo, hi) updates the same fraction of every
// array: indices [n[t]·lo/total, n[t]·hi/total) of array t (fraction_of). So
// thread j's share of every array is its share_begin part — the rows of a
// weight that the same thread's product and gradient kernels also touch
// (parallel.h), and which therefore stay in its core's cache. (With the
// arrays laid end to end as one range, the cut between two threads fell at
// one point of the whole list: row 340 of the MNIST layer's 784, where its
// product and gradient cut at 392.) In each part, it calls f(i, p_i, g_i)
// with f = make_f(t) (the update bound to array t's state), p_i the weight after
// Keras's decoupled weight decay p ← p − lr·wd·p, applied first and only
// when wd > 0 and array t is not exempt (ParamList::decays), and g_i the
// gradient after the list's clipping (ParamList).
// f writes p[i]. Each value is updated by one thread with the same
// arithmetic, so the split does not change the result. The gradients come
// from products that a far team runs on the calling thread, and the next
// forward reads the weights there: so does the update then (far_grain).
template <class MakeF>
void for_each_param(const ParamList& list, float lr, float weight_decay, MakeF make_f) {
    const bool decay = weight_decay > 0.0f;
    const float lr_wd = lr * weight_decay;
    const bool clip = list.grad_scale != nullptr || !(list.grad_clip == kInfinity);
    int64_t total = 0;
    for (int64_t t = 0; t < list.count; ++t) total += list.n[t];
    parallel_for(
        0, total, kGrain,
        [=](int64_t lo, int64_t hi) {
            for (int64_t t = 0; t < list.count; ++t) {
                const int64_t a = fraction_of(list.n[t], lo, total);
                const int64_t b = fraction_of(list.n[t], hi, total);
                if (a >= b) continue;
                const float scale = list.grad_scale ? list.grad_scale[t] : 1.0f;
                const bool decay_t = decay && (list.decays == nullptr || list.decays[t] != 0);
                update_chunk(list.p[t], list.g[t], a, b, decay_t, lr_wd, clip, scale,
                             list.grad_clip, make_f(t));
            }
        },
        kGrain);
}

// Sums of squares are formed per block of kNormBlock values. The blocks are
// fixed by the array sizes alone, never by the thread count, and added in
// index order, so the sums do not depend on how many threads computed them.
constexpr int64_t kNormBlock = 4096;
constexpr int kNormLanes = 8;

// Σ x_i² in double over one block. Lane j takes x_j, x_{j+8}, x_{j+16}, ...;
// the lanes are added pairwise at the end. The same operations in the same
// order on every CPU: GCC turns the eight lanes into vector registers of
// whatever width the clone has, lane for lane. A float square is exact in
// double (24 + 24 bits < 53), so only the additions round.
FZ_SIMD_CLONES double block_sum_of_squares(const float* x, int64_t n) {
    double lane[kNormLanes] = {};
    int64_t i = 0;
    for (; i + kNormLanes <= n; i += kNormLanes)
        for (int j = 0; j < kNormLanes; ++j)
            lane[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
    for (int j = 0; i + j < n; ++j)
        lane[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// A list holding one array, for the single-array entry points.
struct OneParam {
    float* p;
    const float* g;
    float* s0;
    float* s1;
    int64_t n;
    ParamList list() const { return {1, &p, &g, &s0, &s1, &n}; }
};

}  // namespace

void sgd_update_many(const ParamList& list, float lr, float momentum, bool nesterov,
                     float weight_decay) {
    for_each_param(list, lr, weight_decay, [=](int64_t t) {
        float* const p = list.p[t];
        float* const m = momentum != 0.0f ? list.s0[t] : nullptr;
        return [=](int64_t i, float pi, float gi) {
            if (momentum == 0.0f) {
                p[i] = pi - gi * lr;
                return;
            }
            const float mi = m[i] * momentum - gi * lr;
            m[i] = mi;
            p[i] = nesterov ? pi + (mi * momentum - gi * lr) : pi + mi;
        };
    });
}

void adam_update_many(const ParamList& list, float lr, float beta1, float beta2,
                      float epsilon, int64_t t, float weight_decay) {
    // Both bias corrections fold into the step size. In double: early on 1 − β2^t
    // is tiny and float's rounding of β2^t would be a large relative error.
    const double t_d = static_cast<double>(t);
    const float alpha = static_cast<float>(lr * std::sqrt(1.0 - std::pow(double{beta2}, t_d)) /
                                           (1.0 - std::pow(double{beta1}, t_d)));
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for_each_param(list, lr, weight_decay, [=](int64_t k) {
        float* const p = list.p[k];
        float* const m = list.s0[k];
        float* const v = list.s1[k];
        return [=](int64_t i, float pi, float gi) {
            const float mi = m[i] + (gi - m[i]) * c1;
            const float vi = v[i] + (gi * gi - v[i]) * c2;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi - mi * alpha / (std::sqrt(vi) + epsilon);
        };
    });
}

void rmsprop_update_many(const ParamList& list, float lr, float rho, float momentum,
                         float epsilon, float weight_decay) {
    const float c = 1.0f - rho;
    for_each_param(list, lr, weight_decay, [=](int64_t t) {
        float* const p = list.p[t];
        float* const v = list.s0[t];
        float* const mom = momentum > 0.0f ? list.s1[t] : nullptr;
        return [=](int64_t i, float pi, float gi) {
            const float vi = rho * v[i] + c * (gi * gi);
            v[i] = vi;
            const float step = lr * gi / std::sqrt(vi + epsilon);  // Δ_i
            if (momentum > 0.0f) {
                const float mi = momentum * mom[i] + step;
                mom[i] = mi;
                p[i] = pi - mi;
            } else {
                p[i] = pi - step;
            }
        };
    });
}

// One parallel pass over every block of every array; then, serially, each
// array's blocks are added in index order.
// The block tables live in grow-only buffers of the calling thread: a
// training loop that clips allocates them on its first step only.
void grad_sum_of_squares(const ParamList& list, double* sum_sq) {
    thread_local std::vector<int64_t> first_blocks;
    thread_local std::vector<double> block_sums;
    int64_t* first_block = scratch(first_blocks, list.count + 1);
    first_block[0] = 0;
    for (int64_t t = 0; t < list.count; ++t)
        first_block[t + 1] = first_block[t] + (list.n[t] + kNormBlock - 1) / kNormBlock;
    const int64_t* first = first_block;
    double* partial = scratch(block_sums, first_block[list.count]);
    parallel_for(0, first_block[list.count], kGrain / kNormBlock, [=](int64_t lo, int64_t hi) {
        // the array holding block lo: the last t with first[t] <= lo
        int64_t t = std::upper_bound(first, first + list.count + 1, lo) - first - 1;
        for (int64_t b = lo; b < hi; ++b) {
            while (b >= first[t + 1]) ++t;  // skips arrays of size 0 too
            const int64_t offset = (b - first[t]) * kNormBlock;
            partial[b] = block_sum_of_squares(list.g[t] + offset,
                                              std::min(kNormBlock, list.n[t] - offset));
        }
    });
    for (int64_t t = 0; t < list.count; ++t) {
        double sum = 0.0;
        for (int64_t b = first[t]; b < first[t + 1]; ++b) sum += partial[b];
        sum_sq[t] = sum;
    }
}

void clip_scales(const ParamList& list, float clipnorm, float global_clipnorm, float* scale) {
    thread_local std::vector<double> sums;
    double* sum_sq = scratch(sums, list.count);
    grad_sum_of_squares(list, sum_sq);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    if (clipnorm > 0.0f) {
        for (int64_t t = 0; t < list.count; ++t) {
            const double norm = std::sqrt(sum_sq[t]);
            scale[t] = static_cast<float>(std::isnan(norm) ? nan : clipnorm / std::max<double>(norm, clipnorm));
        }
        return;
    }
    double total = 0.0;
    for (int64_t t = 0; t < list.count; ++t) total += sum_sq[t];
    const double norm = std::sqrt(total);
    // ‖g‖ = 0: global_clipnorm / 0 = ∞, so the scale is 1.
    const double s = std::isfinite(norm) ? std::min(1.0, global_clipnorm / norm) : nan;
    std::fill(scale, scale + list.count, static_cast<float>(s));
}

void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    sgd_update_many(OneParam{p, g, m, nullptr, n}.list(), lr, momentum, nesterov, weight_decay);
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay) {
    adam_update_many(OneParam{p, g, m, v, n}.list(), lr, beta1, beta2, epsilon, t, weight_decay);
}

void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay) {
    rmsprop_update_many(OneParam{p, g, v, mom, n}.list(), lr, rho, momentum, epsilon, weight_decay);
}

// Reference implementations: the plain loops the fast kernels are tested against.
// Weight decay is its own first pass here, as the formulas read.
namespace reference {

void grad_sum_of_squares(const ParamList& list, double* sum_sq) {
    for (int64_t t = 0; t < list.count; ++t) {
        double sum = 0.0;
        for (int64_t i = 0; i < list.n[t]; ++i)
            sum += static_cast<double>(list.g[t][i]) * list.g[t][i];
        sum_sq[t] = sum;
    }
}

void sgd_update(float* p, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    for (int64_t i = 0; i < n; ++i) {
        if (momentum == 0.0f) {
            p[i] -= lr * g[i];
        } else {
            m[i] = momentum * m[i] - lr * g[i];
            p[i] += nesterov ? momentum * m[i] - lr * g[i] : m[i];
        }
    }
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                 float beta2, float epsilon, int64_t t, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    const double alpha_hat = lr * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t));
    for (int64_t i = 0; i < n; ++i) {
        m[i] += (1.0f - beta1) * (g[i] - m[i]);
        v[i] += (1.0f - beta2) * (g[i] * g[i] - v[i]);
        p[i] -= static_cast<float>(alpha_hat * m[i] / (std::sqrt(v[i]) + epsilon));
    }
}

void rmsprop_update(float* p, const float* g, float* v, float* mom, int64_t n, float lr, float rho,
                    float momentum, float epsilon, float weight_decay) {
    if (weight_decay > 0.0f) {
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * weight_decay * p[i];
    }
    for (int64_t i = 0; i < n; ++i) {
        v[i] = rho * v[i] + (1.0f - rho) * g[i] * g[i];
        const float delta = lr * g[i] / std::sqrt(v[i] + epsilon);
        if (momentum > 0.0f) {
            mom[i] = momentum * mom[i] + delta;
            p[i] -= mom[i];
        } else {
            p[i] -= delta;
        }
    }
}

}  // namespace reference
}  // namespace fz
